//! Prometheus metrics shared by both binaries: the standard per-method gRPC server metrics
//! (`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`,
//! as go-grpc-prometheus names them) and HTTP request histograms. Everything registers in
//! the prometheus default registry, which `ops` serves on `/metrics`.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::BodyExt as _;

use crate::grpc_end::{GrpcEndBody, OnGrpcEnd};
use prometheus::{
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, register_histogram_vec,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

/// Buckets of every request-latency histogram here (gRPC, HTTP, the player API, queries).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    seconds: HistogramVec,
}

static GRPC: LazyLock<GrpcMetrics> = LazyLock::new(|| {
    GrpcMetrics {
    started: register_int_counter_vec!(
        "grpc_server_started_total",
        "Total number of RPCs started on the server.",
        &["grpc_type", "grpc_service", "grpc_method"]
    )
    .expect("register grpc_server_started_total"),
    handled: register_int_counter_vec!(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        &["grpc_type", "grpc_service", "grpc_method", "grpc_code"]
    )
    .expect("register grpc_server_handled_total"),
    seconds: register_histogram_vec!(
        "grpc_server_handling_seconds",
        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        &["grpc_type", "grpc_service", "grpc_method"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register grpc_server_handling_seconds"),
}
});

static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP request latency by route, method and status.",
        &["method", "route", "status"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register http_request_duration_seconds")
});

/// `challenge_api_request_duration_seconds{protocol, route, status}`: the player API
/// (`service.Service` over gRPC, the REST routes), the deployment guide's name. `route` is
/// `service.Service/Method` or `METHOD /matched/template`; `status` the gRPC code name or the
/// HTTP status.
pub static API_REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "challenge_api_request_duration_seconds",
        "Player API request latency by protocol, route and status",
        &["protocol", "route", "status"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register challenge_api_request_duration_seconds")
});

/// `challenge_errors_total{protocol}`: requests answered with a server fault — gRPC
/// `Unknown`, `DeadlineExceeded`, `ResourceExhausted`, `Internal`, `Unavailable`,
/// `DataLoss` (health and reflection excluded), HTTP 5xx. Client errors are not counted.
pub static ERRORS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "challenge_errors_total",
        "Requests answered with a server fault (gRPC Unknown, DeadlineExceeded, ResourceExhausted, Internal, Unavailable, DataLoss; HTTP 5xx)",
        &["protocol"]
    )
    .expect("register challenge_errors_total")
});

/// `challenge_db_query_duration_seconds{operation}`: every statement sqlx runs, by its first
/// keyword (`select`, `insert`, `update`, `delete`, `with`, `other`), fed from sqlx's own
/// per-statement timing (see [`crate::telemetry`]).
pub static DB_QUERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "challenge_db_query_duration_seconds",
        "Database statement duration by operation",
        &["operation"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register challenge_db_query_duration_seconds")
});

/// Records one statement's duration; `summary` is sqlx's statement summary.
pub fn observe_db_query(summary: &str, seconds: f64) {
    let first = summary.split_whitespace().next().unwrap_or("");
    let op = ["select", "insert", "update", "delete", "with"]
        .into_iter()
        .find(|k| first.eq_ignore_ascii_case(k))
        .unwrap_or("other");
    DB_QUERY_SECONDS.with_label_values(&[op]).observe(seconds);
}

/// `challenge_db_connections_active`: pool connections in use (the guide's name).
pub static DB_CONNECTIONS_ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "challenge_db_connections_active",
        "Postgres pool connections in use"
    )
    .expect("register challenge_db_connections_active")
});

/// `challenge_db_connections_max`: the pool's limit (`DB_MAX_OPEN_CONNS`).
pub static DB_CONNECTIONS_MAX: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "challenge_db_connections_max",
        "Postgres pool connection limit (DB_MAX_OPEN_CONNS)"
    )
    .expect("register challenge_db_connections_max")
});

/// Registers the deployment guide's families at start-up, so `/metrics` lists them (and
/// alerts see a zero) before the first request: `protocols` are the error labels this
/// binary uses (`grpc`, `http`).
pub fn init_guide_metrics(protocols: &[&str]) {
    LazyLock::force(&API_REQUEST_SECONDS);
    LazyLock::force(&DB_QUERY_SECONDS);
    LazyLock::force(&DB_CONNECTIONS_ACTIVE);
    LazyLock::force(&DB_CONNECTIONS_MAX);
    for p in protocols {
        ERRORS_TOTAL.with_label_values(&[*p]);
    }
}

/// gRPC codes counted in `challenge_errors_total`.
fn is_server_fault(code: i64) -> bool {
    matches!(code, 2 | 4 | 8 | 13 | 14 | 15)
}

/// `challenge_db_pool_connections{state}`: Postgres pool connections `in_use` and `idle`.
pub static DB_POOL_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "challenge_db_pool_connections",
        "Postgres pool connections by state",
        &["state"]
    )
    .expect("register challenge_db_pool_connections")
});

/// Records the pool's state now.
pub fn sample_db_pool(pool: &sqlx::PgPool) {
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    DB_POOL_CONNECTIONS
        .with_label_values(&["in_use"])
        .set((size - idle).max(0));
    DB_POOL_CONNECTIONS.with_label_values(&["idle"]).set(idle);
    DB_CONNECTIONS_ACTIVE.set((size - idle).max(0));
    DB_CONNECTIONS_MAX.set(i64::from(pool.options().get_max_connections()));
}

/// Samples the pool every `every` until `shutdown` fires.
pub fn spawn_db_pool_sampler(
    pool: sqlx::PgPool,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            sample_db_pool(&pool);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// gRPC code names as go-grpc-prometheus labels them.
fn code_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Tower layer for a tonic server (`Server::builder().layer(GrpcMetricsLayer)`) recording the
/// standard gRPC server metrics for every unary call.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
}

/// What is known about one call until it completes.
struct CallLabels {
    service: String,
    method: String,
    start: Instant,
}

impl CallLabels {
    fn record(&self, code: i64) {
        let labels = ["unary", self.service.as_str(), self.method.as_str()];
        GRPC.handled
            .with_label_values(&["unary", &self.service, &self.method, code_name(code)])
            .inc();
        let seconds = self.start.elapsed().as_secs_f64();
        GRPC.seconds.with_label_values(&labels).observe(seconds);
        if self.service == "service.Service" {
            let route = format!("{}/{}", self.service, self.method);
            API_REQUEST_SECONDS
                .with_label_values(&["grpc", route.as_str(), code_name(code)])
                .observe(seconds);
        }
        if code != 0 {
            // Below ERROR (a client error is not the server's fault; server faults are
            // logged with their cause where they happen), with the method.
            tracing::debug!(
                grpc.service = %self.service,
                grpc.method = %self.method,
                grpc.code = code_name(code),
                "gRPC call answered with an error"
            );
        }
        if is_server_fault(code)
            && !self.service.starts_with("grpc.health.")
            && !self.service.starts_with("grpc.reflection.")
        {
            ERRORS_TOTAL.with_label_values(&["grpc"]).inc();
        }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<
        http_body_util::combinators::UnsyncBoxBody<
            bytes::Bytes,
            Box<dyn std::error::Error + Send + Sync>,
        >,
    >;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let call = CallLabels {
            service: service.to_string(),
            method: method.to_string(),
            start: Instant::now(),
        };
        GRPC.started
            .with_label_values(&["unary", &call.service, &call.method])
            .inc();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let (parts, body) = res.into_parts();
            let body = GrpcEndBody::new(body, &parts.headers, Some(call));
            Ok(http::Response::from_parts(
                parts,
                body.map_err(Into::into).boxed_unsync(),
            ))
        })
    }
}

impl OnGrpcEnd for CallLabels {
    fn finish(self, code: i64) {
        self.record(code);
    }
}

/// axum middleware recording `http_request_duration_seconds{method,route,status}`; the route
/// label is the matched route template, never the raw path (bounded cardinality).
pub async fn track_http(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let start = Instant::now();
    let res = next.run(req).await;
    let seconds = start.elapsed().as_secs_f64();
    let status = res.status();
    HTTP_SECONDS
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .observe(seconds);
    let api_route = format!("{method} {route}");
    API_REQUEST_SECONDS
        .with_label_values(&["http", api_route.as_str(), status.as_str()])
        .observe(seconds);
    if status.is_server_error() {
        ERRORS_TOTAL.with_label_values(&["http"]).inc();
    }
    res
}

/// The default registry in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder as _;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = encoder.encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
