//! The event pipeline: ingest (validated event → deltas → de-duplication → buffer →
//! acknowledgement) and flush (buffer → one transaction per batch). The gRPC services in
//! [`crate::grpc`] only translate messages into [`Event`]s and call [`Engine::ingest`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::{ChallengeConfig, Goal};
use extend_challenge_common::progress::{self, Delta};
use extend_challenge_common::settings::AckMode;
use extend_challenge_common::store::flush::{self, FlushError, FlushOutcome, Flushed, TxStatus};
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::buffer::{Batch, Buffer, Contribution, Enqueued};
use crate::dedup::{Claim, RedisDedup};
use crate::event::{Event, Source};
use crate::metrics;

/// Tunables of the pipeline. [`crate::app::Builder`] fills them from `Settings`.
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
    /// Retry backoff after a failed flush: first and maximum delay.
    pub retry_backoff: (Duration, Duration),
    /// On shutdown, keep retrying the final flush this long.
    pub shutdown_flush_timeout: Duration,
}

/// The pipeline shared by the gRPC services and the flush workers.
pub struct Engine {
    config: Arc<ChallengeConfig>,
    pool: PgPool,
    buffer: Buffer,
    redis: Option<RedisDedup>,
    clock: Clock,
    arrival: AtomicU64,
    flush_errors: AtomicU64,
    flush_deferred: AtomicU64,
    /// Set when the final drain starts: unconfirmed commits stop being chased after it.
    drain_deadline: Mutex<Option<Instant>>,
    opts: EngineOptions,
    limiter: LogLimiter,
}

impl Engine {
    pub fn new(
        config: Arc<ChallengeConfig>,
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
        Self {
            config,
            pool,
            buffer,
            redis,
            clock,
            arrival: AtomicU64::new(0),
            flush_errors: AtomicU64::new(0),
            flush_deferred: AtomicU64::new(0),
            drain_deadline: Mutex::new(None),
            opts,
            limiter: LogLimiter::default(),
        }
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

    /// Handles one validated event; the result is the RPC's answer.
    pub async fn ingest(&self, ev: Event) -> Result<(), Status> {
        let kind = ev.kind.as_str();
        let started = Instant::now();
        let res = self.ingest_inner(&ev).await;
        metrics::EVENT_PROCESSING_SECONDS
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        let (outcome, reason) = match &res {
            Ok(Accepted::Applied) => ("accepted", "ok"),
            Ok(Accepted::Skipped(reason)) => ("skipped", *reason),
            Err((code, reason)) => match code {
                tonic::Code::ResourceExhausted => ("rejected", *reason),
                _ => ("unavailable", *reason),
            },
        };
        metrics::EVENTS_TOTAL
            .with_label_values(&[kind, outcome, reason])
            .inc();
        match res {
            Ok(Accepted::Skipped(reason)) => {
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        namespace = %ev.namespace,
                        "event skipped (OK, no-op)"
                    )
                });
                Ok(())
            }
            Ok(Accepted::Applied) => Ok(()),
            Err((code, reason)) => {
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        "event not accepted; the platform will redeliver"
                    )
                });
                Err(Status::new(code, reason_message(reason)))
            }
        }
    }

    async fn ingest_inner(&self, ev: &Event) -> Result<Accepted, (tonic::Code, &'static str)> {
        if !self.opts.namespace.is_empty() && ev.namespace != self.opts.namespace {
            return Ok(Accepted::Skipped("namespace_mismatch"));
        }
        let arrival = self.clock.now();
        let seq = self.arrival.fetch_add(1, Ordering::Relaxed);
        let at_time = ev.timestamp.unwrap_or(arrival);
        if let Some(ts) = ev.timestamp {
            let age = (arrival - ts).num_milliseconds() as f64 / 1000.0;
            metrics::EVENT_AGE_SECONDS.observe(age.max(0.0));
        }
        let at = (at_time.timestamp_millis(), seq);
        let deltas: Vec<(Arc<Goal>, Delta)> = match &ev.source {
            Source::Login => self
                .config
                .login_goals()
                .iter()
                .map(|g| (g.clone(), progress::delta_for_login(g)))
                .collect(),
            Source::Stat { code, value, inc } => {
                let goals = self.config.stat_goals(code);
                if goals.is_empty() {
                    return Ok(Accepted::Skipped("no_matching_goal"));
                }
                goals
                    .iter()
                    .filter_map(|g| {
                        progress::delta_for_stat(g, *value, *inc, at).map(|d| (g.clone(), d))
                    })
                    .collect()
            }
        };
        if deltas.is_empty() {
            return Ok(Accepted::Skipped(match ev.source {
                Source::Login => "no_matching_goal",
                Source::Stat { .. } => "no_effect",
            }));
        }
        tracing::debug!(event = ev.kind.as_str(), user_id = %ev.user_id, id = %ev.id, "event");
        // The keys a durable acknowledgement waits for.
        let goals: Vec<Arc<Goal>> = if self.durable() {
            deltas.iter().map(|(g, _)| g.clone()).collect()
        } else {
            Vec::new()
        };
        let waiter = Waiter {
            part: self.buffer.partition_of(&ev.user_id),
            user_id: &ev.user_id,
            goals: &goals,
        };

        let part = waiter.part;
        let mut leased = false;
        if !ev.id.is_empty() {
            if let Some(generation) = self.buffer.lookup(part, &ev.id) {
                return self.duplicate(&waiter, generation).await;
            }
            if let Some(redis) = &self.redis {
                match redis.claim(&ev.id).await {
                    Claim::Claimed => leased = true,
                    Claim::Done => return Ok(Accepted::Skipped("duplicate")),
                    Claim::InFlight => {
                        // Ours (a concurrent copy) or another replica's.
                        return match self.buffer.lookup(part, &ev.id) {
                            Some(generation) => self.duplicate(&waiter, generation).await,
                            None => Err((tonic::Code::Unavailable, "duplicate_in_flight")),
                        };
                    }
                    Claim::Unknown => {}
                }
            }
        }
        let enqueued = self.buffer.enqueue(
            part,
            Contribution {
                id: &ev.id,
                user_id: &ev.user_id,
                namespace: &ev.namespace,
                deltas,
                leased,
            },
        );
        match enqueued {
            Enqueued::Accepted(generation) => {
                if self.durable() && !self.await_commit(&waiter, generation).await {
                    return Err((tonic::Code::Unavailable, "commit_timeout"));
                }
                Ok(Accepted::Applied)
            }
            Enqueued::Duplicate(generation) => self.duplicate(&waiter, generation).await,
            Enqueued::Full => {
                if leased && let Some(redis) = &self.redis {
                    redis.release(&ev.id).await;
                }
                Err((tonic::Code::ResourceExhausted, "buffer_full"))
            }
        }
    }

    /// A redelivery of an id this process buffered: OK once the first copy is durable.
    async fn duplicate(
        &self,
        waiter: &Waiter<'_>,
        generation: u64,
    ) -> Result<Accepted, (tonic::Code, &'static str)> {
        if self.durable() && !self.await_commit(waiter, generation).await {
            return Err((tonic::Code::Unavailable, "commit_timeout"));
        }
        Ok(Accepted::Skipped("duplicate"))
    }

    /// Waits until the event's deltas are durable: its generation committed, and none of its
    /// keys deferred since (a deferred key waits for the batch that finally writes it).
    async fn await_commit(&self, w: &Waiter<'_>, generation: u64) -> bool {
        self.buffer
            .is_committed(w.part, generation, w.user_id, w.goals)
            || self
                .buffer
                .wait_committed(
                    w.part,
                    generation,
                    w.user_id,
                    w.goals,
                    self.opts.ack_deadline,
                )
                .await
    }

    /// Flushes every partition once (what is pending now). On failure the batches are kept
    /// in the buffer and the first error is returned. Keys whose row another transaction
    /// holds are deferred (counted in [`FlushOutcome::deferred`]) and stay buffered.
    pub async fn flush_once(&self) -> Result<FlushOutcome, FlushError> {
        let mut total = FlushOutcome::default();
        let mut first_err = None;
        for part in 0..self.buffer.partitions() {
            // A capped batch leaves the rest of what was buffered for the next one.
            loop {
                match self.flush_partition(part).await {
                    Ok(o) => {
                        total.add(o);
                        // Stop when nothing was carried, or nothing could be written (every
                        // key of the batch locked elsewhere): looping would spin.
                        if o.carried == 0 || o.updated + o.unchanged + o.not_assigned == 0 {
                            break;
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        match first_err {
            None => Ok(total),
            Some(e) => Err(e),
        }
    }

    /// Flushes what one partition holds now, as one transaction. Deferred keys (row locked
    /// elsewhere) go back into the buffer; that is not an error.
    pub async fn flush_partition(&self, part: usize) -> Result<FlushOutcome, FlushError> {
        let _serial = self.buffer.lock_flush(part).await;
        // Whole users, at most the cap, round robin from where the previous batch stopped.
        let Some(batch) = self.buffer.take(part, self.opts.max_batch_keys.max(1)) else {
            return Ok(FlushOutcome::default());
        };
        let started = Instant::now();
        let now = self.clock.now();
        let defaults = self
            .opts
            .auto_initialize
            .then(|| self.config.default_goals());
        let res = flush::flush_batch(
            &self.pool,
            &batch.items,
            defaults,
            now,
            self.opts.flush_timeout,
        )
        .await;
        let res = match res {
            Err(FlushError::CommitUnconfirmed {
                xid,
                flushed,
                reason,
            }) => {
                tracing::warn!(xid, %reason, "batch commit unconfirmed; asking the database");
                self.resolve_commit(xid, flushed, reason).await
            }
            other => other,
        };
        self.record_pool();
        let result_label = if res.is_ok() { "ok" } else { "error" };
        metrics::FLUSH_DURATION_SECONDS
            .with_label_values(&[result_label])
            .observe(started.elapsed().as_secs_f64());
        match res {
            Ok(mut flushed) => {
                flushed.outcome.carried = batch.carried as u64;
                let outcome = flushed.outcome;
                self.committed(part, batch, flushed).await;
                Ok(outcome)
            }
            Err(e) => {
                metrics::FLUSH_ERRORS_TOTAL.inc();
                self.flush_errors.fetch_add(1, Ordering::Relaxed);
                let keys = batch.items.len();
                self.limiter.warn("flush_failed", || {
                    tracing::error!(error = %e, keys, "batch flush failed; keeping it for retry")
                });
                self.buffer.restore(part, batch);
                Err(e)
            }
        }
    }

    /// Finds out whether an unconfirmed commit happened. Retries while the database is
    /// unreachable: until it answers, the batch can be neither acknowledged nor retried.
    async fn resolve_commit(
        &self,
        xid: i64,
        flushed: Flushed,
        reason: String,
    ) -> Result<Flushed, FlushError> {
        let mut backoff = Backoff::new(self.opts.retry_backoff);
        loop {
            let status = tokio::time::timeout(
                self.opts.flush_timeout,
                flush::transaction_status(&self.pool, xid),
            )
            .await;
            match status {
                Ok(Ok(TxStatus::Committed)) => return Ok(flushed),
                Ok(Ok(TxStatus::Aborted)) => {
                    return Err(FlushError::CommitUnconfirmed {
                        xid,
                        flushed,
                        reason: format!("{reason}; the transaction aborted"),
                    });
                }
                Ok(Ok(TxStatus::Forgotten)) => {
                    tracing::error!(
                        xid,
                        "the database no longer knows the batch's transaction; retrying the batch"
                    );
                    return Err(FlushError::CommitUnconfirmed {
                        xid,
                        flushed,
                        reason,
                    });
                }
                Ok(Ok(TxStatus::InProgress)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(xid, error = %e, "cannot read the batch's transaction status yet")
                }
                Err(_) => tracing::warn!(xid, "transaction status query timed out"),
            }
            if self.drain_deadline_passed() {
                tracing::error!(
                    xid,
                    "shutting down with the batch's commit still unconfirmed"
                );
                return Err(FlushError::CommitUnconfirmed {
                    xid,
                    flushed,
                    reason: format!("{reason}; still unknown at shutdown"),
                });
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Pause before retrying a batch that was only deferred rows.
    fn defer_delay(&self) -> Duration {
        self.opts
            .flush_interval
            .clamp(MIN_DEFER_DELAY, MAX_DEFER_DELAY)
    }

    fn drain_deadline_passed(&self) -> bool {
        self.drain_deadline
            .lock()
            .is_some_and(|d| Instant::now() >= d)
    }

    async fn committed(&self, part: usize, batch: Batch, flushed: Flushed) {
        let Flushed { outcome, deferred } = flushed;
        let (keys, generation) = (batch.items.len(), batch.generation);
        metrics::FLUSH_BATCH_KEYS.observe(keys as f64);
        let done_ids = self.buffer.commit(part, batch, &deferred);
        let rows = &metrics::FLUSH_ROWS_TOTAL;
        rows.with_label_values(&["updated"]).inc_by(outcome.updated);
        rows.with_label_values(&["unchanged"])
            .inc_by(outcome.unchanged);
        rows.with_label_values(&["not_assigned"])
            .inc_by(outcome.not_assigned);
        rows.with_label_values(&["initialized"])
            .inc_by(outcome.initialized);
        metrics::FLUSH_DEFERRED_TOTAL.inc_by(outcome.deferred);
        self.flush_deferred
            .fetch_add(outcome.deferred, Ordering::Relaxed);
        if outcome.deferred > 0 {
            tracing::debug!(
                deferred = outcome.deferred,
                "rows locked by another transaction; kept for the next batch"
            );
        }
        tracing::debug!(
            partition = part,
            generation,
            keys,
            updated = outcome.updated,
            not_assigned = outcome.not_assigned,
            initialized = outcome.initialized,
            deferred = outcome.deferred,
            "batch committed"
        );
        // Redis first, then the callers' OK: another replica must never see an id as
        // "pending" once its first copy has been acknowledged.
        if let Some(redis) = &self.redis {
            redis.mark_done(&done_ids).await;
        }
        self.buffer.acknowledge(part);
    }

    fn record_pool(&self) {
        extend_challenge_common::metrics::sample_db_pool(&self.pool);
    }

    /// The flush worker of one partition: batches back to back in durable mode, on the
    /// interval (or early at the size threshold) in buffered mode; exponential backoff
    /// after failures. When `stop` fires it flushes what is left, retrying for up to
    /// `shutdown_flush_timeout`; returns `false` if something could not be written.
    pub async fn run_worker(self: Arc<Self>, part: usize, stop: CancellationToken) -> bool {
        let mut backoff = Backoff::new(self.opts.retry_backoff);
        let mut next_tick = tokio::time::Instant::now() + self.opts.flush_interval;
        loop {
            let ready = self.durable() && self.buffer.has_pending(part);
            if !ready {
                let durable = self.durable();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.buffer.woken(part) => {}
                    _ = tokio::time::sleep_until(next_tick), if !durable => {}
                }
            }
            next_tick = tokio::time::Instant::now() + self.opts.flush_interval;
            match self.flush_partition(part).await {
                Ok(outcome) => {
                    backoff.reset();
                    if only_deferred(&outcome) {
                        // Nothing but rows locked elsewhere (a claim in progress): not an
                        // error, but retrying at once would spin. New events cut it short.
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = self.buffer.woken(part) => {}
                            _ = tokio::time::sleep(self.defer_delay()) => {}
                        }
                    }
                }
                Err(_) => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        self.drain(part).await
    }

    async fn drain(&self, part: usize) -> bool {
        let deadline = Instant::now() + self.opts.shutdown_flush_timeout;
        {
            let mut d = self.drain_deadline.lock();
            // Several workers drain at once: the first sets the deadline for all.
            if d.is_none() {
                *d = Some(deadline);
            }
        }
        let mut backoff = Backoff::new(self.opts.retry_backoff);
        loop {
            match self.flush_partition(part).await {
                Ok(_) if !self.buffer.has_pending(part) => return true,
                Ok(outcome) => {
                    backoff.reset();
                    if only_deferred(&outcome) {
                        if Instant::now() >= deadline {
                            tracing::error!(
                                partition = part,
                                deferred = outcome.deferred,
                                pending_keys = self.buffer.pending_keys(),
                                "giving up the final flush: rows still locked by another \
                                 transaction; pending updates are lost"
                            );
                            return false;
                        }
                        tokio::time::sleep(self.defer_delay()).await;
                    }
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        tracing::error!(
                            error = %e,
                            partition = part,
                            pending_keys = self.buffer.pending_keys(),
                            "giving up the final flush: pending updates are lost"
                        );
                        return false;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// Bounds of the pause after a batch that was only deferred rows (see
/// [`Engine::defer_delay`]).
const MIN_DEFER_DELAY: Duration = Duration::from_millis(5);
const MAX_DEFER_DELAY: Duration = Duration::from_millis(100);

/// A batch that wrote nothing because every one of its rows was locked elsewhere.
fn only_deferred(o: &FlushOutcome) -> bool {
    o.deferred > 0 && o.updated == 0 && o.unchanged == 0 && o.not_assigned == 0
}

/// What a durable acknowledgement waits for: the event's partition and keys.
struct Waiter<'a> {
    part: usize,
    user_id: &'a str,
    goals: &'a [Arc<Goal>],
}

enum Accepted {
    Applied,
    Skipped(&'static str),
}

fn reason_message(reason: &str) -> &'static str {
    match reason {
        "buffer_full" => "event buffer is full; retry later",
        "duplicate_in_flight" => "this event id is being processed by another replica; retry later",
        "commit_timeout" => "the event is buffered but not yet committed; retry later",
        _ => "event not accepted; retry later",
    }
}

/// Capped exponential backoff with jitter.
pub struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new((first, max): (Duration, Duration)) -> Self {
        Self {
            first,
            max,
            current: first,
        }
    }

    pub fn reset(&mut self) {
        self.current = self.first;
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::random_range(0.0..0.2);
        d.mul_f64(1.0 + jitter)
    }
}

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
