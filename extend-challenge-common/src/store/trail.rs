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

// `e.user_id = ANY($1)` restates the join for the planner: it prunes the tombstones'
// partitions to the batch's players (tests/partition_pruning.rs), where the anti-join alone
// scans every partition.

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

/// One event's row: its entries' goals, reasons and progress as array literals.
#[derive(Default)]
struct Row {
    goals: String,
    reasons: String,
    before: String,
    after: String,
}

impl Row {
    fn push(&mut self, e: &TrailEntry) {
        let first = self.goals.is_empty();
        for part in [
            &mut self.goals,
            &mut self.reasons,
            &mut self.before,
            &mut self.after,
        ] {
            part.push(if first { '{' } else { ',' });
        }
        push_element(&mut self.goals, &e.goal_id);
        match e.reason {
            Some(r) => push_element(&mut self.reasons, r),
            None => self.reasons.push_str("NULL"),
        }
        self.before.push_str(&e.progress_before.to_string());
        self.after.push_str(&e.progress_after.to_string());
    }

    fn close(mut self) -> Row {
        for part in [
            &mut self.goals,
            &mut self.reasons,
            &mut self.before,
            &mut self.after,
        ] {
            part.push('}');
        }
        self
    }
}

/// Whether `a` and `b` are entries of the same event (one row).
fn same_event(a: &TrailEntry, b: &TrailEntry) -> bool {
    a.user_id == b.user_id
        && a.event_id == b.event_id
        && a.received_at == b.received_at
        && a.event_type == b.event_type
        && a.stat_code == b.stat_code
        && a.value == b.value
}

/// Inserts `entries` in one statement, in a transaction that does not wait for the disk
/// (see the module docs): one row per event, consecutive entries of the same event (as the
/// handler queues them) sharing it. Returns the rows (events) written.
pub async fn record(pool: &PgPool, entries: &[TrailEntry]) -> Result<u64, sqlx::Error> {
    // NUL cannot be stored in text; validation refuses such ids at the door.
    let stored = entries.iter().filter(|e| {
        ![&e.user_id, &e.goal_id, &e.event_id, &e.stat_code]
            .iter()
            .any(|t| t.contains('\0'))
    });
    let mut events: Vec<(&TrailEntry, Row)> = Vec::new();
    for e in stored {
        match events.last_mut() {
            Some((first, row)) if same_event(first, e) => row.push(e),
            _ => {
                let mut row = Row::default();
                row.push(e);
                events.push((e, row));
            }
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    let (heads, rows): (Vec<&TrailEntry>, Vec<Row>) = events
        .into_iter()
        .map(|(head, row)| (head, row.close()))
        .unzip();
    let text = |f: fn(&TrailEntry) -> &str| heads.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let users = text(|e| &e.user_id);
    let ids = text(|e| &e.event_id);
    let types = text(|e| e.event_type);
    let codes = text(|e| &e.stat_code);
    let received: Vec<DateTime<Utc>> = heads.iter().map(|e| e.received_at).collect();
    let values: Vec<i64> = heads.iter().map(|e| e.value).collect();
    let part = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
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
        .bind(&received)
        .bind(&ids)
        .bind(&types)
        .bind(&codes)
        .bind(&values)
        .bind(part(|r| &r.goals))
        .bind(part(|r| &r.reasons))
        .bind(part(|r| &r.before))
        .bind(part(|r| &r.after))
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
/// while it deletes a full batch).
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
