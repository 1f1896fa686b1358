//! Fault injection against the real binaries (issue 9): Postgres behind a proxy that cuts,
//! stalls and swallows a COMMIT's answer; SIGKILL under durable load; replicas with Redis
//! and duplicate deliveries. The platform delivers at least once ([`Platform`]): every
//! event is resent with its id until a handler answers OK.
//!
//! Every scenario checks the exact final state: for each user, the progress of the
//! login-counting goal equals the number of distinct event ids acknowledged — nothing
//! acknowledged was lost, nothing redelivered was counted twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use extend_challenge_e2e::db::admin_url;
use extend_challenge_e2e::platform::Delivered;
use extend_challenge_e2e::{PgProxy, Platform, Stack, StackOptions, eventually};

use crate::support::*;

/// The default-assigned login goal whose progress counts logins (target 1000).
const COUNTER: &str = "login-1000-times";
/// How long the platform keeps redelivering one event.
const GIVE_UP: Duration = Duration::from_secs(90);

fn users(label: &str, n: usize) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|i| user(&format!("{label}{i}"))).collect())
}

/// Progress of [`COUNTER`] per user, read from the database.
async fn counted(stack: &Stack) -> HashMap<String, i64> {
    let mut conn = stack.db.connect().await;
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT user_id, progress FROM user_goal_progress WHERE goal_id = $1")
            .bind(COUNTER)
            .fetch_all(&mut conn)
            .await
            .expect("read progress");
    rows.into_iter().map(|(u, p)| (u, i64::from(p))).collect()
}

/// Asserts applied units == distinct acknowledged ids, user by user.
async fn assert_exact(stack: &Stack, delivered: &Delivered, what: &str) {
    assert_eq!(delivered.given_up, 0, "{what}: events never acknowledged");
    let total: i64 = delivered.acked.values().sum();
    assert!(total > 0, "{what}: nothing was delivered");
    let counted = counted(stack).await;
    let mut wrong = Vec::new();
    for (user, acked) in &delivered.acked {
        let got = counted.get(user).copied().unwrap_or(0);
        if got != *acked {
            wrong.push(format!("{user}: {acked} acknowledged, {got} applied"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} users wrong ({total} events):\n{}\n{}",
        wrong.len(),
        delivered.acked.len(),
        wrong.join("\n"),
        stack.log_tail()
    );
}

/// Starts the load in the background; returns the stop flag and the join handle.
fn start_load(
    platform: &Platform,
    users: Arc<Vec<String>>,
    concurrency: usize,
    duplicate_every: usize,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Delivered>) {
    let stop = Arc::new(AtomicBool::new(false));
    let p = platform.clone();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        p.run_logins(users, concurrency, duplicate_every, s, GIVE_UP)
            .await
    });
    (stop, task)
}

async fn finish(stop: Arc<AtomicBool>, task: tokio::task::JoinHandle<Delivered>) -> Delivered {
    stop.store(true, Ordering::Relaxed);
    task.await.expect("load task")
}

async fn health(port: u16) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_events_survive_cuts_stalls_and_a_lost_commit_answer() {
    let proxy = PgProxy::in_front_of(&admin_url()).await;
    let options = StackOptions {
        database_via: Some(proxy.addr()),
        ..Default::default()
    };
    let stack = Stack::start("faults_proxy", options).await;
    let platform = Platform::new(&stack.handler_addrs(), stack.options.clock_offset_seconds);
    let (stop, load) = start_load(&platform, users("cut", 40), 32, 0);

    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    eventually(
        "healthz 503 during the cut",
        Duration::from_secs(10),
        || async {
            match health(stack.handler_ports.metrics).await {
                503 => Ok(()),
                s => Err(format!("healthz {s}")),
            }
        },
    )
    .await;
    // Longer than the durable ack deadline (5 s): callers waiting for a commit get
    // `Unavailable` and the platform redelivers.
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.restore();
    eventually(
        "healthz 200 after the cut",
        Duration::from_secs(10),
        || async {
            match health(stack.handler_ports.metrics).await {
                200 => Ok(()),
                s => Err(format!("healthz {s}")),
            }
        },
    )
    .await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.stall();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.swallow_next_commit();
    eventually(
        "a COMMIT answer swallowed",
        Duration::from_secs(20),
        || async {
            if proxy.swallowed() > 0 {
                Ok(())
            } else {
                Err("no COMMIT seen yet".to_string())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let delivered = finish(stop, load).await;
    assert!(
        platform.redeliveries.load(Ordering::Relaxed) > 0,
        "the faults caused no redelivery: they were not exercised"
    );
    assert_exact(&stack, &delivered, "cut, stall, lost COMMIT answer").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_durable_load_loses_and_repeats_nothing() {
    let mut stack = Stack::start("faults_sigkill", StackOptions::default()).await;
    let platform = Platform::new(&stack.handler_addrs(), stack.options.clock_offset_seconds);
    let (stop, load) = start_load(&platform, users("kill", 40), 32, 0);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stack.kill_handler(0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stack.respawn_handler(0).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = finish(stop, load).await;
    assert_exact(&stack, &delivered, "three SIGKILLs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_with_redis_duplicates_and_a_crash_stay_exact() {
    let redis_env = vec![
        ("REDIS_HOST".to_string(), "127.0.0.1".to_string()),
        ("REDIS_PORT".to_string(), "6379".to_string()),
    ];
    let options = StackOptions {
        env: redis_env.clone(),
        ..Default::default()
    };
    let mut stack = Stack::start("faults_replicas", options).await;
    stack.add_handler(Vec::new()).await;
    stack.add_handler(Vec::new()).await;
    let platform = Platform::new(&stack.handler_addrs(), stack.options.clock_offset_seconds);
    // Every third event is delivered twice at once, to two different replicas.
    let (stop, load) = start_load(&platform, users("rep", 30), 36, 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stack.kill_handler(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.respawn_handler(1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let delivered = finish(stop, load).await;
    assert_exact(
        &stack,
        &delivered,
        "three replicas, duplicates, one SIGKILL",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_storm_gets_one_grant_and_starves_nobody() {
    let stack = Stack::start("faults_claim_storm", StackOptions::default()).await;
    let events = stack.events().await;
    let u = user("storm");
    let api = stack.api(&u);
    api.initialize().await;
    events.stat(&u, "tutorial_completed", 1.0).await;
    stack
        .ags
        .delay_grants(&u, Duration::from_millis(1500))
        .await;

    let other = stack.api(&user("bystander"));
    other.initialize().await;
    let claims = futures::future::join_all(
        (0..100).map(|_| async { api.claim(WINTER, "complete-tutorial").await }),
    );
    // Another player's reads while the storm holds the one grant in flight.
    let reads = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(other.get("/v1/challenges").await.status);
        }
        statuses
    };
    let (claims, reads) = tokio::join!(claims, reads);
    assert_eq!(reads, vec![200; 5], "a bystander's reads during the storm");
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for c in &claims {
        *by_status.entry(c.status).or_default() += 1;
    }
    assert_eq!(by_status.get(&200), Some(&1), "{by_status:?}");
    let conflicts: Vec<serde_json::Value> = claims
        .into_iter()
        .filter(|c| c.status != 200)
        .map(|c| c.expect(409))
        .collect();
    assert_eq!(conflicts.len(), 99);
    for body in &conflicts {
        let m = body["message"].as_str().unwrap_or_default();
        // In progress or already claimed: both AlreadyExists (6), the contract's 409.
        let ok = body["code"] == 6
            && (m == "Claim already in progress (goal_id: complete-tutorial)"
                || m.starts_with("Reward has already been claimed (goal_id: complete-tutorial"));
        assert!(ok, "{body}");
    }
    assert_eq!(stack.ags.grants(&u).await.len(), 1, "exactly one grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_event_stops_nobody_and_is_dead_lettered() {
    let options = StackOptions {
        env: vec![
            ("ACK_MODE".to_string(), "buffered".to_string()),
            ("BUFFER_FLUSH_INTERVAL_MS".to_string(), "200".to_string()),
        ],
        ..Default::default()
    };
    let mut stack = Stack::start("faults_poison", options).await;
    // A data error no door check can foresee: the database refuses one user's rows.
    let mut conn = stack.db.connect().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.user_id LIKE 'poison-%' THEN \
             RAISE EXCEPTION 'refused by the e2e suite' USING ERRCODE = '23514'; \
           END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON user_goal_progress \
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut conn)
    .await
    .expect("install the refusing trigger");

    let platform = Platform::new(&stack.handler_addrs(), stack.options.clock_offset_seconds);
    // A NUL in the user id is refused at the door, never buffered.
    let nul = platform.login("nul\u{0}user");
    let err = platform
        .deliver(&nul, 0, Duration::from_secs(5))
        .await
        .expect_err("a NUL user id is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let normal = users("healthy", 30);
    let poison = user("poison");
    let mut poison_ids = Vec::new();
    let mut delivered = Delivered::default();
    for round in 0..10 {
        for u in normal.iter() {
            let ev = platform.login(u);
            platform
                .deliver(&ev, 0, GIVE_UP)
                .await
                .expect("acknowledged");
            *delivered.acked.entry(u.clone()).or_default() += 1;
        }
        if round < 5 {
            let ev = platform.login(&poison);
            platform
                .deliver(&ev, 0, GIVE_UP)
                .await
                .expect("acknowledged");
            poison_ids.push(ev.id);
        }
    }
    // SIGTERM: the final flush writes everyone else and exits cleanly.
    let ended = stack.terminate();
    let handler = ended.iter().find(|(n, _)| *n == "event-handler");
    assert_eq!(handler.map(|h| h.1), Some(Some(0)), "{ended:?}");
    assert_exact(&stack, &delivered, "one user refused by the database").await;

    // One dead letter per batch that held the user's updates.
    let letters: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT user_id, event_ids FROM event_dead_letters WHERE replayed_at IS NULL",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the dead letters");
    assert!(!letters.is_empty(), "the refused user was dead-lettered");
    assert!(letters.iter().all(|(u, _)| *u == poison), "{letters:?}");
    let mut ids: Vec<String> = letters.into_iter().flat_map(|(_, ids)| ids).collect();
    ids.sort();
    poison_ids.sort();
    assert_eq!(
        ids, poison_ids,
        "every acknowledged poison event is dead-lettered once"
    );
}
