//! Rewards exactly once per (user, goal, period) when AGS misbehaves or a claimer dies
//! (CONTRACT §3.3): the real reward client against a stateful fake AGS over real HTTP, on
//! a real Postgres. Every test checks the grants AGS recorded and the row and intent state.
//!
//! Deadlines are scaled down (a 1 s grant deadline inside a 2 s claim deadline) so a
//! "late answer" needs no 12 s wait; time that must pass for the service (lease ends,
//! settle time) passes on the service's manual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake_ags::{FakeAgs, Fault};
use common::*;
use extend_challenge_common::settings::RewardDedup;
use extend_challenge_common::store::grants::GrantIntent;
use extend_challenge_service::rewards::key::grant_key;
use extend_challenge_service::rewards::reconcile::{Pass, RECONCILER_LOCK};
use extend_challenge_service::rewards::{AgsRewardClient, ReconcilerMetrics, RetryPolicy};
use http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

const KILL_10: &str = "/challenge/v1/challenges/winter/goals/kill-10/claim";
const LOGIN_3: &str = "/challenge/v1/challenges/winter/goals/login-3/claim";
const DAILY_LOGIN: &str = "/challenge/v1/challenges/daily/goals/daily-login/claim";
const IN_DOUBT: &str = "Reward grant in progress, please retry (goal_id: kill-10)";

fn policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        deadline,
    }
}

/// The service granting through the real client against `ags`: 1 s grant deadline inside a
/// 2 s claim deadline.
fn harness(pool: PgPool, ags: &FakeAgs, dedup: RewardDedup) -> Harness {
    harness_with(
        pool,
        ags,
        dedup,
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
}

fn harness_with(
    pool: PgPool,
    ags: &FakeAgs,
    dedup: RewardDedup,
    grant_deadline: Duration,
    claim_deadline: Duration,
) -> Harness {
    let client = AgsRewardClient::new(
        reqwest::Client::new(),
        &ags.url,
        "client-id",
        "client-secret",
        policy(grant_deadline),
    )
    .with_dedup(dedup);
    Harness::with_dyn_granter(pool, Arc::new(client))
        .map_service(|s| s.with_claim_deadline(claim_deadline))
}

async fn intents(pool: &PgPool, user: &str, goal: &str) -> Vec<GrantIntent> {
    sqlx::query_as(
        "SELECT * FROM reward_grants WHERE user_id = $1 AND goal_id = $2 ORDER BY created_at",
    )
    .bind(user)
    .bind(goal)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn intent(pool: &PgPool, user: &str, goal: &str) -> GrantIntent {
    let mut all = intents(pool, user, goal).await;
    assert_eq!(all.len(), 1, "one intent for {user}/{goal}");
    all.remove(0)
}

async fn status(h: &Harness, user: &str, goal: &str) -> String {
    h.row_status(user, goal).await.unwrap().0
}

/// The claim's end state after a grant: the row claimed and the intent granted.
async fn assert_paid(h: &Harness, pool: &PgPool, user: &str, goal: &str) {
    assert_eq!(status(h, user, goal).await, "claimed", "{user}/{goal}");
    assert_eq!(
        intent(pool, user, goal).await.state,
        "granted",
        "{user}/{goal}"
    );
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn lost_reply_is_resolved_by_the_retry_without_a_second_grant(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("ana", "kill-10").await;
    // AGS grants, then the connection closes without an answer.
    ags.push_faults([Fault::LoseReply]);

    let (s, body) = h.post(KILL_10, "ana", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(message(&body), IN_DOUBT);
    assert_eq!(body["code"], 14);
    assert_eq!(ags.grants(), 1);
    assert_eq!(status(&h, "ana", "kill-10").await, "completed");
    let pending = intent(&pool, "ana", "kill-10").await;
    assert_eq!(pending.state, "pending");
    assert_eq!(
        pending.lease_until, None,
        "the lease is given up for the retry"
    );
    assert_eq!(
        pending.grant_key,
        grant_key("test-ns", "ana", "winter", "kill-10", "once")
    );
    // The marker AGS keeps is the grant key.
    assert_eq!(
        ags.state().entitlements[0]["grantedCode"],
        pending.grant_key.as_str()
    );

    let (s, body) = h.post(KILL_10, "ana", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "claimed");
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 1, "found, not sent again");
    assert_paid(&h, &pool, "ana", "kill-10").await;

    let (s, body) = h.post(KILL_10, "ana", "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        message(&body).starts_with("Reward has already been claimed"),
        "{body}"
    );
    assert_eq!(ags.grants(), 1);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn late_answer_after_the_deadline_then_retry_grants_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("bea", "kill-10").await;
    // AGS grants at once but answers long after the 1 s grant deadline.
    ags.push_faults([Fault::AnswerLate(Duration::from_secs(30))]);

    let (s, body) = h.post(KILL_10, "bea", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(message(&body), IN_DOUBT);
    assert_eq!(status(&h, "bea", "kill-10").await, "completed");
    assert_eq!(intent(&pool, "bea", "kill-10").await.state, "pending");

    let (s, body) = h.post(KILL_10, "bea", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 1);
    assert_paid(&h, &pool, "bea", "kill-10").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_5xx_burst_then_success_grants_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("cy", "kill-10").await;
    ags.push_faults([Fault::FailBefore(503), Fault::FailBefore(502)]);

    let (s, body) = h.post(KILL_10, "cy", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    {
        let st = ags.state();
        assert_eq!(st.grant_requests, 3);
        // Each 5xx was an answer: AGS's records were checked before sending again.
        assert_eq!(st.lookups, 2);
    }
    assert_paid(&h, &pool, "cy", "kill-10").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_5xx_from_a_server_that_granted_is_not_granted_again(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("dee", "kill-10").await;
    // Every attempt would grant and then answer 503.
    ags.push_faults([Fault::FailAfter(503); 4]);

    let (s, body) = h.post(KILL_10, "dee", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 1, "found after the first 503");
    assert_paid(&h, &pool, "dee", "kill-10").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_unanswered_grant_is_not_sent_again_until_it_has_settled(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("eve", "kill-10").await;
    // The connection closes without an answer, and AGS granted nothing.
    ags.push_faults([Fault::DropRequest]);

    let (s, body) = h.post(KILL_10, "eve", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // A retry right away finds nothing, but AGS might still be working on the request: it
    // stays in doubt and nothing is sent.
    let (s, body) = h.post(KILL_10, "eve", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(message(&body), IN_DOUBT);
    assert_eq!(ags.state().grant_requests, 1);
    assert_eq!(ags.grants(), 0);

    // Past the settle time (30 s) nothing can still land: granted with the same key.
    h.clock.advance(chrono::Duration::seconds(31));
    let (s, body) = h.post(KILL_10, "eve", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    let key = intent(&pool, "eve", "kill-10").await.grant_key;
    assert_eq!(ags.state().entitlements[0]["grantedCode"], key.as_str());
    assert_eq!(status(&h, "eve", "kill-10").await, "claimed");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_definite_refusal_is_502_and_a_later_claim_grants_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("fay", "kill-10").await;
    ags.push_faults([Fault::Refuse(400)]);

    let (s, body) = h.post(KILL_10, "fay", "").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        message(&body),
        "Failed to grant reward via Platform Service after 3 retries (goal_id: kill-10)"
    );
    assert_eq!(ags.grants(), 0);
    assert_eq!(status(&h, "fay", "kill-10").await, "completed");
    let failed = intent(&pool, "fay", "kill-10").await;
    assert_eq!(failed.state, "failed");
    // Not in doubt: the reconciler has nothing to do.
    let metrics = ReconcilerMetrics::new(&prometheus::Registry::new()).unwrap();
    let reconciler = h.service.reconciler().with_metrics(metrics.clone());
    h.clock.advance(chrono::Duration::minutes(5));
    let Pass::Done(report) = reconciler.reconcile_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!((report.granted, report.in_doubt_total), (0, 0));
    assert_eq!(metrics.in_doubt(), 0);

    let (s, body) = h.post(KILL_10, "fay", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    assert_paid(&h, &pool, "fay", "kill-10").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_reconciler_completes_a_grant_whose_claimer_died(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = Arc::new(harness_with(
        pool.clone(),
        &ags,
        RewardDedup::Marker,
        Duration::from_secs(10),
        Duration::from_secs(10),
    ));
    h.completed("gus", "kill-10").await;
    // AGS grants; the claimer dies before the answer comes (the claim future is dropped).
    ags.push_faults([Fault::AnswerLate(Duration::from_secs(60))]);
    let claimer = {
        let h = h.clone();
        tokio::spawn(async move { h.post(KILL_10, "gus", "").await })
    };
    ags.wait_for_grant_requests(1).await;
    claimer.abort();
    assert!(claimer.await.unwrap_err().is_cancelled());
    assert_eq!(ags.grants(), 1);
    let pending = intent(&pool, "gus", "kill-10").await;
    assert_eq!(pending.state, "pending");
    assert!(pending.lease_until.is_some(), "the dead claimer's lease");

    let metrics = ReconcilerMetrics::new(&prometheus::Registry::new()).unwrap();
    let reconciler = h.service.reconciler().with_metrics(metrics.clone());
    // While the lease runs, the intent is left alone (its claimer might be alive).
    let Pass::Done(report) = reconciler.reconcile_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!(report.granted, 0);
    assert_eq!(status(&h, "gus", "kill-10").await, "completed");

    h.clock.advance(chrono::Duration::minutes(1));
    let Pass::Done(report) = reconciler.reconcile_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!(report.granted, 1, "{report:?}");
    assert_eq!(report.in_doubt_total, 0);
    assert_eq!(metrics.count("granted"), 1);
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 1, "found by its marker");
    assert_paid(&h, &pool, "gus", "kill-10").await;

    let (s, body) = h.post(KILL_10, "gus", "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        message(&body).starts_with("Reward has already been claimed"),
        "{body}"
    );
    assert_eq!(ags.grants(), 1);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_reconciler_grants_an_intent_abandoned_before_the_call(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("hal", "login-3").await;
    // A claimer recorded the intent and died before calling AGS, an hour ago.
    let key = grant_key("test-ns", "hal", "winter", "login-3", "once");
    sqlx::query(
        "INSERT INTO reward_grants (user_id, goal_id, period_key, challenge_id, namespace, \
           grant_key, reward_type, reward_id, quantity, state, owner, lease_until, attempts, \
           last_attempt_at, next_check_at, goal_completed_at) \
         VALUES ('hal', 'login-3', 'once', 'winter', 'test-ns', $1, 'WALLET', 'GEMS', 5, \
           'pending', 'dead-claimer', $2, 1, $3, $2, $4)",
    )
    .bind(&key)
    .bind(at("2025-11-04T11:00:15Z"))
    .bind(at("2025-11-04T11:00:00Z"))
    .bind(at(NOON))
    .execute(&pool)
    .await
    .unwrap();
    let metrics = ReconcilerMetrics::new(&prometheus::Registry::new()).unwrap();
    let reconciler = h.service.reconciler().with_metrics(metrics.clone());

    let Pass::Done(report) = reconciler.reconcile_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!(report.granted, 1, "{report:?}");
    assert_eq!(ags.grants(), 1);
    {
        let st = ags.state();
        assert_eq!(st.lookups, 1, "looked for the grant before granting");
        assert_eq!(
            st.credits[0]["reason"],
            format!("challenge winter/login-3 [{key}]")
        );
        assert_eq!(st.credits[0]["amount"], 5);
    }
    assert_paid(&h, &pool, "hal", "login-3").await;
    assert_eq!(metrics.in_doubt(), 0);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_reconciler_keeps_an_unresolvable_intent_in_doubt(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("ida", "kill-10").await;
    ags.push_faults([Fault::DropRequest]);
    let (s, _) = h.post(KILL_10, "ida", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // AGS is gone (connections refused): the look-up cannot tell.
    drop(ags);
    let metrics = ReconcilerMetrics::new(&prometheus::Registry::new()).unwrap();
    let reconciler = h.service.reconciler().with_metrics(metrics.clone());
    h.clock.advance(chrono::Duration::minutes(1));
    let Pass::Done(report) = reconciler.reconcile_once().await.unwrap() else {
        panic!("not leader");
    };
    assert_eq!((report.granted, report.in_doubt), (0, 1), "{report:?}");
    assert_eq!(metrics.in_doubt(), 1);
    assert_eq!(metrics.count("in_doubt"), 1);
    let pending = intent(&pool, "ida", "kill-10").await;
    assert_eq!(pending.state, "pending");
    // Checked again later, not on every pass.
    assert!(pending.next_check_at > at(NOON) + chrono::Duration::minutes(1));
    assert_eq!(status(&h, "ida", "kill-10").await, "completed");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_reconciler_runs_on_one_replica_at_a_time(pool: PgPool) {
    let h = Harness::new(pool.clone());
    let mut other_replica = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(RECONCILER_LOCK)
        .execute(&mut *other_replica)
        .await
        .unwrap();
    let reconciler = h.service.reconciler();
    assert_eq!(reconciler.reconcile_once().await.unwrap(), Pass::NotLeader);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RECONCILER_LOCK)
        .execute(&mut *other_replica)
        .await
        .unwrap();
    assert!(matches!(
        reconciler.reconcile_once().await.unwrap(),
        Pass::Done(_)
    ));
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_claim_storm_grants_once_and_other_players_still_read(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = Arc::new(harness_with(
        pool.clone(),
        &ags,
        RewardDedup::Marker,
        Duration::from_secs(10),
        Duration::from_secs(10),
    ));
    h.completed("jo", "kill-10").await;
    h.post("/challenge/v1/challenges/initialize", "bob", "{}")
        .await;
    // AGS takes 1.5 s per grant.
    ags.push_faults([Fault::AnswerLate(Duration::from_millis(1500))]);
    let claims: Vec<_> = (0..100)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.post(KILL_10, "jo", "").await })
        })
        .collect();
    // While the one grant is at AGS, another player reads.
    ags.wait_for_grant_requests(1).await;
    let (s, body) = h.get("/challenge/v1/challenges", "bob").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["challenges"].as_array().is_some_and(|c| !c.is_empty()));

    let mut ok = 0;
    let mut in_progress = 0;
    for claim in claims {
        let (s, body) = claim.await.unwrap();
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(
                    message(&body),
                    "Claim already in progress (goal_id: kill-10)"
                );
                assert_eq!(body["code"], 6, "AlreadyExists");
                in_progress += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, in_progress), (1, 99));
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 1);
    assert_paid(&h, &pool, "jo", "kill-10").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn fulfillment_mode_sends_again_under_the_same_transaction_id(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Fulfillment);
    h.completed("kim", "kill-10").await;
    // A lost reply: the client may simply send the same transaction again.
    ags.push_faults([Fault::LoseReply]);

    let (s, body) = h.post(KILL_10, "kim", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let key = intent(&pool, "kim", "kill-10").await.grant_key;
    {
        let st = ags.state();
        assert_eq!(st.grant_requests, 2);
        assert_eq!(st.grants(), 1);
        assert_eq!(st.lookups, 0, "no look-ups: AGS de-duplicates");
        assert!(
            st.fulfillments.contains_key(&key),
            "transaction id is the grant key"
        );
    }
    assert_eq!(status(&h, "kim", "kill-10").await, "claimed");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn fulfillment_mode_in_doubt_then_retry_grants_once(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Fulfillment);
    h.completed("lu", "kill-10").await;
    // Every attempt of the first claim is processed and answered 503.
    ags.push_faults([Fault::FailAfter(503); 4]);

    let (s, body) = h.post(KILL_10, "lu", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(message(&body), IN_DOUBT);
    assert_eq!(ags.grants(), 1);
    assert_eq!(intent(&pool, "lu", "kill-10").await.state, "pending");

    let (s, body) = h.post(KILL_10, "lu", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.grants(), 1);
    assert_eq!(ags.state().grant_requests, 5);
    assert_paid(&h, &pool, "lu", "kill-10").await;
}

/// A WALLET credit whose reply was lost, in both de-duplication modes (WALLET rewards use
/// the marker in both): the retry finds the credit by the marker in its `reason` — the
/// only place `WalletTransactionInfo` gives it back — and answers success with exactly one
/// credit. (Before issue 17 the marker went in `metadata`, which AGS does not return: the
/// retry stayed in doubt, and once the settle time passed the credit was sent again.)
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_lost_wallet_credit_is_found_by_its_reason_marker(pool: PgPool) {
    for (user, dedup) in [
        ("max", RewardDedup::Fulfillment),
        ("mia", RewardDedup::Marker),
    ] {
        let ags = FakeAgs::start().await;
        let h = harness(pool.clone(), &ags, dedup);
        h.completed(user, "login-3").await;
        ags.push_faults([Fault::LoseReply]);

        let (s, body) = h.post(LOGIN_3, user, "").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // Inside the settle window: a look-up only, which finds the credit.
        let (s, body) = h.post(LOGIN_3, user, "").await;
        assert_eq!(s, StatusCode::OK, "{dedup:?}: {body}");
        let key = intent(&pool, user, "login-3").await.grant_key;
        {
            let st = ags.state();
            assert_eq!(st.credits.len(), 1, "{dedup:?}");
            assert_eq!(st.grant_requests, 1, "{dedup:?}");
            assert!(st.credits[0].get("metadata").is_none());
            assert_eq!(
                st.credits[0]["reason"],
                format!("challenge winter/login-3 [{key}]")
            );
        }
        assert_eq!(status(&h, user, "login-3").await, "claimed");
    }
}

/// The same lost credit retried after the settle time: the look-up must find it, or the
/// player is paid twice.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_lost_wallet_credit_is_not_paid_again_after_the_settle_time(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("moe", "login-3").await;
    ags.push_faults([Fault::LoseReply]);
    let (s, body) = h.post(LOGIN_3, "moe", "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    h.clock.advance(chrono::Duration::seconds(31));
    let (s, body) = h.post(LOGIN_3, "moe", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(ags.state().credits.len(), 1, "paid once");
    assert_eq!(ags.state().grant_requests, 1);
    assert_paid(&h, &pool, "moe", "login-3").await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_new_period_is_a_new_grant(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let h = harness(pool.clone(), &ags, RewardDedup::Marker);
    h.completed("ned", "daily-login").await;
    let (s, body) = h.post(DAILY_LOGIN, "ned", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Next day the goal is completed again (as the event handler would store it).
    h.clock.advance(chrono::Duration::days(1));
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'completed', progress = 1, claimed_at = NULL, \
           completed_at = $2, expires_at = $3 \
         WHERE user_id = 'ned' AND goal_id = $1",
    )
    .bind("daily-login")
    .bind(at("2025-11-05T12:00:00Z"))
    .bind(at("2025-11-06T00:00:00Z"))
    .execute(&pool)
    .await
    .unwrap();
    let (s, body) = h.post(DAILY_LOGIN, "ned", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");

    assert_eq!(ags.grants(), 2);
    let periods: Vec<(String, String)> = intents(&pool, "ned", "daily-login")
        .await
        .into_iter()
        .map(|i| (i.period_key, i.state))
        .collect();
    assert_eq!(
        periods,
        [
            ("daily:2025-11-04".to_string(), "granted".to_string()),
            ("daily:2025-11-05".to_string(), "granted".to_string()),
        ]
    );
}
