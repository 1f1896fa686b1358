//! S2: gRPC events as the Extend platform delivers them, and the ledger of what was
//! acknowledged, from which the validity check recomputes the expected progress.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::Context;
use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn,
    user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient as LoginClient,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItem, StatItemUpdated,
    statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient as StatClient,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use crate::args::Args;
use crate::layout::{self, Layout};
use crate::openloop::{self, Plan, Stats};
use crate::{procstat, report, verify};

/// What was sent and acknowledged per (user, code slot): slot `user * codes + code`, code 0 =
/// login events, the others the layout's stat codes. `acked` counts `OK` answers; `unsure` counts failed calls (the
/// server may or may not have applied them); `seq` is the last stat value sent (values are
/// 1, 2, 3… per user and code, so an absolute goal should end at the largest acknowledged).
pub struct Ledger {
    pub users: usize,
    pub layout: Layout,
    /// Code slots per user (`layout.code_count()`).
    pub codes: usize,
    pub acked: Vec<AtomicU32>,
    pub unsure: Vec<AtomicU32>,
    pub seq: Vec<AtomicU32>,
    pub max_acked: Vec<AtomicU32>,
    pub acked_total: AtomicU64,
}

impl Ledger {
    pub fn new(users: usize, layout: Layout) -> Self {
        let codes = layout.code_count();
        let v = |n: usize| (0..n).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Ledger {
            users,
            layout,
            codes,
            acked: v(users * codes),
            unsure: v(users * codes),
            seq: v(users * codes),
            max_acked: v(users * codes),
            acked_total: AtomicU64::new(0),
        }
    }
}

#[derive(Clone)]
pub struct EventClient {
    login: Vec<LoginClient<Channel>>,
    stat: Vec<StatClient<Channel>>,
    namespace: Arc<str>,
    tag: Arc<str>,
    ledger: Arc<Ledger>,
}

impl EventClient {
    pub async fn connect(
        addr: &str,
        connections: usize,
        namespace: &str,
        ledger: Arc<Ledger>,
    ) -> anyhow::Result<Self> {
        let mut login = Vec::new();
        let mut stat = Vec::new();
        for _ in 0..connections.max(1) {
            let ch = Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connect gRPC {addr}"))?;
            login.push(LoginClient::new(ch.clone()));
            stat.push(StatClient::new(ch));
        }
        let tag = format!(
            "{:x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_millis()
        );
        Ok(EventClient {
            login,
            stat,
            namespace: namespace.into(),
            tag: tag.into(),
            ledger,
        })
    }

    /// One event like the reference k6 script: `login_share` logins, the rest stat updates
    /// with a code drawn uniformly by the layout ([`Layout::stat_code`]: in the reference
    /// layout from its five, whose `login_count` stat feeds no statistic goal — a counted
    /// no-op, as in the reference fixture under CONTRACT §2.1).
    pub fn next(
        &self,
        i: u64,
        rng: &mut StdRng,
        login_share: f64,
    ) -> (
        &'static str,
        impl Future<Output = Result<(), String>> + Send + use<>,
    ) {
        let user = rng.random_range(0..self.ledger.users);
        let is_login = rng.random_bool(login_share);
        let code = if is_login {
            0
        } else {
            self.ledger.layout.stat_code(rng)
        };
        self.event(i, user, is_login, code)
    }

    pub fn event(
        &self,
        i: u64,
        user: usize,
        is_login: bool,
        code: usize,
    ) -> (
        &'static str,
        impl Future<Output = Result<(), String>> + Send + use<>,
    ) {
        let conn = (i as usize) % self.login.len();
        let id = format!("bench-{}-{i}", self.tag);
        let user_id = layout::user_id(user);
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ledger = self.ledger.clone();
        let slot = user * ledger.codes + code;
        let stat_code = ledger.layout.code_name(code);
        let tracked = is_login || code != 0;
        let value = if is_login || !tracked {
            0
        } else {
            ledger.seq[slot].fetch_add(1, Ordering::Relaxed) + 1
        };
        let namespace = self.namespace.to_string();
        let mut login = self.login[conn].clone();
        let mut stat = self.stat[conn].clone();
        let op = match (is_login, code) {
            (true, _) => "grpc:login",
            (false, 0) => "grpc:stat_noop",
            _ => "grpc:stat",
        };
        let fut = async move {
            let r = if is_login {
                let msg = UserLoggedIn {
                    id,
                    namespace,
                    user_id,
                    timestamp: ts,
                    ..Default::default()
                };
                login.on_message(msg).await.map(|_| ())
            } else {
                let msg = StatItemUpdated {
                    id,
                    namespace: namespace.clone(),
                    user_id: user_id.clone(),
                    timestamp: ts,
                    payload: Some(StatItem {
                        namespace,
                        user_id,
                        stat_code,
                        latest_value: value as f64,
                        inc: 1.0,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                stat.on_message(msg).await.map(|_| ())
            };
            match r {
                Ok(()) => {
                    if tracked {
                        ledger.acked[slot].fetch_add(1, Ordering::Relaxed);
                        ledger.max_acked[slot].fetch_max(value, Ordering::Relaxed);
                    }
                    ledger.acked_total.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(s) => {
                    if tracked {
                        ledger.unsure[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(format!("grpc_{:?}", s.code()))
                }
            }
        };
        (op, fut)
    }
}

pub async fn run_s2(args: &Args) -> anyhow::Result<()> {
    let addr = args.get_str("grpc", "127.0.0.1:6565");
    let rate = args.get_f64("rate", 1000.0)?;
    let duration = args.get_secs("duration", 20.0)?;
    let users = args.get_usize("users", 10_000)?;
    let login_share = args.get_f64("login-share", 0.2)?;
    let mut plan = Plan::constant(rate, duration, args.get_usize("max-in-flight", 500)?);
    plan.drain = args.get_secs("drain", 30.0)?;
    plan.closed = args.opt("closed").map(|n| n.parse()).transpose()?;
    let layout = Layout::from_args(args)?;
    let ledger = Arc::new(Ledger::new(users, layout));
    let client = EventClient::connect(
        &addr,
        args.get_usize("connections", 4)?,
        &args.get_str("namespace", "bench"),
        ledger.clone(),
    )
    .await?;
    let run_start = chrono::Utc::now();
    let stats = Arc::new(Stats::default());
    let watch = procstat::Watch::start(&args.pids());
    let mut rng = StdRng::seed_from_u64(args.get_usize("seed", 42)? as u64);
    let elapsed = openloop::run(&plan, stats.clone(), |i| {
        client.next(i, &mut rng, login_share)
    })
    .await;
    let total_ok = stats.ok_with_prefix("");
    let cpu = watch.finish(elapsed.as_secs_f64(), |_| total_ok);
    let validity = if args.get_bool("verify", true)? {
        verify::check(args, &ledger, run_start).await?
    } else {
        json!("skipped (--verify false)")
    };
    let doc = json!({
        "scenario": args.get_str("label", "S2 events"),
        "target": addr,
        "plan": plan.describe(),
        "users": users,
        "layout": layout.name(),
        "goals_per_event_in_config": layout.goals_per_event(login_share),
        "result": stats.summary(elapsed),
        "process": cpu,
        "validity": validity,
    });
    report::emit(args, &doc)?;
    verify::fail_if_invalid(&doc)
}
