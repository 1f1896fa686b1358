//! Buffered, batched writes lose and double-count nothing.

use futures::StreamExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn thousand_concurrent_logins_count_exactly() {
    let (stack, events) = start("buffering").await;
    let u = user("buffer");
    let api = stack.api(&u);
    api.initialize().await;

    let sent: Vec<_> = (0..1000).map(|_| events.login_event(&u)).collect();
    let results: Vec<_> = futures::stream::iter(sent.clone())
        .map(|e| {
            let events = events.clone();
            async move { events.send_login(e).await }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 logins failed: {:?}",
        failed.len(),
        failed.first()
    );

    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1000, "completed".into())
    );

    // Redelivery of already applied events (same envelope ids) changes nothing.
    for e in sent.into_iter().take(20) {
        events
            .send_login(e)
            .await
            .expect("a duplicate is acknowledged");
    }
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1000, "completed".into())
    );

    // And the goal is claimable end to end.
    let claim = api.claim(VETERAN, "login-1000-times").await.expect(200);
    assert_eq!(claim["status"], "claimed");
}

#[tokio::test(flavor = "multi_thread")]
async fn buffered_ack_mode_flushes_everything() {
    // ACK_MODE=buffered acknowledges on enqueue: progress shows up within a flush, so poll.
    let options = extend_challenge_e2e::StackOptions {
        env: vec![
            ("ACK_MODE".into(), "buffered".into()),
            ("BUFFER_FLUSH_INTERVAL_MS".into(), "100".into()),
        ],
        ..Default::default()
    };
    let (stack, events) = start_with("buffered_ack_mode", options).await;
    let u = user("buffered");
    let api = stack.api(&u);
    api.initialize().await;
    let results: Vec<_> = futures::stream::iter(0..300)
        .map(|_| {
            let events = events.clone();
            let e = events.login_event(&u);
            async move { events.send_login(e).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let progress = extend_challenge_e2e::eventually(
        "300 buffered logins flushed",
        std::time::Duration::from_secs(10),
        || async {
            let p = api.progress(VETERAN, "login-1000-times").await;
            if p.0 == 300 {
                Ok(p)
            } else {
                Err(format!("progress {p:?}"))
            }
        },
    )
    .await;
    assert_eq!(progress, (300, "in_progress".into()));
}
