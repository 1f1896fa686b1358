//! Many players at once: progress and claims stay per user.

use futures::future::join_all;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn multi_user_isolation() {
    let (stack, events) = start("multi_user_isolation").await;
    let users: Vec<String> = (0..10).map(|i| user(&format!("multi{i}"))).collect();

    join_all(users.iter().map(|u| async {
        let api = stack.api(u);
        api.initialize().await;
        api.activate(DAILY, "login-today").await;
        api.activate(WINTER, "kill-10-snowmen").await;
    }))
    .await;

    join_all(users.iter().map(|u| events.login(u))).await;
    for u in &users {
        assert_eq!(
            stack.api(u).progress(DAILY, "login-today").await,
            (1, "completed".into()),
            "{u}"
        );
        assert_eq!(
            stack.api(u).progress(VETERAN, "login-1000-times").await,
            (1, "in_progress".into()),
            "{u}"
        );
    }

    // One user's event moves only that user's progress.
    events.login(&users[0]).await;
    assert_eq!(
        stack
            .api(&users[0])
            .progress(VETERAN, "login-1000-times")
            .await
            .0,
        2
    );
    assert_eq!(
        stack
            .api(&users[1])
            .progress(VETERAN, "login-1000-times")
            .await
            .0,
        1
    );

    // Concurrent claims: every user gets exactly one grant.
    let stack = &stack;
    let claims = join_all(
        users
            .iter()
            .map(|u| async move { stack.api(u).claim(DAILY, "login-today").await }),
    )
    .await;
    for (u, r) in users.iter().zip(&claims) {
        assert_eq!(r.status, 200, "{u}: {}", r.body);
        assert_eq!(stack.ags.grants(u).await.len(), 1, "{u}");
        assert_eq!(
            stack.api(u).progress(DAILY, "login-today").await.1,
            "claimed"
        );
    }

    // Concurrent stat updates, a different value per user.
    join_all(users.iter().enumerate().map(|(i, u)| {
        let events = events.clone();
        async move {
            for v in 1..=(i + 1) {
                events.stat(u, "snowmen_killed", v as f64).await;
            }
        }
    }))
    .await;
    for (i, u) in users.iter().enumerate() {
        let want = i as i64 + 1;
        let status = if want >= 10 {
            "completed"
        } else {
            "in_progress"
        };
        assert_eq!(
            stack.api(u).progress(WINTER, "kill-10-snowmen").await,
            (want, status.into()),
            "{u}"
        );
    }
}
