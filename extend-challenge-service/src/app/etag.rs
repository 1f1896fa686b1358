//! The list's `ETag` (CONTRACT §10): a weak validator answered with every list, and the
//! `If-None-Match` check that answers `304 Not Modified` without building the list.
//!
//! The tag digests what the list is computed from, never the list itself:
//! - the catalog ([`crate::catalog::Catalog::fingerprint`]) and the request's query;
//! - the player's rows: their count and the sum of their `xmin` ([`store::version`]),
//!   which move with every write of any writer;
//! - time: the current UTC day when some goal rotates on a global schedule or is a
//!   `daily`-mode goal (daily, weekly and monthly periods all turn at 00:00 UTC), and the
//!   start of each per-player window the player's rows are in.
//!
//! Two ways to it: [`ChallengeService::list_etag`], one aggregate that sends no row (a
//! request with `If-None-Match`), and [`ChallengeService::list_json_tagged`], the list's own
//! read with `xmin` alongside (a list answered in full pays no second query).
//!
//! It is weak (`W/"…"`): `expiresInSeconds` counts down every second from the same
//! `expiresAt`, so two answers under one tag are equivalent, not byte-identical.

use chrono::{DateTime, Utc};
use extend_challenge_common::config::{ProgressMode, Schedule};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::rotation::{utc_day_start, window};
use extend_challenge_common::store::implicit::MARKER_GOAL_ID;
use extend_challenge_common::store::version::{self, PlayerVersion};

use super::{ChallengeService, Result};
use crate::catalog::{Catalog, ListQuery, PlayerView};

/// What the tag takes from the configuration, computed once.
#[derive(Debug, Clone)]
pub(super) struct TagBasis {
    fingerprint: u64,
    /// Per-player-window goals and their schedule.
    windows: Vec<(String, Schedule)>,
    /// Some goal's view turns at 00:00 UTC.
    turns_daily: bool,
}

impl TagBasis {
    pub(super) fn new(catalog: &Catalog) -> Self {
        let mut windows = Vec::new();
        let mut turns_daily = false;
        for g in catalog.config().challenges.iter().flat_map(|c| &c.goals) {
            match g.rotation.map(|r| r.schedule) {
                Some(s @ Schedule::PerUser { .. }) => windows.push((g.id.clone(), s)),
                Some(_) => turns_daily = true,
                None => {}
            }
            turns_daily |= g.mode == ProgressMode::Daily;
        }
        TagBasis {
            fingerprint: catalog.fingerprint(),
            windows,
            turns_daily,
        }
    }

    /// The start (Unix seconds) of the window at `now` of a per-player goal assigned at
    /// `assigned_at`; 0 for other goals.
    fn window_start(
        &self,
        goal_id: &str,
        assigned_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> i64 {
        match (self.windows.iter().find(|(g, _)| g == goal_id), assigned_at) {
            (Some((_, schedule)), Some(at)) => window(*schedule, Some(at), now).start.timestamp(),
            _ => 0,
        }
    }

    /// What one row adds to the tag's windows: its own window, or for the marker row
    /// (`store::implicit`) the window of every per-player goal anchored at the marker's time
    /// (whichever of them are implicit: counting them all only turns the tag more often).
    fn row_windows(
        &self,
        goal_id: &str,
        assigned_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> i64 {
        if goal_id == MARKER_GOAL_ID {
            self.windows
                .iter()
                .map(|(g, _)| self.window_start(g, assigned_at, now))
                .fold(0, i64::wrapping_add)
        } else {
            self.window_start(goal_id, assigned_at, now)
        }
    }

    fn tag(&self, v: &PlayerVersion, windows: i64, now: DateTime<Utc>, query: &str) -> String {
        let day = if self.turns_daily {
            utc_day_start(now).timestamp()
        } else {
            0
        };
        let numbers =
            [self.fingerprint as i64, v.rows, v.xmin_sum, windows, day].map(i64::to_le_bytes);
        let mut parts: Vec<&[u8]> = numbers.iter().map(|n| n.as_slice()).collect();
        parts.push(query.as_bytes());
        format!("W/\"{:016x}\"", crate::catalog::digest(&parts))
    }
}

impl ChallengeService {
    /// The current `ETag` of `user_id`'s list for the raw query string `query`: one
    /// aggregate query; nothing is built.
    pub async fn list_etag(&self, user_id: &str, query: &str) -> Result<String> {
        let snap = self.snapshot();
        let basis = &snap.tag_basis;
        let now = self.now();
        let mut goals: Vec<&str> = basis.windows.iter().map(|(g, _)| g.as_str()).collect();
        if !goals.is_empty() {
            goals.push(MARKER_GOAL_ID);
        }
        let (v, assigned) = version::player_version(&self.inner.pool, user_id, &goals).await?;
        let windows = assigned
            .iter()
            .map(|(g, at)| basis.row_windows(g, *at, now))
            .fold(0i64, i64::wrapping_add);
        Ok(basis.tag(&v, windows, now, query))
    }

    /// `GET /v1/challenges` as [`ChallengeService::list_json`] answers it, with its `ETag`
    /// (equal to [`ChallengeService::list_etag`]'s for the same rows), from one read.
    pub async fn list_json_tagged(
        &self,
        user_id: &str,
        req: &pb::GetChallengesRequest,
        query: &str,
    ) -> Result<(String, String)> {
        let snap = self.snapshot();
        let plain = ListQuery::is_plain(&req.tags, &req.status, req.page_size, &req.page_token);
        // A bad parameter is refused before the database is read.
        let q = if plain {
            None
        } else {
            Some(self.list_query(&snap, req)?)
        };
        let basis = &snap.tag_basis;
        let catalog = &*snap;
        let now = self.now();
        let ((view, windows), v) = version::fold_goal_rows_versioned(
            &self.inner.pool,
            user_id,
            || (PlayerView::empty(catalog, now), 0i64),
            |(view, windows), row| {
                *windows =
                    windows.wrapping_add(basis.row_windows(row.goal_id, row.assigned_at, now));
                crate::rows::fold_row(catalog, view, row);
            },
        )
        .await?;
        let body = match q {
            None => catalog.challenges_json(&view, req.active_only),
            Some(q) => catalog.list_json(&view, &q),
        };
        Ok((body, basis.tag(&v, windows, now, query)))
    }
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`). Comparison is weak,
/// as RFC 9110 asks for `If-None-Match`: `W/` prefixes are ignored on both sides.
pub fn none_match(header: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = bare(etag);
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == want)
}

#[cfg(test)]
mod tests {
    use super::none_match;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_star() {
        let tag = "W/\"00ff\"";
        assert!(none_match("W/\"00ff\"", tag));
        assert!(none_match("\"00ff\"", tag));
        assert!(none_match("\"aa\", W/\"00ff\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("W/\"00fe\"", tag));
        assert!(!none_match("", tag));
    }
}
