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
