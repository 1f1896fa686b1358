//! A fake AGS (IAM + Platform) on a real local HTTP port, backed by wiremock.
//!
//! Serves what the service calls: the JWKS and revocation list (auth), the
//! client-credentials token endpoint, and the entitlement and wallet-credit grants
//! (rewards). Tests read the grants it received and may mount failing responses first.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::NAMESPACE;
use crate::build::fixture;

/// `kid` of the fixture signing key (`tests/fixtures/jwks.json`).
pub const KEY_ID: &str = "e2e-test-key";

/// A user the fake IAM's revocation list revokes as of tomorrow: every token issued to it
/// today is revoked.
pub const REVOKED_USER: &str = "revoked-user";

pub struct FakeAgs {
    pub server: MockServer,
}

/// A reward grant the fake Platform service received.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
}

impl FakeAgs {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let jwks: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("jwks.json")).expect("read fixtures/jwks.json"),
        )
        .expect("fixtures/jwks.json is JSON");
        Mock::given(method("GET"))
            .and(path("/iam/v3/oauth/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
            .mount(&server)
            .await;
        // No revoked tokens (a Bloom filter with every bit clear), one revoked user.
        let revoked_at = (chrono::Utc::now() + chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Mock::given(method("GET"))
            .and(path("/iam/v3/oauth/revocationlist"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "revoked_tokens": {"m": 2432, "k": 17, "bits": vec![0u64; 38]},
                "revoked_users": [{"id": REVOKED_USER, "revoked_at": revoked_at}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/iam/v3/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "fake-admin-token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "namespace": NAMESPACE
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(format!(
                "^/platform/admin/namespaces/{NAMESPACE}/users/[^/]+/entitlements$"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": "fake-entitlement", "status": "ACTIVE"}
            ])))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(format!(
                "^/platform/admin/namespaces/{NAMESPACE}/users/[^/]+/wallets/[^/]+/credit$"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "fake-wallet", "balance": 0, "status": "ACTIVE"
            })))
            .mount(&server)
            .await;
        FakeAgs { server }
    }

    /// Base URL to hand to the binaries as `AB_BASE_URL`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Makes the next `times` grant calls (entitlement or wallet) for `user` answer `status`.
    pub async fn fail_grants(&self, user: &str, status: u16, times: u64) {
        Mock::given(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/{user}/(entitlements|wallets/[^/]+/credit)$"
        )))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "errorCode": 20000 + status,
            "errorMessage": "injected by the e2e suite"
        })))
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&self.server)
        .await;
    }

    /// Makes every grant call for `user` succeed only after `delay` (a slow Platform).
    pub async fn delay_grants(&self, user: &str, delay: std::time::Duration) {
        Mock::given(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/{user}/(entitlements|wallets/[^/]+/credit)$"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "fake-grant", "status": "ACTIVE"}))
                .set_delay(delay),
        )
        .with_priority(1)
        .mount(&self.server)
        .await;
    }

    /// Every reward grant request received so far for `user`, in arrival order (the
    /// look-ups of earlier grants, `GET`s, are not grants: see [`FakeAgs::lookups`]).
    pub async fn grants(&self, user: &str) -> Vec<Grant> {
        self.requests_of(user)
            .await
            .into_iter()
            .filter(|g| g.method != "GET")
            .collect()
    }

    /// The service's look-ups of earlier grants for `user` (entitlement and wallet
    /// transaction queries), in arrival order.
    pub async fn lookups(&self, user: &str) -> Vec<Grant> {
        self.requests_of(user)
            .await
            .into_iter()
            .filter(|g| g.method == "GET")
            .collect()
    }

    async fn requests_of(&self, user: &str) -> Vec<Grant> {
        let prefix = format!("/platform/admin/namespaces/{NAMESPACE}/users/{user}/");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().starts_with(&prefix))
            .map(grant)
            .collect()
    }

    /// How many requests hit `path` so far.
    pub async fn hits(&self, p: &str) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == p)
            .count()
    }
}

impl Grant {
    /// The grant key the service marks its grant with (an entitlement's `grantedCode`, a
    /// wallet credit's `metadata.challengeGrantKey`), if any.
    pub fn marker(&self) -> Option<&str> {
        self.body
            .get(0)
            .and_then(|e| e.get("grantedCode"))
            .or_else(|| self.body.pointer("/metadata/challengeGrantKey"))
            .and_then(Value::as_str)
    }

    /// The body without the marker: the contract's request shape (CONTRACT §3.5).
    pub fn contract_body(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(items) = body.as_array_mut() {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    o.remove("grantedCode");
                }
            }
        } else if let Some(o) = body.as_object_mut() {
            o.remove("metadata");
        }
        body
    }
}

fn grant(r: &Request) -> Grant {
    Grant {
        method: r.method.to_string(),
        path: r.url.path().to_string(),
        body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        authorization: r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// Claims of a player access token as AGS IAM issues them (the ones the service reads).
pub struct TokenClaims<'a> {
    pub sub: &'a str,
    pub namespace: &'a str,
    /// `extend_namespace`: when present it must equal the service's `AB_NAMESPACE`.
    pub extend_namespace: Option<&'a str>,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
}

impl<'a> TokenClaims<'a> {
    /// A valid token for `sub` in the suite's namespace, expiring in an hour.
    pub fn player(sub: &'a str) -> Self {
        TokenClaims {
            sub,
            namespace: NAMESPACE,
            extend_namespace: Some(NAMESPACE),
            expires_in: 3600,
        }
    }
}

/// Signs an RS256 JWT with the fixture key (`tests/fixtures/jwt-signing-key.pem`).
pub fn sign_token(claims: &TokenClaims<'_>) -> String {
    sign_token_with_kid(claims, KEY_ID)
}

/// Like [`sign_token`], with another `kid` in the header.
pub fn sign_token_with_kid(claims: &TokenClaims<'_>, kid: &str) -> String {
    let key = std::fs::read(fixture("jwt-signing-key.pem")).expect("read the fixture key");
    let key = EncodingKey::from_rsa_pem(&key).expect("fixture key is an RSA PEM");
    let now = chrono::Utc::now().timestamp();
    let mut body = json!({
        "sub": claims.sub,
        "namespace": claims.namespace,
        "client_id": "e2e-game-client",
        "iss": "https://fake-ags.invalid",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + claims.expires_in,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "scope": "account commerce",
    });
    if let Some(ns) = claims.extend_namespace {
        body["extend_namespace"] = json!(ns);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &body, &key).expect("sign the test token")
}
