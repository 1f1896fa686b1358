//! Durability and concurrency: durable acknowledgements, a database cut off through a TCP
//! proxy, two handler instances on one database, duplicate ids in and across processes.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Delivers like the platform does: redeliver the same event while the handler answers
/// `Unavailable`. Returns how many deliveries it took.
async fn deliver_login(h: &TestHandler, user: &str, id: &str) -> u32 {
    for attempt in 1..=200 {
        match h.login_id(user, id).await {
            Ok(()) => return attempt,
            Err(s) if s.code() == Code::Unavailable => continue,
            Err(s) => panic!("unexpected answer {s:?}"),
        }
    }
    panic!("event {id} never acknowledged");
}

async fn deliver_stat(h: &TestHandler, user: &str, id: &str) {
    for _ in 0..200 {
        let mut ev = stat(user, "matches", 1.0, 1.0);
        ev.id = id.into();
        match h.stat_client().on_message(ev).await {
            Ok(_) => return,
            Err(s) if s.code() == Code::Unavailable => continue,
            Err(s) => panic!("unexpected answer {s:?}"),
        }
    }
    panic!("event {id} never acknowledged");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn durable_ok_means_committed(pool: PgPool) {
    let h = start(pool.clone(), &[], |b| b).await;
    h.login_id("amy", "a-1").await.unwrap();
    assert_eq!(
        progress(&pool, "amy", "login-total").await,
        Some(1),
        "no flush call needed"
    );
    for _ in 0..5 {
        h.stat("amy", "matches", 1.0, 1.0).await.unwrap();
    }
    assert_eq!(progress(&pool, "amy", "matches-total").await, Some(5));
    // A redelivery of a committed id is an OK no-op.
    h.login_id("amy", "a-1").await.unwrap();
    assert_eq!(progress(&pool, "amy", "login-total").await, Some(1));
    assert_eq!(h.handle.pending_keys(), 0);
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn database_outage_in_durable_mode_loses_no_acknowledged_event(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let direct = direct_pool(&opts).await;
    let (proxy, proxied) = proxied_pool(&opts, 4, Duration::from_secs(1)).await;
    let h = start(proxied, &[("FLUSH_WORKERS", "1")], |b| {
        b.options(|o| {
            o.ack_deadline = Duration::from_millis(800);
            o.flush_timeout = Duration::from_secs(2);
            o.retry_backoff = (Duration::from_millis(20), Duration::from_millis(200));
        })
    })
    .await;
    h.login_id("bea", "b-0").await.unwrap();
    assert_eq!(progress(&direct, "bea", "login-total").await, Some(1));
    assert!(h.handle.health().check_now().await);

    proxy.cut();
    // Events stamped after this process started cannot have been applied by an earlier
    // incarnation: they are buffered without a ledger look-up, and wait for the database.
    let fresh = (h.clock_now() + chrono::TimeDelta::minutes(2)).to_rfc3339();
    let ids: Vec<String> = (1..=20).map(|i| format!("b-{i}")).collect();
    let answers = join_all(ids.iter().map(|id| {
        let mut ev = login("bea", id);
        ev.timestamp = fresh.clone();
        let mut client = h.login_client();
        async move { client.on_message(ev).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.as_ref().unwrap_err().code(), Code::Unavailable, "{a:?}");
    }
    let mut stat_event = stat("bea", "matches", 1.0, 1.0);
    stat_event.id = "b-stat".into();
    stat_event.timestamp = fresh.clone();
    let stat_answer = h.stat_client().on_message(stat_event).await;
    assert_eq!(stat_answer.unwrap_err().code(), Code::Unavailable);
    // An event that may predate this process needs the ledger: refused at the door.
    let unstamped = h.login_id("bea", "b-old").await.unwrap_err();
    assert_eq!(unstamped.code(), Code::Unavailable);
    assert!(
        unstamped.message().contains("cannot tell whether"),
        "{unstamped:?}"
    );
    // Health follows the database.
    assert!(!h.handle.health().check_now().await);
    let mut health = HealthClient::new(h.channel());
    let res = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.status, ServingStatus::NotServing as i32);
    // A redelivery while the first copy is still pending is not acknowledged either.
    assert_eq!(
        h.login_id("bea", "b-1").await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(progress(&direct, "bea", "login-total").await, Some(1));

    proxy.restore();
    // The refused events stayed buffered: once a later event is durable (one worker, so
    // one commit order), they are written too, without any redelivery.
    deliver_login(&h, "bea", "b-after").await;
    assert_eq!(progress(&direct, "bea", "login-total").await, Some(22));
    // The platform redelivers them anyway; each counts exactly once.
    for id in &ids {
        deliver_login(&h, "bea", id).await;
    }
    deliver_stat(&h, "bea", "b-stat").await;
    assert_eq!(progress(&direct, "bea", "login-total").await, Some(22));
    // The one refused at the door counts once its redelivery finds the database.
    deliver_login(&h, "bea", "b-old").await;
    deliver_login(&h, "bea", "b-old").await;
    assert_eq!(progress(&direct, "bea", "login-total").await, Some(23));
    assert_eq!(progress(&direct, "bea", "matches-total").await, Some(1));
    assert!(
        h.handle.flush_errors() > 0,
        "the outage was seen by the flusher"
    );
    assert!(h.handle.health().check_now().await);
    h.stop().await.unwrap();
}

/// CONTRACT §2.2: acknowledgements resume within 1 s of the database being reachable
/// again, however long the outage grew the flush's retry backoff. (The timeout is an upper
/// bound on correctness, not a performance measurement.)
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn acknowledgements_resume_promptly_after_an_outage(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let direct = direct_pool(&opts).await;
    let (proxy, proxied) = proxied_pool(&opts, 4, Duration::from_secs(1)).await;
    // The default retry backoff and health interval; only the ack deadline outlasts the
    // outage, so the caller is still waiting when the database returns.
    let h = start(proxied, &[("FLUSH_WORKERS", "1")], |b| {
        b.options(|o| o.ack_deadline = Duration::from_secs(60))
    })
    .await;
    h.login_id("ida", "i-0").await.unwrap();

    proxy.cut();
    let mut ev = login("ida", "i-1");
    ev.timestamp = (h.clock_now() + chrono::TimeDelta::minutes(2)).to_rfc3339();
    let mut client = h.login_client();
    let mut waiting = tokio::spawn(async move { client.on_message(ev).await });
    // Let the backoff grow: with a 50 ms start doubling, seven failures take seconds.
    let outage = std::time::Instant::now();
    while h.handle.flush_errors() < 7 {
        assert!(
            outage.elapsed() < Duration::from_secs(30),
            "the flusher stopped retrying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!waiting.is_finished());

    proxy.restore();
    let acked = tokio::time::timeout(Duration::from_millis(1500), &mut waiting).await;
    let answer = acked.expect("acknowledged within 1.5 s of the database's return");
    answer.unwrap().expect("OK");
    assert_eq!(progress(&direct, "ida", "login-total").await, Some(2));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn failed_flushes_merge_back_and_retry_in_buffered_mode(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let direct = direct_pool(&opts).await;
    let (proxy, proxied) = proxied_pool(&opts, 2, Duration::from_secs(1)).await;
    let env = [
        ("ACK_MODE", "buffered"),
        ("BUFFER_FLUSH_INTERVAL_MS", "3600000"),
    ];
    let h = start(proxied, &env, |b| {
        b.options(|o| o.flush_timeout = Duration::from_secs(2))
    })
    .await;
    assign(
        &direct,
        "cid",
        &["login-total", "kills-10", "kills-relative-5"],
        h.clock_now(),
    )
    .await;

    h.login("cid").await.unwrap();
    h.stat("cid", "kills", 100.0, 10.0).await.unwrap();
    proxy.cut();
    assert!(h.handle.flush_once().await.is_err());
    assert!(h.handle.pending_keys() > 0, "the failed batch is kept");
    // Newer events merge on top of the failed batch.
    h.login("cid").await.unwrap();
    h.stat("cid", "kills", 103.0, 3.0).await.unwrap();
    assert!(h.handle.flush_once().await.is_err());
    proxy.restore();
    let mut flushed = false;
    for _ in 0..50 {
        if h.handle.flush_once().await.is_ok() && h.handle.pending_keys() == 0 {
            flushed = true;
            break;
        }
    }
    assert!(flushed, "the flush succeeds once the database is back");
    assert_eq!(
        progress(&direct, "cid", "login-total").await,
        Some(2),
        "counts add up"
    );
    assert_eq!(
        progress(&direct, "cid", "kills-10").await,
        Some(103),
        "latest value wins"
    );
    assert_eq!(
        progress(&direct, "cid", "kills-relative-5").await,
        Some(13),
        "baseline from the first event (100 - 10)"
    );
    h.stop().await.unwrap();
}

/// The user was auto-initialized (their marker row, `store::implicit`) and has rows only
/// for the goals events changed: none of the fixture's other default goals got a row.
async fn assert_initialized_once(pool: &PgPool, user: &str) {
    let rows = rows(pool, user).await;
    assert!(rows.contains_key(""), "{user} has a marker: {rows:?}");
    for (goal, row) in &rows {
        assert!(
            goal.is_empty() || row.progress > 0,
            "{user}: a row for {goal} that no event changed"
        );
    }
    assert!(rows.len() < 13, "{user}: not one row per default goal");
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn two_instances_on_one_database_give_exact_counts(pool: PgPool) {
    let a = start(pool.clone(), &[], |b| b).await;
    let b = start(pool.clone(), &[], |b| b).await;
    let users: Vec<String> = (0..12).map(|i| format!("twin-{i}")).collect();
    const PER_INSTANCE: usize = 15;
    // Each task walks every user in its own rotation, alternating instances, so both
    // buffers hold the same users at once (and auto-initialize them concurrently).
    let tasks = (0..16).map(|t| {
        let (a, b, users) = (&a, &b, &users);
        async move {
            for round in 0..PER_INSTANCE * 2 * users.len() / 16 {
                let user = &users[(t + round) % users.len()];
                let h = if (t + round) % 2 == 0 { a } else { b };
                let id = format!("{t}-{round}");
                if round % 3 == 0 {
                    deliver_stat(h, user, &id).await;
                } else {
                    deliver_login(h, user, &id).await;
                }
            }
        }
    });
    join_all(tasks).await;

    // Expected counts from the same schedule.
    let mut logins = std::collections::HashMap::<&str, i32>::new();
    let mut matches = std::collections::HashMap::<&str, i32>::new();
    for t in 0..16 {
        for round in 0..PER_INSTANCE * 2 * users.len() / 16 {
            let user = users[(t + round) % users.len()].as_str();
            let bucket = if round % 3 == 0 {
                &mut matches
            } else {
                &mut logins
            };
            *bucket.entry(user).or_default() += 1;
        }
    }
    for u in &users {
        assert_eq!(
            progress(&pool, u, "login-total").await,
            Some(logins[u.as_str()]),
            "{u}"
        );
        assert_eq!(
            progress(&pool, u, "matches-total").await,
            Some(matches[u.as_str()]),
            "{u}"
        );
        assert_initialized_once(&pool, u).await;
    }
    assert_eq!(
        a.handle.flush_errors() + b.handle.flush_errors(),
        0,
        "no deadlock, no retry"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Two replicas hammering the same two users: their batches lock the same rows, so each
/// skips (defers) rows the other holds and retries them after the other commits.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn two_instances_contending_on_the_same_rows_give_exact_counts(pool: PgPool) {
    let a = start(pool.clone(), &[], |b| b).await;
    let b = start(pool.clone(), &[], |b| b).await;
    const TASKS: usize = 24;
    const ROUNDS: usize = 20;
    let tasks = (0..TASKS).map(|t| {
        let (a, b) = (&a, &b);
        async move {
            for round in 0..ROUNDS {
                let user = if round % 2 == 0 { "hot-0" } else { "hot-1" };
                let h = if (t + round) % 2 == 0 { a } else { b };
                deliver_login(h, user, &format!("{t}-{round}")).await;
            }
        }
    });
    join_all(tasks).await;
    for u in ["hot-0", "hot-1"] {
        assert_eq!(
            progress(&pool, u, "login-total").await,
            Some((TASKS * ROUNDS / 2) as i32),
            "{u}"
        );
        assert_initialized_once(&pool, u).await;
    }
    assert_eq!(a.handle.flush_errors() + b.handle.flush_errors(), 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn concurrent_redeliveries_in_one_process_count_once(pool: PgPool) {
    let h = start(pool.clone(), &[], |b| b).await;
    let copies = (0..8).map(|_| deliver_login(&h, "dan", "d-1"));
    join_all(copies).await;
    assert_eq!(progress(&pool, "dan", "login-total").await, Some(1));
    h.stop().await.unwrap();
}

/// Host and port of the test Redis, from `REDIS_URL` (default the local one).
fn redis_host_port() -> (String, String) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rest = url.split("://").nth(1).unwrap_or(&url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (authority.to_string(), "6379".to_string()),
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn duplicate_ids_across_instances_with_redis(pool: PgPool) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let (host, port) = redis_host_port();
    let redis = [("REDIS_HOST", host.as_str()), ("REDIS_PORT", port.as_str())];
    let a = start(pool.clone(), &redis, |b| b.redis_key_prefix(prefix.clone())).await;
    let b = start(pool.clone(), &redis, |b| b.redis_key_prefix(prefix.clone())).await;

    a.login_id("eve", "e-1").await.unwrap();
    b.login_id("eve", "e-1").await.unwrap();
    assert_eq!(progress(&pool, "eve", "login-total").await, Some(1));

    // Both at once: one applies, the other waits or is told to retry.
    let (x, y) = tokio::join!(
        deliver_login(&a, "eve", "e-2"),
        deliver_login(&b, "eve", "e-2")
    );
    assert!(x >= 1 && y >= 1);
    assert_eq!(progress(&pool, "eve", "login-total").await, Some(2));
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    // Buffered: while the first copy sits uncommitted in one replica, the other replica
    // must not acknowledge a redelivery.
    let env = [
        ("REDIS_HOST", host.as_str()),
        ("REDIS_PORT", port.as_str()),
        ("ACK_MODE", "buffered"),
        ("BUFFER_FLUSH_INTERVAL_MS", "3600000"),
    ];
    let a = start(pool.clone(), &env, |b| b.redis_key_prefix(prefix.clone())).await;
    let b = start(pool.clone(), &env, |b| b.redis_key_prefix(prefix.clone())).await;
    a.login_id("eve", "e-3").await.unwrap();
    assert_eq!(
        b.login_id("eve", "e-3").await.unwrap_err().code(),
        Code::Unavailable
    );
    a.flush().await;
    b.login_id("eve", "e-3").await.unwrap();
    b.flush().await;
    assert_eq!(progress(&pool, "eve", "login-total").await, Some(3));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn unconfirmed_commits_are_resolved_by_transaction_status(pool: PgPool) {
    async fn xid_of(tx: &mut sqlx::PgConnection) -> i64 {
        sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(tx)
            .await
            .unwrap()
    }
    use extend_challenge_common::store::flush::{TxStatus, transaction_status};
    let mut committed = pool.begin().await.unwrap();
    let c = xid_of(&mut committed).await;
    committed.commit().await.unwrap();
    let mut aborted = pool.begin().await.unwrap();
    let a = xid_of(&mut aborted).await;
    aborted.rollback().await.unwrap();
    let mut open = pool.begin().await.unwrap();
    let o = xid_of(&mut open).await;
    assert_eq!(
        transaction_status(&pool, c).await.unwrap(),
        TxStatus::Committed
    );
    assert_eq!(
        transaction_status(&pool, a).await.unwrap(),
        TxStatus::Aborted
    );
    assert_eq!(
        transaction_status(&pool, o).await.unwrap(),
        TxStatus::InProgress
    );
    open.rollback().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn shutdown_without_a_database_reports_the_loss(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let (proxy, proxied) = proxied_pool(&opts, 2, Duration::from_millis(500)).await;
    let env = [
        ("ACK_MODE", "buffered"),
        ("BUFFER_FLUSH_INTERVAL_MS", "3600000"),
    ];
    let h = start(proxied, &env, |b| {
        b.options(|o| {
            o.shutdown_flush_timeout = Duration::from_millis(500);
            o.retry_backoff = (Duration::from_millis(20), Duration::from_millis(100));
        })
    })
    .await;
    h.login("fay").await.unwrap();
    proxy.cut();
    assert!(matches!(
        h.stop().await,
        Err(extend_challenge_event_handler::server::RunError::FinalFlush)
    ));
}

/// Opens a transaction holding the row lock of (`user`, `goal`), as a reward claim does
/// while it calls AGS Platform.
async fn lock_row(
    pool: &PgPool,
    user: &str,
    goal: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT progress FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2 FOR UPDATE",
    )
    .bind(user)
    .bind(goal)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    assert!(found.is_some(), "{user}/{goal} has a row to lock");
    tx
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_row_locked_by_a_claim_does_not_stall_the_partition(pool: PgPool) {
    let h = start(pool.clone(), &[("FLUSH_WORKERS", "1")], |b| {
        b.options(|o| o.ack_deadline = Duration::from_secs(10))
    })
    .await;
    assign(&pool, "ann", &["login-total"], h.clock_now()).await;
    let deferred_metric = metric("challenge_flush_deferred_total", &[]);
    let claim = lock_row(&pool, "ann", "login-total").await;

    // Ann's event reaches the buffer and its batch defers her locked row.
    let mut ann = tokio::spawn({
        let client = h.login_client();
        async move { client.clone().on_message(login("ann", "ann-1")).await }
    });
    let waited = std::time::Instant::now();
    while h.handle.flush_deferred() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "ann's row never deferred"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Same partition (one worker), row lock still held: bob's durable OK means committed.
    h.login_id("bob", "bob-1").await.unwrap();
    assert_eq!(progress(&pool, "bob", "login-total").await, Some(1));
    assert_eq!(progress(&pool, "ann", "login-total").await, Some(0));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut ann)
            .await
            .is_err(),
        "ann's event is not acknowledged while its row is not written"
    );

    // The claim ends: ann's deferred delta is written once and her RPC answers OK.
    claim.rollback().await.unwrap();
    ann.await.unwrap().unwrap();
    assert_eq!(progress(&pool, "ann", "login-total").await, Some(1));
    h.handle.flush_once().await.unwrap();
    assert_eq!(h.handle.pending_keys(), 0);
    assert_eq!(
        progress(&pool, "ann", "login-total").await,
        Some(1),
        "exactly once"
    );
    // A redelivery of the acknowledged event is a no-op.
    h.login_id("ann", "ann-1").await.unwrap();
    assert_eq!(progress(&pool, "ann", "login-total").await, Some(1));
    assert!(h.handle.flush_deferred() >= 1);
    assert!(metric("challenge_flush_deferred_total", &[]) >= deferred_metric + 1.0);
    assert_eq!(
        h.handle.flush_errors(),
        0,
        "a deferral is not a flush error"
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn flush_batch_defers_locked_rows_and_drops_unassigned_keys(pool: PgPool) {
    use extend_challenge_common::store::flush::{BatchItem, BatchUser, flush_batch};
    let config = fixture_config();
    let now = at("2025-11-05T12:00:00Z");
    assign(&pool, "cal", &["login-total", "login-3"], now).await;
    let item = |user: &str, goal: &str| {
        let goal = config.goal(goal).unwrap().clone();
        BatchItem {
            user_id: user.into(),
            namespace: NAMESPACE.into(),
            delta: extend_challenge_common::progress::delta_for_login(&goal),
            goal,
        }
    };
    let items = [
        item("cal", "login-3"),
        item("cal", "login-total"),
        item("zoe", "login-total"),
    ];
    let user = |id: &str, keys: usize, event: &str| BatchUser {
        user_id: id.into(),
        keys,
        event_ids: vec![event.into()],
        oldest_at: None,
    };
    let users = [user("cal", 2, "cal-1"), user("zoe", 1, "zoe-1")];
    let before = rows(&pool, "cal").await;
    let claim = lock_row(&pool, "cal", "login-total").await;

    let flushed = flush_batch(&pool, &items, &users, None, now, Duration::from_secs(5))
        .await
        .expect("the batch commits without waiting for the lock");
    // Deferral is per user: cal/login-total is locked, so none of cal's keys is written.
    assert_eq!(flushed.deferred, vec![0, 1], "all of cal is deferred");
    assert_eq!(flushed.outcome.deferred, 2);
    assert_eq!(flushed.outcome.not_assigned, 1, "zoe has no rows");
    assert_eq!(flushed.outcome.updated, 0);
    claim.rollback().await.unwrap();

    let after = rows(&pool, "cal").await;
    assert_eq!(after, before, "cal untouched");
    assert!(rows(&pool, "zoe").await.is_empty());
    assert_eq!(
        ledger(&pool).await,
        ["zoe-1"],
        "only the written user's event"
    );

    // Retried once the lock is gone, it is written.
    let retry = flush_batch(
        &pool,
        &items[..2],
        &users[..1],
        None,
        now,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(retry.deferred.is_empty());
    assert_eq!(retry.outcome.updated, 2);
    assert_eq!(progress(&pool, "cal", "login-total").await, Some(1));
    assert_eq!(progress(&pool, "cal", "login-3").await, Some(1));
    assert_eq!(ledger(&pool).await, ["cal-1", "zoe-1"]);
}

/// Keys without a row of their own, told apart per user (one look at each user's rows):
/// for an initialized player, a default goal without a row is implicit (its first row is
/// inserted), a non-default goal never activated is not assigned (dropped), and an
/// activated one whose row another transaction holds defers the whole user.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn keys_without_a_row_are_implicit_not_assigned_or_held_per_user(pool: PgPool) {
    use extend_challenge_common::store::flush::{BatchItem, BatchUser, flush_batch};
    use extend_challenge_common::store::{implicit::Defaults, player};
    let config = fixture_config();
    let defaults = Defaults::of(&config);
    let now = at("2025-11-05T12:00:00Z");
    for user in ["ivy", "max"] {
        player::initialize(&pool, user, NAMESPACE, &defaults, now)
            .await
            .unwrap();
    }
    // ivy activated the hidden (non-default) goal; max did not.
    assign(&pool, "ivy", &["kills-hidden"], now).await;
    let item = |user: &str, goal: &str| {
        let goal = config.goal(goal).unwrap().clone();
        BatchItem {
            user_id: user.into(),
            namespace: NAMESPACE.into(),
            delta: extend_challenge_common::progress::delta_for_stat(&goal, 4, 4, (0, 1)).unwrap(),
            goal,
        }
    };
    let items = [
        item("ivy", "kills-10"),
        item("ivy", "kills-hidden"),
        item("max", "kills-10"),
        item("max", "kills-hidden"),
    ];
    let user = |id: &str, event: &str| BatchUser {
        user_id: id.into(),
        keys: 2,
        event_ids: vec![event.into()],
        oldest_at: None,
    };
    let users = [user("ivy", "ivy-1"), user("max", "max-1")];
    let claim = lock_row(&pool, "ivy", "kills-hidden").await;
    let five = Duration::from_secs(5);

    let flushed = flush_batch(&pool, &items, &users, Some(&defaults), now, five)
        .await
        .unwrap();
    assert_eq!(
        flushed.deferred,
        vec![0, 1],
        "ivy's row is held: all of ivy waits"
    );
    assert_eq!(
        flushed.outcome.updated, 1,
        "max's implicit kills-10: {flushed:?}"
    );
    assert_eq!(
        flushed.outcome.not_assigned, 1,
        "max never activated kills-hidden"
    );
    assert_eq!(flushed.outcome.initialized, 0, "both have markers");
    assert_eq!(progress(&pool, "max", "kills-10").await, Some(4));
    assert_eq!(progress(&pool, "max", "kills-hidden").await, None);
    assert_eq!(
        progress(&pool, "ivy", "kills-10").await,
        None,
        "still implicit"
    );
    claim.rollback().await.unwrap();

    let retry = flush_batch(&pool, &items[..2], &users[..1], Some(&defaults), now, five)
        .await
        .unwrap();
    assert!(retry.deferred.is_empty());
    assert_eq!(retry.outcome.updated, 2, "{retry:?}");
    assert_eq!(progress(&pool, "ivy", "kills-10").await, Some(4));
    assert_eq!(progress(&pool, "ivy", "kills-hidden").await, Some(4));
    assert_eq!(ledger(&pool).await, ["ivy-1", "max-1"]);
}

async fn ledger(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM event_ledger ORDER BY event_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_event_ledger_forgets_ids_after_the_ttl(pool: PgPool) {
    use extend_challenge_common::store::ledger;
    sqlx::query(
        "INSERT INTO event_ledger (event_id, applied_at) \
         SELECT 'old-' || i, now() - interval '25 hours' FROM generate_series(1, 25) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO event_ledger (event_id) VALUES ('new-1')")
        .execute(&pool)
        .await
        .unwrap();
    // Another replica holds the purge lock: this one leaves the work to it.
    let mut other = pool.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(0x4543_4c45_4447_4552_i64)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert!(locked);
    let purged = ledger::purge_expired(&pool, Duration::from_secs(86_400), 10)
        .await
        .unwrap();
    assert_eq!(purged, None);
    other.rollback().await.unwrap();
    // In batches of 10 until none is left.
    let purged = ledger::purge_expired(&pool, Duration::from_secs(86_400), 10)
        .await
        .unwrap();
    assert_eq!(purged, Some(25));
    let left = ledger::applied(&pool, &["old-1", "old-25", "new-1"])
        .await
        .unwrap();
    assert_eq!(left.into_iter().collect::<Vec<_>>(), ["new-1"]);
}

/// Another instance writes the same new user's rows at the same moment: this batch's
/// insert of the goal's first row waits for it and adds nothing, so the batch must not
/// commit without its delta — it fails as a lost race (retryable, nothing written), and the
/// retry updates the row the other transaction committed (it was invisible to the batch's
/// first locking select).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_user_initialized_by_another_batch_meanwhile_still_gets_the_delta(pool: PgPool) {
    use extend_challenge_common::store::flush::{BatchItem, BatchUser, flush_batch};
    let config = fixture_config();
    let now = at("2025-11-05T12:00:00Z");
    let defaults = extend_challenge_common::store::implicit::Defaults::of(&config);
    assert!(defaults.goals().iter().any(|g| g.id == "login-total"));

    // The other instance: all of ivy's default rows inserted, not committed yet.
    let mut other = pool.begin().await.unwrap();
    for g in defaults.goals() {
        let s = extend_challenge_common::progress::new_assignment(g, now);
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, is_active, assigned_at, expires_at) VALUES ('ivy',$1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(&g.id)
        .bind(&g.challenge_id)
        .bind(NAMESPACE)
        .bind(s.progress)
        .bind(s.status.as_str())
        .bind(s.is_active)
        .bind(s.assigned_at)
        .bind(s.expires_at)
        .execute(&mut *other)
        .await
        .unwrap();
    }

    let goal = config.goal("login-total").unwrap().clone();
    let items = [BatchItem {
        user_id: "ivy".into(),
        namespace: NAMESPACE.into(),
        delta: extend_challenge_common::progress::delta_for_login(&goal),
        goal,
    }];
    let users = [BatchUser {
        user_id: "ivy".into(),
        keys: 1,
        event_ids: vec!["ivy-1".into()],
        oldest_at: None,
    }];
    let flush = {
        let pool = pool.clone();
        move || {
            let (pool, items, users, defaults) =
                (pool.clone(), items.clone(), users.clone(), defaults.clone());
            async move {
                let timeout = Duration::from_secs(10);
                flush_batch(&pool, &items, &users, Some(&defaults), now, timeout).await
            }
        }
    };
    let batch = tokio::spawn(flush());
    // The batch's auto-initialize waits for the other transaction's rows.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !batch.is_finished(),
            "the batch did not wait for the other insert"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    other.commit().await.unwrap();

    let lost = batch.await.unwrap().unwrap_err();
    assert!(lost.is_retryable(), "a lost race is retried: {lost}");
    assert_eq!(
        progress(&pool, "ivy", "login-total").await,
        Some(0),
        "nothing of the lost batch was written"
    );
    let flushed = flush().await.unwrap();
    assert_eq!(
        flushed.outcome.initialized, 0,
        "the user has rows: no marker"
    );
    assert_eq!(flushed.outcome.not_assigned, 0, "the key has a row");
    assert_eq!(flushed.outcome.updated, 1);
    assert_eq!(progress(&pool, "ivy", "login-total").await, Some(1));
}
