//! `extend-challenge-service migrate up | down [N] | status` (CONTRACT §4): the embedded
//! migrations run on their own, as the deployment guide describes (an init container, a
//! Kubernetes Job, by hand). Every migration is reversible: `NNNN_name.up.sql` beside
//! `NNNN_name.down.sql`; [`check_reversible`] refuses a migration without its down half.
//! sqlx holds a Postgres advisory lock while it migrates, so a Job and starting replicas
//! never run the same migration twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::MIGRATOR;
use crate::store::partitions::{self, MAX_PARTITIONS};

pub const USAGE: &str = "\
usage: extend-challenge-service migrate <command>

commands:
  up [--partitions N]
              apply every pending migration; N (default DB_PARTITIONS, else 0: none) hash
              partitions by user_id for the per-user tables, if migration 0012 is pending
              (docs/SCALING.md). To change N later: down to 0011, then up with the new N.
  down [N]    revert the last N applied migrations (default 1); N=all reverts everything
  status      list the migrations, applied or pending

The database comes from DATABASE_URL or DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD/DB_SSLMODE.
Set MIGRATE_ON_START=false on the binaries when a Job (or an operator) runs this instead.";

/// A parsed `migrate` command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `partitions`: `--partitions N`, else the caller's default (`DB_PARTITIONS`).
    Up {
        partitions: Option<u16>,
    },
    /// Revert this many applied migrations (`usize::MAX`: all).
    Down(usize),
    Status,
}

/// Parses the arguments after `migrate`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["up"] => Ok(Command::Up { partitions: None }),
        ["up", "--partitions", n] => parse_partitions(n),
        ["up", flag] if flag.starts_with("--partitions=") => {
            parse_partitions(&flag["--partitions=".len()..])
        }
        ["status"] => Ok(Command::Status),
        ["down"] => Ok(Command::Down(1)),
        ["down", "all"] => Ok(Command::Down(usize::MAX)),
        ["down", n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Command::Down(n)),
            _ => Err(format!(
                "down takes a positive number of migrations or 'all', not {n:?}"
            )),
        },
        [] => Err("missing command".into()),
        other => Err(format!("unknown arguments: {}", other.join(" "))),
    }
}

fn parse_partitions(n: &str) -> Result<Command, String> {
    match n.parse::<u16>() {
        Ok(n) if n <= MAX_PARTITIONS => Ok(Command::Up {
            partitions: Some(n),
        }),
        _ => Err(format!(
            "--partitions takes 0 (none) to {MAX_PARTITIONS}, not {n:?}"
        )),
    }
}

/// One embedded migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub applied_on: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationsError {
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("migration {0} has no down migration ({0:04}_<name>.down.sql): it cannot be reverted")]
    NotReversible(i64),
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the database has migration {0}, which this binary does not know (a newer release applied it?)"
    )]
    Unknown(i64),
    #[error(
        "--partitions {requested}: the tables already have {actual} partitions (0: none); \
         migration 0012 applies once. To change it: migrate down to 0011, then up --partitions {requested}"
    )]
    Partitions { requested: u16, actual: i64 },
}

/// Every up migration has its down half (tests and `down` rely on it).
pub fn check_reversible() -> Result<(), MigrationsError> {
    for m in MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        let has_down = MIGRATOR
            .iter()
            .any(|d| d.version == m.version && d.migration_type.is_down_migration());
        if !has_down {
            return Err(MigrationsError::NotReversible(m.version));
        }
    }
    Ok(())
}

/// Versions applied, with when (empty before the first migration).
async fn applied(pool: &PgPool) -> Result<HashMap<i64, DateTime<Utc>>, MigrationsError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT version, installed_on FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The embedded migrations, oldest first, with their state in the database.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, MigrationsError> {
    let applied = applied(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            applied_on: applied.get(&m.version).copied(),
        })
        .collect())
}

/// Applies the pending migrations (with the default partition count, should migration 0012
/// be pending); returns the versions applied now.
pub async fn up(pool: &PgPool) -> Result<Vec<i64>, MigrationsError> {
    up_with(pool, partitions::DEFAULT_PARTITIONS).await
}

/// Applies the pending migrations; a pending migration 0012 gives the per-user tables
/// `partitions` hash partitions by user ([`partitions::migrate_with`]). Returns the
/// versions applied now.
pub async fn up_with(pool: &PgPool, partitions: u16) -> Result<Vec<i64>, MigrationsError> {
    let before = applied(pool).await?;
    partitions::migrate_with(pool, partitions).await?;
    let after = applied(pool).await?;
    let mut new: Vec<i64> = after
        .keys()
        .filter(|v| !before.contains_key(*v))
        .copied()
        .collect();
    new.sort_unstable();
    Ok(new)
}

/// Reverts the last `n` applied migrations, newest first; returns the versions reverted.
/// Refuses before touching anything when one of them has no down migration.
pub async fn down(pool: &PgPool, n: usize) -> Result<Vec<i64>, MigrationsError> {
    let mut versions: Vec<i64> = applied(pool).await?.into_keys().collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let revert: Vec<i64> = versions.iter().take(n).copied().collect();
    for v in &revert {
        if !MIGRATOR.version_exists(*v) {
            return Err(MigrationsError::Unknown(*v));
        }
        let reversible = MIGRATOR
            .iter()
            .any(|m| m.version == *v && m.migration_type.is_down_migration());
        if !reversible {
            return Err(MigrationsError::NotReversible(*v));
        }
    }
    let target = versions.get(n).copied().unwrap_or(0);
    MIGRATOR.undo(pool, target).await?;
    Ok(revert)
}

/// The migration that partitions the per-user tables.
const PARTITION_MIGRATION: i64 = 12;

/// One line: how the per-user tables are partitioned.
async fn write_layout(pool: &PgPool, out: &mut impl std::io::Write) -> Result<(), MigrationsError> {
    let layout = partitions::layout(pool).await?;
    if layout.is_empty() {
        return Ok(());
    }
    let tables: Vec<String> = layout
        .iter()
        .map(|(t, n)| match n {
            0 => format!("{t} (none)"),
            n => format!("{t} ({n})"),
        })
        .collect();
    writeln!(out, "partitions by user_id: {}", tables.join(", "))?;
    Ok(())
}

/// Runs one command, writing what happened to `out`.
pub async fn run(
    pool: &PgPool,
    command: Command,
    out: &mut impl std::io::Write,
) -> Result<(), MigrationsError> {
    run_with(pool, command, partitions::DEFAULT_PARTITIONS, out).await
}

/// [`run`], with `up` without `--partitions` taking `default_partitions` (`DB_PARTITIONS`).
/// Only an explicit `--partitions N` that the tables do not have is an error.
pub async fn run_with(
    pool: &PgPool,
    command: Command,
    default_partitions: u16,
    out: &mut impl std::io::Write,
) -> Result<(), MigrationsError> {
    match command {
        Command::Up { partitions: n } => {
            let requested = n.unwrap_or(default_partitions);
            let applied = up_with(pool, requested).await?;
            if applied.is_empty() {
                writeln!(out, "migrate up: nothing to apply, the schema is current")?;
            }
            for v in &applied {
                writeln!(out, "migrate up: applied {v:04}")?;
            }
            write_layout(pool, out).await?;
            // Asked for explicitly but not what the tables have (0012 ran before).
            let actual = partitions::partitions(pool).await?;
            let wanted = if requested <= 1 {
                0
            } else {
                i64::from(requested)
            };
            if n.is_some() && actual != wanted && !applied.contains(&PARTITION_MIGRATION) {
                return Err(MigrationsError::Partitions { requested, actual });
            }
        }
        Command::Down(n) => {
            let reverted = down(pool, n).await?;
            if reverted.is_empty() {
                writeln!(out, "migrate down: nothing applied, nothing to revert")?;
            }
            for v in reverted {
                writeln!(out, "migrate down: reverted {v:04}")?;
            }
        }
        Command::Status => {
            for m in status(pool).await? {
                let state = match m.applied_on {
                    Some(t) => format!("applied {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
                    None => "pending".to_string(),
                };
                writeln!(out, "{:04}  {:<40} {state}", m.version, m.description)?;
            }
            write_layout(pool, out).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_commands() {
        assert_eq!(parse(&args(&["up"])), Ok(Command::Up { partitions: None }));
        assert_eq!(
            parse(&args(&["up", "--partitions", "16"])),
            Ok(Command::Up {
                partitions: Some(16)
            })
        );
        assert_eq!(
            parse(&args(&["up", "--partitions=0"])),
            Ok(Command::Up {
                partitions: Some(0)
            })
        );
        for bad in [
            &["down", "0"][..],
            &["down", "-1"],
            &["sideways"],
            &[],
            &["up", "now"],
            &["up", "--partitions"],
            &["up", "--partitions", "1025"],
            &["up", "--partitions", "-1"],
            &["up", "--partitions=x"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_migration_is_reversible() {
        check_reversible().unwrap();
        assert!(MIGRATOR.iter().count() >= 8);
    }
}
