//! Wiring only: settings → logs → config → pool → migrations → build → run.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use extend_challenge_common::settings::Settings;
use extend_challenge_common::{config, store, telemetry};
use extend_challenge_event_handler::{Builder, startup};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
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
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log_level);
    let challenges = config::load_from_path(&settings.config_path)
        .with_context(|| format!("invalid challenge config {}", settings.config_path))?;
    tracing::info!(
        path = %settings.config_path,
        challenges = challenges.challenges.len(),
        goals = challenges.goal_count(),
        "challenge config loaded"
    );
    let shutdown = CancellationToken::new();
    startup::cancel_on_signal(shutdown.clone());

    let pool = store::connect_lazy(settings.db.clone(), settings.db_max_open_conns);
    if !startup::migrate_with_retry(&pool, &shutdown).await? {
        tracing::info!("shut down before the database became reachable");
        return Ok(());
    }
    let app = Builder::new(settings, Arc::new(challenges), pool)
        .build()
        .await?;
    tracing::info!(grpc = %app.grpc_addr(), metrics = %app.metrics_addr(), "event handler listening");
    app.run(shutdown).await?;
    Ok(())
}
