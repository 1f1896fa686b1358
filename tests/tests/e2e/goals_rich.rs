//! Goals as rich as the best (CONTRACT §8) with the real binaries: a repeatable goal paid
//! once per repetition, a per-player window that moves with the player's clock (the stack
//! restarts an hour later instead of sleeping), and requirement groups fed by several stat
//! codes.

use extend_challenge_e2e::StackOptions;
use extend_challenge_e2e::build::fixture;
use serde_json::json;

use crate::support::*;

const RICH: &str = "rich";

#[tokio::test(flavor = "multi_thread")]
async fn repeatable_timed_and_grouped_goals() {
    let options = StackOptions {
        config: fixture("goals.json"),
        ..StackOptions::default()
    };
    let offset = options.clock_offset_seconds;
    let (mut stack, events) = start_with("goals_rich", options.clone()).await;
    let u = user("rich");
    let api = stack.api(&u);
    api.initialize().await;

    // Repeatable: two claims, two grants, then final.
    for n in 1..=2 {
        events.login(&u).await;
        api.claim(RICH, "again").await.expect(200);
        let g = api.goal(RICH, "again").await;
        assert_eq!(g["timesClaimed"], n);
        assert_eq!(g["maxTimes"], 2);
    }
    let g = api.goal(RICH, "again").await;
    assert_eq!(g["status"], "claimed");
    events.login(&u).await;
    api.claim(RICH, "again").await.expect(409);

    // Requirement groups: kills and two wins complete group A.
    events.stat(&u, "kills", 12.0).await;
    events.stat_inc(&u, "wins", 1.0, 1.0).await;
    let g = api.goal(RICH, "either").await;
    assert_eq!(
        (&g["status"], &g["progress"]),
        (&json!("in_progress"), &json!(12))
    );
    assert_eq!(g["requirementGroups"][0]["requirements"][0]["met"], true);
    assert_eq!(g["requirementGroups"][0]["requirements"][1]["current"], 1);
    events.stat_inc(&u, "wins", 2.0, 1.0).await;
    assert_eq!(api.goal(RICH, "either").await["status"], "completed");
    api.claim(RICH, "either").await.expect(200);

    // Per-player window: an hour from this player's initialize.
    let g = api.goal(RICH, "sprint").await;
    let first_end = g["expiresAt"].as_str().unwrap().to_string();
    assert!(g["expiresInSeconds"].as_i64().unwrap() > 3500, "{g}");
    events.stat(&u, "sprint_wins", 1.0).await;
    api.claim(RICH, "sprint").await.expect(200);
    let rotation = api
        .get(&format!("/v1/challenges/{RICH}/rotation"))
        .await
        .expect(200);
    assert_eq!(rotation["rotation"]["type"], "per_user");
    assert_eq!(
        rotation["rotation"]["currentPeriod"]["endTime"],
        first_end.as_str()
    );

    // An hour and a minute later: the next window, the goal afresh, claimable again.
    stack
        .restart(StackOptions {
            clock_offset_seconds: offset + 3660,
            ..options
        })
        .await;
    let events = stack.events().await;
    let api = stack.api(&u);
    let g = api.goal(RICH, "sprint").await;
    assert_eq!(g["status"], "not_started", "{g}");
    assert_ne!(g["expiresAt"].as_str().unwrap(), first_end);
    events.stat(&u, "sprint_wins", 2.0).await;
    api.claim(RICH, "sprint").await.expect(200);
    let (items, credits) = stack.ags.granted(&u);
    assert_eq!(items.iter().filter(|i| *i == "coin").count(), 2);
    assert_eq!(items.iter().filter(|i| *i == "badge").count(), 1);
    assert_eq!(
        credits,
        [("GOLD".to_string(), 10), ("GOLD".to_string(), 10)]
    );
}
