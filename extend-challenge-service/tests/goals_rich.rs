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

/// A per-player window (CONTRACT §8): it starts when the goal is assigned to the player;
/// `expiresAt`, the rotation status and the grant key follow the player's own windows.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn per_player_windows_start_at_assignment(pool: PgPool) {
    let h = harness(pool.clone());
    let sprint = "/challenge/v1/challenges/rich/goals/sprint/claim";
    h.post("/challenge/v1/challenges/initialize", "dan", "{}")
        .await;
    h.clock.advance(chrono::Duration::hours(5));
    h.post("/challenge/v1/challenges/initialize", "eli", "{}")
        .await;

    let shown = |list: &serde_json::Value| {
        let g = goal(find(list, "rich"), "sprint");
        (
            g["expiresAt"].as_str().unwrap().to_string(),
            g["expiresInSeconds"].as_i64().unwrap(),
        )
    };
    // Now 17:00: dan's window ends at noon tomorrow, eli's at 17:00 tomorrow.
    let (_, dan) = h.get("/challenge/v1/challenges", "dan").await;
    assert_eq!(shown(&dan), ("2025-11-05T12:00:00Z".into(), 19 * 3600));
    let (_, eli) = h.get("/challenge/v1/challenges", "eli").await;
    assert_eq!(shown(&eli), ("2025-11-05T17:00:00Z".into(), 24 * 3600));
    let (s, rot) = h.get("/challenge/v1/challenges/rich/rotation", "eli").await;
    assert_eq!(s, StatusCode::OK, "{rot}");
    assert_eq!(rot["rotation"]["type"], "per_user");
    assert_eq!(rot["rotation"]["schedule"], "1d");
    assert_eq!(
        rot["rotation"]["currentPeriod"]["startTime"],
        "2025-11-04T17:00:00Z"
    );
    assert_eq!(
        rot["rotation"]["nextPeriod"]["startTime"],
        "2025-11-05T17:00:00Z"
    );

    // dan completes and claims in his first window, then again in the next one. (Activating
    // the already assigned goal keeps its window: re-activation never restarts one.)
    h.completed("dan", "sprint").await;
    let (s, body) = h.post(sprint, "dan", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Deactivating and reactivating does not restart the window (no second reward).
    for active in ["false", "true"] {
        let (s, _) = h
            .call(
                "PUT",
                "/challenge/v1/challenges/rich/goals/sprint/active",
                "dan",
                Some(&format!(r#"{{"isActive":{active}}}"#)),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (_, dan) = h.get("/challenge/v1/challenges", "dan").await;
    let g = goal(find(&dan, "rich"), "sprint").clone();
    assert_eq!(
        (&g["status"], &g["expiresAt"]),
        (&"claimed".into(), &"2025-11-05T12:00:00Z".into())
    );
    let (s, _) = h.post(sprint, "dan", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    h.clock.advance(chrono::Duration::hours(20)); // 13:00 the next day: dan's second window
    let (_, dan) = h.get("/challenge/v1/challenges", "dan").await;
    let g = goal(find(&dan, "rich"), "sprint").clone();
    assert_eq!(
        (&g["status"], &g["expiresAt"]),
        (&"not_started".into(), &"2025-11-06T12:00:00Z".into())
    );
    h.materialize("dan", "sprint").await;
    // Completed in the second window, as the event handler stores it (rolled over first).
    sqlx::query(
        "UPDATE user_goal_progress SET progress = 1, status = 'completed', claimed_at = NULL, \
           completed_at = '2025-11-05T13:00:00Z', expires_at = '2025-11-06T12:00:00Z' \
         WHERE user_id = 'dan' AND goal_id = 'sprint'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (s, body) = h.post(sprint, "dan", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        periods(&pool, "dan", "sprint").await,
        ["win:2025-11-04T12:00:00Z", "win:2025-11-05T12:00:00Z"]
    );
    assert_eq!(h.granter.calls(), 2);
}

/// Requirement groups (CONTRACT §8) as the player sees them: each requirement's `current`
/// and `met`; `requirement` and `progress` describe the first requirement; over REST and
/// gRPC; claimable once a group is all met.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn requirement_groups_show_each_requirement_and_claim_once_met(pool: PgPool) {
    let h = harness(pool.clone());
    h.post("/challenge/v1/challenges/initialize", "fia", "{}")
        .await;
    h.materialize("fia", "either").await;
    // As the event handler stores it: kills 12, wins 1 (group A half met), deaths 0.
    sqlx::query(
        "UPDATE user_goal_progress SET progress = 12, status = 'in_progress', \
           req_state = '12/,1/,0/,' WHERE user_id = 'fia' AND goal_id = 'either'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (_, list) = h.get("/challenge/v1/challenges", "fia").await;
    let g = goal(find(&list, "combo"), "either").clone();
    assert_eq!(g["progress"], 12);
    assert_eq!(g["requirement"]["statCode"], "kills");
    assert_eq!(
        g["requirementGroups"],
        serde_json::json!([
            {"requirements": [
                {"statCode": "kills", "operator": ">=", "targetValue": 10,
                 "progressMode": "absolute", "current": 12, "met": true},
                {"statCode": "wins", "operator": ">=", "targetValue": 2,
                 "progressMode": "increment", "current": 1, "met": false}
            ]},
            {"requirements": [
                {"statCode": "deaths", "operator": "=", "targetValue": 0,
                 "progressMode": "absolute", "current": 0, "met": true},
                {"statCode": "score", "operator": ">=", "targetValue": 100,
                 "progressMode": "absolute", "current": 0, "met": false}
            ]}
        ])
    );
    let claim = "/challenge/v1/challenges/combo/goals/either/claim";
    assert_eq!(h.post(claim, "fia", "").await.0, StatusCode::BAD_REQUEST);

    // gRPC shows the same.
    let list = h
        .service
        .get_user_challenges(
            "fia",
            extend_challenge_common::pb::service::GetChallengesRequest::default(),
        )
        .await
        .unwrap();
    let combo = list
        .challenges
        .iter()
        .find(|c| c.challenge_id == "combo")
        .unwrap();
    let groups = &combo.goals[0].requirement_groups;
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].requirements[1].current, 1);
    assert!(!groups[0].requirements[1].met);
    assert!(groups[1].requirements[0].met);

    // Group A complete (the handler completes the row): claimable, paid once.
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'completed', completed_at = now(), \
           req_state = '12/,2/,0/,' WHERE user_id = 'fia' AND goal_id = 'either'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (s, body) = h.post(claim, "fia", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h.granter.calls(), 1);
}

/// The same goals through the real gRPC server (its fast list path): `timesClaimed`,
/// `maxTimes`, `requirementGroups` and the caller's own per-player window.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn rich_goals_over_the_grpc_transport(pool: PgPool) {
    use extend_challenge_common::clock::Clock;
    use extend_challenge_common::pb::service as pb;
    use extend_challenge_common::pb::service::service_client::ServiceClient;
    use extend_challenge_service::auth::Authenticator;
    use extend_challenge_service::server::{Application, Dependencies};

    let settings = settings(&[("AB_BASE_URL", "http://127.0.0.1:9")]);
    let (clock, _hand) = Clock::manual(at(NOON));
    let deps = Dependencies {
        catalog_version: None,
        pool: pool.clone(),
        config: Arc::new(config::load_from_path(GOALS).unwrap()),
        granter: Arc::new(CountingGranter::default()),
        auth: Authenticator::from_settings(&settings, reqwest::Client::new()),
        clock,
    };
    let app = Application::build(&settings, deps).await.unwrap();
    let addr = app.grpc_addr();
    let stop = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    let mut c = ServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    fn req<T>(msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("x-mock-user-id", "gus".parse().unwrap());
        r
    }
    c.initialize_player(req(pb::InitializeRequest {}))
        .await
        .unwrap();
    materialize(
        &pool,
        &config::load_from_path(GOALS).unwrap(),
        "gus",
        "either",
    )
    .await;
    sqlx::query(
        "UPDATE user_goal_progress SET progress = 12, status = 'in_progress', \
           req_state = '12/,1/,0/,/' WHERE user_id = 'gus' AND goal_id = 'either'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let list = c
        .get_user_challenges(req(pb::GetChallengesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let goal = |cid: &str, gid: &str| {
        list.challenges
            .iter()
            .find(|c| c.challenge_id == cid)
            .and_then(|c| c.goals.iter().find(|g| g.goal_id == gid))
            .cloned()
            .unwrap()
    };
    assert_eq!(goal("rich", "again").max_times, 2);
    assert_eq!(goal("rich", "again").times_claimed, 0);
    assert!(goal("rich", "again").requirement_groups.is_empty());
    assert_eq!(goal("rich", "sprint").expires_at, "2025-11-05T12:00:00Z");
    let either = goal("combo", "either");
    assert_eq!(either.progress, 12);
    assert_eq!(either.requirement_groups.len(), 2);
    let wins = &either.requirement_groups[0].requirements[1];
    assert_eq!(
        (wins.stat_code.as_str(), wins.current, wins.met),
        ("wins", 1, false)
    );
    assert!(
        either.requirement_groups[1].requirements[0].met,
        "deaths = 0 seen"
    );
    let rotation = c
        .get_rotation_status(req(pb::GetRotationStatusRequest {
            challenge_id: "rich".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .rotation
        .unwrap();
    assert_eq!(rotation.r#type, "per_user");
    assert_eq!(rotation.current_period.unwrap().start_time, NOON);
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Retention (CONTRACT §3.6) with per-player windows: a player's row whose own window ended
/// more than the retention ago is deleted; another player's, whose window ended recently, is
/// kept (expiry is per row, so per player).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn retention_follows_each_players_own_window(pool: PgPool) {
    use extend_challenge_common::clock::Clock;
    use extend_challenge_common::settings::CleanupSettings;
    use extend_challenge_service::cleanup::{Cleanup, CleanupPass};

    let h = harness(pool.clone());
    for user in ["old", "recent"] {
        h.post("/challenge/v1/challenges/initialize", user, "{}")
            .await;
    }
    for (user, days) in [("old", 10), ("recent", 3)] {
        h.materialize(user, "sprint").await;
        sqlx::query(
            "UPDATE user_goal_progress SET expires_at = $2, progress = 1, status = 'in_progress' \
             WHERE user_id = $1 AND goal_id = 'sprint'",
        )
        .bind(user)
        .bind(at(NOON) - chrono::Duration::days(days))
        .execute(&pool)
        .await
        .unwrap();
    }
    let (clock, _hand) = Clock::manual(at(NOON));
    let cleanup = Cleanup::new(
        pool.clone(),
        clock,
        &config::load_from_path(GOALS).unwrap(),
        CleanupSettings {
            enabled: true,
            interval: std::time::Duration::from_secs(3600),
            retention_days: 7,
            batch_size: 100,
            batch_pause: std::time::Duration::ZERO,
            tombstone_days: 7,
        },
    );
    let CleanupPass::Done(report) = cleanup.run_cleanup_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!(report.rows_deleted, 1, "{report:?}");
    assert!(h.row_status("old", "sprint").await.is_none());
    assert!(h.row_status("recent", "sprint").await.is_some());
}
