//! Rewards, complete (CONTRACT §7) with the real binaries: two rewards on one goal, claim
//! all with one goal in doubt, the reward history's pages, and auto-claim — with a lost
//! reply, and while the service is down. Platform is the stateful fake answering with
//! AccelByte's published models only.

use std::time::Duration;

use extend_challenge_e2e::build::fixture;
use extend_challenge_e2e::{StackOptions, eventually};
use serde_json::{Value, json};

use crate::support::*;

const SEASON: &str = "season";
/// Longer than the service waits for a grant (10 s): the reply is lost to it.
const LOST: Duration = Duration::from_secs(40);

fn options() -> StackOptions {
    StackOptions {
        config: fixture("rewards.json"),
        env: vec![
            // Auto-claims are looked for every 200 ms.
            ("AUTO_CLAIM_INTERVAL_MS".into(), "200".into()),
        ],
        ..StackOptions::default()
    }
}

fn goals_of(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|g| g["goalId"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn several_rewards_claim_all_and_history() {
    let (stack, events) = start_with("rewards_complete", options()).await;

    // Two rewards on one goal: both granted, once each.
    let a = user("two");
    let api = stack.api(&a);
    api.initialize().await;
    events.login(&a).await;
    let claim = api.claim(SEASON, "double").await.expect(200);
    assert_eq!(
        claim["rewards"],
        json!([
            {"type": "ITEM", "rewardId": "sword", "quantity": 1},
            {"type": "WALLET", "rewardId": "GOLD", "quantity": 50}
        ])
    );
    assert_eq!(claim["reward"], claim["rewards"][0]);
    api.claim(SEASON, "double").await.expect(409);
    assert_eq!(
        stack.ags.granted(&a),
        (vec!["sword".to_string()], vec![("GOLD".to_string(), 50)])
    );

    // Claim all with one goal in doubt (plain's trophy: granted, reply lost).
    let b = user("all");
    let api = stack.api(&b);
    api.initialize().await;
    events.login(&b).await;
    events.stat(&b, "kills", 1.0).await;
    stack.ags.lose_next_grant_reply(&b, "trophy", LOST).await;
    let all = api
        .post(&format!("/v1/challenges/{SEASON}/claim"), json!({}))
        .await
        .expect(200);
    assert_eq!(goals_of(&all, "claimed"), ["double"]);
    assert_eq!(
        goals_of(&all, "skipped"),
        ["auto-gems", "auto-crown", "plain"]
    );
    let plain = &all["skipped"][2];
    assert_eq!(plain["code"], 14);
    assert_eq!(
        plain["message"],
        "Reward grant in progress, please retry (goal_id: plain)"
    );
    assert_eq!(all["skipped"][0]["code"], 9);
    // Again: plain's grant is found at Platform, not made twice; double is claimed already.
    let again = api
        .post(&format!("/v1/challenges/{SEASON}/claim"), json!({}))
        .await
        .expect(200);
    assert_eq!(goals_of(&again, "claimed"), ["plain"]);
    assert_eq!(again["skipped"][0]["goalId"], "double");
    assert_eq!(again["skipped"][0]["code"], 6);
    let (items, credits) = stack.ags.granted(&b);
    let mut items = items;
    items.sort();
    assert_eq!(items, ["sword", "trophy"]);
    assert_eq!(credits, [("GOLD".to_string(), 50)]);
    assert_eq!(
        stack.ags.grants(&b).await.len(),
        3,
        "three grant requests in all"
    );

    // The history: newest first, two per page.
    let first = api.get("/v1/users/me/rewards?pageSize=2").await.expect(200);
    let rows = |v: &Value| -> Vec<(String, String, String)> {
        v["rewards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["goalId"].as_str().unwrap().to_string(),
                    r["rewardId"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let token = first["nextPageToken"].as_str().unwrap().to_string();
    assert!(!token.is_empty(), "{first}");
    let second = api
        .get(&format!(
            "/v1/users/me/rewards?pageSize=2&pageToken={token}"
        ))
        .await
        .expect(200);
    assert_eq!(second["nextPageToken"], "");
    let mut all_rows = rows(&first);
    all_rows.extend(rows(&second));
    // The two claims ran side by side (either may be the newer), but a goal's rewards
    // come together, the later reward first, and the pages neither repeat nor skip.
    let double_at = all_rows.iter().position(|r| r.0 == "double").unwrap();
    assert_eq!(all_rows[double_at].1, "GOLD");
    assert_eq!(all_rows[double_at + 1].1, "sword");
    all_rows.sort();
    assert_eq!(
        all_rows,
        [
            ("double".into(), "GOLD".into(), "granted".into()),
            ("double".into(), "sword".into(), "granted".into()),
            ("plain".into(), "trophy".into(), "granted".into()),
        ]
    );
    for r in first["rewards"].as_array().unwrap() {
        assert!(r["grantedAt"].as_str().unwrap().ends_with('Z'), "{r}");
        assert_eq!(r["period"], "once");
    }
    stack
        .api(&b)
        .get("/v1/users/me/rewards?pageSize=500")
        .await
        .error(400, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_claim_survives_a_lost_reply_and_a_stopped_service() {
    let (mut stack, events) = start_with("auto_claim", options()).await;

    // The grant's reply is lost once: the auto-claim finds the grant on its next try.
    let a = user("lost");
    stack.api(&a).initialize().await;
    stack.ags.lose_next_grant_reply(&a, "crown", LOST).await;
    events.stat(&a, "wins", 1.0).await;
    let api = stack.api(&a);
    eventually("auto-crown claimed", Duration::from_secs(30), || async {
        match api.progress(SEASON, "auto-crown").await {
            (1, s) if s == "claimed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stack.ags.granted(&a).0, ["crown"], "granted once");
    assert_eq!(stack.ags.grants(&a).await.len(), 1, "sent once");

    // The service is down when the goal completes: granted once it is back.
    let b = user("down");
    stack.api(&b).initialize().await;
    stack.stop_service();
    events.login(&b).await;
    events.login(&b).await;
    assert!(stack.ags.grants(&b).await.is_empty());
    stack.start_service().await;
    let api = stack.api(&b);
    eventually("auto-gems claimed", Duration::from_secs(5), || async {
        match api.progress(SEASON, "auto-gems").await {
            (2, s) if s == "claimed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(stack.ags.granted(&b).1, [("GEMS".to_string(), 5)]);
    // double (not auto-claimed) waits for the player.
    assert_eq!(api.progress(SEASON, "double").await.1, "completed");
}
