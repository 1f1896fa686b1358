//! Everything the Extend Challenge event handler and service share.
//!
//! - [`pb`]: generated protobuf/gRPC code (AccelByte async-API events, the player API).
//! - [`config`]: the `challenges.json` model, loader and validator.
//! - [`progress`]: the progress rules as pure functions (no I/O).
//! - [`rotation`]: UTC rotation periods.
//! - [`store`]: every SQL statement and the embedded migrations.
//! - [`settings`]: typed environment settings; [`telemetry`], [`metrics`], [`ops`]: logs,
//!   Prometheus metrics, `/metrics` `/healthz` `/livez` and gRPC health.
//! - [`startup`]: what both binaries do at start-up: migrations that wait for Postgres, the
//!   shutdown signal, the capped backoff, gRPC reflection.

pub mod clock;
pub mod config;
pub mod grpc_end;
pub mod live_catalog;
pub mod metrics;
pub mod migrations;
pub mod ops;
pub mod pb;
pub mod progress;
pub mod rotation;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
