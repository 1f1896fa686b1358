//! Error answers: REST texts and codes, gRPC InvalidArgument, concurrent claims.

use extend_challenge_common::pb::service::{
    ClaimRewardRequest, RandomSelectRequest, service_client::ServiceClient,
};
use serde_json::json;
use tonic::Code;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn error_scenarios() {
    let (stack, events) = start("error_scenarios").await;
    let u = user("errors");
    let api = stack.api(&u);
    api.initialize().await;

    // Unknown ids.
    let msg = api.claim(WINTER, "no-such-goal").await.error(404, 5);
    assert_eq!(
        msg,
        "Goal not found or removed from config (goal_id: no-such-goal, challenge_id: winter-challenge-2025)"
    );
    let msg = api
        .claim("no-such-challenge", "complete-tutorial")
        .await
        .error(404, 5);
    assert_eq!(
        msg,
        "Goal not found or removed from config (goal_id: complete-tutorial, challenge_id: no-such-challenge)"
    );
    let msg = api
        .get("/v1/challenges/no-such-challenge")
        .await
        .error(404, 5);
    assert_eq!(msg, "challenge 'no-such-challenge' not found");
    let msg = api
        .set_active(WINTER, "no-such-goal", true)
        .await
        .error(404, 5);
    assert_eq!(
        msg,
        "Goal not found or removed from config (goal_id: no-such-goal, challenge_id: winter-challenge-2025)"
    );
    let msg = api
        .get("/v1/challenges/no-such-challenge/rotation")
        .await
        .error(404, 5);
    assert_eq!(msg, "challenge 'no-such-challenge' not found");
    let plain = api
        .get(&format!("/v1/challenges/{WINTER}/rotation"))
        .await
        .expect(200);
    assert_eq!(plain["rotation"]["enabled"], false);

    // One challenge by id has the list's shape.
    let one = api
        .get(&format!("/v1/challenges/{WINTER}"))
        .await
        .expect(200);
    assert_eq!(one["challengeId"], WINTER);
    assert_eq!(
        goal_ids(&one["goals"]),
        sorted(&["complete-tutorial", "kill-10-snowmen", "reach-level-5"])
    );

    // Claims of goals that are not completed.
    let msg = api.claim(WINTER, "complete-tutorial").await.error(400, 9);
    assert_eq!(
        msg,
        "Goal not completed. Please wait 1 second and try again. (goal_id: complete-tutorial, status: not_started)"
    );
    api.activate(WINTER, "kill-10-snowmen").await;
    events.stat(&u, "snowmen_killed", 4.0).await;
    let msg = api.claim(WINTER, "kill-10-snowmen").await.error(400, 9);
    assert_eq!(
        msg,
        "Goal not completed. Please wait 1 second and try again. (goal_id: kill-10-snowmen, status: in_progress)"
    );

    // Bad request bodies and routes are JSON errors too.
    let r = api
        .post(
            &format!("/v1/challenges/{POOL}/goals/batch-select"),
            json!({"goalIds": "dc-goal-1"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], 3, "{}", r.body);
    assert_eq!(
        api.get("/v1/no-such-route").await.error(404, 5),
        "Not Found"
    );
    // The guide's `curl localhost:8000/v1/challenges` (no BASE_PATH) says where REST lives.
    let root = stack.service_url().replace("/challenge", "");
    let r =
        extend_challenge_e2e::Api::new(root, extend_challenge_e2e::api::Caller::Mock("u".into()))
            .get("/v1/challenges")
            .await;
    let hint = r.error(404, 5);
    assert!(
        hint.contains("served under /challenge") && hint.contains("/challenge/apidocs/"),
        "{hint}"
    );
    let r = api
        .send(reqwest::Method::DELETE, "/v1/challenges", None)
        .await;
    assert_eq!(r.error(405, 12), "Method Not Allowed");

    // Events the handler must refuse at the door.
    let mut e = events.login_event("");
    e.user_id.clear();
    assert_eq!(
        events.send_login(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let e = events.login_event(&"x".repeat(101));
    assert_eq!(
        events.send_login(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut e = events.stat_event(&u, "snowmen_killed", 5.0, 0.0);
    e.payload = None;
    assert_eq!(
        events.send_stat(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let e = events.stat_event(&u, "", 5.0, 0.0);
    assert_eq!(
        events.send_stat(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let e = events.stat_event(&u, "snowmen_killed", f64::NAN, 0.0);
    assert_eq!(
        events.send_stat(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let e = events.stat_event(&u, "snowmen_killed", 5.0, f64::INFINITY);
    assert_eq!(
        events.send_stat(e).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Nothing of the refused events was applied.
    assert_eq!(
        api.progress(WINTER, "kill-10-snowmen").await,
        (4, "in_progress".into())
    );

    // The player API over gRPC validates too.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", stack.service_grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = ServiceClient::new(channel);
    let mut req = tonic::Request::new(RandomSelectRequest {
        challenge_id: POOL.into(),
        count: 0,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-mock-user-id", u.parse().unwrap());
    let status = client.random_select_goals(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "count must be greater than 0");

    // Concurrent claims of one goal grant exactly once.
    events.stat(&u, "tutorial_completed", 1.0).await;
    let claims =
        futures::future::join_all((0..5).map(|_| api.claim(WINTER, "complete-tutorial"))).await;
    let mut codes: Vec<u16> = claims.iter().map(|r| r.status).collect();
    codes.sort();
    assert_eq!(codes, vec![200, 409, 409, 409, 409], "{claims:?}");
    assert_eq!(stack.ags.grants(&u).await.len(), 1);
    assert_eq!(
        api.progress(WINTER, "complete-tutorial").await,
        (1, "claimed".into())
    );

    // The same claim over gRPC: AlreadyExists, a client error, never logged at ERROR.
    let mut req = tonic::Request::new(ClaimRewardRequest {
        challenge_id: WINTER.into(),
        goal_id: "complete-tutorial".into(),
    });
    req.metadata_mut()
        .insert("x-mock-user-id", u.parse().unwrap());
    let status = client.claim_goal_reward(req).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let log = stack.log_of("service");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .collect();
    assert!(
        errors.is_empty(),
        "client errors logged at ERROR: {errors:?}"
    );
}
