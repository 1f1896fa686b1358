//! The binary's command line: `--help`, `--version`, `migrate up | down [N] | status`, and
//! start-up refusals that name the variable.

use std::process::Output;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const BIN: &str = env!("CARGO_BIN_EXE_extend-challenge-service");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the service binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_and_version() {
    let v = run(&["--version"], &[]);
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("extend-challenge-service {}", env!("CARGO_PKG_VERSION"))
    );
    let h = run(&["--help"], &[]);
    assert!(h.status.success());
    let help = text(&h);
    assert!(
        help.contains("migrate up [--partitions N] | down [N] | status"),
        "{help}"
    );
    let bad = run(&["--frobnicate"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("--frobnicate"));
    let bad = run(&["migrate", "sideways"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("usage: extend-challenge-service migrate"));
}

#[test]
fn a_bad_log_level_is_refused_naming_the_variable() {
    let o = run(&[], &[("LOG_LEVEL", "verbose")]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("LOG_LEVEL") && t.contains("verbose"), "{t}");
}

#[sqlx::test(migrations = false)]
async fn migrate_up_down_status(_pool: PgPoolOptions, opts: PgConnectOptions) {
    let url = format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap()
    );
    let env = [("DATABASE_URL", url.as_str())];
    let status = run(&["migrate", "status"], &env);
    assert!(status.status.success(), "{}", text(&status));
    let lines = String::from_utf8_lossy(&status.stdout).to_string();
    let n = lines.lines().count();
    assert!(
        n >= 4 && lines.lines().all(|l| l.ends_with("pending")),
        "{lines}"
    );

    let up = run(&["migrate", "up"], &env);
    assert!(up.status.success(), "{}", text(&up));
    // One line per migration, then the partition layout (none by default).
    assert_eq!(String::from_utf8_lossy(&up.stdout).lines().count(), n + 1);
    assert!(text(&up).contains("applied 0001"));
    assert!(
        text(&up).contains("partitions by user_id: user_goal_progress (none)"),
        "{}",
        text(&up)
    );

    let down = run(&["migrate", "down", "2"], &env);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(String::from_utf8_lossy(&down.stdout).lines().count(), 2);

    let status = run(&["migrate", "status"], &env);
    let after = String::from_utf8_lossy(&status.stdout).to_string();
    let pending = after.lines().filter(|l| l.ends_with("pending")).count();
    assert_eq!(pending, 2, "{after}");
    assert!(after.lines().next().unwrap().contains("applied"), "{after}");

    let up = run(&["migrate", "up"], &env);
    assert!(up.status.success());
    assert_eq!(String::from_utf8_lossy(&up.stdout).lines().count(), 2 + 1);

    // Partitions are chosen when 0012 runs: down to 0011 (0017 … 0012),
    // then up with 4.
    assert!(run(&["migrate", "down", "6"], &env).status.success());
    let up = run(&["migrate", "up", "--partitions", "4"], &env);
    assert!(up.status.success(), "{}", text(&up));
    assert!(text(&up).contains("applied 0012"), "{}", text(&up));
    assert!(
        text(&up).contains("user_goal_progress (4)") && text(&up).contains("event_trail (4)"),
        "{}",
        text(&up)
    );
    // Another count once 0012 is applied: refused, saying how to change it.
    let again = run(&["migrate", "up", "--partitions=8"], &env);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("migrate down to 0011"),
        "{}",
        text(&again)
    );
    let bad = run(&["migrate", "up", "--partitions", "many"], &env);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));

    // An unreachable database: a failure naming where it looked.
    let o = run(
        &["migrate", "status"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("127.0.0.1:1/nowhere"), "{}", text(&o));
}

#[test]
fn a_missing_database_fails_at_once_naming_it() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/challenges.json"
    );
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    let missing = format!("{base}/no_such_database_for_cli_test");
    let started = std::time::Instant::now();
    let o = run(
        &[],
        &[
            ("DATABASE_URL", missing.as_str()),
            ("CHALLENGE_CONFIG_PATH", fixtures),
            ("GRPC_PORT", "0"),
            ("HTTP_PORT", "0"),
            ("METRICS_PORT", "0"),
        ],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("no_such_database_for_cli_test") && t.contains("does not exist"),
        "{t}"
    );
    // Not the retries (until shutdown) an unreachable database gets.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{t}"
    );
}
