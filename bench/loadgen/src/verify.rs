//! The validity check that ends every run touching the event handler: the expected progress
//! is recomputed from the events actually acknowledged and compared with Postgres.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

use crate::args::Args;
use crate::events::Ledger;
use crate::layout::{self, Kind, Mode};

/// Progress of the rows that had any before a run, for `--baseline true` (the soak's
/// minute-long runs on one database): the check then compares each row's progress *gained
/// during the run* with what the run acknowledged. Absolute-mode rows are not checked then
/// (their value carries over between runs).
pub type Baseline = std::collections::HashMap<(String, String), i32>;

/// A small pool on the benchmark database (`--database-url`), for the checks.
pub async fn database(args: &Args, connections: u32) -> anyhow::Result<sqlx::PgPool> {
    let url = args.get_str(
        "database-url",
        "postgres://postgres@127.0.0.1:5432/bench_loadgen",
    );
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url)
        .await
        .with_context(|| format!("connect {url}"))
}

/// Reads the [`Baseline`] when `--baseline true`, else an empty one.
pub async fn baseline(args: &Args) -> anyhow::Result<Baseline> {
    if args.get_str("baseline", "false") != "true" {
        return Ok(Baseline::new());
    }
    let pool = database(args, 1).await?;
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT user_id, goal_id, progress FROM user_goal_progress WHERE progress > 0",
    )
    .fetch_all(&pool)
    .await?;
    Ok(rows.into_iter().map(|(u, g, p)| ((u, g), p)).collect())
}

pub async fn check(
    args: &Args,
    ledger: &Ledger,
    run_start: DateTime<Utc>,
) -> anyhow::Result<Value> {
    check_from(args, ledger, run_start, &Baseline::new()).await
}

pub async fn check_from(
    args: &Args,
    ledger: &Ledger,
    run_start: DateTime<Utc>,
    base: &Baseline,
) -> anyhow::Result<Value> {
    let with_baseline = args.get_str("baseline", "false") == "true";
    use std::sync::atomic::Ordering::Relaxed;
    let namespace = args.get_str("namespace", "bench");
    let pool = database(args, 2).await?;

    // Buffered mode acknowledges before writing, and one flush can take seconds under
    // overload: wait until the table has not changed for `--settle-quiet` seconds.
    let started = std::time::Instant::now();
    let max_wait = args.get_secs("settle", 90.0)?;
    let quiet = args.get_secs("settle-quiet", 5.0)?;
    let mut last: Option<(i64, i64)> = None;
    let mut stable_since = std::time::Instant::now();
    loop {
        let now_state: (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(progress), 0)::BIGINT, COUNT(*) FILTER (WHERE updated_at >= $1) FROM user_goal_progress",
        )
        .bind(run_start)
        .fetch_one(&pool)
        .await?;
        if last != Some(now_state) {
            last = Some(now_state);
            stable_since = std::time::Instant::now();
        } else if stable_since.elapsed() >= quiet {
            break;
        }
        if started.elapsed() > max_wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle_secs = started.elapsed().as_secs_f64();

    let wrong_ns: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM user_goal_progress WHERE namespace <> $1")
            .bind(&namespace)
            .fetch_one(&pool)
            .await?;
    let changed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM user_goal_progress WHERE updated_at >= $1")
            .bind(run_start)
            .fetch_one(&pool)
            .await?;

    let mut checked = 0u64;
    let mut exact = 0u64;
    let mut within_unsure = 0u64;
    let mut lost = 0u64;
    let mut over = 0u64;
    let mut abs_checked = 0u64;
    let mut abs_inverted = 0u64;
    // Row updates the acknowledged events asked for on the checked rows: Σ acked events of
    // the row's (user, code) over every checked row, i.e. the rows each event wrote.
    let mut acked_row_updates = 0u64;
    let layout = ledger.layout;
    let mut examples = Vec::new();
    let mut rows = sqlx::query(
        "SELECT user_id, goal_id, progress, (created_at < $1) AS seeded FROM user_goal_progress",
    )
    .bind(run_start)
    .fetch(&pool);
    while let Some(row) = rows.try_next().await? {
        let user_id: String = row.get(0);
        let goal_id: String = row.get(1);
        let progress: i32 = row.get(2);
        let seeded: bool = row.get(3);
        let (Some(u), Some((j, k))) = (layout::parse_user(&user_id), layout.parse_goal(&goal_id))
        else {
            continue;
        };
        let goal = layout.goal(j, k);
        if !seeded || goal.kind != Kind::Checked || u >= ledger.users {
            continue;
        }
        let slot = u * ledger.codes + goal.code;
        let before = if with_baseline {
            base.get(&(user_id.clone(), goal_id.clone())).copied()
        } else {
            None
        };
        if with_baseline && goal.code != 0 && goal.mode == Mode::Absolute {
            continue;
        }
        let progress = (progress - before.unwrap_or(0)) as i64;
        let unsure = ledger.unsure[slot].load(Relaxed) as i64;
        acked_row_updates += ledger.acked[slot].load(Relaxed) as u64;
        if goal.code != 0 && goal.mode == Mode::Absolute {
            abs_checked += 1;
            let want = ledger.max_acked[slot].load(Relaxed) as i64;
            let sent = ledger.seq[slot].load(Relaxed) as i64;
            if progress > sent || (want > 0 && progress == 0) {
                over += (progress > sent) as u64;
                lost += (progress == 0) as u64;
                if examples.len() < 5 {
                    examples.push(json!({"user": user_id, "goal": goal_id, "db": progress, "max_acked": want, "max_sent": sent}));
                }
            } else if progress != want {
                abs_inverted += 1;
            }
            continue;
        }
        checked += 1;
        let want = ledger.acked[slot].load(Relaxed) as i64;
        if progress == want {
            exact += 1;
        } else if progress > want && progress <= want + unsure {
            within_unsure += 1;
        } else {
            if progress < want {
                lost += 1;
            } else {
                over += 1;
            }
            if examples.len() < 5 {
                examples.push(json!({"user": user_id, "goal": goal_id, "db": progress, "acked": want, "unsure": unsure}));
            }
        }
    }
    let acked = ledger.acked_total.load(Relaxed);
    let mut problems = Vec::new();
    if acked > 0 && changed == 0 {
        problems.push("events were acknowledged but no row changed".to_string());
    }
    if checked + abs_checked == 0 && acked > 0 {
        problems.push("no seeded checked rows found (wrong database?)".to_string());
    }
    if wrong_ns > 0 {
        problems.push(format!(
            "{wrong_ns} rows with a namespace other than {namespace:?}"
        ));
    }
    if lost > 0 {
        problems.push(format!(
            "{lost} rows below the acknowledged count (lost updates)"
        ));
    }
    if over > 0 {
        problems.push(format!("{over} rows above what was sent (double counting)"));
    }
    Ok(json!({
        "valid": problems.is_empty(),
        "problems": problems,
        "acked_events": acked,
        "settle_wait_s": settle_secs,
        "rows_changed_since_start": changed,
        "layout": layout.name(),
        "checked_row_updates_acked": acked_row_updates,
        "checked_rows_per_acked_event": if acked > 0 { acked_row_updates as f64 / acked as f64 } else { 0.0 },
        "count_rows_checked": checked,
        "count_rows_exact": exact,
        "count_rows_within_failed_calls": within_unsure,
        "absolute_rows_checked": abs_checked,
        "absolute_rows_not_at_max_acked": abs_inverted,
        "lost": lost,
        "over": over,
        "examples": examples,
    }))
}

/// A run whose validity check failed exits non-zero, after printing its report.
pub fn fail_if_invalid(doc: &Value) -> anyhow::Result<()> {
    match doc.get("validity") {
        Some(v) if v.get("valid") == Some(&Value::Bool(false)) => {
            bail!("INVALID RUN: {}", v["problems"])
        }
        _ => Ok(()),
    }
}
