//! A deployment's first batches must not leave a plan for an empty table behind
//! (`store::flush::set_plan_each_batch`).
//!
//! A session caches a generic plan of a prepared statement after five executions and
//! replans only when the table's statistics change. A fresh progress table has none
//! (`reltuples = -1`) until autovacuum first analyzes it, so the plan cached by the first
//! batches was one for an empty table, and later batches ran it over the grown table.
//!
//! Each case: a fresh database, one session, six batches of new players while the table is
//! all but empty, then 20,000 rows added (no `ANALYZE`, as before autovacuum's first pass),
//! then one more batch, whose executed plans (`auto_explain`) must read a few rows per key,
//! not the table. The control case, with planning per batch off, shows that the check sees
//! the problem; the two others are the handler's remedies: planning per batch while the
//! table has no statistics, and analyzing a small table that doubled (which makes the
//! session's cached plans again).

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use extend_challenge_common::config::Goal;
use extend_challenge_common::config::load_from_path;
use extend_challenge_common::store::MIGRATOR;
use extend_challenge_common::store::flush::{self, Flushed, flush_batch};
use extend_challenge_common::store::implicit::Defaults;
use sqlx::{Executor as _, PgPool};
use support::explain;

/// The most rows any scan of `user_goal_progress` returned in `plan` (rows × loops summed
/// per node).
fn max_progress_rows(node: &serde_json::Value) -> u64 {
    let here = if node["Relation Name"].as_str() == Some("user_goal_progress") {
        node["Actual Rows"].as_u64().unwrap_or(0) * node["Actual Loops"].as_u64().unwrap_or(0)
            + node["Rows Removed by Filter"].as_u64().unwrap_or(0)
            + node["Rows Removed by Join Filter"].as_u64().unwrap_or(0)
    } else {
        node["Rows Removed by Join Filter"].as_u64().unwrap_or(0)
    };
    node["Plans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(max_progress_rows)
        .fold(here, u64::max)
}

/// A batch of ten new players, each reaching `goals`.
async fn batch(
    pool: &PgPool,
    goals: &[Arc<Goal>],
    defaults: &Defaults,
    tag: &str,
    n: usize,
) -> Flushed {
    let now = Utc::now();
    let players: Vec<String> = (0..10).map(|i| format!("{tag}-b{n}-p{i}")).collect();
    let (items, users) = support::batch_of(&players, goals, "ns", now);
    flush_batch(
        pool,
        &items,
        &users,
        Some(defaults),
        now,
        Duration::from_secs(30),
    )
    .await
    .expect("batch")
}

/// Runs the case with planning per batch `on`; returns the most rows one scan of the
/// progress table read in the last batch.
async fn case(tag: &str, on: bool, analyze: bool) -> u64 {
    let db = support::FreshDb::new(&format!("flush_plans_{tag}")).await;
    let plain = db.pool(1).await;
    MIGRATOR.run(&plain).await.unwrap();
    // One session: the prepared statements and their cached plans are this session's.
    let explained = explain::explained_pool(db.options.clone(), 1);

    let config = load_from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/challenges.json"
    ))
    .expect("config/challenges.json");
    let defaults = Defaults::of(&config);
    let goals: Vec<_> = config
        .challenges
        .iter()
        .flat_map(|c| c.goals.iter())
        .filter(|g| g.default_assigned)
        .take(3)
        .cloned()
        .collect();
    assert_eq!(
        goals.len(),
        3,
        "three default goals in config/challenges.json"
    );
    flush::set_plan_each_batch(on);
    explain::capture_notices();
    for n in 0..6 {
        batch(&explained, &goals, &defaults, tag, n).await;
    }
    plain
        .execute(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, \
             progress, status, assigned_at, updated_at) \
             SELECT 'seed-' || i, 'g' || (i % 5), 'c', 'ns', 0, 'not_started', now(), now() \
             FROM generate_series(1, 20000) AS i",
        )
        .await
        .unwrap();
    if analyze {
        // What the handler's watch does every 10 s.
        let stats = flush::progress_statistics(&plain).await.unwrap();
        assert!(stats.stale(), "the grown table is stale: {stats:?}");
        flush::analyze_progress(&plain).await.unwrap();
        let after = flush::progress_statistics(&plain).await.unwrap();
        assert!(after.analyzed && !after.stale(), "{after:?}");
    }
    explain::take_plans();
    let last = batch(&explained, &goals, &defaults, tag, 6).await;
    assert_eq!(last.outcome.initialized, 10, "{last:?}");
    let plans = explain::take_plans();
    assert!(plans.len() >= 2, "the batch's statements were explained");
    let worst = plans
        .iter()
        .map(|p| max_progress_rows(&p["Plan"]))
        .max()
        .unwrap_or(0);
    explained.close().await;
    plain.close().await;
    db.drop().await;
    worst
}

#[tokio::test]
async fn the_first_batches_leave_no_plan_for_an_empty_table() {
    // One test: the setting is process-wide and the notices go to one list.
    let control = case("cached", false, false).await;
    assert!(
        control >= 10_000,
        "control: with cached plans the last batch scans the grown table ({control} rows)"
    );
    let planned = case("planned", true, false).await;
    let analyzed = case("analyzed", false, true).await;
    eprintln!(
        "rows read by one scan of the progress table: cached plans {control}, planned per \
         batch {planned}, cached plans after the handler's analyze {analyzed}"
    );
    assert!(
        planned < 1_000,
        "planning per batch: the last batch reads a few rows per key, not {planned}"
    );
    assert!(
        analyzed < 1_000,
        "analyzed once grown: the cached plans were made again ({analyzed} rows)"
    );
}
