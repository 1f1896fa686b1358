//! Rewards beyond one goal's claim (CONTRACT §7): `ClaimChallengeRewards` (every goal of a
//! challenge that passes the claim checks, through the one claim of [`super::claim`]) and
//! `GetRewardHistory` (the player's grant intents, newest first, paged).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::store::grants::{self, GrantIntent, HistoryCursor};
use futures::StreamExt;

use super::{ChallengeService, Result};
use crate::error::ServiceError;
use crate::timefmt::rfc3339_opt;

/// Claims of one claim-all running side by side.
const CLAIM_ALL_CONCURRENCY: usize = 4;
/// The history's page size when none is asked for, and the largest one allowed.
pub const DEFAULT_HISTORY_PAGE: i32 = 20;
pub const MAX_HISTORY_PAGE: i32 = 100;

impl ChallengeService {
    /// Claims every goal of the challenge that passes the claim checks. Each goal gets its
    /// own claim (the same checks, order and grant state machine as `ClaimGoalReward`);
    /// goals whose claim fails are listed in `skipped` with that claim's code and message,
    /// in the challenge's goal order. A database outage fails the whole call (the claims
    /// made before it stand; a retry lists them as already claimed).
    pub async fn claim_challenge_rewards(
        &self,
        user_id: &str,
        req: pb::ClaimChallengeRewardsRequest,
    ) -> Result<pb::ClaimChallengeRewardsResponse> {
        let snap = self.snapshot();
        let config = snap.config();
        let challenge = config
            .challenge(&req.challenge_id)
            .ok_or_else(|| ServiceError::ChallengeNotFound(req.challenge_id.clone()))?;
        let goals: Vec<String> = challenge.goals.iter().map(|g| g.id.clone()).collect();
        let results: Vec<(String, Result<pb::ClaimRewardResponse>)> = futures::stream::iter(goals)
            .map(|goal_id| async {
                let req = pb::ClaimRewardRequest {
                    challenge_id: req.challenge_id.clone(),
                    goal_id: goal_id.clone(),
                };
                let result = self.claim_goal_reward(user_id, req).await;
                (goal_id, result)
            })
            .buffered(CLAIM_ALL_CONCURRENCY)
            .collect()
            .await;
        let mut resp = pb::ClaimChallengeRewardsResponse {
            challenge_id: req.challenge_id.clone(),
            ..Default::default()
        };
        for (goal_id, result) in results {
            match result {
                Ok(claimed) => resp.claimed.push(claimed),
                Err(e @ (ServiceError::Unavailable(_) | ServiceError::Database(_))) => {
                    return Err(e);
                }
                Err(e) => resp.skipped.push(pb::SkippedGoal {
                    goal_id,
                    code: e.code() as i32,
                    message: e.to_string(),
                }),
            }
        }
        Ok(resp)
    }

    /// The player's reward grants, newest first: one entry per reward of each claim, with
    /// its state (`granted`, `pending` while in doubt or under way, `failed` when AGS
    /// refused it).
    pub async fn get_reward_history(
        &self,
        user_id: &str,
        req: pb::GetRewardHistoryRequest,
    ) -> Result<pb::GetRewardHistoryResponse> {
        let size = match req.page_size {
            0 => DEFAULT_HISTORY_PAGE,
            n @ 1..=MAX_HISTORY_PAGE => n,
            n => {
                return Err(ServiceError::InvalidArgument(format!(
                    "pageSize must be between 1 and {MAX_HISTORY_PAGE}, got {n}"
                )));
            }
        };
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(decode_token(token)?),
        };
        let mut rows = grants::history(
            &self.inner.pool,
            user_id,
            after.as_ref(),
            i64::from(size) + 1,
        )
        .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => encode_token(&HistoryCursor::after(last)),
            _ => String::new(),
        };
        Ok(pb::GetRewardHistoryResponse {
            rewards: rows.iter().map(grant_pb).collect(),
            next_page_token,
        })
    }
}

fn grant_pb(g: &GrantIntent) -> pb::RewardGrant {
    pb::RewardGrant {
        challenge_id: g.challenge_id.clone(),
        goal_id: g.goal_id.clone(),
        period: g.period_key.clone(),
        r#type: g.reward_type.clone(),
        reward_id: g.reward_id.clone(),
        quantity: g.quantity,
        state: g.state().as_str().to_string(),
        granted_at: rfc3339_opt(g.granted_at),
    }
}

/// The page token: base64url of `[created_at µs, reward index, goal id, period]` (JSON).
/// Opaque to clients; only this service reads it back.
fn encode_token(c: &HistoryCursor) -> String {
    let parts = serde_json::json!([
        c.created_at.timestamp_micros(),
        c.reward_index,
        c.goal_id,
        c.period_key
    ]);
    URL_SAFE_NO_PAD.encode(parts.to_string())
}

fn decode_token(token: &str) -> Result<HistoryCursor> {
    let bad = || ServiceError::InvalidArgument("invalid pageToken".to_string());
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let (micros, reward_index, goal_id, period_key): (i64, i16, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let created_at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(HistoryCursor {
        created_at,
        goal_id,
        period_key,
        reward_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let c = HistoryCursor {
            created_at: DateTime::<Utc>::from_timestamp_micros(1_762_257_600_123_456).unwrap(),
            goal_id: "kill-10".into(),
            period_key: "daily:2025-11-04".into(),
            reward_index: 2,
        };
        let token = encode_token(&c);
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
        );
        assert_eq!(decode_token(&token).unwrap(), c);
        for bad in ["x", "!!", &URL_SAFE_NO_PAD.encode("[1,2]")] {
            assert!(matches!(
                decode_token(bad),
                Err(ServiceError::InvalidArgument(_))
            ));
        }
    }
}
