//! Ledger look-ups at ingest (see [`crate::engine`] and [`crate::dedup`]): "was this event
//! id applied already?" Concurrent look-ups are coalesced: one query at a time answers every
//! id queued meanwhile, so the first seconds after a restart — when most ids are looked up —
//! costs one round trip per group of callers, not one per event.

use std::sync::Arc;
use std::time::Duration;

use extend_challenge_common::store::ledger;
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<bool, String>>;

pub struct LedgerLookups {
    pool: PgPool,
    timeout: Duration,
    queue: Mutex<Vec<(Arc<str>, Reply)>>,
    /// Held by the caller running the query for the queue.
    leader: tokio::sync::Mutex<()>,
}

impl LedgerLookups {
    pub fn new(pool: PgPool, timeout: Duration) -> Self {
        Self {
            pool,
            timeout,
            queue: Mutex::new(Vec::new()),
            leader: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the ledger holds `id`; `Err` when the database could not be asked.
    pub async fn contains(&self, id: &str) -> Result<bool, String> {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().push((Arc::from(id), tx));
        loop {
            tokio::select! {
                biased;
                answer = &mut rx => {
                    return answer.unwrap_or_else(|_| Err("ledger look-up dropped".into()));
                }
                _leader = self.leader.lock() => {
                    // Whoever held the lock before may have answered us meanwhile; then the
                    // queue is someone else's (or empty) and `rx` is ready.
                    let queued = std::mem::take(&mut *self.queue.lock());
                    if !queued.is_empty() {
                        self.answer(queued).await;
                    }
                }
            }
        }
    }

    async fn answer(&self, queued: Vec<(Arc<str>, Reply)>) {
        let ids: Vec<&str> = queued.iter().map(|(id, _)| &**id).collect();
        let found = tokio::time::timeout(self.timeout, ledger::applied(&self.pool, &ids)).await;
        let found = match found {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        for (id, reply) in queued {
            let _ = reply.send(match &found {
                Ok(set) => Ok(set.contains(&*id)),
                Err(e) => Err(e.clone()),
            });
        }
    }
}
