//! `event_ledger`: the ids of the events whose deltas a committed batch applied (or
//! dead-lettered). [`super::flush`] writes it in the batch transaction; this module reads it
//! (was this redelivered event applied already?) and trims it.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;

/// Advisory lock held (per transaction) by the replica trimming the ledger.
const PURGE_LOCK: i64 = 0x4543_4c45_4447_4552; // "ECLEDGER"

/// Of `ids`, those the ledger holds.
pub async fn applied(pool: &PgPool, ids: &[&str]) -> Result<HashSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM event_ledger WHERE event_id = ANY($1::text[])")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(found.into_iter().collect())
}

/// Deletes ledger rows older than `ttl`, `batch` rows per transaction, while this process
/// holds the purge lock (one replica at a time). Returns the rows deleted, or `None` when
/// another replica holds the lock.
pub async fn purge_expired(
    pool: &PgPool,
    ttl: Duration,
    batch: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok((total > 0).then_some(total));
        }
        let deleted = sqlx::query(
            "DELETE FROM event_ledger WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM event_ledger \
             WHERE applied_at < now() - make_interval(secs => $1) LIMIT $2))",
        )
        .bind(ttl.as_secs_f64())
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(Some(total));
        }
    }
}
