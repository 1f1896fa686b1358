//! UTC rotation periods (CONTRACT §2.1): daily from 00:00 UTC, weekly from Monday 00:00 UTC,
//! monthly from the 1st 00:00 UTC. All functions are pure; callers pass `now`.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use crate::config::Schedule;

/// A half-open period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Whole seconds from `now` to the end, never negative, saturated into `i32`.
    pub fn seconds_left(&self, now: DateTime<Utc>) -> i32 {
        let s = (self.end - now).num_seconds().max(0);
        i32::try_from(s).unwrap_or(i32::MAX)
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// The period of a player's goal that contains `t`: the global period of `schedule`, or,
/// for a per-player schedule, the window counted from `anchor` (when the goal was assigned
/// to the player; `t` itself when unknown) in steps of its duration, back to back.
pub fn window(schedule: Schedule, anchor: Option<DateTime<Utc>>, t: DateTime<Utc>) -> Period {
    match schedule {
        Schedule::PerUser { seconds } => {
            let step = i64::from(seconds.max(1));
            let anchor = anchor.unwrap_or(t);
            let k = (t - anchor).num_seconds().div_euclid(step);
            let start = anchor + Duration::seconds(k * step);
            Period {
                start,
                end: start + Duration::seconds(step),
            }
        }
        global => period_containing(global, t),
    }
}

/// The window after the one of [`window`] containing `t`.
pub fn next_window(schedule: Schedule, anchor: Option<DateTime<Utc>>, t: DateTime<Utc>) -> Period {
    let current = window(schedule, anchor, t);
    window(schedule, Some(current.start), current.end)
}

/// The global period of `schedule` that contains `t` (a per-player schedule counts its
/// windows from the Unix epoch here; use [`window`] for a player's).
pub fn period_containing(schedule: Schedule, t: DateTime<Utc>) -> Period {
    let day = t.date_naive();
    match schedule {
        Schedule::PerUser { .. } => window(schedule, Some(DateTime::<Utc>::UNIX_EPOCH), t),
        Schedule::Daily => {
            let start = midnight(day);
            Period {
                start,
                end: start + Duration::days(1),
            }
        }
        Schedule::Weekly => {
            let back = i64::from(day.weekday().num_days_from_monday());
            let start = midnight(day - Duration::days(back));
            Period {
                start,
                end: start + Duration::days(7),
            }
        }
        Schedule::Monthly => {
            let first = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).expect("1st exists");
            let next = if day.month() == 12 {
                NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
            }
            .expect("1st exists");
            Period {
                start: midnight(first),
                end: midnight(next),
            }
        }
    }
}

/// Start of the UTC day containing `t`.
pub fn utc_day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    midnight(t.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_player_windows_follow_each_other_from_the_assignment() {
        let day = Schedule::PerUser { seconds: 86_400 };
        let assigned = at("2025-11-04T15:30:00Z");
        let w = window(day, Some(assigned), at("2025-11-05T09:00:00Z"));
        assert_eq!((w.start, w.end), (assigned, at("2025-11-05T15:30:00Z")));
        let w = window(day, Some(assigned), at("2025-11-05T15:30:00Z"));
        assert_eq!(w.start, at("2025-11-05T15:30:00Z"), "half-open");
        let w = window(day, Some(assigned), at("2025-11-08T16:00:00Z"));
        assert_eq!(w.start, at("2025-11-08T15:30:00Z"));
        let n = next_window(day, Some(assigned), at("2025-11-04T16:00:00Z"));
        assert_eq!(
            (n.start, n.end),
            (at("2025-11-05T15:30:00Z"), at("2025-11-06T15:30:00Z"))
        );
        // Before the assignment (a clock behind): the window before it.
        let w = window(day, Some(assigned), at("2025-11-04T10:00:00Z"));
        assert_eq!(w.end, assigned);
        // Global schedules ignore the anchor.
        assert_eq!(
            window(Schedule::Daily, Some(assigned), at("2025-11-05T09:00:00Z")),
            period_containing(Schedule::Daily, at("2025-11-05T09:00:00Z"))
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_period_is_the_utc_day() {
        let p = period_containing(Schedule::Daily, at("2025-11-04T23:59:59Z"));
        assert_eq!(p.start, at("2025-11-04T00:00:00Z"));
        assert_eq!(p.end, at("2025-11-05T00:00:00Z"));
        assert_eq!(p.seconds_left(at("2025-11-04T23:59:59Z")), 1);
    }

    #[test]
    fn weekly_period_starts_monday() {
        // 2025-11-09 is a Sunday.
        let p = period_containing(Schedule::Weekly, at("2025-11-09T12:00:00Z"));
        assert_eq!(p.start, at("2025-11-03T00:00:00Z"));
        assert_eq!(p.end, at("2025-11-10T00:00:00Z"));
        let monday = period_containing(Schedule::Weekly, at("2025-11-10T00:00:00Z"));
        assert_eq!(monday.start, at("2025-11-10T00:00:00Z"));
    }

    #[test]
    fn monthly_period_wraps_the_year() {
        let p = period_containing(Schedule::Monthly, at("2025-12-31T10:00:00Z"));
        assert_eq!(p.start, at("2025-12-01T00:00:00Z"));
        assert_eq!(p.end, at("2026-01-01T00:00:00Z"));
        let n = next_window(Schedule::Monthly, None, at("2025-12-31T10:00:00Z"));
        assert_eq!(n.start, at("2026-01-01T00:00:00Z"));
        assert_eq!(n.end, at("2026-02-01T00:00:00Z"));
    }
}
