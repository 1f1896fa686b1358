//! The event handler's batch writes: one transaction per batch, set-based SQL, never one
//! statement per event.
//!
//! A batch is a set of collapsed deltas keyed by (user, goal). [`flush_batch`] runs:
//!
//! 1. optionally, one `INSERT … SELECT` assigning the default goals to the batch's users who
//!    have no rows at all (CONTRACT §2.1 auto-initialize);
//! 2. one `SELECT … ORDER BY user_id, goal_id FOR NO KEY UPDATE SKIP LOCKED` of the batch's rows;
//! 3. for the keys it did not return, one unlocked `SELECT` telling the rows that exist but
//!    are locked by another transaction (*deferred*) from the keys without a row;
//! 4. the progress rules, in Rust ([`progress::apply`]);
//! 5. one `UPDATE … FROM unnest(…)` for the rows that changed;
//! 6. one `INSERT … SELECT unnest(…)` of the written users' event ids into `event_ledger`;
//!
//! then commits. Keys without a row (goal not assigned) are dropped: only assigned goals
//! make progress.
//!
//! **Erased users (no zombie rows).** Before step 1 the batch takes `ROW EXCLUSIVE` on
//! `user_goal_progress` (pipelined with reading its transaction id) and reads the
//! tombstones of its users (`user_erasures`). A user whose oldest contributing event
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
//! Sorting is still kept, for what can wait: the auto-initialize `INSERT` waits on the
//! primary-key entry of a row another transaction is inserting, and `FOR UPDATE` takes the
//! row locks one by one in the order rows come out of the sort. Inserting and locking in
//! one (user_id, goal_id) order means two writers never hold locks in opposite orders, so
//! the short waits left (on concurrent inserts) cannot deadlock.
//!
//! A failed `COMMIT` (connection lost, timeout) is ambiguous: the server may have committed.
//! The batch's transaction id is read first, so the caller can ask [`transaction_status`]
//! instead of guessing — retrying a committed batch would count it twice, dropping an
//! aborted one would lose it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::{DbFault, GOAL_ROW_COLUMNS, GoalRow, classify};
use crate::config::Goal;
use crate::progress::{self, Delta, GoalState};

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
    /// Rows inserted by auto-initialization.
    pub initialized: u64,
    /// Rows the batch changed.
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
}

/// Assigns `goals` (as [`progress::new_assignment`] at `now`) to each user in `users` that
/// has no row at all. The cross join keeps the statement's input at users + goals, not
/// users × goals; rows are inserted sorted so concurrent initializers wait on each other in
/// one order.
const AUTO_INITIALIZE_SQL: &str = "\
INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, \
    completed_at, claimed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at, \
    created_at, updated_at) \
SELECT u.user_id, g.goal_id, g.challenge_id, u.namespace, g.progress, g.status, g.completed_at, \
    g.claimed_at, g.is_active, g.assigned_at, g.expires_at, g.baseline_value, g.last_event_at, \
    $14, $14 \
FROM unnest($1::text[], $2::text[]) AS u(user_id, namespace) \
CROSS JOIN unnest($3::text[], $4::text[], $5::int4[], $6::text[], $7::timestamptz[], \
    $8::timestamptz[], $9::bool[], $10::timestamptz[], $11::timestamptz[], $12::int4[], \
    $13::timestamptz[]) \
    AS g(goal_id, challenge_id, progress, status, completed_at, claimed_at, is_active, \
    assigned_at, expires_at, baseline_value, last_event_at) \
WHERE NOT EXISTS (SELECT 1 FROM user_goal_progress p WHERE p.user_id = u.user_id) \
ORDER BY u.user_id, g.goal_id \
ON CONFLICT (user_id, goal_id) DO NOTHING";

/// Locks the batch's rows in (user_id, goal_id) order, skipping rows another transaction
/// holds: Postgres takes the row locks after the sort, so every writer acquires them in the
/// same order, and none waits for a lock.
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
        "SELECT t.user_id, {} FROM unnest($1::text[], $2::text[]) AS k(user_id, goal_id) \
         JOIN user_goal_progress AS t ON t.user_id = k.user_id AND t.goal_id = k.goal_id \
         ORDER BY t.user_id, t.goal_id FOR NO KEY UPDATE OF t SKIP LOCKED",
        columns.join(", ")
    )
});

/// Of the given keys, those that have a row (read without locking: the rows the locking
/// select skipped exist, the others are not assigned).
const EXISTING_KEYS_SQL: &str = "\
SELECT k.user_id, k.goal_id FROM unnest($1::text[], $2::text[]) AS k(user_id, goal_id) \
WHERE EXISTS (SELECT 1 FROM user_goal_progress p \
    WHERE p.user_id = k.user_id AND p.goal_id = k.goal_id)";

/// The batch's first statements: `ROW EXCLUSIVE` on the progress table (which an erasure's
/// `EXCLUSIVE` lock waits for, see [`super::erasure`]) before anything reads the
/// tombstones, and the transaction id (for [`transaction_status`]).
const LOCK_AND_XID_SQL: &str =
    "LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE; SELECT txid_current()";

/// For callers of [`write_batch`] other than [`flush_batch`]: the table lock alone.
pub(super) const LOCK_SQL: &str = "LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE";

/// Records applied event ids; a conflict means an id was applied before.
const LEDGER_INSERT_SQL: &str = "\
INSERT INTO event_ledger (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING";

const UPDATE_ROWS_SQL: &str = "\
UPDATE user_goal_progress AS t SET \
    progress = u.progress, status = u.status, completed_at = u.completed_at, \
    claimed_at = u.claimed_at, is_active = u.is_active, assigned_at = u.assigned_at, \
    expires_at = u.expires_at, baseline_value = u.baseline_value, \
    last_event_at = u.last_event_at, updated_at = $12 \
FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::timestamptz[], \
    $6::timestamptz[], $7::bool[], $8::timestamptz[], $9::timestamptz[], $10::int4[], \
    $11::timestamptz[]) \
    AS u(user_id, goal_id, progress, status, completed_at, claimed_at, is_active, \
    assigned_at, expires_at, baseline_value, last_event_at) \
WHERE t.user_id = u.user_id AND t.goal_id = u.goal_id";

/// A row the batch locked: its user and its goal columns ([`LOCK_ROWS_SQL`]'s columns,
/// decoded by position).
struct LockedRow {
    user_id: String,
    goal: GoalRow,
}

impl<'r> sqlx::FromRow<'r, PgRow> for LockedRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            user_id: row.try_get(0)?,
            goal: GoalRow::from_row_at(row, 1)?,
        })
    }
}

/// Column arrays of [`GoalState`]s, for `unnest`.
#[derive(Default)]
struct StateColumns {
    progress: Vec<i32>,
    status: Vec<&'static str>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    claimed_at: Vec<Option<DateTime<Utc>>>,
    is_active: Vec<bool>,
    assigned_at: Vec<Option<DateTime<Utc>>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    baseline_value: Vec<Option<i32>>,
    last_event_at: Vec<Option<DateTime<Utc>>>,
}

impl StateColumns {
    fn push(&mut self, s: &GoalState) {
        self.progress.push(s.progress);
        self.status.push(s.status.as_str());
        self.completed_at.push(s.completed_at);
        self.claimed_at.push(s.claimed_at);
        self.is_active.push(s.is_active);
        self.assigned_at.push(s.assigned_at);
        self.expires_at.push(s.expires_at);
        self.baseline_value.push(s.baseline_value);
        self.last_event_at.push(s.last_event_at);
    }

    /// Binds the nine arrays, in the column order both statements use.
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.progress)
            .bind(&self.status)
            .bind(&self.completed_at)
            .bind(&self.claimed_at)
            .bind(&self.is_active)
            .bind(&self.assigned_at)
            .bind(&self.expires_at)
            .bind(&self.baseline_value)
            .bind(&self.last_event_at)
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
/// `items` in order (see [`BatchUser`]). `default_goals`: when `Some`, the batch's users
/// without any row first get these goals assigned. Each of the two phases (statements,
/// `COMMIT`) must finish within `timeout`. The items of users one of whose rows another
/// transaction holds are not written and come back in [`Flushed::deferred`].
pub async fn flush_batch(
    pool: &PgPool,
    items: &[BatchItem],
    users: &[BatchUser],
    default_goals: Option<&[Arc<Goal>]>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Flushed, FlushError> {
    if items.is_empty() && users.iter().all(|u| u.event_ids.is_empty()) {
        return Ok(Flushed::default());
    }
    let work = async {
        let mut tx = pool.begin().await?;
        // One round trip: the table lock against erasures, then the transaction id.
        let xid: i64 = sqlx::raw_sql(LOCK_AND_XID_SQL)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let flushed = write_batch(&mut tx, items, users, default_goals, now).await?;
        Ok::<_, sqlx::Error>((tx, xid, flushed))
    };
    let (tx, xid, flushed) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(FlushError::NotWritten(e)),
        Err(_) => return Err(FlushError::TimedOut(timeout)),
    };
    let reason = match tokio::time::timeout(timeout, tx.commit()).await {
        Ok(Ok(())) => return Ok(flushed),
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

/// The statements of [`flush_batch`], inside the caller's transaction (the dead-letter
/// replay runs them too), which must already hold [`LOCK_SQL`]'s lock.
pub(super) async fn write_batch(
    tx: &mut sqlx::PgConnection,
    all_items: &[BatchItem],
    users: &[BatchUser],
    default_goals: Option<&[Arc<Goal>]>,
    now: DateTime<Utc>,
) -> Result<Flushed, sqlx::Error> {
    let mut outcome = FlushOutcome::default();

    // Users erased after their events happened: their items are left out of every
    // statement below (their ids are still recorded as done).
    let erased = erased_users(&mut *tx, users).await?;
    let kept: Vec<BatchItem>;
    let (items, kept_index): (&[BatchItem], Option<Vec<usize>>) = if erased.is_empty() {
        (all_items, None)
    } else {
        let index: Vec<usize> = (0..all_items.len())
            .filter(|&i| !erased.contains(&*all_items[i].user_id))
            .collect();
        kept = index.iter().map(|&i| all_items[i].clone()).collect();
        outcome.erased = (all_items.len() - kept.len()) as u64;
        for user in users.iter().filter(|u| erased.contains(&*u.user_id)) {
            tracing::debug!(
                user_id = %user.user_id,
                keys = user.keys,
                events = user.event_ids.len(),
                "dropping updates from events before the user's data erasure"
            );
        }
        (&kept[..], Some(index))
    };

    if let Some(goals) = default_goals.filter(|g| !g.is_empty())
        && !items.is_empty()
    {
        outcome.initialized = auto_initialize(&mut *tx, items, goals, now).await?;
    }

    // Key → index of its (first) item.
    let mut by_key: HashMap<(&str, &str), usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(items.len(), Default::default());
    let mut key_users = Vec::with_capacity(items.len());
    let mut goal_ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = (&*item.user_id, item.goal.id.as_str());
        if let Entry::Vacant(e) = by_key.entry(key) {
            e.insert(i);
            key_users.push(key.0);
            goal_ids.push(key.1);
        }
    }
    let rows: Vec<LockedRow> = sqlx::query_as(AssertSqlSafe(LOCK_ROWS_SQL.as_str()))
        .bind(&key_users)
        .bind(&goal_ids)
        .fetch_all(&mut *tx)
        .await?;

    let mut locked = vec![false; items.len()];
    for row in &rows {
        if let Some(&i) = by_key.get(&(row.user_id.as_str(), row.goal.goal_id.as_str())) {
            locked[i] = true;
        }
    }

    // Keys not returned: either no row, or a row another transaction holds. A user with a
    // held row is deferred whole.
    let (missing_user, missing_goal): (Vec<&str>, Vec<&str>) = key_users
        .iter()
        .zip(&goal_ids)
        .filter(|&(u, g)| !locked[by_key[&(*u, *g)]])
        .map(|(u, g)| (*u, *g))
        .unzip();
    let mut deferred_users: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    if !missing_user.is_empty() {
        let existing: Vec<(String, String)> = sqlx::query_as(EXISTING_KEYS_SQL)
            .bind(&missing_user)
            .bind(&missing_goal)
            .fetch_all(&mut *tx)
            .await?;
        for (u, g) in &existing {
            if let Some(&i) = by_key.get(&(u.as_str(), g.as_str())) {
                deferred_users.insert(&*items[i].user_id);
            }
        }
    }
    // Indices into the caller's items.
    let deferred: Vec<usize> = if deferred_users.is_empty() {
        Vec::new()
    } else {
        (0..items.len())
            .filter(|&i| deferred_users.contains(&*items[i].user_id))
            .map(|i| kept_index.as_ref().map_or(i, |k| k[i]))
            .collect()
    };
    outcome.deferred = deferred.len() as u64;
    outcome.not_assigned = missing_user
        .iter()
        .filter(|u| !deferred_users.contains(**u))
        .count() as u64;

    let mut keys_user = Vec::new();
    let mut keys_goal = Vec::new();
    let mut cols = StateColumns::default();
    for row in &rows {
        if deferred_users.contains(row.user_id.as_str()) {
            continue;
        }
        let Some(&i) = by_key.get(&(row.user_id.as_str(), row.goal.goal_id.as_str())) else {
            continue;
        };
        let item = &items[i];
        let old = row.goal.state();
        match progress::apply(&item.goal, &old, &item.delta, now) {
            Some(new) if new != old => {
                keys_user.push(row.user_id.as_str());
                keys_goal.push(row.goal.goal_id.as_str());
                cols.push(&new);
            }
            _ => outcome.unchanged += 1,
        }
    }

    if !keys_user.is_empty() {
        let query = sqlx::query(UPDATE_ROWS_SQL)
            .bind(&keys_user)
            .bind(&keys_goal);
        let done = cols.bind(query).bind(now).execute(&mut *tx).await?;
        outcome.updated = done.rows_affected();
    }

    let applied: Vec<&str> = users
        .iter()
        .filter(|u| !deferred_users.contains(&*u.user_id))
        .flat_map(|u| u.event_ids.iter().map(|id| &**id))
        .collect();
    outcome.ledger_conflicts = record_applied(&mut *tx, &applied).await?;
    Ok(Flushed { outcome, deferred })
}

/// The users of the batch whose tombstone is not older than their oldest event.
async fn erased_users(
    tx: &mut sqlx::PgConnection,
    users: &[BatchUser],
) -> Result<HashSet<String, foldhash::fast::RandomState>, sqlx::Error> {
    let ids: Vec<&str> = users.iter().map(|u| &*u.user_id).collect();
    let stones = super::erasure::tombstones(&mut *tx, &ids).await?;
    let mut erased = HashSet::default();
    if stones.is_empty() {
        return Ok(erased);
    }
    let stones: HashMap<String, DateTime<Utc>> = stones.into_iter().collect();
    for user in users {
        if let Some(&erased_at) = stones.get(&*user.user_id)
            && user.oldest_at.is_none_or(|t| t <= erased_at)
        {
            erased.insert(user.user_id.to_string());
        }
    }
    Ok(erased)
}

/// Records `ids` in `event_ledger`; returns how many it already held. An id holding a
/// NUL cannot be stored in a text column and is left out (validation refuses such ids at
/// the door; only a caller that bypasses it can bring one).
pub(super) async fn record_applied(
    tx: &mut sqlx::PgConnection,
    ids: &[&str],
) -> Result<u64, sqlx::Error> {
    let storable: Vec<&str>;
    let ids = if ids.iter().any(|id| id.contains('\0')) {
        storable = ids
            .iter()
            .copied()
            .filter(|id| !id.contains('\0'))
            .collect();
        &storable[..]
    } else {
        ids
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(LEDGER_INSERT_SQL)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(ids.len() as u64 - done.rows_affected().min(ids.len() as u64))
}

async fn auto_initialize(
    tx: &mut sqlx::PgConnection,
    items: &[BatchItem],
    goals: &[Arc<Goal>],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    // One namespace per user: the first seen.
    let mut users: Vec<(&str, &str)> = items.iter().map(|i| (&*i.user_id, &*i.namespace)).collect();
    users.sort_unstable_by(|a, b| a.0.cmp(b.0));
    users.dedup_by(|a, b| a.0 == b.0);
    let (user_ids, namespaces): (Vec<&str>, Vec<&str>) = users.into_iter().unzip();

    let mut sorted: Vec<&Arc<Goal>> = goals.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let goal_ids: Vec<&str> = sorted.iter().map(|g| g.id.as_str()).collect();
    let challenge_ids: Vec<&str> = sorted.iter().map(|g| g.challenge_id.as_str()).collect();
    let mut cols = StateColumns::default();
    for g in &sorted {
        cols.push(&progress::new_assignment(g, now));
    }
    let query = sqlx::query(AUTO_INITIALIZE_SQL)
        .bind(&user_ids)
        .bind(&namespaces)
        .bind(&goal_ids)
        .bind(&challenge_ids);
    let done = cols.bind(query).bind(now).execute(&mut *tx).await?;
    Ok(done.rows_affected())
}
