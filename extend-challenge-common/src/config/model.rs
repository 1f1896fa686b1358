//! The resolved configuration: validated, with M4/M5 settings folded into one
//! [`ProgressMode`], and indexed for the lookups both binaries make on every request/event.

use std::collections::HashMap;
use std::sync::Arc;

/// Which event stream feeds a goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    Login,
    Statistic,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Login => "login",
            EventSource::Statistic => "statistic",
        }
    }
}

/// How events turn into progress (CONTRACT §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressMode {
    /// progress = latest stat value (login: += 1).
    Absolute,
    /// progress = value − baseline taken at the first event of the period.
    Relative,
    /// progress += 1 per event (with `daily`, at most once per UTC day).
    Increment,
    /// First event of a UTC day sets progress 1 and completes.
    Daily,
}

impl ProgressMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressMode::Absolute => "absolute",
            ProgressMode::Relative => "relative",
            ProgressMode::Increment => "increment",
            ProgressMode::Daily => "daily",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewardType {
    Item,
    Wallet,
}

impl RewardType {
    pub fn as_str(self) -> &'static str {
        match self {
            RewardType::Item => "ITEM",
            RewardType::Wallet => "WALLET",
        }
    }
}

/// Rotation period length. Periods start at 00:00 UTC (daily), Monday 00:00 UTC (weekly),
/// the 1st 00:00 UTC (monthly); per-player windows (CONTRACT §8, `type: "per_user"`) start
/// when the goal was assigned to the player and follow each other back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    Daily,
    Weekly,
    Monthly,
    /// A window of this many seconds from the player's assignment, then the next.
    PerUser {
        seconds: u32,
    },
}

impl Schedule {
    /// `daily`, `weekly`, `monthly`; a per-player window's duration (`90s`, `30m`, `24h`,
    /// `7d`: the largest whole unit).
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
            Schedule::Monthly => "monthly",
            Schedule::PerUser { .. } => "per_user",
        }
    }

    /// The rotation `type` of the contract: `global` or `per_user`.
    pub fn rotation_type(self) -> &'static str {
        match self {
            Schedule::PerUser { .. } => "per_user",
            _ => "global",
        }
    }

    /// What `GetRotationStatus` shows as `schedule`: the global schedule, or the per-player
    /// window's duration (`90s`, `30m`, `24h`, `7d`).
    pub fn describe(self) -> String {
        match self {
            Schedule::PerUser { seconds } => format_duration(seconds),
            other => other.as_str().to_string(),
        }
    }
}

/// `7d`, `24h`… — the largest unit that divides the seconds.
pub fn format_duration(seconds: u32) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds.is_multiple_of(n) {
            return format!("{}{unit}", seconds / n);
        }
    }
    format!("{seconds}s")
}

/// Parses `90s`, `30m`, `24h`, `7d` (a positive whole number and one unit, at most 366
/// days).
pub fn parse_duration(text: &str) -> Option<u32> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let scale: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = number.parse::<u64>().ok()?.checked_mul(scale)?;
    (1..=366 * 86_400)
        .contains(&seconds)
        .then_some(seconds as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnExpiry {
    pub reset_progress: bool,
    pub allow_reselection: bool,
}

/// An enabled rotation (a disabled one resolves to `None` on the goal): global periods, or
/// per-player windows ([`Schedule::PerUser`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub schedule: Schedule,
    pub on_expiry: OnExpiry,
}

/// A repeatable goal (CONTRACT §8): after each claim it starts again from zero, until it
/// has been claimed `max_times` times (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub max_times: u32,
}

impl Repeat {
    /// Whether a goal claimed `times_claimed` times can be earned again.
    pub fn again_after(self, times_claimed: i32) -> bool {
        self.max_times == 0 || i64::from(times_claimed) < i64::from(self.max_times)
    }
}

/// A requirement's comparison (CONTRACT §8). `<`, `<=` and `=` compare the latest absolute
/// value, and only a value seen counts (a stat never reported does not meet `deaths <= 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Ge,
    Gt,
    Eq,
    Le,
    Lt,
}

impl Operator {
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            ">=" => Operator::Ge,
            ">" => Operator::Gt,
            "=" => Operator::Eq,
            "<=" => Operator::Le,
            "<" => Operator::Lt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Ge => ">=",
            Operator::Gt => ">",
            Operator::Eq => "=",
            Operator::Le => "<=",
            Operator::Lt => "<",
        }
    }

    /// Whether `value` (`None`: never reported) meets `target`.
    pub fn met(self, value: Option<i32>, target: i32) -> bool {
        let Some(v) = value else {
            return false;
        };
        match self {
            Operator::Ge => v >= target,
            Operator::Gt => v > target,
            Operator::Eq => v == target,
            Operator::Le => v <= target,
            Operator::Lt => v < target,
        }
    }
}

/// One requirement of a requirement group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    pub stat_code: String,
    pub operator: Operator,
    pub target_value: i32,
    pub mode: ProgressMode,
}

/// Requirement groups (CONTRACT §8): the goal completes when every requirement of any one
/// group is met. `criteria` lists every requirement (group after group); `groups` holds
/// their indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    pub criteria: Vec<Criterion>,
    pub groups: Vec<Vec<usize>>,
}

/// A requirement of a requirement-group goal, as the event handler feeds it: events reach
/// the part of the goal whose stat code they carry; the part's progress lives in the
/// parent's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub parent: Arc<Goal>,
    pub index: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub stat_code: String,
    /// Always `>=` after validation.
    pub operator: String,
    pub target_value: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    pub reward_type: RewardType,
    pub reward_id: String,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub id: String,
    pub challenge_id: String,
    pub name: String,
    pub description: String,
    /// Labels the list filters on (CONTRACT §8): the goal's own, not its challenge's.
    pub tags: Vec<String>,
    pub event_source: EventSource,
    pub default_assigned: bool,
    pub requirement: Requirement,
    pub mode: ProgressMode,
    /// Increment goals only: count at most once per UTC day.
    pub daily: bool,
    /// The first of [`Goal::rewards`] (the API's `reward`).
    pub reward: Reward,
    /// Every reward of the goal, 1–10; each is granted once per claim under its own key.
    pub rewards: Vec<Reward>,
    /// Granted without a player's claim once completed (CONTRACT §7).
    pub auto_claim: bool,
    /// Goals to auto-claim when this goal completes: itself if `auto_claim`, and every
    /// `auto_claim` goal that has it as a prerequisite (it may unlock them). Filled by the
    /// loader.
    pub auto_claim_wakes: Vec<String>,
    pub prerequisites: Vec<String>,
    /// Enabled rotation, if any.
    pub rotation: Option<Rotation>,
    /// Repeatable (never together with a rotation).
    pub repeat: Option<Repeat>,
    /// Requirement groups, when the config gives `requirementGroups` (then `requirement`
    /// and `mode` describe the first requirement of the first group).
    pub groups: Option<Arc<Groups>>,
    /// Set on the per-requirement goals of a requirement-group goal (see [`Part`]); the
    /// config's goals never have it.
    pub part: Option<Part>,
}

impl Goal {
    /// The id of the row this goal's progress lives in: its own, or its parent's.
    pub fn row_goal_id(&self) -> &str {
        match &self.part {
            Some(p) => &p.parent.id,
            None => &self.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Labels the list filters on (CONTRACT §8); they apply to every goal of the challenge.
    pub tags: Vec<String>,
    pub goals: Vec<Arc<Goal>>,
}

impl Challenge {
    /// The challenge's rotation: that of its first goal with rotation enabled.
    pub fn rotation(&self) -> Option<Rotation> {
        self.goals.iter().find_map(|g| g.rotation)
    }

    pub fn goal(&self, goal_id: &str) -> Option<&Arc<Goal>> {
        self.goals.iter().find(|g| g.id == goal_id)
    }
}

/// Position of a goal in [`ChallengeConfig::challenges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoalRef {
    pub challenge: usize,
    pub goal: usize,
}

/// The validated configuration with its lookup indexes. Immutable after load; share it
/// behind an `Arc`.
#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    pub challenges: Vec<Challenge>,
    goals_by_id: HashMap<String, Arc<Goal>>,
    challenges_by_id: HashMap<String, usize>,
    login_goals: Vec<Arc<Goal>>,
    stat_goals: HashMap<String, Vec<Arc<Goal>>>,
    default_goals: Vec<Arc<Goal>>,
    /// The per-requirement goals of requirement-group goals, by their id (`<goal>#<n>`).
    parts_by_id: HashMap<String, Arc<Goal>>,
}

impl ChallengeConfig {
    /// Builds the indexes. Call only on a validated list (ids unique).
    pub fn new(challenges: Vec<Challenge>) -> Self {
        let mut goals_by_id = HashMap::new();
        let mut challenges_by_id = HashMap::new();
        let mut login_goals = Vec::new();
        let mut stat_goals: HashMap<String, Vec<Arc<Goal>>> = HashMap::new();
        let mut default_goals = Vec::new();
        let mut parts_by_id = HashMap::new();
        for (ci, c) in challenges.iter().enumerate() {
            challenges_by_id.insert(c.id.clone(), ci);
            for g in &c.goals {
                goals_by_id.insert(g.id.clone(), g.clone());
                // Events feed a requirement-group goal through its parts, one per
                // requirement.
                let fed: Vec<Arc<Goal>> = match &g.groups {
                    None => vec![g.clone()],
                    Some(groups) => groups
                        .criteria
                        .iter()
                        .enumerate()
                        .map(|(index, c)| {
                            let part = Arc::new(Goal {
                                id: format!("{}#{index}", g.id),
                                requirement: Requirement {
                                    stat_code: c.stat_code.clone(),
                                    operator: c.operator.as_str().to_string(),
                                    target_value: c.target_value,
                                },
                                mode: c.mode,
                                daily: false,
                                groups: None,
                                part: Some(Part {
                                    parent: g.clone(),
                                    index,
                                }),
                                ..(**g).clone()
                            });
                            parts_by_id.insert(part.id.clone(), part.clone());
                            part
                        })
                        .collect(),
                };
                for f in fed {
                    match f.event_source {
                        EventSource::Login => login_goals.push(f),
                        EventSource::Statistic => stat_goals
                            .entry(f.requirement.stat_code.clone())
                            .or_default()
                            .push(f),
                    }
                }
                if g.default_assigned {
                    default_goals.push(g.clone());
                }
            }
        }
        Self {
            challenges,
            goals_by_id,
            challenges_by_id,
            login_goals,
            stat_goals,
            default_goals,
            parts_by_id,
        }
    }

    /// A goal or a requirement-group goal's part, by id (the event handler's buffer and
    /// dead letters key parts by `<goal>#<n>`).
    pub fn goal_or_part(&self, id: &str) -> Option<&Arc<Goal>> {
        self.goals_by_id
            .get(id)
            .or_else(|| self.parts_by_id.get(id))
    }

    pub fn challenge(&self, challenge_id: &str) -> Option<&Challenge> {
        self.challenges_by_id
            .get(challenge_id)
            .map(|&i| &self.challenges[i])
    }

    pub fn goal(&self, goal_id: &str) -> Option<&Arc<Goal>> {
        self.goals_by_id.get(goal_id)
    }

    /// The goal, only if it belongs to `challenge_id`.
    pub fn goal_in(&self, challenge_id: &str, goal_id: &str) -> Option<&Arc<Goal>> {
        self.goal(goal_id)
            .filter(|g| g.challenge_id == challenge_id)
    }

    /// Goals fed by login events (eventSource `login`).
    pub fn login_goals(&self) -> &[Arc<Goal>] {
        &self.login_goals
    }

    /// Goals fed by stat events with this stat code (eventSource `statistic` only).
    pub fn stat_goals(&self, stat_code: &str) -> &[Arc<Goal>] {
        self.stat_goals
            .get(stat_code)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Goals assigned to every new player.
    pub fn default_goals(&self) -> &[Arc<Goal>] {
        &self.default_goals
    }

    pub fn goal_count(&self) -> usize {
        self.goals_by_id.len()
    }
}
