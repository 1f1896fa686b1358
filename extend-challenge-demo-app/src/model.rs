//! What the CLI prints: the demo's own models, re-serialised the way Go's `encoding/json`
//! does (declaration order, zero values for missing fields, a missing or null list as
//! `null`). Decoding never fails on a missing or null field; see [`decode`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Challenge {
    #[serde(rename = "challengeId")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub goals: Option<Vec<Goal>>,
}

impl Challenge {
    pub fn goals(&self) -> &[Goal] {
        self.goals.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Goal {
    #[serde(rename = "goalId")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub requirement: Requirement,
    pub reward: Reward,
    pub prerequisites: Option<Vec<String>>,
    pub progress: i64,
    pub status: String,
    pub locked: bool,
    #[serde(rename = "completedAt")]
    pub completed_at: String,
    #[serde(rename = "claimedAt")]
    pub claimed_at: String,
    #[serde(rename = "isActive")]
    pub is_active: bool,
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
    #[serde(rename = "expiresInSeconds")]
    pub expires_in_seconds: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requirement {
    #[serde(rename = "statCode")]
    pub stat_code: String,
    pub operator: String,
    #[serde(rename = "targetValue")]
    pub target_value: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reward {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "rewardId")]
    pub reward_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChallengesResponse {
    pub challenges: Option<Vec<Challenge>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClaimResult {
    #[serde(rename = "goalId")]
    pub goal_id: String,
    pub status: String,
    pub reward: Reward,
    #[serde(rename = "claimedAt")]
    pub claimed_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InitializeResponse {
    #[serde(rename = "assignedGoals")]
    pub assigned_goals: Option<Vec<AssignedGoal>>,
    #[serde(rename = "newAssignments")]
    pub new_assignments: i64,
    #[serde(rename = "totalActive")]
    pub total_active: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AssignedGoal {
    #[serde(rename = "challengeId")]
    pub challenge_id: String,
    #[serde(rename = "goalId")]
    pub goal_id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "isActive")]
    pub is_active: bool,
    #[serde(rename = "assignedAt")]
    pub assigned_at: String,
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
    pub progress: i64,
    pub target: i64,
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SetGoalActiveResponse {
    #[serde(rename = "challengeId")]
    pub challenge_id: String,
    #[serde(rename = "goalId")]
    pub goal_id: String,
    #[serde(rename = "isActive")]
    pub is_active: bool,
    #[serde(rename = "assignedAt")]
    pub assigned_at: String,
    pub message: String,
}

/// The answer of both batch-select and random-select.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectResponse {
    #[serde(rename = "selectedGoals")]
    pub selected_goals: Option<Vec<Goal>>,
    #[serde(rename = "challengeId")]
    pub challenge_id: String,
    #[serde(rename = "totalActiveGoals")]
    pub total_active_goals: i64,
    #[serde(rename = "replacedGoals")]
    pub replaced_goals: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationStatusResponse {
    #[serde(rename = "challengeId")]
    pub challenge_id: String,
    pub rotation: Option<RotationInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationInfo {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub schedule: String,
    #[serde(rename = "currentPeriod")]
    pub current_period: Option<RotationPeriod>,
    #[serde(rename = "nextPeriod")]
    pub next_period: Option<RotationPeriod>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationPeriod {
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "endTime")]
    pub end_time: String,
    #[serde(rename = "expiresInSeconds")]
    pub expires_in_seconds: i64,
}

/// The batch-select request body (the demo's snake_case keys; the service reads both).
#[derive(Debug, Serialize)]
pub struct BatchSelectRequest {
    pub goal_ids: Vec<String>,
    pub replace_existing: bool,
}

#[derive(Debug, Serialize)]
pub struct RandomSelectRequest {
    pub count: i64,
    pub replace_existing: bool,
    pub exclude_active: bool,
}

/// Decodes a response body like Go's `json.Decoder` into a struct: unknown keys are
/// ignored and a `null` leaves the field at its zero value.
pub fn decode<T: DeserializeOwned>(body: &str) -> Result<T, String> {
    let mut value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    strip_nulls(&mut value);
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `json.MarshalIndent(v, "", "  ")`: two-space indent, and `<`, `>`, `&`, U+2028 and
/// U+2029 escaped as Go does (they can only occur inside strings, so a textual replace
/// is exact).
pub fn to_go_json<T: Serialize>(v: &T) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("\"{e}\""));
    go_escape(&s)
}

pub fn go_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_null_fields_become_go_zero_values() {
        let c: Challenge =
            decode(r#"{"challengeId":"c","goals":[{"goalId":"g","name":null,"extra":1}]}"#)
                .unwrap();
        let json = to_go_json(&c);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["description"], "");
        assert_eq!(v["goals"][0]["name"], "");
        assert_eq!(v["goals"][0]["prerequisites"], Value::Null);
        assert_eq!(v["goals"][0]["requirement"]["targetValue"], 0);
        assert_eq!(v["goals"][0]["expiresInSeconds"], 0);
        assert!(v["goals"][0].get("extra").is_none());
        // Declaration order, as Go prints struct fields.
        let keys: Vec<&str> = v["goals"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let order = [
            "goalId",
            "name",
            "description",
            "requirement",
            "reward",
            "prerequisites",
            "progress",
            "status",
            "locked",
            "completedAt",
            "claimedAt",
            "isActive",
            "expiresAt",
            "expiresInSeconds",
        ];
        let goal_part = &json[json.find("\"goalId\"").unwrap()..];
        let pos: Vec<usize> = order
            .iter()
            .map(|k| goal_part.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert_eq!(keys.len(), order.len());
        let empty: ChallengesResponse = decode("{}").unwrap();
        assert!(empty.challenges.is_none());
    }

    #[test]
    fn go_escapes_html_characters() {
        assert_eq!(
            to_go_json(&serde_json::json!({"a": "<b>&"})),
            "{\n  \"a\": \"\\u003cb\\u003e\\u0026\"\n}"
        );
    }
}
