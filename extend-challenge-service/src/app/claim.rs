//! `ClaimGoalReward` (CONTRACT §3.3): the row checked under a lock, a grant intent recorded
//! before AGS is called, the grant, and its outcome settled — or left in doubt for a retry
//! or the [`Reconciler`], which shares this module's timing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::Goal;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::{self, Status};
use extend_challenge_common::store::grants::{
    self, ClaimLock, GrantIntent, GrantState, Lease, NewIntent,
};
use extend_challenge_common::store::{player, player::PlayerGoalRow};

use super::{ChallengeService, Result};
use crate::catalog::reward_pb;
use crate::error::ServiceError;
use crate::rewards::reconcile::{self, Reconciler, Settled};
use crate::rewards::{Resume, key};
use crate::timefmt::{rfc3339, rfc3339_opt};

/// How long a claim may take in all (CONTRACT §3.3).
pub const CLAIM_DEADLINE: Duration = Duration::from_secs(10);
/// Postgres' own limits on the claim transaction (statement and idle-in-transaction
/// timeouts) sit this far beyond the client-side deadline: they only act if this process
/// stalls, never before the deadline.
const SERVER_SIDE_MARGIN: Duration = Duration::from_secs(2);
/// Kept back from the claim deadline for marking the row and committing.
const CLAIM_COMMIT_RESERVE: Duration = Duration::from_millis(750);
/// How long after an unanswered grant request AGS may still be processing it (default of
/// `REWARD_GRANT_SETTLE_SECONDS`).
pub const DEFAULT_GRANT_SETTLE: Duration = Duration::from_secs(30);
/// A claim meeting a row locked by another transaction tries again this many times, after
/// 20, 40, 80 ms, holding no connection meanwhile, before answering "in progress".
const BUSY_RETRIES: u32 = 3;
const BUSY_FIRST_WAIT: Duration = Duration::from_millis(20);

/// What step 1 of a claim decided.
enum Begun {
    /// The period's reward was granted earlier; the row is now marked claimed.
    AlreadyGranted { claimed_at: DateTime<Utc> },
    /// Grant under `owner`'s lease on `intent`.
    Grant {
        intent: Box<GrantIntent>,
        owner: String,
        resume: Resume,
    },
}

impl ChallengeService {
    /// Claims a goal's reward (CONTRACT §3.3) in three short steps; no transaction, row lock
    /// or pool connection is held while AGS is called:
    /// 1. lock the row without waiting, check it, record (or take over) the grant intent;
    /// 2. grant through AGS, resolving an earlier attempt with the same key first;
    /// 3. mark the row claimed and the intent granted, or record the refusal, or leave the
    ///    intent in doubt for a retry or the reconciler.
    pub async fn claim_goal_reward(
        &self,
        user_id: &str,
        req: pb::ClaimRewardRequest,
    ) -> Result<pb::ClaimRewardResponse> {
        let goal = self
            .inner
            .catalog
            .config()
            .goal_in(&req.challenge_id, &req.goal_id)
            .ok_or_else(|| ServiceError::GoalNotFound {
                goal_id: req.goal_id.clone(),
                challenge_id: req.challenge_id.clone(),
            })?
            .clone();
        let deadline = tokio::time::Instant::now() + self.claim_deadline;
        let begun = tokio::time::timeout_at(deadline, self.begin_claim(user_id, &goal))
            .await
            // Dropping the transaction rolls it back; nothing changed.
            .map_err(|_| ServiceError::ClaimTimedOut {
                goal_id: goal.id.clone(),
            })??;
        let (intent, owner, resume) = match begun {
            Begun::AlreadyGranted { claimed_at } => return Ok(claim_response(&goal, claimed_at)),
            Begun::Grant {
                intent,
                owner,
                resume,
            } => (intent, owner, resume),
        };
        let in_doubt = || ServiceError::GrantInDoubt {
            goal_id: goal.id.clone(),
        };
        let Some(reward) = reconcile::reward_of(&intent) else {
            return Err(in_doubt());
        };
        let grant = reconcile::request_of(&intent, &reward);
        let grant_until = deadline
            .checked_sub(CLAIM_COMMIT_RESERVE)
            .unwrap_or(deadline);
        let outcome =
            tokio::time::timeout_at(grant_until, self.inner.granter.grant(&grant, resume))
                .await
                .ok();
        if let Some(Err(e)) = &outcome {
            tracing::warn!(goal_id = %goal.id, error = %e, "reward grant failed");
        }
        let now = self.now();
        let next_check_at = now + reconcile::chrono_duration(self.grant_settle);
        let settled = tokio::time::timeout(
            reconcile::DB_LIMIT,
            reconcile::settle(
                &self.inner.pool,
                &intent,
                &owner,
                outcome.as_ref(),
                now,
                next_check_at,
            ),
        )
        .await;
        match settled {
            Ok(Ok(Settled::Granted { .. })) => Ok(claim_response(&goal, now)),
            Ok(Ok(Settled::Refused)) => Err(ServiceError::RewardGrantFailed {
                goal_id: goal.id.clone(),
            }),
            Ok(Ok(Settled::InDoubt)) => {
                tracing::warn!(
                    goal_id = %goal.id,
                    grant_key = %intent.grant_key,
                    "reward grant in doubt; a retry or the reconciler resolves it"
                );
                Err(in_doubt())
            }
            // The outcome could not be recorded: the intent stays pending under this
            // claim's lease, and is resolved (found or refused) once the lease ends.
            Ok(Err(error)) => {
                tracing::warn!(goal_id = %goal.id, %error, "cannot record the reward grant's outcome");
                Err(in_doubt())
            }
            Err(_) => {
                tracing::warn!(goal_id = %goal.id, "recording the reward grant's outcome timed out");
                Err(in_doubt())
            }
        }
    }

    /// Step 1: the row, checked, and the intent recorded or taken over. A row another
    /// transaction holds is retried briefly without holding a connection, then reported as
    /// a claim in progress.
    async fn begin_claim(&self, user_id: &str, goal: &Goal) -> Result<Begun> {
        let inner = &self.inner;
        let now = self.now();
        let period_key = key::period_key(goal, now);
        let limit = self.claim_deadline + SERVER_SIDE_MARGIN;
        let mut wait = BUSY_FIRST_WAIT;
        for round in 0..=BUSY_RETRIES {
            match grants::lock_for_claim(&inner.pool, user_id, &goal.id, limit).await? {
                ClaimLock::Locked(tx, row) => {
                    return self
                        .claim_locked(tx, row, user_id, goal, &period_key, now)
                        .await;
                }
                ClaimLock::Busy => {
                    // A claim working on the grant holds a lease on its intent: no point
                    // waiting. Otherwise the lock is a claim's or the event handler's
                    // short transaction.
                    let leased = grants::find(&inner.pool, user_id, &goal.id, &period_key)
                        .await?
                        .is_some_and(|i| i.state() == GrantState::Pending && i.is_leased(now));
                    if leased || round == BUSY_RETRIES {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        Err(ServiceError::ClaimInProgress {
            goal_id: goal.id.clone(),
        })
    }

    async fn claim_locked(
        &self,
        mut tx: player::ClaimTx,
        row: Option<PlayerGoalRow>,
        user_id: &str,
        goal: &Goal,
        period_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Begun> {
        let inner = &self.inner;
        let completed_at = self.check_claim(goal, row, now)?;
        // Every check runs before any recorded grant is looked at (CONTRACT §3.3): an
        // intent granted earlier in the period never answers for a claim that fails one.
        self.check_prerequisites(&mut tx, goal, now).await?;
        let existing = tx.intent(&goal.id, period_key).await?;
        let owner = uuid::Uuid::new_v4().to_string();
        let until = now + reconcile::chrono_duration(self.claim_deadline + reconcile::LEASE_MARGIN);
        let lease = |attempt: bool| Lease {
            owner: &owner,
            now,
            until,
            // Should this claim die, the reconciler takes over once the lease ends.
            next_check_at: until,
            attempt,
        };
        let (intent, resume) = match existing {
            None => {
                let reward_type = goal.reward.reward_type.as_str();
                let grant_key = key::grant_key(
                    &inner.namespace,
                    user_id,
                    &goal.challenge_id,
                    &goal.id,
                    period_key,
                );
                let new = NewIntent {
                    user_id,
                    goal_id: &goal.id,
                    period_key,
                    challenge_id: &goal.challenge_id,
                    namespace: &inner.namespace,
                    grant_key: &grant_key,
                    reward_type,
                    reward_id: &goal.reward.reward_id,
                    quantity: goal.reward.quantity,
                    goal_completed_at: completed_at,
                };
                (tx.create_intent(&new, &lease(true)).await?, Resume::Fresh)
            }
            Some(intent) => match intent.state() {
                // Granted, but the row was not marked (it could not be, or was reset within
                // the period): the period's reward is paid.
                GrantState::Granted => {
                    tx.mark_claimed_and_commit(&goal.id, now).await?;
                    return Ok(Begun::AlreadyGranted { claimed_at: now });
                }
                GrantState::Pending if intent.is_leased(now) => {
                    return Err(ServiceError::ClaimInProgress {
                        goal_id: goal.id.clone(),
                    });
                }
                // Refused earlier: nothing was granted, so this is a claim like a first one.
                GrantState::Failed => {
                    let taken = tx
                        .take_over_intent(&intent.grant_key, &lease(true), completed_at)
                        .await?;
                    (taken, Resume::LookupThenGrant)
                }
                // In doubt: resolved before any new grant.
                GrantState::Pending => {
                    let resume = reconcile::resume_for(&intent, now, self.grant_settle);
                    let attempt = resume != Resume::LookupOnly;
                    let taken = tx
                        .take_over_intent(&intent.grant_key, &lease(attempt), completed_at)
                        .await?;
                    (taken, resume)
                }
            },
        };
        tx.commit().await?;
        Ok(Begun::Grant {
            intent: Box::new(intent),
            owner,
            resume,
        })
    }

    /// The claim checks on the locked row, in the contract's order up to "not already
    /// claimed" (prerequisites come after, see [`Self::check_prerequisites`]). Returns the
    /// row's `completed_at`.
    fn check_claim(
        &self,
        goal: &Goal,
        row: Option<PlayerGoalRow>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(row) = row else {
            return Err(ServiceError::GoalNotCompleted {
                goal_id: goal.id.clone(),
                status: Status::NotStarted.as_str().to_string(),
            });
        };
        let stored = row.state();
        let viewed = progress::view(goal, &stored, now);
        if !stored.status.is_done() {
            return Err(ServiceError::GoalNotCompleted {
                goal_id: goal.id.clone(),
                status: viewed.status.as_str().to_string(),
            });
        }
        if !stored.is_active {
            return Err(ServiceError::GoalNotActive {
                goal_id: goal.id.clone(),
                challenge_id: goal.challenge_id.clone(),
            });
        }
        // Completed (or claimed) in a period that has since ended.
        if !viewed.status.is_done() {
            return Err(ServiceError::GoalRotated {
                goal_id: goal.id.clone(),
                challenge_id: goal.challenge_id.clone(),
            });
        }
        if viewed.status == Status::Claimed {
            return Err(ServiceError::AlreadyClaimed {
                goal_id: goal.id.clone(),
                claimed_at: rfc3339_opt(viewed.claimed_at),
            });
        }
        Ok(stored.completed_at)
    }

    /// The last claim check: every prerequisite completed or claimed.
    async fn check_prerequisites(
        &self,
        tx: &mut player::ClaimTx,
        goal: &Goal,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if goal.prerequisites.is_empty() {
            return Ok(());
        }
        let rows = tx.rows(&goal.prerequisites).await?;
        let config = self.inner.catalog.config();
        let status_of = |id: &str| {
            let row = rows.iter().find(|r| r.goal_id == id)?;
            let g = config.goal(id)?;
            Some(progress::view(g, &row.state(), now).status)
        };
        if progress::is_locked(goal, status_of) {
            return Err(ServiceError::PrerequisitesNotMet {
                goal_id: goal.id.clone(),
            });
        }
        Ok(())
    }

    /// The reconciler of abandoned grant intents, sharing this service's pool, granter,
    /// clock and timing.
    pub fn reconciler(&self) -> Reconciler {
        Reconciler::new(
            self.inner.pool.clone(),
            self.inner.granter.clone(),
            self.inner.clock.clone(),
            self.grant_settle,
            self.claim_deadline,
        )
    }
}

fn claim_response(goal: &Goal, claimed_at: DateTime<Utc>) -> pb::ClaimRewardResponse {
    pb::ClaimRewardResponse {
        goal_id: goal.id.clone(),
        status: Status::Claimed.as_str().to_string(),
        reward: Some(reward_pb(goal)),
        claimed_at: rfc3339(claimed_at),
    }
}
