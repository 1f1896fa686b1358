//! The service's own AGS IAM access token: OAuth client credentials (`AB_CLIENT_ID` /
//! `AB_CLIENT_SECRET`, `POST {AB_BASE_URL}/iam/v3/oauth/token` with HTTP basic auth).
//!
//! Everything that calls AGS as the service shares one [`ClientToken`]: reward grants
//! (Platform, `rewards/ags.rs`) and the role look-ups of admin authorisation (IAM,
//! `auth/roles.rs`). The token is cached and replaced once 80% of its lifetime has passed;
//! a caller told 401 by AGS drops it ([`ClientToken::forget`]) and asks again.

use std::sync::Arc;
use std::time::Duration;

use extend_challenge_common::settings::Settings;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

const TOKEN_PATH: &str = "/iam/v3/oauth/token";
/// A token is replaced once this share of its lifetime has passed.
const TOKEN_REFRESH_AT: f64 = 0.8;
/// Used when IAM's token response has no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Why there is no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// IAM could not be asked or did not answer usefully (transport error, 408, 429, 5xx,
    /// an unreadable answer): asking again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// IAM refused the client credentials (any other 4xx).
    #[error("AGS IAM refused the client credentials with HTTP {status}")]
    Rejected { status: u16 },
}

/// The cached client-credentials token. Share it behind an `Arc`; concurrent callers wait
/// for one fetch.
pub struct ClientToken {
    http: reqwest::Client,
    url: String,
    client_id: String,
    client_secret: String,
    /// Locked while a token is fetched, so concurrent callers share one fetch.
    slot: tokio::sync::Mutex<Option<CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    value: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientToken")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientToken {
    /// A token of `client_id` from the IAM at `base_url` (fetched when first asked for).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        ClientToken {
            http,
            url: format!("{}{TOKEN_PATH}", base_url.trim_end_matches('/')),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// `AB_BASE_URL`, `AB_CLIENT_ID`, `AB_CLIENT_SECRET`.
    pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Arc<Self> {
        Arc::new(ClientToken::new(
            http,
            &settings.ags.base_url,
            &settings.ags.client_id,
            settings.ags.client_secret.expose(),
        ))
    }

    /// The cached token, or a new one when it is due for refresh. If a refresh fails while
    /// the old token has not yet expired, the old one is used.
    pub async fn get(&self) -> Result<Arc<str>, TokenError> {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if let Some(cached) = slot.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(cached.value.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *slot = Some(fresh);
                Ok(value)
            }
            Err(error) => match slot.as_ref().filter(|t| Instant::now() < t.expires_at) {
                Some(still_valid) => {
                    tracing::warn!(%error, "cannot refresh the AGS client token; using the current one");
                    Ok(still_valid.value.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Drops the cached token if it is still `refused` (AGS answered 401 to it), so the
    /// next [`ClientToken::get`] fetches a new one.
    pub async fn forget(&self, refused: &str) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|t| &*t.value == refused) {
            *slot = None;
        }
    }

    async fn fetch(&self) -> Result<CachedToken, TokenError> {
        let started = Instant::now();
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("token request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(if is_retryable(status) {
                TokenError::Unavailable(format!("token endpoint answered HTTP {}", status.as_u16()))
            } else {
                tracing::error!(
                    status = status.as_u16(),
                    "AGS IAM refused AB_CLIENT_ID/AB_CLIENT_SECRET"
                );
                TokenError::Rejected {
                    status: status.as_u16(),
                }
            });
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| TokenError::Unavailable(format!("unreadable token response: {e}")))?;
        let lifetime = token
            .expires_in
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        tracing::debug!(?lifetime, "fetched AGS client token");
        Ok(CachedToken {
            value: token.access_token.into(),
            refresh_at: started + lifetime.mul_f64(TOKEN_REFRESH_AT),
            expires_at: started + lifetime,
        })
    }
}

/// Whether an AGS answer with this status may go differently if asked again: 408, 429 and
/// 5xx.
pub(crate) fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}
