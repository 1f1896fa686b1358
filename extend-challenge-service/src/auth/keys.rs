//! IAM's signing keys (`GET /iam/v3/oauth/jwks`), turned into verification keys by `kid`.

use std::collections::HashMap;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    keys: Vec<WireKey>,
}

#[derive(Deserialize)]
struct WireKey {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS into RS256 verification keys. Keys that are not RSA signing keys, or that
/// lack a `kid`, are skipped; a set with no usable key is an error so the caller keeps the
/// keys it has.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| format!("invalid JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for k in wire.keys {
        let rsa = k.kty.as_deref() == Some("RSA");
        let for_signing = k.usage.as_deref().is_none_or(|u| u == "sig");
        let rs256 = k.alg.as_deref().is_none_or(|a| a == "RS256");
        let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
            continue;
        };
        if !(rsa && for_signing && rs256) || kid.is_empty() {
            continue;
        }
        match DecodingKey::from_rsa_components(&to_base64url(&n), &to_base64url(&e)) {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(err) => tracing::warn!(kid, error = %err, "skipping unreadable key in IAM JWKS"),
        }
    }
    if keys.is_empty() {
        return Err("JWKS holds no usable RS256 key".into());
    }
    Ok(keys)
}

/// Accepts padded or standard-alphabet base64 too; the decoder wants unpadded base64url.
fn to_base64url(s: &str) -> String {
    s.trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENTS: &str = include_str!("../../tests/fixtures/iam_jwk_components.json");

    fn key1() -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(COMPONENTS).unwrap();
        all["iam_key1"].clone()
    }

    #[test]
    fn keeps_rsa_signing_keys_by_kid() {
        let mut good = key1();
        good["kid"] = "k1".into();
        let mut enc = key1();
        enc["kid"] = "k-enc".into();
        enc["use"] = "enc".into();
        let mut no_kid = key1();
        no_kid.as_object_mut().unwrap().remove("kid");
        let ec =
            serde_json::json!({"kty": "EC", "kid": "k-ec", "crv": "P-256", "x": "AA", "y": "AA"});
        let body = serde_json::json!({"keys": [good, enc, no_kid, ec]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["k1"]);
    }

    #[test]
    fn padded_components_are_accepted() {
        let mut k = key1();
        k["kid"] = "k1".into();
        k["e"] = "AQAB==".into();
        let body = serde_json::json!({"keys": [k]});
        assert!(parse_jwks(body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn empty_or_garbage_is_an_error() {
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
