//! The admin API (CONTRACT §9) through both transports, on real sockets, against real
//! Postgres: catalog versions, the `expectedVersion` race (409), rollback, the dry-run's
//! exact counts on seeded players and an apply that matches them, and every player QA tool
//! — including a reset goal paid again exactly once. (Permissions: `admin_auth.rs`.)

mod common;

use std::sync::Arc;

use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::parse_and_validate;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::admin_client::AdminClient;
use extend_challenge_common::store::catalog;
use http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tonic::Code;

const BASE: &str = "/challenge/v1";
const ADMIN: &str = "ops-1";

/// The fixture imported as version 1, and the service serving (and following) it.
async fn start(pool: &PgPool, granter: Arc<CountingGranter>) -> Running {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let config = parse_and_validate("fixture", &text).unwrap();
    catalog::import_file(pool, &text, &config).await.unwrap();
    let (clock, _hand) = Clock::manual(at(NOON));
    serve_with(
        &settings(&[]),
        pool.clone(),
        mock_auth(),
        clock,
        granter,
        Some(1),
    )
    .await
}

impl Running {
    /// A REST call as `user` (auth is off: the `x-mock-user-id` header).
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("http://{}{BASE}{path}", self.http);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = reqwest::Client::new()
            .request(method, url)
            .header("x-mock-user-id", user);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self) -> AdminClient<tonic::transport::Channel> {
        AdminClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    async fn shut(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A gRPC request from the admin.
fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-mock-user-id", ADMIN.parse().unwrap());
    r
}

/// The fixture as JSON, changed by `edit`.
fn fixture_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    edit(&mut v);
    v
}

fn winter_goal<'a>(v: &'a mut Value, id: &str) -> &'a mut Value {
    v["challenges"][0]["goals"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["goalId"] == id)
        .unwrap()
}

async fn seed(pool: &PgPool, user: &str, goal: &str, status: &str, progress: i32) {
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at) \
         VALUES ($1, $2, 'winter', 'test-ns', $4, $3, \
             CASE WHEN $3 IN ('completed', 'claimed') THEN now() END)",
    )
    .bind(user)
    .bind(goal)
    .bind(status)
    .bind(progress)
    .execute(pool)
    .await
    .unwrap();
}

async fn status(pool: &PgPool, user: &str, goal: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2")
        .bind(user)
        .bind(goal)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn versions_the_race_and_rollback_through_both_transports(pool: PgPool) {
    let svc = start(&pool, Arc::default()).await;
    let (s, active) = svc.call("GET", "/admin/catalog", ADMIN, None).await;
    assert_eq!(s, StatusCode::OK, "{active}");
    assert_eq!(active["version"], 1);
    assert!(active["source"].as_str().unwrap().starts_with("file:"));
    assert_eq!(active["config"]["challenges"][0]["challengeId"], "winter");

    // Validate: precise errors, as at start-up; nothing stored.
    let mut bad = fixture_with(|_| {});
    winter_goal(&mut bad, "kill-10")["requirement"]["targetValue"] = json!(0);
    let (s, v) = svc
        .call("POST", "/admin/catalog/validate", ADMIN, Some(bad.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("kill-10")
                && e.as_str().unwrap().contains("targetValue")),
        "{v}"
    );
    let (s, v) = svc
        .call(
            "POST",
            "/admin/catalog/validate",
            ADMIN,
            Some(fixture_with(|_| {})),
        )
        .await;
    assert_eq!(
        (s, &v["valid"], &v["goals"]),
        (StatusCode::OK, &json!(true), &json!(8))
    );
    // An invalid catalog is refused by apply too.
    let (s, v) = svc
        .call(
            "POST",
            "/admin/catalog",
            ADMIN,
            Some(json!({"config": bad, "expectedVersion": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Apply (REST) with the right expectation; a second writer with the same one gets 409.
    let v2 = fixture_with(|v| winter_goal(v, "win-5")["name"] = json!("Win five"));
    let (s, v) = svc
        .call(
            "POST",
            "/admin/catalog",
            ADMIN,
            Some(json!({"config": v2, "expectedVersion": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["version"].as_i64(), v["previousVersion"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["changes"][0]["fields"], json!(["name"]));
    // Served here at once.
    let (_, list) = svc.call("GET", "/challenges", "p1", None).await;
    assert_eq!(goal(find(&list, "winter"), "win-5")["name"], "Win five");
    let (s, v) = svc
        .call(
            "POST",
            "/admin/catalog",
            ADMIN,
            Some(json!({"config": v2, "expectedVersion": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], 10);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("catalog version 2 is active"),
        "{v}"
    );
    // The same race over gRPC.
    let mut admin = svc.admin().await;
    let err = admin
        .apply_catalog(req(pb::ApplyCatalogRequest {
            config_json: v2.to_string(),
            expected_version: Some(1),
            note: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);

    // The list of versions, newest first, with their sources.
    let versions = admin
        .list_catalog_versions(req(pb::ListCatalogVersionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.active, v.source.starts_with("file:")))
            .collect::<Vec<_>>(),
        vec![(2, true, false), (1, false, true)]
    );
    assert_eq!(versions[0].source, format!("api:{ADMIN}"));

    // Rollback (gRPC) to 1: a new version 3 with 1's content, served here at once.
    let back = admin
        .rollback_catalog(req(pb::RollbackCatalogRequest {
            version: 1,
            expected_version: Some(2),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((back.version, back.previous_version), (3, 2));
    let got = admin
        .get_catalog(req(pb::GetCatalogRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.version, 3);
    assert_eq!(got.config_json, std::fs::read_to_string(FIXTURE).unwrap());
    let (_, v) = svc.call("GET", "/admin/catalog", ADMIN, None).await;
    assert_eq!(v["servedVersion"], 3);
    // The player sees version 3's name again.
    let (_, list) = svc.call("GET", "/challenges", "p1", None).await;
    assert_eq!(goal(find(&list, "winter"), "win-5")["name"], "Winner");
    let (s, _) = svc
        .call(
            "POST",
            "/admin/catalog/rollback",
            ADMIN,
            Some(json!({"version": 42})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    svc.shut().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_dry_run_counts_exactly_and_apply_does_what_it_reported(pool: PgPool) {
    let svc = start(&pool, Arc::default()).await;
    // kill-10: 10 → 6 (p1 at 7 completes, p2 at 5 does not, p3 completed stays);
    // login-3: 3 → 5 (p1 at 2: nothing); win-20 removed (p1's row stays, hidden);
    // kill-100 added.
    seed(&pool, "p1", "kill-10", "in_progress", 7).await;
    seed(&pool, "p2", "kill-10", "in_progress", 5).await;
    seed(&pool, "p3", "kill-10", "completed", 10).await;
    seed(&pool, "p1", "login-3", "in_progress", 2).await;
    seed(&pool, "p1", "win-20", "in_progress", 3).await;
    let next = fixture_with(|v| {
        winter_goal(v, "kill-10")["requirement"]["targetValue"] = json!(6);
        winter_goal(v, "login-3")["requirement"]["targetValue"] = json!(5);
        let mut added = winter_goal(v, "kill-50").clone();
        added["goalId"] = json!("kill-100");
        added["requirement"]["targetValue"] = json!(100);
        let goals = v["challenges"][0]["goals"].as_array_mut().unwrap();
        goals.retain(|g| g["goalId"] != "win-20");
        goals.push(added);
    });
    let expected = json!([
        {"challengeId": "winter", "goalId": "kill-10", "change": "changed",
         "fields": ["requirement.targetValue"], "players": 3,
         "statusChanges": {"in_progress->completed": 1}},
        {"challengeId": "winter", "goalId": "login-3", "change": "changed",
         "fields": ["requirement.targetValue"], "players": 1, "statusChanges": {}},
        {"challengeId": "winter", "goalId": "kill-100", "change": "added",
         "fields": [], "players": 0, "statusChanges": {}},
        {"challengeId": "winter", "goalId": "win-20", "change": "removed",
         "fields": [], "players": 1, "statusChanges": {}},
    ]);
    let (s, report) = svc
        .call("POST", "/admin/catalog/dry-run", ADMIN, Some(next.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["activeVersion"], 1);
    assert_eq!(report["changes"], expected);
    // The same over gRPC.
    let mut admin = svc.admin().await;
    let grpc = admin
        .dry_run_catalog(req(pb::CatalogContent {
            config_json: next.to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.active_version, 1);
    assert_eq!(grpc.changes.len(), 4);
    assert_eq!(grpc.changes[0].status_changes["in_progress->completed"], 1);
    assert_eq!(grpc.changes[3].players, 1);
    assert_eq!(
        status(&pool, "p1", "kill-10").await.as_deref(),
        Some("in_progress")
    );

    // Apply: exactly what the dry-run reported.
    let (s, applied) = svc
        .call(
            "POST",
            "/admin/catalog",
            ADMIN,
            Some(json!({"config": next, "expectedVersion": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{applied}");
    assert_eq!(applied["changes"], expected);
    assert_eq!(
        status(&pool, "p1", "kill-10").await.as_deref(),
        Some("completed")
    );
    assert_eq!(
        status(&pool, "p2", "kill-10").await.as_deref(),
        Some("in_progress")
    );
    assert_eq!(
        status(&pool, "p1", "win-20").await.as_deref(),
        Some("in_progress")
    );
    // The player's list (admin tool, both transports): the new goal, not the removed one.
    let (s, list) = svc
        .call("GET", "/admin/users/p1/challenges", ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let winter = find(&list, "winter");
    assert_eq!(goal(winter, "kill-10")["status"], "completed");
    assert_eq!(goal(winter, "kill-100")["status"], "not_started");
    assert!(!goal_ids(winter).contains(&"win-20".to_string()));
    let grpc_list = admin
        .get_player_challenges(req(pb::PlayerRequest {
            user_id: "p1".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let winter = grpc_list
        .challenges
        .iter()
        .find(|c| c.challenge_id == "winter")
        .unwrap();
    assert!(winter.goals.iter().any(|g| g.goal_id == "kill-100"));
    assert!(!winter.goals.iter().any(|g| g.goal_id == "win-20"));
    // The removed goal cannot be claimed.
    let (s, _) = svc
        .call(
            "POST",
            "/challenges/winter/goals/win-20/claim",
            "p1",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    svc.shut().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn qa_tools_and_a_reset_goal_paid_again_exactly_once(pool: PgPool) {
    let granter = Arc::new(CountingGranter::default());
    let svc = start(&pool, granter.clone()).await;
    let mut admin = svc.admin().await;
    let claim = || {
        svc.call(
            "POST",
            "/challenges/winter/goals/kill-10/claim",
            "amy",
            Some(json!({})),
        )
    };

    // Set progress (REST) to the target: completed, claimable, paid once.
    let (s, v) = svc
        .call(
            "PUT",
            "/admin/users/amy/challenges/winter/goals/kill-10/progress",
            ADMIN,
            Some(json!({"progress": 10})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["before"], Value::Null);
    assert_eq!(v["after"]["status"], "completed");
    assert_eq!(claim().await.0, StatusCode::OK);
    assert_eq!(claim().await.0, StatusCode::CONFLICT, "already claimed");
    assert_eq!(granter.calls(), 1);

    // Reset (gRPC): not started again, the claim of the period forgotten.
    let reset = admin
        .reset_player_goal(req(pb::PlayerGoalRequest {
            user_id: "amy".into(),
            challenge_id: "winter".into(),
            goal_id: "kill-10".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.before.as_ref().unwrap().status, "claimed");
    let after = reset.after.unwrap();
    assert_eq!(
        (after.status.as_str(), after.progress, after.resets),
        ("not_started", 0, 1)
    );
    let (s, _) = claim().await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not completed again yet");
    // Earned again (gRPC set progress), paid again exactly once.
    let set = admin
        .set_player_goal_progress(req(pb::SetPlayerGoalProgressRequest {
            user_id: "amy".into(),
            challenge_id: "winter".into(),
            goal_id: "kill-10".into(),
            progress: 12,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.after.unwrap().status, "completed");
    assert_eq!(claim().await.0, StatusCode::OK);
    assert_eq!(claim().await.0, StatusCode::CONFLICT);
    assert_eq!(granter.calls(), 2, "paid again, exactly once");
    let periods: Vec<String> = sqlx::query_scalar(
        "SELECT period_key FROM reward_grants WHERE user_id = 'amy' AND state = 'granted' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        periods,
        ["once", "once/r1"],
        "the first grant stays in the history"
    );

    // Bad input: a negative progress, an unknown goal.
    let (s, _) = svc
        .call(
            "PUT",
            "/admin/users/amy/challenges/winter/goals/kill-10/progress",
            ADMIN,
            Some(json!({"progress": -1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = svc
        .call(
            "POST",
            "/admin/users/amy/challenges/winter/goals/nope/reset",
            ADMIN,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Unenroll (REST): every row of the player goes; the grant history stays.
    svc.call("POST", "/challenges/initialize", "amy", Some(json!({})))
        .await;
    let (s, v) = svc
        .call("DELETE", "/admin/users/amy/goals", ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["goalsRemoved"], 1);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_goal_progress WHERE user_id = 'amy'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 0);
    let grants: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reward_grants WHERE user_id = 'amy'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(grants, 2);
    // Unenroll over gRPC: nothing left.
    let none = admin
        .unenroll_player(req(pb::PlayerRequest {
            user_id: "amy".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.goals_removed, 0);
    svc.shut().await;
}
