//! The list's filters and paging (CONTRACT §8): `tags`, `status`, `pageSize`, `pageToken`.
//!
//! A request without them never comes here: it takes the spliced fast path of [`super::json`]
//! and [`super::proto`] unchanged, so its answer stays byte for byte what it was. With them,
//! a [`ListQuery`] (built once per request, tags resolved to the catalog's tag numbers)
//! decides which goals show; a challenge left without goals is dropped, as `active_only`
//! drops it; the page is a run of the challenges that remain, in config order. The goals
//! are then written by the same per-goal code as the fast path. Deciding costs no
//! allocation per goal: a goal's tags (its own and its challenge's) are numbered at start-up
//! and a match is a look-up in the few requested numbers.
//!
//! The page token is opaque to clients: base64url of `[index, challenge id, fingerprint]`
//! (JSON) where the page starts, and a fingerprint of the filters it was issued for, so a
//! token used with other filters is refused rather than silently skipping challenges.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress::Status;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::{Catalog, PlayerView, json::GOAL_TAIL_MAX};

/// Most challenges one page may hold.
pub const MAX_PAGE_SIZE: i32 = 100;

/// A bad filter or page parameter; the text is the client's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadQuery(pub String);

/// Where a page starts and how many challenges it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub size: usize,
    /// Index in [`Catalog::challenges`] of the first challenge to consider.
    pub start: usize,
}

/// The filters and page of one list request, resolved against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    active_only: bool,
    /// The requested tags the config knows, as tag numbers, sorted; `None`: no tag filter.
    /// `Some(empty)`: tags were asked for but none is in the config, so nothing matches.
    tags: Option<Vec<u32>>,
    status: Option<Status>,
    /// `None`: every challenge, and no `nextPageToken` in the answer.
    page: Option<Page>,
    /// Of the filters (not the page size), to bind page tokens to them.
    fingerprint: u64,
}

/// Numbers `tags` in `ids` (new ones get the next number); the goal's set, sorted, once each.
pub(super) fn tag_set<'a>(
    ids: &mut HashMap<String, u32>,
    tags: impl Iterator<Item = &'a String>,
) -> Box<[u32]> {
    let mut set: Vec<u32> = tags
        .map(|t| {
            let next = ids.len() as u32;
            *ids.entry(t.clone()).or_insert(next)
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    set.into_boxed_slice()
}

/// FNV-1a, 64 bits: stable across builds and processes (unlike std's `DefaultHasher`), so a
/// token from one replica works on another. Each part is followed by a separator.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ["ab"] and ["a", "b"] differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl ListQuery {
    /// Whether the query asks for nothing beyond `active_only`: then the fast path answers.
    pub fn is_plain(tags: &[String], status: &str, page_size: i32, page_token: &str) -> bool {
        tags.is_empty() && status.is_empty() && page_size == 0 && page_token.is_empty()
    }

    /// Whether any goal-level filter is set (a challenge is then listed only if one of its
    /// goals passes).
    fn filters_goals(&self) -> bool {
        self.active_only || self.tags.is_some() || self.status.is_some()
    }

    pub fn page(&self) -> Option<Page> {
        self.page
    }
}

impl Catalog {
    /// Resolves a list request: `tags` (each non-empty), `status` (empty: any), `page_size`
    /// (0: unpaged; else 1–[`MAX_PAGE_SIZE`]) and `page_token` (empty: first page; needs a
    /// page size).
    pub fn list_query(
        &self,
        active_only: bool,
        tags: &[String],
        status: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListQuery, BadQuery> {
        let status = match status {
            "" => None,
            s => Some(Status::parse(s).ok_or_else(|| {
                BadQuery(format!(
                    "invalid status '{s}' (expected not_started, in_progress, completed or claimed)"
                ))
            })?),
        };
        if tags.iter().any(|t| t.trim().is_empty()) {
            return Err(BadQuery("tags must not contain an empty tag".into()));
        }
        let mut asked: Vec<&str> = tags.iter().map(|t| t.trim()).collect();
        asked.sort_unstable();
        asked.dedup();
        let tag_filter = (!asked.is_empty()).then(|| {
            let mut ids: Vec<u32> = asked
                .iter()
                .filter_map(|t| self.tag_ids.get(*t).copied())
                .collect();
            ids.sort_unstable();
            ids
        });
        let mut parts: Vec<&[u8]> = vec![
            if active_only { b"1" } else { b"0" },
            status.map_or("", Status::as_str).as_bytes(),
        ];
        parts.extend(asked.iter().map(|t| t.as_bytes()));
        let fingerprint = fnv1a(&parts);
        let page = match page_size {
            0 if page_token.is_empty() => None,
            0 => {
                return Err(BadQuery(
                    "pageToken needs pageSize (give the same pageSize as for the first page)"
                        .into(),
                ));
            }
            n @ 1..=MAX_PAGE_SIZE => Some(Page {
                size: n as usize,
                start: match page_token {
                    "" => 0,
                    token => self.decode_page_token(token, fingerprint)?,
                },
            }),
            n => {
                return Err(BadQuery(format!(
                    "pageSize must be between 1 and {MAX_PAGE_SIZE}, got {n}"
                )));
            }
        };
        Ok(ListQuery {
            active_only,
            tags: tag_filter,
            status,
            page,
            fingerprint,
        })
    }

    fn encode_page_token(&self, start: usize, fingerprint: u64) -> String {
        let parts = serde_json::json!([
            start,
            self.challenges[start].id,
            format!("{fingerprint:016x}")
        ]);
        URL_SAFE_NO_PAD.encode(parts.to_string())
    }

    /// The index a token's page starts at. A challenge removed from the config since the
    /// token was issued keeps its position; one that moved is found by its id.
    fn decode_page_token(&self, token: &str, fingerprint: u64) -> Result<usize, BadQuery> {
        let bad = || BadQuery("invalid pageToken".into());
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let (index, id, fp): (usize, String, String) =
            serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if fp != format!("{fingerprint:016x}") {
            return Err(BadQuery(
                "pageToken was issued for other tags, status or active_only; keep them the \
                 same on every page"
                    .into(),
            ));
        }
        Ok(match self.challenges.get(index) {
            Some(c) if c.id == id => index,
            _ => self
                .challenge_index(&id)
                .unwrap_or(index.min(self.challenges.len())),
        })
    }

    /// Whether goal `gi` shows under the query's filters.
    pub fn goal_matches(&self, gi: usize, view: &PlayerView<'_>, q: &ListQuery) -> bool {
        (!q.active_only || view.is_active(gi))
            && q.tags.as_ref().is_none_or(|asked| {
                self.goals[gi]
                    .tags
                    .iter()
                    .any(|t| asked.binary_search(t).is_ok())
            })
            && q.status.is_none_or(|s| view.status(gi) == s)
    }

    /// Whether challenge `ci` is listed: always without goal filters (as the fast path),
    /// else if any of its goals shows.
    fn challenge_matches(&self, ci: usize, view: &PlayerView<'_>, q: &ListQuery) -> bool {
        !q.filters_goals()
            || self.challenges[ci]
                .goals
                .clone()
                .any(|gi| self.goal_matches(gi, view, q))
    }

    /// The challenges of the answer, in order, and the next page's token (`None` when
    /// unpaged, `Some("")` on the last page).
    pub fn select(&self, view: &PlayerView<'_>, q: &ListQuery) -> (Vec<usize>, Option<String>) {
        let (start, size) = q.page.map_or((0, usize::MAX), |p| (p.start, p.size));
        let mut listed = Vec::new();
        let mut ci = start;
        while ci < self.challenges.len() && listed.len() < size {
            if self.challenge_matches(ci, view, q) {
                listed.push(ci);
            }
            ci += 1;
        }
        let next = q.page.map(|_| {
            (ci..self.challenges.len())
                .find(|&c| self.challenge_matches(c, view, q))
                .map_or_else(String::new, |c| self.encode_page_token(c, q.fingerprint))
        });
        (listed, next)
    }

    /// `{"challenges":[…]}` (and `"nextPageToken"` when paged) under the query.
    pub fn list_json(&self, view: &PlayerView<'_>, q: &ListQuery) -> String {
        let (listed, next) = self.select(view, q);
        let mut out = String::with_capacity(
            listed
                .iter()
                .map(|&ci| self.challenge_json_len(ci))
                .sum::<usize>()
                + 64,
        );
        out.push_str("{\"challenges\":[");
        for (i, &ci) in listed.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.write_filtered_challenge_json(&mut out, ci, view, q);
        }
        out.push(']');
        if let Some(token) = next {
            // Base64url: nothing to escape.
            out.push_str(",\"nextPageToken\":\"");
            out.push_str(&token);
            out.push('"');
        }
        out.push('}');
        out
    }

    /// One challenge object with only the goals that pass the query's filters (its page
    /// is ignored).
    pub fn challenge_json_filtered(
        &self,
        ci: usize,
        view: &PlayerView<'_>,
        q: &ListQuery,
    ) -> String {
        let mut out = String::with_capacity(self.challenge_json_len(ci));
        self.write_filtered_challenge_json(&mut out, ci, view, q);
        out
    }

    fn challenge_json_len(&self, ci: usize) -> usize {
        let c = &self.challenges[ci];
        c.json_head.len()
            + c.goals
                .clone()
                .map(|gi| self.goals[gi].json_head.len() + self.goals[gi].json_tail.len())
                .sum::<usize>()
            + c.goals.len() * GOAL_TAIL_MAX
            + 4
    }

    fn write_filtered_challenge_json(
        &self,
        out: &mut String,
        ci: usize,
        view: &PlayerView<'_>,
        q: &ListQuery,
    ) {
        let c = &self.challenges[ci];
        out.push_str(&c.json_head);
        let mut first = true;
        for gi in c.goals.clone() {
            if !self.goal_matches(gi, view, q) {
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

    /// The encoded `service.GetChallengesResponse` under the query (gRPC); decodes to
    /// exactly [`Self::list_pb`].
    pub fn list_proto(&self, view: &PlayerView<'_>, q: &ListQuery) -> Vec<u8> {
        let (listed, next) = self.select(view, q);
        let mut out = Vec::with_capacity(
            listed
                .iter()
                .map(|&ci| self.challenge_json_len(ci))
                .sum::<usize>()
                / 2,
        );
        let mut challenge = Vec::with_capacity(4096);
        let mut scratch = super::proto::Scratch::default();
        for ci in listed {
            let c = &self.challenges[ci];
            challenge.clear();
            challenge.extend_from_slice(&c.proto_head);
            for gi in c.goals.clone() {
                if self.goal_matches(gi, view, q) {
                    self.encode_goal(&mut challenge, gi, view, &mut scratch);
                }
            }
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(challenge.len() as u64, &mut out);
            out.extend_from_slice(&challenge);
        }
        if let Some(token) = next.filter(|t| !t.is_empty()) {
            prost::encoding::string::encode(2, &token, &mut out);
        }
        out
    }

    /// [`Self::list_proto`] as prost structs.
    pub fn list_pb(&self, view: &PlayerView<'_>, q: &ListQuery) -> pb::GetChallengesResponse {
        let (listed, next) = self.select(view, q);
        pb::GetChallengesResponse {
            challenges: listed
                .into_iter()
                .map(|ci| self.challenge_pb_filtered(ci, view, q))
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }
    }

    /// One `service.Challenge` with only the goals that pass the query's filters.
    pub fn challenge_pb_filtered(
        &self,
        ci: usize,
        view: &PlayerView<'_>,
        q: &ListQuery,
    ) -> pb::Challenge {
        let c = &self.challenges[ci];
        pb::Challenge {
            challenge_id: c.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            goals: c
                .goals
                .clone()
                .filter(|&gi| self.goal_matches(gi, view, q))
                .map(|gi| self.goal_pb(gi, view))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use extend_challenge_common::config::parse_and_validate;
    use extend_challenge_common::progress::{self, Status};
    use serde_json::{Value, json};

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-11-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Challenges a (tag `ca`: goals a1 [x], a2 [y, x]), b (b1 [y]), c (c1, no tags).
    fn catalog() -> Catalog {
        let goal = |id: &str, tags: Value| {
            json!({"goalId": id, "name": id, "eventSource": "statistic", "tags": tags,
                   "requirement": {"statCode": "s", "operator": ">=", "targetValue": 5},
                   "reward": {"type": "ITEM", "rewardId": "r", "quantity": 1}})
        };
        let cfg = json!({"challenges": [
            {"challengeId": "a", "name": "A", "tags": ["ca"],
             "goals": [goal("a1", json!(["x"])), goal("a2", json!(["y", "x"]))]},
            {"challengeId": "b", "name": "B", "goals": [goal("b1", json!(["y"]))]},
            {"challengeId": "c", "name": "C", "goals": [goal("c1", json!([]))]},
        ]});
        Catalog::new(Arc::new(
            parse_and_validate("t.json", &cfg.to_string()).unwrap(),
        ))
    }

    /// a1 in progress and active, b1 claimed; the rest without rows.
    fn view(c: &Catalog) -> PlayerView<'_> {
        let mut v = PlayerView::empty(c, now());
        let a1 = c.goal_index("a1").unwrap();
        let mut s = progress::new_assignment(&c.goal(a1).goal, now());
        s.progress = 2;
        s.status = Status::InProgress;
        v.insert(a1, &s);
        let b1 = c.goal_index("b1").unwrap();
        let mut s = progress::new_assignment(&c.goal(b1).goal, now());
        s.status = Status::Claimed;
        s.is_active = false;
        v.insert(b1, &s);
        v
    }

    fn q(c: &Catalog, tags: &[&str], status: &str, size: i32, token: &str) -> ListQuery {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        c.list_query(false, &tags, status, size, token).unwrap()
    }

    /// Goal ids per listed challenge, and the token.
    fn listed(
        c: &Catalog,
        v: &PlayerView<'_>,
        q: &ListQuery,
    ) -> (Vec<Vec<String>>, Option<String>) {
        let (cis, next) = c.select(v, q);
        let goals = cis
            .into_iter()
            .map(|ci| {
                c.challenges()[ci]
                    .goals
                    .clone()
                    .filter(|&gi| c.goal_matches(gi, v, q))
                    .map(|gi| c.goal(gi).goal.id.clone())
                    .collect()
            })
            .collect();
        (goals, next)
    }

    #[test]
    fn goals_are_numbered_with_their_challenges_tags() {
        let c = catalog();
        let tags = |id: &str| c.goal(c.goal_index(id).unwrap()).tags.to_vec();
        let n = |t: &str| c.tag_ids[t];
        assert_eq!(c.tag_ids.len(), 3);
        let mut a2 = vec![n("ca"), n("y"), n("x")];
        a2.sort_unstable();
        assert_eq!(tags("a2"), a2);
        assert_eq!(tags("b1"), [n("y")]);
        assert!(tags("c1").is_empty());
    }

    #[test]
    fn tags_match_the_goal_or_its_challenge_and_status_what_the_player_sees() {
        let c = catalog();
        let v = view(&c);
        let ids = |q: &ListQuery| listed(&c, &v, q).0;
        assert_eq!(ids(&q(&c, &["x"], "", 0, "")), [vec!["a1", "a2"]]);
        assert_eq!(ids(&q(&c, &["y"], "", 0, "")), [vec!["a2"], vec!["b1"]]);
        assert_eq!(ids(&q(&c, &["ca"], "", 0, "")), [vec!["a1", "a2"]]);
        // Unknown tags match nothing, and do not widen a known one.
        assert!(ids(&q(&c, &["zz"], "", 0, "")).is_empty());
        assert_eq!(
            ids(&q(&c, &["zz", " y "], "", 0, "")),
            [vec!["a2"], vec!["b1"]]
        );
        // A goal without a row is not_started.
        assert_eq!(
            ids(&q(&c, &[], "not_started", 0, "")),
            [vec!["a2"], vec!["c1"]]
        );
        assert_eq!(ids(&q(&c, &[], "in_progress", 0, "")), [vec!["a1"]]);
        assert_eq!(ids(&q(&c, &["y"], "claimed", 0, "")), [vec!["b1"]]);
        assert!(ids(&q(&c, &[], "completed", 0, "")).is_empty());
        // With active_only: only a1 is active.
        let active = c.list_query(true, &["y".into()], "", 0, "").unwrap();
        assert!(ids(&active).is_empty());
        let active = c.list_query(true, &[], "", 0, "").unwrap();
        assert_eq!(ids(&active), [vec!["a1"]]);
    }

    #[test]
    fn pages_end_with_an_empty_token_at_the_last_match() {
        let c = catalog();
        let v = view(&c);
        // Unpaged: no token at all.
        assert_eq!(listed(&c, &v, &q(&c, &[], "", 0, "")).1, None);
        let (p1, t1) = listed(&c, &v, &q(&c, &[], "", 2, ""));
        assert_eq!(p1.len(), 2);
        let t1 = t1.unwrap();
        let (p2, t2) = listed(&c, &v, &q(&c, &[], "", 2, &t1));
        assert_eq!(p2, [vec!["c1"]]);
        assert_eq!(t2.as_deref(), Some(""));
        // b is the last challenge with a `y` goal: its page says it is the last.
        let (p1, t1) = listed(&c, &v, &q(&c, &["y"], "", 1, ""));
        assert_eq!(p1, [vec!["a2"]]);
        let (p2, t2) = listed(&c, &v, &q(&c, &["y"], "", 1, &t1.unwrap()));
        assert_eq!(p2, [vec!["b1"]]);
        assert_eq!(t2.as_deref(), Some(""));
    }

    #[test]
    fn tokens_are_bound_to_their_filters_and_garbage_is_refused() {
        let c = catalog();
        let v = view(&c);
        let token = listed(&c, &v, &q(&c, &["y"], "", 1, "")).1.unwrap();
        assert!(
            token
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
        );
        // The same filters in another order or spelling: accepted.
        let tags = vec!["y".to_string(), "y".to_string()];
        assert!(c.list_query(false, &tags, "", 5, &token).is_ok());
        let err = |tags: &[&str], status: &str, active: bool, size: i32, token: &str| {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            c.list_query(active, &tags, status, size, token)
                .unwrap_err()
                .0
        };
        assert!(err(&["x"], "", false, 1, &token).contains("other tags"));
        assert!(err(&["y"], "claimed", false, 1, &token).contains("other tags"));
        assert!(err(&["y"], "", true, 1, &token).contains("other tags"));
        assert_eq!(err(&[], "", false, 1, "!!"), "invalid pageToken");
        assert_eq!(
            err(&[], "", false, 1, &URL_SAFE_NO_PAD.encode("[1,2]")),
            "invalid pageToken"
        );
        assert!(err(&[], "", false, 0, "abc").contains("pageToken needs pageSize"));
        assert_eq!(
            err(&[], "", false, 101, ""),
            "pageSize must be between 1 and 100, got 101"
        );
        assert!(err(&[], "", false, -1, "").contains("got -1"));
        assert!(err(&["a", " "], "", false, 0, "").contains("empty tag"));
        assert!(err(&[], "done", false, 0, "").contains("invalid status 'done'"));
        // A token whose challenge moved is followed by id; one whose challenge is gone keeps
        // its position.
        let fp = q(&c, &[], "", 1, "").fingerprint;
        let forged = URL_SAFE_NO_PAD.encode(json!([0, "c", format!("{fp:016x}")]).to_string());
        assert_eq!(q(&c, &[], "", 1, &forged).page().unwrap().start, 2);
        let gone = URL_SAFE_NO_PAD.encode(json!([1, "zz", format!("{fp:016x}")]).to_string());
        assert_eq!(q(&c, &[], "", 1, &gone).page().unwrap().start, 1);
    }

    #[test]
    fn fingerprints_are_stable_and_separate_their_parts() {
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(&[b"ab"]), fnv1a(&[b"a", b"b"]));
        assert_eq!(fnv1a(&[b"0", b"", b"pvp"]), fnv1a(&[b"0", b"", b"pvp"]));
    }

    #[test]
    fn plain_means_none_of_the_new_parameters() {
        assert!(ListQuery::is_plain(&[], "", 0, ""));
        assert!(!ListQuery::is_plain(&["a".into()], "", 0, ""));
        assert!(!ListQuery::is_plain(&[], "claimed", 0, ""));
        assert!(!ListQuery::is_plain(&[], "", 1, ""));
        assert!(!ListQuery::is_plain(&[], "", 0, "t"));
    }
}
