//! S1, S3, S4 and the initialize ramp: the player REST API (CONTRACT §3) under open-loop load.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::args::Args;
use crate::events::{EventClient, Ledger};
use crate::layout::{self, CHECKED_BELOW, CLAIM_FROM};
use crate::openloop::{self, Plan, Stage, Stats};
use crate::{procstat, report, verify};

type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    /// Next unique (user, claim goal) pair: claims never repeat, so 409 is a real error.
    claim_seq: Arc<AtomicU64>,
    users: usize,
}

impl Api {
    fn new(args: &Args, users: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(2048)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Api {
            http,
            base: args
                .get_str("base-url", "http://127.0.0.1:8000/challenge")
                .into(),
            claim_seq: Arc::new(AtomicU64::new(args.get_usize("claim-offset", 0)? as u64)),
            users,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: String,
        user: usize,
        body: Option<Value>,
    ) -> BoxFut {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("x-mock-user-id", layout::user_id(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    "timeout".to_string()
                } else {
                    "connect/io".to_string()
                }
            })?;
            let status = resp.status();
            // Read the whole body: a 500-goal list is ~200 KB and its transfer is part of the cost.
            let _ = resp.bytes().await.map_err(|_| "body".to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("http_{}", status.as_u16()))
            }
        })
    }

    fn list(&self, user: usize, active_only: bool) -> (&'static str, BoxFut) {
        if active_only {
            (
                "http:list_active",
                self.call(
                    reqwest::Method::GET,
                    "/v1/challenges?active_only=true".into(),
                    user,
                    None,
                ),
            )
        } else {
            (
                "http:list",
                self.call(reqwest::Method::GET, "/v1/challenges".into(), user, None),
            )
        }
    }

    fn initialize(&self, user: usize) -> (&'static str, BoxFut) {
        (
            "http:initialize",
            self.call(
                reqwest::Method::POST,
                "/v1/challenges/initialize".into(),
                user,
                Some(json!({})),
            ),
        )
    }

    fn claim(&self) -> (&'static str, BoxFut) {
        let n = self.claim_seq.fetch_add(1, Ordering::Relaxed) as usize;
        let user = n % self.users;
        let idx =
            (n / self.users) % (layout::CHALLENGES * (layout::GOALS_PER_CHALLENGE - CLAIM_FROM));
        let (j, k) = (idx / 5, CLAIM_FROM + idx % 5);
        let path = format!(
            "/v1/challenges/{}/goals/{}/claim",
            layout::challenge_id(j),
            layout::goal_id(j, k)
        );
        (
            "http:claim",
            self.call(reqwest::Method::POST, path, user, Some(json!({}))),
        )
    }

    fn set_active(&self, rng: &mut StdRng, user: usize) -> (&'static str, BoxFut) {
        let j = rng.random_range(0..layout::CHALLENGES);
        let k = rng.random_range(CHECKED_BELOW..CLAIM_FROM);
        let path = format!(
            "/v1/challenges/{}/goals/{}/active",
            layout::challenge_id(j),
            layout::goal_id(j, k)
        );
        let body = json!({"isActive": rng.random_bool(0.5)});
        (
            "http:set_active",
            self.call(reqwest::Method::PUT, path, user, Some(body)),
        )
    }

    fn batch_select(&self, rng: &mut StdRng, user: usize) -> (&'static str, BoxFut) {
        let j = rng.random_range(0..layout::CHALLENGES);
        let a = rng.random_range(CHECKED_BELOW..CLAIM_FROM);
        let b = rng.random_range(CHECKED_BELOW..CLAIM_FROM);
        let path = format!(
            "/v1/challenges/{}/goals/batch-select",
            layout::challenge_id(j)
        );
        let body = json!({"goalIds": [layout::goal_id(j, a), layout::goal_id(j, b)], "replaceExisting": false});
        (
            "http:batch_select",
            self.call(reqwest::Method::POST, path, user, Some(body)),
        )
    }

    fn random_select(&self, rng: &mut StdRng, user: usize) -> (&'static str, BoxFut) {
        let j = rng.random_range(0..layout::CHALLENGES);
        let path = format!(
            "/v1/challenges/{}/goals/random-select",
            layout::challenge_id(j)
        );
        let body = json!({"count": 1, "replaceExisting": false, "excludeActive": false});
        (
            "http:random_select",
            self.call(reqwest::Method::POST, path, user, Some(body)),
        )
    }
}

pub(crate) fn plan_from(args: &Args, default_rate: f64) -> anyhow::Result<Plan> {
    let mut plan = Plan::constant(
        args.get_f64("rate", default_rate)?,
        args.get_secs("duration", 20.0)?,
        args.get_usize("max-in-flight", 500)?,
    );
    if let Some(stages) = args.opt("stages") {
        // "secs:rate,secs:rate,…"
        plan.stages = stages
            .split(',')
            .map(|s| {
                let (d, r) = s.split_once(':').context("--stages secs:rate,…")?;
                Ok(Stage {
                    secs: d.parse()?,
                    rate: r.parse()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    plan.drain = args.get_secs("drain", 30.0)?;
    plan.closed = args.opt("closed").map(|n| n.parse()).transpose()?;
    Ok(plan)
}

/// CPU per op: the service serves `http:*`, the handler `grpc:*`.
fn ops_for(stats: &Stats, events: Option<&Stats>) -> impl Fn(&str) -> u64 {
    let http = stats.ok_with_prefix("http");
    let grpc = events.map(|e| e.ok_with_prefix("grpc")).unwrap_or(0) + stats.ok_with_prefix("grpc");
    move |name: &str| match name {
        "service" => http,
        "handler" => grpc,
        _ => http + grpc,
    }
}

/// Every claim answered 200 must have marked exactly one row claimed.
async fn check_claims(args: &Args, stats: &Stats) -> anyhow::Result<Value> {
    let pool = verify::database(args, 1).await?;
    let claimed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM user_goal_progress WHERE claimed_at IS NOT NULL")
            .fetch_one(&pool)
            .await?;
    let ok = stats.ok_with_prefix("http:claim") as i64;
    let before = args.get_usize("claimed-before", 0)? as i64;
    let any_ok = stats.ok_with_prefix("http") > 0;
    let valid = claimed - before == ok && any_ok;
    Ok(json!({
        "valid": valid,
        "problems": if !any_ok {
            vec!["no HTTP request succeeded".to_string()]
        } else if valid {
            vec![]
        } else {
            vec![format!("{ok} claims answered 200 but {} rows newly claimed", claimed - before)]
        },
        "claims_ok": ok,
        "claimed_rows": claimed,
    }))
}

pub async fn run_s1(args: &Args) -> anyhow::Result<()> {
    let users = args.get_usize("users", 10_000)?;
    let api = Api::new(args, users)?;
    let plan = plan_from(args, 300.0)?;
    let stats = Arc::new(Stats::default());
    let watch = procstat::Watch::start(&args.pids());
    let mut rng = StdRng::seed_from_u64(args.get_usize("seed", 42)? as u64);
    let claim_share = args.get_f64("claim-share", 0.10)?;
    let set_share = args.get_f64("set-active-share", 0.10)?;
    let active_share = args.get_f64("active-only-share", 0.40)?;
    let elapsed = openloop::run(&plan, stats.clone(), |_| {
        let user = rng.random_range(0..users);
        let x: f64 = rng.random();
        if x < claim_share {
            api.claim()
        } else if x < claim_share + set_share {
            api.set_active(&mut rng, user)
        } else if x < claim_share + set_share + active_share {
            api.list(user, true)
        } else {
            api.list(user, false)
        }
    })
    .await;
    let cpu = watch.finish(elapsed.as_secs_f64(), ops_for(&stats, None));
    let validity = check_claims(args, &stats).await?;
    let doc = json!({
        "scenario": args.get_str("label", "S1 api"),
        "plan": plan.describe(), "users": users,
        "result": stats.summary(elapsed), "process": cpu, "validity": validity,
    });
    report::emit(args, &doc)?;
    verify::fail_if_invalid(&doc)
}

/// Events alongside an HTTP scenario, on their own open-loop schedule.
async fn events_alongside(
    args: &Args,
    ledger: Arc<Ledger>,
    stats: Arc<Stats>,
) -> anyhow::Result<Option<Duration>> {
    let eps = args.get_f64("eps", 0.0)?;
    if eps <= 0.0 {
        return Ok(None);
    }
    let client = EventClient::connect(
        &args.get_str("grpc", "127.0.0.1:6565"),
        args.get_usize("connections", 4)?,
        &args.get_str("namespace", "bench"),
        ledger,
    )
    .await?;
    let mut plan = Plan::constant(
        eps,
        args.get_secs("duration", 20.0)?,
        args.get_usize("event-max-in-flight", 500)?,
    );
    plan.drain = args.get_secs("drain", 30.0)?;
    let mut rng = StdRng::seed_from_u64(args.get_usize("seed", 42)? as u64 + 1);
    Ok(Some(
        openloop::run(&plan, stats, |i| client.next(i, &mut rng, 0.2)).await,
    ))
}

pub async fn run_s3(args: &Args) -> anyhow::Result<()> {
    let users = args.get_usize("users", 10_000)?;
    let api = Api::new(args, users)?;
    let plan = plan_from(args, 300.0)?;
    let stats = Arc::new(Stats::default());
    let ev_stats = Arc::new(Stats::default());
    let ledger = Arc::new(Ledger::new(users, layout::Layout::Reference));
    let base = verify::baseline(args).await?;
    let run_start = chrono::Utc::now();
    let watch = procstat::Watch::start(&args.pids());
    let mut rng = StdRng::seed_from_u64(args.get_usize("seed", 42)? as u64);
    let http = openloop::run(&plan, stats.clone(), |_| {
        let user = rng.random_range(0..users);
        let x: f64 = rng.random();
        if x < 0.10 {
            api.initialize(user)
        } else if x < 0.25 {
            api.set_active(&mut rng, user)
        } else if x < 0.30 {
            api.claim()
        } else {
            api.list(user, false)
        }
    });
    let (elapsed, ev_elapsed) = tokio::join!(
        http,
        events_alongside(args, ledger.clone(), ev_stats.clone())
    );
    let ev_elapsed = ev_elapsed?;
    let cpu = watch.finish(elapsed.as_secs_f64(), ops_for(&stats, Some(&ev_stats)));
    let validity = verify::check_from(args, &ledger, run_start, &base).await?;
    let claims = check_claims(args, &stats).await?;
    let doc = json!({
        "scenario": args.get_str("label", "S3 combined"),
        "plan": plan.describe(), "eps": args.get_f64("eps", 0.0)?, "users": users,
        "result": stats.summary(elapsed),
        "events": ev_elapsed.map(|e| ev_stats.summary(e)),
        "thresholds_reference_m3": thresholds(&stats, &ev_stats),
        "process": cpu, "validity": validity, "claims": claims,
    });
    report::emit(args, &doc)?;
    verify::fail_if_invalid(&doc)
}

/// The reference's M3 combined-run thresholds (M3_LOADTEST_RESULTS.md §2.1, gameplay phase):
/// reported as pass/fail, never asserted.
fn thresholds(http: &Stats, events: &Stats) -> Value {
    let s = http.summary(Duration::from_secs(1));
    let e = events.summary(Duration::from_secs(1));
    let p95 = |doc: &Value, op: &str| doc["ops"][op]["p95_ms"].as_f64();
    let mut out = serde_json::Map::new();
    for (op, limit) in [
        ("http:initialize", 50.0),
        ("http:list", 200.0),
        ("http:set_active", 100.0),
        ("http:claim", 200.0),
    ] {
        if let Some(v) = p95(&s, op) {
            out.insert(
                format!("{op} p95<{limit}ms"),
                json!({"p95_ms": v, "pass": v < limit}),
            );
        }
    }
    let ev_p95 = e["all"]["p95_ms"].as_f64().unwrap_or(0.0);
    out.insert(
        "grpc p95<500ms".into(),
        json!({"p95_ms": ev_p95, "pass": ev_p95 < 500.0}),
    );
    let total = (s["ok"].as_u64().unwrap_or(0) + s["errors"].as_u64().unwrap_or(0)).max(1);
    let fail = s["errors"].as_u64().unwrap_or(0) as f64 / total as f64;
    out.insert(
        "http_req_failed<1%".into(),
        json!({"rate": fail, "pass": fail < 0.01}),
    );
    Value::Object(out)
}

pub async fn run_s4(args: &Args) -> anyhow::Result<()> {
    let users = args.get_usize("users", 10_000)?;
    let api = Api::new(args, users)?;
    let plan = plan_from(args, 20.0)?;
    let stats = Arc::new(Stats::default());
    let ledger = Arc::new(Ledger::new(users, layout::Layout::Reference));
    let events = EventClient::connect(
        &args.get_str("grpc", "127.0.0.1:6565"),
        args.get_usize("connections", 4)?,
        &args.get_str("namespace", "bench"),
        ledger.clone(),
    )
    .await?;
    let events_per_session = args.get_usize("events-per-session", 20)?;
    let run_start = chrono::Utc::now();
    let watch = procstat::Watch::start(&args.pids());
    let mut rng = StdRng::seed_from_u64(args.get_usize("seed", 42)? as u64);
    let step_stats = stats.clone();
    let ev_seq = Arc::new(AtomicU64::new(0));
    let elapsed = openloop::run(&plan, stats.clone(), |_| {
        // A session: initialize, list, pick goals (batch or random), play (events), list, claim.
        let user = rng.random_range(0..users);
        let mut steps: Vec<(&'static str, BoxFut)> =
            vec![api.initialize(user), api.list(user, true)];
        steps.push(if rng.random_bool(0.5) {
            api.batch_select(&mut rng, user)
        } else {
            api.random_select(&mut rng, user)
        });
        for _ in 0..events_per_session {
            let is_login = rng.random_bool(0.1);
            let code = if is_login { 0 } else { rng.random_range(1..5) };
            let (op, f) =
                events.event(ev_seq.fetch_add(1, Ordering::Relaxed), user, is_login, code);
            steps.push((op, Box::pin(f)));
        }
        steps.push(api.list(user, false));
        steps.push(api.claim());
        let st = step_stats.clone();
        let fut: BoxFut = Box::pin(async move {
            let mut failed = None;
            for (op, f) in steps {
                let t = Instant::now();
                let r = f.await;
                if let Err(e) = &r {
                    failed.get_or_insert_with(|| format!("{op}:{e}"));
                }
                st.record(op, t.elapsed(), r);
            }
            failed.map_or(Ok(()), Err)
        });
        ("session", fut)
    })
    .await;
    let cpu = watch.finish(elapsed.as_secs_f64(), ops_for(&stats, None));
    let validity = verify::check(args, &ledger, run_start).await?;
    let doc = json!({
        "scenario": args.get_str("label", "S4 sessions"),
        "plan": plan.describe(), "events_per_session": events_per_session, "users": users,
        "result": stats.summary(elapsed), "process": cpu, "validity": validity,
    });
    report::emit(args, &doc)?;
    verify::fail_if_invalid(&doc)
}

/// Initialize-only ramp over users that have no rows yet (`--user-offset` past the seeded ones).
pub async fn run_init_ramp(args: &Args) -> anyhow::Result<()> {
    let offset = args.get_usize("user-offset", 1_000_000)?;
    let api = Api::new(args, 1)?;
    let plan = plan_from(args, 100.0)?;
    let stats = Arc::new(Stats::default());
    let watch = procstat::Watch::start(&args.pids());
    let elapsed = openloop::run(&plan, stats.clone(), |i| {
        api.initialize(offset + i as usize)
    })
    .await;
    let cpu = watch.finish(elapsed.as_secs_f64(), ops_for(&stats, None));
    let url = args.get_str(
        "database-url",
        "postgres://postgres@127.0.0.1:5432/bench_loadgen",
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let fresh: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT user_id) FROM user_goal_progress WHERE user_id >= $1",
    )
    .bind(layout::user_id(offset))
    .fetch_one(&pool)
    .await?;
    let ok = stats.ok_with_prefix("http:initialize") as i64;
    let valid = ok == 0 || fresh >= ok;
    let doc = json!({
        "scenario": args.get_str("label", "initialize ramp"),
        "plan": plan.describe(),
        "result": stats.summary(elapsed), "process": cpu,
        "validity": {"valid": valid && ok > 0, "initialized_ok": ok, "users_with_rows": fresh,
            "problems": if ok == 0 { vec!["no initialize succeeded"] } else if valid { vec![] } else { vec!["fewer users have rows than initialize calls succeeded"] }},
    });
    report::emit(args, &doc)?;
    verify::fail_if_invalid(&doc)
}

/// Open-loop GET of one URL: the HTTP ceilings, and ad-hoc probes.
pub async fn run_http_url(args: &Args) -> anyhow::Result<()> {
    let url = args.get_str("url", "http://127.0.0.1:18080/tiny");
    let users = args.get_usize("users", 10_000)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .tcp_nodelay(true)
        .build()?;
    let plan = plan_from(args, 1000.0)?;
    let stats = Arc::new(Stats::default());
    let watch = procstat::Watch::start(&args.pids());
    let mut rng = StdRng::seed_from_u64(7);
    let elapsed = openloop::run(&plan, stats.clone(), |_| {
        let req = http.get(&url).header(
            "x-mock-user-id",
            layout::user_id(rng.random_range(0..users)),
        );
        let fut: BoxFut = Box::pin(async move {
            let resp = req.send().await.map_err(|_| "connect/io".to_string())?;
            let status = resp.status();
            let _ = resp.bytes().await.map_err(|_| "body".to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("http_{}", status.as_u16()))
            }
        });
        ("http:get", fut)
    })
    .await;
    let cpu = watch.finish(elapsed.as_secs_f64(), ops_for(&stats, None));
    let doc = json!({
        "scenario": args.get_str("label", "http get"), "url": url,
        "plan": plan.describe(), "result": stats.summary(elapsed), "process": cpu,
    });
    report::emit(args, &doc)
}
