//! Every SQL statement both binaries run, and the embedded migrations.
//!
//! - [`GoalRow`], [`GOAL_ROW_COLUMNS`]: the goal row every reader selects, with its one
//!   column list, its one by-position decoder and its one `unnest` array builder (module
//!   `columns`).
//! - [`flush`]: the event handler's set-based batch writes.
//! - [`dead_letter`]: what a batch could not write, kept for an operator to replay.
//! - [`ledger`]: the ids of applied events (cross-replica, crash-proof de-duplication).
//! - [`player`]: the service's reads and writes.
//! - [`grants`]: reward grant intents, the claim's state machine.
//! - [`erasure`]: player data erasure (tombstones) and retention cleanup.
//! - [`implicit`]: the marker row that stands for a player's untouched default goals.
//! - [`live`]: the live progress notifications (`LISTEN/NOTIFY`).
//! - [`trail`]: the event trail (why an event counted or not).
//! - [`version`]: a player's progress version (the list's `ETag`).
//! - [`partitions`]: hash partitioning of the per-user tables by `user_id` (migration 0012).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

pub mod admin;
pub mod catalog;
mod columns;
pub mod dead_letter;
pub mod erasure;
pub mod flush;
pub mod grants;
pub mod implicit;
pub mod ledger;
pub mod live;
pub mod outbox;
pub mod partitions;
pub mod player;
pub mod trail;
pub mod version;

pub use columns::{GOAL_ROW_COLUMNS, GoalRow, GoalRowRef, check_goal_row_types};

/// Width of the id columns (`user_id`, `goal_id`, `challenge_id`, `namespace`:
/// `VARCHAR(100)`), in characters: every id is checked against it before it reaches a
/// statement.
pub const ID_COLUMN_CHARS: usize = 100;

/// Migrations under `migrations/`, embedded in the binaries.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies pending migrations, with [`partitions::DEFAULT_PARTITIONS`] should migration
/// 0012 be pending ([`partitions::migrate_with`] chooses). sqlx holds a Postgres advisory
/// lock while it migrates, so several replicas may start at once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    partitions::migrate_with(pool, partitions::DEFAULT_PARTITIONS).await
}

/// A pooled connection idle at least this long is pinged before it is handed out; one
/// idle for less is handed out as it is ([`connect_lazy`]).
pub const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens a lazily-connecting pool: start-up and health do not depend on Postgres being up
/// at the moment the process starts.
///
/// sqlx pings a connection when it goes back to the pool and, by default, again when it
/// comes out: a round trip before every transaction, which under load wakes both sides for
/// nothing (the connection answered a moment ago). Here the second ping happens only for a
/// connection idle for [`PING_IF_IDLE_FOR`] or longer, the case where the server may have
/// gone away meanwhile. A connection that breaks in that second fails its statement the way
/// one cut mid-statement does: the flush retries its batch, the service answers that request
/// with an error, and sqlx drops the connection.
pub fn connect_lazy(options: PgConnectOptions, max_connections: u32) -> PgPool {
    connect_lazy_pinging(options, max_connections, PING_IF_IDLE_FOR)
}

/// [`connect_lazy`] with another idle time before a ping (tests).
pub fn connect_lazy_pinging(
    options: PgConnectOptions,
    max_connections: u32,
    ping_if_idle_for: std::time::Duration,
) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ping_if_idle_for {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// Opens up to `n` connections of `pool` at once and gives them back idle, so requests that
/// arrive together right after start find them open (opening one is a TCP connect, perhaps
/// a TLS handshake, and a Postgres backend). AccelByte's scenario 5 sends 150 `initialize`
/// calls in its first second: opened first, its p95 went from ~310 to ~200 ms on one core
/// (BENCHMARKS.md). Each then runs the player API's first statements once, leaving nothing
/// behind ([`player::warm`]): a new connection's backend spends about 2 ms loading what
/// they need, which the first burst paid (150 concurrent first calls on one core: p95
/// 121–193 ms before, 100–130 ms with it; BENCHMARKS.md). It runs them enough times for
/// Postgres to settle on their generic plans, so the burst's calls are not planned one by
/// one either (round-1 p95 80–87 → 56–64 ms on this pass's machine). The pool
/// keeps them until its idle timeout. Returns how many were open at once; one that fails to
/// open (the database not up yet) is logged and skipped: requests open connections as they
/// need them anyway.
pub async fn warm_up(pool: &PgPool, n: u32) -> usize {
    let n = n.min(pool.options().get_max_connections());
    let tries = (0..n).map(|_| async {
        let mut conn = pool.acquire().await?;
        if let Err(e) = player::warm(&mut conn).await {
            // Not migrated yet, say: the connection is open all the same.
            tracing::debug!(error = %e, "pool warm-up: the statements did not run");
        }
        Ok::<_, sqlx::Error>(conn)
    });
    let mut open = Vec::with_capacity(n as usize);
    for r in futures::future::join_all(tries).await {
        match r {
            Ok(conn) => open.push(conn),
            Err(e) => tracing::debug!(error = %e, "pool warm-up: a connection did not open"),
        }
    }
    open.len()
}

/// `host:port/database` of a connection target, for logs and errors (never the password).
pub fn describe_target(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Cheap liveness probe of the database.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// Leadership among replicas for a periodic job: opens a session of its own (outside
/// `pool`, with its options) and tries the session-level advisory lock `key` without
/// waiting. `Some(session)` when this replica holds the lock: it lasts as long as the
/// session, so closing it (or dropping it, should the job be dropped midway) releases it.
/// `None`, the session already closed, when another replica holds it.
pub async fn try_session_lock(
    pool: &PgPool,
    key: i64,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let options = pool.connect_options();
    let mut session = PgConnection::connect_with(&options).await?;
    let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut session)
        .await?;
    if leader {
        Ok(Some(session))
    } else {
        let _ = session.close().await;
        Ok(None)
    }
}

/// A whole `user_goal_progress` row (tests and tools read it with `SELECT *`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProgressRow {
    pub user_id: String,
    pub goal_id: String,
    pub challenge_id: String,
    pub namespace: String,
    pub progress: i32,
    pub status: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub baseline_value: Option<i32>,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// What kind of failure a database error is: it decides between `Unavailable` (retry the
/// same thing later), isolating a bad row, and a server fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// The database cannot be reached or talked to: I/O, TLS, protocol, pool time-outs,
    /// SQLSTATE classes 08 (connection exception), 57P (shutdown, cannot connect now) and
    /// 53300 (too many connections). `Unavailable`; the same statement may succeed later.
    Connectivity,
    /// The statement lost a race or ran out of time: statement timeout (57014), lock not
    /// available (55P03), serialization failure (40001), deadlock (40P01). Retry as is.
    Transient,
    /// Postgres refused the data itself (SQLSTATE classes 22 data exception, 23 integrity
    /// violation, 54 program limit), or it could not be encoded or decoded: retrying the
    /// same rows fails the same way.
    Data,
    /// Anything else (a bug, a missing table): a server fault.
    Other,
}

/// Classifies a database error (see [`DbFault`]).
pub fn classify(e: &sqlx::Error) -> DbFault {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbFault::Connectivity,
        sqlx::Error::Encode(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            DbFault::Data
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(c) if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                DbFault::Connectivity
            }
            Some("57014" | "55P03" | "40001" | "40P01") => DbFault::Transient,
            Some(c) if c.starts_with("22") || c.starts_with("23") || c.starts_with("54") => {
                DbFault::Data
            }
            _ => DbFault::Other,
        },
        _ => DbFault::Other,
    }
}

/// Whether `e` means the statement lost a race with another transaction: serialization
/// failure (40001, also what a flush raises when another transaction inserted a row it
/// meant to insert) or deadlock (40P01). Retrying the same work finds the other's result.
pub fn is_lost_race(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// Whether `e` means the database is unreachable (see [`DbFault::Connectivity`]).
pub fn is_connectivity(e: &sqlx::Error) -> bool {
    classify(e) == DbFault::Connectivity
}
