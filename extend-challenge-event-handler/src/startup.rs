//! Start-up helpers `main` wires together: migrations that wait for Postgres, and the
//! shutdown signal.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::engine::Backoff;

/// Applies the migrations, retrying with capped backoff while Postgres is unreachable.
/// Returns `Ok(false)` if `shutdown` fired first. A migration error that is not a
/// connection problem (a broken migration, a checksum mismatch) is returned at once.
pub async fn migrate_with_retry(
    pool: &PgPool,
    shutdown: &CancellationToken,
) -> Result<bool, sqlx::migrate::MigrateError> {
    let mut backoff = Backoff::new((Duration::from_millis(500), Duration::from_secs(10)));
    let mut attempt = 1u32;
    loop {
        match extend_challenge_common::store::migrate(pool).await {
            Ok(()) => {
                tracing::info!(attempt, "database migrated");
                return Ok(true);
            }
            Err(e) if is_connection_problem(&e) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    attempt,
                    database = %extend_challenge_common::store::describe_target(
                        &pool.connect_options()
                    ),
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

fn is_connection_problem(e: &sqlx::migrate::MigrateError) -> bool {
    match e {
        sqlx::migrate::MigrateError::Execute(err) => {
            extend_challenge_common::store::is_connectivity(err)
        }
        _ => false,
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
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
