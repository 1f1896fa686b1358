//! Live progress notifications (CONTRACT §10) from the handler: the notifier merges what
//! the batches committed while it was busy into one statement, and a running handler tells
//! the channel after each committed batch.

mod common;

use std::time::Duration;

use common::{BUFFERED, start};
use extend_challenge_common::store::live;
use extend_challenge_event_handler::live::LiveNotifier;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The next notification on the channel, as (player, goals) lines; `None` after `wait`.
async fn next(listener: &mut PgListener, wait: Duration) -> Option<Vec<(String, Vec<String>)>> {
    let n = tokio::time::timeout(wait, listener.recv())
        .await
        .ok()?
        .unwrap();
    Some(
        live::decode(n.payload())
            .map(|(u, g)| (u.to_string(), g.iter().map(|s| s.to_string()).collect()))
            .collect(),
    )
}

fn owned(lines: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    lines
        .iter()
        .map(|(u, g)| (u.to_string(), g.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn changes_queued_meanwhile_go_in_one_notification(pool: PgPool) {
    let mut listener = live::listen(&pool).await.unwrap();
    let notifier = LiveNotifier::new(pool.clone());
    // Three batches' changes before the sender runs: ann twice, bob once.
    notifier.push([("ann", vec!["kills-10"])]);
    notifier.push([("bob", vec!["login-3"])]);
    notifier.push([("ann", vec!["kills-10", "kills-100"])]);
    assert_eq!(notifier.queued(), 2);
    assert_eq!(notifier.send_pending().await.unwrap(), 1, "one payload");
    assert_eq!(notifier.queued(), 0);
    assert_eq!(
        next(&mut listener, Duration::from_secs(5)).await,
        Some(owned(&[
            ("ann", &["kills-10", "kills-100"]),
            ("bob", &["login-3"])
        ]))
    );
    // Nothing queued: nothing sent.
    assert_eq!(notifier.send_pending().await.unwrap(), 0);
    assert_eq!(next(&mut listener, Duration::from_millis(300)).await, None);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_running_handler_notifies_after_each_committed_batch(pool: PgPool) {
    let mut listener = live::listen(&pool).await.unwrap();
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    h.login("ann").await.unwrap();
    h.flush().await;
    let got = next(&mut listener, Duration::from_secs(10))
        .await
        .expect("a notification after the batch");
    let (user, goals) = &got[0];
    assert_eq!(user, "ann");
    assert!(!goals.is_empty(), "the changed goals: {got:?}");
    h.stop().await.unwrap();
}
