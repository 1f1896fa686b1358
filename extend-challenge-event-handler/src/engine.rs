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
use extend_challenge_common::store::dead_letter::{self, escape_control};
use extend_challenge_common::store::flush::{self, FlushError, FlushOutcome, Flushed, TxStatus};
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::buffer::{self, Batch, Buffer, Contribution, Enqueued, Fate};
use crate::dedup::{Claim, RedisDedup};
use crate::event::{Erasure, Event, EventKind, Source};
use crate::ledger::LedgerLookups;
use crate::metrics;

/// An event whose timestamp is not later than the process start plus this may have been
/// applied by an earlier incarnation of the handler (one that committed it and died before
/// answering): its id is looked up in the ledger. The margin covers clock skew between the
/// event's producer and this host (NTP keeps it far below this). It is small on purpose:
/// every event inside the window costs a ledger look-up, and a full minute of look-ups
/// after each restart cost buffered mode a third of its throughput (BENCHMARKS.md).
pub const LEDGER_CHECK_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

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
    config: Arc<ChallengeConfig>,
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
    /// Notified when the database is reachable again: failed workers retry at once.
    database_back: Notify,
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
        let ledger = LedgerLookups::new(pool.clone(), opts.flush_timeout.min(opts.ack_deadline));
        Self {
            ledger_check_before: clock.now() + LEDGER_CHECK_GRACE,
            config,
            pool,
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
        }
    }

    /// The Redis de-duplication, when configured.
    pub fn redis(&self) -> Option<&RedisDedup> {
        self.redis.as_ref()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
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
            if ev.timestamp.is_none_or(|ts| ts < self.ledger_check_before)
                && self.applied_before(&ev.id).await?
            {
                return Ok(Accepted::Skipped("duplicate"));
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
                    Claim::Expired { current } => {
                        // Its owner died (or stalled past its lease): applied, or not yet?
                        if self.applied_before(&ev.id).await? {
                            return Ok(Accepted::Skipped("duplicate"));
                        }
                        match redis.take_over(&ev.id, &current).await {
                            Ok(true) => {
                                metrics::DEDUP_TAKEOVERS_TOTAL.inc();
                                leased = true;
                            }
                            Ok(false) => {
                                return Err((tonic::Code::Unavailable, "duplicate_in_flight"));
                            }
                            // Redis failed: as if it were not there.
                            Err(_) => {}
                        }
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
                at: at_time,
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

    /// IAM's GDPR deletion request (CONTRACT §3.6): erases the user's data at once and
    /// durably, in the same store function as the service's `DeleteUserData`, and records
    /// the tombstone that makes every flush drop updates from earlier events. Not rate
    /// limited: an IAM deletion is authoritative, and a redelivery only moves the tombstone
    /// forward. Another namespace: `OK`, skipped. Database down: `Unavailable` (the
    /// platform redelivers; the request is never lost).
    pub async fn erase(&self, e: Erasure) -> Result<(), Status> {
        let kind = EventKind::GdprDeletion.as_str();
        let count = |outcome: &str, reason: &str| {
            metrics::EVENTS_TOTAL
                .with_label_values(&[kind, outcome, reason])
                .inc();
        };
        if !self.opts.namespace.is_empty() && e.namespace != self.opts.namespace {
            count("skipped", "namespace_mismatch");
            self.limiter.warn("namespace_mismatch", || {
                tracing::warn!(event = kind, namespace = %e.namespace, "event skipped (OK, no-op)")
            });
            return Ok(());
        }
        let started = Instant::now();
        let now = self.clock.now();
        let erased = tokio::time::timeout(
            self.opts.ack_deadline,
            extend_challenge_common::store::erasure::erase_user(
                &self.pool,
                &e.user_id,
                &e.namespace,
                now,
                None,
            ),
        )
        .await;
        metrics::EVENT_PROCESSING_SECONDS
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        // Not done: the platform redelivers the request (it is never lost).
        let failed = |reason: &str, error: String| {
            count("unavailable", reason);
            tracing::error!(
                audit = true,
                action = "gdpr_user_data_deletion",
                outcome = "failed",
                source = "iam_event",
                user_id = %e.user_id,
                namespace = %e.namespace,
                event_id = %e.id,
                %error,
                "player data erasure failed; the platform will redeliver"
            );
            Err(Status::unavailable(
                "cannot erase the player's data now; retry later",
            ))
        };
        match erased {
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::Erased(done))) => {
                count("accepted", "ok");
                tracing::info!(
                    audit = true,
                    action = "gdpr_user_data_deletion",
                    outcome = "completed",
                    source = "iam_event",
                    user_id = %e.user_id,
                    namespace = %e.namespace,
                    event_id = %e.id,
                    rows = done.progress_rows,
                    grant_rows = done.grant_rows,
                    dead_letter_rows = done.dead_letter_rows,
                    "player data erased"
                );
                Ok(())
            }
            // Not asked for a rate limit: cannot happen; the erasure is done either way.
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::RateLimited)) => {
                count("skipped", "recently_erased");
                Ok(())
            }
            Ok(Err(error)) => failed("erasure_failed", error.to_string()),
            Err(_) => failed("erasure_timeout", "timed out".to_string()),
        }
    }

    /// Whether the ledger records `id` as applied (then Redis learns it is done). The
    /// database must answer: without it, a redelivery of an applied event cannot be told
    /// from a new one, so the event is refused `Unavailable` (the platform redelivers).
    async fn applied_before(&self, id: &str) -> Result<bool, (tonic::Code, &'static str)> {
        metrics::DEDUP_LEDGER_LOOKUPS_TOTAL.inc();
        match self.ledger.contains(id).await {
            Ok(true) => {
                if let Some(redis) = &self.redis {
                    redis.mark_done(&[Arc::from(id)]).await;
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.limiter.warn(
                    "ledger_unavailable",
                    || tracing::warn!(error = %e, "cannot read the event ledger"),
                );
                Err((tonic::Code::Unavailable, "ledger_unavailable"))
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
                        if o.carried == 0
                            || o.updated + o.unchanged + o.not_assigned + o.dead_lettered + o.erased
                                == 0
                        {
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

    /// Flushes what one partition holds now, as one transaction. Users with a row locked
    /// elsewhere (deferred) go back into the buffer; that is not an error. When Postgres
    /// refuses the batch's data, the refused users are isolated (see [`Engine::isolate`]):
    /// everyone else is committed, they are dead-lettered.
    pub async fn flush_partition(&self, part: usize) -> Result<FlushOutcome, FlushError> {
        let _serial = self.buffer.lock_flush(part).await;
        // Whole users, at most the cap, round robin from where the previous batch stopped.
        let Some(batch) = self.buffer.take(part, self.opts.max_batch_keys.max(1)) else {
            return Ok(FlushOutcome::default());
        };
        let started = Instant::now();
        let now = self.clock.now();
        let (fates, mut outcome, error) = self.write(&batch, now).await;
        self.record_pool();
        let result_label = if error.is_none() { "ok" } else { "error" };
        metrics::FLUSH_DURATION_SECONDS
            .with_label_values(&[result_label])
            .observe(started.elapsed().as_secs_f64());
        outcome.carried = batch.carried as u64;
        let (keys, generation) = (batch.items.len(), batch.generation);
        let done = self.buffer.settle(part, batch, &fates);
        self.record_outcome(part, generation, keys, &outcome);
        // Redis first, then the callers' OK: another replica must never see an id as
        // "pending" once its first copy has been acknowledged.
        if let Some(redis) = &self.redis {
            redis.mark_done(&done).await;
        }
        self.buffer.acknowledge(part);
        match error {
            None => Ok(outcome),
            Some(e) => {
                metrics::FLUSH_ERRORS_TOTAL.inc();
                self.flush_errors.fetch_add(1, Ordering::Relaxed);
                self.limiter.warn("flush_failed", || {
                    tracing::error!(error = %e, keys, "batch flush failed; keeping it for retry")
                });
                Err(e)
            }
        }
    }

    /// Writes a batch; returns each user's fate, what was committed, and the error that
    /// stopped it, if any (the users not written then go back for a retry).
    async fn write(
        &self,
        batch: &Batch,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Vec<Fate>, FlushOutcome, Option<FlushError>) {
        let n = batch.users.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0usize);
        for u in &batch.users {
            offsets.push(offsets.last().copied().unwrap_or(0) + u.keys);
        }
        match self.flush_users(batch, &offsets, 0..n, now).await {
            Ok(flushed) => (
                buffer::fates_deferring(batch, &flushed.deferred),
                flushed.outcome,
                None,
            ),
            Err(e) if e.is_retryable() => (vec![Fate::Back; n], FlushOutcome::default(), Some(e)),
            Err(e) => self.isolate(batch, &offsets, now, e).await,
        }
    }

    /// Postgres refused the batch's data (`first`). Finds the refused users by bisection —
    /// each half of the users in its own transaction, halves that fail split again — so
    /// every user Postgres accepts is committed, and a user that fails alone is moved to
    /// the dead-letter table with its event ids and the error. A connectivity or transient
    /// error on the way stops the search: the users not settled yet go back for a retry.
    async fn isolate(
        &self,
        batch: &Batch,
        offsets: &[usize],
        now: chrono::DateTime<chrono::Utc>,
        first: FlushError,
    ) -> (Vec<Fate>, FlushOutcome, Option<FlushError>) {
        let n = batch.users.len();
        let mut fates = vec![Fate::Back; n];
        let mut outcome = FlushOutcome::default();
        tracing::warn!(users = n, error = %first, "the database refused a batch; isolating the refused users");
        // Ranges of users known to fail, with their error.
        let mut failing = vec![(0..n, first.to_string())];
        while let Some((range, error)) = failing.pop() {
            if range.len() == 1 {
                match self.dead_letter(batch, offsets, range.start, &error).await {
                    Ok(keys) => {
                        fates[range.start] = Fate::DeadLettered;
                        outcome.dead_lettered += keys;
                    }
                    Err(e) => return (fates, outcome, Some(e)),
                }
                continue;
            }
            let mid = range.start + range.len() / 2;
            for half in [range.start..mid, mid..range.end] {
                match self.flush_users(batch, offsets, half.clone(), now).await {
                    Ok(flushed) => {
                        let first_item = offsets[half.start];
                        for i in half.clone() {
                            let (a, b) = (offsets[i] - first_item, offsets[i + 1] - first_item);
                            let deferred = flushed.deferred.iter().any(|&d| d >= a && d < b);
                            fates[i] = if deferred { Fate::Back } else { Fate::Written };
                        }
                        outcome.add(flushed.outcome);
                    }
                    Err(e) if e.is_retryable() => return (fates, outcome, Some(e)),
                    Err(e) => failing.push((half, e.to_string())),
                }
            }
        }
        (fates, outcome, None)
    }

    /// Flushes users `range` of `batch` in one transaction (resolving an unconfirmed
    /// commit).
    async fn flush_users(
        &self,
        batch: &Batch,
        offsets: &[usize],
        range: std::ops::Range<usize>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Flushed, FlushError> {
        let defaults = self
            .opts
            .auto_initialize
            .then(|| self.config.default_goals());
        let res = flush::flush_batch(
            &self.pool,
            &batch.items[offsets[range.start]..offsets[range.end]],
            &batch.users[range],
            defaults,
            now,
            self.opts.flush_timeout,
        )
        .await;
        match res {
            Err(FlushError::CommitUnconfirmed {
                xid,
                flushed,
                reason,
            }) => {
                tracing::warn!(xid, %reason, "batch commit unconfirmed; asking the database");
                self.resolve_commit(xid, flushed, reason).await
            }
            other => other,
        }
    }

    /// Moves user `i` of `batch` to the dead-letter table; returns its keys.
    async fn dead_letter(
        &self,
        batch: &Batch,
        offsets: &[usize],
        i: usize,
        error: &str,
    ) -> Result<u64, FlushError> {
        let user = &batch.users[i];
        let items = &batch.items[offsets[i]..offsets[i + 1]];
        let stored =
            dead_letter::insert(&self.pool, items, user, error, self.opts.flush_timeout).await;
        let id = match stored {
            Ok(id) => Some(id),
            Err(FlushError::CommitUnconfirmed {
                xid,
                flushed,
                reason,
            }) => {
                tracing::warn!(xid, %reason, "dead letter commit unconfirmed; asking the database");
                // Committed: stored (its id unknown here). Otherwise: back for a retry.
                self.resolve_commit(xid, flushed, reason).await?;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a dead letter; keeping the user's updates for retry");
                return Err(e);
            }
        };
        metrics::DEAD_LETTERS_TOTAL.inc();
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        let event_ids: Vec<String> = user.event_ids.iter().map(|id| escape_control(id)).collect();
        tracing::error!(
            dead_letter_id = id,
            user_id = %escape_control(&user.user_id),
            event_ids = ?event_ids,
            keys = items.len(),
            error = %escape_control(error),
            "the database refused this user's updates; moved them to the dead-letter \
             table (list and replay: extend-challenge-event-handler dead-letters)"
        );
        Ok(items.len() as u64)
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

    fn record_outcome(&self, part: usize, generation: u64, keys: usize, outcome: &FlushOutcome) {
        metrics::FLUSH_BATCH_KEYS.observe(keys as f64);
        let rows = &metrics::FLUSH_ROWS_TOTAL;
        rows.with_label_values(&["updated"]).inc_by(outcome.updated);
        rows.with_label_values(&["unchanged"])
            .inc_by(outcome.unchanged);
        rows.with_label_values(&["not_assigned"])
            .inc_by(outcome.not_assigned);
        rows.with_label_values(&["initialized"])
            .inc_by(outcome.initialized);
        rows.with_label_values(&["dead_lettered"])
            .inc_by(outcome.dead_lettered);
        // Updates from events that happened before their user's data erasure.
        rows.with_label_values(&["erased"]).inc_by(outcome.erased);
        metrics::FLUSH_DEFERRED_TOTAL.inc_by(outcome.deferred);
        self.flush_deferred
            .fetch_add(outcome.deferred, Ordering::Relaxed);
        if outcome.deferred > 0 {
            tracing::debug!(
                deferred = outcome.deferred,
                "rows locked by another transaction; their users kept for the next batch"
            );
        }
        if outcome.ledger_conflicts > 0 {
            metrics::DEDUP_LEDGER_CONFLICTS_TOTAL.inc_by(outcome.ledger_conflicts);
            tracing::error!(
                partition = part,
                conflicts = outcome.ledger_conflicts,
                "events applied again: their ids were already in the event ledger"
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
            dead_lettered = outcome.dead_lettered,
            erased = outcome.erased,
            "batch settled"
        );
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
                        _ = self.database_back.notified() => {}
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
                    tokio::select! {
                        _ = self.database_back.notified() => {}
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
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
    o.deferred > 0 && o.updated == 0 && o.unchanged == 0 && o.not_assigned == 0 && o.erased == 0
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
        "ledger_unavailable" => {
            "the database is unreachable: cannot tell whether this event was applied; retry later"
        }
        _ => "event not accepted; retry later",
    }
}

/// Moved to the common start-up module (the migrations retry with it too).
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
