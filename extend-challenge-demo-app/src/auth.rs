//! Who the CLI calls the service as: `mock` (an unsigned JWT plus `x-mock-user-id`),
//! `password` (AGS IAM password grant; the user becomes the token's `sub`) or `client`
//! (client credentials).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::log;

/// How tokens are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Mock,
    Password {
        token_url: String,
        client_id: String,
        client_secret: String,
        email: String,
        password: String,
    },
    Client {
        token_url: String,
        client_id: String,
        client_secret: String,
    },
}

#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: String,
    pub expires_at: Instant,
}

/// A token source with a cache; refreshes (a new grant) within 5 minutes of expiry.
pub struct Auth {
    pub mode: Mode,
    user_id: String,
    namespace: String,
    http: std::sync::OnceLock<reqwest::Client>,
    token: Mutex<Option<Token>>,
}

impl Auth {
    pub fn new(mode: Mode, user_id: &str, namespace: &str) -> Auth {
        Auth {
            mode,
            user_id: user_id.to_string(),
            namespace: namespace.to_string(),
            http: std::sync::OnceLock::new(),
            token: Mutex::new(None),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Mock => "mock",
            Mode::Password { .. } => "password",
            Mode::Client { .. } => "client",
        }
    }

    /// The current token, granting a new one when there is none or it is about to expire.
    pub async fn token(&self) -> Result<Token, String> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.expires_at > Instant::now() + Duration::from_secs(300)
        {
            return Ok(t.clone());
        }
        let fresh = self.grant().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Seconds until the cached token expires (the TUI header), if there is one.
    pub async fn expires_in(&self) -> Option<Duration> {
        let cached = self.token.lock().await;
        cached
            .as_ref()
            .map(|t| t.expires_at.saturating_duration_since(Instant::now()))
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
    }

    async fn grant(&self) -> Result<Token, String> {
        match &self.mode {
            Mode::Mock => Ok(Token {
                access_token: mock_jwt(&self.user_id, &self.namespace),
                expires_at: Instant::now() + Duration::from_secs(3600),
            }),
            Mode::Password {
                token_url,
                client_id,
                client_secret,
                email,
                password,
            } => token_grant(
                self.http(),
                token_url,
                client_id,
                client_secret,
                &[
                    ("grant_type", "password"),
                    ("username", email),
                    ("password", password),
                ],
            )
            .await
            .map_err(|e| format!("password grant failed: {e}")),
            Mode::Client {
                token_url,
                client_id,
                client_secret,
            } => token_grant(
                self.http(),
                token_url,
                client_id,
                client_secret,
                &[("grant_type", "client_credentials")],
            )
            .await
            .map_err(|e| format!("client credentials grant failed: {e}")),
        }
    }

    /// Password and client modes: fetch a token now and return the user it names (`sub`),
    /// logging like the demo. `None`: keep `--user-id`.
    pub async fn login(&self, fallback_user: &str) -> Option<String> {
        let what = match self.mode {
            Mode::Mock => return None,
            Mode::Password { .. } => "password",
            Mode::Client { .. } => "client credentials",
        };
        match self.token().await {
            Err(e) => {
                log(&format!("Warning: Failed to authenticate with {what}: {e}"));
                log(&format!(
                    "Falling back to --user-id flag value: {fallback_user}"
                ));
                None
            }
            Ok(t) => match jwt_sub(&t.access_token) {
                Some(sub) if !sub.is_empty() => {
                    log(&format!("Extracted user ID from JWT token: {sub}"));
                    Some(sub)
                }
                _ => {
                    log(&format!(
                        "Warning: Failed to extract user ID from JWT, using --user-id flag: {fallback_user}"
                    ));
                    None
                }
            },
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// `POST <token_url>` with HTTP Basic client credentials and a form body (AGS IAM
/// `/iam/v3/oauth/token`).
pub async fn token_grant(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    form: &[(&str, &str)],
) -> Result<Token, String> {
    let resp = http
        .post(token_url)
        .basic_auth(client_id, Some(client_secret))
        .header("Accept", "application/json")
        .form(form)
        .send()
        .await
        .map_err(|e| format!("Post \"{token_url}\": {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if status != 200 {
        return Err(format!(
            "authentication failed with status {status}: {body}"
        ));
    }
    let parsed: TokenResponse =
        serde_json::from_str(&body).map_err(|e| format!("decode response: {e}"))?;
    let (Some(access_token), Some(expires_in)) = (parsed.access_token, parsed.expires_in) else {
        return Err("invalid token response: missing required fields".into());
    };
    Ok(Token {
        access_token,
        expires_at: Instant::now() + Duration::from_secs(expires_in.max(0) as u64),
    })
}

/// IAM's token endpoint for an `--iam-url` (`https://x/iam` → `https://x/iam/v3/oauth/token`;
/// a URL without `/iam` gets it added, as the AGS SDK does).
pub fn token_url(iam_url: &str) -> String {
    let base = iam_url.trim_end_matches('/');
    let base = base.strip_suffix("/iam").unwrap_or(base);
    format!("{base}/iam/v3/oauth/token")
}

/// The demo's mock token: `{"alg":"HS256","typ":"JWT"}`, `{sub, namespace, iat, exp}`,
/// signature `mock-signature`.
pub fn mock_jwt(user_id: &str, namespace: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let payload = serde_json::json!({
        "exp": now + 3600,
        "iat": now,
        "namespace": namespace,
        "sub": user_id,
    });
    format!(
        "{}.{}.mock-signature",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

/// The `sub` claim of a JWT, without verifying it.
pub fn jwt_sub(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_string)
}

/// An error and its sources, `: `-separated (reqwest's own text names only the outer one).
/// reqwest's outer text ("error sending request for url (...)") only repeats the URL the
/// callers already print, so its sources stand in for it when there are any.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let (mut s, mut source) = match e.source() {
        Some(inner) if e.to_string().starts_with("error sending request") => {
            (inner.to_string(), inner.source())
        }
        _ => (e.to_string(), e.source()),
    };
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_jwt_carries_user_and_namespace() {
        let t = mock_jwt("alice", "ns1");
        assert!(t.ends_with(".mock-signature"));
        assert_eq!(jwt_sub(&t).as_deref(), Some("alice"));
        let payload = t.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["namespace"], "ns1");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
    }

    #[test]
    fn jwt_sub_rejects_what_is_not_a_jwt() {
        assert_eq!(jwt_sub("abc"), None);
        assert_eq!(jwt_sub("a.b.c.d"), None);
        assert_eq!(jwt_sub("a.!!!.c"), None);
    }

    #[test]
    fn token_url_follows_the_sdk() {
        assert_eq!(
            token_url("https://demo.accelbyte.io/iam"),
            "https://demo.accelbyte.io/iam/v3/oauth/token"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/iam/v3/oauth/token"
        );
    }
}
