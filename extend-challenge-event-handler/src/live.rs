//! The live progress notifier (CONTRACT §10; the channel and payloads are `store::live`).
//!
//! Each committed batch hands its changed (player, goals) here; one task sends them. While a
//! notification is in flight, the changes of the batches committed meanwhile gather and go
//! together in the next statement, merged per player. So an idle handler notifies at once
//! after each batch, and a busy one sends one statement per round trip instead of one per
//! batch (each used to take a pooled connection for four round trips, beside the flush
//! workers).
//!
//! Best effort, as the channel is: the queue is bounded ([`MAX_QUEUED_PLAYERS`]); what does
//! not fit, or a statement that fails, is counted and lost (a stream misses one push; the
//! next change or the client's own read shows the state).

use std::sync::Arc;

use extend_challenge_common::store::live;
use indexmap::IndexMap;
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Players with changes the queue holds at most.
pub const MAX_QUEUED_PLAYERS: usize = 100_000;

/// Player → changed goal ids, players in arrival order.
type Queue = IndexMap<String, Vec<String>>;

pub struct LiveNotifier {
    pool: PgPool,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl LiveNotifier {
    pub fn new(pool: PgPool) -> Self {
        LiveNotifier {
            pool,
            queue: Mutex::new(Queue::new()),
            wake: Notify::new(),
        }
    }

    /// Queues `changes` (player, changed goal ids) and wakes the sender.
    pub fn push<'a>(&self, changes: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) {
        let mut dropped = 0u64;
        {
            let mut q = self.queue.lock();
            for (user, goals) in changes {
                let full = q.len() >= MAX_QUEUED_PLAYERS;
                let i = match q.get_index_of(user) {
                    Some(i) => i,
                    None if full => {
                        dropped += 1;
                        continue;
                    }
                    None => q.insert_full(user.to_string(), Vec::new()).0,
                };
                let have = &mut q[i];
                for g in goals {
                    if !have.iter().any(|h| h == g) {
                        have.push(g.to_string());
                    }
                }
            }
        }
        if dropped > 0 {
            metrics::LIVE_NOTIFICATIONS_TOTAL
                .with_label_values(&["dropped"])
                .inc_by(dropped);
        }
        self.wake.notify_one();
    }

    /// Players queued, not yet sent.
    pub fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    /// Sends what is queued now, in one statement. Returns the payloads sent.
    pub async fn send_pending(&self) -> Result<usize, sqlx::Error> {
        let queued = std::mem::take(&mut *self.queue.lock());
        if queued.is_empty() {
            return Ok(0);
        }
        let payloads = live::encode(
            queued
                .iter()
                .map(|(u, g)| (u.as_str(), g.iter().map(String::as_str).collect())),
        );
        let result = live::notify(&self.pool, &payloads).await;
        let label = if result.is_ok() { "sent" } else { "failed" };
        metrics::LIVE_NOTIFICATIONS_TOTAL
            .with_label_values(&[label])
            .inc_by(payloads.len() as u64);
        result.map(|()| payloads.len())
    }

    /// Sends whenever something is queued, until `stop`, then once more.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let stopped = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = self.wake.notified() => false,
                };
                if let Err(e) = self.send_pending().await {
                    tracing::debug!(error = %e, "live progress notification not sent");
                }
                if stopped {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier() -> LiveNotifier {
        // A pool that never connects: these tests only look at the queue.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool");
        LiveNotifier::new(pool)
    }

    #[tokio::test]
    async fn changes_merge_per_player_and_the_queue_is_bounded() {
        let n = notifier();
        n.push([("ann", vec!["a", "b"]), ("bob", vec!["a"])]);
        n.push([("ann", vec!["b", "c"])]);
        {
            let q = n.queue.lock();
            assert_eq!(q.keys().collect::<Vec<_>>(), ["ann", "bob"]);
            assert_eq!(q["ann"], ["a", "b", "c"]);
        }
        let many: Vec<String> = (0..MAX_QUEUED_PLAYERS + 5)
            .map(|i| format!("u{i}"))
            .collect();
        n.push(many.iter().map(|u| (u.as_str(), vec!["g"])));
        assert_eq!(n.queued(), MAX_QUEUED_PLAYERS);
        // A player already queued still gets its new goals when the queue is full.
        n.push([("ann", vec!["d"])]);
        assert_eq!(n.queue.lock()["ann"], ["a", "b", "c", "d"]);
    }
}
