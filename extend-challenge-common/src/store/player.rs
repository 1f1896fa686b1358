//! The challenge service's reads and writes. Every read the player API makes is one
//! statement (one round trip); writes that must be atomic run in one transaction.
//!
//! Rows are returned raw; the service applies `progress::view` on top, so nothing here
//! knows about rotation or daily rollover.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::progress::GoalState;

pub use super::GoalRow as PlayerGoalRow;

/// A row to insert: the goal, its challenge and its initial state (from
/// `progress::new_assignment`).
#[derive(Debug, Clone)]
pub struct NewGoalRow {
    pub goal_id: String,
    pub challenge_id: String,
    pub state: GoalState,
}

/// The player's rows of one challenge, plus the rows of `extra_goal_ids` (prerequisites
/// that live in other challenges), in one statement.
pub async fn challenge_rows(
    pool: &PgPool,
    user_id: &str,
    challenge_id: &str,
    extra_goal_ids: &[String],
) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
         expires_at, baseline_value, last_event_at \
         FROM user_goal_progress \
         WHERE user_id = $1 AND (challenge_id = $2 OR goal_id = ANY($3))",
    )
    .bind(user_id)
    .bind(challenge_id)
    .bind(extra_goal_ids)
    .fetch_all(pool)
    .await
}

/// What [`initialize`] found and did.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// Every active row of the player after the insert, including the new ones.
    pub active: Vec<PlayerGoalRow>,
    /// How many rows were inserted.
    pub inserted: usize,
}

#[derive(sqlx::FromRow)]
struct InitRow {
    #[sqlx(flatten)]
    row: PlayerGoalRow,
    inserted: bool,
}

/// Inserts the rows the player lacks (existing rows are left alone) and returns every
/// active row, in one statement. The outer `SELECT` sees the table as it was before the
/// insert, so existing and new rows come back exactly once each. (Only when a concurrent
/// call inserted some of the same rows is a second read needed.)
pub async fn initialize(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    rows: &[NewGoalRow],
) -> Result<Initialized, sqlx::Error> {
    let cols = Columns::of(rows);
    let found: Vec<InitRow> = sqlx::query_as(
        "WITH ins AS ( \
           INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
           SELECT $1, t.goal_id, t.challenge_id, $2, t.progress, t.status, t.completed_at, \
             t.is_active, t.assigned_at, t.expires_at, t.baseline_value, t.last_event_at \
           FROM unnest($3::text[], $4::text[], $5::int[], $6::text[], $7::timestamptz[], \
             $8::bool[], $9::timestamptz[], $10::timestamptz[], $11::int[], $12::timestamptz[]) \
             AS t(goal_id, challenge_id, progress, status, completed_at, is_active, assigned_at, \
             expires_at, baseline_value, last_event_at) \
           ON CONFLICT (user_id, goal_id) DO NOTHING \
           RETURNING goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
             expires_at, baseline_value, last_event_at \
         ) \
         SELECT goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
           expires_at, baseline_value, last_event_at, false AS inserted \
         FROM user_goal_progress WHERE user_id = $1 AND (is_active OR goal_id = ANY($3)) \
         UNION ALL \
         SELECT goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
           expires_at, baseline_value, last_event_at, true AS inserted FROM ins",
    )
    .bind(user_id)
    .bind(namespace)
    .bind(cols.goal_id)
    .bind(cols.challenge_id)
    .bind(cols.progress)
    .bind(cols.status)
    .bind(cols.completed_at)
    .bind(cols.is_active)
    .bind(cols.assigned_at)
    .bind(cols.expires_at)
    .bind(cols.baseline_value)
    .bind(cols.last_event_at)
    .fetch_all(pool)
    .await?;
    let inserted = found.iter().filter(|r| r.inserted).count();
    // Each row to insert is either new or was already there. One that is neither was
    // inserted by a concurrent call after this statement's snapshot: read again.
    let raced = rows
        .iter()
        .any(|n| !found.iter().any(|f| f.row.goal_id == n.goal_id));
    let active = if raced {
        sqlx::query_as(
            "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, \
             assigned_at, expires_at, baseline_value, last_event_at \
             FROM user_goal_progress WHERE user_id = $1 AND is_active",
        )
        .bind(user_id)
        .fetch_all(pool)
        .await?
    } else {
        found
            .into_iter()
            .filter(|r| r.row.is_active)
            .map(|r| r.row)
            .collect()
    };
    Ok(Initialized { active, inserted })
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
    let new = |f: fn(&GoalState) -> Option<DateTime<Utc>>| -> Vec<Option<DateTime<Utc>>> {
        rows.iter().map(|r| f(&r.rolled)).collect()
    };
    let old = |f: fn(&GoalState) -> Option<DateTime<Utc>>| -> Vec<Option<DateTime<Utc>>> {
        rows.iter().map(|r| f(&r.read)).collect()
    };
    let done = sqlx::query(
        "UPDATE user_goal_progress AS t SET progress = u.progress, status = u.status,            completed_at = u.completed_at, claimed_at = u.claimed_at,            baseline_value = u.baseline_value, expires_at = u.expires_at, updated_at = $16          FROM unnest($2::text[], $3::int4[], $4::text[], $5::timestamptz[], $6::timestamptz[],            $7::int4[], $8::timestamptz[], $9::int4[], $10::text[], $11::timestamptz[],            $12::timestamptz[], $13::int4[], $14::timestamptz[], $15::timestamptz[])            AS u(goal_id, progress, status, completed_at, claimed_at, baseline_value, expires_at,            o_progress, o_status, o_completed_at, o_claimed_at, o_baseline_value, o_expires_at,            o_last_event_at)          WHERE t.user_id = $1 AND t.goal_id = u.goal_id            AND t.progress = u.o_progress AND t.status = u.o_status            AND t.completed_at IS NOT DISTINCT FROM u.o_completed_at            AND t.claimed_at IS NOT DISTINCT FROM u.o_claimed_at            AND t.baseline_value IS NOT DISTINCT FROM u.o_baseline_value            AND t.expires_at IS NOT DISTINCT FROM u.o_expires_at            AND t.last_event_at IS NOT DISTINCT FROM u.o_last_event_at",
    )
    .bind(user_id)
    .bind(&goal_id)
    .bind(rows.iter().map(|r| r.rolled.progress).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.rolled.status.as_str()).collect::<Vec<_>>())
    .bind(new(|s| s.completed_at))
    .bind(new(|s| s.claimed_at))
    .bind(rows.iter().map(|r| r.rolled.baseline_value).collect::<Vec<_>>())
    .bind(new(|s| s.expires_at))
    .bind(rows.iter().map(|r| r.read.progress).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.read.status.as_str()).collect::<Vec<_>>())
    .bind(old(|s| s.completed_at))
    .bind(old(|s| s.claimed_at))
    .bind(rows.iter().map(|r| r.read.baseline_value).collect::<Vec<_>>())
    .bind(old(|s| s.expires_at))
    .bind(old(|s| s.last_event_at))
    .bind(now)
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
    sqlx::query_as(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
           status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (user_id, goal_id) DO UPDATE SET \
           is_active = EXCLUDED.is_active, \
           assigned_at = CASE WHEN EXCLUDED.is_active THEN EXCLUDED.assigned_at \
                              ELSE user_goal_progress.assigned_at END, \
           updated_at = NOW() \
         RETURNING goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
           expires_at, baseline_value, last_event_at",
    )
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
    .fetch_one(pool)
    .await
}

/// What a goal selection changes, decided from the rows [`select_goals`] locked.
#[derive(Debug, Clone, Default)]
pub struct SelectionPlan {
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
    let current: Vec<PlayerGoalRow> = sqlx::query_as(
        "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
         expires_at, baseline_value, last_event_at \
         FROM user_goal_progress \
         WHERE user_id = $1 AND (challenge_id = $2 OR goal_id = ANY($3)) \
         ORDER BY goal_id FOR UPDATE",
    )
    .bind(user_id)
    .bind(challenge_id)
    .bind(extra_goal_ids)
    .fetch_all(&mut *tx)
    .await?;
    let plan = plan(&current)?;
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
    let cols = Columns::of(rows);
    sqlx::query_as(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
           status, completed_at, is_active, assigned_at, expires_at, baseline_value, last_event_at) \
         SELECT $1, t.goal_id, t.challenge_id, $2, t.progress, t.status, t.completed_at, true, $11, \
           t.expires_at, t.baseline_value, t.last_event_at \
         FROM unnest($3::text[], $4::text[], $5::int[], $6::text[], $7::timestamptz[], \
           $8::timestamptz[], $9::int[], $10::timestamptz[]) \
           AS t(goal_id, challenge_id, progress, status, completed_at, expires_at, \
           baseline_value, last_event_at) \
         ON CONFLICT (user_id, goal_id) DO UPDATE SET \
           is_active = true, assigned_at = EXCLUDED.assigned_at, updated_at = NOW() \
         RETURNING goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
           expires_at, baseline_value, last_event_at",
    )
    .bind(user_id)
    .bind(namespace)
    .bind(cols.goal_id)
    .bind(cols.challenge_id)
    .bind(cols.progress)
    .bind(cols.status)
    .bind(cols.completed_at)
    .bind(cols.expires_at)
    .bind(cols.baseline_value)
    .bind(cols.last_event_at)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
}

/// An open claim transaction holding the lock on one row (opened by
/// [`super::grants::lock_for_claim`]). Dropping it rolls back.
pub struct ClaimTx {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) user_id: String,
}

impl ClaimTx {
    pub(super) fn new(tx: Transaction<'static, Postgres>, user_id: &str) -> Self {
        ClaimTx {
            tx,
            user_id: user_id.to_string(),
        }
    }

    /// The player's rows for `goal_ids` (prerequisites), unlocked.
    pub async fn rows(&mut self, goal_ids: &[String]) -> Result<Vec<PlayerGoalRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, assigned_at, \
             expires_at, baseline_value, last_event_at \
             FROM user_goal_progress WHERE user_id = $1 AND goal_id = ANY($2)",
        )
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
                 updated_at = NOW() \
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

/// Column arrays for `unnest` inserts.
struct Columns {
    goal_id: Vec<String>,
    challenge_id: Vec<String>,
    progress: Vec<i32>,
    status: Vec<&'static str>,
    completed_at: Vec<Option<DateTime<Utc>>>,
    is_active: Vec<bool>,
    assigned_at: Vec<Option<DateTime<Utc>>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    baseline_value: Vec<Option<i32>>,
    last_event_at: Vec<Option<DateTime<Utc>>>,
}

impl Columns {
    /// In goal id order: inserts then take row locks in the same order as the event
    /// handler's batches (user, goal), so concurrent first assignments cannot deadlock.
    fn of(rows: &[NewGoalRow]) -> Self {
        let mut rows: Vec<&NewGoalRow> = rows.iter().collect();
        rows.sort_by(|a, b| a.goal_id.cmp(&b.goal_id));
        Columns {
            goal_id: rows.iter().map(|r| r.goal_id.clone()).collect(),
            challenge_id: rows.iter().map(|r| r.challenge_id.clone()).collect(),
            progress: rows.iter().map(|r| r.state.progress).collect(),
            status: rows.iter().map(|r| r.state.status.as_str()).collect(),
            completed_at: rows.iter().map(|r| r.state.completed_at).collect(),
            is_active: rows.iter().map(|r| r.state.is_active).collect(),
            assigned_at: rows.iter().map(|r| r.state.assigned_at).collect(),
            expires_at: rows.iter().map(|r| r.state.expires_at).collect(),
            baseline_value: rows.iter().map(|r| r.state.baseline_value).collect(),
            last_event_at: rows.iter().map(|r| r.state.last_event_at).collect(),
        }
    }
}
