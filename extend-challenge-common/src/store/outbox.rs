//! The auto-claim outbox (CONTRACT §7): goals to claim without a player's call.
//!
//! The event handler adds an entry in the transaction that completes a goal — for the goal
//! itself when it is `autoClaim`, and for each `autoClaim` goal its completion may unlock
//! ([`crate::config::Goal::auto_claim_wakes`]) — so a completion is never acknowledged
//! without its auto-claim recorded, and the handler never calls AGS. The service takes due
//! entries ([`due`]), claims each goal through the ordinary claim (every check, the grant
//! state machine), then deletes the entry ([`done`]) or schedules another try ([`retry`]).
//! Times are the database's clock, so every replica of both binaries agrees on them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEntry {
    pub user_id: String,
    pub goal_id: String,
    /// The latest completion that asked for the claim: [`done`] and [`retry`] act only on
    /// the entry as it was read, never on one a newer completion renewed meanwhile.
    pub enqueued_at: DateTime<Utc>,
    pub attempts: i32,
}

/// The handler's insert (one array pair per batch): a renewed entry is due at once.
pub(crate) const ENQUEUE_SQL: &str = "\
INSERT INTO reward_outbox (user_id, goal_id) \
SELECT * FROM unnest($1::text[], $2::text[]) \
ON CONFLICT (user_id, goal_id) DO UPDATE SET enqueued_at = clock_timestamp(), \
    next_attempt_at = LEAST(reward_outbox.next_attempt_at, clock_timestamp())";

/// Entries due now, the longest waiting first.
pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<OutboxEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, goal_id, enqueued_at, attempts FROM reward_outbox \
         WHERE next_attempt_at <= clock_timestamp() ORDER BY next_attempt_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes the entry as it was read (claimed, or nothing to claim).
pub async fn done(pool: &PgPool, entry: &OutboxEntry) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "DELETE FROM reward_outbox WHERE user_id = $1 AND goal_id = $2 AND enqueued_at = $3",
    )
    .bind(&entry.user_id)
    .bind(&entry.goal_id)
    .bind(entry.enqueued_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Tries the entry again after `delay` (unless a newer completion renewed it meanwhile:
/// then it is due already).
pub async fn retry(
    pool: &PgPool,
    entry: &OutboxEntry,
    delay: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE reward_outbox SET attempts = attempts + 1, last_error = $4, \
           next_attempt_at = clock_timestamp() + make_interval(secs => $5::float8) \
         WHERE user_id = $1 AND goal_id = $2 AND enqueued_at = $3",
    )
    .bind(&entry.user_id)
    .bind(&entry.goal_id)
    .bind(entry.enqueued_at)
    .bind(error)
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Adds (or renews) entries for these (user, goal) pairs outside a batch (tests, tools).
pub async fn enqueue(pool: &PgPool, users: &[&str], goals: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(ENQUEUE_SQL)
        .bind(users)
        .bind(goals)
        .execute(pool)
        .await?;
    Ok(())
}

/// The backlog: entries waiting, and the age in seconds of the oldest (0 when empty).
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(enqueued_at)), 0)::float8 \
         FROM reward_outbox",
    )
    .fetch_one(pool)
    .await
}
