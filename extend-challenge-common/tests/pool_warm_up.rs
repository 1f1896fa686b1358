//! `store::warm_up` (`DB_WARM_CONNS`): the service opens its pool's connections before it
//! serves, so a burst of requests at start does not wait for them to open.

use extend_challenge_common::store;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[sqlx::test(migrations = false)]
async fn warm_up_leaves_the_connections_open_never_more_than_the_pool(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = store::connect_lazy(options.clone(), 4);
    assert_eq!(pool.size(), 0, "a lazy pool opens nothing by itself");

    assert_eq!(store::warm_up(&pool, 3).await, 3);
    assert_eq!(pool.size(), 3);
    // They are given back (sqlx returns a connection to the idle queue on a task of its
    // own): three requests at once then find them, and open none.
    idle(&pool, 3).await;
    let held = futures::future::try_join_all((0..3).map(|_| pool.acquire()))
        .await
        .unwrap();
    assert_eq!(pool.size(), 3);
    drop(held);

    // Asking for more than the pool holds opens the pool, at once (no acquire timeout).
    let started = std::time::Instant::now();
    assert_eq!(store::warm_up(&pool, 10).await, 4);
    assert_eq!(pool.size(), 4);
    idle(&pool, 4).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));

    // The database sees them as sessions of its own.
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sessions, 4);
    pool.close().await;

    // A database that does not answer: nothing opens, and the warm-up returns.
    let nowhere = store::connect_lazy(options.port(1), 2);
    assert_eq!(store::warm_up(&nowhere, 2).await, 0);
}

/// Waits (at most 5 s) for `n` of `pool`'s connections to be back in its idle queue.
async fn idle(pool: &sqlx::PgPool, n: usize) {
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while pool.num_idle() < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {n} connections idle", pool.num_idle()));
}

/// On a migrated database each warmed connection holds the player API's first statements
/// prepared (initialize's insert, the player's rows) with their generic plans chosen, so
/// the first real calls skip the planner, and the warm-up leaves no row.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn warm_up_prepares_the_first_statements_and_leaves_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = store::connect_lazy(options, 2);
    assert_eq!(store::warm_up(&pool, 2).await, 2);
    idle(&pool, 2).await;
    let mut held = futures::future::try_join_all((0..2).map(|_| pool.acquire()))
        .await
        .unwrap();
    assert_eq!(pool.size(), 2, "the warmed connections, no new one");
    let is_initialize = |s: &str| s.contains("WITH ins AS") && s.contains("user_goal_progress");
    let is_rows = |s: &str| s.starts_with("SELECT") && s.ends_with("WHERE user_id = $1");
    for conn in &mut held {
        let prepared: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements",
        )
        .fetch_all(&mut **conn)
        .await
        .unwrap();
        for wanted in [&is_initialize as &dyn Fn(&str) -> bool, &is_rows] {
            let (statement, generic, custom) = prepared
                .iter()
                .find(|(s, ..)| wanted(s))
                .unwrap_or_else(|| panic!("not prepared: {prepared:?}"));
            // Planned five times, then the generic plan, kept: later calls skip the planner.
            assert_eq!(*custom, 5, "{statement}");
            assert!(*generic >= 1, "no generic plan yet: {statement}");
            assert_eq!(
                (*generic + *custom) as usize,
                store::player::WARM_RUNS,
                "{statement}"
            );
        }
    }
    drop(held);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM user_goal_progress")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the warm-up rolled back");
}
