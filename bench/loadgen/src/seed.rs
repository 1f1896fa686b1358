//! Deterministic, fast seeding: one `COPY … FROM STDIN` stream (sqlx `copy_in_raw`).

use std::time::Instant;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::args::Args;
use crate::layout::{self, Kind, Layout};

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let url = args.get_str(
        "database-url",
        "postgres://postgres@127.0.0.1:5432/bench_loadgen",
    );
    let users = args.get_usize("users", 10_000)?;
    let layout = Layout::from_args(args)?;
    let challenges = args
        .get_usize("challenges-per-user", layout.challenges())?
        .min(layout.challenges());
    let namespace = args.get_str("namespace", "bench");
    let opts: PgConnectOptions = url.parse().context("--database-url")?;

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts.clone())
        .await?;
    // Hash partitions by user (migration 0012): --partitions, else DB_PARTITIONS, else none.
    let default_partitions = std::env::var("DB_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(extend_challenge_common::store::partitions::DEFAULT_PARTITIONS as usize);
    let partitions =
        u16::try_from(args.get_usize("partitions", default_partitions)?).context("--partitions")?;
    extend_challenge_common::store::partitions::migrate_with(&pool, partitions)
        .await
        .context("migrate")?;
    sqlx::query("TRUNCATE user_goal_progress")
        .execute(&pool)
        .await?;
    pool.close().await;

    let started = Instant::now();
    let mut conn = PgConnection::connect_with(&opts).await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, \
             completed_at, is_active, assigned_at) FROM STDIN",
        )
        .await?;
    let now = "2026-01-01 00:00:00+00";
    let mut buf = String::with_capacity(1 << 20);
    let mut rows = 0u64;
    for u in 0..users {
        let uid = layout::user_id(u);
        for j in 0..challenges {
            let cid = layout.challenge_id(j);
            for k in 0..layout.goals_per_challenge() {
                let gid = layout.goal_id(j, k);
                let (progress, status, completed, active) = match layout.goal(j, k).kind {
                    Kind::Claim => (layout::CLAIM_TARGET, "completed", now, "t"),
                    Kind::Toggle => (0, "not_started", "\\N", "f"),
                    Kind::Checked => (0, "not_started", "\\N", "t"),
                };
                buf.push_str(&format!(
                    "{uid}\t{gid}\t{cid}\t{namespace}\t{progress}\t{status}\t{completed}\t{active}\t{now}\n"
                ));
                rows += 1;
            }
        }
        if buf.len() > (1 << 20) - 4096 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_bytes()).await?;
    }
    let copied = copy.finish().await?;
    sqlx::query("ANALYZE user_goal_progress")
        .execute(&mut conn)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {copied} rows ({rows} generated) for {users} users × {challenges} challenges (layout {}) in {secs:.1} s ({:.0} rows/s)",
        layout.name(),
        copied as f64 / secs
    );
    anyhow::ensure!(copied == rows, "COPY stored {copied} rows, expected {rows}");
    Ok(())
}
