//! The operations side both binaries serve on `METRICS_PORT` (8080): `/metrics`, `/healthz`
//! (503 while Postgres is unreachable; never needs a token) and `/livez` (200 while the
//! process runs, so a liveness probe does not restart pods during a database outage); and
//! the gRPC health service, kept in step with the same database check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// Database-backed health, shared by `/healthz` and grpc.health.v1.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    pool: PgPool,
    serving: AtomicBool,
    reporter: HealthReporter,
    services: Vec<String>,
    /// The catalog version served, shown in `/healthz`'s body (CONTRACT §9).
    catalog_version: std::sync::OnceLock<Arc<dyn Fn() -> i64 + Send + Sync>>,
}

impl Health {
    /// `services` are the gRPC service names reported (the empty name "" — overall health —
    /// is always included). Starts NOT_SERVING until the first check passes.
    pub fn new(pool: PgPool, services: &[&str]) -> (Health, HealthServer<HealthService>) {
        let reporter = HealthReporter::new();
        let server = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let mut names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
        names.push(String::new());
        let health = Health {
            inner: Arc::new(HealthInner {
                pool,
                serving: AtomicBool::new(false),
                reporter,
                services: names,
                catalog_version: std::sync::OnceLock::new(),
            }),
        };
        (health, server)
    }

    /// Shows `version()` as `catalogVersion` in `/healthz`'s body (set once).
    pub fn show_catalog_version(&self, version: impl Fn() -> i64 + Send + Sync + 'static) {
        let _ = self.inner.catalog_version.set(Arc::new(version));
    }

    /// The catalog version shown in `/healthz`, if one is set.
    pub fn catalog_version(&self) -> Option<i64> {
        self.inner.catalog_version.get().map(|v| v())
    }

    pub fn is_serving(&self) -> bool {
        self.inner.serving.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Pings Postgres now and updates both health surfaces. Returns the new state.
    pub async fn check_now(&self) -> bool {
        let ok = tokio::time::timeout(Duration::from_secs(2), crate::store::ping(&self.inner.pool))
            .await
            .unwrap_or(false);
        let was = self.inner.serving.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!("database reachable: SERVING");
            } else {
                tracing::warn!("database unreachable: NOT_SERVING");
            }
        }
        let status = if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &self.inner.services {
            self.inner.reporter.set_service_status(name, status).await;
        }
        ok
    }

    /// Re-checks every `interval` until `shutdown` fires.
    pub fn spawn_watcher(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            loop {
                health.check_now().await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

/// `/metrics`, `/healthz`, `/livez`.
pub fn ops_router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { (StatusCode::OK, "ok") }))
        .with_state(health)
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

async fn healthz(axum::extract::State(health): axum::extract::State<Health>) -> impl IntoResponse {
    let (code, status) = if health.is_serving() {
        (StatusCode::OK, "healthy")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    let mut body = serde_json::json!({ "status": status });
    if let Some(v) = health.catalog_version() {
        body["catalogVersion"] = v.into();
    }
    (code, axum::Json(body))
}

/// Serves [`ops_router`] on `listener` until `shutdown` fires.
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, ops_router(health))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
