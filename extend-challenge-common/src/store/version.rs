//! A player's progress "version": what the list's `ETag` is made of (CONTRACT §10), read in
//! one aggregate over the player's rows — no row leaves the server, no list is built.
//!
//! Every write a player can see creates a new row version (an `UPDATE`, an `INSERT`, a
//! `DELETE`), so the sum of the rows' `xmin` (the creating transaction) and their count
//! change with any of them, whoever wrote it (handler batch, claim, activation,
//! initialize, erasure, admin tools) and whatever its clock; locking a row (`FOR NO KEY
//! UPDATE`) sets `xmax` only and changes nothing. What changes by time alone — a
//! per-player window passing — is counted here as each row's window index at `now`; global
//! periods and daily goals turn at 00:00 UTC, which the caller folds in from the clock.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The aggregate behind a player's list tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlayerVersion {
    /// Rows of the player.
    pub rows: i64,
    /// Sum of the rows' `xmin` (modulo 2^63).
    pub xmin_sum: i64,
    /// Sum over the player's rows of per-player-window goals of the window index at `now`.
    pub windows: i64,
}

const VERSION_SQL: &str = "\
SELECT count(*), \
    (coalesce(sum(p.xmin::text::bigint), 0) % 9223372036854775807)::bigint, \
    coalesce(sum(floor(extract(epoch FROM ($2 - p.assigned_at)) / w.step)) \
        FILTER (WHERE w.step IS NOT NULL AND p.assigned_at IS NOT NULL), 0)::bigint \
FROM user_goal_progress AS p \
LEFT JOIN unnest($3::text[], $4::float8[]) AS w(goal_id, step) ON w.goal_id = p.goal_id \
WHERE p.user_id = $1";

/// Reads `user_id`'s [`PlayerVersion`] at `now`; `windows` pairs each per-player-window
/// goal id with its window in seconds.
pub async fn player_version(
    pool: &PgPool,
    user_id: &str,
    now: DateTime<Utc>,
    windows: &[(String, u32)],
) -> Result<PlayerVersion, sqlx::Error> {
    let (ids, steps): (Vec<&str>, Vec<f64>) = windows
        .iter()
        .map(|(g, s)| (g.as_str(), f64::from((*s).max(1))))
        .unzip();
    let (rows, xmin_sum, windows): (i64, i64, i64) = sqlx::query_as(VERSION_SQL)
        .bind(user_id)
        .bind(now)
        .bind(&ids)
        .bind(&steps)
        .fetch_one(pool)
        .await?;
    Ok(PlayerVersion {
        rows,
        xmin_sum,
        windows,
    })
}
