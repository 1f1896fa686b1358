//! `extend-challenge-service`: reads the settings, wires the dependencies, serves until
//! SIGTERM or Ctrl-C.

use anyhow::Context as _;
use extend_challenge_common::settings::Settings;
use extend_challenge_common::telemetry;
use extend_challenge_service::{Application, Dependencies};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("reading settings")?;
    telemetry::init(&settings.log_level);
    let deps = Dependencies::from_settings(&settings).await?;
    let app = Application::build(&settings, deps).await?;
    tracing::info!(
        grpc = %app.grpc_addr(),
        http = %app.http_addr(),
        ops = %app.ops_addr(),
        base_path = %settings.base_path,
        "extend-challenge-service listening"
    );
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
