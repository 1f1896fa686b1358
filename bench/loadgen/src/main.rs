//! `loadgen`: the benchmark instrument for issue #5.
//!
//! Subcommands (all flags are `--name value`; every loop is bounded by `--duration`):
//! - `fixture`  write the deterministic 500-goal `challenges.json` (`--layout light`: the
//!   50-goal `challenges-light.json` where an event writes 1–2 rows; see layout.rs)
//! - `seed`     create the bench database, migrate, COPY users' rows
//! - `events`   S2: open-loop gRPC events (20 % login / 80 % stat), then the validity check
//! - `api`      S1: open-loop REST mix (list, list active_only, claim, set-active)
//! - `combined` S3: REST mix (10 % init / 15 % set-active / 5 % claim / 70 % list) + events
//! - `sessions` S4: realistic player sessions (init, select, events, claims)
//! - `init-ramp` initialize-only ramp over fresh users
//! - `http`     open-loop GET of one URL (ceilings)
//! - `verify`   the validity check alone, from a saved ledger
//! - `serve-http`, `serve-grpc`  trivial ceiling servers (`serve-grpc --count-port P`: the calls
//!   it answered, `GET /calls`); `pg-ceiling` bare-sqlx Postgres ceilings
//! - `grpc-body` one framed gRPC stat-event request body, for h2load (bench/h2load.sh)

mod api;
mod args;
mod ceilings;
mod events;
mod layout;
mod openloop;
mod procstat;
mod report;
mod seed;
mod verify;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args = args::Args::from_env()?;
    // `--threads 1`: tokio's current-thread runtime (no cross-thread wake-ups: the lightest
    // generator, for the no-op ceilings); otherwise a multi-thread runtime with that many workers.
    let threads = args.get_usize("threads", 2)?;
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder.enable_all().build().context("tokio runtime")?;
    rt.block_on(dispatch(args))
}

async fn dispatch(args: args::Args) -> anyhow::Result<()> {
    match args.command.as_str() {
        "fixture" => {
            let layout = layout::Layout::from_args(&args)?;
            layout::write_fixture(layout, &args.get_str("out", layout.default_fixture_path()))
        }
        "api" | "combined" | "sessions" | "init-ramp"
            if layout::Layout::from_args(&args)? != layout::Layout::Reference =>
        {
            bail!("--layout light is for S2 (seed, events, verify, fixture) only")
        }
        "seed" => seed::run(&args).await,
        "events" => events::run_s2(&args).await,
        "api" => api::run_s1(&args).await,
        "combined" => api::run_s3(&args).await,
        "sessions" => api::run_s4(&args).await,
        "init-ramp" => api::run_init_ramp(&args).await,
        "http" => api::run_http_url(&args).await,
        "serve-http" => ceilings::serve_http(&args).await,
        "serve-grpc" => ceilings::serve_grpc(&args).await,
        "grpc-body" => ceilings::grpc_body(&args),
        "pg-ceiling" => ceilings::pg(&args).await,
        other => {
            bail!("unknown subcommand {other:?}; see the module doc in bench/loadgen/src/main.rs")
        }
    }
}
