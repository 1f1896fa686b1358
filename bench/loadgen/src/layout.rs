//! The deterministic benchmark world: 10 challenges × 50 goals, users `bu000000…`.
//!
//! Goal `k` of a challenge (0..50) uses code `k % 5` (0 = login, 1..4 = stat codes), so every
//! stat event fans out to one goal in five, as in the reference fixture (100 goals per code).
//! - `k < 40`: **checked** goals, target 10^9 so they never complete; `k/5` even → `increment`,
//!   odd → `absolute` (login goals: +1 per login either way). The validity check recomputes
//!   them exactly from the acknowledged events.
//! - `40 ≤ k < 45`: **toggle** goals, not default-assigned, seeded inactive; set-active and
//!   batch/random select only ever touch these, so they cannot disturb the checked goals.
//! - `45 ≤ k < 50`: **claim** goals, seeded `completed`, so a claim has something to grant.

use serde_json::json;

pub const CHALLENGES: usize = 10;
pub const GOALS_PER_CHALLENGE: usize = 50;
pub const CODES: [&str; 5] = [
    "login_count",
    "enemy_kills",
    "games_played",
    "headshots",
    "wins",
];
pub const CHECKED_BELOW: usize = 40;
pub const CLAIM_FROM: usize = 45;
pub const NEVER: i64 = 1_000_000_000;
pub const CLAIM_TARGET: i64 = 5;

pub fn user_id(i: usize) -> String {
    format!("bu{i:06}")
}

pub fn challenge_id(j: usize) -> String {
    format!("bench-c{j:02}")
}

pub fn goal_id(j: usize, k: usize) -> String {
    format!("bench-c{j:02}-g{k:02}")
}

/// `(challenge index, goal index)` from a goal id written by [`goal_id`].
pub fn parse_goal(id: &str) -> Option<(usize, usize)> {
    let rest = id.strip_prefix("bench-c")?;
    let (j, k) = rest.split_once("-g")?;
    Some((j.parse().ok()?, k.parse().ok()?))
}

pub fn parse_user(id: &str) -> Option<usize> {
    id.strip_prefix("bu")?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Increment,
    Absolute,
}

pub fn mode(k: usize) -> Mode {
    if k < CHECKED_BELOW && (k / 5).is_multiple_of(2) && !k.is_multiple_of(5) {
        Mode::Increment
    } else {
        Mode::Absolute
    }
}

pub fn code_index(k: usize) -> usize {
    k % 5
}

pub fn target(k: usize) -> i64 {
    match k {
        _ if k < CHECKED_BELOW => NEVER,
        _ if k < CLAIM_FROM => 10,
        _ => CLAIM_TARGET,
    }
}

pub fn fixture() -> serde_json::Value {
    let challenges: Vec<_> = (0..CHALLENGES)
        .map(|j| {
            let goals: Vec<_> = (0..GOALS_PER_CHALLENGE)
                .map(|k| {
                    let code = CODES[code_index(k)];
                    let mode = match mode(k) {
                        Mode::Increment => "increment",
                        Mode::Absolute => "absolute",
                    };
                    json!({
                        "goalId": goal_id(j, k),
                        "name": format!("Bench goal {j}-{k}"),
                        "description": format!("Reach {} {code}", target(k)),
                        "eventSource": if code_index(k) == 0 { "login" } else { "statistic" },
                        "defaultAssigned": !(CHECKED_BELOW..CLAIM_FROM).contains(&k),
                        "requirement": {
                            "statCode": code,
                            "operator": ">=",
                            "targetValue": target(k),
                            "progressMode": mode,
                        },
                        "reward": {"type": "WALLET", "rewardId": "GEMS", "quantity": 10},
                        "prerequisites": [],
                    })
                })
                .collect();
            json!({
                "challengeId": challenge_id(j),
                "name": format!("Bench challenge {j}"),
                "description": "Deterministic benchmark fixture (bench/loadgen layout.rs)",
                "goals": goals,
            })
        })
        .collect();
    json!({ "challenges": challenges })
}

pub fn write_fixture(path: &str) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&fixture())? + "\n";
    std::fs::write(path, text)?;
    println!("wrote {path}: {CHALLENGES} challenges × {GOALS_PER_CHALLENGE} goals");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_passes_the_services_validator() {
        let text = serde_json::to_string(&fixture()).unwrap();
        let cfg =
            extend_challenge_common::config::loader::parse_and_validate("fixture", &text).unwrap();
        assert_eq!(cfg.goal_count(), CHALLENGES * GOALS_PER_CHALLENGE);
    }

    #[test]
    fn committed_fixture_is_the_generated_one() {
        let committed = include_str!("../../fixtures/challenges.json");
        let generated = serde_json::to_string_pretty(&fixture()).unwrap() + "\n";
        assert_eq!(
            committed, generated,
            "regenerate: cargo run -p loadgen -- fixture"
        );
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_goal(&goal_id(7, 42)), Some((7, 42)));
        assert_eq!(parse_user(&user_id(1234)), Some(1234));
    }
}
