//! The ingest path: a validated event → deltas → de-duplication (in-process window, Redis
//! lease, event ledger) → buffer → acknowledgement (at once in buffered mode, after its
//! commit in durable mode); and IAM's GDPR erasure, carried out at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::{self, Delta};
use tonic::Status;

use super::Engine;
use crate::buffer::{Contribution, Enqueued};
use crate::dedup::Claim;
use crate::event::{Erasure, Event, EventKind, Source};
use crate::metrics;

impl Engine {
    /// Handles one validated event; the result is the RPC's answer.
    pub async fn ingest(&self, ev: Event) -> Result<(), Status> {
        let kind = ev.kind.as_str();
        let started = Instant::now();
        let res = self.ingest_inner(&ev).await;
        metrics::EVENT_PROCESSING_SECONDS
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
        let (outcome, reason) = match &res {
            Ok(Accepted::Applied) => ("accepted", "ok"),
            Ok(Accepted::Skipped(reason)) => ("skipped", *reason),
            Err((code, reason)) => match code {
                tonic::Code::ResourceExhausted => ("rejected", *reason),
                _ => ("unavailable", *reason),
            },
        };
        metrics::EVENTS_TOTAL
            .with_label_values(&[kind, outcome, reason])
            .inc();
        match res {
            Ok(Accepted::Skipped(reason)) => {
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        namespace = %ev.namespace,
                        "event skipped (OK, no-op)"
                    )
                });
                Ok(())
            }
            Ok(Accepted::Applied) => Ok(()),
            Err((code, reason)) => {
                self.limiter.warn(reason, || {
                    tracing::warn!(
                        event = kind,
                        reason,
                        "event not accepted; the platform will redeliver"
                    )
                });
                Err(Status::new(code, reason_message(reason)))
            }
        }
    }

    async fn ingest_inner(&self, ev: &Event) -> Result<Accepted, (tonic::Code, &'static str)> {
        if !self.opts.namespace.is_empty() && ev.namespace != self.opts.namespace {
            return Ok(Accepted::Skipped("namespace_mismatch"));
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
            Source::Login => self
                .config
                .login_goals()
                .iter()
                .map(|g| (g.clone(), progress::delta_for_login(g)))
                .collect(),
            Source::Stat { code, value, inc } => {
                let goals = self.config.stat_goals(code);
                if goals.is_empty() {
                    return Ok(Accepted::Skipped("no_matching_goal"));
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
                Source::Login => "no_matching_goal",
                Source::Stat { .. } => "no_effect",
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
            if ev.timestamp.is_none_or(|ts| ts < self.ledger_check_before)
                && self.applied_before(&ev.id).await?
            {
                return Ok(Accepted::Skipped("duplicate"));
            }
            if let Some(redis) = &self.redis {
                match redis.claim(&ev.id).await {
                    Claim::Claimed => leased = true,
                    Claim::Done => return Ok(Accepted::Skipped("duplicate")),
                    Claim::InFlight => {
                        // Ours (a concurrent copy) or another replica's.
                        return match self.buffer.lookup(part, &ev.id) {
                            Some(generation) => self.duplicate(&waiter, generation).await,
                            None => Err((tonic::Code::Unavailable, "duplicate_in_flight")),
                        };
                    }
                    Claim::Expired { current } => {
                        // Its owner died (or stalled past its lease): applied, or not yet?
                        if self.applied_before(&ev.id).await? {
                            return Ok(Accepted::Skipped("duplicate"));
                        }
                        match redis.take_over(&ev.id, &current).await {
                            Ok(true) => {
                                metrics::DEDUP_TAKEOVERS_TOTAL.inc();
                                leased = true;
                            }
                            Ok(false) => {
                                return Err((tonic::Code::Unavailable, "duplicate_in_flight"));
                            }
                            // Redis failed: as if it were not there.
                            Err(_) => {}
                        }
                    }
                    Claim::Unknown => {}
                }
            }
        }
        let enqueued = self.buffer.enqueue(
            part,
            Contribution {
                id: &ev.id,
                user_id: &ev.user_id,
                namespace: &ev.namespace,
                deltas,
                at: at_time,
            },
        );
        match enqueued {
            Enqueued::Accepted(generation) => {
                if self.durable() && !self.await_commit(&waiter, generation).await {
                    return Err((tonic::Code::Unavailable, "commit_timeout"));
                }
                Ok(Accepted::Applied)
            }
            Enqueued::Duplicate(generation) => self.duplicate(&waiter, generation).await,
            Enqueued::Full => {
                if leased && let Some(redis) = &self.redis {
                    redis.release(&ev.id).await;
                }
                Err((tonic::Code::ResourceExhausted, "buffer_full"))
            }
        }
    }

    /// IAM's GDPR deletion request (CONTRACT §3.6): erases the user's data at once and
    /// durably, in the same store function as the service's `DeleteUserData`, and records
    /// the tombstone that makes every flush drop updates from earlier events. Not rate
    /// limited: an IAM deletion is authoritative, and a redelivery only moves the tombstone
    /// forward. Another namespace: `OK`, skipped. Database down: `Unavailable` (the
    /// platform redelivers; the request is never lost).
    pub async fn erase(&self, e: Erasure) -> Result<(), Status> {
        let kind = EventKind::GdprDeletion.as_str();
        let count = |outcome: &str, reason: &str| {
            metrics::EVENTS_TOTAL
                .with_label_values(&[kind, outcome, reason])
                .inc();
        };
        if !self.opts.namespace.is_empty() && e.namespace != self.opts.namespace {
            count("skipped", "namespace_mismatch");
            self.limiter.warn("namespace_mismatch", || {
                tracing::warn!(event = kind, namespace = %e.namespace, "event skipped (OK, no-op)")
            });
            return Ok(());
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
        let failed = |reason: &str, error: String| {
            count("unavailable", reason);
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
            Err(Status::unavailable(
                "cannot erase the player's data now; retry later",
            ))
        };
        match erased {
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::Erased(done))) => {
                count("accepted", "ok");
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
                Ok(())
            }
            // Not asked for a rate limit: cannot happen; the erasure is done either way.
            Ok(Ok(extend_challenge_common::store::erasure::Erasure::RateLimited)) => {
                count("skipped", "recently_erased");
                Ok(())
            }
            Ok(Err(error)) => failed("erasure_failed", error.to_string()),
            Err(_) => failed("erasure_timeout", "timed out".to_string()),
        }
    }

    /// Whether the ledger records `id` as applied (then Redis learns it is done). The
    /// database must answer: without it, a redelivery of an applied event cannot be told
    /// from a new one, so the event is refused `Unavailable` (the platform redelivers).
    async fn applied_before(&self, id: &str) -> Result<bool, (tonic::Code, &'static str)> {
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
                Err((tonic::Code::Unavailable, "ledger_unavailable"))
            }
        }
    }

    /// A redelivery of an id this process buffered: OK once the first copy is durable.
    async fn duplicate(
        &self,
        waiter: &Waiter<'_>,
        generation: u64,
    ) -> Result<Accepted, (tonic::Code, &'static str)> {
        if self.durable() && !self.await_commit(waiter, generation).await {
            return Err((tonic::Code::Unavailable, "commit_timeout"));
        }
        Ok(Accepted::Skipped("duplicate"))
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

enum Accepted {
    Applied,
    Skipped(&'static str),
}

fn reason_message(reason: &str) -> &'static str {
    match reason {
        "buffer_full" => "event buffer is full; retry later",
        "duplicate_in_flight" => "this event id is being processed by another replica; retry later",
        "commit_timeout" => "the event is buffered but not yet committed; retry later",
        "ledger_unavailable" => {
            "the database is unreachable: cannot tell whether this event was applied; retry later"
        }
        _ => "event not accepted; retry later",
    }
}
