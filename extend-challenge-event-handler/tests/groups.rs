//! Requirement groups and repeatable goals (CONTRACT §8) on the handler's side: events of
//! different stat codes reach the requirements of one goal's row — in one batch too — each
//! by its own mode, and the goal completes when any group is all met; a repeatable goal
//! counts again after a claim.

mod common;

use std::sync::Arc;

use common::*;
use extend_challenge_common::config::parse_and_validate;
use serde_json::json;
use sqlx::PgPool;

fn config() -> Arc<extend_challenge_common::config::ChallengeConfig> {
    let text = json!({"challenges": [{"challengeId": "c", "name": "C", "goals": [
        {
            "goalId": "either", "name": "Either", "eventSource": "statistic",
            "defaultAssigned": true, "autoClaim": true,
            "reward": {"type": "ITEM", "rewardId": "i", "quantity": 1},
            "requirementGroups": [
                {"requirements": [
                    {"statCode": "kills", "operator": ">=", "targetValue": 10},
                    {"statCode": "wins", "operator": ">=", "targetValue": 2,
                     "progressMode": "increment"}
                ]},
                {"requirements": [
                    {"statCode": "deaths", "operator": "=", "targetValue": 0},
                    {"statCode": "score", "operator": ">=", "targetValue": 100,
                     "progressMode": "relative"}
                ]}
            ]
        },
        {
            "goalId": "again", "name": "Again", "eventSource": "login", "defaultAssigned": true,
            "requirement": {"statCode": "logins", "operator": ">=", "targetValue": 2},
            "reward": {"type": "ITEM", "rewardId": "i", "quantity": 1},
            "repeat": {"maxTimes": 3}
        }
    ]}]})
    .to_string();
    Arc::new(parse_and_validate("groups.json", &text).expect("valid"))
}

async fn row(pool: &PgPool, user: &str, goal: &str) -> (i32, String, Option<String>) {
    sqlx::query_as(
        "SELECT progress, status, req_state FROM user_goal_progress \
         WHERE user_id = $1 AND goal_id = $2",
    )
    .bind(user)
    .bind(goal)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn requirements_of_one_goal_fold_into_its_row(pool: PgPool) {
    let h = start_with_config(
        pool.clone(),
        BUFFERED,
        at("2025-11-05T12:00:00Z"),
        config(),
        |b| b,
    )
    .await;
    // One batch: kills, a win, a score (relative: its base is 150 - 20).
    h.stat("ann", "kills", 12.0, 12.0).await.unwrap();
    h.stat("ann", "wins", 1.0, 1.0).await.unwrap();
    h.stat("ann", "score", 150.0, 20.0).await.unwrap();
    h.flush().await;
    assert_eq!(
        row(&pool, "ann", "either").await,
        (12, "in_progress".into(), Some("12/,1/,/,20/130".into()))
    );
    // The second win completes group A (kills ≥ 10 and 2 wins); the auto-claim is recorded.
    h.stat("ann", "wins", 2.0, 1.0).await.unwrap();
    h.flush().await;
    let (progress, status, _) = row(&pool, "ann", "either").await;
    assert_eq!((progress, status.as_str()), (12, "completed"));
    let outbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reward_outbox WHERE user_id = 'ann' AND goal_id = 'either'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outbox, 1);

    // Group B alone, for another player: deaths = 0 seen, score +100 over its base.
    h.stat("bob", "deaths", 0.0, 0.0).await.unwrap();
    h.stat("bob", "score", 500.0, 50.0).await.unwrap();
    h.flush().await;
    assert_eq!(row(&pool, "bob", "either").await.1, "in_progress");
    h.stat("bob", "score", 560.0, 60.0).await.unwrap();
    h.flush().await;
    assert_eq!(row(&pool, "bob", "either").await.1, "completed");
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_repeatable_goal_counts_again_after_its_claim(pool: PgPool) {
    let h = start_with_config(
        pool.clone(),
        &[],
        at("2025-11-05T12:00:00Z"),
        config(),
        |b| b,
    )
    .await;
    h.login("cy").await.unwrap();
    h.login("cy").await.unwrap();
    assert_eq!(row(&pool, "cy", "again").await.1, "completed");
    // The service's claim (times_claimed + 1).
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'claimed', claimed_at = now(), \
           times_claimed = times_claimed + 1 WHERE user_id = 'cy' AND goal_id = 'again'",
    )
    .execute(&pool)
    .await
    .unwrap();
    h.login("cy").await.unwrap();
    assert_eq!(
        row(&pool, "cy", "again").await,
        (1, "in_progress".into(), None),
        "started again from zero"
    );
    // Durable acknowledgements of a requirement-group goal's events.
    h.stat("cy", "kills", 4.0, 4.0).await.unwrap();
    h.stat("cy", "deaths", 0.0, 0.0).await.unwrap();
    assert_eq!(
        row(&pool, "cy", "either").await,
        (4, "in_progress".into(), Some("4/,/,0/,/".into()))
    );
    h.stop().await.unwrap();
}
