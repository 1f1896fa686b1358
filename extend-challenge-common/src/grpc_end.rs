//! Observing how a gRPC call ended, for the server layers that record it (metrics, traces).
//!
//! A unary call's status is either in the response headers ("trailers-only", usually an
//! error) or in the trailers after the body. [`GrpcEndBody`] wraps the body and reports the
//! code once: from the trailers, `OK` when the body ends without them, `INTERNAL` on a body
//! error, `CANCELLED` when it is dropped unfinished (the client went away).

use std::pin::Pin;
use std::task::{Context, Poll};

/// Receives a call's final gRPC status code, once.
pub trait OnGrpcEnd {
    fn finish(self, code: i64);
}

/// The `grpc-status` in a header map (headers of a trailers-only response, or trailers).
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's status to `on_end` (nothing when `None`).
    pub struct GrpcEndBody<R, F: OnGrpcEnd> {
        #[pin]
        inner: R,
        on_end: Option<F>,
    }

    impl<R, F: OnGrpcEnd> PinnedDrop for GrpcEndBody<R, F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(on_end) = this.project().on_end.take() {
                on_end.finish(1);
            }
        }
    }
}

impl<R, F: OnGrpcEnd> GrpcEndBody<R, F> {
    /// Wraps `inner`; when `headers` already carry the status, reports it now.
    pub fn new(inner: R, headers: &http::HeaderMap, on_end: Option<F>) -> Self {
        let on_end = match (on_end, grpc_status(headers)) {
            (Some(f), Some(code)) => {
                f.finish(code);
                None
            }
            (f, _) => f,
        };
        GrpcEndBody { inner, on_end }
    }
}

impl<R: http_body::Body, F: OnGrpcEnd> http_body::Body for GrpcEndBody<R, F> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if this.on_end.is_some() {
            let code = match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    frame.trailers_ref().map(|t| grpc_status(t).unwrap_or(0))
                }
                Poll::Ready(None) => Some(0),
                Poll::Ready(Some(Err(_))) => Some(13),
                Poll::Pending => None,
            };
            if let Some(code) = code
                && let Some(on_end) = this.on_end.take()
            {
                on_end.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", " 5".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(5));
    }

    struct Record(std::sync::Arc<std::sync::Mutex<Vec<i64>>>);
    impl OnGrpcEnd for Record {
        fn finish(self, code: i64) {
            self.0.lock().unwrap().push(code);
        }
    }

    #[test]
    fn trailers_only_reports_at_once_and_drop_reports_cancelled() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "7".parse().unwrap());
        drop(GrpcEndBody::new((), &h, Some(Record(seen.clone()))));
        drop(GrpcEndBody::new(
            (),
            &http::HeaderMap::new(),
            Some(Record(seen.clone())),
        ));
        assert_eq!(*seen.lock().unwrap(), vec![7, 1]);
    }
}
