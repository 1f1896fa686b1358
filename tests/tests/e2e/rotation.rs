//! A daily rotation boundary, crossed by restarting both binaries one day ahead
//! (`CLOCK_OFFSET_SECONDS=86400`) against the same database.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::support::*;
use extend_challenge_e2e::StackOptions;

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread")]
async fn daily_rotation_boundary() {
    let (mut stack, events) = start("daily_rotation_boundary").await;
    let partial = user("rot-partial");
    let claimed = user("rot-claimed");
    let stale = user("rot-stale");

    // Today: partial progress, a claimed goal, a completed-but-unclaimed goal.
    for u in [&partial, &claimed, &stale] {
        stack.api(u).initialize().await;
    }
    stack.api(&claimed).activate(DAILY, "login-today").await;
    for _ in 0..2 {
        events.login(&partial).await;
    }
    for _ in 0..3 {
        events.login(&claimed).await;
        events.login(&stale).await;
    }
    assert_eq!(
        stack
            .api(&partial)
            .progress(ROTATING, "daily-logins-3")
            .await,
        (2, "in_progress".into())
    );
    assert_eq!(
        stack.api(&stale).progress(ROTATING, "daily-logins-3").await,
        (3, "completed".into())
    );
    stack
        .api(&claimed)
        .claim(ROTATING, "daily-logins-3")
        .await
        .expect(200);
    stack
        .api(&claimed)
        .claim(DAILY, "login-today")
        .await
        .expect(200);
    assert_rotation(
        &stack
            .api(&partial)
            .get(&format!("/v1/challenges/{ROTATING}/rotation"))
            .await
            .expect(200),
        0,
    );

    // Tomorrow.
    stack
        .restart(StackOptions {
            clock_offset_seconds: DAY,
            ..StackOptions::default()
        })
        .await;
    let events = stack.events().await;
    assert_rotation(
        &stack
            .api(&partial)
            .get(&format!("/v1/challenges/{ROTATING}/rotation"))
            .await
            .expect(200),
        DAY,
    );

    // Views apply the new period on read: progress reset, reselection re-opens the goal.
    assert_eq!(
        stack
            .api(&partial)
            .progress(ROTATING, "daily-logins-3")
            .await,
        (0, "not_started".into())
    );
    let g = stack.api(&claimed).goal(ROTATING, "daily-logins-3").await;
    assert_eq!(
        (g["progress"].as_i64(), g["status"].as_str()),
        (Some(0), Some("not_started"))
    );
    assert_eq!(
        (g["claimedAt"].as_str(), g["completedAt"].as_str()),
        (Some(""), Some(""))
    );

    // Last period's completion cannot be claimed any more.
    let msg = stack
        .api(&stale)
        .claim(ROTATING, "daily-logins-3")
        .await
        .error(400, 9);
    assert_eq!(
        msg,
        "Goal has rotated and must be re-completed (goal_id: daily-logins-3, challenge_id: rotating-daily)"
    );

    // The new period counts from zero and can be completed and claimed again.
    events.login(&partial).await;
    assert_eq!(
        stack
            .api(&partial)
            .progress(ROTATING, "daily-logins-3")
            .await,
        (1, "in_progress".into())
    );
    for _ in 0..3 {
        events.login(&claimed).await;
    }
    assert_eq!(
        stack
            .api(&claimed)
            .progress(ROTATING, "daily-logins-3")
            .await,
        (3, "completed".into())
    );
    stack
        .api(&claimed)
        .claim(ROTATING, "daily-logins-3")
        .await
        .expect(200);
    // A `daily` goal is claimable again on the next UTC day.
    assert_eq!(
        stack.api(&claimed).progress(DAILY, "login-today").await,
        (1, "completed".into())
    );
    stack
        .api(&claimed)
        .claim(DAILY, "login-today")
        .await
        .expect(200);
    assert_eq!(stack.ags.grants(&claimed).await.len(), 4);
}

/// The rotation status shows the UTC day `offset` seconds from now.
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
    let left = r["currentPeriod"]["expiresInSeconds"]
        .as_i64()
        .expect("expiresInSeconds");
    assert!((0..=DAY).contains(&left), "{body}");
}
