//! A daily rotation boundary, crossed by restarting both binaries one day ahead
//! (`CLOCK_OFFSET_SECONDS` + 86400) against the same database.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::*;
use extend_challenge_e2e::{Api, StackOptions};

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread")]
async fn daily_rotation_boundary() {
    // Today at noon UTC (the harness default), then tomorrow at noon.
    let today = StackOptions::default();
    let tomorrow = StackOptions {
        clock_offset_seconds: today.clock_offset_seconds + DAY,
        ..StackOptions::default()
    };
    let (mut stack, events) = start_with("daily_rotation_boundary", today.clone()).await;
    let partial = user("rot-partial");
    let claimed = user("rot-claimed");
    let stale = user("rot-stale");
    let api = |u: &str| stack.api(u);

    // Today: partial progress, a claimed goal, a completed but unclaimed goal.
    for u in [&partial, &claimed, &stale] {
        api(u).initialize().await;
    }
    api(&claimed).activate(DAILY, "login-today").await;
    for _ in 0..2 {
        events.login(&partial).await;
    }
    for _ in 0..3 {
        events.login(&claimed).await;
        events.login(&stale).await;
    }
    let progress = |a: Api| async move { a.progress(ROTATING, "daily-logins-3").await };
    assert_eq!(progress(api(&partial)).await, (2, "in_progress".into()));
    assert_eq!(progress(api(&stale)).await, (3, "completed".into()));
    api(&claimed)
        .claim(ROTATING, "daily-logins-3")
        .await
        .expect(200);
    api(&claimed).claim(DAILY, "login-today").await.expect(200);
    assert_rotation(&rotation(&api(&partial)).await, today.clock_offset_seconds);

    // Tomorrow.
    stack.restart(tomorrow.clone()).await;
    let events = stack.events().await;
    let api = |u: &str| stack.api(u);
    assert_rotation(
        &rotation(&api(&partial)).await,
        tomorrow.clock_offset_seconds,
    );

    // Views apply the new period on read: progress reset, reselection re-opens the goal.
    assert_eq!(progress(api(&partial)).await, (0, "not_started".into()));
    let g = api(&claimed).goal(ROTATING, "daily-logins-3").await;
    assert_eq!(
        (g["progress"].as_i64(), g["status"].as_str()),
        (Some(0), Some("not_started"))
    );
    assert_eq!(
        (g["claimedAt"].as_str(), g["completedAt"].as_str()),
        (Some(""), Some(""))
    );

    // Last period's completion cannot be claimed any more.
    let msg = api(&stale)
        .claim(ROTATING, "daily-logins-3")
        .await
        .error(400, 9);
    assert_eq!(
        msg,
        "Goal has rotated and must be re-completed (goal_id: daily-logins-3, challenge_id: rotating-daily)"
    );

    // The new period counts from zero and can be completed and claimed again.
    events.login(&partial).await;
    assert_eq!(progress(api(&partial)).await, (1, "in_progress".into()));
    for _ in 0..3 {
        events.login(&claimed).await;
    }
    assert_eq!(progress(api(&claimed)).await, (3, "completed".into()));
    api(&claimed)
        .claim(ROTATING, "daily-logins-3")
        .await
        .expect(200);
    // A `daily` goal is claimable again on the next UTC day.
    assert_eq!(
        api(&claimed).progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    api(&claimed).claim(DAILY, "login-today").await.expect(200);
    assert_eq!(stack.ags.grants(&claimed).await.len(), 4);
}

async fn rotation(api: &Api) -> Value {
    api.get(&format!("/v1/challenges/{ROTATING}/rotation"))
        .await
        .expect(200)
}

/// The rotation status shows the UTC day the binaries' clock (`offset` seconds ahead of the
/// system clock) is in.
#[track_caller]
fn assert_rotation(body: &Value, offset: i64) {
    let day = |d: i64| {
        let t = Utc::now() + Duration::seconds(offset) + Duration::days(d);
        format!("{}T00:00:00Z", t.format("%Y-%m-%d"))
    };
    assert_eq!(body["challengeId"], ROTATING);
    let r = &body["rotation"];
    assert_eq!(r["enabled"], true, "{body}");
    assert_eq!(r["type"], "global");
    assert_eq!(r["schedule"], "daily");
    assert_eq!(r["currentPeriod"]["startTime"], day(0).as_str(), "{body}");
    assert_eq!(r["currentPeriod"]["endTime"], day(1).as_str(), "{body}");
    assert_eq!(r["nextPeriod"]["startTime"], day(1).as_str(), "{body}");
    assert_eq!(r["nextPeriod"]["endTime"], day(2).as_str(), "{body}");
    // At noon half the day is left, give or take the test's own run time.
    let left = r["currentPeriod"]["expiresInSeconds"]
        .as_i64()
        .expect("expiresInSeconds");
    assert!((DAY / 2 - 300..=DAY / 2 + 300).contains(&left), "{body}");
}
