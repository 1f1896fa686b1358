//! Traces (CONTRACT §6), in a test binary of its own because it installs the process-wide
//! subscriber: an event delivered with the platform's B3 headers yields a server span in the
//! same trace, exported to a fake Zipkin collector.

mod common;

use std::time::Duration;

use common::*;
use extend_challenge_common::telemetry;
use serde_json::Value;
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const PARENT: &str = "e457b5a2e4d86bd1";

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn event_span_continues_the_platforms_b3_trace(pool: PgPool) {
    let zipkin = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/spans"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&zipkin)
        .await;
    let endpoint = format!("{}/api/v2/spans", zipkin.uri());
    let guard = telemetry::init_with(
        &settings(&[("OTEL_EXPORTER_ZIPKIN_ENDPOINT", endpoint.as_str())]),
        "extend-challenge-event-handler",
    );
    assert!(guard.tracing_enabled());

    let h = start(pool, &[], |b| b).await;
    let mut req = tonic::Request::new(login("user-1", "event-1"));
    req.metadata_mut()
        .insert("x-b3-traceid", TRACE.parse().unwrap());
    req.metadata_mut()
        .insert("x-b3-spanid", PARENT.parse().unwrap());
    req.metadata_mut()
        .insert("x-b3-sampled", "1".parse().unwrap());
    h.login_client().on_message(req).await.unwrap();
    h.stop().await.unwrap();

    let guard = tokio::task::spawn_blocking(move || {
        guard.force_flush().expect("flush");
        guard
    })
    .await
    .unwrap();
    let mut spans: Vec<Value> = Vec::new();
    for _ in 0..50 {
        spans = zipkin
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
            .collect();
        if spans.iter().any(|s| s["traceId"] == TRACE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let span = spans
        .iter()
        .find(|s| s["traceId"] == TRACE)
        .unwrap_or_else(|| panic!("no span in trace {TRACE}: {spans:#?}"));
    assert_eq!(span["parentId"], PARENT);
    assert_eq!(
        span["name"],
        "accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage"
    );
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(
        span["localEndpoint"]["serviceName"],
        "extend-challenge-event-handler"
    );
    assert_eq!(span["tags"]["rpc.grpc.status_code"], "0");
    // No user id in any span.
    let text = serde_json::to_string(&spans).unwrap();
    assert!(!text.contains("user-1"), "{text}");
    drop(guard);
}
