//! `extend-challenge-service`: reads the settings, wires the dependencies, serves until
//! SIGTERM or Ctrl-C; or `migrate up | down [N] | status`, `--help`, `--version`.

/// mimalloc instead of the system allocator: allocation was a tenth or more of the
/// CPU profile (BENCHMARKS.md, issue 22).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use anyhow::Context as _;
use extend_challenge_common::settings::Settings;
use extend_challenge_common::{migrations, startup, store, telemetry};
use extend_challenge_service::catalog_cli;
use extend_challenge_service::server::{Application, Dependencies};
use tokio_util::sync::CancellationToken;

const HELP: &str = "\
extend-challenge-service: the Extend Challenge player API (gRPC, REST, Swagger UI).

usage:
  extend-challenge-service                    serve (gRPC GRPC_PORT=6565, REST HTTP_PORT=8000
                                              under BASE_PATH, /metrics /healthz /livez on
                                              METRICS_PORT=8080)
  extend-challenge-service migrate up [--partitions N] | down [N] | status
                                              run the database migrations on their own
  extend-challenge-service catalog validate | diff | apply [--dry-run] | history | rollback N
                                              the challenge catalog's versions, against the
                                              database (`catalog --help`)
  extend-challenge-service --help | --version

Configuration is read from the environment (README \"Configuration\", .env.example);
a bad value is a start-up error naming the variable.";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("extend-challenge-service {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("migrate") => return migrate(&args[1..]).await,
        Some("catalog") => return catalog(&args[1..]).await,
        Some(other) => {
            eprintln!("extend-challenge-service: unknown argument {other:?}\n\n{HELP}");
            return ExitCode::from(2);
        }
        None => {}
    }
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "extend-challenge-service failed");
            eprintln!("extend-challenge-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate up | down [N] | status`: exit 0 on success, 1 on a failure, 2 on bad usage.
async fn migrate(args: &[String]) -> ExitCode {
    let command = match migrations::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "extend-challenge-service migrate: {e}\n\n{}",
                migrations::USAGE
            );
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("extend-challenge-service migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = store::connect_lazy(settings.db.connect.clone(), 2);
    let mut out = std::io::stdout().lock();
    match migrations::run_with(&pool, command, settings.db.partitions, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "extend-challenge-service migrate: {e} (database {})",
                store::describe_target(&settings.db.connect)
            );
            ExitCode::FAILURE
        }
    }
}

/// `catalog …`: exit 0 done, 1 refused or failed, 2 bad usage.
async fn catalog(args: &[String]) -> ExitCode {
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("{}", catalog_cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let (command, json) = match catalog_cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "extend-challenge-service catalog: {e}\n\n{}",
                catalog_cli::USAGE
            );
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("extend-challenge-service catalog: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = store::connect_lazy(settings.db.connect.clone(), 2);
    let mut out = std::io::stdout().lock();
    match catalog_cli::run(&pool, command, json, &settings.config_path, &mut out).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!(
                "extend-challenge-service catalog: {e:#} (database {})",
                store::describe_target(&settings.db.connect)
            );
            ExitCode::FAILURE
        }
    }
}

/// How long the start waits for `DB_WARM_CONNS` connections to open.
const WARM_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("reading settings")?;
    let _telemetry = telemetry::init_with(&settings, "extend-challenge-service");
    let shutdown = CancellationToken::new();
    startup::cancel_on_signal(shutdown.clone());
    // One start-up shape for both binaries (docs/LIVE_OPS.md): settings, then the file,
    // pool, migrations and catalog (`startup::prepare`), then build, then run.
    let Some(prepared) = startup::prepare(&settings, &shutdown).await? else {
        tracing::info!("shut down before the database became reachable");
        return Ok(());
    };
    // DB_WARM_CONNS: open the pool's connections before the ports open, for at most
    // WARM_UP_LIMIT (a database slow to answer delays the start no longer than that).
    let warm = settings.db.warm_conns;
    if warm > 0 {
        match tokio::time::timeout(WARM_UP_LIMIT, store::warm_up(&prepared.pool, warm)).await {
            Ok(open) => tracing::debug!(open, "database connections opened at start"),
            Err(_) => tracing::debug!("database connections still opening; serving anyway"),
        }
    }
    let deps = Dependencies::from_prepared(&settings, prepared)?;
    let app = Application::build(&settings, deps).await?;
    tracing::info!(
        grpc = %app.grpc_addr(),
        http = %app.http_addr(),
        ops = %app.ops_addr(),
        base_path = %settings.base_path,
        "extend-challenge-service listening"
    );
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    app.run_until_stopped().await
}
