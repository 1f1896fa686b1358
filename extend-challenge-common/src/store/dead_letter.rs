//! `event_dead_letters`: one user's deltas that Postgres refused for a data reason, kept
//! with the ids of the events behind them and the error (CONTRACT §2). The event handler
//! writes them when it isolates a refused user from a batch; an operator lists and replays
//! them (`extend-challenge-event-handler dead-letters …`).
//!
//! The exact user id, namespace and deltas are stored as JSON text (`payload`): a JSON
//! escape keeps a NUL, which a text column refuses and which is the usual poison. The
//! `user_id` and `namespace` columns show them for reading, control characters escaped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::flush::{self, BatchItem, BatchUser, FlushError, Flushed};
use crate::config::ChallengeConfig;
use crate::progress::Delta;

/// The exact content of a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub user_id: String,
    pub namespace: String,
    pub deltas: Vec<GoalDelta>,
}

/// One refused (user, goal) delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalDelta {
    pub goal_id: String,
    pub delta: StoredDelta,
}

/// [`Delta`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum StoredDelta {
    Count {
        n: u32,
    },
    Value {
        first_base: i32,
        first_at: (i64, u64),
        latest: i32,
        latest_at: (i64, u64),
    },
}

impl From<Delta> for StoredDelta {
    fn from(d: Delta) -> Self {
        match d {
            Delta::Count(n) => StoredDelta::Count { n },
            Delta::Value {
                first_base,
                first_at,
                latest,
                latest_at,
            } => StoredDelta::Value {
                first_base,
                first_at,
                latest,
                latest_at,
            },
        }
    }
}

impl From<StoredDelta> for Delta {
    fn from(d: StoredDelta) -> Self {
        match d {
            StoredDelta::Count { n } => Delta::Count(n),
            StoredDelta::Value {
                first_base,
                first_at,
                latest,
                latest_at,
            } => Delta::Value {
                first_base,
                first_at,
                latest,
                latest_at,
            },
        }
    }
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub event_ids: Vec<String>,
    pub payload: Payload,
    pub error: String,
    pub replay_attempts: i32,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// `s` with control characters written as `\u{..}` (for the readable columns and logs).
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

const INSERT_SQL: &str = "\
INSERT INTO event_dead_letters (user_id, namespace, event_ids, payload, error) \
VALUES ($1, $2, $3, $4::json, $5) RETURNING id";

/// Stores one user's refused items (all of the same user) with the ids of their events
/// and the error, and records those ids in the event ledger, in one transaction: the
/// events are then dead-lettered, which acknowledges them. Like a batch, each phase
/// (statements, `COMMIT`) must finish within `timeout`, and a `COMMIT` whose answer is lost
/// comes back as [`FlushError::CommitUnconfirmed`] (ask `flush::transaction_status`): storing
/// the same dead letter twice would let a replay apply it twice.
pub async fn insert(
    pool: &PgPool,
    items: &[BatchItem],
    user: &BatchUser,
    error: &str,
    timeout: Duration,
) -> Result<i64, FlushError> {
    let namespace = items.first().map(|i| &*i.namespace).unwrap_or_default();
    let payload = Payload {
        user_id: user.user_id.to_string(),
        namespace: namespace.to_string(),
        deltas: items
            .iter()
            .map(|i| GoalDelta {
                goal_id: i.goal.id.clone(),
                delta: i.delta.into(),
            })
            .collect(),
    };
    let json = serde_json::to_string(&payload)
        .map_err(|e| FlushError::NotWritten(sqlx::Error::Encode(Box::new(e))))?;
    let event_ids: Vec<String> = user.event_ids.iter().map(|id| escape_control(id)).collect();
    let work = async {
        let mut tx = pool.begin().await?;
        let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(INSERT_SQL)
            .bind(escape_control(&user.user_id))
            .bind(escape_control(namespace))
            .bind(&event_ids)
            .bind(json)
            .bind(escape_control(error))
            .fetch_one(&mut *tx)
            .await?;
        let ids: Vec<&str> = user.event_ids.iter().map(|id| &**id).collect();
        flush::record_applied(&mut tx, &ids).await?;
        Ok::<_, sqlx::Error>((tx, xid, id))
    };
    let (tx, xid, id) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(FlushError::NotWritten(e)),
        Err(_) => return Err(FlushError::TimedOut(timeout)),
    };
    let reason = match tokio::time::timeout(timeout, tx.commit()).await {
        Ok(Ok(())) => return Ok(id),
        Ok(Err(e @ sqlx::Error::Database(_))) => return Err(FlushError::NotWritten(e)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    Err(FlushError::CommitUnconfirmed {
        xid,
        flushed: Flushed::default(),
        reason,
    })
}

type Row = (
    i64,
    DateTime<Utc>,
    Vec<String>,
    String,
    String,
    i32,
    Option<DateTime<Utc>>,
);

fn decode(row: Row) -> Result<DeadLetter, sqlx::Error> {
    let (id, created_at, event_ids, payload, error, replay_attempts, replayed_at) = row;
    let payload: Payload =
        serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(DeadLetter {
        id,
        created_at,
        event_ids,
        payload,
        error,
        replay_attempts,
        replayed_at,
    })
}

const SELECT_COLUMNS: &str =
    "id, created_at, event_ids, payload::text, error, replay_attempts, replayed_at";

/// Dead letters in id order; with `include_replayed`, the replayed ones too.
pub async fn list(pool: &PgPool, include_replayed: bool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM event_dead_letters \
         WHERE $1 OR replayed_at IS NULL ORDER BY id"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(include_replayed)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(decode).collect()
}

/// The result of [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// The deltas were written and the dead letter marked replayed.
    Applied { updated: u64 },
    /// No such dead letter, or it was replayed already.
    NotPending,
}

/// Why a replay failed; the dead letter stays, with this as its error.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Re-applies dead letter `id` through the batch code (the same statements as a flush, in
/// one transaction with marking it replayed). `defaults` as in
/// [`flush::flush_batch`]. On failure the dead letter stays, its error replaced by the new
/// one and its attempt counted.
pub async fn replay(
    pool: &PgPool,
    id: i64,
    config: &ChallengeConfig,
    defaults: Option<&super::implicit::Defaults>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Replayed, ReplayError> {
    let attempt = tokio::time::timeout(timeout, replay_tx(pool, id, config, defaults, now))
        .await
        .unwrap_or_else(|_| {
            Err(ReplayError::Refused(format!(
                "replay timed out after {timeout:?}"
            )))
        });
    if let Err(e) = &attempt {
        let message = format!("replay failed: {e}");
        sqlx::query(
            "UPDATE event_dead_letters SET error = $2, replay_attempts = replay_attempts + 1 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(escape_control(&message))
        .execute(pool)
        .await?;
    }
    attempt
}

async fn replay_tx(
    pool: &PgPool,
    id: i64,
    config: &ChallengeConfig,
    defaults: Option<&super::implicit::Defaults>,
    now: DateTime<Utc>,
) -> Result<Replayed, ReplayError> {
    let mut tx = pool.begin().await?;
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM event_dead_letters \
         WHERE id = $1 AND replayed_at IS NULL FOR UPDATE"
    );
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(Replayed::NotPending);
    };
    let letter = decode(row)?;
    let user_id: Arc<str> = Arc::from(letter.payload.user_id.as_str());
    let namespace: Arc<str> = Arc::from(letter.payload.namespace.as_str());
    let mut items = Vec::with_capacity(letter.payload.deltas.len());
    for d in &letter.payload.deltas {
        let goal = config.goal_or_part(&d.goal_id).ok_or_else(|| {
            ReplayError::Refused(format!(
                "goal '{}' is no longer in the challenge config",
                d.goal_id
            ))
        })?;
        items.push(BatchItem {
            user_id: user_id.clone(),
            goal: goal.clone(),
            namespace: namespace.clone(),
            delta: d.delta.into(),
        });
    }
    // The events are in the ledger since they were dead-lettered.
    // Its events happened before it was stored: an erasure since then drops them.
    let users = [BatchUser {
        user_id,
        keys: items.len(),
        event_ids: Vec::new(),
        oldest_at: Some(letter.created_at),
    }];
    sqlx::query(flush::LOCK_SQL).execute(&mut *tx).await?;
    let (flushed, _) = flush::write_batch(&mut tx, &items, &users, defaults, now).await?;
    if !flushed.deferred.is_empty() {
        return Err(ReplayError::Refused(
            "a row of the user is locked by another transaction; try again".into(),
        ));
    }
    sqlx::query(
        "UPDATE event_dead_letters SET replayed_at = $2, \
         replay_attempts = replay_attempts + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Replayed::Applied {
        updated: flushed.outcome.updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_reading() {
        assert_eq!(escape_control("plain-id"), "plain-id");
        assert_eq!(escape_control("nul\0user"), "nul\\u{0}user");
        assert_eq!(escape_control("a\nb\u{7f}"), "a\\u{a}b\\u{7f}");
    }

    #[test]
    fn deltas_round_trip_through_json_with_a_nul() {
        let p = Payload {
            user_id: "nul\0user".into(),
            namespace: "ns".into(),
            deltas: vec![
                GoalDelta {
                    goal_id: "g".into(),
                    delta: Delta::Count(3).into(),
                },
                GoalDelta {
                    goal_id: "h".into(),
                    delta: Delta::Value {
                        first_base: -1,
                        first_at: (5, 6),
                        latest: 7,
                        latest_at: (8, u64::MAX),
                    }
                    .into(),
                },
            ],
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\\u0000"), "{json}");
        assert!(json.contains("\"kind\":\"value\""), "{json}");
        assert!(json.contains("firstBase"), "{json}");
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
    }
}
