//! What follows a committed batch, off the durable path: the live progress notification
//! (CONTRACT §10, `store::live`) and the event trail (`store::trail`). Neither is part of
//! the batch's transaction, and neither delays an acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;

use extend_challenge_common::store::flush::ItemResult;
use extend_challenge_common::store::live;

use super::Engine;
use crate::buffer::{Batch, Fate};
use crate::metrics;

impl Engine {
    /// Tells the service replicas which players' goals the batch changed. The notification
    /// is sent by a task of its own, so the flush worker goes on with the next batch.
    pub(super) fn after_commit(
        &self,
        batch: &Batch,
        fates: &[Fate],
        results: &[Option<ItemResult>],
        _now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut changed: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut start = 0;
        for (user, fate) in batch.users.iter().zip(fates) {
            let end = start + user.keys;
            if *fate == Fate::Written {
                for (item, r) in batch.items[start..end].iter().zip(&results[start..end]) {
                    if r.is_some_and(|r| r.written) {
                        let goals = changed.entry(&*item.user_id).or_default();
                        let g = item.goal.row_goal_id();
                        if !goals.contains(&g) {
                            goals.push(g);
                        }
                    }
                }
            }
            start = end;
        }
        if changed.is_empty() {
            return;
        }
        let payloads = Arc::new(live::encode(changed));
        let pool = self.pool.clone();
        tokio::spawn(async move {
            match live::notify(&pool, &payloads).await {
                Ok(()) => metrics::LIVE_NOTIFICATIONS_TOTAL
                    .with_label_values(&["sent"])
                    .inc_by(payloads.len() as u64),
                Err(e) => {
                    metrics::LIVE_NOTIFICATIONS_TOTAL
                        .with_label_values(&["failed"])
                        .inc_by(payloads.len() as u64);
                    tracing::debug!(error = %e, "live progress notification not sent");
                }
            }
        });
    }
}
