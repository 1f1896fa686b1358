//! The identity of one reward: its period and its grant key.

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{Goal, ProgressMode, Schedule};
use extend_challenge_common::rotation::{utc_day_start, window};
use sha2::{Digest, Sha256};

/// The period a claim at `now` pays for: the goal's rotation period (`daily:2025-11-04`,
/// `weekly:2025-11-03`, `monthly:2025-11-01`, by start date; a per-player window by its
/// start instant, `win:2025-11-04T15:30:00Z`, counted from `assigned_at`), the UTC day for a legacy
/// `daily`-mode goal (`day:2025-11-04`), the repetition of a repeatable goal claimed
/// `times_claimed` times so far (`rep:0`, `rep:1`, …), or `once` for a goal that never comes
/// back. A goal claimable again gets a new key each time.
pub fn period_key(
    goal: &Goal,
    times_claimed: i32,
    assigned_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    if goal.repeat.is_some() {
        return format!("rep:{times_claimed}");
    }
    // Daily-mode goals reset every UTC day whatever their rotation, and every rotation
    // period starts at a UTC midnight, so the day is the finer period.
    if goal.mode == ProgressMode::Daily {
        return format!("day:{}", utc_day_start(now).format("%Y-%m-%d"));
    }
    match goal.rotation {
        Some(r) if matches!(r.schedule, Schedule::PerUser { .. }) => format!(
            "win:{}",
            window(r.schedule, assigned_at, now)
                .start
                .format("%Y-%m-%dT%H:%M:%SZ")
        ),
        Some(r) => format!(
            "{}:{}",
            r.schedule.as_str(),
            window(r.schedule, None, now).start.format("%Y-%m-%d")
        ),
        None => "once".to_string(),
    }
}

/// The period key of a row an admin reset `resets` times (CONTRACT §9): its own key after
/// each reset (`once/r1`, `daily:2025-11-04/r2`), so the grant AGS holds for the period
/// before the reset is never taken for the new one.
pub fn after_resets(period_key: String, resets: i32) -> String {
    if resets > 0 {
        format!("{period_key}/r{resets}")
    } else {
        period_key
    }
}

/// `chl-` and 32 hex digits (128 bits) of the SHA-256 of namespace, user, challenge, goal
/// and period. 36 characters, like a UUID: short enough for AGS's id-like fields (an
/// entitlement's `grantedCode`, a fulfillment `transactionId` path segment).
pub fn grant_key(
    namespace: &str,
    user_id: &str,
    challenge_id: &str,
    goal_id: &str,
    period_key: &str,
) -> String {
    let mut hash = Sha256::new();
    for part in [namespace, user_id, challenge_id, goal_id, period_key] {
        // Length-prefixed, so no two different tuples hash the same bytes.
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut key = String::with_capacity(36);
    key.push_str("chl-");
    for byte in &digest[..16] {
        key.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        key.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    key
}

/// The grant key of a goal's reward number `reward_index` (its position in `rewards`). The
/// first reward's key is [`grant_key`] itself, so intents recorded before goals had several
/// rewards keep theirs; every other reward hashes its index in too.
pub fn reward_grant_key(
    namespace: &str,
    user_id: &str,
    challenge_id: &str,
    goal_id: &str,
    period_key: &str,
    reward_index: i16,
) -> String {
    if reward_index == 0 {
        return grant_key(namespace, user_id, challenge_id, goal_id, period_key);
    }
    let period = format!("{period_key}#reward:{reward_index}");
    grant_key(namespace, user_id, challenge_id, goal_id, &period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use extend_challenge_common::config::{
        EventSource, OnExpiry, Requirement, Reward, RewardType, Rotation, Schedule,
    };

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn goal(mode: ProgressMode, rotation: Option<Schedule>) -> Goal {
        Goal {
            id: "g".into(),
            challenge_id: "c".into(),
            name: "n".into(),
            description: String::new(),
            tags: vec![],
            event_source: EventSource::Login,
            default_assigned: true,
            requirement: Requirement {
                stat_code: String::new(),
                operator: ">=".into(),
                target_value: 1,
            },
            mode,
            daily: false,
            reward: Reward {
                reward_type: RewardType::Item,
                reward_id: "i".into(),
                quantity: 1,
            },
            rewards: vec![Reward {
                reward_type: RewardType::Item,
                reward_id: "i".into(),
                quantity: 1,
            }],
            auto_claim: false,
            auto_claim_wakes: vec![],
            repeat: None,
            groups: None,
            part: None,
            prerequisites: vec![],
            rotation: rotation.map(|schedule| Rotation {
                schedule,
                on_expiry: OnExpiry {
                    reset_progress: true,
                    allow_reselection: true,
                },
            }),
        }
    }

    #[test]
    fn periods_follow_rotation_and_daily_mode() {
        // Tuesday.
        let now = at("2025-11-04T12:00:00Z");
        assert_eq!(
            period_key(&goal(ProgressMode::Absolute, None), 0, None, now),
            "once"
        );
        let mut repeatable = goal(ProgressMode::Absolute, None);
        repeatable.repeat = Some(extend_challenge_common::config::Repeat { max_times: 0 });
        assert_eq!(period_key(&repeatable, 0, None, now), "rep:0");
        assert_eq!(period_key(&repeatable, 7, None, now), "rep:7");
        let mut timed = goal(ProgressMode::Absolute, Some(Schedule::Daily));
        timed.rotation = Some(Rotation {
            schedule: Schedule::PerUser { seconds: 86_400 },
            on_expiry: OnExpiry::default(),
        });
        let assigned = at("2025-11-03T15:30:00Z");
        assert_eq!(
            period_key(&timed, 0, Some(assigned), now),
            "win:2025-11-03T15:30:00Z"
        );
        assert_eq!(
            period_key(
                &goal(ProgressMode::Absolute, Some(Schedule::Weekly)),
                0,
                None,
                now
            ),
            "weekly:2025-11-03"
        );
        assert_eq!(
            period_key(
                &goal(ProgressMode::Absolute, Some(Schedule::Monthly)),
                0,
                None,
                now
            ),
            "monthly:2025-11-01"
        );
        assert_eq!(
            period_key(
                &goal(ProgressMode::Absolute, Some(Schedule::Daily)),
                0,
                None,
                now
            ),
            "daily:2025-11-04"
        );
        assert_eq!(
            period_key(
                &goal(ProgressMode::Daily, Some(Schedule::Weekly)),
                0,
                None,
                now
            ),
            "day:2025-11-04"
        );
    }

    #[test]
    fn grant_keys_are_stable_short_and_distinct() {
        let k = grant_key("ns", "u", "c", "g", "once");
        assert_eq!(k, grant_key("ns", "u", "c", "g", "once"));
        assert_eq!(k.len(), 36);
        assert!(k.starts_with("chl-"));
        assert!(
            k[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase())
        );
        assert_ne!(k, grant_key("ns", "u", "c", "g", "daily:2025-11-04"));
        assert_ne!(k, grant_key("ns2", "u", "c", "g", "once"));
        // The first reward keeps the one-reward key; every other reward has its own.
        assert_eq!(reward_grant_key("ns", "u", "c", "g", "once", 0), k);
        let second = reward_grant_key("ns", "u", "c", "g", "once", 1);
        assert_ne!(second, k);
        assert_eq!(second.len(), 36);
        assert_ne!(second, reward_grant_key("ns", "u", "c", "g", "once", 2));
        // Field boundaries matter.
        assert_ne!(
            grant_key("ns", "ab", "c", "g", "once"),
            grant_key("ns", "a", "bc", "g", "once")
        );
    }
}
