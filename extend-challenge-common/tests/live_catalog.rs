//! How a replica follows the active catalog version (CONTRACT §9): by notification, by the
//! poll when a notification is missed, and never onto a version that does not load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use extend_challenge_common::config::{ChallengeConfig, parse_and_validate};
use extend_challenge_common::live_catalog::{self, Derive, Live};
use extend_challenge_common::store::catalog::{self, ApplyRequest};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What this test derives from a version: its goal ids.
struct Ids(Vec<String>);

impl Derive for Ids {
    fn derive(_version: i64, config: Arc<ChallengeConfig>) -> Self {
        Ids(config
            .challenges
            .iter()
            .flat_map(|c| c.goals.iter().map(|g| g.id.clone()))
            .collect())
    }
}

fn catalog_with(goals: &[&str]) -> (String, ChallengeConfig) {
    let goals: Vec<_> = goals
        .iter()
        .map(|id| {
            json!({"goalId": id, "name": id, "description": "d", "eventSource": "login",
                   "requirement": {"statCode": "login_count", "operator": ">=", "targetValue": 1},
                   "reward": {"type": "WALLET", "rewardId": "GOLD", "quantity": 1},
                   "prerequisites": []})
        })
        .collect();
    let text = json!({"challenges": [{"challengeId": "c", "name": "C", "description": "d",
                                      "goals": goals}]})
    .to_string();
    let config = parse_and_validate("test", &text).unwrap();
    (text, config)
}

async fn apply(pool: &PgPool, goals: &[&str]) -> i64 {
    let (text, config) = catalog_with(goals);
    catalog::apply(
        pool,
        ApplyRequest {
            content: &text,
            config: &config,
            source: "cli".into(),
            note: None,
            expected: None,
            file_sha256: None,
        },
    )
    .await
    .unwrap()
    .version
}

/// Waits (bounded) until `live` serves `version`; the time it took.
async fn until_served(live: &Live<Ids>, version: i64, within: Duration) -> Duration {
    let start = Instant::now();
    while live.version() != version {
        assert!(
            start.elapsed() < within,
            "version {version} not served within {within:?} (serving {})",
            live.version()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_replica_follows_by_notification_and_by_the_poll(pool: PgPool) {
    apply(&pool, &["a"]).await;
    let (_, first) = catalog_with(&["a"]);
    let live = Arc::new(Live::<Ids>::fixed(1, Arc::new(first)));
    let stop = CancellationToken::new();
    let watcher = live_catalog::watch(live.clone(), pool.clone(), stop.clone());
    // Let the listener connect (it is the first thing the watcher does).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The notification: well under the poll's period.
    apply(&pool, &["a", "b"]).await;
    let took = until_served(&live, 2, Duration::from_secs(2)).await;
    assert!(
        took < Duration::from_millis(500),
        "{took:?}: not by the notification"
    );
    assert_eq!(live.load().0, ["a", "b"]);

    // A version made active without a notification (one lost with a dropped listener
    // connection): the poll finds it.
    let (text, _) = catalog_with(&["c"]);
    sqlx::query(
        "INSERT INTO catalog_versions (version, content, sha256, source) VALUES (3, $1, $2, 'cli')",
    )
    .bind(&text)
    .bind(catalog::sha256_hex(&text))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE catalog_active SET version = 3")
        .execute(&pool)
        .await
        .unwrap();
    until_served(
        &live,
        3,
        live_catalog::POLL * 2 + Duration::from_millis(500),
    )
    .await;
    assert_eq!(live.load().0, ["c"]);
    stop.cancel();
    watcher.await.unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_version_that_does_not_load_keeps_the_previous_one_serving(pool: PgPool) {
    apply(&pool, &["a"]).await;
    let (_, first) = catalog_with(&["a"]);
    let live = Live::<Ids>::serving(1, Arc::new(first));
    // A stored version the running build cannot load (a bug: versions are validated before
    // they are stored).
    sqlx::query(
        "INSERT INTO catalog_versions (version, content, sha256, source) \
         VALUES (2, '{\"challenges\": 7}', 'x', 'cli')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE catalog_active SET version = 2")
        .execute(&pool)
        .await
        .unwrap();
    let failures = || {
        extend_challenge_common::metrics::render()
            .lines()
            .find_map(|l| l.strip_prefix("challenge_catalog_load_failures_total "))
            .map(|v| v.trim().parse::<f64>().unwrap())
            .unwrap_or(0.0)
    };
    let before = failures();
    for _ in 0..3 {
        assert!(!live.refresh(&pool).await.unwrap(), "no switch");
    }
    assert_eq!(live.version(), 1);
    assert_eq!(live.load().0, ["a"], "still serving version 1");
    assert_eq!(failures() - before, 3.0, "counted at every try");
    assert!(
        extend_challenge_common::metrics::render().contains("challenge_catalog_load_failing 1"),
        "the alert's gauge is up"
    );
    // A good version after it is served, and the gauge comes down.
    assert_eq!(apply(&pool, &["a", "d"]).await, 3);
    assert!(live.refresh(&pool).await.unwrap());
    assert_eq!((live.version(), live.load().0.len()), (3, 2));
    let text = extend_challenge_common::metrics::render();
    assert!(text.contains("challenge_catalog_load_failing 0"), "{text}");
    assert!(
        text.contains("challenge_catalog_version_info{version=\"3\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("challenge_catalog_version_info{version=\"1\"}"),
        "{text}"
    );
}
