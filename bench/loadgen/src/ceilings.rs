//! Ceilings measured on the same machine in the same run: what the transport alone and
//! Postgres alone can do, so our binaries' figures read as ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn,
    user_authentication_user_logged_in_service_server::{
        UserAuthenticationUserLoggedInService, UserAuthenticationUserLoggedInServiceServer,
    },
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItemUpdated,
    statistic_stat_item_updated_service_server::{
        StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
    },
};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tonic::{Request, Response, Status};

use crate::args::Args;
use crate::layout::{self, CLAIM_FROM, GOALS_PER_CHALLENGE};
use crate::report;

/// A body the size of a 500-goal list response (176 KB).
const BIG_BODY_BYTES: usize = 176 * 1024;

pub async fn serve_http(args: &Args) -> anyhow::Result<()> {
    let port = args.get_usize("port", 18080)?;
    let lifetime = args.get_secs("lifetime", 900.0)?;
    let big = bytes::Bytes::from(
        std::iter::repeat_n(
            b"{\"goalId\":\"bench-c00-g00\",\"progress\":0},".as_slice(),
            BIG_BODY_BYTES / 40,
        )
        .flatten()
        .copied()
        .collect::<Vec<u8>>(),
    );
    let app = axum::Router::new()
        .route("/tiny", axum::routing::get(|| async { "ok" }))
        .route(
            "/big",
            axum::routing::get(move || {
                let b = big.clone();
                async move { ([("content-type", "application/json")], b) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16)).await?;
    println!("ceiling HTTP server on 127.0.0.1:{port} (/tiny, /big), exits after {lifetime:?}");
    tokio::select! {
        r = axum::serve(listener, app) => r?,
        _ = tokio::time::sleep(lifetime) => {}
    }
    Ok(())
}

/// The no-op server, counting the calls it answered (`--count-port`: `GET /calls` answers
/// `{"login":n,"stat":n}`, so a client that cannot see gRPC statuses, such as h2load, can be
/// checked against what the server really handled).
#[derive(Clone, Default)]
struct Noop {
    login: Arc<AtomicU64>,
    stat: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl UserAuthenticationUserLoggedInService for Noop {
    async fn on_message(&self, _r: Request<UserLoggedIn>) -> Result<Response<()>, Status> {
        self.login.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for Noop {
    async fn on_message(&self, _r: Request<StatItemUpdated>) -> Result<Response<()>, Status> {
        self.stat.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(()))
    }
}

pub async fn serve_grpc(args: &Args) -> anyhow::Result<()> {
    let port = args.get_usize("port", 18565)?;
    let lifetime = args.get_secs("lifetime", 900.0)?;
    let addr = format!("127.0.0.1:{port}").parse()?;
    let noop = Noop::default();
    if let Some(cport) = args.opt("count-port") {
        let cport: u16 = cport.parse().context("--count-port")?;
        let n = noop.clone();
        let app = axum::Router::new().route(
            "/calls",
            axum::routing::get(move || {
                let (login, stat) = (
                    n.login.load(Ordering::Relaxed),
                    n.stat.load(Ordering::Relaxed),
                );
                async move { axum::Json(json!({"login": login, "stat": stat})) }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cport)).await?;
        println!("calls answered: GET http://127.0.0.1:{cport}/calls");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    println!("ceiling no-op OnMessage gRPC server on {addr}, exits after {lifetime:?}");
    tonic::transport::Server::builder()
        .add_service(UserAuthenticationUserLoggedInServiceServer::new(
            noop.clone(),
        ))
        .add_service(StatisticStatItemUpdatedServiceServer::new(noop))
        .serve_with_shutdown(addr, tokio::time::sleep(lifetime))
        .await?;
    Ok(())
}

/// `grpc-body --out FILE`: one framed gRPC request body (flag, length, protobuf) of a stat
/// event as `events` builds it (user 0, the layout's first stat code, value 1), for h2load's
/// `-d` (bench/h2load.sh).
pub fn grpc_body(args: &Args) -> anyhow::Result<()> {
    let layout = layout::Layout::from_args(args)?;
    let msg = crate::events::stat_event(
        "bench-h2load-0".into(),
        &args.get_str("namespace", "bench"),
        layout::user_id(0),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        layout.code_name(1),
        1,
    );
    let body = crate::events::grpc_frame(&msg);
    let out = args.get_str("out", "grpc-body.bin");
    std::fs::write(&out, &body).with_context(|| format!("write {out}"))?;
    println!(
        "{out}: {} bytes (gRPC frame of a StatItemUpdated)",
        body.len()
    );
    Ok(())
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds")
}

fn lat(h: &Histogram<u64>) -> Value {
    json!({
        "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    })
}

/// Postgres alone through bare sqlx: batched `UPDATE … FROM unnest` rows/s (the shape of a
/// flush) and the read of all 500 rows of one user (the shape of a GET list). Closed loop:
/// each client issues its next statement as soon as the previous one returns.
/// The updates touch only the claim goals, so later validity checks stay exact.
pub async fn pg(args: &Args) -> anyhow::Result<()> {
    let url = args.get_str(
        "database-url",
        "postgres://postgres@127.0.0.1:5432/bench_loadgen",
    );
    let users = args.get_usize("users", 10_000)?;
    let secs = args.get_secs("duration", 10.0)?;
    let batch = args.get_usize("batch", 1000)?;
    let writers = args.get_usize("writers", 2)?;
    let readers = args.get_usize("readers", 4)?;
    let pool = PgPoolOptions::new()
        .max_connections((writers + readers) as u32)
        .connect(&url)
        .await
        .context("pg-ceiling: connect")?;

    // 1. Batched updates; each writer owns a disjoint slice of users and sorts its keys, so
    // writers never wait on each other's row locks.
    let rows_done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let deadline = Instant::now() + secs;
    for w in 0..writers {
        let pool = pool.clone();
        let rows_done = rows_done.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut h = hist();
            while Instant::now() < deadline {
                let mut keys: Vec<(String, String)> = (0..batch)
                    .map(|_| {
                        let u = rng.random_range(0..users / writers) * writers + w;
                        let j = rng.random_range(0..layout::CHALLENGES);
                        let k = rng.random_range(CLAIM_FROM..GOALS_PER_CHALLENGE);
                        (layout::user_id(u), layout::goal_id(j, k))
                    })
                    .collect();
                keys.sort();
                keys.dedup();
                let (us, gs): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
                let incs = vec![1i32; us.len()];
                let t = Instant::now();
                let r = sqlx::query(
                    "UPDATE user_goal_progress AS t SET progress = t.progress + d.inc, updated_at = NOW() \
                     FROM unnest($1::text[], $2::text[], $3::int[]) AS d(user_id, goal_id, inc) \
                     WHERE t.user_id = d.user_id AND t.goal_id = d.goal_id",
                )
                .bind(&us)
                .bind(&gs)
                .bind(&incs)
                .execute(&pool)
                .await?;
                h.saturating_record(t.elapsed().as_micros() as u64);
                rows_done.fetch_add(r.rows_affected(), Ordering::Relaxed);
            }
            anyhow::Ok(h)
        }));
    }
    let mut uh = hist();
    for t in tasks {
        uh.add(&t.await??).ok();
    }
    let update_rows_per_s = rows_done.load(Ordering::Relaxed) as f64 / secs.as_secs_f64();

    // 2. All rows of one user, as the service reads them for a list.
    let queries = Arc::new(AtomicU64::new(0));
    let rows_read = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + secs;
    let mut tasks = Vec::new();
    for r in 0..readers {
        let pool = pool.clone();
        let (queries, rows_read) = (queries.clone(), rows_read.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + r as u64);
            let mut h = hist();
            while Instant::now() < deadline {
                let t = Instant::now();
                let rows = sqlx::query(
                    "SELECT user_id, goal_id, challenge_id, namespace, progress, status, completed_at, \
                     claimed_at, created_at, updated_at, is_active, assigned_at, expires_at, baseline_value \
                     FROM user_goal_progress WHERE user_id = $1",
                )
                .bind(layout::user_id(rng.random_range(0..users)))
                .fetch_all(&pool)
                .await?;
                h.saturating_record(t.elapsed().as_micros() as u64);
                queries.fetch_add(1, Ordering::Relaxed);
                rows_read.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(h)
        }));
    }
    let mut rh = hist();
    for t in tasks {
        rh.add(&t.await??).ok();
    }
    let q = queries.load(Ordering::Relaxed) as f64;
    let doc = json!({
        "scenario": "ceiling: Postgres via bare sqlx",
        "update_unnest": {"batch": batch, "writers": writers, "rows_per_s": update_rows_per_s, "batch_latency": lat(&uh)},
        "read_user_rows": {"readers": readers, "queries_per_s": q / secs.as_secs_f64(),
            "rows_per_query": rows_read.load(Ordering::Relaxed) as f64 / q.max(1.0), "latency": lat(&rh)},
    });
    report::emit(args, &doc)?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::server::NamedService;

    #[test]
    fn the_event_paths_are_the_generated_services() {
        type Login = UserAuthenticationUserLoggedInServiceServer<Noop>;
        type Stat = StatisticStatItemUpdatedServiceServer<Noop>;
        assert_eq!(
            crate::events::LOGIN_PATH,
            format!("/{}/OnMessage", Login::NAME)
        );
        assert_eq!(
            crate::events::STAT_PATH,
            format!("/{}/OnMessage", Stat::NAME)
        );
    }

    /// The raw HTTP/2 client against the tonic no-op server: every call is `OK` and the
    /// server counted each one under its own method.
    #[tokio::test]
    async fn raw_h2_events_reach_the_tonic_server() {
        let noop = Noop::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = noop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(UserAuthenticationUserLoggedInServiceServer::new(
                    server.clone(),
                ))
                .add_service(StatisticStatItemUpdatedServiceServer::new(server))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        let ledger = Arc::new(crate::events::Ledger::new(10, layout::Layout::Reference));
        let client =
            crate::events::EventClient::connect(&addr.to_string(), 2, "bench", ledger.clone())
                .await
                .unwrap();
        for i in 0..20u64 {
            let (_, f) = client.event(i, (i % 10) as usize, i % 4 == 0, 1 + (i % 4) as usize);
            f.await.unwrap();
        }
        assert_eq!(noop.login.load(Ordering::Relaxed), 5);
        assert_eq!(noop.stat.load(Ordering::Relaxed), 15);
        assert_eq!(ledger.acked_total.load(Ordering::Relaxed), 20);
    }
}
