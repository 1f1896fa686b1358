//! CONTRACT §10 in the service: the list's `ETag` and `If-None-Match`, the event trail's
//! routes, and the live progress stream.

mod common;

use axum::body::Body;
use common::{Harness, at};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sqlx::PgPool;
use tower::ServiceExt;

const LIST: &str = "/challenge/v1/challenges";

/// `GET uri` as `user` with an optional `If-None-Match`: status, `ETag`, body.
async fn conditional_get(
    h: &Harness,
    uri: &str,
    user: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = Request::get(uri).header("x-mock-user-id", user);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let resp = h
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, etag, String::from_utf8(body.to_vec()).unwrap())
}

/// Asserts the current tag answers 304 (empty body) and returns it.
async fn not_modified(h: &Harness, uri: &str, user: &str) -> String {
    let (status, tag, body) = conditional_get(h, uri, user, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(tag.starts_with("W/\""), "weak tag: {tag:?}");
    let (again, same, empty) = conditional_get(h, uri, user, Some(&tag)).await;
    assert_eq!(
        (again, same.as_str(), empty.as_str()),
        (StatusCode::NOT_MODIFIED, tag.as_str(), "")
    );
    tag
}

/// After a change, the old tag gets the full list (200) under a new tag.
async fn modified(h: &Harness, uri: &str, user: &str, old: &str, what: &str) -> String {
    let (status, tag, body) = conditional_get(h, uri, user, Some(old)).await;
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
    assert_ne!(tag, old, "{what} changes the tag");
    assert!(body.starts_with("{\"challenges\":["), "{what}: {body}");
    tag
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn list_etag_answers_304_until_anything_the_player_sees_changes(pool: PgPool) {
    let h = Harness::new(pool);
    // No rows yet: still a tag, and 304 for it.
    let t0 = not_modified(&h, LIST, "ann").await;
    // Initialize (rows inserted).
    h.post("/challenge/v1/challenges/initialize", "ann", "{}")
        .await;
    let t1 = modified(&h, LIST, "ann", &t0, "initialize").await;
    assert_eq!(not_modified(&h, LIST, "ann").await, t1);
    // Progress, as a handler batch writes it.
    h.set_row("ann", "kill-10", 4, "in_progress", None).await;
    let t2 = modified(&h, LIST, "ann", &t1, "progress").await;
    // Activation.
    let (s, _) = h
        .call(
            "PUT",
            "/challenge/v1/challenges/winter/goals/win-5/active",
            "ann",
            Some(r#"{"isActive":true}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let t3 = modified(&h, LIST, "ann", &t2, "activation").await;
    // Claim.
    h.set_row("ann", "kill-10", 10, "completed", Some(common::NOON))
        .await;
    let t4 = modified(&h, LIST, "ann", &t3, "completion").await;
    let (s, body) = h
        .post(
            "/challenge/v1/challenges/winter/goals/kill-10/claim",
            "ann",
            "{}",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let t5 = modified(&h, LIST, "ann", &t4, "claim").await;
    // Another player's change is not ann's.
    h.post("/challenge/v1/challenges/initialize", "bob", "{}")
        .await;
    assert_eq!(not_modified(&h, LIST, "ann").await, t5);
    // Each query has its own tag.
    let (_, filtered, _) =
        conditional_get(&h, &format!("{LIST}?active_only=true"), "ann", None).await;
    assert_ne!(filtered, t5);
    // Time alone: the daily goals' period turns at midnight UTC.
    h.clock.set(at("2025-11-04T23:59:59Z"));
    assert_eq!(not_modified(&h, LIST, "ann").await, t5);
    h.clock.set(at("2025-11-05T00:00:01Z"));
    let t6 = modified(&h, LIST, "ann", &t5, "the daily rollover").await;
    // Erasure.
    let (s, _) = h
        .call("DELETE", "/challenge/v1/users/me/data", "ann", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    modified(&h, LIST, "ann", &t6, "erasure").await;
}

/// Reads SSE frames from `body` until one of `event` arrives (at most `within`); its data.
async fn next_event(body: &mut Body, event: &str, within: std::time::Duration) -> String {
    try_next_event(body, event, within)
        .await
        .unwrap_or_else(|text| panic!("no `{event}` event within {within:?}; got {text:?}"))
}

/// [`next_event`], or what arrived instead.
async fn try_next_event(
    body: &mut Body,
    event: &str,
    within: std::time::Duration,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    loop {
        if let Some(start) = text.find(&format!("event: {event}\n")) {
            let rest = &text[start..];
            if let Some(end) = rest.find("\n\n") {
                let block = &rest[..end];
                return Ok(block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect::<Vec<_>>()
                    .join("\n"));
            }
        }
        let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
            return Err(text);
        };
        let frame = frame.expect("stream open").expect("frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

async fn open_stream(h: &Harness, user: &str) -> Body {
    let resp = h
        .router
        .clone()
        .oneshot(
            Request::get("/challenge/v1/users/me/progress/stream")
                .header("x-mock-user-id", user)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // The first heartbeat says the stream is registered.
    next_event(&mut body, "heartbeat", std::time::Duration::from_secs(2)).await;
    body
}

/// Two service instances on one database (two replicas): a change notified by a writer
/// reaches a stream on each, within a second, with the goal as the list shows it; another
/// player's stream hears nothing of it.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn streams_on_every_replica_get_the_changed_goals_within_a_second(pool: PgPool) {
    use extend_challenge_common::store::live;
    let a = Harness::new(pool.clone());
    let b = Harness::new(pool.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let la = a
        .service
        .live()
        .clone()
        .spawn_listener(pool.clone(), stop.clone());
    let lb = b
        .service
        .live()
        .clone()
        .spawn_listener(pool.clone(), stop.clone());
    a.post("/challenge/v1/challenges/initialize", "ann", "{}")
        .await;
    let mut on_a = open_stream(&a, "ann").await;
    let mut on_b = open_stream(&b, "ann").await;
    let mut bob = open_stream(&b, "bob").await;
    assert_eq!(a.service.live().open() + b.service.live().open(), 3);
    // The listeners must be listening before the notification (LISTEN is asynchronous to
    // the stream's registration): notify until one arrives, then once for real.
    h_ready(&pool, &mut on_a).await;
    h_ready(&pool, &mut on_b).await;

    a.set_row("ann", "kill-10", 7, "in_progress", None).await;
    let sent = std::time::Instant::now();
    live::notify(&pool, &live::encode([("ann", vec!["kill-10"])]))
        .await
        .unwrap();
    for body in [&mut on_a, &mut on_b] {
        // Skip what is left of the readiness probes (login-3).
        let deadline = sent + std::time::Duration::from_secs(1);
        let v = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let data = next_event(body, "progress", left).await;
            let v: serde_json::Value = serde_json::from_str(&data).unwrap();
            if v["goals"][0]["goal"]["goalId"] != "login-3"
                || v["goals"].as_array().unwrap().len() > 1
            {
                break v;
            }
        };
        // Notices queued together are sent together (a late probe may ride along).
        let goals = v["goals"].as_array().unwrap();
        let g = goals
            .iter()
            .find(|g| g["goal"]["goalId"] == "kill-10")
            .unwrap_or_else(|| panic!("kill-10 in {v}"));
        assert_eq!(
            (g["challengeId"].as_str(), g["goal"]["goalId"].as_str()),
            (Some("winter"), Some("kill-10")),
            "{v}"
        );
        assert_eq!(g["goal"]["progress"], 7, "{v}");
        assert_eq!(g["goal"]["status"], "in_progress", "{v}");
        assert!(
            goals
                .iter()
                .all(|g| ["kill-10", "login-3"].contains(&g["goal"]["goalId"].as_str().unwrap())),
            "only the notified goals: {v}"
        );
    }
    assert!(sent.elapsed() < std::time::Duration::from_secs(1));
    // Bob's stream has only heartbeats (none within this window: the interval is 15 s).
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), bob.frame()).await;
    assert!(quiet.is_err(), "bob's stream got {quiet:?}");
    drop((on_a, on_b, bob));
    stop.cancel();
    la.await.unwrap();
    lb.await.unwrap();
    assert_eq!(a.service.live().open() + b.service.live().open(), 0);
}

/// Notifies `ready` for the stream's player until its `progress` event shows the listener
/// is live.
async fn h_ready(pool: &PgPool, body: &mut Body) {
    use extend_challenge_common::store::live;
    for _ in 0..50 {
        live::notify(pool, &live::encode([("ann", vec!["login-3"])]))
            .await
            .unwrap();
        if try_next_event(body, "progress", std::time::Duration::from_millis(100))
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("the listener never delivered");
}

/// A client that does not read is dropped once its queue is full: nothing is buffered
/// without bound, and the replica's other streams go on.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_stream_whose_client_does_not_read_is_dropped(pool: PgPool) {
    let h = Harness::new(pool);
    let hub = h.service.live().clone();
    let mut slow = h.service.watch_progress("ann").unwrap();
    let mut fine = h.service.watch_progress("ann").unwrap();
    use futures::StreamExt;
    assert!(slow.next().await.unwrap().unwrap().heartbeat);
    assert!(fine.next().await.unwrap().unwrap().heartbeat);
    assert_eq!(hub.open(), 2);
    for _ in 0..100 {
        hub.deliver("ann\tkill-10");
        // `fine` reads as it goes.
        let u = fine.next().await.unwrap().unwrap();
        assert_eq!(u.goals.len(), 1);
    }
    // `slow` was dropped from the hub: its stream ends after what it holds.
    let mut held = 0;
    while let Some(u) = slow.next().await {
        u.unwrap();
        held += 1;
    }
    assert!(
        held <= 16,
        "a slow stream holds at most its queue, held {held}"
    );
    drop(slow);
    assert_eq!(hub.open(), 1, "the reading stream stays");
}

/// A per-player window passing changes the tag at the window's end, not before (no global
/// rotation in this config, so the UTC day plays no part).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn list_etag_turns_with_a_per_player_window(pool: PgPool) {
    const GOALS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/goals.json");
    let config = std::sync::Arc::new(
        extend_challenge_common::config::load_from_path(GOALS).expect("goals fixture"),
    );
    let h = Harness::with_config(pool, config, None);
    h.post("/challenge/v1/challenges/initialize", "ann", "{}")
        .await;
    let t0 = not_modified(&h, LIST, "ann").await;
    // `sprint`'s 24 h window started at the assignment (noon).
    h.clock.set(at("2025-11-05T11:59:59Z"));
    assert_eq!(
        not_modified(&h, LIST, "ann").await,
        t0,
        "midnight is nothing here"
    );
    h.clock.set(at("2025-11-05T12:00:01Z"));
    modified(&h, LIST, "ann", &t0, "the window's end").await;
}
