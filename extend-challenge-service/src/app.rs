//! The player API's logic: one implementation behind both transports. Methods take the
//! authenticated user id and the protobuf request, and return the protobuf response or a
//! [`ServiceError`]. The REST adapter additionally uses the JSON fast paths
//! ([`ChallengeService::challenges_json`], [`ChallengeService::challenge_json`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::{self, Status};
use extend_challenge_common::rotation;
use extend_challenge_common::store::grants::{
    self, ClaimLock, GrantIntent, GrantState, Lease, NewIntent,
};
use extend_challenge_common::store::{self, player, player::NewGoalRow, player::PlayerGoalRow};
use rand::Rng;
use sqlx::PgPool;

use crate::catalog::{Catalog, PlayerView, requirement_pb, reward_pb};
use crate::error::ServiceError;
use crate::rewards::reconcile::{self, Reconciler, Settled};
use crate::rewards::{Resume, RewardGranter, key};
use crate::timefmt::{rfc3339, rfc3339_opt};
use extend_challenge_common::clock::Clock;

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
/// One erasure per user per this long (CONTRACT §3.6).
pub const ERASURE_RATE_LIMIT: Duration = Duration::from_secs(60);

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

pub type Result<T> = std::result::Result<T, ServiceError>;

/// The one service type. Cheap to clone.
#[derive(Clone)]
pub struct ChallengeService {
    inner: Arc<Inner>,
    claim_deadline: Duration,
    grant_settle: Duration,
    initialize_gate: InitializeGate,
}

/// Admission of `InitializePlayer` calls (the heavy write: hundreds of rows in, a ~200 KB
/// answer out). Without it every call in flight builds its insert arrays and encodes its
/// statement before queueing for a pool connection: 500 first-time players in flight held
/// ~100 MiB of queued statements (BENCHMARKS.md, initialize ramp). Admitted calls are at
/// most the pool's size, so they hold what the pool can use; the rest wait here holding
/// nothing, and give up with `Unavailable` after the pool's own acquire timeout, as they
/// did when they waited for a connection instead.
#[derive(Clone)]
struct InitializeGate {
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl InitializeGate {
    fn new(permits: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            wait,
        }
    }
}

struct Inner {
    catalog: Catalog,
    pool: PgPool,
    granter: Arc<dyn RewardGranter>,
    clock: Clock,
    namespace: String,
}

impl ChallengeService {
    pub fn new(
        config: Arc<ChallengeConfig>,
        pool: PgPool,
        granter: Arc<dyn RewardGranter>,
        clock: Clock,
        namespace: impl Into<String>,
    ) -> Self {
        let initialize_gate = InitializeGate::new(
            pool.options().get_max_connections().max(1) as usize,
            pool.options().get_acquire_timeout(),
        );
        ChallengeService {
            initialize_gate,
            inner: Arc::new(Inner {
                catalog: Catalog::new(config),
                pool,
                granter,
                clock,
                namespace: namespace.into(),
            }),
            claim_deadline: CLAIM_DEADLINE,
            grant_settle: DEFAULT_GRANT_SETTLE,
        }
    }

    /// A handle with another settle time for grants in doubt (`REWARD_GRANT_SETTLE_SECONDS`).
    pub fn with_grant_settle(mut self, settle: Duration) -> Self {
        self.grant_settle = settle;
        self
    }

    /// A handle with another claim deadline (tests).
    pub fn with_claim_deadline(mut self, deadline: Duration) -> Self {
        self.claim_deadline = deadline;
        self
    }

    /// A handle admitting at most `permits` initializes at a time, the others waiting up to
    /// `wait` (default: the pool's size and acquire timeout).
    pub fn with_initialize_limit(mut self, permits: usize, wait: Duration) -> Self {
        self.initialize_gate = InitializeGate::new(permits, wait);
        self
    }

    /// The semaphore initializes are admitted by (tests hold its permits).
    pub fn initialize_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.initialize_gate.permits
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    // ---- reads -------------------------------------------------------------------------

    /// Every row of the player, viewed now.
    async fn user_view(&self, user_id: &str) -> Result<PlayerView<'_>> {
        let catalog = &self.inner.catalog;
        Ok(crate::rows::user_view(&self.inner.pool, catalog, user_id, self.now()).await?)
    }

    /// `GET /v1/challenges` as JSON, spliced from the pre-serialized config.
    pub async fn challenges_json(&self, user_id: &str, active_only: bool) -> Result<String> {
        let view = self.user_view(user_id).await?;
        Ok(self.inner.catalog.challenges_json(&view, active_only))
    }

    /// `GetUserChallenges` as an encoded `GetChallengesResponse` (the gRPC fast path).
    pub async fn challenges_proto(&self, user_id: &str, active_only: bool) -> Result<Vec<u8>> {
        let view = self.user_view(user_id).await?;
        Ok(self.inner.catalog.challenges_proto(&view, active_only))
    }

    pub async fn get_user_challenges(
        &self,
        user_id: &str,
        req: pb::GetChallengesRequest,
    ) -> Result<pb::GetChallengesResponse> {
        let view = self.user_view(user_id).await?;
        Ok(self.inner.catalog.challenges_pb(&view, req.active_only))
    }

    async fn challenge_view_rows(&self, user_id: &str, ci: usize) -> Result<Vec<PlayerGoalRow>> {
        let c = &self.inner.catalog.challenges()[ci];
        Ok(
            player::challenge_rows(&self.inner.pool, user_id, &c.id, &c.external_prerequisites)
                .await?,
        )
    }

    fn challenge_index(&self, challenge_id: &str) -> Result<usize> {
        self.inner
            .catalog
            .challenge_index(challenge_id)
            .ok_or_else(|| ServiceError::ChallengeNotFound(challenge_id.to_string()))
    }

    /// `GET /v1/challenges/{challenge_id}` as JSON.
    pub async fn challenge_json(
        &self,
        user_id: &str,
        challenge_id: &str,
        active_only: bool,
    ) -> Result<String> {
        let ci = self.challenge_index(challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&self.inner.catalog, &rows, self.now());
        Ok(self.inner.catalog.challenge_json(ci, &view, active_only))
    }

    pub async fn get_user_challenge(
        &self,
        user_id: &str,
        req: pb::GetChallengeRequest,
    ) -> Result<pb::Challenge> {
        let ci = self.challenge_index(&req.challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&self.inner.catalog, &rows, self.now());
        Ok(self.inner.catalog.challenge_pb(ci, &view, req.active_only))
    }

    pub fn get_rotation_status(
        &self,
        req: pb::GetRotationStatusRequest,
    ) -> Result<pb::GetRotationStatusResponse> {
        let ci = self.challenge_index(&req.challenge_id)?;
        let challenge = &self.inner.catalog.config().challenges[ci];
        let now = self.now();
        let rotation = match challenge.rotation() {
            None => pb::RotationInfo {
                enabled: false,
                r#type: String::new(),
                schedule: String::new(),
                current_period: Some(pb::RotationPeriod::default()),
                next_period: Some(pb::RotationPeriod::default()),
            },
            Some(r) => {
                let period = |p: rotation::Period| pb::RotationPeriod {
                    start_time: rfc3339(p.start),
                    end_time: rfc3339(p.end),
                    expires_in_seconds: p.seconds_left(now),
                };
                pb::RotationInfo {
                    enabled: true,
                    r#type: "global".to_string(),
                    schedule: r.schedule.as_str().to_string(),
                    current_period: Some(period(rotation::period_containing(r.schedule, now))),
                    next_period: Some(period(rotation::next_period(r.schedule, now))),
                }
            }
        };
        Ok(pb::GetRotationStatusResponse {
            challenge_id: req.challenge_id,
            rotation: Some(rotation),
        })
    }

    /// `{"status":"healthy"}` while Postgres answers.
    pub async fn health_check(&self) -> Result<pb::HealthCheckResponse> {
        if store::ping(&self.inner.pool).await {
            Ok(pb::HealthCheckResponse {
                status: "healthy".to_string(),
            })
        } else {
            Err(ServiceError::Unhealthy)
        }
    }

    // ---- writes ------------------------------------------------------------------------

    /// Assigns every default goal the player lacks (also goals added to the config since the
    /// player's first call) and returns every active goal.
    pub async fn initialize_player(&self, user_id: &str) -> Result<pb::InitializeResponse> {
        let gate = &self.initialize_gate;
        let _permit = match tokio::time::timeout(gate.wait, gate.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // Timed out (or the semaphore closed, which nothing does): as a pool timeout.
            _ => return Err(ServiceError::Unavailable(sqlx::Error::PoolTimedOut)),
        };
        let now = self.now();
        let catalog = &self.inner.catalog;
        let new_rows: Vec<NewGoalRow> = catalog
            .config()
            .default_goals()
            .iter()
            .map(|g| NewGoalRow {
                goal_id: g.id.clone(),
                challenge_id: g.challenge_id.clone(),
                state: progress::new_assignment(g, now),
            })
            .collect();
        let done =
            player::initialize(&self.inner.pool, user_id, &self.inner.namespace, &new_rows).await?;
        // Store what the player is shown: rows whose period ended are rolled over in the
        // table too (fresh `expires_at`, reset or carried-over state), as the reference does.
        let rollovers: Vec<player::Rollover> = done
            .active
            .iter()
            .filter_map(|r| {
                let goal = &catalog.goal(catalog.goal_index(&r.goal_id)?).goal;
                let read = r.state();
                let rolled = progress::view(goal, &read, now);
                (rolled != read).then(|| player::Rollover {
                    goal_id: r.goal_id.clone(),
                    read,
                    rolled,
                })
            })
            .collect();
        player::persist_rollover(&self.inner.pool, user_id, &rollovers, now).await?;
        let view = PlayerView::new(catalog, &done.active, now);
        let mut active: Vec<usize> = done
            .active
            .iter()
            .filter_map(|r| catalog.goal_index(&r.goal_id))
            .collect();
        // Config order, whatever order the rows came back in.
        active.sort_unstable();
        active.dedup();
        let assigned_goals: Vec<pb::AssignedGoal> = active
            .iter()
            .map(|&gi| {
                let g = &catalog.goal(gi).goal;
                let d = view.display(gi);
                pb::AssignedGoal {
                    challenge_id: g.challenge_id.clone(),
                    goal_id: g.id.clone(),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    is_active: d.is_active,
                    assigned_at: rfc3339_opt(d.assigned_at),
                    expires_at: rfc3339_opt(d.expires_at),
                    progress: d.progress,
                    target: g.requirement.target_value,
                    status: d.status.as_str().to_string(),
                    requirement: Some(requirement_pb(g)),
                    reward: Some(reward_pb(g)),
                }
            })
            .collect();
        Ok(pb::InitializeResponse {
            new_assignments: count_i32(done.inserted),
            total_active: count_i32(assigned_goals.len()),
            assigned_goals,
        })
    }

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

    pub async fn set_goal_active(
        &self,
        user_id: &str,
        req: pb::SetGoalActiveRequest,
    ) -> Result<pb::SetGoalActiveResponse> {
        let catalog = &self.inner.catalog;
        let goal = catalog
            .config()
            .goal_in(&req.challenge_id, &req.goal_id)
            .ok_or_else(|| ServiceError::GoalNotFound {
                goal_id: req.goal_id.clone(),
                challenge_id: req.challenge_id.clone(),
            })?;
        let now = self.now();
        let new = NewGoalRow {
            goal_id: goal.id.clone(),
            challenge_id: goal.challenge_id.clone(),
            state: progress::new_assignment(goal, now),
        };
        let row = player::set_active(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            &new,
            req.is_active,
            now,
        )
        .await?;
        Ok(pb::SetGoalActiveResponse {
            challenge_id: req.challenge_id,
            goal_id: req.goal_id,
            is_active: row.is_active,
            assigned_at: rfc3339_opt(row.assigned_at),
            message: if row.is_active {
                "Goal activated successfully"
            } else {
                "Goal deactivated successfully"
            }
            .to_string(),
        })
    }

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
    async fn begin_claim(
        &self,
        user_id: &str,
        goal: &extend_challenge_common::config::Goal,
    ) -> Result<Begun> {
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
        goal: &extend_challenge_common::config::Goal,
        period_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Begun> {
        let inner = &self.inner;
        let completed_at = self.check_claim(goal, row, now)?;
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
                self.check_prerequisites(&mut tx, goal, now).await?;
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
                    self.check_prerequisites(&mut tx, goal, now).await?;
                    let taken = tx
                        .take_over_intent(&intent.grant_key, &lease(true), completed_at)
                        .await?;
                    (taken, Resume::LookupThenGrant)
                }
                // In doubt: resolved before anything else (its prerequisites were met when
                // it was recorded).
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
        goal: &extend_challenge_common::config::Goal,
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
        goal: &extend_challenge_common::config::Goal,
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

    /// Activates the listed goals (duplicates collapsed); with `replace_existing`, the
    /// challenge's other active goals are deactivated.
    pub async fn batch_select_goals(
        &self,
        user_id: &str,
        req: pb::BatchSelectRequest,
    ) -> Result<pb::GoalSelectionResponse> {
        if req.goal_ids.is_empty() {
            return Err(ServiceError::GoalIdsEmpty);
        }
        let ci = self.challenge_index(&req.challenge_id)?;
        let catalog = &self.inner.catalog;
        let mut seen = HashSet::with_capacity(req.goal_ids.len());
        let mut selected = Vec::with_capacity(req.goal_ids.len());
        for id in &req.goal_ids {
            let gi = catalog
                .goal_index_in(ci, id)
                .ok_or_else(|| ServiceError::SelectedGoalNotFound(id.clone()))?;
            if seen.insert(gi) {
                selected.push(gi);
            }
        }
        let replace = req.replace_existing;
        self.select(user_id, ci, move |_view| Ok(selected), replace)
            .await
    }

    /// Activates up to `count` goals drawn uniformly from those the player can still work
    /// on: not completed, not claimed, not locked, and (with `exclude_active` or
    /// `replace_existing`) not active.
    pub async fn random_select_goals(
        &self,
        user_id: &str,
        req: pb::RandomSelectRequest,
    ) -> Result<pb::GoalSelectionResponse> {
        if req.count <= 0 {
            return Err(ServiceError::CountNotPositive);
        }
        let ci = self.challenge_index(&req.challenge_id)?;
        let count = req.count;
        let exclude_active = req.exclude_active || req.replace_existing;
        let goals = self.inner.catalog.challenges()[ci].goals.clone();
        let pick = move |view: &PlayerView<'_>| {
            let pool: Vec<usize> = goals
                .clone()
                .filter(|&gi| {
                    let unavailable = view.status(gi).is_done()
                        || view.is_locked(gi)
                        || (exclude_active && view.is_active(gi));
                    !unavailable
                })
                .collect();
            if pool.is_empty() {
                return Err(ServiceError::InsufficientGoals { requested: count });
            }
            Ok(sample(&mut rand::rng(), &pool, count as usize))
        };
        self.select(user_id, ci, pick, req.replace_existing).await
    }

    /// The common selection transaction: `pick` chooses from the locked rows.
    async fn select<F>(
        &self,
        user_id: &str,
        ci: usize,
        pick: F,
        replace_existing: bool,
    ) -> Result<pb::GoalSelectionResponse>
    where
        F: FnOnce(&PlayerView<'_>) -> Result<Vec<usize>>,
    {
        let catalog = &self.inner.catalog;
        let challenge = &catalog.challenges()[ci];
        let now = self.now();
        let mut total_active = 0usize;
        let plan = |rows: &[PlayerGoalRow]| -> Result<player::SelectionPlan> {
            let view = PlayerView::new(catalog, rows, now);
            let selected = pick(&view)?;
            let chosen: HashSet<usize> = selected.iter().copied().collect();
            let mut deactivate = Vec::new();
            let mut still_active = 0usize;
            for gi in challenge.goals.clone() {
                if view.is_active(gi) && !chosen.contains(&gi) {
                    if replace_existing {
                        deactivate.push(catalog.goal(gi).goal.id.clone());
                    } else {
                        still_active += 1;
                    }
                }
            }
            total_active = still_active + selected.len();
            let activate = selected
                .iter()
                .map(|&gi| {
                    let g = &catalog.goal(gi).goal;
                    NewGoalRow {
                        goal_id: g.id.clone(),
                        challenge_id: g.challenge_id.clone(),
                        state: progress::new_assignment(g, now),
                    }
                })
                .collect();
            Ok(player::SelectionPlan {
                deactivate,
                activate,
            })
        };
        let (plan, activated) = player::select_goals(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            &challenge.id,
            &challenge.external_prerequisites,
            now,
            plan,
        )
        .await?;
        let view = PlayerView::new(catalog, &activated, now);
        let selected_goals = plan
            .activate
            .iter()
            .filter_map(|n| catalog.goal_index(&n.goal_id))
            .map(|gi| {
                let g = &catalog.goal(gi).goal;
                let d = view.display(gi);
                pb::SelectedGoal {
                    goal_id: g.id.clone(),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    requirement: Some(requirement_pb(g)),
                    reward: Some(reward_pb(g)),
                    status: d.status.as_str().to_string(),
                    progress: d.progress,
                    target: g.requirement.target_value,
                    is_active: d.is_active,
                    assigned_at: rfc3339_opt(d.assigned_at),
                    expires_at: rfc3339_opt(d.expires_at),
                }
            })
            .collect();
        Ok(pb::GoalSelectionResponse {
            selected_goals,
            challenge_id: challenge.id.clone(),
            total_active_goals: count_i32(total_active),
            replaced_goals: plan.deactivate,
        })
    }
}

/// `n` distinct elements of `pool`, each subset equally likely, in random order; all of
/// `pool` when it is smaller.
pub fn sample<R: Rng + ?Sized>(rng: &mut R, pool: &[usize], n: usize) -> Vec<usize> {
    let n = n.min(pool.len());
    rand::seq::index::sample(rng, pool.len(), n)
        .into_iter()
        .map(|i| pool[i])
        .collect()
}

fn claim_response(
    goal: &extend_challenge_common::config::Goal,
    claimed_at: DateTime<Utc>,
) -> pb::ClaimRewardResponse {
    pb::ClaimRewardResponse {
        goal_id: goal.id.clone(),
        status: Status::Claimed.as_str().to_string(),
        reward: Some(reward_pb(goal)),
        claimed_at: rfc3339(claimed_at),
    }
}

fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sample_is_uniform_and_distinct() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pool = [10, 11, 12, 13];
        let mut hits = [0u32; 4];
        for _ in 0..8000 {
            let s = sample(&mut rng, &pool, 2);
            assert_eq!(s.len(), 2);
            assert_ne!(s[0], s[1]);
            for x in s {
                hits[x - 10] += 1;
            }
        }
        // Each element is picked with probability 1/2: 4000 expected, 3 sigma ≈ 134.
        for h in hits {
            assert!((3800..=4200).contains(&h), "{hits:?}");
        }
        assert_eq!(sample(&mut rng, &pool, 9).len(), 4);
    }
}
