//! The JSON exactly as studios write it. Both the M4 goal settings (`type`, `daily`) and the
//! M5 ones (`requirement.progressMode`, `rotation`) are accepted; [`super::loader`] resolves
//! them into one [`super::model::Goal`]. Unknown keys are ignored.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    #[serde(default)]
    pub challenges: Vec<RawChallenge>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawChallenge {
    #[serde(default)]
    pub challenge_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Labels the list can filter on (CONTRACT §8); they apply to every goal of it.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub goals: Vec<RawGoal>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawGoal {
    #[serde(default)]
    pub goal_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Labels the list can filter on (CONTRACT §8).
    #[serde(default)]
    pub tags: Vec<String>,
    /// `login` | `statistic`.
    #[serde(default)]
    pub event_source: String,
    #[serde(default)]
    pub default_assigned: bool,
    /// Absent when the goal has `requirementGroups` instead.
    #[serde(default)]
    pub requirement: Option<RawRequirement>,
    /// AND within a group, OR across groups (CONTRACT §8).
    #[serde(default)]
    pub requirement_groups: Option<Vec<RawGroup>>,
    /// The one-reward form: `rewards: [reward]`.
    #[serde(default)]
    pub reward: Option<RawReward>,
    /// Several rewards (1–10), each granted exactly once per claim (CONTRACT §7).
    #[serde(default)]
    pub rewards: Option<Vec<RawReward>>,
    /// Grant the rewards without a player's claim once the goal is completed (CONTRACT §7).
    #[serde(default)]
    pub auto_claim: bool,
    #[serde(default)]
    pub prerequisites: Vec<String>,
    /// M4 goal type: `absolute` | `increment` | `daily`.
    #[serde(default, rename = "type")]
    pub goal_type: Option<String>,
    /// M4: with `type: increment`, count at most once per UTC day.
    #[serde(default)]
    pub daily: bool,
    /// M5 rotation.
    #[serde(default)]
    pub rotation: Option<RawRotation>,
    /// Repeatable goal (CONTRACT §8): claimable again after each claim.
    #[serde(default)]
    pub repeat: Option<RawRepeat>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawRepeat {
    /// Claims in all; 0 = unlimited.
    #[serde(default)]
    pub max_times: i64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawGroup {
    #[serde(default)]
    pub requirements: Vec<RawRequirement>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawRequirement {
    #[serde(default)]
    pub stat_code: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub target_value: i64,
    /// M5: `absolute` | `relative` (also `increment` | `daily`).
    #[serde(default)]
    pub progress_mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawReward {
    #[serde(default, rename = "type")]
    pub reward_type: String,
    #[serde(default)]
    pub reward_id: String,
    #[serde(default)]
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawRotation {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, rename = "type")]
    pub rotation_type: String,
    #[serde(default)]
    pub schedule: String,
    /// `per_user` rotations: the window, `90s` | `30m` | `24h` | `7d`.
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub on_expiry: RawOnExpiry,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawOnExpiry {
    #[serde(default)]
    pub reset_progress: bool,
    #[serde(default)]
    pub allow_reselection: bool,
}
