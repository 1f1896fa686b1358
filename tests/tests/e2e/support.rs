//! Helpers shared by the scenarios.

use extend_challenge_e2e::{Events, Stack, StackOptions};
use serde_json::Value;

pub const WINTER: &str = "winter-challenge-2025";
pub const DAILY: &str = "daily-quests";
pub const VETERAN: &str = "veteran";
pub const POOL: &str = "daily-challenges";
pub const ROTATING: &str = "rotating-daily";

/// The goals with `defaultAssigned: true` in `tests/fixtures/challenges.json`.
pub const DEFAULT_GOALS: [(&str, &str); 3] = [
    (ROTATING, "daily-logins-3"),
    (VETERAN, "login-1000-times"),
    (WINTER, "complete-tutorial"),
];

/// Starts the pair with the default options and connects an event client.
pub async fn start(name: &str) -> (Stack, Events) {
    start_with(name, StackOptions::default()).await
}

pub async fn start_with(name: &str, options: StackOptions) -> (Stack, Events) {
    let stack = Stack::start(name, options).await;
    let events = stack.events().await;
    (stack, events)
}

/// A user id no other scenario uses.
pub fn user(label: &str) -> String {
    format!(
        "{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `(challengeId, goalId)` pairs of an `assignedGoals` / `selectedGoals` style array,
/// sorted.
pub fn ids(items: &Value, challenge_key: Option<&str>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .as_array()
        .unwrap_or_else(|| panic!("array expected, got {items}"))
        .iter()
        .map(|g| {
            (
                challenge_key
                    .map(|k| g[k].as_str().unwrap_or_default().to_string())
                    .unwrap_or_default(),
                g["goalId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Goal ids of a `selectedGoals` array, sorted.
pub fn goal_ids(items: &Value) -> Vec<String> {
    ids(items, None).into_iter().map(|(_, g)| g).collect()
}

/// Owned, sorted strings.
pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Asserts an RFC 3339 UTC timestamp with seconds precision and a `Z` (CONTRACT §3.1).
#[track_caller]
pub fn assert_timestamp(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp string, got {v}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z') && s.len() == 20,
        "RFC 3339 UTC seconds timestamp expected, got {s:?}"
    );
}
