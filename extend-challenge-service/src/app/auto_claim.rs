//! Auto-claim (CONTRACT §7): goals with `autoClaim` are claimed without a player's call.
//!
//! The event handler records each completion that asks for an auto-claim in the outbox
//! (`store::outbox`), in the transaction that completes the goal. Here one replica at a time
//! (a Postgres advisory lock, like the reconciler) takes the due entries and claims each
//! goal through the player's own claim ([`ChallengeService::claim_goal_reward`]): every
//! check runs, each reward is granted once under its key, and a player's claim racing this
//! one meets the same row lock and intent leases — one grant either way.
//!
//! What happens to an entry after the claim:
//! - claimed now, or already claimed: deleted;
//! - the goal cannot be claimed now (not completed, inactive, rotated, locked, removed from
//!   the config): deleted. A later completion asks again — a locked goal is asked for again
//!   by the completion of its prerequisite, which wakes it (`Goal::auto_claim_wakes`);
//! - the grant is in doubt, AGS refused it, the claim is busy, or the database failed: kept
//!   and tried again with a growing delay (1 s doubling to 5 min; a refusal from 1 min to
//!   1 h). `challenge_reward_outbox_oldest_age_seconds` shows an entry stuck there.

use std::sync::LazyLock;
use std::time::Duration;

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::store::{self, outbox, outbox::OutboxEntry};
use futures::StreamExt;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::ChallengeService;
use crate::error::ServiceError;

/// The advisory lock one replica holds while it works the outbox ("chalauc1").
pub const AUTO_CLAIM_LOCK: i64 = 0x6368_616c_6175_6331;
/// Entries taken per pass.
const BATCH: i64 = 200;
/// Claims running side by side within a pass.
const CONCURRENCY: usize = 8;

/// What became of one outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoClaimOutcome {
    /// The goal is claimed (now, or it already was).
    Claimed,
    /// Nothing to claim now; the entry is dropped (a later completion asks again).
    Dropped,
    /// Kept for another try.
    Retry,
}

impl AutoClaimOutcome {
    fn label(self) -> &'static str {
        match self {
            AutoClaimOutcome::Claimed => "claimed",
            AutoClaimOutcome::Dropped => "dropped",
            AutoClaimOutcome::Retry => "retry",
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutoClaimReport {
    pub claimed: usize,
    pub dropped: usize,
    pub retried: usize,
    /// Entries left in the outbox after the pass.
    pub backlog: i64,
}

/// The outcome of [`AutoClaimer::run_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoClaimPass {
    /// Another replica holds the lock.
    NotLeader,
    Done(AutoClaimReport),
}

/// Works the outbox. Cheap to clone.
#[derive(Clone)]
pub struct AutoClaimer {
    service: ChallengeService,
    metrics: AutoClaimMetrics,
}

impl AutoClaimer {
    pub fn new(service: ChallengeService) -> Self {
        AutoClaimer {
            service,
            metrics: AutoClaimMetrics::global(),
        }
    }

    /// Records in `metrics` instead of the default registry's.
    pub fn with_metrics(mut self, metrics: AutoClaimMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// One pass over the due entries, if this replica gets the lock.
    pub async fn run_once(&self) -> Result<AutoClaimPass, sqlx::Error> {
        let pool = self.service.pool();
        let Some(session) = store::try_session_lock(pool, AUTO_CLAIM_LOCK).await? else {
            // Every replica reports the backlog, so no replica's gauge goes stale.
            self.sample_backlog().await?;
            return Ok(AutoClaimPass::NotLeader);
        };
        let result = self.pass().await;
        let _ = session.close().await;
        result.map(AutoClaimPass::Done)
    }

    async fn pass(&self) -> Result<AutoClaimReport, sqlx::Error> {
        let pool = self.service.pool();
        let due = outbox::due(pool, BATCH).await?;
        let outcomes: Vec<AutoClaimOutcome> = futures::stream::iter(due)
            .map(|entry| async move { self.handle(&entry).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut report = AutoClaimReport::default();
        for outcome in outcomes {
            self.metrics
                .outcomes
                .with_label_values(&[outcome.label()])
                .inc();
            match outcome {
                AutoClaimOutcome::Claimed => report.claimed += 1,
                AutoClaimOutcome::Dropped => report.dropped += 1,
                AutoClaimOutcome::Retry => report.retried += 1,
            }
        }
        report.backlog = self.sample_backlog().await?;
        Ok(report)
    }

    /// Sets the backlog gauges; returns the number of entries.
    async fn sample_backlog(&self) -> Result<i64, sqlx::Error> {
        let (backlog, oldest) = outbox::backlog(self.service.pool()).await?;
        self.metrics.backlog.set(backlog);
        self.metrics.oldest_age.set(oldest);
        Ok(backlog)
    }

    /// Claims one entry's goal and records what became of the entry.
    async fn handle(&self, entry: &OutboxEntry) -> AutoClaimOutcome {
        let pool = self.service.pool();
        let Some(goal) = self
            .service
            .catalog()
            .config()
            .goal(&entry.goal_id)
            .cloned()
        else {
            // Removed from the config: nothing to claim.
            return match outbox::done(pool, entry).await {
                Ok(_) => AutoClaimOutcome::Dropped,
                Err(_) => AutoClaimOutcome::Retry,
            };
        };
        let req = pb::ClaimRewardRequest {
            challenge_id: goal.challenge_id.clone(),
            goal_id: goal.id.clone(),
        };
        let result = self.service.claim_goal_reward(&entry.user_id, req).await;
        let outcome = classify(&result);
        let recorded = match (&result, outcome) {
            (_, AutoClaimOutcome::Claimed | AutoClaimOutcome::Dropped) => {
                outbox::done(pool, entry).await.map(|_| ())
            }
            (Err(e), AutoClaimOutcome::Retry) => {
                let delay = retry_delay(e, entry.attempts);
                outbox::retry(pool, entry, delay, &e.to_string()).await
            }
            (Ok(_), AutoClaimOutcome::Retry) => Ok(()),
        };
        match (&result, outcome) {
            (Ok(_), _) => tracing::info!(
                goal_id = %entry.goal_id,
                challenge_id = %goal.challenge_id,
                "auto-claimed a completed goal"
            ),
            (Err(e), AutoClaimOutcome::Retry) => tracing::warn!(
                goal_id = %entry.goal_id,
                attempts = entry.attempts + 1,
                error = %e,
                "auto-claim not done yet; it will be tried again"
            ),
            (Err(e), _) => tracing::debug!(
                goal_id = %entry.goal_id,
                reason = %e,
                "auto-claim entry dropped"
            ),
        }
        if let Err(error) = recorded {
            tracing::warn!(goal_id = %entry.goal_id, %error, "cannot record an auto-claim's outcome");
            return AutoClaimOutcome::Retry;
        }
        outcome
    }

    /// Runs a pass every `interval` until `shutdown` fires.
    pub fn spawn(
        self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        crate::rewards::every(interval, shutdown, move || {
            let this = self.clone();
            async move {
                match this.run_once().await {
                    Ok(AutoClaimPass::Done(report))
                        if report.claimed + report.dropped + report.retried > 0 =>
                    {
                        tracing::debug!(?report, "auto-claim pass");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "auto-claim pass failed"),
                }
            }
        })
    }
}

/// What a claim's answer means for its outbox entry.
fn classify(result: &Result<pb::ClaimRewardResponse, ServiceError>) -> AutoClaimOutcome {
    use ServiceError::*;
    match result {
        Ok(_) | Err(AlreadyClaimed { .. }) => AutoClaimOutcome::Claimed,
        Err(
            GoalNotFound { .. }
            | GoalNotCompleted { .. }
            | GoalNotActive { .. }
            | GoalRotated { .. }
            | PrerequisitesNotMet { .. },
        ) => AutoClaimOutcome::Dropped,
        Err(_) => AutoClaimOutcome::Retry,
    }
}

/// The delay before entry is tried again after `error`, on its `attempts`-th retry: 1 s
/// doubling to 5 min; after a definite refusal by AGS (a configuration problem more than a
/// glitch), 1 min doubling to 1 h.
fn retry_delay(error: &ServiceError, attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 12)).unwrap_or(0);
    let (base, max) = match error {
        ServiceError::RewardGrantFailed { .. } => {
            (Duration::from_secs(60), Duration::from_secs(3600))
        }
        _ => (Duration::from_secs(1), Duration::from_secs(300)),
    };
    base.saturating_mul(1 << doublings).min(max)
}

const OUTCOMES: &str = "challenge_auto_claims_total";
const BACKLOG: &str = "challenge_reward_outbox_backlog";
const OLDEST: &str = "challenge_reward_outbox_oldest_age_seconds";

/// `challenge_auto_claims_total{outcome}`, `challenge_reward_outbox_backlog`,
/// `challenge_reward_outbox_oldest_age_seconds`. Clones share the metrics.
#[derive(Clone)]
pub struct AutoClaimMetrics {
    outcomes: IntCounterVec,
    backlog: IntGauge,
    oldest_age: Gauge,
}

static GLOBAL: LazyLock<AutoClaimMetrics> = LazyLock::new(|| {
    let metrics = AutoClaimMetrics::unregistered();
    if let Err(error) = metrics.register(prometheus::default_registry()) {
        tracing::warn!(%error, "cannot register the auto-claim metrics");
    }
    metrics
});

impl AutoClaimMetrics {
    pub fn global() -> Self {
        GLOBAL.clone()
    }

    /// Metrics registered in `registry` (tests read exact values from a private one).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        metrics.register(registry)?;
        Ok(metrics)
    }

    fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.outcomes.clone()))?;
        registry.register(Box::new(self.backlog.clone()))?;
        registry.register(Box::new(self.oldest_age.clone()))
    }

    fn unregistered() -> Self {
        AutoClaimMetrics {
            outcomes: IntCounterVec::new(
                Opts::new(
                    OUTCOMES,
                    "Auto-claim outbox entries handled, by outcome (claimed, dropped, retry)",
                ),
                &["outcome"],
            )
            .expect("valid metric definition"),
            backlog: IntGauge::new(BACKLOG, "Auto-claim outbox entries waiting")
                .expect("valid metric definition"),
            oldest_age: Gauge::new(
                OLDEST,
                "Age in seconds of the oldest auto-claim outbox entry",
            )
            .expect("valid metric definition"),
        }
    }

    pub fn count(&self, outcome: AutoClaimOutcome) -> u64 {
        self.outcomes.with_label_values(&[outcome.label()]).get()
    }

    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let doubt = ServiceError::GrantInDoubt {
            goal_id: "g".into(),
        };
        assert_eq!(retry_delay(&doubt, 0), Duration::from_secs(1));
        assert_eq!(retry_delay(&doubt, 3), Duration::from_secs(8));
        assert_eq!(retry_delay(&doubt, 40), Duration::from_secs(300));
        let refused = ServiceError::RewardGrantFailed {
            goal_id: "g".into(),
        };
        assert_eq!(retry_delay(&refused, 0), Duration::from_secs(60));
        assert_eq!(retry_delay(&refused, 40), Duration::from_secs(3600));
    }

    #[test]
    fn answers_sort_entries() {
        let g = || "g".to_string();
        let c = || "c".to_string();
        assert_eq!(
            classify(&Err(ServiceError::AlreadyClaimed {
                goal_id: g(),
                claimed_at: String::new()
            })),
            AutoClaimOutcome::Claimed
        );
        for e in [
            ServiceError::GoalNotCompleted {
                goal_id: g(),
                status: "in_progress".into(),
            },
            ServiceError::GoalNotActive {
                goal_id: g(),
                challenge_id: c(),
            },
            ServiceError::PrerequisitesNotMet { goal_id: g() },
            ServiceError::GoalRotated {
                goal_id: g(),
                challenge_id: c(),
            },
        ] {
            assert_eq!(classify(&Err(e)), AutoClaimOutcome::Dropped);
        }
        for e in [
            ServiceError::GrantInDoubt { goal_id: g() },
            ServiceError::ClaimInProgress { goal_id: g() },
            ServiceError::RewardGrantFailed { goal_id: g() },
            ServiceError::ClaimTimedOut { goal_id: g() },
        ] {
            assert_eq!(classify(&Err(e)), AutoClaimOutcome::Retry);
        }
    }
}
