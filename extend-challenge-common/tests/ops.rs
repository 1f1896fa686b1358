//! The shared ops surface against real Postgres: /healthz follows the database, gRPC health
//! follows it too, and the gRPC metrics layer records calls with their codes.

use std::time::Duration;

use extend_challenge_common::metrics::GrpcMetricsLayer;
use extend_challenge_common::ops::{Health, serve_ops};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

async fn start(
    pool: PgPool,
) -> (
    Health,
    std::net::SocketAddr,
    std::net::SocketAddr,
    CancellationToken,
) {
    let shutdown = CancellationToken::new();
    let (health, health_server) = Health::new(pool, &["test.Service"]);
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = ops.local_addr().unwrap();
    tokio::spawn(serve_ops(ops, health.clone(), shutdown.clone()));
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(GrpcMetricsLayer)
            .add_service(health_server)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                token.cancelled_owned(),
            )
            .await
            .unwrap();
    });
    (health, ops_addr, grpc_addr, shutdown)
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn healthy_database_serves(pool: PgPool) {
    let (health, ops, grpc, shutdown) = start(pool).await;
    assert_eq!(
        get(ops, "/healthz").await.0,
        503,
        "NOT_SERVING before the first check"
    );
    assert!(health.check_now().await);
    let (code, body) = get(ops, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(body, r#"{"status":"healthy"}"#);
    assert_eq!(get(ops, "/livez").await.0, 200);

    let mut client = HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let res = client
        .check(HealthCheckRequest {
            service: "test.Service".into(),
        })
        .await
        .unwrap();
    assert_eq!(res.into_inner().status, ServingStatus::Serving as i32);
    let missing = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (_, metrics) = get(ops, "/metrics").await;
    assert!(metrics.contains(
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"}"#
    ), "{metrics}");
    assert!(metrics.contains(
        r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"}"#
    ), "{metrics}");
    shutdown.cancel();
}

#[tokio::test]
async fn unreachable_database_is_not_serving_but_live() {
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(opts);
    let (health, ops, grpc, shutdown) = start(pool).await;
    assert!(!health.check_now().await);
    assert_eq!(get(ops, "/healthz").await.0, 503);
    assert_eq!(get(ops, "/livez").await.0, 200);
    let mut client = HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let res = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(res.into_inner().status, ServingStatus::NotServing as i32);
    shutdown.cancel();
}
