//! The configuration as the player API shows it, prepared once at start-up.
//!
//! The challenge list is the hot read: every goal of the config with the caller's progress
//! spliced in. The static part of each goal (ids, names, requirement, reward,
//! prerequisites) is serialized to JSON here, once; a request only appends the per-player
//! fields (progress, status, locked, timestamps). [`PlayerView`] is the per-request
//! picture of one player's rows with `progress::view` applied, so a stale row never shows
//! last period's state.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{ChallengeConfig, Goal, Schedule};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::{self, GoalState, Status};
use extend_challenge_common::rotation;
use extend_challenge_common::store::player::PlayerGoalRow;
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::timefmt::{rfc3339_opt, write_i64, write_rfc3339};

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
    /// Flat indexes of the prerequisites.
    prerequisites: Vec<usize>,
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
}

/// Per-goal JSON tail is at most about this long (numbers, status, three timestamps).
const GOAL_TAIL_MAX: usize = 220;

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
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
        for (ci, c) in config.challenges.iter().enumerate() {
            let start = goals.len();
            let mut external = Vec::new();
            for g in &c.goals {
                let head = goal_json_head(g);
                static_json_len += head.len();
                let prerequisites = g
                    .prerequisites
                    .iter()
                    .filter_map(|p| goal_index.get(p).copied())
                    .collect();
                for p in &g.prerequisites {
                    if !c.goals.iter().any(|o| &o.id == p) && !external.contains(p) {
                        external.push(p.clone());
                    }
                }
                let proto_head = goal_proto_head(g);
                static_proto_len += proto_head.len() + 4;
                goals.push(GoalEntry {
                    goal: g.clone(),
                    challenge: ci,
                    json_head: head.into_boxed_str(),
                    proto_head: proto_head.into_boxed_slice(),
                    prerequisites,
                });
            }
            let json_head = format!(
                "{{\"challengeId\":{},\"name\":{},\"description\":{},\"goals\":[",
                json_str(&c.id),
                json_str(&c.name),
                json_str(&c.description)
            );
            static_json_len += json_head.len() + 2;
            let proto_head = pb::Challenge {
                challenge_id: c.id.clone(),
                name: c.name.clone(),
                description: c.description.clone(),
                goals: Vec::new(),
            }
            .encode_to_vec();
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
        Catalog {
            config,
            goals,
            goal_index,
            challenges,
            challenge_index,
            static_json_len,
            static_proto_len,
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

    pub fn goal_index(&self, goal_id: &str) -> Option<usize> {
        self.goal_index.get(goal_id).copied()
    }

    /// Flat index of `goal_id` if it belongs to challenge `ci`.
    pub fn goal_index_in(&self, ci: usize, goal_id: &str) -> Option<usize> {
        self.goal_index(goal_id)
            .filter(|&gi| self.goals[gi].challenge == ci)
    }

    /// Writes `{"challenges":[…]}` for the player.
    pub fn challenges_json(&self, view: &PlayerView<'_>, active_only: bool) -> String {
        let mut out =
            String::with_capacity(self.static_json_len + self.goals.len() * GOAL_TAIL_MAX + 32);
        out.push_str("{\"challenges\":[");
        let mut first = true;
        for ci in 0..self.challenges.len() {
            if active_only
                && !self.challenges[ci]
                    .goals
                    .clone()
                    .any(|gi| view.is_active(gi))
            {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.write_challenge_json(&mut out, ci, view, active_only);
        }
        out.push_str("]}");
        out
    }

    /// Writes one challenge object for the player.
    pub fn challenge_json(&self, ci: usize, view: &PlayerView<'_>, active_only: bool) -> String {
        let c = &self.challenges[ci];
        let mut out = String::with_capacity(
            c.json_head.len()
                + c.goals
                    .clone()
                    .map(|gi| self.goals[gi].json_head.len() + GOAL_TAIL_MAX)
                    .sum::<usize>()
                + 4,
        );
        self.write_challenge_json(&mut out, ci, view, active_only);
        out
    }

    fn write_challenge_json(
        &self,
        out: &mut String,
        ci: usize,
        view: &PlayerView<'_>,
        active_only: bool,
    ) {
        let c = &self.challenges[ci];
        out.push_str(&c.json_head);
        let mut first = true;
        for gi in c.goals.clone() {
            if active_only && !view.is_active(gi) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.write_goal_json(out, gi, view);
        }
        out.push_str("]}");
    }

    fn write_goal_json(&self, out: &mut String, gi: usize, view: &PlayerView<'_>) {
        let e = &self.goals[gi];
        out.push_str(&e.json_head);
        let d = view.display(gi);
        let opt_time = |out: &mut String, t: Option<DateTime<Utc>>| {
            if let Some(t) = t {
                write_rfc3339(out, t);
            }
        };
        out.push_str("\"progress\":");
        write_i64(out, d.progress.into());
        out.push_str(",\"status\":\"");
        out.push_str(d.status.as_str());
        out.push_str(if d.locked {
            "\",\"locked\":true,\"completedAt\":\""
        } else {
            "\",\"locked\":false,\"completedAt\":\""
        });
        opt_time(out, d.completed_at);
        out.push_str("\",\"claimedAt\":\"");
        opt_time(out, d.claimed_at);
        out.push_str(if d.is_active {
            "\",\"isActive\":true,\"expiresAt\":\""
        } else {
            "\",\"isActive\":false,\"expiresAt\":\""
        });
        opt_time(out, d.expires_at);
        out.push_str("\",\"expiresInSeconds\":");
        write_i64(out, d.expires_in_seconds.into());
        out.push('}');
    }

    /// `service.GetChallengesResponse` for the player, encoded: the pre-encoded static
    /// fields of each goal with the per-player fields appended (protobuf messages may be
    /// concatenated field by field). Decodes to exactly [`Self::challenges_pb`].
    pub fn challenges_proto(&self, view: &PlayerView<'_>, active_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.static_proto_len + self.goals.len() * 96);
        let mut challenge = Vec::with_capacity(4096);
        let mut tail = Vec::with_capacity(128);
        let mut ts = String::with_capacity(20);
        for c in &self.challenges {
            if active_only && !c.goals.clone().any(|gi| view.is_active(gi)) {
                continue;
            }
            challenge.clear();
            challenge.extend_from_slice(&c.proto_head);
            for gi in c.goals.clone() {
                if active_only && !view.is_active(gi) {
                    continue;
                }
                tail.clear();
                encode_goal_tail(&mut tail, &view.display(gi), &mut ts);
                let head = &self.goals[gi].proto_head;
                encode_key(4, WireType::LengthDelimited, &mut challenge);
                encode_varint((head.len() + tail.len()) as u64, &mut challenge);
                challenge.extend_from_slice(head);
                challenge.extend_from_slice(&tail);
            }
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(challenge.len() as u64, &mut out);
            out.extend_from_slice(&challenge);
        }
        out
    }

    /// The same content as [`Self::challenges_json`], as protobuf (gRPC).
    pub fn challenges_pb(
        &self,
        view: &PlayerView<'_>,
        active_only: bool,
    ) -> pb::GetChallengesResponse {
        let challenges = (0..self.challenges.len())
            .filter(|&ci| {
                !active_only
                    || self.challenges[ci]
                        .goals
                        .clone()
                        .any(|gi| view.is_active(gi))
            })
            .map(|ci| self.challenge_pb(ci, view, active_only))
            .collect();
        pb::GetChallengesResponse { challenges }
    }

    pub fn challenge_pb(
        &self,
        ci: usize,
        view: &PlayerView<'_>,
        active_only: bool,
    ) -> pb::Challenge {
        let c = &self.challenges[ci];
        pb::Challenge {
            challenge_id: c.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            goals: c
                .goals
                .clone()
                .filter(|&gi| !active_only || view.is_active(gi))
                .map(|gi| self.goal_pb(gi, view))
                .collect(),
        }
    }

    fn goal_pb(&self, gi: usize, view: &PlayerView<'_>) -> pb::Goal {
        let g = &self.goals[gi].goal;
        let d = view.display(gi);
        pb::Goal {
            goal_id: g.id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            requirement: Some(requirement_pb(g)),
            reward: Some(reward_pb(g)),
            prerequisites: g.prerequisites.clone(),
            progress: d.progress,
            status: d.status.as_str().to_string(),
            locked: d.locked,
            completed_at: rfc3339_opt(d.completed_at),
            claimed_at: rfc3339_opt(d.claimed_at),
            is_active: d.is_active,
            expires_at: rfc3339_opt(d.expires_at),
            expires_in_seconds: d.expires_in_seconds,
        }
    }
}

pub fn requirement_pb(g: &Goal) -> pb::Requirement {
    pb::Requirement {
        stat_code: g.requirement.stat_code.clone(),
        operator: g.requirement.operator.clone(),
        target_value: g.requirement.target_value,
    }
}

pub fn reward_pb(g: &Goal) -> pb::Reward {
    pb::Reward {
        r#type: g.reward.reward_type.as_str().to_string(),
        reward_id: g.reward.reward_id.clone(),
        quantity: g.reward.quantity,
    }
}

/// Fields 1–6 of `service.Goal` (the static ones), encoded.
fn goal_proto_head(g: &Goal) -> Vec<u8> {
    pb::Goal {
        goal_id: g.id.clone(),
        name: g.name.clone(),
        description: g.description.clone(),
        requirement: Some(requirement_pb(g)),
        reward: Some(reward_pb(g)),
        prerequisites: g.prerequisites.clone(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Fields 7–14 of `service.Goal` (the per-player ones), encoded as prost would: in field
/// order, zero values omitted.
fn encode_goal_tail(buf: &mut Vec<u8>, d: &GoalDisplay, ts: &mut String) {
    fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
        if !s.is_empty() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
    }
    let mut put_time = |tag: u32, t: Option<DateTime<Utc>>, buf: &mut Vec<u8>| {
        if let Some(t) = t {
            ts.clear();
            write_rfc3339(ts, t);
            put_str(tag, ts, buf);
        }
    };
    if d.progress != 0 {
        prost::encoding::int32::encode(7, &d.progress, buf);
    }
    put_str(8, d.status.as_str(), buf);
    if d.locked {
        prost::encoding::bool::encode(9, &d.locked, buf);
    }
    put_time(10, d.completed_at, buf);
    put_time(11, d.claimed_at, buf);
    if d.is_active {
        prost::encoding::bool::encode(12, &d.is_active, buf);
    }
    put_time(13, d.expires_at, buf);
    if d.expires_in_seconds != 0 {
        prost::encoding::int32::encode(14, &d.expires_in_seconds, buf);
    }
}

fn goal_json_head(g: &Goal) -> String {
    let prerequisites: Vec<String> = g.prerequisites.iter().map(|p| json_str(p)).collect();
    format!(
        "{{\"goalId\":{},\"name\":{},\"description\":{},\
         \"requirement\":{{\"statCode\":{},\"operator\":{},\"targetValue\":{}}},\
         \"reward\":{{\"type\":{},\"rewardId\":{},\"quantity\":{}}},\
         \"prerequisites\":[{}],",
        json_str(&g.id),
        json_str(&g.name),
        json_str(&g.description),
        json_str(&g.requirement.stat_code),
        json_str(&g.requirement.operator),
        g.requirement.target_value,
        json_str(g.reward.reward_type.as_str()),
        json_str(&g.reward.reward_id),
        g.reward.quantity,
        prerequisites.join(",")
    )
}

/// What the player sees of one goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoalDisplay {
    pub progress: i32,
    pub status: Status,
    pub locked: bool,
    pub completed_at: Option<DateTime<Utc>>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    pub assigned_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_seconds: i32,
}

/// One player's rows, viewed at `now`, keyed by flat goal index. Rows of goals no longer in
/// the config are ignored.
pub struct PlayerView<'a> {
    catalog: &'a Catalog,
    /// Viewed state per flat goal index; `None` where the player has no row.
    states: Vec<Option<GoalState>>,
    now: DateTime<Utc>,
    /// End of the current period per schedule (daily, weekly, monthly) and seconds left.
    period_ends: [(DateTime<Utc>, i32); 3],
}

fn schedule_slot(s: Schedule) -> usize {
    match s {
        Schedule::Daily => 0,
        Schedule::Weekly => 1,
        Schedule::Monthly => 2,
    }
}

impl<'a> PlayerView<'a> {
    pub fn new(catalog: &'a Catalog, rows: &[PlayerGoalRow], now: DateTime<Utc>) -> Self {
        let mut view = PlayerView::empty(catalog, now);
        for row in rows {
            if let Some(gi) = catalog.goal_index(&row.goal_id) {
                view.insert(gi, &row.state());
            }
        }
        view
    }

    /// A view with no rows yet; [`Self::insert`] adds them.
    pub fn empty(catalog: &'a Catalog, now: DateTime<Utc>) -> Self {
        let end = |s| {
            let p = rotation::period_containing(s, now);
            (p.end, p.seconds_left(now))
        };
        PlayerView {
            catalog,
            states: vec![None; catalog.goals.len()],
            now,
            period_ends: [
                end(Schedule::Daily),
                end(Schedule::Weekly),
                end(Schedule::Monthly),
            ],
        }
    }

    /// Adds the stored row of goal `gi` (viewed at `now`); a later row of the same goal
    /// replaces an earlier one.
    pub fn insert(&mut self, gi: usize, stored: &GoalState) {
        let goal = &self.catalog.goals[gi].goal;
        self.states[gi] = Some(progress::view(goal, stored, self.now));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The viewed state of a goal the player has a row for.
    pub fn state(&self, gi: usize) -> Option<&GoalState> {
        self.states[gi].as_ref()
    }

    pub fn status(&self, gi: usize) -> Status {
        self.states[gi]
            .as_ref()
            .map_or(Status::NotStarted, |s| s.status)
    }

    pub fn is_active(&self, gi: usize) -> bool {
        self.states[gi].as_ref().is_some_and(|s| s.is_active)
    }

    /// `true` while any prerequisite is neither completed nor claimed.
    pub fn is_locked(&self, gi: usize) -> bool {
        self.catalog.goals[gi]
            .prerequisites
            .iter()
            .any(|&p| !self.states[p].as_ref().is_some_and(|s| s.status.is_done()))
            // A prerequisite id missing from the config (cannot pass validation) locks too.
            || self.catalog.goals[gi].prerequisites.len()
                != self.catalog.goals[gi].goal.prerequisites.len()
    }

    /// Expiry shown for a goal: the end of the current rotation period, if it rotates.
    pub fn expiry(&self, goal: &Goal) -> (Option<DateTime<Utc>>, i32) {
        match goal.rotation {
            Some(r) => {
                let (end, left) = self.period_ends[schedule_slot(r.schedule)];
                (Some(end), left)
            }
            None => (None, 0),
        }
    }

    pub fn display(&self, gi: usize) -> GoalDisplay {
        let goal = &self.catalog.goals[gi].goal;
        let (expires_at, expires_in_seconds) = self.expiry(goal);
        let locked = self.is_locked(gi);
        match &self.states[gi] {
            Some(s) => GoalDisplay {
                progress: s.progress,
                status: s.status,
                locked,
                completed_at: s.completed_at,
                claimed_at: s.claimed_at,
                is_active: s.is_active,
                assigned_at: s.assigned_at,
                expires_at,
                expires_in_seconds,
            },
            None => GoalDisplay {
                progress: 0,
                status: Status::NotStarted,
                locked,
                completed_at: None,
                claimed_at: None,
                is_active: false,
                assigned_at: None,
                expires_at,
                expires_in_seconds,
            },
        }
    }
}
