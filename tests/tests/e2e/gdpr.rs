//! Player data erasure with the real binaries (CONTRACT §3.6): the IAM GDPR event and
//! `DELETE /v1/users/me/data` erase at once; the REST erasure is rate limited; a
//! pre-erasure event delivered afterwards leaves no rows; later events start afresh.

use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    DeletionGdpr, GdprRequestDataDeletionResponse, GdprRequestDataDeletionResponsePayloadData,
    deletion_account_gdpr_gdpr_request_data_deletion_response_service_client::DeletionAccountGdprGdprRequestDataDeletionResponseServiceClient,
};
use extend_challenge_e2e::NAMESPACE;
use reqwest::Method;
use sqlx::PgConnection;

use crate::support::*;

async fn rows(db: &mut PgConnection, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_goal_progress WHERE user_id = $1")
        .bind(user)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gdpr_erasure_over_the_event_and_rest() {
    let (stack, events) = start("gdpr_erasure").await;
    let mut db = stack.db.connect().await;
    let amy = user("gdpr-amy");
    let bob = user("gdpr-bob");
    for u in [&amy, &bob] {
        stack.api(u).initialize().await;
        events.login(u).await;
    }
    assert_eq!(rows(&mut db, &amy).await, 3);
    // A login stamped now, kept to be "redelivered" after the erasure.
    let late = events.login_event(&amy);

    // The IAM event: the user is in the payload.
    let mut gdpr = DeletionAccountGdprGdprRequestDataDeletionResponseServiceClient::connect(
        format!("http://{}", stack.handler_addr()),
    )
    .await
    .unwrap();
    gdpr.on_message(GdprRequestDataDeletionResponse {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: NAMESPACE.into(),
        payload: Some(GdprRequestDataDeletionResponsePayloadData {
            deletion_gdpr: Some(DeletionGdpr {
                user_id: amy.clone(),
                namespace: NAMESPACE.into(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
    .await
    .expect("the GDPR event is acknowledged");
    assert_eq!(rows(&mut db, &amy).await, 0, "erased at once");
    assert_eq!(rows(&mut db, &bob).await, 3);

    // The earlier login, delivered late: acknowledged (durable), and no rows come back.
    events.send_login(late).await.expect("acknowledged");
    assert_eq!(rows(&mut db, &amy).await, 0, "no zombie rows");

    // A later login starts afresh (default goals assigned again).
    events.login(&amy).await;
    assert_eq!(rows(&mut db, &amy).await, 3);
    let (progress, _) = stack.api(&amy).progress(ROTATING, "daily-logins-3").await;
    assert_eq!(progress, 1, "counts from zero");

    // REST: the caller's own data, once a minute.
    let api = stack.api(&bob);
    let done = api
        .send(Method::DELETE, "/v1/users/me/data", None)
        .await
        .expect(200);
    assert_eq!(done, serde_json::json!({"userId": bob, "rowsDeleted": 3}));
    assert_eq!(rows(&mut db, &bob).await, 0);
    let msg = api
        .send(Method::DELETE, "/v1/users/me/data", None)
        .await
        .error(429, 8);
    assert!(msg.contains("less than a minute"), "{msg}");
}
