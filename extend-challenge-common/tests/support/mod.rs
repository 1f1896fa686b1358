//! Helpers shared by this crate's integration tests.

pub mod explain;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::Delta;
use extend_challenge_common::store::flush::{BatchItem, BatchUser};

/// A batch in which each of `players` reaches each of `goals` once (one event per player).
pub fn batch_of(
    players: &[String],
    goals: &[Arc<Goal>],
    namespace: &str,
    now: DateTime<Utc>,
) -> (Vec<BatchItem>, Vec<BatchUser>) {
    let items = players
        .iter()
        .flat_map(|u| {
            goals.iter().map(move |g| BatchItem {
                user_id: Arc::from(u.as_str()),
                goal: g.clone(),
                namespace: Arc::from(namespace),
                delta: Delta::Count(1),
            })
        })
        .collect();
    let users = players
        .iter()
        .map(|u| BatchUser {
            user_id: Arc::from(u.as_str()),
            keys: goals.len(),
            event_ids: vec![Arc::from(format!("event-{u}").as_str())],
            oldest_at: Some(now),
        })
        .collect();
    (items, users)
}
