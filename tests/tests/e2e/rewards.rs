//! Reward grants against a failing AGS Platform: retries, 502, and the goal stays
//! claimable.

use crate::support::*;

async fn completed_login_today(
    stack: &extend_challenge_e2e::Stack,
    events: &extend_challenge_e2e::Events,
    u: &str,
) {
    let api = stack.api(u);
    api.initialize().await;
    api.activate(DAILY, "login-today").await;
    events.login(u).await;
    assert_eq!(
        api.progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reward_failures() {
    let (stack, events) = start("reward_failures").await;
    let failure_text =
        "Failed to grant reward via Platform Service after 3 retries (goal_id: login-today)";

    // 5xx twice, then success: retried, claimed, three attempts.
    let a = user("retry");
    completed_login_today(&stack, &events, &a).await;
    stack.ags.fail_grants(&a, 503, 2).await;
    let claim = stack.api(&a).claim(DAILY, "login-today").await.expect(200);
    assert_eq!(claim["status"], "claimed");
    let grants = stack.ags.grants(&a).await;
    assert_eq!(grants.len(), 3, "{grants:?}");
    assert!(
        grants
            .windows(2)
            .all(|w| w[0].body == w[1].body && w[0].path == w[1].path)
    );
    assert_eq!(
        stack.api(&a).progress(DAILY, "login-today").await,
        (1, "claimed".into())
    );

    // A 4xx is not retried: 502 with the contract text; the goal stays completed and a
    // later claim succeeds.
    let b = user("reject");
    completed_login_today(&stack, &events, &b).await;
    stack.ags.fail_grants(&b, 400, 1).await;
    let r = stack.api(&b).claim(DAILY, "login-today").await;
    // 502 over REST; gRPC has no "bad gateway", so the body's code is Internal (13).
    assert_eq!(r.error(502, 13), failure_text);
    assert_eq!(stack.ags.grants(&b).await.len(), 1);
    assert_eq!(
        stack.api(&b).progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    stack.api(&b).claim(DAILY, "login-today").await.expect(200);
    assert_eq!(stack.ags.grants(&b).await.len(), 2);

    // 5xx every time: three retries (four attempts), then 502; still completed.
    let c = user("down");
    completed_login_today(&stack, &events, &c).await;
    stack.ags.fail_grants(&c, 500, 10).await;
    let r = stack.api(&c).claim(DAILY, "login-today").await;
    // 502 over REST; gRPC has no "bad gateway", so the body's code is Internal (13).
    assert_eq!(r.error(502, 13), failure_text);
    assert_eq!(stack.ags.grants(&c).await.len(), 4);
    assert_eq!(
        stack.api(&c).progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
}
