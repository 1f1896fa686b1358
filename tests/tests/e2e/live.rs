//! CONTRACT §10 with the real binaries: the list's ETag (304 until a change, 200 after),
//! a progress stream on one service replica receiving an event's change within a second of
//! its acknowledgement by the handler, and the event trail with its reasons over REST.

use std::time::{Duration, Instant};

use extend_challenge_e2e::StackOptions;
use serde_json::Value;

use crate::support::*;

/// `GET list` with an optional `If-None-Match`: status and `ETag`.
async fn list(base: &str, user: &str, tag: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/v1/challenges"))
        .header("x-mock-user-id", user);
    if let Some(t) = tag {
        req = req.header("if-none-match", t);
    }
    let resp = req.send().await.unwrap();
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    (resp.status().as_u16(), etag)
}

/// The trail of `user`'s goal, newest first, polled until `n` entries are there (the
/// handler writes it every 100 ms after the batch).
async fn trail(base: &str, user: &str, challenge: &str, goal: &str, n: usize) -> Vec<Value> {
    let url = format!("{base}/v1/challenges/{challenge}/goals/{goal}/events");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body: Value = reqwest::Client::new()
            .get(&url)
            .header("x-mock-user-id", user)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = body["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shape(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["result"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_stream_across_replicas_and_the_event_trail() {
    let (mut stack, events) = start_with("live", StackOptions::default()).await;
    let other = stack.add_service().await;
    let base = stack.service_url();
    let u = user("live");
    stack.api(&u).initialize().await;

    // ---- conditional list: 304 before a change (on either replica), 200 after.
    let (s, tag) = list(&base, &u, None).await;
    assert_eq!(s, 200);
    assert_eq!(list(&base, &u, Some(&tag)).await, (304, tag.clone()));
    assert_eq!(
        list(&other, &u, Some(&tag)).await,
        (304, tag.clone()),
        "same tag on every replica"
    );

    // ---- a stream on the other replica; the event goes through the handler.
    let mut stream = reqwest::Client::new()
        .get(format!("{other}/v1/users/me/progress/stream"))
        .header("x-mock-user-id", &u)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut text = String::new();
    while !text.contains("event: heartbeat") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("the first heartbeat")
            .unwrap()
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    events.stat(&u, "tutorial_completed", 1.0).await;
    let acked = Instant::now();
    let mut text = String::new();
    let data = loop {
        if let Some(start) = text.find("event: progress\n")
            && let Some(end) = text[start..].find("\n\n")
        {
            let block = &text[start..start + end];
            break block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .to_string();
        }
        let left = Duration::from_secs(1).saturating_sub(acked.elapsed());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no progress within 1 s of the ack; got {text:?}"))
            .unwrap()
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    };
    let within = acked.elapsed();
    assert!(within < Duration::from_secs(1), "{within:?}");
    let update: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        update["goals"][0]["goal"]["goalId"], "complete-tutorial",
        "{update}"
    );
    assert_eq!(
        update["goals"][0]["goal"]["status"], "completed",
        "{update}"
    );
    drop(stream);

    let (s, new_tag) = list(&base, &u, Some(&tag)).await;
    assert_eq!(s, 200, "the change ends the 304s");
    assert_ne!(new_tag, tag);
    assert_eq!(list(&other, &u, Some(&new_tag)).await.0, 304);

    // ---- the trail, every reason the real binaries can be led to.
    // not_assigned (kill-10-snowmen is not a default goal), negative_value.
    events.stat(&u, "snowmen_killed", 3.0).await;
    events.stat_inc(&u, "season_kills", -1.0, -1.0).await;
    // Daily goal: counted, then daily_cap, then not_active once deactivated; a redelivery.
    let api = stack.api(&u);
    api.activate(DAILY, "login-today").await;
    let first = events.login_event(&u);
    events.send_login(first.clone()).await.unwrap();
    events.login(&u).await;
    events.send_login(first.clone()).await.unwrap();
    api.set_active(DAILY, "login-today", false)
        .await
        .expect(200);
    events.login(&u).await;
    // already_claimed.
    api.claim(WINTER, "complete-tutorial").await.expect(200);
    events.stat(&u, "tutorial_completed", 1.0).await;

    let tut = trail(&base, &u, WINTER, "complete-tutorial", 2).await;
    assert_eq!(
        shape(&tut),
        [
            ("ignored".into(), "already_claimed".into()),
            ("counted".into(), "".into())
        ]
    );
    assert_eq!(
        (&tut[1]["progressBefore"], &tut[1]["progressAfter"]),
        (&0.into(), &1.into())
    );
    assert_eq!(tut[1]["statCode"], "tutorial_completed");
    assert_eq!(tut[1]["eventType"], "statistic");
    let snow = trail(&base, &u, WINTER, "kill-10-snowmen", 1).await;
    assert_eq!(shape(&snow), [("ignored".into(), "not_assigned".into())]);
    let season = trail(&base, &u, DAILY, "season-kills-5", 1).await;
    assert_eq!(
        shape(&season),
        [("ignored".into(), "negative_value".into())]
    );
    assert_eq!(season[0]["value"], -1);
    let today = trail(&base, &u, DAILY, "login-today", 4).await;
    assert_eq!(
        shape(&today),
        [
            ("ignored".into(), "not_active".into()),
            ("ignored".into(), "duplicate".into()),
            ("ignored".into(), "daily_cap".into()),
            ("counted".into(), "".into()),
        ]
    );
    // The redelivered id: once counted, once shown as a duplicate.
    let veteran = trail(&base, &u, VETERAN, "login-1000-times", 4).await;
    let firsts: Vec<_> = veteran
        .iter()
        .filter(|e| e["eventId"] == first.id.as_str())
        .collect();
    assert_eq!(
        firsts
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["duplicate", ""]
    );

    // dead_lettered: Postgres refuses this player's rows.
    let poison = user("poison");
    let mut db = stack.db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.user_id = '{poison}' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; \
         END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON user_goal_progress \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
    )))
    .execute(&mut db)
    .await
    .unwrap();
    events.login(&poison).await;
    let dead = trail(&base, &poison, VETERAN, "login-1000-times", 1).await;
    assert_eq!(shape(&dead), [("ignored".into(), "dead_lettered".into())]);

    // The support form answers the same trail.
    let admin: Value = reqwest::Client::new()
        .get(format!(
            "{other}/v1/admin/users/{u}/challenges/{DAILY}/goals/login-today/events"
        ))
        .header("x-mock-user-id", "support-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shape(admin["events"].as_array().unwrap()), shape(&today));
}
