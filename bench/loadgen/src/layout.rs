//! The deterministic benchmark worlds (`--layout reference|light`), users `bu000000…`.
//!
//! **reference** (default; `bench/fixtures/challenges.json`): 10 challenges × 50 goals.
//! Goal `k` of a challenge (0..50) uses code `k % 5` (0 = login, 1..4 = stat codes), so every
//! stat event fans out to one goal in five, as in the reference fixture (100 goals per code).
//! - `k < 40`: **checked** goals, target 10^9 so they never complete; `k/5` even → `increment`,
//!   odd → `absolute` (login goals: +1 per login either way). The validity check recomputes
//!   them exactly from the acknowledged events.
//! - `40 ≤ k < 45`: **toggle** goals, not default-assigned, seeded inactive; set-active and
//!   batch/random select only ever touch these, so they cannot disturb the checked goals.
//! - `45 ≤ k < 50`: **claim** goals, seeded `completed`, so a claim has something to grant.
//!
//! **light** (`bench/fixtures/challenges-light.json`, S2 only): 5 challenges × 10 goals, ids
//! `bl-cJJ-gKK`, every goal checked, default-assigned and seeded active (50 rows per user).
//! Codes: `login_count` (two login goals: one `increment`, one `absolute`, both +1 per login)
//! and 32 stat codes `stat_01…stat_32`: codes 1–16 feed two goals each (one `increment`, one
//! `absolute`), codes 17–32 one goal each (alternately `increment` and `absolute`). A login
//! writes 2 rows, a stat event 1 or 2 (1.5 on average): with the 20 % login mix, 1.6 rows per
//! event, where the reference layout writes ~90.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// What a seeded row of a goal is for (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Checked,
    Toggle,
    Claim,
}

/// One goal of a layout: its code index (0 = login), progress mode, role and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    pub code: usize,
    pub mode: Mode,
    pub kind: Kind,
    pub target: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Reference,
    Light,
}

pub const LIGHT_CHALLENGES: usize = 5;
pub const LIGHT_GOALS_PER_CHALLENGE: usize = 10;
/// Stat codes 1..=32 (`stat_01…`); 1..=16 feed two goals, 17..=32 one.
pub const LIGHT_STAT_CODES: usize = 32;

impl Layout {
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "reference" => Ok(Layout::Reference),
            "light" => Ok(Layout::Light),
            other => anyhow::bail!("--layout {other:?}: expected reference or light"),
        }
    }

    /// `--layout` (default `reference`).
    pub fn from_args(args: &crate::args::Args) -> anyhow::Result<Self> {
        Self::parse(&args.get_str("layout", "reference"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Reference => "reference",
            Layout::Light => "light",
        }
    }

    pub fn default_fixture_path(self) -> &'static str {
        match self {
            Layout::Reference => "bench/fixtures/challenges.json",
            Layout::Light => "bench/fixtures/challenges-light.json",
        }
    }

    pub fn challenges(self) -> usize {
        match self {
            Layout::Reference => CHALLENGES,
            Layout::Light => LIGHT_CHALLENGES,
        }
    }

    pub fn goals_per_challenge(self) -> usize {
        match self {
            Layout::Reference => GOALS_PER_CHALLENGE,
            Layout::Light => LIGHT_GOALS_PER_CHALLENGE,
        }
    }

    /// Number of code slots (index 0 = login) a ledger keeps per user.
    pub fn code_count(self) -> usize {
        match self {
            Layout::Reference => CODES.len(),
            Layout::Light => 1 + LIGHT_STAT_CODES,
        }
    }

    pub fn code_name(self, code: usize) -> String {
        match (self, code) {
            (_, 0) => CODES[0].to_string(),
            (Layout::Reference, c) => CODES[c].to_string(),
            (Layout::Light, c) => format!("stat_{c:02}"),
        }
    }

    /// The stat code index of a stat event. The reference mix draws from all five codes, its
    /// `login_count` stat being a counted no-op (CONTRACT §2.1); the light mix draws from the
    /// 32 stat codes, each of which feeds one or two goals.
    pub fn stat_code(self, rng: &mut impl rand::Rng) -> usize {
        match self {
            Layout::Reference => rng.random_range(0..CODES.len()),
            Layout::Light => rng.random_range(1..=LIGHT_STAT_CODES),
        }
    }

    pub fn challenge_id(self, j: usize) -> String {
        match self {
            Layout::Reference => challenge_id(j),
            Layout::Light => format!("bl-c{j:02}"),
        }
    }

    pub fn goal_id(self, j: usize, k: usize) -> String {
        match self {
            Layout::Reference => goal_id(j, k),
            Layout::Light => format!("bl-c{j:02}-g{k:02}"),
        }
    }

    /// `(challenge index, goal index)` from one of this layout's goal ids.
    pub fn parse_goal(self, id: &str) -> Option<(usize, usize)> {
        let (j, k) = match self {
            Layout::Reference => parse_goal(id)?,
            Layout::Light => {
                let (j, k) = id.strip_prefix("bl-c")?.split_once("-g")?;
                (j.parse().ok()?, k.parse().ok()?)
            }
        };
        (j < self.challenges() && k < self.goals_per_challenge()).then_some((j, k))
    }

    pub fn goal(self, j: usize, k: usize) -> Goal {
        match self {
            Layout::Reference => Goal {
                code: code_index(k),
                mode: mode(k),
                kind: match k {
                    _ if k < CHECKED_BELOW => Kind::Checked,
                    _ if k < CLAIM_FROM => Kind::Toggle,
                    _ => Kind::Claim,
                },
                target: target(k),
            },
            Layout::Light => {
                let g = j * LIGHT_GOALS_PER_CHALLENGE + k;
                let alternate = |i: usize| {
                    if i.is_multiple_of(2) {
                        Mode::Increment
                    } else {
                        Mode::Absolute
                    }
                };
                let (code, mode) = match g {
                    0 | 1 => (0, alternate(g)),
                    _ if g - 2 < 32 => (1 + (g - 2) / 2, alternate(g - 2)),
                    _ => (17 + (g - 34), alternate(g - 34)),
                };
                Goal {
                    code,
                    mode,
                    kind: Kind::Checked,
                    target: NEVER,
                }
            }
        }
    }

    /// Goals of the whole fixture fed by one event of code `code` (what the handler buffers
    /// per event; the rows written are those of them a user has).
    pub fn goals_for_code(self, code: usize) -> usize {
        (0..self.challenges())
            .flat_map(|j| (0..self.goals_per_challenge()).map(move |k| (j, k)))
            .filter(|&(j, k)| self.goal(j, k).code == code)
            .count()
    }

    /// Average goals fed per event of the S2 mix (`login_share` logins, the rest stat events
    /// over the codes [`Layout::stat_code`] draws).
    pub fn goals_per_event(self, login_share: f64) -> f64 {
        let stat_codes: Vec<usize> = match self {
            Layout::Reference => (0..CODES.len()).collect(),
            Layout::Light => (1..=LIGHT_STAT_CODES).collect(),
        };
        // Stat events with code 0 feed no goal: login goals take login events only.
        let stat = stat_codes
            .iter()
            .map(|&c| if c == 0 { 0 } else { self.goals_for_code(c) })
            .sum::<usize>() as f64
            / stat_codes.len() as f64;
        login_share * self.goals_for_code(0) as f64 + (1.0 - login_share) * stat
    }

    pub fn fixture(self) -> serde_json::Value {
        let challenges: Vec<_> = (0..self.challenges())
            .map(|j| {
                let goals: Vec<_> = (0..self.goals_per_challenge())
                    .map(|k| {
                        let g = self.goal(j, k);
                        let code = self.code_name(g.code);
                        let mode = match g.mode {
                            Mode::Increment => "increment",
                            Mode::Absolute => "absolute",
                        };
                        json!({
                            "goalId": self.goal_id(j, k),
                            "name": format!("Bench goal {j}-{k}"),
                            "description": format!("Reach {} {code}", g.target),
                            "eventSource": if g.code == 0 { "login" } else { "statistic" },
                            "defaultAssigned": g.kind != Kind::Toggle,
                            "requirement": {
                                "statCode": code,
                                "operator": ">=",
                                "targetValue": g.target,
                                "progressMode": mode,
                            },
                            "reward": {"type": "WALLET", "rewardId": "GEMS", "quantity": 10},
                            "prerequisites": [],
                        })
                    })
                    .collect();
                json!({
                    "challengeId": self.challenge_id(j),
                    "name": match self {
                        Layout::Reference => format!("Bench challenge {j}"),
                        Layout::Light => format!("Bench light challenge {j}"),
                    },
                    "description": "Deterministic benchmark fixture (bench/loadgen layout.rs)",
                    "goals": goals,
                })
            })
            .collect();
        json!({ "challenges": challenges })
    }
}

pub fn write_fixture(layout: Layout, path: &str) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&layout.fixture())? + "\n";
    std::fs::write(path, text)?;
    println!(
        "wrote {path}: layout {}, {} challenges × {} goals, {:.2} goals per S2 event",
        layout.name(),
        layout.challenges(),
        layout.goals_per_challenge(),
        layout.goals_per_event(0.2)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_pass_the_services_validator() {
        for layout in [Layout::Reference, Layout::Light] {
            let text = serde_json::to_string(&layout.fixture()).unwrap();
            let cfg = extend_challenge_common::config::loader::parse_and_validate("fixture", &text)
                .unwrap();
            assert_eq!(
                cfg.goal_count(),
                layout.challenges() * layout.goals_per_challenge()
            );
        }
    }

    #[test]
    fn committed_fixtures_are_the_generated_ones() {
        for (layout, committed) in [
            (
                Layout::Reference,
                include_str!("../../fixtures/challenges.json"),
            ),
            (
                Layout::Light,
                include_str!("../../fixtures/challenges-light.json"),
            ),
        ] {
            let generated = serde_json::to_string_pretty(&layout.fixture()).unwrap() + "\n";
            assert_eq!(
                committed,
                generated,
                "regenerate: cargo run -p loadgen -- fixture --layout {}",
                layout.name()
            );
        }
    }

    #[test]
    fn light_events_feed_one_or_two_goals() {
        let l = Layout::Light;
        assert_eq!(l.goals_for_code(0), 2);
        let mut modes = std::collections::HashMap::new();
        for c in 1..=LIGHT_STAT_CODES {
            let n = l.goals_for_code(c);
            assert!(n == 1 || n == 2, "code {c}: {n} goals");
        }
        for j in 0..l.challenges() {
            for k in 0..l.goals_per_challenge() {
                let g = l.goal(j, k);
                assert!(g.code < l.code_count());
                *modes.entry(g.mode).or_insert(0) += 1;
                assert_eq!(l.parse_goal(&l.goal_id(j, k)), Some((j, k)));
            }
        }
        // Both modes are checked, in equal numbers.
        assert_eq!(modes[&Mode::Increment], modes[&Mode::Absolute]);
        assert!((l.goals_per_event(0.2) - 1.6).abs() < 1e-9);
        assert!((Layout::Reference.goals_per_event(0.2) - 84.0).abs() < 1e-9);
        // Ids of one layout are not mistaken for the other's.
        assert_eq!(l.parse_goal(&goal_id(0, 1)), None);
        assert_eq!(Layout::Reference.parse_goal(&l.goal_id(0, 1)), None);
    }

    #[test]
    fn reference_goals_match_the_constants() {
        for k in 0..GOALS_PER_CHALLENGE {
            let g = Layout::Reference.goal(3, k);
            assert_eq!(
                (g.code, g.mode, g.target),
                (code_index(k), mode(k), target(k))
            );
        }
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_goal(&goal_id(7, 42)), Some((7, 42)));
        assert_eq!(parse_user(&user_id(1234)), Some(1234));
    }
}
