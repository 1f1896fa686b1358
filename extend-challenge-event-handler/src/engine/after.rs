//! What follows a committed batch, off the durable path: the live progress notification
//! (CONTRACT §10, `store::live`) and the event trail (`store::trail`). Neither is part of
//! the batch's transaction, and neither delays an acknowledgement.

use std::collections::HashMap;

use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::Ignored;
use extend_challenge_common::store::flush::ItemResult;
use extend_challenge_common::store::trail::EventRow;

use super::Engine;
use crate::buffer::{Batch, Fate};

/// The trail's `eventType` of an event.
pub(super) fn event_type(login: bool) -> &'static str {
    if login { "login" } else { "statistic" }
}

/// The trail row of an event of `user_id` (`stat_code` is ignored for a login), without
/// goals yet.
pub(super) fn event_row(
    user_id: &str,
    event_id: &str,
    login: bool,
    stat_code: &str,
    value: i32,
    received_at: chrono::DateTime<chrono::Utc>,
) -> EventRow {
    EventRow::new(
        user_id,
        received_at,
        event_id,
        event_type(login),
        if login { "" } else { stat_code },
        i64::from(value),
    )
}

/// Adds `goal`'s `result` to `row`.
pub(super) fn push_result(row: &mut EventRow, goal: &Goal, result: ItemResult) {
    row.push_goal(
        goal.row_goal_id(),
        result.ignored.and_then(Ignored::reason),
        result.before,
        result.after,
    );
}

/// A result that reached no row.
pub(super) fn ignored(why: Ignored) -> ItemResult {
    ItemResult {
        before: 0,
        after: 0,
        written: false,
        ignored: Some(why),
    }
}

impl Engine {
    /// After a batch (committed, or partly dead-lettered): tells the service replicas
    /// which players' goals changed, and queues the trail entries of the batch's events.
    /// Both are queued: the notifier (`crate::live`) and the trail writer send them, so the
    /// flush worker goes on with the next batch.
    pub(super) fn after_commit(
        &self,
        batch: &Batch,
        fates: &[Fate],
        results: &[Option<ItemResult>],
        _now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut changed: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut trail_rows = Vec::new();
        let trail_on = self.trail.enabled();
        let mut start = 0;
        for (u, (user, fate)) in batch.users.iter().zip(fates).enumerate() {
            let end = start + user.keys;
            let items = &batch.items[start..end];
            let results = &results[start..end];
            if *fate == Fate::Written {
                for (item, r) in items.iter().zip(results) {
                    if r.is_some_and(|r| r.written) {
                        let goals = changed.entry(&*item.user_id).or_default();
                        let g = item.goal.row_goal_id();
                        if !goals.contains(&g) {
                            goals.push(g);
                        }
                    }
                }
            }
            if trail_on && *fate != Fate::Back {
                for ev in batch.trails.get(u).into_iter().flatten() {
                    let Some(first) = ev.goals.first() else {
                        continue;
                    };
                    let mut row = event_row(
                        &user.user_id,
                        &ev.id,
                        ev.login,
                        &first.requirement.stat_code,
                        ev.value,
                        ev.received_at,
                    );
                    for goal in ev.goals.iter() {
                        let result = match fate {
                            Fate::DeadLettered => Some(ignored(Ignored::DeadLettered)),
                            _ => items
                                .iter()
                                .position(|i| i.goal.id == goal.id)
                                .and_then(|k| results[k]),
                        };
                        // No result: the user's data was erased after the event, or the
                        // user has no state at all (never initialized, auto-initialize off).
                        if let Some(result) = result {
                            push_result(&mut row, goal, result);
                        }
                    }
                    if row.entries() > 0 {
                        trail_rows.push(row);
                    }
                }
            }
            start = end;
        }
        if !trail_rows.is_empty() {
            self.trail.push(trail_rows);
        }
        if changed.is_empty() {
            return;
        }
        self.live.push(changed);
    }
}
