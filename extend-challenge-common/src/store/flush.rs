//! The event handler's batch writes: one transaction per batch, set-based SQL, never one
//! statement per event.
//!
//! A batch is a set of collapsed deltas keyed by (user, goal). [`flush_batch`] runs, in one
//! transaction and, for a batch whose users all have rows, four round trips:
//!
//! 1. `BEGIN` with `LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE` (one simple query;
//!    while the table has no statistics, it also plans each statement afresh:
//!    [`set_plan_each_batch`]);
//! 2. one `SELECT … ORDER BY user_id, goal_id FOR NO KEY UPDATE SKIP LOCKED` of the batch's
//!    rows, each with its user's erasure tombstone (`LEFT JOIN user_erasures`);
//! 3. only for keys it did not return: one unlocked look at those keys' users — the ids of
//!    each user's rows, telling rows another transaction holds (*deferred*) from keys
//!    without a row, with the users' tombstones and marker rows (`store::implicit`);
//! 4. the progress rules, in Rust ([`progress::apply`]), then one statement that runs the
//!    `UPDATE … FROM unnest(…)` of the changed rows, the `INSERT` of the first rows of the
//!    implicit goals the batch changed and of the markers of the users it auto-initializes,
//!    the `INSERT` of the written users' event ids into `event_ledger` and the auto-claims'
//!    outbox, and answers with the transaction id;
//! 5. `COMMIT`.
//!
//! **Keys without a row.** A player's untouched default goals have no row: one marker row
//! stands for them (`store::implicit`). A key without a row whose goal the user's marker
//! covers is implicit: the rules apply to `progress::new_assignment(goal, marker time)`, and
//! the goal's row is inserted only if that changes it. A user without any row at all is
//! auto-initialized (CONTRACT §2.1, when the caller passes the defaults): the batch inserts
//! their marker and treats their default goals as implicit from now. Any other key without a
//! row (goal not assigned) is dropped: only assigned goals make progress. Before the marker,
//! the first event of a player inserted a row for every default goal (150 in AccelByte's M5
//! catalog); now it writes the marker and the rows it changes.
//!
//! **Erased users (no zombie rows).** The batch holds `ROW EXCLUSIVE` on
//! `user_goal_progress` from its first statement, then reads the tombstones of its users
//! (`user_erasures`) with their rows. A user whose oldest contributing event
//! ([`BatchUser::oldest_at`]) is not later than the tombstone's `erased_at` has all its
//! deltas dropped — neither auto-initialized nor updated — and its event ids recorded as
//! done: those events happened before the erasure. Deltas that mix events from before and
//! after an erasure are dropped whole (the conservative side). Why the lock makes the read
//! safe against an erasure committing meanwhile: [`super::erasure`].
//!
//! **Deferral is per user.** When one of a user's rows is locked by another transaction,
//! none of that user's keys is written in this batch (they all come back as deferred). An
//! event touches exactly one user, so it is either wholly applied by one batch — and its id
//! recorded in the ledger by that same transaction — or not at all.
//!
//! Row locks: a flush never waits for one. The challenge service's claim holds its row's
//! lock across the reward grant (seconds, when AGS Platform is slow); waiting for it would
//! stall the whole batch — every user of the partition — and, in durable mode, time out
//! unrelated acknowledgements. With `SKIP LOCKED` the batch writes everything else and
//! hands the locked keys back as deferred ([`Flushed::deferred`]); the caller keeps them
//! buffered and retries them in a later batch. Two handler replicas on the same users
//! defer each other's locked rows the same way, so neither waits and nothing is lost.
//!
//! Sorting is still kept, for what can wait: an implicit goal's `INSERT` waits on the
//! primary-key entry of a row another transaction is inserting, and `FOR UPDATE` takes the
//! row locks one by one in the order rows come out of the sort. Inserting and locking in
//! one (user_id, goal_id) order means two writers never hold locks in opposite orders, so
//! the short waits left (on concurrent inserts) cannot deadlock. When the other transaction
//! inserted the row, the batch's insert skips it and the statement fails the batch as a
//! lost race (`40001`): it is retried as it is and then finds the row.
//!
//! A failed `COMMIT` (connection lost, timeout) is ambiguous: the server may have committed.
//! The batch's transaction id is read before it (step 4), so the caller can ask
//! [`transaction_status`] instead of guessing — retrying a committed batch would count it twice, dropping an
//! aborted one would lose it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::columns::StateColumns;
use super::implicit::{self, Defaults, MARKER_GOAL_ID, Marker};
use super::{DbFault, GOAL_ROW_COLUMNS, GoalRow, classify};
use crate::config::Goal;
use crate::progress::{self, Delta};

/// One collapsed (user, goal) update of a batch (a batch holds each key once).
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub user_id: Arc<str>,
    pub goal: Arc<Goal>,
    /// Namespace written when the user's rows are auto-initialized.
    pub namespace: Arc<str>,
    pub delta: Delta,
}

/// One user of a batch: the user's items are the next `keys` items of the batch (a batch
/// lists its users' items user after user), and `event_ids` the non-empty ids of the events
/// whose deltas they hold, recorded in `event_ledger` when the user's keys are written.
#[derive(Debug, Clone)]
pub struct BatchUser {
    pub user_id: Arc<str>,
    pub keys: usize,
    pub event_ids: Vec<Arc<str>>,
    /// When the oldest event whose delta the user's items carry happened (its timestamp,
    /// else its arrival). Compared with the user's erasure tombstone; `None` (unknown)
    /// counts as older than any tombstone.
    pub oldest_at: Option<DateTime<Utc>>,
}

/// What one committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Players auto-initialized (marker rows inserted, `store::implicit`).
    pub initialized: u64,
    /// Rows the batch changed (implicit goals' first rows included).
    pub updated: u64,
    /// Rows locked but left as they were (inactive, claimed, nothing to do).
    pub unchanged: u64,
    /// Keys without a row (the goal is not assigned to the user): dropped.
    pub not_assigned: u64,
    /// Keys not written because one of their user's rows was locked by another
    /// transaction: handed back for retry.
    pub deferred: u64,
    /// Keys left for the next batch by the batch size cap (set by the caller, which caps).
    pub carried: u64,
    /// Event ids the ledger already held (an event applied twice: not expected).
    pub ledger_conflicts: u64,
    /// Keys moved to the dead-letter table (set by the caller, which isolates them).
    pub dead_lettered: u64,
    /// Keys dropped because their user was erased after their events happened.
    pub erased: u64,
}

impl FlushOutcome {
    pub fn add(&mut self, other: FlushOutcome) {
        self.initialized += other.initialized;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.not_assigned += other.not_assigned;
        self.deferred += other.deferred;
        self.carried += other.carried;
        self.ledger_conflicts += other.ledger_conflicts;
        self.dead_lettered += other.dead_lettered;
        self.erased += other.erased;
    }
}

/// What one committed batch did, and which of its items it left for a later batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    pub outcome: FlushOutcome,
    /// Indices (ascending) into the batch's items of the users one of whose rows was locked
    /// by another transaction: nothing of those users was written. `outcome.deferred`
    /// counts them.
    pub deferred: Vec<usize>,
    /// Per item of the batch, what the rules made of it (the event trail and the live
    /// progress push read it); `None` for items not judged (deferred or erased users).
    pub results: Vec<Option<ItemResult>>,
    /// Where the batch's time went (`challenge_flush_phase_seconds`).
    pub timings: FlushTimings,
}

/// The wall time of each step of one batch ([`flush_batch`]): its round trips, and the
/// rules applied in Rust between them. `missing` is zero when every key had a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushTimings {
    /// A pooled connection, then `BEGIN` with the table lock (one round trip).
    pub acquire_begin: Duration,
    /// The locking select of the batch's rows.
    pub select: Duration,
    /// The look at keys without a row.
    pub missing: Duration,
    /// The progress rules and the statement's arrays, in Rust.
    pub rules: Duration,
    /// The write statement (updates, inserts, ledger, outbox).
    pub write: Duration,
    /// `COMMIT` (the WAL flush, in durable settings).
    pub commit: Duration,
}

impl FlushTimings {
    /// (phase label, duration), in order.
    pub fn phases(&self) -> [(&'static str, Duration); 6] {
        [
            ("acquire_begin", self.acquire_begin),
            ("select", self.select),
            ("missing", self.missing),
            ("rules", self.rules),
            ("write", self.write),
            ("commit", self.commit),
        ]
    }
}

/// What a committed batch did to one item: the row's progress before and after, whether
/// the row was written, and the rule that ignored the item, if one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemResult {
    pub before: i32,
    pub after: i32,
    pub written: bool,
    pub ignored: Option<progress::Ignored>,
}

impl ItemResult {
    /// An item that reached no row, ignored by `why`.
    pub fn ignored(why: progress::Ignored) -> Self {
        ItemResult {
            before: 0,
            after: 0,
            written: false,
            ignored: Some(why),
        }
    }

    fn of(old: &progress::GoalState, new: &Result<progress::GoalState, progress::Ignored>) -> Self {
        match new {
            Ok(n) => ItemResult {
                before: old.progress,
                after: n.progress,
                written: false,
                ignored: None,
            },
            Err(why) => ItemResult {
                before: old.progress,
                after: old.progress,
                written: false,
                ignored: Some(*why),
            },
        }
    }
}

/// Locks the batch's rows in (user_id, goal_id) order, skipping rows another transaction
/// holds: Postgres takes the row locks after the sort, so every writer acquires them in the
/// same order, and none waits for a lock. Each row comes with its user's erasure tombstone,
/// if any (the last column).
///
/// Written as a join against the unnested keys (unique within a batch), not as a row-valued
/// `IN (SELECT … unnest …)`: for the latter the planner estimates the semi-join at a fraction
/// of the whole table and walks the entire primary-key index (2.99 s for a 10 k-key batch on
/// a 5 M-row table, against 0.46 s for this nested loop of index lookups; BENCHMARKS.md).
/// `FOR NO KEY UPDATE` is the lock the following `UPDATE` takes anyway (no key column
/// changes), so the row lock is never upgraded.
static LOCK_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = GOAL_ROW_COLUMNS.iter().map(|c| format!("t.{c}")).collect();
    format!(
        "SELECT t.user_id, {}, e.erased_at FROM unnest($1::text[], $2::text[]) AS k(user_id, goal_id) \
         JOIN user_goal_progress AS t ON t.user_id = k.user_id AND t.goal_id = k.goal_id \
         LEFT JOIN user_erasures AS e ON e.user_id = t.user_id \
         ORDER BY t.user_id, t.goal_id FOR NO KEY UPDATE OF t SKIP LOCKED",
        columns.join(", ")
    )
});

/// For the users of the keys the locking select did not return, what tells those keys
/// apart, one row per user: the ids of every row the user has, read without locking (a
/// missing key whose goal is among them has a row another transaction holds; one not
/// among them has no row: the goal is implicit or not assigned), the user's erasure
/// tombstone, if any, and the user's marker row (`store::implicit`: when the user was
/// initialized and the goals that covered). A user with no row at all is
/// auto-initialized.
///
/// Per user, not per key: an event fans out to every goal of its stat code, and most of
/// them may be goals the player never activated. In AccelByte's M5 catalog a stat feeds
/// 120 goals of which 20 are default-assigned: 83 % of a scenario-5 batch's keys had no
/// row, and a look up each of them cost 14 ms for a batch of 4,800 keys of 40 players
/// against 1.3 ms for one range scan of each player's primary-key entries (BENCHMARKS.md,
/// "Issue 22 part 0, fourth pass").
///
/// Each look-up is a subquery correlated on the user, so each is an index scan for one user
/// (on a partitioned layout, of one partition, chosen at run time): a join on the unnested
/// ids may be planned as a hash join scanning every partition of `user_erasures`
/// (`tests/partition_pruning.rs`).
const MISSING_USERS_SQL: &str = "\
SELECT u.user_id, \
    ARRAY(SELECT p.goal_id FROM user_goal_progress p WHERE p.user_id = u.user_id), \
    (SELECT e.erased_at FROM user_erasures e WHERE e.user_id = u.user_id), \
    m.user_id IS NOT NULL, m.assigned_at, m.req_state \
FROM unnest($1::text[]) AS u(user_id) \
LEFT JOIN LATERAL (SELECT m.user_id, m.assigned_at, m.req_state FROM user_goal_progress m \
    WHERE m.user_id = u.user_id AND m.goal_id = '' LIMIT 1) AS m ON true";

/// The batch's `BEGIN`, with `ROW EXCLUSIVE` on the progress table (which an erasure's
/// `EXCLUSIVE` lock waits for, see [`super::erasure`]) taken before anything reads the
/// tombstones: one round trip (simple query protocol).
const BEGIN_SQL: &str = "BEGIN; LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE";

/// [`BEGIN_SQL`] while the progress table has no statistics ([`plan_each_batch`]): the
/// batch's statements are planned for the table as it is now.
const BEGIN_PLANNING_SQL: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; \
LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE";

/// Whether batches plan their statements each time instead of using the connection's
/// cached generic plans ([`set_plan_each_batch`]). On until the handler sees statistics.
static PLAN_EACH_BATCH: AtomicBool = AtomicBool::new(true);

/// Plans each batch's statements afresh (`plan_cache_mode = force_custom_plan`, for the
/// batch's transaction only) while `on`.
///
/// Why: a connection caches a generic plan of a prepared statement after five executions,
/// and replans it only when the table's statistics change. A deployment starts with an
/// empty progress table, never analyzed (`pg_class.reltuples = -1`), so the plan it caches
/// then is one for an empty table: a full index scan joined by filter and a sequential scan
/// of `user_goal_progress`. Until autovacuum first analyzes the table (a minute or more
/// after start, never when autovacuum is off), every batch ran that plan over a growing
/// table: 32 ms for 30 keys over 25,000 rows, against 0.4 ms planning plus 0.4 ms
/// execution for a fresh plan (BENCHMARKS.md, issue 22 part 0). The event handler turns
/// this off once the table has statistics ([`progress_statistics`]), and analyzes a small
/// table that doubled itself ([`ProgressStatistics::stale`], [`analyze_progress`]): an
/// `ANALYZE` invalidates the cached plans, so the next ones are made with real sizes.
pub fn set_plan_each_batch(on: bool) {
    PLAN_EACH_BATCH.store(on, Ordering::Relaxed);
}

/// See [`set_plan_each_batch`].
pub fn plan_each_batch() -> bool {
    PLAN_EACH_BATCH.load(Ordering::Relaxed)
}

/// What the planner knows of the progress table (summed over its partitions when it is
/// partitioned), beside its size now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressStatistics {
    /// Analyzed or vacuumed at least once (every partition).
    pub analyzed: bool,
    /// Pages at the last analyze or vacuum (`pg_class.relpages`).
    pub analyzed_pages: i64,
    /// Pages now.
    pub pages: i64,
}

impl ProgressStatistics {
    /// Pages below which a table's statistics are refreshed by the handler when it doubles
    /// ([`ProgressStatistics::stale`]): beyond, plans of key look-ups no longer change
    /// with its size, and autovacuum keeps the figures.
    pub const SMALL_TABLE_PAGES: i64 = 1_000;

    /// Whether the table grew enough since the planner last saw it that plans cached
    /// meanwhile may be the wrong shape: a small table (a new deployment's) that at least
    /// doubled, from at least 8 pages.
    pub fn stale(&self) -> bool {
        self.analyzed_pages < Self::SMALL_TABLE_PAGES
            && self.pages >= 8
            && self.pages > 2 * self.analyzed_pages
    }
}

/// See [`ProgressStatistics`].
pub async fn progress_statistics(pool: &PgPool) -> Result<ProgressStatistics, sqlx::Error> {
    let (analyzed, analyzed_pages, pages): (bool, i64, i64) = sqlx::query_as(
        "SELECT coalesce(bool_and(c.reltuples >= 0), false), coalesce(sum(c.relpages), 0)::bigint, \
             coalesce(sum(pg_relation_size(c.oid) / current_setting('block_size')::bigint), 0)::bigint \
         FROM pg_class c \
         WHERE c.relkind = 'r' AND (c.oid = 'user_goal_progress'::regclass OR c.oid IN \
             (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'user_goal_progress'::regclass))",
    )
    .fetch_one(pool)
    .await?;
    Ok(ProgressStatistics {
        analyzed,
        analyzed_pages,
        pages,
    })
}

/// `ANALYZE user_goal_progress` (every partition): the planner learns the table's size, and
/// the plans sessions cached are made again. It reads a sample, never blocks writers, and
/// needs the table's owner (the role that migrates).
pub async fn analyze_progress(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("ANALYZE user_goal_progress")
        .execute(pool)
        .await
        .map(|_| ())
}

/// For callers of [`write_batch`] other than [`flush_batch`]: the table lock alone.
pub(super) const LOCK_SQL: &str = "LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE";

/// Records applied event ids; a conflict means an id was applied before.
const LEDGER_INSERT_SQL: &str = "\
INSERT INTO event_ledger (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING";

/// The batch's last statement: the changed rows' `UPDATE` (with `req_state`, `$16`, for
/// requirement-group goals), the first rows of implicit goals the batch changed (`$17`–
/// `$30`, see `store::implicit`), the marker rows of the users it auto-initializes
/// (`$31`–`$33`), the applied event ids' ledger `INSERT` (a conflict means an id was
/// applied before) and the auto-claims the batch's completions ask for (the outbox,
/// [`super::outbox`]; `$14`/`$15`, usually empty), as one statement with one answer: the
/// transaction id (for [`transaction_status`]), the rows written, the ids recorded and the
/// markers inserted. Data-modifying `WITH` parts run to completion whether read or not.
///
/// An implicit goal's row that another transaction inserted meanwhile is not inserted
/// (`ON CONFLICT DO NOTHING`); its delta must not be dropped, so the statement then fails
/// the batch with `40001` (`challenge_retry_batch`, migration 0011), and the batch is
/// retried as it is, finding the row.
static WRITE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH updated AS ( \
             UPDATE user_goal_progress AS t SET {}, req_state = u.req_state, updated_at = $12 \
             FROM unnest($1::text[], $2::text[], {}, $16::text[]) \
               AS u(user_id, goal_id, {}, req_state) \
             WHERE t.user_id = u.user_id AND t.goal_id = u.goal_id \
             RETURNING 1), \
         materialized AS ( \
             INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, {}, \
                 req_state, created_at, updated_at) \
             SELECT u.user_id, u.goal_id, u.challenge_id, u.namespace, {}, u.req_state, $12, $12 \
             FROM unnest($17::text[], $18::text[], $19::text[], $20::text[], {}, $30::text[]) \
               AS u(user_id, goal_id, challenge_id, namespace, {}, req_state) \
             ORDER BY u.user_id, u.goal_id \
             ON CONFLICT (user_id, goal_id) DO NOTHING RETURNING 1), \
         marked AS ( \
             INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, \
                 is_active, assigned_at, req_state, created_at, updated_at) \
             SELECT m.user_id, '', '', m.namespace, false, $12, $33, $12, $12 \
             FROM unnest($31::text[], $32::text[]) AS m(user_id, namespace) \
             ORDER BY m.user_id \
             ON CONFLICT (user_id, goal_id) DO NOTHING RETURNING 1), \
         recorded AS ( \
             INSERT INTO event_ledger (event_id) SELECT unnest($13::text[]) \
             ON CONFLICT DO NOTHING RETURNING 1), \
         outboxed AS ({}) \
         SELECT txid_current(), \
           (SELECT count(*) FROM updated) + (SELECT count(*) FROM materialized), \
           (SELECT count(*) FROM recorded), (SELECT count(*) FROM marked), \
           CASE WHEN (SELECT count(*) FROM materialized) <> cardinality($17::text[]) \
             THEN challenge_retry_batch('a goal row was inserted concurrently') END",
        StateColumns::assignments("u"),
        StateColumns::unnest_args(3),
        StateColumns::names(""),
        StateColumns::names(""),
        StateColumns::names("u."),
        StateColumns::unnest_args(21),
        StateColumns::names(""),
        super::outbox::ENQUEUE_SQL
            .replace("$1::", "$14::")
            .replace("$2::", "$15::"),
    )
});

/// A row the batch locked: its user, its goal columns and its user's tombstone
/// ([`LOCK_ROWS_SQL`]'s columns, decoded by position).
struct LockedRow {
    user_id: String,
    goal: GoalRow,
    erased_at: Option<DateTime<Utc>>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for LockedRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            user_id: row.try_get(0)?,
            goal: GoalRow::from_row_at(row, 1)?,
            erased_at: row.try_get(1 + GOAL_ROW_COLUMNS.len())?,
        })
    }
}

/// Why a batch was not (known to be) committed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Failed before `COMMIT` was sent, or the server refused the `COMMIT`: nothing of the
    /// batch was written.
    #[error("batch not written: {0}")]
    NotWritten(#[source] sqlx::Error),
    /// Failed before `COMMIT` was sent, by the timeout: nothing of the batch was written.
    #[error("batch not written: timed out after {0:?}")]
    TimedOut(Duration),
    /// `COMMIT` was sent but its answer was lost: ask [`transaction_status`] about `xid`.
    #[error("commit of transaction {xid} unconfirmed: {reason}")]
    CommitUnconfirmed {
        xid: i64,
        /// What the batch did, if it committed.
        flushed: Flushed,
        reason: String,
    },
}

impl FlushError {
    /// Whether retrying the same batch as it is can succeed: `false` when Postgres refused
    /// its data (or failed for a reason that is neither connectivity nor a lost race, see
    /// [`DbFault`]) — then the batch must be split to find the rows it refuses.
    pub fn is_retryable(&self) -> bool {
        match self {
            FlushError::NotWritten(e) => {
                matches!(classify(e), DbFault::Connectivity | DbFault::Transient)
            }
            FlushError::TimedOut(_) | FlushError::CommitUnconfirmed { .. } => true,
        }
    }
}

/// The fate of a transaction, from `txid_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Committed,
    Aborted,
    InProgress,
    /// Too old for the server to remember (not expected seconds after the commit).
    Forgotten,
}

/// Asks the server whether transaction `xid` committed.
pub async fn transaction_status(pool: &PgPool, xid: i64) -> Result<TxStatus, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar("SELECT txid_status($1)")
        .bind(xid)
        .fetch_one(pool)
        .await?;
    Ok(match status.as_deref() {
        Some("committed") => TxStatus::Committed,
        Some("aborted") => TxStatus::Aborted,
        Some(_) => TxStatus::InProgress,
        None => TxStatus::Forgotten,
    })
}

/// Applies one batch in one transaction (see the module docs). `users` lists the users of
/// `items` in order (see [`BatchUser`]). `defaults`: when `Some`, the batch's users
/// without any row are auto-initialized with these default goals (a marker row). Each of the two phases (statements,
/// `COMMIT`) must finish within `timeout`. The items of users one of whose rows another
/// transaction holds are not written and come back in [`Flushed::deferred`].
pub async fn flush_batch(
    pool: &PgPool,
    items: &[BatchItem],
    users: &[BatchUser],
    defaults: Option<&Defaults>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Flushed, FlushError> {
    if items.is_empty() && users.iter().all(|u| u.event_ids.is_empty()) {
        return Ok(Flushed::default());
    }
    let work = async {
        // One round trip: BEGIN and the table lock against erasures.
        let started = Instant::now();
        let begin = if plan_each_batch() {
            BEGIN_PLANNING_SQL
        } else {
            BEGIN_SQL
        };
        let mut tx = pool.begin_with(begin).await?;
        let acquire_begin = started.elapsed();
        let (mut flushed, xid) = write_batch(&mut tx, items, users, defaults, now).await?;
        flushed.timings.acquire_begin = acquire_begin;
        Ok::<_, sqlx::Error>((tx, xid, flushed))
    };
    let (tx, xid, mut flushed) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(FlushError::NotWritten(e)),
        Err(_) => return Err(FlushError::TimedOut(timeout)),
    };
    let committing = Instant::now();
    let reason = match tokio::time::timeout(timeout, tx.commit()).await {
        Ok(Ok(())) => {
            flushed.timings.commit = committing.elapsed();
            return Ok(flushed);
        }
        // The server answered the COMMIT with an error (a deferred constraint, say): the
        // transaction rolled back.
        Ok(Err(e @ sqlx::Error::Database(_))) => return Err(FlushError::NotWritten(e)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    Err(FlushError::CommitUnconfirmed {
        xid,
        flushed,
        reason,
    })
}

/// Per-user facts a batch gathers before it applies the rules.
#[derive(Default)]
struct UserFacts {
    /// Rows of the user this batch locked.
    locked: usize,
    /// One of the user's keys has a row another transaction holds.
    deferred: bool,
    /// The user's erasure tombstone, if seen.
    erased_at: Option<DateTime<Utc>>,
}

/// The statements of [`flush_batch`], inside the caller's transaction (the dead-letter
/// replay runs them too), which must already hold [`LOCK_SQL`]'s lock. Returns what the
/// batch did and the transaction's id.
///
/// In the usual batch — every key already has a row — that is two statements: the locking
/// select (with the tombstones) and the write (update and ledger). A batch with keys the
/// select did not return adds a look at those keys (rows held elsewhere, markers).
pub(super) async fn write_batch(
    tx: &mut sqlx::PgConnection,
    items: &[BatchItem],
    users: &[BatchUser],
    defaults: Option<&Defaults>,
    now: DateTime<Utc>,
) -> Result<(Flushed, i64), sqlx::Error> {
    let mut outcome = FlushOutcome::default();
    type Fast = foldhash::fast::RandomState;

    // Key → index of its (first) item.
    let mut by_key: HashMap<(&str, &str), usize, Fast> =
        HashMap::with_capacity_and_hasher(items.len(), Default::default());
    let mut key_users = Vec::with_capacity(items.len());
    let mut goal_ids = Vec::with_capacity(items.len());
    let mut facts: HashMap<&str, UserFacts, Fast> =
        HashMap::with_capacity_and_hasher(users.len(), Default::default());
    // The further items of a row: the other requirements of a requirement-group goal
    // (each is fed, buffered and collapsed as its own key; they share the parent's row).
    let mut more: Vec<(usize, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = (&*item.user_id, item.goal.row_goal_id());
        match by_key.entry(key) {
            Entry::Vacant(e) => {
                e.insert(i);
                key_users.push(key.0);
                goal_ids.push(key.1);
            }
            Entry::Occupied(e) => more.push((*e.get(), i)),
        }
        facts.entry(&*item.user_id).or_default();
    }
    more.sort_unstable();

    let mut timings = FlushTimings::default();
    let mut mark = Instant::now();
    let mut lap = || {
        let now = Instant::now();
        std::mem::replace(&mut mark, now).elapsed()
    };
    let rows: Vec<LockedRow> = if key_users.is_empty() {
        Vec::new()
    } else {
        lock_rows(&mut *tx, &key_users, &goal_ids).await?
    };
    timings.select = lap();
    let mut locked = vec![false; items.len()];
    note_locked(&rows, &by_key, &mut locked, &mut facts);

    // Keys not returned: a row another transaction holds, or no row. A look at them also
    // brings the tombstones of users none of whose rows were locked.
    let missing = missing_keys(&key_users, &goal_ids, &by_key, &locked);
    let rules_before = lap();
    let without_row = look_at_missing(&mut *tx, &missing, &by_key, items, &mut facts).await?;
    timings.missing = lap();

    // The users whose tombstone is not older than their oldest event: none of their items
    // is written (their event ids are still recorded as done).
    let erased: HashSet<&str, Fast> = users
        .iter()
        .filter(|u| {
            facts
                .get(&*u.user_id)
                .and_then(|f| f.erased_at)
                .is_some_and(|erased_at| u.oldest_at.is_none_or(|t| t <= erased_at))
        })
        .map(|u| &*u.user_id)
        .collect();
    for user in users.iter().filter(|u| erased.contains(&*u.user_id)) {
        tracing::debug!(
            user_id = %user.user_id,
            keys = user.keys,
            events = user.event_ids.len(),
            "dropping updates from events before the user's data erasure"
        );
    }

    let deferred_users: HashSet<&str, Fast> = facts
        .iter()
        .filter(|(u, f)| f.deferred && !erased.contains(*u))
        .map(|(u, _)| *u)
        .collect();
    let skip = |user: &str| erased.contains(user) || deferred_users.contains(user);
    // Indices into the caller's items.
    let deferred: Vec<usize> = (0..items.len())
        .filter(|&i| deferred_users.contains(&*items[i].user_id))
        .collect();
    outcome.deferred = deferred.len() as u64;
    outcome.erased = items
        .iter()
        .filter(|i| erased.contains(&*i.user_id))
        .count() as u64;

    // Keys without a row: an implicit goal of the user's marker, a default goal of a user
    // auto-initialized now (one without any row: it gets a marker), or not assigned.
    let mut implicit: Vec<(usize, progress::GoalState)> = Vec::new();
    let mut new_markers: Vec<(&str, &str)> = Vec::new();
    // Per item, what the rules made of it (the event trail, live progress).
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let not_assigned = |i: usize, results: &mut [Option<ItemResult>]| {
        let from = more.partition_point(|(first, _)| *first < i);
        let to = more.partition_point(|(first, _)| *first <= i);
        for k in std::iter::once(i).chain(more[from..to].iter().map(|m| m.1)) {
            results[k] = Some(ItemResult::ignored(progress::Ignored::NotAssigned));
        }
    };
    let mut marked: HashSet<&str, Fast> = HashSet::default();
    for key in &without_row {
        let item = &items[key.item];
        let user = &*item.user_id;
        if skip(user) {
            continue;
        }
        let goal = row_goal(&item.goal);
        match &key.marker {
            Some(marker) if implicit::covers(defaults, &marker.text, goal) => {
                implicit.push((key.item, marker.implicit_state(goal)));
            }
            None if defaults.is_some() && !key.has_rows => {
                if marked.insert(user) {
                    new_markers.push((user, &*item.namespace));
                }
                if goal.default_assigned {
                    implicit.push((key.item, progress::new_assignment(goal, now)));
                } else {
                    outcome.not_assigned += 1;
                    not_assigned(key.item, &mut results);
                }
            }
            // A player with no state at all (no marker, no row: never initialized, with
            // auto-initialize off) has no goal to explain: the key is not assigned, but the
            // trail gets no entry (an event fanning out to 20 goals of 10,000 such players
            // would write 20 entries each; BENCHMARKS.md, scenario 5).
            None if !key.has_rows => outcome.not_assigned += 1,
            _ => {
                outcome.not_assigned += 1;
                not_assigned(key.item, &mut results);
            }
        }
    }

    // The progress rules: each key's item, then the row's other requirements, one after
    // the other (`more` is sorted by row).
    // Each item's result goes to `results` (`progress::apply_explained` says why an item
    // changed nothing).
    let apply = |i: usize, old: &progress::GoalState, results: &mut [Option<ItemResult>]| {
        let item = &items[i];
        let first = progress::apply_explained(&item.goal, old, &item.delta, now);
        results[i] = Some(ItemResult::of(old, &first));
        let mut new = first.ok();
        let from = more.partition_point(|(first, _)| *first < i);
        let to = more.partition_point(|(first, _)| *first <= i);
        for &(_, j) in &more[from..to] {
            let current = new.as_ref().unwrap_or(old);
            let next = progress::apply_explained(&items[j].goal, current, &items[j].delta, now);
            results[j] = Some(ItemResult::of(current, &next));
            if let Ok(next) = next {
                new = Some(next);
            }
        }
        let new = new.filter(|new| new != old);
        if new.is_some() {
            for k in std::iter::once(i).chain(more[from..to].iter().map(|m| m.1)) {
                if let Some(r) = &mut results[k] {
                    r.written = true;
                }
            }
        }
        new
    };
    // Auto-claims asked for by the batch's completions, each (user, goal) once.
    let mut wakes: HashSet<(&str, &str), Fast> = HashSet::default();
    let mut wake = |i: usize, old: &progress::GoalState, new: &progress::GoalState| {
        if progress::newly_completed(old, new) {
            let item = &items[i];
            for goal_id in &row_goal(&item.goal).auto_claim_wakes {
                wakes.insert((&*item.user_id, goal_id.as_str()));
            }
        }
    };

    let mut updates = RowWrites::default();
    for row in &rows {
        if skip(row.user_id.as_str()) {
            continue;
        }
        let Some(&i) = by_key.get(&(row.user_id.as_str(), row.goal.goal_id.as_str())) else {
            continue;
        };
        let old = row.goal.state();
        match apply(i, &old, &mut results) {
            Some(new) => {
                wake(i, &old, &new);
                updates.push(i, &new);
            }
            None => outcome.unchanged += 1,
        }
    }
    // Implicit goals the batch changes get their first row; unchanged ones stay implicit.
    implicit.sort_unstable_by(|a, b| {
        let key = |i: usize| (&*items[i].user_id, items[i].goal.row_goal_id());
        key(a.0).cmp(&key(b.0))
    });
    let mut inserts = RowWrites::default();
    for (i, old) in &implicit {
        match apply(*i, old, &mut results) {
            Some(new) => {
                wake(*i, old, &new);
                inserts.push(*i, &new);
            }
            None => outcome.unchanged += 1,
        }
    }
    new_markers.sort_unstable();

    let applied = storable_ids(
        users
            .iter()
            .filter(|u| !deferred_users.contains(&*u.user_id))
            .flat_map(|u| u.event_ids.iter().map(|id| &**id)),
    );
    let (wake_users, wake_goals): (Vec<&str>, Vec<&str>) = wakes.into_iter().unzip();
    let (marker_users, marker_namespaces): (Vec<&str>, Vec<&str>) = new_markers.into_iter().unzip();
    let query = sqlx::query(AssertSqlSafe(WRITE_SQL.as_str()))
        .bind(updates.users(items))
        .bind(updates.goals(items));
    let query = updates
        .cols
        .bind(query)
        .bind(now)
        .bind(&applied)
        .bind(&wake_users)
        .bind(&wake_goals)
        .bind(&updates.req_states)
        .bind(inserts.users(items))
        .bind(inserts.goals(items))
        .bind(inserts.challenges(items))
        .bind(inserts.namespaces(items));
    let row = inserts
        .cols
        .bind(query)
        .bind(&inserts.req_states)
        .bind(&marker_users)
        .bind(&marker_namespaces)
        .bind(defaults.map_or("", |d| d.marker_text()));
    timings.rules = rules_before + lap();
    let row = row.fetch_one(&mut *tx).await?;
    timings.write = lap();
    let xid: i64 = row.try_get(0)?;
    outcome.updated = row.try_get::<i64, _>(1)? as u64;
    let recorded = row.try_get::<i64, _>(2)? as u64;
    outcome.initialized = row.try_get::<i64, _>(3)? as u64;
    outcome.ledger_conflicts = applied.len() as u64 - recorded.min(applied.len() as u64);
    Ok((
        Flushed {
            outcome,
            deferred,
            results,
            timings,
        },
        xid,
    ))
}

/// The configured goal whose row a goal's progress lives in: its own, or a
/// requirement-group part's parent.
fn row_goal(goal: &Arc<Goal>) -> &Goal {
    match &goal.part {
        Some(p) => &p.parent,
        None => goal,
    }
}

/// The rows a batch writes: the item each comes from and its new state, as the statement's
/// arrays.
#[derive(Default)]
struct RowWrites {
    items: Vec<usize>,
    cols: StateColumns,
    req_states: Vec<Option<String>>,
}

impl RowWrites {
    fn push(&mut self, item: usize, state: &progress::GoalState) {
        self.items.push(item);
        self.cols.push(state);
        self.req_states
            .push(state.parts.as_deref().map(super::columns::encode_parts));
    }

    fn users<'a>(&self, items: &'a [BatchItem]) -> Vec<&'a str> {
        self.items.iter().map(|&i| &*items[i].user_id).collect()
    }

    fn goals<'a>(&self, items: &'a [BatchItem]) -> Vec<&'a str> {
        self.items
            .iter()
            .map(|&i| items[i].goal.row_goal_id())
            .collect()
    }

    fn challenges<'a>(&self, items: &'a [BatchItem]) -> Vec<&'a str> {
        self.items
            .iter()
            .map(|&i| items[i].goal.challenge_id.as_str())
            .collect()
    }

    fn namespaces<'a>(&self, items: &'a [BatchItem]) -> Vec<&'a str> {
        self.items.iter().map(|&i| &*items[i].namespace).collect()
    }
}

/// Runs [`LOCK_ROWS_SQL`] for the keys `(users[i], goals[i])`.
async fn lock_rows(
    tx: &mut sqlx::PgConnection,
    users: &[&str],
    goals: &[&str],
) -> Result<Vec<LockedRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(LOCK_ROWS_SQL.as_str()))
        .bind(users)
        .bind(goals)
        .fetch_all(&mut *tx)
        .await
}

/// Marks the items of `rows` locked and counts them, with their users' tombstones, in
/// `facts`.
fn note_locked(
    rows: &[LockedRow],
    by_key: &HashMap<(&str, &str), usize, foldhash::fast::RandomState>,
    locked: &mut [bool],
    facts: &mut HashMap<&str, UserFacts, foldhash::fast::RandomState>,
) {
    for row in rows {
        if let Some(&i) = by_key.get(&(row.user_id.as_str(), row.goal.goal_id.as_str())) {
            locked[i] = true;
            if let Some(f) = facts.get_mut(row.user_id.as_str()) {
                f.locked += 1;
                if row.erased_at.is_some() {
                    f.erased_at = row.erased_at;
                }
            }
        }
    }
}

/// The batch's keys (unique, in batch order) whose item is not locked.
fn missing_keys<'a>(
    key_users: &[&'a str],
    goal_ids: &[&'a str],
    by_key: &HashMap<(&str, &str), usize, foldhash::fast::RandomState>,
    locked: &[bool],
) -> Vec<(&'a str, &'a str)> {
    key_users
        .iter()
        .zip(goal_ids)
        .filter(|&(u, g)| !locked[by_key[&(*u, *g)]])
        .map(|(u, g)| (*u, *g))
        .collect()
}

/// A batch key without a row ([`look_at_missing`]): its (first) item, its user's marker
/// and whether its user has any row.
struct WithoutRow {
    item: usize,
    marker: Option<Arc<Marker>>,
    has_rows: bool,
}

/// A row of [`MISSING_USERS_SQL`].
type MissingUserRow = (
    String,
    Vec<String>,
    Option<DateTime<Utc>>,
    bool,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// Runs [`MISSING_USERS_SQL`] for the users of `missing`: marks the users with a row held
/// elsewhere deferred, records the tombstones it reads, and returns the keys without a
/// row.
async fn look_at_missing<'a>(
    tx: &mut sqlx::PgConnection,
    missing: &[(&str, &str)],
    by_key: &HashMap<(&str, &str), usize, foldhash::fast::RandomState>,
    items: &'a [BatchItem],
    facts: &mut HashMap<&'a str, UserFacts, foldhash::fast::RandomState>,
) -> Result<Vec<WithoutRow>, sqlx::Error> {
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    // Missing keys come user after user (a batch lists its users' items together).
    let mut users: Vec<&str> = missing.iter().map(|(u, _)| *u).collect();
    users.dedup();
    let found: Vec<MissingUserRow> = sqlx::query_as(MISSING_USERS_SQL)
        .bind(&users)
        .fetch_all(&mut *tx)
        .await?;
    // Per user: its rows' goal ids, its marker (built once, shared by its keys), its
    // tombstone.
    type Seen<'r> = (
        HashSet<&'r str, foldhash::fast::RandomState>,
        Option<Arc<Marker>>,
    );
    let mut seen: HashMap<&str, Seen<'_>, foldhash::fast::RandomState> = HashMap::default();
    for (u, present, erased_at, has_marker, marker_at, marker_text) in &found {
        if let Some(f) = facts.get_mut(u.as_str())
            && erased_at.is_some()
        {
            f.erased_at = *erased_at;
        }
        let marker = has_marker
            .then(|| Marker::from_parts(MARKER_GOAL_ID, *marker_at, marker_text.as_deref()))
            .flatten()
            .map(Arc::new);
        seen.insert(u, (present.iter().map(String::as_str).collect(), marker));
    }
    let mut without_row = Vec::new();
    for &(u, g) in missing {
        let (Some(&i), Some((present, marker))) = (by_key.get(&(u, g)), seen.get(u)) else {
            continue;
        };
        if present.contains(g) {
            if let Some(f) = facts.get_mut(&*items[i].user_id) {
                f.deferred = true;
            }
        } else {
            without_row.push(WithoutRow {
                item: i,
                marker: marker.clone(),
                has_rows: !present.is_empty(),
            });
        }
    }
    Ok(without_row)
}

/// The ids a text column can hold: an id holding a NUL cannot be stored and is left out
/// (validation refuses such ids at the door; only a caller that bypasses it can bring one).
fn storable_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    ids.filter(|id| !id.contains('\0')).collect()
}

/// Records `ids` in `event_ledger`; returns how many it already held (see
/// [`storable_ids`] for the ids left out).
pub(super) async fn record_applied(
    tx: &mut sqlx::PgConnection,
    ids: &[&str],
) -> Result<u64, sqlx::Error> {
    let ids = storable_ids(ids.iter().copied());
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(LEDGER_INSERT_SQL)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    Ok(ids.len() as u64 - done.rows_affected().min(ids.len() as u64))
}

#[cfg(test)]
mod statistics_tests {
    use super::ProgressStatistics;

    fn stats(analyzed_pages: i64, pages: i64) -> ProgressStatistics {
        ProgressStatistics {
            analyzed: analyzed_pages > 0,
            analyzed_pages,
            pages,
        }
    }

    #[test]
    fn a_small_table_is_stale_once_it_doubled() {
        assert!(!stats(0, 7).stale(), "too small to matter");
        assert!(stats(0, 8).stale(), "never analyzed, 8 pages");
        assert!(!stats(100, 200).stale(), "grew, not doubled");
        assert!(stats(100, 201).stale());
        assert!(!stats(1_000, 5_000).stale(), "large: autovacuum's");
    }
}
