//! Wiring only: settings → logs → config → pool → migrations → build → run; or the
//! operator's `dead-letters` subcommand (see `dead_letters`), `--help`, `--version`.

/// mimalloc instead of the system allocator: allocation was a tenth or more of the
/// CPU profile (BENCHMARKS.md, issue 22).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Context as _;
use extend_challenge_common::settings::Settings;
use extend_challenge_common::startup::Prepared;
use extend_challenge_common::{config, startup, store, telemetry};
use extend_challenge_event_handler::dead_letters;
use extend_challenge_event_handler::server::Builder;
use tokio_util::sync::CancellationToken;

const HELP: &str = "\
extend-challenge-event-handler: AGS login and statistic events over gRPC -> challenge progress.

usage:
  extend-challenge-event-handler              serve (gRPC GRPC_PORT=6565: the AsyncAPI OnMessage
                                              services and accelbyte.EventHandler; /metrics
                                              /healthz /livez on METRICS_PORT=8080)
  extend-challenge-event-handler dead-letters list [--all] [--json] | replay (--id N | --all)
                                              updates the database refused (README \"Dead letters\")
  extend-challenge-event-handler --help | --version

Configuration is read from the environment (README \"Configuration\", .env.example);
a bad value is a start-up error naming the variable. Database migrations:
extend-challenge-service migrate (MIGRATE_ON_START=false skips them at start-up).";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dead-letters") => return dead_letters_tool(&args[1..]).await,
        Some("--help" | "-h" | "help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!(
                "extend-challenge-event-handler {}",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("extend-challenge-event-handler: unknown argument {other:?}\n\n{HELP}");
            return ExitCode::from(2);
        }
        None => {}
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "event handler failed");
            eprintln!("extend-challenge-event-handler: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // One start-up shape for both binaries (docs/LIVE_OPS.md): settings, then the file,
    // pool, migrations and catalog (`startup::prepare`), then build, then run.
    let settings = Settings::from_env()?;
    let _telemetry = telemetry::init_with(&settings, "extend-challenge-event-handler");
    let shutdown = CancellationToken::new();
    startup::cancel_on_signal(shutdown.clone());
    let Some(Prepared { pool, catalog }) = startup::prepare(&settings, &shutdown).await? else {
        tracing::info!("shut down before the database became reachable");
        return Ok(());
    };
    let app = Builder::new(settings, catalog.config, pool)
        .catalog_version(catalog.version)
        .build()
        .await?;
    tracing::info!(grpc = %app.grpc_addr(), metrics = %app.metrics_addr(), "event handler listening");
    app.run(shutdown).await?;
    Ok(())
}

async fn dead_letters_tool(args: &[String]) -> ExitCode {
    let command = match dead_letters::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "extend-challenge-event-handler: {e}\n{}",
                dead_letters::USAGE
            );
            return ExitCode::from(2);
        }
    };
    match run_dead_letters(command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("extend-challenge-event-handler dead-letters: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_dead_letters(command: dead_letters::Command) -> anyhow::Result<bool> {
    let settings = Settings::from_env()?;
    let pool = store::connect_lazy(settings.db.connect.clone(), 2);
    let mut out = std::io::stdout().lock();
    match command {
        dead_letters::Command::List {
            include_replayed,
            json,
        } => {
            dead_letters::list(&pool, include_replayed, json, &mut out).await?;
            Ok(true)
        }
        dead_letters::Command::Replay(target) => {
            // The active catalog version, as the serving replicas have it; the file only
            // when the database holds none.
            let challenges = match store::catalog::active(&pool).await? {
                Some(active) => config::parse_and_validate(
                    &format!("catalog version {}", active.version),
                    &active.content,
                )?,
                None => config::load_from_path(&settings.config_path).with_context(|| {
                    format!("invalid challenge config {}", settings.config_path)
                })?,
            };
            let ctx = dead_letters::ReplayContext {
                config: &challenges,
                auto_initialize: settings.handler.auto_initialize_on_event,
                now: settings.clock().now(),
                timeout: std::time::Duration::from_secs(30),
            };
            dead_letters::replay(&pool, target, &ctx, &mut out).await
        }
    }
}
