//! Player data erasure and retention (CONTRACT §3.6).
//!
//! **Erasure** ([`erase_user`]) is one short transaction: upsert the user's tombstone in
//! `user_erasures` (which doubles as the cross-replica rate limit), lock
//! `user_goal_progress` against writers, delete the user's progress rows, reward grant
//! intents and dead letters, commit. It is never buffered.
//!
//! **No zombie rows.** The event handler's flush ([`super::flush`]) reads the tombstones of
//! its batch's users and drops the pending deltas of a user whose oldest contributing event
//! is not later than `erased_at`. What makes that read safe is the order of locks:
//!
//! - the flush takes `ROW EXCLUSIVE` on `user_goal_progress` as its first statement, and
//!   only then reads the tombstones (a new snapshot, READ COMMITTED);
//! - the erasure takes `EXCLUSIVE` on `user_goal_progress` before it deletes. The two
//!   modes conflict (Postgres docs, "Conflicting Lock Modes"); plain reads (`ACCESS
//!   SHARE`) go on. `EXCLUSIVE` rather than `SHARE ROW EXCLUSIVE` because it also
//!   conflicts with `ROW SHARE` (`SELECT … FOR UPDATE`): with the weaker mode, a claim or a
//!   goal selection could lock a row of the user during the erasure and then wait for
//!   `ROW EXCLUSIVE` to update it while the erasure's `DELETE` waits for that row — a
//!   deadlock. Now they wait (or, the claim's `NOWAIT`, retry) until the erasure is done.
//!
//! So a batch either commits before the erasure's `DELETE` starts (the `DELETE` sees and
//! removes its rows) or starts after the erasure committed (it reads the tombstone). A
//! batch that began before the erasure and commits after it is impossible: the erasure waits
//! for it. The lock is held for the few milliseconds of the deletes; erasures are rare.
//! `lock_timeout` bounds the wait (an answer `Unavailable`, the caller retries).
//!
//! **Retention** ([`delete_expired_batch`], [`purge_tombstones`]): the service's cleanup
//! task deletes rows whose `expires_at` lies before a cut-off, in batches, and tombstones
//! older than their window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

/// The Postgres lock timeout of an erasure's statements: an erasure waits at most this
/// long for batches in flight (milliseconds in practice) before giving up, retryable.
const ERASURE_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// The erasure's table lock (see the module docs).
const ERASURE_TABLE_LOCK: &str = "LOCK TABLE user_goal_progress IN EXCLUSIVE MODE";

/// Records the tombstone. With a rate limit (`$4` seconds), an existing tombstone newer
/// than that wins and nothing is returned; without one (`$4` NULL, the IAM event), the
/// tombstone moves forward. `erased_at` never moves back.
const TOMBSTONE_SQL: &str = "\
INSERT INTO user_erasures (user_id, namespace, erased_at) VALUES ($1, $2, $3) \
ON CONFLICT (user_id) DO UPDATE SET namespace = EXCLUDED.namespace, \
    erased_at = GREATEST(user_erasures.erased_at, EXCLUDED.erased_at) \
WHERE $4::float8 IS NULL \
    OR user_erasures.erased_at <= EXCLUDED.erased_at - make_interval(secs => $4::float8) \
RETURNING erased_at";

/// What one erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// `user_goal_progress` rows (the `rowsDeleted` of the API).
    pub progress_rows: u64,
    /// `reward_grants` rows (grant intents and their history).
    pub grant_rows: u64,
    /// `event_dead_letters` rows.
    pub dead_letter_rows: u64,
    /// The tombstone's time: pending updates from events up to it are dropped.
    pub erased_at: DateTime<Utc>,
}

/// The outcome of [`erase_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    Erased(Erased),
    /// The user was erased less than the rate limit ago: nothing was done.
    RateLimited,
}

/// An erasure that holds its tombstone and the table lock, not yet deleted nor committed
/// ([`begin_erasure`]). Dropping it rolls back.
pub struct ErasureTx {
    tx: Transaction<'static, Postgres>,
    user_id: String,
    erased_at: DateTime<Utc>,
}

/// The first half of an erasure: the tombstone (refused when the user was erased less than
/// `rate_limit` ago; `None` never refuses) and the table lock, which waits for batches in
/// flight. [`ErasureTx::finish`] deletes and commits. Split so tests can hold an erasure
/// between the two; callers use [`erase_user`].
pub async fn begin_erasure(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    now: DateTime<Utc>,
    rate_limit: Option<Duration>,
) -> Result<Option<ErasureTx>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(ERASURE_LOCK_TIMEOUT).execute(&mut *tx).await?;
    let erased_at: Option<DateTime<Utc>> = sqlx::query_scalar(TOMBSTONE_SQL)
        .bind(user_id)
        .bind(namespace)
        .bind(now)
        .bind(rate_limit.map(|d| d.as_secs_f64()))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(erased_at) = erased_at else {
        tx.rollback().await?;
        return Ok(None);
    };
    sqlx::query(ERASURE_TABLE_LOCK).execute(&mut *tx).await?;
    Ok(Some(ErasureTx {
        tx,
        user_id: user_id.to_string(),
        erased_at,
    }))
}

impl ErasureTx {
    /// Deletes the user's rows and commits.
    pub async fn finish(mut self) -> Result<Erased, sqlx::Error> {
        let progress_rows = sqlx::query("DELETE FROM user_goal_progress WHERE user_id = $1")
            .bind(&self.user_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        let grant_rows = sqlx::query("DELETE FROM reward_grants WHERE user_id = $1")
            .bind(&self.user_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        let dead_letter_rows = sqlx::query("DELETE FROM event_dead_letters WHERE user_id = $1")
            .bind(&self.user_id)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        // Pending auto-claims: nothing is left to claim.
        sqlx::query("DELETE FROM reward_outbox WHERE user_id = $1")
            .bind(&self.user_id)
            .execute(&mut *self.tx)
            .await?;
        super::trail::erase(&mut self.tx, &self.user_id).await?;
        self.tx.commit().await?;
        Ok(Erased {
            progress_rows,
            grant_rows,
            dead_letter_rows,
            erased_at: self.erased_at,
        })
    }
}

/// Erases every row of `user_id` now, durably, and records the tombstone (see the module
/// docs). `rate_limit`: refuse when the previous erasure of this user is more recent than
/// this (`None`: always erase).
pub async fn erase_user(
    pool: &PgPool,
    user_id: &str,
    namespace: &str,
    now: DateTime<Utc>,
    rate_limit: Option<Duration>,
) -> Result<Erasure, sqlx::Error> {
    match begin_erasure(pool, user_id, namespace, now, rate_limit).await? {
        None => Ok(Erasure::RateLimited),
        Some(tx) => Ok(Erasure::Erased(tx.finish().await?)),
    }
}

/// Goals whose expired rows still hold state that matters, so retention keeps them
/// (goal ids from the config).
#[derive(Debug, Clone, Default)]
pub struct RetentionGuard {
    /// Rotating goals without `allowReselection`: a claimed row stays claimed forever;
    /// deleting it would let initialize assign the goal afresh and the reward be claimed
    /// again.
    pub claimed_forever: Vec<String>,
    /// Rotating goals without `resetProgress`: progress carries over into every new
    /// period; deleting a row with progress would lose it.
    pub carry_over: Vec<String>,
}

impl RetentionGuard {
    /// The guard for a configuration.
    pub fn from_config(config: &crate::config::ChallengeConfig) -> Self {
        let mut guard = RetentionGuard::default();
        for goal in config.challenges.iter().flat_map(|c| &c.goals) {
            if let Some(rotation) = goal.rotation {
                if !rotation.on_expiry.allow_reselection {
                    guard.claimed_forever.push(goal.id.clone());
                }
                if !rotation.on_expiry.reset_progress {
                    guard.carry_over.push(goal.id.clone());
                }
            }
        }
        guard
    }
}

/// Deletes at most `batch` rows whose `expires_at` is before `cutoff` (rows without
/// `expires_at` never), except those `guard` protects. Returns the rows deleted.
///
/// Rows are picked by key and `ctid`; a row updated after it was picked (an event rolled it
/// into a new period) has moved to a new `ctid` and is left alone. The key is what makes the
/// pick exact on a partitioned table (migration 0012), where a `ctid` is only unique within
/// one partition.
pub async fn delete_expired_batch(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
    guard: &RetentionGuard,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM user_goal_progress AS t USING ( \
           SELECT user_id, goal_id, ctid FROM user_goal_progress \
           WHERE expires_at IS NOT NULL AND expires_at < $1 \
             AND NOT (status = 'claimed' AND goal_id = ANY($3)) \
             AND NOT (goal_id = ANY($4) AND (progress > 0 OR status <> 'not_started')) \
           LIMIT $2) AS d \
         WHERE t.user_id = d.user_id AND t.goal_id = d.goal_id AND t.ctid = d.ctid",
    )
    .bind(cutoff)
    .bind(batch)
    .bind(&guard.claimed_forever)
    .bind(&guard.carry_over)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes at most `batch` tombstones older than `cutoff`. Returns how many.
pub async fn purge_tombstones(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM user_erasures WHERE user_id = ANY(ARRAY( \
           SELECT user_id FROM user_erasures WHERE erased_at < $1 LIMIT $2))",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
