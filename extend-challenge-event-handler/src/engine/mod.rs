//! The event pipeline: ingest (validated event → deltas → de-duplication → buffer →
//! acknowledgement) and flush (buffer → one transaction per batch). The gRPC services in
//! [`crate::grpc`] only translate messages into [`Event`](crate::event::Event)s and call
//! [`Engine::ingest`].
//!
//! The two paths share the [`Engine`] (this module: its options, state and accessors) and
//! meet only in the [`Buffer`]: `ingest.rs` fills it and waits on its generations (the
//! answer is an [`Accepted`] or an [`IngestError`], counted by [`count_event`]);
//! `flush.rs` empties it and settles them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::live_catalog::{Derive, Live};
use extend_challenge_common::settings::AckMode;
use extend_challenge_common::store::implicit::Defaults;
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::buffer::Buffer;
use crate::dedup::RedisDedup;
use crate::ledger::LedgerLookups;
use crate::live::LiveNotifier;
use crate::trail::TrailWriter;

mod after;
mod flush;
mod ingest;

pub use ingest::{Accepted, IngestError, Skip, count_event};

/// An event whose timestamp is not later than the process start plus this may have been
/// applied by an earlier incarnation of the handler (one that committed it and died before
/// answering): its id is looked up in the ledger. The margin covers clock skew between the
/// event's producer and this host (NTP keeps it far below this). It is small on purpose:
/// every event inside the window costs a ledger look-up, and a full minute of look-ups
/// after each restart cost buffered mode a third of its throughput (BENCHMARKS.md).
pub const LEDGER_CHECK_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// An event without a timestamp is judged by its arrival: it may be the redelivery of one an
/// earlier incarnation committed only while this process is younger than the ack deadline
/// plus this (the lease margin, and [`LEDGER_CHECK_GRACE`] for good measure). The calls an
/// earlier incarnation left unanswered are redelivered by then: the platform retries a call
/// that failed with its process. Before this rule every timestamp-less event paid a ledger
/// read for the life of the process (AccelByte's k6 scenario 2 sends no timestamps; its p95
/// tripled).
pub const UNTIMED_LEDGER_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Tunables of the pipeline. [`crate::server::Builder`] fills them from `Settings`.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Events from other namespaces are skipped; empty accepts every namespace.
    pub namespace: String,
    pub ack_mode: AckMode,
    pub auto_initialize: bool,
    /// Flush workers = buffer partitions.
    pub workers: usize,
    /// Buffered mode: flush every interval.
    pub flush_interval: Duration,
    /// Flush a partition early once it holds this many keys (`BUFFER_MAX_SIZE` / workers).
    pub flush_threshold: usize,
    /// A batch takes whole users up to this many keys; the rest stay buffered for the next
    /// batch, which starts after the last user this one took (round robin). Without the
    /// cap, a partition that falls behind grows each retried batch until no batch fits in
    /// `flush_timeout` and nothing is written any more.
    pub max_batch_keys: usize,
    /// Above this many pending keys new keys are refused with `ResourceExhausted`.
    pub max_pending_keys: usize,
    /// Durable mode: how long an RPC waits for its commit before `Unavailable`.
    pub ack_deadline: Duration,
    /// In-process de-duplication window (event ids).
    pub dedup_window: usize,
    /// Each phase of a batch transaction must finish within this.
    pub flush_timeout: Duration,
    /// Retry backoff after a failed flush: first and maximum delay. The maximum bounds how
    /// late acknowledgements resume after the database comes back (CONTRACT §2.2: within
    /// 1 s); the health checker also cuts the wait short when it sees the database again.
    pub retry_backoff: (Duration, Duration),
    /// On shutdown, keep retrying the final flush this long.
    pub shutdown_flush_timeout: Duration,
}

/// The pipeline shared by the gRPC services and the flush workers.
pub struct Engine {
    /// The catalog version served (swapped whole when another is applied, CONTRACT §9): an
    /// event is matched to goals with the version it arrived under, a batch's markers record
    /// the defaults of the version it is flushed under.
    catalogs: Arc<Live<EngineCatalog>>,
    pool: PgPool,
    buffer: Buffer,
    redis: Option<RedisDedup>,
    clock: Clock,
    arrival: AtomicU64,
    flush_errors: AtomicU64,
    flush_deferred: AtomicU64,
    dead_letters: AtomicU64,
    /// Set when the final drain starts: unconfirmed commits stop being chased after it.
    drain_deadline: Mutex<Option<Instant>>,
    /// Ledger look-ups for ids that may predate this process.
    ledger: LedgerLookups,
    /// Events stamped before this may have been applied by an earlier incarnation.
    ledger_check_before: chrono::DateTime<chrono::Utc>,
    /// Events without a timestamp arriving before this may have been (see
    /// [`UNTIMED_LEDGER_MARGIN`]).
    untimed_check_before: chrono::DateTime<chrono::Utc>,
    /// Notified when the database is reachable again: failed workers retry at once.
    database_back: Notify,
    opts: EngineOptions,
    limiter: LogLimiter,
    /// The event trail's writer (CONTRACT §10).
    trail: Arc<TrailWriter>,
    /// The live progress notifier (CONTRACT §10).
    live: Arc<LiveNotifier>,
}

/// What the pipeline derives from one catalog version.
#[derive(Debug)]
pub struct EngineCatalog {
    pub config: Arc<ChallengeConfig>,
    /// The config's default goals, as a player's marker records them (`store::implicit`).
    pub defaults: Defaults,
}

impl Derive for EngineCatalog {
    fn derive(_version: i64, config: Arc<ChallengeConfig>) -> Self {
        EngineCatalog {
            defaults: Defaults::of(&config),
            config,
        }
    }
}

impl Engine {
    /// An engine serving `config` as it is.
    pub fn new(
        config: Arc<ChallengeConfig>,
        pool: PgPool,
        redis: Option<RedisDedup>,
        clock: Clock,
        opts: EngineOptions,
    ) -> Self {
        Self::with_catalogs(Arc::new(Live::fixed(0, config)), pool, redis, clock, opts)
    }

    /// An engine serving the catalog versions of `catalogs` (the binary's: followed by
    /// `live_catalog::watch`).
    pub fn with_catalogs(
        catalogs: Arc<Live<EngineCatalog>>,
        pool: PgPool,
        redis: Option<RedisDedup>,
        clock: Clock,
        opts: EngineOptions,
    ) -> Self {
        let buffer = Buffer::new(
            opts.workers,
            opts.flush_threshold,
            opts.max_pending_keys,
            opts.dedup_window,
            opts.ack_mode == AckMode::Durable,
        );
        let ledger = LedgerLookups::new(pool.clone(), opts.flush_timeout.min(opts.ack_deadline));
        let started = clock.now();
        let ack_deadline =
            chrono::TimeDelta::from_std(opts.ack_deadline).unwrap_or(chrono::TimeDelta::MAX);
        Self {
            ledger_check_before: started + LEDGER_CHECK_GRACE,
            untimed_check_before: started
                .checked_add_signed(ack_deadline)
                .and_then(|t| t.checked_add_signed(UNTIMED_LEDGER_MARGIN))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
            catalogs,
            pool: pool.clone(),
            buffer,
            redis,
            clock,
            arrival: AtomicU64::new(0),
            flush_errors: AtomicU64::new(0),
            flush_deferred: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            drain_deadline: Mutex::new(None),
            ledger,
            database_back: Notify::new(),
            opts,
            limiter: LogLimiter::default(),
            trail: Arc::new(TrailWriter::new(pool.clone())),
            live: Arc::new(LiveNotifier::new(pool.clone())),
        }
    }

    /// The served catalog versions.
    pub fn catalogs(&self) -> &Arc<Live<EngineCatalog>> {
        &self.catalogs
    }

    /// The Redis de-duplication, when configured.
    pub fn redis(&self) -> Option<&RedisDedup> {
        self.redis.as_ref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The event trail's writer: `spawn` runs it; tests call `write_pending` after
    /// `flush_once`.
    pub fn trail(&self) -> &Arc<TrailWriter> {
        &self.trail
    }

    /// The live progress notifier: `spawn` runs it; tests call `send_pending`.
    pub fn live(&self) -> &Arc<LiveNotifier> {
        &self.live
    }

    /// Users this engine moved to the dead-letter table (the process-wide count is a
    /// metric).
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    /// Tells the flush workers the database answers again: those waiting out a retry
    /// backoff retry now.
    pub fn database_back(&self) {
        self.database_back.notify_waiters();
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// (user, goal) keys waiting to be flushed.
    pub fn pending_keys(&self) -> usize {
        self.buffer.pending_keys()
    }

    /// Failed batch flushes of this engine (the process-wide count is a metric).
    pub fn flush_errors(&self) -> u64 {
        self.flush_errors.load(Ordering::Relaxed)
    }

    /// Rows this engine's committed batches deferred because another transaction held
    /// their lock (the process-wide count is a metric).
    pub fn flush_deferred(&self) -> u64 {
        self.flush_deferred.load(Ordering::Relaxed)
    }

    fn durable(&self) -> bool {
        self.opts.ack_mode == AckMode::Durable
    }
}

pub use extend_challenge_common::startup::Backoff;

/// At most one warning per reason per interval; the count of suppressed ones goes with the
/// next warning.
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl LogLimiter {
    pub fn warn(&self, reason: &'static str, log: impl FnOnce()) {
        let suppressed = {
            let mut last = self.last.lock();
            let now = Instant::now();
            match last.get_mut(reason) {
                Some((at, n)) if now.duration_since(*at) < self.interval => {
                    *n += 1;
                    return;
                }
                Some((at, n)) => {
                    *at = now;
                    std::mem::take(n)
                }
                None => {
                    last.insert(reason, (now, 0));
                    0
                }
            }
        };
        if suppressed > 0 {
            tracing::warn!(reason, suppressed, "similar warnings suppressed");
        }
        log();
    }
}
