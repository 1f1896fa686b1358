//! Shared test harness: the fixture config, a pinned clock, a counting reward granter, the
//! in-process router and helpers to call it and to put rows into a given state.

#![allow(dead_code)]

pub mod fake_ags;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, Utc};
use extend_challenge_common::clock::{Clock, ManualClock};
use extend_challenge_common::config::{self, ChallengeConfig};
use extend_challenge_common::settings::Settings;
use extend_challenge_service::app::ChallengeService;
use extend_challenge_service::auth::Authenticator;
use extend_challenge_service::rewards::{GrantError, GrantRequest, Granted, Resume, RewardGranter};
use futures::future::BoxFuture;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/challenges.json"
);

/// Tuesday noon UTC.
pub const NOON: &str = "2025-11-04T12:00:00Z";

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn fixture_config() -> Arc<ChallengeConfig> {
    Arc::new(config::load_from_path(FIXTURE).expect("fixture config is valid"))
}

pub fn settings(pairs: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = HashMap::from([
        ("PLUGIN_GRPC_SERVER_AUTH_ENABLED".into(), "false".into()),
        ("AB_NAMESPACE".into(), "test-ns".into()),
        ("REWARD_CLIENT_MODE".into(), "mock".into()),
        ("CHALLENGE_CONFIG_PATH".into(), FIXTURE.into()),
        ("GRPC_PORT".into(), "0".into()),
        ("HTTP_PORT".into(), "0".into()),
        ("METRICS_PORT".into(), "0".into()),
    ]);
    for (k, v) in pairs {
        map.insert(k.to_string(), v.to_string());
    }
    Settings::from_map(&map).expect("test settings are valid")
}

/// Auth disabled: the user is the `x-mock-user-id` header.
pub fn mock_auth() -> Authenticator {
    Authenticator::from_settings(&settings(&[]), reqwest::Client::new())
}

/// Counts grants; fails them all while `fail` is set; takes `delay` per grant. Remembers
/// the grant keys it granted, so a resumed grant finds an earlier one.
#[derive(Default)]
pub struct CountingGranter {
    pub calls: AtomicUsize,
    pub fail: bool,
    pub delay: Duration,
    pub keys: Mutex<HashSet<String>>,
}

impl CountingGranter {
    /// Grants made (sent), not counting look-ups that found an earlier one.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl RewardGranter for CountingGranter {
    fn grant<'a>(
        &'a self,
        req: &'a GrantRequest<'a>,
        resume: Resume,
    ) -> BoxFuture<'a, Result<Granted, GrantError>> {
        Box::pin(async move {
            if resume != Resume::Fresh && self.keys.lock().unwrap().contains(req.grant_key) {
                return Ok(Granted::Earlier);
            }
            if resume == Resume::LookupOnly {
                return Err(GrantError::InDoubt {
                    reason: "not visible yet".into(),
                });
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail {
                Err(GrantError::RetriesExhausted {
                    attempts: 4,
                    last_error: "HTTP 503".into(),
                })
            } else {
                self.keys.lock().unwrap().insert(req.grant_key.to_string());
                Ok(Granted::Now)
            }
        })
    }
}

pub struct Harness {
    pub pool: PgPool,
    pub clock: ManualClock,
    pub granter: Arc<CountingGranter>,
    pub service: ChallengeService,
    pub router: axum::Router,
}

impl Harness {
    pub fn new(pool: PgPool) -> Self {
        Self::with_granter(pool, CountingGranter::default())
    }

    pub fn with_granter(pool: PgPool, granter: CountingGranter) -> Self {
        let granter = Arc::new(granter);
        Self::build(pool, granter.clone(), granter)
    }

    /// A harness granting through `granter` (`self.granter` is then an unused counter).
    pub fn with_dyn_granter(pool: PgPool, granter: Arc<dyn RewardGranter>) -> Self {
        Self::build(pool, granter, Arc::new(CountingGranter::default()))
    }

    /// A harness on another config, granting through `granter` (`self.granter` counts only
    /// when `granter` is `None`: then a [`CountingGranter`] grants).
    pub fn with_config(
        pool: PgPool,
        config: Arc<ChallengeConfig>,
        granter: Option<Arc<dyn RewardGranter>>,
    ) -> Self {
        let counter = Arc::new(CountingGranter::default());
        let granter = granter.unwrap_or_else(|| counter.clone());
        Self::build_on(pool, config, granter, counter)
    }

    fn build(pool: PgPool, granter: Arc<dyn RewardGranter>, counter: Arc<CountingGranter>) -> Self {
        Self::build_on(pool, fixture_config(), granter, counter)
    }

    fn build_on(
        pool: PgPool,
        config: Arc<ChallengeConfig>,
        granter: Arc<dyn RewardGranter>,
        counter: Arc<CountingGranter>,
    ) -> Self {
        let (clock, hand) = Clock::manual(at(NOON));
        let granter_for_service = granter;
        let granter = counter;
        let service =
            ChallengeService::new(config, pool.clone(), granter_for_service, clock, "test-ns");
        let router = extend_challenge_service::server::http_router(
            service.clone(),
            mock_auth(),
            "/challenge",
        );
        Harness {
            pool,
            clock: hand,
            granter,
            service,
            router,
        }
    }

    /// Replaces the service (e.g. with other deadlines) and rebuilds the router on it.
    pub fn map_service(mut self, f: impl FnOnce(ChallengeService) -> ChallengeService) -> Self {
        self.service = f(self.service);
        self.router = extend_challenge_service::server::http_router(
            self.service.clone(),
            mock_auth(),
            "/challenge",
        );
        self
    }

    /// Calls the router as `user`; returns the status and the JSON body.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        user: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.call_raw(method, uri, user, body).await;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {uri}: body is not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn call_raw(
        &self,
        method: &str,
        uri: &str,
        user: &str,
        body: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-mock-user-id", user);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub async fn get(&self, uri: &str, user: &str) -> (StatusCode, Value) {
        self.call("GET", uri, user, None).await
    }

    pub async fn post(&self, uri: &str, user: &str, body: &str) -> (StatusCode, Value) {
        self.call("POST", uri, user, Some(body)).await
    }

    /// Gives an implicit goal its row ([`materialize`]).
    pub async fn materialize(&self, user: &str, goal: &str) {
        materialize(&self.pool, self.service.catalog().config(), user, goal).await;
    }

    /// Puts a row into a state, as the event handler would.
    pub async fn set_row(
        &self,
        user: &str,
        goal: &str,
        progress: i32,
        status: &str,
        completed_at: Option<&str>,
    ) {
        self.materialize(user, goal).await;
        let completed_at = completed_at.map(at);
        let n = sqlx::query(
            "UPDATE user_goal_progress SET progress = $3, status = $4, completed_at = $5 \
             WHERE user_id = $1 AND goal_id = $2",
        )
        .bind(user)
        .bind(goal)
        .bind(progress)
        .bind(status)
        .bind(completed_at)
        .execute(&self.pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1, "row {user}/{goal} exists");
    }

    pub async fn row_status(&self, user: &str, goal: &str) -> Option<(String, bool)> {
        sqlx::query_as(
            "SELECT status, is_active FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2",
        )
        .bind(user)
        .bind(goal)
        .fetch_optional(&self.pool)
        .await
        .unwrap()
    }

    /// Initializes `user` and completes `goal` (active) at NOON.
    pub async fn completed(&self, user: &str, goal: &str) {
        self.post("/challenge/v1/challenges/initialize", user, "{}")
            .await;
        let challenge = self
            .service
            .catalog()
            .config()
            .goal(goal)
            .unwrap()
            .challenge_id
            .clone();
        let (s, _) = self
            .call(
                "PUT",
                &format!("/challenge/v1/challenges/{challenge}/goals/{goal}/active"),
                user,
                Some(r#"{"isActive":true}"#),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let target = self
            .service
            .catalog()
            .config()
            .goal(goal)
            .unwrap()
            .requirement
            .target_value;
        self.set_row(user, goal, target, "completed", Some(NOON))
            .await;
    }
}

/// Goal ids of a challenge object, in order.
/// Gives an implicit goal (`store::implicit`: a default goal the player's marker covers,
/// without a row) its row, as it reads — what the event handler does when an event first
/// changes it — so a test can then put the row into a state.
pub async fn materialize(pool: &PgPool, config: &ChallengeConfig, user: &str, goal: &str) {
    use extend_challenge_common::store::implicit::{Defaults, Marker};
    use extend_challenge_common::store::player;
    let rows = player::goal_rows(pool, user, &[goal, ""]).await.unwrap();
    if rows.iter().any(|r| r.goal_id == goal) {
        return;
    }
    let Some(g) = config.goal(goal) else {
        return;
    };
    let defaults = Defaults::of(config);
    let covering = rows
        .iter()
        .filter_map(Marker::from_row)
        .find(|m| defaults.covers(&m.text, g));
    if let Some(marker) = covering {
        let mut row = player::NewGoalRow::assign(g, marker.at);
        row.state = marker.implicit_state(g);
        player::materialize(pool, user, "test-ns", &[row])
            .await
            .unwrap();
    }
}

pub fn goal_ids(challenge: &Value) -> Vec<String> {
    challenge["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["goalId"].as_str().unwrap().to_string())
        .collect()
}

pub fn find<'a>(challenges: &'a Value, challenge_id: &str) -> &'a Value {
    challenges["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["challengeId"] == challenge_id)
        .unwrap_or_else(|| panic!("challenge {challenge_id} in {challenges}"))
}

pub fn goal<'a>(challenge: &'a Value, goal_id: &str) -> &'a Value {
    challenge["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["goalId"] == goal_id)
        .unwrap_or_else(|| panic!("goal {goal_id} in {challenge}"))
}

/// The whole service on real sockets (ephemeral ports), serving until `stop` fires.
pub struct Running {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds the service as `server.rs` does (the fixture config, a counting granter) with
/// `settings`, `auth` and `clock`, and runs it: [`Running`].
pub async fn serve(
    settings: &Settings,
    pool: PgPool,
    auth: Authenticator,
    clock: Clock,
) -> Running {
    serve_with(
        settings,
        pool,
        auth,
        clock,
        Arc::new(CountingGranter::default()),
        None,
    )
    .await
}

/// [`serve`] with its granter, serving the fixture as stored catalog version
/// `catalog_version` (then following the active version) or as it is (`None`).
pub async fn serve_with(
    settings: &Settings,
    pool: PgPool,
    auth: Authenticator,
    clock: Clock,
    granter: Arc<CountingGranter>,
    catalog_version: Option<i64>,
) -> Running {
    use extend_challenge_service::server::{Application, Dependencies};
    let deps = Dependencies {
        catalog_version,
        pool,
        config: fixture_config(),
        granter,
        auth,
        clock,
    };
    let app = Application::build(settings, deps).await.unwrap();
    Running {
        grpc: app.grpc_addr(),
        http: app.http_addr(),
        stop: app.shutdown_token(),
        task: tokio::spawn(app.run_until_stopped()),
    }
}
