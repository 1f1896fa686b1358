//! gRPC's encoding of the player's challenges: the list as bytes spliced from the
//! pre-encoded static fields of each goal and challenge ([`goal_head`], [`challenge_head`])
//! with the per-player fields appended (the hot `GetUserChallenges`), and as prost structs
//! for the other reads.

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{Challenge, Goal, Reward};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::{self, PartState};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::{Catalog, GoalDisplay, PlayerView};
use crate::timefmt::{rfc3339_opt, write_rfc3339};

/// Fields 1–3 of `service.Challenge` (all but the goals), encoded.
pub(super) fn challenge_head(c: &Challenge) -> Vec<u8> {
    pb::Challenge {
        challenge_id: c.id.clone(),
        name: c.name.clone(),
        description: c.description.clone(),
        goals: Vec::new(),
    }
    .encode_to_vec()
}

impl Catalog {
    /// `service.GetChallengesResponse` for the player, encoded: the pre-encoded static
    /// fields of each goal with the per-player fields appended (protobuf messages may be
    /// concatenated field by field). Decodes to exactly [`Self::challenges_pb`].
    pub fn challenges_proto(&self, view: &PlayerView<'_>, active_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.static_proto_len + self.goals.len() * 96);
        let mut challenge = Vec::with_capacity(4096);
        let mut scratch = Scratch::default();
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
                self.encode_goal(&mut challenge, gi, view, &mut scratch);
            }
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(challenge.len() as u64, &mut out);
            out.extend_from_slice(&challenge);
        }
        out
    }

    /// Appends goal `gi` for the player as field 4 of a `service.Challenge`: its pre-encoded
    /// static fields with the per-player ones spliced in.
    pub(super) fn encode_goal(
        &self,
        challenge: &mut Vec<u8>,
        gi: usize,
        view: &PlayerView<'_>,
        scratch: &mut Scratch,
    ) {
        let Scratch { tail, last, ts } = scratch;
        tail.clear();
        last.clear();
        let d = view.display(gi);
        encode_goal_tail(tail, &d, ts);
        let entry = &self.goals[gi];
        // Fields 16–17 come after the static field 15 (`rewards`).
        if d.times_claimed != 0 {
            prost::encoding::int32::encode(16, &d.times_claimed, last);
        }
        if entry.max_times != 0 {
            prost::encoding::int32::encode(17, &entry.max_times, last);
        }
        if entry.goal.groups.is_some() {
            for group in requirement_groups_pb(&entry.goal, d.parts.as_deref()) {
                prost::encoding::message::encode(18, &group, last);
            }
        }
        let head = &entry.proto_head;
        let rewards = &entry.proto_rewards;
        encode_key(4, WireType::LengthDelimited, challenge);
        encode_varint(
            (head.len() + tail.len() + rewards.len() + last.len()) as u64,
            challenge,
        );
        challenge.extend_from_slice(head);
        challenge.extend_from_slice(tail);
        challenge.extend_from_slice(rewards);
        challenge.extend_from_slice(last);
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
        pb::GetChallengesResponse {
            challenges,
            next_page_token: String::new(),
        }
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

    pub fn goal_pb(&self, gi: usize, view: &PlayerView<'_>) -> pb::Goal {
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
            rewards: rewards_pb(g),
            times_claimed: d.times_claimed,
            max_times: max_times(g),
            requirement_groups: requirement_groups_pb(g, d.parts.as_deref()),
        }
    }
}

/// Buffers reused from goal to goal while splicing a list.
pub(super) struct Scratch {
    tail: Vec<u8>,
    last: Vec<u8>,
    ts: String,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            tail: Vec::with_capacity(128),
            last: Vec::with_capacity(16),
            ts: String::with_capacity(20),
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
    one_reward_pb(&g.reward)
}

/// Every reward of the goal (`rewards[]`).
pub fn rewards_pb(g: &Goal) -> Vec<pb::Reward> {
    g.rewards.iter().map(one_reward_pb).collect()
}

fn one_reward_pb(r: &Reward) -> pb::Reward {
    pb::Reward {
        r#type: r.reward_type.as_str().to_string(),
        reward_id: r.reward_id.clone(),
        quantity: r.quantity,
    }
}

/// Field 15 of `service.Goal` (`rewards`), encoded: static, appended after the per-player
/// fields so the goal's fields stay in field order.
pub(super) fn goal_rewards(g: &Goal) -> Vec<u8> {
    pb::Goal {
        rewards: rewards_pb(g),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A requirement-group goal's groups with the player's progress on each requirement;
/// empty for a goal with one `requirement`.
pub fn requirement_groups_pb(g: &Goal, parts: Option<&[PartState]>) -> Vec<pb::RequirementGroup> {
    let Some(groups) = &g.groups else {
        return Vec::new();
    };
    let parts = parts.unwrap_or(&[]);
    groups
        .groups
        .iter()
        .map(|members| pb::RequirementGroup {
            requirements: members
                .iter()
                .map(|&i| {
                    let c = &groups.criteria[i];
                    pb::GroupRequirement {
                        stat_code: c.stat_code.clone(),
                        operator: c.operator.as_str().to_string(),
                        target_value: c.target_value,
                        progress_mode: c.mode.as_str().to_string(),
                        current: parts.get(i).and_then(|p| p.value).unwrap_or(0),
                        met: progress::requirement_met(groups, parts, i),
                    }
                })
                .collect(),
        })
        .collect()
}

/// `maxTimes` of a goal: its repeat limit; 0 when unlimited or not repeatable.
pub fn max_times(g: &Goal) -> i32 {
    g.repeat
        .map_or(0, |r| i32::try_from(r.max_times).unwrap_or(i32::MAX))
}

/// Fields 1–6 of `service.Goal` (the static ones), encoded.
pub(super) fn goal_head(g: &Goal) -> Vec<u8> {
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
