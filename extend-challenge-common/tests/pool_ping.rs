//! `store::connect_lazy`: a pooled connection is pinged before it is handed out only when it
//! sat idle for `PING_IF_IDLE_FOR`; under load (idle for less) it is handed out as it is,
//! saving a round trip per transaction.

use std::time::Duration;

use extend_challenge_common::store;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A pool of one connection pinged after `ping_if_idle_for`, whose backend was killed
/// (from another session) while the connection sat idle in the pool.
async fn pool_with_a_dead_idle_connection(
    options: PgConnectOptions,
    ping_if_idle_for: Duration,
) -> PgPool {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .unwrap();
    let pool = store::connect_lazy_pinging(options, 1, ping_if_idle_for);
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The connection goes back to the idle queue on a task of sqlx's own.
    while pool.num_idle() < 1 {
        tokio::task::yield_now().await;
    }
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(killed, "backend {pid} did not end");
    pool
}

#[sqlx::test(migrations = false)]
async fn an_idle_connection_is_pinged_and_a_dead_one_replaced(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let idle_for = Duration::from_millis(50);
    let pool = pool_with_a_dead_idle_connection(options, idle_for).await;
    // The pool's clock: the connection must have been idle this long to be pinged.
    tokio::time::sleep(idle_for * 2).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("the ping found the dead connection and the pool opened another");
    assert_eq!(one, 1);
}

#[sqlx::test(migrations = false)]
async fn a_connection_used_a_moment_ago_is_handed_out_without_a_ping(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = pool_with_a_dead_idle_connection(options, Duration::from_secs(3600)).await;
    // No ping: the statement is what finds the connection gone, as one cut mid-statement
    // would be (with sqlx's default ping before each acquire, it would have succeeded).
    let err = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect_err("the dead connection was handed out unpinged");
    // Postgres says why it closed (57P01) or the socket is simply gone: either way a
    // connectivity fault, which the flush retries and the service reports as unavailable.
    assert!(store::is_connectivity(&err), "{err:?}");
    // sqlx tests a connection as it goes back to the pool and drops a broken one: the
    // next statement waits for the pool's one slot and gets a new connection.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("the pool opened a new connection");
    assert_eq!(one, 1);
}
