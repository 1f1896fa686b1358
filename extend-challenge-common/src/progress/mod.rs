//! The progress rules of CONTRACT §2.1 as pure functions: no I/O, no clock (callers pass
//! `now`). The event handler applies [`apply`] to rows it locked; the service applies
//! [`view`] on read so a stale row never shows last period's state.
//!
//! Storage convention: the `progress` column holds the progress a player sees (for
//! `relative` goals that is value − baseline, never below 0); `baseline_value` holds the
//! relative baseline; `last_event_at` is when the row last took an event (the flush time);
//! `expires_at` is the end of the rotation period the row belongs to (rotating goals only).
//!
//! Semantics where CONTRACT §2.1 is silent (see `rules.rs` for the details):
//! - status only moves forward within a period: a lower absolute value updates `progress`
//!   but a completed row stays completed and an in-progress row stays in progress;
//! - increment goals keep counting past the target;
//! - a `daily`-mode goal behaves as if it rotated daily with reset and reselection, on top
//!   of any configured rotation (it is claimable again every UTC day);
//! - a rotating row with no `expires_at` takes the period of its `last_event_at`;
//! - a change of any kind sets `last_event_at`; an event that changes nothing is no write.

use chrono::{DateTime, Utc};

/// A goal row's status, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    NotStarted,
    InProgress,
    Completed,
    Claimed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "not_started",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Claimed => "claimed",
        }
    }

    /// Parses a stored status; unknown text is `None`.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "not_started" => Some(Status::NotStarted),
            "in_progress" => Some(Status::InProgress),
            "completed" => Some(Status::Completed),
            "claimed" => Some(Status::Claimed),
            _ => None,
        }
    }

    /// Completed or claimed: satisfies a prerequisite.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Completed | Status::Claimed)
    }
}

/// The mutable part of a `user_goal_progress` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalState {
    pub progress: i32,
    pub status: Status,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    /// End of the rotation period the row belongs to (rotating goals only).
    pub expires_at: Option<DateTime<Utc>>,
    pub baseline_value: Option<i32>,
    pub last_event_at: Option<DateTime<Utc>>,
    /// Claims so far (repeatable goals start again after each; written only by claims).
    pub times_claimed: i32,
    /// Requirement-group goals (CONTRACT §8): each requirement's state, in the order of the
    /// goal's requirements; `None` for other goals and before any event.
    pub parts: Option<Vec<PartState>>,
}

/// One requirement's state in a requirement-group goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartState {
    /// The requirement's progress (its value for absolute ones); `None` until an event
    /// reached it.
    pub value: Option<i32>,
    /// The relative baseline.
    pub baseline: Option<i32>,
}

/// The events of one batch for one (user, goal), collapsed. Collapsing keeps every rule
/// exact: counts add up; values keep the first event's `v − i` and the latest value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// `n` events that each count once (logins; stat events on increment/daily goals).
    Count(u32),
    /// Stat events on absolute/relative goals (negative values never get here).
    Value {
        /// `v − i` of the first event (the stat value before it).
        first_base: i32,
        /// Ordering key of the first event: (event timestamp ms, arrival sequence).
        first_at: (i64, u64),
        /// The latest value.
        latest: i32,
        /// Ordering key of the latest event.
        latest_at: (i64, u64),
    },
}

/// Why an event left a goal unchanged: the rule that ignored it (the event trail's
/// `reason`, CONTRACT §10). Produced by [`rules::apply_explained`] and
/// [`rules::stat_delta`]; the handler adds the reasons no rule of a row decides (no row,
/// a redelivered id, a dead-lettered batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// The goal is not assigned to the player (no row).
    NotAssigned,
    /// The row is inactive.
    NotActive,
    /// Prerequisites not done (reserved: a locked goal takes progress, CONTRACT §2.1).
    Locked,
    /// Claimed in its current period (or for the last time).
    AlreadyClaimed,
    /// Claimed in a rotation period that ended, without reselection: final.
    PeriodEnded,
    /// A redelivered event id, applied before.
    Duplicate,
    /// A negative stat value on an absolute or relative goal.
    NegativeValue,
    /// A `daily` goal already counted (or completed) today.
    DailyCap,
    /// The player's batch was refused by Postgres and moved to the dead-letter table.
    DeadLettered,
    /// The event reached the row and moved nothing (the same value again): not an ignore
    /// reason; the trail shows it as counted with equal progress before and after.
    Unchanged,
}

impl Ignored {
    /// The trail's `reason` (`None` for [`Ignored::Unchanged`], which counts).
    pub fn reason(self) -> Option<&'static str> {
        Some(match self {
            Ignored::NotAssigned => "not_assigned",
            Ignored::NotActive => "not_active",
            Ignored::Locked => "locked",
            Ignored::AlreadyClaimed => "already_claimed",
            Ignored::PeriodEnded => "period_ended",
            Ignored::Duplicate => "duplicate",
            Ignored::NegativeValue => "negative_value",
            Ignored::DailyCap => "daily_cap",
            Ignored::DeadLettered => "dead_lettered",
            Ignored::Unchanged => return None,
        })
    }
}

pub mod rules;

pub use rules::{
    apply, apply_explained, delta_for_login, delta_for_stat, is_locked, locked_by, merge,
    new_assignment, newly_completed, rejudge, requirement_met, stat_delta, view,
};
