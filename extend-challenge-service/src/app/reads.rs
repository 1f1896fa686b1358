//! The reads: every challenge or one with the caller's progress (REST's JSON and gRPC's
//! encoded list spliced from the catalog; prost structs for the rest), `InitializePlayer`
//! (it assigns the default goals the player lacks, then answers with the active goals as
//! they read now), the rotation status of a challenge and the health check.

use extend_challenge_common::config::Schedule;
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::progress;
use extend_challenge_common::rotation;
use extend_challenge_common::store::{self, player, player::PlayerGoalRow};

use super::{ChallengeService, Result, challenge_index, count_i32};
use crate::catalog::{Catalog, ListQuery, PlayerView, requirement_pb, reward_pb};
use crate::error::ServiceError;
use crate::timefmt::{rfc3339, rfc3339_opt};

impl ChallengeService {
    /// Every row of the player, viewed now.
    pub(super) async fn user_view<'c>(
        &self,
        catalog: &'c Catalog,
        user_id: &str,
    ) -> Result<PlayerView<'c>> {
        Ok(crate::rows::user_view(&self.inner.pool, catalog, user_id, self.now()).await?)
    }

    /// `GET /v1/challenges` as JSON, spliced from the pre-serialized config.
    pub async fn challenges_json(&self, user_id: &str, active_only: bool) -> Result<String> {
        let snap = self.snapshot();
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.challenges_json(&view, active_only))
    }

    /// `GetUserChallenges` as an encoded `GetChallengesResponse` (the gRPC fast path).
    pub async fn challenges_proto(&self, user_id: &str, active_only: bool) -> Result<Vec<u8>> {
        let snap = self.snapshot();
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.challenges_proto(&view, active_only))
    }

    pub async fn get_user_challenges(
        &self,
        user_id: &str,
        req: pb::GetChallengesRequest,
    ) -> Result<pb::GetChallengesResponse> {
        let snap = self.snapshot();
        if !ListQuery::is_plain(&req.tags, &req.status, req.page_size, &req.page_token) {
            return self.list_pb(user_id, &req).await;
        }
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.challenges_pb(&view, req.active_only))
    }

    pub(super) async fn challenge_view_rows(
        &self,
        user_id: &str,
        ci: usize,
    ) -> Result<Vec<PlayerGoalRow>> {
        let snap = self.snapshot();
        let catalog = &*snap;
        let c = &catalog.challenges()[ci];
        let mut rows =
            player::challenge_rows(&self.inner.pool, user_id, &c.id, &c.external_prerequisites)
                .await?;
        // The implicit rows of the challenge's goals (and of the prerequisites read with
        // them) the player's marker stands for.
        catalog.complete_rows(&mut rows, |g| {
            g.challenge_id == c.id || c.external_prerequisites.contains(&g.id)
        });
        Ok(rows)
    }

    /// `GET /v1/challenges/{challenge_id}` as JSON.
    pub async fn challenge_json(
        &self,
        user_id: &str,
        challenge_id: &str,
        active_only: bool,
    ) -> Result<String> {
        let snap = self.snapshot();
        let ci = challenge_index(&snap, challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&snap, &rows, self.now());
        Ok(snap.challenge_json(ci, &view, active_only))
    }

    pub async fn get_user_challenge(
        &self,
        user_id: &str,
        req: pb::GetChallengeRequest,
    ) -> Result<pb::Challenge> {
        let snap = self.snapshot();
        if let Some(filtered) = self.filtered_challenge_pb(user_id, &req).await? {
            return Ok(filtered);
        }
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&snap, &rows, self.now());
        Ok(snap.challenge_pb(ci, &view, req.active_only))
    }

    /// The challenge's rotation: the global periods, or — for per-player windows (CONTRACT
    /// §8) — the caller's own current and next window, counted from when the challenge's
    /// rotating goal was assigned to them (from now when it is not yet).
    pub async fn get_rotation_status(
        &self,
        user_id: &str,
        req: pb::GetRotationStatusRequest,
    ) -> Result<pb::GetRotationStatusResponse> {
        let snap = self.snapshot();
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let challenge = &snap.config().challenges[ci];
        let now = self.now();
        let rotation = match challenge.rotation() {
            None => pb::RotationInfo {
                enabled: false,
                r#type: String::new(),
                schedule: String::new(),
                current_period: Some(pb::RotationPeriod::default()),
                next_period: Some(pb::RotationPeriod::default()),
            },
            Some(r) => {
                let anchor = match r.schedule {
                    Schedule::PerUser { .. } => {
                        let goal = challenge.goals.iter().find(|g| g.rotation.is_some());
                        let rows = self.challenge_view_rows(user_id, ci).await?;
                        goal.and_then(|g| rows.iter().find(|row| row.goal_id == g.id))
                            .and_then(|row| row.assigned_at)
                    }
                    _ => None,
                };
                let period = |p: rotation::Period| pb::RotationPeriod {
                    start_time: rfc3339(p.start),
                    end_time: rfc3339(p.end),
                    expires_in_seconds: p.seconds_left(now),
                };
                pb::RotationInfo {
                    enabled: true,
                    r#type: r.schedule.rotation_type().to_string(),
                    schedule: r.schedule.describe(),
                    current_period: Some(period(rotation::window(r.schedule, anchor, now))),
                    next_period: Some(period(rotation::next_window(r.schedule, anchor, now))),
                }
            }
        };
        Ok(pb::GetRotationStatusResponse {
            challenge_id: req.challenge_id,
            rotation: Some(rotation),
        })
    }

    /// `{"status":"healthy"}` while Postgres answers.
    pub async fn health_check(&self) -> Result<pb::HealthCheckResponse> {
        if store::ping(&self.inner.pool).await {
            Ok(pb::HealthCheckResponse {
                status: "healthy".to_string(),
            })
        } else {
            Err(ServiceError::Unhealthy)
        }
    }

    /// Assigns every default goal the player lacks (also goals added to the config since the
    /// player's first call) and returns every active goal (gRPC's answer).
    pub async fn initialize_player(&self, user_id: &str) -> Result<pb::InitializeResponse> {
        self.initialize_with(user_id, |catalog, view, active, assigned| {
            let assigned_goals: Vec<pb::AssignedGoal> = active
                .iter()
                .map(|&gi| {
                    let g = &catalog.goal(gi).goal;
                    let d = view.display(gi);
                    pb::AssignedGoal {
                        challenge_id: g.challenge_id.clone(),
                        goal_id: g.id.clone(),
                        name: g.name.clone(),
                        description: g.description.clone(),
                        is_active: d.is_active,
                        assigned_at: rfc3339_opt(d.assigned_at),
                        expires_at: rfc3339_opt(d.expires_at),
                        progress: d.progress,
                        target: g.requirement.target_value,
                        status: d.status.as_str().to_string(),
                        requirement: Some(requirement_pb(g)),
                        reward: Some(reward_pb(g)),
                    }
                })
                .collect();
            pb::InitializeResponse {
                new_assignments: count_i32(assigned),
                total_active: count_i32(assigned_goals.len()),
                assigned_goals,
            }
        })
        .await
    }

    /// [`Self::initialize_player`]'s answer as REST's JSON, written from the catalog's
    /// pre-serialized goal fields (the same bytes grpc-gateway's encoding of the message
    /// gives; a test holds the two together).
    pub async fn initialize_json(&self, user_id: &str) -> Result<String> {
        self.initialize_with(user_id, |catalog, view, active, assigned| {
            catalog.initialize_json(view, active, count_i32(assigned))
        })
        .await
    }

    /// `InitializePlayer` up to its answer: admission, the assignment, the rollover of
    /// stored rows whose period ended; then `render` gets the player's view, the active
    /// goals (flat indexes, config order) and how many goals this call assigned.
    async fn initialize_with<T>(
        &self,
        user_id: &str,
        render: impl FnOnce(&Catalog, &PlayerView<'_>, &[usize], usize) -> T,
    ) -> Result<T> {
        let snap = self.snapshot();
        let gate = &self.initialize_gate;
        let _permit = match tokio::time::timeout(gate.wait, gate.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // Timed out (or the semaphore closed, which nothing does): as a pool timeout.
            _ => return Err(ServiceError::Unavailable(sqlx::Error::PoolTimedOut)),
        };
        let now = self.now();
        let catalog = &*snap;
        let done = player::initialize(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            catalog.defaults(),
            now,
        )
        .await?;
        // Store what the player is shown: rows whose period ended are rolled over in the
        // table too (fresh `expires_at`, reset or carried-over state), as the reference does.
        // (Implicit rows have nothing stored to roll over.)
        let rollovers: Vec<player::Rollover> = done
            .rows
            .iter()
            .filter(|r| r.is_active)
            .filter_map(|r| {
                let goal = &catalog.goal(catalog.goal_index(&r.goal_id)?).goal;
                let read = r.state();
                let rolled = progress::view(goal, &read, now);
                (rolled != read).then(|| player::Rollover {
                    goal_id: r.goal_id.clone(),
                    read,
                    rolled,
                })
            })
            .collect();
        player::persist_rollover(&self.inner.pool, user_id, &rollovers, now).await?;
        // The stored rows and the marker's implicit ones, as the list sees them.
        let view = PlayerView::new(catalog, &done.rows, now);
        // Config order, whatever order the rows came back in.
        let active: Vec<usize> = (0..catalog.goal_count())
            .filter(|&gi| view.is_active(gi))
            .collect();
        Ok(render(catalog, &view, &active, done.assigned))
    }
}
