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
    super::validate::check(file, &raw, &mut problems);
    let mut challenges = Vec::with_capacity(raw.challenges.len());
    for (ci, rc) in raw.challenges.into_iter().enumerate() {
        let mut goals = Vec::with_capacity(rc.goals.len());
        for (gi, rg) in rc.goals.iter().enumerate() {
            let mut err = |field: &str, msg: String| {
                problems.push(super::validate::goal_problem(
                    file,
                    ci,
                    &rc.challenge_id,
                    gi,
                    &rg.goal_id,
                    field,
                    &msg,
                ))
            };
            if let Some(goal) = resolve_goal(&rc.challenge_id, rg, &mut err) {
                goals.push(goal);
            }
        }
        challenges.push((rc.challenge_id, rc.name, rc.description, goals, rc.tags));
    }
    let mut all: Vec<&mut Goal> = challenges.iter_mut().flat_map(|c| c.3.iter_mut()).collect();
    link_auto_claims(&mut all);
    let challenges: Vec<Challenge> = challenges
        .into_iter()
        .map(|(id, name, description, goals, tags)| Challenge {
            id,
            name,
            description,
            tags,
            goals: goals.into_iter().map(Arc::new).collect(),
        })
        .collect();
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
    // The goal's `requirement`: the one given, or the first of its requirement groups.
    let req = match (&rg.requirement, &rg.requirement_groups) {
        (Some(_), Some(_)) => {
            err(
                "requirementGroups",
                "give either requirement or requirementGroups, not both".into(),
            );
            return None;
        }
        (_, Some(groups)) => groups
            .first()
            .and_then(|g| g.requirements.first())
            .cloned()
            .unwrap_or_default(),
        (r, None) => r.clone().unwrap_or_default(),
    };
    let groups = match &rg.requirement_groups {
        Some(raw) => {
            if rg.goal_type.is_some() || rg.daily {
                err(
                    "type",
                    "type and daily do not apply to requirementGroups (give each requirement a progressMode)"
                        .into(),
                );
                ok = false;
            }
            Some(Arc::new(resolve_groups(rg, raw, err)?))
        }
        None => None,
    };
    let m5 = match req.progress_mode.as_deref() {
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
    // `absolute` is the default of both settings, and the reference's own configs pair it
    // with the other setting (`"type": "absolute"` with `"progressMode": "relative"`,
    // `"type": "daily"` with `"progressMode": "absolute"`), so an explicit absolute defers
    // to the other setting; two different non-absolute modes are an error.
    let mode = match (legacy, m5) {
        (Some(ProgressMode::Absolute), Some(m)) => m,
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
    let rewards = resolve_rewards(rg, err);
    let rotation = match &rg.rotation {
        Some(r) if r.enabled => {
            let schedule = match r.rotation_type.as_str() {
                "global" => match r.schedule.as_str() {
                    "daily" => Schedule::Daily,
                    "weekly" => Schedule::Weekly,
                    "monthly" => Schedule::Monthly,
                    other => {
                        err(
                            "rotation.schedule",
                            format!(
                                "unknown schedule '{other}' (expected daily, weekly or monthly)"
                            ),
                        );
                        ok = false;
                        Schedule::Daily
                    }
                },
                "per_user" => match parse_duration(&r.duration) {
                    Some(seconds) => Schedule::PerUser { seconds },
                    None => {
                        err(
                            "rotation.duration",
                            format!(
                                "bad duration '{}' (expected a positive whole number and a unit: 90s, 30m, 24h, 7d; at most 366d)",
                                r.duration
                            ),
                        );
                        ok = false;
                        Schedule::Daily
                    }
                },
                other => {
                    err(
                        "rotation.type",
                        format!(
                            "unsupported rotation type '{other}' (expected global or per_user)"
                        ),
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
    if mode == ProgressMode::Daily
        && rotation.is_some_and(|r| matches!(r.schedule, Schedule::PerUser { .. }))
    {
        err(
            "rotation.type",
            "a daily goal follows UTC days; per_user windows are not allowed on it".into(),
        );
        ok = false;
    }
    let target_value = match &groups {
        // Checked with the groups (`>` and the others allow 0).
        Some(g) => Some(g.criteria[0].target_value),
        None => to_positive_i32(req.target_value, "requirement.targetValue", err),
    };
    let rewards = rewards?;
    let repeat = match &rg.repeat {
        None => None,
        Some(r) => {
            if rotation.is_some() {
                err(
                    "repeat",
                    "a repeatable goal cannot also rotate (remove repeat or rotation)".into(),
                );
                ok = false;
            }
            if mode == ProgressMode::Daily {
                err(
                    "repeat",
                    "a daily goal is claimable every day already; repeat is not allowed on it"
                        .into(),
                );
                ok = false;
            }
            match u32::try_from(r.max_times) {
                Ok(max_times) => Some(Repeat { max_times }),
                Err(_) => {
                    err(
                        "repeat.maxTimes",
                        format!(
                            "must be 0 (unlimited) or a positive 32-bit integer, got {}",
                            r.max_times
                        ),
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    if !ok {
        return None;
    }
    Some(Goal {
        id: rg.goal_id.clone(),
        challenge_id: challenge_id.to_string(),
        name: rg.name.clone(),
        description: rg.description.clone(),
        tags: rg.tags.clone(),
        event_source,
        default_assigned: rg.default_assigned,
        requirement: Requirement {
            stat_code: req.stat_code.clone(),
            operator: req.operator.clone(),
            target_value: target_value?,
        },
        mode,
        daily: rg.daily,
        reward: rewards[0].clone(),
        rewards,
        auto_claim: rg.auto_claim,
        auto_claim_wakes: Vec::new(),
        prerequisites: rg.prerequisites.clone(),
        rotation,
        repeat,
        groups,
        part: None,
    })
}

/// Most requirements one goal may have, over all its groups.
pub const MAX_REQUIREMENTS: usize = 10;

/// `requirementGroups` (CONTRACT §8): 1 or more groups of 1 or more requirements, at most
/// [`MAX_REQUIREMENTS`] in all; each with a known operator, a stat code on statistic goals,
/// a mode (absolute, relative or increment; `<`, `<=` and `=` compare absolute values) and
/// a target (positive for `>=`, at least 0 otherwise).
fn resolve_groups(
    rg: &RawGoal,
    raw: &[RawGroup],
    err: &mut impl FnMut(&str, String),
) -> Option<Groups> {
    let total: usize = raw.iter().map(|g| g.requirements.len()).sum();
    if raw.is_empty() {
        err("requirementGroups", "must hold at least one group".into());
        return None;
    }
    if total > MAX_REQUIREMENTS {
        err(
            "requirementGroups",
            format!("at most {MAX_REQUIREMENTS} requirements in all, got {total}"),
        );
        return None;
    }
    let mut criteria = Vec::with_capacity(total);
    let mut groups = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (gi, group) in raw.iter().enumerate() {
        if group.requirements.is_empty() {
            err(
                &format!("requirementGroups[{gi}].requirements"),
                "a group needs at least one requirement".into(),
            );
            ok = false;
            continue;
        }
        let mut members = Vec::with_capacity(group.requirements.len());
        for (ri, r) in group.requirements.iter().enumerate() {
            let at = format!("requirementGroups[{gi}].requirements[{ri}]");
            let operator = Operator::parse(&r.operator);
            if operator.is_none() {
                err(
                    &format!("{at}.operator"),
                    format!(
                        "unknown operator '{}' (expected >=, >, =, <= or <)",
                        r.operator
                    ),
                );
                ok = false;
            }
            let mode = match r.progress_mode.as_deref() {
                None | Some("") | Some("absolute") => Some(ProgressMode::Absolute),
                Some("relative") => Some(ProgressMode::Relative),
                Some("increment") => Some(ProgressMode::Increment),
                Some(other) => {
                    err(
                        &format!("{at}.progressMode"),
                        format!(
                            "unknown progress mode '{other}' in a group (expected absolute, relative or increment)"
                        ),
                    );
                    ok = false;
                    None
                }
            };
            if rg.event_source == "statistic" && r.stat_code.trim().is_empty() {
                err(
                    &format!("{at}.statCode"),
                    "must not be empty on a statistic goal".into(),
                );
                ok = false;
            }
            let (Some(operator), Some(mode)) = (operator, mode) else {
                continue;
            };
            if matches!(operator, Operator::Eq | Operator::Le | Operator::Lt)
                && mode != ProgressMode::Absolute
            {
                err(
                    &format!("{at}.operator"),
                    format!(
                        "'{}' compares the latest absolute value; progressMode must be absolute",
                        operator.as_str()
                    ),
                );
                ok = false;
            }
            let min = if operator == Operator::Ge { 1 } else { 0 };
            let target = match i32::try_from(r.target_value) {
                Ok(t) if t >= min => t,
                _ => {
                    err(
                        &format!("{at}.targetValue"),
                        format!(
                            "must be a 32-bit integer of at least {min} for '{}', got {}",
                            operator.as_str(),
                            r.target_value
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            members.push(criteria.len());
            criteria.push(Criterion {
                stat_code: r.stat_code.clone(),
                operator,
                target_value: target,
                mode,
            });
        }
        groups.push(members);
    }
    ok.then_some(Groups { criteria, groups })
}

/// Most rewards one goal may carry.
pub const MAX_REWARDS: usize = 10;

/// `reward` (one) or `rewards` (1–[`MAX_REWARDS`]), never both; each with a known type and
/// a positive quantity. Errors name the field (`reward.type`, `rewards[2].quantity`…).
fn resolve_rewards(rg: &RawGoal, err: &mut impl FnMut(&str, String)) -> Option<Vec<Reward>> {
    let (list, prefix): (Vec<&RawReward>, Box<dyn Fn(usize) -> String>) =
        match (&rg.reward, &rg.rewards) {
            (Some(_), Some(_)) => {
                err(
                    "rewards",
                    "give either reward or rewards, not both".to_string(),
                );
                return None;
            }
            (_, Some(list)) => {
                if list.is_empty() || list.len() > MAX_REWARDS {
                    err(
                        "rewards",
                        format!("must hold 1 to {MAX_REWARDS} rewards, got {}", list.len()),
                    );
                    return None;
                }
                (list.iter().collect(), Box::new(|i| format!("rewards[{i}]")))
            }
            // No reward at all reads as an empty one: its fields are reported missing.
            (Some(one), None) => (vec![one], Box::new(|_| "reward".to_string())),
            (None, None) => {
                static EMPTY: RawReward = RawReward {
                    reward_type: String::new(),
                    reward_id: String::new(),
                    quantity: 0,
                };
                (vec![&EMPTY], Box::new(|_| "reward".to_string()))
            }
        };
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, r) in list.into_iter().enumerate() {
        let at = prefix(i);
        let reward_type = match r.reward_type.as_str() {
            "ITEM" => Some(RewardType::Item),
            "WALLET" => Some(RewardType::Wallet),
            other => {
                err(
                    &format!("{at}.type"),
                    format!("unknown reward type '{other}' (expected ITEM or WALLET)"),
                );
                None
            }
        };
        let quantity = to_positive_i32(r.quantity, &format!("{at}.quantity"), err);
        match (reward_type, quantity) {
            (Some(reward_type), Some(quantity)) => out.push(Reward {
                reward_type,
                reward_id: r.reward_id.clone(),
                quantity,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// Fills [`Goal::auto_claim_wakes`]: a goal wakes itself if it is auto-claimed, and every
/// auto-claimed goal that lists it as a prerequisite.
fn link_auto_claims(goals: &mut [&mut Goal]) {
    let auto: Vec<(String, Vec<String>)> = goals
        .iter()
        .filter(|g| g.auto_claim)
        .map(|g| (g.id.clone(), g.prerequisites.clone()))
        .collect();
    for g in goals.iter_mut() {
        let mut wakes = Vec::new();
        if g.auto_claim {
            wakes.push(g.id.clone());
        }
        for (id, prerequisites) in &auto {
            if prerequisites.contains(&g.id) && !wakes.contains(id) {
                wakes.push(id.clone());
            }
        }
        g.auto_claim_wakes = wakes;
    }
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    fn shipped_config_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/challenges.json")
    }

    #[test]
    fn the_shipped_config_validates_and_shows_every_feature() {
        let cfg = load_from_path(shipped_config_path()).unwrap_or_else(|e| panic!("{e}"));
        let goals: Vec<&Goal> = cfg
            .challenges
            .iter()
            .flat_map(|c| c.goals.iter().map(|g| g.as_ref()))
            .collect();
        assert!(cfg.challenges.len() >= 5);

        let modes: HashSet<ProgressMode> = goals.iter().map(|g| g.mode).collect();
        for mode in [
            ProgressMode::Absolute,
            ProgressMode::Relative,
            ProgressMode::Increment,
            ProgressMode::Daily,
        ] {
            assert!(modes.contains(&mode), "no {mode:?} goal");
        }
        assert!(
            goals
                .iter()
                .any(|g| g.mode == ProgressMode::Increment && g.daily)
        );
        for source in [EventSource::Login, EventSource::Statistic] {
            assert!(goals.iter().any(|g| g.event_source == source));
        }
        for reward in [RewardType::Item, RewardType::Wallet] {
            assert!(goals.iter().any(|g| g.reward.reward_type == reward));
        }
        assert!(goals.iter().any(|g| g.default_assigned));
        assert!(goals.iter().any(|g| !g.default_assigned));
        // CONTRACT §7 and §8.
        assert!(goals.iter().any(|g| g.rewards.len() > 1));
        assert!(goals.iter().any(|g| g.auto_claim));
        assert!(goals.iter().any(|g| g.repeat.is_some()));
        assert!(goals.iter().any(|g| g.groups.is_some()));
        assert!(goals.iter().any(|g| {
            g.rotation
                .is_some_and(|r| matches!(r.schedule, Schedule::PerUser { .. }))
        }));

        let rotations: Vec<Rotation> = goals.iter().filter_map(|g| g.rotation).collect();
        for schedule in [Schedule::Daily, Schedule::Weekly, Schedule::Monthly] {
            assert!(rotations.iter().any(|r| r.schedule == schedule));
        }
        for reselect in [true, false] {
            assert!(
                rotations
                    .iter()
                    .any(|r| r.on_expiry.allow_reselection == reselect)
            );
        }

        // A prerequisite chain of at least three goals.
        let chain_end = cfg.goal("winter-champion").expect("seasonal chain");
        let mut depth = 0;
        let mut g = chain_end;
        while let Some(p) = g.prerequisites.first() {
            g = cfg.goal(p).expect("prerequisite exists");
            depth += 1;
        }
        assert!(depth >= 3, "chain depth {depth}");

        // Tags (CONTRACT §8) on a challenge and on goals.
        assert!(cfg.challenges.iter().any(|c| !c.tags.is_empty()));
        assert!(goals.iter().any(|g| !g.tags.is_empty()));
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let err = load_from_path("/nonexistent/challenges.json").unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err.to_string().starts_with("/nonexistent/challenges.json"));
    }

    fn mode_of(
        goal_type: Option<&str>,
        progress_mode: Option<&str>,
    ) -> Result<ProgressMode, String> {
        let mut goal = serde_json::json!({
            "goalId": "g", "name": "G", "eventSource": "statistic",
            "requirement": {"statCode": "s", "operator": ">=", "targetValue": 1},
            "reward": {"type": "ITEM", "rewardId": "i", "quantity": 1}
        });
        if let Some(t) = goal_type {
            goal["type"] = t.into();
        }
        if let Some(m) = progress_mode {
            goal["requirement"]["progressMode"] = m.into();
        }
        let json =
            serde_json::json!({"challenges": [{"challengeId": "c", "name": "C", "goals": [goal]}]});
        parse_and_validate("f.json", &json.to_string())
            .map(|cfg| cfg.goal("g").unwrap().mode)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn m4_and_m5_settings_resolve_to_one_mode() {
        use ProgressMode::*;
        let ok = [
            (None, None, Absolute),
            (Some("daily"), Some("absolute"), Daily),
            (Some("increment"), None, Increment),
            (Some("absolute"), Some("relative"), Relative),
            (None, Some("relative"), Relative),
            (Some("increment"), Some("increment"), Increment),
            (Some(""), Some(""), Absolute),
        ];
        for (t, m, want) in ok {
            assert_eq!(mode_of(t, m), Ok(want), "type {t:?} progressMode {m:?}");
        }
        let err = mode_of(Some("daily"), Some("relative")).unwrap_err();
        assert!(err.contains("field requirement.progressMode") && err.contains("conflicts"));
    }
}
