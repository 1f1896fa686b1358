//! The catalog a replica serves, and how it follows the active version (CONTRACT §9).
//!
//! [`Live`] holds what a binary derives from one catalog version (the service its list
//! index, the handler its goal lookups) behind one `Arc`, swapped whole. A request or an
//! event batch takes the `Arc` once ([`Live::load`]) and works with that version to its end:
//! a claim uses the version it started with.
//!
//! [`watch`] keeps it current: it `LISTEN`s on [`store::catalog::CHANNEL`] (the apply
//! notifies in its transaction, so every listener hears of a version the moment it commits)
//! and polls `catalog_active` every [`POLL`] as the fallback (a listener connection lost and
//! re-opened misses what was sent meanwhile). A version that does not load (a bug: every
//! version was validated before it was stored) keeps the previous one serving, counts
//! `challenge_catalog_load_failures_total`, sets `challenge_catalog_load_failing` (the alert
//! in `deploy/alerts.yml`) and is tried again at each poll, logged once per version.
//!
//! [`load_at_startup`] is the start-up half: the `challenges.json` import
//! ([`store::catalog::import_file`]) and the active version's load, retried while the
//! database is unreachable, as the migrations are.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use prometheus::{IntCounter, IntGauge, IntGaugeVec};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ChallengeConfig, ConfigError, parse_and_validate};
use crate::store;
use crate::store::catalog::{CatalogError, Imported};

/// The fallback poll of the active version.
pub const POLL: Duration = Duration::from_secs(1);

/// How long start-up waits for the import before serving the file (the watcher imports it
/// later).
const STARTUP_IMPORT_TIMEOUT: Duration = Duration::from_secs(10);

static VERSION_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "challenge_catalog_version_info",
        "The catalog version this replica serves (label version; value 1).",
        &["version"]
    )
    .expect("register challenge_catalog_version_info")
});
static VERSION: LazyLock<IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "challenge_catalog_version",
        "The catalog version this replica serves (0: the file, no version loaded)."
    )
    .expect("register challenge_catalog_version")
});
static LOAD_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "challenge_catalog_load_failures_total",
        "Catalog versions this replica could not load (it kept serving the previous one)."
    )
    .expect("register challenge_catalog_load_failures_total")
});
static LOAD_FAILING: LazyLock<IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "challenge_catalog_load_failing",
        "1 while the active catalog version does not load on this replica."
    )
    .expect("register challenge_catalog_load_failing")
});

/// What a binary derives from one catalog version.
pub trait Derive: Send + Sync + 'static {
    fn derive(version: i64, config: Arc<ChallengeConfig>) -> Self;
}

/// One version as loaded: its number (0 for a catalog that is no stored version: tests, or
/// the file when the database has none it can load) and its configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub version: i64,
    pub config: Arc<ChallengeConfig>,
}

/// The served catalog, swapped whole.
pub struct Live<T> {
    slot: RwLock<Arc<T>>,
    version: AtomicI64,
    /// The version that failed to load last (logged once).
    failed: AtomicI64,
    /// Whether this one sets the process's catalog metrics (the binaries' own; tests run
    /// several in one process).
    report: bool,
    /// A `challenges.json` to import once the database answers (it did not at start-up).
    import: parking_lot::Mutex<Option<String>>,
}

impl<T: Derive> Live<T> {
    /// A catalog that never changes unless [`Live::install`] is called (tests, tools).
    pub fn fixed(version: i64, config: Arc<ChallengeConfig>) -> Self {
        Live {
            slot: RwLock::new(Arc::new(T::derive(version, config))),
            version: AtomicI64::new(version),
            failed: AtomicI64::new(0),
            report: false,
            import: parking_lot::Mutex::new(None),
        }
    }

    /// The catalog of a serving binary: it reports its version in the process's metrics.
    pub fn serving(version: i64, config: Arc<ChallengeConfig>) -> Self {
        let mut live = Self::fixed(version, config);
        live.report = true;
        live.set_metrics(None, version);
        live
    }

    /// Imports `challenges.json` at `path` when the database answers: the start-up import
    /// could not reach it ([`load_at_startup`] served the file as version 0), [`watch`]
    /// does it.
    pub fn import_when_reachable(&self, path: String) {
        *self.import.lock() = Some(path);
    }

    /// The version served now. Take it once per request or batch.
    pub fn load(&self) -> Arc<T> {
        self.slot.read().clone()
    }

    /// The number of the version served now.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Serves `config` as version `version` from now on, unless a newer version is served
    /// already (versions only grow, a rollback included: the admin API installs what it
    /// applied while the watcher may still be loading the version before it).
    pub fn install(&self, version: i64, config: Arc<ChallengeConfig>) {
        let derived = Arc::new(T::derive(version, config));
        let old = {
            let mut slot = self.slot.write();
            let current = self.version.load(Ordering::Acquire);
            if current > version && version > 0 {
                return;
            }
            *slot = derived;
            self.version.swap(version, Ordering::AcqRel)
        };
        self.set_metrics(Some(old), version);
        tracing::info!(version, previous = old, "catalog version now served");
    }

    fn set_metrics(&self, old: Option<i64>, new: i64) {
        if !self.report {
            return;
        }
        if let Some(old) = old {
            let _ = VERSION_INFO.remove_label_values(&[&old.to_string()]);
        }
        VERSION_INFO.with_label_values(&[&new.to_string()]).set(1);
        VERSION.set(new);
        if new > 0 {
            LOAD_FAILING.set(0);
        }
    }

    /// Loads the active version if it is not the one served. `Ok(true)` when it switched.
    pub async fn refresh(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let Some(active) = store::catalog::active_version(pool).await? else {
            return Ok(false);
        };
        if active == self.version() {
            return Ok(false);
        }
        let Some(stored) = store::catalog::active(pool).await? else {
            return Ok(false);
        };
        match parse_and_validate(
            &format!("catalog version {}", stored.version),
            &stored.content,
        ) {
            Ok(config) => {
                self.install(stored.version, Arc::new(config));
                self.failed.store(0, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                if self.report {
                    LOAD_FAILURES.inc();
                    LOAD_FAILING.set(1);
                }
                if self.failed.swap(stored.version, Ordering::Relaxed) != stored.version {
                    tracing::error!(
                        version = stored.version,
                        serving = self.version(),
                        error = %e,
                        "catalog version does not load: serving the previous one"
                    );
                }
                Ok(false)
            }
        }
    }
}

/// Follows the active version until `shutdown` (see the module's notes).
pub fn watch<T: Derive>(
    live: Arc<Live<T>>,
    pool: PgPool,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every step, database calls included, gives way to the shutdown at once.
        loop {
            let step = async {
                if listener.is_none() {
                    listener = listen(&pool).await;
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = notified => {
                        if r.is_err() {
                            listener = None;
                        }
                    }
                    _ = poll.tick() => {}
                }
                let pending = live.import.lock().clone();
                if let Some(path) = pending {
                    match import_file_at(&pool, &path).await {
                        Ok(()) => *live.import.lock() = None,
                        Err(e) => {
                            tracing::debug!(error = %e, "catalog import deferred: retrying at the next poll");
                            return;
                        }
                    }
                }
                if let Err(e) = live.refresh(&pool).await {
                    tracing::debug!(error = %e, "catalog version check failed; retrying at the next poll");
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = step => {}
            }
        }
    })
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(store::catalog::CHANNEL).await.ok()?;
    Some(l)
}

/// Why the start-up catalog could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    File(#[from] ConfigError),
    #[error("importing {file} as a catalog version: {source}")]
    Import {
        file: String,
        #[source]
        source: CatalogError,
    },
}

/// The start-up catalog: `challenges.json` at `path` is read and validated (an error names
/// the file, challenge, goal and field), imported as a new version when its content differs
/// from the one last imported, and the active version is loaded — which is the file's,
/// unless a version applied through the API or the CLI since is active.
///
/// Start-up does not wait for the database (with `MIGRATE_ON_START=false` a replica serves
/// while Postgres is away, as before): should it not answer, the file is served as version 0
/// and [`watch`] imports it once it does ([`Live::import_when_reachable`]; check
/// [`Loaded::version`]). Should the active version not load (a bug), the file is served as
/// version 0 too, and the watcher keeps trying.
pub async fn load_at_startup(pool: &PgPool, file: &CatalogFile) -> Result<Loaded, StartupError> {
    let CatalogFile {
        path,
        content,
        config: file_config,
    } = file;
    let unreachable = |why: &dyn std::fmt::Display| {
        tracing::warn!(error = %why, file = %path,
            "database not reachable: serving challenges.json until it is, then importing it");
        Ok(Loaded {
            version: 0,
            config: file_config.clone(),
        })
    };
    match tokio::time::timeout(
        STARTUP_IMPORT_TIMEOUT,
        import_and_load(pool, path, content, file_config),
    )
    .await
    {
        Err(_) => unreachable(&format!("no answer within {STARTUP_IMPORT_TIMEOUT:?}")),
        Ok(Err(StartupError::Import {
            source: CatalogError::Database(e),
            ..
        })) if store::is_connectivity(&e) => unreachable(&e),
        Ok(other) => other,
    }
}

/// `challenges.json`, read and validated: the first step of start-up, before the database
/// is waited for, so a bad file fails the start at once (naming the file, challenge, goal
/// and field).
#[derive(Debug, Clone)]
pub struct CatalogFile {
    pub path: String,
    pub content: String,
    pub config: Arc<ChallengeConfig>,
}

impl CatalogFile {
    pub fn read(path: &str) -> Result<Self, ConfigError> {
        let content = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_string(),
            source,
        })?;
        let config = Arc::new(parse_and_validate(path, &content)?);
        Ok(CatalogFile {
            path: path.to_string(),
            content,
            config,
        })
    }
}

/// The watcher's deferred import.
async fn import_file_at(pool: &PgPool, path: &str) -> Result<(), StartupError> {
    let file = CatalogFile::read(path)?;
    store::catalog::import_file(pool, &file.content, &file.config)
        .await
        .map_err(|source| StartupError::Import {
            file: path.to_string(),
            source,
        })?;
    Ok(())
}

async fn import_and_load(
    pool: &PgPool,
    path: &str,
    content: &str,
    file_config: &Arc<ChallengeConfig>,
) -> Result<Loaded, StartupError> {
    let import_error = |source| StartupError::Import {
        file: path.to_string(),
        source,
    };
    match store::catalog::import_file(pool, content, file_config)
        .await
        .map_err(import_error)?
    {
        Imported::Applied(applied) => tracing::info!(
            file = path,
            version = applied.version,
            previous = applied.previous,
            status_changes = applied.impact.status_changes(),
            "challenges.json imported as a new catalog version"
        ),
        Imported::Unchanged { version } => tracing::info!(
            file = path,
            version,
            "challenges.json unchanged since its import; serving the active catalog version"
        ),
    }
    let active = store::catalog::active(pool)
        .await
        .map_err(|e| import_error(e.into()))?
        .expect("an import leaves a version active");
    if active.sha256 == store::catalog::sha256_hex(content) {
        return Ok(Loaded {
            version: active.version,
            config: file_config.clone(),
        });
    }
    match parse_and_validate(
        &format!("catalog version {}", active.version),
        &active.content,
    ) {
        Ok(config) => Ok(Loaded {
            version: active.version,
            config: Arc::new(config),
        }),
        Err(e) => {
            LOAD_FAILURES.inc();
            LOAD_FAILING.set(1);
            tracing::error!(version = active.version, error = %e,
                "the active catalog version does not load: serving {path} until it does");
            Ok(Loaded {
                version: 0,
                config: file_config.clone(),
            })
        }
    }
}
