//! `DeleteUserData` (CONTRACT §3.6): the player's rows erased at once, a tombstone against
//! re-creation from earlier events, a rate limit checked in the database, and an audit line
//! for every outcome.

use std::time::Duration;

use extend_challenge_common::pb::service as pb;

use super::{ChallengeService, Result, count_i32};
use crate::error::ServiceError;

/// One erasure per user per this long (CONTRACT §3.6).
pub const ERASURE_RATE_LIMIT: Duration = Duration::from_secs(60);

impl ChallengeService {
    /// Erases every row the service holds about `user_id` (progress, grant intents, dead
    /// letters) at once and durably, and records the tombstone that keeps the event
    /// handler from re-creating them from earlier events (`store::erasure`). Refused with
    /// `ResourceExhausted` when the user's previous erasure is less than a minute old —
    /// checked in the database, so across replicas and both transports. `transport` goes
    /// into the audit line.
    pub async fn delete_user_data(
        &self,
        user_id: &str,
        transport: &'static str,
    ) -> Result<pb::DeleteUserDataResponse> {
        use extend_challenge_common::store::erasure::{self, Erasure};
        let namespace = &self.inner.namespace;
        let erased = erasure::erase_user(
            &self.inner.pool,
            user_id,
            namespace,
            self.now(),
            Some(ERASURE_RATE_LIMIT),
        )
        .await;
        match erased {
            Ok(Erasure::Erased(done)) => {
                tracing::info!(
                    audit = true,
                    action = "gdpr_user_data_deletion",
                    outcome = "completed",
                    source = transport,
                    user_id,
                    namespace = %namespace,
                    rows = done.progress_rows,
                    grant_rows = done.grant_rows,
                    dead_letter_rows = done.dead_letter_rows,
                    "player data erased"
                );
                Ok(pb::DeleteUserDataResponse {
                    user_id: user_id.to_string(),
                    rows_deleted: count_i32(done.progress_rows as usize),
                })
            }
            Ok(Erasure::RateLimited) => {
                tracing::info!(
                    audit = true,
                    action = "gdpr_user_data_deletion",
                    outcome = "rate_limited",
                    source = transport,
                    user_id,
                    namespace = %namespace,
                    rows = 0,
                    "player data erasure refused: the previous one is less than a minute old"
                );
                Err(ServiceError::ErasureRateLimited)
            }
            Err(e) => {
                tracing::warn!(
                    audit = true,
                    action = "gdpr_user_data_deletion",
                    outcome = "failed",
                    source = transport,
                    user_id,
                    namespace = %namespace,
                    rows = 0,
                    "player data erasure failed; nothing was deleted"
                );
                Err(e.into())
            }
        }
    }
}
