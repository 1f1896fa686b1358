//! REST's encoding of the player's challenges: JSON written by hand into one buffer, the
//! static head of every goal and challenge pre-serialized at start-up ([`goal_head`],
//! [`challenge_head`]) and only the per-player tail appended per request. Field names and
//! order are grpc-gateway's (camelCase, every field present).

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{Challenge, Goal, Reward};

use super::{Catalog, PlayerView};
use crate::timefmt::{write_i64, write_rfc3339};

/// Per-goal JSON tail is at most about this long (numbers, status, three timestamps, claims).
pub(super) const GOAL_TAIL_MAX: usize = 260;

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// `{"challengeId":…,"name":…,"description":…,"goals":[`
pub(super) fn challenge_head(c: &Challenge) -> String {
    format!(
        "{{\"challengeId\":{},\"name\":{},\"description\":{},\"goals\":[",
        json_str(&c.id),
        json_str(&c.name),
        json_str(&c.description)
    )
}

/// `{"type":…,"rewardId":…,"quantity":…}`
fn reward_json(r: &Reward) -> String {
    format!(
        "{{\"type\":{},\"rewardId\":{},\"quantity\":{}}}",
        json_str(r.reward_type.as_str()),
        json_str(&r.reward_id),
        r.quantity
    )
}

/// `"requirement":{"statCode":…,"operator":…,"targetValue":…},"reward":{…}`: the goal's
/// requirement and first reward, as the list's goals and initialize's both carry them.
fn requirement_and_reward(g: &Goal) -> String {
    format!(
        "\"requirement\":{{\"statCode\":{},\"operator\":{},\"targetValue\":{}}},\"reward\":{}",
        json_str(&g.requirement.stat_code),
        json_str(&g.requirement.operator),
        g.requirement.target_value,
        reward_json(&g.reward)
    )
}

/// `{"goalId":…,"name":…,"description":…,"requirement":{…},"reward":{…},"prerequisites":[…],`
pub(super) fn goal_head(g: &Goal) -> String {
    let prerequisites: Vec<String> = g.prerequisites.iter().map(|p| json_str(p)).collect();
    format!(
        "{{\"goalId\":{},\"name\":{},\"description\":{},{},\"prerequisites\":[{}],",
        json_str(&g.id),
        json_str(&g.name),
        json_str(&g.description),
        requirement_and_reward(g),
        prerequisites.join(",")
    )
}

/// `,"rewards":[{…}…]`: the goal's static field after the per-player ones.
pub(super) fn goal_tail(g: &Goal) -> String {
    let rewards: Vec<String> = g.rewards.iter().map(reward_json).collect();
    format!(",\"rewards\":[{}]", rewards.join(","))
}

/// `{"challengeId":…,"goalId":…,"name":…,"description":…,"isActive":`
pub(super) fn assigned_head(g: &Goal) -> String {
    format!(
        "{{\"challengeId\":{},\"goalId\":{},\"name\":{},\"description\":{},\"isActive\":",
        json_str(&g.challenge_id),
        json_str(&g.id),
        json_str(&g.name),
        json_str(&g.description)
    )
}

/// `,"requirement":{…},"reward":{…}}`
pub(super) fn assigned_tail(g: &Goal) -> String {
    format!(",{}}}", requirement_and_reward(g))
}

impl Catalog {
    /// Writes initialize's answer, `{"assignedGoals":[…],"newAssignments":…,"totalActive":…}`,
    /// for the goals `active` (flat indexes, in the order given) as `view` shows them.
    pub fn initialize_json(
        &self,
        view: &PlayerView<'_>,
        active: &[usize],
        new_assignments: i32,
    ) -> String {
        /// The per-player middle: `isActive` … `status`, at most about this long.
        const MIDDLE_MAX: usize = 160;
        let len: usize = active
            .iter()
            .map(|&gi| {
                let e = &self.goals[gi];
                e.assigned_head.len() + e.assigned_tail.len() + MIDDLE_MAX
            })
            .sum();
        let mut out = String::with_capacity(len + 80);
        out.push_str("{\"assignedGoals\":[");
        for (i, &gi) in active.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let e = &self.goals[gi];
            let d = view.display(gi);
            out.push_str(&e.assigned_head);
            out.push_str(if d.is_active {
                "true,\"assignedAt\":\""
            } else {
                "false,\"assignedAt\":\""
            });
            if let Some(t) = d.assigned_at {
                write_rfc3339(&mut out, t);
            }
            out.push_str("\",\"expiresAt\":\"");
            if let Some(t) = d.expires_at {
                write_rfc3339(&mut out, t);
            }
            out.push_str("\",\"progress\":");
            write_i64(&mut out, d.progress.into());
            out.push_str(",\"target\":");
            write_i64(&mut out, e.goal.requirement.target_value.into());
            out.push_str(",\"status\":\"");
            out.push_str(d.status.as_str());
            out.push('"');
            out.push_str(&e.assigned_tail);
        }
        out.push_str("],\"newAssignments\":");
        write_i64(&mut out, new_assignments.into());
        out.push_str(",\"totalActive\":");
        write_i64(
            &mut out,
            i32::try_from(active.len()).unwrap_or(i32::MAX).into(),
        );
        out.push('}');
        out
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

    pub(super) fn write_goal_json(&self, out: &mut String, gi: usize, view: &PlayerView<'_>) {
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
        out.push_str(&e.json_tail);
        out.push_str(",\"timesClaimed\":");
        write_i64(out, d.times_claimed.into());
        out.push_str(",\"maxTimes\":");
        write_i64(out, e.max_times.into());
        if e.goal.groups.is_some() {
            out.push_str(",\"requirementGroups\":");
            let groups = super::proto::requirement_groups_pb(&e.goal, d.parts.as_deref());
            out.push_str(&serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()));
            out.push('}');
        } else {
            out.push_str(",\"requirementGroups\":[]}");
        }
    }
}
