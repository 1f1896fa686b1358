//! Test harness: a handler built in-process on port 0 against the test's database, real
//! tonic clients, row readers, and a TCP proxy that can cut the database off.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use extend_challenge_common::clock::{Clock, ManualClock};
use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn, UserThirdPartyLoggedIn,
    user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient,
    user_authentication_user_third_party_logged_in_service_client::UserAuthenticationUserThirdPartyLoggedInServiceClient,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItem, StatItemUpdated,
    statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient,
};
use extend_challenge_common::settings::Settings;
use extend_challenge_common::store::ProgressRow;
use extend_challenge_event_handler::server::{Builder, Handle, RunError};
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const NAMESPACE: &str = "test-ns";

/// Buffered mode, and a flush interval long enough that only `flush_once` writes.
pub const BUFFERED: &[(&str, &str)] = &[
    ("ACK_MODE", "buffered"),
    ("BUFFER_FLUSH_INTERVAL_MS", "3600000"),
];

pub fn fixture_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/challenges.json"
    )
    .to_string()
}

pub fn fixture_config() -> Arc<extend_challenge_common::config::ChallengeConfig> {
    Arc::new(
        extend_challenge_common::config::load_from_path(fixture_path())
            .expect("the test fixture config is valid"),
    )
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Settings for an in-process handler: ports 0, the test namespace, plus `env` overrides.
pub fn settings(env: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = [
        ("GRPC_PORT", "0"),
        ("METRICS_PORT", "0"),
        ("AB_NAMESPACE", NAMESPACE),
        ("FLUSH_WORKERS", "2"),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in env {
        map.insert(k.to_string(), v.to_string());
    }
    Settings::from_map(&map).expect("valid test settings")
}

/// A handler running in this process.
pub struct TestHandler {
    pub handle: Handle,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub clock: ManualClock,
    reader: Clock,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), RunError>>,
    channel: Channel,
}

/// Starts a handler on `pool` with `env` settings; `tweak` adjusts the builder.
pub async fn start(
    pool: PgPool,
    env: &[(&str, &str)],
    tweak: impl FnOnce(Builder) -> Builder,
) -> TestHandler {
    start_at(pool, env, at("2025-11-05T12:00:00Z"), tweak).await
}

pub async fn start_at(
    pool: PgPool,
    env: &[(&str, &str)],
    now: DateTime<Utc>,
    tweak: impl FnOnce(Builder) -> Builder,
) -> TestHandler {
    start_with_config(pool, env, now, fixture_config(), tweak).await
}

/// [`start_at`] on another config.
pub async fn start_with_config(
    pool: PgPool,
    env: &[(&str, &str)],
    now: DateTime<Utc>,
    config: Arc<extend_challenge_common::config::ChallengeConfig>,
    tweak: impl FnOnce(Builder) -> Builder,
) -> TestHandler {
    extend_challenge_common::telemetry::init("warn");
    let (clock, hand): (Clock, ManualClock) = Clock::manual(now);
    let builder = Builder::new(settings(env), config, pool)
        .clock(clock.clone())
        .bind_ip(std::net::Ipv4Addr::LOCALHOST.into());
    let app = tweak(builder).build().await.expect("build the handler");
    let addr = app.grpc_addr();
    let metrics_addr = app.metrics_addr();
    let handle = app.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the handler");
    TestHandler {
        handle,
        addr,
        metrics_addr,
        clock: hand,
        reader: clock,
        shutdown,
        task,
        channel,
    }
}

impl TestHandler {
    /// The handler's (manual) clock.
    pub fn clock_now(&self) -> DateTime<Utc> {
        self.reader.now()
    }

    pub fn login_client(&self) -> UserAuthenticationUserLoggedInServiceClient<Channel> {
        UserAuthenticationUserLoggedInServiceClient::new(self.channel.clone())
    }

    pub fn third_party_client(
        &self,
    ) -> UserAuthenticationUserThirdPartyLoggedInServiceClient<Channel> {
        UserAuthenticationUserThirdPartyLoggedInServiceClient::new(self.channel.clone())
    }

    pub fn stat_client(&self) -> StatisticStatItemUpdatedServiceClient<Channel> {
        StatisticStatItemUpdatedServiceClient::new(self.channel.clone())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub async fn login(&self, user: &str) -> Result<(), tonic::Status> {
        self.login_client()
            .on_message(login(user, ""))
            .await
            .map(|_| ())
    }

    pub async fn login_id(&self, user: &str, id: &str) -> Result<(), tonic::Status> {
        self.login_client()
            .on_message(login(user, id))
            .await
            .map(|_| ())
    }

    pub async fn stat(
        &self,
        user: &str,
        code: &str,
        value: f64,
        inc: f64,
    ) -> Result<(), tonic::Status> {
        self.stat_client()
            .on_message(stat(user, code, value, inc))
            .await
            .map(|_| ())
    }

    pub async fn flush(&self) {
        self.handle.flush_once().await.expect("flush");
        assert_eq!(self.handle.pending_keys(), 0, "everything flushed");
    }

    /// Stops the handler the way SIGTERM does and waits for the final flush.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        drop(self.channel);
        self.task.await.expect("handler task")
    }
}

pub fn login(user: &str, id: &str) -> UserLoggedIn {
    UserLoggedIn {
        id: id.into(),
        namespace: NAMESPACE.into(),
        user_id: user.into(),
        timestamp: String::new(),
        ..Default::default()
    }
}

pub fn third_party_login(user: &str, id: &str) -> UserThirdPartyLoggedIn {
    UserThirdPartyLoggedIn {
        id: id.into(),
        namespace: NAMESPACE.into(),
        user_id: user.into(),
        ..Default::default()
    }
}

pub fn stat(user: &str, code: &str, value: f64, inc: f64) -> StatItemUpdated {
    StatItemUpdated {
        id: String::new(),
        namespace: NAMESPACE.into(),
        user_id: user.into(),
        timestamp: String::new(),
        payload: Some(StatItem {
            namespace: NAMESPACE.into(),
            stat_code: code.into(),
            user_id: user.into(),
            latest_value: value,
            inc,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The user's rows by goal id.
pub async fn rows(pool: &PgPool, user: &str) -> HashMap<String, ProgressRow> {
    sqlx::query_as::<_, ProgressRow>("SELECT * FROM user_goal_progress WHERE user_id = $1")
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.goal_id.clone(), r))
        .collect()
}

/// The goals assigned to the user: those with a row of their own and those their marker
/// row covers (`store::implicit`: untouched default goals have no row).
pub async fn assigned(pool: &PgPool, user: &str) -> std::collections::BTreeSet<String> {
    let marker: Option<Option<String>> = sqlx::query_scalar(
        "SELECT req_state FROM user_goal_progress WHERE user_id = $1 AND goal_id = ''",
    )
    .bind(user)
    .fetch_optional(pool)
    .await
    .unwrap();
    let covered = marker.flatten().unwrap_or_default();
    rows(pool, user)
        .await
        .into_keys()
        .filter(|g| !g.is_empty())
        .chain(extend_challenge_common::store::implicit::covered_ids(&covered).map(String::from))
        .collect()
}

pub async fn progress(pool: &PgPool, user: &str, goal: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT progress FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2",
    )
    .bind(user)
    .bind(goal)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Assigns goals to a user the way `/initialize` would (fresh rows, not started).
pub async fn assign(pool: &PgPool, user: &str, goals: &[&str], now: DateTime<Utc>) {
    let config = fixture_config();
    for g in goals {
        let goal = config.goal(g).expect("fixture goal");
        let s = extend_challenge_common::progress::new_assignment(goal, now);
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, \
             status, completed_at, claimed_at, is_active, assigned_at, expires_at, baseline_value, \
             last_event_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
        )
        .bind(user)
        .bind(&goal.id)
        .bind(&goal.challenge_id)
        .bind(NAMESPACE)
        .bind(s.progress)
        .bind(s.status.as_str())
        .bind(s.completed_at)
        .bind(s.claimed_at)
        .bind(s.is_active)
        .bind(s.assigned_at)
        .bind(s.expires_at)
        .bind(s.baseline_value)
        .bind(s.last_event_at)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// A TCP forwarder to Postgres that the test can cut: [`Proxy::cut`] drops every open
/// connection and refuses new ones until [`Proxy::restore`].
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    kill: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let kill = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (up2, kill2, stop2) = (up.clone(), kill.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop2.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = kill2.lock().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            kill,
            stop,
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut k = self.kill.lock();
        k.cancel();
        *k = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.kill.lock().cancel();
    }
}

/// Reads a metric family's samples from the prometheus default registry: the sum of the
/// values of `name` whose labels include every pair of `labels`.
pub fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for fam in prometheus::gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if matches {
                // Only one of the two is set; the other reads 0.
                total += m.get_counter().get_value() + m.get_gauge().get_value();
            }
        }
    }
    total
}

/// A pool connected straight to the test database (`opts` of a `#[sqlx::test]` taking
/// connect options).
pub async fn direct_pool(opts: &sqlx::postgres::PgConnectOptions) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .connect_with(opts.clone())
        .await
        .unwrap()
}

/// The address the test database listens on.
pub async fn upstream(opts: &sqlx::postgres::PgConnectOptions) -> SocketAddr {
    tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// A [`Proxy`] in front of the test database and a lazy pool of `max` connections through
/// it (each waiting at most `acquire` for a connection).
pub async fn proxied_pool(
    opts: &sqlx::postgres::PgConnectOptions,
    max: u32,
    acquire: std::time::Duration,
) -> (Proxy, PgPool) {
    let proxy = Proxy::start(upstream(opts).await).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire)
        .connect_lazy_with(opts.clone().host("127.0.0.1").port(proxy.addr.port()));
    (proxy, pool)
}
