//! Goals as rich as the best (CONTRACT §8) through the service: repeatable goals (each
//! repetition its own grant key, `timesClaimed` / `maxTimes`), over REST and gRPC, on a real
//! Postgres.

mod common;

use std::sync::Arc;

use common::*;
use extend_challenge_common::config;
use http::StatusCode;
use sqlx::PgPool;

const GOALS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/goals.json");
const AGAIN: &str = "/challenge/v1/challenges/rich/goals/again/claim";

fn harness(pool: PgPool) -> Harness {
    let config = Arc::new(config::load_from_path(GOALS).expect("goals fixture is valid"));
    Harness::with_config(pool, config, None)
}

async fn periods(pool: &PgPool, user: &str, goal: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT period_key FROM reward_grants WHERE user_id = $1 AND goal_id = $2 \
         ORDER BY period_key",
    )
    .bind(user)
    .bind(goal)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_repeatable_goal_is_paid_once_per_repetition_up_to_max_times(pool: PgPool) {
    let h = harness(pool.clone());
    let goal_of = |list: &serde_json::Value| goal(find(list, "rich"), "again").clone();

    h.completed("ann", "again").await;
    let (s, body) = h.post(AGAIN, "ann", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Paid once; the goal starts again.
    let (_, list) = h.get("/challenge/v1/challenges", "ann").await;
    let g = goal_of(&list);
    assert_eq!(
        (
            &g["status"],
            &g["progress"],
            &g["timesClaimed"],
            &g["maxTimes"]
        ),
        (&"not_started".into(), &0.into(), &1.into(), &2.into())
    );
    assert_eq!(g["claimedAt"], "");
    // Not completed again yet: the contract's "not completed" answer.
    let (s, body) = h.post(AGAIN, "ann", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["message"],
        "Goal not completed. Please wait 1 second and try again. (goal_id: again, status: not_started)"
    );

    // The second repetition.
    h.set_row("ann", "again", 3, "completed", Some(NOON)).await;
    let (s, body) = h.post(AGAIN, "ann", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, list) = h.get("/challenge/v1/challenges", "ann").await;
    let g = goal_of(&list);
    assert_eq!(
        (&g["status"], &g["timesClaimed"]),
        (&"claimed".into(), &2.into())
    );
    // maxTimes reached: final.
    let (s, _) = h.post(AGAIN, "ann", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(h.granter.calls(), 2, "one grant per repetition");
    assert_eq!(periods(&pool, "ann", "again").await, ["rep:0", "rep:1"]);

    // A goal without repeat shows its claims and no limit.
    let (_, list) = h.get("/challenge/v1/challenges", "bea").await;
    let forever = goal(find(&list, "rich"), "forever");
    assert_eq!(
        (&forever["timesClaimed"], &forever["maxTimes"]),
        (&0.into(), &0.into())
    );
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn unlimited_repeats_keep_paying_with_a_new_key_each_time(pool: PgPool) {
    let h = harness(pool.clone());
    let forever = "/challenge/v1/challenges/rich/goals/forever/claim";
    h.completed("cal", "forever").await;
    for n in 1..=4 {
        let (s, body) = h.post(forever, "cal", "").await;
        assert_eq!(s, StatusCode::OK, "claim {n}: {body}");
        h.set_row("cal", "forever", 1, "completed", Some(NOON))
            .await;
    }
    assert_eq!(h.granter.calls(), 4);
    assert_eq!(
        periods(&pool, "cal", "forever").await,
        ["rep:0", "rep:1", "rep:2", "rep:3"]
    );
    let times: i32 = sqlx::query_scalar(
        "SELECT times_claimed FROM user_goal_progress WHERE user_id = 'cal' AND goal_id = 'forever'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(times, 4);
}
