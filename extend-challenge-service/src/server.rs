//! The service's lifecycle, build separate from run: [`Dependencies::from_settings`] wires
//! what comes from outside (config, pool and migrations, reward client, authenticator; tests
//! build their own), [`Application::build`] binds every listener (port 0 gives an ephemeral
//! port, for tests) and assembles the service, and [`Application::run_until_stopped`] serves
//! gRPC, REST and ops until the shutdown token fires, then drains. The start-up pieces both
//! binaries share (migrations that wait for Postgres, the signal, reflection) are
//! `extend_challenge_common::startup`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::live_catalog::{self, Live};
use extend_challenge_common::metrics::{GrpcMetricsLayer, track_http};
use extend_challenge_common::ops::{self, Health};
use extend_challenge_common::settings::Settings;
use extend_challenge_common::startup::{self, Prepared};
use extend_challenge_common::telemetry::{GrpcTraceLayer, trace_http};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::ChallengeService;
use crate::auth::Authenticator;
use crate::client_token::ClientToken;
use crate::rewards::{self, RewardGranter};
use crate::{cleanup, grpc, http_serve, rest, swagger};

/// How often the database health is re-checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Everything the service needs from outside, so tests can substitute any part.
pub struct Dependencies {
    pub pool: PgPool,
    pub config: Arc<ChallengeConfig>,
    /// `Some(v)`: `config` is stored catalog version `v`, and the service follows the active
    /// version from then on (`live_catalog::watch`); `None`: `config` is served as it is.
    pub catalog_version: Option<i64>,
    pub granter: Arc<dyn RewardGranter>,
    pub auth: Authenticator,
    pub clock: Clock,
}

impl Dependencies {
    /// The production wiring around what start-up prepared (`startup::prepare`: the
    /// migrated pool, the catalog version to serve first): the reward client and the
    /// authenticator chosen by the settings.
    pub fn from_prepared(settings: &Settings, prepared: Prepared) -> anyhow::Result<Self> {
        let Prepared { pool, catalog } = prepared;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        // One client token for everything that calls AGS as the service.
        let token = ClientToken::from_settings(settings, http.clone());
        Ok(Dependencies {
            granter: rewards::from_settings(settings, http.clone(), token.clone()),
            auth: Authenticator::from_settings_with_token(settings, http, token),
            pool,
            config: catalog.config,
            catalog_version: Some(catalog.version),
            clock: settings.clock(),
        })
    }
}

/// A built, not yet serving, service: listeners bound, state assembled.
pub struct Application {
    grpc: TcpListener,
    http: TcpListener,
    ops: TcpListener,
    service: ChallengeService,
    auth: Authenticator,
    health: Health,
    health_server:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    base_path: String,
    reconcile_interval: Duration,
    auto_claim_interval: Duration,
    /// `None` when `CLEANUP_ENABLED=false`.
    cleanup: Option<cleanup::Cleanup>,
    /// Follow the active catalog version (`Dependencies::catalog_version`).
    follow_catalog: bool,
    shutdown: CancellationToken,
}

impl Application {
    /// Binds `GRPC_PORT`, `HTTP_PORT` and `METRICS_PORT` on all interfaces (0 = any free
    /// port) and assembles the service.
    pub async fn build(settings: &Settings, deps: Dependencies) -> anyhow::Result<Self> {
        let bind = |port: u16| async move {
            TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("binding port {port}"))
        };
        extend_challenge_common::metrics::init_guide_metrics(&["grpc", "http"]);
        let grpc = bind(settings.ports.grpc).await?;
        let http = bind(settings.ports.http).await?;
        let ops = bind(settings.ports.metrics).await?;
        let (health, health_server) = Health::new(deps.pool.clone(), &["service.Service"]);
        let catalogs = Arc::new(match deps.catalog_version {
            Some(v) => {
                let live = Live::serving(v, deps.config.clone());
                if v == 0 {
                    live.import_when_reachable(settings.config_path.clone());
                }
                live
            }
            None => Live::fixed(0, deps.config.clone()),
        });
        {
            let catalogs = catalogs.clone();
            health.show_catalog_version(move || catalogs.version());
        }
        let cleanup = settings.cleanup.enabled.then(|| {
            cleanup::Cleanup::new(
                deps.pool.clone(),
                deps.clock.clone(),
                &deps.config,
                settings.cleanup.clone(),
            )
            .with_trail_retention(settings.live.trail_retention_days)
            .following(catalogs.clone())
        });
        let service = ChallengeService::with_catalogs(
            catalogs,
            deps.pool,
            deps.granter,
            deps.clock,
            settings.ags.namespace.clone(),
        )
        .with_grant_settle(settings.rewards.grant_settle)
        .with_streams(settings.live.max_streams, settings.live.heartbeat);
        Ok(Application {
            grpc,
            http,
            ops,
            service,
            auth: deps.auth,
            health,
            health_server,
            base_path: settings.base_path.clone(),
            reconcile_interval: settings.rewards.reconcile_interval,
            auto_claim_interval: settings.rewards.auto_claim_interval,
            cleanup,
            follow_catalog: deps.catalog_version.is_some(),
            shutdown: CancellationToken::new(),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Cancelling this token stops the servers gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves gRPC, REST and ops until the shutdown token fires, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        self.health.check_now().await;
        let watcher = self.health.spawn_watcher(HEALTH_INTERVAL, shutdown.clone());
        let sampler = extend_challenge_common::metrics::spawn_db_pool_sampler(
            self.service.pool().clone(),
            HEALTH_INTERVAL,
            shutdown.clone(),
        );
        // Completes reward grants abandoned by a claim (one replica at a time).
        let reconciler = self
            .service
            .reconciler()
            .spawn(self.reconcile_interval, shutdown.clone());
        // Grants the rewards of completed autoClaim goals (one replica at a time).
        let auto_claimer = crate::app::auto_claim::AutoClaimer::new(self.service.clone())
            .spawn(self.auto_claim_interval, shutdown.clone());
        // Live progress: the database's notifications to this replica's streams.
        let listener = self
            .service
            .live()
            .clone()
            .spawn_listener(self.service.pool().clone(), shutdown.clone());
        // Deletes expired rows and old erasure tombstones (one replica at a time).
        let cleanup = self.cleanup.map(|c| c.spawn(shutdown.clone()));
        // Serves each newly applied catalog version (CONTRACT §9).
        let catalog_watch = self.follow_catalog.then(|| {
            live_catalog::watch(
                self.service.catalogs().clone(),
                self.service.pool().clone(),
                shutdown.clone(),
            )
        });

        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;
        let grpc_service = grpc::GrpcAdapter::new(self.service.clone(), self.auth.clone());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.grpc);
        let grpc_shutdown = shutdown.clone();
        let grpc_server = tonic::transport::Server::builder()
            .layer(GrpcTraceLayer)
            .layer(GrpcMetricsLayer)
            // Failures at DEBUG: a client error (AlreadyExists, NotFound, …) is not an ERROR;
            // server faults are logged once with their cause by `error::log_if_server_fault`, and
            // every non-OK call is logged with its method by `GrpcMetricsLayer`.
            .layer(tower_http::trace::TraceLayer::new_for_grpc().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ))
            .add_service(self.health_server)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(grpc_service.into_server())
            .add_service(
                crate::admin_grpc::AdminAdapter::new(self.service.clone(), self.auth.clone())
                    .into_server(),
            )
            .serve_with_incoming_shutdown(incoming, async move { grpc_shutdown.cancelled().await });

        let router = http_router(self.service.clone(), self.auth.clone(), &self.base_path);
        let http_server = http_serve::serve(self.http, router, shutdown.clone());
        let ops_server = ops::serve_ops(self.ops, self.health.clone(), shutdown.clone());

        // If one server stops (an error), stop the others too.
        let stop_all = |r| {
            shutdown.cancel();
            r
        };
        let (g, h, o) = tokio::join!(
            async { stop_all(grpc_server.await.context("gRPC server")) },
            async { stop_all(http_server.await.context("HTTP server")) },
            async { stop_all(ops_server.await.context("ops server")) },
        );
        let _ = watcher.await;
        let _ = sampler.await;
        let _ = reconciler.await;
        let _ = auto_claimer.await;
        let _ = listener.await;
        if let Some(cleanup) = cleanup {
            let _ = cleanup.await;
        }
        if let Some(catalog_watch) = catalog_watch {
            let _ = catalog_watch.await;
        }
        g?;
        h?;
        o?;
        Ok(())
    }
}

/// Reflection advertising `service.Service` and health.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    startup::reflection(&["service.Service", "service.Admin", "grpc.health.v1.Health"])
}

/// The REST app with request metrics.
pub fn http_router(
    service: ChallengeService,
    auth: Authenticator,
    base_path: &str,
) -> axum::Router {
    rest::router(
        rest::RestState { service, auth },
        base_path,
        swagger::router(base_path),
    )
    .layer(axum::middleware::from_fn(track_http))
    // A server span per request when tracing is on (CONTRACT §6).
    .layer(axum::middleware::from_fn(trace_http))
    // One debug line per request; paths carry ids of goals, never personal data.
    .layer(tower_http::trace::TraceLayer::new_for_http())
    // Outermost: every error answer is the contract's JSON (CONTRACT §3.2).
    .layer(axum::middleware::from_fn(http_serve::normalize_errors))
}
