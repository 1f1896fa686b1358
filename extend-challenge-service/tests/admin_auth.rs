//! Admin authorisation (CONTRACT §9) through the whole service on real sockets: the admin
//! event trail over REST (`GET …/v1/admin/users/{u}/challenges/{c}/goals/{g}/events`) and
//! gRPC (`AdminGetGoalEvents`), with auth on, against the fake AGS (`common::fake_ags`) as
//! IAM: JWKS, the client-credentials token and the role look-ups, whose answers are
//! AccelByte's published IAM models. The route wants `ADMIN:NAMESPACE:test-ns:CHALLENGE`
//! with the read bit.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::fake_ags::{FakeAgs, KEY_ID};
use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_client::ServiceClient;
use extend_challenge_service::auth::{
    ACTION_CREATE, ACTION_READ, ACTION_UPDATE, AuthConfig, Authenticator,
};
use extend_challenge_service::client_token::ClientToken;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;
use tonic::Code;

const KEY1_PEM: &[u8] = include_bytes!("fixtures/iam_key1.pem");
/// `AB_NAMESPACE` of the test settings.
const NS: &str = "test-ns";
const RESOURCE: &str = "ADMIN:NAMESPACE:test-ns:CHALLENGE";
const PLACEHOLDER: &str = "ADMIN:NAMESPACE:{namespace}:CHALLENGE";

/// The service with auth on (or off), its AGS the fake, wired as `server.rs` does.
async fn start(pool: PgPool, ags: &FakeAgs, auth_enabled: bool) -> Running {
    start_with(pool, ags, auth_enabled, None).await
}

/// [`start`], with the authenticator's config changed by `tweak`.
async fn start_with(
    pool: PgPool,
    ags: &FakeAgs,
    auth_enabled: bool,
    tweak: Option<fn(&mut AuthConfig)>,
) -> Running {
    let settings = settings(&[
        (
            "PLUGIN_GRPC_SERVER_AUTH_ENABLED",
            if auth_enabled { "true" } else { "false" },
        ),
        ("AB_BASE_URL", ags.url.as_str()),
        ("AB_CLIENT_ID", "challenge-service"),
        ("AB_CLIENT_SECRET", "secret"),
    ]);
    let http = reqwest::Client::new();
    let token = ClientToken::from_settings(&settings, http.clone());
    let auth = match tweak {
        None => Authenticator::from_settings_with_token(&settings, http, token),
        Some(tweak) => {
            let mut config = AuthConfig::from_settings(&settings);
            tweak(&mut config);
            Authenticator::with_client_token(config, http, token)
        }
    };
    let (clock, _hand) = Clock::manual(at(NOON));
    serve(&settings, pool, auth, clock).await
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// The admin trail over REST: the status and the JSON body.
    async fn rest(&self, token: Option<&str>) -> (StatusCode, Value) {
        let url = format!(
            "http://{}/challenge/v1/admin/users/amy/challenges/winter/goals/kill-10/events",
            self.http
        );
        let mut req = reqwest::Client::new().get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap())
    }

    /// The admin trail over gRPC: `Ok` or the status code.
    async fn grpc(&self, token: Option<&str>) -> Code {
        let mut client = ServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap();
        let mut req = tonic::Request::new(pb::AdminGetGoalEventsRequest {
            user_id: "amy".into(),
            challenge_id: "winter".into(),
            goal_id: "kill-10".into(),
        });
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        match client.admin_get_goal_events(req).await {
            Ok(resp) => {
                assert!(resp.into_inner().events.is_empty());
                Code::Ok
            }
            Err(status) => status.code(),
        }
    }

    /// Both transports: (REST status, gRPC code).
    async fn both(&self, token: &str) -> (StatusCode, Code) {
        (self.rest(Some(token)).await.0, self.grpc(Some(token)).await)
    }
}

const ALLOWED: (StatusCode, Code) = (StatusCode::OK, Code::Ok);
const FORBIDDEN: (StatusCode, Code) = (StatusCode::FORBIDDEN, Code::PermissionDenied);
const UNAVAILABLE: (StatusCode, Code) = (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An AGS access token of `sub` issued in the test namespace, with `extra` claims.
fn token(sub: &str, extra: Value) -> String {
    let t = now();
    let mut claims = json!({ "sub": sub, "iat": t, "exp": t + 3600, "namespace": NS });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_string());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(KEY1_PEM).unwrap(),
    )
    .unwrap()
}

fn role_lookups(ags: &FakeAgs) -> Vec<String> {
    ags.state().role_lookups.clone()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_player_token_is_forbidden_without_asking_iam(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let svc = start(pool, &ags, true).await;
    // Go writes empty lists as null: still a valid token, holding nothing.
    let player = token(
        "player-1",
        json!({"roles": null, "permissions": null, "namespace_roles": null}),
    );
    assert_eq!(svc.both(&player).await, FORBIDDEN);
    let (_, body) = svc.rest(Some(&player)).await;
    assert_eq!(body["code"], 7, "{body}");
    assert_eq!(
        body["message"],
        format!("this route needs the permission {RESOURCE} [READ]")
    );
    // Still a 401 without a token: authentication comes first.
    assert_eq!(svc.rest(None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(svc.grpc(None).await, Code::Unauthenticated);
    assert!(role_lookups(&ags).is_empty());
    assert_eq!(ags.state().token_requests, 0, "no client token needed");
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_permission_of_the_token_needs_the_routes_action_bit(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let svc = start(pool, &ags, true).await;
    let with = |resource: &str, action: u32| {
        token(
            "support-1",
            json!({"permissions": [{"Resource": resource, "Action": action}]}),
        )
    };
    assert_eq!(svc.both(&with(RESOURCE, ACTION_READ)).await, ALLOWED);
    assert_eq!(svc.both(&with(RESOURCE, 15)).await, ALLOWED);
    assert_eq!(
        svc.both(&with("ADMIN:NAMESPACE:*:CHALLENGE", ACTION_READ))
            .await,
        ALLOWED
    );
    assert_eq!(svc.both(&with("ADMIN:*", ACTION_READ)).await, ALLOWED);
    // The wrong action bits, another namespace, a star right after NAMESPACE.
    assert_eq!(
        svc.both(&with(RESOURCE, ACTION_CREATE | ACTION_UPDATE))
            .await,
        FORBIDDEN
    );
    assert_eq!(
        svc.both(&with("ADMIN:NAMESPACE:other-ns:CHALLENGE", 15))
            .await,
        FORBIDDEN
    );
    assert_eq!(svc.both(&with("ADMIN:NAMESPACE:*", 15)).await, FORBIDDEN);
    // A token without a namespace holds nothing (as the SDK's validator).
    let t = now();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_string());
    let no_namespace = jsonwebtoken::encode(
        &header,
        &json!({"sub": "support-1", "iat": t, "exp": t + 3600,
                "permissions": [{"Resource": RESOURCE, "Action": 15}]}),
        &EncodingKey::from_rsa_pem(KEY1_PEM).unwrap(),
    )
    .unwrap();
    assert_eq!(svc.both(&no_namespace).await, FORBIDDEN);
    assert!(role_lookups(&ags).is_empty(), "IAM is not asked");
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_role_grants_through_iam_once_for_both_transports(pool: PgPool) {
    let ags = FakeAgs::start().await;
    ags.state().add_role(
        NS,
        "support",
        &[
            ("ADMIN:NAMESPACE:{namespace}:USER", 15),
            (PLACEHOLDER, ACTION_READ),
        ],
    );
    ags.state()
        .add_role(NS, "writer", &[(PLACEHOLDER, ACTION_UPDATE)]);
    let svc = start(pool, &ags, true).await;

    let support = token("support-1", json!({"roles": ["support"]}));
    assert_eq!(svc.both(&support).await, ALLOWED);
    assert_eq!(svc.both(&support).await, ALLOWED);
    assert_eq!(
        role_lookups(&ags),
        [format!(
            "/iam/v3/admin/namespaces/{NS}/roleoverride/support/permissions"
        )],
        "fetched once (AdminGetRoleNamespacePermissionV3), then cached"
    );
    assert_eq!(
        ags.state().token_requests,
        1,
        "with the service's client token"
    );

    // A role with the wrong bit, a role IAM does not know (404): nothing granted.
    let writer = token("support-2", json!({"roles": ["writer"]}));
    assert_eq!(svc.both(&writer).await, FORBIDDEN);
    let ghost = token("support-3", json!({"roles": ["ghost"]}));
    assert_eq!(svc.both(&ghost).await, FORBIDDEN);
    // One role of several is enough.
    let several = token(
        "support-4",
        json!({"roles": ["ghost", "writer", "support"]}),
    );
    assert_eq!(svc.both(&several).await, ALLOWED);
    assert_eq!(
        role_lookups(&ags).len(),
        3,
        "support, writer, ghost: once each"
    );
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_namespace_role_stands_for_its_own_namespace(pool: PgPool) {
    let ags = FakeAgs::start().await;
    for ns in [NS, "other-ns"] {
        ags.state()
            .add_role(ns, "support", &[(PLACEHOLDER, ACTION_READ)]);
    }
    // A studio role (`test-` is the studio of `test-ns`) and a global role.
    ags.state()
        .add_role("test", "studio-support", &[(PLACEHOLDER, ACTION_READ)]);
    ags.state()
        .add_role("*", "global-support", &[(PLACEHOLDER, ACTION_READ)]);
    let svc = start(pool, &ags, true).await;
    let with_role = |namespace: &str, role: &str| {
        token(
            "support-1",
            json!({"namespace_roles": [{"roleId": role, "namespace": namespace}]}),
        )
    };

    assert_eq!(svc.both(&with_role(NS, "support")).await, ALLOWED);
    // `{namespace}` becomes other-ns: not this namespace's permission.
    assert_eq!(svc.both(&with_role("other-ns", "support")).await, FORBIDDEN);
    // `{namespace}` becomes `test-`, which covers `test-ns`; looked up in `test`.
    assert_eq!(
        svc.both(&with_role("test-", "studio-support")).await,
        ALLOWED
    );
    // `{namespace}` becomes `*`; looked up with AdminGetRoleV3.
    assert_eq!(svc.both(&with_role("*", "global-support")).await, ALLOWED);
    assert_eq!(
        role_lookups(&ags),
        [
            format!("/iam/v3/admin/namespaces/{NS}/roleoverride/support/permissions"),
            "/iam/v3/admin/namespaces/other-ns/roleoverride/support/permissions".to_string(),
            "/iam/v3/admin/namespaces/test/roleoverride/studio-support/permissions".to_string(),
            "/iam/v3/admin/roles/global-support".to_string(),
        ]
    );
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn iam_unreachable_is_unavailable_unless_the_token_itself_suffices(pool: PgPool) {
    let ags = FakeAgs::start().await;
    ags.state()
        .add_role(NS, "support", &[(PLACEHOLDER, ACTION_READ)]);
    let svc = start(pool, &ags, true).await;
    let direct = token(
        "support-1",
        json!({"permissions": [{"Resource": RESOURCE, "Action": ACTION_READ}], "roles": ["support"]}),
    );
    let by_role = token("support-2", json!({"roles": ["support"]}));
    let player = token("player-1", json!({}));
    // The signing keys load while IAM is up.
    assert_eq!(svc.both(&player).await, FORBIDDEN);

    ags.state().iam_down = true;
    assert_eq!(svc.both(&by_role).await, UNAVAILABLE);
    let (_, body) = svc.rest(Some(&by_role)).await;
    assert_eq!(body["code"], 14, "{body}");
    assert_eq!(svc.both(&direct).await, ALLOWED, "IAM not needed");
    assert_eq!(svc.both(&player).await, FORBIDDEN, "no role to ask about");
    assert!(role_lookups(&ags).is_empty());
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn role_permissions_expire_and_stand_in_while_iam_is_down(pool: PgPool) {
    const TTL: Duration = Duration::from_millis(300);
    let ags = FakeAgs::start().await;
    ags.state()
        .add_role(NS, "support", &[(PLACEHOLDER, ACTION_UPDATE)]);
    let svc = start_with(
        pool,
        &ags,
        true,
        Some(|c: &mut AuthConfig| {
            c.role_cache_ttl = TTL;
            c.min_refresh_gap = Duration::ZERO;
        }),
    )
    .await;
    let support = token("support-1", json!({"roles": ["support"]}));
    assert_eq!(svc.both(&support).await, FORBIDDEN);

    // IAM gives the role the read bit: the cached answer holds until it expires.
    ags.state()
        .add_role(NS, "support", &[(PLACEHOLDER, ACTION_READ)]);
    assert_eq!(svc.both(&support).await, FORBIDDEN);
    assert_eq!(role_lookups(&ags).len(), 1);
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    assert_eq!(svc.both(&support).await, ALLOWED);
    assert_eq!(role_lookups(&ags).len(), 2);

    // Expired again with IAM down: the expired permissions stand in.
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    ags.state().iam_down = true;
    assert_eq!(svc.both(&support).await, ALLOWED, "not unavailable");
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn with_auth_disabled_admin_routes_are_open(pool: PgPool) {
    let ags = FakeAgs::start().await;
    let svc = start(pool, &ags, false).await;
    assert_eq!(svc.rest(None).await.0, StatusCode::OK);
    assert_eq!(svc.grpc(None).await, Code::Ok);
    assert!(role_lookups(&ags).is_empty());
    svc.stop().await;
}

/// Every admin route of CONTRACT §9 asks for its own CRUD bit: READ to look, validate and
/// dry-run, CREATE to apply or roll back, UPDATE to set progress or reset, DELETE to
/// unenroll; a player gets 403 everywhere; a role from IAM grants its bit.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn each_admin_route_needs_its_crud_bit(pool: PgPool) {
    use extend_challenge_common::pb::service::admin_client::AdminClient;
    use extend_challenge_service::auth::ACTION_DELETE;
    let ags = FakeAgs::start().await;
    ags.state()
        .add_role(NS, "qa", &[(PLACEHOLDER, ACTION_UPDATE)]);
    let svc = start(pool, &ags, true).await;
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let routes: [(&str, &str, Option<Value>, u32); 10] = [
        ("GET", "catalog", None, ACTION_READ),
        ("GET", "catalog/versions", None, ACTION_READ),
        (
            "POST",
            "catalog/validate",
            Some(fixture.clone()),
            ACTION_READ,
        ),
        (
            "POST",
            "catalog/dry-run",
            Some(fixture.clone()),
            ACTION_READ,
        ),
        (
            "POST",
            "catalog",
            Some(json!({"config": fixture})),
            ACTION_CREATE,
        ),
        (
            "POST",
            "catalog/rollback",
            Some(json!({"version": 1})),
            ACTION_CREATE,
        ),
        ("GET", "users/amy/challenges", None, ACTION_READ),
        (
            "PUT",
            "users/amy/challenges/winter/goals/kill-10/progress",
            Some(json!({"progress": 1})),
            ACTION_UPDATE,
        ),
        (
            "POST",
            "users/amy/challenges/winter/goals/kill-10/reset",
            Some(json!({})),
            ACTION_UPDATE,
        ),
        ("DELETE", "users/amy/goals", None, ACTION_DELETE),
    ];
    let call = |method: &str, path: &str, body: Option<Value>, token: String| {
        let url = format!("http://{}/challenge/v1/admin/{path}", svc.http);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        async move {
            let mut req = reqwest::Client::new()
                .request(method, url)
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let with = |action: u32| {
        token(
            "ops-1",
            json!({"permissions": [{"Resource": RESOURCE, "Action": action}]}),
        )
    };
    for (method, path, body, bit) in routes {
        // The route's own bit passes authorisation (whatever the route then answers).
        let (s, text) = call(method, path, body.clone(), with(bit)).await;
        assert_ne!(s, 403, "{method} {path} with its bit: {text}");
        assert_ne!(s, 401, "{method} {path}: {text}");
        // Every other bit alone is refused, naming the one needed.
        let others = 15 & !bit;
        let (s, text) = call(method, path, body.clone(), with(others)).await;
        assert_eq!(s, 403, "{method} {path} without its bit: {text}");
        let name = match bit {
            ACTION_CREATE => "CREATE",
            ACTION_READ => "READ",
            ACTION_UPDATE => "UPDATE",
            _ => "DELETE",
        };
        assert!(text.contains(&format!("[{name}]")), "{text}");
        // A player holds none of them.
        let (s, _) = call(method, path, body, token("player-1", json!({}))).await;
        assert_eq!(s, 403, "{method} {path} as a player");
    }
    // The UPDATE bit through a role IAM knows: reset allowed, unenroll not.
    let qa = token("qa-1", json!({"roles": ["qa"]}));
    let (s, text) = call(
        "POST",
        "users/amy/challenges/winter/goals/kill-10/reset",
        Some(json!({})),
        qa.clone(),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        call("DELETE", "users/amy/goals", None, qa.clone()).await.0,
        403
    );

    // gRPC asks the same: dry-run with READ passes, apply with READ is refused.
    let mut admin = AdminClient::connect(format!("http://{}", svc.grpc))
        .await
        .unwrap();
    let authed = |msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", with(ACTION_READ)).parse().unwrap(),
        );
        r
    };
    let err = admin
        .apply_catalog(authed(pb::ApplyCatalogRequest {
            config_json: fixture.to_string(),
            expected_version: None,
            note: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut r = tonic::Request::new(pb::CatalogContent {
        config_json: fixture.to_string(),
    });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", with(ACTION_READ)).parse().unwrap(),
    );
    assert!(admin.dry_run_catalog(r).await.is_ok());
    let mut r = tonic::Request::new(pb::PlayerRequest {
        user_id: "amy".into(),
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {qa}").parse().unwrap());
    assert_eq!(
        admin.unenroll_player(r).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    svc.stop().await;
}
