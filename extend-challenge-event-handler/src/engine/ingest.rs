//! The ingest path: a validated event → deltas → de-duplication (in-process window, Redis
//! lease, event ledger) → buffer → acknowledgement (at once in buffered mode, after its
//! commit in durable mode); and IAM's GDPR erasure, carried out at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::{self, Delta, Ignored};
use tonic::{Code, Status};

use super::{Engine, EngineCatalog, after};
use crate::buffer::{Contribution, Enqueued, TrailEvent};
use crate::dedup::Claim;
use crate::event::{Erasure, Event, EventKind, Invalid, Source};
use crate::metrics;

/// An event the handler answers `OK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Its deltas are buffered (and, in durable mode, committed).
    Applied,
    /// A no-op: nothing to apply, or applied before.
    Skipped(Skip),
}

/// Why an accepted event changed nothing (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Another namespace than this deployment's.
    NamespaceMismatch,
    /// No goal counts this login or stat code.
    NoMatchingGoal,
    /// Goals use this stat code, but the update moves none of them.
    NoEffect,
    /// A redelivery of an event buffered or applied before.
    Duplicate,
    /// A generic-envelope `eventType` this handler does not consume.
    UnknownEventType,
    /// A GDPR deletion the store reports as rate limited (not asked for; the data is gone
    /// either way).
    RecentlyErased,
}

impl Skip {
    /// The metric's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NamespaceMismatch => "namespace_mismatch",
            Skip::NoMatchingGoal => "no_matching_goal",
            Skip::NoEffect => "no_effect",
            Skip::Duplicate => "duplicate",
            Skip::UnknownEventType => "unknown_event_type",
            Skip::RecentlyErased => "recently_erased",
        }
    }
}

/// Why an event is not accepted. The platform redelivers everything but `Invalid`; the
/// message (`Display`) is the RPC status's, [`IngestError::code`] its code,
/// [`IngestError::outcome`] and [`IngestError::reason`] the metric's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Refused at the door: the message does not make a valid event.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The buffer holds `max_pending_keys` keys and the event brings new ones.
    #[error("event buffer is full; retry later")]
    BufferFull,
    /// Another replica (or a concurrent copy here) holds the event id's Redis lease.
    #[error("this event id is being processed by another replica; retry later")]
    DuplicateInFlight,
    /// Durable mode: the event's commit did not come within `ack_deadline`.
    #[error("the event is buffered but not yet committed; retry later")]
    CommitTimeout,
    /// The event may predate this process and the ledger cannot be read.
    #[error("the database is unreachable: cannot tell whether this event was applied; retry later")]
    LedgerUnavailable,
    /// A GDPR erasure the database refused.
    #[error("cannot erase the player's data now; retry later")]
    ErasureFailed,
    /// A GDPR erasure that did not finish within `ack_deadline`.
    #[error("cannot erase the player's data now; retry later")]
    ErasureTimeout,
}

impl IngestError {
    /// The RPC status code.
    pub fn code(self) -> Code {
        match self {
            IngestError::Invalid(_) => Code::InvalidArgument,
            IngestError::BufferFull => Code::ResourceExhausted,
            IngestError::DuplicateInFlight
            | IngestError::CommitTimeout
            | IngestError::LedgerUnavailable
            | IngestError::ErasureFailed
            | IngestError::ErasureTimeout => Code::Unavailable,
        }
    }

    /// The metric's `outcome` label: `invalid`, `rejected` (the handler is overloaded) or
    /// `unavailable` (the answer depends on something not there yet).
    pub fn outcome(self) -> &'static str {
        match self.code() {
            Code::InvalidArgument => "invalid",
            Code::ResourceExhausted => "rejected",
            _ => "unavailable",
        }
    }

    /// The metric's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            IngestError::Invalid(invalid) => invalid.reason(),
            IngestError::BufferFull => "buffer_full",
            IngestError::DuplicateInFlight => "duplicate_in_flight",
            IngestError::CommitTimeout => "commit_timeout",
            IngestError::LedgerUnavailable => "ledger_unavailable",
            IngestError::ErasureFailed => "erasure_failed",
            IngestError::ErasureTimeout => "erasure_timeout",
        }
    }
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Counts what became of one event in `challenge_events_total` (`event` is the kind's
/// label, or `generic` for a generic-envelope message that never became an event). The
/// counter's only writer: [`Engine::ingest`], [`Engine::erase`] and the gRPC services'
/// answers at the door (invalid messages, unknown event types) all come through here, so
/// the labels cannot drift apart.
pub fn count_event(event: &str, outcome: &Result<Accepted, IngestError>) {
    let (outcome, reason) = match outcome {
        Ok(Accepted::Applied) => ("accepted", "ok"),
        Ok(Accepted::Skipped(skip)) => ("skipped", skip.reason()),
        Err(e) => (e.outcome(), e.reason()),
    };
    metrics::EVENTS_TOTAL
        .with_label_values(&[event, outcome, reason])
        .inc();
}

impl Engine {
    /// Handles one validated event; the result is the RPC's answer (an [`IngestError`]
    /// becomes its status).
    pub async fn ingest(&self, ev: Event) -> Result<Accepted, IngestError> {
        let kind = ev.kind.as_str();
        let started = Instant::now();
        // One catalog version per event: the goals it is matched to and its trail agree.
        let catalog = self.catalogs.load();
        let res = self.ingest_inner(&catalog, &ev).await;
        metrics::EVENT_PROCESSING_SECONDS
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        count_event(kind, &res);
        if self.trail.enabled() {
            self.trail_at_the_door(&catalog, &ev, &res);
        }
        match res {
            Ok(Accepted::Skipped(skip)) => {
                let reason = skip.reason();
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        namespace = %ev.namespace,
                        "event skipped (OK, no-op)"
                    )
                });
            }
            Ok(Accepted::Applied) => {}
            Err(e) => {
                let reason = e.reason();
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        "event not accepted; the platform will redeliver"
                    )
                });
            }
        }
        res
    }

    async fn ingest_inner(
        &self,
        catalog: &EngineCatalog,
        ev: &Event,
    ) -> Result<Accepted, IngestError> {
        if !self.opts.namespace.is_empty() && ev.namespace != self.opts.namespace {
            return Ok(Accepted::Skipped(Skip::NamespaceMismatch));
        }
        let arrival = self.clock.now();
        let seq = self.arrival.fetch_add(1, Ordering::Relaxed);
        let at_time = ev.timestamp.unwrap_or(arrival);
        if let Some(ts) = ev.timestamp {
            let age = (arrival - ts).num_milliseconds() as f64 / 1000.0;
            metrics::EVENT_AGE_SECONDS.observe(age.max(0.0));
        }
        let at = (at_time.timestamp_millis(), seq);
        let deltas: Vec<(Arc<Goal>, Delta)> = match &ev.source {
            Source::Login => catalog
                .config
                .login_goals()
                .iter()
                .map(|g| (g.clone(), progress::delta_for_login(g)))
                .collect(),
            Source::Stat { code, value, inc } => {
                let goals = catalog.config.stat_goals(code);
                if goals.is_empty() {
                    return Ok(Accepted::Skipped(Skip::NoMatchingGoal));
                }
                goals
                    .iter()
                    .filter_map(|g| {
                        progress::delta_for_stat(g, *value, *inc, at).map(|d| (g.clone(), d))
                    })
                    .collect()
            }
        };
        if deltas.is_empty() {
            return Ok(Accepted::Skipped(match ev.source {
                Source::Login => Skip::NoMatchingGoal,
                Source::Stat { .. } => Skip::NoEffect,
            }));
        }
        tracing::debug!(event = ev.kind.as_str(), user_id = %ev.user_id, id = %ev.id, "event");
        // The keys a durable acknowledgement waits for.
        let goals: Vec<Arc<Goal>> = if self.durable() {
            deltas.iter().map(|(g, _)| g.clone()).collect()
        } else {
            Vec::new()
        };
        let waiter = Waiter {
            part: self.buffer.partition_of(&ev.user_id),
            user_id: &ev.user_id,
            goals: &goals,
        };

        let part = waiter.part;
        let mut leased = false;
        if !ev.id.is_empty() {
            if let Some(generation) = self.buffer.lookup(part, &ev.id) {
                return self.duplicate(&waiter, generation).await;
            }
            let may_predate = match ev.timestamp {
                Some(ts) => ts < self.ledger_check_before,
                None => self.clock.now() < self.untimed_check_before,
            };
            if may_predate && self.applied_before(&ev.id).await? {
                return Ok(Accepted::Skipped(Skip::Duplicate));
            }
            if let Some(redis) = &self.redis {
                match redis.claim(&ev.id).await {
                    Claim::Claimed => leased = true,
                    Claim::Done => return Ok(Accepted::Skipped(Skip::Duplicate)),
                    Claim::InFlight => {
                        // Ours (a concurrent copy) or another replica's.
                        return match self.buffer.lookup(part, &ev.id) {
                            Some(generation) => self.duplicate(&waiter, generation).await,
                            None => Err(IngestError::DuplicateInFlight),
                        };
                    }
                    Claim::Expired { current } => {
                        // Its owner died (or stalled past its lease): applied, or not yet?
                        if self.applied_before(&ev.id).await? {
                            return Ok(Accepted::Skipped(Skip::Duplicate));
                        }
                        match redis.take_over(&ev.id, &current).await {
                            Ok(true) => {
                                metrics::DEDUP_TAKEOVERS_TOTAL.inc();
                                leased = true;
                            }
                            Ok(false) => {
                                return Err(IngestError::DuplicateInFlight);
                            }
                            // Redis failed: as if it were not there.
                            Err(_) => {}
                        }
                    }
                    Claim::Unknown => {}
                }
            }
        }
        let trail = self.trail.enabled().then(|| TrailEvent {
            id: Arc::from(ev.id.as_str()),
            login: matches!(ev.source, Source::Login),
            value: match ev.source {
                Source::Stat { value, .. } => value,
                Source::Login => 0,
            },
            received_at: arrival,
            goals: deltas.iter().map(|(g, _)| g.clone()).collect(),
        });
        let enqueued = self.buffer.enqueue(
            part,
            Contribution {
                id: &ev.id,
                user_id: &ev.user_id,
                namespace: &ev.namespace,
                deltas,
                at: at_time,
                trail,
            },
        );
        match enqueued {
            Enqueued::Accepted(generation) => {
                if self.durable() && !self.await_commit(&waiter, generation).await {
                    return Err(IngestError::CommitTimeout);
                }
                Ok(Accepted::Applied)
            }
            Enqueued::Duplicate(generation) => self.duplicate(&waiter, generation).await,
            Enqueued::Full => {
                if leased && let Some(redis) = &self.redis {
                    redis.release(&ev.id).await;
                }
                Err(IngestError::BufferFull)
            }
        }
    }

    /// The trail entries decided before any row is read: a redelivery (`duplicate`, for
    /// each goal the event feeds) and, for an accepted stat event, each goal its negative
    /// value leaves alone (`negative_value`, the rule of `progress::stat_delta`).
    fn trail_at_the_door(
        &self,
        catalog: &EngineCatalog,
        ev: &Event,
        res: &Result<Accepted, IngestError>,
    ) {
        let (duplicate, accepted) = match res {
            Ok(Accepted::Skipped(Skip::Duplicate)) => (true, false),
            Ok(Accepted::Applied) | Ok(Accepted::Skipped(Skip::NoEffect)) => (false, true),
            _ => return,
        };
        let received_at = self.clock.now();
        // Each goal the event reaches, with the rule that leaves it alone at the door.
        type Reached = Vec<(Arc<Goal>, Option<Ignored>)>;
        let (login, value, goals): (bool, i32, Reached) = match &ev.source {
            Source::Login => (
                true,
                0,
                catalog
                    .config
                    .login_goals()
                    .iter()
                    .map(|g| (g.clone(), None))
                    .collect(),
            ),
            Source::Stat { code, value, inc } => (
                false,
                *value,
                catalog
                    .config
                    .stat_goals(code)
                    .iter()
                    .map(|g| {
                        (
                            g.clone(),
                            progress::stat_delta(g, *value, *inc, (0, 0)).err(),
                        )
                    })
                    .collect(),
            ),
        };
        let Some((first, _)) = goals.first() else {
            return;
        };
        let mut row = after::event_row(
            &ev.user_id,
            &ev.id,
            login,
            &first.requirement.stat_code,
            value,
            received_at,
        );
        for (g, why) in goals.iter() {
            match (duplicate, accepted, why) {
                (true, _, None) => {
                    after::push_result(&mut row, g, after::ignored(Ignored::Duplicate))
                }
                (_, true, Some(why)) => after::push_result(&mut row, g, after::ignored(*why)),
                _ => {}
            }
        }
        if row.entries() > 0 {
            self.trail.push([row]);
        }
    }

    /// IAM's GDPR deletion request (CONTRACT §3.6): erases the user's data at once and
    /// durably, in the same store function as the service's `DeleteUserData`, and records
    /// the tombstone that makes every flush drop updates from earlier events. Not rate
    /// limited: an IAM deletion is authoritative, and a redelivery only moves the tombstone
    /// forward. Another namespace: `OK`, skipped. Database down: `Unavailable` (the
    /// platform redelivers; the request is never lost).
    pub async fn erase(&self, e: Erasure) -> Result<Accepted, IngestError> {
        let res = self.erase_inner(&e).await;
        count_event(EventKind::GdprDeletion.as_str(), &res);
        res
    }

    async fn erase_inner(&self, e: &Erasure) -> Result<Accepted, IngestError> {
        let kind = EventKind::GdprDeletion.as_str();
        if !self.opts.namespace.is_empty() && e.namespace != self.opts.namespace {
            self.limiter.warn("namespace_mismatch", || {
                tracing::warn!(event = kind, namespace = %e.namespace, "event skipped (OK, no-op)")
            });
            return Ok(Accepted::Skipped(Skip::NamespaceMismatch));
        }
        let started = Instant::now();
        let now = self.clock.now();
        let erased = tokio::time::timeout(
            self.opts.ack_deadline,
            extend_challenge_common::store::erasure::erase_user(
                &self.pool,
                &e.user_id,
                &e.namespace,
                now,
                None,
            ),
        )
        .await;
        metrics::EVENT_PROCESSING_SECONDS
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        // Not done: the platform redelivers the request (it is never lost).
        let failed = |why: IngestError, error: String| {
            tracing::error!(
                audit = true,
                action = "gdpr_user_data_deletion",
                outcome = "failed",
                source = "iam_event",
                user_id = %e.user_id,
                namespace = %e.namespace,
                event_id = %e.id,
                %error,
                "player data erasure failed; the platform will redeliver"
            );
            Err(why)
        };
        match erased {
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::Erased(done))) => {
                tracing::info!(
                    audit = true,
                    action = "gdpr_user_data_deletion",
                    outcome = "completed",
                    source = "iam_event",
                    user_id = %e.user_id,
                    namespace = %e.namespace,
                    event_id = %e.id,
                    rows = done.progress_rows,
                    grant_rows = done.grant_rows,
                    dead_letter_rows = done.dead_letter_rows,
                    "player data erased"
                );
                Ok(Accepted::Applied)
            }
            // Not asked for a rate limit: cannot happen; the erasure is done either way.
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::RateLimited)) => {
                Ok(Accepted::Skipped(Skip::RecentlyErased))
            }
            Ok(Err(error)) => failed(IngestError::ErasureFailed, error.to_string()),
            Err(_) => failed(IngestError::ErasureTimeout, "timed out".to_string()),
        }
    }

    /// Whether the ledger records `id` as applied (then Redis learns it is done). The
    /// database must answer: without it, a redelivery of an applied event cannot be told
    /// from a new one, so the event is refused `Unavailable` (the platform redelivers).
    async fn applied_before(&self, id: &str) -> Result<bool, IngestError> {
        metrics::DEDUP_LEDGER_LOOKUPS_TOTAL.inc();
        match self.ledger.contains(id).await {
            Ok(true) => {
                if let Some(redis) = &self.redis {
                    redis.mark_done(&[Arc::from(id)]).await;
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.limiter.warn(
                    "ledger_unavailable",
                    || tracing::warn!(error = %e, "cannot read the event ledger"),
                );
                Err(IngestError::LedgerUnavailable)
            }
        }
    }

    /// A redelivery of an id this process buffered: OK once the first copy is durable.
    async fn duplicate(
        &self,
        waiter: &Waiter<'_>,
        generation: u64,
    ) -> Result<Accepted, IngestError> {
        if self.durable() && !self.await_commit(waiter, generation).await {
            return Err(IngestError::CommitTimeout);
        }
        Ok(Accepted::Skipped(Skip::Duplicate))
    }

    /// Waits until the event's deltas are durable: its generation committed, and none of its
    /// keys deferred since (a deferred key waits for the batch that finally writes it).
    async fn await_commit(&self, w: &Waiter<'_>, generation: u64) -> bool {
        self.buffer
            .is_committed(w.part, generation, w.user_id, w.goals)
            || self
                .buffer
                .wait_committed(
                    w.part,
                    generation,
                    w.user_id,
                    w.goals,
                    self.opts.ack_deadline,
                )
                .await
    }
}

/// What a durable acknowledgement waits for: the event's partition and keys.
struct Waiter<'a> {
    part: usize,
    user_id: &'a str,
    goals: &'a [Arc<Goal>],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers and labels the contract and the dashboards depend on.
    #[test]
    fn errors_map_to_their_status_and_labels() {
        let cases = [
            (
                IngestError::BufferFull,
                Code::ResourceExhausted,
                "event buffer is full; retry later",
                "rejected",
                "buffer_full",
            ),
            (
                IngestError::DuplicateInFlight,
                Code::Unavailable,
                "this event id is being processed by another replica; retry later",
                "unavailable",
                "duplicate_in_flight",
            ),
            (
                IngestError::CommitTimeout,
                Code::Unavailable,
                "the event is buffered but not yet committed; retry later",
                "unavailable",
                "commit_timeout",
            ),
            (
                IngestError::LedgerUnavailable,
                Code::Unavailable,
                "the database is unreachable: cannot tell whether this event was applied; retry later",
                "unavailable",
                "ledger_unavailable",
            ),
            (
                IngestError::ErasureFailed,
                Code::Unavailable,
                "cannot erase the player's data now; retry later",
                "unavailable",
                "erasure_failed",
            ),
            (
                IngestError::ErasureTimeout,
                Code::Unavailable,
                "cannot erase the player's data now; retry later",
                "unavailable",
                "erasure_timeout",
            ),
            (
                IngestError::Invalid(Invalid::EmptyUserId),
                Code::InvalidArgument,
                "userId cannot be empty",
                "invalid",
                "empty_user_id",
            ),
        ];
        for (e, code, message, outcome, reason) in cases {
            let status = Status::from(e);
            assert_eq!((status.code(), status.message()), (code, message), "{e:?}");
            assert_eq!((e.outcome(), e.reason()), (outcome, reason), "{e:?}");
        }
    }
}
