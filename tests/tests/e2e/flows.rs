//! Progress flows: login, stat, daily, prerequisites, mixed goal types, player
//! initialization and inactive goals. Events are acknowledged in the default durable
//! mode, so an `OK` means the row is already written: assertions follow directly.

use serde_json::{Value, json};

use crate::support::*;
use extend_challenge_e2e::{NAMESPACE, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn login_flow() {
    let (stack, events) = start("login_flow").await;
    let u = user("login");
    let api = stack.api(&u);
    api.initialize().await;
    api.activate(DAILY, "login-today").await;

    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (0, "not_started".into())
    );
    events.login(&u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1, "in_progress".into())
    );
    assert_eq!(
        api.progress(ROTATING, "daily-logins-3").await,
        (1, "in_progress".into())
    );
    let goal = api.goal(DAILY, "login-today").await;
    assert_timestamp(&goal["completedAt"]);
    assert_eq!(goal["claimedAt"], "");

    let claim = api.claim(DAILY, "login-today").await.expect(200);
    assert_eq!(claim["goalId"], "login-today");
    assert_eq!(claim["status"], "claimed");
    assert_eq!(
        claim["reward"],
        json!({"type": "WALLET", "rewardId": "GOLD", "quantity": 10})
    );
    assert_timestamp(&claim["claimedAt"]);
    let claimed_at = claim["claimedAt"].as_str().unwrap().to_string();

    // Exactly one wallet credit, with the client-credentials token from the fake IAM.
    let grants = stack.ags.grants(&u).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].method, "PUT");
    assert_eq!(
        grants[0].path,
        format!("/platform/admin/namespaces/{NAMESPACE}/users/{u}/wallets/GOLD/credit")
    );
    assert_eq!(
        grants[0].contract_body(),
        json!({"amount": 10, "source": "REWARD", "reason": "challenge daily-quests/login-today"})
    );
    assert!(
        grants[0].marker().is_some_and(|m| m.starts_with("chl-")),
        "the grant carries its grant key: {:?}",
        grants[0].body
    );
    assert_eq!(
        grants[0].authorization.as_deref(),
        Some("Bearer fake-admin-token")
    );
    assert_eq!(stack.ags.hits("/iam/v3/oauth/token").await, 1);

    let goal = api.goal(DAILY, "login-today").await;
    assert_eq!(goal["status"], "claimed");
    assert_eq!(goal["claimedAt"], claimed_at.as_str());

    // A second claim is refused and grants nothing.
    let msg = api.claim(DAILY, "login-today").await.error(409, 6);
    assert_eq!(
        msg,
        format!("Reward has already been claimed (goal_id: login-today, claimed_at: {claimed_at})")
    );
    assert_eq!(stack.ags.grants(&u).await.len(), 1);

    // A claimed goal takes no more progress; a third-party login counts as a login.
    events.third_party_login(&u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "claimed".into())
    );
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (2, "in_progress".into())
    );
    events.login(&u).await;
    assert_eq!(
        api.progress(ROTATING, "daily-logins-3").await,
        (3, "completed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stat_flow() {
    let (stack, events) = start("stat_flow").await;
    let u = user("stat");
    let api = stack.api(&u);
    api.initialize().await;
    api.activate(WINTER, "kill-10-snowmen").await;
    api.activate(WINTER, "reach-level-5").await;

    // Absolute goals take the latest value, not a sum; values truncate toward zero.
    events.stat(&u, "snowmen_killed", 3.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (3, "in_progress".into())
    );
    events.stat(&u, "snowmen_killed", 7.9).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (7, "in_progress".into())
    );
    events.stat(&u, "snowmen_killed", 10.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "completed".into())
    );
    // Completed but unclaimed: keeps taking values.
    events.stat(&u, "snowmen_killed", 20.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (20, "completed".into())
    );
    // A negative value leaves an absolute goal unchanged.
    events.stat(&u, "snowmen_killed", -5.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (20, "completed".into())
    );

    events.stat(&u, "player_level", 5.0).await;
    assert_eq!(
        api.progress(WINTER, "reach-level-5").await,
        (5, "completed".into())
    );

    // Unknown stat codes and other namespaces are acknowledged and change nothing.
    events.stat(&u, "no_goal_uses_this", 99.0).await;
    let mut foreign = events.stat_event(&u, "player_level", 1.0, 0.0);
    foreign.namespace = "another-namespace".into();
    events
        .send_stat(foreign)
        .await
        .expect("other namespace is a no-op OK");
    assert_eq!(
        api.progress(WINTER, "reach-level-5").await,
        (5, "completed".into())
    );

    events.stat(&u, "tutorial_completed", 1.0).await;
    assert_eq!(
        api.progress(WINTER, "complete-tutorial").await,
        (1, "completed".into())
    );

    for goal in ["complete-tutorial", "kill-10-snowmen", "reach-level-5"] {
        let claim = api.claim(WINTER, goal).await.expect(200);
        assert_eq!(claim["status"], "claimed", "{goal}");
        assert_eq!(api.progress(WINTER, goal).await.1, "claimed");
    }
    let grants = stack.ags.grants(&u).await;
    let base = format!("/platform/admin/namespaces/{NAMESPACE}/users/{u}");
    let got: Vec<(String, String, Value)> = grants
        .into_iter()
        .map(|g| {
            assert!(g.marker().is_some(), "grant key in {:?}", g.body);
            let body = g.contract_body();
            (g.method, g.path, body)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "PUT".into(),
                format!("{base}/wallets/GOLD/credit"),
                json!({"amount": 100, "source": "REWARD", "reason": "challenge winter-challenge-2025/complete-tutorial"})
            ),
            (
                "POST".into(),
                format!("{base}/entitlements"),
                json!([{"itemId": "snowman-trophy", "itemNamespace": NAMESPACE, "quantity": 1, "source": "REWARD"}])
            ),
            (
                "PUT".into(),
                format!("{base}/wallets/GEMS/credit"),
                json!({"amount": 50, "source": "REWARD", "reason": "challenge winter-challenge-2025/reach-level-5"})
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_goals() {
    let (stack, events) = start("daily_goals").await;
    let u = user("daily");
    let api = stack.api(&u);
    api.initialize().await;
    api.activate(DAILY, "login-today").await;
    api.activate(DAILY, "play-3-matches").await;

    // `daily`: the first event of the UTC day completes it; the rest of the day is a no-op.
    events.login(&u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    events.login(&u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    api.claim(DAILY, "login-today").await.expect(200);
    events.login(&u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "claimed".into())
    );

    // `increment`: every event counts one, whatever its value (negative, huge).
    events.stat(&u, "matches_played", -10.0).await;
    assert_eq!(
        api.progress(DAILY, "play-3-matches").await,
        (1, "in_progress".into())
    );
    events.stat(&u, "matches_played", 1e12).await;
    assert_eq!(
        api.progress(DAILY, "play-3-matches").await,
        (2, "in_progress".into())
    );
    events.stat(&u, "matches_played", 2147483647.0).await;
    assert_eq!(
        api.progress(DAILY, "play-3-matches").await,
        (3, "completed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prerequisites() {
    let (stack, events) = start("prerequisites").await;
    let u = user("prereq");
    let api = stack.api(&u);
    api.initialize().await;
    api.activate(WINTER, "kill-10-snowmen").await;
    api.activate(WINTER, "reach-level-5").await;

    let locked = |list: &Value, g: &str| {
        extend_challenge_e2e::api::find_goal(list, WINTER, g).unwrap()["locked"].clone()
    };
    let list = api.challenges().await;
    assert_eq!(locked(&list, "complete-tutorial"), false);
    assert_eq!(locked(&list, "kill-10-snowmen"), true);
    assert_eq!(locked(&list, "reach-level-5"), true);
    assert_eq!(
        extend_challenge_e2e::api::find_goal(&list, WINTER, "kill-10-snowmen").unwrap()["prerequisites"],
        json!(["complete-tutorial"])
    );

    // Completing a goal unlocks the goals that need it; its own lock stays.
    events.stat(&u, "snowmen_killed", 10.0).await;
    let list = api.challenges().await;
    assert_eq!(locked(&list, "kill-10-snowmen"), true);
    assert_eq!(locked(&list, "reach-level-5"), false);

    let msg = api.claim(WINTER, "kill-10-snowmen").await.error(400, 9);
    assert_eq!(
        msg,
        "Prerequisites not completed (goal_id: kill-10-snowmen)"
    );
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "completed".into())
    );
    assert!(stack.ags.grants(&u).await.is_empty());

    // A completed (not yet claimed) prerequisite is enough.
    events.stat(&u, "tutorial_completed", 1.0).await;
    assert_eq!(locked(&api.challenges().await, "kill-10-snowmen"), false);
    api.claim(WINTER, "kill-10-snowmen").await.expect(200);

    // The chain: reach-level-5 needs kill-10-snowmen (now claimed).
    events.stat(&u, "player_level", 5.0).await;
    api.claim(WINTER, "reach-level-5").await.expect(200);
    api.claim(WINTER, "complete-tutorial").await.expect(200);
    let list = api.challenges().await;
    for g in ["complete-tutorial", "kill-10-snowmen", "reach-level-5"] {
        let goal = extend_challenge_e2e::api::find_goal(&list, WINTER, g).unwrap();
        assert_eq!(goal["status"], "claimed", "{g}");
        assert_eq!(goal["locked"], false, "{g}");
    }
    assert_eq!(stack.ags.grants(&u).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_goal_types() {
    let (stack, events) = start("mixed_goal_types").await;
    let u = user("mixed");
    let api = stack.api(&u);
    api.initialize().await;
    for (c, g) in [
        (WINTER, "kill-10-snowmen"),
        (DAILY, "login-today"),
        (DAILY, "play-3-matches"),
        (DAILY, "season-kills-5"),
    ] {
        api.activate(c, g).await;
    }

    events.stat(&u, "snowmen_killed", 10.0).await;
    events.login(&u).await;
    events.stat(&u, "matches_played", 4.0).await;
    // Relative: the baseline is the value before the first event (100 - 3 = 97).
    events.stat_inc(&u, "season_kills", 100.0, 3.0).await;

    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "completed".into())
    );
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    assert_eq!(
        api.progress(DAILY, "play-3-matches").await,
        (1, "in_progress".into())
    );
    assert_eq!(
        api.progress(DAILY, "season-kills-5").await,
        (3, "in_progress".into())
    );
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1, "in_progress".into())
    );
    // A login feeds only login goals, a stat only goals on that stat.
    assert_eq!(
        api.progress(WINTER, "complete-tutorial").await,
        (0, "not_started".into())
    );

    events.stat(&u, "snowmen_killed", 20.0).await;
    events.login(&u).await;
    events.stat_inc(&u, "season_kills", 102.0, 2.0).await;
    events.stat(&u, "matches_played", 5.0).await;
    events.stat(&u, "matches_played", 6.0).await;

    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (20, "completed".into())
    );
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    assert_eq!(
        api.progress(DAILY, "season-kills-5").await,
        (5, "completed".into())
    );
    assert_eq!(
        api.progress(DAILY, "play-3-matches").await,
        (3, "completed".into())
    );
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (2, "in_progress".into())
    );

    for (c, g) in [
        (DAILY, "login-today"),
        (DAILY, "play-3-matches"),
        (DAILY, "season-kills-5"),
    ] {
        api.claim(c, g).await.expect(200);
    }
    assert_eq!(stack.ags.grants(&u).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn player_initialization() {
    // Start with a config that lacks the `veteran` challenge, then add it: returning
    // players get the new default goal on their next initialize.
    let full: Value = serde_json::from_str(
        &std::fs::read_to_string(extend_challenge_e2e::build::fixture("challenges.json")).unwrap(),
    )
    .unwrap();
    let mut smaller = full.clone();
    smaller["challenges"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["challengeId"] != VETERAN);
    let dir = tempdir("player_initialization");
    let smaller_path = dir.join("challenges.smaller.json");
    std::fs::write(&smaller_path, serde_json::to_vec(&smaller).unwrap()).unwrap();

    let options = StackOptions {
        config: smaller_path,
        ..StackOptions::default()
    };
    let (mut stack, _) = start_with("player_initialization", options).await;
    let u = user("init");
    let api = stack.api(&u);

    let first = api.initialize().await;
    assert_eq!(first["newAssignments"], 2);
    assert_eq!(first["totalActive"], 2);
    assert_eq!(
        ids(&first["assignedGoals"], Some("challengeId")),
        vec![
            (ROTATING.to_string(), "daily-logins-3".to_string()),
            (WINTER.to_string(), "complete-tutorial".to_string()),
        ]
    );
    let tutorial = first["assignedGoals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goalId"] == "complete-tutorial")
        .unwrap()
        .clone();
    assert_eq!(tutorial["isActive"], true);
    assert_eq!(tutorial["progress"], 0);
    assert_eq!(tutorial["target"], 1);
    assert_eq!(tutorial["status"], "not_started");
    assert_eq!(tutorial["name"], "Complete Tutorial");
    assert_eq!(
        tutorial["requirement"],
        json!({"statCode": "tutorial_completed", "operator": ">=", "targetValue": 1})
    );
    assert_eq!(
        tutorial["reward"],
        json!({"type": "WALLET", "rewardId": "GOLD", "quantity": 100})
    );
    assert_timestamp(&tutorial["assignedAt"]);

    // The fast path: nothing new.
    let again = api.initialize().await;
    assert_eq!(again["newAssignments"], 0);
    assert_eq!(again["totalActive"], 2);

    // Manual activation and deactivation.
    let on = api
        .set_active(WINTER, "kill-10-snowmen", true)
        .await
        .expect(200);
    assert_eq!(on["challengeId"], WINTER);
    assert_eq!(on["goalId"], "kill-10-snowmen");
    assert_eq!(on["isActive"], true);
    assert_eq!(on["message"], "Goal activated successfully");
    assert_timestamp(&on["assignedAt"]);
    assert_eq!(api.initialize().await["totalActive"], 3);
    let off = api
        .set_active(WINTER, "kill-10-snowmen", false)
        .await
        .expect(200);
    assert_eq!(off["isActive"], false);
    assert_eq!(off["message"], "Goal deactivated successfully");
    assert_eq!(api.initialize().await["totalActive"], 2);

    // The config gains a default goal: the returning player gets it.
    stack.restart(StackOptions::default()).await;
    let api = stack.api(&u);
    let after = api.initialize().await;
    assert_eq!(after["newAssignments"], 1);
    assert_eq!(after["totalActive"], 3);

    // A player whose first contact is an event is initialized by the handler, and the
    // event counts.
    let events = stack.events().await;
    let newcomer = user("newcomer");
    events.login(&newcomer).await;
    let api = stack.api(&newcomer);
    let g = api.goal(VETERAN, "login-1000-times").await;
    assert_eq!(
        (
            g["progress"].clone(),
            g["status"].clone(),
            g["isActive"].clone()
        ),
        (json!(1), json!("in_progress"), json!(true))
    );
    assert_eq!(api.initialize().await["newAssignments"], 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn inactive_goal_filtering() {
    let (stack, events) = start("inactive_goal_filtering").await;
    let u = user("inactive");
    let api = stack.api(&u);
    api.initialize().await;

    // Not assigned: events do not reach it.
    let g = api.goal(WINTER, "kill-10-snowmen").await;
    assert_eq!(g["isActive"], false);
    events.stat(&u, "snowmen_killed", 5.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (0, "not_started".into())
    );

    // active_only really filters, in each spelling, and drops challenges left empty.
    let expected: Vec<(String, String)> = DEFAULT_GOALS
        .iter()
        .map(|(c, g)| (c.to_string(), g.to_string()))
        .collect();
    for query in ["active_only=true", "activeOnly=true", "active_only=1"] {
        let list = api
            .get(&format!("/v1/challenges?{query}"))
            .await
            .expect(200);
        assert_eq!(active_pairs(&list), expected, "{query}: {list}");
        for c in list["challenges"].as_array().unwrap() {
            assert!(!c["goals"].as_array().unwrap().is_empty(), "{query}: {c}");
        }
    }
    // Without the filter every configured goal is listed.
    let all = api.challenges().await;
    assert_eq!(all["challenges"].as_array().unwrap().len(), 5);

    api.activate(WINTER, "kill-10-snowmen").await;
    events.stat(&u, "snowmen_killed", 5.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (5, "in_progress".into())
    );
    events.stat(&u, "snowmen_killed", 10.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "completed".into())
    );
    let list = api.get("/v1/challenges?active_only=true").await.expect(200);
    assert!(active_pairs(&list).contains(&(WINTER.into(), "kill-10-snowmen".into())));

    // Deactivated: no more progress, out of the active list, not claimable.
    let off = api
        .set_active(WINTER, "kill-10-snowmen", false)
        .await
        .expect(200);
    assert_eq!(off["isActive"], false);
    events.stat(&u, "snowmen_killed", 20.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "completed".into())
    );
    let list = api.get("/v1/challenges?active_only=true").await.expect(200);
    assert_eq!(active_pairs(&list), expected);
    events.stat(&u, "tutorial_completed", 1.0).await;
    let msg = api.claim(WINTER, "kill-10-snowmen").await.error(400, 9);
    assert_eq!(
        msg,
        "Goal must be active to claim reward. Activate it first via PUT \
         /v1/challenges/winter-challenge-2025/goals/kill-10-snowmen/active (goal_id: kill-10-snowmen)"
    );

    // Reactivated and claimed: a claimed goal never moves again.
    api.activate(WINTER, "kill-10-snowmen").await;
    api.claim(WINTER, "kill-10-snowmen").await.expect(200);
    events.stat(&u, "snowmen_killed", 30.0).await;
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (10, "claimed".into())
    );
}

/// Sorted `(challengeId, goalId)` of every goal in a list body.
fn active_pairs(list: &Value) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for c in list["challenges"].as_array().unwrap() {
        for g in c["goals"].as_array().unwrap() {
            assert_eq!(
                g["isActive"], true,
                "active_only listed an inactive goal: {g}"
            );
            v.push((
                c["challengeId"].as_str().unwrap().to_string(),
                g["goalId"].as_str().unwrap().to_string(),
            ));
        }
    }
    v.sort();
    v
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let dir = extend_challenge_e2e::build::workspace_root()
        .join("target")
        .join("e2e-tmp")
        .join(user(label));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
