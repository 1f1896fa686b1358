//! Auth enabled: RS256 tokens verified against the fake IAM's JWKS.

use extend_challenge_common::pb::service::{GetChallengesRequest, service_client::ServiceClient};
use tonic::Code;

use crate::support::*;
use extend_challenge_e2e::StackOptions;
use extend_challenge_e2e::ags::{REVOKED_USER, TokenClaims, sign_token, sign_token_with_kid};
use extend_challenge_e2e::api::Caller;

#[tokio::test(flavor = "multi_thread")]
async fn auth_with_signed_tokens() {
    // The system clock: token times (iat, nbf, exp) are real time.
    let options = StackOptions {
        auth_enabled: true,
        clock_offset_seconds: 0,
        ..StackOptions::default()
    };
    let (stack, events) = start_with("auth_with_signed_tokens", options).await;
    let u = user("auth");

    // A valid token: 200, and the caller is the token's subject.
    let token = sign_token(&TokenClaims::player(&u));
    let api = stack.api_as(Caller::Bearer(token.clone()));
    let init = api.initialize().await;
    assert_eq!(init["newAssignments"], 3);
    events.login(&u).await;
    assert_eq!(
        api.progress(VETERAN, "login-1000-times").await,
        (1, "in_progress".into())
    );
    assert!(stack.ags.hits("/iam/v3/oauth/jwks").await >= 1);

    // Missing, malformed, expired, unknown key, or only the mock header: 401.
    let expired = sign_token(&TokenClaims {
        expires_in: -120,
        ..TokenClaims::player(&u)
    });
    for (what, caller) in [
        ("missing", Caller::Anonymous),
        ("malformed", Caller::Bearer("not-a-jwt".into())),
        ("expired", Caller::Bearer(expired)),
        ("mock header", Caller::Mock(u.clone())),
    ] {
        let r = stack.api_as(caller).get("/v1/challenges").await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.body["code"], 16, "{what}: {}", r.body);
    }
    let r = stack
        .api_as(Caller::Bearer(unknown_kid_token(&u)))
        .get("/v1/challenges")
        .await;
    assert_eq!(r.status, 401, "unknown kid: {}", r.body);
    // IAM's revocation list revokes every token issued to this user until tomorrow.
    let revoked = sign_token(&TokenClaims::player(REVOKED_USER));
    let r = stack
        .api_as(Caller::Bearer(revoked))
        .get("/v1/challenges")
        .await;
    assert_eq!(r.status, 401, "revoked user: {}", r.body);

    // A valid token for another namespace: 403.
    let other = sign_token(&TokenClaims {
        extend_namespace: Some("some-other-namespace"),
        namespace: "some-other-namespace",
        ..TokenClaims::player(&u)
    });
    let r = stack
        .api_as(Caller::Bearer(other))
        .get("/v1/challenges")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["code"], 7, "{}", r.body);

    // Health never needs a token.
    let health = stack
        .api_as(Caller::Anonymous)
        .get("/healthz")
        .await
        .expect(200);
    assert_eq!(health["status"], "healthy");

    // gRPC: the same rules through `authorization` metadata.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", stack.service_grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = ServiceClient::new(channel);
    let mut req = tonic::Request::new(GetChallengesRequest {
        active_only: true,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let list = client
        .get_user_challenges(req)
        .await
        .expect("valid token over gRPC");
    let goals: usize = list
        .get_ref()
        .challenges
        .iter()
        .map(|c| c.goals.len())
        .sum();
    assert_eq!(goals, 3);
    let status = client
        .get_user_challenges(GetChallengesRequest {
            active_only: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// Signed by the fixture key but naming a key id the JWKS does not have.
fn unknown_kid_token(sub: &str) -> String {
    sign_token_with_kid(&TokenClaims::player(sub), "not-in-jwks")
}
