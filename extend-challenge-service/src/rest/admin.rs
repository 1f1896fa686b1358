//! The admin routes' handlers (CONTRACT §9). The catalog travels as JSON: `validate` and
//! `dry-run` take a `challenges.json` as the body, `POST catalog` takes
//! `{"config": …, "expectedVersion": n, "note": "…"}`, `GET catalog` answers the active
//! version with its `config`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use extend_challenge_common::store::admin::RowChange;
use extend_challenge_common::store::catalog::Applied;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, RestState, json};
use crate::app::admin::validate;
use crate::auth::AuthUser;
use crate::error::ServiceError;

/// A body that must be JSON text.
fn text(body: &Bytes) -> Result<&str, ServiceError> {
    std::str::from_utf8(body)
        .map_err(|_| ServiceError::InvalidArgument("the body is not UTF-8 text".into()))
}

/// A JSON body of type `T`.
fn body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ServiceError> {
    serde_json::from_slice(body)
        .map_err(|e| ServiceError::InvalidArgument(format!("invalid request body: {e}")))
}

pub(super) async fn get_catalog(State(s): State<RestState>) -> ApiResult {
    let Some(active) = s.service.admin_catalog().await? else {
        return Ok((
            StatusCode::NOT_FOUND,
            json(
                &json!({"code": 5, "message": "no catalog version was applied yet", "details": []}),
            ),
        )
            .into_response());
    };
    let config: Value = serde_json::from_str(&active.content).unwrap_or(Value::Null);
    Ok(json(&json!({
        "version": active.version,
        "sha256": active.sha256,
        "source": active.source,
        "activatedAt": active.activated_at,
        "servedVersion": s.service.catalogs().version(),
        "config": config,
    })))
}

pub(super) async fn list_versions(State(s): State<RestState>) -> ApiResult {
    let versions = s.service.admin_catalog_versions().await?;
    Ok(json(&json!({ "versions": versions })))
}

pub(super) async fn validate_catalog(body: Bytes) -> ApiResult {
    Ok(json(&match validate(text(&body)?) {
        Ok(config) => json!({"valid": true, "errors": [],
            "challenges": config.challenges.len(), "goals": config.goal_count()}),
        Err(errors) => json!({"valid": false, "errors": errors, "challenges": 0, "goals": 0}),
    }))
}

pub(super) async fn dry_run(State(s): State<RestState>, body: Bytes) -> ApiResult {
    let (active, impact) = s.service.admin_dry_run(text(&body)?).await?;
    Ok(json(&json!({
        "activeVersion": active.unwrap_or(0),
        "changes": impact.changes,
    })))
}

fn applied(a: &Applied) -> axum::response::Response {
    json(&json!({
        "version": a.version,
        "previousVersion": a.previous.unwrap_or(0),
        "changes": a.impact.changes,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyBody {
    config: Option<Value>,
    expected_version: Option<i64>,
    note: Option<String>,
}

pub(super) async fn apply(
    State(s): State<RestState>,
    Extension(AuthUser(who)): Extension<AuthUser>,
    raw: Bytes,
) -> ApiResult {
    let req: ApplyBody = body(&raw)?;
    let Some(config) = req.config.filter(Value::is_object) else {
        return Err(ServiceError::InvalidArgument(
            "the body needs \"config\": the challenges.json object to apply".into(),
        ));
    };
    let content = serde_json::to_string_pretty(&config)
        .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
    let done = s
        .service
        .admin_apply(&who, &content, req.expected_version, req.note)
        .await?;
    Ok(applied(&done))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RollbackBody {
    version: i64,
    expected_version: Option<i64>,
}

pub(super) async fn rollback(
    State(s): State<RestState>,
    Extension(AuthUser(who)): Extension<AuthUser>,
    raw: Bytes,
) -> ApiResult {
    let req: RollbackBody = body(&raw)?;
    let done = s
        .service
        .admin_rollback(&who, req.version, req.expected_version)
        .await?;
    Ok(applied(&done))
}

pub(super) async fn player_challenges(
    State(s): State<RestState>,
    Path(user_id): Path<String>,
) -> ApiResult {
    Ok(super::json_text(
        s.service.challenges_json(&user_id, false).await?,
    ))
}

fn change(
    user_id: &str,
    challenge_id: &str,
    goal_id: &str,
    c: &RowChange,
) -> axum::response::Response {
    json(&json!({
        "userId": user_id,
        "challengeId": challenge_id,
        "goalId": goal_id,
        "before": c.before,
        "after": c.after,
    }))
}

#[derive(Deserialize)]
struct ProgressBody {
    progress: i64,
}

pub(super) async fn set_progress(
    State(s): State<RestState>,
    Extension(AuthUser(who)): Extension<AuthUser>,
    Path((user_id, challenge_id, goal_id)): Path<(String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let req: ProgressBody = body(&raw)?;
    let progress = i32::try_from(req.progress).map_err(|_| {
        ServiceError::InvalidArgument(format!("progress {} is out of range", req.progress))
    })?;
    let c = s
        .service
        .admin_set_progress(&who, &user_id, &challenge_id, &goal_id, progress)
        .await?;
    Ok(change(&user_id, &challenge_id, &goal_id, &c))
}

pub(super) async fn reset_goal(
    State(s): State<RestState>,
    Extension(AuthUser(who)): Extension<AuthUser>,
    Path((user_id, challenge_id, goal_id)): Path<(String, String, String)>,
) -> ApiResult {
    let c = s
        .service
        .admin_reset_goal(&who, &user_id, &challenge_id, &goal_id)
        .await?;
    Ok(change(&user_id, &challenge_id, &goal_id, &c))
}

pub(super) async fn unenroll(
    State(s): State<RestState>,
    Extension(AuthUser(who)): Extension<AuthUser>,
    Path(user_id): Path<String>,
) -> ApiResult {
    let removed = s.service.admin_unenroll(&who, &user_id).await?;
    Ok(json(&json!({"userId": user_id, "goalsRemoved": removed})))
}
