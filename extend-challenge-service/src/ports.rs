//! Stand-ins for the auth and rewards modules until they land on main.

use std::sync::Arc;

use futures::future::BoxFuture;

use extend_challenge_common::config::Reward;
use extend_challenge_common::settings::Settings;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GrantError(pub String);

pub trait RewardGranter: Send + Sync {
    fn grant<'a>(
        &'a self,
        namespace: &'a str,
        user_id: &'a str,
        challenge_id: &'a str,
        goal_id: &'a str,
        reward: &'a Reward,
    ) -> BoxFuture<'a, Result<(), GrantError>>;
}

pub struct MockGranter;

impl RewardGranter for MockGranter {
    fn grant<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a Reward,
    ) -> BoxFuture<'a, Result<(), GrantError>> {
        Box::pin(async { Ok(()) })
    }
}

pub fn rewards_from_settings(_: &Settings, _: reqwest::Client) -> Arc<dyn RewardGranter> {
    Arc::new(MockGranter)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

impl AuthError {
    pub fn code(&self) -> tonic::Code {
        tonic::Code::Unauthenticated
    }
}

#[derive(Clone)]
pub struct Authenticator;

impl Authenticator {
    pub fn from_settings(_: &Settings, _: reqwest::Client) -> Self {
        Authenticator
    }

    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<String, AuthError> {
        Ok(headers
            .get("x-mock-user-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or("test-user-id")
            .to_string())
    }
}
