//! Implementations of the progress rules. See the module docs of [`super`].
//!
//! Every function takes `now` (the flush or request time); event timestamps only order the
//! values inside a [`Delta`]. The rules run in two steps:
//!
//! 1. [`rollover`]: bring a row into the period containing `now` (rotation periods, and the
//!    UTC day of a `daily`-mode goal). [`view`] stops here.
//! 2. Fold the delta in according to the goal's [`ProgressMode`], then settle the status.

use chrono::{DateTime, Utc};

use super::{Delta, GoalState, Ignored, PartState, Status};
use crate::config::{Goal, Groups, ProgressMode};
use crate::rotation::{utc_day_start, window};

/// The delta one login event contributes to `goal`. Logins always count once, whatever the
/// goal's mode.
pub fn delta_for_login(goal: &Goal) -> Delta {
    let _ = goal;
    Delta::Count(1)
}

/// The delta one stat event (`value`, `inc`, already truncated and clamped) contributes to
/// `goal`, ordered by `at` = (event timestamp ms, arrival sequence). `None` when the event
/// leaves the goal unchanged (a negative value on an absolute/relative goal).
pub fn delta_for_stat(goal: &Goal, value: i32, inc: i32, at: (i64, u64)) -> Option<Delta> {
    stat_delta(goal, value, inc, at).ok()
}

/// [`delta_for_stat`], saying why an event leaves the goal unchanged.
pub fn stat_delta(goal: &Goal, value: i32, inc: i32, at: (i64, u64)) -> Result<Delta, Ignored> {
    match goal.mode {
        ProgressMode::Increment | ProgressMode::Daily => Ok(Delta::Count(1)),
        ProgressMode::Absolute | ProgressMode::Relative => {
            if value < 0 {
                return Err(Ignored::NegativeValue);
            }
            Ok(Delta::Value {
                first_base: clamp_i32(i64::from(value) - i64::from(inc)),
                first_at: at,
                latest: value,
                latest_at: at,
            })
        }
    }
}

/// Folds `newer` (arrived later) into `acc`. Both must come from the same goal.
///
/// Counts add (saturating). Values keep the earliest first event and the latest value by
/// the (timestamp, arrival) key; on a tie the first event stays with `acc` and the latest
/// value goes to `newer`. The mode of a goal decides the variant, so the two never mix; if
/// they do anyway, the `Value` is kept (a value is state, a count of logins on a stat goal
/// is noise).
pub fn merge(acc: &mut Delta, newer: Delta) {
    match (acc, newer) {
        (Delta::Count(a), Delta::Count(b)) => *a = a.saturating_add(b),
        (
            Delta::Value {
                first_base,
                first_at,
                latest,
                latest_at,
            },
            Delta::Value {
                first_base: nb,
                first_at: nfa,
                latest: nl,
                latest_at: nla,
            },
        ) => {
            if nfa < *first_at {
                *first_base = nb;
                *first_at = nfa;
            }
            if nla >= *latest_at {
                *latest = nl;
                *latest_at = nla;
            }
        }
        (acc @ Delta::Count(_), newer @ Delta::Value { .. }) => *acc = newer,
        (Delta::Value { .. }, Delta::Count(_)) => {}
    }
}

/// The state of a freshly assigned row at `now` (what `/initialize` and auto-assignment
/// insert).
pub fn new_assignment(goal: &Goal, now: DateTime<Utc>) -> GoalState {
    GoalState {
        progress: 0,
        status: Status::NotStarted,
        completed_at: None,
        claimed_at: None,
        is_active: true,
        assigned_at: Some(now),
        expires_at: goal
            .rotation
            .map(|r| window(r.schedule, Some(now), now).end),
        baseline_value: None,
        last_event_at: None,
        times_claimed: 0,
        parts: None,
    }
}

/// Applies a collapsed delta to a row at `now` (rotation rollover first). `None` when the
/// row must not change (inactive; claimed without reselection; nothing to do).
///
/// When the row changes, `last_event_at` becomes `now`.
pub fn apply(
    goal: &Goal,
    state: &GoalState,
    delta: &Delta,
    now: DateTime<Utc>,
) -> Option<GoalState> {
    apply_explained(goal, state, delta, now).ok()
}

/// [`apply`], saying why the row must not change: the rule that ignored the delta. The
/// event trail's reasons (CONTRACT §10) come from here, so they are the rules that decide.
pub fn apply_explained(
    goal: &Goal,
    state: &GoalState,
    delta: &Delta,
    now: DateTime<Utc>,
) -> Result<GoalState, Ignored> {
    if let Some(part) = &goal.part {
        return apply_part(&part.parent, part.index, goal, state, delta, now);
    }
    if !state.is_active {
        return Err(Ignored::NotActive);
    }
    if *delta == Delta::Count(0) {
        return Err(Ignored::Unchanged);
    }
    let mut s = rollover(goal, state, now);
    // A claimed row that survived the rollover is final.
    if s.status == Status::Claimed {
        return Err(claimed_reason(goal, state, now));
    }
    let mut capped = false;
    if goal.mode == ProgressMode::Daily {
        // `rollover` already reset a row whose last event was on an earlier day, so a
        // completed row here completed today: nothing more to do.
        if s.status != Status::Completed {
            s.progress = 1;
            s.status = Status::Completed;
            s.completed_at = Some(now);
        } else {
            capped = true;
        }
    } else {
        let (mut progress, mut baseline) = (s.progress, s.baseline_value);
        capped = advance(
            goal.mode,
            goal.daily,
            &mut progress,
            &mut baseline,
            s.last_event_at,
            delta,
            now,
        );
        (s.progress, s.baseline_value) = (progress, baseline);
    }
    settle(goal, &mut s, now);
    if same_ignoring_last_event(&s, state) {
        return Err(if capped {
            Ignored::DailyCap
        } else {
            Ignored::Unchanged
        });
    }
    s.last_event_at = Some(now);
    Ok(s)
}

/// Why a claimed row takes no more events: its rotation period ended and it may not be
/// selected again (it stays claimed forever), or it is claimed in its current period (or
/// for the last time of a repeatable goal).
fn claimed_reason(goal: &Goal, state: &GoalState, now: DateTime<Utc>) -> Ignored {
    let ended = goal.rotation.is_some_and(|rot| {
        state
            .expires_at
            .or_else(|| {
                state
                    .last_event_at
                    .map(|t| window(rot.schedule, state.assigned_at, t).end)
            })
            .is_some_and(|end| end <= now)
    });
    if ended {
        Ignored::PeriodEnded
    } else {
        Ignored::AlreadyClaimed
    }
}

/// How one requirement's progress moves (absolute, relative, increment; CONTRACT §2.1):
/// the rule behind both a goal's own progress and each requirement of a group. Returns
/// whether a daily increment goal's once-a-day cap swallowed the delta.
fn advance(
    mode: ProgressMode,
    daily: bool,
    progress: &mut i32,
    baseline: &mut Option<i32>,
    last_event_at: Option<DateTime<Utc>>,
    delta: &Delta,
    now: DateTime<Utc>,
) -> bool {
    match mode {
        ProgressMode::Absolute => match *delta {
            Delta::Value { latest, .. } => *progress = latest.max(0),
            Delta::Count(n) => *progress = add(*progress, n),
        },
        ProgressMode::Relative => match *delta {
            Delta::Value {
                first_base, latest, ..
            } => {
                let base = *baseline.get_or_insert(first_base);
                *progress = clamp_i32(i64::from(latest) - i64::from(base)).max(0);
            }
            Delta::Count(n) => {
                baseline.get_or_insert(*progress);
                *progress = add(*progress, n);
            }
        },
        ProgressMode::Increment | ProgressMode::Daily => {
            let n = match *delta {
                Delta::Count(n) => n,
                Delta::Value { .. } => 1,
            };
            if daily {
                let counted_today =
                    last_event_at.is_some_and(|t| utc_day_start(t) >= utc_day_start(now));
                if !counted_today && n > 0 {
                    *progress = add(*progress, 1);
                }
                return counted_today;
            } else {
                *progress = add(*progress, n);
            }
        }
    }
    false
}

/// [`apply`] for one requirement (`index`, fed through `part`) of a requirement-group goal
/// `parent` (CONTRACT §8): the parent's row rolls over, the requirement moves by its own
/// mode, `progress` shows the first requirement, and the goal completes when every
/// requirement of any one group is met.
fn apply_part(
    parent: &Goal,
    index: usize,
    part: &Goal,
    state: &GoalState,
    delta: &Delta,
    now: DateTime<Utc>,
) -> Result<GoalState, Ignored> {
    let Some(groups) = parent.groups.as_ref() else {
        return Err(Ignored::Unchanged);
    };
    if !state.is_active {
        return Err(Ignored::NotActive);
    }
    if *delta == Delta::Count(0) || index >= groups.criteria.len() {
        return Err(Ignored::Unchanged);
    }
    let mut s = rollover(parent, state, now);
    if s.status == Status::Claimed {
        return Err(claimed_reason(parent, state, now));
    }
    let mut parts = s.parts.take().unwrap_or_default();
    parts.resize(groups.criteria.len(), PartState::default());
    let p = &mut parts[index];
    let (mut progress, mut baseline) = (p.value.unwrap_or(0), p.baseline);
    let _ = advance(
        part.mode,
        false,
        &mut progress,
        &mut baseline,
        s.last_event_at,
        delta,
        now,
    );
    *p = PartState {
        value: Some(progress),
        baseline,
    };
    s.progress = parts[0].value.unwrap_or(0).max(0);
    if !s.status.is_done() {
        let met = |i: &usize| requirement_met(groups, &parts, *i);
        if groups.groups.iter().any(|g| g.iter().all(met)) {
            s.status = Status::Completed;
            s.completed_at.get_or_insert(now);
        } else if parts.iter().any(|p| p.value.is_some_and(|v| v > 0)) {
            s.status = Status::InProgress;
        }
    }
    s.parts = Some(parts);
    if same_ignoring_last_event(&s, state) {
        return Err(Ignored::Unchanged);
    }
    s.last_event_at = Some(now);
    Ok(s)
}

/// The status a stored row has under `goal`'s requirement as it is now (CONTRACT §9, a
/// catalog change): a completed or claimed row keeps its status (earned is earned); a row
/// not yet done is judged by the requirement: completed when met, otherwise as it was.
/// Progress is never rewritten, so a raised target leaves an in-progress row in progress.
pub fn rejudge(goal: &Goal, state: &GoalState) -> Status {
    if state.status.is_done() {
        return state.status;
    }
    let met = match goal.groups.as_ref() {
        Some(groups) => {
            let parts = state.parts.as_deref().unwrap_or(&[]);
            groups
                .groups
                .iter()
                .any(|g| g.iter().all(|i| requirement_met(groups, parts, *i)))
        }
        None => state.progress >= goal.requirement.target_value,
    };
    if met { Status::Completed } else { state.status }
}

/// Whether requirement `index` of `groups` is met by the player's `parts`.
pub fn requirement_met(groups: &Groups, parts: &[PartState], index: usize) -> bool {
    let c = &groups.criteria[index];
    c.operator
        .met(parts.get(index).and_then(|p| p.value), c.target_value)
}

/// What a player sees at `now`: the row with any pending rotation/daily rollover applied.
/// Storage is not touched; an inactive row is rolled over too (it shows what it would hold
/// when activated).
pub fn view(goal: &Goal, state: &GoalState, now: DateTime<Utc>) -> GoalState {
    rollover(goal, state, now)
}

/// Whether an update from `old` to `new` completes the goal (CONTRACT §7: the moment an
/// auto-claim is asked for): `new` is completed, and `old` was not completed with the same
/// completion (a completion in a new period counts again).
pub fn newly_completed(old: &GoalState, new: &GoalState) -> bool {
    new.status == Status::Completed
        && !(old.status == Status::Completed && old.completed_at == new.completed_at)
}

/// `true` while any prerequisite is neither completed nor claimed. `status_of` gives the
/// viewed status of a goal id (`None` when the player has no row for it).
pub fn is_locked(goal: &Goal, status_of: impl Fn(&str) -> Option<Status>) -> bool {
    locked_by(goal.prerequisites.iter().map(|p| status_of(p)))
}

/// The rule behind [`is_locked`], for callers that already hold the prerequisites'
/// statuses (the service's catalog keeps them by position, not by id): `true` while any of
/// them is neither completed nor claimed. `None` is a prerequisite the player has no row
/// for — or one the caller cannot resolve — and locks. No prerequisites: unlocked.
pub fn locked_by(prerequisite_statuses: impl IntoIterator<Item = Option<Status>>) -> bool {
    prerequisite_statuses
        .into_iter()
        .any(|s| !s.is_some_and(Status::is_done))
}

/// Brings `state` into the period containing `now`.
///
/// Rotating goals: a row whose period ended (`expires_at` ≤ now) is in a new period:
/// - claimed, `allowReselection`: fully reset (claim, completion, progress, baseline);
/// - claimed, no reselection: returned unchanged, forever;
/// - otherwise with `resetProgress`: progress, baseline, status and completed_at reset;
///   without it the row carries over as it is;
///
/// and `expires_at` becomes the end of the current period. A row without `expires_at` takes
/// the period of its `last_event_at` (or, never having taken an event, is simply stamped).
///
/// `daily`-mode goals behave as if they rotated daily with reset and reselection: a row whose
/// last event fell on an earlier UTC day is fully reset.
///
/// Repeatable goals (CONTRACT §8): a claimed row whose goal may be claimed again
/// (`times_claimed` below `maxTimes`, or no limit) reads as started afresh; after the last
/// claim it stays claimed.
fn rollover(goal: &Goal, state: &GoalState, now: DateTime<Utc>) -> GoalState {
    let mut s = state.clone();
    if let Some(rot) = goal.rotation {
        // Global periods, or the player's own windows from the assignment.
        let current = window(rot.schedule, s.assigned_at, now);
        let row_end = s.expires_at.or_else(|| {
            s.last_event_at
                .map(|t| window(rot.schedule, s.assigned_at, t).end)
        });
        let claimed = s.status == Status::Claimed;
        if claimed && !rot.on_expiry.allow_reselection {
            // Never touched, ever.
        } else {
            if row_end.is_some_and(|end| end <= now) && (claimed || rot.on_expiry.reset_progress) {
                reset(&mut s);
            }
            // Also re-stamps a row never stamped, or stamped under another schedule.
            s.expires_at = Some(current.end);
        }
    }
    if goal.mode == ProgressMode::Daily {
        let last_take = s.last_event_at.or(s.completed_at);
        if last_take.is_some_and(|t| utc_day_start(t) < utc_day_start(now)) {
            reset(&mut s);
        }
    }
    // A repeatable goal starts again after each claim, until its last one.
    if let Some(repeat) = goal.repeat
        && s.status == Status::Claimed
        && repeat.again_after(s.times_claimed)
    {
        reset(&mut s);
    }
    s
}

/// Back to a fresh period: no progress, baseline, completion or claim. Activation,
/// assignment, expiry and `last_event_at` stay.
fn reset(s: &mut GoalState) {
    s.progress = 0;
    s.parts = None;
    s.baseline_value = None;
    s.status = Status::NotStarted;
    s.completed_at = None;
    s.claimed_at = None;
}

/// Moves the status forward to match the progress. Never moves it back: within a period
/// `completed` stays completed (a later lower absolute value updates progress only) and
/// `in_progress` stays in progress.
fn settle(goal: &Goal, s: &mut GoalState, now: DateTime<Utc>) {
    match s.status {
        Status::Completed | Status::Claimed => {}
        Status::NotStarted | Status::InProgress => {
            if s.progress >= goal.requirement.target_value {
                s.status = Status::Completed;
                s.completed_at.get_or_insert(now);
            } else if s.progress > 0 {
                s.status = Status::InProgress;
            }
        }
    }
}

fn same_ignoring_last_event(a: &GoalState, b: &GoalState) -> bool {
    GoalState {
        last_event_at: b.last_event_at,
        ..a.clone()
    } == *b
}

fn add(progress: i32, n: u32) -> i32 {
    clamp_i32(i64::from(progress) + i64::from(n))
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
