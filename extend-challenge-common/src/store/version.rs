//! A player's progress "version": what the list's `ETag` is made of (CONTRACT §10).
//!
//! Every write a player can see creates a new row version (an `UPDATE`, an `INSERT`, a
//! `DELETE`), so the number of the player's rows and the sum of their `xmin` (the creating
//! transaction) change with any of them, whoever wrote it (handler batch, claim,
//! activation, initialize, erasure, admin tools) and whatever its clock; locking a row
//! (`FOR NO KEY UPDATE`) sets `xmax` only and changes nothing. What changes by time alone
//! is the caller's to add: the per-player windows (from the `assigned_at` of those goals'
//! rows, returned here) and the UTC day.
//!
//! Two ways to the same numbers: [`player_version`], one aggregate that sends no row (the
//! `If-None-Match` check), and [`fold_goal_rows_versioned`], the list's own read with
//! `xmin` alongside (a list answered in full costs no second query for its tag).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::columns::goal_row_list;
use super::{GOAL_ROW_COLUMNS, GoalRowRef, check_goal_row_types};

/// The row-side of a player's list tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlayerVersion {
    /// Rows of the player.
    pub rows: i64,
    /// Sum of the rows' `xmin`, modulo `i64::MAX`.
    pub xmin_sum: i64,
}

/// Adds `xmin` values as [`PlayerVersion::xmin_sum`] does (the aggregate's arithmetic).
#[derive(Debug, Default)]
pub struct XminSum(i128);

impl XminSum {
    pub fn add(&mut self, xmin: i64) {
        self.0 += i128::from(xmin);
    }

    pub fn value(&self) -> i64 {
        (self.0 % i128::from(i64::MAX)) as i64
    }
}

const VERSION_SQL: &str = "\
SELECT count(*), \
    (coalesce(sum(xmin::text::bigint), 0) % 9223372036854775807)::bigint, \
    coalesce(array_agg(goal_id) FILTER (WHERE goal_id = ANY($2)), '{}'), \
    coalesce(array_agg(assigned_at) FILTER (WHERE goal_id = ANY($2)), '{}') \
FROM user_goal_progress WHERE user_id = $1";

/// `user_id`'s [`PlayerVersion`], and the `assigned_at` of its rows of `window_goals`.
pub async fn player_version(
    pool: &PgPool,
    user_id: &str,
    window_goals: &[&str],
) -> Result<(PlayerVersion, Vec<(String, Option<DateTime<Utc>>)>), sqlx::Error> {
    let (rows, xmin_sum, goals, assigned): (i64, i64, Vec<String>, Vec<Option<DateTime<Utc>>>) =
        sqlx::query_as(VERSION_SQL)
            .bind(user_id)
            .bind(window_goals)
            .fetch_one(pool)
            .await?;
    Ok((
        PlayerVersion { rows, xmin_sum },
        goals.into_iter().zip(assigned).collect(),
    ))
}

static VERSIONED_ROWS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, xmin::text::bigint FROM user_goal_progress WHERE user_id = $1",
        goal_row_list("")
    )
});

/// `store::player::fold_goal_rows` with the rows' [`PlayerVersion`] computed on the way:
/// the same statement plus one column.
pub async fn fold_goal_rows_versioned<A>(
    pool: &PgPool,
    user_id: &str,
    init: impl FnOnce() -> A,
    mut fold: impl FnMut(&mut A, GoalRowRef<'_>),
) -> Result<(A, PlayerVersion), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut acc = init();
    let mut rows = sqlx::query(AssertSqlSafe(VERSIONED_ROWS_SQL.as_str()))
        .bind(user_id)
        .fetch(&mut *conn);
    let (mut n, mut sum, mut checked) = (0i64, XminSum::default(), false);
    while let Some(row) = rows.try_next().await? {
        if !checked {
            check_goal_row_types(&row, 0)?;
            checked = true;
        }
        sum.add(row.try_get::<i64, _>(GOAL_ROW_COLUMNS.len())?);
        n += 1;
        fold(&mut acc, GoalRowRef::decode(&row, 0)?);
    }
    Ok((
        acc,
        PlayerVersion {
            rows: n,
            xmin_sum: sum.value(),
        },
    ))
}
