//! `extend-challenge-service catalog …` against real Postgres (the library the binary's
//! subcommand runs): validate, diff, apply (with `--dry-run`, the race refused), history,
//! rollback.

mod common;

use common::FIXTURE;
use extend_challenge_service::catalog_cli::{Command, parse, run};
use sqlx::PgPool;

async fn cli(pool: &PgPool, args: &str) -> (bool, String) {
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    let (command, json) = parse(&args).unwrap();
    let mut out = Vec::new();
    let ok = run(pool, command, json, FIXTURE, &mut out).await.unwrap();
    (ok, String::from_utf8(out).unwrap())
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_catalog_commands_work_against_the_database(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("catalog-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut next: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    next["challenges"][0]["goals"][0]["requirement"]["targetValue"] = 4.into();
    let next_path = dir.join("next.json");
    std::fs::write(&next_path, next.to_string()).unwrap();
    let mut bad = next.clone();
    bad["challenges"][0]["goals"][0]["requirement"]["targetValue"] = 0.into();
    let bad_path = dir.join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let (next_path, bad_path) = (next_path.display(), bad_path.display());

    let (ok, out) = cli(&pool, "validate").await;
    assert!(ok, "{out}");
    assert!(out.contains("valid (3 challenges, 8 goals)"), "{out}");
    let (ok, out) = cli(&pool, &format!("validate {bad_path}")).await;
    assert!(!ok);
    assert!(
        out.contains("kill-10") && out.contains("targetValue"),
        "{out}"
    );

    // The fixture as version 1; a row at 5 of kill-10 completes under the next file's 4.
    let (ok, out) = cli(&pool, "apply --expected-version 0").await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("catalog version 1 is active (was 0)"),
        "{out}"
    );
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
         status) VALUES ('amy', 'kill-10', 'winter', 'ns', 5, 'in_progress')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for dry in [
        format!("diff {next_path}"),
        format!("apply {next_path} --dry-run"),
    ] {
        let (ok, out) = cli(&pool, &dry).await;
        assert!(ok, "{out}");
        assert!(out.contains("dry run against catalog version 1"), "{out}");
        assert!(
            out.contains("changed  winter/kill-10  players: 1  fields: requirement.targetValue  in_progress->completed: 1"),
            "{out}"
        );
    }
    let (ok, out) = cli(&pool, &format!("apply {next_path} --expected-version 0")).await;
    assert!(!ok);
    assert!(
        out.contains("refused: catalog version 1 is active, not the expected 0"),
        "{out}"
    );
    let (ok, out) = cli(
        &pool,
        &format!("apply {next_path} --expected-version 1 --json"),
    )
    .await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["changes"][0]["statusChanges"]["in_progress->completed"],
        1
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM user_goal_progress WHERE user_id = 'amy'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "completed");

    let (ok, out) = cli(&pool, "rollback 1").await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("catalog version 3 is active, with the content of version 1 (was 2)"),
        "{out}"
    );
    let (_, out) = cli(&pool, "history").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("*    3") && lines[0].contains("(rollback to version 1)"),
        "{out}"
    );
    assert!(lines[2].starts_with("     1"), "{out}");
    let (ok, out) = cli(&pool, "rollback 9").await;
    assert!(!ok);
    assert!(out.contains("catalog version 9 does not exist"), "{out}");
    assert!(matches!(
        parse(&["history".into()]).unwrap().0,
        Command::History
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
