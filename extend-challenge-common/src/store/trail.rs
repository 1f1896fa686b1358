//! The event trail (CONTRACT §10): `goal_event_trail`, per player and goal the latest
//! events that reached the goal, each `counted` (with progress before and after) or
//! `ignored` with the rule that ignored it.
//!
//! **Written after the batch, not in it.** The handler judges every event in the batch's
//! transaction (the rules of `progress`, through `flush::ItemResult`), and once the batch
//! committed it queues the entries; a writer task inserts them every
//! [`WRITE_INTERVAL`](crate::store::trail::WRITE_INTERVAL) in one statement, in a
//! transaction with `synchronous_commit = off` ([`record`]). The durable path pays
//! nothing for it but building the entries: no statement, no WAL, no row in the batch's
//! transaction. **Loss window:** entries queued or written in the last ~0.3 s before a
//! crash (one write interval plus Postgres's `wal_writer_delay`, 200 ms by default) may
//! be missing from the trail; an entry that did not fit the writer's bounded queue is
//! dropped and counted (`challenge_trail_entries_total{result="dropped"}`). Progress is
//! never at stake: the trail is an explanation, not a record of truth.
//!
//! **Bounded.** The service's cleanup deletes entries older than the retention, and those
//! beyond the newest [`KEEP_PER_GOAL`] of their player and goal ([`trim`]); reads return
//! at most [`KEEP_PER_GOAL`]. An erased player's entries go with the erasure, and an entry
//! from before an erasure is never written after it (the insert skips users whose
//! tombstone is not older than the event, under the table lock the erasure waits for).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Entries kept (and read) per player and goal: at least the 50 the contract asks for.
pub const KEEP_PER_GOAL: i64 = 64;

/// How often the handler's writer inserts what is queued.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// One entry: an event that reached a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    pub user_id: String,
    pub goal_id: String,
    pub received_at: DateTime<Utc>,
    pub event_id: String,
    /// `login` or `statistic`.
    pub event_type: &'static str,
    pub stat_code: String,
    pub value: i64,
    /// `None`: counted; otherwise the trail reason (`progress::Ignored::reason`).
    pub reason: Option<&'static str>,
    pub progress_before: i32,
    pub progress_after: i32,
}

const INSERT_SQL: &str = "\
INSERT INTO goal_event_trail (user_id, goal_id, received_at, event_id, event_type, stat_code, \
    value, reason, progress_before, progress_after) \
SELECT u.* FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
    $6::text[], $7::bigint[], $8::text[], $9::int[], $10::int[]) \
    AS u(user_id, goal_id, received_at, event_id, event_type, stat_code, value, reason, b, a) \
WHERE NOT EXISTS (SELECT 1 FROM user_erasures e \
    WHERE e.user_id = u.user_id AND e.erased_at >= u.received_at)";

/// Inserts `entries` in one statement, in a transaction that does not wait for the disk
/// (see the module docs). Returns the entries written.
pub async fn record(pool: &PgPool, entries: &[TrailEntry]) -> Result<u64, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    // NUL cannot be stored in text; validation refuses such ids at the door.
    let stored: Vec<&TrailEntry> = entries
        .iter()
        .filter(|e| {
            ![&e.user_id, &e.goal_id, &e.event_id, &e.stat_code]
                .iter()
                .any(|t| t.contains('\0'))
        })
        .collect();
    let text = |f: fn(&TrailEntry) -> &str| stored.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let users = text(|e| &e.user_id);
    let goals = text(|e| &e.goal_id);
    let ids = text(|e| &e.event_id);
    let types = text(|e| e.event_type);
    let codes = text(|e| &e.stat_code);
    let received: Vec<DateTime<Utc>> = stored.iter().map(|e| e.received_at).collect();
    let values: Vec<i64> = stored.iter().map(|e| e.value).collect();
    let reasons: Vec<Option<&str>> = stored.iter().map(|e| e.reason).collect();
    let before: Vec<i32> = stored.iter().map(|e| e.progress_before).collect();
    let after: Vec<i32> = stored.iter().map(|e| e.progress_after).collect();
    // The flush's lock (see `super::erasure`): an erasure committing meanwhile either waits
    // for this insert (and deletes its entries) or is seen by it (its tombstone skips them).
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(
        "SET LOCAL synchronous_commit = off; \
         LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(INSERT_SQL)
        .bind(&users)
        .bind(&goals)
        .bind(&received)
        .bind(&ids)
        .bind(&types)
        .bind(&codes)
        .bind(&values)
        .bind(&reasons)
        .bind(&before)
        .bind(&after)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// One stored entry, as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEntry {
    pub event_id: String,
    pub event_type: String,
    pub stat_code: String,
    pub value: i64,
    pub received_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub progress_before: i32,
    pub progress_after: i32,
}

/// The newest [`KEEP_PER_GOAL`] entries of `user_id`'s `goal_id`, newest first.
pub async fn recent(
    pool: &PgPool,
    user_id: &str,
    goal_id: &str,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_id, event_type, stat_code, value, received_at, reason, progress_before, \
             progress_after \
         FROM goal_event_trail WHERE user_id = $1 AND goal_id = $2 \
         ORDER BY received_at DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(goal_id)
    .bind(KEEP_PER_GOAL)
    .fetch_all(pool)
    .await
}

/// Deletes at most `batch` entries older than `before`, and at most `batch` entries beyond
/// the newest [`KEEP_PER_GOAL`] of the keys that took an entry since `since`. Returns the
/// entries deleted (the caller repeats while it deletes a full batch).
pub async fn trim(
    pool: &PgPool,
    before: DateTime<Utc>,
    since: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let old = sqlx::query(
        "DELETE FROM goal_event_trail WHERE ctid IN \
         (SELECT ctid FROM goal_event_trail WHERE received_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    let over = sqlx::query(
        "WITH keys AS (SELECT DISTINCT user_id, goal_id FROM goal_event_trail \
             WHERE received_at >= $1), \
         cut AS (SELECT k.user_id, k.goal_id, \
             (SELECT t.received_at FROM goal_event_trail t \
              WHERE t.user_id = k.user_id AND t.goal_id = k.goal_id \
              ORDER BY t.received_at DESC OFFSET $2 LIMIT 1) AS at FROM keys k) \
         DELETE FROM goal_event_trail t WHERE t.ctid IN ( \
             SELECT t2.ctid FROM cut JOIN goal_event_trail t2 \
               ON t2.user_id = cut.user_id AND t2.goal_id = cut.goal_id \
             WHERE cut.at IS NOT NULL AND t2.received_at <= cut.at LIMIT $3)",
    )
    .bind(since)
    .bind(KEEP_PER_GOAL)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(old + over)
}

/// Deletes `user_id`'s entries (inside an erasure's transaction).
pub async fn erase(tx: &mut sqlx::PgConnection, user_id: &str) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM goal_event_trail WHERE user_id = $1")
            .bind(user_id)
            .execute(tx)
            .await?
            .rows_affected(),
    )
}
