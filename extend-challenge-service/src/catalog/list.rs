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
/// token from one replica works on another.
fn fnv1a(parts: &[&[u8]]) -> u64 {
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
