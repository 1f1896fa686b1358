//! M4 goal selection: batch and random.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::*;
use extend_challenge_e2e::Api;

fn pool(ids: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|i| format!("dc-goal-{i}")).collect();
    v.sort();
    v
}

async fn batch(api: &Api, goals: &[String], replace: bool) -> extend_challenge_e2e::Reply {
    api.post(
        &format!("/v1/challenges/{POOL}/goals/batch-select"),
        json!({"goalIds": goals, "replaceExisting": replace}),
    )
    .await
}

async fn random(
    api: &Api,
    count: i64,
    replace: bool,
    exclude_active: bool,
) -> extend_challenge_e2e::Reply {
    api.post(
        &format!("/v1/challenges/{POOL}/goals/random-select"),
        json!({"count": count, "replaceExisting": replace, "excludeActive": exclude_active}),
    )
    .await
}

/// The active goal ids of the pool challenge, sorted.
async fn active(api: &Api) -> Vec<String> {
    let list = api.challenges().await;
    let mut v: Vec<String> = list["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["challengeId"] == POOL)
        .flat_map(|c| c["goals"].as_array().unwrap().clone())
        .filter(|g| g["isActive"] == true)
        .map(|g| g["goalId"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn replaced(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["replacedGoals"]
        .as_array()
        .unwrap_or_else(|| panic!("replacedGoals array in {body}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_selection() {
    let (stack, events) = start("batch_selection").await;
    let u = user("batch");
    let api = stack.api(&u);
    api.initialize().await;

    let body = batch(&api, &pool(&[1, 2, 3]), false).await.expect(200);
    assert_eq!(goal_ids(&body["selectedGoals"]), pool(&[1, 2, 3]));
    assert_eq!(body["challengeId"], POOL);
    assert_eq!(body["totalActiveGoals"], 3);
    assert_eq!(replaced(&body), Vec::<String>::new());
    let first = &body["selectedGoals"][0];
    assert_eq!(first["status"], "not_started");
    assert_eq!(first["progress"], 0);
    assert_eq!(first["target"], 2);
    assert_eq!(first["isActive"], true);
    assert_timestamp(&first["assignedAt"]);

    // Replace mode deactivates the previous selection.
    let body = batch(&api, &pool(&[4, 5, 6]), true).await.expect(200);
    assert_eq!(replaced(&body), pool(&[1, 2, 3]));
    assert_eq!(body["totalActiveGoals"], 3);
    assert_eq!(active(&api).await, pool(&[4, 5, 6]));

    // Add mode keeps it.
    let body = batch(&api, &pool(&[1, 2]), false).await.expect(200);
    assert_eq!(body["totalActiveGoals"], 5);
    assert_eq!(active(&api).await, pool(&[1, 2, 4, 5, 6]));

    // Unknown goal: 404 and nothing changes (atomic).
    let msg = batch(&api, &["invalid-goal-1".to_string()], false)
        .await
        .error(404, 5);
    assert_eq!(msg, "goal 'invalid-goal-1' not found");
    let msg = batch(
        &api,
        &["dc-goal-3".to_string(), "invalid-goal".to_string()],
        false,
    )
    .await
    .error(404, 5);
    assert_eq!(msg, "goal 'invalid-goal' not found");
    assert_eq!(active(&api).await, pool(&[1, 2, 4, 5, 6]));

    let msg = batch(&api, &[], false).await.error(400, 3);
    assert_eq!(msg, "goal_ids cannot be empty");
    let msg = api
        .post(
            "/v1/challenges/no-such-challenge/goals/batch-select",
            json!({"goalIds": ["dc-goal-1"]}),
        )
        .await
        .error(404, 5);
    assert_eq!(msg, "challenge 'no-such-challenge' not found");

    // Duplicate ids collapse.
    let body = batch(
        &api,
        &["dc-goal-3".to_string(), "dc-goal-3".to_string()],
        false,
    )
    .await
    .expect(200);
    assert_eq!(goal_ids(&body["selectedGoals"]), pool(&[3]));
    assert_eq!(body["totalActiveGoals"], 6);

    // Selected goals show their real progress and status.
    events.stat(&u, "dc_stat_1", 1.0).await;
    let body = batch(&api, &pool(&[1]), false).await.expect(200);
    let g = &body["selectedGoals"][0];
    assert_eq!(
        (g["progress"].clone(), g["status"].clone()),
        (json!(1), json!("in_progress"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn random_selection() {
    let (stack, events) = start("random_selection").await;
    let all = pool(&[1, 2, 3, 4, 5, 6]);

    // Happy path, then exclude_active picks only new goals, then nothing is left.
    let api = stack.api(&user("random"));
    let body = random(&api, 3, false, false).await.expect(200);
    let first = goal_ids(&body["selectedGoals"]);
    assert_eq!(first.len(), 3, "{body}");
    assert_eq!(first.iter().collect::<BTreeSet<_>>().len(), 3);
    assert!(first.iter().all(|g| all.contains(g)), "{first:?}");
    assert_eq!(body["totalActiveGoals"], 3);
    assert_eq!(replaced(&body), Vec::<String>::new());

    let body = random(&api, 3, false, true).await.expect(200);
    let second = goal_ids(&body["selectedGoals"]);
    assert_eq!(second.len(), 3);
    assert!(
        second.iter().all(|g| !first.contains(g)),
        "{first:?} vs {second:?}"
    );
    assert_eq!(body["totalActiveGoals"], 6);
    assert_eq!(active(&api).await, all);

    let msg = random(&api, 3, false, true).await.error(400, 3);
    assert_eq!(
        msg,
        "INSUFFICIENT_GOALS: no goals available for selection (available: 0, requested: 3)"
    );

    // Replace mode.
    let api = stack.api(&user("random-replace"));
    batch(&api, &pool(&[1, 2]), false).await.expect(200);
    let body = random(&api, 3, true, false).await.expect(200);
    let picked = goal_ids(&body["selectedGoals"]);
    assert_eq!(picked.len(), 3);
    assert!(
        picked.iter().all(|g| pool(&[3, 4, 5, 6]).contains(g)),
        "{picked:?}"
    );
    assert_eq!(replaced(&body), pool(&[1, 2]));
    assert_eq!(body["totalActiveGoals"], 3);
    assert_eq!(active(&api).await, picked);

    // Partial result when fewer goals are available.
    let api = stack.api(&user("random-partial"));
    let body = random(&api, 100, false, false).await.expect(200);
    assert_eq!(goal_ids(&body["selectedGoals"]), all);
    assert_eq!(body["totalActiveGoals"], 6);

    // Bad counts.
    for count in [0, -1] {
        let msg = random(&api, count, false, false).await.error(400, 3);
        assert_eq!(msg, "count must be greater than 0");
    }
    let msg = api
        .post(
            "/v1/challenges/no-such-challenge/goals/random-select",
            json!({"count": 1}),
        )
        .await
        .error(404, 5);
    assert_eq!(msg, "challenge 'no-such-challenge' not found");

    // Completed goals are never drawn.
    let u = user("random-completed");
    let api = stack.api(&u);
    batch(&api, &pool(&[1]), false).await.expect(200);
    events.stat(&u, "dc_stat_1", 2.0).await;
    assert_eq!(
        api.progress(POOL, "dc-goal-1").await,
        (2, "completed".into())
    );
    let body = random(&api, 6, false, false).await.expect(200);
    assert_eq!(goal_ids(&body["selectedGoals"]), pool(&[2, 3, 4, 5, 6]));
    assert_eq!(body["totalActiveGoals"], 6);
}
