//! Hash partitioning of the per-user tables by `user_id` (migration 0012, docs/SCALING.md).
//!
//! The number of partitions is chosen when migration 0012 runs, and only then: by
//! `extend-challenge-service migrate up --partitions N`, or by `DB_PARTITIONS` for the
//! binaries' start-up migrations. [`migrate_with`] hands it to the migration as the session
//! setting [`SETTING`] on the connection that migrates; the migration reads it with
//! `current_setting`. Once applied, the catalog is the record: [`layout`] reads it back.
//! 0 (or 1) leaves the tables unpartitioned.
//!
//! Every statement on these tables names the user (`user_id = …`, or a join on the user
//! ids of a batch), so Postgres prunes to the partitions of those users
//! (`tests/partition_pruning.rs` checks the list, the flush, the claim and the erasure with
//! `EXPLAIN ANALYZE`); the periodic jobs (retention cleanup, the reconciler's and the
//! auto-claim's scans of due work, tombstone purge) scan every partition, as they scanned
//! the whole table before.

use sqlx::PgPool;
use sqlx::migrate::MigrateError;

use super::MIGRATOR;

/// The session setting migration 0012 reads its partition count from.
pub const SETTING: &str = "extend_challenge.partitions";

/// The partition count when neither `--partitions` nor `DB_PARTITIONS` says: none.
/// Partitioning is an option because it is not free on one small Postgres (BENCHMARKS.md,
/// "Issue 22 part 3").
pub const DEFAULT_PARTITIONS: u16 = 0;

/// The largest partition count migration 0012 accepts.
pub const MAX_PARTITIONS: u16 = 1024;

/// The tables migration 0012 partitions by `user_id`.
pub const PARTITIONED_TABLES: [&str; 5] = [
    "user_goal_progress",
    "reward_grants",
    "reward_outbox",
    "user_erasures",
    "event_dead_letters",
];

/// Applies the pending migrations on one connection of `pool` that carries
/// `partitions` as [`SETTING`] (sqlx's advisory lock is taken on it too). Only a pending
/// migration 0012 reads it.
pub async fn migrate_with(pool: &PgPool, partitions: u16) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT set_config($1, $2, false)")
        .bind(SETTING)
        .bind(partitions.to_string())
        .execute(&mut *conn)
        .await?;
    let done = MIGRATOR.run(&mut *conn).await;
    // The connection goes back to the pool: leave nothing behind on it.
    let reset = sqlx::query("SELECT set_config($1, '', false)")
        .bind(SETTING)
        .execute(&mut *conn)
        .await;
    done?;
    reset?;
    Ok(())
}

/// Every per-user table partitioned by `user_id`: those of [`PARTITIONED_TABLES`], and the
/// event trail, which migration 0015 creates partitioned as the progress table is.
pub const PER_USER_TABLES: [&str; 6] = [
    "user_goal_progress",
    "reward_grants",
    "reward_outbox",
    "user_erasures",
    "event_dead_letters",
    "event_trail",
];

/// Each table of [`PER_USER_TABLES`] that exists, with its number of partitions (0: a
/// plain table).
pub async fn layout(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.name, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) \
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) \
         JOIN pg_class c ON c.oid = to_regclass(t.name) \
         ORDER BY t.n",
    )
    .bind(PER_USER_TABLES)
    .fetch_all(pool)
    .await
}

/// The partition count of the progress table (0: not partitioned, or no table yet).
pub async fn partitions(pool: &PgPool) -> Result<i64, sqlx::Error> {
    Ok(layout(pool)
        .await?
        .into_iter()
        .find(|(t, _)| t == "user_goal_progress")
        .map_or(0, |(_, n)| n))
}
