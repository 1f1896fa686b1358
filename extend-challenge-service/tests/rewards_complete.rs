//! Rewards, complete (CONTRACT §7): several rewards per goal, each granted exactly once;
//! claim all; the reward history; auto-claim from the outbox. The real reward client
//! against the stateful fake Platform (published models only) over real HTTP, on a real
//! Postgres.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_ags::{FakeAgs, Fault};
use common::*;
use extend_challenge_common::config;
use extend_challenge_common::store::outbox;
use extend_challenge_service::app::auto_claim::{
    AutoClaimMetrics, AutoClaimOutcome, AutoClaimPass, AutoClaimer,
};
use extend_challenge_service::rewards::{AgsRewardClient, RetryPolicy};
use http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const REWARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rewards.json");
const DOUBLE: &str = "/challenge/v1/challenges/season/goals/double/claim";
const CLAIM_ALL: &str = "/challenge/v1/challenges/season/claim";
const HISTORY: &str = "/challenge/v1/users/me/rewards";

fn harness(pool: PgPool, ags: &FakeAgs) -> Harness {
    let client = AgsRewardClient::new(
        reqwest::Client::new(),
        &ags.url,
        "client-id",
        "client-secret",
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            deadline: Duration::from_secs(1),
        },
    );
    let config = Arc::new(config::load_from_path(REWARDS).expect("rewards fixture is valid"));
    Harness::with_config(pool, config, Some(Arc::new(client)))
        .map_service(|s| s.with_claim_deadline(Duration::from_secs(2)))
}

async fn intent_states(pool: &PgPool, user: &str, goal: &str) -> Vec<(i16, String)> {
    sqlx::query_as(
        "SELECT reward_index, state FROM reward_grants WHERE user_id = $1 AND goal_id = $2 \
         ORDER BY reward_index",
    )
    .bind(user)
    .bind(goal)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn outbox_len(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reward_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn granted(n: usize) -> Vec<(i16, String)> {
    (0..n).map(|i| (i as i16, "granted".to_string())).collect()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn two_rewards_on_one_goal_are_each_granted_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    h.completed("ana", "double").await;

    let (s, body) = h.post(DOUBLE, "ana", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["rewards"],
        json!([
            {"type": "ITEM", "rewardId": "sword", "quantity": 1},
            {"type": "WALLET", "rewardId": "GOLD", "quantity": 50}
        ])
    );
    assert_eq!(body["reward"], body["rewards"][0]);
    {
        let st = ags.state();
        assert_eq!(st.entitlements.len(), 1);
        assert_eq!(st.credits.len(), 1);
        assert_eq!(st.credits[0]["amount"], 50);
    }
    assert_eq!(intent_states(&pool, "ana", "double").await, granted(2));
    let (s, _) = h.post(DOUBLE, "ana", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(ags.grants(), 2);

    // The list shows both rewards, the first also as `reward`.
    let (_, list) = h.get("/challenge/v1/challenges", "ana").await;
    let double = goal(find(&list, "season"), "double");
    assert_eq!(double["status"], "claimed");
    assert_eq!(double["rewards"].as_array().unwrap().len(), 2);
    assert_eq!(double["reward"]["rewardId"], "sword");
}

/// One of two rewards is granted but its reply is lost: the claim answers 503 and the row
/// stays completed; the retry finds the lost grant, pays nothing twice, and the goal is
/// claimed.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_partly_granted_claim_completes_on_retry_without_paying_twice(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    h.completed("bo", "double").await;
    ags.aim_fault("/wallets/", Fault::LoseReply);

    let (s, body) = h.post(DOUBLE, "bo", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["message"],
        "Reward grant in progress, please retry (goal_id: double)"
    );
    assert_eq!(h.row_status("bo", "double").await.unwrap().0, "completed");
    assert_eq!(
        intent_states(&pool, "bo", "double").await,
        [(0, "granted".to_string()), (1, "pending".to_string())]
    );

    let (s, body) = h.post(DOUBLE, "bo", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    {
        let st = ags.state();
        assert_eq!(st.entitlements.len(), 1, "the sword once");
        assert_eq!(st.credits.len(), 1, "the gold once");
        assert_eq!(st.grant_requests, 2, "the retry granted nothing");
    }
    assert_eq!(intent_states(&pool, "bo", "double").await, granted(2));
    assert_eq!(h.row_status("bo", "double").await.unwrap().0, "claimed");
}

/// AGS refuses one of two rewards: 502, the other stays granted; the next claim grants the
/// refused one only.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_refused_reward_is_granted_alone_by_the_next_claim(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    h.completed("cy", "double").await;
    ags.aim_fault("/entitlements", Fault::Refuse(400));

    let (s, body) = h.post(DOUBLE, "cy", "").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        intent_states(&pool, "cy", "double").await,
        [(0, "failed".to_string()), (1, "granted".to_string())]
    );
    let (s, body) = h.post(DOUBLE, "cy", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let st = ags.state();
    assert_eq!((st.entitlements.len(), st.credits.len()), (1, 1));
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn claim_all_claims_what_passes_and_says_why_the_rest_was_skipped(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    h.completed("dee", "double").await;
    h.completed("dee", "plain").await;
    // plain's grant is lost: in doubt.
    ags.aim_fault("trophy", Fault::LoseReply);

    let (s, body) = h.post(CLAIM_ALL, "dee", "{}").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["challengeId"], "season");
    let claimed: Vec<&str> = body["claimed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["goalId"].as_str().unwrap())
        .collect();
    assert_eq!(claimed, ["double"]);
    assert_eq!(body["claimed"][0]["status"], "claimed");
    assert_eq!(body["claimed"][0]["rewards"].as_array().unwrap().len(), 2);
    let skipped: Vec<(String, i64, String)> = body["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["goalId"].as_str().unwrap().to_string(),
                s["code"].as_i64().unwrap(),
                s["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (
                "auto-gems".to_string(),
                9,
                "Goal not completed. Please wait 1 second and try again. (goal_id: auto-gems, status: not_started)".to_string()
            ),
            (
                "auto-crown".to_string(),
                9,
                "Goal not completed. Please wait 1 second and try again. (goal_id: auto-crown, status: not_started)".to_string()
            ),
            (
                "plain".to_string(),
                14,
                "Reward grant in progress, please retry (goal_id: plain)".to_string()
            ),
        ]
    );

    // Again: double is already claimed (409, code 6); plain's grant is found and claimed.
    let (s, body) = h.post(CLAIM_ALL, "dee", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["claimed"][0]["goalId"], "plain");
    assert_eq!(body["skipped"][0]["goalId"], "double");
    assert_eq!(body["skipped"][0]["code"], 6);
    assert_eq!(
        ags.state().entitlements.len(),
        2,
        "sword and trophy, once each"
    );

    let (s, body) = h
        .post("/challenge/v1/challenges/nope/claim", "dee", "")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "challenge 'nope' not found");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_history_pages_newest_first_with_each_grants_state(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    h.completed("eve", "plain").await;
    assert_eq!(
        h.post(
            "/challenge/v1/challenges/season/goals/plain/claim",
            "eve",
            ""
        )
        .await
        .0,
        StatusCode::OK
    );
    h.completed("eve", "double").await;
    ags.aim_fault("/wallets/", Fault::Refuse(400));
    assert_eq!(h.post(DOUBLE, "eve", "").await.0, StatusCode::BAD_GATEWAY);

    let page = |token: &str| format!("{HISTORY}?pageSize=2&pageToken={token}");
    let (s, first) = h.get(&page(""), "eve").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    // double's two rewards (newest; the second reward first), then plain's.
    let entries = |v: &Value| -> Vec<(String, String, String)> {
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
    assert_eq!(
        entries(&first),
        [
            ("double".into(), "GOLD".into(), "failed".into()),
            ("double".into(), "sword".into(), "granted".into()),
        ]
    );
    assert_eq!(first["rewards"][0]["grantedAt"], "");
    assert_eq!(first["rewards"][1]["grantedAt"], "2025-11-04T12:00:00Z");
    assert_eq!(first["rewards"][1]["period"], "once");
    assert_eq!(first["rewards"][1]["type"], "ITEM");
    assert_eq!(first["rewards"][1]["quantity"], 1);
    let token = first["nextPageToken"].as_str().unwrap();
    assert!(!token.is_empty());
    let (s, second) = h.get(&page(token), "eve").await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(
        entries(&second),
        [("plain".into(), "trophy".into(), "granted".into())]
    );
    assert_eq!(second["nextPageToken"], "");

    // Another player sees nothing of eve's; bad paging is refused.
    let (_, other) = h.get(HISTORY, "fay").await;
    assert_eq!(other, json!({"rewards": [], "nextPageToken": ""}));
    for bad in ["pageSize=0x", "pageSize=101", "pageToken=not-a-token"] {
        let (s, body) = h.get(&format!("{HISTORY}?{bad}"), "eve").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

fn auto_claimer(h: &Harness) -> (AutoClaimer, AutoClaimMetrics) {
    let metrics = AutoClaimMetrics::new(&prometheus::Registry::new()).unwrap();
    (
        AutoClaimer::new(h.service.clone()).with_metrics(metrics.clone()),
        metrics,
    )
}

async fn pass(claimer: &AutoClaimer) {
    let AutoClaimPass::Done(_) = claimer.run_once().await.unwrap() else {
        panic!("not leader");
    };
}

/// As the handler records a completion (the flush's insert into the outbox).
async fn enqueue(pool: &PgPool, user: &str, goal: &str) {
    outbox::enqueue(pool, &[user], &[goal]).await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_auto_claim_goal_is_granted_once_and_shows_claimed(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    let (claimer, metrics) = auto_claimer(&h);
    h.completed("gus", "auto-gems").await;
    enqueue(&pool, "gus", "auto-gems").await;

    pass(&claimer).await;
    assert_eq!(h.row_status("gus", "auto-gems").await.unwrap().0, "claimed");
    assert_eq!(ags.state().credits.len(), 1);
    assert_eq!(outbox_len(&pool).await, 0);
    assert_eq!(metrics.count(AutoClaimOutcome::Claimed), 1);
    assert_eq!(metrics.backlog(), 0);
    // A redelivered completion changes nothing.
    enqueue(&pool, "gus", "auto-gems").await;
    pass(&claimer).await;
    assert_eq!(ags.grants(), 1);
    assert_eq!(outbox_len(&pool).await, 0);
}

/// The grant's reply is lost once: the entry stays, and the next try finds the grant.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_auto_claim_whose_reply_was_lost_is_completed_without_paying_twice(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    let (claimer, metrics) = auto_claimer(&h);
    h.completed("hal", "auto-gems").await;
    enqueue(&pool, "hal", "auto-gems").await;
    ags.push_faults([Fault::LoseReply]);

    pass(&claimer).await;
    assert_eq!(metrics.count(AutoClaimOutcome::Retry), 1);
    assert_eq!(
        h.row_status("hal", "auto-gems").await.unwrap().0,
        "completed"
    );
    let (attempts, wait): (i32, f64) = sqlx::query_as(
        "SELECT attempts, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp())::float8 \
         FROM reward_outbox",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        wait > 0.0 && wait <= 1.0,
        "retried after about a second: {wait}"
    );
    // Not due yet: a pass leaves it.
    pass(&claimer).await;
    assert_eq!(ags.state().lookups, 0);
    // Its time comes (the database clock moved on).
    sqlx::query("UPDATE reward_outbox SET next_attempt_at = clock_timestamp()")
        .execute(&pool)
        .await
        .unwrap();
    pass(&claimer).await;
    assert_eq!(h.row_status("hal", "auto-gems").await.unwrap().0, "claimed");
    assert_eq!(ags.state().credits.len(), 1, "paid once");
    assert_eq!(ags.state().grant_requests, 1);
    assert_eq!(outbox_len(&pool).await, 0);
}

/// Locked when it completes: dropped (nothing granted); its prerequisite's completion asks
/// again (the handler enqueues the goals a completion wakes), and then it is granted.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_locked_auto_claim_goal_is_granted_when_its_prerequisite_completes(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    let (claimer, metrics) = auto_claimer(&h);
    h.completed("ida", "auto-crown").await;
    enqueue(&pool, "ida", "auto-crown").await;
    pass(&claimer).await;
    assert_eq!(metrics.count(AutoClaimOutcome::Dropped), 1);
    assert_eq!(ags.grants(), 0);
    assert_eq!(
        h.row_status("ida", "auto-crown").await.unwrap().0,
        "completed"
    );

    let snap = h.service.catalog();
    let config = snap.config();
    let wakes = &config.goal("double").unwrap().auto_claim_wakes;
    assert_eq!(wakes, &["auto-crown".to_string()]);
    h.completed("ida", "double").await;
    for goal in wakes {
        enqueue(&pool, "ida", goal).await;
    }
    pass(&claimer).await;
    assert_eq!(
        h.row_status("ida", "auto-crown").await.unwrap().0,
        "claimed"
    );
    assert_eq!(ags.state().entitlements.len(), 1);
    assert_eq!(h.row_status("ida", "double").await.unwrap().0, "completed");
}

/// A player's claim racing the auto-claim: one grant.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_players_claim_racing_the_auto_claim_grants_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags);
    let (claimer, _) = auto_claimer(&h);
    for round in 0..5 {
        let user = format!("race-{round}");
        h.completed(&user, "auto-gems").await;
        enqueue(&pool, &user, "auto-gems").await;
        ags.push_faults([Fault::AnswerLate(Duration::from_millis(150))]);
        let uri = "/challenge/v1/challenges/season/goals/auto-gems/claim";
        let (player, _) = tokio::join!(h.post(uri, &user, ""), pass(&claimer));
        assert!(
            [StatusCode::OK, StatusCode::CONFLICT].contains(&player.0),
            "{player:?}"
        );
        // Whatever the interleaving, the goal ends claimed after at most one more pass.
        pass(&claimer).await;
        assert_eq!(h.row_status(&user, "auto-gems").await.unwrap().0, "claimed");
    }
    assert_eq!(ags.state().credits.len(), 5, "one grant per player");
}
