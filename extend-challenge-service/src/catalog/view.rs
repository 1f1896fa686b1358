//! One player's picture of the catalog: the stored rows with `progress::view` applied
//! (so a stale row never shows last period's state), keyed by flat goal index, and what
//! each goal shows ([`GoalDisplay`]) — the same for JSON and protobuf.

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{Goal, Schedule};
use extend_challenge_common::progress::{self, GoalState, PartState, Status};
use extend_challenge_common::rotation;
use extend_challenge_common::store::implicit::Marker;
use extend_challenge_common::store::player::PlayerGoalRow;

use super::Catalog;

/// What the player sees of one goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalDisplay {
    pub progress: i32,
    pub status: Status,
    pub locked: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_seconds: i32,
    /// Claims so far (repeatable goals: the repetitions paid).
    pub times_claimed: i32,
    /// Requirement-group goals: each requirement's state (`None`: no event yet).
    pub parts: Option<Vec<PartState>>,
}

/// One player's rows, viewed at `now`, keyed by flat goal index. Rows of goals no longer in
/// the config are ignored.
pub struct PlayerView<'a> {
    catalog: &'a Catalog,
    /// Viewed state per flat goal index; `None` where the player has no row.
    states: Vec<Option<GoalState>>,
    now: DateTime<Utc>,
    /// End of the current period per schedule (daily, weekly, monthly) and seconds left.
    period_ends: [(DateTime<Utc>, i32); 3],
}

/// The slot of a global schedule in [`PlayerView::period_ends`] (per-player windows are
/// the row's own).
fn schedule_slot(s: Schedule) -> Option<usize> {
    match s {
        Schedule::Daily => Some(0),
        Schedule::Weekly => Some(1),
        Schedule::Monthly => Some(2),
        Schedule::PerUser { .. } => None,
    }
}

impl<'a> PlayerView<'a> {
    /// The view of `rows`; a marker among them (`store::implicit`) adds the implicit rows of
    /// the goals it covers.
    pub fn new(catalog: &'a Catalog, rows: &[PlayerGoalRow], now: DateTime<Utc>) -> Self {
        let mut view = PlayerView::empty(catalog, now);
        for row in rows {
            if let Some(gi) = catalog.goal_index(&row.goal_id) {
                view.insert(gi, &row.state());
            } else if let Some(marker) = Marker::from_row(row) {
                view.add_marker(&marker);
            }
        }
        view
    }

    /// Adds the implicit rows of the goals `marker` covers, where the view has no row (a
    /// row inserted later replaces its goal's implicit one).
    pub fn add_marker(&mut self, marker: &Marker) {
        for gi in self.catalog.covered(marker) {
            if self.states[gi].is_none() {
                let goal = &self.catalog.goals[gi].goal;
                self.insert(gi, &marker.implicit_state(goal));
            }
        }
    }

    /// A view with no rows yet; [`Self::insert`] adds them.
    pub fn empty(catalog: &'a Catalog, now: DateTime<Utc>) -> Self {
        let end = |s| {
            let p = rotation::period_containing(s, now);
            (p.end, p.seconds_left(now))
        };
        PlayerView {
            catalog,
            states: vec![None; catalog.goals.len()],
            now,
            period_ends: [
                end(Schedule::Daily),
                end(Schedule::Weekly),
                end(Schedule::Monthly),
            ],
        }
    }

    /// Adds the stored row of goal `gi` (viewed at `now`); a later row of the same goal
    /// replaces an earlier one.
    pub fn insert(&mut self, gi: usize, stored: &GoalState) {
        let goal = &self.catalog.goals[gi].goal;
        self.states[gi] = Some(progress::view(goal, stored, self.now));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The viewed state of a goal the player has a row for.
    pub fn state(&self, gi: usize) -> Option<&GoalState> {
        self.states[gi].as_ref()
    }

    pub fn status(&self, gi: usize) -> Status {
        self.states[gi]
            .as_ref()
            .map_or(Status::NotStarted, |s| s.status)
    }

    pub fn is_active(&self, gi: usize) -> bool {
        self.states[gi].as_ref().is_some_and(|s| s.is_active)
    }

    /// `true` while any prerequisite is neither completed nor claimed
    /// ([`progress::locked_by`] over their viewed statuses). A prerequisite id missing from
    /// the config (cannot pass validation) locks too.
    pub fn is_locked(&self, gi: usize) -> bool {
        progress::locked_by(
            self.catalog.goals[gi]
                .prerequisites
                .iter()
                .map(|p| p.and_then(|p| self.states[p].as_ref().map(|s| s.status))),
        )
    }

    /// Expiry shown for goal `gi`: the end of the current rotation period, if it rotates —
    /// for a per-player window, the end of the player's own (none before the goal is
    /// assigned to them).
    pub fn expiry(&self, gi: usize) -> (Option<DateTime<Utc>>, i32) {
        let goal: &Goal = &self.catalog.goals[gi].goal;
        match goal.rotation {
            Some(r) => match schedule_slot(r.schedule) {
                Some(slot) => {
                    let (end, left) = self.period_ends[slot];
                    (Some(end), left)
                }
                None => match self.states[gi].as_ref().and_then(|s| s.expires_at) {
                    Some(end) => {
                        let left = (end - self.now).num_seconds().max(0);
                        (Some(end), i32::try_from(left).unwrap_or(i32::MAX))
                    }
                    None => (None, 0),
                },
            },
            None => (None, 0),
        }
    }

    pub fn display(&self, gi: usize) -> GoalDisplay {
        let (expires_at, expires_in_seconds) = self.expiry(gi);
        let locked = self.is_locked(gi);
        match &self.states[gi] {
            Some(s) => GoalDisplay {
                progress: s.progress,
                status: s.status,
                locked,
                completed_at: s.completed_at,
                claimed_at: s.claimed_at,
                is_active: s.is_active,
                assigned_at: s.assigned_at,
                expires_at,
                expires_in_seconds,
                times_claimed: s.times_claimed,
                parts: s.parts.clone(),
            },
            None => GoalDisplay {
                progress: 0,
                status: Status::NotStarted,
                locked,
                completed_at: None,
                claimed_at: None,
                is_active: false,
                assigned_at: None,
                expires_at,
                expires_in_seconds,
                times_claimed: 0,
                parts: None,
            },
        }
    }
}
