//! Goal selection: which of a player's goals are active. `SetGoalActive` flips one;
//! `BatchSelectGoals` and `RandomSelectGoals` choose several in one transaction over the
//! challenge's locked rows ([`ChallengeService::select`]), optionally replacing the active
//! ones. A random draw only picks goals the player can still work on (not done, not locked).

use std::collections::HashSet;

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::store::implicit::{self, Marker};
use extend_challenge_common::store::{player, player::NewGoalRow, player::PlayerGoalRow};
use rand::Rng;

use super::{ChallengeService, Result, challenge_index, count_i32};
use crate::catalog::{PlayerView, requirement_pb, reward_pb};
use crate::error::ServiceError;
use crate::timefmt::rfc3339_opt;

impl ChallengeService {
    pub async fn set_goal_active(
        &self,
        user_id: &str,
        req: pb::SetGoalActiveRequest,
    ) -> Result<pb::SetGoalActiveResponse> {
        let snap = self.snapshot();
        let catalog = &*snap;
        let goal = catalog
            .config()
            .goal_in(&req.challenge_id, &req.goal_id)
            .ok_or_else(|| ServiceError::GoalNotFound {
                goal_id: req.goal_id.clone(),
                challenge_id: req.challenge_id.clone(),
            })?;
        let now = self.now();
        let new = NewGoalRow::assign(goal, now);
        // An implicit goal (`store::implicit`) gets its row first, as it reads, so the
        // change applies to it as to any row (deactivation keeps its `assigned_at`).
        let rows = player::goal_rows(
            &self.inner.pool,
            user_id,
            &[goal.id.as_str(), implicit::MARKER_GOAL_ID],
        )
        .await?;
        if !rows.iter().any(|r| r.goal_id == goal.id) {
            let covering = rows
                .iter()
                .filter_map(Marker::from_row)
                .find(|m| catalog.defaults().covers(&m.text, goal));
            if let Some(marker) = covering {
                let mut first = new.clone();
                first.state = marker.implicit_state(goal);
                player::materialize(&self.inner.pool, user_id, &self.inner.namespace, &[first])
                    .await?;
            }
        }
        let row = player::set_active(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            &new,
            req.is_active,
            now,
        )
        .await?;
        Ok(pb::SetGoalActiveResponse {
            challenge_id: req.challenge_id,
            goal_id: req.goal_id,
            is_active: row.is_active,
            assigned_at: rfc3339_opt(row.assigned_at),
            message: if row.is_active {
                "Goal activated successfully"
            } else {
                "Goal deactivated successfully"
            }
            .to_string(),
        })
    }

    /// Activates the listed goals (duplicates collapsed); with `replace_existing`, the
    /// challenge's other active goals are deactivated.
    pub async fn batch_select_goals(
        &self,
        user_id: &str,
        req: pb::BatchSelectRequest,
    ) -> Result<pb::GoalSelectionResponse> {
        let snap = self.snapshot();
        if req.goal_ids.is_empty() {
            return Err(ServiceError::GoalIdsEmpty);
        }
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let catalog = &*snap;
        let mut seen = HashSet::with_capacity(req.goal_ids.len());
        let mut selected = Vec::with_capacity(req.goal_ids.len());
        for id in &req.goal_ids {
            let gi = catalog
                .goal_index_in(ci, id)
                .ok_or_else(|| ServiceError::SelectedGoalNotFound(id.clone()))?;
            if seen.insert(gi) {
                selected.push(gi);
            }
        }
        let replace = req.replace_existing;
        self.select(user_id, ci, move |_view| Ok(selected), replace)
            .await
    }

    /// Activates up to `count` goals drawn uniformly from those the player can still work
    /// on: not completed, not claimed, not locked, and (with `exclude_active` or
    /// `replace_existing`) not active.
    pub async fn random_select_goals(
        &self,
        user_id: &str,
        req: pb::RandomSelectRequest,
    ) -> Result<pb::GoalSelectionResponse> {
        let snap = self.snapshot();
        if req.count <= 0 {
            return Err(ServiceError::CountNotPositive);
        }
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let count = req.count;
        let exclude_active = req.exclude_active || req.replace_existing;
        let goals = snap.challenges()[ci].goals.clone();
        let pick = move |view: &PlayerView<'_>| {
            let pool: Vec<usize> = goals
                .clone()
                .filter(|&gi| {
                    let unavailable = view.status(gi).is_done()
                        || view.is_locked(gi)
                        || (exclude_active && view.is_active(gi));
                    !unavailable
                })
                .collect();
            if pool.is_empty() {
                return Err(ServiceError::InsufficientGoals { requested: count });
            }
            Ok(sample(&mut rand::rng(), &pool, count as usize))
        };
        self.select(user_id, ci, pick, req.replace_existing).await
    }

    /// The common selection transaction: `pick` chooses from the locked rows.
    async fn select<F>(
        &self,
        user_id: &str,
        ci: usize,
        pick: F,
        replace_existing: bool,
    ) -> Result<pb::GoalSelectionResponse>
    where
        F: FnOnce(&PlayerView<'_>) -> Result<Vec<usize>>,
    {
        let snap = self.snapshot();
        let catalog = &*snap;
        let challenge = &catalog.challenges()[ci];
        let now = self.now();
        let mut total_active = 0usize;
        let plan = |rows: &[PlayerGoalRow]| -> Result<player::SelectionPlan> {
            // The implicit rows (`store::implicit`) of the challenge's goals: a selection
            // that changes one inserts its row first, as it reads.
            let mut rows = rows.to_vec();
            let implicit = catalog.complete_rows(&mut rows, |g| {
                g.challenge_id == challenge.id || challenge.external_prerequisites.contains(&g.id)
            });
            let view = PlayerView::new(catalog, &rows, now);
            let selected = pick(&view)?;
            let chosen: HashSet<usize> = selected.iter().copied().collect();
            let mut deactivate = Vec::new();
            let mut still_active = 0usize;
            for gi in challenge.goals.clone() {
                if view.is_active(gi) && !chosen.contains(&gi) {
                    if replace_existing {
                        deactivate.push(catalog.goal(gi).goal.id.clone());
                    } else {
                        still_active += 1;
                    }
                }
            }
            total_active = still_active + selected.len();
            let activate: Vec<NewGoalRow> = selected
                .iter()
                .map(|&gi| {
                    let g = &catalog.goal(gi).goal;
                    NewGoalRow::assign(g, now)
                })
                .collect();
            let changed = |id: &String| {
                deactivate.contains(id) || activate.iter().any(|a: &NewGoalRow| &a.goal_id == id)
            };
            let materialize = rows
                .iter()
                .filter(|r| implicit.contains(&r.goal_id) && changed(&r.goal_id))
                .filter_map(|r| {
                    let g = catalog.config().goal(&r.goal_id)?;
                    let mut new = NewGoalRow::assign(g, now);
                    new.state = r.state();
                    Some(new)
                })
                .collect();
            Ok(player::SelectionPlan {
                materialize,
                deactivate,
                activate,
            })
        };
        let (plan, activated) = player::select_goals(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            &challenge.id,
            &challenge.external_prerequisites,
            now,
            plan,
        )
        .await?;
        let view = PlayerView::new(catalog, &activated, now);
        let selected_goals = plan
            .activate
            .iter()
            .filter_map(|n| catalog.goal_index(&n.goal_id))
            .map(|gi| {
                let g = &catalog.goal(gi).goal;
                let d = view.display(gi);
                pb::SelectedGoal {
                    goal_id: g.id.clone(),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    requirement: Some(requirement_pb(g)),
                    reward: Some(reward_pb(g)),
                    status: d.status.as_str().to_string(),
                    progress: d.progress,
                    target: g.requirement.target_value,
                    is_active: d.is_active,
                    assigned_at: rfc3339_opt(d.assigned_at),
                    expires_at: rfc3339_opt(d.expires_at),
                }
            })
            .collect();
        Ok(pb::GoalSelectionResponse {
            selected_goals,
            challenge_id: challenge.id.clone(),
            total_active_goals: count_i32(total_active),
            replaced_goals: plan.deactivate,
        })
    }
}

/// `n` distinct elements of `pool`, each subset equally likely, in random order; all of
/// `pool` when it is smaller.
pub fn sample<R: Rng + ?Sized>(rng: &mut R, pool: &[usize], n: usize) -> Vec<usize> {
    let n = n.min(pool.len());
    rand::seq::index::sample(rng, pool.len(), n)
        .into_iter()
        .map(|i| pool[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sample_is_uniform_and_distinct() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pool = [10, 11, 12, 13];
        let mut hits = [0u32; 4];
        for _ in 0..8000 {
            let s = sample(&mut rng, &pool, 2);
            assert_eq!(s.len(), 2);
            assert_ne!(s[0], s[1]);
            for x in s {
                hits[x - 10] += 1;
            }
        }
        // Each element is picked with probability 1/2: 4000 expected, 3 sigma ≈ 134.
        for h in hits {
            assert!((3800..=4200).contains(&h), "{hits:?}");
        }
        assert_eq!(sample(&mut rng, &pool, 9).len(), 4);
    }
}
