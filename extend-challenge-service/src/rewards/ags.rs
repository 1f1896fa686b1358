//! The AGS Platform reward client: entitlements for ITEM rewards, wallet credits for WALLET
//! rewards, authorised by a client-credentials token from AGS IAM.
//!
//! One grant is a series of attempts inside one deadline. An attempt is "get a token (cached)
//! and call Platform". 408, 429, 5xx and transport failures are retried after 0.5 s, 1 s, 2 s;
//! any other 4xx ends the grant at once, except that a first 401 drops the cached token and
//! tries again straight away (the token may have been revoked or rotated). An attempt in
//! flight when the deadline passes is abandoned, and a backoff that would end after the
//! deadline is not started.
//!
//! Exactly once per grant key (CONTRACT §3.3). Endpoints and fields are those of AccelByte's
//! published Platform spec (`spec/platform.json` of github.com/AccelByte/accelbyte-go-sdk):
//! - `REWARD_GRANT_DEDUP=fulfillment`, ITEM rewards: `fulfillItemsV3`,
//!   `PUT /platform/v3/admin/namespaces/{ns}/users/{userId}/fulfillments/{transactionId}` with
//!   the grant key as `transactionId`. AGS de-duplicates by transaction id, so every retry
//!   simply sends the same request again. (Marked "not supported yet in AGS Shared Cloud".)
//! - Otherwise (`marker`, and WALLET rewards in both modes) the grant key is a marker in the
//!   grant: an entitlement's `grantedCode` (stored and returned by `queryUserEntitlements`;
//!   an entitlement's `metadata` is not stored) or a wallet credit's `reason` (returned in
//!   `listUserCurrencyTransactions`' `WalletTransactionInfo`, which has no `metadata`: a
//!   marker elsewhere could never be found, and a lost credit would be paid twice; see
//!   [`wallet_reason`]). A request that got no answer is never sent again
//!   within the same grant; a 5xx answer (Platform finished with the request) is followed by
//!   a look-up of the marker before any retry; a grant resumed after an earlier attempt
//!   ([`Resume`]) starts with a look-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::RewardType;
use extend_challenge_common::settings::RewardDedup;
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{GrantError, GrantRequest, Granted, Resume, RewardGranter, RewardMetrics};
use crate::client_token::{ClientToken, TokenError};

/// How much of a rejection's body is kept for the logs.
const MAX_ERROR_BODY: usize = 512;
/// The longest `reason` a wallet credit may carry (Platform's `CreditRequest.reason`).
pub const WALLET_REASON_MAX: usize = 127;
/// Records per look-up page, and pages searched at most: a player with more entitlements of
/// one item (or wallet transactions since the grant) than this leaves the grant in doubt
/// rather than risk granting twice.
const LOOKUP_PAGE: usize = 100;
const LOOKUP_MAX_PAGES: usize = 20;
/// Wallet transactions older than the intent by more than this cannot be the grant (allows
/// for clock differences between this service's database and AGS).
const LOOKUP_CLOCK_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

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
    policy: RetryPolicy,
    dedup: RewardDedup,
    metrics: RewardMetrics,
    /// The service's client-credentials token (shared with whatever else calls AGS).
    token: Arc<ClientToken>,
}

/// How one attempt ended.
enum Attempt {
    Granted,
    /// Platform said 401 to this token.
    Unauthorized(Arc<str>),
    /// Nothing can have been granted (not sent, token trouble, 408, 429): safe to send again.
    NotGranted(String),
    /// Platform answered 5xx: it is done with the request but may have granted.
    ServerError(String),
    /// No answer (time-out, connection lost after sending): Platform may have granted, or
    /// may still be working on it.
    NoAnswer(String),
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
        let token = Arc::new(ClientToken::new(
            http.clone(),
            base_url,
            client_id,
            client_secret,
        ));
        AgsRewardClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            policy,
            dedup: RewardDedup::Marker,
            metrics: RewardMetrics::global(),
            token,
        }
    }

    /// Authorises with `token` (the service's one client token) instead of a token of its
    /// own.
    pub fn with_client_token(mut self, token: Arc<ClientToken>) -> Self {
        self.token = token;
        self
    }

    /// Counts grants in `metrics` instead of the default registry's counters.
    pub fn with_metrics(mut self, metrics: RewardMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// How grants are de-duplicated (default: marker).
    pub fn with_dedup(mut self, dedup: RewardDedup) -> Self {
        self.dedup = dedup;
        self
    }

    /// Whether this reward goes through the de-duplicating fulfillment call.
    fn uses_fulfillment(&self, reward_type: RewardType) -> bool {
        self.dedup == RewardDedup::Fulfillment && reward_type == RewardType::Item
    }

    async fn grant_reward(
        &self,
        req: &GrantRequest<'_>,
        resume: Resume,
    ) -> Result<Granted, GrantError> {
        let deadline = Instant::now() + self.policy.deadline;
        let idempotent = self.uses_fulfillment(req.reward.reward_type);
        let call = self.platform_call(req, idempotent)?;
        if !idempotent && resume != Resume::Fresh {
            match tokio::time::timeout_at(deadline, self.lookup(req)).await {
                Ok(Ok(true)) => return Ok(Granted::Earlier),
                Ok(Ok(false)) if resume == Resume::LookupOnly => {
                    return Err(GrantError::InDoubt {
                        reason: "an earlier grant request may still be in progress at AGS".into(),
                    });
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    return Err(GrantError::InDoubt {
                        reason: format!("cannot look up an earlier grant: {e}"),
                    });
                }
                Err(_) => {
                    return Err(GrantError::InDoubt {
                        reason: "no time left to look up an earlier grant".into(),
                    });
                }
            }
        }
        let mut attempts = 0u32;
        let mut token_renewed = false;
        loop {
            attempts += 1;
            let sent = AtomicBool::new(false);
            let outcome = match tokio::time::timeout_at(deadline, self.attempt(&call, &sent)).await
            {
                Ok(outcome) => outcome,
                Err(_) if sent.load(Ordering::SeqCst) => {
                    return Err(GrantError::InDoubt {
                        reason: "no answer from Platform before the deadline".into(),
                    });
                }
                Err(_) => return Err(GrantError::DeadlineExceeded),
            };
            // `doubt`: the failed attempt may have granted after all.
            let (reason, doubt) = match outcome {
                Attempt::Granted => return Ok(Granted::Now),
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
                Attempt::NotGranted(reason) => (reason, false),
                Attempt::ServerError(reason) | Attempt::NoAnswer(reason) if idempotent => {
                    (reason, true)
                }
                Attempt::NoAnswer(reason) => return Err(GrantError::InDoubt { reason }),
                // Platform is done with the request: its records say whether it granted.
                Attempt::ServerError(reason) => {
                    match tokio::time::timeout_at(deadline, self.lookup(req)).await {
                        Ok(Ok(true)) => {
                            tracing::info!(%reason, "Platform failed its answer but granted");
                            return Ok(Granted::Now);
                        }
                        Ok(Ok(false)) => (reason, false),
                        Ok(Err(e)) => {
                            return Err(GrantError::InDoubt {
                                reason: format!("{reason}; then cannot look it up: {e}"),
                            });
                        }
                        Err(_) => {
                            return Err(GrantError::InDoubt {
                                reason: format!("{reason}; no time left to look it up"),
                            });
                        }
                    }
                }
            };
            let give_up = |exhausted: bool| {
                if doubt {
                    GrantError::InDoubt {
                        reason: reason.clone(),
                    }
                } else if exhausted {
                    GrantError::RetriesExhausted {
                        attempts,
                        last_error: reason.clone(),
                    }
                } else {
                    GrantError::DeadlineExceeded
                }
            };
            if attempts > self.policy.max_retries {
                return Err(give_up(true));
            }
            let delay = self.policy.backoff(attempts);
            if Instant::now() + delay >= deadline {
                tracing::warn!(attempts, error = %reason, "no time left to retry the reward grant");
                return Err(give_up(false));
            }
            tracing::warn!(attempts, error = %reason, ?delay, "reward grant failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// The Platform request for `req`, minus the token.
    fn platform_call(
        &self,
        req: &GrantRequest<'_>,
        fulfillment: bool,
    ) -> Result<PlatformCall, GrantError> {
        let reward = req.reward;
        if reward.quantity <= 0 {
            return Err(GrantError::Invalid(format!(
                "quantity must be positive, got {}",
                reward.quantity
            )));
        }
        Ok(match reward.reward_type {
            RewardType::Item if fulfillment => PlatformCall {
                method: reqwest::Method::PUT,
                url: self.url(
                    [
                        "platform",
                        "v3",
                        "admin",
                        "namespaces",
                        req.namespace,
                        "users",
                        req.user_id,
                        "fulfillments",
                        req.grant_key,
                    ]
                    .iter(),
                )?,
                // The same body on every retry: AGS refuses a transaction id with another one.
                body: json!({"items": [{
                    "itemId": reward.reward_id,
                    "quantity": reward.quantity,
                    "source": "REWARD",
                }]}),
                fulfillment: true,
            },
            RewardType::Item => PlatformCall {
                method: reqwest::Method::POST,
                url: self.user_url(req, &["entitlements"])?,
                body: json!([{
                    "itemId": reward.reward_id,
                    "itemNamespace": req.namespace,
                    "quantity": reward.quantity,
                    "source": "REWARD",
                    "grantedCode": req.grant_key,
                }]),
                fulfillment: false,
            },
            RewardType::Wallet => PlatformCall {
                method: reqwest::Method::PUT,
                url: self.user_url(req, &["wallets", reward.reward_id.as_str(), "credit"])?,
                body: json!({
                    "amount": reward.quantity,
                    "source": "REWARD",
                    "reason": wallet_reason(req.challenge_id, req.goal_id, req.grant_key),
                }),
                fulfillment: false,
            },
        })
    }

    /// `{base}/platform/admin/namespaces/{ns}/users/{user}/` followed by `tail`: the admin
    /// resources of the grant's user (grants and their look-ups).
    fn user_url(&self, req: &GrantRequest<'_>, tail: &[&str]) -> Result<Url, GrantError> {
        let user = [
            "platform",
            "admin",
            "namespaces",
            req.namespace,
            "users",
            req.user_id,
        ];
        self.url(user.iter().chain(tail))
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

    /// One attempt. `sent` is set before the Platform request leaves.
    async fn attempt(&self, call: &PlatformCall, sent: &AtomicBool) -> Attempt {
        let token = match self.token().await {
            Ok(token) => token,
            Err(attempt) => return attempt,
        };
        sent.store(true, Ordering::SeqCst);
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
            Err(e) if e.is_connect() => {
                return Attempt::NotGranted(format!("cannot connect to Platform: {e}"));
            }
            Err(e) => return Attempt::NoAnswer(format!("no answer from Platform: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            if call.fulfillment {
                return fulfillment_outcome(status, response).await;
            }
            return Attempt::Granted;
        }
        if status == StatusCode::UNAUTHORIZED {
            return Attempt::Unauthorized(token);
        }
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::NotGranted(format!("Platform answered HTTP {}", status.as_u16()));
        }
        if status.is_server_error() {
            return Attempt::ServerError(format!("Platform answered HTTP {}", status.as_u16()));
        }
        Attempt::Failed(GrantError::Rejected {
            status: status.as_u16(),
            body: error_body(response).await,
        })
    }

    /// Whether AGS holds a grant carrying `req.grant_key` (marker mode).
    async fn lookup(&self, req: &GrantRequest<'_>) -> Result<bool, String> {
        let found = match req.reward.reward_type {
            RewardType::Item => self.find_entitlement(req).await,
            RewardType::Wallet => self.find_credit(req).await,
        };
        if let Ok(found) = found {
            tracing::debug!(
                grant_key = req.grant_key,
                found,
                "looked up reward grant marker"
            );
        }
        found
    }

    /// `queryUserEntitlements` by item id, all statuses (a consumed or revoked entitlement
    /// was still granted), searched for `grantedCode == grant key`.
    async fn find_entitlement(&self, req: &GrantRequest<'_>) -> Result<bool, String> {
        let base = self
            .user_url(req, &["entitlements"])
            .map_err(|e| e.to_string())?;
        for page in 0..LOOKUP_MAX_PAGES {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("itemId", &req.reward.reward_id)
                .append_pair("activeOnly", "false")
                .append_pair("limit", &LOOKUP_PAGE.to_string())
                .append_pair("offset", &(page * LOOKUP_PAGE).to_string());
            let Some(body) = self.get_json(url).await? else {
                return Ok(false);
            };
            let data = page_data(&body)?;
            if data
                .iter()
                .any(|e| e.get("grantedCode").and_then(Value::as_str) == Some(req.grant_key))
            {
                return Ok(true);
            }
            if data.len() < LOOKUP_PAGE || !has_next(&body) {
                return Ok(false);
            }
        }
        Err(format!(
            "more than {} entitlements of the item to search",
            LOOKUP_PAGE * LOOKUP_MAX_PAGES
        ))
    }

    /// `listUserCurrencyTransactions` (newest first), searched for a credit whose `reason`
    /// carries the grant key, back to shortly before the intent was recorded.
    async fn find_credit(&self, req: &GrantRequest<'_>) -> Result<bool, String> {
        let base = self
            .user_url(
                req,
                &[
                    "wallets",
                    "currencies",
                    req.reward.reward_id.as_str(),
                    "transactions",
                ],
            )
            .map_err(|e| e.to_string())?;
        let oldest = req.since - LOOKUP_CLOCK_MARGIN;
        for page in 0..LOOKUP_MAX_PAGES {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("limit", &LOOKUP_PAGE.to_string())
                .append_pair("offset", &(page * LOOKUP_PAGE).to_string());
            // No wallet: it was never credited.
            let Some(body) = self.get_json(url).await? else {
                return Ok(false);
            };
            let data = page_data(&body)?;
            let marked = |t: &Value| {
                t.get("reason")
                    .and_then(Value::as_str)
                    .is_some_and(|r| reason_carries(r, req.grant_key))
            };
            if data.iter().any(marked) {
                return Ok(true);
            }
            let past_oldest = data.iter().any(|t| {
                t.get("createdAt")
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|at| at.with_timezone(&Utc) < oldest)
            });
            if past_oldest || data.len() < LOOKUP_PAGE || !has_next(&body) {
                return Ok(false);
            }
        }
        Err(format!(
            "more than {} wallet transactions since the grant to search",
            LOOKUP_PAGE * LOOKUP_MAX_PAGES
        ))
    }

    /// GETs JSON from Platform; `None` on 404. A first 401 renews the token.
    async fn get_json(&self, url: Url) -> Result<Option<Value>, String> {
        let mut renewed = false;
        loop {
            let token = self.token().await.map_err(|a| match a {
                Attempt::Failed(e) => e.to_string(),
                Attempt::NotGranted(r) => r,
                _ => "cannot get a token".into(),
            })?;
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(&token)
                .send()
                .await
                .map_err(|e| format!("look-up request failed: {e}"))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.forget_token(&token).await;
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(format!("look-up answered HTTP {}", status.as_u16()));
            }
            return response
                .json()
                .await
                .map(Some)
                .map_err(|e| format!("unreadable look-up answer: {e}"));
        }
    }

    /// The client token; a failure is an attempt that granted nothing (IAM unavailable) or
    /// the end of the grant (IAM refused the credentials).
    async fn token(&self) -> Result<Arc<str>, Attempt> {
        self.token.get().await.map_err(|e| match e {
            TokenError::Unavailable(reason) => Attempt::NotGranted(reason),
            TokenError::Rejected { status } => {
                Attempt::Failed(GrantError::TokenRejected { status })
            }
        })
    }

    async fn forget_token(&self, refused: &str) {
        self.token.forget(refused).await;
    }
}

struct PlatformCall {
    method: reqwest::Method,
    url: Url,
    body: serde_json::Value,
    /// A fulfillment: the answer's `state` says whether the items were granted.
    fulfillment: bool,
}

/// A 2xx fulfillment answer: `FULFILLED` is a grant; another state (`FULFILL_FAILED`) a
/// definite refusal. An answer without a readable state counts as a grant (2xx).
async fn fulfillment_outcome(status: StatusCode, response: reqwest::Response) -> Attempt {
    let text = response.text().await.unwrap_or_default();
    let state = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string));
    match state {
        Some(state) if state != "FULFILLED" => {
            let mut body = text;
            truncate(&mut body, MAX_ERROR_BODY);
            Attempt::Failed(GrantError::Rejected {
                status: status.as_u16(),
                body,
            })
        }
        _ => Attempt::Granted,
    }
}

/// A wallet credit's `reason`: `challenge <c>/<g> [<grant key>]`, at most
/// [`WALLET_REASON_MAX`] characters. The readable part is shortened (never the key) when the
/// ids are long, so the marker always survives.
pub fn wallet_reason(challenge_id: &str, goal_id: &str, grant_key: &str) -> String {
    let marker = format!(" [{grant_key}]");
    let mut head = format!("challenge {challenge_id}/{goal_id}");
    let room = WALLET_REASON_MAX.saturating_sub(marker.chars().count());
    if head.chars().count() > room {
        head = head.chars().take(room).collect();
    }
    head + &marker
}

/// Whether a wallet transaction's `reason` carries `grant_key` as its marker.
fn reason_carries(reason: &str, grant_key: &str) -> bool {
    reason
        .strip_suffix(']')
        .and_then(|r| r.rsplit_once(" ["))
        .is_some_and(|(_, key)| key == grant_key)
}

async fn error_body(response: reqwest::Response) -> String {
    let mut body = response.text().await.unwrap_or_default();
    truncate(&mut body, MAX_ERROR_BODY);
    body
}

/// The `data` array of a Platform paging answer.
fn page_data(body: &Value) -> Result<&Vec<Value>, String> {
    body.get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| "look-up answer has no data array".to_string())
}

/// Whether a Platform paging answer says there is a next page. An answer without `paging`
/// is taken to have one (the page size then decides).
fn has_next(body: &Value) -> bool {
    match body.get("paging") {
        Some(paging) => paging
            .get("next")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty()),
        None => true,
    }
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
        req: &'a GrantRequest<'a>,
        resume: Resume,
    ) -> BoxFuture<'a, Result<Granted, GrantError>> {
        Box::pin(async move {
            let result = self.grant_reward(req, resume).await;
            let reward = req.reward;
            let reward_type = reward.reward_type.as_str();
            let (challenge_id, goal_id, grant_key) = (req.challenge_id, req.goal_id, req.grant_key);
            match &result {
                Ok(granted) => {
                    let outcome = match granted {
                        Granted::Now => "granted",
                        Granted::Earlier => "found",
                    };
                    self.metrics.record(reward.reward_type, outcome);
                    tracing::info!(
                        challenge_id,
                        goal_id,
                        grant_key,
                        reward_type,
                        reward_id = %reward.reward_id,
                        quantity = reward.quantity,
                        outcome,
                        "reward granted"
                    );
                    tracing::debug!(user_id = req.user_id, goal_id, "reward grant recipient");
                }
                Err(error) => {
                    self.metrics.record(reward.reward_type, error.outcome());
                    tracing::warn!(
                        challenge_id,
                        goal_id,
                        grant_key,
                        reward_type,
                        reward_id = %reward.reward_id,
                        error = %error,
                        "reward grant failed"
                    );
                    tracing::debug!(
                        user_id = req.user_id,
                        goal_id,
                        ?error,
                        "failed reward grant details"
                    );
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_token::is_retryable;
    use extend_challenge_common::config::Reward;

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

    fn call(
        c: &AgsRewardClient,
        ns: &str,
        user: &str,
        reward: &Reward,
        fulfillment: bool,
    ) -> Result<PlatformCall, GrantError> {
        let req = GrantRequest {
            namespace: ns,
            user_id: user,
            challenge_id: "c",
            goal_id: "g",
            reward,
            grant_key: "chl-k",
            since: Utc::now(),
        };
        c.platform_call(&req, fulfillment)
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
        let wallet = reward(RewardType::Wallet, "GOLD%");
        let call = call(&c, "ns 1", "user/../x?y#z", &wallet, false).unwrap();
        assert_eq!(
            call.url.as_str(),
            "http://ags.example/base/platform/admin/namespaces/ns%201/users/user%2F..%2Fx%3Fy%23z/wallets/GOLD%25/credit"
        );
        assert_eq!(call.method, reqwest::Method::PUT);
    }

    #[test]
    fn fulfillment_puts_the_grant_key_as_transaction_id() {
        let c = client("http://ags.example");
        let item = reward(RewardType::Item, "sword");
        let call = call(&c, "ns", "u", &item, true).unwrap();
        assert_eq!(
            call.url.as_str(),
            "http://ags.example/platform/v3/admin/namespaces/ns/users/u/fulfillments/chl-k"
        );
        assert_eq!(call.method, reqwest::Method::PUT);
        assert_eq!(
            call.body,
            json!({"items": [{"itemId": "sword", "quantity": 3, "source": "REWARD"}]})
        );
    }

    #[test]
    fn dot_segments_and_bad_quantities_are_refused() {
        let c = client("http://ags.example");
        for user in ["..", ".", ""] {
            let item = reward(RewardType::Item, "i");
            let err = call(&c, "ns", user, &item, false).err();
            assert!(matches!(err, Some(GrantError::Invalid(_))), "{user:?}");
        }
        let mut zero = reward(RewardType::Item, "i");
        zero.quantity = 0;
        assert!(matches!(
            call(&c, "ns", "u", &zero, false),
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
    fn paging_answers() {
        assert!(has_next(&json!({"data": []})));
        assert!(!has_next(&json!({"data": [], "paging": {}})));
        assert!(!has_next(&json!({"data": [], "paging": {"next": ""}})));
        assert!(has_next(
            &json!({"data": [], "paging": {"next": "/x?offset=100"}})
        ));
        assert!(page_data(&json!({"paging": {}})).is_err());
    }

    #[test]
    fn a_wallet_credit_carries_its_marker_in_reason_within_127_characters() {
        let key = "chl-0123456789abcdef0123456789abcdef";
        let short = wallet_reason("winter", "gold-100", key);
        assert_eq!(short, format!("challenge winter/gold-100 [{key}]"));
        assert!(reason_carries(&short, key));
        assert!(!reason_carries(&short, "chl-other"));
        assert!(!reason_carries("challenge winter/gold-100", key));
        let long_id = "é".repeat(100);
        let long = wallet_reason(&long_id, &long_id, key);
        assert_eq!(long.chars().count(), WALLET_REASON_MAX);
        assert!(reason_carries(&long, key), "{long}");
        let c = client("http://ags.example");
        let gold = reward(RewardType::Wallet, "GOLD");
        let body = call(&c, "ns", "u", &gold, false).unwrap().body;
        assert_eq!(
            body,
            json!({"amount": 3, "source": "REWARD", "reason": "challenge c/g [chl-k]"})
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "ééé".to_string();
        truncate(&mut s, 3);
        assert_eq!(s, "é");
    }
}
