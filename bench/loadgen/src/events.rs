//! S2: gRPC events as the Extend platform delivers them, and the ledger of what was
//! acknowledged, from which the validity check recomputes the expected progress.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use extend_challenge_common::pb::accelbyte::iam::account::v1::UserLoggedIn;
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{StatItem, StatItemUpdated};
use h2::client::SendRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::args::Args;
use crate::layout::{self, Layout};
use crate::openloop::{self, Stats};
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

/// gRPC paths of the two `OnMessage` methods (a unit test checks them against the generated
/// servers' names).
pub const LOGIN_PATH: &str =
    "/accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage";
pub const STAT_PATH: &str =
    "/accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage";

/// Events over raw HTTP/2 (the `h2` crate), not tonic's client stack: each call is a `POST`
/// with `content-type: application/grpc` and `te: trailers`, the body one gRPC frame (flag 0,
/// 4-byte big-endian length, the protobuf message, encoded here with prost), and its status is
/// read from `grpc-status` in the trailers (or in the headers of a trailers-only answer). The
/// server sees the same bytes as from a tonic client; the generator spends far less CPU per
/// call (no tower buffer task, no per-call codec stack), so a ceiling measures the server.
/// One connection per `--connections`, calls spread round-robin. No reconnect: if a
/// connection breaks, its calls fail (`grpc_Unavailable`) for the rest of the run.
#[derive(Clone)]
pub struct EventClient {
    conns: Arc<[SendRequest<Bytes>]>,
    login_uri: http::Uri,
    stat_uri: http::Uri,
    namespace: Arc<str>,
    tag: Arc<str>,
    ledger: Arc<Ledger>,
}

/// One gRPC message frame: compression flag 0, big-endian length, the encoded message.
pub fn grpc_frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    msg.encode(&mut buf).expect("capacity reserved");
    buf.freeze()
}

/// The `StatItemUpdated` message the generator sends for a stat event.
pub fn stat_event(
    id: String,
    namespace: &str,
    user_id: String,
    timestamp: String,
    stat_code: String,
    value: u32,
) -> StatItemUpdated {
    StatItemUpdated {
        id,
        namespace: namespace.to_string(),
        user_id: user_id.clone(),
        timestamp,
        payload: Some(StatItem {
            namespace: namespace.to_string(),
            user_id,
            stat_code,
            latest_value: value as f64,
            inc: 1.0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// tonic's mapping of an HTTP/2 error to a gRPC code (`Status::from_h2_error`), as the error
/// label `grpc_<Code>`: a broken connection is `Unavailable`.
fn h2_error(e: h2::Error) -> String {
    use h2::Reason;
    let code = match e.reason() {
        Some(Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        Some(Reason::CANCEL) => tonic::Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        Some(_) if !e.is_go_away() => tonic::Code::Internal,
        _ => tonic::Code::Unavailable,
    };
    format!("grpc_{code:?}")
}

fn grpc_status(v: Option<&http::HeaderValue>) -> Result<(), String> {
    let code = v
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    match code {
        tonic::Code::Ok => Ok(()),
        c => Err(format!("grpc_{c:?}")),
    }
}

/// One unary gRPC call: `body` is the framed request; `Ok` when `grpc-status` is 0.
async fn call(conn: SendRequest<Bytes>, uri: http::Uri, body: Bytes) -> Result<(), String> {
    let mut conn = conn.ready().await.map_err(h2_error)?;
    let mut req = http::Request::new(());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let (resp, mut send) = conn.send_request(req, false).map_err(h2_error)?;
    send.send_data(body, true).map_err(h2_error)?;
    let resp = resp.await.map_err(h2_error)?;
    if resp.status() != http::StatusCode::OK {
        // tonic reads a non-200 answer without grpc-status as Unavailable/Unknown/…; the
        // HTTP status is the more useful label here.
        if resp.headers().get("grpc-status").is_none() {
            return Err(format!("http_{}", resp.status().as_u16()));
        }
    }
    if let Some(s) = resp.headers().get("grpc-status") {
        return grpc_status(Some(s)); // trailers-only answer
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_error)?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(h2_error)?;
    grpc_status(trailers.as_ref().and_then(|t| t.get("grpc-status")))
}

impl EventClient {
    pub async fn connect(
        addr: &str,
        connections: usize,
        namespace: &str,
        ledger: Arc<Ledger>,
    ) -> anyhow::Result<Self> {
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect gRPC {addr}"))?;
            tcp.set_nodelay(true)?;
            // hyper's client windows (tonic's default): 2 MiB per stream, 5 MiB per connection.
            // With h2's default 64 KiB window its budget for small DATA frames (half the
            // connection window) is ~130 buffered 5-byte answers, and at 500 in flight the
            // connection is closed with ENHANCE_YOUR_CALM.
            let (send, conn) = h2::client::Builder::new()
                .initial_window_size(2 * 1024 * 1024)
                .initial_connection_window_size(5 * 1024 * 1024)
                .handshake(tcp)
                .await
                .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("gRPC connection: {e}");
                }
            });
            conns.push(send);
        }
        let uri = |path: &str| -> anyhow::Result<http::Uri> {
            Ok(format!("http://{addr}{path}").parse()?)
        };
        let tag = format!(
            "{:x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_millis()
        );
        Ok(EventClient {
            conns: conns.into(),
            login_uri: uri(LOGIN_PATH)?,
            stat_uri: uri(STAT_PATH)?,
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

    /// The framed request body of event `i` and its ledger bookkeeping (the stat value is
    /// taken from the ledger's sequence here, when the event is built).
    fn body(&self, i: u64, user: usize, is_login: bool, code: usize) -> (Bytes, usize, u32) {
        let ledger = &self.ledger;
        let id = format!("bench-{}-{i}", self.tag);
        let user_id = layout::user_id(user);
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let slot = user * ledger.codes + code;
        let tracked = is_login || code != 0;
        let value = if is_login || !tracked {
            0
        } else {
            ledger.seq[slot].fetch_add(1, Ordering::Relaxed) + 1
        };
        let body = if is_login {
            grpc_frame(&UserLoggedIn {
                id,
                namespace: self.namespace.to_string(),
                user_id,
                timestamp: ts,
                ..Default::default()
            })
        } else {
            let code_name = ledger.layout.code_name(code);
            grpc_frame(&stat_event(
                id,
                &self.namespace,
                user_id,
                ts,
                code_name,
                value,
            ))
        };
        (body, slot, value)
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
        let conn = self.conns[(i as usize) % self.conns.len()].clone();
        let (body, slot, value) = self.body(i, user, is_login, code);
        let tracked = is_login || code != 0;
        let uri = if is_login {
            self.login_uri.clone()
        } else {
            self.stat_uri.clone()
        };
        let ledger = self.ledger.clone();
        let op = match (is_login, code) {
            (true, _) => "grpc:login",
            (false, 0) => "grpc:stat_noop",
            _ => "grpc:stat",
        };
        let fut = async move {
            match call(conn, uri, body).await {
                Ok(()) => {
                    if tracked {
                        ledger.acked[slot].fetch_add(1, Ordering::Relaxed);
                        ledger.max_acked[slot].fetch_max(value, Ordering::Relaxed);
                    }
                    ledger.acked_total.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(code) => {
                    if tracked {
                        ledger.unsure[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(code)
                }
            }
        };
        (op, fut)
    }
}

pub async fn run_s2(args: &Args) -> anyhow::Result<()> {
    let addr = args.get_str("grpc", "127.0.0.1:6565");
    let users = args.get_usize("users", 10_000)?;
    let login_share = args.get_f64("login-share", 0.2)?;
    // `--rate` for `--duration`, or `--stages secs:rate,…` (per-stage percentiles: e.g. a
    // first stage that shows a cold start apart from the steady state).
    let plan = crate::api::plan_from(args, 1000.0)?;
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
