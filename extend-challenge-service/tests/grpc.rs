//! The whole service on real sockets (ephemeral ports), each test on a fresh database: a
//! tonic client on the gRPC port (service.Service, health, reflection v1 and v1alpha), HTTP
//! clients on the REST and ops ports, and an orderly shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_client::ServiceClient;
use extend_challenge_service::auth::Authenticator;
use extend_challenge_service::server::{Application, Dependencies};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    ops: SocketAddr,
    granter: Arc<CountingGranter>,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(pool: PgPool, auth_enabled: bool) -> Running {
    let settings = settings(&[
        (
            "PLUGIN_GRPC_SERVER_AUTH_ENABLED",
            if auth_enabled { "true" } else { "false" },
        ),
        ("AB_BASE_URL", "http://127.0.0.1:9"),
    ]);
    let granter = Arc::new(CountingGranter::default());
    let (clock, _hand) = Clock::manual(at(NOON));
    let deps = Dependencies {
        catalog_version: None,
        pool,
        config: fixture_config(),
        granter: granter.clone(),
        auth: Authenticator::from_settings(&settings, reqwest::Client::new()),
        clock,
    };
    let app = Application::build(&settings, deps).await.unwrap();
    Running {
        grpc: app.grpc_addr(),
        http: app.http_addr(),
        ops: app.ops_addr(),
        granter,
        stop: app.shutdown_token(),
        task: tokio::spawn(app.run_until_stopped()),
    }
}

impl Running {
    async fn client(&self) -> ServiceClient<Channel> {
        ServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn as_user<T>(user: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("x-mock-user-id", user.parse().unwrap());
    req
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn every_rpc_over_grpc(pool: PgPool) {
    let svc = start(pool.clone(), false).await;
    let mut c = svc.client().await;

    let list = c
        .get_user_challenges(as_user(
            "amy",
            pb::GetChallengesRequest {
                active_only: false,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.challenges.len(), 3);
    assert_eq!(list.challenges[0].goals[1].goal_id, "kill-50");
    assert!(list.challenges[0].goals[1].locked);

    let init = c
        .initialize_player(as_user("amy", pb::InitializeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((init.new_assignments, init.total_active), (3, 3));

    let active = c
        .get_user_challenges(as_user(
            "amy",
            pb::GetChallengesRequest {
                active_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.challenges.len(), 2);

    let one = c
        .get_user_challenge(as_user(
            "amy",
            pb::GetChallengeRequest {
                challenge_id: "daily".into(),
                active_only: false,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.goals[0].expires_at, "2025-11-05T00:00:00Z");
    let err = c
        .get_user_challenge(as_user(
            "amy",
            pb::GetChallengeRequest {
                challenge_id: "nope".into(),
                active_only: false,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "challenge 'nope' not found")
    );

    let set = c
        .set_goal_active(as_user(
            "amy",
            pb::SetGoalActiveRequest {
                challenge_id: "winter".into(),
                goal_id: "win-5".into(),
                is_active: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.message, "Goal activated successfully");
    assert_eq!(set.assigned_at, NOON);
    let err = c
        .set_goal_active(as_user(
            "amy",
            pb::SetGoalActiveRequest {
                challenge_id: "winter".into(),
                goal_id: "ghost".into(),
                is_active: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let err = c
        .claim_goal_reward(as_user(
            "amy",
            pb::ClaimRewardRequest {
                challenge_id: "winter".into(),
                goal_id: "kill-10".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "Goal not completed. Please wait 1 second and try again. (goal_id: kill-10, status: not_started)"
    );

    // Rewards (CONTRACT §7): claim all and the history over gRPC.
    materialize(&pool, &fixture_config(), "amy", "login-3").await;
    sqlx::query(
        "UPDATE user_goal_progress SET progress = 3, status = 'completed', completed_at = now(), \
           is_active = true WHERE user_id = 'amy' AND goal_id = 'login-3'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let all = c
        .claim_challenge_rewards(as_user(
            "amy",
            pb::ClaimChallengeRewardsRequest {
                challenge_id: "winter".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.challenge_id, "winter");
    let claimed: Vec<&str> = all.claimed.iter().map(|c| c.goal_id.as_str()).collect();
    assert_eq!(claimed, ["login-3"]);
    assert_eq!(all.claimed[0].rewards.len(), 1);
    assert_eq!(all.skipped.len(), 4);
    assert_eq!(all.skipped[0].goal_id, "kill-10");
    assert_eq!(all.skipped[0].code, Code::FailedPrecondition as i32);
    let history = c
        .get_reward_history(as_user(
            "amy",
            pb::GetRewardHistoryRequest {
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.rewards.len(), 1);
    assert_eq!(
        (
            history.rewards[0].goal_id.as_str(),
            history.rewards[0].state.as_str()
        ),
        ("login-3", "granted")
    );
    assert_eq!(history.next_page_token, "");
    let err = c
        .get_reward_history(as_user(
            "amy",
            pb::GetRewardHistoryRequest {
                page_size: 0,
                page_token: "garbage!".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let batch = c
        .batch_select_goals(as_user(
            "amy",
            pb::BatchSelectRequest {
                challenge_id: "winter".into(),
                goal_ids: vec!["win-5".into(), "win-5".into()],
                replace_existing: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.selected_goals.len(), 1);
    let err = c
        .batch_select_goals(as_user(
            "amy",
            pb::BatchSelectRequest {
                challenge_id: "winter".into(),
                goal_ids: vec![],
                replace_existing: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "goal_ids cannot be empty")
    );

    let random = c
        .random_select_goals(as_user(
            "amy",
            pb::RandomSelectRequest {
                challenge_id: "daily".into(),
                count: 1,
                replace_existing: false,
                exclude_active: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(random.selected_goals[0].goal_id, "daily-play");
    let err = c
        .random_select_goals(as_user(
            "amy",
            pb::RandomSelectRequest {
                challenge_id: "daily".into(),
                count: 0,
                replace_existing: false,
                exclude_active: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "count must be greater than 0")
    );

    let rot = c
        .get_rotation_status(as_user(
            "amy",
            pb::GetRotationStatusRequest {
                challenge_id: "weekly".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let r = rot.rotation.unwrap();
    assert!(r.enabled);
    assert_eq!(r.current_period.unwrap().start_time, "2025-11-03T00:00:00Z");

    let health = c
        .health_check(pb::HealthCheckRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "healthy");
    assert_eq!(svc.granter.calls(), 1, "the claim-all's one grant");
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn claim_over_grpc_grants_once(pool: PgPool) {
    let svc = start(pool.clone(), false).await;
    let mut c = svc.client().await;
    c.initialize_player(as_user("ben", pb::InitializeRequest {}))
        .await
        .unwrap();
    materialize(&pool, &fixture_config(), "ben", "kill-10").await;
    sqlx::query("UPDATE user_goal_progress SET progress = 10, status = 'completed', completed_at = now() WHERE user_id = 'ben' AND goal_id = 'kill-10'")
        .execute(&pool)
        .await
        .unwrap();
    let req = || {
        as_user(
            "ben",
            pb::ClaimRewardRequest {
                challenge_id: "winter".into(),
                goal_id: "kill-10".into(),
            },
        )
    };
    let ok = c.claim_goal_reward(req()).await.unwrap().into_inner();
    assert_eq!(ok.status, "claimed");
    assert_eq!(ok.claimed_at, NOON);
    assert_eq!(ok.reward.unwrap().reward_id, "bronze-sword");
    let err = c.claim_goal_reward(req()).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(
        err.message(),
        format!("Reward has already been claimed (goal_id: kill-10, claimed_at: {NOON})")
    );
    assert_eq!(svc.granter.calls(), 1);
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn health_reflection_rest_and_ops_ports(pool: PgPool) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let svc = start(pool, false).await;
    let channel = Channel::from_shared(format!("http://{}", svc.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for name in ["", "service.Service"] {
        let resp = health
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{name:?}");
    }

    // Reflection, both versions.
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut r = ServerReflectionClient::new(channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = r
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let msg = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("unexpected reflection answer")
        };
        let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(
            names,
            ["grpc.health.v1.Health", "service.Admin", "service.Service"]
        );
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut r = ServerReflectionClient::new(channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "service.Service".into(),
            )),
        };
        let mut stream = r
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let msg = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = msg.message_response else {
            panic!("unexpected reflection answer")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    // REST on its own port, ops on another.
    let http = reqwest::Client::new();
    let resp = http
        .get(format!(
            "http://{}/challenge/v1/challenges?active_only=true",
            svc.http
        ))
        .header("x-mock-user-id", "cat")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(resp.text().await.unwrap(), r#"{"challenges":[]}"#);
    let healthz = http
        .get(format!("http://{}/healthz", svc.ops))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let mut c = svc.client().await;
    c.get_user_challenges(as_user("cat", pb::GetChallengesRequest::default()))
        .await
        .unwrap();
    let metrics = http
        .get(format!("http://{}/metrics", svc.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("grpc_server_handled_total")
                && l.contains("grpc_method=\"GetUserChallenges\"")
                && l.contains("grpc_code=\"OK\"")),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds"));
    assert!(metrics.contains("challenge_db_pool_connections{state=\"in_use\"}"));
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn grpc_requires_a_token_except_for_health(pool: PgPool) {
    let svc = start(pool, true).await;
    let mut c = svc.client().await;
    let err = c
        .get_user_challenges(pb::GetChallengesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .get_rotation_status(pb::GetRotationStatusRequest {
            challenge_id: "daily".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(pb::InitializeRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer not-a-jwt".parse().unwrap());
    assert_eq!(
        c.initialize_player(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.health_check(pb::HealthCheckRequest {})
            .await
            .unwrap()
            .into_inner()
            .status,
        "healthy"
    );
    svc.stop().await;
}

/// Status and JSON error body of a REST answer; panics when the body is not the contract's
/// error JSON.
async fn json_error(resp: reqwest::Response) -> (u16, i64, String) {
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    assert!(
        ctype.starts_with("application/json"),
        "{status}: content-type {ctype:?}, body {text:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    assert_eq!(body["details"], serde_json::json!([]), "{text}");
    (
        status,
        body["code"].as_i64().unwrap(),
        body["message"].as_str().unwrap().to_string(),
    )
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn every_rest_error_is_json_on_real_sockets(pool: PgPool) {
    let svc = start(pool, false).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/challenge", svc.http);

    // A 10 MB body: over axum's 2 MiB limit.
    let resp = http
        .post(format!("{base}/v1/challenges/initialize"))
        .header("x-mock-user-id", "big")
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let (status, code, _) = json_error(resp).await;
    assert_eq!((status, code), (413, Code::ResourceExhausted as i64));

    // A path that is not valid UTF-8 once percent-decoded.
    let resp = http
        .get(format!("{base}/v1/challenges/%FF%FE"))
        .header("x-mock-user-id", "utf8")
        .send()
        .await
        .unwrap();
    let (status, code, _) = json_error(resp).await;
    assert_eq!((status, code), (400, Code::InvalidArgument as i64));

    // Oversized headers: 100 KB and 1 MB (hyper alone would answer an empty 431).
    for size in [100 * 1024, 1024 * 1024] {
        let resp = http
            .get(format!("{base}/v1/challenges"))
            .header("authorization", format!("Bearer {}", "a".repeat(size)))
            .send()
            .await
            .unwrap();
        let (status, code, message) = json_error(resp).await;
        assert_eq!(
            (status, code),
            (431, Code::ResourceExhausted as i64),
            "{size}"
        );
        assert!(message.contains("headers too large"), "{message}");
    }

    // A mock user that is not a usable id is refused, not replaced by the default user.
    let resp = http
        .get(format!("{base}/v1/challenges"))
        .header(
            "x-mock-user-id",
            reqwest::header::HeaderValue::from_bytes("jos\u{e9}".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (status, code, message) = json_error(resp).await;
    assert_eq!((status, code), (400, Code::InvalidArgument as i64));
    assert!(message.contains("x-mock-user-id"), "{message}");
    let mut c = svc.client().await;
    let mut req = tonic::Request::new(pb::GetChallengesRequest {
        active_only: false,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-mock-user-id", "a\tb".parse().unwrap());
    let err = c.get_user_challenges(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Still serving normally.
    let ok = http
        .get(format!("{base}/v1/challenges"))
        .header("x-mock-user-id", "fine")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    svc.stop().await;
}

/// A "database" that accepts connections and closes them at once, as a proxy in front of a
/// Postgres that is down does: sqlx fails with an I/O or protocol error (with the default
/// `sslmode=prefer`, "unexpected response from SSLRequest").
async fn closing_listener() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            // Answer the SSLRequest with garbage, then hang up.
            let _ = s.write_all(b"X").await;
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn database_connectivity_errors_are_unavailable() {
    for sslmode in ["prefer", "disable"] {
        let addr = closing_listener().await;
        let url = format!(
            "postgres://postgres@{}:{}/x?sslmode={sslmode}",
            addr.ip(),
            addr.port()
        );
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_lazy_with(options);
        let svc = start(pool, false).await;
        let resp = reqwest::Client::new()
            .get(format!("http://{}/challenge/v1/challenges", svc.http))
            .header("x-mock-user-id", "outage")
            .send()
            .await
            .unwrap();
        let (status, code, _) = json_error(resp).await;
        assert_eq!((status, code), (503, Code::Unavailable as i64), "{sslmode}");
        let mut c = svc.client().await;
        let err = c
            .get_user_challenges(as_user(
                "outage",
                pb::GetChallengesRequest {
                    active_only: false,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{sslmode}: {err:?}");
        svc.stop().await;
    }
}

/// CONTRACT §10 over gRPC on the whole application: `WatchProgress` starts with a heartbeat
/// and pushes a notified change (the application's own listener); `GetGoalEvents` reads the
/// trail; an open stream does not hold up an orderly shutdown.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn watch_progress_and_goal_events_over_grpc(pool: PgPool) {
    use extend_challenge_common::store::{live, trail};
    let svc = start(pool.clone(), false).await;
    let mut client = svc.client().await;
    client
        .initialize_player(as_user("ann", pb::InitializeRequest {}))
        .await
        .unwrap();
    let mut stream = client
        .watch_progress(as_user("ann", pb::WatchProgressRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.heartbeat && first.goals.is_empty());
    materialize(&pool, &fixture_config(), "ann", "kill-10").await;
    sqlx::query("UPDATE user_goal_progress SET progress = 4, status = 'in_progress' WHERE user_id = 'ann' AND goal_id = 'kill-10'")
        .execute(&pool)
        .await
        .unwrap();
    // The listener connects at start-up: notify until the push arrives (bounded).
    let mut got = None;
    for _ in 0..50 {
        live::notify(&pool, &live::encode([("ann", vec!["kill-10"])]))
            .await
            .unwrap();
        if let Ok(m) =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.message()).await
        {
            got = m.unwrap();
            break;
        }
    }
    let update = got.expect("a pushed update");
    assert!(!update.heartbeat);
    let goal = update.goals[0].goal.as_ref().unwrap();
    assert_eq!(
        (
            update.goals[0].challenge_id.as_str(),
            goal.goal_id.as_str(),
            goal.progress
        ),
        ("winter", "kill-10", 4)
    );

    trail::record(
        &pool,
        &[trail::TrailEntry {
            user_id: "ann".into(),
            goal_id: "kill-10".into(),
            received_at: at(NOON),
            event_id: "e-1".into(),
            event_type: "statistic",
            stat_code: "kills".into(),
            value: 4,
            reason: None,
            progress_before: 0,
            progress_after: 4,
        }],
    )
    .await
    .unwrap();
    let events = client
        .get_goal_events(as_user(
            "ann",
            pb::GetGoalEventsRequest {
                challenge_id: "winter".into(),
                goal_id: "kill-10".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].result.as_str(),
            events[0].reason.as_str(),
            events[0].progress_after
        ),
        ("counted", "", 4)
    );
    assert_eq!(events[0].received_at, "2025-11-04T12:00:00Z");
    let missing = client
        .get_goal_events(as_user(
            "ann",
            pb::GetGoalEventsRequest {
                challenge_id: "winter".into(),
                goal_id: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Shutdown with the stream open: the stream ends, the server stops.
    tokio::time::timeout(std::time::Duration::from_secs(15), svc.stop())
        .await
        .expect("an open stream does not hold up shutdown");
    drop(stream);
}
