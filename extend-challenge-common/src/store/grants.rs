//! Reward grant intents (CONTRACT §3.3, §7): the persisted state machine that makes each
//! reward of a goal paid exactly once per (user, goal, period): one intent per reward
//! (`reward_index`, its position in the goal's `rewards`).
//!
//! A claim runs in three short steps, and no transaction, row lock or pool connection is
//! held across the call to AGS:
//! 1. [`lock_for_claim`] locks the progress row (`NOWAIT`: a busy row is reported, never
//!    waited for), the service checks it, and records or takes over the intent with a lease
//!    ([`ClaimTx::create_intent`], [`ClaimTx::take_over_intent`]); commit.
//! 2. The service calls AGS.
//! 3. [`complete`] marks the intent granted and, once every reward of the claim is, the row
//!    claimed, in one transaction;
//!    [`refuse`] records a definite refusal; [`release`] leaves the intent pending (in
//!    doubt) for a retry or the reconciler ([`due`], [`take_due`]).
//!
//! Lock order everywhere: the progress row first, then the intent.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row as _, Transaction};

use super::GOAL_ROW_COLUMNS;
use super::columns::goal_row_list;
use super::player::{ClaimTx, PlayerGoalRow};

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    /// A grant may be under way (leased) or its outcome is unknown (in doubt).
    Pending,
    /// AGS holds the grant.
    Granted,
    /// AGS refused it (a definite answer): nothing was granted.
    Failed,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Granted => "granted",
            GrantState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(GrantState::Pending),
            "granted" => Some(GrantState::Granted),
            "failed" => Some(GrantState::Failed),
            _ => None,
        }
    }
}

/// A `reward_grants` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GrantIntent {
    pub user_id: String,
    pub goal_id: String,
    pub period_key: String,
    /// The reward's position in the goal's `rewards` (0: the first, or only, reward).
    pub reward_index: i16,
    pub challenge_id: String,
    pub namespace: String,
    pub grant_key: String,
    /// `ITEM` or `WALLET`.
    pub reward_type: String,
    pub reward_id: String,
    pub quantity: i32,
    pub state: String,
    /// Who works on the intent while `lease_until` is in the future.
    pub owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// Grant sequences started (each may have sent requests to AGS).
    pub attempts: i32,
    /// When the latest grant sequence started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The reconciler leaves a pending intent alone until then.
    pub next_check_at: DateTime<Utc>,
    /// The progress row's `completed_at` the intent was made for: the row is marked claimed
    /// only while it still holds that completion (not after a rotation reset it).
    pub goal_completed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When AGS was known to hold the grant.
    pub granted_at: Option<DateTime<Utc>>,
}

impl GrantIntent {
    /// An unknown stored state reads as pending (the CHECK constraint rules it out): the
    /// safe reading, as a pending intent is resolved before any new grant.
    pub fn state(&self) -> GrantState {
        GrantState::parse(&self.state).unwrap_or(GrantState::Pending)
    }

    /// Someone holds a live lease on the intent.
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }
}

/// A new intent's identity and reward.
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    pub user_id: &'a str,
    pub goal_id: &'a str,
    pub period_key: &'a str,
    pub reward_index: i16,
    pub challenge_id: &'a str,
    pub namespace: &'a str,
    pub grant_key: &'a str,
    pub reward_type: &'a str,
    pub reward_id: &'a str,
    pub quantity: i32,
    pub goal_completed_at: Option<DateTime<Utc>>,
}

/// A lease on an intent, taken at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub now: DateTime<Utc>,
    /// The owner works on the intent until then; afterwards anyone may take it over.
    pub until: DateTime<Utc>,
    /// When the reconciler may look at the intent if it is still pending.
    pub next_check_at: DateTime<Utc>,
    /// A grant sequence starts under this lease (it may send requests): counts an attempt
    /// and stamps `last_attempt_at`. `false` for a lookup only.
    pub attempt: bool,
}

/// What [`lock_for_claim`] found.
pub enum ClaimLock {
    /// Another transaction holds the row lock (a claim, or briefly the event handler's
    /// flush). Nothing was waited for; the connection is back in the pool.
    Busy,
    /// The row is locked (`None`: the player has no row for the goal).
    Locked(ClaimTx, Option<Box<PlayerGoalRow>>),
}

/// [`lock_for_claim`]'s statement.
static LOCK_FOR_CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, resets FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2 \
         FOR UPDATE NOWAIT",
        goal_row_list("")
    )
});

/// Opens a claim transaction and locks the progress row without waiting
/// (`FOR UPDATE NOWAIT`). `limit` bounds every statement and any idle time in the
/// transaction on the server side.
pub async fn lock_for_claim(
    pool: &PgPool,
    user_id: &str,
    goal_id: &str,
    limit: Duration,
) -> Result<ClaimLock, sqlx::Error> {
    let mut tx = begin_limited(pool, limit).await?;
    let row = sqlx::query(LOCK_FOR_CLAIM_SQL.as_str())
        .bind(user_id)
        .bind(goal_id)
        .fetch_optional(&mut *tx)
        .await
        .and_then(|row| {
            row.map(|r| {
                let goal = PlayerGoalRow::from_row_at(&r, 0)?;
                let resets: i32 = r.try_get(GOAL_ROW_COLUMNS.len())?;
                Ok((goal, resets))
            })
            .transpose()
        });
    match row {
        Ok(row) => {
            let resets = row.as_ref().map_or(0, |r| r.1);
            Ok(ClaimLock::Locked(
                ClaimTx::new(tx, user_id).with_resets(resets),
                row.map(|r| Box::new(r.0)),
            ))
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
            // Dropping the transaction rolls it back and returns the connection.
            drop(tx);
            Ok(ClaimLock::Busy)
        }
        Err(e) => Err(e),
    }
}

/// SQLSTATE of `NOWAIT` meeting a held lock.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Whether a claim holds a live lease on any intent of this user's goal (any period).
pub async fn leased(
    pool: &PgPool,
    user_id: &str,
    goal_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reward_grants WHERE user_id = $1 AND goal_id = $2 \
           AND state = 'pending' AND lease_until > $3)",
    )
    .bind(user_id)
    .bind(goal_id)
    .bind(now)
    .fetch_one(pool)
    .await
}

impl ClaimTx {
    /// The intents (one per reward, by `reward_index`) of this user's `goal_id` in
    /// `period_key`, locked.
    pub async fn intents(
        &mut self,
        goal_id: &str,
        period_key: &str,
    ) -> Result<Vec<GrantIntent>, sqlx::Error> {
        let user_id = self.user_id.clone();
        sqlx::query_as(
            "SELECT * FROM reward_grants \
             WHERE user_id = $1 AND goal_id = $2 AND period_key = $3 \
             ORDER BY reward_index FOR UPDATE",
        )
        .bind(user_id)
        .bind(goal_id)
        .bind(period_key)
        .fetch_all(&mut *self.tx)
        .await
    }

    /// Records a new pending intent under `lease`.
    pub async fn create_intent(
        &mut self,
        new: &NewIntent<'_>,
        lease: &Lease<'_>,
    ) -> Result<GrantIntent, sqlx::Error> {
        sqlx::query_as(
            "INSERT INTO reward_grants (user_id, goal_id, period_key, challenge_id, namespace, \
               grant_key, reward_type, reward_id, quantity, state, owner, lease_until, attempts, \
               last_attempt_at, next_check_at, goal_completed_at, reward_index) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, \
               CASE WHEN $14 THEN 1 ELSE 0 END, CASE WHEN $14 THEN $12 END, $13, $15, $16) \
             RETURNING *",
        )
        .bind(new.user_id)
        .bind(new.goal_id)
        .bind(new.period_key)
        .bind(new.challenge_id)
        .bind(new.namespace)
        .bind(new.grant_key)
        .bind(new.reward_type)
        .bind(new.reward_id)
        .bind(new.quantity)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now)
        .bind(lease.next_check_at)
        .bind(lease.attempt)
        .bind(new.goal_completed_at)
        .bind(new.reward_index)
        .fetch_one(&mut *self.tx)
        .await
    }

    /// Takes over a pending intent whose lease has ended, or a failed one (back to
    /// pending), under `lease`. The caller holds the intent's lock ([`ClaimTx::intent`]).
    pub async fn take_over_intent(
        &mut self,
        grant_key: &str,
        lease: &Lease<'_>,
        goal_completed_at: Option<DateTime<Utc>>,
    ) -> Result<GrantIntent, sqlx::Error> {
        sqlx::query_as(
            "UPDATE reward_grants SET state = 'pending', owner = $2, lease_until = $3, \
               attempts = attempts + CASE WHEN $6 THEN 1 ELSE 0 END, \
               last_attempt_at = CASE WHEN $6 THEN $4 ELSE last_attempt_at END, \
               next_check_at = GREATEST(next_check_at, $5), goal_completed_at = $7, \
               updated_at = NOW() \
             WHERE user_id = $8 AND grant_key = $1 RETURNING *",
        )
        .bind(grant_key)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now)
        .bind(lease.next_check_at)
        .bind(lease.attempt)
        .bind(goal_completed_at)
        .bind(self.user_id.clone())
        .fetch_one(&mut *self.tx)
        .await
    }

    /// Commits the claim transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// Step 3 after AGS granted (or was found to hold the grant): the intent becomes
/// `granted` and — once every intent of its (user, goal, period) is granted, and if the
/// progress row still holds the completion the intent was made for — the row becomes
/// `claimed` at `claimed_at`. Returns whether the row was marked. Locks the progress row
/// before the intent, like a claim, so the settles of a goal's several rewards run one
/// after the other and the last one marks the row.
pub async fn complete(
    pool: &PgPool,
    intent: &GrantIntent,
    claimed_at: DateTime<Utc>,
    limit: Duration,
) -> Result<bool, sqlx::Error> {
    let mut tx = begin_limited(pool, limit).await?;
    sqlx::query("SELECT 1 FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2 FOR UPDATE")
        .bind(&intent.user_id)
        .bind(&intent.goal_id)
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE reward_grants SET state = 'granted', owner = NULL, lease_until = NULL, \
           last_error = NULL, granted_at = COALESCE(granted_at, $2), updated_at = NOW() \
         WHERE user_id = $3 AND grant_key = $1",
    )
    .bind(&intent.grant_key)
    .bind(claimed_at)
    .bind(&intent.user_id)
    .execute(&mut *tx)
    .await?;
    let marked = sqlx::query(
        "UPDATE user_goal_progress \
         SET status = 'claimed', claimed_at = $3, completed_at = COALESCE(completed_at, $3), \
             times_claimed = times_claimed + 1, updated_at = NOW() \
         WHERE user_id = $1 AND goal_id = $2 AND status = 'completed' \
           AND completed_at IS NOT DISTINCT FROM $4 \
           AND NOT EXISTS (SELECT 1 FROM reward_grants g \
             WHERE g.user_id = $1 AND g.goal_id = $2 AND g.period_key = $5 \
               AND g.state <> 'granted')",
    )
    .bind(&intent.user_id)
    .bind(&intent.goal_id)
    .bind(claimed_at)
    .bind(intent.goal_completed_at)
    .bind(&intent.period_key)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(marked)
}

/// Step 3 after a definite refusal: the intent becomes `failed` (nothing was granted; a
/// later claim may try again). Only while `owner` still holds it.
pub async fn refuse(
    pool: &PgPool,
    user_id: &str,
    grant_key: &str,
    owner: &str,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE reward_grants SET state = 'failed', owner = NULL, lease_until = NULL, \
           last_error = $3, updated_at = NOW() \
         WHERE user_id = $4 AND grant_key = $1 AND owner = $2 AND state = 'pending'",
    )
    .bind(grant_key)
    .bind(owner)
    .bind(error)
    .bind(user_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Step 3 when the outcome is unknown: the intent stays pending (in doubt), the lease is
/// given up so a retry can take it over at once, and the reconciler looks at it from
/// `next_check_at`. Only while `owner` still holds it.
pub async fn release(
    pool: &PgPool,
    user_id: &str,
    grant_key: &str,
    owner: &str,
    error: &str,
    next_check_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE reward_grants SET owner = NULL, lease_until = NULL, last_error = $3, \
           next_check_at = $4, updated_at = NOW() \
         WHERE user_id = $5 AND grant_key = $1 AND owner = $2 AND state = 'pending'",
    )
    .bind(grant_key)
    .bind(owner)
    .bind(error)
    .bind(next_check_at)
    .bind(user_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Pending intents nobody holds whose check is due at `now`, oldest check first.
pub async fn due(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<GrantIntent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM reward_grants \
         WHERE state = 'pending' AND next_check_at <= $1 \
           AND (lease_until IS NULL OR lease_until <= $1) \
         ORDER BY next_check_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Takes a due intent under `lease` if it is still pending, unheld and due; `None` when a
/// claim or another pass got there first.
pub async fn take_due(
    pool: &PgPool,
    user_id: &str,
    grant_key: &str,
    lease: &Lease<'_>,
) -> Result<Option<GrantIntent>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE reward_grants SET owner = $2, lease_until = $3, \
           attempts = attempts + CASE WHEN $5 THEN 1 ELSE 0 END, \
           last_attempt_at = CASE WHEN $5 THEN $4 ELSE last_attempt_at END, \
           next_check_at = $6, updated_at = NOW() \
         WHERE user_id = $7 AND grant_key = $1 AND state = 'pending' AND next_check_at <= $4 \
           AND (lease_until IS NULL OR lease_until <= $4) \
         RETURNING *",
    )
    .bind(grant_key)
    .bind(lease.owner)
    .bind(lease.until)
    .bind(lease.now)
    .bind(lease.attempt)
    .bind(lease.next_check_at)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// Pending intents nobody is working on at `now`: grants in doubt.
pub async fn in_doubt_count(pool: &PgPool, now: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM reward_grants \
         WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= $1)",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// A transaction whose statements, and idle time inside it, are bounded by `limit` on the
/// server side.
async fn begin_limited(
    pool: &PgPool,
    limit: Duration,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let ms = limit.as_millis().max(1);
    let begin = format!(
        "BEGIN; SET LOCAL statement_timeout = {ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {ms}"
    );
    pool.begin_with(sqlx::AssertSqlSafe(begin)).await
}

/// Where a page of the reward history starts: after this intent in the history's order
/// (`created_at`, goal, period, reward, all descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    pub created_at: DateTime<Utc>,
    pub goal_id: String,
    pub period_key: String,
    pub reward_index: i16,
}

impl HistoryCursor {
    /// The cursor just after `intent`.
    pub fn after(intent: &GrantIntent) -> Self {
        HistoryCursor {
            created_at: intent.created_at,
            goal_id: intent.goal_id.clone(),
            period_key: intent.period_key.clone(),
            reward_index: intent.reward_index,
        }
    }
}

/// A page of `user_id`'s grant intents, newest first, from `after` (exclusive) on, at most
/// `limit` of them (keyset paging on the history index: a page costs the same wherever it
/// is).
pub async fn history(
    pool: &PgPool,
    user_id: &str,
    after: Option<&HistoryCursor>,
    limit: i64,
) -> Result<Vec<GrantIntent>, sqlx::Error> {
    match after {
        None => {
            sqlx::query_as(
                "SELECT * FROM reward_grants WHERE user_id = $1 \
                 ORDER BY created_at DESC, goal_id DESC, period_key DESC, reward_index DESC \
                 LIMIT $2",
            )
            .bind(user_id)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
        Some(c) => {
            sqlx::query_as(
                "SELECT * FROM reward_grants WHERE user_id = $1 \
                   AND (created_at, goal_id, period_key, reward_index) < ($2, $3, $4, $5) \
                 ORDER BY created_at DESC, goal_id DESC, period_key DESC, reward_index DESC \
                 LIMIT $6",
            )
            .bind(user_id)
            .bind(c.created_at)
            .bind(&c.goal_id)
            .bind(&c.period_key)
            .bind(c.reward_index)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
    }
}
