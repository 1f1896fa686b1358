//! Retention cleanup (CONTRACT §3.6): deletes progress rows whose `expires_at` is older
//! than `CLEANUP_RETENTION_DAYS`, and erasure tombstones older than
//! `ERASURE_TOMBSTONE_DAYS`, in batches with a pause between them.
//!
//! One replica at a time: a cycle runs only while this process holds a Postgres advisory
//! lock on a session of its own (a crashed cycle releases it with its connection); the
//! others skip the cycle. Rows without `expires_at` (goals that do not rotate) are never
//! touched, nor are expired rows whose state still matters (a claimed goal that never
//! allows reselection; carried-over progress), see `store::erasure::RetentionGuard`.
//!
//! The loop never takes the replica out of service: an error or a panic in a cycle is
//! counted and logged, and the next cycle runs on time. A stalled cleanup shows as a
//! `challenge_cleanup_last_heartbeat_seconds` that stops advancing.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::live_catalog::Live;

use crate::app::Snapshot;
use extend_challenge_common::settings::CleanupSettings;
use extend_challenge_common::store::{
    self,
    erasure::{self, RetentionGuard},
};
use futures::FutureExt as _;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

/// The advisory lock the replica running the cleanup holds ("chalclnp").
pub const CLEANUP_LOCK: i64 = 0x6368_616c_636c_6e70;

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    if let Err(error) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(%error, "cannot register {name}");
    }
    c
}

/// The cleanup's metrics (names as AccelByte's M6), in the default registry.
pub struct CleanupMetrics {
    pub rows_deleted: IntCounter,
    pub cycles: IntCounter,
    pub errors: IntCounter,
    pub panics: IntCounter,
    pub duration: Histogram,
    pub last_heartbeat: IntGauge,
}

pub static METRICS: LazyLock<CleanupMetrics> = LazyLock::new(|| {
    let duration = Histogram::with_opts(
        HistogramOpts::new(
            "challenge_cleanup_duration_seconds",
            "Duration of the retention cleanup cycles this replica ran",
        )
        .buckets(vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]),
    )
    .expect("valid metric definition");
    let last_heartbeat = IntGauge::new(
        "challenge_cleanup_last_heartbeat_seconds",
        "Unix time at which the retention cleanup loop last finished a cycle (whether it ran \
         the cycle or another replica held the lock)",
    )
    .expect("valid metric definition");
    let collectors: [Box<dyn prometheus::core::Collector>; 2] =
        [Box::new(duration.clone()), Box::new(last_heartbeat.clone())];
    for c in collectors {
        if let Err(error) = prometheus::default_registry().register(c) {
            tracing::warn!(%error, "cannot register a cleanup metric");
        }
    }
    CleanupMetrics {
        rows_deleted: counter(
            "challenge_cleanup_rows_deleted_total",
            "Expired progress rows deleted by the retention cleanup",
        ),
        cycles: counter(
            "challenge_cleanup_cycles_total",
            "Retention cleanup cycles this replica ran (holding the cleanup lock)",
        ),
        errors: counter(
            "challenge_cleanup_errors_total",
            "Retention cleanup cycles that failed",
        ),
        panics: counter(
            "challenge_cleanup_panics_total",
            "Retention cleanup cycles that panicked (the loop goes on)",
        ),
        duration,
        last_heartbeat,
    }
});

/// Registers the metrics (so `/metrics` lists them before the first cycle).
pub fn register_metrics() {
    LazyLock::force(&METRICS);
}

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub rows_deleted: u64,
    pub tombstones_deleted: u64,
    pub batches: u64,
}

/// The outcome of [`Cleanup::run_cleanup_once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPass {
    /// Another replica holds the cleanup lock: nothing done.
    NotLeader,
    Done(CleanupReport),
}

/// The retention cleanup of one service process.
#[derive(Clone)]
pub struct Cleanup {
    pool: PgPool,
    clock: Clock,
    settings: CleanupSettings,
    /// The guard of the catalog version served now (computed at each run).
    guard: Arc<dyn Fn() -> RetentionGuard + Send + Sync>,
    /// `EVENT_TRAIL_RETENTION_DAYS`.
    trail_retention_days: u32,
}

impl Cleanup {
    pub fn new(
        pool: PgPool,
        clock: Clock,
        config: &ChallengeConfig,
        settings: CleanupSettings,
    ) -> Self {
        Cleanup {
            pool,
            clock,
            settings,
            guard: {
                let guard = RetentionGuard::from_config(config);
                Arc::new(move || guard.clone())
            },
            trail_retention_days: 7,
        }
    }

    /// Guards the goals of whichever catalog version `catalogs` serves at each run.
    pub fn following(mut self, catalogs: Arc<Live<Snapshot>>) -> Self {
        self.guard = Arc::new(move || RetentionGuard::from_config(catalogs.load().config()));
        self
    }

    /// Event trail entries are kept this many days (`EVENT_TRAIL_RETENTION_DAYS`).
    pub fn with_trail_retention(mut self, days: u32) -> Self {
        self.trail_retention_days = days;
        self
    }

    /// One cycle, if this replica gets the cleanup lock: expired rows, then old
    /// tombstones, each in batches of `CLEANUP_BATCH_SIZE` with `CLEANUP_BATCH_PAUSE_MS`
    /// between batches.
    pub async fn run_cleanup_once(&self) -> Result<CleanupPass, sqlx::Error> {
        let session = match store::try_session_lock(&self.pool, CLEANUP_LOCK).await {
            Ok(Some(session)) => session,
            Ok(None) => return Ok(CleanupPass::NotLeader),
            Err(e) => {
                METRICS.errors.inc();
                tracing::warn!(error = %e, "retention cleanup: cannot reach the database");
                return Err(e);
            }
        };
        let started = Instant::now();
        let result = self.cycle().await;
        // Ending the session releases the lock (as does dropping it mid-cycle).
        let _ = session.close().await;
        let m = &*METRICS;
        m.duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(report) => {
                m.cycles.inc();
                tracing::info!(
                    rows_deleted = report.rows_deleted,
                    tombstones_deleted = report.tombstones_deleted,
                    batches = report.batches,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "retention cleanup cycle done"
                );
                Ok(CleanupPass::Done(report))
            }
            Err((report, e)) => {
                m.errors.inc();
                tracing::warn!(
                    error = %e,
                    rows_deleted = report.rows_deleted,
                    "retention cleanup cycle failed; the next cycle retries"
                );
                Err(e)
            }
        }
    }

    async fn cycle(&self) -> Result<CleanupReport, (CleanupReport, sqlx::Error)> {
        let now = self.clock.now();
        let cutoff = now - chrono::Duration::days(i64::from(self.settings.retention_days));
        let batch = i64::from(self.settings.batch_size);
        let mut report = CleanupReport::default();
        let guard = (self.guard)();
        loop {
            let deleted = erasure::delete_expired_batch(&self.pool, cutoff, batch, &guard)
                .await
                .map_err(|e| (report, e))?;
            report.rows_deleted += deleted;
            report.batches += 1;
            METRICS.rows_deleted.inc_by(deleted);
            if deleted < batch as u64 {
                break;
            }
            tracing::debug!(
                rows_deleted = report.rows_deleted,
                "retention cleanup in progress"
            );
            self.pause().await;
        }
        let stone_cutoff = now - chrono::Duration::days(i64::from(self.settings.tombstone_days));
        loop {
            let deleted = erasure::purge_tombstones(&self.pool, stone_cutoff, batch)
                .await
                .map_err(|e| (report, e))?;
            report.tombstones_deleted += deleted;
            report.batches += 1;
            if deleted < batch as u64 {
                break;
            }
            self.pause().await;
        }
        // The event trail: entries past their retention, and those beyond the newest
        // `KEEP_PER_GOAL` of the goals that took entries since (about) the last cycle.
        let trail_cutoff = now - chrono::Duration::days(i64::from(self.trail_retention_days));
        let since = now
            - chrono::Duration::from_std(self.settings.interval * 2).unwrap_or_default()
            - chrono::Duration::minutes(5);
        let mut trail_deleted = 0;
        loop {
            let deleted =
                extend_challenge_common::store::trail::trim(&self.pool, trail_cutoff, since, batch)
                    .await
                    .map_err(|e| (report, e))?;
            trail_deleted += deleted;
            if deleted < batch as u64 {
                break;
            }
            self.pause().await;
        }
        if trail_deleted > 0 {
            tracing::info!(trail_deleted, "event trail trimmed");
        }
        Ok(report)
    }

    async fn pause(&self) {
        if !self.settings.batch_pause.is_zero() {
            tokio::time::sleep(self.settings.batch_pause).await;
        }
    }

    /// Runs a cycle every `CLEANUP_INTERVAL_MINUTES` until `shutdown` fires (the first one
    /// an interval after start). Errors and panics are counted and logged; the loop goes on.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        register_metrics();
        tokio::spawn(async move {
            let interval = self.settings.interval.max(Duration::from_secs(1));
            tracing::info!(
                interval_s = interval.as_secs(),
                retention_days = self.settings.retention_days,
                batch_size = self.settings.batch_size,
                "retention cleanup started"
            );
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let cycle = std::panic::AssertUnwindSafe(self.run_cleanup_once()).catch_unwind();
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    outcome = cycle => outcome,
                };
                if outcome.is_err() {
                    METRICS.panics.inc();
                    tracing::error!(
                        "retention cleanup cycle panicked; the next cycle runs on time"
                    );
                }
                METRICS.last_heartbeat.set(chrono::Utc::now().timestamp());
            }
        })
    }
}
