//! Implementations of the progress rules. See the module docs of [`super`].

use chrono::{DateTime, Utc};

use super::{Delta, GoalState};
use crate::config::Goal;

/// The delta one login event contributes to `goal`.
pub fn delta_for_login(goal: &Goal) -> Delta {
    let _ = goal;
    Delta::Count(1)
}

/// The delta one stat event (`value`, `inc`, already truncated and clamped) contributes to
/// `goal`, ordered by `at` = (event timestamp ms, arrival sequence). `None` when the event
/// leaves the goal unchanged (a negative value on an absolute/relative goal).
pub fn delta_for_stat(goal: &Goal, value: i32, inc: i32, at: (i64, u64)) -> Option<Delta> {
    let _ = (goal, value, inc, at);
    todo!("progress rules")
}

/// Folds `newer` (arrived later) into `acc`. Both must come from the same goal.
pub fn merge(acc: &mut Delta, newer: Delta) {
    let _ = (acc, newer);
    todo!("progress rules")
}

/// The state of a freshly assigned row at `now` (what `/initialize` and auto-assignment
/// insert).
pub fn new_assignment(goal: &Goal, now: DateTime<Utc>) -> GoalState {
    let _ = (goal, now);
    todo!("progress rules")
}

/// Applies a collapsed delta to a row at `now` (rotation rollover first). `None` when the
/// row must not change (inactive; claimed without reselection; nothing to do).
pub fn apply(
    goal: &Goal,
    state: &GoalState,
    delta: &Delta,
    now: DateTime<Utc>,
) -> Option<GoalState> {
    let _ = (goal, state, delta, now);
    todo!("progress rules")
}

/// What a player sees at `now`: the row with any pending rotation/daily rollover applied.
pub fn view(goal: &Goal, state: &GoalState, now: DateTime<Utc>) -> GoalState {
    let _ = (goal, now);
    state.clone()
}

/// `true` while any prerequisite is neither completed nor claimed. `status_of` gives the
/// viewed status of a goal id (`None` when the player has no row for it).
pub fn is_locked(goal: &Goal, status_of: impl Fn(&str) -> Option<super::Status>) -> bool {
    goal.prerequisites
        .iter()
        .any(|p| !status_of(p).is_some_and(|s| s.is_done()))
}
