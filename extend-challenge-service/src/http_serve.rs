//! Serving the REST app over HTTP/1.1 and h2c with limits we control, so every error a
//! client can provoke is the contract's JSON (CONTRACT §3.2), including the ones hyper would
//! otherwise answer itself:
//!
//! - **Oversized headers.** hyper answers `431` with an empty body once a request head
//!   outgrows its read buffer (about 400 KiB by default). The buffer here is
//!   [`MAX_READ_BUF`] (4 MiB), and [`MAX_HEADER_BYTES`] (64 KiB of header names and values)
//!   is enforced by [`normalize_errors`] with a JSON `431`. Only a head above 4 MiB still
//!   gets hyper's bare `431`.
//! - **Everything axum answers in plain text** (a body over the 2 MiB limit → `413`, a path
//!   that is not valid UTF-8 → `400`, a missing or wrong `Content-Type`, …) is rewritten by
//!   [`normalize_errors`] into `{"code","message","details":[]}`, keeping the status.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// hyper's per-connection read buffer: a request head must fit in it.
pub const MAX_READ_BUF: usize = 4 * 1024 * 1024;
/// Header names and values of one request, in bytes; more is a JSON `431`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` fires, then lets open connections finish
/// their requests (at most [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_READ_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_READ_BUF as u32);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// Middleware (outermost): refuses oversized headers with a JSON `431`, and turns any error
/// response that is not JSON into the contract's error body with the same status.
pub async fn normalize_errors(req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("request headers too large: {header_bytes} bytes (limit {MAX_HEADER_BYTES})"),
        );
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (_, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.to_string()
    };
    error_response(status, &message)
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The gRPC code a bare HTTP error status stands for (the inverse of the contract's table,
/// where it has one).
pub fn code_of_status(status: StatusCode) -> tonic::Code {
    use tonic::Code;
    match status.as_u16() {
        400 | 411 | 414 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::AlreadyExists,
        412 => Code::FailedPrecondition,
        413 | 429 | 431 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        _ if status.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code_of_status(status) as i32,
        "message": message,
        "details": [],
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.into_response()
}
