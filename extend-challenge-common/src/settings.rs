//! Typed settings, read once at start-up from the environment (CONTRACT §5). A bad value is
//! an error naming the variable. Both binaries read the same struct and use what they need.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(Debug, thiserror::Error)]
#[error("invalid environment variable {name}={value:?}: {reason}")]
pub struct SettingsError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Reward grants: through AGS Platform (`real`) or logged only (`mock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardMode {
    Real,
    Mock,
}

/// How the service tells whether AGS already holds a grant it may have made (CONTRACT §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardDedup {
    /// Put the grant key into the grant (`grantedCode` of an entitlement, `reason` of a
    /// wallet credit) and look for it in AGS's records before granting again. Works
    /// everywhere, Shared Cloud included.
    Marker,
    /// ITEM rewards through Platform fulfillment v3 with the grant key as `transactionId`,
    /// which AGS de-duplicates (not available on AGS Shared Cloud). WALLET rewards keep
    /// the marker.
    Fulfillment,
}

/// When the event handler acknowledges an event (CONTRACT §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// `OK` only after the batch holding the event committed.
    Durable,
    /// `OK` on enqueue.
    Buffered,
}

/// Every setting of both binaries, grouped by concern. Secrets are [`Secret`]s, so
/// `{settings:?}` can be logged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// AccelByte Gaming Services: where and who we are.
    pub ags: AgsSettings,
    /// How the service verifies callers.
    pub auth: AuthSettings,
    /// Reward grants (the service).
    pub rewards: RewardSettings,
    /// Postgres.
    pub db: DbSettings,
    /// The event handler's buffer and acknowledgements.
    pub handler: HandlerSettings,
    /// Cross-replica de-duplication (the event handler).
    pub redis: RedisSettings,
    /// Listening ports.
    pub ports: PortSettings,
    /// Logs and trace export.
    pub telemetry: TelemetrySettings,
    /// Retention cleanup and erasure tombstones (CONTRACT §3.6; the service runs it).
    pub cleanup: CleanupSettings,
    /// Live progress streams and the event trail (CONTRACT §10).
    pub live: LiveSettings,
    /// `BASE_PATH` (default `/challenge`, normalized): the REST routes' prefix.
    pub base_path: String,
    /// `CHALLENGE_CONFIG_PATH` or `CONFIG_PATH`.
    pub config_path: String,
    /// `CLOCK_OFFSET_SECONDS` (testing only, default 0): both binaries run this far ahead of
    /// the system clock, so an end-to-end test can start them "tomorrow".
    pub clock_offset_seconds: i64,
}

/// A secret value (a password, a client secret). `Debug` prints `***`; read it with
/// [`Secret::expose`] where it is used, never to log it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone)]
pub struct AgsSettings {
    /// `AB_BASE_URL`, without a trailing `/`.
    pub base_url: String,
    /// `AB_CLIENT_ID`.
    pub client_id: String,
    /// `AB_CLIENT_SECRET`.
    pub client_secret: Secret,
    /// `AB_NAMESPACE`.
    pub namespace: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `PLUGIN_GRPC_SERVER_AUTH_ENABLED` (default `true`).
    pub enabled: bool,
    /// `REFRESH_INTERVAL` seconds (default 600): how often the IAM keys and revocations
    /// are refreshed.
    pub refresh_interval: Duration,
    /// `ROLES_CACHE_EXPIRATION_TIME` seconds (default 3600, AccelByte's Go SDK's name and
    /// default): how long the permissions of an IAM role, fetched for an admin route, are
    /// used before they are fetched again.
    pub role_cache_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct RewardSettings {
    /// `REWARD_CLIENT_MODE` (default `real`).
    pub mode: RewardMode,
    /// `REWARD_GRANT_DEDUP` (default `marker`).
    pub dedup: RewardDedup,
    /// `REWARD_GRANT_SETTLE_SECONDS` (default 30): how long after an unanswered grant request
    /// AGS may still be processing it. Until then a grant not (yet) visible at AGS is not
    /// made again; the claim answers "in progress".
    pub grant_settle: Duration,
    /// `REWARD_RECONCILE_INTERVAL_SECONDS` (default 30): how often the reconciler looks for
    /// abandoned grant intents.
    pub reconcile_interval: Duration,
    /// `AUTO_CLAIM_INTERVAL_MS` (default 500): how often the service looks for goals to
    /// auto-claim (CONTRACT §7; a completion is granted within about this plus one grant).
    pub auto_claim_interval: Duration,
}

/// Postgres. `Debug` shows where, never the password.
#[derive(Clone)]
pub struct DbSettings {
    /// `DATABASE_URL`, or `DB_HOST` `DB_PORT` `DB_NAME` `DB_USER` `DB_PASSWORD` `DB_SSLMODE`.
    pub connect: PgConnectOptions,
    /// `DB_MAX_OPEN_CONNS` (default 25).
    pub max_open_conns: u32,
    /// `DB_WARM_CONNS` (default: `max_open_conns`; at most it): connections the service
    /// opens as soon as it starts, so the first burst of requests does not pay for opening
    /// them ([`crate::store::warm_up`]). 0: none.
    pub warm_conns: u32,
    /// `MIGRATE_ON_START` (default `true`): apply the embedded migrations at start-up. Set
    /// `false` when a Job or an operator runs `extend-challenge-service migrate up`.
    pub migrate_on_start: bool,
    /// `DB_PARTITIONS` (default 0: none): how many hash partitions by `user_id` migration
    /// 0012 gives the per-user tables, if it is still pending when this process migrates
    /// (docs/SCALING.md). An applied migration is never redone.
    pub partitions: u16,
}

impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PgConnectOptions' own Debug prints the password.
        f.debug_struct("DbSettings")
            .field("target", &crate::store::describe_target(&self.connect))
            .field("user", &self.connect.get_username())
            .field("ssl_mode", &self.connect.get_ssl_mode())
            .field("max_open_conns", &self.max_open_conns)
            .field("warm_conns", &self.warm_conns)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct HandlerSettings {
    /// `FLUSH_WORKERS` (default 4: durable throughput holds at 2× overload with 4 workers and
    /// not with 2, BENCHMARKS.md "Session 4: durable events").
    pub flush_workers: usize,
    /// `BUFFER_FLUSH_INTERVAL_MS` (default 100).
    pub buffer_flush_interval: Duration,
    /// `BUFFER_MAX_SIZE` (default 10000).
    pub buffer_max_size: usize,
    /// `ACK_MODE` (default `durable`).
    pub ack_mode: AckMode,
    /// `AUTO_INITIALIZE_ON_EVENT` (default `true`).
    pub auto_initialize_on_event: bool,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `REDIS_HOST`: cross-replica de-duplication when set.
    pub host: Option<String>,
    /// `REDIS_PORT` (default 6379).
    pub port: u16,
    /// `REDIS_PASSWORD`.
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct PortSettings {
    /// `GRPC_PORT` (default 6565).
    pub grpc: u16,
    /// `HTTP_PORT` (default 8000; the service's REST API).
    pub http: u16,
    /// `METRICS_PORT` (default 8080): `/metrics`, `/healthz`, `/livez`.
    pub metrics: u16,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `LOG_LEVEL` (default `info`): a level or a `tracing` filter.
    pub log_level: String,
    /// `OTEL_SERVICE_NAME` (default: the binary's name).
    pub otel_service_name: String,
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`: span export when set.
    pub otel_exporter_zipkin_endpoint: Option<String>,
}

/// The service's retention cleanup (names and defaults as AccelByte's M6, plus the pause
/// and the tombstone window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupSettings {
    /// `CLEANUP_ENABLED` (default `true`).
    pub enabled: bool,
    /// `CLEANUP_INTERVAL_MINUTES` (default 60): time between two cycles.
    pub interval: Duration,
    /// `CLEANUP_RETENTION_DAYS` (default 7): rows whose `expires_at` is older than this
    /// are deleted.
    pub retention_days: u32,
    /// `CLEANUP_BATCH_SIZE` (default 1000): rows per `DELETE`.
    pub batch_size: u32,
    /// `CLEANUP_BATCH_PAUSE_MS` (default 50): pause between two batches, so the cleanup
    /// never hogs the disk; 0 for none.
    pub batch_pause: Duration,
    /// `ERASURE_TOMBSTONE_DAYS` (default 7): how long an erasure's tombstone is kept. An
    /// event from before the erasure redelivered later than this would count again; set
    /// it to at least the retention of the event topics.
    pub tombstone_days: u32,
}

/// Live progress streams (the service) and the event trail (both binaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSettings {
    /// `PROGRESS_STREAM_HEARTBEAT_SECONDS` (default 15): a stream with nothing to say
    /// sends a heartbeat this often, so proxies keep it open.
    pub heartbeat: Duration,
    /// `PROGRESS_STREAM_MAX` (default 20000): open streams per service replica; one more
    /// is refused `ResourceExhausted` (429).
    pub max_streams: usize,
    /// `EVENT_TRAIL_ENABLED` (default `true`): the handler records the event trail.
    pub trail_enabled: bool,
    /// `EVENT_TRAIL_RETENTION_DAYS` (default 7): the service's cleanup deletes trail
    /// entries older than this, and those beyond the newest 64 of their player and goal.
    pub trail_retention_days: u32,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads from a map (tests).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Env { get: &get };
        let db = match env.text("DATABASE_URL") {
            Some(url) => {
                PgConnectOptions::from_str(&url).map_err(|e| env.bad("DATABASE_URL", &url, e))?
            }
            None => {
                let mut o = PgConnectOptions::new()
                    .host(&env.text("DB_HOST").unwrap_or_else(|| "localhost".into()))
                    .port(env.parse("DB_PORT", 5432u16)?)
                    .database(&env.text("DB_NAME").unwrap_or_else(|| "challenge_db".into()))
                    .username(&env.text("DB_USER").unwrap_or_else(|| "postgres".into()));
                if let Some(pw) = env.text("DB_PASSWORD") {
                    o = o.password(&pw);
                }
                if let Some(mode) = env.text("DB_SSLMODE") {
                    let m =
                        PgSslMode::from_str(&mode).map_err(|e| env.bad("DB_SSLMODE", &mode, e))?;
                    o = o.ssl_mode(m);
                }
                o
            }
        };
        let base_path =
            normalize_base_path(&env.text("BASE_PATH").unwrap_or_else(|| "/challenge".into()));
        // Read in this order (the first bad variable is the one reported), then grouped.
        let ags = AgsSettings {
            base_url: env
                .text("AB_BASE_URL")
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            client_id: env.text("AB_CLIENT_ID").unwrap_or_default(),
            client_secret: Secret(env.text("AB_CLIENT_SECRET").unwrap_or_default()),
            namespace: env.text("AB_NAMESPACE").unwrap_or_default(),
        };
        let auth = AuthSettings {
            enabled: env.boolean("PLUGIN_GRPC_SERVER_AUTH_ENABLED", true)?,
            refresh_interval: Duration::from_secs(env.positive("REFRESH_INTERVAL", 600u64)?),
            role_cache_ttl: Duration::from_secs(
                env.positive("ROLES_CACHE_EXPIRATION_TIME", 3600u64)?,
            ),
        };
        let rewards = RewardSettings {
            mode: match env.text("REWARD_CLIENT_MODE").as_deref() {
                None | Some("real") => RewardMode::Real,
                Some("mock") => RewardMode::Mock,
                Some(v) => return Err(env.bad("REWARD_CLIENT_MODE", v, "expected real or mock")),
            },
            dedup: match env.text("REWARD_GRANT_DEDUP").as_deref() {
                None | Some("marker") => RewardDedup::Marker,
                Some("fulfillment") => RewardDedup::Fulfillment,
                Some(v) => {
                    return Err(env.bad("REWARD_GRANT_DEDUP", v, "expected marker or fulfillment"));
                }
            },
            grant_settle: Duration::from_secs(env.parse("REWARD_GRANT_SETTLE_SECONDS", 30u64)?),
            reconcile_interval: Duration::from_secs(
                env.positive("REWARD_RECONCILE_INTERVAL_SECONDS", 30u64)?,
            ),
            auto_claim_interval: Duration::from_millis(
                env.positive("AUTO_CLAIM_INTERVAL_MS", 500u64)?,
            ),
        };
        let db_max_open_conns = env.positive("DB_MAX_OPEN_CONNS", 25u32)?;
        let config_path = env
            .text("CHALLENGE_CONFIG_PATH")
            .or_else(|| env.text("CONFIG_PATH"))
            .unwrap_or_else(|| "config/challenges.json".into());
        let flush_workers = env.positive("FLUSH_WORKERS", 4usize)?;
        let telemetry = TelemetrySettings {
            log_level: match env.text("LOG_LEVEL") {
                None => "info".into(),
                Some(v) => {
                    check_log_level(&v).map_err(|reason| env.bad("LOG_LEVEL", &v, reason))?;
                    v
                }
            },
            otel_service_name: env.text("OTEL_SERVICE_NAME").unwrap_or_default(),
            otel_exporter_zipkin_endpoint: match env.text("OTEL_EXPORTER_ZIPKIN_ENDPOINT") {
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(env.bad(
                        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                        &u,
                        "expected an http:// or https:// URL",
                    ));
                }
                other => other,
            },
        };
        let redis = RedisSettings {
            host: env.text("REDIS_HOST"),
            port: env.parse("REDIS_PORT", 6379u16)?,
            password: env.text("REDIS_PASSWORD").map(Secret),
        };
        let ports = PortSettings {
            grpc: env.parse("GRPC_PORT", 6565u16)?,
            http: env.parse("HTTP_PORT", 8000u16)?,
            metrics: env.parse("METRICS_PORT", 8080u16)?,
        };
        let handler = HandlerSettings {
            flush_workers,
            buffer_flush_interval: Duration::from_millis(
                env.positive("BUFFER_FLUSH_INTERVAL_MS", 100u64)?,
            ),
            buffer_max_size: env.positive("BUFFER_MAX_SIZE", 10_000usize)?,
            ack_mode: match env.text("ACK_MODE").as_deref() {
                None | Some("durable") => AckMode::Durable,
                Some("buffered") => AckMode::Buffered,
                Some(v) => return Err(env.bad("ACK_MODE", v, "expected durable or buffered")),
            },
            auto_initialize_on_event: env.boolean("AUTO_INITIALIZE_ON_EVENT", true)?,
        };
        let clock_offset_seconds = env.parse("CLOCK_OFFSET_SECONDS", 0i64)?;
        let db = DbSettings {
            connect: db,
            max_open_conns: db_max_open_conns,
            warm_conns: env
                .parse("DB_WARM_CONNS", db_max_open_conns)?
                .min(db_max_open_conns),
            migrate_on_start: env.boolean("MIGRATE_ON_START", true)?,
            partitions: match env.parse(
                "DB_PARTITIONS",
                crate::store::partitions::DEFAULT_PARTITIONS,
            )? {
                n if n <= crate::store::partitions::MAX_PARTITIONS => n,
                n => {
                    return Err(env.bad(
                        "DB_PARTITIONS",
                        &n.to_string(),
                        "expected 0 (none) to 1024",
                    ));
                }
            },
        };
        let cleanup = CleanupSettings {
            enabled: env.boolean("CLEANUP_ENABLED", true)?,
            interval: Duration::from_secs(60 * env.positive("CLEANUP_INTERVAL_MINUTES", 60u64)?),
            retention_days: env.positive("CLEANUP_RETENTION_DAYS", 7u32)?,
            batch_size: env.positive("CLEANUP_BATCH_SIZE", 1000u32)?,
            batch_pause: Duration::from_millis(env.parse("CLEANUP_BATCH_PAUSE_MS", 50u64)?),
            tombstone_days: env.positive("ERASURE_TOMBSTONE_DAYS", 7u32)?,
        };
        let live = LiveSettings {
            heartbeat: Duration::from_secs(
                env.positive("PROGRESS_STREAM_HEARTBEAT_SECONDS", 15u64)?,
            ),
            max_streams: env.positive("PROGRESS_STREAM_MAX", 20_000usize)?,
            trail_enabled: env.boolean("EVENT_TRAIL_ENABLED", true)?,
            trail_retention_days: env.positive("EVENT_TRAIL_RETENTION_DAYS", 7u32)?,
        };
        let s = Settings {
            ags,
            auth,
            rewards,
            db,
            handler,
            redis,
            ports,
            telemetry,
            cleanup,
            live,
            base_path,
            config_path,
            clock_offset_seconds,
        };
        Ok(s)
    }

    /// The clock both binaries use: the system clock, shifted by `CLOCK_OFFSET_SECONDS`.
    pub fn clock(&self) -> crate::clock::Clock {
        crate::clock::Clock::offset(chrono::Duration::seconds(self.clock_offset_seconds))
    }
}

/// `"challenge/"` → `"/challenge"`; `"/"` and `""` → `""` (routes at the root).
pub fn normalize_base_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// `LOG_LEVEL` is a level or a `tracing` filter (`info,sqlx=warn`). A bare word that is not a
/// level (`verbose`) would be read as a target name and silence everything else, so it is
/// refused, as is anything the filter parser refuses.
fn check_log_level(v: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !d.contains('=') && !d.contains('[');
        if bare && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{d:?} is not a level (trace, debug, info, warn, error, off) nor a target=level directive"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(v)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Env<'a, F: Fn(&str) -> Option<String>> {
    get: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    /// A set, non-blank value.
    fn text(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    fn bad(&self, name: &str, value: &str, reason: impl std::fmt::Display) -> SettingsError {
        SettingsError {
            name: name.into(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }

    fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e| self.bad(name, &v, e)),
        }
    }

    fn positive<T>(&self, name: &str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr + PartialOrd + Default,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(name, default)?;
        if v <= T::default() {
            let raw = self.text(name).unwrap_or_default();
            return Err(self.bad(name, &raw, "must be greater than 0"));
        }
        Ok(v)
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.text(name) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(self.bad(name, &v, "expected true or false")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.base_path, "/challenge");
        assert!(s.auth.enabled);
        assert_eq!(s.auth.role_cache_ttl, Duration::from_secs(3600));
        assert_eq!(
            settings(&[("ROLES_CACHE_EXPIRATION_TIME", "60")])
                .unwrap()
                .auth
                .role_cache_ttl,
            Duration::from_secs(60)
        );
        assert!(settings(&[("ROLES_CACHE_EXPIRATION_TIME", "0")]).is_err());
        assert_eq!(s.rewards.mode, RewardMode::Real);
        assert_eq!(s.ports.grpc, 6565);
        assert_eq!(s.ports.http, 8000);
        assert_eq!(s.ports.metrics, 8080);
        assert_eq!(s.handler.ack_mode, AckMode::Durable);
        assert_eq!(s.handler.buffer_flush_interval, Duration::from_millis(100));
        assert!(s.handler.auto_initialize_on_event);
        assert_eq!(s.db.connect.get_database(), Some("challenge_db"));
        assert_eq!(s.rewards.dedup, RewardDedup::Marker);
        assert_eq!(s.rewards.grant_settle, Duration::from_secs(30));
        assert_eq!(s.rewards.reconcile_interval, Duration::from_secs(30));
        assert_eq!(s.rewards.auto_claim_interval, Duration::from_millis(500));
        assert!(s.db.migrate_on_start);
        // The warm-up opens the whole pool by default, never more than it.
        assert_eq!((s.db.max_open_conns, s.db.warm_conns), (25, 25));
        let db = settings(&[("DB_MAX_OPEN_CONNS", "8"), ("DB_WARM_CONNS", "50")])
            .unwrap()
            .db;
        assert_eq!((db.max_open_conns, db.warm_conns), (8, 8));
        assert_eq!(
            settings(&[("DB_WARM_CONNS", "0")]).unwrap().db.warm_conns,
            0
        );
        assert!(
            !settings(&[("MIGRATE_ON_START", "false")])
                .unwrap()
                .db
                .migrate_on_start
        );
        assert_eq!(
            s.cleanup,
            CleanupSettings {
                enabled: true,
                interval: Duration::from_secs(3600),
                retention_days: 7,
                batch_size: 1000,
                batch_pause: Duration::from_millis(50),
                tombstone_days: 7,
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("GRPC_PORT", "abc"),
            ("DB_WARM_CONNS", "-1"),
            ("ACK_MODE", "fast"),
            ("BUFFER_MAX_SIZE", "0"),
            ("PLUGIN_GRPC_SERVER_AUTH_ENABLED", "maybe"),
            ("REWARD_CLIENT_MODE", "fake"),
            ("REWARD_GRANT_DEDUP", "idempotent"),
            ("REWARD_GRANT_SETTLE_SECONDS", "-1"),
            ("REWARD_RECONCILE_INTERVAL_SECONDS", "0"),
            ("DB_PORT", "70000"),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "zipkin:9411"),
            ("LOG_LEVEL", "verbose"),
            ("MIGRATE_ON_START", "sometimes"),
            ("LOG_LEVEL", "info,sqlx=loud"),
            ("CLEANUP_ENABLED", "sometimes"),
            ("CLEANUP_INTERVAL_MINUTES", "0"),
            ("CLEANUP_RETENTION_DAYS", "-1"),
            ("CLEANUP_BATCH_SIZE", "lots"),
            ("CLEANUP_BATCH_PAUSE_MS", "-5"),
            ("ERASURE_TOMBSTONE_DAYS", "0"),
        ] {
            let err = settings(&[(k, v)]).unwrap_err();
            assert_eq!(err.name, k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn log_level_accepts_levels_and_filters() {
        for v in [
            "info",
            "Debug",
            "warn,sqlx=error",
            "extend_challenge=debug",
            "off",
        ] {
            assert_eq!(
                settings(&[("LOG_LEVEL", v)]).unwrap().telemetry.log_level,
                v
            );
        }
    }

    #[test]
    fn config_path_accepts_both_names() {
        assert_eq!(
            settings(&[("CONFIG_PATH", "/a.json")]).unwrap().config_path,
            "/a.json"
        );
        let both = settings(&[
            ("CONFIG_PATH", "/a.json"),
            ("CHALLENGE_CONFIG_PATH", "/b.json"),
        ]);
        assert_eq!(both.unwrap().config_path, "/b.json");
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let s = settings(&[
            ("AB_CLIENT_SECRET", "ags-client-secret-value"),
            ("REDIS_PASSWORD", "redis-password-value"),
            ("DB_PASSWORD", "db-password-value"),
        ])
        .unwrap();
        assert_eq!(s.ags.client_secret.expose(), "ags-client-secret-value");
        assert_eq!(
            s.redis.password.as_ref().map(Secret::expose),
            Some("redis-password-value")
        );
        let shown = format!("{s:?}");
        for secret in [
            "ags-client-secret-value",
            "redis-password-value",
            "db-password-value",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("***"), "{shown}");
        let url = settings(&[(
            "DATABASE_URL",
            "postgres://app:url-password-value@db.example:5433/challenges",
        )])
        .unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("url-password-value"), "{shown}");
        assert!(shown.contains("db.example:5433/challenges"), "{shown}");
    }

    #[test]
    fn base_path_is_normalized() {
        assert_eq!(normalize_base_path("challenge/"), "/challenge");
        assert_eq!(normalize_base_path("/"), "");
    }
}
