//! Every statement of a player's request routes by `user_id` (issue 22 part 3): on tables
//! hash-partitioned by user (migration 0012 with 16 partitions), the list, the event
//! handler's flush, the claim and the erasure scan only the partitions of their users.
//!
//! The real store functions run against a fresh database (`schema_prune_*` on
//! `DATABASE_URL`'s server) through a pool whose sessions load `auto_explain` with
//! `log_analyze` and `log_level = notice`: Postgres sends the executed plan of every
//! statement back as a notice, which sqlx reports as a tracing event and a subscriber
//! collects. A partition counts as scanned when one of its scan nodes ran (`Actual Loops`
//! above 0): partitions pruned at planning are absent from the plan, those pruned at
//! execution (the flush's join on a batch's user ids) show as never executed. The
//! retention cleanup, which selects by expiry across all players, is the control: the same
//! check finds it scanning every partition.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use extend_challenge_common::config::{ChallengeConfig, load_from_path};
use extend_challenge_common::store::erasure::{self, Erasure, RetentionGuard};
use extend_challenge_common::store::flush::flush_batch;
use extend_challenge_common::store::grants::{self, ClaimLock, Lease, NewIntent};
use extend_challenge_common::store::{partitions, player, trail};
use sqlx::{Executor as _, PgPool};
use support::explain;

const PARTITIONS: u16 = 16;
const NAMESPACE: &str = "ns";

/// One test at a time: the notices of every connection go to one list.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(Default::default);

/// One executed statement: its text and, per partitioned table, the partitions it scanned.
#[derive(Debug)]
struct Executed {
    query: String,
    scanned: BTreeMap<String, BTreeSet<String>>,
}

fn take_plans() -> Vec<Executed> {
    explain::take_plans()
        .iter()
        .map(|v| {
            let mut scanned = BTreeMap::new();
            walk(&v["Plan"], &mut scanned);
            Executed {
                query: v["Query Text"].as_str().unwrap_or_default().to_string(),
                scanned,
            }
        })
        .collect()
}

/// Collects the partitions (`<table>_p<N>`) of scan nodes that ran.
fn walk(node: &serde_json::Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let ran = node["Actual Loops"].as_u64().unwrap_or(0) > 0;
    if let Some(rel) = node["Relation Name"].as_str() {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        if ran
            && kind.ends_with("Scan")
            && let Some((table, _)) = partition_of(rel)
        {
            out.entry(table).or_default().insert(rel.to_string());
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, out);
    }
}

/// `("user_goal_progress", 3)` for `user_goal_progress_p3`.
fn partition_of(rel: &str) -> Option<(String, u32)> {
    let (table, n) = rel.rsplit_once("_p")?;
    let n = n.parse().ok()?;
    partitions::PER_USER_TABLES
        .contains(&table)
        .then(|| (table.to_string(), n))
}

/// Asserts that the statements scanned, of every partitioned table, only partitions in
/// `allowed` (partition numbers), and that they scanned each table of `expected` at all
/// (so the check cannot pass on statements that never ran).
fn assert_pruned(phase: &str, executed: &[Executed], allowed: &BTreeSet<u32>, expected: &[&str]) {
    let mut seen = BTreeSet::new();
    for e in executed {
        for (table, parts) in &e.scanned {
            seen.insert(table.as_str());
            let numbers: BTreeSet<u32> = parts
                .iter()
                .filter_map(|p| partition_of(p))
                .map(|(_, n)| n)
                .collect();
            assert!(
                numbers.is_subset(allowed),
                "{phase}: {table} scanned partitions {numbers:?}, the users' are {allowed:?}, in\n{}",
                e.query
            );
        }
    }
    for table in expected {
        assert!(
            seen.contains(table),
            "{phase}: no statement scanned {table}; statements: {:#?}",
            executed.iter().map(|e| &e.query).collect::<Vec<_>>()
        );
    }
}

struct TestDb {
    db: support::FreshDb,
    /// Sessions with auto_explain.
    explained: PgPool,
    /// Sessions without (seeding, looking).
    plain: PgPool,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let db = support::FreshDb::new(&format!("schema_prune_{tag}")).await;
        let plain = db.pool(2).await;
        let explained = explain::explained_pool(db.options.clone(), 2);
        TestDb {
            db,
            explained,
            plain,
        }
    }

    async fn drop(self) {
        self.explained.close().await;
        self.plain.close().await;
        self.db.drop().await;
    }
}

fn config() -> ChallengeConfig {
    load_from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/challenges.json"
    ))
    .expect("config/challenges.json")
}

/// Migrates with 16 partitions and seeds `users` players with every default goal, some
/// grants, outbox entries, tombstones and dead letters, so every partition of every table
/// has rows (an empty partition would hide an unpruned scan), then analyzes.
async fn seed(db: &TestDb, config: &ChallengeConfig, users: usize) {
    partitions::migrate_with(&db.plain, PARTITIONS)
        .await
        .unwrap();
    let layout = partitions::layout(&db.plain).await.unwrap();
    assert_eq!(layout.len(), partitions::PER_USER_TABLES.len());
    assert!(
        layout.iter().all(|(_, n)| *n == i64::from(PARTITIONS)),
        "{layout:?}"
    );
    let goals: Vec<(&str, &str)> = config
        .default_goals()
        .iter()
        .map(|g| (g.id.as_str(), g.challenge_id.as_str()))
        .collect();
    let (goal_ids, challenge_ids): (Vec<&str>, Vec<&str>) = goals.into_iter().unzip();
    let mut conn = db.plain.acquire().await.unwrap();
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, expires_at) \
         SELECT 'player-' || i, g.goal_id, g.challenge_id, $3, now() - interval '30 days' \
         FROM generate_series(1, $4) AS i, unnest($1::text[], $2::text[]) AS g(goal_id, challenge_id)",
    )
    .bind(&goal_ids)
    .bind(&challenge_ids)
    .bind(NAMESPACE)
    .bind(users as i32)
    .execute(&mut *conn)
    .await
    .unwrap();
    for sql in [
        "INSERT INTO reward_grants (user_id, goal_id, period_key, challenge_id, namespace, \
           grant_key, reward_type, reward_id, quantity, state, next_check_at) \
         SELECT 'player-' || i, 'seeded-goal', 'once', 'c', 'ns', md5('player-' || i), 'WALLET', 'GOLD', 1, \
           'granted', now() FROM generate_series(1, 2000) AS i",
        "INSERT INTO reward_outbox (user_id, goal_id) \
         SELECT 'player-' || i, 'seeded-goal' FROM generate_series(1, 2000) AS i",
        "INSERT INTO user_erasures (user_id, namespace, erased_at) \
         SELECT 'gone-' || i, 'ns', now() - interval '1 day' FROM generate_series(1, 2000) AS i",
        "INSERT INTO event_dead_letters (user_id, namespace, event_ids, payload, error) \
         SELECT 'player-' || i, 'ns', '{}', '{}', 'seeded' FROM generate_series(1, 2000) AS i",
        "INSERT INTO event_trail (user_id, received_at, event_id, event_type, goal_ids, \
           reasons, progress_before, progress_after) \
         SELECT 'player-' || i, now() - interval '1 hour', 'seeded-' || i, 'login', \
           '{seeded-goal}', '{NULL}', '{0}', '{1}' FROM generate_series(1, 2000) AS i",
        "ANALYZE",
    ] {
        conn.execute(sql).await.unwrap();
    }
}

/// The partition number of each of `users`.
async fn partitions_of(pool: &PgPool, users: &[&str]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for user in users {
        let rel: String = sqlx::query_scalar(
            "SELECT tableoid::regclass::text FROM user_goal_progress WHERE user_id = $1 LIMIT 1",
        )
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
        out.insert(partition_of(&rel).unwrap().1);
    }
    out
}

/// Three players in three different partitions.
async fn players_in_distinct_partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT min(user_id) FROM user_goal_progress GROUP BY tableoid ORDER BY 1 LIMIT 3",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_list_the_flush_the_claim_and_the_erasure_scan_only_their_users_partitions() {
    let _serial = SERIAL.lock().await;
    explain::capture_notices();
    let db = TestDb::new("routes").await;
    let config = config();
    seed(&db, &config, 2000).await;
    let players = players_in_distinct_partitions(&db.plain).await;
    assert_eq!(players.len(), 3);
    let one = players[0].as_str();
    let own = partitions_of(&db.plain, &[one]).await;
    let pool = &db.explained;
    take_plans();

    // The list (`GET /v1/challenges`), six times: past the five custom plans of a prepared
    // statement, the generic plan prunes at execution.
    for _ in 0..6 {
        let n = player::fold_goal_rows(pool, one, || 0usize, |n, _| *n += 1)
            .await
            .unwrap();
        assert_eq!(n, config.default_goals().len());
    }
    let list = take_plans();
    assert!(list.len() >= 6, "{list:#?}");
    assert_pruned("list", &list, &own, &["user_goal_progress"]);

    // The event trail's read (`GET …/goals/{g}/events`), six times as the list.
    for _ in 0..6 {
        trail::recent(pool, one, "seeded-goal").await.unwrap();
    }
    assert_pruned("trail", &take_plans(), &own, &["event_trail"]);

    // The flush: one batch of three users in three partitions, each with a goal they have
    // a row for and one they never activated (no row: the look at keys without a row runs).
    let now = Utc::now();
    let goal = config.default_goals()[0].clone();
    let inactive = config
        .goal("winter-snowmen-25")
        .filter(|g| !g.default_assigned)
        .expect("a goal not assigned by default")
        .clone();
    let (items, users) = support::batch_of(&players, &[goal.clone(), inactive], NAMESPACE, now);
    let flushed = flush_batch(pool, &items, &users, None, now, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(flushed.outcome.updated, 3, "{flushed:?}");
    assert_eq!(flushed.outcome.not_assigned, 3, "{flushed:?}");
    let three: Vec<&str> = players.iter().map(String::as_str).collect();
    let theirs = partitions_of(&db.plain, &three).await;
    assert_eq!(theirs.len(), 3);
    let plans = take_plans();
    assert!(
        plans
            .iter()
            .any(|p| p.query.contains("ARRAY(SELECT p.goal_id")),
        "the look at keys without a row ran: {plans:#?}"
    );
    assert_pruned(
        "flush",
        &plans,
        &theirs,
        &["user_goal_progress", "user_erasures"],
    );

    // The trail's write after the batch: an entry per player, the tombstones looked up.
    let entries: Vec<trail::TrailEntry> = players
        .iter()
        .map(|p| trail::TrailEntry {
            user_id: p.clone(),
            goal_id: goal.id.clone(),
            received_at: now,
            event_id: format!("flushed-{p}"),
            event_type: "login",
            stat_code: String::new(),
            value: 0,
            reason: None,
            progress_before: 0,
            progress_after: 1,
        })
        .collect();
    assert_eq!(trail::record(pool, &entries).await.unwrap(), 3);
    assert_pruned("trail write", &take_plans(), &theirs, &["user_erasures"]);

    // The claim: lock the row, read the intents, record one, settle it.
    let limit = Duration::from_secs(10);
    let ClaimLock::Locked(mut claim, row) = grants::lock_for_claim(pool, one, &goal.id, limit)
        .await
        .unwrap()
    else {
        panic!("the row is free");
    };
    assert!(row.is_some());
    assert!(claim.intents(&goal.id, "once").await.unwrap().is_empty());
    let lease = Lease {
        owner: "test",
        now,
        until: now + chrono::Duration::seconds(30),
        next_check_at: now + chrono::Duration::seconds(60),
        attempt: true,
    };
    let intent = claim
        .create_intent(
            &NewIntent {
                user_id: one,
                goal_id: &goal.id,
                period_key: "once",
                reward_index: 0,
                challenge_id: &goal.challenge_id,
                namespace: NAMESPACE,
                grant_key: &format!("key-{one}"),
                reward_type: "WALLET",
                reward_id: "GOLD",
                quantity: 1,
                goal_completed_at: None,
            },
            &lease,
        )
        .await
        .unwrap();
    let taken = claim
        .take_over_intent(&intent.grant_key, &lease, None)
        .await
        .unwrap();
    assert_eq!(taken.user_id, one);
    claim.commit().await.unwrap();
    grants::complete(pool, &intent, now, limit).await.unwrap();
    assert!(
        grants::release(pool, one, &intent.grant_key, "nobody", "-", now)
            .await
            .is_ok()
    );
    assert_pruned(
        "claim",
        &take_plans(),
        &own,
        &["user_goal_progress", "reward_grants"],
    );

    // The erasure: the tombstone, then every per-user table's rows of the player.
    let Erasure::Erased(erased) = erasure::erase_user(pool, one, NAMESPACE, now, None)
        .await
        .unwrap()
    else {
        panic!("not rate limited");
    };
    assert_eq!(erased.progress_rows as usize, config.default_goals().len());
    assert_eq!(erased.dead_letter_rows, 1);
    assert_pruned(
        "erasure",
        &take_plans(),
        &own,
        &[
            "user_goal_progress",
            "reward_grants",
            "event_dead_letters",
            "reward_outbox",
            "event_trail",
        ],
    );

    // The control: the retention cleanup selects across all players, and the same check
    // sees it scan every partition.
    let deleted = erasure::delete_expired_batch(pool, now, 100, &RetentionGuard::default())
        .await
        .unwrap();
    assert_eq!(deleted, 100);
    let cleanup = take_plans();
    let scanned: BTreeSet<&String> = cleanup
        .iter()
        .flat_map(|e| e.scanned.get("user_goal_progress").into_iter().flatten())
        .collect();
    assert_eq!(scanned.len(), usize::from(PARTITIONS), "{cleanup:#?}");
    let outcome = std::panic::catch_unwind(|| {
        assert_pruned("cleanup", &cleanup, &own, &["user_goal_progress"]);
    });
    assert!(outcome.is_err(), "the check must refuse an unpruned plan");

    db.drop().await;
}

/// Everything about the public schema a migration defines (as tests/migrations.rs).
async fn schema(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s.%s %s %s %s %s', table_name, column_name, data_type,
                       coalesce(character_maximum_length::text, ''), is_nullable,
                       coalesce(column_default, ''))
           FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'
         UNION ALL
         SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
           FROM pg_constraint
          WHERE connamespace = 'public'::regnamespace
            AND conrelid <> '_sqlx_migrations'::regclass
         UNION ALL
         SELECT format('index %s', indexdef)
           FROM pg_indexes
          WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'
         UNION ALL
         SELECT format('options %s %s', relname, reloptions)
           FROM pg_class
          WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.sort();
    rows
}

async fn counts(pool: &PgPool) -> Vec<i64> {
    let mut out = Vec::new();
    for table in partitions::PARTITIONED_TABLES {
        out.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn partitioning_is_chosen_at_migrate_time_and_reverts_to_the_same_schema() {
    use extend_challenge_common::migrations::{self, Command, MigrationsError};
    let _serial = SERIAL.lock().await;
    let db = TestDb::new("updown").await;
    let pool = &db.plain;

    // Without a partition count, 0012 changes nothing.
    migrations::up(pool).await.unwrap();
    assert_eq!(partitions::partitions(pool).await.unwrap(), 0);
    let config = config();
    seed_rows(pool, &config).await;
    let before = counts(pool).await;
    assert!(before.iter().all(|n| *n > 0), "{before:?}");

    // 0017: the id columns compare byte by byte.
    for (table, column) in [
        ("user_goal_progress", "user_id"),
        ("user_goal_progress", "goal_id"),
        ("event_ledger", "event_id"),
        ("event_trail", "user_id"),
        ("user_erasures", "user_id"),
        ("reward_grants", "grant_key"),
    ] {
        assert_eq!(collation(pool, table, column).await.as_deref(), Some("C"));
    }

    // Down to 0011 (0013, the event trail, 0014, the catalog versions, 0015, the trail per
    // event, 0016, an index dropped, and 0017, the id columns' collation, came after 0012)
    // and up with 16: every per-user table is partitioned, its rows kept, and the trail
    // that 0015 creates is partitioned alike.
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![17]);
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![16]);
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![15]);
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![14]);
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![13]);
    let plain = schema(pool).await;
    assert_eq!(migrations::down(pool, 1).await.unwrap(), vec![12]);
    assert_eq!(schema(pool).await, plain, "0012 alone added nothing");
    assert_eq!(
        migrations::up_with(pool, 16).await.unwrap(),
        vec![12, 13, 14, 15, 16, 17]
    );
    let layout = partitions::layout(pool).await.unwrap();
    assert_eq!(
        layout,
        partitions::PER_USER_TABLES
            .iter()
            .map(|t| (t.to_string(), 16))
            .collect::<Vec<_>>()
    );
    assert_eq!(counts(pool).await, before);
    assert_ne!(schema(pool).await, plain);
    // A partition key keeps its collation (Postgres cannot change it); the other ids change.
    assert_eq!(collation(pool, "user_goal_progress", "user_id").await, None);
    assert_eq!(collation(pool, "event_trail", "user_id").await, None);
    for (table, column) in [
        ("user_goal_progress", "goal_id"),
        ("event_ledger", "event_id"),
        ("reward_grants", "grant_key"),
    ] {
        assert_eq!(collation(pool, table, column).await.as_deref(), Some("C"));
    }
    // The storage settings of 0007 are on every partition.
    let fill: Vec<Option<Vec<String>>> = sqlx::query_scalar(
        "SELECT c.reloptions::text[] FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'user_goal_progress'::regclass",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(fill.len(), 16);
    assert!(
        fill.iter().all(|o| o
            .as_ref()
            .is_some_and(|o| o.contains(&"fillfactor=90".to_string()))),
        "{fill:?}"
    );
    // The dead letters' ids go on from the same sequence.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO event_dead_letters (user_id, namespace, event_ids, payload, error) \
         VALUES ('late', 'ns', '{}', '{}', 'e') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let max_before: i64 =
        sqlx::query_scalar("SELECT max(id) FROM event_dead_letters WHERE user_id <> 'late'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(id > max_before);
    sqlx::query("DELETE FROM event_dead_letters WHERE user_id = 'late'")
        .execute(pool)
        .await
        .unwrap();

    // A different count asked for once 0012 is applied is refused, naming the way out.
    let mut out = Vec::new();
    let refused = migrations::run_with(
        pool,
        Command::Up {
            partitions: Some(8),
        },
        0,
        &mut out,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(MigrationsError::Partitions {
                requested: 8,
                actual: 16
            })
        ),
        "{refused:?}"
    );
    // The same count, or none asked for, is fine; the layout is reported.
    let mut out = Vec::new();
    migrations::run_with(pool, Command::Up { partitions: None }, 0, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("user_goal_progress (16)"), "{text}");

    // down: the plain tables again, the same schema, the same rows.
    assert_eq!(
        migrations::down(pool, 6).await.unwrap(),
        vec![17, 16, 15, 14, 13, 12]
    );
    assert_eq!(schema(pool).await, plain);
    assert_eq!(counts(pool).await, before);
    assert_eq!(partitions::partitions(pool).await.unwrap(), 0);

    db.drop().await;
}

/// A few rows in every per-user table.
async fn seed_rows(pool: &PgPool, config: &ChallengeConfig) {
    let goal = &config.default_goals()[0];
    for sql in [
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace) \
         SELECT 'player-' || i, $1, $2, 'ns' FROM generate_series(1, 50) AS i",
        "INSERT INTO reward_grants (user_id, goal_id, period_key, challenge_id, namespace, \
           grant_key, reward_type, reward_id, quantity, state, next_check_at) \
         SELECT 'player-' || i, $1, 'once', $2, 'ns', md5('player-' || i), 'WALLET', 'GOLD', 1, \
           'granted', now() FROM generate_series(1, 50) AS i",
        "INSERT INTO reward_outbox (user_id, goal_id) \
         SELECT 'player-' || i, $1 FROM generate_series(1, 50) AS i WHERE $2 <> ''",
        "INSERT INTO user_erasures (user_id, namespace, erased_at) \
         SELECT 'gone-' || i || $1 || $2, 'ns', now() FROM generate_series(1, 50) AS i",
        "INSERT INTO event_dead_letters (user_id, namespace, event_ids, payload, error) \
         SELECT 'player-' || i, 'ns', ARRAY[$1, $2], '{}', 'seeded' FROM generate_series(1, 50) AS i",
    ] {
        sqlx::query(sql)
            .bind(&goal.id)
            .bind(&goal.challenge_id)
            .execute(pool)
            .await
            .unwrap();
    }
}

/// The collation a column declares (`None`: the database's default).
async fn collation(pool: &PgPool, table: &str, column: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT collation_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(pool)
    .await
    .unwrap()
}
