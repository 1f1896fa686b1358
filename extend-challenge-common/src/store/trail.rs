//! The event trail (CONTRACT §10): `event_trail`, per player and goal the latest events
//! that reached the goal, each `counted` (with progress before and after) or `ignored`
//! with the rule that ignored it. One row per event (migration 0015): the goals it reached
//! and each one's result and progress are parallel arrays, so an event that reaches 20
//! goals costs one row and one index entry, not 20.
//!
//! **Written after the batch, not in it.** The handler judges every event in the batch's
//! transaction (the rules of `progress`, through `flush::ItemResult`), and once the batch
//! committed it queues the entries; a writer task inserts them every
//! [`WRITE_INTERVAL`](crate::store::trail::WRITE_INTERVAL) in one statement, in a
//! transaction with `synchronous_commit = off` ([`record_rows`]). The durable path pays
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

// `e.user_id = ANY($1)` restates the join for the planner: it prunes the tombstones'
// partitions to the batch's players (tests/partition_pruning.rs), where the anti-join alone
// scans every partition.
const INSERT_SQL: &str = "\
INSERT INTO event_trail (user_id, received_at, event_id, event_type, stat_code, value, \
    goal_ids, reasons, progress_before, progress_after) \
SELECT u.user_id, u.received_at, u.event_id, u.event_type, u.stat_code, u.value, \
    u.goals::text[], u.reasons::text[], u.b::int[], u.a::int[] \
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
    $7::text[], $8::text[], $9::text[], $10::text[]) \
    AS u(user_id, received_at, event_id, event_type, stat_code, value, goals, reasons, b, a) \
WHERE NOT EXISTS (SELECT 1 FROM user_erasures e \
    WHERE e.user_id = ANY($1::text[]) AND e.user_id = u.user_id \
      AND e.erased_at >= u.received_at)";

/// Appends `text` to `out` as one element of a Postgres array literal: quoted, with `"`
/// and `\` escaped, so any text (commas, braces, spaces, the word NULL) is taken as is.
fn push_element(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// One event's trail row, built goal by goal: the event, and the goals it reached with
/// each one's result and progress as Postgres array literals, so queuing an event that
/// reaches 20 goals costs a handful of allocations, not 20 entries.
#[derive(Debug, Clone)]
pub struct EventRow {
    user_id: String,
    received_at: DateTime<Utc>,
    event_id: String,
    event_type: &'static str,
    stat_code: String,
    value: i64,
    goals: String,
    reasons: String,
    before: String,
    after: String,
    entries: usize,
}

impl EventRow {
    /// An event with no goal yet.
    pub fn new(
        user_id: &str,
        received_at: DateTime<Utc>,
        event_id: &str,
        event_type: &'static str,
        stat_code: &str,
        value: i64,
    ) -> EventRow {
        EventRow {
            user_id: user_id.to_string(),
            received_at,
            event_id: event_id.to_string(),
            event_type,
            stat_code: stat_code.to_string(),
            value,
            goals: String::new(),
            reasons: String::new(),
            before: String::new(),
            after: String::new(),
            entries: 0,
        }
    }

    /// Adds the event's result for `goal_id`: `reason` `None` when counted. Each literal
    /// stays closed (`{…}`) between calls: the closing brace is taken off and put back.
    pub fn push_goal(&mut self, goal_id: &str, reason: Option<&str>, before: i32, after: i32) {
        use std::fmt::Write as _;
        for part in [
            &mut self.goals,
            &mut self.reasons,
            &mut self.before,
            &mut self.after,
        ] {
            if part.pop().is_some() {
                part.push(',');
            } else {
                part.push('{');
            }
        }
        push_element(&mut self.goals, goal_id);
        match reason {
            Some(r) => push_element(&mut self.reasons, r),
            None => self.reasons.push_str("NULL"),
        }
        let _ = write!(self.before, "{before}");
        let _ = write!(self.after, "{after}");
        for part in [
            &mut self.goals,
            &mut self.reasons,
            &mut self.before,
            &mut self.after,
        ] {
            part.push('}');
        }
        self.entries += 1;
    }

    /// The goals added: the trail entries this row stands for.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Whether any of the row's ids holds NUL, which text cannot store (validation refuses
    /// such ids at the door; a row that slipped through is skipped, not an error).
    fn storable(&self) -> bool {
        ![&self.user_id, &self.event_id, &self.stat_code, &self.goals]
            .iter()
            .any(|t| t.contains('\0'))
    }
}

/// Whether `e` belongs to the row of `row`'s event.
fn same_event(row: &EventRow, e: &TrailEntry) -> bool {
    row.user_id == e.user_id
        && row.event_id == e.event_id
        && row.received_at == e.received_at
        && row.event_type == e.event_type
        && row.stat_code == e.stat_code
        && row.value == e.value
}

/// Groups `entries` into rows, consecutive entries of the same event sharing one.
fn rows_of(entries: &[TrailEntry]) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = Vec::new();
    for e in entries {
        if !rows.last().is_some_and(|r| same_event(r, e)) {
            rows.push(EventRow::new(
                &e.user_id,
                e.received_at,
                &e.event_id,
                e.event_type,
                &e.stat_code,
                e.value,
            ));
        }
        if let Some(row) = rows.last_mut() {
            row.push_goal(&e.goal_id, e.reason, e.progress_before, e.progress_after);
        }
    }
    rows
}

/// Inserts `entries`, one row per event ([`rows_of`]); see [`record_rows`].
pub async fn record(pool: &PgPool, entries: &[TrailEntry]) -> Result<u64, sqlx::Error> {
    record_rows(pool, &rows_of(entries)).await
}

/// Inserts `rows` in one statement, in a transaction that does not wait for the disk (see
/// the module docs). Rows without a goal are skipped. Returns the rows (events) written.
pub async fn record_rows(pool: &PgPool, rows: &[EventRow]) -> Result<u64, sqlx::Error> {
    let rows: Vec<&EventRow> = rows
        .iter()
        .filter(|r| r.entries > 0 && r.storable())
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let text = |f: fn(&EventRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<&str>>();
    let received: Vec<DateTime<Utc>> = rows.iter().map(|r| r.received_at).collect();
    let values: Vec<i64> = rows.iter().map(|r| r.value).collect();
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
        .bind(text(|r| &r.user_id))
        .bind(&received)
        .bind(text(|r| &r.event_id))
        .bind(text(|r| r.event_type))
        .bind(text(|r| &r.stat_code))
        .bind(&values)
        .bind(text(|r| &r.goals))
        .bind(text(|r| &r.reasons))
        .bind(text(|r| &r.before))
        .bind(text(|r| &r.after))
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
        "SELECT event_id, event_type, stat_code, value, received_at, reasons[i] AS reason, \
             progress_before[i] AS progress_before, progress_after[i] AS progress_after \
         FROM (SELECT *, array_position(goal_ids, $2::text) AS i FROM event_trail \
               WHERE user_id = $1) t \
         WHERE i IS NOT NULL ORDER BY received_at DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(goal_id)
    .bind(KEEP_PER_GOAL)
    .fetch_all(pool)
    .await
}

/// Deletes at most `batch` events older than `before`, and at most `batch` events of the
/// players that took an entry since `since` which are, for every goal they hold, beyond
/// that goal's newest [`KEEP_PER_GOAL`]. Returns the events deleted (the caller repeats
/// while it deletes a full batch). The count ranks every (event, goal) of those players:
/// 3.4 s for 120,000 events of 10,000 players reaching 20 goals each (AccelByte's scenario
/// 5 for four minutes; measured with `EXPLAIN ANALYZE`, nothing to delete), once per cleanup.
pub async fn trim(
    pool: &PgPool,
    before: DateTime<Utc>,
    since: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // `tableoid` with `ctid`: a row's address is unique only within its partition.
    let old = sqlx::query(
        "DELETE FROM event_trail WHERE (tableoid, ctid) IN \
         (SELECT tableoid, ctid FROM event_trail WHERE received_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    let over = sqlx::query(
        "WITH players AS (SELECT DISTINCT user_id FROM event_trail WHERE received_at >= $1), \
         ranked AS (SELECT t.user_id, t.tableoid AS part, t.ctid AS row_id, \
             row_number() OVER (PARTITION BY t.user_id, g.goal_id \
                                ORDER BY t.received_at DESC, t.event_id DESC) AS newer \
             FROM players p JOIN event_trail t ON t.user_id = p.user_id \
             CROSS JOIN LATERAL unnest(t.goal_ids) AS g(goal_id)), \
         doomed AS (SELECT user_id, part, row_id FROM ranked \
             GROUP BY user_id, part, row_id HAVING min(newer) > $2 LIMIT $3) \
         DELETE FROM event_trail t USING doomed d \
         WHERE t.user_id = d.user_id AND t.tableoid = d.part AND t.ctid = d.row_id",
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
    Ok(sqlx::query("DELETE FROM event_trail WHERE user_id = $1")
        .bind(user_id)
        .execute(tx)
        .await?
        .rows_affected())
}
