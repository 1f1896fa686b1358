//! Start-up pieces both binaries wire together the same way: migrations that wait for
//! Postgres, the shutdown signal, the capped backoff they (and the handler's flush) retry
//! with, and gRPC reflection over the compiled descriptors.
//!
//! One behaviour for both: a database that is not reachable yet is waited for (with capped
//! backoff) until it answers or the process is told to stop; anything else a migration can
//! fail with (a missing database, bad credentials, a broken migration, a checksum mismatch)
//! is an error at once, since waiting would not fix it.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::MigrateError;
use tokio_util::sync::CancellationToken;

use crate::pb::FILE_DESCRIPTOR_SET;
use crate::store;

/// First and longest wait between two migration attempts.
const MIGRATE_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(10));

/// Exponential backoff with a cap and up to 20 % jitter (so replicas started together do not
/// retry in step).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// `(first, max)`: the first delay, doubled after each use up to `max`.
    pub fn new((first, max): (Duration, Duration)) -> Self {
        Self {
            first,
            max,
            current: first,
        }
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.first;
    }

    /// The delay to wait now; the next one is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::random_range(0.0..0.2);
        d.mul_f64(1.0 + jitter)
    }
}

/// Applies the embedded migrations, retrying with capped backoff while Postgres is
/// unreachable. Returns `Ok(false)` if `shutdown` fired first. A migration error that is not
/// a connection problem is returned at once. The retry warnings name the database
/// (`host:port/name`) and the cause. `partitions`: `DB_PARTITIONS`, for migration 0012 if
/// it is pending ([`store::partitions::migrate_with`]).
pub async fn migrate_with_retry(
    pool: &PgPool,
    partitions: u16,
    shutdown: &CancellationToken,
) -> Result<bool, MigrateError> {
    let mut backoff = Backoff::new(MIGRATE_BACKOFF);
    let mut attempt = 1u32;
    loop {
        match store::partitions::migrate_with(pool, partitions).await {
            Ok(()) => {
                tracing::info!(attempt, "database migrated");
                return Ok(true);
            }
            Err(e) if is_connection_problem(&e) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    attempt,
                    database = %store::describe_target(&pool.connect_options()),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "database not reachable yet; retrying the migration"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(false),
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Only an unreachable database is worth waiting for.
fn is_connection_problem(e: &MigrateError) -> bool {
    matches!(e, MigrateError::Execute(err) if store::is_connectivity(err))
}

/// Cancels `token` on SIGTERM or SIGINT (logging which).
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
            tracing::info!("interrupt: shutting down");
        }
        token.cancel();
    });
}

/// gRPC reflection over the compiled descriptors (ours and grpc.health.v1), advertising
/// exactly `advertised`, in that order: the descriptor set holds every AsyncAPI service, most
/// of which neither binary implements. Build it with `build_v1()` and `build_v1alpha()`.
pub fn reflection(advertised: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in advertised {
        b = b.with_service_name(*name);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new((ms(100), ms(350)));
        let within = |d: Duration, base: u64| d >= ms(base) && d <= ms(base * 6 / 5);
        assert!(within(b.next_delay(), 100));
        assert!(within(b.next_delay(), 200));
        assert!(within(b.next_delay(), 350));
        assert!(within(b.next_delay(), 350));
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}

/// What both binaries have before they build: the pool (migrated) and the catalog version to
/// serve first.
pub struct Prepared {
    pub pool: PgPool,
    pub catalog: crate::live_catalog::Loaded,
}

/// Why start-up could not prepare.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("invalid challenge config: {0}")]
    File(#[from] crate::config::ConfigError),
    #[error("applying database migrations to {target}: {source}")]
    Migrate {
        target: String,
        #[source]
        source: MigrateError,
    },
    #[error(transparent)]
    Catalog(#[from] crate::live_catalog::StartupError),
}

/// The one start-up shape of both binaries, up to `build` (docs/LIVE_OPS.md): the
/// `challenges.json` read and validated (a bad file fails before any wait), the pool, the
/// migrations (`MIGRATE_ON_START`, waiting for an unreachable database until `shutdown`:
/// `Ok(None)` then), the catalog (`live_catalog::load_at_startup`).
pub async fn prepare(
    settings: &crate::settings::Settings,
    shutdown: &CancellationToken,
) -> Result<Option<Prepared>, PrepareError> {
    let file = crate::live_catalog::CatalogFile::read(&settings.config_path)?;
    let pool = store::connect_lazy(settings.db.connect.clone(), settings.db.max_open_conns);
    let target = store::describe_target(&settings.db.connect);
    if !settings.db.migrate_on_start {
        tracing::info!(database = %target, "MIGRATE_ON_START=false: not applying database migrations");
    } else if !migrate_with_retry(&pool, settings.db.partitions, shutdown)
        .await
        .map_err(|source| PrepareError::Migrate { target, source })?
    {
        return Ok(None);
    }
    let catalog = crate::live_catalog::load_at_startup(&pool, &file).await?;
    tracing::info!(
        path = %settings.config_path,
        version = catalog.version,
        challenges = catalog.config.challenges.len(),
        goals = catalog.config.goal_count(),
        "challenge catalog loaded"
    );
    Ok(Some(Prepared { pool, catalog }))
}
