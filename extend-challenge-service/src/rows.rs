//! The hot read of the player API, decoded straight into a [`PlayerView`].
//!
//! `GET /v1/challenges` reads every row of the player (500 in the benchmark fixture).
//! Decoding them through `#[derive(FromRow)]` looks every column up by name (a hash per
//! column per row) and allocates the goal id and status strings of each row, only for the
//! view to hash the goal id again and drop both. Here each row is decoded by column
//! position, borrowing its strings from the row buffer, and folded into the view as it
//! streams in.

use chrono::{DateTime, Utc};
use extend_challenge_common::progress::{GoalState, Status};
use futures::TryStreamExt as _;
use sqlx::postgres::{PgRow, PgTypeInfo};
use sqlx::{Column as _, PgPool, Postgres, Row as _, Type, TypeInfo as _};

use crate::catalog::{Catalog, PlayerView};

/// The columns of `store::GoalRow`, in the order [`decode`] reads them.
const USER_ROWS: &str = "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, \
     assigned_at, expires_at, baseline_value, last_event_at \
     FROM user_goal_progress WHERE user_id = $1";

/// Every row of `user_id`, viewed at `now`. Rows of goals no longer in the config are
/// skipped, as [`PlayerView::new`] does.
///
/// The view (a slot per configured goal) is allocated only once a connection is held, so
/// requests queued for the pool under overload hold no view: at most pool-size views are
/// alive at once.
pub async fn user_view<'a>(
    pool: &PgPool,
    catalog: &'a Catalog,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<PlayerView<'a>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut view = PlayerView::empty(catalog, now);
    let mut rows = sqlx::query(USER_ROWS).bind(user_id).fetch(&mut *conn);
    let mut checked = false;
    while let Some(row) = rows.try_next().await? {
        if !checked {
            check_columns(&row)?;
            checked = true;
        }
        let goal_id: &str = row.try_get_unchecked(0)?;
        let Some(gi) = catalog.goal_index(goal_id) else {
            continue;
        };
        view.insert(gi, &decode(&row)?);
    }
    Ok(view)
}

/// The type check `try_get_unchecked` skips, done once per result set instead of once per
/// value: every row of a result set has the same column types, so the first row's tell.
/// A schema that no longer matches [`USER_ROWS`] is a decode error, never a bad read.
fn check_columns(row: &PgRow) -> Result<(), sqlx::Error> {
    type Check = fn(&PgTypeInfo) -> bool;
    const EXPECTED: [Check; 10] = [
        <String as Type<Postgres>>::compatible,
        <i32 as Type<Postgres>>::compatible,
        <String as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <bool as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
        <i32 as Type<Postgres>>::compatible,
        <DateTime<Utc> as Type<Postgres>>::compatible,
    ];
    if row.len() != EXPECTED.len() {
        return Err(sqlx::Error::ColumnIndexOutOfBounds {
            index: EXPECTED.len() - 1,
            len: row.len(),
        });
    }
    for (i, (column, compatible)) in row.columns().iter().zip(EXPECTED).enumerate() {
        if !compatible(column.type_info()) {
            return Err(sqlx::Error::ColumnDecode {
                index: i.to_string(),
                source: format!("unexpected column type {}", column.type_info().name()).into(),
            });
        }
    }
    Ok(())
}

/// Columns 1–9 of [`USER_ROWS`] as a [`GoalState`]; an unknown stored status reads as
/// `not_started`, as `GoalRow::state` does.
///
/// `try_get_unchecked` skips sqlx's per-value type-compatibility check (a `PgTypeInfo`
/// clone, compare and drop per column: ~10 % of the list's CPU in `perf`); [`check_columns`]
/// does it once per result set instead.
fn decode(row: &sqlx::postgres::PgRow) -> Result<GoalState, sqlx::Error> {
    let status: &str = row.try_get_unchecked(2)?;
    Ok(GoalState {
        progress: row.try_get_unchecked(1)?,
        status: Status::parse(status).unwrap_or(Status::NotStarted),
        completed_at: row.try_get_unchecked(3)?,
        claimed_at: row.try_get_unchecked(4)?,
        is_active: row.try_get_unchecked(5)?,
        assigned_at: row.try_get_unchecked(6)?,
        expires_at: row.try_get_unchecked(7)?,
        baseline_value: row.try_get_unchecked(8)?,
        last_event_at: row.try_get_unchecked(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The once-per-result-set check accepts the table's real columns and refuses a result
    /// whose types drifted (an `int8` progress would be misread without it).
    #[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
    async fn column_types_are_checked_once_per_result_set(pool: PgPool) {
        let row = sqlx::query(
            "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, \
             assigned_at, expires_at, baseline_value, last_event_at \
             FROM (VALUES ('g', 1, 'in_progress', now(), NULL::timestamptz, true, now(), \
             NULL::timestamptz, NULL::int4, now())) AS v(goal_id, progress, status, \
             completed_at, claimed_at, is_active, assigned_at, expires_at, baseline_value, \
             last_event_at)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        check_columns(&row).expect("the table's types");
        assert_eq!(decode(&row).unwrap().progress, 1);

        let drifted = sqlx::query(
            "SELECT 'g'::text, 1::int8, 'x'::text, now(), now(), true, now(), now(), 1, now()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let err = check_columns(&drifted).unwrap_err();
        assert!(err.to_string().contains("INT8"), "{err}");
        let short = sqlx::query("SELECT 'g'::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(check_columns(&short).is_err());
    }
}
