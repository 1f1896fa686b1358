//! The event trail's writer (CONTRACT §10; the storage and its loss window are described
//! in `store::trail`): a bounded queue filled after each committed batch and by the
//! ingest path (redeliveries, negative values), written every
//! [`store::trail::WRITE_INTERVAL`](extend_challenge_common::store::trail::WRITE_INTERVAL)
//! in one statement. [`TrailWriter::write_pending`] is the testable step; tests call it
//! instead of waiting for the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use extend_challenge_common::store::trail::{self, EventRow};
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Entries (an event's result for one goal) the queue holds at most: about a second of the
/// benchmark's durable event rate times its goals per event. Beyond it new events are
/// dropped (their entries counted).
pub const QUEUE_CAPACITY: usize = 100_000;

pub struct TrailWriter {
    pool: PgPool,
    /// The queued events, and the entries they hold.
    queue: Mutex<(Vec<EventRow>, usize)>,
    enabled: AtomicBool,
    /// Serializes writes (the loop's and a test's), so entries land in queue order.
    writing: tokio::sync::Mutex<()>,
}

impl TrailWriter {
    pub fn new(pool: PgPool) -> Self {
        TrailWriter {
            pool,
            queue: Mutex::new((Vec::new(), 0)),
            enabled: AtomicBool::new(true),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// `EVENT_TRAIL_ENABLED`.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Queues `rows` (dropping the events that do not fit).
    pub fn push(&self, rows: impl IntoIterator<Item = EventRow>) {
        if !self.enabled() {
            return;
        }
        let mut q = self.queue.lock();
        let mut dropped = 0u64;
        for row in rows {
            let n = row.entries();
            if q.1 + n <= QUEUE_CAPACITY {
                q.0.push(row);
                q.1 += n;
            } else {
                dropped += n as u64;
            }
        }
        drop(q);
        if dropped > 0 {
            metrics::TRAIL_ENTRIES_TOTAL
                .with_label_values(&["dropped"])
                .inc_by(dropped);
        }
    }

    /// Entries queued, not yet written.
    pub fn queued(&self) -> usize {
        self.queue.lock().1
    }

    /// Writes what is queued now. A failed write loses its entries (counted): the trail
    /// explains, it is not a record to retry forever.
    pub async fn write_pending(&self) -> Result<u64, sqlx::Error> {
        let _serial = self.writing.lock().await;
        let (rows, entries) = std::mem::take(&mut *self.queue.lock());
        if rows.is_empty() {
            return Ok(0);
        }
        let outcome = trail::record_rows(&self.pool, &rows).await;
        let result = if outcome.is_ok() { "written" } else { "failed" };
        metrics::TRAIL_ENTRIES_TOTAL
            .with_label_values(&[result])
            .inc_by(entries as u64);
        outcome
    }

    /// Writes every interval until `stop`, then once more.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let stopped = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tokio::time::sleep(trail::WRITE_INTERVAL) => false,
                };
                if let Err(e) = self.write_pending().await {
                    tracing::debug!(error = %e, "event trail entries not written");
                }
                if stopped {
                    return;
                }
            }
        })
    }
}
