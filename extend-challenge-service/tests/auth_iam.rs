//! The authenticator against a fake AGS IAM (wiremock on 127.0.0.1) serving a JWKS and a
//! revocation list; tokens are signed with the fixture keys in `tests/fixtures/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use extend_challenge_common::settings::Secret;
use extend_challenge_service::auth::revocation::BloomFilter;
use extend_challenge_service::auth::{ACTION_READ, AuthConfig, AuthError, Authenticator};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY1_PEM: &[u8] = include_bytes!("fixtures/iam_key1.pem");
const KEY2_PEM: &[u8] = include_bytes!("fixtures/iam_key2.pem");
const COMPONENTS: &str = include_str!("fixtures/iam_jwk_components.json");
const JWKS: &str = "/iam/v3/oauth/jwks";
const REVOCATIONS: &str = "/iam/v3/oauth/revocationlist";
const NAMESPACE: &str = "mygame";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The public half of fixture key `name` ("iam_key1" / "iam_key2") as a JWK with `kid`.
fn jwk(name: &str, kid: &str) -> Value {
    let all: Value = serde_json::from_str(COMPONENTS).unwrap();
    let mut k = all[name].clone();
    k["kid"] = kid.into();
    k
}

fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

fn empty_revocations() -> Value {
    json!({ "revoked_tokens": {"m": 64, "k": 1, "bits": [0]}, "revoked_users": [] })
}

fn claims(sub: &str) -> Value {
    let t = now();
    json!({ "sub": sub, "iat": t, "exp": t + 3600, "namespace": NAMESPACE })
}

fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn config(server: &MockServer) -> AuthConfig {
    AuthConfig {
        enabled: true,
        base_url: server.uri(),
        namespace: NAMESPACE.into(),
        refresh_interval: Duration::from_secs(600),
        min_refresh_gap: Duration::ZERO,
        leeway: Duration::from_secs(5),
        fetch_timeout: Duration::from_secs(5),
        client_id: "challenge-service".into(),
        client_secret: Secret::new("secret"),
        role_cache_ttl: Duration::from_secs(3600),
        role_cache_capacity: 100,
    }
}

/// A fake IAM with key 1 as `k1` and an empty revocation list.
async fn iam() -> MockServer {
    let server = MockServer::start().await;
    mount_jwks(&server, jwks(&[jwk("iam_key1", "k1")])).await;
    mount_revocations(&server, empty_revocations()).await;
    server
}

async fn mount_jwks(server: &MockServer, body: Value) {
    Mock::given(method("GET"))
        .and(path(JWKS))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

async fn mount_revocations(server: &MockServer, body: Value) {
    Mock::given(method("GET"))
        .and(path(REVOCATIONS))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

async fn requests_to(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

#[tokio::test]
async fn valid_token_is_accepted_and_keys_are_cached() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    for _ in 0..3 {
        assert_eq!(auth.authenticate(&bearer(&token)).await.unwrap(), "user-1");
    }
    assert_eq!(requests_to(&server, JWKS).await, 1);
    assert_eq!(requests_to(&server, REVOCATIONS).await, 1);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("bEaReR {token}")).unwrap(),
    );
    assert_eq!(auth.authenticate(&h).await.unwrap(), "user-1");
}

fn assert_unauthenticated(result: Result<String, AuthError>, expected: fn(&AuthError) -> bool) {
    let err = result.expect_err("token must be refused");
    assert!(expected(&err), "unexpected error {err:?}");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_unauthenticated() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    assert_unauthenticated(auth.authenticate(&HeaderMap::new()).await, |e| {
        matches!(e, AuthError::MissingToken)
    });
    for garbage in ["abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.sig"] {
        assert_unauthenticated(auth.authenticate(&bearer(garbage)).await, |e| {
            matches!(e, AuthError::Malformed)
        });
    }
    // A token without a kid cannot be matched to a key.
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("user-1"),
        &EncodingKey::from_rsa_pem(KEY1_PEM).unwrap(),
    )
    .unwrap();
    assert_unauthenticated(auth.authenticate(&bearer(&no_kid)).await, |e| {
        matches!(e, AuthError::Malformed)
    });
    // Algorithm confusion: an HMAC token is refused whatever its signature.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let hmac =
        jsonwebtoken::encode(&hs, &claims("user-1"), &EncodingKey::from_secret(b"k")).unwrap();
    assert_unauthenticated(auth.authenticate(&bearer(&hmac)).await, |e| {
        matches!(e, AuthError::Malformed)
    });
    // A token without a subject names no user.
    let mut no_sub = claims("x");
    no_sub.as_object_mut().unwrap().remove("sub");
    let token = sign(KEY1_PEM, "k1", &no_sub);
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::Malformed)
    });
}

#[tokio::test]
async fn error_messages_never_echo_the_token() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    let mut c = claims("user-1");
    c["exp"] = (now() - 3600).into();
    let token = sign(KEY1_PEM, "k1", &c);
    let err = auth.authenticate(&bearer(&token)).await.unwrap_err();
    assert!(!err.to_string().contains(&token));
    assert!(!format!("{err:?}").contains(&token));
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_unauthenticated() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    let mut expired = claims("user-1");
    expired["exp"] = (now() - 3600).into();
    let token = sign(KEY1_PEM, "k1", &expired);
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::Expired)
    });

    let mut future = claims("user-1");
    future["nbf"] = (now() + 3600).into();
    let token = sign(KEY1_PEM, "k1", &future);
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::NotYetValid)
    });

    // Inside the leeway (5 s in this config) a just-expired token still passes.
    let mut just_expired = claims("user-1");
    just_expired["exp"] = (now() - 1).into();
    let token = sign(KEY1_PEM, "k1", &just_expired);
    assert!(auth.authenticate(&bearer(&token)).await.is_ok());
}

#[tokio::test]
async fn token_signed_by_another_key_is_unauthenticated() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    // Claims to be k1 but is signed with key 2.
    let token = sign(KEY2_PEM, "k1", &claims("user-1"));
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::InvalidSignature)
    });
}

#[tokio::test]
async fn unknown_kid_is_refetched_once_then_unauthenticated() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    let token = sign(KEY2_PEM, "k-unknown", &claims("user-1"));
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::UnknownKey)
    });
    // The first load, then one forced refresh for the unknown kid.
    assert_eq!(requests_to(&server, JWKS).await, 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_does_not_hammer_iam() {
    let server = iam().await;
    let mut cfg = config(&server);
    cfg.min_refresh_gap = Duration::from_secs(60);
    let auth = Authenticator::new(cfg, reqwest::Client::new());
    let good = sign(KEY1_PEM, "k1", &claims("user-1"));
    assert!(auth.authenticate(&bearer(&good)).await.is_ok());
    for i in 0..20 {
        let bogus = sign(KEY2_PEM, &format!("bogus-{i}"), &claims("user-1"));
        assert_unauthenticated(auth.authenticate(&bearer(&bogus)).await, |e| {
            matches!(e, AuthError::UnknownKey)
        });
    }
    assert_eq!(requests_to(&server, JWKS).await, 1);
}

#[tokio::test]
async fn jwks_is_refetched_when_a_new_kid_appears() {
    let server = MockServer::start().await;
    // The first JWKS knows only k1; IAM then rotates in k2.
    Mock::given(method("GET"))
        .and(path(JWKS))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(&[jwk("iam_key1", "k1")])))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_jwks(
        &server,
        jwks(&[jwk("iam_key1", "k1"), jwk("iam_key2", "k2")]),
    )
    .await;
    mount_revocations(&server, empty_revocations()).await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());

    let old = sign(KEY1_PEM, "k1", &claims("user-1"));
    assert_eq!(auth.authenticate(&bearer(&old)).await.unwrap(), "user-1");
    assert_eq!(requests_to(&server, JWKS).await, 1);

    let rotated = sign(KEY2_PEM, "k2", &claims("user-2"));
    assert_eq!(
        auth.authenticate(&bearer(&rotated)).await.unwrap(),
        "user-2"
    );
    assert_eq!(requests_to(&server, JWKS).await, 2);
    // Both keys are now cached: no further trips.
    assert!(auth.authenticate(&bearer(&old)).await.is_ok());
    assert!(auth.authenticate(&bearer(&rotated)).await.is_ok());
    assert_eq!(requests_to(&server, JWKS).await, 2);
}

#[tokio::test]
async fn token_in_the_revocation_bloom_filter_is_unauthenticated() {
    let revoked = sign(KEY1_PEM, "k1", &claims("user-1"));
    let kept = sign(KEY1_PEM, "k1", &claims("user-2"));
    let mut filter = BloomFilter::with_capacity(256, 7);
    filter.insert(revoked.as_bytes());
    assert!(!filter.might_contain(kept.as_bytes()));

    let server = MockServer::start().await;
    mount_jwks(&server, jwks(&[jwk("iam_key1", "k1")])).await;
    mount_revocations(
        &server,
        json!({
            "revoked_tokens": {"m": 256 * 64, "k": filter.k(), "bits": filter.words()},
            "revoked_users": []
        }),
    )
    .await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());
    assert_unauthenticated(auth.authenticate(&bearer(&revoked)).await, |e| {
        matches!(e, AuthError::Revoked)
    });
    assert_eq!(auth.authenticate(&bearer(&kept)).await.unwrap(), "user-2");
}

#[tokio::test]
async fn tokens_issued_before_a_user_revocation_are_unauthenticated() {
    let revoked_at = now() - 100;
    let server = MockServer::start().await;
    mount_jwks(&server, jwks(&[jwk("iam_key1", "k1")])).await;
    let at = chrono::DateTime::from_timestamp(revoked_at, 0)
        .unwrap()
        .to_rfc3339();
    mount_revocations(
        &server,
        json!({ "revoked_tokens": null, "revoked_users": [{"id": "user-1", "revoked_at": at}] }),
    )
    .await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());

    let mut before = claims("user-1");
    before["iat"] = (revoked_at - 100).into();
    let token = sign(KEY1_PEM, "k1", &before);
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::Revoked)
    });
    // A token issued after the revocation (a new login) is fine, as is another user.
    let after = sign(KEY1_PEM, "k1", &claims("user-1"));
    assert_eq!(auth.authenticate(&bearer(&after)).await.unwrap(), "user-1");
    let mut other = claims("user-2");
    other["iat"] = (revoked_at - 100).into();
    let other = sign(KEY1_PEM, "k1", &other);
    assert_eq!(auth.authenticate(&bearer(&other)).await.unwrap(), "user-2");
}

#[tokio::test]
async fn extend_namespace_must_match_when_present() {
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());

    let mut other = claims("user-1");
    other["extend_namespace"] = "someone-else".into();
    let token = sign(KEY1_PEM, "k1", &other);
    let err = auth.authenticate(&bearer(&token)).await.unwrap_err();
    assert!(matches!(err, AuthError::WrongNamespace), "{err:?}");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let mut same = claims("user-1");
    same["extend_namespace"] = NAMESPACE.into();
    let token = sign(KEY1_PEM, "k1", &same);
    assert_eq!(auth.authenticate(&bearer(&token)).await.unwrap(), "user-1");
}

#[tokio::test]
async fn iam_down_at_start_refuses_tokens_until_keys_load() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_jwks(&server, jwks(&[jwk("iam_key1", "k1")])).await;
    mount_revocations(&server, empty_revocations()).await;
    let mut cfg = config(&server);
    cfg.min_refresh_gap = Duration::from_millis(300);
    let auth = Authenticator::new(cfg, reqwest::Client::new());

    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
        matches!(e, AuthError::KeysUnavailable)
    });
    assert!(!auth.keys_loaded());
    assert_eq!(requests_to(&server, JWKS).await, 1);
    // IAM is back: once the rate limit allows (the authenticator's own clock, advanced
    // in paused time), the next request loads the keys.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(350)).await;
    tokio::time::resume();
    assert_eq!(auth.authenticate(&bearer(&token)).await.unwrap(), "user-1");
    assert!(auth.keys_loaded());
    assert_eq!(requests_to(&server, JWKS).await, 2);
}

#[tokio::test]
async fn iam_unreachable_refusals_are_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    cfg.min_refresh_gap = Duration::from_secs(60);
    let auth = Authenticator::new(cfg, reqwest::Client::new());
    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    for _ in 0..10 {
        assert_unauthenticated(auth.authenticate(&bearer(&token)).await, |e| {
            matches!(e, AuthError::KeysUnavailable)
        });
    }
    assert_eq!(requests_to(&server, JWKS).await, 1);
}

#[tokio::test]
async fn stale_cache_is_refreshed_in_the_background() {
    let server = MockServer::start().await;
    mount_jwks(&server, jwks(&[jwk("iam_key1", "k1")])).await;
    // First list: nothing revoked. Later lists: user-1 revoked as of now.
    Mock::given(method("GET"))
        .and(path(REVOCATIONS))
        .respond_with(ResponseTemplate::new(200).set_body_json(empty_revocations()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let at = chrono::DateTime::from_timestamp(now() + 60, 0)
        .unwrap()
        .to_rfc3339();
    mount_revocations(
        &server,
        json!({ "revoked_users": [{"id": "user-1", "revoked_at": at}] }),
    )
    .await;
    let mut cfg = config(&server);
    cfg.refresh_interval = Duration::from_millis(50);
    let auth = Authenticator::new(cfg, reqwest::Client::new());
    auth.refresh_now().await;

    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    // Age the cache past the refresh interval on the authenticator's own clock.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(100)).await;
    tokio::time::resume();
    // The cache is stale: this request is served from it and starts a refresh.
    assert!(auth.authenticate(&bearer(&token)).await.is_ok());
    // Wait (bounded) for the background refresh to land, then the revocation applies.
    let mut revoked = false;
    for _ in 0..100 {
        if matches!(
            auth.authenticate(&bearer(&token)).await,
            Err(AuthError::Revoked)
        ) {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        revoked,
        "background refresh never applied the new revocation list"
    );
}

#[tokio::test]
async fn disabled_mode_takes_the_mock_user_header_and_never_calls_iam() {
    let server = MockServer::start().await;
    let mut cfg = config(&server);
    cfg.enabled = false;
    let auth = Authenticator::new(cfg, reqwest::Client::new());
    let mut h = HeaderMap::new();
    h.insert("x-mock-user-id", HeaderValue::from_static("player-42"));
    assert_eq!(auth.authenticate(&h).await.unwrap(), "player-42");
    assert_eq!(
        auth.authenticate(&HeaderMap::new()).await.unwrap(),
        "test-user-id"
    );
    // A bearer token is ignored when auth is disabled.
    assert_eq!(
        auth.authenticate(&bearer("whatever")).await.unwrap(),
        "test-user-id"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn from_settings_warms_the_cache() {
    let server = iam().await;
    let mut env = std::collections::HashMap::new();
    env.insert("AB_BASE_URL".to_string(), server.uri());
    env.insert("AB_NAMESPACE".to_string(), NAMESPACE.to_string());
    let settings = extend_challenge_common::settings::Settings::from_map(&env).unwrap();
    let auth = Authenticator::from_settings(&settings, reqwest::Client::new());
    for _ in 0..100 {
        if auth.keys_loaded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.keys_loaded(), "keys never loaded in the background");
    let token = sign(KEY1_PEM, "k1", &claims("user-1"));
    assert_eq!(auth.authenticate(&bearer(&token)).await.unwrap(), "user-1");
    assert_eq!(requests_to(&server, JWKS).await, 1);
}

/// The support routes (CONTRACT §10's admin trail): a player's token is refused, a token
/// holding `ADMIN:NAMESPACE:{namespace}:CHALLENGE` with the read bit is let through. (Roles
/// and the other action bits: `tests/admin_auth.rs`.)
#[tokio::test]
async fn admin_routes_need_the_challenge_admin_read_permission() {
    use extend_challenge_service::error::ServiceError;
    let server = iam().await;
    let auth = Authenticator::new(config(&server), reqwest::Client::new());

    let player = sign(KEY1_PEM, "k1", &claims("player-1"));
    assert_eq!(auth.caller(&bearer(&player)).await.unwrap().0, "player-1");
    let refused = auth
        .admin_caller(&bearer(&player), ACTION_READ)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ServiceError::PermissionDenied(_)),
        "{refused:?}"
    );

    let with = |resource: &str, action: u32| {
        let mut c = claims("support-1");
        c["permissions"] = json!([{"Resource": resource, "Action": action}]);
        sign(KEY1_PEM, "k1", &c)
    };
    let write_only = with("ADMIN:NAMESPACE:mygame:CHALLENGE", 4);
    assert!(
        auth.admin_caller(&bearer(&write_only), ACTION_READ)
            .await
            .is_err()
    );
    let other_ns = with("ADMIN:NAMESPACE:other:CHALLENGE", 2);
    assert!(
        auth.admin_caller(&bearer(&other_ns), ACTION_READ)
            .await
            .is_err()
    );
    for ok in [
        with("ADMIN:NAMESPACE:mygame:CHALLENGE", 2),
        with("ADMIN:NAMESPACE:*:CHALLENGE", 15),
    ] {
        assert_eq!(
            auth.admin_caller(&bearer(&ok), ACTION_READ)
                .await
                .unwrap()
                .0,
            "support-1"
        );
    }
}
