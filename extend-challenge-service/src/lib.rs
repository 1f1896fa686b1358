//! The Extend Challenge player API (CONTRACT §3).
//!
//! - [`app`]: [`app::ChallengeService`], the one implementation of every RPC.
//! - [`grpc`], [`rest`]: thin transports over it; [`swagger`]: the API docs.
//! - [`catalog`]: the config prepared for fast responses; [`error`]: the error type.
//! - [`cleanup`]: retention cleanup of expired rows and erasure tombstones.
//! - [`client_token`]: the service's own AGS token (client credentials), shared by the
//!   reward client and the admin role look-ups.
//! - [`server`]: the lifecycle: [`server::Dependencies`] → [`server::Application::build`]
//!   binds every listener (port 0 gives an ephemeral port, for tests) →
//!   [`server::Application::run_until_stopped`] serves until the shutdown token fires.

pub mod admin_grpc;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod catalog_cli;
pub mod cleanup;
pub mod client_token;
pub mod error;
pub mod grpc;
pub mod http_serve;
pub mod rest;
pub mod rewards;
pub mod rows;
pub mod server;
pub mod swagger;
pub mod timefmt;
