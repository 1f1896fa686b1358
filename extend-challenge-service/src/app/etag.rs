//! The list's `ETag` (CONTRACT §10): a weak validator answered with every list, and the
//! `If-None-Match` check that answers `304 Not Modified` without building the list.
//!
//! The tag digests what the list is computed from, never the list itself:
//! - the catalog ([`crate::catalog::Catalog::fingerprint`]) and the request's query;
//! - the player's rows: their count and the sum of their `xmin`, one aggregate
//!   ([`store::version`]), which moves with every write of any writer;
//! - time: the current UTC day when some goal rotates on a global schedule or is a
//!   `daily`-mode goal (daily, weekly and monthly periods all turn at 00:00 UTC), and each
//!   row's per-player window index.
//!
//! It is weak (`W/"…"`): `expiresInSeconds` counts down every second from the same
//! `expiresAt`, so two answers under one tag are equivalent, not byte-identical.

use extend_challenge_common::config::Schedule;
use extend_challenge_common::rotation::utc_day_start;
use extend_challenge_common::store::version;

use super::{ChallengeService, Result};
use crate::catalog::Catalog;

/// What the tag takes from the configuration, computed once.
#[derive(Debug, Clone)]
pub(super) struct TagBasis {
    fingerprint: u64,
    /// Per-player-window goals and their window in seconds.
    windows: Vec<(String, u32)>,
    /// Some goal's view turns at 00:00 UTC.
    turns_daily: bool,
}

impl TagBasis {
    pub(super) fn new(catalog: &Catalog) -> Self {
        let mut windows = Vec::new();
        let mut turns_daily = false;
        for g in catalog.config().challenges.iter().flat_map(|c| &c.goals) {
            match g.rotation.map(|r| r.schedule) {
                Some(Schedule::PerUser { seconds }) => windows.push((g.id.clone(), seconds)),
                Some(_) => turns_daily = true,
                None => {}
            }
            turns_daily |= g.mode == extend_challenge_common::config::ProgressMode::Daily;
        }
        TagBasis {
            fingerprint: catalog.fingerprint(),
            windows,
            turns_daily,
        }
    }
}

impl ChallengeService {
    /// The current `ETag` of `user_id`'s list for the raw query string `query` (one
    /// aggregate query; nothing is built).
    pub async fn list_etag(&self, user_id: &str, query: &str) -> Result<String> {
        let basis = &self.inner.tag_basis;
        let now = self.now();
        let v = version::player_version(&self.inner.pool, user_id, now, &basis.windows).await?;
        let day = if basis.turns_daily {
            utc_day_start(now).timestamp()
        } else {
            0
        };
        let numbers =
            [basis.fingerprint as i64, v.rows, v.xmin_sum, v.windows, day].map(i64::to_le_bytes);
        let mut parts: Vec<&[u8]> = numbers.iter().map(|n| n.as_slice()).collect();
        parts.push(query.as_bytes());
        Ok(format!("W/\"{:016x}\"", crate::catalog::digest(&parts)))
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
