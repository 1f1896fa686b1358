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
/// the 1st 00:00 UTC (monthly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    Daily,
    Weekly,
    Monthly,
}

impl Schedule {
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
            Schedule::Monthly => "monthly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnExpiry {
    pub reset_progress: bool,
    pub allow_reselection: bool,
}

/// An enabled rotation (a disabled one resolves to `None` on the goal). The only type is
/// `global`, so it is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub schedule: Schedule,
    pub on_expiry: OnExpiry,
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
}

impl ChallengeConfig {
    /// Builds the indexes. Call only on a validated list (ids unique).
    pub fn new(challenges: Vec<Challenge>) -> Self {
        let mut goals_by_id = HashMap::new();
        let mut challenges_by_id = HashMap::new();
        let mut login_goals = Vec::new();
        let mut stat_goals: HashMap<String, Vec<Arc<Goal>>> = HashMap::new();
        let mut default_goals = Vec::new();
        for (ci, c) in challenges.iter().enumerate() {
            challenges_by_id.insert(c.id.clone(), ci);
            for g in &c.goals {
                goals_by_id.insert(g.id.clone(), g.clone());
                match g.event_source {
                    EventSource::Login => login_goals.push(g.clone()),
                    EventSource::Statistic => stat_goals
                        .entry(g.requirement.stat_code.clone())
                        .or_default()
                        .push(g.clone()),
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
        }
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
