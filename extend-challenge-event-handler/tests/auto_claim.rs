//! Auto-claim (CONTRACT §7) on the handler's side: a completion that asks for an auto-claim
//! is recorded in the outbox by the transaction that completes the goal — acknowledged
//! (durable mode) only once both are committed — and the handler never calls AGS.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::*;
use extend_challenge_common::config::parse_and_validate;
use serde_json::json;
use sqlx::PgPool;

fn config() -> Arc<extend_challenge_common::config::ChallengeConfig> {
    let goal = |id: &str, stat: &str, target: i32, auto: bool, prerequisites: &[&str]| {
        json!({
            "goalId": id, "name": id, "eventSource": "statistic", "defaultAssigned": true,
            "autoClaim": auto, "prerequisites": prerequisites,
            "requirement": {"statCode": stat, "operator": ">=", "targetValue": target},
            "reward": {"type": "ITEM", "rewardId": "i", "quantity": 1}
        })
    };
    let text = json!({"challenges": [{"challengeId": "auto", "name": "Auto", "goals": [
        goal("kills-5", "kills", 5, true, &[]),
        goal("boss", "boss", 1, true, &["kills-5"]),
        goal("wins-2", "wins", 2, false, &[]),
    ]}]})
    .to_string();
    Arc::new(parse_and_validate("auto.json", &text).expect("valid"))
}

async fn outbox(pool: &PgPool) -> BTreeSet<(String, String)> {
    sqlx::query_as::<_, (String, String)>("SELECT user_id, goal_id FROM reward_outbox")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn entries(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(u, g)| (u.to_string(), g.to_string()))
        .collect()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_completion_is_acknowledged_with_its_auto_claims_recorded(pool: PgPool) {
    // Durable mode (the default): OK only after the batch committed.
    let h = start_with_config(
        pool.clone(),
        &[],
        at("2025-11-05T12:00:00Z"),
        config(),
        |b| b,
    )
    .await;

    h.stat("ann", "kills", 3.0, 3.0).await.unwrap();
    h.stat("ann", "wins", 2.0, 2.0).await.unwrap();
    assert_eq!(
        outbox(&pool).await,
        entries(&[]),
        "no auto-claim goal completed"
    );

    // kills-5 completes: itself, and boss, which its completion may unlock.
    h.stat("ann", "kills", 5.0, 2.0).await.unwrap();
    assert_eq!(
        outbox(&pool).await,
        entries(&[("ann", "kills-5"), ("ann", "boss")])
    );
    let first: DateTime<Utc> =
        sqlx::query_scalar("SELECT enqueued_at FROM reward_outbox WHERE goal_id = 'kills-5'")
            .fetch_one(&pool)
            .await
            .unwrap();

    // A higher value on the completed goal is not a new completion.
    h.stat("ann", "kills", 9.0, 4.0).await.unwrap();
    let again: DateTime<Utc> =
        sqlx::query_scalar("SELECT enqueued_at FROM reward_outbox WHERE goal_id = 'kills-5'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first, again);

    // boss completes on its own: recorded (again) for the service to try.
    h.stat("bob", "boss", 1.0, 1.0).await.unwrap();
    assert!(
        outbox(&pool)
            .await
            .contains(&("bob".to_string(), "boss".to_string()))
    );
    h.stop().await.unwrap();
}

/// Buffered mode: the outbox entry commits with the batch (flush_once), never before.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn buffered_completions_record_their_auto_claims_with_the_batch(pool: PgPool) {
    let h = start_with_config(
        pool.clone(),
        BUFFERED,
        at("2025-11-05T12:00:00Z"),
        config(),
        |b| b,
    )
    .await;
    h.stat("cat", "kills", 6.0, 6.0).await.unwrap();
    assert_eq!(
        outbox(&pool).await,
        entries(&[]),
        "nothing before the batch"
    );
    h.flush().await;
    assert_eq!(
        outbox(&pool).await,
        entries(&[("cat", "kills-5"), ("cat", "boss")])
    );
    let progress: (i32, String) = sqlx::query_as(
        "SELECT progress, status FROM user_goal_progress WHERE user_id = 'cat' AND goal_id = 'kills-5'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(progress, (6, "completed".to_string()));
    h.stop().await.unwrap();
}
