//! `InitializePlayer` admission: at most N initializes run at a time; the others queue
//! (holding nothing) instead of failing, and give up with `Unavailable` only after the
//! wait limit.

mod common;

use std::time::Duration;

use common::*;
use extend_challenge_service::error::ServiceError;
use sqlx::PgPool;

async fn rows_of(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM user_goal_progress WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn initialize_queues_behind_the_limit_then_runs(pool: PgPool) {
    let h = Harness::new(pool);
    let service = h
        .service
        .clone()
        .with_initialize_limit(1, Duration::from_secs(30));
    // Another initialize holds the only permit.
    let held = service
        .initialize_permits()
        .clone()
        .acquire_owned()
        .await
        .unwrap();

    let queued = tokio::spawn({
        let service = service.clone();
        async move { service.initialize_player("ivy").await }
    });
    // Virtual time: the queued call gets every chance to run (its only timer, the 30 s
    // admission wait, is far off); resumed before Postgres is asked anything.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!queued.is_finished(), "ran past the limit");
    tokio::time::resume();
    assert_eq!(rows_of(&h.pool, "ivy").await, 0, "wrote while queued");

    drop(held);
    let done = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("admitted once the permit was released")
        .unwrap()
        .expect("initialize succeeds");
    assert_eq!(done.new_assignments, 3);
    // One marker row stands for the three default goals (`store::implicit`).
    assert_eq!(rows_of(&h.pool, "ivy").await, 1);
    // The permit came back.
    assert_eq!(service.initialize_permits().available_permits(), 1);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn initialize_gives_up_unavailable_after_the_wait(pool: PgPool) {
    let h = Harness::new(pool);
    let service = h
        .service
        .clone()
        .with_initialize_limit(1, Duration::from_millis(200));
    let _held = service
        .initialize_permits()
        .clone()
        .acquire_owned()
        .await
        .unwrap();
    // The admission wait is the service's own timer: in paused time it runs out at once.
    // Nothing before the gate does I/O; time resumes before Postgres is asked.
    tokio::time::pause();
    let err = service.initialize_player("jon").await.unwrap_err();
    tokio::time::resume();
    assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    assert_eq!(rows_of(&h.pool, "jon").await, 0);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn default_limit_is_the_pool_size(pool: PgPool) {
    let size = pool.options().get_max_connections() as usize;
    let h = Harness::new(pool);
    assert_eq!(h.service.initialize_permits().available_permits(), size);
}
