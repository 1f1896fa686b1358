//! Granting a goal's reward (CONTRACT §3.5): through AGS Platform (`REWARD_CLIENT_MODE=real`)
//! or logged only (`mock`).
//!
//! Every grant carries a grant key ([`key::grant_key`]) derived from namespace, user,
//! challenge, goal and period. The claim's state machine (`store::grants`) decides whether an
//! earlier attempt with the same key may have reached AGS ([`Resume`]); the granter then makes
//! sure AGS ends up with at most one grant per key: through a de-duplicating call, or by
//! looking for the key in AGS's records before granting again.

mod ags;
pub mod key;
mod metrics;
pub mod reconcile;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{Reward, RewardType};
use extend_challenge_common::settings::{RewardMode, Settings};
use futures::future::BoxFuture;

use crate::client_token::ClientToken;

pub use self::ags::{AgsRewardClient, RetryPolicy, WALLET_REASON_MAX, wallet_reason};
pub use self::metrics::{ReconcilerMetrics, RewardMetrics};

/// One grant: who gets what, and the key that identifies it at AGS.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    pub namespace: &'a str,
    pub user_id: &'a str,
    pub challenge_id: &'a str,
    pub goal_id: &'a str,
    pub reward: &'a Reward,
    /// The marker put into the grant, or the fulfillment transaction id.
    pub grant_key: &'a str,
    /// When the grant's intent was first recorded: AGS records from well before this cannot
    /// be this grant (bounds a search through wallet transactions).
    pub since: DateTime<Utc>,
}

/// What earlier attempts with the same grant key may have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing was ever sent with this key: grant.
    Fresh,
    /// An earlier attempt may have granted, and AGS has finished with it: if AGS holds the
    /// grant, report it; otherwise grant (with the same key).
    LookupThenGrant,
    /// An earlier attempt may have granted and AGS may still be processing it: if AGS holds
    /// the grant, report it; otherwise the grant stays in doubt (nothing is sent).
    LookupOnly,
}

/// How a grant succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// Granted by this call.
    Now,
    /// AGS already held the grant from an earlier attempt.
    Earlier,
}

/// Grants rewards. Object safe: the service holds an `Arc<dyn RewardGranter>`.
pub trait RewardGranter: Send + Sync {
    /// Grants `req.reward` to `req.user_id` at most once per `req.grant_key`, as `resume`
    /// says. Retries and the overall deadline are the implementation's business; the future
    /// resolves within it.
    fn grant<'a>(
        &'a self,
        req: &'a GrantRequest<'a>,
        resume: Resume,
    ) -> BoxFuture<'a, Result<Granted, GrantError>>;
}

/// Why a grant failed. `Display` is for logs; the service shows clients its own message.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Every attempt met a retryable failure (408, 429, 5xx, connection error), and none
    /// of them granted.
    #[error("reward grant failed after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted { attempts: u32, last_error: String },
    /// Platform answered a non-retryable status (a 4xx other than 408/429, or 401 twice).
    #[error("AGS Platform rejected the reward grant with HTTP {status}")]
    Rejected { status: u16, body: String },
    /// The overall deadline passed with no request in flight and nothing granted.
    #[error("reward grant did not finish before its deadline")]
    DeadlineExceeded,
    /// IAM refused the service's client credentials.
    #[error("AGS IAM refused the client credentials with HTTP {status}")]
    TokenRejected { status: u16 },
    /// The grant cannot be expressed as a Platform request (bad quantity, unusable id).
    #[error("invalid reward grant: {0}")]
    Invalid(String),
    /// AGS may or may not hold the grant (no answer, a late answer, a 5xx that could not be
    /// checked): it must be resolved before any new grant.
    #[error("reward grant in doubt: {reason}")]
    InDoubt { reason: String },
}

impl GrantError {
    /// The `outcome` label of `challenge_reward_grants_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            GrantError::RetriesExhausted { .. } => "retries_exhausted",
            GrantError::Rejected { .. } => "rejected",
            GrantError::DeadlineExceeded => "deadline_exceeded",
            GrantError::TokenRejected { .. } => "token_rejected",
            GrantError::Invalid(_) => "invalid",
            GrantError::InDoubt { .. } => "in_doubt",
        }
    }

    /// Whether AGS may hold the grant after all. Every other error is a definite answer:
    /// nothing was granted.
    pub fn may_have_granted(&self) -> bool {
        matches!(self, GrantError::InDoubt { .. })
    }
}

/// The granter the settings ask for: [`AgsRewardClient`] with the contract's retry policy, or
/// [`MockRewardClient`]. `token` is the service's client token, which the AGS client
/// authorises with.
pub fn from_settings(
    settings: &Settings,
    http: reqwest::Client,
    token: Arc<ClientToken>,
) -> Arc<dyn RewardGranter> {
    match settings.rewards.mode {
        RewardMode::Mock => {
            tracing::info!("REWARD_CLIENT_MODE=mock: rewards are logged, not granted");
            Arc::new(MockRewardClient::new())
        }
        RewardMode::Real => {
            if settings.ags.client_id.is_empty() || settings.ags.client_secret.is_empty() {
                tracing::warn!(
                    "REWARD_CLIENT_MODE=real without AB_CLIENT_ID/AB_CLIENT_SECRET: grants will fail"
                );
            }
            Arc::new(
                AgsRewardClient::new(
                    http,
                    &settings.ags.base_url,
                    &settings.ags.client_id,
                    settings.ags.client_secret.expose(),
                    RetryPolicy::default(),
                )
                .with_client_token(token)
                .with_dedup(settings.rewards.dedup),
            )
        }
    }
}

/// Always succeeds and logs the grant.
pub struct MockRewardClient {
    metrics: RewardMetrics,
}

impl MockRewardClient {
    pub fn new() -> Self {
        Self::with_metrics(RewardMetrics::global())
    }

    pub fn with_metrics(metrics: RewardMetrics) -> Self {
        MockRewardClient { metrics }
    }
}

impl Default for MockRewardClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RewardGranter for MockRewardClient {
    /// Always succeeds; a grant with an earlier attempt is "found" (the mock holds every
    /// grant it ever made).
    fn grant<'a>(
        &'a self,
        req: &'a GrantRequest<'a>,
        resume: Resume,
    ) -> BoxFuture<'a, Result<Granted, GrantError>> {
        Box::pin(async move {
            let reward = req.reward;
            tracing::info!(
                namespace = req.namespace,
                challenge_id = req.challenge_id,
                goal_id = req.goal_id,
                grant_key = req.grant_key,
                reward_type = reward.reward_type.as_str(),
                reward_id = %reward.reward_id,
                quantity = reward.quantity,
                "mock reward grant"
            );
            tracing::debug!(
                user_id = req.user_id,
                goal_id = req.goal_id,
                "mock reward grant recipient"
            );
            self.metrics.record(reward.reward_type, "mock");
            Ok(match resume {
                Resume::Fresh => Granted::Now,
                Resume::LookupThenGrant | Resume::LookupOnly => Granted::Earlier,
            })
        })
    }
}

/// Runs `pass` every `interval` until `shutdown` fires; a pass under way when it fires is
/// dropped (the reconciler and the auto-claimer hold nothing that dropping loses: their
/// leases and advisory locks end with them).
pub(crate) fn every<F, Fut>(
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                () = pass() => {}
            }
        }
    })
}

fn type_label(t: RewardType) -> &'static str {
    match t {
        RewardType::Item => "item",
        RewardType::Wallet => "wallet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reward() -> Reward {
        Reward {
            reward_type: RewardType::Item,
            reward_id: "sword".into(),
            quantity: 1,
        }
    }

    /// A grant of `reward` to u1 for c1/g1.
    fn request(reward: &Reward) -> GrantRequest<'_> {
        GrantRequest {
            namespace: "ns",
            user_id: "u1",
            challenge_id: "c1",
            goal_id: "g1",
            reward,
            grant_key: "k",
            since: Utc::now(),
        }
    }

    #[tokio::test]
    async fn mock_always_succeeds_and_counts() {
        let registry = prometheus::Registry::new();
        let metrics = RewardMetrics::new(&registry).unwrap();
        let mock = MockRewardClient::with_metrics(metrics.clone());
        let granter: &dyn RewardGranter = &mock;
        let reward = reward();
        let req = request(&reward);
        assert_eq!(
            granter.grant(&req, Resume::Fresh).await.unwrap(),
            Granted::Now
        );
        assert_eq!(
            granter.grant(&req, Resume::LookupOnly).await.unwrap(),
            Granted::Earlier
        );
        assert_eq!(metrics.count(RewardType::Item, "mock"), 2);
        assert_eq!(metrics.count(RewardType::Item, "granted"), 0);
    }

    /// With AGS at a closed port, only the mock can grant: the mock answers at once, the
    /// real client tries AGS and fails. Paused time skips the real client's backoffs.
    #[tokio::test(start_paused = true)]
    async fn from_settings_follows_reward_mode() {
        let granter = |mode: &str| {
            let mut map = std::collections::HashMap::new();
            map.insert("REWARD_CLIENT_MODE".to_string(), mode.to_string());
            map.insert("AB_BASE_URL".to_string(), "http://127.0.0.1:9".to_string());
            let settings = Settings::from_map(&map).unwrap();
            let http = reqwest::Client::new();
            from_settings(
                &settings,
                http.clone(),
                crate::client_token::ClientToken::from_settings(&settings, http),
            )
        };
        let reward = reward();
        let req = request(&reward);
        assert_eq!(
            granter("mock").grant(&req, Resume::Fresh).await.unwrap(),
            Granted::Now
        );
        let err = granter("real")
            .grant(&req, Resume::Fresh)
            .await
            .expect_err("the real client cannot reach AGS");
        assert!(!matches!(err, GrantError::Invalid(_)), "{err}");
    }
}
