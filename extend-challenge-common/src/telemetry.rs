//! Logging: JSON lines on stdout, filtered by `LOG_LEVEL` (a level such as `info`, or a full
//! `tracing` filter such as `info,sqlx=warn`).

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber. Safe to call more than once (later calls are
/// no-ops), so tests that build several apps in one process do not fail.
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level)
        .or_else(|_| EnvFilter::try_new("info"))
        .expect("'info' is a valid filter");
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
}
