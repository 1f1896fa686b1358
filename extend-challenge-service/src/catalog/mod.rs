//! The configuration as the player API shows it, prepared once at start-up.
//!
//! The challenge list is the hot read: every goal of the config with the caller's progress
//! spliced in. The static part of each goal (ids, names, requirement, reward,
//! prerequisites) is serialized to JSON here, once; a request only appends the per-player
//! fields (progress, status, locked, timestamps). [`PlayerView`] is the per-request
//! picture of one player's rows with `progress::view` applied, so a stale row never shows
//! last period's state.
//!
//! Three parts along the three things a response is made of:
//! - this module: the index of the config (flat goal positions, challenge ranges, the
//!   pre-serialized heads), built once;
//! - [`view`], [`PlayerView`] and [`GoalDisplay`], what one player sees of each goal
//!   (including `locked`, which is `progress::locked_by` over the prerequisites' statuses);
//! - [`json`] and [`proto`]: the two encodings of the same content, REST's hand-written
//!   JSON and gRPC's protobuf (pre-encoded bytes for the list, prost structs otherwise).

mod json;
mod list;
mod proto;
mod view;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use extend_challenge_common::config::{ChallengeConfig, Goal};
use extend_challenge_common::store::implicit::{self, Defaults, Marker, covered_ids};
use extend_challenge_common::store::player::PlayerGoalRow;

pub use self::list::{BadQuery, ListQuery, MAX_PAGE_SIZE, Page, fnv1a as digest};
pub use self::proto::{requirement_pb, reward_pb, rewards_pb};
pub use self::view::{GoalDisplay, PlayerView};

/// A goal with its position and pre-serialized static JSON.
#[derive(Debug)]
pub struct GoalEntry {
    pub goal: Arc<Goal>,
    /// Index of its challenge in [`Catalog::challenges`].
    pub challenge: usize,
    /// `{"goalId":…,"name":…,"description":…,"requirement":{…},"reward":{…},"prerequisites":[…],`
    json_head: Box<str>,
    /// The same static fields (1–6 of `service.Goal`) in protobuf encoding.
    proto_head: Box<[u8]>,
    /// `,"rewards":[…]`: the static field after the per-player ones (then `timesClaimed`,
    /// `maxTimes` and the closing brace).
    json_tail: Box<str>,
    /// Field 15 (`rewards`) in protobuf encoding.
    proto_rewards: Box<[u8]>,
    /// `{"challengeId":…,"goalId":…,"name":…,"description":…,"isActive":`: the static head
    /// of the goal's `AssignedGoal` (initialize's answer).
    assigned_head: Box<str>,
    /// `,"requirement":{…},"reward":{…}}`: the static tail of its `AssignedGoal`.
    assigned_tail: Box<str>,
    /// `maxTimes` (0: unlimited or not repeatable).
    max_times: i32,
    /// Flat indexes of the prerequisites, in config order; `None` for an id missing from
    /// the config (validation refuses it; should one get through, it locks the goal).
    prerequisites: Vec<Option<usize>>,
    /// Ids (in [`Catalog::tag_ids`]) of its tags and its challenge's, sorted, once each.
    tags: Box<[u32]>,
}

#[derive(Debug)]
pub struct ChallengeEntry {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Flat indexes of its goals, in config order.
    pub goals: Range<usize>,
    /// Prerequisites of its goals that belong to other challenges: a read of this challenge
    /// also fetches these rows so `locked` is right.
    pub external_prerequisites: Vec<String>,
    /// `{"challengeId":…,"name":…,"description":…,"goals":[`
    json_head: Box<str>,
    /// Fields 1–3 of `service.Challenge` in protobuf encoding.
    proto_head: Box<[u8]>,
}

#[derive(Debug)]
pub struct Catalog {
    config: Arc<ChallengeConfig>,
    goals: Vec<GoalEntry>,
    goal_index: HashMap<String, usize>,
    challenges: Vec<ChallengeEntry>,
    challenge_index: HashMap<String, usize>,
    /// Length of all static JSON, to size response buffers in one allocation.
    static_json_len: usize,
    /// Length of all static protobuf, likewise.
    static_proto_len: usize,
    /// Every tag of the config (challenges' and goals'), numbered.
    tag_ids: HashMap<String, u32>,
    /// The default goals, as a player's marker records them (`store::implicit`).
    defaults: Defaults,
    /// Flat indexes of the default goals: what a marker of the current config covers.
    default_indexes: Vec<usize>,
}

impl Catalog {
    pub fn new(config: Arc<ChallengeConfig>) -> Self {
        let mut goal_index = HashMap::new();
        for g in config.challenges.iter().flat_map(|c| &c.goals) {
            goal_index.insert(g.id.clone(), goal_index.len());
        }
        let mut goals = Vec::with_capacity(goal_index.len());
        let mut challenges = Vec::with_capacity(config.challenges.len());
        let mut challenge_index = HashMap::new();
        let mut static_json_len = 0;
        let mut static_proto_len = 0;
        let mut tag_ids = HashMap::new();
        for (ci, c) in config.challenges.iter().enumerate() {
            let start = goals.len();
            let mut external = Vec::new();
            for g in &c.goals {
                let head = json::goal_head(g);
                let json_tail = json::goal_tail(g);
                static_json_len += head.len() + json_tail.len();
                let prerequisites = g
                    .prerequisites
                    .iter()
                    .map(|p| goal_index.get(p).copied())
                    .collect();
                for p in &g.prerequisites {
                    if !c.goals.iter().any(|o| &o.id == p) && !external.contains(p) {
                        external.push(p.clone());
                    }
                }
                let proto_head = proto::goal_head(g);
                let proto_rewards = proto::goal_rewards(g);
                static_proto_len += proto_head.len() + proto_rewards.len() + 4;
                goals.push(GoalEntry {
                    goal: g.clone(),
                    challenge: ci,
                    json_head: head.into_boxed_str(),
                    proto_head: proto_head.into_boxed_slice(),
                    json_tail: json_tail.into_boxed_str(),
                    proto_rewards: proto_rewards.into_boxed_slice(),
                    assigned_head: json::assigned_head(g).into_boxed_str(),
                    assigned_tail: json::assigned_tail(g).into_boxed_str(),
                    max_times: proto::max_times(g),
                    prerequisites,
                    tags: list::tag_set(&mut tag_ids, c.tags.iter().chain(&g.tags)),
                });
            }
            let json_head = json::challenge_head(c);
            static_json_len += json_head.len() + 2;
            let proto_head = proto::challenge_head(c);
            static_proto_len += proto_head.len() + 4;
            challenge_index.insert(c.id.clone(), ci);
            challenges.push(ChallengeEntry {
                id: c.id.clone(),
                name: c.name.clone(),
                description: c.description.clone(),
                goals: start..goals.len(),
                external_prerequisites: external,
                json_head: json_head.into_boxed_str(),
                proto_head: proto_head.into_boxed_slice(),
            });
        }
        let defaults = Defaults::of(&config);
        let default_indexes = defaults
            .goals()
            .iter()
            .filter_map(|g| goal_index.get(&g.id).copied())
            .collect();
        Catalog {
            defaults,
            default_indexes,
            config,
            goals,
            goal_index,
            challenges,
            challenge_index,
            static_json_len,
            static_proto_len,
            tag_ids,
        }
    }

    pub fn config(&self) -> &ChallengeConfig {
        &self.config
    }

    pub fn challenges(&self) -> &[ChallengeEntry] {
        &self.challenges
    }

    pub fn challenge_index(&self, challenge_id: &str) -> Option<usize> {
        self.challenge_index.get(challenge_id).copied()
    }

    pub fn goal(&self, index: usize) -> &GoalEntry {
        &self.goals[index]
    }

    /// How many goals the catalog has (flat indexes run `0..goal_count()`).
    pub fn goal_count(&self) -> usize {
        self.goals.len()
    }

    pub fn goal_index(&self, goal_id: &str) -> Option<usize> {
        self.goal_index.get(goal_id).copied()
    }

    /// A digest of everything the catalog shows or computes from (the pre-serialized
    /// heads and each goal's rules): part of the list's `ETag`, equal on every replica
    /// serving the same configuration.
    pub fn fingerprint(&self) -> u64 {
        let rules: Vec<String> = self
            .goals
            .iter()
            .map(|e| {
                let g = &e.goal;
                format!("{:?}{:?}{:?}{:?}", g.mode, g.daily, g.rotation, g.repeat)
            })
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(self.goals.len() * 3);
        for c in &self.challenges {
            parts.push(c.json_head.as_bytes());
        }
        for (e, r) in self.goals.iter().zip(&rules) {
            parts.extend([e.json_head.as_bytes(), e.json_tail.as_bytes(), r.as_bytes()]);
        }
        list::fnv1a(&parts)
    }

    /// The default goals, as a player's marker records them.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Flat indexes of the goals a marker covers (configured goals only).
    pub fn covered(&self, marker: &Marker) -> Vec<usize> {
        if marker.text == self.defaults.marker_text() {
            self.default_indexes.clone()
        } else {
            covered_ids(&marker.text)
                .filter_map(|id| self.goal_index(id))
                .collect()
        }
    }

    /// Splits the player's marker out of `rows` and adds the implicit rows
    /// (`store::implicit`) of the covered goals `wanted` accepts. Returns the ids of the
    /// goals added.
    pub fn complete_rows(
        &self,
        rows: &mut Vec<PlayerGoalRow>,
        wanted: impl Fn(&Goal) -> bool,
    ) -> Vec<String> {
        implicit::complete_rows(rows, &self.defaults, |id| self.config.goal(id), wanted).1
    }

    /// Flat index of `goal_id` if it belongs to challenge `ci`.
    pub fn goal_index_in(&self, ci: usize, goal_id: &str) -> Option<usize> {
        self.goal_index(goal_id)
            .filter(|&gi| self.goals[gi].challenge == ci)
    }
}
