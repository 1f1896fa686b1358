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
