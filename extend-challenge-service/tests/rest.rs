//! The REST adapter in process (`tower::ServiceExt::oneshot`), each test on a fresh
//! database: every endpoint's success and error paths and the exact JSON.

mod common;

use chrono::Duration;
use common::*;
use extend_challenge_common::pb::service as pb;
use http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const LIST: &str = "/challenge/v1/challenges";
const INIT: &str = "/challenge/v1/challenges/initialize";

const GOAL_KEYS: [&str; 18] = [
    "goalId",
    "name",
    "description",
    "requirement",
    "reward",
    "prerequisites",
    "progress",
    "status",
    "locked",
    "completedAt",
    "claimedAt",
    "isActive",
    "expiresAt",
    "expiresInSeconds",
    "rewards",
    "timesClaimed",
    "maxTimes",
    "requirementGroups",
];

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn new_player_sees_every_goal_with_every_field_once(pool: PgPool) {
    let h = Harness::new(pool);
    let (status, text) = h.call_raw("GET", LIST, "alice", None).await;
    assert_eq!(status, StatusCode::OK);
    // Each key appears once per goal in the raw text (no duplicated "status").
    assert_eq!(text.matches("\"status\":").count(), 8);
    assert_eq!(text.matches("\"goalId\":").count(), 8);
    let body: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<_> = body["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["challengeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["winter", "daily", "weekly"]);
    let winter = find(&body, "winter");
    assert_eq!(winter["name"], "Winter \"Frost\" Challenge");
    assert_eq!(
        goal_ids(winter),
        ["kill-10", "kill-50", "login-3", "win-5", "win-20"]
    );
    let kill10 = goal(winter, "kill-10");
    let keys: Vec<_> = kill10.as_object().unwrap().keys().cloned().collect();
    let mut expected: Vec<String> = GOAL_KEYS.iter().map(|s| s.to_string()).collect();
    let mut got = keys.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        *kill10,
        json!({
            "goalId": "kill-10", "name": "Novice Hunter", "description": "Defeat 10 enemies",
            "requirement": {"statCode": "kills", "operator": ">=", "targetValue": 10},
            "reward": {"type": "ITEM", "rewardId": "bronze-sword", "quantity": 1},
            "prerequisites": [], "progress": 0, "status": "not_started", "locked": false,
            "completedAt": "", "claimedAt": "", "isActive": false, "expiresAt": "",
            "expiresInSeconds": 0,
            "rewards": [{"type": "ITEM", "rewardId": "bronze-sword", "quantity": 1}],
            "timesClaimed": 0, "maxTimes": 0, "requirementGroups": []
        })
    );
    assert_eq!(goal(winter, "kill-50")["locked"], true);
    assert_eq!(goal(winter, "kill-50")["prerequisites"], json!(["kill-10"]));
    let daily = goal(find(&body, "daily"), "daily-login");
    assert_eq!(daily["expiresAt"], "2025-11-05T00:00:00Z");
    assert_eq!(daily["expiresInSeconds"], 43200);
    let weekly = goal(find(&body, "weekly"), "weekly-wins");
    assert_eq!(weekly["expiresAt"], "2025-11-10T00:00:00Z");
    assert_eq!(weekly["locked"], true);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn spliced_json_equals_the_protobuf_json(pool: PgPool) {
    let h = Harness::new(pool);
    h.completed("bob", "kill-10").await;
    h.set_row("bob", "login-3", 2, "in_progress", None).await;
    for active_only in [false, true] {
        let uri = format!("{LIST}?active_only={active_only}");
        let (_, rest) = h.get(&uri, "bob").await;
        let grpc = h
            .service
            .get_user_challenges(
                "bob",
                pb::GetChallengesRequest {
                    active_only,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // pbjson writes every field; the REST list has `nextPageToken` only when paged.
        let mut pbjson = serde_json::to_value(&grpc).unwrap();
        assert_eq!(pbjson["nextPageToken"], "");
        pbjson.as_object_mut().unwrap().remove("nextPageToken");
        assert_eq!(rest, pbjson);
        // The gRPC fast path's spliced bytes decode to the same message.
        let bytes = h
            .service
            .challenges_proto("bob", active_only)
            .await
            .unwrap();
        let decoded = <pb::GetChallengesResponse as prost::Message>::decode(&bytes[..]).unwrap();
        assert_eq!(decoded, grpc);
        for c in ["winter", "daily", "weekly"] {
            let (_, one) = h
                .get(&format!("{LIST}/{c}?activeOnly={active_only}"), "bob")
                .await;
            let pbc = h
                .service
                .get_user_challenge(
                    "bob",
                    pb::GetChallengeRequest {
                        challenge_id: c.into(),
                        active_only,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(one, serde_json::to_value(&pbc).unwrap());
        }
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn active_only_really_filters(pool: PgPool) {
    let h = Harness::new(pool);
    h.post(INIT, "carol", "").await;
    for q in [
        "active_only=true",
        "activeOnly=true",
        "active_only=1",
        "activeOnly=1",
    ] {
        let (s, body) = h.get(&format!("{LIST}?{q}"), "carol").await;
        assert_eq!(s, StatusCode::OK, "{q}");
        let cs = body["challenges"].as_array().unwrap();
        assert_eq!(cs.len(), 2, "{q}: weekly has no active goal: {body}");
        assert_eq!(goal_ids(&cs[0]), ["kill-10", "login-3"], "{q}");
        assert_eq!(goal_ids(&cs[1]), ["daily-login"], "{q}");
        assert!(
            cs.iter()
                .flat_map(|c| c["goals"].as_array().unwrap())
                .all(|g| g["isActive"] == true)
        );
    }
    let (_, all) = h.get(&format!("{LIST}?active_only=false"), "carol").await;
    assert_eq!(all["challenges"].as_array().unwrap().len(), 3);
    let (_, one) = h
        .get(&format!("{LIST}/weekly?active_only=true"), "carol")
        .await;
    assert_eq!(one["goals"], json!([]));
    let (s, err) = h.get(&format!("{LIST}?active_only=maybe"), "carol").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], 3);
    assert_eq!(err["details"], json!([]));
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn locked_follows_prerequisites_also_across_challenges(pool: PgPool) {
    let h = Harness::new(pool);
    h.post(INIT, "dan", "").await;
    let (_, body) = h.get(LIST, "dan").await;
    assert_eq!(goal(find(&body, "winter"), "kill-50")["locked"], true);
    h.set_row("dan", "kill-10", 10, "completed", Some(NOON))
        .await;
    let (_, body) = h.get(LIST, "dan").await;
    let winter = find(&body, "winter");
    assert_eq!(goal(winter, "kill-50")["locked"], false);
    assert_eq!(goal(winter, "kill-10")["status"], "completed");
    assert_eq!(goal(winter, "kill-10")["completedAt"], NOON);
    assert_eq!(goal(winter, "win-20")["locked"], true);
    // weekly-wins depends on kill-10 of another challenge.
    let (_, weekly) = h.get(&format!("{LIST}/weekly"), "dan").await;
    assert_eq!(goal(&weekly, "weekly-wins")["locked"], false);
    // Claimed counts as done too.
    h.set_row("dan", "kill-10", 10, "claimed", Some(NOON)).await;
    let (_, weekly) = h.get(&format!("{LIST}/weekly"), "dan").await;
    assert_eq!(goal(&weekly, "weekly-wins")["locked"], false);
    let (_, other) = h.get(&format!("{LIST}/weekly"), "erin").await;
    assert_eq!(goal(&other, "weekly-wins")["locked"], true);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn one_challenge_and_unknown_challenge(pool: PgPool) {
    let h = Harness::new(pool);
    let (s, body) = h.get(&format!("{LIST}/daily"), "fay").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["challengeId"], "daily");
    assert_eq!(body["name"], "Daily Quests");
    assert_eq!(goal_ids(&body), ["daily-login", "daily-play"]);
    let (s, err) = h.get(&format!("{LIST}/nope"), "fay").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        err,
        json!({"code": 5, "message": "challenge 'nope' not found", "details": []})
    );
}

/// REST's initialize answer is written by hand from pre-serialized parts of the catalog:
/// byte for byte what serde writes for gRPC's message (grpc-gateway's encoding), for a new
/// player, then for one with progress, a completed goal, a deactivated goal and a daily goal
/// rolled over, on a catalog whose strings need escaping.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn initialize_json_is_the_messages_encoding_byte_for_byte(pool: PgPool) {
    let mut raw: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let first = &mut raw["challenges"][0]["goals"][0];
    first["name"] = json!("Hunter \"Novice\" \\ caf\u{e9} \u{1F3AF} \u{1}\t</b>");
    first["description"] = json!("line\nbreak, \"quoted\", back\\slash");
    first["reward"]["rewardId"] = json!("sword \"+1\"");
    let config = std::sync::Arc::new(
        extend_challenge_common::config::parse_and_validate("odd.json", &raw.to_string()).unwrap(),
    );
    let h = Harness::with_config(pool, config, None);
    // `amy` over REST (the hand-written JSON), `bob` over the message, the same steps at
    // the same clock.
    async fn both(h: &Harness) -> (String, String) {
        let (s, rest) = h.call_raw("POST", INIT, "amy", Some("{}")).await;
        assert_eq!(s, StatusCode::OK);
        let message = h.service.initialize_player("bob").await.unwrap();
        (rest, serde_json::to_string(&message).unwrap())
    }
    let (rest, message) = both(&h).await;
    assert!(rest.contains(r#"\"Novice\" \\ caf"#), "{rest}");
    assert_eq!(rest, message);

    for user in ["amy", "bob"] {
        h.set_row(user, "kill-10", 4, "in_progress", None).await;
        h.set_row(user, "login-3", 3, "completed", Some(NOON)).await;
        for (path, active) in [
            ("winter/goals/win-5", true),
            ("daily/goals/daily-play", true),
            ("daily/goals/daily-login", false),
        ] {
            let (s, _) = h
                .call(
                    "PUT",
                    &format!("{LIST}/{path}/active"),
                    user,
                    Some(&format!(r#"{{"isActive":{active}}}"#)),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{path}");
        }
        h.set_row(user, "daily-play", 2, "in_progress", None).await;
    }
    // Into the next day: the daily goals roll over.
    h.clock.advance(Duration::hours(13));
    let (rest, message) = both(&h).await;
    let body: Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(body["newAssignments"], 0);
    assert!(rest.contains(r#""goalId":"win-5""#), "{rest}");
    assert!(!rest.contains(r#""goalId":"daily-login""#), "{rest}");
    assert!(rest.contains(r#""status":"completed""#), "{rest}");
    assert_eq!(rest, message);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn initialize_assigns_defaults_once_and_catches_up(pool: PgPool) {
    let h = Harness::new(pool);
    let (s, body) = h.post(INIT, "gus", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["newAssignments"], 3);
    assert_eq!(body["totalActive"], 3);
    let goals = body["assignedGoals"].as_array().unwrap();
    let ids: Vec<_> = goals
        .iter()
        .map(|g| g["goalId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kill-10", "login-3", "daily-login"]);
    assert_eq!(
        goals[0],
        json!({
            "challengeId": "winter", "goalId": "kill-10", "name": "Novice Hunter",
            "description": "Defeat 10 enemies", "isActive": true,
            "assignedAt": NOON, "expiresAt": "", "progress": 0, "target": 10,
            "status": "not_started",
            "requirement": {"statCode": "kills", "operator": ">=", "targetValue": 10},
            "reward": {"type": "ITEM", "rewardId": "bronze-sword", "quantity": 1}
        })
    );
    assert_eq!(goals[2]["expiresAt"], "2025-11-05T00:00:00Z");

    // Returning player: nothing new.
    h.clock.advance(Duration::hours(1));
    let (_, again) = h.post(INIT, "gus", "{}").await;
    assert_eq!(again["newAssignments"], 0);
    assert_eq!(again["totalActive"], 3);
    assert_eq!(again["assignedGoals"][0]["assignedAt"], NOON);

    // A default goal the player lacks — added to the config since the player's first
    // initialize: their marker row (`store::implicit`) does not list it — is assigned, with
    // a row of its own stamped now.
    let n = sqlx::query(
        "UPDATE user_goal_progress SET req_state = 'daily-login\nkill-10' \
         WHERE user_id = 'gus' AND goal_id = ''",
    )
    .execute(&h.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "gus has a marker");
    let (_, listed) = h.get(LIST, "gus").await;
    assert_eq!(
        goal(find(&listed, "winter"), "login-3")["isActive"],
        false,
        "not assigned before the call"
    );
    let (_, caught_up) = h.post(INIT, "gus", "").await;
    assert_eq!(caught_up["newAssignments"], 1);
    assert_eq!(caught_up["totalActive"], 3);
    let login3 = caught_up["assignedGoals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goalId"] == "login-3")
        .unwrap();
    assert_eq!(login3["assignedAt"], "2025-11-04T13:00:00Z");
    assert!(h.row_status("gus", "login-3").await.is_some());
    let (_, again) = h.post(INIT, "gus", "").await;
    assert_eq!(again["newAssignments"], 0);

    // A default goal the player deactivated stays deactivated. It was implicit (no row):
    // deactivating it writes its row as it read, so it keeps its assignedAt.
    assert_eq!(h.row_status("gus", "kill-10").await, None);
    let (_, body) = h
        .call(
            "PUT",
            &format!("{LIST}/winter/goals/kill-10/active"),
            "gus",
            Some(r#"{"isActive":false}"#),
        )
        .await;
    assert_eq!(body["assignedAt"], NOON, "{body}");
    assert_eq!(
        h.row_status("gus", "kill-10").await,
        Some(("not_started".into(), false))
    );
    let (_, after) = h.post(INIT, "gus", "").await;
    assert_eq!(after["newAssignments"], 0);
    assert_eq!(after["totalActive"], 2);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn set_goal_active_and_its_errors(pool: PgPool) {
    let h = Harness::new(pool);
    let uri = format!("{LIST}/winter/goals/win-5/active");
    let (s, body) = h
        .call("PUT", &uri, "hal", Some(r#"{"isActive":true}"#))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"challengeId": "winter", "goalId": "win-5", "isActive": true,
               "assignedAt": NOON, "message": "Goal activated successfully"})
    );
    h.clock.advance(Duration::minutes(5));
    let (_, body) = h
        .call("PUT", &uri, "hal", Some(r#"{"is_active":false,"junk":1}"#))
        .await;
    assert_eq!(body["isActive"], false);
    assert_eq!(body["assignedAt"], NOON, "deactivation keeps assigned_at");
    assert_eq!(body["message"], "Goal deactivated successfully");
    assert_eq!(
        h.row_status("hal", "win-5").await,
        Some(("not_started".into(), false))
    );

    for (c, g) in [("winter", "nope"), ("daily", "win-5"), ("nope", "win-5")] {
        let (s, err) = h
            .call(
                "PUT",
                &format!("{LIST}/{c}/goals/{g}/active"),
                "hal",
                Some(r#"{"isActive":true}"#),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            err["message"],
            format!("Goal not found or removed from config (goal_id: {g}, challenge_id: {c})")
        );
        assert_eq!(err["code"], 5);
    }
    let (s, err) = h.call("PUT", &uri, "hal", Some("{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], 3);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn claim_checks_in_contract_order(pool: PgPool) {
    let h = Harness::new(pool);
    let claim = |c: &str, g: &str| format!("{LIST}/{c}/goals/{g}/claim");
    let err_of = |v: &Value| v["message"].as_str().unwrap().to_string();

    let (s, e) = h.post(&claim("winter", "nope"), "ivy", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        err_of(&e),
        "Goal not found or removed from config (goal_id: nope, challenge_id: winter)"
    );
    let (s, _) = h.post(&claim("daily", "kill-10"), "ivy", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, e) = h.post(&claim("winter", "kill-10"), "ivy", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_of(&e),
        "Goal not completed. Please wait 1 second and try again. (goal_id: kill-10, status: not_started)"
    );
    assert_eq!(e["code"], 9);

    h.post(INIT, "ivy", "").await;
    h.set_row("ivy", "kill-10", 4, "in_progress", None).await;
    let (_, e) = h.post(&claim("winter", "kill-10"), "ivy", "").await;
    assert_eq!(
        err_of(&e),
        "Goal not completed. Please wait 1 second and try again. (goal_id: kill-10, status: in_progress)"
    );

    h.set_row("ivy", "kill-10", 10, "completed", Some(NOON))
        .await;
    h.call(
        "PUT",
        &format!("{LIST}/winter/goals/kill-10/active"),
        "ivy",
        Some(r#"{"isActive":false}"#),
    )
    .await;
    let (s, e) = h.post(&claim("winter", "kill-10"), "ivy", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_of(&e),
        "Goal must be active to claim reward. Activate it first via PUT /v1/challenges/winter/goals/kill-10/active (goal_id: kill-10)"
    );
    h.call(
        "PUT",
        &format!("{LIST}/winter/goals/kill-10/active"),
        "ivy",
        Some(r#"{"isActive":true}"#),
    )
    .await;

    h.clock.advance(Duration::seconds(30));
    let (s, body) = h.post(&claim("winter", "kill-10"), "ivy", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"goalId": "kill-10", "status": "claimed",
               "reward": {"type": "ITEM", "rewardId": "bronze-sword", "quantity": 1},
               "claimedAt": "2025-11-04T12:00:30Z",
               "rewards": [{"type": "ITEM", "rewardId": "bronze-sword", "quantity": 1}]})
    );
    assert_eq!(h.granter.calls(), 1);
    let (s, e) = h.post(&claim("winter", "kill-10"), "ivy", "{}").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], 6);
    assert_eq!(
        err_of(&e),
        "Reward has already been claimed (goal_id: kill-10, claimed_at: 2025-11-04T12:00:30Z)"
    );
    assert_eq!(h.granter.calls(), 1);

    // Prerequisites: win-20 needs win-5.
    h.completed("ivy", "win-20").await;
    let (s, e) = h.post(&claim("winter", "win-20"), "ivy", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_of(&e), "Prerequisites not completed (goal_id: win-20)");
    h.completed("ivy", "win-5").await;
    let (s, _) = h.post(&claim("winter", "win-20"), "ivy", "").await;
    assert_eq!(s, StatusCode::OK);

    // The list shows the claim.
    let (_, list) = h.get(LIST, "ivy").await;
    let k = goal(find(&list, "winter"), "kill-10");
    assert_eq!(k["status"], "claimed");
    assert_eq!(k["claimedAt"], "2025-11-04T12:00:30Z");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn rotated_goal_must_be_recompleted(pool: PgPool) {
    let h = Harness::new(pool);
    h.completed("jay", "daily-login").await;
    let (_, before) = h.get(&format!("{LIST}/daily"), "jay").await;
    assert_eq!(goal(&before, "daily-login")["status"], "completed");
    // Next UTC day: the view resets the row and the claim is refused.
    h.clock.set(at("2025-11-05T00:00:01Z"));
    let (_, after) = h.get(&format!("{LIST}/daily"), "jay").await;
    let g = goal(&after, "daily-login");
    assert_eq!(g["status"], "not_started");
    assert_eq!(g["progress"], 0);
    assert_eq!(g["completedAt"], "");
    assert_eq!(g["expiresAt"], "2025-11-06T00:00:00Z");
    assert_eq!(g["expiresInSeconds"], 86399);
    let (s, e) = h
        .post(&format!("{LIST}/daily/goals/daily-login/claim"), "jay", "")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        e["message"],
        "Goal has rotated and must be re-completed (goal_id: daily-login, challenge_id: daily)"
    );
    assert_eq!(h.granter.calls(), 0);
    assert_eq!(
        h.row_status("jay", "daily-login").await.unwrap().0,
        "completed"
    );
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn batch_select_collapses_duplicates_and_shows_real_progress(pool: PgPool) {
    let h = Harness::new(pool);
    let uri = format!("{LIST}/winter/goals/batch-select");
    h.post(INIT, "kim", "").await;
    // win-5 already has progress from earlier play.
    h.call(
        "PUT",
        &format!("{LIST}/winter/goals/win-5/active"),
        "kim",
        Some(r#"{"isActive":false}"#),
    )
    .await;
    h.set_row("kim", "win-5", 3, "in_progress", None).await;
    h.clock.advance(Duration::minutes(1));
    let (s, body) = h
        .post(&uri, "kim", r#"{"goalIds":["win-5","win-5","kill-50"]}"#)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["challengeId"], "winter");
    assert_eq!(body["totalActiveGoals"], 4);
    assert_eq!(body["replacedGoals"], json!([]));
    let sel = body["selectedGoals"].as_array().unwrap();
    assert_eq!(sel.len(), 2);
    assert_eq!(
        sel[0],
        json!({"goalId": "win-5", "name": "Winner", "description": "Win 5 matches",
               "requirement": {"statCode": "wins", "operator": ">=", "targetValue": 5},
               "reward": {"type": "ITEM", "rewardId": "trophy", "quantity": 1},
               "status": "in_progress", "progress": 3, "target": 5, "isActive": true,
               "assignedAt": "2025-11-04T12:01:00Z", "expiresAt": ""})
    );
    assert_eq!(sel[1]["goalId"], "kill-50");
    assert_eq!(sel[1]["status"], "not_started");

    // Replace: the other active goals of the challenge are deactivated.
    let (_, body) = h
        .post(
            &uri,
            "kim",
            r#"{"goal_ids":["win-5"],"replace_existing":true}"#,
        )
        .await;
    assert_eq!(body["totalActiveGoals"], 1);
    assert_eq!(
        body["replacedGoals"],
        json!(["kill-10", "kill-50", "login-3"])
    );
    assert_eq!(
        h.row_status("kim", "kill-10").await,
        Some(("not_started".into(), false))
    );
    // Other challenges are untouched: daily-login is still implicit (no row), and active.
    assert_eq!(h.row_status("kim", "daily-login").await, None);
    let (_, listed) = h.get(LIST, "kim").await;
    assert_eq!(
        goal(find(&listed, "daily"), "daily-login")["isActive"],
        true
    );

    let cases = [
        (
            r#"{"goalIds":[]}"#,
            "winter",
            StatusCode::BAD_REQUEST,
            "goal_ids cannot be empty",
        ),
        (
            "",
            "winter",
            StatusCode::BAD_REQUEST,
            "goal_ids cannot be empty",
        ),
        (
            r#"{"goalIds":["x"]}"#,
            "nope",
            StatusCode::NOT_FOUND,
            "challenge 'nope' not found",
        ),
        (
            r#"{"goalIds":["win-5","x"]}"#,
            "winter",
            StatusCode::NOT_FOUND,
            "goal 'x' not found",
        ),
        (
            r#"{"goalIds":["daily-login"]}"#,
            "winter",
            StatusCode::NOT_FOUND,
            "goal 'daily-login' not found",
        ),
    ];
    for (req, c, status, msg) in cases {
        let (s, e) = h
            .post(&format!("{LIST}/{c}/goals/batch-select"), "kim", req)
            .await;
        assert_eq!((s, e["message"].as_str().unwrap()), (status, msg), "{req}");
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn random_select_draws_only_available_goals(pool: PgPool) {
    let h = Harness::new(pool);
    let uri = format!("{LIST}/winter/goals/random-select");
    h.post(INIT, "lee", "").await;
    h.set_row("lee", "login-3", 3, "completed", Some(NOON))
        .await;
    // Available: kill-10 (active), win-5. Completed login-3 and locked kill-50/win-20 are not.
    let (s, body) = h.post(&uri, "lee", r#"{"count":5}"#).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let mut ids: Vec<_> = body["selectedGoals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["goalId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["kill-10", "win-5"]);
    assert_eq!(body["totalActiveGoals"], 3, "kill-10, login-3, win-5");

    // excludeActive: nothing left but... nothing: every available goal is active now.
    let (s, e) = h
        .post(&uri, "lee", r#"{"count":2,"excludeActive":true}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        e["message"],
        "INSUFFICIENT_GOALS: no goals available for selection (available: 0, requested: 2)"
    );
    assert_eq!(e["code"], 3);

    // Unlock kill-50 by completing kill-10: it becomes the only inactive candidate.
    h.set_row("lee", "kill-10", 10, "completed", Some(NOON))
        .await;
    let (_, body) = h
        .post(&uri, "lee", r#"{"count":3,"replaceExisting":true}"#)
        .await;
    let sel = body["selectedGoals"].as_array().unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0]["goalId"], "kill-50");
    assert_eq!(body["totalActiveGoals"], 1);
    assert_eq!(
        body["replacedGoals"],
        json!(["kill-10", "login-3", "win-5"])
    );

    let (s, e) = h.post(&uri, "lee", r#"{"count":0}"#).await;
    assert_eq!(
        (s, e["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("count must be greater than 0")
        )
    );
    let (s, _) = h.post(&uri, "lee", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = h
        .post(
            &format!("{LIST}/nope/goals/random-select"),
            "lee",
            r#"{"count":1}"#,
        )
        .await;
    assert_eq!(
        (s, e["message"].clone()),
        (StatusCode::NOT_FOUND, json!("challenge 'nope' not found"))
    );
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn random_select_covers_the_pool(pool: PgPool) {
    let h = Harness::new(pool);
    let uri = format!("{LIST}/winter/goals/random-select");
    // Fresh player, one pick at a time: kill-10, login-3, win-5 are available.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let user = format!("u{i}");
        let (_, body) = h.post(&uri, &user, r#"{"count":1}"#).await;
        seen.insert(
            body["selectedGoals"][0]["goalId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["kill-10", "login-3", "win-5"]
    );
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn rotation_status_across_period_boundaries(pool: PgPool) {
    let h = Harness::new(pool);
    let (s, body) = h.get(&format!("{LIST}/daily/rotation"), "max").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body,
        json!({"challengeId": "daily", "rotation": {
            "enabled": true, "type": "global", "schedule": "daily",
            "currentPeriod": {"startTime": "2025-11-04T00:00:00Z", "endTime": "2025-11-05T00:00:00Z", "expiresInSeconds": 43200},
            "nextPeriod": {"startTime": "2025-11-05T00:00:00Z", "endTime": "2025-11-06T00:00:00Z", "expiresInSeconds": 129600}
        }})
    );
    h.clock.set(at("2025-11-04T23:59:59Z"));
    let (_, body) = h.get(&format!("{LIST}/daily/rotation"), "max").await;
    assert_eq!(body["rotation"]["currentPeriod"]["expiresInSeconds"], 1);
    h.clock.set(at("2025-11-05T00:00:00Z"));
    let (_, body) = h.get(&format!("{LIST}/daily/rotation"), "max").await;
    assert_eq!(
        body["rotation"]["currentPeriod"]["startTime"],
        "2025-11-05T00:00:00Z"
    );
    assert_eq!(body["rotation"]["currentPeriod"]["expiresInSeconds"], 86400);

    // Weekly: Sunday night still belongs to the week that started Monday.
    h.clock.set(at("2025-11-09T23:00:00Z"));
    let (_, body) = h.get(&format!("{LIST}/weekly/rotation"), "max").await;
    let r = &body["rotation"];
    assert_eq!(r["schedule"], "weekly");
    assert_eq!(r["currentPeriod"]["startTime"], "2025-11-03T00:00:00Z");
    assert_eq!(r["currentPeriod"]["endTime"], "2025-11-10T00:00:00Z");
    assert_eq!(r["currentPeriod"]["expiresInSeconds"], 3600);
    assert_eq!(r["nextPeriod"]["endTime"], "2025-11-17T00:00:00Z");

    let (_, body) = h.get(&format!("{LIST}/winter/rotation"), "max").await;
    assert_eq!(
        body,
        json!({"challengeId": "winter", "rotation": {
            "enabled": false, "type": "", "schedule": "",
            "currentPeriod": {"startTime": "", "endTime": "", "expiresInSeconds": 0},
            "nextPeriod": {"startTime": "", "endTime": "", "expiresInSeconds": 0}
        }})
    );
    let (s, e) = h.get(&format!("{LIST}/nope/rotation"), "max").await;
    assert_eq!(
        (s, e["message"].clone()),
        (StatusCode::NOT_FOUND, json!("challenge 'nope' not found"))
    );
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn unknown_routes_and_methods_answer_json(pool: PgPool) {
    let h = Harness::new(pool);
    let cases = [
        ("GET", "/challenge/v1/nothing", StatusCode::NOT_FOUND, 5),
        ("GET", "/elsewhere", StatusCode::NOT_FOUND, 5),
        (
            "GET",
            "/challenge/v1/challenges/winter/goals/kill-10/claim",
            StatusCode::METHOD_NOT_ALLOWED,
            12,
        ),
        (
            "DELETE",
            "/challenge/v1/challenges",
            StatusCode::METHOD_NOT_ALLOWED,
            12,
        ),
        (
            "POST",
            "/challenge/healthz",
            StatusCode::METHOD_NOT_ALLOWED,
            12,
        ),
        (
            "POST",
            "/challenge/v1/challenges/winter",
            StatusCode::METHOD_NOT_ALLOWED,
            12,
        ),
    ];
    for (m, uri, status, code) in cases {
        let (s, body) = h.call(m, uri, "x", None).await;
        assert_eq!(s, status, "{m} {uri}");
        assert_eq!(body["code"], code, "{m} {uri}");
        assert_eq!(body["details"], json!([]), "{m} {uri}");
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn health_and_swagger_need_no_user(pool: PgPool) {
    let h = Harness::new(pool.clone());
    let (s, body) = h.get("/challenge/healthz", "").await;
    assert_eq!((s, body), (StatusCode::OK, json!({"status": "healthy"})));
    let (s, html) = h.call_raw("GET", "/challenge/apidocs/", "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("swagger-ui-bundle.js"));
    let (s, spec) = h.get("/challenge/apidocs/api.json", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(spec["basePath"], "/challenge");
    assert!(spec["paths"]["/v1/challenges/{challengeId}/rotation"]["get"].is_object());
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-ui-standalone-preset.js",
        "initializer.js",
    ] {
        let (s, body) = h
            .call_raw("GET", &format!("/challenge/apidocs/{asset}"), "", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{asset}");
        assert!(!body.is_empty());
    }
    let (s, _) = h.call_raw("GET", "/challenge/apidocs", "", None).await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);

    // Another base path moves everything.
    let other = extend_challenge_service::server::http_router(
        h.service.clone(),
        mock_auth(),
        "/game/quests",
    );
    let h2 = Harness { router: other, ..h };
    let (s, spec) = h2.get("/game/quests/apidocs/api.json", "").await;
    assert_eq!(
        (s, spec["basePath"].clone()),
        (StatusCode::OK, json!("/game/quests"))
    );
    let (s, _) = h2.get("/game/quests/v1/challenges", "zed").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h2.get("/challenge/v1/challenges", "zed").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn health_reports_database_down(pool: PgPool) {
    let h = Harness::new(pool.clone());
    pool.close().await;
    let (s, body) = h.get("/challenge/healthz", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], 14);
    let (s, body) = h.get(LIST, "nia").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["message"], "service temporarily unavailable");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn auth_guards_every_route_but_health_and_docs(pool: PgPool) {
    let h = Harness::new(pool);
    let auth = extend_challenge_service::auth::Authenticator::from_settings(
        &settings(&[
            ("PLUGIN_GRPC_SERVER_AUTH_ENABLED", "true"),
            ("AB_BASE_URL", "http://127.0.0.1:9"),
        ]),
        reqwest::Client::new(),
    );
    let router =
        extend_challenge_service::server::http_router(h.service.clone(), auth, "/challenge");
    let h = Harness { router, ..h };
    let routes = [
        ("GET", "/challenge/v1/challenges"),
        ("GET", "/challenge/v1/challenges/winter"),
        ("POST", "/challenge/v1/challenges/initialize"),
        (
            "PUT",
            "/challenge/v1/challenges/winter/goals/kill-10/active",
        ),
        (
            "POST",
            "/challenge/v1/challenges/winter/goals/kill-10/claim",
        ),
        ("POST", "/challenge/v1/challenges/winter/goals/batch-select"),
        (
            "POST",
            "/challenge/v1/challenges/winter/goals/random-select",
        ),
        ("GET", "/challenge/v1/challenges/winter/rotation"),
    ];
    for (m, uri) in routes {
        let (s, body) = h.call(m, uri, "mallory", Some("{}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert_eq!(body["code"], 16, "{m} {uri}");
        assert_eq!(body["details"], json!([]));
    }
    let (s, _) = h.get("/challenge/healthz", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.get("/challenge/apidocs/api.json", "").await;
    assert_eq!(s, StatusCode::OK);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn concurrent_first_initializations_agree(pool: PgPool) {
    let h = std::sync::Arc::new(Harness::new(pool));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.post(INIT, "oz", "").await }));
    }
    let mut new_total = 0;
    for t in tasks {
        let (s, body) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["totalActive"], 3, "{body}");
        assert_eq!(body["assignedGoals"].as_array().unwrap().len(), 3);
        new_total += body["newAssignments"].as_i64().unwrap();
    }
    assert_eq!(new_total, 3);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn over_long_user_id_is_a_bad_request(pool: PgPool) {
    let h = Harness::new(pool);
    let user = "u".repeat(101);
    let (s, body) = h.post(INIT, &user, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], 3);
}
