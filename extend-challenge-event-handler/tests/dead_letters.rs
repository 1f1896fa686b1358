//! No single event, row or user can stop anyone else (CONTRACT §2): when Postgres refuses a
//! batch's data, the refused user is isolated, everyone else is committed, and the refused
//! deltas go to the dead-letter table with their event ids and the error — where an
//! operator can list and replay them. Poison is brought in behind validation's back
//! (an `Event` built by hand, or a trigger on the test database).

mod common;

use std::time::Duration;

use common::*;
use extend_challenge_common::store::dead_letter::{self, Replayed};
use extend_challenge_event_handler::dead_letters::{self as tool, ReplayContext, Target};
use extend_challenge_event_handler::event::{Event, EventKind, Source};
use futures::future::join_all;
use sqlx::PgPool;

const POISON_USER: &str = "nul\u{0}user";

/// A login that validation would have refused (a NUL in the user id), straight into the
/// pipeline.
fn poison_login(id: &str) -> Event {
    Event {
        kind: EventKind::Login,
        id: id.into(),
        namespace: NAMESPACE.into(),
        user_id: POISON_USER.into(),
        timestamp: None,
        source: Source::Login,
    }
}

fn users(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

async fn ledger_has(pool: &PgPool, id: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM event_ledger WHERE event_id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every user's login-total equals its logins.
async fn assert_exact(pool: &PgPool, users: &[String], logins_each: i32) {
    for u in users {
        assert_eq!(
            progress(pool, u, "login-total").await,
            Some(logins_each),
            "{u}"
        );
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_poison_user_is_dead_lettered_and_the_batch_commits_in_buffered_mode(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let engine = h.handle.engine().clone();
    let metric_before = metric("challenge_dead_letters_total", &[]);
    let healthy = users(60, "buf");
    for (i, u) in healthy.iter().enumerate() {
        h.login_id(u, &format!("ok-{i}-a")).await.unwrap();
        if i == 30 {
            // Answered OK: buffered mode acknowledges on enqueue.
            engine.ingest(poison_login("poison-1")).await.unwrap();
        }
        h.login_id(u, &format!("ok-{i}-b")).await.unwrap();
    }
    engine.ingest(poison_login("poison-2")).await.unwrap();

    let outcome = h
        .handle
        .flush_once()
        .await
        .expect("the flush isolates the poison and succeeds");
    assert_eq!(h.handle.pending_keys(), 0, "nothing left behind");
    assert_eq!(
        outcome.dead_lettered, 5,
        "the poison user's five login goals"
    );
    assert_exact(&pool, &healthy, 2).await;
    assert_eq!(h.handle.dead_letters(), 1);
    // Process-wide (other tests run alongside).
    assert!(metric("challenge_dead_letters_total", &[]) >= metric_before + 1.0);

    let letters = dead_letter::list(&pool, false).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        letter.payload.user_id, POISON_USER,
        "the exact user id is kept"
    );
    let mut ids = letter.event_ids.clone();
    ids.sort();
    assert_eq!(ids, ["poison-1", "poison-2"]);
    assert_eq!(letter.payload.deltas.len(), 5);
    assert!(letter.error.contains("0x00"), "{}", letter.error);
    let readable: String =
        sqlx::query_scalar("SELECT user_id FROM event_dead_letters WHERE id = $1")
            .bind(letter.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(readable, "nul\\u{0}user");
    // Dead-lettered events are acknowledged: a redelivery is a no-op.
    assert!(ledger_has(&pool, "poison-1").await && ledger_has(&pool, "ok-0-a").await);
    engine.ingest(poison_login("poison-1")).await.unwrap();
    assert_eq!(
        h.handle.pending_keys(),
        0,
        "the redelivery is not buffered again"
    );
    h.stop().await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_poison_user_does_not_hold_back_durable_callers(pool: PgPool) {
    let h = start(pool.clone(), &[("FLUSH_WORKERS", "1")], |b| {
        b.options(|o| o.ack_deadline = Duration::from_secs(20))
    })
    .await;
    let engine = h.handle.engine().clone();
    let healthy = users(40, "dur");
    // Poison and healthy calls in flight together, so they share batches.
    let poison = tokio::spawn({
        let engine = engine.clone();
        async move { engine.ingest(poison_login("poison-d")).await }
    });
    let calls = healthy.iter().enumerate().flat_map(|(i, u)| {
        let h = &h;
        [0, 1].map(move |k| async move { h.login_id(u, &format!("d-{i}-{k}")).await })
    });
    for answer in join_all(calls).await {
        answer.expect("every healthy durable caller is acknowledged");
    }
    poison
        .await
        .unwrap()
        .expect("a dead-lettered event is acknowledged too");
    assert_exact(&pool, &healthy, 2).await;
    assert_eq!(h.handle.dead_letters(), 1);
    let letters = dead_letter::list(&pool, false).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_ids, ["poison-d"]);
    assert!(ledger_has(&pool, "poison-d").await);
    h.stop().await.unwrap();
}

/// A refusal that is not a NUL: a trigger on the test database rejects `user`'s updates
/// with a CHECK violation.
async fn refuse_updates_of(pool: &PgPool, user: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse_user() RETURNS trigger AS $$ BEGIN \
           IF NEW.user_id = '{user}' THEN \
             RAISE EXCEPTION 'row refused by the test' USING ERRCODE = 'check_violation'; \
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
    )))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_user BEFORE UPDATE ON user_goal_progress \
         FOR EACH ROW EXECUTE FUNCTION refuse_user()",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_refused_row_is_dead_lettered_and_replayed_once_the_cause_is_gone(pool: PgPool) {
    let h = start(pool.clone(), &[("FLUSH_WORKERS", "1")], |b| {
        b.options(|o| o.ack_deadline = Duration::from_secs(20))
    })
    .await;
    let healthy = users(20, "trg");
    // Everyone has rows before the trigger exists; the refusal comes on UPDATE.
    for u in healthy
        .iter()
        .chain(std::iter::once(&"bad-user".to_string()))
    {
        assign(&pool, u, &["login-total", "login-3"], h.clock_now()).await;
    }
    refuse_updates_of(&pool, "bad-user").await;
    let metric_before = metric("challenge_dead_letters_total", &[]);

    let mut events: Vec<(String, String)> = healthy
        .iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), format!("t-{i}")))
        .collect();
    events.insert(5, ("bad-user".into(), "bad-0".into()));
    events.insert(15, ("bad-user".into(), "bad-1".into()));
    let answers = join_all(events.iter().map(|(u, id)| h.login_id(u, id))).await;
    for a in answers {
        a.expect("acknowledged: applied or dead-lettered");
    }
    assert_exact(&pool, &healthy, 1).await;
    assert_eq!(progress(&pool, "bad-user", "login-total").await, Some(0));
    assert!(metric("challenge_dead_letters_total", &[]) >= metric_before + 1.0);
    let letters = dead_letter::list(&pool, false).await.unwrap();
    assert!(!letters.is_empty());
    let mut bad_ids: Vec<String> = letters.iter().flat_map(|l| l.event_ids.clone()).collect();
    bad_ids.sort();
    assert_eq!(bad_ids, ["bad-0", "bad-1"]);
    assert!(letters.iter().all(|l| l.payload.user_id == "bad-user"));
    assert!(letters[0].error.contains("row refused by the test"));

    // The operator's tool lists them, and a replay while the cause remains fails and
    // keeps them, with the new error.
    let mut listed = Vec::new();
    tool::list(&pool, false, false, &mut listed).await.unwrap();
    let listed = String::from_utf8(listed).unwrap();
    assert!(listed.contains("user=bad-user"), "{listed}");
    let config = fixture_config();
    let ctx = ReplayContext {
        config: &config,
        auto_initialize: true,
        now: h.clock_now(),
        timeout: Duration::from_secs(10),
    };
    let mut out = Vec::new();
    assert!(
        !tool::replay(&pool, Target::All, &ctx, &mut out)
            .await
            .unwrap()
    );
    let still = dead_letter::list(&pool, false).await.unwrap();
    assert_eq!(still.len(), letters.len());
    assert!(still.iter().all(|l| l.replay_attempts == 1
        && l.error.starts_with("replay failed")
        && l.replayed_at.is_none()));

    // The cause goes away: the replay writes the deltas once and marks them replayed.
    sqlx::query("DROP TRIGGER refuse_user ON user_goal_progress")
        .execute(&pool)
        .await
        .unwrap();
    let mut out = Vec::new();
    assert!(
        tool::replay(&pool, Target::All, &ctx, &mut out)
            .await
            .unwrap()
    );
    assert_eq!(progress(&pool, "bad-user", "login-total").await, Some(2));
    assert_eq!(progress(&pool, "bad-user", "login-3").await, Some(2));
    assert!(dead_letter::list(&pool, false).await.unwrap().is_empty());
    let all = dead_letter::list(&pool, true).await.unwrap();
    assert!(all.iter().all(|l| l.replayed_at.is_some()));
    // Replaying again does nothing.
    let again = dead_letter::replay(
        &pool,
        all[0].id,
        &config,
        None,
        h.clock_now(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(again, Replayed::NotPending);
    assert_eq!(progress(&pool, "bad-user", "login-total").await, Some(2));
    // Redeliveries of the dead-lettered events stay no-ops.
    h.login_id("bad-user", "bad-0").await.unwrap();
    assert_eq!(progress(&pool, "bad-user", "login-total").await, Some(2));
    h.stop().await.unwrap();
}

/// SIGTERM in buffered mode with a poison item among 300 events: everything else is
/// written, and the drain reports success (the process would exit 0).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn shutdown_with_a_poison_item_writes_everything_else(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| {
        b.options(|o| o.shutdown_flush_timeout = Duration::from_secs(20))
    })
    .await;
    let engine = h.handle.engine().clone();
    let healthy = users(100, "term");
    for round in 0..3 {
        for (i, u) in healthy.iter().enumerate() {
            h.login_id(u, &format!("s-{round}-{i}")).await.unwrap();
            if round == 1 && i == 50 {
                engine.ingest(poison_login("poison-s")).await.unwrap();
            }
        }
    }
    assert!(h.handle.pending_keys() > 0);
    h.stop()
        .await
        .expect("the final flush succeeds: the poison is dead-lettered");
    assert_exact(&pool, &healthy, 3).await;
    let letters = dead_letter::list(&pool, false).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_ids, ["poison-s"]);
}
