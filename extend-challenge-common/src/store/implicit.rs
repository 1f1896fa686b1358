//! Implicit default rows: a player's default-assigned goals cost no row until something
//! changes them (issue 22, part 0: write amplification).
//!
//! A player used to get one `user_goal_progress` row per `defaultAssigned` goal at their
//! first `initialize` or first event — 150 rows per player in AccelByte's M5 catalog, most
//! of them never touched. Now the player gets one **marker row** instead: the row with
//! goal id `''` ([`MARKER_GOAL_ID`], an id no configured goal can have), whose
//! `assigned_at` is when the player was initialized and whose `req_state` lists the
//! default goals the initialization covered ([`Defaults::marker_text`]). Such a goal
//! without a row of its own is **implicit**: it reads exactly as the row the old
//! initialization would have inserted, `progress::new_assignment(goal, assigned_at)`. A
//! goal row appears when progress, activation or a claim first touches the goal.
//!
//! Why the marker lives in `user_goal_progress` itself: whatever deletes a player's rows
//! (AccelByte's e2e scripts clean up with `DELETE FROM user_goal_progress WHERE user_id =
//! …`, the erasure) deletes the marker with them, so "initialized" can never outlive the
//! rows, and no statement that routes by `user_id` needs a second table.
//!
//! Why the marker lists the covered goals: a default goal added to the config after a
//! player's initialization is assigned to them by their next `initialize` (CONTRACT §3),
//! with that call's `assigned_at`, and counted in its `newAssignments`, as before. The
//! list is compared with the current one as a whole first ([`Defaults::covers`]): while
//! the config's defaults have not changed, it is one string comparison.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::GoalRow;
use crate::config::{ChallengeConfig, Goal};
use crate::progress::{self, GoalState};

/// The goal id of a player's marker row.
pub const MARKER_GOAL_ID: &str = "";

/// The config's default-assigned goals, as a marker records them.
#[derive(Debug, Clone)]
pub struct Defaults {
    goals: Vec<Arc<Goal>>,
    /// The goal ids, sorted, joined by `\n` (ids hold no control characters).
    text: String,
}

impl Defaults {
    pub fn of(config: &ChallengeConfig) -> Self {
        let mut goals = config.default_goals().to_vec();
        goals.sort_by(|a, b| a.id.cmp(&b.id));
        let text = goals
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Defaults { goals, text }
    }

    /// The default goals, by id.
    pub fn goals(&self) -> &[Arc<Goal>] {
        &self.goals
    }

    /// What a new marker's `req_state` holds: the covered goal ids.
    pub fn marker_text(&self) -> &str {
        &self.text
    }

    /// Whether a marker whose `req_state` is `marker_text` covers `goal` (a configured
    /// goal, not a requirement-group part: pass the row's goal).
    pub fn covers(&self, marker_text: &str, goal: &Goal) -> bool {
        if marker_text == self.text {
            goal.default_assigned
        } else {
            covered_ids(marker_text).any(|id| id == goal.id)
        }
    }
}

/// Whether a marker whose `req_state` is `marker_text` covers `goal`: through `defaults`
/// (the config's, when known), else by reading the list.
pub fn covers(defaults: Option<&Defaults>, marker_text: &str, goal: &Goal) -> bool {
    match defaults {
        Some(d) => d.covers(marker_text, goal),
        None => covered_ids(marker_text).any(|id| id == goal.id),
    }
}

/// The goal ids a marker's `req_state` lists.
pub fn covered_ids(marker_text: &str) -> impl Iterator<Item = &str> {
    marker_text.split('\n').filter(|id| !id.is_empty())
}

/// A player's marker, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// When the player was initialized: the implicit rows' `assigned_at`.
    pub at: DateTime<Utc>,
    /// The covered goal ids ([`Defaults::marker_text`] of the config at the time).
    pub text: String,
}

impl Marker {
    /// The marker, if `row` is one.
    pub fn from_row(row: &GoalRow) -> Option<Marker> {
        Self::from_parts(&row.goal_id, row.assigned_at, row.req_state.as_deref())
    }

    /// The marker, if a row with these columns is one.
    pub fn from_parts(
        goal_id: &str,
        assigned_at: Option<DateTime<Utc>>,
        req_state: Option<&str>,
    ) -> Option<Marker> {
        (goal_id == MARKER_GOAL_ID).then(|| Marker {
            at: assigned_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            text: req_state.unwrap_or_default().to_string(),
        })
    }

    /// The state of an implicit row of `goal`: what initializing the player at [`Self::at`]
    /// would have stored.
    pub fn implicit_state(&self, goal: &Goal) -> GoalState {
        progress::new_assignment(goal, self.at)
    }
}

/// Splits the marker out of `rows` and adds the implicit rows of the covered goals that
/// `wanted` accepts and that have no row of their own. `goal` looks a goal up by id (goals
/// no longer configured are skipped). Returns the marker, if there was one, and the ids of
/// the goals added.
pub fn complete_rows<'g>(
    rows: &mut Vec<GoalRow>,
    defaults: &Defaults,
    goal: impl Fn(&str) -> Option<&'g Arc<Goal>>,
    wanted: impl Fn(&Goal) -> bool,
) -> (Option<Marker>, Vec<String>) {
    let Some(pos) = rows.iter().position(|r| r.goal_id == MARKER_GOAL_ID) else {
        return (None, Vec::new());
    };
    let marker = Marker::from_row(&rows.swap_remove(pos)).expect("the marker row");
    let mut added = Vec::new();
    let mut add = |g: &Goal, rows: &mut Vec<GoalRow>| {
        if wanted(g) && !rows.iter().any(|r| r.goal_id == g.id) {
            rows.push(GoalRow::from_state(&g.id, &marker.implicit_state(g)));
            added.push(g.id.clone());
        }
    };
    if marker.text == defaults.marker_text() {
        for g in defaults.goals() {
            add(g, rows);
        }
    } else {
        for id in covered_ids(&marker.text) {
            if let Some(g) = goal(id) {
                add(g, rows);
            }
        }
    }
    (Some(marker), added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_and_validate;

    fn config(json: &str) -> ChallengeConfig {
        parse_and_validate("test.json", json).expect("valid config")
    }

    const TWO_DEFAULTS: &str = r#"{"challenges":[{"challengeId":"c","name":"C","description":"",
        "goals":[
          {"goalId":"b","name":"B","description":"","eventSource":"statistic","defaultAssigned":true,
           "requirement":{"statCode":"s","operator":">=","targetValue":5},
           "reward":{"type":"ITEM","rewardId":"r","quantity":1}},
          {"goalId":"a","name":"A","description":"","eventSource":"statistic","defaultAssigned":true,
           "requirement":{"statCode":"s","operator":">=","targetValue":5},
           "reward":{"type":"ITEM","rewardId":"r","quantity":1}},
          {"goalId":"x","name":"X","description":"","eventSource":"statistic",
           "requirement":{"statCode":"s","operator":">=","targetValue":5},
           "reward":{"type":"ITEM","rewardId":"r","quantity":1}}]}]}"#;

    #[test]
    fn a_marker_covers_the_defaults_it_lists() {
        let cfg = config(TWO_DEFAULTS);
        let d = Defaults::of(&cfg);
        assert_eq!(d.marker_text(), "a\nb");
        let goal = |id| cfg.goal(id).unwrap().as_ref();
        assert!(d.covers("a\nb", goal("a")));
        assert!(!d.covers("a\nb", goal("x")));
        // A marker from an older config: only what it lists.
        assert!(d.covers("b", goal("b")));
        assert!(!d.covers("b", goal("a")));
        assert!(!d.covers("", goal("a")));
    }

    #[test]
    fn completing_rows_adds_only_covered_goals_without_a_row() {
        let cfg = config(TWO_DEFAULTS);
        let d = Defaults::of(&cfg);
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let blank = progress::new_assignment(cfg.goal("x").unwrap(), at);
        let mut marker = GoalRow::from_state(MARKER_GOAL_ID, &blank);
        marker.req_state = Some("b\nx".into());
        let mut own = GoalRow::from_state("x", &blank);
        own.progress = 3;
        let mut rows = vec![own.clone(), marker];
        let (m, added) = complete_rows(&mut rows, &d, |id| cfg.goal(id), |_| true);
        assert_eq!(m.unwrap().at, at);
        assert_eq!(added, vec!["b".to_string()]);
        assert_eq!(rows.len(), 2);
        assert!(rows.contains(&own), "a goal's own row wins");
        let b = rows.iter().find(|r| r.goal_id == "b").unwrap();
        assert_eq!(b.assigned_at, Some(at));
        assert!(b.is_active);
        assert_eq!(b.status, "not_started");

        let mut none = vec![own.clone()];
        assert_eq!(
            complete_rows(&mut none, &d, |id| cfg.goal(id), |_| true).0,
            None
        );
        assert_eq!(none, vec![own]);
    }
}
