//! Logs and traces (CONTRACT §6).
//!
//! - Logs: JSON lines on stdout, filtered by `LOG_LEVEL` (a level such as `info`, or a full
//!   `tracing` filter such as `info,sqlx=warn`).
//! - Traces: only when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set, an OpenTelemetry layer exports
//!   spans to that Zipkin v2 endpoint (batched on the tokio runtime), and the global text-map
//!   propagator reads W3C `traceparent`/`tracestate` and B3 (single `b3` header and multi
//!   `x-b3-*` headers). [`GrpcTraceLayer`] and [`trace_http`] open one server span per call,
//!   named after the gRPC method or the matched HTTP route, child of the caller's context.
//!   Spans carry no request bodies, no raw paths, no user ids.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::grpc_end::{GrpcEndBody, OnGrpcEnd};
use crate::settings::Settings;

/// Target of the server spans (and prefix of every target the trace layer exports).
const TARGET: &str = "extend_challenge";

/// Set once an exporter is installed; the server layers are pass-through until then.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (an endpoint was set and the subscriber installed).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

fn env_filter(level: &str) -> EnvFilter {
    EnvFilter::try_new(level)
        .or_else(|_| EnvFilter::try_new("info"))
        .expect("'info' is a valid filter")
}

fn json_layer<S>() -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(true)
}

/// Installs the global JSON subscriber, no traces. Safe to call more than once (later calls
/// are no-ops), so tests that build several apps in one process do not fail.
pub fn init(level: &str) {
    let _ = tracing_subscriber::registry()
        .with(json_layer().with_filter(env_filter(level)))
        .with(db_query_metrics())
        .try_init();
}

/// sqlx times every statement itself and reports it as a `sqlx::query` event (DEBUG, or
/// WARN when slow) with `summary` and `elapsed_secs`; this layer turns those events into
/// `challenge_db_query_duration_seconds`. Its own per-layer filter asks for them, so they
/// are produced whatever `LOG_LEVEL` says, and the log layer still prints them only when
/// `LOG_LEVEL` asks for them.
fn db_query_metrics<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    DbQueryMetrics.with_filter(Targets::new().with_target("sqlx::query", tracing::Level::DEBUG))
}

struct DbQueryMetrics;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DbQueryMetrics {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = QueryFields::default();
        event.record(&mut fields);
        if let Some(seconds) = fields.elapsed_secs {
            crate::metrics::observe_db_query(&fields.summary, seconds);
        }
    }
}

#[derive(Default)]
struct QueryFields {
    summary: String,
    elapsed_secs: Option<f64>,
}

impl tracing::field::Visit for QueryFields {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.summary = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" && self.summary.is_empty() {
            self.summary = format!("{value:?}").trim_matches('"').to_owned();
        }
    }
}

/// Flushes and shuts the trace exporter down when dropped (keep it alive in `main`).
#[must_use = "dropping the guard shuts the trace exporter down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether this guard owns a span exporter.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now. Blocks the calling thread until the exporter has
    /// answered, so call it from a blocking context (`spawn_blocking`), not from a task on a
    /// current-thread runtime.
    pub fn force_flush(&self) -> Result<(), String> {
        match &self.provider {
            Some(p) => p.force_flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        TRACING.store(false, Ordering::Relaxed);
        shutdown(provider);
    }
}

/// Flushes and stops the provider. Shutting down waits for the batch task, which runs on the
/// tokio runtime: on a multi-thread runtime hand this worker's tasks off first; a
/// current-thread runtime cannot run that task while we wait, so shut down from another
/// thread, unwaited.
fn shutdown(provider: SdkTracerProvider) {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            let _ = tokio::task::block_in_place(|| provider.shutdown());
        }
        Ok(_) => {
            std::thread::spawn(move || {
                let _ = provider.shutdown();
            });
        }
        Err(_) => {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: JSON logs (`LOG_LEVEL`) and, when
/// `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set, span export to Zipkin as `OTEL_SERVICE_NAME`
/// (default `default_service_name`, the binary's name) with W3C + B3 propagation.
///
/// Must be called inside a tokio runtime when tracing is enabled (the batch exporter is a
/// task on it). If a global subscriber is already installed, nothing changes and the guard
/// reports tracing disabled.
pub fn init_with(settings: &Settings, default_service_name: &str) -> TelemetryGuard {
    let Some(endpoint) = settings
        .telemetry
        .otel_exporter_zipkin_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    else {
        init(&settings.telemetry.log_level);
        return TelemetryGuard { provider: None };
    };
    let service_name = if settings.telemetry.otel_service_name.trim().is_empty() {
        default_service_name.to_owned()
    } else {
        settings.telemetry.otel_service_name.clone()
    };
    if tokio::runtime::Handle::try_current().is_err() {
        init(&settings.telemetry.log_level);
        tracing::error!("tracing disabled: init_with was called outside a tokio runtime");
        return TelemetryGuard { provider: None };
    }
    let provider = match zipkin_provider(endpoint, &service_name) {
        Ok(p) => p,
        Err(e) => {
            init(&settings.telemetry.log_level);
            tracing::error!(error = %e, "tracing disabled: cannot build the Zipkin exporter");
            return TelemetryGuard { provider: None };
        }
    };
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Only our own spans and events (never hyper/h2/sqlx internals), whatever LOG_LEVEL.
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO));
    let installed = tracing_subscriber::registry()
        .with(json_layer().with_filter(env_filter(&settings.telemetry.log_level)))
        .with(db_query_metrics())
        .with(otel_layer)
        .try_init()
        .is_ok();
    if !installed {
        // Someone else owns the global subscriber: our spans would go nowhere.
        shutdown(provider);
        return TelemetryGuard { provider: None };
    }
    opentelemetry::global::set_text_map_propagator(propagator());
    opentelemetry::global::set_tracer_provider(provider.clone());
    TRACING.store(true, Ordering::Relaxed);
    tracing::info!(endpoint, service = %service_name, "exporting traces to Zipkin");
    TelemetryGuard {
        provider: Some(provider),
    }
}

/// W3C TraceContext, then B3. The B3 propagator extracts both the single `b3` header and the
/// multi `x-b3-*` headers whatever its injection encoding (multi, as the Extend templates).
// opentelemetry-zipkin is deprecated upstream (in favour of OTLP); CONTRACT §6 keeps the
// Zipkin endpoint and B3 of the reference.
#[allow(deprecated)]
fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(opentelemetry_zipkin::Propagator::with_encoding(
            opentelemetry_zipkin::B3Encoding::MultipleHeader,
        )),
    ])
}

#[allow(deprecated)]
fn zipkin_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, String> {
    // Our reqwest 0.13 client (rustls), through opentelemetry-http's `HttpClient` impl.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
        .with_http_client(ZipkinClient {
            http: client,
            service_name: service_name.to_owned(),
        })
        .with_collector_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: our reqwest client, plus the service name. opentelemetry-zipkin
/// 0.33 no longer writes `localEndpoint.serviceName` (it ignores the resource), and without
/// it Zipkin files every span under "unknown"; this puts it back into each JSON v2 span.
#[derive(Debug)]
struct ZipkinClient {
    http: reqwest::Client,
    service_name: String,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ZipkinClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = request.map(|body| {
            with_service_name(&body, &self.service_name)
                .map(bytes::Bytes::from)
                .unwrap_or(body)
        });
        self.http.send_bytes(request).await
    }
}

/// Sets `localEndpoint.serviceName` in every span of a Zipkin JSON v2 batch; `None` if the
/// body is not such a batch (then it is sent as it is).
fn with_service_name(body: &[u8], service_name: &str) -> Option<Vec<u8>> {
    let mut spans: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(body).ok()?;
    for span in &mut spans {
        let endpoint = span
            .entry("localEndpoint")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(endpoint) = endpoint.as_object_mut() {
            endpoint.insert("serviceName".into(), service_name.into());
        }
    }
    serde_json::to_vec(&spans).ok()
}

/// The caller's trace context from request headers, by the global propagator.
fn parent_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

// ---------------------------------------------------------------------------------------
// gRPC

/// gRPC codes that are server errors for a server span (OpenTelemetry semantic conventions).
fn grpc_server_error(code: i64) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Tower layer for a tonic server (`Server::builder().layer(GrpcTraceLayer)`, outermost):
/// one server span per call named `package.Service/Method`, child of the caller's W3C or B3
/// context, with `rpc.grpc.status_code`. Pass-through while tracing is disabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcTraceService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<GrpcTraceBody<R>>;
    type Error = S::Error;
    type Future = GrpcTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = tracing_enabled().then(|| {
            let path = req.uri().path().trim_start_matches('/');
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            let span = tracing::info_span!(
                target: TARGET,
                "grpc.server",
                otel.name = path,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let _ = span.set_parent(parent_context(req.headers()));
            span
        });
        let inner = match &span {
            Some(span) => span.in_scope(|| self.inner.call(req)),
            None => self.inner.call(req),
        };
        GrpcTraceFuture { inner, span }
    }
}

fn record_grpc_status(span: &tracing::Span, code: i64) {
    span.record("rpc.grpc.status_code", code);
    if grpc_server_error(code) {
        span.record("otel.status_code", "error");
    }
    if code == 12 {
        // Unknown method: do not let arbitrary paths become span names.
        span.record("otel.name", "grpc.unimplemented");
    }
}

pin_project_lite::pin_project! {
    /// The call's future, polled inside its span.
    pub struct GrpcTraceFuture<F> {
        #[pin]
        inner: F,
        span: Option<tracing::Span>,
    }
}

impl<F, R, E> Future for GrpcTraceFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = Result<http::Response<GrpcTraceBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _entered = this.span.as_ref().map(|s| s.enter());
            this.inner.poll(cx)
        };
        let res = match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                if let Some(span) = this.span.take() {
                    record_grpc_status(&span, 13);
                }
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(res)) => res,
        };
        let span = this.span.take();
        let (parts, body) = res.into_parts();
        let body = GrpcEndBody::new(body, &parts.headers, span);
        Poll::Ready(Ok(http::Response::from_parts(parts, body)))
    }
}

/// The response body of a traced call: ends the span with the call's status.
pub type GrpcTraceBody<R> = GrpcEndBody<R, tracing::Span>;

impl OnGrpcEnd for tracing::Span {
    fn finish(self, code: i64) {
        record_grpc_status(&self, code);
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// axum middleware (`Router::layer(axum::middleware::from_fn(trace_http))`): one server span
/// per request named `METHOD /matched/{route}` (never the raw path), child of the caller's
/// W3C or B3 context, with `http.response.status_code`. Pass-through while tracing is
/// disabled.
pub async fn trace_http(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !tracing_enabled() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => format!("{method} unmatched"),
    };
    let span = tracing::info_span!(
        target: TARGET,
        "http.server",
        otel.name = name.as_str(),
        otel.kind = "server",
        http.request.method = method.as_str(),
        http.route = route.as_deref().unwrap_or("unmatched"),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(parent_context(req.headers()));
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_codes() {
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(grpc_server_error(code), "{code}");
        }
        for code in [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 16] {
            assert!(!grpc_server_error(code), "{code}");
        }
    }

    #[test]
    fn service_name_is_put_into_each_span() {
        let body = br#"[{"traceId":"a","localEndpoint":{"port":1}},{"traceId":"b"}]"#;
        let out = with_service_name(body, "svc").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["localEndpoint"]["serviceName"], "svc");
        assert_eq!(v[0]["localEndpoint"]["port"], 1);
        assert_eq!(v[1]["localEndpoint"]["serviceName"], "svc");
        assert_eq!(v[1]["traceId"], "b");
        assert!(with_service_name(b"not json", "svc").is_none());
    }
}
