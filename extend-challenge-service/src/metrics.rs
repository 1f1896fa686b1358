//! The service's own `challenge_` metrics (the gRPC and HTTP request metrics come from the
//! shared layers; reward grants are counted by `rewards`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{IntGaugeVec, Opts, register_int_gauge_vec};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Postgres pool connections by state (`in_use`, `idle`).
pub static DB_POOL_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "challenge_db_pool_connections",
            "Postgres pool connections by state"
        ),
        &["state"]
    )
    .expect("register challenge_db_pool_connections")
});

/// Records the pool's state now.
pub fn sample_pool(pool: &PgPool) {
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    DB_POOL_CONNECTIONS
        .with_label_values(&["in_use"])
        .set((size - idle).max(0));
    DB_POOL_CONNECTIONS.with_label_values(&["idle"]).set(idle);
}

/// Samples the pool every `every` until `shutdown` fires.
pub fn spawn_pool_sampler(
    pool: PgPool,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            sample_pool(&pool);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}
