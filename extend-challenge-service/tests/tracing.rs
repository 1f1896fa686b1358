//! Traces end to end (CONTRACT §6), in a test binary of its own because it installs the
//! process-wide subscriber: the whole service on real sockets exports its server spans to a
//! fake Zipkin collector, each span a child of the caller's W3C or B3 context.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_client::ServiceClient;
use extend_challenge_common::telemetry;
use extend_challenge_service::auth::Authenticator;
use extend_challenge_service::server::{Application, Dependencies};
use serde_json::Value;
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const W3C_PARENT: &str = "00f067aa0ba902b7";
const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_PARENT: &str = "e457b5a2e4d86bd1";
const B3_SINGLE_TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const B3_SINGLE_PARENT: &str = "0020000000000001";

fn with_headers<T>(msg: T, headers: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("x-mock-user-id", "amy".parse().unwrap());
    for (k, v) in headers {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    req
}

/// Every span the collector received, by trace id.
async fn collected(zipkin: &MockServer) -> Vec<Value> {
    let mut spans = Vec::new();
    for req in zipkin.received_requests().await.unwrap_or_default() {
        assert_eq!(req.url.path(), "/api/v2/spans");
        let batch: Vec<Value> = serde_json::from_slice(&req.body).expect("zipkin v2 JSON");
        spans.extend(batch);
    }
    spans
}

fn find<'a>(spans: &'a [Value], trace: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["traceId"] == trace).collect();
    assert_eq!(found.len(), 1, "one span in trace {trace}: {spans:#?}");
    found[0]
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn server_spans_reach_zipkin_as_children_of_the_callers_context(pool: PgPool) {
    let zipkin = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/spans"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&zipkin)
        .await;
    let endpoint = format!("{}/api/v2/spans", zipkin.uri());
    let settings = settings(&[
        ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "challenge-under-test"),
        ("AB_BASE_URL", "http://127.0.0.1:9"),
    ]);
    let guard = telemetry::init_with(&settings, "extend-challenge-service");
    assert!(guard.tracing_enabled());
    assert!(telemetry::tracing_enabled());

    let (clock, _hand) = Clock::manual(at(NOON));
    let deps = Dependencies {
        catalog_version: None,
        pool,
        config: fixture_config(),
        granter: Arc::new(CountingGranter::default()),
        auth: Authenticator::from_settings(&settings, reqwest::Client::new()),
        clock,
    };
    let app = Application::build(&settings, deps).await.unwrap();
    let (grpc, http) = (app.grpc_addr(), app.http_addr());
    let stop = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());

    // REST with a W3C traceparent; the route has a path parameter (span name = template).
    let resp = reqwest::Client::new()
        .get(format!("http://{http}/challenge/v1/challenges/daily"))
        .header("x-mock-user-id", "amy")
        .header("traceparent", format!("00-{W3C_TRACE}-{W3C_PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // gRPC with B3 multi headers, then with the single b3 header on a call that fails.
    let mut client = ServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    client
        .get_user_challenges(with_headers(
            pb::GetChallengesRequest::default(),
            &[
                ("x-b3-traceid", B3_TRACE),
                ("x-b3-spanid", B3_PARENT),
                ("x-b3-sampled", "1"),
            ],
        ))
        .await
        .unwrap();
    let single = format!("{B3_SINGLE_TRACE}-{B3_SINGLE_PARENT}-1");
    let err = client
        .get_user_challenge(with_headers(
            pb::GetChallengeRequest {
                challenge_id: "nope".into(),
                active_only: false,
                ..Default::default()
            },
            &[("b3", single.as_str())],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    drop(client);

    stop.cancel();
    task.await.unwrap().unwrap();

    // force_flush blocks until the export answered: not on this (current-thread) runtime.
    let guard = tokio::task::spawn_blocking(move || {
        guard.force_flush().expect("flush");
        guard
    })
    .await
    .unwrap();
    let mut spans = collected(&zipkin).await;
    for _ in 0..50 {
        if spans.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        spans = collected(&zipkin).await;
    }

    let rest = find(&spans, W3C_TRACE);
    assert_eq!(rest["parentId"], W3C_PARENT);
    assert_eq!(rest["name"], "GET /challenge/v1/challenges/{challenge_id}");
    assert_eq!(rest["kind"], "SERVER");
    assert_eq!(rest["localEndpoint"]["serviceName"], "challenge-under-test");
    assert_eq!(rest["tags"]["http.response.status_code"], "200");
    assert_eq!(
        rest["tags"]["http.route"],
        "/challenge/v1/challenges/{challenge_id}"
    );

    let list = find(&spans, B3_TRACE);
    assert_eq!(list["parentId"], B3_PARENT);
    assert_eq!(list["name"], "service.Service/GetUserChallenges");
    assert_eq!(list["kind"], "SERVER");
    assert_eq!(list["tags"]["rpc.grpc.status_code"], "0", "{list:#}");

    let missing = find(&spans, B3_SINGLE_TRACE);
    assert_eq!(missing["parentId"], B3_SINGLE_PARENT);
    assert_eq!(missing["name"], "service.Service/GetUserChallenge");
    assert_eq!(missing["tags"]["rpc.grpc.status_code"], "5");

    // Nothing personal or raw in any span: no user id, no raw path.
    let text = serde_json::to_string(&spans).unwrap();
    assert!(!text.contains("amy"), "{text}");
    assert!(!text.contains("/challenges/daily"), "{text}");
    assert!(!text.contains("nope"), "{text}");
    drop(guard);
}
