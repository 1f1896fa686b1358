//! `GetGoalEvents` (CONTRACT §10): why an event did or did not count. The entries are
//! written by the event handler after each batch (`store::trail`, where the storage and
//! its loss window are explained); this only reads them back, newest first.

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::store::trail;

use super::{ChallengeService, Result, challenge_index};
use crate::error::ServiceError;
use crate::timefmt::rfc3339;

impl ChallengeService {
    /// The trail of `user_id`'s goal `goal_id` of `challenge_id` (404 for a goal not in
    /// that challenge).
    pub async fn get_goal_events(
        &self,
        user_id: &str,
        challenge_id: &str,
        goal_id: &str,
    ) -> Result<pb::GetGoalEventsResponse> {
        let snap = self.snapshot();
        let ci = challenge_index(&snap, challenge_id)?;
        if snap.goal_index_in(ci, goal_id).is_none() {
            return Err(ServiceError::GoalNotFound {
                goal_id: goal_id.to_string(),
                challenge_id: challenge_id.to_string(),
            });
        }
        let rows = trail::recent(&self.inner.pool, user_id, goal_id).await?;
        let events = rows
            .into_iter()
            .map(|r| pb::GoalEvent {
                event_id: r.event_id,
                event_type: r.event_type,
                stat_code: r.stat_code,
                // Stored from the handler's clamped `i32`.
                value: i32::try_from(r.value).unwrap_or(if r.value < 0 {
                    i32::MIN
                } else {
                    i32::MAX
                }),
                received_at: rfc3339(r.received_at),
                result: if r.reason.is_some() {
                    "ignored"
                } else {
                    "counted"
                }
                .to_string(),
                reason: r.reason.unwrap_or_default(),
                progress_before: r.progress_before,
                progress_after: r.progress_after,
            })
            .collect();
        Ok(pb::GetGoalEventsResponse { events })
    }
}
