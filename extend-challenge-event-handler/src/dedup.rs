//! Cross-replica de-duplication of event ids through Redis (CONTRACT §2.2). Each replica
//! also keeps an in-process window (see [`crate::buffer`]); this module covers redeliveries
//! that reach another replica, or this one after its window forgot the id.
//!
//! Protocol, per event id `id`:
//! - on arrival: `SET <prefix><id> pending NX GET EX <lease>` — one round trip that either
//!   takes a short lease (the key did not exist: process the event) or returns the current
//!   state: `done` (already committed somewhere: answer OK, skip) or `pending` (another
//!   replica holds it in its buffer: answer `Unavailable` so the platform redelivers later,
//!   never a premature OK);
//! - after the batch holding the event committed: `SET <prefix><id> done EX <ttl>` (24 h),
//!   pipelined for the whole batch;
//! - when the event is refused (buffer full): `DEL` so a redelivery is not blocked.
//!
//! Remaining windows, by design (availability over exactly-once):
//! - a replica commits a batch and crashes before marking its ids `done`: once the lease
//!   expires, a redelivery elsewhere is applied a second time;
//! - an event stays pending in a replica longer than the lease (database down for longer):
//!   a redelivery to another replica after the lease expired is applied twice once both
//!   replicas commit;
//! - Redis is unreachable: the handler falls back to its in-process window only (counted
//!   in `challenge_dedup_redis_errors_total`), so cross-replica duplicates in that time are
//!   applied twice.
//!
//! Within one replica a redelivered id whose first copy has not committed waits for that
//! commit (or gets `Unavailable`). The in-process window is a bounded FIFO (200k ids by
//! default): without Redis, a redelivery arriving after its id was evicted is applied again
//! — in practice only after a very long database outage with that many distinct events.

use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use deadpool_redis::{Config, Pool, Runtime};

use crate::metrics;

/// What Redis knows about an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This call took the lease: process the event.
    Claimed,
    /// Committed already (here or on another replica).
    Done,
    /// Another process holds the lease and has not committed yet.
    InFlight,
    /// Redis failed: fall back to the in-process window.
    Unknown,
}

#[derive(Clone)]
pub struct RedisDedup {
    pool: Pool,
    prefix: String,
    lease: Duration,
    ttl: Duration,
    op_timeout: Duration,
}

impl RedisDedup {
    /// Creates a lazily connecting pool for `redis://[:password@]host:port`.
    pub fn new(
        host: &str,
        port: u16,
        password: Option<&str>,
        lease: Duration,
        ttl: Duration,
    ) -> Result<Self, String> {
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let url = format!("redis://{auth}{host}:{port}/");
        let pool = Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| format!("cannot create the Redis pool for {host}:{port}: {e}"))?;
        Ok(Self {
            pool,
            prefix: "extend-challenge:event:".into(),
            lease,
            ttl,
            op_timeout: Duration::from_millis(500),
        })
    }

    /// Replaces the key prefix (tests isolate themselves with it).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        build: impl FnOnce() -> redis::Pipeline,
    ) -> Result<T, String> {
        let fut = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            build()
                .query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err("timed out".into()),
        }
    }

    fn failed(&self, op: &str, e: &str) {
        metrics::DEDUP_REDIS_ERRORS_TOTAL.inc();
        tracing::warn!(op, error = %e, "redis de-duplication failed; using the in-process window only");
    }

    /// Takes the lease on `id`, or reports what Redis knows about it.
    pub async fn claim(&self, id: &str) -> Claim {
        let key = self.key(id);
        let lease = self.lease.as_secs().max(1);
        let res: Result<(Value,), String> = self
            .run(|| {
                let mut p = redis::pipe();
                p.cmd("SET")
                    .arg(&key)
                    .arg("pending")
                    .arg("NX")
                    .arg("GET")
                    .arg("EX")
                    .arg(lease);
                p
            })
            .await;
        match res {
            Ok((Value::Nil,)) => Claim::Claimed,
            Ok((Value::BulkString(b),)) if b == b"done" => Claim::Done,
            Ok((Value::SimpleString(s),)) if s == "done" => Claim::Done,
            Ok(_) => Claim::InFlight,
            Err(e) => {
                self.failed("claim", &e);
                Claim::Unknown
            }
        }
    }

    /// Marks committed ids `done` for the de-duplication TTL.
    pub async fn mark_done(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let ttl = self.ttl.as_secs().max(1);
        let res: Result<(), String> = self
            .run(|| {
                let mut p = redis::pipe();
                for id in ids {
                    p.cmd("SET")
                        .arg(self.key(id))
                        .arg("done")
                        .arg("EX")
                        .arg(ttl)
                        .ignore();
                }
                p
            })
            .await;
        if let Err(e) = res {
            self.failed("mark_done", &e);
        }
    }

    /// Drops the lease of an event that was refused.
    pub async fn release(&self, id: &str) {
        let key = self.key(id);
        let res: Result<(), String> = self
            .run(|| {
                let mut p = redis::pipe();
                p.cmd("DEL").arg(&key).ignore();
                p
            })
            .await;
        if let Err(e) = res {
            self.failed("release", &e);
        }
    }
}
