//! Granting a goal's reward (CONTRACT §3.5): through AGS Platform (`REWARD_CLIENT_MODE=real`)
//! or logged only (`mock`).

mod ags;
mod metrics;

use std::sync::Arc;

use extend_challenge_common::config::{Reward, RewardType};
use extend_challenge_common::settings::{RewardMode, Settings};
use futures::future::BoxFuture;

pub use self::ags::{AgsRewardClient, RetryPolicy};
pub use self::metrics::RewardMetrics;

/// Grants rewards. Object safe: the service holds an `Arc<dyn RewardGranter>`.
pub trait RewardGranter: Send + Sync {
    /// Grants `reward` to `user_id` for completing `challenge_id`/`goal_id`. Retries and the
    /// overall deadline are the implementation's business; the future resolves within it.
    fn grant<'a>(
        &'a self,
        namespace: &'a str,
        user_id: &'a str,
        challenge_id: &'a str,
        goal_id: &'a str,
        reward: &'a Reward,
    ) -> BoxFuture<'a, Result<(), GrantError>>;
}

/// Why a grant failed. `Display` is for logs; the service shows clients its own message.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Every attempt met a retryable failure (408, 429, 5xx, connection error).
    #[error("reward grant failed after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted { attempts: u32, last_error: String },
    /// Platform answered a non-retryable status (a 4xx other than 408/429, or 401 twice).
    #[error("AGS Platform rejected the reward grant with HTTP {status}")]
    Rejected { status: u16, body: String },
    /// The overall deadline passed (during an attempt, or before another could fit).
    #[error("reward grant did not finish before its deadline")]
    DeadlineExceeded,
    /// IAM refused the service's client credentials.
    #[error("AGS IAM refused the client credentials with HTTP {status}")]
    TokenRejected { status: u16 },
    /// The grant cannot be expressed as a Platform request (bad quantity, unusable id).
    #[error("invalid reward grant: {0}")]
    Invalid(String),
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
        }
    }
}

/// The granter the settings ask for: [`AgsRewardClient`] with the contract's retry policy, or
/// [`MockRewardClient`].
pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Arc<dyn RewardGranter> {
    match settings.reward_mode {
        RewardMode::Mock => {
            tracing::info!("REWARD_CLIENT_MODE=mock: rewards are logged, not granted");
            Arc::new(MockRewardClient::new())
        }
        RewardMode::Real => {
            if settings.ab_client_id.is_empty() || settings.ab_client_secret.is_empty() {
                tracing::warn!(
                    "REWARD_CLIENT_MODE=real without AB_CLIENT_ID/AB_CLIENT_SECRET: grants will fail"
                );
            }
            Arc::new(AgsRewardClient::new(
                http,
                &settings.ab_base_url,
                &settings.ab_client_id,
                &settings.ab_client_secret,
                RetryPolicy::default(),
            ))
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
    fn grant<'a>(
        &'a self,
        namespace: &'a str,
        user_id: &'a str,
        challenge_id: &'a str,
        goal_id: &'a str,
        reward: &'a Reward,
    ) -> BoxFuture<'a, Result<(), GrantError>> {
        Box::pin(async move {
            tracing::info!(
                namespace,
                challenge_id,
                goal_id,
                reward_type = reward.reward_type.as_str(),
                reward_id = %reward.reward_id,
                quantity = reward.quantity,
                "mock reward grant"
            );
            tracing::debug!(user_id, goal_id, "mock reward grant recipient");
            self.metrics.record(reward.reward_type, "mock");
            Ok(())
        })
    }
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

    #[tokio::test]
    async fn mock_always_succeeds_and_counts() {
        let registry = prometheus::Registry::new();
        let metrics = RewardMetrics::new(&registry).unwrap();
        let mock = MockRewardClient::with_metrics(metrics.clone());
        let granter: &dyn RewardGranter = &mock;
        granter
            .grant("ns", "u1", "c1", "g1", &reward())
            .await
            .unwrap();
        assert_eq!(metrics.count(RewardType::Item, "mock"), 1);
        assert_eq!(metrics.count(RewardType::Item, "granted"), 0);
    }

    #[test]
    fn from_settings_follows_reward_mode() {
        let mut map = std::collections::HashMap::new();
        map.insert("REWARD_CLIENT_MODE".to_string(), "mock".to_string());
        let settings = Settings::from_map(&map).unwrap();
        // Both build without a runtime or network.
        let _mock = from_settings(&settings, reqwest::Client::new());
        map.insert("REWARD_CLIENT_MODE".to_string(), "real".to_string());
        let settings = Settings::from_map(&map).unwrap();
        let _real = from_settings(&settings, reqwest::Client::new());
    }
}
