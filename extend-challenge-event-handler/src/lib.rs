//! The Extend Challenge event handler: AGS login and statistic events arrive over gRPC
//! (CONTRACT §2), become per (user, goal) deltas in a partitioned in-memory buffer and are
//! written to Postgres in set-based batches, one transaction each.
//!
//! - [`event`]: validation at the door (the proto messages → [`event::Event`]).
//! - [`engine`]: ingest (dedup, buffer, durable acknowledgement) and flush (workers,
//!   retries, shutdown drain).
//! - [`buffer`]: the partitioned buffer and its group-commit generations.
//! - [`dedup`]: cross-replica de-duplication: Redis leases, the Postgres event ledger.
//! - [`ledger`]: coalesced ledger look-ups at ingest.
//! - [`live`]: the live progress notifier (one statement per round trip, not per batch).
//! - [`dead_letters`]: the operator's `dead-letters list | replay` subcommand.
//! - [`grpc`]: the three OnMessage services.
//! - [`server`]: the lifecycle: build (bind listeners, wire) and run (serve, drain, final
//!   flush). Start-up before it (migrations, the signal) is `extend_challenge_common::startup`.
//!
//! ```no_run
//! # async fn example(settings: extend_challenge_common::settings::Settings,
//! #     config: std::sync::Arc<extend_challenge_common::config::ChallengeConfig>,
//! #     pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let app = extend_challenge_event_handler::server::Builder::new(settings, config, pool).build().await?;
//! let handle = app.handle(); // handle.flush_once().await drives a flush by hand
//! app.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```

pub mod buffer;
pub mod dead_letters;
pub mod dedup;
pub mod engine;
pub mod event;
pub mod grpc;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod server;
pub mod trail;
