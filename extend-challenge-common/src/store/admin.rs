//! The player QA tools of the admin API (CONTRACT §9): set a goal's progress, reset a goal,
//! unenroll a player. Each runs in one transaction holding the player's row lock and
//! returns the row before and after, for the audit line.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row as _};

use crate::config::Goal;

/// A goal row as the audit line and the answer show it (`None`: no row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowState {
    pub progress: i32,
    pub status: String,
    pub is_active: bool,
    pub times_claimed: i32,
    pub resets: i32,
}

/// One goal's row before and after an admin write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowChange {
    pub before: Option<RowState>,
    pub after: Option<RowState>,
}

/// The columns of [`RowState`], in its order.
macro_rules! row_state {
    () => {
        "progress, status, is_active, times_claimed, resets"
    };
}

/// Locks and reads one row's [`RowState`].
const LOCK_ROW_SQL: &str = concat!(
    "SELECT ",
    row_state!(),
    " FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2 FOR UPDATE"
);

fn row_state(r: &sqlx::postgres::PgRow) -> Result<RowState, sqlx::Error> {
    Ok(RowState {
        progress: r.try_get(0)?,
        status: r.try_get(1)?,
        is_active: r.try_get(2)?,
        times_claimed: r.try_get(3)?,
        resets: r.try_get(4)?,
    })
}

/// Locks the player's row of `goal_id` (in `tx`) and reads its state; `None`: no row.
async fn lock_row(
    tx: &mut sqlx::PgConnection,
    user_id: &str,
    goal_id: &str,
) -> Result<Option<RowState>, sqlx::Error> {
    sqlx::query(LOCK_ROW_SQL)
        .bind(user_id)
        .bind(goal_id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(row_state)
        .transpose()
}

/// The status a row with `progress` gets from an admin: a claimed row stays claimed;
/// otherwise completed once the target is met, in progress above 0, not started at 0.
fn status_for(before: Option<&str>, progress: i32, target: i32) -> &'static str {
    match before {
        Some("claimed") => "claimed",
        _ if progress >= target => "completed",
        _ if progress > 0 => "in_progress",
        _ => "not_started",
    }
}

/// Sets `goal`'s progress for `user_id` to `progress` (a row is created, active, when the
/// player has none). The status follows ([`status_for`]); a goal so completed that is
/// `autoClaim` (or wakes one) gets its auto-claim queued, as an event would.
pub async fn set_progress(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    goal: &Goal,
    progress: i32,
    now: DateTime<Utc>,
) -> Result<RowChange, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let before = lock_row(&mut tx, user_id, &goal.id).await?;
    let status = status_for(
        before.as_ref().map(|b| b.status.as_str()),
        progress,
        goal.requirement.target_value,
    );
    let after = sqlx::query(concat!(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at, is_active, assigned_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 IN ('completed', 'claimed') THEN $7 END, \
             true, $7, $7, $7) \
         ON CONFLICT (user_id, goal_id) DO UPDATE SET progress = $5, status = $6, \
             completed_at = CASE WHEN $6 IN ('completed', 'claimed') \
                 THEN coalesce(user_goal_progress.completed_at, $7) END, \
             updated_at = $7 \
         RETURNING ",
        row_state!()
    ))
    .bind(user_id)
    .bind(&goal.id)
    .bind(&goal.challenge_id)
    .bind(namespace)
    .bind(progress)
    .bind(status)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let after = row_state(&after)?;
    let newly_completed =
        after.status == "completed" && before.as_ref().is_none_or(|b| b.status != "completed");
    if newly_completed && !goal.auto_claim_wakes.is_empty() {
        let users: Vec<&str> = goal.auto_claim_wakes.iter().map(|_| user_id).collect();
        sqlx::query(super::outbox::ENQUEUE_SQL)
            .bind(&users)
            .bind(&goal.auto_claim_wakes)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(RowChange {
        before,
        after: Some(after),
    })
}

/// Whether a grant of the row's goal is under way: a reset must not pull the row from
/// under it.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("a reward grant of goal {0} is in progress; try again once it settles")]
    GrantInProgress(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Resets `goal` for `user_id`: back to not started (progress, requirement state,
/// completion, claim and repetitions cleared; activation and assignment kept) and one more
/// reset counted. The grant memory of the current period is forgotten without deleting
/// history: the next claim pays under a period key of its own (`<period>/r<resets>`), which
/// no grant holds, while the grants made before stay in the reward history (and AGS keeps
/// them under their own keys). Its queued auto-claim, if any, is dropped. A player without
/// a row is left as they are (`before` and `after` both `None`).
pub async fn reset(
    pool: &PgPool,
    user_id: &str,
    goal: &Goal,
    now: DateTime<Utc>,
) -> Result<RowChange, ResetError> {
    let mut tx = pool.begin().await?;
    let before = lock_row(&mut tx, user_id, &goal.id).await?;
    let Some(_) = before else {
        return Ok(RowChange {
            before: None,
            after: None,
        });
    };
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reward_grants WHERE user_id = $1 AND goal_id = $2 \
             AND state = 'pending')",
    )
    .bind(user_id)
    .bind(&goal.id)
    .fetch_one(&mut *tx)
    .await?;
    if pending {
        return Err(ResetError::GrantInProgress(goal.id.clone()));
    }
    sqlx::query("DELETE FROM reward_outbox WHERE user_id = $1 AND goal_id = $2")
        .bind(user_id)
        .bind(&goal.id)
        .execute(&mut *tx)
        .await?;
    let after = sqlx::query(concat!(
        "UPDATE user_goal_progress SET progress = 0, status = 'not_started', \
             completed_at = NULL, claimed_at = NULL, baseline_value = NULL, \
             last_event_at = NULL, req_state = NULL, times_claimed = 0, \
             resets = resets + 1, updated_at = $3 \
         WHERE user_id = $1 AND goal_id = $2 RETURNING ",
        row_state!()
    ))
    .bind(user_id)
    .bind(&goal.id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let after = row_state(&after)?;
    tx.commit().await?;
    Ok(RowChange {
        before,
        after: Some(after),
    })
}

/// Unenrolls `user_id` from everything: every progress row (and the marker that stands for
/// the untouched default goals) and every queued auto-claim is deleted. The grant history
/// stays: a re-enrolled player is never paid twice for a period AGS already paid. Returns
/// the goal rows deleted (the marker not counted).
pub async fn unenroll(pool: &PgPool, user_id: &str) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: i64 = sqlx::query_scalar(
        "WITH d AS (DELETE FROM user_goal_progress WHERE user_id = $1 RETURNING goal_id) \
         SELECT count(*) FILTER (WHERE goal_id <> '') FROM d",
    )
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM reward_outbox WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.max(0) as u64)
}
