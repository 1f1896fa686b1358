//! Player data erasure against the event pipeline (CONTRACT §3.6): no zombie rows. Updates
//! buffered, in flight or redelivered for events from before an erasure never re-create the
//! user's rows; events after it start afresh. The interleavings are driven by holding the
//! erasure (or a writer) inside its transaction and watching `pg_locks`, never by sleeping
//! for a flush.

mod common;

use std::time::Duration;

use common::*;
use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    DeletionGdpr, GdprRequestDataDeletionResponse, GdprRequestDataDeletionResponsePayloadData,
    UserLoggedIn,
    deletion_account_gdpr_gdpr_request_data_deletion_response_service_client::DeletionAccountGdprGdprRequestDataDeletionResponseServiceClient,
};
use extend_challenge_common::store::erasure::{self, Erasure};
use sqlx::PgPool;
use tonic::Code;

const T0: &str = "2025-11-05T12:00:00Z";

/// A login stamped `timestamp` (RFC 3339).
fn login_at(user: &str, id: &str, timestamp: &str) -> UserLoggedIn {
    UserLoggedIn {
        timestamp: timestamp.into(),
        ..login(user, id)
    }
}

async fn tombstone(pool: &PgPool, user: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT erased_at FROM user_erasures WHERE user_id = $1")
        .bind(user)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Waits (polling the server's lock table) until some session waits for a lock on
/// `user_goal_progress`.
async fn until_someone_waits_for_the_table(pool: &PgPool) {
    for _ in 0..2000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks \
             WHERE NOT granted AND relation = 'user_goal_progress'::regclass",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("nobody waited for the user_goal_progress lock");
}

/// Events buffered before the erasure are dropped by the next flush (auto-initialize
/// included); an event after it starts afresh.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn buffered_events_before_an_erasure_never_come_back(pool: PgPool) {
    let h = start_at(pool.clone(), BUFFERED, at(T0), |b| b).await;
    h.login_id("amy", "a-1").await.unwrap();
    h.login_id("amy", "a-2").await.unwrap();
    h.login_id("bob", "b-1").await.unwrap();
    assert!(h.handle.pending_keys() > 0);

    let erased = erasure::erase_user(
        &pool,
        "amy",
        NAMESPACE,
        at(T0) + chrono::Duration::seconds(1),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(erased, Erasure::Erased(e) if e.progress_rows == 0));

    let outcome = h.handle.flush_once().await.unwrap();
    assert_eq!(outcome.erased, 5, "amy's five login goals dropped");
    assert!(rows(&pool, "amy").await.is_empty(), "no zombie rows");
    assert_eq!(progress(&pool, "bob", "login-total").await, Some(1));
    assert_eq!(h.handle.pending_keys(), 0);

    // A redelivery of a dropped event is a duplicate (its id is recorded as done).
    h.login_id("amy", "a-1").await.unwrap();
    assert_eq!(h.handle.pending_keys(), 0);

    // After the erasure: fresh rows.
    h.clock.advance(chrono::Duration::seconds(10));
    h.login_id("amy", "a-3").await.unwrap();
    h.flush().await;
    let amy = rows(&pool, "amy").await;
    assert_eq!(amy["login-total"].progress, 1, "starts afresh");
    assert_eq!(
        assigned(&pool, "amy").await.len(),
        13,
        "default goals assigned again"
    );
    h.stop().await.unwrap();
}

/// A redelivered event stamped before the erasure (an id the ledger does not hold) is
/// dropped; one stamped after it counts.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_redelivered_event_from_before_the_erasure_is_dropped(pool: PgPool) {
    let h = start_at(pool.clone(), BUFFERED, at("2025-11-05T12:10:00Z"), |b| b).await;
    h.login_client()
        .on_message(login_at("amy", "a-1", "2025-11-05T12:00:00Z"))
        .await
        .unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "amy", "login-total").await, Some(1));

    let erased = erasure::erase_user(&pool, "amy", NAMESPACE, at("2025-11-05T12:05:00Z"), None)
        .await
        .unwrap();
    // The marker (`store::implicit`) and the five login goals the login changed.
    assert!(matches!(erased, Erasure::Erased(e) if e.progress_rows == 6));

    // Delivered late: happened at 12:01, before the erasure.
    h.login_client()
        .on_message(login_at("amy", "a-2", "2025-11-05T12:01:00Z"))
        .await
        .unwrap();
    let outcome = h.handle.flush_once().await.unwrap();
    assert_eq!(outcome.erased, 5);
    assert!(rows(&pool, "amy").await.is_empty(), "no zombie rows");

    h.login_client()
        .on_message(login_at("amy", "a-3", "2025-11-05T12:06:00Z"))
        .await
        .unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "amy", "login-total").await, Some(1));
    h.stop().await.unwrap();
}

/// Durable mode, the erasure committing while the batch holding the event is in flight:
/// the batch waits for the erasure's lock, then reads its tombstone. Without the batch's
/// table lock before the tombstone read it would read no tombstone, then insert the rows
/// after the erasure committed.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_event_in_flight_when_the_erasure_commits_leaves_no_rows(pool: PgPool) {
    let h = start_at(pool.clone(), &[], at(T0), |b| b).await;
    let held = erasure::begin_erasure(
        &pool,
        "amy",
        NAMESPACE,
        at(T0) + chrono::Duration::seconds(1),
        None,
    )
    .await
    .unwrap()
    .expect("not rate limited");

    let mut client = h.login_client();
    let event = tokio::spawn(async move {
        client
            .on_message(login_at("amy", "a-1", "2025-11-05T12:00:00Z"))
            .await
    });
    until_someone_waits_for_the_table(&pool).await;
    assert!(!event.is_finished(), "the batch waits for the erasure");
    held.finish().await.unwrap();

    event
        .await
        .unwrap()
        .expect("acknowledged (dropped as erased)");
    assert!(rows(&pool, "amy").await.is_empty(), "no zombie rows");
    assert!(tombstone(&pool, "amy").await.is_some());
    h.stop().await.unwrap();
}

/// The other order: a batch in flight (rows written, not committed) when the erasure
/// starts. The erasure waits for it and then deletes its rows; without the erasure's
/// table lock its DELETE would miss the uncommitted rows, which would then survive.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_erasure_waits_for_the_batch_in_flight_and_deletes_its_rows(pool: PgPool) {
    let mut batch = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE user_goal_progress IN ROW EXCLUSIVE MODE")
        .execute(&mut *batch)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress) \
         VALUES ('amy', 'login-total', 'core', $1, 3)",
    )
    .bind(NAMESPACE)
    .execute(&mut *batch)
    .await
    .unwrap();

    let erasing = tokio::spawn({
        let pool = pool.clone();
        async move { erasure::erase_user(&pool, "amy", NAMESPACE, at(T0), None).await }
    });
    until_someone_waits_for_the_table(&pool).await;
    batch.commit().await.unwrap();

    let erased = erasing.await.unwrap().unwrap();
    assert!(matches!(erased, Erasure::Erased(e) if e.progress_rows == 1));
    assert!(rows(&pool, "amy").await.is_empty());
}

fn gdpr(
    envelope_user: &str,
    payload_user: &str,
    namespace: &str,
) -> GdprRequestDataDeletionResponse {
    GdprRequestDataDeletionResponse {
        id: "gdpr-1".into(),
        namespace: namespace.into(),
        user_id: envelope_user.into(),
        payload: Some(GdprRequestDataDeletionResponsePayloadData {
            deletion_gdpr: Some(DeletionGdpr {
                user_id: payload_user.into(),
                namespace: namespace.into(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// The IAM GDPR event erases at once (durable, not buffered), is never rate limited (IAM is
/// authoritative; a redelivery only moves the tombstone), skips other namespaces and
/// refuses a message without a user.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_gdpr_event_erases_the_user(pool: PgPool) {
    let h = start_at(pool.clone(), &[], at(T0), |b| b).await;
    h.login_id("amy", "a-1").await.unwrap();
    h.login_id("bob", "b-1").await.unwrap();
    assert_eq!(assigned(&pool, "amy").await.len(), 13);
    let mut gdpr_client =
        DeletionAccountGdprGdprRequestDataDeletionResponseServiceClient::new(h.channel());

    gdpr_client
        .on_message(gdpr("", "amy", "another-ns"))
        .await
        .unwrap();
    assert_eq!(
        assigned(&pool, "amy").await.len(),
        13,
        "another namespace: skipped"
    );

    gdpr_client
        .on_message(gdpr("someone-else", "amy", NAMESPACE))
        .await
        .unwrap();
    assert!(rows(&pool, "amy").await.is_empty(), "the payload's user");
    let first = tombstone(&pool, "amy").await.unwrap();
    assert_eq!(progress(&pool, "bob", "login-total").await, Some(1));

    // Redelivered a second later: OK, not rate limited.
    h.clock.advance(chrono::Duration::seconds(1));
    gdpr_client
        .on_message(gdpr("someone-else", "amy", NAMESPACE))
        .await
        .unwrap();
    assert!(tombstone(&pool, "amy").await.unwrap() > first);

    // Envelope user when the payload has none.
    gdpr_client
        .on_message(gdpr("bob", "", NAMESPACE))
        .await
        .unwrap();
    assert!(rows(&pool, "bob").await.is_empty());

    let err = gdpr_client
        .on_message(gdpr("", "", NAMESPACE))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    h.stop().await.unwrap();
}

/// Database unreachable: the GDPR event answers `Unavailable` (the platform redelivers).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_gdpr_event_is_unavailable_without_the_database(pool: PgPool) {
    let options = (*pool.connect_options()).clone();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let proxied = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(options.host("127.0.0.1").port(proxy.addr.port()));
    let h = start_at(proxied, &[], at(T0), |b| b).await;
    proxy.cut();
    let mut gdpr_client =
        DeletionAccountGdprGdprRequestDataDeletionResponseServiceClient::new(h.channel());
    let err = gdpr_client
        .on_message(gdpr("", "amy", NAMESPACE))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(tombstone(&pool, "amy").await.is_none());
    proxy.restore();
    // The platform redelivers until OK.
    let mut delivered = false;
    for _ in 0..50 {
        match gdpr_client.on_message(gdpr("", "amy", NAMESPACE)).await {
            Ok(_) => {
                delivered = true;
                break;
            }
            Err(s) if s.code() == Code::Unavailable => continue,
            Err(s) => panic!("unexpected answer {s:?}"),
        }
    }
    assert!(delivered);
    assert!(tombstone(&pool, "amy").await.is_some());
    h.stop().await.unwrap();
}

/// Retention never deletes an expired row whose state still matters: carried-over progress
/// (`resetProgress: false`) and a claim that is forever (`allowReselection: false`).
/// Expired rows with nothing to keep go.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn retention_keeps_carried_over_progress_and_permanent_claims(pool: PgPool) {
    let long_ago = at("2025-10-01T00:00:00Z");
    for (user, goal, progress, status) in [
        ("keeps", "weekly-keep", 7, "in_progress"),
        ("claimed", "weekly-keep", 20, "claimed"),
        ("nothing", "weekly-keep", 0, "not_started"),
        ("resets", "weekly-score", 7, "in_progress"),
    ] {
        let done = (status == "claimed").then_some(long_ago);
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at, claimed_at, expires_at) VALUES ($1, $2, 'weekly', $3, $4, $5, \
             $6, $6, $7)",
        )
        .bind(user)
        .bind(goal)
        .bind(NAMESPACE)
        .bind(progress)
        .bind(status)
        .bind(done)
        .bind(long_ago)
        .execute(&pool)
        .await
        .unwrap();
    }
    let guard = erasure::RetentionGuard::from_config(&fixture_config());
    assert_eq!(guard.carry_over, ["weekly-keep"]);
    assert_eq!(guard.claimed_forever, ["weekly-keep"]);
    let deleted = erasure::delete_expired_batch(&pool, at(T0), 100, &guard)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<String> = sqlx::query_scalar("SELECT user_id FROM user_goal_progress ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["claimed", "keeps"]);
}
