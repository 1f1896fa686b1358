//! Cross-replica de-duplication that survives crashes (CONTRACT §2.2): a dead replica holds
//! no event id longer than its lease, and an event whose batch committed is never applied
//! again — the ledger in Postgres says so, whatever happened to Redis or the process. Real
//! Postgres and Redis; replicas in one process share a database and a Redis key prefix.

mod common;

use std::time::{Duration, Instant};

use common::*;
use deadpool_redis::redis::AsyncCommands;
use extend_challenge_event_handler::event::{Event, EventKind, Source};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::Code;

const LEASE: Duration = Duration::from_millis(800);

/// Host and port of the test Redis, from `REDIS_URL` (default the local one).
fn redis_env() -> (String, String) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rest = url.split("://").nth(1).unwrap_or(&url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (authority.to_string(), "6379".to_string()),
    }
}

/// A raw Redis connection for the test itself.
async fn redis_conn() -> deadpool_redis::Connection {
    let (host, port) = redis_env();
    deadpool_redis::Config::from_url(format!("redis://{host}:{port}/"))
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
        .get()
        .await
        .unwrap()
}

fn prefix() -> String {
    format!("test:dedup:{}:", uuid::Uuid::new_v4())
}

/// A login stamped two minutes after the handler's (manual) clock: too recent to have been
/// applied by an earlier incarnation, so only Redis and the window decide about it.
fn fresh_login(h_now: chrono::DateTime<chrono::Utc>, user: &str, id: &str) -> Event {
    Event {
        kind: EventKind::Login,
        id: id.into(),
        namespace: NAMESPACE.into(),
        user_id: user.into(),
        timestamp: Some(h_now + chrono::TimeDelta::minutes(2)),
        source: Source::Login,
    }
}

/// Redelivers until acknowledged, as the platform does; returns how many `Unavailable`
/// answers came first and how long it took.
async fn redeliver(
    engine: &extend_challenge_event_handler::engine::Engine,
    ev: &Event,
    within: Duration,
) -> (u32, Duration) {
    let started = Instant::now();
    let mut refused = 0;
    loop {
        match engine.ingest(ev.clone()).await {
            Ok(_) => return (refused, started.elapsed()),
            Err(s) if s.code() == Code::Unavailable => refused += 1,
            Err(s) => panic!("unexpected answer {s:?}"),
        }
        assert!(
            started.elapsed() < within,
            "{} not acknowledged within {within:?}",
            ev.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_redis(
    prefix: &str,
) -> impl FnOnce(
    extend_challenge_event_handler::server::Builder,
) -> extend_challenge_event_handler::server::Builder {
    let prefix = prefix.to_string();
    move |b| b.redis_key_prefix(prefix).redis_lease(LEASE)
}

fn redis_settings(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let (host, port) = redis_env();
    let mut env = vec![("REDIS_HOST", host), ("REDIS_PORT", port)];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

fn as_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Replica A commits a batch and "crashes" before its Redis `done` write (the key is put
/// back to A's lease as it was). Replica B gets the redelivery: once A's lease expires, the
/// ledger says it was applied — answered OK, applied once.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_commit_before_a_crash_is_not_applied_again(pool: PgPool) {
    let prefix = prefix();
    let env = redis_settings(BUFFERED);
    let a = start(pool.clone(), &as_env(&env), with_redis(&prefix)).await;
    let ev = fresh_login(a.clock_now(), "uma", "x-1");
    a.handle.engine().ingest(ev.clone()).await.unwrap();
    let mut redis = redis_conn().await;
    let key = format!("{prefix}x-1");
    let lease: String = redis.get(&key).await.unwrap();
    assert!(lease.starts_with("pending:"), "{lease}");
    a.flush().await;
    assert_eq!(progress(&pool, "uma", "login-total").await, Some(1));
    // The crash: the done write never happened.
    let _: () = redis.set(&key, &lease).await.unwrap();
    a.stop().await.unwrap();

    let b = start(
        pool.clone(),
        &as_env(&redis_settings(&[])),
        with_redis(&prefix),
    )
    .await;
    let (refused, took) = redeliver(b.handle.engine(), &ev, Duration::from_secs(10)).await;
    assert!(took < LEASE * 4, "held no longer than the lease: {took:?}");
    let _ = refused;
    assert_eq!(
        progress(&pool, "uma", "login-total").await,
        Some(1),
        "applied once"
    );
    let state: String = redis.get(&key).await.unwrap();
    assert_eq!(state, "done");
    b.stop().await.unwrap();
}

/// Replica A takes the lease and dies before committing (dropped: no flush, no renewal).
/// Replica B takes the event over once the lease expires — seconds, not minutes — and
/// applies it exactly once.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_dead_replica_holds_an_id_no_longer_than_its_lease(pool: PgPool) {
    let prefix = prefix();
    let env = redis_settings(BUFFERED);
    let settings = settings(&as_env(&env));
    let (clock, _hand) = extend_challenge_common::clock::Clock::manual(at("2025-11-05T12:00:00Z"));
    let a = extend_challenge_event_handler::server::Builder::new(
        settings,
        fixture_config(),
        pool.clone(),
    )
    .clock(clock.clone())
    .redis_key_prefix(prefix.clone())
    .redis_lease(LEASE)
    .build_engine()
    .unwrap();
    let ev = fresh_login(clock.now(), "vic", "y-1");
    a.ingest(ev.clone()).await.unwrap();
    assert_eq!(a.redis().unwrap().held(), 1);
    drop(a);

    let takeovers = metric("challenge_dedup_lease_takeovers_total", &[]);
    let b = start(
        pool.clone(),
        &as_env(&redis_settings(&[])),
        with_redis(&prefix),
    )
    .await;
    let (refused, took) = redeliver(b.handle.engine(), &ev, Duration::from_secs(10)).await;
    assert!(refused >= 1, "refused while A's lease was live");
    assert!(took < LEASE * 4, "held no longer than the lease: {took:?}");
    assert!(metric("challenge_dedup_lease_takeovers_total", &[]) >= takeovers + 1.0);
    assert_eq!(progress(&pool, "vic", "login-total").await, Some(1));
    // Further redeliveries are no-ops.
    b.handle.engine().ingest(ev.clone()).await.unwrap();
    assert_eq!(progress(&pool, "vic", "login-total").await, Some(1));
    b.stop().await.unwrap();
}

/// Without Redis: process 1 commits and dies before its answers reach the platform;
/// process 2 (same database, empty window) gets the redeliveries, stamped before it started
/// — the ledger answers them OK, nothing is applied twice; an event process 1 never
/// committed is applied.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_restart_without_redis_does_not_apply_committed_events_again(pool: PgPool) {
    let first = start(pool.clone(), &[], |b| b).await;
    let stamp = (first.clock_now() - chrono::TimeDelta::seconds(30)).to_rfc3339();
    let stamped = |user: &str, id: &str| {
        let mut ev = login(user, id);
        ev.timestamp = stamp.clone();
        ev
    };
    for i in 0..5 {
        first
            .login_client()
            .on_message(stamped("wes", &format!("r-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(progress(&pool, "wes", "login-total").await, Some(5));
    first.stop().await.unwrap();

    let lookups = metric("challenge_dedup_ledger_lookups_total", &[]);
    let second = start(pool.clone(), &[], |b| b).await;
    for i in 0..6 {
        second
            .login_client()
            .on_message(stamped("wes", &format!("r-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        progress(&pool, "wes", "login-total").await,
        Some(6),
        "r-0…r-4 once each, r-5 (never committed before) once"
    );
    assert!(metric("challenge_dedup_ledger_lookups_total", &[]) >= lookups + 6.0);
    second.stop().await.unwrap();
}

/// Replica A holds an event while its database is cut off for several lease lengths: it
/// keeps renewing the lease, so replica B keeps answering `Unavailable` instead of taking
/// the event over; once A commits, B answers OK — applied once.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_live_replica_keeps_its_lease_through_a_database_outage(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let direct = direct_pool(&opts).await;
    let (proxy, proxied) = proxied_pool(&opts, 4, Duration::from_secs(1)).await;
    let prefix = prefix();
    let env = redis_settings(&[("FLUSH_WORKERS", "1")]);
    let a = start(proxied, &as_env(&env), |b| {
        with_redis(&prefix)(b).options(|o| o.ack_deadline = Duration::from_millis(300))
    })
    .await;
    let b = start(direct.clone(), &as_env(&env), with_redis(&prefix)).await;
    assign(&direct, "xan", &["login-total"], a.clock_now()).await;

    proxy.cut();
    let ev = fresh_login(a.clock_now(), "xan", "z-1");
    let answer = a.handle.engine().ingest(ev.clone()).await.unwrap_err();
    assert_eq!(answer.code(), Code::Unavailable, "buffered, not committed");
    // Three lease lengths later, A's lease is still live: B refuses the redelivery.
    let outage = Instant::now();
    while outage.elapsed() < LEASE * 3 {
        let refused = b.handle.engine().ingest(ev.clone()).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable);
        tokio::time::sleep(LEASE / 4).await;
    }
    assert_eq!(progress(&direct, "xan", "login-total").await, Some(0));

    proxy.restore();
    // A's worker commits the buffered event; B then finds it done.
    redeliver(b.handle.engine(), &ev, Duration::from_secs(10)).await;
    assert_eq!(
        progress(&direct, "xan", "login-total").await,
        Some(1),
        "applied once"
    );
    a.handle.flush_once().await.unwrap();
    assert_eq!(progress(&direct, "xan", "login-total").await, Some(1));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Events without a timestamp (AccelByte's k6 scenario 2 sends none) are judged by their
/// arrival: while the process is younger than the ack deadline plus a margin, a redelivery
/// of one an earlier incarnation committed is found in the ledger and answered OK; past
/// that, no ledger read is paid for them (before, every one paid it for the life of the
/// process). The residual window this leaves — such a redelivery arriving later still, with
/// Redis down or absent — applies it again, as pinned here.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn untimed_events_read_the_ledger_only_while_the_process_is_young(pool: PgPool) {
    let first = start(pool.clone(), &[], |b| b).await;
    for id in ["t-1", "t-2"] {
        first
            .login_client()
            .on_message(login("tia", id))
            .await
            .unwrap();
    }
    assert_eq!(progress(&pool, "tia", "login-total").await, Some(2));
    first.stop().await.unwrap();

    let second = start(pool.clone(), &[], |b| b).await;
    // Young: the redelivered t-1 is found in the ledger, not applied again.
    second
        .login_client()
        .on_message(login("tia", "t-1"))
        .await
        .unwrap();
    assert_eq!(progress(&pool, "tia", "login-total").await, Some(2));
    // Past the ack deadline (5 s) plus the margin (10 s): no ledger read any more.
    second.clock.advance(chrono::TimeDelta::seconds(16));
    second
        .login_client()
        .on_message(login("tia", "t-2"))
        .await
        .unwrap();
    assert_eq!(
        progress(&pool, "tia", "login-total").await,
        Some(3),
        "not looked up: the residual window, documented in dedup.rs"
    );
    second.stop().await.unwrap();
}
