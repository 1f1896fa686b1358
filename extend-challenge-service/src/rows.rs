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
use sqlx::{PgPool, Row as _};

use crate::catalog::{Catalog, PlayerView};

/// The columns of `store::GoalRow`, in the order [`decode`] reads them.
const USER_ROWS: &str = "SELECT goal_id, progress, status, completed_at, claimed_at, is_active, \
     assigned_at, expires_at, baseline_value, last_event_at \
     FROM user_goal_progress WHERE user_id = $1";

/// Every row of `user_id`, viewed at `now`. Rows of goals no longer in the config are
/// skipped, as [`PlayerView::new`] does.
pub async fn user_view<'a>(
    pool: &PgPool,
    catalog: &'a Catalog,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<PlayerView<'a>, sqlx::Error> {
    let mut view = PlayerView::empty(catalog, now);
    let mut rows = sqlx::query(USER_ROWS).bind(user_id).fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let goal_id: &str = row.try_get_unchecked(0)?;
        let Some(gi) = catalog.goal_index(goal_id) else {
            continue;
        };
        view.insert(gi, &decode(&row)?);
    }
    Ok(view)
}

/// Columns 1–9 of [`USER_ROWS`] as a [`GoalState`]; an unknown stored status reads as
/// `not_started`, as `GoalRow::state` does.
///
/// `try_get_unchecked` skips sqlx's per-value type-compatibility check (a `PgTypeInfo`
/// clone, compare and drop per column: ~10 % of the list's CPU in `perf`). The column types
/// are fixed by [`USER_ROWS`] and the migrations (text, int4, text, timestamptz ×2, bool,
/// timestamptz ×2, int4, timestamptz) and the tests read every column through here; a
/// schema change that altered one would be caught only by the decoders' own length and
/// UTF-8 checks, so keep this query and the migrations in step.
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
