//! End-to-end harness for the Extend Challenge pair.
//!
//! A test starts the two real binaries as processes ([`stack::Stack`]) against a fresh
//! Postgres database ([`db::TestDb`]) and a fake AGS served over real HTTP
//! ([`ags::FakeAgs`]), then drives them only through their public interfaces: REST
//! ([`api::Api`]) and the platform's OnMessage gRPC calls ([`events::Events`]).

pub mod ags;
pub mod api;
pub mod build;
pub mod db;
pub mod events;
pub mod iam_models;
pub mod platform;
pub mod platform_models;
pub mod proxy;
pub mod stack;

pub use ags::FakeAgs;
pub use api::{Api, Reply};
pub use events::Events;
pub use platform::Platform;
pub use proxy::PgProxy;
pub use stack::{Stack, StackOptions};

/// The namespace both binaries are configured with (`AB_NAMESPACE`).
pub const NAMESPACE: &str = "e2e-test";

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Ok`, or panics with the last error after `timeout`.
/// For conditions that become true asynchronously (never to wait for a flush by time).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
