//! Cross-replica de-duplication of event ids (CONTRACT §2.2): Redis leases say who is
//! processing an id *now*; Postgres (`event_ledger`, written in the batch transaction) says
//! what was *applied*. Each replica also keeps an in-process window (see [`crate::buffer`]).
//!
//! Protocol, per event id, with key `<prefix><id>`:
//! - **claim** (one Lua script — `EVALSHA` — so Redis's own clock decides expiry, with no
//!   skew between hosts):
//!   no key → set `pending:<replica>:<expiry-ms>` (key TTL 24 h as a backstop) and process
//!   the event; `done` → already applied, answer `OK`; a lease whose expiry has not passed →
//!   another process is on it, answer `Unavailable` (the platform redelivers; never an early
//!   `OK`); an expired lease → its owner died or stalled: look the id up in the ledger.
//!   Present → it was applied (the owner committed, then died before writing `done`): write
//!   `done`, answer `OK`. Absent → take the lease over with a compare-and-set script and
//!   process the event.
//! - **renew**: a lease lasts the durable ack deadline plus a margin, not minutes; the owner
//!   renews the leases of every id it still holds (buffered or in flight) every third of
//!   that, in one script call, so a database outage longer than the lease does not let
//!   another replica take a live event over.
//! - **done**: after the batch holding the event committed (or dead-lettered it), `SET done
//!   EX 24h`, pipelined for the batch; refused events (buffer full) release their lease.
//!
//! Without Redis, or for an id Redis knows nothing about, the ledger is consulted at ingest
//! for ids the in-process window does not know when the event may predate this process
//! (see [`crate::engine`]): a redelivery of an event an earlier incarnation committed just
//! before a crash is then answered `OK` instead of applied again.
//!
//! Residual windows, by design:
//! - a replica stalled (not crashed) for longer than its lease, whose batch commits after
//!   another replica took the lease over: the event is applied twice (the ledger insert of
//!   the second commit counts a conflict in `challenge_dedup_ledger_conflicts_total` and
//!   logs an ERROR, so it is visible);
//! - Redis unreachable: each replica falls back to its window and the ledger rule above
//!   (counted in `challenge_dedup_redis_errors_total`); a redelivery reaching another replica
//!   while the first copy is still buffered (not yet committed) is then applied twice;
//! - Redis loses its data (a restart without persistence): a redelivery of an applied event
//!   stamped more than 5 s after this process started finds no key, is not looked up
//!   in the ledger, and is applied again (the ledger conflict shows it);
//! - an event without a `timestamp` is judged by its arrival: redelivered to a process that
//!   has been up longer than the ack deadline plus `UNTIMED_LEDGER_MARGIN` (10 s), with Redis
//!   absent or without the key, it is not looked up and is applied again (the ledger
//!   conflict shows it). Events with a timestamp keep the start-up rule above;
//! - the ledger keeps ids for an hour (`LEDGER_TTL`): an event committed just before a
//!   crash and redelivered more than an hour later is applied again;
//! - without Redis, the in-process window is a bounded FIFO (200k ids by default): an id
//!   evicted from it and redelivered more than 5 s after start-up is not looked up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use deadpool_redis::{Config, Pool, Runtime};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// What Redis knows about an event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This call took the lease: process the event.
    Claimed,
    /// Applied already (here or on another replica).
    Done,
    /// Another process holds a live lease on it.
    InFlight,
    /// The lease (`current`, as stored) has expired: check the ledger, then either mark the
    /// id done or [`RedisDedup::take_over`] with `current`.
    Expired { current: String },
    /// Redis failed: fall back to the in-process window and the ledger.
    Unknown,
}

/// KEYS[1] the id's key; ARGV: owner, lease ms, key TTL s.
static CLAIM_LUA: Lua = Lua::new(
    r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'pending:' .. ARGV[1] .. ':' .. (now + tonumber(ARGV[2])), 'EX', ARGV[3])
  return {'claimed'}
end
if v == 'done' then return {'done'} end
local expiry = string.match(v, ':(%d+)$')
if expiry and tonumber(expiry) <= now then return {'expired', v} end
return {'live', v}
"#,
);

/// KEYS[1] the id's key; ARGV: the expired value seen, owner, lease ms, key TTL s.
static TAKE_OVER_LUA: Lua = Lua::new(
    r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], 'pending:' .. ARGV[2] .. ':' .. (now + tonumber(ARGV[3])), 'EX', ARGV[4])
return 1
"#,
);

/// KEYS: the ids' keys; ARGV: owner, lease ms. Extends this owner's leases (expired ones
/// included, as long as nobody took them over); returns how many.
static RENEW_LUA: Lua = Lua::new(
    r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = 'pending:' .. ARGV[1] .. ':'
local n = 0
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and string.sub(v, 1, #mine) == mine then
    redis.call('SET', k, mine .. (now + tonumber(ARGV[2])), 'KEEPTTL')
    n = n + 1
  end
end
return n
"#,
);

/// KEYS[1] the id's key; ARGV: owner. Deletes the lease if this owner holds it.
static RELEASE_LUA: Lua = Lua::new(
    r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 9) == 'pending:' .. ARGV[1] .. ':' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#,
);

/// A Lua script, run by `EVALSHA` once Redis knows it (`SCRIPT LOAD` on first use, and
/// again after a `NOSCRIPT`, e.g. when Redis restarted).
struct Lua {
    source: &'static str,
    sha: std::sync::Mutex<Option<String>>,
}

impl Lua {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: std::sync::Mutex::new(None),
        }
    }

    fn sha(&self) -> Option<String> {
        self.sha.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_sha(&self, sha: Option<String>) {
        if let Ok(mut s) = self.sha.lock() {
            *s = sha;
        }
    }
}

/// Keys per renewal script call.
const RENEW_CHUNK: usize = 1000;

#[derive(Clone)]
pub struct RedisDedup {
    pool: Pool,
    prefix: String,
    /// This process's id in lease values.
    owner: String,
    lease: Duration,
    ttl: Duration,
    op_timeout: Duration,
    /// Ids whose lease this process holds (buffered or in flight): renewed until done.
    held: Arc<Mutex<HashSet<Arc<str>>>>,
}

impl RedisDedup {
    /// Creates a lazily connecting pool for `redis://[:password@]host:port`. `lease`: how
    /// long a claim lasts unless renewed; `ttl`: how long `done` is remembered.
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
            owner: uuid::Uuid::new_v4().simple().to_string(),
            lease,
            ttl,
            op_timeout: Duration::from_millis(500),
            held: Arc::default(),
        })
    }

    /// Replaces the key prefix (tests isolate themselves with it).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Replaces the lease length.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How many ids this process holds a lease on.
    pub fn held(&self) -> usize {
        self.held.lock().len()
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn lease_ms(&self) -> u64 {
        (self.lease.as_millis() as u64).max(1)
    }

    fn ttl_s(&self) -> u64 {
        self.ttl.as_secs().max(1)
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

    /// Runs `script` with `EVALSHA`, loading it first if Redis does not know it.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<(T,), String> {
        for _ in 0..2 {
            let sha = match script.sha() {
                Some(sha) => sha,
                None => {
                    let (sha,): (String,) = self
                        .run(|| {
                            let mut p = redis::pipe();
                            p.cmd("SCRIPT").arg("LOAD").arg(script.source);
                            p
                        })
                        .await?;
                    script.set_sha(Some(sha.clone()));
                    sha
                }
            };
            let res = self
                .run(|| {
                    let mut p = redis::pipe();
                    let cmd = p.cmd("EVALSHA").arg(&sha).arg(keys.len());
                    for k in keys {
                        cmd.arg(k);
                    }
                    for a in args {
                        cmd.arg(a);
                    }
                    p
                })
                .await;
            match res {
                // "NOSCRIPT" from Redis ("NoScript" as the client renders it).
                Err(e) if e.to_ascii_lowercase().contains("noscript") => script.set_sha(None),
                other => return other,
            }
        }
        Err("the script could not be loaded".into())
    }

    fn failed(&self, op: &str, e: &str) {
        metrics::DEDUP_REDIS_ERRORS_TOTAL.inc();
        tracing::warn!(op, error = %e, "redis de-duplication failed; using the in-process window and the ledger");
    }

    fn hold(&self, id: &str) {
        self.held.lock().insert(Arc::from(id));
    }

    /// Takes the lease on `id`, or reports what Redis knows about it.
    pub async fn claim(&self, id: &str) -> Claim {
        let res: Result<(Vec<Value>,), String> = self
            .eval(
                &CLAIM_LUA,
                &[self.key(id)],
                &[
                    self.owner.clone(),
                    self.lease_ms().to_string(),
                    self.ttl_s().to_string(),
                ],
            )
            .await;
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        match res {
            Ok((reply,)) => match reply.first().map(text).as_deref() {
                Some("claimed") => {
                    self.hold(id);
                    Claim::Claimed
                }
                Some("done") => Claim::Done,
                Some("expired") => Claim::Expired {
                    current: reply.get(1).map(text).unwrap_or_default(),
                },
                _ => Claim::InFlight,
            },
            Err(e) => {
                self.failed("claim", &e);
                Claim::Unknown
            }
        }
    }

    /// Takes over the expired lease `current` on `id` (see [`Claim::Expired`]); `false`
    /// when the key changed meanwhile (another replica took it, or it became `done`).
    pub async fn take_over(&self, id: &str, current: &str) -> Result<bool, String> {
        let res: Result<(i64,), String> = self
            .eval(
                &TAKE_OVER_LUA,
                &[self.key(id)],
                &[
                    current.to_string(),
                    self.owner.clone(),
                    self.lease_ms().to_string(),
                    self.ttl_s().to_string(),
                ],
            )
            .await;
        match res {
            Ok((1,)) => {
                self.hold(id);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                self.failed("take_over", &e);
                Err(e)
            }
        }
    }

    /// Marks applied (or dead-lettered) ids `done` for the de-duplication TTL and stops
    /// renewing their leases.
    pub async fn mark_done(&self, ids: &[Arc<str>]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut held = self.held.lock();
            for id in ids {
                held.remove(id);
            }
        }
        let ttl = self.ttl_s();
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

    /// Drops this process's lease on an event that was refused.
    pub async fn release(&self, id: &str) {
        self.held.lock().remove(id);
        let res: Result<(i64,), String> = self
            .eval(
                &RELEASE_LUA,
                &[self.key(id)],
                std::slice::from_ref(&self.owner),
            )
            .await;
        if let Err(e) = res {
            self.failed("release", &e);
        }
    }

    /// Extends the leases of every id this process holds; returns how many were extended.
    pub async fn renew(&self) -> Result<u64, String> {
        let ids: Vec<Arc<str>> = self.held.lock().iter().cloned().collect();
        let mut renewed = 0u64;
        for chunk in ids.chunks(RENEW_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.key(id)).collect();
            let (n,): (i64,) = self
                .eval(
                    &RENEW_LUA,
                    &keys,
                    &[self.owner.clone(), self.lease_ms().to_string()],
                )
                .await?;
            renewed += n.max(0) as u64;
        }
        Ok(renewed)
    }

    /// Renews the held leases every third of the lease until `stop` fires.
    pub fn spawn_renewer(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let every = (self.lease / 3).max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if this.held() > 0
                    && let Err(e) = this.renew().await
                {
                    this.failed("renew", &e);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the test Redis (`REDIS_URL`, default the local one).
    #[tokio::test]
    async fn a_script_redis_forgot_is_loaded_again() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let authority = url.split("://").nth(1).unwrap_or(&url);
        let authority = authority.split('/').next().unwrap_or(authority);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
        let redis = RedisDedup::new(
            host,
            port.parse().unwrap(),
            None,
            Duration::from_secs(5),
            Duration::from_secs(60),
        )
        .unwrap()
        .with_prefix(format!("test:dedup-unit:{}:", uuid::Uuid::new_v4()));
        assert_eq!(redis.claim("e1").await, Claim::Claimed);
        // As after a Redis restart: the cached hash names a script Redis does not have.
        RENEW_LUA.set_sha(Some("0".repeat(40)));
        assert_eq!(redis.renew().await, Ok(1));
        assert_eq!(
            redis.claim("e1").await,
            Claim::InFlight,
            "renewed, still live"
        );
        redis.mark_done(&[Arc::from("e1")]).await;
        assert_eq!(redis.claim("e1").await, Claim::Done);
        assert_eq!(redis.held(), 0);
    }
}
