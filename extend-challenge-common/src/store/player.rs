//! The challenge service's reads and writes. Every read the player API makes is one
//! statement (one round trip); writes that must be atomic run in one transaction.
//!
//! Rows are returned raw; the service applies `progress::view` on top, so nothing here
//! knows about rotation or daily rollover.
//!
//! Every statement's goal-row columns come from [`GOAL_ROW_COLUMNS`] (built once, into
//! `LazyLock` statements), rows decode through [`GoalRowRef::decode`] and state arrays for
//! `unnest` through [`StateColumns`] (see `store::columns`).
//!
//! The player list ([`fold_goal_rows`], `GET /v1/challenges`: 500 rows in the benchmark
//! fixture) does not build [`GoalRow`]s: decoding through `#[derive(FromRow)]` looked every
//! column up by name (a hash per column per row) and allocated the goal id and status
//! strings of each row, only for the caller's view to hash the goal id again and drop both.
//! It decodes each row by position, borrowing its strings from the row buffer, checks the
//! column types once per result set, and hands the rows to the caller's fold as they stream
//! in.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row as _, Transaction};

use super::columns::{StateColumns, goal_row_list};
use super::implicit::{Defaults, MARKER_GOAL_ID, Marker};
use super::{GOAL_ROW_COLUMNS, GoalRow, GoalRowRef, check_goal_row_types};
use crate::config::Goal;
use crate::progress::GoalState;

pub use super::GoalRow as PlayerGoalRow;

/// Every row of the player ([`fold_goal_rows`]).
static PLAYER_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM user_goal_progress WHERE user_id = $1",
        goal_row_list("")
    )
});

/// The player's rows of one challenge plus the rows of some goals, and the player's marker
/// row (`store::implicit`; [`challenge_rows`]).
static CHALLENGE_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM user_goal_progress \
         WHERE user_id = $1 AND (challenge_id = $2 OR goal_id = ANY($3) OR goal_id = '')",
        goal_row_list("")
    )
});

/// The same rows as [`CHALLENGE_ROWS_SQL`], locked in key order ([`select_goals`]; the
/// marker sorts first, so selections of one player run one after the other).
static LOCK_CHALLENGE_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM user_goal_progress \
         WHERE user_id = $1 AND (challenge_id = $2 OR goal_id = ANY($3) OR goal_id = '') \
         ORDER BY goal_id FOR UPDATE",
        goal_row_list("")
    )
});

/// The player's rows of some goals ([`ClaimTx::rows`], [`goal_rows`]).
static GOALS_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM user_goal_progress WHERE user_id = $1 AND goal_id = ANY($2)",
        goal_row_list("")
    )
});

/// [`materialize`]: rows inserted with their whole state, existing ones left alone.
static MATERIALIZE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
           status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
         SELECT $1, t.goal_id, t.challenge_id, $2, t.progress, t.status, t.completed_at, \
           t.is_active, t.assigned_at, t.expires_at, t.baseline_value, t.last_event_at \
         FROM {} \
         ON CONFLICT (user_id, goal_id) DO NOTHING \
         RETURNING {}",
        NEW_ROWS_UNNEST.as_str(),
        goal_row_list("")
    )
});

/// The rows to insert as `t`: goal ids (`$3`), challenge ids (`$4`) and states (`$5`–`$13`),
/// bound by [`bind_new_rows`].
static NEW_ROWS_UNNEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "unnest($3::text[], $4::text[], {}) AS t(goal_id, challenge_id, {})",
        StateColumns::unnest_args(5),
        StateColumns::names("")
    )
});

/// [`initialize`]: inserts the player's marker row (`store::implicit`; `$3` the time, `$4`
/// the covered goals) unless they have one, and returns every row of the player, each with
/// whether this statement inserted it. The outer `SELECT` sees the table as it was before
/// the insert, so existing rows and the new marker come back exactly once each.
static INITIALIZE_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns = goal_row_list("");
    format!(
        "WITH ins AS ( \
           INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, \
             is_active, assigned_at, req_state, created_at, updated_at) \
           VALUES ($1, '', '', $2, false, $3, $4, $3, $3) \
           ON CONFLICT (user_id, goal_id) DO NOTHING \
           RETURNING {columns} \
         ) \
         SELECT {columns}, false AS inserted FROM user_goal_progress WHERE user_id = $1 \
         UNION ALL \
         SELECT {columns}, true AS inserted FROM ins"
    )
});

/// [`set_active`]: one goal's upsert.
static SET_ACTIVE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
           status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (user_id, goal_id) DO UPDATE SET \
           is_active = EXCLUDED.is_active, \
           assigned_at = CASE WHEN EXCLUDED.is_active AND NOT $13 THEN EXCLUDED.assigned_at \
                              ELSE user_goal_progress.assigned_at END, \
           updated_at = NOW() \
         RETURNING {}",
        goal_row_list("")
    )
});

/// [`activate`]: inserts or reactivates the goals (`assigned_at = $14`, except for the
/// goals in `$15`, whose per-player window stays anchored).
static ACTIVATE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
           status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
         SELECT $1, t.goal_id, t.challenge_id, $2, t.progress, t.status, t.completed_at, true, $14, \
           t.expires_at, t.baseline_value, t.last_event_at \
         FROM {} \
         ON CONFLICT (user_id, goal_id) DO UPDATE SET \
           is_active = true, \
           assigned_at = CASE WHEN user_goal_progress.goal_id = ANY($15::text[]) \
                              THEN user_goal_progress.assigned_at ELSE EXCLUDED.assigned_at END, \
           updated_at = NOW() \
         RETURNING {}",
        NEW_ROWS_UNNEST.as_str(),
        goal_row_list("")
    )
});

/// [`persist_rollover`]: the rolled states (`$3`–`$11`) where the rows still hold the states
/// read (`$12`–`$20`, as `o_…`).
static PERSIST_ROLLOVER_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE user_goal_progress AS t SET progress = u.progress, status = u.status, \
           completed_at = u.completed_at, claimed_at = u.claimed_at, \
           baseline_value = u.baseline_value, expires_at = u.expires_at, \
           req_state = u.req_state, updated_at = $21 \
         FROM unnest($2::text[], {}, {}, $22::text[]) AS u(goal_id, {}, {}, req_state) \
         WHERE t.user_id = $1 AND t.goal_id = u.goal_id \
           AND t.progress = u.o_progress AND t.status = u.o_status \
           AND t.completed_at IS NOT DISTINCT FROM u.o_completed_at \
           AND t.claimed_at IS NOT DISTINCT FROM u.o_claimed_at \
           AND t.baseline_value IS NOT DISTINCT FROM u.o_baseline_value \
           AND t.expires_at IS NOT DISTINCT FROM u.o_expires_at \
           AND t.last_event_at IS NOT DISTINCT FROM u.o_last_event_at",
        StateColumns::unnest_args(3),
        StateColumns::unnest_args(12),
        StateColumns::names(""),
        StateColumns::names("o_"),
    )
});

/// A statement of this module (built once from constants, never from input).
fn sql(statement: &'static LazyLock<String>) -> &'static str {
    statement.as_str()
}

/// Every row of `user_id`, folded as it streams in: `init` makes the accumulator, `fold`
/// takes each row, borrowed from the row buffer (rows of goals no longer configured
/// included: the caller skips them). One statement on one connection.
///
/// `init` runs only once a connection is held, so requests queued for the pool under
/// overload hold no accumulator (the service's view has a slot per configured goal): at
/// most pool-size accumulators are alive at once.
///
/// Rows decode by position without sqlx's per-value type check; the column types are
/// checked once, on the first row (every row of a result set has the same column types),
/// so a schema that no longer matches is a decode error, never a bad read.
pub async fn fold_goal_rows<A>(
    pool: &PgPool,
    user_id: &str,
    init: impl FnOnce() -> A,
    mut fold: impl FnMut(&mut A, GoalRowRef<'_>),
) -> Result<A, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut acc = init();
    let mut rows = sqlx::query(sql(&PLAYER_ROWS_SQL))
        .bind(user_id)
        .fetch(&mut *conn);
    let mut checked = false;
    while let Some(row) = rows.try_next().await? {
        if !checked {
            check_list_columns(&row)?;
            checked = true;
        }
        fold(&mut acc, GoalRowRef::decode(&row, 0)?);
    }
    Ok(acc)
}

/// [`fold_goal_rows`]' once-per-result-set check: exactly [`GOAL_ROW_COLUMNS`], of their
/// types.
fn check_list_columns(row: &PgRow) -> Result<(), sqlx::Error> {
    if row.len() != GOAL_ROW_COLUMNS.len() {
        return Err(sqlx::Error::ColumnIndexOutOfBounds {
            index: GOAL_ROW_COLUMNS.len() - 1,
            len: row.len(),
        });
    }
    check_goal_row_types(row, 0)
}

/// A row to insert: the goal, its challenge and its initial state (from
/// `progress::new_assignment`).
#[derive(Debug, Clone)]
pub struct NewGoalRow {
    pub goal_id: String,
    pub challenge_id: String,
    pub state: GoalState,
    /// A per-player window (CONTRACT §8) is anchored at the goal's first assignment: a
    /// later (re)activation keeps `assigned_at`, so deactivating and reactivating never
    /// restarts the window (which would let a player earn its reward again).
    pub keeps_window: bool,
}

impl NewGoalRow {
    /// A new assignment of `goal` at `now`.
    pub fn assign(goal: &Goal, now: DateTime<Utc>) -> Self {
        NewGoalRow {
            goal_id: goal.id.clone(),
            challenge_id: goal.challenge_id.clone(),
            state: crate::progress::new_assignment(goal, now),
            keeps_window: goal
                .rotation
                .is_some_and(|r| matches!(r.schedule, crate::config::Schedule::PerUser { .. })),
        }
    }
}

/// The player's rows of one challenge, plus the rows of `extra_goal_ids` (prerequisites
/// that live in other challenges), in one statement.
pub async fn challenge_rows(
    pool: &PgPool,
    user_id: &str,
    challenge_id: &str,
    extra_goal_ids: &[String],
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    sqlx::query_as(sql(&CHALLENGE_ROWS_SQL))
        .bind(user_id)
        .bind(challenge_id)
        .bind(extra_goal_ids)
        .fetch_all(pool)
        .await
}

/// What [`initialize`] found and did.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// Every row of the player after the call: their marker (`store::implicit`) and their
    /// goals' own rows.
    pub rows: Vec<PlayerGoalRow>,
    /// How many default goals this call assigned (`newAssignments`): those the new marker
    /// covers that had no row, and those added to the config since the player's marker,
    /// which get rows of their own.
    pub assigned: usize,
}

/// A row of [`INITIALIZE_SQL`]: the goal row, then whether the statement inserted it.
struct InitRow {
    row: PlayerGoalRow,
    inserted: bool,
}

impl InitRow {
    fn decode(row: PgRow) -> Result<Self, sqlx::Error> {
        Ok(InitRow {
            row: GoalRow::from_row_at(&row, 0)?,
            inserted: row.try_get(GOAL_ROW_COLUMNS.len())?,
        })
    }
}

/// [`INITIALIZE_SQL`] with its arguments: the marker `user_id` gets, covering
/// `marker_text`, if they have none. [`initialize`] and [`warm`] run the same statement.
fn initialize_query<'q>(
    user_id: &'q str,
    namespace: &'q str,
    now: DateTime<Utc>,
    marker_text: &'q str,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql(&INITIALIZE_SQL))
        .bind(user_id)
        .bind(namespace)
        .bind(now)
        .bind(marker_text)
}

/// Assigns the player every default goal they lack, in one statement in the usual case:
/// a player without a marker gets one, covering `defaults` (their default goals without a
/// row become implicit, assigned at `now`); a player whose marker predates default goals
/// added to the config since gets rows for those (a second statement). Existing rows are
/// left alone. Returns every row of the player.
pub async fn initialize(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    defaults: &Defaults,
    now: DateTime<Utc>,
) -> Result<Initialized, sqlx::Error> {
    let found: Vec<InitRow> = initialize_query(user_id, namespace, now, defaults.marker_text())
        .try_map(InitRow::decode)
        .fetch_all(pool)
        .await?;
    let marked_now = found.iter().any(|r| r.inserted);
    let mut rows: Vec<PlayerGoalRow> = found.into_iter().map(|r| r.row).collect();
    // No marker came back: a concurrent call inserted it after this statement's snapshot
    // (this insert then did nothing). Read again.
    if !rows.iter().any(|r| r.goal_id == MARKER_GOAL_ID) {
        rows = all_rows(pool, user_id).await?;
    }
    let has_row = |rows: &[PlayerGoalRow], id: &str| rows.iter().any(|r| r.goal_id == id);
    let mut assigned = if marked_now {
        defaults
            .goals()
            .iter()
            .filter(|g| !has_row(&rows, &g.id))
            .count()
    } else {
        0
    };
    let marker = rows.iter().find_map(Marker::from_row);
    let lacking: Vec<NewGoalRow> = defaults
        .goals()
        .iter()
        .filter(|g| !marker.as_ref().is_some_and(|m| defaults.covers(&m.text, g)))
        .filter(|g| !has_row(&rows, &g.id))
        .map(|g| NewGoalRow::assign(g, now))
        .collect();
    if !lacking.is_empty() {
        let new = materialize(pool, user_id, namespace, &lacking).await?;
        assigned += new.len();
        if new.len() == lacking.len() {
            rows.extend(new);
        } else {
            // Some were inserted concurrently: read what is there now.
            rows = all_rows(pool, user_id).await?;
        }
    }
    Ok(Initialized { rows, assigned })
}

/// How many times [`warm`] runs each statement: Postgres plans a prepared statement afresh
/// for its first five executions on a connection (custom plans), then builds the generic
/// plan and keeps it when it costs no more (`plan_cache_mode = auto`). Both statements are
/// primary-key reads and a one-row insert, so the generic plan wins, and from the sixth
/// execution on a call skips the planner. Planning was a fifth of Postgres's time in a
/// burst of first `initialize` calls (BENCHMARKS.md, "Issue 22 part 0, fourth pass").
pub const WARM_RUNS: usize = 6;

/// Runs the player API's first statements ([`initialize`]'s and the list's) [`WARM_RUNS`]
/// times on `conn`, for no player (the empty id, which no token carries), in a transaction
/// rolled back: the connection keeps them prepared, with their generic plans chosen, and
/// its Postgres backend loads the catalog entries of the table, its indexes and the
/// statements' types, work the first real calls on a new connection would otherwise do
/// ([`super::warm_up`]). Leaves nothing behind.
pub async fn warm(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await?;
    for _ in 0..WARM_RUNS {
        initialize_query("", "", Utc::now(), "")
            .fetch_all(&mut *tx)
            .await?;
        all_rows(&mut *tx, "").await?;
    }
    tx.rollback().await
}

/// Every row of the player, the marker included.
async fn all_rows<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    user_id: &str,
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    sqlx::query_as(sql(&PLAYER_ROWS_SQL))
        .bind(user_id)
        .fetch_all(executor)
        .await
}

/// The player's rows of `goal_ids` (put [`MARKER_GOAL_ID`] among them for the marker).
pub async fn goal_rows(
    pool: &PgPool,
    user_id: &str,
    goal_ids: &[&str],
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    sqlx::query_as(sql(&GOALS_ROWS_SQL))
        .bind(user_id)
        .bind(goal_ids)
        .fetch_all(pool)
        .await
}

/// Inserts `rows` with their whole state (the first rows of implicit goals, or goals
/// assigned now); a row that exists is left alone. Returns the rows inserted.
pub async fn materialize<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    user_id: &str,
    namespace: &str,
    rows: &[NewGoalRow],
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let cols = NewRowColumns::of(rows);
    let query = sqlx::query(sql(&MATERIALIZE_SQL))
        .bind(user_id)
        .bind(namespace);
    cols.bind(query)
        .try_map(|row: PgRow| GoalRow::from_row_at(&row, 0))
        .fetch_all(executor)
        .await
}

/// One row's rotation rollover to store: its goal, the state read, the state to write
/// (`progress::view` of the state read).
#[derive(Debug, Clone)]
pub struct Rollover {
    pub goal_id: String,
    pub read: GoalState,
    pub rolled: GoalState,
}

/// Stores rollovers computed from rows read earlier (initialize persists what it shows, so
/// a row's `expires_at` and carried-over state are current and the retention cleanup never
/// takes a row whose period is still running). Compare-and-set: a row that changed since it
/// was read (an event, a claim) is left alone — whoever changed it rolled it over itself.
/// Writes only the columns a rollover changes. Returns the rows written.
pub async fn persist_rollover(
    pool: &PgPool,
    user_id: &str,
    rows: &[Rollover],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut rows: Vec<&Rollover> = rows.iter().collect();
    // Key order, like every other multi-row writer.
    rows.sort_by(|a, b| a.goal_id.cmp(&b.goal_id));
    let goal_id: Vec<&str> = rows.iter().map(|r| r.goal_id.as_str()).collect();
    let mut rolled = StateColumns::default();
    let mut read = StateColumns::default();
    let mut req_state: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for r in &rows {
        rolled.push(&r.rolled);
        read.push(&r.read);
        req_state.push(r.rolled.parts.as_deref().map(super::columns::encode_parts));
    }
    let query = sqlx::query(sql(&PERSIST_ROLLOVER_SQL))
        .bind(user_id)
        .bind(&goal_id);
    let done = read
        .bind(rolled.bind(query))
        .bind(now)
        .bind(&req_state)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Activates or deactivates one goal, inserting `new` when the player has no row yet.
/// Activation stamps `assigned_at = now`; deactivation keeps it. Returns the row.
pub async fn set_active(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    new: &NewGoalRow,
    is_active: bool,
    now: DateTime<Utc>,
) -> Result<PlayerGoalRow, sqlx::Error> {
    let s = &new.state;
    let assigned_at = if is_active { Some(now) } else { None };
    sqlx::query_as(sql(&SET_ACTIVE_SQL))
        .bind(user_id)
        .bind(&new.goal_id)
        .bind(&new.challenge_id)
        .bind(namespace)
        .bind(s.progress)
        .bind(s.status.as_str())
        .bind(s.completed_at)
        .bind(is_active)
        .bind(assigned_at)
        .bind(s.expires_at)
        .bind(s.baseline_value)
        .bind(s.last_event_at)
        .bind(new.keeps_window)
        .fetch_one(pool)
        .await
}

/// What a goal selection changes, decided from the rows [`select_goals`] locked.
#[derive(Debug, Clone, Default)]
pub struct SelectionPlan {
    /// Implicit goals (`store::implicit`) the selection changes: their rows are inserted
    /// first, as they read, so the changes below apply to them as to any row.
    pub materialize: Vec<NewGoalRow>,
    /// Goals to deactivate (they keep their progress).
    pub deactivate: Vec<String>,
    /// Goals to activate; `state` is used only when the row does not exist yet.
    pub activate: Vec<NewGoalRow>,
}

/// One goal selection, atomically: lock the player's rows of the challenge (and of
/// `extra_goal_ids`) in key order, let `plan` decide from them, deactivate, activate
/// (`assigned_at = now`), commit. Returns the plan and the activated rows as stored.
pub async fn select_goals<E, F>(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    challenge_id: &str,
    extra_goal_ids: &[String],
    now: DateTime<Utc>,
    plan: F,
) -> Result<(SelectionPlan, Vec<PlayerGoalRow>), E>
where
    E: From<sqlx::Error>,
    F: FnOnce(&[PlayerGoalRow]) -> Result<SelectionPlan, E>,
{
    let mut tx = pool.begin().await?;
    // Key order, like the event handler, so the two never deadlock.
    let current: Vec<PlayerGoalRow> = sqlx::query_as(sql(&LOCK_CHALLENGE_ROWS_SQL))
        .bind(user_id)
        .bind(challenge_id)
        .bind(extra_goal_ids)
        .fetch_all(&mut *tx)
        .await?;
    let plan = plan(&current)?;
    materialize(&mut *tx, user_id, namespace, &plan.materialize).await?;
    if !plan.deactivate.is_empty() {
        sqlx::query(
            "UPDATE user_goal_progress SET is_active = false, updated_at = NOW() \
             WHERE user_id = $1 AND goal_id = ANY($2)",
        )
        .bind(user_id)
        .bind(&plan.deactivate)
        .execute(&mut *tx)
        .await?;
    }
    let activated = if plan.activate.is_empty() {
        Vec::new()
    } else {
        activate(&mut tx, user_id, namespace, &plan.activate, now).await?
    };
    tx.commit().await?;
    Ok((plan, activated))
}

async fn activate(
    tx: &mut Transaction<'static, Postgres>,
    user_id: &str,
    namespace: &str,
    rows: &[NewGoalRow],
    now: DateTime<Utc>,
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    let cols = NewRowColumns::of(rows);
    let anchored: Vec<&str> = rows
        .iter()
        .filter(|r| r.keeps_window)
        .map(|r| r.goal_id.as_str())
        .collect();
    let query = sqlx::query(sql(&ACTIVATE_SQL))
        .bind(user_id)
        .bind(namespace);
    cols.bind(query)
        .bind(now)
        .bind(&anchored)
        .try_map(|row: PgRow| GoalRow::from_row_at(&row, 0))
        .fetch_all(&mut **tx)
        .await
}

/// An open claim transaction holding the lock on one row (opened by
/// [`super::grants::lock_for_claim`]). Dropping it rolls back.
pub struct ClaimTx {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) user_id: String,
    resets: i32,
}

impl ClaimTx {
    pub(super) fn new(tx: Transaction<'static, Postgres>, user_id: &str) -> Self {
        ClaimTx {
            tx,
            user_id: user_id.to_string(),
            resets: 0,
        }
    }

    pub(super) fn with_resets(mut self, resets: i32) -> Self {
        self.resets = resets;
        self
    }

    /// How many times an admin reset the locked row (0 without a row): a claim after a
    /// reset pays under a period key of its own.
    pub fn resets(&self) -> i32 {
        self.resets
    }

    /// The player's rows for `goal_ids` (prerequisites), unlocked.
    pub async fn rows(&mut self, goal_ids: &[String]) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
        sqlx::query_as(sql(&GOALS_ROWS_SQL))
            .bind(&self.user_id)
            .bind(goal_ids)
            .fetch_all(&mut *self.tx)
            .await
    }

    /// Marks the locked row claimed at `at` and commits.
    pub async fn mark_claimed_and_commit(
        mut self,
        goal_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE user_goal_progress \
             SET status = 'claimed', claimed_at = $3, completed_at = COALESCE(completed_at, $3), \
                 times_claimed = times_claimed + 1, updated_at = NOW() \
             WHERE user_id = $1 AND goal_id = $2",
        )
        .bind(&self.user_id)
        .bind(goal_id)
        .bind(at)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await
    }

    /// Ends the transaction without changes.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

/// Rows to insert as `unnest` arrays ([`NEW_ROWS_UNNEST`]).
struct NewRowColumns<'a> {
    goal_id: Vec<&'a str>,
    challenge_id: Vec<&'a str>,
    state: StateColumns,
}

impl<'a> NewRowColumns<'a> {
    /// In goal id order: inserts then take row locks in the same order as the event
    /// handler's batches (user, goal), so concurrent first assignments cannot deadlock.
    fn of(rows: &'a [NewGoalRow]) -> Self {
        let mut rows: Vec<&NewGoalRow> = rows.iter().collect();
        rows.sort_by(|a, b| a.goal_id.cmp(&b.goal_id));
        let mut state = StateColumns::default();
        for r in &rows {
            state.push(&r.state);
        }
        NewRowColumns {
            goal_id: rows.iter().map(|r| r.goal_id.as_str()).collect(),
            challenge_id: rows.iter().map(|r| r.challenge_id.as_str()).collect(),
            state,
        }
    }

    /// Binds `$3` onwards (`$1` and `$2` are the user and the namespace).
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        self.state
            .bind(q.bind(&self.goal_id).bind(&self.challenge_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The once-per-result-set check accepts the table's real columns and refuses a result
    /// whose types drifted (an `int8` progress would be misread without it).
    #[sqlx::test(migrator = "crate::store::MIGRATOR")]
    async fn column_types_are_checked_once_per_result_set(pool: PgPool) {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} \
             FROM (VALUES ('g', 1, 'in_progress', now(), NULL::timestamptz, true, now(), \
             NULL::timestamptz, NULL::int4, now(), 0, NULL::text)) AS v(goal_id, progress, \
             status, completed_at, claimed_at, is_active, assigned_at, expires_at, \
             baseline_value, last_event_at, times_claimed, req_state)",
            goal_row_list("")
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        check_list_columns(&row).expect("the table's types");
        assert_eq!(GoalRowRef::decode(&row, 0).unwrap().state().progress, 1);
        assert_eq!(GoalRow::from_row_at(&row, 0).unwrap().progress, 1);

        let drifted = sqlx::query(
            "SELECT 'g'::text, 1::int8, 'x'::text, now(), now(), true, now(), now(), 1, now(), 0, \
             NULL::text",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let err = check_list_columns(&drifted).unwrap_err();
        assert!(err.to_string().contains("INT8"), "{err}");
        let err = GoalRow::from_row_at(&drifted, 0).unwrap_err();
        assert!(err.to_string().contains("INT8"), "{err}");
        let short = sqlx::query("SELECT 'g'::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(check_list_columns(&short).is_err());
        assert!(GoalRow::from_row_at(&short, 0).is_err());
    }
}
