//! What changes between two catalogs (CONTRACT §9, the dry-run's first half): per goal,
//! added, removed or changed, with the changed fields by their `challenges.json` names.
//! Pure: the impact on players (rows, status changes) is counted by the store with
//! [`crate::progress::rejudge`] on the goals whose requirement changed.

use super::model::{ChallengeConfig, Goal};

/// How a goal differs between the active catalog and a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One goal's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalChange {
    pub challenge_id: String,
    pub goal_id: String,
    pub change: ChangeKind,
    /// The changed fields, by their `challenges.json` names (empty unless `Changed`).
    pub fields: Vec<&'static str>,
}

impl GoalChange {
    /// Whether rows of the goal must be judged again: it is new (its id may have rows from
    /// an earlier version), or what completes it changed.
    pub fn rejudges(&self) -> bool {
        match self.change {
            ChangeKind::Added => true,
            ChangeKind::Removed => false,
            ChangeKind::Changed => self.fields.iter().any(|f| f.starts_with("requirement")),
        }
    }
}

/// Whether two versions of a goal agree on one field.
type Same = fn(&Goal, &Goal) -> bool;

/// The fields of a goal as `challenges.json` names them, each with its comparison.
const FIELDS: &[(&str, Same)] = &[
    ("name", |a, b| a.name == b.name),
    ("description", |a, b| a.description == b.description),
    ("tags", |a, b| a.tags == b.tags),
    ("eventSource", |a, b| a.event_source == b.event_source),
    ("defaultAssigned", |a, b| {
        a.default_assigned == b.default_assigned
    }),
    ("requirement.statCode", |a, b| {
        a.requirement.stat_code == b.requirement.stat_code
    }),
    ("requirement.operator", |a, b| {
        a.requirement.operator == b.requirement.operator
    }),
    ("requirement.targetValue", |a, b| {
        a.requirement.target_value == b.requirement.target_value
    }),
    ("requirement.progressMode", |a, b| a.mode == b.mode),
    ("requirementGroups", |a, b| a.groups == b.groups),
    ("daily", |a, b| a.daily == b.daily),
    ("rewards", |a, b| a.rewards == b.rewards),
    ("autoClaim", |a, b| a.auto_claim == b.auto_claim),
    ("prerequisites", |a, b| a.prerequisites == b.prerequisites),
    ("rotation", |a, b| a.rotation == b.rotation),
    ("repeat", |a, b| a.repeat == b.repeat),
];

/// The goals that differ from `old` to `new`: added and changed in `new`'s order, then
/// removed in `old`'s. A goal that moves to another challenge is an error (its players'
/// rows name the old challenge): give it a new id instead.
pub fn diff(old: &ChallengeConfig, new: &ChallengeConfig) -> Result<Vec<GoalChange>, Vec<String>> {
    let mut changes = Vec::new();
    let mut problems = Vec::new();
    for challenge in &new.challenges {
        for goal in &challenge.goals {
            let change = |change, fields| GoalChange {
                challenge_id: challenge.id.clone(),
                goal_id: goal.id.clone(),
                change,
                fields,
            };
            match old.goal(&goal.id) {
                None => changes.push(change(ChangeKind::Added, Vec::new())),
                Some(before) if before.challenge_id != goal.challenge_id => {
                    problems.push(format!(
                        "goal {:?} moves from challenge {:?} to {:?}: give it a new goalId \
                         (its players' progress belongs to the old challenge)",
                        goal.id, before.challenge_id, goal.challenge_id
                    ));
                }
                Some(before) => {
                    let fields: Vec<&'static str> = FIELDS
                        .iter()
                        .filter(|(_, same)| !same(before, goal))
                        .map(|(name, _)| *name)
                        .collect();
                    if !fields.is_empty() {
                        changes.push(change(ChangeKind::Changed, fields));
                    }
                }
            }
        }
    }
    for challenge in &old.challenges {
        for goal in &challenge.goals {
            if new.goal(&goal.id).is_none() {
                changes.push(GoalChange {
                    challenge_id: challenge.id.clone(),
                    goal_id: goal.id.clone(),
                    change: ChangeKind::Removed,
                    fields: Vec::new(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(changes)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_and_validate;

    fn goal(id: &str, target: i32, reward: &str) -> String {
        format!(
            r#"{{"goalId":"{id}","name":"{id}","description":"","eventSource":"statistic",
               "requirement":{{"statCode":"kills","operator":">=","targetValue":{target}}},
               "reward":{{"type":"ITEM","rewardId":"{reward}","quantity":1}}}}"#
        )
    }

    fn config(challenges: &[(&str, Vec<String>)]) -> ChallengeConfig {
        let body: Vec<String> = challenges
            .iter()
            .map(|(id, goals)| {
                format!(
                    r#"{{"challengeId":"{id}","name":"{id}","description":"","goals":[{}]}}"#,
                    goals.join(",")
                )
            })
            .collect();
        let json = format!(r#"{{"challenges":[{}]}}"#, body.join(","));
        parse_and_validate("test.json", &json).expect("valid config")
    }

    #[test]
    fn added_changed_and_removed_goals_with_their_fields() {
        let old = config(&[(
            "c",
            vec![
                goal("same", 5, "r"),
                goal("raise", 5, "r"),
                goal("gone", 5, "r"),
            ],
        )]);
        let new = config(&[(
            "c",
            vec![
                goal("same", 5, "r"),
                goal("raise", 10, "r2"),
                goal("fresh", 3, "r"),
            ],
        )]);
        let changes = diff(&old, &new).unwrap();
        let seen: Vec<(&str, &str, Vec<&str>)> = changes
            .iter()
            .map(|c| (c.goal_id.as_str(), c.change.as_str(), c.fields.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "raise",
                    "changed",
                    vec!["requirement.targetValue", "rewards"]
                ),
                ("fresh", "added", vec![]),
                ("gone", "removed", vec![]),
            ]
        );
        let rejudged: Vec<bool> = changes.iter().map(GoalChange::rejudges).collect();
        assert_eq!(rejudged, vec![true, true, false]);
    }

    #[test]
    fn a_reward_only_change_does_not_rejudge_rows() {
        let old = config(&[("c", vec![goal("g", 5, "r")])]);
        let new = config(&[("c", vec![goal("g", 5, "other")])]);
        let changes = diff(&old, &new).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].fields, vec!["rewards"]);
        assert!(!changes[0].rejudges());
    }

    #[test]
    fn the_same_catalog_has_no_changes() {
        let old = config(&[("c", vec![goal("g", 5, "r")])]);
        assert_eq!(diff(&old, &old.clone()).unwrap(), vec![]);
    }

    #[test]
    fn a_goal_moving_to_another_challenge_is_refused() {
        let old = config(&[
            ("a", vec![goal("g", 5, "r")]),
            ("b", vec![goal("h", 5, "r")]),
        ]);
        let new = config(&[
            ("a", vec![goal("h", 5, "r")]),
            ("b", vec![goal("g", 5, "r")]),
        ]);
        let problems = diff(&old, &new).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("goal \"h\" moves from challenge \"b\" to \"a\""));
    }
}
