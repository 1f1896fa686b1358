//! Every progress rule end to end: a tonic client → the handler (in-process, port 0) →
//! `flush_once` → rows in a fresh Postgres database. Buffered mode with a long interval, so
//! the test decides when batches are written.

mod common;

use chrono::Duration;
use common::*;
use sqlx::PgPool;
use tonic::Code;

fn status(
    rows: &std::collections::HashMap<String, extend_challenge_common::store::ProgressRow>,
    goal: &str,
) -> (i32, String) {
    let r = rows.get(goal).unwrap_or_else(|| panic!("row for {goal}"));
    (r.progress, r.status.clone())
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn logins_feed_login_goals_and_auto_initialize_new_players(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    h.login("alice").await.unwrap();
    h.login("alice").await.unwrap();
    h.third_party_client()
        .on_message(third_party_login("alice", ""))
        .await
        .unwrap();
    assert!(
        rows(&pool, "alice").await.is_empty(),
        "nothing written before the flush"
    );
    h.flush().await;

    let r = rows(&pool, "alice").await;
    // Every defaultAssigned goal of the fixture, and nothing else; rows only for the goals
    // the logins changed, the others implicit (`store::implicit`).
    let goals = assigned(&pool, "alice").await;
    assert_eq!(goals.len(), 13, "{goals:?}");
    assert!(!goals.contains("kills-hidden"));
    assert!(r.contains_key(""), "the marker row");
    assert!(
        !r.contains_key("kills-10"),
        "no row for a goal no event changed"
    );
    assert_eq!(status(&r, "login-3"), (3, "completed".into()));
    assert!(r["login-3"].completed_at.is_some());
    assert_eq!(status(&r, "login-total"), (3, "in_progress".into()));
    assert_eq!(
        status(&r, "login-daily-inc").0,
        1,
        "daily increment: once per UTC day"
    );
    assert_eq!(status(&r, "login-daily"), (1, "completed".into()));
    // A login goal that happens to name a stat code still counts logins.
    assert_eq!(status(&r, "login-kills").0, 3);
    // Stat goals are not fed by logins: they stay implicit (assigned, no row).
    for g in [
        "kills-10",
        "kills-relative-5",
        "matches-3",
        "matches-total",
        "wins-daily",
        "weekly-score",
    ] {
        assert!(goals.contains(g) && !r.contains_key(g), "{g}");
    }
    assert!(r.values().all(|row| row.namespace == NAMESPACE));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn stat_events_feed_only_statistic_goals_of_their_code(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let now = h.clock_now();
    assign(
        &pool,
        "bob",
        &[
            "kills-10",
            "kills-relative-5",
            "login-kills",
            "matches-total",
            "login-total",
        ],
        now,
    )
    .await;

    h.stat("bob", "kills", 4.0, 4.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "bob").await;
    assert_eq!(status(&r, "kills-10"), (4, "in_progress".into()));
    assert_eq!(
        status(&r, "kills-relative-5"),
        (4, "in_progress".into()),
        "baseline = 4 - 4 = 0"
    );
    assert_eq!(
        status(&r, "login-kills"),
        (0, "not_started".into()),
        "login goal untouched by stats"
    );
    assert_eq!(
        status(&r, "matches-total").0,
        0,
        "other stat codes untouched"
    );
    assert_eq!(status(&r, "login-total").0, 0);

    h.stat("bob", "kills", 12.0, 8.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "bob").await;
    assert_eq!(status(&r, "kills-10"), (12, "completed".into()));
    assert_eq!(status(&r, "kills-relative-5"), (12, "completed".into()));
    let completed_at = r["kills-10"].completed_at;
    assert!(completed_at.is_some());

    // Completed but not claimed: an absolute goal keeps taking new values; completed_at
    // is set once.
    h.clock.advance(Duration::minutes(1));
    h.stat("bob", "kills", 20.0, 8.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "bob").await;
    assert_eq!(status(&r, "kills-10"), (20, "completed".into()));
    assert_eq!(r["kills-10"].completed_at, completed_at);

    // A negative value leaves absolute and relative goals unchanged.
    h.stat("bob", "kills", -5.0, -25.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "bob").await;
    assert_eq!(status(&r, "kills-10").0, 20);
    assert_eq!(status(&r, "kills-relative-5").0, 20);
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn relative_goals_take_the_baseline_from_the_first_event(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let now = h.clock_now();
    assign(&pool, "carol", &["kills-relative-5", "kills-10"], now).await;
    assign(&pool, "dave", &["kills-relative-5"], now).await;

    // Both events in one batch: baseline from the first (100 - 2 = 98), latest value 104.
    h.stat("carol", "kills", 100.0, 2.0).await.unwrap();
    h.stat("carol", "kills", 104.0, 4.0).await.unwrap();
    // The first event of a period completes the goal when inc >= target.
    h.stat("dave", "kills", 500.0, 7.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "carol").await;
    assert_eq!(status(&r, "kills-relative-5"), (6, "completed".into()));
    assert_eq!(r["kills-relative-5"].baseline_value, Some(98));
    assert_eq!(status(&r, "kills-10"), (104, "completed".into()));
    let d = rows(&pool, "dave").await;
    assert_eq!(status(&d, "kills-relative-5"), (7, "completed".into()));

    // Later batches keep the baseline.
    h.stat("carol", "kills", 101.0, 1.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "carol").await;
    assert_eq!(
        status(&r, "kills-relative-5"),
        (3, "completed".into()),
        "shown progress follows the value; completion stays"
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn absolute_keeps_the_latest_event_by_timestamp(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    assign(&pool, "erin", &["kills-10"], h.clock_now()).await;
    let mut late = stat("erin", "kills", 7.0, 1.0);
    late.timestamp = "2025-11-05T11:00:02Z".into();
    let mut early = stat("erin", "kills", 3.0, 1.0);
    early.timestamp = "2025-11-05T11:00:01Z".into();
    // The later event arrives first: the value of the later timestamp wins.
    h.stat_client().on_message(late).await.unwrap();
    h.stat_client().on_message(early).await.unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "erin", "kills-10").await, Some(7));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn increment_and_daily_increment_goals(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    assign(
        &pool,
        "frank",
        &["matches-3", "matches-total", "matches-daily-2"],
        h.clock_now(),
    )
    .await;

    for v in [1.0, 2.0] {
        h.stat("frank", "matches", v, 1.0).await.unwrap();
    }
    h.flush().await;
    // A negative value still counts for increment goals; a second batch the same day does
    // not count again for the daily one.
    h.stat("frank", "matches", -3.0, -5.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "frank").await;
    assert_eq!(status(&r, "matches-3"), (3, "completed".into()));
    assert_eq!(status(&r, "matches-total"), (3, "in_progress".into()));
    assert_eq!(status(&r, "matches-daily-2"), (1, "in_progress".into()));

    h.clock.advance(Duration::days(1));
    h.stat("frank", "matches", 9.0, 1.0).await.unwrap();
    h.stat("frank", "matches", 10.0, 1.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "frank").await;
    assert_eq!(status(&r, "matches-total").0, 5);
    assert_eq!(status(&r, "matches-daily-2"), (2, "completed".into()));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn daily_goals_complete_once_per_utc_day(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    assign(&pool, "gina", &["wins-daily", "login-daily"], h.clock_now()).await;
    h.stat("gina", "wins", 1.0, 1.0).await.unwrap();
    h.stat("gina", "wins", 2.0, 1.0).await.unwrap();
    h.login("gina").await.unwrap();
    h.flush().await;
    h.login("gina").await.unwrap();
    h.flush().await;
    let r = rows(&pool, "gina").await;
    assert_eq!(status(&r, "wins-daily"), (1, "completed".into()));
    assert_eq!(status(&r, "login-daily"), (1, "completed".into()));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn inactive_and_claimed_rows_are_untouched(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    assign(
        &pool,
        "hank",
        &["kills-10", "matches-total", "login-total"],
        h.clock_now(),
    )
    .await;
    sqlx::query("UPDATE user_goal_progress SET is_active = false WHERE user_id = 'hank' AND goal_id = 'kills-10'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'claimed', progress = 7, completed_at = now(), \
         claimed_at = now() WHERE user_id = 'hank' AND goal_id IN ('matches-total', 'login-total')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = rows(&pool, "hank").await;

    h.stat("hank", "kills", 5.0, 5.0).await.unwrap();
    h.stat("hank", "matches", 1.0, 1.0).await.unwrap();
    h.login("hank").await.unwrap();
    h.flush().await;
    assert_eq!(
        rows(&pool, "hank").await,
        before,
        "no column changed, updated_at included"
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn rotation_rolls_over_at_the_period_boundary(pool: PgPool) {
    // Sunday 23:00 UTC: the weekly period ends in an hour.
    let h = start_at(pool.clone(), BUFFERED, at("2025-11-09T23:00:00Z"), |b| b).await;
    assign(
        &pool,
        "ivy",
        &["weekly-score", "weekly-keep"],
        h.clock_now(),
    )
    .await;
    for v in [1.0, 2.0, 3.0] {
        h.stat("ivy", "score", v, 1.0).await.unwrap();
    }
    h.flush().await;
    let r = rows(&pool, "ivy").await;
    assert_eq!(status(&r, "weekly-score"), (3, "completed".into()));
    assert_eq!(
        r["weekly-score"].expires_at,
        Some(at("2025-11-10T00:00:00Z"))
    );
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'claimed', claimed_at = $1 WHERE user_id = 'ivy'",
    )
    .bind(at("2025-11-09T23:30:00Z"))
    .execute(&pool)
    .await
    .unwrap();

    // Monday 01:00: a new period.
    h.clock.set(at("2025-11-10T01:00:00Z"));
    h.stat("ivy", "score", 4.0, 1.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "ivy").await;
    // resetProgress + allowReselection: progress restarts, the claim is cleared.
    let s = &r["weekly-score"];
    assert_eq!((s.progress, s.status.as_str()), (1, "in_progress"));
    assert_eq!(s.claimed_at, None);
    assert_eq!(s.completed_at, None);
    assert_eq!(s.expires_at, Some(at("2025-11-17T00:00:00Z")));
    // No reselection: claimed forever.
    let k = &r["weekly-keep"];
    assert_eq!(k.status, "claimed");
    assert_eq!(k.claimed_at, Some(at("2025-11-09T23:30:00Z")));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn auto_initialize_only_for_players_without_rows(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    // A player with one row gets no other goals assigned by events.
    assign(&pool, "jack", &["login-total"], h.clock_now()).await;
    h.login("jack").await.unwrap();
    h.stat("jack", "kills", 3.0, 3.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "jack").await;
    assert_eq!(r.len(), 1);
    assert_eq!(status(&r, "login-total").0, 1);
    // A stat event also initializes a new player, then applies.
    h.stat("kate", "kills", 3.0, 3.0).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "kate").await;
    assert_eq!(assigned(&pool, "kate").await.len(), 13);
    assert_eq!(status(&r, "kills-10").0, 3);
    h.stop().await.unwrap();

    let env = [BUFFERED, &[("AUTO_INITIALIZE_ON_EVENT", "false")]].concat();
    let h = start(pool.clone(), &env, |b| b).await;
    h.login("liam").await.unwrap();
    h.flush().await;
    assert!(
        rows(&pool, "liam").await.is_empty(),
        "no rows: the event is dropped by rule"
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn bad_events_get_the_contract_codes(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let mut stats = h.stat_client();
    let mut logins = h.login_client();
    let invalid = |r: Result<tonic::Response<()>, tonic::Status>| {
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument)
    };
    invalid(logins.on_message(login("", "")).await);
    invalid(logins.on_message(login(&"x".repeat(101), "")).await);
    invalid(
        h.third_party_client()
            .on_message(third_party_login("", ""))
            .await,
    );
    invalid(stats.on_message(stat("", "kills", 1.0, 1.0)).await);
    // Control characters in the user id (a NUL would make Postgres refuse the whole batch).
    invalid(logins.on_message(login("nul\u{0}user", "")).await);
    invalid(
        h.third_party_client()
            .on_message(third_party_login("tab\tuser", ""))
            .await,
    );
    invalid(
        stats
            .on_message(stat("nul\u{0}user", "kills", 1.0, 1.0))
            .await,
    );
    let invalid_reason = |reason: &str| {
        metric(
            "challenge_events_total",
            &[("outcome", "invalid"), ("reason", reason)],
        )
    };
    assert!(invalid_reason("user_id_control_chars") >= 3.0);
    let mut nul_id = login("mia", "id\u{0}");
    invalid(logins.on_message(nul_id.clone()).await);
    nul_id.id = "e".repeat(257);
    invalid(logins.on_message(nul_id).await);
    let mut no_payload = stat("mia", "kills", 1.0, 1.0);
    no_payload.payload = None;
    invalid(stats.on_message(no_payload).await);
    invalid(stats.on_message(stat("mia", "", 1.0, 1.0)).await);
    for (v, i) in [
        (f64::NAN, 1.0),
        (f64::INFINITY, 1.0),
        (f64::NEG_INFINITY, 1.0),
        (1.0, f64::NAN),
        (1.0, f64::INFINITY),
    ] {
        invalid(stats.on_message(stat("mia", "kills", v, i)).await);
    }
    // OK no-ops: another namespace, a stat code no goal uses.
    let mut other_ns = login("mia", "");
    other_ns.namespace = "other".into();
    logins.on_message(other_ns).await.unwrap();
    let mut other_ns = stat("mia", "kills", 1.0, 1.0);
    other_ns.namespace = "other".into();
    stats.on_message(other_ns).await.unwrap();
    stats
        .on_message(stat("mia", "unknown_stat", 1.0, 1.0))
        .await
        .unwrap();
    assert_eq!(h.handle.pending_keys(), 0, "nothing buffered");
    h.flush().await;
    assert!(rows(&pool, "mia").await.is_empty());
    // A 100-character user id is fine.
    let long = "u".repeat(100);
    logins.on_message(login(&long, "")).await.unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, &long, "login-total").await, Some(1));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn huge_values_clamp_into_int(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    assign(
        &pool,
        "ned",
        &["kills-10", "kills-relative-5", "matches-total"],
        h.clock_now(),
    )
    .await;
    let clamps = metric("challenge_stat_value_clamps_total", &[]);
    h.stat("ned", "kills", 1e20, 1e20).await.unwrap();
    h.stat("ned", "matches", -1e300, -1e300).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "ned").await;
    assert_eq!(status(&r, "kills-10"), (i32::MAX, "completed".into()));
    assert_eq!(status(&r, "matches-total").0, 1);
    assert!(metric("challenge_stat_value_clamps_total", &[]) >= clamps + 4.0);
    // Truncation toward zero.
    h.stat("ned", "kills", 9.99, 1.0).await.unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "ned", "kills-10").await, Some(9));
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn empty_namespace_setting_accepts_every_namespace(pool: PgPool) {
    let env = [BUFFERED, &[("AB_NAMESPACE", "")]].concat();
    let h = start(pool.clone(), &env, |b| b).await;
    let mut other = login("olga", "");
    other.namespace = "studio-b".into();
    h.login_client().on_message(other).await.unwrap();
    h.flush().await;
    let r = rows(&pool, "olga").await;
    assert_eq!(status(&r, "login-total").0, 1);
    assert_eq!(r["login-total"].namespace, "studio-b");
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn duplicate_event_ids_count_once(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let skipped = metric(
        "challenge_events_total",
        &[("outcome", "skipped"), ("reason", "duplicate")],
    );
    for _ in 0..3 {
        h.login_id("pat", "evt-1").await.unwrap();
    }
    h.flush().await;
    h.login_id("pat", "evt-1").await.unwrap();
    // Empty ids are never de-duplicated.
    h.login_id("pat", "").await.unwrap();
    h.login_id("pat", "").await.unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "pat", "login-total").await, Some(3));
    assert!(
        metric(
            "challenge_events_total",
            &[("outcome", "skipped"), ("reason", "duplicate")]
        ) >= skipped + 3.0
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_full_buffer_answers_resource_exhausted_and_drops_nothing(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| {
        b.options(|o| {
            o.max_pending_keys = 10;
            o.flush_threshold = 1_000;
        })
    })
    .await;
    // Each login touches the 5 login goals: two users fill the bound.
    h.login("q1").await.unwrap();
    h.login("q2").await.unwrap();
    let err = h.login("q3").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Keys already pending still take events.
    h.login("q1").await.unwrap();
    h.flush().await;
    h.login("q3").await.unwrap();
    h.flush().await;
    assert_eq!(progress(&pool, "q1", "login-total").await, Some(2));
    assert_eq!(progress(&pool, "q2", "login-total").await, Some(1));
    assert_eq!(progress(&pool, "q3", "login-total").await, Some(1));
    h.stop().await.unwrap();
}

/// Each login touches the fixture's 5 login goals, so 6 users = 30 keys. Batches take whole
/// users up to the cap: at 10 keys a flush takes 3 batches of 2 users; at 4 keys (less than
/// one user) 6 batches of one user. Nothing is lost or counted twice.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn capped_batches_write_everything_round_robin(pool: PgPool) {
    for (cap, carried) in [(10, 20 + 10), (4, 25 + 20 + 15 + 10 + 5)] {
        let db = sqlx::query("TRUNCATE user_goal_progress");
        db.execute(&pool).await.unwrap();
        let h = start(pool.clone(), BUFFERED, |b| {
            b.options(|o| {
                o.workers = 1;
                o.max_batch_keys = cap;
            })
        })
        .await;
        let users = ["c1", "c2", "c3", "c4", "c5", "c6"];
        for u in users {
            h.login(u).await.unwrap();
            h.login(u).await.unwrap();
        }
        let outcome = h.handle.flush_once().await.expect("flush");
        assert_eq!(h.handle.pending_keys(), 0, "everything flushed");
        assert_eq!(outcome.updated, 30, "cap {cap}: {outcome:?}");
        assert_eq!(outcome.carried, carried, "cap {cap}: {outcome:?}");
        for u in users {
            assert_eq!(progress(&pool, u, "login-total").await, Some(2), "{u}");
        }
        h.stop().await.unwrap();
    }
}

/// Durable callers of keys a capped batch carried over are acknowledged only once a later
/// batch wrote them.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn durable_acks_survive_capped_batches(pool: PgPool) {
    let h = start(pool.clone(), &[], |b| {
        b.options(|o| {
            o.workers = 1;
            o.max_batch_keys = 3;
        })
    })
    .await;
    let calls = (0..20).map(|i| {
        let h = &h;
        async move { h.login(&format!("d{}", i % 7)).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    // Every OK means committed: no flush needed before reading.
    let mut total = 0;
    for i in 0..7 {
        total += progress(&pool, &format!("d{i}"), "login-total")
            .await
            .unwrap();
    }
    assert_eq!(total, 20);
    h.stop().await.unwrap();
}

/// Sends raw bytes as the request message of an OnMessage method.
mod raw {
    use bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub struct RawCodec;
    pub struct Raw;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
            buf.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let n = buf.remaining();
            Ok(Some(buf.copy_to_bytes(n).to_vec()))
        }
    }
}

/// Bytes that are not the method's message answer `InvalidArgument`, never `Internal` (a
/// platform that retries `Internal` would redeliver a poison message forever).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn undecodable_messages_are_invalid_argument(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let mut grpc = tonic::client::Grpc::new(h.channel());
    let methods = [
        "/accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage",
        "/accelbyte.iam.account.v1.UserAuthenticationUserThirdPartyLoggedInService/OnMessage",
        "/accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage",
    ];
    let garbage: [&[u8]; 3] = [
        // A varint that never ends.
        &[0xff, 0xff, 0xff, 0xff],
        // Field 9 (userId, a string) sent as a varint: wrong wire type.
        &[0x48, 0x01],
        // A length-delimited field longer than the message.
        &[0x4a, 0x7f, b'x'],
    ];
    for method in methods {
        for bytes in garbage {
            grpc.ready().await.unwrap();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
            let answer = grpc
                .unary(tonic::Request::new(bytes.to_vec()), path, raw::RawCodec)
                .await;
            let status = answer.unwrap_err();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{method} {bytes:?}: {status:?}"
            );
        }
    }
    // The connection still serves well-formed messages.
    h.login("mia").await.unwrap();
    assert!(h.handle.pending_keys() > 0);
    h.stop().await.unwrap();
}

/// Implicit default rows (`store::implicit`): a player initialized elsewhere (the service's
/// marker, here an older one covering only some defaults) makes progress on the goals the
/// marker covers even with auto-initialize off; an event that changes nothing writes no
/// row; a goal the marker does not cover is not assigned; the first row written starts
/// from the marker's time (a relative goal's baseline from this first event).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn events_reach_the_goals_a_marker_covers_and_write_only_what_they_change(pool: PgPool) {
    let env = [BUFFERED, &[("AUTO_INITIALIZE_ON_EVENT", "false")]].concat();
    let h = start(pool.clone(), &env, |b| b).await;
    let marked_at = h.clock_now() - chrono::Duration::minutes(5);
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, is_active, \
         assigned_at, req_state) VALUES ('mia', '', '', $1, false, $2, \
         'kills-10\nkills-relative-5\nlogin-total')",
    )
    .bind(NAMESPACE)
    .bind(marked_at)
    .execute(&pool)
    .await
    .unwrap();

    // A negative value leaves absolute and relative goals unchanged: nothing is written.
    h.stat("mia", "kills", -4.0, -4.0).await.unwrap();
    h.flush().await;
    assert_eq!(rows(&pool, "mia").await.len(), 1, "the marker only");

    h.stat("mia", "kills", 7.0, 2.0).await.unwrap();
    h.login("mia").await.unwrap();
    h.flush().await;
    let r = rows(&pool, "mia").await;
    assert_eq!(status(&r, "kills-10"), (7, "in_progress".into()));
    assert_eq!(
        r["kills-10"].assigned_at,
        Some(marked_at),
        "assigned when initialized"
    );
    assert_eq!(
        status(&r, "kills-relative-5").0,
        2,
        "baseline 7 - 2 from the first event"
    );
    assert_eq!(status(&r, "login-total").0, 1);
    // Covered by the current config's defaults but not by this (older) marker.
    assert!(
        !r.contains_key("login-3"),
        "not assigned to mia: {:?}",
        r.keys()
    );
    assert!(!r.contains_key("matches-total"), "no event for it");
    assert_eq!(
        r.len(),
        4,
        "the marker and the three goals the events changed"
    );
    h.stop().await.unwrap();
}
