//! Player data lifecycle (CONTRACT §3.6): `DeleteUserData` over REST and gRPC with its
//! rate limit across service instances and transports, initialize storing the rollover it
//! shows, and the retention cleanup (one replica at a time, exact counts, guarded rows).

mod common;

use chrono::{DateTime, Utc};
use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_client::ServiceClient;
use extend_challenge_common::settings::CleanupSettings;
use extend_challenge_service::auth::Authenticator;
use extend_challenge_service::cleanup::{Cleanup, CleanupPass, CleanupReport};
use http::StatusCode;
use sqlx::{Connection, PgPool};
use tonic::Code;

async fn count(pool: &PgPool, sql: &'static str, user: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn progress_rows(pool: &PgPool, user: &str) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM user_goal_progress WHERE user_id = $1",
        user,
    )
    .await
}

/// A grant intent and a dead letter for `user`: personal data the erasure deletes too.
async fn other_personal_rows(pool: &PgPool, user: &str) {
    sqlx::query(
        "INSERT INTO reward_grants (user_id, goal_id, period_key, challenge_id, namespace, \
         grant_key, reward_type, reward_id, quantity, next_check_at) \
         VALUES ($1, 'kill-10', 'once', 'winter', 'test-ns', 'chl-' || $1, 'ITEM', 'sword', 1, now())",
    )
    .bind(user)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO event_dead_letters (user_id, namespace, event_ids, payload, error) \
         VALUES ($1, 'test-ns', ARRAY['e1'], '{}', 'refused')",
    )
    .bind(user)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn rest_erasure_deletes_everything_once_a_minute_across_instances(pool: PgPool) {
    let a = Harness::new(pool.clone());
    let b = Harness::new(pool.clone());
    a.post("/challenge/v1/challenges/initialize", "amy", "{}")
        .await;
    a.post("/challenge/v1/challenges/initialize", "bob", "{}")
        .await;
    other_personal_rows(&pool, "amy").await;
    // Initialized: one marker row for the three default goals (`store::implicit`).
    assert_eq!(progress_rows(&pool, "amy").await, 1);

    let (s, body) = a
        .call("DELETE", "/challenge/v1/users/me/data", "amy", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({"userId": "amy", "rowsDeleted": 1}));
    assert_eq!(progress_rows(&pool, "amy").await, 0);
    for table in [
        "SELECT count(*) FROM reward_grants WHERE user_id = $1",
        "SELECT count(*) FROM event_dead_letters WHERE user_id = $1",
    ] {
        assert_eq!(count(&pool, table, "amy").await, 0, "{table}");
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM user_erasures WHERE user_id = $1",
            "amy"
        )
        .await,
        1
    );
    assert_eq!(progress_rows(&pool, "bob").await, 1, "others untouched");

    // Another instance, within the minute: refused, with the contract's JSON error.
    let (s, body) = b
        .call("DELETE", "/challenge/v1/users/me/data", "amy", None)
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], 8);
    assert_eq!(body["details"], serde_json::json!([]));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("less than a minute")
    );

    // Initialize after an erasure is a new start; a minute later erasing works again.
    a.post("/challenge/v1/challenges/initialize", "amy", "{}")
        .await;
    a.clock.advance(chrono::Duration::seconds(61));
    let (s, body) = a
        .call("DELETE", "/challenge/v1/users/me/data", "amy", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["rowsDeleted"], 1);
}

async fn start(pool: PgPool, now: DateTime<Utc>) -> Running {
    let settings = settings(&[]);
    let (clock, _hand) = Clock::manual(now);
    let auth = Authenticator::from_settings(&settings, reqwest::Client::new());
    serve(&settings, pool, auth, clock).await
}

fn as_user<T>(user: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("x-mock-user-id", user.parse().unwrap());
    req
}

/// Two service processes' worth of servers on one database: a gRPC erasure on one makes
/// both gRPC and REST on the other answer "too many requests" within the minute.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn grpc_erasure_and_the_rate_limit_across_transports_and_instances(pool: PgPool) {
    let one = start(pool.clone(), at(NOON)).await;
    let two = start(pool.clone(), at(NOON) + chrono::Duration::seconds(30)).await;
    let mut c1 = ServiceClient::connect(format!("http://{}", one.grpc))
        .await
        .unwrap();
    let mut c2 = ServiceClient::connect(format!("http://{}", two.grpc))
        .await
        .unwrap();
    c1.initialize_player(as_user("amy", pb::InitializeRequest {}))
        .await
        .unwrap();

    let done = c1
        .delete_user_data(as_user("amy", pb::DeleteUserDataRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.user_id, "amy");
    assert_eq!(done.rows_deleted, 1, "the marker row (`store::implicit`)");
    assert_eq!(progress_rows(&pool, "amy").await, 0);

    let again = c2
        .delete_user_data(as_user("amy", pb::DeleteUserDataRequest {}))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);
    let rest = reqwest::Client::new()
        .delete(format!("http://{}/challenge/v1/users/me/data", two.http))
        .header("x-mock-user-id", "amy")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body["code"], 8);

    // Another user is not limited by amy's erasure.
    let bob = c2
        .delete_user_data(as_user("bob", pb::DeleteUserDataRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.rows_deleted, 0);

    for r in [one, two] {
        r.stop.cancel();
        r.task.await.unwrap().unwrap();
    }
}

async fn stored(
    pool: &PgPool,
    user: &str,
    goal: &str,
) -> extend_challenge_common::store::ProgressRow {
    sqlx::query_as("SELECT * FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2")
        .bind(user)
        .bind(goal)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// AccelByte's M5 `test-m5-rotation-initialize.sh`: after a completed daily goal's period
/// passed, initialize stores the rolled-over row (reset, fresh `expires_at`), not only shows
/// it. A claimed goal without reselection stays as it is.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn initialize_stores_the_rollover_it_shows(pool: PgPool) {
    let h = Harness::new(pool.clone());
    h.completed("amy", "daily-login").await;
    h.completed("amy", "weekly-wins").await;
    sqlx::query(
        "UPDATE user_goal_progress SET status = 'claimed', claimed_at = completed_at \
         WHERE user_id = 'amy' AND goal_id = 'weekly-wins'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = stored(&pool, "amy", "daily-login").await;
    assert_eq!(before.status, "completed");
    assert_eq!(before.expires_at, Some(at("2025-11-05T00:00:00Z")));
    let weekly_before = stored(&pool, "amy", "weekly-wins").await;

    // Thursday: the daily period ended two days ago.
    h.clock.advance(chrono::Duration::days(2));
    let (s, body) = h
        .post("/challenge/v1/challenges/initialize", "amy", "{}")
        .await;
    assert_eq!(s, StatusCode::OK);
    let shown = body["assignedGoals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goalId"] == "daily-login")
        .unwrap()
        .clone();
    assert_eq!(shown["status"], "not_started");

    let after = stored(&pool, "amy", "daily-login").await;
    assert_eq!(after.status, "not_started");
    assert_eq!(after.progress, 0);
    assert_eq!(after.completed_at, None);
    assert_eq!(after.expires_at, Some(at("2025-11-07T00:00:00Z")));
    assert_eq!(
        after.updated_at,
        at("2025-11-06T12:00:00Z"),
        "stamped by this call"
    );
    assert_eq!(stored(&pool, "amy", "weekly-wins").await, weekly_before);

    // Nothing left to roll over: a second call writes nothing.
    h.post("/challenge/v1/challenges/initialize", "amy", "{}")
        .await;
    assert_eq!(
        stored(&pool, "amy", "daily-login").await.updated_at,
        after.updated_at
    );
}

/// Inserts a row with the given state and `expires_at`.
async fn row(
    pool: &PgPool,
    user: &str,
    goal: &str,
    challenge: &str,
    progress: i32,
    status: &str,
    expires_at: Option<DateTime<Utc>>,
) {
    let done = if status == "completed" || status == "claimed" {
        Some(at(NOON))
    } else {
        None
    };
    let claimed = (status == "claimed").then(|| at(NOON));
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
         status, completed_at, claimed_at, expires_at) VALUES ($1,$2,$3,'test-ns',$4,$5,$6,$7,$8)",
    )
    .bind(user)
    .bind(goal)
    .bind(challenge)
    .bind(progress)
    .bind(status)
    .bind(done)
    .bind(claimed)
    .bind(expires_at)
    .execute(pool)
    .await
    .unwrap();
}

fn cleanup(pool: &PgPool) -> Cleanup {
    let (clock, _hand) = Clock::manual(at(NOON));
    Cleanup::new(
        pool.clone(),
        clock,
        &fixture_config(),
        CleanupSettings {
            enabled: true,
            interval: std::time::Duration::from_secs(3600),
            retention_days: 7,
            batch_size: 2,
            batch_pause: std::time::Duration::ZERO,
            tombstone_days: 7,
        },
    )
}

/// Two service instances: while one holds the cleanup lock the other does nothing; the
/// cycle deletes exactly the rows expired more than the retention ago, in batches, and
/// never rows without `expires_at`, unexpired rows, claimed rows of goals without
/// reselection, or carried-over progress; then old tombstones.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn one_replica_cleans_up_exactly_the_expired_rows(pool: PgPool) {
    let noon = at(NOON);
    let old = Some(noon - chrono::Duration::days(10));
    let recent = Some(noon - chrono::Duration::days(3));
    for u in ["u1", "u2", "u3"] {
        row(&pool, u, "daily-login", "daily", 1, "completed", old).await;
    }
    row(&pool, "u1", "daily-play", "daily", 0, "not_started", old).await;
    row(&pool, "u4", "weekly-wins", "weekly", 10, "completed", old).await;
    row(&pool, "u1", "kill-10", "winter", 4, "in_progress", None).await;
    row(&pool, "u2", "daily-play", "daily", 2, "in_progress", recent).await;
    row(&pool, "u3", "weekly-wins", "weekly", 10, "claimed", old).await;
    for (user, days) in [("gone-1", 10), ("gone-2", 1)] {
        sqlx::query(
            "INSERT INTO user_erasures (user_id, namespace, erased_at) VALUES ($1, 'test-ns', $2)",
        )
        .bind(user)
        .bind(noon - chrono::Duration::days(days))
        .execute(&pool)
        .await
        .unwrap();
    }

    let (a, b) = (cleanup(&pool), cleanup(&pool));
    let mut other_replica = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(extend_challenge_service::cleanup::CLEANUP_LOCK)
        .fetch_one(&mut other_replica)
        .await
        .unwrap();
    assert!(locked);
    assert_eq!(a.run_cleanup_once().await.unwrap(), CleanupPass::NotLeader);
    assert_eq!(b.run_cleanup_once().await.unwrap(), CleanupPass::NotLeader);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM user_goal_progress")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        total, 8,
        "nothing deleted while another replica holds the lock"
    );
    other_replica.close().await.unwrap();

    let pass = a.run_cleanup_once().await.unwrap();
    assert_eq!(
        pass,
        CleanupPass::Done(CleanupReport {
            rows_deleted: 5,
            tombstones_deleted: 1,
            batches: 4,
        })
    );
    let left: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, goal_id FROM user_goal_progress ORDER BY 1, 2")
            .fetch_all(&pool)
            .await
            .unwrap();
    let left: Vec<(&str, &str)> = left.iter().map(|(u, g)| (u.as_str(), g.as_str())).collect();
    assert_eq!(
        left,
        [
            ("u1", "kill-10"),
            ("u2", "daily-play"),
            ("u3", "weekly-wins")
        ]
    );
    let stones: Vec<String> = sqlx::query_scalar("SELECT user_id FROM user_erasures")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stones, ["gone-2"]);
    assert_eq!(
        b.run_cleanup_once().await.unwrap(),
        CleanupPass::Done(CleanupReport {
            rows_deleted: 0,
            tombstones_deleted: 0,
            batches: 2,
        })
    );

    // The metrics exist with the reference's names.
    let names: Vec<String> = prometheus::gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    for name in [
        "challenge_cleanup_rows_deleted_total",
        "challenge_cleanup_cycles_total",
        "challenge_cleanup_errors_total",
        "challenge_cleanup_panics_total",
        "challenge_cleanup_duration_seconds",
        "challenge_cleanup_last_heartbeat_seconds",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    // The partial index the cleanup's scan uses.
    let index: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_user_goal_progress_expires_at'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(index.contains("(expires_at IS NOT NULL)"), "{index}");
}

/// The stored rollover is compare-and-set: a row that changed after initialize read it (an
/// event applied meanwhile) is left to whoever changed it.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_rollover_never_overwrites_a_newer_row(pool: PgPool) {
    use extend_challenge_common::store::player::{self, Rollover};
    let h = Harness::new(pool.clone());
    h.completed("amy", "daily-login").await;
    let read = stored(&pool, "amy", "daily-login").await;
    let config = fixture_config();
    let goal = config.goal("daily-login").unwrap();
    let thursday = at("2025-11-06T12:00:00Z");
    let state = |r: &extend_challenge_common::store::ProgressRow| {
        extend_challenge_common::store::GoalRow {
            goal_id: r.goal_id.clone(),
            progress: r.progress,
            status: r.status.clone(),
            completed_at: r.completed_at,
            claimed_at: r.claimed_at,
            is_active: r.is_active,
            assigned_at: r.assigned_at,
            expires_at: r.expires_at,
            baseline_value: r.baseline_value,
            last_event_at: r.last_event_at,
            times_claimed: 0,
            req_state: None,
        }
        .state()
    };
    let rollover = Rollover {
        goal_id: "daily-login".into(),
        read: state(&read),
        rolled: extend_challenge_common::progress::view(goal, &state(&read), thursday),
    };
    // An event lands first (as the handler would write it).
    sqlx::query(
        "UPDATE user_goal_progress SET last_event_at = $1, expires_at = $2 \
         WHERE user_id = 'amy' AND goal_id = 'daily-login'",
    )
    .bind(thursday)
    .bind(at("2025-11-07T00:00:00Z"))
    .execute(&pool)
    .await
    .unwrap();
    let written = player::persist_rollover(&pool, "amy", std::slice::from_ref(&rollover), thursday)
        .await
        .unwrap();
    assert_eq!(written, 0, "the newer row wins");
    assert_eq!(
        stored(&pool, "amy", "daily-login").await.status,
        "completed"
    );
}
