//! The event trail (CONTRACT §10): every reason an event is ignored, reproduced through the
//! real gRPC services and batches, and read back as the service reads it.

mod common;

use common::{BUFFERED, at, start};
use extend_challenge_common::store::trail::{self, StoredEntry};
use sqlx::PgPool;

/// `user`'s trail of `goal`, oldest first, as (event id, reason or "counted", before, after).
async fn trail_of(pool: &PgPool, user: &str, goal: &str) -> Vec<(String, String, i32, i32)> {
    let mut rows: Vec<StoredEntry> = trail::recent(pool, user, goal).await.unwrap();
    rows.reverse();
    rows.into_iter()
        .map(|e| {
            (
                e.event_id,
                e.reason.unwrap_or_else(|| "counted".into()),
                e.progress_before,
                e.progress_after,
            )
        })
        .collect()
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn every_ignore_reason_is_recorded_by_the_rule_that_decided_it(pool: PgPool) {
    let h = start(pool.clone(), BUFFERED, |b| b).await;
    let engine = h.handle.engine().clone();
    let settle = || async {
        h.flush().await;
        engine.trail().write_pending().await.unwrap();
    };
    // Each event a second after the previous one: the trail orders by arrival.
    let tick = || h.clock.advance(chrono::Duration::seconds(1));
    let stat = |user: &str, code: &str, value: f64, inc: f64, id: &str| {
        tick();
        let mut m = common::stat(user, code, value, inc);
        m.id = id.into();
        let mut client = h.stat_client();
        async move { client.on_message(m).await.map(|_| ()) }
    };
    let login = |user: &'static str, id: &'static str| {
        tick();
        h.login_id(user, id)
    };

    // Counted (auto-initialized on the first event), and not assigned (kills-hidden is not
    // a default goal).
    stat("ann", "kills", 3.0, 3.0, "k1").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "ann", "kills-10").await,
        [("k1".into(), "counted".into(), 0, 3)]
    );
    assert_eq!(
        trail_of(&pool, "ann", "kills-hidden").await,
        [("k1".into(), "not_assigned".into(), 0, 0)]
    );

    // A negative value: absolute and relative goals leave it alone.
    stat("ann", "kills", -1.0, -4.0, "k2").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "ann", "kills-10").await[1].1,
        "negative_value"
    );
    assert_eq!(
        trail_of(&pool, "ann", "kills-relative-5").await[1].1,
        "negative_value"
    );

    // Inactive.
    exec(&pool, "UPDATE user_goal_progress SET is_active = false WHERE user_id = 'ann' AND goal_id = 'kills-10'").await;
    stat("ann", "kills", 5.0, 2.0, "k3").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "ann", "kills-10").await[2],
        ("k3".into(), "not_active".into(), 3, 3)
    );

    // Claimed this period, and claimed in a period that ended without reselection (the
    // rows first: untouched default goals have none, `store::implicit`).
    common::assign(&pool, "ann", &["login-3", "weekly-keep"], h.clock_now()).await;
    exec(
        &pool,
        "UPDATE user_goal_progress SET status = 'claimed', progress = 3, \
        completed_at = '2025-11-05T10:00:00Z', claimed_at = '2025-11-05T11:00:00Z' \
        WHERE user_id = 'ann' AND goal_id = 'login-3'",
    )
    .await;
    exec(
        &pool,
        "UPDATE user_goal_progress SET status = 'claimed', progress = 1, \
        completed_at = '2025-10-28T10:00:00Z', claimed_at = '2025-10-28T11:00:00Z', \
        expires_at = '2025-11-03T00:00:00Z' WHERE user_id = 'ann' AND goal_id = 'weekly-keep'",
    )
    .await;
    login("ann", "l1").await.unwrap();
    stat("ann", "score", 9.0, 1.0, "s1").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "ann", "login-3").await,
        [("l1".into(), "already_claimed".into(), 3, 3)]
    );
    assert_eq!(
        trail_of(&pool, "ann", "weekly-keep").await,
        [("s1".into(), "period_ended".into(), 1, 1)]
    );

    // Daily caps: the second login of the day on a daily increment goal and on a daily goal.
    assert_eq!(
        trail_of(&pool, "ann", "login-daily-inc").await,
        [("l1".into(), "counted".into(), 0, 1)]
    );
    login("ann", "l2").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "ann", "login-daily-inc").await[1],
        ("l2".into(), "daily_cap".into(), 1, 1)
    );
    assert_eq!(
        trail_of(&pool, "ann", "login-daily").await[1],
        ("l2".into(), "daily_cap".into(), 1, 1)
    );

    // A redelivered id is shown once more, as a duplicate; it changes nothing.
    login("ann", "l2").await.unwrap();
    settle().await;
    let total = trail_of(&pool, "ann", "login-total").await;
    assert_eq!(
        total
            .iter()
            .map(|e| (e.0.as_str(), e.1.as_str()))
            .collect::<Vec<_>>(),
        [("l1", "counted"), ("l2", "counted"), ("l2", "duplicate")]
    );
    assert_eq!(total[1].3, 2, "login-total counted twice");

    // Dead-lettered: Postgres refuses this player's rows (a trigger), the batch commits the
    // others and the player's events are marked.
    exec(
        &pool,
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
        IF NEW.user_id = 'poison' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; END IF; \
        RETURN NEW; END $$ LANGUAGE plpgsql; \
        CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON user_goal_progress \
        FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    .await;
    login("poison", "p1").await.unwrap();
    login("bob", "b1").await.unwrap();
    settle().await;
    assert_eq!(
        trail_of(&pool, "poison", "login-total").await,
        [("p1".into(), "dead_lettered".into(), 0, 0)]
    );
    assert_eq!(
        trail_of(&pool, "bob", "login-total").await,
        [("b1".into(), "counted".into(), 0, 1)]
    );

    // Nothing but the rules' reasons and `counted` was written.
    let reasons: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT r FROM event_trail, unnest(reasons) AS r ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [
            Some("already_claimed".to_string()),
            Some("daily_cap".into()),
            Some("dead_lettered".into()),
            Some("duplicate".into()),
            Some("negative_value".into()),
            Some("not_active".into()),
            Some("not_assigned".into()),
            Some("period_ended".into()),
            None
        ]
    );
    h.stop().await.unwrap();
}

/// An erasure deletes the player's trail, and an entry from before it is never written
/// after it (no zombie trail); entries from after it are.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_erased_players_trail_goes_and_stays_gone(pool: PgPool) {
    use extend_challenge_common::store::erasure;
    let entry = |when: &str, id: &str| trail::TrailEntry {
        user_id: "ann".into(),
        goal_id: "login-total".into(),
        received_at: at(when),
        event_id: id.into(),
        event_type: "login",
        stat_code: String::new(),
        value: 0,
        reason: None,
        progress_before: 0,
        progress_after: 1,
    };
    trail::record(&pool, &[entry("2025-11-05T11:00:00Z", "before")])
        .await
        .unwrap();
    assert_eq!(trail_of(&pool, "ann", "login-total").await.len(), 1);
    erasure::erase_user(&pool, "ann", "test-ns", at("2025-11-05T12:00:00Z"), None)
        .await
        .unwrap();
    assert!(trail_of(&pool, "ann", "login-total").await.is_empty());
    // A late write of an entry from before the erasure: skipped; one from after: kept.
    let written = trail::record(
        &pool,
        &[
            entry("2025-11-05T11:30:00Z", "late"),
            entry("2025-11-05T12:00:01Z", "after"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(written, 1);
    assert_eq!(
        trail_of(&pool, "ann", "login-total").await,
        [("after".into(), "counted".into(), 0, 1)]
    );
}

/// The cleanup's trim: entries past the retention go, and beyond the newest 64 of a goal.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn the_trail_is_trimmed_by_age_and_by_count(pool: PgPool) {
    let base = at("2025-11-05T00:00:00Z");
    let entries: Vec<trail::TrailEntry> = (0..100)
        .map(|i| trail::TrailEntry {
            user_id: "ann".into(),
            goal_id: if i < 90 { "kills-10" } else { "login-total" }.into(),
            received_at: base + chrono::Duration::minutes(i),
            event_id: format!("e{i}"),
            event_type: "statistic",
            stat_code: "kills".into(),
            value: i,
            reason: None,
            progress_before: 0,
            progress_after: 0,
        })
        .collect();
    trail::record(&pool, &entries).await.unwrap();
    // Nothing is old enough; kills-10 has 90 entries: 26 go, the newest 64 stay.
    let deleted = trail::trim(&pool, base - chrono::Duration::days(1), base, 1000)
        .await
        .unwrap();
    assert_eq!(deleted, 26);
    let kept = trail_of(&pool, "ann", "kills-10").await;
    assert_eq!(kept.len(), 64);
    assert_eq!(kept[0].0, "e26", "the oldest kept is the 27th");
    // Age: everything before 01:35 goes (login-total's ten entries are 01:30–01:39).
    let deleted = trail::trim(&pool, base + chrono::Duration::minutes(95), base, 1000)
        .await
        .unwrap();
    assert_eq!(deleted, 64 + 5);
    assert_eq!(trail_of(&pool, "ann", "login-total").await.len(), 5);
}

/// With auto-initialize off, a player with no state at all (never initialized) gets no
/// trail entries: an event reaching 20 goals of such a player would write 20 rows
/// explaining goals they do not have. A player with rows still gets `not_assigned`.
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn a_player_with_no_state_leaves_no_trail_when_auto_initialize_is_off(pool: PgPool) {
    let env: Vec<(&str, &str)> = BUFFERED
        .iter()
        .copied()
        .chain([("AUTO_INITIALIZE_ON_EVENT", "false")])
        .collect();
    let h = start(pool.clone(), &env, |b| b).await;
    let engine = h.handle.engine().clone();
    // kim has a row (kills-10), so she is enrolled; stranger has nothing.
    exec(
        &pool,
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace) \
         VALUES ('kim', 'kills-10', 'combat', 'test')",
    )
    .await;
    for (user, id) in [("kim", "e1"), ("stranger", "e2")] {
        let mut m = common::stat(user, "kills", 3.0, 3.0);
        m.id = id.into();
        h.stat_client().on_message(m).await.unwrap();
    }
    h.flush().await;
    engine.trail().write_pending().await.unwrap();
    assert_eq!(
        trail_of(&pool, "kim", "kills-hidden").await,
        [("e1".into(), "not_assigned".into(), 0, 0)]
    );
    assert_eq!(trail_of(&pool, "kim", "kills-10").await[0].1, "counted");
    let stranger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_trail WHERE user_id = 'stranger'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stranger, 0, "no entries for a player with no state");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_goal_progress WHERE user_id = 'stranger'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 0, "not auto-initialized");
    h.stop().await.unwrap();
}

/// One row per event: an event's entries for several goals share a row, each goal reads
/// back its own result and progress, and goal ids and reasons survive the array literal
/// whatever they hold (quotes, backslashes, commas, braces, the word NULL).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn an_events_goals_share_one_row_and_read_back_apart(pool: PgPool) {
    let odd = [
        "plain",
        "a,b",
        "{x}",
        "q\"uote",
        "back\\slash",
        "NULL",
        "sp ace",
    ];
    let received = at("2025-11-05T11:00:00Z");
    let entries: Vec<trail::TrailEntry> = odd
        .iter()
        .enumerate()
        .map(|(i, goal)| trail::TrailEntry {
            user_id: "ann".into(),
            goal_id: (*goal).into(),
            received_at: received,
            event_id: "e1".into(),
            event_type: "statistic",
            stat_code: "kills".into(),
            value: 7,
            reason: (i % 2 == 1).then_some("not_active"),
            progress_before: i as i32,
            progress_after: 10 * i as i32,
        })
        .collect();
    assert_eq!(trail::record(&pool, &entries).await.unwrap(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM event_trail")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one row for the event");
    for (i, goal) in odd.iter().enumerate() {
        let want = if i % 2 == 1 { "not_active" } else { "counted" };
        assert_eq!(
            trail_of(&pool, "ann", goal).await,
            [("e1".into(), want.into(), i as i32, 10 * i as i32)],
            "goal {goal:?}"
        );
    }
    assert!(trail_of(&pool, "ann", "other").await.is_empty());
}
