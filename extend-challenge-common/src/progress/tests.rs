//! The CONTRACT §2.1 table, row by row, and the pinned edge cases.

use chrono::{DateTime, Utc};

use super::*;
use crate::config::{
    EventSource, Goal, OnExpiry, ProgressMode, Requirement, Reward, RewardType, Rotation, Schedule,
};
use crate::progress::{Delta, GoalState, PartState, Status};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn goal(mode: ProgressMode, target: i32) -> Goal {
    Goal {
        id: "g".into(),
        challenge_id: "c".into(),
        name: "G".into(),
        description: String::new(),
        tags: vec![],
        event_source: EventSource::Statistic,
        default_assigned: true,
        requirement: Requirement {
            stat_code: "kills".into(),
            operator: ">=".into(),
            target_value: target,
        },
        mode,
        daily: false,
        reward: Reward {
            reward_type: RewardType::Wallet,
            reward_id: "GOLD".into(),
            quantity: 10,
        },
        rewards: vec![Reward {
            reward_type: RewardType::Wallet,
            reward_id: "GOLD".into(),
            quantity: 10,
        }],
        auto_claim: false,
        auto_claim_wakes: vec![],
        prerequisites: vec![],
        rotation: None,
        repeat: None,
        groups: None,
        part: None,
    }
}

fn rotating(mut g: Goal, schedule: Schedule, reset: bool, reselect: bool) -> Goal {
    g.rotation = Some(Rotation {
        schedule,
        on_expiry: OnExpiry {
            reset_progress: reset,
            allow_reselection: reselect,
        },
    });
    g
}

fn fresh() -> GoalState {
    GoalState {
        progress: 0,
        status: Status::NotStarted,
        completed_at: None,
        claimed_at: None,
        is_active: true,
        assigned_at: Some(at("2025-01-01T00:00:00Z")),
        expires_at: None,
        baseline_value: None,
        last_event_at: None,
        times_claimed: 0,
        parts: None,
    }
}

/// A stat event on `g`, at timestamp `ts` ms, arrival `seq`.
fn stat(g: &Goal, value: i32, inc: i32, ts: i64, seq: u64) -> Delta {
    delta_for_stat(g, value, inc, (ts, seq)).expect("event counts")
}

/// Applies a sequence of (delta, now) one flush at a time, keeping unchanged rows.
fn run(g: &Goal, mut s: GoalState, steps: &[(Delta, DateTime<Utc>)]) -> GoalState {
    for (d, now) in steps {
        if let Some(next) = apply(g, &s, d, *now) {
            s = next;
        }
    }
    s
}

const T0: &str = "2025-11-04T10:00:00Z"; // a Tuesday
const T1: &str = "2025-11-04T11:00:00Z";
const NEXT_DAY: &str = "2025-11-05T09:00:00Z";

// ---------------------------------------------------------------- deltas and merge

#[test]
fn login_counts_once_in_every_mode() {
    for mode in [
        ProgressMode::Absolute,
        ProgressMode::Relative,
        ProgressMode::Increment,
        ProgressMode::Daily,
    ] {
        assert_eq!(delta_for_login(&goal(mode, 1)), Delta::Count(1), "{mode:?}");
    }
}

#[test]
fn stat_delta_per_mode() {
    let abs = goal(ProgressMode::Absolute, 10);
    assert_eq!(
        delta_for_stat(&abs, 50, 1, (7, 3)),
        Some(Delta::Value {
            first_base: 49,
            first_at: (7, 3),
            latest: 50,
            latest_at: (7, 3)
        })
    );
    for mode in [ProgressMode::Increment, ProgressMode::Daily] {
        assert_eq!(
            delta_for_stat(&goal(mode, 1), 50, 1, (0, 0)),
            Some(Delta::Count(1))
        );
    }
}

#[test]
fn negative_values_ignored_by_absolute_and_relative_counted_by_increment_and_daily() {
    for mode in [ProgressMode::Absolute, ProgressMode::Relative] {
        assert_eq!(delta_for_stat(&goal(mode, 1), -1, 1, (0, 0)), None);
    }
    // Zero is a real value, not ignored.
    assert!(delta_for_stat(&goal(ProgressMode::Absolute, 1), 0, 0, (0, 0)).is_some());

    let inc = goal(ProgressMode::Increment, 2);
    let s = apply(&inc, &fresh(), &stat(&inc, -5, -5, 0, 0), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (1, Status::InProgress));

    let daily = goal(ProgressMode::Daily, 1);
    let s = apply(&daily, &fresh(), &stat(&daily, -5, -5, 0, 0), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (1, Status::Completed));
}

#[test]
fn first_base_is_computed_without_overflow() {
    let g = goal(ProgressMode::Relative, 1);
    let d = stat(&g, i32::MAX, i32::MIN, 0, 0);
    assert!(matches!(
        d,
        Delta::Value {
            first_base: i32::MAX,
            ..
        }
    ));
    let d = stat(&g, 0, i32::MAX, 0, 0);
    assert!(matches!(
        d,
        Delta::Value {
            first_base: -2147483647,
            ..
        }
    ));
}

#[test]
fn merge_adds_counts_saturating() {
    let mut d = Delta::Count(2);
    merge(&mut d, Delta::Count(3));
    assert_eq!(d, Delta::Count(5));
    merge(&mut d, Delta::Count(u32::MAX));
    assert_eq!(d, Delta::Count(u32::MAX));
}

#[test]
fn merge_keeps_earliest_first_and_latest_value_by_timestamp_then_arrival() {
    let g = goal(ProgressMode::Relative, 100);
    let mut d = stat(&g, 20, 5, 1000, 1);
    // Arrives later but happened earlier: becomes the first event, not the latest value.
    merge(&mut d, stat(&g, 12, 2, 900, 2));
    // Happened last.
    merge(&mut d, stat(&g, 30, 10, 2000, 3));
    // Same timestamp, earlier arrival sequence: older, so not the latest.
    merge(&mut d, stat(&g, 25, 1, 2000, 0));
    assert_eq!(
        d,
        Delta::Value {
            first_base: 10,
            first_at: (900, 2),
            latest: 30,
            latest_at: (2000, 3)
        }
    );
}

#[test]
fn merge_tie_goes_to_newer_for_latest_and_to_acc_for_first() {
    let g = goal(ProgressMode::Absolute, 100);
    let mut d = stat(&g, 10, 1, 500, 4);
    merge(&mut d, stat(&g, 11, 3, 500, 4));
    assert_eq!(
        d,
        Delta::Value {
            first_base: 9,
            first_at: (500, 4),
            latest: 11,
            latest_at: (500, 4)
        }
    );
}

#[test]
fn merge_of_mixed_variants_keeps_the_value() {
    let g = goal(ProgressMode::Absolute, 100);
    let v = stat(&g, 10, 1, 1, 1);
    let mut d = Delta::Count(3);
    merge(&mut d, v);
    assert_eq!(d, v);
    let mut d = v;
    merge(&mut d, Delta::Count(3));
    assert_eq!(d, v);
}

#[test]
fn collapsed_batch_equals_one_flush_per_event_for_relative() {
    let g = goal(ProgressMode::Relative, 1000);
    let events = [
        stat(&g, 50, 1, 10, 0),
        stat(&g, 55, 5, 20, 1),
        stat(&g, 70, 15, 30, 2),
    ];
    let one_by_one = run(&g, fresh(), &events.map(|d| (d, at(T0))));
    let mut collapsed = events[0];
    for e in &events[1..] {
        merge(&mut collapsed, *e);
    }
    let batched = run(&g, fresh(), &[(collapsed, at(T0))]);
    assert_eq!(batched, one_by_one);
    assert_eq!((batched.baseline_value, batched.progress), (Some(49), 21));
}

// ---------------------------------------------------------------- absolute

#[test]
fn absolute_stat_sets_progress_to_the_value() {
    let g = goal(ProgressMode::Absolute, 100);
    let s = run(
        &g,
        fresh(),
        &[
            (stat(&g, 50, 50, 1, 0), at(T0)),
            (stat(&g, 75, 25, 2, 1), at(T1)),
        ],
    );
    assert_eq!(s.progress, 75, "absolute replaces, never adds (not 125)");
    assert_eq!(s.status, Status::InProgress);
    assert_eq!(s.baseline_value, None);
    assert_eq!(s.last_event_at, Some(at(T1)));
}

#[test]
fn absolute_completes_at_target_and_keeps_taking_values() {
    let g = goal(ProgressMode::Absolute, 10);
    let s = run(&g, fresh(), &[(stat(&g, 10, 10, 1, 0), at(T0))]);
    assert_eq!(
        (s.status, s.completed_at),
        (Status::Completed, Some(at(T0)))
    );
    let s = run(&g, s, &[(stat(&g, 20, 10, 2, 0), at(T1))]);
    assert_eq!(s.progress, 20, "10 then 20 shows 20");
    assert_eq!(s.completed_at, Some(at(T0)), "completed_at is set once");
    // A lower value updates progress; the status never moves back within the period.
    let s = run(&g, s, &[(stat(&g, 3, -17, 3, 0), at(NEXT_DAY))]);
    assert_eq!((s.progress, s.status), (3, Status::Completed));
    assert_eq!(s.completed_at, Some(at(T0)));
}

#[test]
fn absolute_in_progress_does_not_fall_back_to_not_started() {
    let g = goal(ProgressMode::Absolute, 10);
    let s = run(
        &g,
        fresh(),
        &[
            (stat(&g, 5, 5, 1, 0), at(T0)),
            (stat(&g, 0, -5, 2, 0), at(T1)),
        ],
    );
    assert_eq!((s.progress, s.status), (0, Status::InProgress));
}

#[test]
fn absolute_login_adds_one_per_login() {
    let g = goal(ProgressMode::Absolute, 3);
    let s = run(&g, fresh(), &[(delta_for_login(&g), at(T0))]);
    assert_eq!((s.progress, s.status), (1, Status::InProgress));
    let s = run(&g, s, &[(Delta::Count(2), at(T1))]);
    assert_eq!((s.progress, s.status), (3, Status::Completed));
    assert_eq!(s.completed_at, Some(at(T1)));
}

#[test]
fn no_change_means_no_write() {
    let g = goal(ProgressMode::Absolute, 100);
    let s = run(&g, fresh(), &[(stat(&g, 7, 7, 1, 0), at(T0))]);
    assert_eq!(apply(&g, &s, &stat(&g, 7, 0, 2, 0), at(T1)), None);
    // A first value of 0 changes nothing either.
    assert_eq!(apply(&g, &fresh(), &stat(&g, 0, 0, 1, 0), at(T0)), None);
    assert_eq!(apply(&g, &fresh(), &Delta::Count(0), at(T0)), None);
}

// ---------------------------------------------------------------- relative

#[test]
fn relative_first_event_takes_value_minus_inc_as_baseline() {
    let g = goal(ProgressMode::Relative, 10);
    let s = apply(&g, &fresh(), &stat(&g, 50, 1, 1, 0), at(T0)).unwrap();
    assert_eq!(s.baseline_value, Some(49));
    assert_eq!((s.progress, s.status), (1, Status::InProgress));
}

#[test]
fn relative_shows_value_minus_baseline_and_completes() {
    let g = goal(ProgressMode::Relative, 10);
    let row = GoalState {
        baseline_value: Some(99),
        ..fresh()
    };
    let s = apply(&g, &row, &stat(&g, 110, 11, 1, 0), at(T0)).unwrap();
    assert_eq!(s.progress, 11);
    assert_eq!(
        (s.status, s.completed_at),
        (Status::Completed, Some(at(T0)))
    );
    assert_eq!(s.baseline_value, Some(99), "baseline is taken only once");
}

#[test]
fn relative_first_event_with_inc_at_least_target_completes() {
    let g = goal(ProgressMode::Relative, 10);
    let s = apply(&g, &fresh(), &stat(&g, 50, 10, 1, 0), at(T0)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(40), 10));
    assert_eq!(s.status, Status::Completed);
    let s = apply(&g, &fresh(), &stat(&g, 50, 9, 1, 0), at(T0)).unwrap();
    assert_eq!(s.status, Status::InProgress);
}

#[test]
fn relative_progress_never_below_zero() {
    let g = goal(ProgressMode::Relative, 10);
    let row = GoalState {
        baseline_value: Some(100),
        progress: 5,
        status: Status::InProgress,
        ..fresh()
    };
    let s = apply(&g, &row, &stat(&g, 60, -45, 1, 0), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (0, Status::InProgress));
}

#[test]
fn relative_login_counts_logins_since_the_period_began() {
    let g = rotating(goal(ProgressMode::Relative, 3), Schedule::Daily, true, true);
    let row = GoalState {
        progress: 2,
        status: Status::InProgress,
        baseline_value: None,
        expires_at: Some(at("2025-11-05T00:00:00Z")),
        ..fresh()
    };
    let s = apply(&g, &row, &Delta::Count(1), at(T0)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(2), 3));
    assert_eq!(s.status, Status::Completed);
    // Next period: reset, baseline re-taken from the fresh progress.
    let s = apply(&g, &s, &Delta::Count(1), at(NEXT_DAY)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(0), 1));
    assert_eq!((s.status, s.completed_at), (Status::InProgress, None));
}

// ---------------------------------------------------------------- increment

#[test]
fn increment_adds_every_event() {
    let g = goal(ProgressMode::Increment, 3);
    let s = run(
        &g,
        fresh(),
        &[
            (stat(&g, 0, 0, 1, 0), at(T0)),
            (Delta::Count(2), at(T1)),
            (Delta::Count(4), at(T1)),
        ],
    );
    assert_eq!((s.progress, s.status), (7, Status::Completed));
    assert_eq!(s.completed_at, Some(at(T1)));
}

#[test]
fn daily_increment_counts_once_per_utc_day() {
    let mut g = goal(ProgressMode::Increment, 3);
    g.daily = true;
    let s = apply(&g, &fresh(), &Delta::Count(5), at(T0)).unwrap();
    assert_eq!(s.progress, 1, "a batch of 5 events on one day counts once");
    assert_eq!(apply(&g, &s, &Delta::Count(1), at(T1)), None);
    assert_eq!(
        apply(&g, &s, &Delta::Count(1), at("2025-11-04T23:59:59Z")),
        None
    );
    let s = apply(&g, &s, &Delta::Count(1), at("2025-11-05T00:00:00Z")).unwrap();
    assert_eq!(s.progress, 2);
    let s = apply(&g, &s, &Delta::Count(1), at("2025-11-07T12:00:00Z")).unwrap();
    assert_eq!((s.progress, s.status), (3, Status::Completed));
}

// ---------------------------------------------------------------- daily mode

#[test]
fn daily_mode_first_event_of_the_day_completes() {
    let g = goal(ProgressMode::Daily, 3);
    let s = apply(&g, &fresh(), &delta_for_login(&g), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (1, Status::Completed));
    assert_eq!(s.completed_at, Some(at(T0)));
    assert_eq!(apply(&g, &s, &Delta::Count(3), at(T1)), None);
}

#[test]
fn daily_mode_is_claimable_again_the_next_day() {
    let g = goal(ProgressMode::Daily, 1);
    let claimed = GoalState {
        progress: 1,
        status: Status::Claimed,
        completed_at: Some(at(T0)),
        claimed_at: Some(at(T1)),
        last_event_at: Some(at(T0)),
        ..fresh()
    };
    assert_eq!(apply(&g, &claimed, &Delta::Count(1), at(T1)), None);
    assert_eq!(view(&g, &claimed, at(T1)), claimed);

    let seen = view(&g, &claimed, at(NEXT_DAY));
    assert_eq!((seen.progress, seen.status), (0, Status::NotStarted));
    assert_eq!((seen.completed_at, seen.claimed_at), (None, None));

    let s = apply(&g, &claimed, &Delta::Count(1), at(NEXT_DAY)).unwrap();
    assert_eq!((s.progress, s.status), (1, Status::Completed));
    assert_eq!(s.completed_at, Some(at(NEXT_DAY)));
    assert_eq!(s.claimed_at, None);
    assert_eq!(s.last_event_at, Some(at(NEXT_DAY)));
}

#[test]
fn daily_mode_unclaimed_completion_from_yesterday_restarts_today() {
    let g = goal(ProgressMode::Daily, 1);
    let done = GoalState {
        progress: 1,
        status: Status::Completed,
        completed_at: Some(at(T0)),
        last_event_at: Some(at(T0)),
        ..fresh()
    };
    let s = apply(&g, &done, &Delta::Count(1), at(NEXT_DAY)).unwrap();
    assert_eq!(s.completed_at, Some(at(NEXT_DAY)));
}

// ---------------------------------------------------------------- who may change

#[test]
fn inactive_rows_never_change() {
    for mode in [
        ProgressMode::Absolute,
        ProgressMode::Relative,
        ProgressMode::Increment,
        ProgressMode::Daily,
    ] {
        let g = goal(mode, 1);
        let row = GoalState {
            is_active: false,
            ..fresh()
        };
        assert_eq!(apply(&g, &row, &Delta::Count(1), at(T0)), None, "{mode:?}");
        assert_eq!(
            apply(
                &g,
                &row,
                &stat(&goal(ProgressMode::Absolute, 1), 5, 5, 0, 0),
                at(T0)
            ),
            None
        );
    }
}

fn claimed_row(expires_at: Option<DateTime<Utc>>) -> GoalState {
    GoalState {
        progress: 10,
        status: Status::Claimed,
        completed_at: Some(at("2025-11-03T10:00:00Z")),
        claimed_at: Some(at("2025-11-03T11:00:00Z")),
        expires_at,
        baseline_value: Some(40),
        last_event_at: Some(at("2025-11-03T10:00:00Z")),
        ..fresh()
    }
}

#[test]
fn claimed_rows_without_reselection_are_never_touched() {
    let plain = goal(ProgressMode::Absolute, 10);
    let no_reselect = rotating(
        goal(ProgressMode::Relative, 10),
        Schedule::Daily,
        true,
        false,
    );
    let row = claimed_row(Some(at("2025-11-04T00:00:00Z")));
    for g in [&plain, &no_reselect] {
        for now in [at(T0), at("2026-06-01T00:00:00Z")] {
            assert_eq!(apply(g, &row, &Delta::Count(1), now), None);
            assert_eq!(apply(g, &row, &stat(g, 99, 1, 0, 0), now), None);
            assert_eq!(view(g, &row, now), row);
        }
    }
    // Not even stamped with an expiry.
    let unstamped = claimed_row(None);
    assert_eq!(view(&no_reselect, &unstamped, at(T0)), unstamped);
}

#[test]
fn claimed_row_with_reselection_is_reset_in_a_new_period_only() {
    let g = rotating(
        goal(ProgressMode::Relative, 10),
        Schedule::Daily,
        false,
        true,
    );
    let row = claimed_row(Some(at("2025-11-04T00:00:00Z")));
    // Same period (the period ends exactly at expires_at).
    assert_eq!(
        apply(&g, &row, &stat(&g, 99, 1, 0, 0), at("2025-11-03T23:59:59Z")),
        None
    );
    // New period: claim and completion cleared, baseline re-taken, then the event applied.
    let s = apply(
        &g,
        &row,
        &stat(&g, 100, 3, 0, 0),
        at("2025-11-04T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(s.claimed_at, None);
    assert_eq!(s.completed_at, None);
    assert_eq!((s.baseline_value, s.progress), (Some(97), 3));
    assert_eq!(s.status, Status::InProgress);
    assert_eq!(s.expires_at, Some(at("2025-11-05T00:00:00Z")));

    let seen = view(&g, &row, at(T0));
    assert_eq!((seen.status, seen.progress), (Status::NotStarted, 0));
    assert_eq!(seen.claimed_at, None);
}

// ---------------------------------------------------------------- rotation

#[test]
fn stale_completed_row_is_reset_on_the_next_event_with_reset_progress() {
    let g = rotating(goal(ProgressMode::Absolute, 3), Schedule::Daily, true, true);
    let g = Goal {
        event_source: EventSource::Login,
        ..g
    };
    let stale = GoalState {
        progress: 5,
        status: Status::Completed,
        completed_at: Some(at("2025-11-03T08:00:00Z")),
        expires_at: Some(at("2025-11-04T00:00:00Z")),
        last_event_at: Some(at("2025-11-03T08:00:00Z")),
        ..fresh()
    };
    let s = apply(&g, &stale, &Delta::Count(1), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (1, Status::InProgress));
    assert_eq!(s.completed_at, None);
    assert_eq!(s.expires_at, Some(at("2025-11-05T00:00:00Z")));

    let seen = view(&g, &stale, at(T0));
    assert_eq!((seen.progress, seen.status), (0, Status::NotStarted));
    assert_eq!(seen.completed_at, None);
    assert_eq!(seen.expires_at, Some(at("2025-11-05T00:00:00Z")));
}

#[test]
fn stale_row_without_reset_progress_carries_over() {
    let g = rotating(
        goal(ProgressMode::Relative, 100),
        Schedule::Daily,
        false,
        false,
    );
    let stale = GoalState {
        progress: 20,
        status: Status::InProgress,
        baseline_value: Some(10),
        expires_at: Some(at("2025-11-04T00:00:00Z")),
        ..fresh()
    };
    let s = apply(&g, &stale, &stat(&g, 35, 5, 0, 0), at(T0)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(10), 25));
    assert_eq!(s.expires_at, Some(at("2025-11-05T00:00:00Z")));
    let done = GoalState {
        status: Status::Completed,
        completed_at: Some(at("2025-11-03T01:00:00Z")),
        ..stale
    };
    let seen = view(&g, &done, at(T0));
    assert_eq!((seen.status, seen.progress), (Status::Completed, 20));
    assert_eq!(seen.completed_at, done.completed_at);
}

#[test]
fn relative_baseline_is_retaken_each_period() {
    let g = rotating(
        goal(ProgressMode::Relative, 10),
        Schedule::Daily,
        true,
        true,
    );
    let mut s = new_assignment(&g, at(T0));
    s = apply(&g, &s, &stat(&g, 50, 1, 0, 0), at(T0)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(49), 1));
    s = apply(&g, &s, &stat(&g, 80, 30, 0, 0), at(NEXT_DAY)).unwrap();
    assert_eq!((s.baseline_value, s.progress), (Some(50), 30));
    assert_eq!(s.status, Status::Completed);
}

#[test]
fn weekly_boundary_is_monday_midnight_utc() {
    let g = rotating(
        goal(ProgressMode::Increment, 100),
        Schedule::Weekly,
        true,
        true,
    );
    // Assigned Tuesday 2025-11-04: the week ends Monday 2025-11-10.
    let s = new_assignment(&g, at(T0));
    assert_eq!(s.expires_at, Some(at("2025-11-10T00:00:00Z")));
    let s = run(&g, s, &[(Delta::Count(4), at(T0))]);
    let sunday = apply(&g, &s, &Delta::Count(1), at("2025-11-09T23:59:59Z")).unwrap();
    assert_eq!(sunday.progress, 5);
    let monday = apply(&g, &sunday, &Delta::Count(1), at("2025-11-10T00:00:00Z")).unwrap();
    assert_eq!(monday.progress, 1);
    assert_eq!(monday.expires_at, Some(at("2025-11-17T00:00:00Z")));
}

#[test]
fn monthly_boundary_is_the_first_midnight_utc() {
    let g = rotating(
        goal(ProgressMode::Increment, 100),
        Schedule::Monthly,
        true,
        false,
    );
    let s = new_assignment(&g, at("2025-01-31T23:00:00Z"));
    assert_eq!(s.expires_at, Some(at("2025-02-01T00:00:00Z")));
    let s = run(&g, s, &[(Delta::Count(3), at("2025-01-31T23:59:59Z"))]);
    assert_eq!(s.progress, 3);
    let s = apply(&g, &s, &Delta::Count(1), at("2025-02-01T00:00:00Z")).unwrap();
    assert_eq!(s.progress, 1);
    assert_eq!(s.expires_at, Some(at("2025-03-01T00:00:00Z")));
}

#[test]
fn rotating_row_without_expiry_is_stamped() {
    let g = rotating(
        goal(ProgressMode::Increment, 100),
        Schedule::Daily,
        true,
        true,
    );
    // Never took an event: no rollover, just the current period's end.
    let row = GoalState {
        progress: 4,
        status: Status::InProgress,
        ..fresh()
    };
    let s = apply(&g, &row, &Delta::Count(1), at(T0)).unwrap();
    assert_eq!(s.progress, 5);
    assert_eq!(s.expires_at, Some(at("2025-11-05T00:00:00Z")));
    // Took its last event in an earlier period: that period is over.
    let old = GoalState {
        last_event_at: Some(at("2025-11-02T10:00:00Z")),
        ..row
    };
    let s = apply(&g, &old, &Delta::Count(1), at(T0)).unwrap();
    assert_eq!(s.progress, 1);
}

#[test]
fn time_decisions_use_now_not_the_event_timestamp() {
    let g = rotating(
        goal(ProgressMode::Absolute, 100),
        Schedule::Daily,
        true,
        true,
    );
    let row = GoalState {
        progress: 40,
        status: Status::InProgress,
        expires_at: Some(at("2025-11-05T00:00:00Z")),
        ..fresh()
    };
    // An event stamped yesterday, flushed today: it lands in today's period.
    let yesterday_ms = at("2025-11-03T12:00:00Z").timestamp_millis();
    let s = apply(&g, &row, &stat(&g, 41, 1, yesterday_ms, 0), at(NEXT_DAY)).unwrap();
    assert_eq!(s.progress, 41);
    assert_eq!(s.expires_at, Some(at("2025-11-06T00:00:00Z")));
    assert_eq!(s.last_event_at, Some(at(NEXT_DAY)));
}

// ---------------------------------------------------------------- assignment, view, locks

#[test]
fn new_assignment_is_not_started_and_active() {
    let now = at(T0);
    let plain = new_assignment(&goal(ProgressMode::Absolute, 1), now);
    assert_eq!(
        plain,
        GoalState {
            progress: 0,
            status: Status::NotStarted,
            completed_at: None,
            claimed_at: None,
            is_active: true,
            assigned_at: Some(now),
            expires_at: None,
            baseline_value: None,
            last_event_at: None,
            times_claimed: 0,
            parts: None,
        }
    );
    let g = rotating(goal(ProgressMode::Absolute, 1), Schedule::Daily, true, true);
    assert_eq!(
        new_assignment(&g, now).expires_at,
        Some(at("2025-11-05T00:00:00Z"))
    );
}

#[test]
fn view_leaves_current_rows_alone() {
    let g = rotating(goal(ProgressMode::Absolute, 5), Schedule::Daily, true, true);
    let row = GoalState {
        progress: 5,
        status: Status::Completed,
        completed_at: Some(at(T0)),
        expires_at: Some(at("2025-11-05T00:00:00Z")),
        last_event_at: Some(at(T0)),
        ..fresh()
    };
    assert_eq!(view(&g, &row, at(T1)), row);
    let plain = goal(ProgressMode::Absolute, 5);
    assert_eq!(view(&plain, &row, at("2030-01-01T00:00:00Z")), row);
}

#[test]
fn view_rolls_over_inactive_rows_too() {
    let g = rotating(goal(ProgressMode::Absolute, 5), Schedule::Daily, true, true);
    let row = GoalState {
        progress: 5,
        status: Status::Completed,
        completed_at: Some(at("2025-11-03T01:00:00Z")),
        expires_at: Some(at("2025-11-04T00:00:00Z")),
        is_active: false,
        ..fresh()
    };
    let seen = view(&g, &row, at(T0));
    assert_eq!(
        (seen.status, seen.progress, seen.is_active),
        (Status::NotStarted, 0, false)
    );
}

#[test]
fn locked_while_a_prerequisite_is_not_done() {
    let mut g = goal(ProgressMode::Absolute, 1);
    g.prerequisites = vec!["a".into(), "b".into()];
    let status =
        |a: Option<Status>, b: Option<Status>| move |id: &str| if id == "a" { a } else { b };
    assert!(is_locked(&g, status(None, None)));
    assert!(is_locked(
        &g,
        status(Some(Status::Completed), Some(Status::InProgress))
    ));
    assert!(!is_locked(
        &g,
        status(Some(Status::Completed), Some(Status::Claimed))
    ));
    assert!(!is_locked(
        &goal(ProgressMode::Absolute, 1),
        status(None, None)
    ));
}

#[test]
fn locked_by_statuses_needs_every_prerequisite_done() {
    use Status::*;
    assert!(!locked_by([]));
    assert!(!locked_by([Some(Completed), Some(Claimed)]));
    assert!(locked_by([None]));
    assert!(locked_by([Some(Completed), None]));
    assert!(locked_by([Some(Claimed), Some(InProgress)]));
    assert!(locked_by([Some(NotStarted)]));
}

// ---------------------------------------------------------------- overflow

#[test]
fn arithmetic_saturates_at_i32_max() {
    let abs = Goal {
        event_source: EventSource::Login,
        ..goal(ProgressMode::Absolute, i32::MAX)
    };
    let row = GoalState {
        progress: i32::MAX - 1,
        status: Status::InProgress,
        ..fresh()
    };
    let s = apply(&abs, &row, &Delta::Count(u32::MAX), at(T0)).unwrap();
    assert_eq!((s.progress, s.status), (i32::MAX, Status::Completed));
    let s2 = apply(&abs, &s, &Delta::Count(1), at(T1));
    assert_eq!(s2, None, "already at the ceiling: nothing changes");

    let inc = goal(ProgressMode::Increment, 10);
    let s = apply(&inc, &fresh(), &Delta::Count(u32::MAX), at(T0)).unwrap();
    assert_eq!(s.progress, i32::MAX);

    let rel = goal(ProgressMode::Relative, 10);
    let row = GoalState {
        baseline_value: Some(i32::MIN),
        ..fresh()
    };
    let s = apply(&rel, &row, &stat(&rel, i32::MAX, 1, 0, 0), at(T0)).unwrap();
    assert_eq!(s.progress, i32::MAX);

    let rel_login = Goal {
        event_source: EventSource::Login,
        ..rel
    };
    let row = GoalState {
        progress: i32::MAX,
        status: Status::Completed,
        baseline_value: Some(0),
        ..fresh()
    };
    assert_eq!(apply(&rel_login, &row, &Delta::Count(5), at(T0)), None);
}

// ---------------------------------------------------------------- auto-claim

#[test]
fn a_completion_is_new_once_per_period() {
    let g = rotating(goal(ProgressMode::Absolute, 3), Schedule::Daily, true, true);
    let s0 = fresh();
    let s1 = run(&g, s0.clone(), &[(stat(&g, 2, 2, 1, 1), at(T0))]);
    assert!(!newly_completed(&s0, &s1), "in progress is not completed");
    let s2 = run(&g, s1.clone(), &[(stat(&g, 3, 1, 2, 2), at(T0))]);
    assert!(newly_completed(&s1, &s2), "completion");
    // A completed goal taking a higher value stays the same completion.
    let s3 = run(&g, s2.clone(), &[(stat(&g, 9, 6, 3, 3), at(T1))]);
    assert_eq!(s3.status, Status::Completed);
    assert!(!newly_completed(&s2, &s3));
    // The next day's completion is a new one.
    let s4 = run(&g, s3.clone(), &[(stat(&g, 5, 5, 4, 4), at(NEXT_DAY))]);
    assert_eq!(s4.status, Status::Completed);
    assert!(newly_completed(&s3, &s4), "{s3:?} -> {s4:?}");
}

// ---------------------------------------------------------------- repeatable goals

#[test]
fn a_repeatable_goal_starts_again_after_each_claim_until_its_last() {
    let mut g = goal(ProgressMode::Absolute, 3);
    g.repeat = Some(crate::config::Repeat { max_times: 2 });
    let claimed = |times: i32| GoalState {
        progress: 3,
        status: Status::Claimed,
        completed_at: Some(at(T0)),
        claimed_at: Some(at(T0)),
        times_claimed: times,
        ..fresh()
    };
    // Claimed once of two: reads as fresh, and events count again.
    let seen = view(&g, &claimed(1), at(T1));
    assert_eq!((seen.status, seen.progress), (Status::NotStarted, 0));
    assert_eq!((seen.completed_at, seen.claimed_at), (None, None));
    assert_eq!(seen.times_claimed, 1);
    let next = apply(&g, &claimed(1), &stat(&g, 3, 3, 5, 1), at(T1)).expect("counts again");
    assert_eq!(next.status, Status::Completed);
    assert_eq!(next.completed_at, Some(at(T1)));
    assert!(newly_completed(&claimed(1), &next));
    // Claimed twice of two: final.
    assert_eq!(view(&g, &claimed(2), at(T1)).status, Status::Claimed);
    assert_eq!(apply(&g, &claimed(2), &stat(&g, 9, 9, 6, 2), at(T1)), None);
    // Unlimited.
    g.repeat = Some(crate::config::Repeat { max_times: 0 });
    assert_eq!(view(&g, &claimed(40), at(T1)).status, Status::NotStarted);
    // Without repeat a claim is final.
    g.repeat = None;
    assert_eq!(view(&g, &claimed(1), at(T1)).status, Status::Claimed);
}

// ---------------------------------------------------------------- per-player windows

#[test]
fn a_per_player_window_starts_at_assignment_and_the_next_follows_it() {
    let mut g = goal(ProgressMode::Absolute, 3);
    g.rotation = Some(Rotation {
        schedule: Schedule::PerUser { seconds: 86_400 },
        on_expiry: OnExpiry {
            reset_progress: true,
            allow_reselection: true,
        },
    });
    let assigned = at("2025-11-04T15:30:00Z");
    let fresh_row = new_assignment(&g, assigned);
    assert_eq!(fresh_row.expires_at, Some(at("2025-11-05T15:30:00Z")));
    // Completed and claimed inside the first window.
    let done = apply(
        &g,
        &fresh_row,
        &stat(&g, 3, 3, 1, 1),
        at("2025-11-05T09:00:00Z"),
    )
    .unwrap();
    assert_eq!(done.status, Status::Completed);
    let claimed = GoalState {
        status: Status::Claimed,
        claimed_at: Some(at("2025-11-05T10:00:00Z")),
        ..done
    };
    // Still the first window: claimed.
    assert_eq!(
        view(&g, &claimed, at("2025-11-05T15:29:59Z")).status,
        Status::Claimed
    );
    // The second window (not the next UTC day): afresh, with its own end.
    let next = view(&g, &claimed, at("2025-11-05T15:30:00Z"));
    assert_eq!((next.status, next.progress), (Status::NotStarted, 0));
    assert_eq!(next.expires_at, Some(at("2025-11-06T15:30:00Z")));
    // Several windows later the end follows the windows back to back.
    let later = view(&g, &claimed, at("2025-11-09T01:00:00Z"));
    assert_eq!(later.expires_at, Some(at("2025-11-09T15:30:00Z")));
}

// ---------------------------------------------------------------- requirement groups

/// CONTRACT §8: AND within a group, OR across groups; each requirement by its own mode;
/// `progress` shows the first requirement; `<`/`=` need a value seen.
#[test]
fn requirement_groups_complete_when_any_group_is_all_met() {
    let text = serde_json::json!({"challenges": [{"challengeId": "c", "name": "C", "goals": [{
        "goalId": "g", "name": "G", "eventSource": "statistic",
        "reward": {"type": "ITEM", "rewardId": "i", "quantity": 1},
        "requirementGroups": [
            {"requirements": [
                {"statCode": "kills", "operator": ">=", "targetValue": 10},
                {"statCode": "wins", "operator": ">", "targetValue": 1, "progressMode": "increment"}
            ]},
            {"requirements": [
                {"statCode": "deaths", "operator": "<", "targetValue": 1},
                {"statCode": "score", "operator": ">=", "targetValue": 100, "progressMode": "relative"}
            ]}
        ]
    }]}]})
    .to_string();
    let cfg = crate::config::parse_and_validate("t.json", &text).unwrap();
    let g = cfg.goal("g").unwrap();
    assert_eq!(g.requirement.stat_code, "kills");
    let part = |code: &str| cfg.stat_goals(code)[0].clone();
    assert_eq!(part("wins").id, "g#1");
    assert_eq!(part("wins").row_goal_id(), "g");
    let step = |s: &GoalState, code: &str, v: i32, i: i32, n: u64| {
        let p = part(code);
        apply(&p, s, &stat(&p, v, i, n as i64, n), at(T0)).unwrap_or_else(|| s.clone())
    };
    let s = fresh();
    let s = step(&s, "kills", 12, 12, 1);
    assert_eq!((s.status, s.progress), (Status::InProgress, 12));
    let s = step(&s, "wins", 0, 0, 2);
    assert_eq!(s.status, Status::InProgress, "wins 1 is not > 1");
    // Group B: score relative from its first event's base, deaths 0 seen.
    let s = step(&s, "score", 150, 20, 3);
    let parts = s.parts.clone().unwrap();
    assert_eq!(parts[3].value, Some(20), "150 - (150 - 20)");
    assert_eq!(s.status, Status::InProgress);
    let s = step(&s, "score", 260, 110, 4);
    assert_eq!(s.parts.as_ref().unwrap()[3].value, Some(130));
    assert_eq!(s.status, Status::InProgress, "deaths never reported");
    let s = step(&s, "deaths", 0, 0, 5);
    assert_eq!(s.status, Status::Completed);
    assert_eq!(s.progress, 12, "the first requirement");
    // Completed stays completed.
    let s2 = step(&s, "deaths", 4, 4, 6);
    assert_eq!(s2.status, Status::Completed);
    // Another player: group A alone.
    let t = step(
        &step(&step(&fresh(), "kills", 10, 10, 1), "wins", 0, 0, 2),
        "wins",
        0,
        0,
        3,
    );
    assert_eq!(t.status, Status::Completed);
    assert!(requirement_met(
        g.groups.as_ref().unwrap(),
        t.parts.as_ref().unwrap(),
        1
    ));
}

// ---------------------------------------------------------------- why (the event trail)

/// Each ignore reason the rules decide, from the rule that decides it; `apply` is `None`
/// exactly when `apply_explained` is an `Err`.
#[test]
fn apply_explained_names_the_rule_that_ignored_the_event() {
    use crate::progress::{Ignored, apply_explained, stat_delta};
    let abs = goal(ProgressMode::Absolute, 10);
    let why = |g: &Goal, s: &GoalState, d: &Delta, now: &str| {
        let explained = apply_explained(g, s, d, at(now));
        assert_eq!(explained.clone().ok(), apply(g, s, d, at(now)));
        explained.err()
    };
    // Counted.
    assert_eq!(why(&abs, &fresh(), &stat(&abs, 3, 3, 0, 0), T0), None);
    // Negative value: the delta rule.
    assert_eq!(
        stat_delta(&abs, -1, -1, (0, 0)),
        Err(Ignored::NegativeValue)
    );
    assert!(stat_delta(&goal(ProgressMode::Increment, 3), -1, -1, (0, 0)).is_ok());
    // Inactive.
    let inactive = GoalState {
        is_active: false,
        ..fresh()
    };
    assert_eq!(
        why(&abs, &inactive, &Delta::Count(1), T0),
        Some(Ignored::NotActive)
    );
    // Claimed, this period (plain goal) and after a period without reselection.
    let row = claimed_row(Some(at("2025-11-04T00:00:00Z")));
    assert_eq!(
        why(&abs, &row, &Delta::Count(1), T0),
        Some(Ignored::AlreadyClaimed)
    );
    let no_reselect = rotating(abs.clone(), Schedule::Daily, true, false);
    assert_eq!(
        why(&no_reselect, &row, &Delta::Count(1), T0),
        Some(Ignored::PeriodEnded)
    );
    let current = claimed_row(Some(at("2025-11-05T00:00:00Z")));
    assert_eq!(
        why(&no_reselect, &current, &Delta::Count(1), T0),
        Some(Ignored::AlreadyClaimed)
    );
    // Daily caps: an increment goal counted today, a daily-mode goal completed today.
    let mut daily_inc = goal(ProgressMode::Increment, 3);
    daily_inc.daily = true;
    let s = apply(&daily_inc, &fresh(), &Delta::Count(1), at(T0)).unwrap();
    assert_eq!(
        why(&daily_inc, &s, &Delta::Count(1), T1),
        Some(Ignored::DailyCap)
    );
    let daily = goal(ProgressMode::Daily, 1);
    let s = apply(&daily, &fresh(), &Delta::Count(1), at(T0)).unwrap();
    assert_eq!(
        why(&daily, &s, &Delta::Count(1), T1),
        Some(Ignored::DailyCap)
    );
    // The same value again reaches the row and moves nothing: it counts.
    let s = apply(&abs, &fresh(), &stat(&abs, 3, 3, 0, 0), at(T0)).unwrap();
    let same = why(&abs, &s, &stat(&abs, 3, 0, 1, 1), T1);
    assert_eq!(same, Some(Ignored::Unchanged));
    assert_eq!(Ignored::Unchanged.reason(), None);
    assert_eq!(Ignored::DailyCap.reason(), Some("daily_cap"));
}

// ---- A catalog change (CONTRACT §9): rows judged by the new requirement ----

fn with_progress(progress: i32, status: Status) -> GoalState {
    GoalState {
        progress,
        status,
        ..fresh()
    }
}

#[test]
fn rejudge_completes_a_row_the_lowered_target_now_meets() {
    let lowered = goal(ProgressMode::Absolute, 5);
    assert_eq!(
        rejudge(&lowered, &with_progress(7, Status::InProgress)),
        Status::Completed
    );
    assert_eq!(
        rejudge(&lowered, &with_progress(5, Status::InProgress)),
        Status::Completed
    );
    assert_eq!(
        rejudge(&lowered, &with_progress(4, Status::InProgress)),
        Status::InProgress
    );
    assert_eq!(
        rejudge(&lowered, &with_progress(0, Status::NotStarted)),
        Status::NotStarted
    );
}

#[test]
fn rejudge_keeps_what_was_earned_and_never_moves_a_row_back() {
    let raised = goal(ProgressMode::Absolute, 100);
    for done in [Status::Completed, Status::Claimed] {
        assert_eq!(rejudge(&raised, &with_progress(10, done)), done);
    }
    assert_eq!(
        rejudge(&raised, &with_progress(10, Status::InProgress)),
        Status::InProgress
    );
}

#[test]
fn rejudge_reads_requirement_groups_from_the_parts() {
    use crate::config::{Criterion, Groups, Operator};
    let criterion = |stat: &str, target| Criterion {
        stat_code: stat.into(),
        operator: Operator::Ge,
        target_value: target,
        mode: ProgressMode::Absolute,
    };
    let mut g = goal(ProgressMode::Absolute, 3);
    // (kills >= 3 AND wins >= 2) OR deaths >= 9
    g.groups = Some(std::sync::Arc::new(Groups {
        criteria: vec![
            criterion("kills", 3),
            criterion("wins", 2),
            criterion("deaths", 9),
        ],
        groups: vec![vec![0, 1], vec![2]],
    }));
    let parts = |k: Option<i32>, w: Option<i32>, d: Option<i32>| GoalState {
        parts: Some(
            [k, w, d]
                .into_iter()
                .map(|value| PartState {
                    value,
                    baseline: None,
                })
                .collect(),
        ),
        ..with_progress(k.unwrap_or(0), Status::InProgress)
    };
    assert_eq!(
        rejudge(&g, &parts(Some(3), Some(2), None)),
        Status::Completed
    );
    assert_eq!(
        rejudge(&g, &parts(Some(3), Some(1), None)),
        Status::InProgress
    );
    assert_eq!(rejudge(&g, &parts(None, None, Some(9))), Status::Completed);
    // A row no event reached yet has no parts: nothing is met.
    assert_eq!(
        rejudge(&g, &with_progress(0, Status::NotStarted)),
        Status::NotStarted
    );
}
