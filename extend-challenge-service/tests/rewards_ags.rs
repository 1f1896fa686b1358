//! The AGS reward client against a fake AGS (wiremock on 127.0.0.1): IAM's token endpoint and
//! Platform's entitlement and wallet endpoints. Retry policies are scaled down (tens of
//! milliseconds) so the tests stay quick; the default policy is checked in the unit tests.

use std::time::{Duration, Instant};

use extend_challenge_common::config::{Reward, RewardType};
use extend_challenge_e2e::platform_models::{self, Entitlement};
use extend_challenge_service::rewards::{
    AgsRewardClient, GrantError, GrantRequest, Granted, Resume, RetryPolicy, RewardGranter,
    RewardMetrics,
};
use serde_json::json;
use wiremock::matchers::{basic_auth, bearer_token, body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "/iam/v3/oauth/token";
const NS: &str = "mygame";
const ENTITLEMENTS: &str = "/platform/admin/namespaces/mygame/users/user-1/entitlements";
const CREDIT: &str = "/platform/admin/namespaces/mygame/users/user-1/wallets/GOLD/credit";

const KEY: &str = "chl-0123456789abcdef0123456789abcdef";

/// A first grant (nothing sent before with its key).
async fn grant(
    client: &AgsRewardClient,
    namespace: &str,
    user_id: &str,
    challenge_id: &str,
    goal_id: &str,
    reward: &Reward,
) -> Result<Granted, GrantError> {
    let req = GrantRequest {
        namespace,
        user_id,
        challenge_id,
        goal_id,
        reward,
        grant_key: KEY,
        since: chrono::Utc::now(),
    };
    client.grant(&req, Resume::Fresh).await
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(20),
        deadline: Duration::from_secs(5),
    }
}

fn item() -> Reward {
    Reward {
        reward_type: RewardType::Item,
        reward_id: "sword-01".into(),
        quantity: 2,
    }
}

fn gold(amount: i32) -> Reward {
    Reward {
        reward_type: RewardType::Wallet,
        reward_id: "GOLD".into(),
        quantity: amount,
    }
}

/// A fake AGS whose token endpoint hands out `tok-1` for an hour.
async fn ags() -> MockServer {
    let server = MockServer::start().await;
    mount_token(&server, "tok-1", 3600).await;
    server
}

async fn mount_token(server: &MockServer, token: &str, expires_in: u64) {
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        })))
        .mount(server)
        .await;
}

/// Platform answers `status` to the next `times` entitlement grants (all of them if `None`).
async fn entitlements_answer(server: &MockServer, status: u16, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .respond_with(ResponseTemplate::new(status));
    let mock = match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    };
    mock.mount(server).await;
}

fn client(server: &MockServer, policy: RetryPolicy) -> (AgsRewardClient, RewardMetrics) {
    let metrics = RewardMetrics::new(&prometheus::Registry::new()).unwrap();
    let client = AgsRewardClient::new(
        reqwest::Client::new(),
        &server.uri(),
        "client-id",
        "client-secret",
        policy,
    )
    .with_metrics(metrics.clone());
    (client, metrics)
}

/// Requests to `p` other than look-ups (GET).
async fn requests_to(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p && r.method != wiremock::http::Method::GET)
        .count()
}

/// Look-ups (GET) of `p`.
async fn lookups_of(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p && r.method == wiremock::http::Method::GET)
        .count()
}

#[tokio::test]
async fn item_grant_sends_the_exact_entitlement_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .and(basic_auth("client-id", "client-secret"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok-1", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .and(bearer_token("tok-1"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!([{
            "itemId": "sword-01",
            "itemNamespace": NS,
            "quantity": 2,
            "source": "REWARD",
            "grantedCode": KEY,
        }])))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([Entitlement {
                id: "ent-1",
                namespace: NS,
                user_id: "user-1",
                item_id: "sword-01",
                quantity: 2,
                granted_code: Some(KEY),
                at: chrono::Utc::now(),
            }
            .stackable()])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (client, metrics) = client(&server, fast());

    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    server.verify().await;
    assert_eq!(metrics.count(RewardType::Item, "granted"), 1);
}

#[tokio::test]
async fn wallet_grant_sends_the_exact_credit_request() {
    let server = ags().await;
    Mock::given(method("PUT"))
        .and(path(CREDIT))
        .and(bearer_token("tok-1"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "amount": 50,
            "source": "REWARD",
            "reason": format!("challenge daily-quests/login-3 [{KEY}]"),
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(platform_models::wallet(NS, "user-1", "GOLD", 50)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (client, metrics) = client(&server, fast());

    grant(&client, NS, "user-1", "daily-quests", "login-3", &gold(50))
        .await
        .unwrap();
    server.verify().await;
    assert_eq!(metrics.count(RewardType::Wallet, "granted"), 1);
}

#[tokio::test]
async fn path_segments_are_percent_encoded() {
    let server = ags().await;
    Mock::given(method("PUT"))
        .and(path(
            "/platform/admin/namespaces/my%20ns/users/a%2Fb%3Fc/wallets/G%23LD/credit",
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _) = client(&server, fast());
    let mut reward = gold(1);
    reward.reward_id = "G#LD".into();
    grant(&client, "my ns", "a/b?c", "c", "g", &reward)
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn token_is_cached_across_grants() {
    let server = ags().await;
    entitlements_answer(&server, 200, None).await;
    let (client, _) = client(&server, fast());
    for _ in 0..5 {
        grant(&client, NS, "user-1", "c1", "g1", &item())
            .await
            .unwrap();
    }
    assert_eq!(requests_to(&server, TOKEN).await, 1);
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 5);
}

#[tokio::test]
async fn concurrent_grants_share_one_token_fetch() {
    let server = ags().await;
    entitlements_answer(&server, 200, None).await;
    let (client, _) = client(&server, fast());
    let reward = item();
    let grants = (0..8).map(|_| grant(&client, NS, "user-1", "c1", "g1", &reward));
    for result in futures::future::join_all(grants).await {
        result.unwrap();
    }
    assert_eq!(requests_to(&server, TOKEN).await, 1);
}

#[tokio::test]
async fn token_is_refreshed_at_80_percent_of_its_lifetime() {
    let server = MockServer::start().await;
    // A one-second token: due for refresh after 0.8 s.
    mount_token(&server, "tok-short", 1).await;
    entitlements_answer(&server, 200, None).await;
    let (client, _) = client(&server, fast());

    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, TOKEN).await, 1);
    // The token's lifetime is the client's own (tokio) clock: advance it, no real wait.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(900)).await;
    tokio::time::resume();
    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, TOKEN).await, 2);
}

#[tokio::test]
async fn a_503_then_200_grants_exactly_once() {
    let server = ags().await;
    entitlements_answer(&server, 503, Some(1)).await;
    entitlements_answer(&server, 200, None).await;
    let (client, metrics) = client(&server, fast());

    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 2);
    // The 503 was an answer: Platform's records were checked before sending again.
    assert_eq!(lookups_of(&server, ENTITLEMENTS).await, 1);
    assert_eq!(metrics.count(RewardType::Item, "granted"), 1);
    assert_eq!(metrics.count(RewardType::Item, "retries_exhausted"), 0);
}

#[tokio::test]
async fn a_429_and_a_408_are_retried() {
    let server = ags().await;
    entitlements_answer(&server, 429, Some(1)).await;
    entitlements_answer(&server, 408, Some(1)).await;
    entitlements_answer(&server, 201, None).await;
    let (client, _) = client(&server, fast());

    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 3);
}

#[tokio::test]
async fn a_400_is_rejected_without_retry() {
    let server = ags().await;
    Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorCode": 20002, "errorMessage": "validation error"
        })))
        .mount(&server)
        .await;
    let (client, metrics) = client(&server, fast());

    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    match err {
        GrantError::Rejected { status, body } => {
            assert_eq!(status, 400);
            assert!(body.contains("20002"), "{body}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 1);
    assert_eq!(metrics.count(RewardType::Item, "rejected"), 1);
    assert_eq!(metrics.count(RewardType::Item, "granted"), 0);
}

#[tokio::test]
async fn other_4xx_are_not_retried() {
    for status in [403u16, 404, 409] {
        let server = ags().await;
        entitlements_answer(&server, status, None).await;
        let (client, _) = client(&server, fast());
        let err = grant(&client, NS, "user-1", "c1", "g1", &item())
            .await
            .unwrap_err();
        assert!(
            matches!(err, GrantError::Rejected { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
        assert_eq!(requests_to(&server, ENTITLEMENTS).await, 1, "{status}");
    }
}

#[tokio::test]
async fn persistent_500s_exhaust_retries_after_four_attempts() {
    let server = ags().await;
    entitlements_answer(&server, 500, None).await;
    let (client, metrics) = client(&server, fast());

    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 4);
    assert_eq!(metrics.count(RewardType::Item, "retries_exhausted"), 1);
}

#[tokio::test]
async fn a_hang_ends_in_doubt_near_the_deadline() {
    let server = ags().await;
    Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let deadline = Duration::from_millis(300);
    let (client, metrics) = client(&server, RetryPolicy { deadline, ..fast() });

    let started = Instant::now();
    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // The request was sent and never answered: Platform may have granted.
    assert!(matches!(err, GrantError::InDoubt { .. }), "{err:?}");
    assert!(err.may_have_granted());
    assert!(elapsed >= deadline, "gave up early: {elapsed:?}");
    // Generous margin: this bounds "stopped at the deadline", not speed.
    assert!(elapsed < deadline + Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 1);
    assert_eq!(metrics.count(RewardType::Item, "in_doubt"), 1);
}

#[tokio::test]
async fn no_backoff_is_started_that_would_end_past_the_deadline() {
    let server = ags().await;
    entitlements_answer(&server, 503, None).await;
    // Attempt 1 at ~0 s, backoff 0.4 s fits; attempt 2 at ~0.4 s, backoff 0.8 s does not.
    let (client, _) = client(
        &server,
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(400),
            deadline: Duration::from_millis(1000),
        },
    );
    let started = Instant::now();
    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::DeadlineExceeded), "{err:?}");
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 2);
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn a_401_drops_the_token_and_retries_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok-old", "expires_in": 3600})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_token(&server, "tok-new", 3600).await;
    Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .and(bearer_token("tok-old"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENTITLEMENTS))
        .and(bearer_token("tok-new"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let (client, _) = client(&server, fast());

    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, TOKEN).await, 2);
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 2);
}

#[tokio::test]
async fn a_second_401_is_a_rejection() {
    let server = ags().await;
    entitlements_answer(&server, 401, None).await;
    let (client, _) = client(&server, fast());
    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, TOKEN).await, 2);
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 2);
}

#[tokio::test]
async fn refused_client_credentials_fail_without_calling_platform() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    entitlements_answer(&server, 200, None).await;
    let (client, metrics) = client(&server, fast());
    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::TokenRejected { status: 401 }),
        "{err:?}"
    );
    assert_eq!(requests_to(&server, TOKEN).await, 1);
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 0);
    assert_eq!(metrics.count(RewardType::Item, "token_rejected"), 1);
}

#[tokio::test]
async fn token_endpoint_outages_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_token(&server, "tok-1", 3600).await;
    entitlements_answer(&server, 200, None).await;
    let (client, _) = client(&server, fast());
    grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap();
    assert_eq!(requests_to(&server, TOKEN).await, 2);
    assert_eq!(requests_to(&server, ENTITLEMENTS).await, 1);
}

#[tokio::test]
async fn connection_errors_are_retried_until_exhausted() {
    // A port that was just free: connections are refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let metrics = RewardMetrics::new(&prometheus::Registry::new()).unwrap();
    let client = AgsRewardClient::new(
        reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}"),
        "id",
        "secret",
        fast(),
    )
    .with_metrics(metrics.clone());
    let err = grant(&client, NS, "user-1", "c1", "g1", &item())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GrantError::RetriesExhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(metrics.count(RewardType::Item, "retries_exhausted"), 1);
}
