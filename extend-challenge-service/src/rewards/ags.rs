//! The AGS Platform reward client: entitlements for ITEM rewards, wallet credits for WALLET
//! rewards, authorised by a client-credentials token from AGS IAM.
//!
//! One grant is a series of attempts inside one deadline. An attempt is "get a token (cached)
//! and call Platform". 408, 429, 5xx and transport failures are retried after 0.5 s, 1 s, 2 s;
//! any other 4xx ends the grant at once, except that a first 401 drops the cached token and
//! tries again straight away (the token may have been revoked or rotated). An attempt in
//! flight when the deadline passes is abandoned, and a backoff that would end after the
//! deadline is not started.

use std::sync::Arc;
use std::time::Duration;

use extend_challenge_common::config::{Reward, RewardType};
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::{GrantError, RewardGranter, RewardMetrics};

const TOKEN_PATH: &str = "/iam/v3/oauth/token";
/// A token is replaced once this share of its lifetime has passed.
const TOKEN_REFRESH_AT: f64 = 0.8;
/// Used when IAM's token response has no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// How much of a rejection's body is kept for the logs.
const MAX_ERROR_BODY: usize = 512;

/// Retries and deadline of one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before retry n (from 1) is `base_delay × 2^(n-1)`.
    pub base_delay: Duration,
    /// Everything, attempts and backoffs, ends within this.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// The contract's policy: 3 retries after 0.5 s, 1 s, 2 s, all within 10 s.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
    }
}

/// Grants rewards through AGS Platform. Cheap to share behind an `Arc`; the token cache is
/// shared by every grant.
pub struct AgsRewardClient {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    client_secret: String,
    policy: RetryPolicy,
    metrics: RewardMetrics,
    /// Locked while a token is fetched, so concurrent grants share one fetch.
    token: tokio::sync::Mutex<Option<CachedToken>>,
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

/// How one attempt ended.
enum Attempt {
    Granted,
    /// Platform said 401 to this token.
    Unauthorized(Arc<str>),
    Retryable(String),
    Failed(GrantError),
}

impl AgsRewardClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        client_id: &str,
        client_secret: &str,
        policy: RetryPolicy,
    ) -> Self {
        AgsRewardClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            policy,
            metrics: RewardMetrics::global(),
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// Counts grants in `metrics` instead of the default registry's counters.
    pub fn with_metrics(mut self, metrics: RewardMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    async fn grant_reward(
        &self,
        namespace: &str,
        user_id: &str,
        challenge_id: &str,
        goal_id: &str,
        reward: &Reward,
    ) -> Result<(), GrantError> {
        let deadline = Instant::now() + self.policy.deadline;
        let call = self.platform_call(namespace, user_id, challenge_id, goal_id, reward)?;
        let mut attempts = 0u32;
        let mut token_renewed = false;
        loop {
            attempts += 1;
            let outcome = tokio::time::timeout_at(deadline, self.attempt(&call))
                .await
                .map_err(|_| GrantError::DeadlineExceeded)?;
            let reason = match outcome {
                Attempt::Granted => return Ok(()),
                Attempt::Failed(error) => return Err(error),
                Attempt::Unauthorized(token) if !token_renewed => {
                    tracing::info!("AGS Platform refused the cached token; fetching a new one");
                    token_renewed = true;
                    self.forget_token(&token).await;
                    attempts -= 1;
                    continue;
                }
                Attempt::Unauthorized(_) => {
                    return Err(GrantError::Rejected {
                        status: StatusCode::UNAUTHORIZED.as_u16(),
                        body: "refused a freshly issued token".into(),
                    });
                }
                Attempt::Retryable(reason) => reason,
            };
            if attempts > self.policy.max_retries {
                return Err(GrantError::RetriesExhausted {
                    attempts,
                    last_error: reason,
                });
            }
            let delay = self.policy.backoff(attempts);
            if Instant::now() + delay >= deadline {
                tracing::warn!(attempts, error = %reason, "no time left to retry the reward grant");
                return Err(GrantError::DeadlineExceeded);
            }
            tracing::warn!(attempts, error = %reason, ?delay, "reward grant failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// The Platform request for `reward`, minus the token.
    fn platform_call(
        &self,
        namespace: &str,
        user_id: &str,
        challenge_id: &str,
        goal_id: &str,
        reward: &Reward,
    ) -> Result<PlatformCall, GrantError> {
        if reward.quantity <= 0 {
            return Err(GrantError::Invalid(format!(
                "quantity must be positive, got {}",
                reward.quantity
            )));
        }
        let base = [
            "platform",
            "admin",
            "namespaces",
            namespace,
            "users",
            user_id,
        ];
        Ok(match reward.reward_type {
            RewardType::Item => PlatformCall {
                method: reqwest::Method::POST,
                url: self.url(base.iter().chain(&["entitlements"]))?,
                body: json!([{
                    "itemId": reward.reward_id,
                    "itemNamespace": namespace,
                    "quantity": reward.quantity,
                    "source": "REWARD",
                }]),
            },
            RewardType::Wallet => PlatformCall {
                method: reqwest::Method::PUT,
                url: self.url(base.iter().chain(&[
                    "wallets",
                    reward.reward_id.as_str(),
                    "credit",
                ]))?,
                body: json!({
                    "amount": reward.quantity,
                    "source": "REWARD",
                    "reason": format!("challenge {challenge_id}/{goal_id}"),
                }),
            },
        })
    }

    /// `base_url` followed by `segments`, each percent-encoded as one path segment.
    fn url<'s>(&self, segments: impl Iterator<Item = &'s &'s str>) -> Result<Url, GrantError> {
        let mut url = Url::parse(&self.base_url)
            .map_err(|e| GrantError::Invalid(format!("AB_BASE_URL is not a URL: {e}")))?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| GrantError::Invalid("AB_BASE_URL cannot take a path".into()))?;
            path.pop_if_empty();
            for segment in segments {
                // The URL library silently drops "." and ".." segments, which would shift the path.
                if matches!(*segment, "" | "." | "..") {
                    return Err(GrantError::Invalid(format!(
                        "unusable path segment {segment:?}"
                    )));
                }
                path.push(segment);
            }
        }
        Ok(url)
    }

    async fn attempt(&self, call: &PlatformCall) -> Attempt {
        let token = match self.token().await {
            Ok(token) => token,
            Err(attempt) => return attempt,
        };
        let response = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(&token)
            .json(&call.body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Attempt::Failed(GrantError::Invalid(format!("cannot build request: {e}")));
            }
            Err(e) => return Attempt::Retryable(format!("Platform request failed: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Granted;
        }
        if status == StatusCode::UNAUTHORIZED {
            return Attempt::Unauthorized(token);
        }
        if is_retryable(status) {
            return Attempt::Retryable(format!("Platform answered HTTP {}", status.as_u16()));
        }
        let mut body = response.text().await.unwrap_or_default();
        truncate(&mut body, MAX_ERROR_BODY);
        Attempt::Failed(GrantError::Rejected {
            status: status.as_u16(),
            body,
        })
    }

    /// The cached token, or a new one when it is due for refresh. If a refresh fails while
    /// the old token has not yet expired, the old one is used.
    async fn token(&self) -> Result<Arc<str>, Attempt> {
        let mut slot = self.token.lock().await;
        let now = Instant::now();
        if let Some(cached) = slot.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(cached.value.clone());
        }
        match self.fetch_token().await {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *slot = Some(fresh);
                Ok(value)
            }
            Err(attempt) => match slot.as_ref().filter(|t| Instant::now() < t.expires_at) {
                Some(still_valid) => {
                    tracing::warn!("cannot refresh the AGS client token; using the current one");
                    Ok(still_valid.value.clone())
                }
                None => Err(attempt),
            },
        }
    }

    async fn forget_token(&self, refused: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| &*t.value == refused) {
            *slot = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, Attempt> {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}{TOKEN_PATH}", self.base_url))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| Attempt::Retryable(format!("token request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(if is_retryable(status) {
                Attempt::Retryable(format!("token endpoint answered HTTP {}", status.as_u16()))
            } else {
                tracing::error!(
                    status = status.as_u16(),
                    "AGS IAM refused AB_CLIENT_ID/AB_CLIENT_SECRET"
                );
                Attempt::Failed(GrantError::TokenRejected {
                    status: status.as_u16(),
                })
            });
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| Attempt::Retryable(format!("unreadable token response: {e}")))?;
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

struct PlatformCall {
    method: reqwest::Method,
    url: Url,
    body: serde_json::Value,
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

impl RewardGranter for AgsRewardClient {
    fn grant<'a>(
        &'a self,
        namespace: &'a str,
        user_id: &'a str,
        challenge_id: &'a str,
        goal_id: &'a str,
        reward: &'a Reward,
    ) -> BoxFuture<'a, Result<(), GrantError>> {
        Box::pin(async move {
            let result = self
                .grant_reward(namespace, user_id, challenge_id, goal_id, reward)
                .await;
            let reward_type = reward.reward_type.as_str();
            match &result {
                Ok(()) => {
                    self.metrics.record(reward.reward_type, "granted");
                    tracing::info!(
                        challenge_id,
                        goal_id,
                        reward_type,
                        reward_id = %reward.reward_id,
                        quantity = reward.quantity,
                        "reward granted"
                    );
                    tracing::debug!(user_id, goal_id, "reward grant recipient");
                }
                Err(error) => {
                    self.metrics.record(reward.reward_type, error.outcome());
                    tracing::warn!(
                        challenge_id,
                        goal_id,
                        reward_type,
                        reward_id = %reward.reward_id,
                        error = %error,
                        "reward grant failed"
                    );
                    tracing::debug!(user_id, goal_id, ?error, "failed reward grant details");
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> AgsRewardClient {
        AgsRewardClient::new(
            reqwest::Client::new(),
            base,
            "id",
            "secret",
            RetryPolicy::default(),
        )
    }

    fn reward(reward_type: RewardType, id: &str) -> Reward {
        Reward {
            reward_type,
            reward_id: id.into(),
            quantity: 3,
        }
    }

    #[test]
    fn default_backoff_is_half_one_two_seconds() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=3).map(|n| p.backoff(n)).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let c = client("http://ags.example/base/");
        let call = c
            .platform_call(
                "ns 1",
                "user/../x?y#z",
                "c",
                "g",
                &reward(RewardType::Wallet, "GOLD%"),
            )
            .unwrap();
        assert_eq!(
            call.url.as_str(),
            "http://ags.example/base/platform/admin/namespaces/ns%201/users/user%2F..%2Fx%3Fy%23z/wallets/GOLD%25/credit"
        );
        assert_eq!(call.method, reqwest::Method::PUT);
    }

    #[test]
    fn dot_segments_and_bad_quantities_are_refused() {
        let c = client("http://ags.example");
        for user in ["..", ".", ""] {
            let err = c
                .platform_call("ns", user, "c", "g", &reward(RewardType::Item, "i"))
                .err();
            assert!(matches!(err, Some(GrantError::Invalid(_))), "{user:?}");
        }
        let mut zero = reward(RewardType::Item, "i");
        zero.quantity = 0;
        assert!(matches!(
            c.platform_call("ns", "u", "c", "g", &zero),
            Err(GrantError::Invalid(_))
        ));
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "ééé".to_string();
        truncate(&mut s, 3);
        assert_eq!(s, "é");
    }
}
