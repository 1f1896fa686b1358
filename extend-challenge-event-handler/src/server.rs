//! The handler's lifecycle, build separate from run: [`Builder::build`] binds the listeners
//! (port 0 in tests) and wires the pipeline; [`App::run`] serves until the shutdown token
//! fires, then stops accepting, drains in-flight RPCs and flushes everything. What happens
//! before (settings, logs, config, migrations, the signal) is `main`'s, with the pieces of
//! `extend_challenge_common::startup`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::live_catalog::{self, Live};
use extend_challenge_common::metrics::GrpcMetricsLayer;
use extend_challenge_common::ops::{Health, serve_ops};
use extend_challenge_common::settings::{Secret, Settings};
use extend_challenge_common::startup;
use extend_challenge_common::store::flush::{FlushError, FlushOutcome};
use extend_challenge_common::store::{self, ledger};
use extend_challenge_common::telemetry::GrpcTraceLayer;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::dedup::RedisDedup;
use crate::engine::{Engine, EngineOptions};
use crate::grpc::EventServices;
use crate::metrics;

/// The gRPC services the handler reports in grpc.health.v1 (besides "").
pub const SERVICE_NAMES: &[&str] = &[
    "accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService",
    "accelbyte.iam.account.v1.UserAuthenticationUserThirdPartyLoggedInService",
    "accelbyte.social.statistic.v1.StatisticStatItemUpdatedService",
    // GDPR erasure (CONTRACT §3.6).
    "accelbyte.iam.account.v1.DeletionAccountGdprGdprRequestDataDeletionResponseService",
    // The deployment guide's generic envelope (ours; see proto/accelbyte/event_handler.proto).
    "accelbyte.EventHandler",
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Redis(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the final flush failed: buffered updates were lost")]
    FinalFlush,
}

/// Configures an [`App`]. Defaults come from [`Settings`]; tests override the clock,
/// deadlines and ports.
pub struct Builder {
    settings: Settings,
    config: Arc<ChallengeConfig>,
    /// `Some(v)`: `config` is stored catalog version `v`, followed from then on.
    catalog_version: Option<i64>,
    pool: PgPool,
    clock: Clock,
    options: EngineOptions,
    redis_prefix: Option<String>,
    redis_lease: Option<Duration>,
    health_interval: Duration,
    ledger_purge_interval: Duration,
    bind_ip: std::net::IpAddr,
}

/// A Redis lease lasts the durable ack deadline plus this: a dead replica holds an event id
/// no longer than that (CONTRACT §2.2); a live one renews its leases.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How long Redis remembers an applied event id (`done`).
pub const DEDUP_TTL: Duration = Duration::from_secs(86_400);

/// How long the ledger remembers an applied event id. It is read only for events a crashed
/// process may have committed: at a restart (events stamped before it) and when a dead
/// replica's lease expires (seconds after the crash), so an hour is ample; a short window
/// keeps its primary-key index small, which is what each batch's insert pays for.
pub const LEDGER_TTL: Duration = Duration::from_secs(3_600);

/// While the database is unreachable, health is probed at least this often, so the flush
/// workers hear of its return quickly.
const UNHEALTHY_PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Ledger rows deleted per transaction by the purge.
const LEDGER_PURGE_BATCH: i64 = 10_000;

impl Builder {
    pub fn new(settings: Settings, config: Arc<ChallengeConfig>, pool: PgPool) -> Self {
        let workers = settings.handler.flush_workers.max(1);
        let options = EngineOptions {
            namespace: settings.ags.namespace.clone(),
            ack_mode: settings.handler.ack_mode,
            auto_initialize: settings.handler.auto_initialize_on_event,
            workers,
            flush_interval: settings.handler.buffer_flush_interval,
            flush_threshold: settings.handler.buffer_max_size.div_ceil(workers),
            max_batch_keys: settings.handler.buffer_max_size.div_ceil(workers),
            max_pending_keys: settings.handler.buffer_max_size.saturating_mul(4),
            ack_deadline: Duration::from_secs(5),
            dedup_window: 200_000,
            flush_timeout: Duration::from_secs(10),
            retry_backoff: (Duration::from_millis(50), Duration::from_millis(500)),
            shutdown_flush_timeout: Duration::from_secs(20),
        };
        Self {
            clock: settings.clock(),
            settings,
            config,
            catalog_version: None,
            pool,
            options,
            redis_prefix: None,
            redis_lease: None,
            health_interval: Duration::from_secs(2),
            ledger_purge_interval: Duration::from_secs(600),
            bind_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
        }
    }

    /// `config` is stored catalog version `version`: the handler follows the active version
    /// from then on (CONTRACT §9) and reports it (metric, `/healthz`).
    pub fn catalog_version(mut self, version: i64) -> Self {
        self.catalog_version = Some(version);
        self
    }

    /// The clock for flush time and rotation (default: `Settings::clock()`).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Adjusts the pipeline's tunables (deadlines, bounds, backoff).
    pub fn options(mut self, f: impl FnOnce(&mut EngineOptions)) -> Self {
        f(&mut self.options);
        self
    }

    /// Prefix of the Redis de-duplication keys.
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis_prefix = Some(prefix.into());
        self
    }

    /// Length of a Redis lease (default: the ack deadline plus [`LEASE_MARGIN`]).
    pub fn redis_lease(mut self, lease: Duration) -> Self {
        self.redis_lease = Some(lease);
        self
    }

    /// How often the database health is re-checked.
    pub fn health_interval(mut self, d: Duration) -> Self {
        self.health_interval = d;
        self
    }

    /// Listen on this address instead of all interfaces.
    pub fn bind_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.bind_ip = ip;
        self
    }

    fn redis(&self) -> Result<Option<RedisDedup>, BuildError> {
        let Some(host) = &self.settings.redis.host else {
            return Ok(None);
        };
        let lease = self
            .redis_lease
            .unwrap_or(self.options.ack_deadline + LEASE_MARGIN);
        let r = RedisDedup::new(
            host,
            self.settings.redis.port,
            self.settings.redis.password.as_ref().map(Secret::expose),
            lease,
            DEDUP_TTL,
        )
        .map_err(BuildError::Redis)?;
        Ok(Some(match &self.redis_prefix {
            Some(p) => r.with_prefix(p.clone()),
            None => r,
        }))
    }

    /// Wires the pipeline alone: no listeners, no flush workers, no lease renewal (tools,
    /// and tests that stop a replica dead by dropping it).
    pub fn build_engine(self) -> Result<Arc<Engine>, BuildError> {
        metrics::init();
        let redis = self.redis()?;
        let engine = Arc::new(Engine::new(
            self.config,
            self.pool,
            redis,
            self.clock,
            self.options,
        ));
        engine.trail().set_enabled(self.settings.live.trail_enabled);
        Ok(engine)
    }

    /// Binds the gRPC and metrics listeners and wires the pipeline (nothing runs yet).
    pub async fn build(self) -> Result<App, BuildError> {
        metrics::init();
        extend_challenge_common::metrics::init_guide_metrics(&["grpc"]);
        let grpc_listener = bind(SocketAddr::new(self.bind_ip, self.settings.ports.grpc)).await?;
        let ops_listener = bind(SocketAddr::new(self.bind_ip, self.settings.ports.metrics)).await?;
        let redis = self.redis()?;
        if self.options.namespace.is_empty() {
            tracing::warn!("AB_NAMESPACE is empty: accepting events from every namespace");
        }
        tracing::info!(
            ack_mode = ?self.options.ack_mode,
            workers = self.options.workers,
            flush_interval_ms = self.options.flush_interval.as_millis() as u64,
            max_pending_keys = self.options.max_pending_keys,
            redis_dedup = redis.is_some(),
            auto_initialize = self.options.auto_initialize,
            "event handler configured"
        );
        let (health, health_server) = Health::new(self.pool.clone(), SERVICE_NAMES);
        let catalogs = Arc::new(match self.catalog_version {
            Some(v) => {
                let live = Live::serving(v, self.config);
                if v == 0 {
                    live.import_when_reachable(self.settings.config_path.clone());
                }
                live
            }
            None => Live::fixed(0, self.config),
        });
        {
            let catalogs = catalogs.clone();
            health.show_catalog_version(move || catalogs.version());
        }
        let engine = Arc::new(Engine::with_catalogs(
            catalogs,
            self.pool,
            redis,
            self.clock,
            self.options,
        ));
        engine.trail().set_enabled(self.settings.live.trail_enabled);
        Ok(App {
            grpc_addr: grpc_listener.local_addr().expect("bound listener"),
            metrics_addr: ops_listener.local_addr().expect("bound listener"),
            grpc_listener,
            ops_listener,
            engine,
            health,
            health_server,
            health_interval: self.health_interval,
            ledger_purge_interval: self.ledger_purge_interval,
            follow_catalog: self.catalog_version.is_some(),
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind { addr, source })
}

/// A built handler: listeners bound, not serving yet.
pub struct App {
    grpc_listener: TcpListener,
    ops_listener: TcpListener,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    engine: Arc<Engine>,
    health: Health,
    health_server: HealthServer<HealthService>,
    health_interval: Duration,
    ledger_purge_interval: Duration,
    /// Follow the active catalog version ([`Builder::catalog_version`]).
    follow_catalog: bool,
}

/// A clonable handle on a running (or built) handler, for tests and tools.
#[derive(Clone)]
pub struct Handle {
    engine: Arc<Engine>,
    health: Health,
}

impl Handle {
    /// Flushes everything pending now, one transaction per partition.
    pub async fn flush_once(&self) -> Result<FlushOutcome, FlushError> {
        self.engine.flush_once().await
    }

    /// (user, goal) keys waiting in the buffer.
    pub fn pending_keys(&self) -> usize {
        self.engine.pending_keys()
    }

    /// Failed batch flushes so far (each was kept and retried).
    pub fn flush_errors(&self) -> u64 {
        self.engine.flush_errors()
    }

    /// Rows deferred so far because another transaction held their lock (each stayed
    /// buffered and was retried).
    pub fn flush_deferred(&self) -> u64 {
        self.engine.flush_deferred()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Users moved to the dead-letter table so far.
    pub fn dead_letters(&self) -> u64 {
        self.engine.dead_letters()
    }

    /// The pipeline itself.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl App {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn handle(&self) -> Handle {
        Handle {
            engine: self.engine.clone(),
            health: self.health.clone(),
        }
    }

    /// Serves until `shutdown` fires; then stops accepting, lets in-flight RPCs finish
    /// (their commits included), flushes the buffer with retries and stops the metrics
    /// server. `Err(FinalFlush)` when buffered updates could not be written.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let App {
            grpc_listener,
            ops_listener,
            engine,
            health,
            health_server,
            health_interval,
            ledger_purge_interval,
            follow_catalog,
            ..
        } = self;

        let workers_stop = CancellationToken::new();
        let workers: Vec<_> = (0..engine.options().workers)
            .map(|part| tokio::spawn(engine.clone().run_worker(part, workers_stop.clone())))
            .collect();
        let ops_stop = CancellationToken::new();
        let watcher = spawn_health_watcher(
            health.clone(),
            engine.clone(),
            health_interval,
            ops_stop.clone(),
        );
        // Leases are renewed until the final flush is over.
        let renewer = engine.redis().map(|r| r.spawn_renewer(ops_stop.clone()));
        let purger = spawn_ledger_purger(
            engine.pool().clone(),
            ledger_purge_interval,
            ops_stop.clone(),
        );
        let plan_watch = spawn_plan_watch(engine.pool().clone(), ops_stop.clone());
        let ops = tokio::spawn(serve_ops(ops_listener, health.clone(), ops_stop.clone()));
        // The event trail's writer: its last write follows the final flush.
        let trail = engine.trail().clone().spawn(ops_stop.clone());
        let notifier = engine.live().clone().spawn(ops_stop.clone());
        // The pool gauges between batches too (the flush samples them after each batch).
        let sampler = extend_challenge_common::metrics::spawn_db_pool_sampler(
            engine.pool().clone(),
            health_interval,
            ops_stop.clone(),
        );

        // Serves each newly applied catalog version (CONTRACT §9).
        let catalog_watch = follow_catalog.then(|| {
            live_catalog::watch(
                engine.catalogs().clone(),
                engine.pool().clone(),
                ops_stop.clone(),
            )
        });

        let served = serve_grpc(grpc_listener, engine.clone(), health_server, shutdown).await;
        tracing::info!(
            pending_keys = engine.pending_keys(),
            "gRPC server stopped; flushing the buffer"
        );
        workers_stop.cancel();
        let mut flushed = true;
        for w in workers {
            flushed &= w.await.unwrap_or(false);
        }
        ops_stop.cancel();
        let _ = watcher.await;
        let _ = purger.await;
        let _ = plan_watch.await;
        let _ = trail.await;
        let _ = notifier.await;
        let _ = sampler.await;
        if let Some(catalog_watch) = catalog_watch {
            let _ = catalog_watch.await;
        }
        if let Some(renewer) = renewer {
            let _ = renewer.await;
        }
        match ops.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics server failed"),
            Err(e) => tracing::warn!(error = %e, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
        served?;
        if !flushed {
            return Err(RunError::FinalFlush);
        }
        tracing::info!("event handler stopped");
        Ok(())
    }
}

/// Keeps both health surfaces in step with the database (as `Health::spawn_watcher`), probing
/// faster while it is unreachable, and tells the flush workers the moment it is back, so
/// acknowledgements resume within a probe interval instead of a retry backoff.
fn spawn_health_watcher(
    health: Health,
    engine: Arc<Engine>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut was_serving = true;
        loop {
            let serving = health.check_now().await;
            if serving && !was_serving {
                engine.database_back();
            }
            was_serving = serving;
            let wait = if serving {
                interval
            } else {
                interval.min(UNHEALTHY_PROBE_INTERVAL)
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// How often the handler looks whether the progress table has statistics yet.
const PLAN_WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps the plans of batches right while the progress table is new
/// (`store::flush::set_plan_each_batch` tells why): every [`PLAN_WATCH_INTERVAL`], a small
/// table that doubled since the planner last saw it is analyzed (Postgres's autovacuum
/// does it too, but a minute late, and never when it is off), and batches plan each
/// statement while the table has no statistics at all (an `ANALYZE` refused, say). Warns
/// once when autovacuum is off.
fn spawn_plan_watch(pool: PgPool, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    use store::flush::{self, analyze_progress, progress_statistics};
    tokio::spawn(async move {
        if let Ok(setting) = sqlx::query_scalar::<_, String>("SHOW autovacuum")
            .fetch_one(&pool)
            .await
            && setting == "off"
        {
            tracing::warn!(
                "Postgres has autovacuum off: the handler analyzes the progress table while it \
                 is small, and nothing analyzes or vacuums it after; turn autovacuum on (the default)"
            );
        }
        let mut analyze_refused = false;
        loop {
            match progress_statistics(&pool).await {
                Ok(mut stats) => {
                    if stats.stale() && !analyze_refused {
                        match analyze_progress(&pool).await {
                            Ok(()) => {
                                tracing::info!(
                                    pages = stats.pages,
                                    analyzed_pages = stats.analyzed_pages,
                                    "progress table grew: analyzed it, so batches plan for its size"
                                );
                                stats = progress_statistics(&pool).await.unwrap_or(stats);
                            }
                            Err(e) => {
                                // Not the table's owner: do not ask again. Anything else
                                // (the database away): the next look retries.
                                analyze_refused = e
                                    .as_database_error()
                                    .and_then(|d| d.code())
                                    .is_some_and(|c| c == "42501");
                                tracing::warn!(error = %e, "could not analyze the progress table");
                            }
                        }
                    }
                    if stats.analyzed == flush::plan_each_batch() {
                        flush::set_plan_each_batch(!stats.analyzed);
                        tracing::info!(
                            plan_each_batch = !stats.analyzed,
                            "progress table statistics {}",
                            if stats.analyzed {
                                "present: batches use cached plans"
                            } else {
                                "absent: batches plan each statement"
                            }
                        );
                    }
                }
                Err(e) => tracing::debug!(error = %e, "progress table statistics not read"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PLAN_WATCH_INTERVAL) => {}
            }
        }
    })
}

/// Deletes ledger rows older than [`LEDGER_TTL`] every `interval`, in bounded batches, on one
/// replica at a time (an advisory lock).
fn spawn_ledger_purger(
    pool: PgPool,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match ledger::purge_expired(&pool, LEDGER_TTL, LEDGER_PURGE_BATCH).await {
                Ok(Some(n)) => {
                    metrics::LEDGER_PURGED_TOTAL.inc_by(n);
                    tracing::debug!(rows = n, "expired event ledger rows deleted");
                }
                Ok(None) => tracing::debug!("another replica is purging the event ledger"),
                Err(e) => tracing::warn!(error = %e, "event ledger purge failed; retrying later"),
            }
        }
    })
}

/// Reflection advertising exactly the services served (the descriptor set holds every
/// AsyncAPI service, most of which this handler does not implement).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    let advertised: Vec<&str> = SERVICE_NAMES
        .iter()
        .copied()
        .chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .collect();
    startup::reflection(&advertised)
}

async fn serve_grpc(
    listener: TcpListener,
    engine: Arc<Engine>,
    health_server: HealthServer<HealthService>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let services = EventServices::new(engine);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(GrpcTraceLayer)
        .layer(GrpcMetricsLayer)
        .add_service(health_server)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(services.login_server())
        .add_service(services.third_party_login_server())
        .add_service(services.stat_server())
        .add_service(services.gdpr_server())
        .add_service(services.generic_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}
