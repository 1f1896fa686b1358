//! CONTRACT §9 with the real binaries: two event handlers and two services under a steady
//! login load; a catalog version that adds a goal, raises a target and removes one is
//! applied through the admin API. Every replica serves it within 2 s (`/healthz`'s
//! `catalogVersion`), no acknowledged event is lost, events after the switch are judged by
//! the new version on both handlers, and claims racing the switch are paid once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use extend_challenge_e2e::{Events, Platform, Stack, StackOptions};
use serde_json::{Value, json};

use crate::support::*;

const COUNTER: &str = "login-1000-times";
const ADDED: &str = "logins-5";
const RAISED: &str = "kill-10-snowmen";
const REMOVED: &str = "login-today";

/// The suite's fixture with a goal added, a target raised (10 → 20) and a goal removed.
fn next_version() -> Value {
    let path = extend_challenge_e2e::build::fixture("challenges.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let challenges = v["challenges"].as_array_mut().unwrap();
    for c in challenges.iter_mut() {
        let veteran = c["challengeId"] == VETERAN;
        let goals = c["goals"].as_array_mut().unwrap();
        goals.retain(|g| g["goalId"] != REMOVED);
        for g in goals.iter_mut() {
            if g["goalId"] == RAISED {
                g["requirement"]["targetValue"] = json!(20);
            }
        }
        if veteran {
            let mut added = goals[0].clone();
            added["goalId"] = json!(ADDED);
            added["name"] = json!("Log In 5 Times");
            added["requirement"]["targetValue"] = json!(5);
            goals.push(added);
        }
    }
    v
}

/// The catalog version every process serves, from `/healthz`.
async fn versions(stack: &Stack) -> Vec<i64> {
    let mut out = Vec::new();
    for port in stack.metrics_ports() {
        let body: Value = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push(body["catalogVersion"].as_i64().unwrap_or(-1));
    }
    out
}

async fn progress(stack: &Stack, goal: &str) -> HashMap<String, (i32, String)> {
    let mut conn = stack.db.connect().await;
    let rows: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT user_id, progress, status FROM user_goal_progress WHERE goal_id = $1",
    )
    .bind(goal)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|(u, p, s)| (u, (p, s))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_applied_under_load_reaches_every_replica_and_loses_nothing() {
    let (mut stack, events) = start_with("live_ops", StackOptions::default()).await;
    stack.add_handler(Vec::new()).await;
    let other_service = stack.add_service().await;
    let base = stack.service_url();
    assert_eq!(
        versions(&stack).await,
        vec![1, 1, 1, 1],
        "the fixture imported once"
    );
    let offset = stack.options.clock_offset_seconds;
    let second = Events::connect(&stack.handler_addrs()[1], offset).await;

    // Before the switch: a player earns the raised goal at 12 (earned is earned); two
    // players have it active for after; ten players complete a goal to claim during it.
    let early = user("early");
    let late = [user("late-a"), user("late-b")];
    for u in std::iter::once(&early).chain(late.iter()) {
        let api = stack.api(u);
        api.initialize().await;
        api.activate(WINTER, RAISED).await;
    }
    events.stat(&early, "snowmen_killed", 12.0).await;
    let claimers: Vec<String> = (0..10).map(|i| user(&format!("claim{i}"))).collect();
    for u in &claimers {
        stack.api(u).initialize().await;
        events.stat(u, "tutorial_completed", 1.0).await;
    }

    // The steady load: logins to both handlers, acknowledged (durable) or retried.
    let platform = Platform::new(&stack.handler_addrs(), offset);
    let users: Arc<Vec<String>> = Arc::new((0..20).map(|i| user(&format!("load{i}"))).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (p, u, s) = (platform.clone(), users.clone(), stop.clone());
        tokio::spawn(async move { p.run_logins(u, 8, 0, s, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Apply through service 1 while claims race on both services.
    let apply = async {
        let resp = reqwest::Client::new()
            .post(format!("{base}/v1/admin/catalog"))
            .header("x-mock-user-id", "ops")
            .json(&json!({"config": next_version(), "expectedVersion": 1}))
            .send()
            .await
            .unwrap();
        let at = Instant::now();
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.unwrap(),
            at,
        )
    };
    let claims = futures::future::join_all(claimers.iter().flat_map(|u| {
        [
            base.clone(),
            other_service.clone(),
            base.clone(),
            other_service.clone(),
        ]
        .into_iter()
        .map(move |b| {
            let u = u.clone();
            async move {
                reqwest::Client::new()
                    .post(format!(
                        "{b}/v1/challenges/{WINTER}/goals/complete-tutorial/claim"
                    ))
                    .header("x-mock-user-id", &u)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
    }));
    let ((status, applied, applied_at), claims) = tokio::join!(apply, claims);
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["version"], 2);

    // Every replica serves version 2 within 2 s.
    loop {
        let v = versions(&stack).await;
        if v.iter().all(|v| *v == 2) {
            break;
        }
        assert!(
            applied_at.elapsed() < Duration::from_secs(2),
            "replicas at {v:?} 2 s after the apply\n{}",
            stack.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let switched = Instant::now();
    // A player initialized before the switch gets the added default goal at their next
    // initialize (as a game client calls it at login), on either service.
    for (i, u) in users.iter().enumerate() {
        let b = if i % 2 == 0 { &base } else { &other_service };
        let init: Value = reqwest::Client::new()
            .post(format!("{b}/v1/challenges/initialize"))
            .header("x-mock-user-id", u)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let assigned: Vec<&str> = init["assignedGoals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["goalId"].as_str().unwrap())
            .collect();
        assert!(assigned.contains(&ADDED), "{init}");
    }

    // After the switch, on each handler: 15 meets the old target (10), not the new one (20).
    events.stat(&late[0], "snowmen_killed", 15.0).await;
    second.stat(&late[1], "snowmen_killed", 15.0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered = {
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap()
    };

    // No acknowledged login lost, before, during or after the switch.
    assert_eq!(delivered.given_up, 0);
    let counted = progress(&stack, COUNTER).await;
    for (u, acked) in &delivered.acked {
        let got = counted.get(u).map_or(0, |p| i64::from(p.0));
        assert_eq!(got, *acked, "{u}: acknowledged logins vs counted");
    }
    // The added goal counts logins on both handlers once switched.
    let added = progress(&stack, ADDED).await;
    assert!(
        users.iter().all(|u| added.get(u).is_some_and(|p| p.0 > 0)),
        "every loaded user has progress on the added goal: {added:?} (switched {:?} before the end)",
        switched.elapsed()
    );
    for u in users.iter() {
        let (p, _) = added[u];
        assert!(
            i64::from(p) <= delivered.acked[u],
            "{u}: {p} > acknowledged"
        );
    }
    // Judged by the version the event met.
    let raised = progress(&stack, RAISED).await;
    assert_eq!(
        raised[&early].1, "completed",
        "earned under version 1 stays earned"
    );
    for u in &late {
        assert_eq!(
            raised[u],
            (15, "in_progress".to_string()),
            "{u}: judged by version 2"
        );
    }
    // The removed goal is gone from every replica's list.
    for b in [&base, &other_service] {
        let list: Value = reqwest::Client::new()
            .get(format!("{b}/v1/challenges"))
            .header("x-mock-user-id", &early)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let daily = list["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["challengeId"] == DAILY)
            .unwrap();
        assert!(
            !daily["goals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["goalId"] == REMOVED),
            "{b}"
        );
    }
    // Claims that raced the switch: every claimer paid exactly once.
    assert!(claims.iter().all(|s| *s == 200 || *s == 409), "{claims:?}");
    for u in &claimers {
        assert_eq!(stack.ags.grants(u).await.len(), 1, "{u}: paid once");
    }
}
