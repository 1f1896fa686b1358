//! The player API's logic: one implementation behind both transports. Methods take the
//! authenticated user id and the protobuf request, and return the protobuf response or a
//! [`ServiceError`]. The REST adapter additionally uses the JSON fast paths
//! ([`ChallengeService::challenges_json`], [`ChallengeService::challenge_json`]).
//!
//! One type, [`ChallengeService`], with its methods grouped by what they touch:
//! - [`reads`], the challenge list and one challenge (JSON, encoded protobuf, prost),
//!   `InitializePlayer` (whose answer is the player's active goals), rotation status, health;
//! - [`selection`], which goals are active — one (`SetGoalActive`), a list
//!   (`BatchSelectGoals`) or a random draw (`RandomSelectGoals`);
//! - [`claim`], `ClaimGoalReward`, the grant intents (one per reward) and their reconciler;
//! - [`rewards`], `ClaimChallengeRewards` (claim all) and `GetRewardHistory`;
//! - [`auto_claim`], the claims of completed `autoClaim` goals, from the outbox;
//! - [`erasure`], `DeleteUserData`, the erasure of all the player's records.

pub mod admin;
pub mod auto_claim;
mod claim;
mod erasure;
mod etag;
mod list;
mod reads;
mod rewards;
mod selection;
mod stream;
mod trail;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::ChallengeConfig;
use extend_challenge_common::live_catalog::{Derive, Live};
use sqlx::PgPool;

use crate::catalog::Catalog;
use crate::error::ServiceError;
use crate::rewards::RewardGranter;

pub use self::claim::{CLAIM_DEADLINE, DEFAULT_GRANT_SETTLE};
pub use self::erasure::ERASURE_RATE_LIMIT;
pub use self::etag::none_match;
pub use self::rewards::{DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE};
pub use self::selection::sample;
pub use self::stream::{LiveHub, ProgressStream};

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Live progress streams per replica unless `PROGRESS_STREAM_MAX` says otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 20_000;
/// The streams' heartbeat unless `PROGRESS_STREAM_HEARTBEAT_SECONDS` says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// The one service type. Cheap to clone.
#[derive(Clone)]
pub struct ChallengeService {
    inner: Arc<Inner>,
    claim_deadline: Duration,
    grant_settle: Duration,
    initialize_gate: InitializeGate,
}

/// Admission of `InitializePlayer` calls (the heavy write: hundreds of rows in, a ~200 KB
/// answer out). Without it every call in flight builds its insert arrays and encodes its
/// statement before queueing for a pool connection: 500 first-time players in flight held
/// ~100 MiB of queued statements (BENCHMARKS.md, initialize ramp). Admitted calls are at
/// most the pool's size, so they hold what the pool can use; the rest wait here holding
/// nothing, and give up with `Unavailable` after the pool's own acquire timeout, as they
/// did when they waited for a connection instead.
#[derive(Clone)]
struct InitializeGate {
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl InitializeGate {
    fn new(permits: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            wait,
        }
    }
}

struct Inner {
    /// The catalog version served (swapped whole when another is applied, CONTRACT §9).
    catalogs: Arc<Live<Snapshot>>,
    pool: PgPool,
    granter: Arc<dyn RewardGranter>,
    clock: Clock,
    namespace: String,
    live: Arc<LiveHub>,
}

/// What the API derives from one catalog version: the list index and the `ETag`'s basis.
/// A request takes one ([`ChallengeService::snapshot`]) and uses it to its end. Reads as the
/// [`Catalog`] it holds.
#[derive(Debug)]
pub struct Snapshot {
    pub version: i64,
    pub catalog: Catalog,
    tag_basis: etag::TagBasis,
}

impl Derive for Snapshot {
    fn derive(version: i64, config: Arc<ChallengeConfig>) -> Self {
        let catalog = Catalog::new(config);
        Snapshot {
            version,
            tag_basis: etag::TagBasis::new(&catalog),
            catalog,
        }
    }
}

impl std::ops::Deref for Snapshot {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self.catalog
    }
}

impl ChallengeService {
    /// A service whose catalog is `config`, as version 0, unless changed through
    /// [`ChallengeService::catalogs`].
    pub fn new(
        config: Arc<ChallengeConfig>,
        pool: PgPool,
        granter: Arc<dyn RewardGranter>,
        clock: Clock,
        namespace: impl Into<String>,
    ) -> Self {
        Self::with_catalogs(
            Arc::new(Live::fixed(0, config)),
            pool,
            granter,
            clock,
            namespace,
        )
    }

    /// A service serving the catalog versions of `catalogs` (the binary's: followed by
    /// `live_catalog::watch`).
    pub fn with_catalogs(
        catalogs: Arc<Live<Snapshot>>,
        pool: PgPool,
        granter: Arc<dyn RewardGranter>,
        clock: Clock,
        namespace: impl Into<String>,
    ) -> Self {
        let initialize_gate = InitializeGate::new(
            pool.options().get_max_connections().max(1) as usize,
            pool.options().get_acquire_timeout(),
        );
        ChallengeService {
            initialize_gate,
            inner: Arc::new(Inner {
                live: Arc::new(LiveHub::new(DEFAULT_MAX_STREAMS, DEFAULT_HEARTBEAT)),
                catalogs,
                pool,
                granter,
                clock,
                namespace: namespace.into(),
            }),
            claim_deadline: CLAIM_DEADLINE,
            grant_settle: DEFAULT_GRANT_SETTLE,
        }
    }

    /// A handle with another settle time for grants in doubt (`REWARD_GRANT_SETTLE_SECONDS`).
    pub fn with_grant_settle(mut self, settle: Duration) -> Self {
        self.grant_settle = settle;
        self
    }

    /// A handle whose live progress streams are limited to `max` on this replica and send a
    /// heartbeat every `heartbeat` (`PROGRESS_STREAM_MAX`, `PROGRESS_STREAM_HEARTBEAT_SECONDS`).
    /// Call before the service is shared: the streams live in the handle's state.
    pub fn with_streams(mut self, max: usize, heartbeat: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.live = Arc::new(LiveHub::new(max, heartbeat));
        }
        self
    }

    /// A handle with another claim deadline (tests).
    pub fn with_claim_deadline(mut self, deadline: Duration) -> Self {
        self.claim_deadline = deadline;
        self
    }

    /// A handle admitting at most `permits` initializes at a time, the others waiting up to
    /// `wait` (default: the pool's size and acquire timeout).
    pub fn with_initialize_limit(mut self, permits: usize, wait: Duration) -> Self {
        self.initialize_gate = InitializeGate::new(permits, wait);
        self
    }

    /// The semaphore initializes are admitted by (tests hold its permits).
    pub fn initialize_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.initialize_gate.permits
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The catalog version served now. Take it once per request: a request works with the
    /// version it started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.catalogs.load()
    }

    /// Same as [`ChallengeService::snapshot`] (reads as the [`Catalog`]).
    pub fn catalog(&self) -> Arc<Snapshot> {
        self.snapshot()
    }

    /// The served catalog versions (the admin API installs and reports through it).
    pub fn catalogs(&self) -> &Arc<Live<Snapshot>> {
        &self.inner.catalogs
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

/// The position of `challenge_id` in `catalog`, or `ChallengeNotFound`.
fn challenge_index(catalog: &Catalog, challenge_id: &str) -> Result<usize> {
    catalog
        .challenge_index(challenge_id)
        .ok_or_else(|| ServiceError::ChallengeNotFound(challenge_id.to_string()))
}

/// A count as the `int32` of a response field.
fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
