//! The admin API's logic (CONTRACT §9), behind both transports: the catalog versions
//! (read, validate, dry-run, apply, rollback) and the player QA tools (set progress, reset
//! a goal, unenroll). Every write is one audit log line (`audit = true`, who, what, the
//! target, before, after).

use std::sync::Arc;

use extend_challenge_common::config::{ChallengeConfig, Goal, parse_and_validate};
use extend_challenge_common::store::admin::{self, ResetError, RowChange};
use extend_challenge_common::store::catalog::{
    self, ActiveCatalog, Applied, ApplyRequest, Impact, VersionInfo,
};
use serde_json::json;

use super::{ChallengeService, Result};
use crate::error::ServiceError;

/// A `challenges.json` checked as at start-up: the config, or one line per problem.
pub fn validate(text: &str) -> std::result::Result<ChallengeConfig, Vec<String>> {
    parse_and_validate("challenges.json", text)
        .map_err(|e| e.to_string().lines().map(str::to_string).collect())
}

fn validated(text: &str) -> Result<ChallengeConfig> {
    validate(text).map_err(|problems| ServiceError::InvalidArgument(problems.join("\n")))
}

/// One audit line per admin write.
fn audit(
    who: &str,
    what: &str,
    target: serde_json::Value,
    before: &impl serde::Serialize,
    after: &impl serde::Serialize,
) {
    tracing::info!(
        audit = true,
        who,
        what,
        target = %target,
        before = %json!(before),
        after = %json!(after),
        "admin write"
    );
}

impl ChallengeService {
    /// The active catalog version (`None`: no version was ever applied, the service serves
    /// the catalog it was built with).
    pub async fn admin_catalog(&self) -> Result<Option<ActiveCatalog>> {
        Ok(catalog::active(&self.inner.pool).await?)
    }

    /// Every catalog version, newest first.
    pub async fn admin_catalog_versions(&self) -> Result<Vec<VersionInfo>> {
        Ok(catalog::versions(&self.inner.pool).await?)
    }

    /// The impact `text` would have if applied now, and the version it is counted against.
    pub async fn admin_dry_run(&self, text: &str) -> Result<(Option<i64>, Impact)> {
        let config = validated(text)?;
        Ok(catalog::dry_run(&self.inner.pool, &config).await?)
    }

    /// Applies `text` as a new version (source `api:<who>`), serves it here at once (the
    /// other replicas follow within the watcher's poll, at once on the notification).
    pub async fn admin_apply(
        &self,
        who: &str,
        text: &str,
        expected: Option<i64>,
        note: Option<String>,
    ) -> Result<Applied> {
        let config = validated(text)?;
        let applied = catalog::apply(
            &self.inner.pool,
            ApplyRequest {
                content: text,
                config: &config,
                source: format!("api:{who}"),
                note,
                expected,
                file_sha256: None,
            },
        )
        .await?;
        self.installed(who, "apply_catalog", &applied, config);
        Ok(applied)
    }

    /// A new version with the content of version `version`.
    pub async fn admin_rollback(
        &self,
        who: &str,
        version: i64,
        expected: Option<i64>,
    ) -> Result<Applied> {
        let applied =
            catalog::rollback(&self.inner.pool, version, format!("api:{who}"), expected).await?;
        // Stored versions were validated; one that no longer loads stays out of service
        // here, as in the watcher.
        if let Some(content) = catalog::content(&self.inner.pool, applied.version).await?
            && let Ok(config) = validate(&content)
        {
            self.installed(who, "rollback_catalog", &applied, config);
        }
        Ok(applied)
    }

    fn installed(&self, who: &str, what: &str, applied: &Applied, config: ChallengeConfig) {
        self.inner
            .catalogs
            .install(applied.version, Arc::new(config));
        audit(
            who,
            what,
            json!({"version": applied.version}),
            &json!({"version": applied.previous}),
            &json!({"version": applied.version,
                    "statusChanges": applied.impact.status_changes()}),
        );
    }

    /// The goal `goal_id` of challenge `challenge_id` in the catalog served now.
    fn admin_goal(&self, challenge_id: &str, goal_id: &str) -> Result<Arc<Goal>> {
        self.snapshot()
            .config()
            .goal_in(challenge_id, goal_id)
            .cloned()
            .ok_or_else(|| ServiceError::GoalNotFound {
                goal_id: goal_id.to_string(),
                challenge_id: challenge_id.to_string(),
            })
    }

    /// Sets a goal's progress for a player (QA).
    pub async fn admin_set_progress(
        &self,
        who: &str,
        user_id: &str,
        challenge_id: &str,
        goal_id: &str,
        progress: i32,
    ) -> Result<RowChange> {
        let goal = self.admin_goal(challenge_id, goal_id)?;
        if progress < 0 {
            return Err(ServiceError::InvalidArgument(format!(
                "progress must be 0 or more, not {progress}"
            )));
        }
        if goal.groups.is_some() {
            return Err(ServiceError::InvalidArgument(format!(
                "goal {goal_id} has requirement groups: its progress is per requirement and \
                 cannot be set as one number (reset it, or send events)"
            )));
        }
        let change = admin::set_progress(
            &self.inner.pool,
            user_id,
            &self.inner.namespace,
            &goal,
            progress,
            self.now(),
        )
        .await?;
        audit(
            who,
            "set_progress",
            json!({"userId": user_id, "challengeId": challenge_id, "goalId": goal_id}),
            &change.before,
            &change.after,
        );
        Ok(change)
    }

    /// Resets a goal for a player (QA): not started again, and claimable and payable again
    /// once earned.
    pub async fn admin_reset_goal(
        &self,
        who: &str,
        user_id: &str,
        challenge_id: &str,
        goal_id: &str,
    ) -> Result<RowChange> {
        let goal = self.admin_goal(challenge_id, goal_id)?;
        let change = admin::reset(&self.inner.pool, user_id, &goal, self.now())
            .await
            .map_err(|e| match e {
                ResetError::GrantInProgress(goal_id) => {
                    ServiceError::ResetWhileGranting { goal_id }
                }
                ResetError::Database(e) => e.into(),
            })?;
        audit(
            who,
            "reset_goal",
            json!({"userId": user_id, "challengeId": challenge_id, "goalId": goal_id}),
            &change.before,
            &change.after,
        );
        Ok(change)
    }

    /// Unenrolls a player from everything (QA). Returns the goal rows removed.
    pub async fn admin_unenroll(&self, who: &str, user_id: &str) -> Result<u64> {
        let removed = admin::unenroll(&self.inner.pool, user_id).await?;
        audit(
            who,
            "unenroll",
            json!({"userId": user_id}),
            &json!({"goalRows": removed}),
            &json!({"goalRows": 0}),
        );
        Ok(removed)
    }
}
