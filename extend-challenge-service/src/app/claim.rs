//! `ClaimGoalReward` (CONTRACT §3.3, §7): the row checked under a lock, one grant intent
//! per reward recorded before AGS is called, the grants, and their outcomes settled — or
//! left in doubt for a retry or the [`Reconciler`], which shares this module's timing. A
//! retry grants only the rewards not yet granted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{ChallengeConfig, Goal};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::{self, Status};
use extend_challenge_common::store::grants::{
    self, ClaimLock, GrantIntent, GrantState, Lease, NewIntent,
};
use extend_challenge_common::store::{player, player::PlayerGoalRow};

use super::{ChallengeService, Result};
use crate::catalog::{reward_pb, rewards_pb};
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
    /// Every reward of the period was granted earlier; the row is now marked claimed.
    AlreadyGranted { claimed_at: DateTime<Utc> },
    /// Grant each of `work` (the rewards not yet granted) under `owner`'s lease.
    Grant {
        work: Vec<(GrantIntent, Resume)>,
        owner: String,
    },
}

/// How the grants of one claim ended, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    InDoubt,
    Refused,
    Granted,
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
        // The claim works with the catalog version it started with, to its end.
        let snap = self.snapshot();
        let config = snap.config();
        let goal = config
            .goal_in(&req.challenge_id, &req.goal_id)
            .ok_or_else(|| ServiceError::GoalNotFound {
                goal_id: req.goal_id.clone(),
                challenge_id: req.challenge_id.clone(),
            })?
            .clone();
        let deadline = tokio::time::Instant::now() + self.claim_deadline;
        let begun = tokio::time::timeout_at(deadline, self.begin_claim(config, user_id, &goal))
            .await
            // Dropping the transaction rolls it back; nothing changed.
            .map_err(|_| ServiceError::ClaimTimedOut {
                goal_id: goal.id.clone(),
            })??;
        let (work, owner) = match begun {
            Begun::AlreadyGranted { claimed_at } => return Ok(claim_response(&goal, claimed_at)),
            Begun::Grant { work, owner } => (work, owner),
        };
        let grant_until = deadline
            .checked_sub(CLAIM_COMMIT_RESERVE)
            .unwrap_or(deadline);
        // The rewards are granted side by side, each under its own key and settled on its
        // own: a reward granted stays granted whatever happens to the others. The row and
        // the answer share one `claimedAt`.
        let claimed_at = self.now();
        let outcomes = futures::future::join_all(work.iter().map(|(intent, resume)| {
            self.grant_one(&goal, intent, &owner, *resume, grant_until, claimed_at)
        }))
        .await;
        match outcomes.into_iter().min().unwrap_or(Outcome::Granted) {
            Outcome::Granted => Ok(claim_response(&goal, claimed_at)),
            Outcome::Refused => Err(ServiceError::RewardGrantFailed {
                goal_id: goal.id.clone(),
            }),
            Outcome::InDoubt => Err(ServiceError::GrantInDoubt {
                goal_id: goal.id.clone(),
            }),
        }
    }

    /// Step 2 and 3 for one reward: the grant under `owner`'s lease on `intent`, and its
    /// outcome recorded.
    async fn grant_one(
        &self,
        goal: &Goal,
        intent: &GrantIntent,
        owner: &str,
        resume: Resume,
        grant_until: tokio::time::Instant,
        claimed_at: DateTime<Utc>,
    ) -> Outcome {
        let Some(reward) = reconcile::reward_of(intent) else {
            return Outcome::InDoubt;
        };
        let grant = reconcile::request_of(intent, &reward);
        let outcome =
            tokio::time::timeout_at(grant_until, self.inner.granter.grant(&grant, resume))
                .await
                .ok();
        if let Some(Err(e)) = &outcome {
            tracing::warn!(goal_id = %goal.id, reward_index = intent.reward_index, error = %e, "reward grant failed");
        }
        let next_check_at = self.now() + reconcile::chrono_duration(self.grant_settle);
        let settled = tokio::time::timeout(
            reconcile::DB_LIMIT,
            reconcile::settle(
                &self.inner.pool,
                intent,
                owner,
                outcome.as_ref(),
                claimed_at,
                next_check_at,
            ),
        )
        .await;
        match settled {
            Ok(Ok(Settled::Granted { .. })) => Outcome::Granted,
            Ok(Ok(Settled::Refused)) => Outcome::Refused,
            Ok(Ok(Settled::InDoubt)) => {
                tracing::warn!(
                    goal_id = %goal.id,
                    grant_key = %intent.grant_key,
                    "reward grant in doubt; a retry or the reconciler resolves it"
                );
                Outcome::InDoubt
            }
            // The outcome could not be recorded: the intent stays pending under this
            // claim's lease, and is resolved (found or refused) once the lease ends.
            Ok(Err(error)) => {
                tracing::warn!(goal_id = %goal.id, %error, "cannot record the reward grant's outcome");
                Outcome::InDoubt
            }
            Err(_) => {
                tracing::warn!(goal_id = %goal.id, "recording the reward grant's outcome timed out");
                Outcome::InDoubt
            }
        }
    }

    /// Step 1: the row, checked, and the intent recorded or taken over. A row another
    /// transaction holds is retried briefly without holding a connection, then reported as
    /// a claim in progress.
    async fn begin_claim(
        &self,
        config: &ChallengeConfig,
        user_id: &str,
        goal: &Goal,
    ) -> Result<Begun> {
        let inner = &self.inner;
        let now = self.now();
        let limit = self.claim_deadline + SERVER_SIDE_MARGIN;
        let mut wait = BUSY_FIRST_WAIT;
        for round in 0..=BUSY_RETRIES {
            match grants::lock_for_claim(&inner.pool, user_id, &goal.id, limit).await? {
                ClaimLock::Locked(tx, row) => {
                    return self
                        .claim_locked(config, tx, row.map(|r| *r), user_id, goal, now)
                        .await;
                }
                ClaimLock::Busy => {
                    // A claim working on the grant holds a lease on its intent: no point
                    // waiting. Otherwise the lock is a claim's or the event handler's
                    // short transaction.
                    let leased = grants::leased(&inner.pool, user_id, &goal.id, now).await?;
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
        config: &ChallengeConfig,
        mut tx: player::ClaimTx,
        row: Option<PlayerGoalRow>,
        user_id: &str,
        goal: &Goal,
        now: DateTime<Utc>,
    ) -> Result<Begun> {
        let inner = &self.inner;
        let times_claimed = row.as_ref().map_or(0, |r| r.times_claimed);
        let assigned_at = row.as_ref().and_then(|r| r.assigned_at);
        let period_key = &key::after_resets(
            key::period_key(goal, times_claimed, assigned_at, now),
            tx.resets(),
        );
        let completed_at = self.check_claim(goal, row, now)?;
        // Every check runs before any recorded grant is looked at (CONTRACT §3.3): an
        // intent granted earlier in the period never answers for a claim that fails one.
        self.check_prerequisites(config, &mut tx, goal, now).await?;
        let existing = tx.intents(&goal.id, period_key).await?;
        if existing
            .iter()
            .any(|i| i.state() == GrantState::Pending && i.is_leased(now))
        {
            return Err(ServiceError::ClaimInProgress {
                goal_id: goal.id.clone(),
            });
        }
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
        // Every reward the goal has, and any intent recorded for a reward the config no
        // longer lists (what the player earned is paid).
        let mut indexes: Vec<i16> = (0..goal.rewards.len())
            .filter_map(|i| i16::try_from(i).ok())
            .collect();
        indexes.extend(existing.iter().map(|i| i.reward_index));
        indexes.sort_unstable();
        indexes.dedup();
        let mut work = Vec::new();
        for index in indexes {
            match existing.iter().find(|i| i.reward_index == index) {
                None => {
                    let Some(reward) = goal.rewards.get(index as usize) else {
                        continue;
                    };
                    let grant_key = key::reward_grant_key(
                        &inner.namespace,
                        user_id,
                        &goal.challenge_id,
                        &goal.id,
                        period_key,
                        index,
                    );
                    let new = NewIntent {
                        user_id,
                        goal_id: &goal.id,
                        period_key,
                        reward_index: index,
                        challenge_id: &goal.challenge_id,
                        namespace: &inner.namespace,
                        grant_key: &grant_key,
                        reward_type: reward.reward_type.as_str(),
                        reward_id: &reward.reward_id,
                        quantity: reward.quantity,
                        goal_completed_at: completed_at,
                    };
                    work.push((tx.create_intent(&new, &lease(true)).await?, Resume::Fresh));
                }
                Some(intent) => match intent.state() {
                    // Paid earlier in the period (a retry after a partly granted claim, or
                    // the row was reset within the period).
                    GrantState::Granted => {}
                    // Refused earlier: nothing was granted, so this is like a first grant.
                    GrantState::Failed => {
                        let taken = tx
                            .take_over_intent(&intent.grant_key, &lease(true), completed_at)
                            .await?;
                        work.push((taken, Resume::LookupThenGrant));
                    }
                    // In doubt: resolved before any new grant.
                    GrantState::Pending => {
                        let resume = reconcile::resume_for(intent, now, self.grant_settle);
                        let attempt = resume != Resume::LookupOnly;
                        let taken = tx
                            .take_over_intent(&intent.grant_key, &lease(attempt), completed_at)
                            .await?;
                        work.push((taken, resume));
                    }
                },
            }
        }
        if work.is_empty() {
            // Every reward of the period is paid: the goal is claimed.
            tx.mark_claimed_and_commit(&goal.id, now).await?;
            return Ok(Begun::AlreadyGranted { claimed_at: now });
        }
        tx.commit().await?;
        Ok(Begun::Grant { work, owner })
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
        // A repeatable goal claimed before reads as started again: not completed (yet).
        let done = if goal.repeat.is_some() {
            viewed.status.is_done()
        } else {
            stored.status.is_done()
        };
        if !done {
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
        config: &ChallengeConfig,
        tx: &mut player::ClaimTx,
        goal: &Goal,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if goal.prerequisites.is_empty() {
            return Ok(());
        }
        let rows = tx.rows(&goal.prerequisites).await?;
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
        rewards: rewards_pb(goal),
    }
}
