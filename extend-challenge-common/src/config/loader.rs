//! Loads `challenges.json`, resolves M4/M5 goal settings and validates everything
//! (CONTRACT §5). Every error names the file, the challenge, the goal and the field.

use std::path::Path;
use std::sync::Arc;

use super::model::*;
use super::raw::*;

/// A configuration problem. `Display` gives one line per problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}", .problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

/// Reads, parses and validates the file at `path`.
pub fn load_from_path(path: impl AsRef<Path>) -> Result<ChallengeConfig, ConfigError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: file.clone(),
        source,
    })?;
    parse_and_validate(&file, &text)
}

/// Parses and validates JSON text; `file` is only used in error messages.
pub fn parse_and_validate(file: &str, json: &str) -> Result<ChallengeConfig, ConfigError> {
    let raw: RawConfig = serde_json::from_str(json).map_err(|source| ConfigError::Json {
        file: file.to_string(),
        source,
    })?;
    resolve(file, raw)
}

fn resolve(file: &str, raw: RawConfig) -> Result<ChallengeConfig, ConfigError> {
    let mut problems = Vec::new();
    if raw.challenges.is_empty() {
        problems.push(format!("{file}: no challenges defined (field: challenges)"));
    }
    let mut challenges = Vec::with_capacity(raw.challenges.len());
    for rc in raw.challenges {
        let mut goals = Vec::with_capacity(rc.goals.len());
        for rg in &rc.goals {
            let mut err = |field: &str, msg: String| {
                problems.push(format!(
                    "{file}: challenge '{}' goal '{}': field {field}: {msg}",
                    rc.challenge_id, rg.goal_id
                ))
            };
            if let Some(goal) = resolve_goal(&rc.challenge_id, rg, &mut err) {
                goals.push(Arc::new(goal));
            }
        }
        challenges.push(Challenge {
            id: rc.challenge_id,
            name: rc.name,
            description: rc.description,
            goals,
        });
    }
    super::validate::check(file, &challenges, &mut problems);
    if problems.is_empty() {
        Ok(ChallengeConfig::new(challenges))
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

fn resolve_goal(
    challenge_id: &str,
    rg: &RawGoal,
    err: &mut impl FnMut(&str, String),
) -> Option<Goal> {
    let mut ok = true;
    let event_source = match rg.event_source.as_str() {
        "login" => EventSource::Login,
        "statistic" => EventSource::Statistic,
        other => {
            err(
                "eventSource",
                format!("unknown event source '{other}' (expected login or statistic)"),
            );
            ok = false;
            EventSource::Statistic
        }
    };
    let legacy = match rg.goal_type.as_deref() {
        None | Some("") => None,
        Some("absolute") => Some(ProgressMode::Absolute),
        Some("increment") => Some(ProgressMode::Increment),
        Some("daily") => Some(ProgressMode::Daily),
        Some(other) => {
            err(
                "type",
                format!("unknown goal type '{other}' (expected absolute, increment or daily)"),
            );
            ok = false;
            None
        }
    };
    let m5 = match rg.requirement.progress_mode.as_deref() {
        None | Some("") => None,
        Some("absolute") => Some(ProgressMode::Absolute),
        Some("relative") => Some(ProgressMode::Relative),
        Some("increment") => Some(ProgressMode::Increment),
        Some("daily") => Some(ProgressMode::Daily),
        Some(other) => {
            err(
                "requirement.progressMode",
                format!(
                    "unknown progress mode '{other}' (expected absolute, relative, increment or daily)"
                ),
            );
            ok = false;
            None
        }
    };
    // The reference writes `"progressMode": "absolute"` next to every legacy `type`, so an
    // explicit absolute mode defers to the legacy type; any other disagreement is an error.
    let mode = match (legacy, m5) {
        (Some(l), Some(m)) if l != m && m != ProgressMode::Absolute => {
            err(
                "requirement.progressMode",
                format!("'{}' conflicts with type '{}'", m.as_str(), l.as_str()),
            );
            ok = false;
            l
        }
        (Some(l), _) => l,
        (None, Some(m)) => m,
        (None, None) => ProgressMode::Absolute,
    };
    if rg.daily && mode != ProgressMode::Increment {
        err(
            "daily",
            format!(
                "daily is only allowed on increment goals, not '{}'",
                mode.as_str()
            ),
        );
        ok = false;
    }
    let reward_type = match rg.reward.reward_type.as_str() {
        "ITEM" => RewardType::Item,
        "WALLET" => RewardType::Wallet,
        other => {
            err(
                "reward.type",
                format!("unknown reward type '{other}' (expected ITEM or WALLET)"),
            );
            ok = false;
            RewardType::Item
        }
    };
    let rotation = match &rg.rotation {
        Some(r) if r.enabled => {
            if r.rotation_type != "global" {
                err(
                    "rotation.type",
                    format!(
                        "unsupported rotation type '{}' (only global)",
                        r.rotation_type
                    ),
                );
                ok = false;
            }
            let schedule = match r.schedule.as_str() {
                "daily" => Schedule::Daily,
                "weekly" => Schedule::Weekly,
                "monthly" => Schedule::Monthly,
                other => {
                    err(
                        "rotation.schedule",
                        format!("unknown schedule '{other}' (expected daily, weekly or monthly)"),
                    );
                    ok = false;
                    Schedule::Daily
                }
            };
            Some(Rotation {
                schedule,
                on_expiry: OnExpiry {
                    reset_progress: r.on_expiry.reset_progress,
                    allow_reselection: r.on_expiry.allow_reselection,
                },
            })
        }
        _ => None,
    };
    let target_value = to_positive_i32(rg.requirement.target_value, "requirement.targetValue", err);
    let quantity = to_positive_i32(rg.reward.quantity, "reward.quantity", err);
    if !ok {
        return None;
    }
    Some(Goal {
        id: rg.goal_id.clone(),
        challenge_id: challenge_id.to_string(),
        name: rg.name.clone(),
        description: rg.description.clone(),
        event_source,
        default_assigned: rg.default_assigned,
        requirement: Requirement {
            stat_code: rg.requirement.stat_code.clone(),
            operator: rg.requirement.operator.clone(),
            target_value: target_value?,
        },
        mode,
        daily: rg.daily,
        reward: Reward {
            reward_type,
            reward_id: rg.reward.reward_id.clone(),
            quantity: quantity?,
        },
        prerequisites: rg.prerequisites.clone(),
        rotation,
    })
}

fn to_positive_i32(v: i64, field: &str, err: &mut impl FnMut(&str, String)) -> Option<i32> {
    match i32::try_from(v) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            err(field, format!("must be a positive 32-bit integer, got {v}"));
            None
        }
    }
}
