//! The flush path: a partition's batch → one transaction; a batch Postgres refuses is
//! bisected until the refused users are isolated and dead-lettered; an unconfirmed commit
//! is resolved by asking the database; the workers, and the drain at shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use extend_challenge_common::store;
use extend_challenge_common::store::dead_letter::{self, escape_control};
use extend_challenge_common::store::flush::{
    self, FlushError, FlushOutcome, Flushed, ItemResult, TxStatus,
};
use tokio_util::sync::CancellationToken;

use super::{Backoff, Engine};
use crate::buffer::{self, Batch, Fate};
use crate::metrics;

impl Engine {
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
        let (fates, mut outcome, error, results) = self.write(&batch, now).await;
        self.after_commit(&batch, &fates, &results, now);
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

    /// Writes a batch; returns each user's fate, what was committed, the error that
    /// stopped it, if any (the users not written then go back for a retry), and per item
    /// what the rules made of it (`None` where nothing was committed).
    async fn write(
        &self,
        batch: &Batch,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (
        Vec<Fate>,
        FlushOutcome,
        Option<FlushError>,
        Vec<Option<ItemResult>>,
    ) {
        let n = batch.users.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0usize);
        for u in &batch.users {
            offsets.push(offsets.last().copied().unwrap_or(0) + u.keys);
        }
        let mut results = vec![None; batch.items.len()];
        let (fates, outcome, error) = match self.flush_users(batch, &offsets, 0..n, now).await {
            Ok(flushed) => {
                results = flushed.results;
                (
                    buffer::fates_deferring(batch, &flushed.deferred),
                    flushed.outcome,
                    None,
                )
            }
            Err(e) if e.is_retryable() => (vec![Fate::Back; n], FlushOutcome::default(), Some(e)),
            Err(e) => self.isolate(batch, &offsets, now, e, &mut results).await,
        };
        results.resize(batch.items.len(), None);
        (fates, outcome, error, results)
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
        results: &mut [Option<ItemResult>],
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
                        for (k, r) in flushed.results.iter().enumerate() {
                            results[first_item + k] = *r;
                        }
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
        let catalog = self.catalogs.load();
        let defaults = self.opts.auto_initialize.then_some(&catalog.defaults);
        let items = &batch.items[offsets[range.start]..offsets[range.end]];
        let users = &batch.users[range];
        let mut res = Err(FlushError::TimedOut(self.opts.flush_timeout));
        // A batch that lost a race — the first row of a goal inserted by another
        // transaction meanwhile (`store::flush`), a deadlock — wrote nothing and finds the
        // other transaction's rows when retried: at once, a few times, before it counts as
        // a failed flush.
        for attempt in 1..=LOST_RACE_ATTEMPTS {
            res = flush::flush_batch(
                &self.pool,
                items,
                users,
                defaults,
                now,
                self.opts.flush_timeout,
            )
            .await;
            match &res {
                Err(FlushError::NotWritten(e))
                    if store::is_lost_race(e) && attempt < LOST_RACE_ATTEMPTS =>
                {
                    metrics::FLUSH_LOST_RACES_TOTAL.inc();
                    tracing::debug!(error = %e, attempt, "batch lost a race; retrying it");
                }
                _ => break,
            }
        }
        if let Ok(flushed) = &res {
            for (phase, took) in flushed.timings.phases() {
                metrics::FLUSH_PHASE_SECONDS
                    .with_label_values(&[phase])
                    .observe(took.as_secs_f64());
            }
        }
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

/// Attempts of a batch that keeps losing races ([`store::is_lost_race`]) before its error
/// counts as a failed flush (kept and retried with backoff).
const LOST_RACE_ATTEMPTS: u32 = 3;
const MAX_DEFER_DELAY: Duration = Duration::from_millis(100);

/// A batch that wrote nothing because every one of its rows was locked elsewhere.
fn only_deferred(o: &FlushOutcome) -> bool {
    o.deferred > 0 && o.updated == 0 && o.unchanged == 0 && o.not_assigned == 0 && o.erased == 0
}
