//! deploy/: a real Prometheus (the Debian `prometheus` package, installed by
//! `scripts/test.sh`) scrapes both binaries under a little traffic, loads
//! `deploy/prometheus/alerts.yml`, and every query of `deploy/grafana/extend-challenge.json`
//! and every metric an alert uses must come back non-empty: a renamed metric fails here.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use extend_challenge_e2e::build::workspace_root;
use extend_challenge_e2e::eventually;
use serde_json::Value;

/// The deployment guide's names (CONTRACT §6) as Prometheus stores them.
const GUIDE_SERIES: &[&str] = &[
    "challenge_event_processing_seconds_bucket",
    "challenge_api_request_duration_seconds_bucket",
    "challenge_api_request_duration_seconds_count",
    "challenge_db_query_duration_seconds_bucket",
    "challenge_db_connections_active",
    "challenge_db_connections_max",
    "challenge_buffer_size",
    "challenge_flush_duration_seconds_bucket",
    "challenge_errors_total",
];

/// Metrics the dashboard and the alerts already use whose code lands with issue 13 (GDPR
/// erasure and retention cleanup). Allowed to be missing only while neither binary exports
/// any `challenge_cleanup_*` family; once one does, all must exist.
const PENDING_PREFIX: &str = "challenge_cleanup_";

/// `PROMETHEUS` as `scripts/test.sh` exports it, else `prometheus` on PATH, else let that
/// script install it.
fn prometheus_bin() -> String {
    if let Ok(p) = std::env::var("PROMETHEUS")
        && !p.is_empty()
    {
        return p;
    }
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return "prometheus".into();
    }
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/test.sh"))
        .arg("--install-prometheus")
        .output()
        .expect("run scripts/test.sh --install-prometheus");
    assert!(
        out.status.success(),
        "installing prometheus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Prom {
    base: String,
    http: reqwest::Client,
}

impl Prom {
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body: Value = self
            .http
            .post(format!("{}/api/v1/query", self.base))
            .form(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        match &body["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            // scalar results (e.g. time()) are non-empty by definition
            other => Ok(vec![other.clone()]),
        }
    }

    async fn non_empty(&self, expr: &str) -> Result<(), String> {
        let r = self.query(expr).await?;
        if r.is_empty() {
            Err(format!("{expr}: empty result"))
        } else {
            Ok(())
        }
    }
}

/// Metric names in a PromQL expression (families of ours, gRPC's and the process's).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word
            && ["challenge_", "grpc_server_", "process_", "http_request_"]
                .iter()
                .any(|p| expr[i..].starts_with(p))
        {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            names.push(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_evaluates_every_dashboard_query_and_alert() {
    let prometheus = prometheus_bin();
    let (stack, events) = start("observability").await;

    // A little traffic: events of each kind (one invalid), the player API over REST, a claim.
    let u = user("obs");
    events.login(&u).await;
    events.stat(&u, "tutorial_completed", 1.0).await;
    let bad = events.login_event("");
    assert!(events.send_login(bad).await.is_err());
    let api = stack.api(&u);
    api.initialize().await;
    api.challenges().await;
    api.claim(WINTER, "complete-tutorial").await.expect(200);
    let missing = reqwest::get(format!("{}/v1/challenges/nope", stack.service_url()))
        .await
        .unwrap();
    assert!(missing.status().is_client_error());

    // Prometheus scraping both binaries every second, with our rules.
    let dir = std::env::temp_dir().join(format!("e2e-prometheus-{}", stack.db.name));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = workspace_root().join("deploy/prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n\
         \x20 - job_name: extend-challenge-service\n    static_configs:\n      - targets: ['127.0.0.1:{s}']\n\
         \x20 - job_name: extend-challenge-event-handler\n    static_configs:\n      - targets: ['127.0.0.1:{h}']\n",
        rules = rules.display(),
        s = stack.service_ports.metrics,
        h = stack.handler_ports.metrics,
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut child = tokio::process::Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {prometheus}: {e}"));
    let prom = Prom {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let prom_log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();

    eventually("both targets up", Duration::from_secs(60), || async {
        let up = prom.query("up == 1").await?;
        if up.len() == 2 {
            Ok(())
        } else {
            Err(format!("{} targets up", up.len()))
        }
    })
    .await;

    // The rules loaded and evaluate without error.
    let rules_body: Value = eventually("rules evaluated", Duration::from_secs(30), || async {
        let body: Value = prom
            .http
            .get(format!("{}/api/v1/rules", prom.base))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let rules = body["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
            Ok(body)
        } else {
            Err(format!("{body}"))
        }
    })
    .await;
    let alert_exprs: Vec<(String, String)> = rules_body["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["query"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(alert_exprs.len() >= 10, "{alert_exprs:?}\n{}", prom_log());

    let pending_exported = !prom
        .query(&format!("{{__name__=~\"{PENDING_PREFIX}.*\"}}"))
        .await
        .unwrap()
        .is_empty();
    let pending = |expr: &str| !pending_exported && expr.contains(PENDING_PREFIX);

    for name in GUIDE_SERIES {
        eventually(name, Duration::from_secs(30), || prom.non_empty(name)).await;
    }

    // Every dashboard query returns data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/extend-challenge.json"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if pending(expr) {
                prom.query(expr).await.unwrap();
                continue;
            }
            let title = panel["title"].as_str().unwrap_or_default();
            eventually(
                &format!("dashboard panel '{title}'"),
                Duration::from_secs(30),
                || prom.non_empty(expr),
            )
            .await;
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} dashboard queries checked");

    // Every metric each alert uses exists.
    for (alert, expr) in &alert_exprs {
        for name in metric_names(expr) {
            if pending(&name) {
                continue;
            }
            let selector = format!("{{__name__=\"{name}\"}}");
            eventually(
                &format!("metric {name} of alert {alert}"),
                Duration::from_secs(30),
                || prom.non_empty(&selector),
            )
            .await;
        }
    }
    // A renamed metric is caught: the same check fails for a name nobody exports.
    assert!(
        prom.non_empty("{__name__=\"challenge_api_request_seconds_bucket\"}")
            .await
            .is_err()
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        metric_names(
            "sum by (job) (rate(challenge_errors_total[5m])) / max(challenge_db_connections_max) > 0.9"
        ),
        vec!["challenge_db_connections_max", "challenge_errors_total"]
    );
}
