//! The catalog as data (CONTRACT §9) against real Postgres: versions, the start-up import,
//! the `expectedVersion` race, rollback, the impact report's exact counts on seeded players
//! and an apply that does exactly what the dry-run reported.

use extend_challenge_common::config::{ChallengeConfig, parse_and_validate};
use extend_challenge_common::store::catalog::{
    self, ApplyRequest, CatalogError, Imported, sha256_hex,
};
use serde_json::{Value, json};
use sqlx::PgPool;

/// A goal of `challenges.json`: a `kills` statistic goal with `target`, or a login goal.
fn goal(id: &str, target: i32, auto_claim: bool) -> Value {
    json!({
        "goalId": id, "name": id, "description": "d",
        "eventSource": "statistic",
        "requirement": {"statCode": "kills", "operator": ">=", "targetValue": target,
                        "progressMode": "absolute"},
        "reward": {"type": "WALLET", "rewardId": "GOLD", "quantity": 10},
        "autoClaim": auto_claim,
        "prerequisites": []
    })
}

fn catalog(goals: Vec<Value>) -> (String, ChallengeConfig) {
    let text = serde_json::to_string_pretty(&json!({"challenges": [
        {"challengeId": "c1", "name": "C1", "description": "d", "goals": goals}
    ]}))
    .unwrap();
    let config = parse_and_validate("test", &text).unwrap();
    (text, config)
}

async fn apply(
    pool: &PgPool,
    (text, config): &(String, ChallengeConfig),
    expected: Option<i64>,
) -> Result<catalog::Applied, CatalogError> {
    catalog::apply(
        pool,
        ApplyRequest {
            content: text,
            config,
            source: "cli".into(),
            note: None,
            expected,
            file_sha256: None,
        },
    )
    .await
}

/// A row of `goal` for `user` with `status` and `progress`.
async fn seed(pool: &PgPool, user: &str, goal: &str, status: &str, progress: i32) {
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at, claimed_at) \
         VALUES ($1, $2, 'c1', 'ns', $4, $3, \
             CASE WHEN $3 IN ('completed', 'claimed') THEN now() END, \
             CASE WHEN $3 = 'claimed' THEN now() END)",
    )
    .bind(user)
    .bind(goal)
    .bind(status)
    .bind(progress)
    .execute(pool)
    .await
    .unwrap();
}

async fn statuses(pool: &PgPool, goal: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT user_id, status FROM user_goal_progress WHERE goal_id = $1 ORDER BY user_id",
    )
    .bind(goal)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn versions_are_numbered_immutable_and_the_race_is_refused(pool: PgPool) {
    assert_eq!(catalog::active(&pool).await.unwrap(), None);
    let v1 = catalog(vec![goal("a", 5, false)]);
    let v2 = catalog(vec![goal("a", 5, false), goal("b", 3, false)]);

    // The first version must expect "none" (0).
    assert!(matches!(
        apply(&pool, &v1, Some(1)).await,
        Err(CatalogError::Conflict {
            expected: 1,
            active: 0
        })
    ));
    let first = apply(&pool, &v1, Some(0)).await.unwrap();
    assert_eq!((first.version, first.previous), (1, None));
    let second = apply(&pool, &v2, Some(1)).await.unwrap();
    assert_eq!((second.version, second.previous), (2, Some(1)));

    // Another writer expected 1 too: 409 naming the active version; nothing changed.
    match apply(&pool, &v1, Some(1)).await {
        Err(CatalogError::Conflict { expected, active }) => assert_eq!((expected, active), (1, 2)),
        other => panic!("{other:?}"),
    }
    let active = catalog::active(&pool).await.unwrap().unwrap();
    assert_eq!(active.version, 2);
    assert_eq!(active.content, v2.0);
    assert_eq!(active.sha256, sha256_hex(&v2.0));
    let versions = catalog::versions(&pool).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.active, v.source.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, true, "cli"), (1, false, "cli")]
    );

    // Rollback: a new version with version 1's content.
    let back = catalog::rollback(&pool, 1, "api:admin".into(), Some(2))
        .await
        .unwrap();
    assert_eq!((back.version, back.previous), (3, Some(2)));
    let active = catalog::active(&pool).await.unwrap().unwrap();
    assert_eq!((active.version, active.content), (3, v1.0.clone()));
    assert_eq!(
        catalog::content(&pool, 2).await.unwrap().as_deref(),
        Some(v2.0.as_str()),
        "versions are never rewritten"
    );
    assert!(matches!(
        catalog::rollback(&pool, 9, "cli".into(), None).await,
        Err(CatalogError::NoSuchVersion(9))
    ));
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_file_is_imported_once_per_content(pool: PgPool) {
    let v1 = catalog(vec![goal("a", 5, false)]);
    let Imported::Applied(first) = catalog::import_file(&pool, &v1.0, &v1.1).await.unwrap() else {
        panic!("first import applies");
    };
    assert_eq!(first.version, 1);
    let active = catalog::active(&pool).await.unwrap().unwrap();
    assert_eq!(active.source, format!("file:{}", sha256_hex(&v1.0)));
    assert_eq!(
        active.file_sha256.as_deref(),
        Some(sha256_hex(&v1.0).as_str())
    );

    // Same file again (a restart, another replica): nothing new.
    assert_eq!(
        catalog::import_file(&pool, &v1.0, &v1.1).await.unwrap(),
        Imported::Unchanged { version: 1 }
    );
    // A version applied through the API since survives a restart with the same file.
    let api = catalog(vec![goal("a", 7, false)]);
    apply(&pool, &api, Some(1)).await.unwrap();
    assert_eq!(
        catalog::import_file(&pool, &v1.0, &v1.1).await.unwrap(),
        Imported::Unchanged { version: 2 }
    );
    // A changed file becomes a new version.
    let v3 = catalog(vec![goal("a", 9, false)]);
    let Imported::Applied(third) = catalog::import_file(&pool, &v3.0, &v3.1).await.unwrap() else {
        panic!("a changed file applies");
    };
    assert_eq!((third.version, third.previous), (3, Some(2)));
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_impact_is_counted_exactly_and_apply_does_what_it_reported(pool: PgPool) {
    let v1 = catalog(vec![
        goal("lower", 10, false),
        goal("raise", 5, false),
        goal("gone", 5, false),
        goal("auto", 10, true),
        goal("same", 5, false),
    ]);
    apply(&pool, &v1, Some(0)).await.unwrap();
    // "lower": 10 → 6. u1 in progress at 7 and u2 at 6 complete; u3 at 5 does not; u4
    // completed and u5 claimed stay as they are (earned is earned).
    seed(&pool, "u1", "lower", "in_progress", 7).await;
    seed(&pool, "u2", "lower", "in_progress", 6).await;
    seed(&pool, "u3", "lower", "in_progress", 5).await;
    seed(&pool, "u4", "lower", "completed", 10).await;
    seed(&pool, "u5", "lower", "claimed", 10).await;
    // "raise": 5 → 8. A completed row at 5 stays completed; nothing moves.
    seed(&pool, "u1", "raise", "completed", 5).await;
    seed(&pool, "u2", "raise", "in_progress", 4).await;
    // "gone": removed; its rows stay.
    seed(&pool, "u1", "gone", "in_progress", 2).await;
    seed(&pool, "u2", "gone", "claimed", 5).await;
    // "auto": autoClaim, 10 → 3. u1 at 3 completes and its auto-claim is queued.
    seed(&pool, "u1", "auto", "in_progress", 3).await;
    seed(&pool, "u2", "auto", "not_started", 0).await;
    // "same": untouched, not in the report.
    seed(&pool, "u1", "same", "in_progress", 4).await;

    let v2 = catalog(vec![
        goal("lower", 6, false),
        goal("raise", 8, false),
        goal("auto", 3, true),
        goal("same", 5, false),
        goal("new", 1, false),
    ]);
    let (active, report) = catalog::dry_run(&pool, &v2.1).await.unwrap();
    assert_eq!(active, Some(1));
    let expected = json!({"changes": [
        {"challengeId": "c1", "goalId": "lower", "change": "changed",
         "fields": ["requirement.targetValue"], "players": 5,
         "statusChanges": {"in_progress->completed": 2}},
        {"challengeId": "c1", "goalId": "raise", "change": "changed",
         "fields": ["requirement.targetValue"], "players": 2, "statusChanges": {}},
        {"challengeId": "c1", "goalId": "auto", "change": "changed",
         "fields": ["requirement.targetValue"], "players": 2,
         "statusChanges": {"in_progress->completed": 1}},
        {"challengeId": "c1", "goalId": "new", "change": "added",
         "fields": [], "players": 0, "statusChanges": {}},
        {"challengeId": "c1", "goalId": "gone", "change": "removed",
         "fields": [], "players": 2, "statusChanges": {}},
    ]});
    assert_eq!(serde_json::to_value(&report).unwrap(), expected);
    // A dry-run changes nothing.
    assert_eq!(statuses(&pool, "lower").await[0].1, "in_progress");
    assert_eq!(catalog::active_version(&pool).await.unwrap(), Some(1));

    let applied = apply(&pool, &v2, Some(1)).await.unwrap();
    assert_eq!(serde_json::to_value(&applied.impact).unwrap(), expected);
    let s = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        statuses(&pool, "lower").await,
        s(&[
            ("u1", "completed"),
            ("u2", "completed"),
            ("u3", "in_progress"),
            ("u4", "completed"),
            ("u5", "claimed")
        ])
    );
    assert_eq!(
        statuses(&pool, "raise").await,
        s(&[("u1", "completed"), ("u2", "in_progress")])
    );
    assert_eq!(
        statuses(&pool, "gone").await,
        s(&[("u1", "in_progress"), ("u2", "claimed")]),
        "a removed goal's rows stay"
    );
    assert_eq!(
        statuses(&pool, "auto").await,
        s(&[("u1", "completed"), ("u2", "not_started")])
    );
    let completed_at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT completed_at FROM user_goal_progress WHERE user_id = 'u1' AND goal_id = 'lower'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(completed_at.is_some());
    let outbox: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, goal_id FROM reward_outbox ORDER BY 1, 2")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(outbox, s(&[("u1", "auto")]));
    // The report is stored with the version.
    let stored: Value = sqlx::query_scalar("SELECT report FROM catalog_versions WHERE version = 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, expected);
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_goal_moving_challenge_is_refused_and_nothing_is_stored(pool: PgPool) {
    let v1 = catalog(vec![goal("a", 5, false)]);
    apply(&pool, &v1, None).await.unwrap();
    let text = serde_json::to_string(&json!({"challenges": [
        {"challengeId": "c2", "name": "C2", "description": "d", "goals": [goal("a", 5, false)]}
    ]}))
    .unwrap();
    let config = parse_and_validate("test", &text).unwrap();
    match apply(&pool, &(text, config), None).await {
        Err(CatalogError::Invalid(problems)) => {
            assert_eq!(
                problems,
                vec![
                    "goal \"a\" moves from challenge \"c1\" to \"c2\": give it a new goalId \
                     (its players' progress belongs to the old challenge)"
                        .to_string()
                ]
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(catalog::versions(&pool).await.unwrap().len(), 1);
}
