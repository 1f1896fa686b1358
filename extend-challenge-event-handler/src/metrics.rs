//! The handler's `challenge_*` metrics (CONTRACT §6), registered once per process in the
//! prometheus default registry (several handler instances in one test process share them).

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge,
};

/// Handling time of one event RPC, by event kind (includes the durable-ack wait).
pub static EVENT_PROCESSING_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "challenge_event_processing_seconds",
            "Time to handle one event RPC, including the durable acknowledgement wait"
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]),
        &["event"]
    )
    .expect("register challenge_event_processing_seconds")
});

/// Events by kind, outcome (`accepted`, `skipped`, `rejected`, `unavailable`) and reason.
pub static EVENTS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "challenge_events_total",
            "Events received, by kind, outcome and reason"
        ),
        &["event", "outcome", "reason"]
    )
    .expect("register challenge_events_total")
});

/// (user, goal) keys waiting in the buffer.
pub static BUFFER_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "challenge_buffer_size",
        "Pending (user, goal) keys in the event buffer"
    )
    .expect("register challenge_buffer_size")
});

/// Duration of one batch transaction, by result (`ok`, `error`).
pub static FLUSH_DURATION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "challenge_flush_duration_seconds",
            "Duration of one batch flush transaction"
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
        ]),
        &["result"]
    )
    .expect("register challenge_flush_duration_seconds")
});

/// Keys flushed, by result: `updated`, `unchanged`, `not_assigned` (no row: dropped by
/// rule), `initialized` (rows inserted by auto-initialization), `dead_lettered`.
pub static FLUSH_ROWS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "challenge_flush_rows_total",
            "Rows handled by batch flushes"
        ),
        &["result"]
    )
    .expect("register challenge_flush_rows_total")
});

/// Keys per batch.
pub static FLUSH_BATCH_KEYS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new("challenge_flush_batch_keys", "(user, goal) keys per batch").buckets(
            vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0
            ]
        )
    )
    .expect("register challenge_flush_batch_keys")
});

pub static FLUSH_ERRORS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_flush_errors_total",
        "Failed batch flushes (the batch is kept and retried)"
    )
    .expect("register challenge_flush_errors_total")
});

pub static FLUSH_LOST_RACES_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_flush_lost_races_total",
        "Batches that lost a race with another transaction (a goal's first row inserted \
         meanwhile, a deadlock), wrote nothing and were retried at once"
    )
    .expect("register challenge_flush_lost_races_total")
});

/// Rows a batch left for a later one because another transaction held their lock (a
/// reward claim in progress, another replica's batch).
pub static FLUSH_DEFERRED_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_flush_deferred_total",
        "Rows deferred to a later batch because another transaction held their lock"
    )
    .expect("register challenge_flush_deferred_total")
});

/// Stat values clamped into the INT range, by field (`latest_value`, `inc`).
pub static VALUE_CLAMPS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "challenge_stat_value_clamps_total",
            "Stat values clamped into the 32-bit integer range"
        ),
        &["field"]
    )
    .expect("register challenge_stat_value_clamps_total")
});

/// Now minus the event's `timestamp`: how far behind the platform's delivery runs.
pub static EVENT_AGE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "challenge_event_age_seconds",
            "Age of an event when it reaches the handler (now - event timestamp)"
        )
        .buckets(vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
        ])
    )
    .expect("register challenge_event_age_seconds")
});

/// Redis de-duplication failures (the handler then falls back to its in-process window).
pub static DEDUP_REDIS_ERRORS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_dedup_redis_errors_total",
        "Redis de-duplication calls that failed (fell back to the in-process window)"
    )
    .expect("register challenge_dedup_redis_errors_total")
});

/// Users whose updates Postgres refused, moved to the dead-letter table.
pub static DEAD_LETTERS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_dead_letters_total",
        "Users whose buffered updates the database refused, moved to the dead-letter table"
    )
    .expect("register challenge_dead_letters_total")
});

/// Ledger look-ups at ingest (ids that may predate this process, expired Redis leases).
pub static DEDUP_LEDGER_LOOKUPS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_dedup_ledger_lookups_total",
        "Event ids looked up in the event ledger at ingest"
    )
    .expect("register challenge_dedup_ledger_lookups_total")
});

/// Applied event ids the ledger already held: an event applied twice (not expected).
pub static DEDUP_LEDGER_CONFLICTS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_dedup_ledger_conflicts_total",
        "Event ids a committed batch applied that the ledger already held (applied twice)"
    )
    .expect("register challenge_dedup_ledger_conflicts_total")
});

/// Expired Redis leases of another process taken over (that process died or stalled).
pub static DEDUP_TAKEOVERS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_dedup_lease_takeovers_total",
        "Expired Redis leases of event ids taken over from another process"
    )
    .expect("register challenge_dedup_lease_takeovers_total")
});

/// Ledger rows older than the de-duplication TTL deleted.
pub static LEDGER_PURGED_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "challenge_event_ledger_purged_total",
        "Event ledger rows older than the de-duplication TTL deleted"
    )
    .expect("register challenge_event_ledger_purged_total")
});

/// Forces registration so `/metrics` lists every family from start-up.
pub fn init() {
    LazyLock::force(&EVENT_PROCESSING_SECONDS);
    LazyLock::force(&EVENTS_TOTAL);
    LazyLock::force(&BUFFER_SIZE);
    LazyLock::force(&FLUSH_DURATION_SECONDS);
    LazyLock::force(&FLUSH_PHASE_SECONDS);
    LazyLock::force(&FLUSH_ROWS_TOTAL);
    LazyLock::force(&FLUSH_BATCH_KEYS);
    LazyLock::force(&FLUSH_ERRORS_TOTAL);
    LazyLock::force(&FLUSH_LOST_RACES_TOTAL);
    LazyLock::force(&FLUSH_DEFERRED_TOTAL);
    LazyLock::force(&VALUE_CLAMPS_TOTAL);
    LazyLock::force(&extend_challenge_common::metrics::DB_POOL_CONNECTIONS);
    LazyLock::force(&EVENT_AGE_SECONDS);
    LazyLock::force(&DEDUP_REDIS_ERRORS_TOTAL);
    LazyLock::force(&DEAD_LETTERS_TOTAL);
    LazyLock::force(&DEDUP_LEDGER_LOOKUPS_TOTAL);
    LazyLock::force(&DEDUP_LEDGER_CONFLICTS_TOTAL);
    LazyLock::force(&DEDUP_TAKEOVERS_TOTAL);
    LazyLock::force(&LEDGER_PURGED_TOTAL);
}

/// Wall time of each step of a committed batch (`store::flush::FlushTimings`), by phase:
/// `acquire_begin`, `select`, `missing`, `rules`, `write`, `commit`. Which round trip a
/// slow batch spent its time in.
pub static FLUSH_PHASE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "challenge_flush_phase_seconds",
            "Wall time of each step of a committed batch flush, by phase"
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
        ]),
        &["phase"]
    )
    .expect("register challenge_flush_phase_seconds")
});

/// Live progress notifications (`LISTEN/NOTIFY` payloads) by result (`sent`, `failed`;
/// `dropped` counts players whose changes did not fit the notifier's queue).
pub static LIVE_NOTIFICATIONS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "challenge_live_notifications_total",
            "Live progress notifications sent to the service replicas, by result"
        ),
        &["result"]
    )
    .expect("register challenge_live_notifications_total")
});

/// Event trail entries by result: `written`, `dropped` (the writer's queue or a user's
/// pending trail was full), `failed` (the insert failed; the entries are lost).
pub static TRAIL_ENTRIES_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "challenge_trail_entries_total",
            "Event trail entries, by result (written, dropped, failed)"
        ),
        &["result"]
    )
    .expect("register challenge_trail_entries_total")
});
