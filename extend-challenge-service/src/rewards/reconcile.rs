//! Grants under an intent (CONTRACT §3.3): what a claim and the reconciler share, and the
//! reconciler itself.
//!
//! The reconciler completes intents nobody is working on any more: a claimer died between
//! recording the intent and finishing, or gave up with "in progress" and the player never
//! retried. One replica at a time (a Postgres advisory lock, held on a connection of its
//! own, so a crashed pass releases it with its session), it takes each due intent under a
//! lease, resolves it (look for the grant, or fulfil idempotently; grant if absent and
//! settled), and marks the row claimed; an intent still in doubt is looked at again later,
//! with a growing delay.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::{Reward, RewardType};
use extend_challenge_common::store::{
    self,
    grants::{self, GrantIntent, GrantState, Lease},
};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use super::{GrantError, GrantRequest, Granted, ReconcilerMetrics, Resume, RewardGranter};

/// The advisory lock one replica holds while it reconciles ("chalrwd1").
pub const RECONCILER_LOCK: i64 = 0x6368_616c_7277_6431;
/// Intents looked at per pass.
const BATCH: i64 = 100;
/// Longest delay between two checks of an intent in doubt.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Bound on each database step around a grant.
pub(crate) const DB_LIMIT: Duration = Duration::from_secs(5);
/// A lease outlives the work it covers by this much.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What to do about an intent's earlier attempts at `now`: a refused or never-attempted
/// intent, or one whose last attempt has settled, may be granted after a look-up; one
/// attempted less than `settle` ago may only be looked up.
pub(crate) fn resume_for(intent: &GrantIntent, now: DateTime<Utc>, settle: Duration) -> Resume {
    if intent.state() == GrantState::Failed {
        return Resume::LookupThenGrant;
    }
    match intent.last_attempt_at {
        Some(t) if now < t + chrono_duration(settle) => Resume::LookupOnly,
        _ => Resume::LookupThenGrant,
    }
}

/// The reward an intent records (what the player earned, whatever the config says now).
pub(crate) fn reward_of(intent: &GrantIntent) -> Option<Reward> {
    let reward_type = match intent.reward_type.as_str() {
        "ITEM" => RewardType::Item,
        "WALLET" => RewardType::Wallet,
        _ => return None,
    };
    Some(Reward {
        reward_type,
        reward_id: intent.reward_id.clone(),
        quantity: intent.quantity,
    })
}

pub(crate) fn request_of<'a>(intent: &'a GrantIntent, reward: &'a Reward) -> GrantRequest<'a> {
    GrantRequest {
        namespace: &intent.namespace,
        user_id: &intent.user_id,
        challenge_id: &intent.challenge_id,
        goal_id: &intent.goal_id,
        reward,
        grant_key: &intent.grant_key,
        since: intent.created_at,
    }
}

/// Where an intent ended up after a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// AGS holds the grant; `row_marked`: the progress row was marked claimed (false when
    /// the row moved on meanwhile, e.g. a new period reset it).
    Granted { row_marked: bool },
    /// AGS refused: nothing was granted.
    Refused,
    /// Unknown: the intent stays pending for a retry or the reconciler.
    InDoubt,
}

/// Records how a grant under `owner`'s lease ended. `outcome` is `None` when the grant
/// ran out of time (in doubt). `claimed_at` marks the row; an intent in doubt is checked
/// again by the reconciler from `next_check_at`.
pub(crate) async fn settle(
    pool: &PgPool,
    intent: &GrantIntent,
    owner: &str,
    outcome: Option<&Result<Granted, GrantError>>,
    claimed_at: DateTime<Utc>,
    next_check_at: DateTime<Utc>,
) -> Result<Settled, sqlx::Error> {
    match outcome {
        Some(Ok(_)) => {
            let row_marked = grants::complete(pool, intent, claimed_at, DB_LIMIT).await?;
            Ok(Settled::Granted { row_marked })
        }
        Some(Err(e)) if !e.may_have_granted() => {
            grants::refuse(
                pool,
                &intent.user_id,
                &intent.grant_key,
                owner,
                &e.to_string(),
            )
            .await?;
            Ok(Settled::Refused)
        }
        other => {
            let reason = match other {
                Some(Err(e)) => e.to_string(),
                _ => "the grant did not finish in time".to_string(),
            };
            grants::release(
                pool,
                &intent.user_id,
                &intent.grant_key,
                owner,
                &reason,
                next_check_at,
            )
            .await?;
            Ok(Settled::InDoubt)
        }
    }
}

pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Intents completed: AGS held the grant, or granted it now.
    pub granted: usize,
    /// Intents AGS refused (left `failed`; the player may claim again).
    pub refused: usize,
    /// Intents still in doubt (checked again later).
    pub in_doubt: usize,
    /// Intents a claim took first, or that could not be recorded (database trouble).
    pub skipped: usize,
    /// Pending intents nobody works on, after the pass (the gauge's value).
    pub in_doubt_total: i64,
}

/// The outcome of [`Reconciler::reconcile_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// Another replica holds the reconciler's lock.
    NotLeader,
    Done(ReconcileReport),
}

/// Completes abandoned grant intents. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    granter: Arc<dyn RewardGranter>,
    clock: Clock,
    settle: Duration,
    /// How long one grant may take.
    grant_limit: Duration,
    metrics: ReconcilerMetrics,
}

impl Reconciler {
    pub fn new(
        pool: PgPool,
        granter: Arc<dyn RewardGranter>,
        clock: Clock,
        settle: Duration,
        grant_limit: Duration,
    ) -> Self {
        Reconciler {
            pool,
            granter,
            clock,
            settle,
            grant_limit,
            metrics: ReconcilerMetrics::global(),
        }
    }

    /// Records in `metrics` instead of the default registry's.
    pub fn with_metrics(mut self, metrics: ReconcilerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// One pass, if this replica gets the reconciler's lock.
    pub async fn reconcile_once(&self) -> Result<Pass, sqlx::Error> {
        let Some(session) = store::try_session_lock(&self.pool, RECONCILER_LOCK).await? else {
            return Ok(Pass::NotLeader);
        };
        let result = self.pass().await;
        // Ending the session releases the lock (as does dropping it, should this future be
        // dropped mid-pass).
        let _ = session.close().await;
        result.map(Pass::Done)
    }

    async fn pass(&self) -> Result<ReconcileReport, sqlx::Error> {
        let mut report = ReconcileReport::default();
        let due = grants::due(&self.pool, self.clock.now(), BATCH).await?;
        for candidate in due {
            match self.resolve(&candidate).await {
                Ok(Some(Settled::Granted { row_marked })) => {
                    report.granted += 1;
                    self.metrics.record("granted");
                    tracing::info!(
                        grant_key = %candidate.grant_key,
                        goal_id = %candidate.goal_id,
                        row_marked,
                        "reconciler completed a reward grant"
                    );
                }
                Ok(Some(Settled::Refused)) => {
                    report.refused += 1;
                    self.metrics.record("refused");
                    tracing::warn!(
                        grant_key = %candidate.grant_key,
                        goal_id = %candidate.goal_id,
                        "AGS refused a reconciled reward grant; the player may claim again"
                    );
                }
                Ok(Some(Settled::InDoubt)) => {
                    report.in_doubt += 1;
                    self.metrics.record("in_doubt");
                }
                Ok(None) => report.skipped += 1,
                Err(error) => {
                    report.skipped += 1;
                    self.metrics.record("error");
                    tracing::warn!(
                        grant_key = %candidate.grant_key,
                        %error,
                        "reconciler could not record a reward grant's outcome"
                    );
                }
            }
        }
        report.in_doubt_total = grants::in_doubt_count(&self.pool, self.clock.now()).await?;
        self.metrics.set_in_doubt(report.in_doubt_total);
        Ok(report)
    }

    /// Takes one due intent and resolves it; `None` when someone else took it first.
    async fn resolve(&self, candidate: &GrantIntent) -> Result<Option<Settled>, sqlx::Error> {
        let now = self.clock.now();
        let owner = uuid::Uuid::new_v4().to_string();
        let resume = resume_for(candidate, now, self.settle);
        let until = now + chrono_duration(self.grant_limit + LEASE_MARGIN);
        let lease = Lease {
            owner: &owner,
            now,
            until,
            next_check_at: until,
            attempt: resume != Resume::LookupOnly,
        };
        let Some(intent) =
            grants::take_due(&self.pool, &candidate.user_id, &candidate.grant_key, &lease).await?
        else {
            return Ok(None);
        };
        let Some(reward) = reward_of(&intent) else {
            tracing::error!(
                grant_key = %intent.grant_key,
                reward_type = %intent.reward_type,
                "grant intent with an unknown reward type; left pending"
            );
            return Ok(Some(Settled::InDoubt));
        };
        let req = request_of(&intent, &reward);
        let outcome = tokio::time::timeout(self.grant_limit, self.granter.grant(&req, resume))
            .await
            .ok();
        let now = self.clock.now();
        let next_check_at = now + chrono_duration(self.backoff(intent.attempts));
        settle(
            &self.pool,
            &intent,
            &owner,
            outcome.as_ref(),
            now,
            next_check_at,
        )
        .await
        .map(Some)
    }

    /// The delay before an intent in doubt is checked again: the settle time doubled per
    /// attempt, at most an hour.
    fn backoff(&self, attempts: i32) -> Duration {
        let base = self.settle.max(Duration::from_secs(1));
        let doublings = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
        base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }

    /// Runs a pass every `interval` until `shutdown` fires.
    pub fn spawn(
        self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        super::every(interval, shutdown, move || {
            let this = self.clone();
            async move {
                match this.reconcile_once().await {
                    Ok(Pass::Done(report))
                        if report.granted + report.refused + report.in_doubt > 0 =>
                    {
                        tracing::info!(?report, "reward reconciler pass");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "reward reconciler pass failed"),
                }
            }
        })
    }
}
