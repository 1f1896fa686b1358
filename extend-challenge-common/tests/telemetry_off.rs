//! Without `OTEL_EXPORTER_ZIPKIN_ENDPOINT` nothing about traces is installed, and the server
//! layers pass calls through unchanged. Its own test binary: it installs the global subscriber.

use std::collections::HashMap;

use extend_challenge_common::settings::Settings;
use extend_challenge_common::telemetry::{self, GrpcTraceLayer};
use http_body_util::BodyExt as _;
use tower::{Layer as _, ServiceExt as _};

#[tokio::test]
async fn no_endpoint_means_no_exporter_and_pass_through_layers() {
    let settings = Settings::from_map(&HashMap::from([(
        "OTEL_SERVICE_NAME".to_string(),
        "challenge".to_string(),
    )]))
    .unwrap();
    assert_eq!(settings.telemetry.otel_exporter_zipkin_endpoint, None);
    let guard = telemetry::init_with(&settings, "extend-challenge-service");
    assert!(!guard.tracing_enabled());
    assert!(!telemetry::tracing_enabled());
    // The global propagator is still the no-op one: no W3C or B3 fields.
    let fields = opentelemetry::global::get_text_map_propagator(|p| p.fields().count());
    assert_eq!(fields, 0);
    guard.force_flush().unwrap();

    // A gRPC-shaped call through the layer: body and trailers untouched.
    let inner = tower::service_fn(|req: http::Request<String>| async move {
        assert_eq!(req.uri().path(), "/service.Service/GetUserChallenges");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = http_body_util::StreamBody::new(futures::stream::iter([
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(
                "payload",
            ))),
            Ok(http_body::Frame::trailers(trailers)),
        ]));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    let req = http::Request::builder()
        .uri("/service.Service/GetUserChallenges")
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .body(String::new())
        .unwrap();
    let res = GrpcTraceLayer.layer(inner).oneshot(req).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "payload");
}
