//! The REST adapter (axum) under `BASE_PATH`. Routes are built from [`ROUTES`], which a
//! test checks against the `google.api.http` annotations of `service.proto`; handlers only
//! translate JSON to the protobuf request, call [`ChallengeService`], and back.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use extend_challenge_common::pb::service as pb;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::ChallengeService;
use crate::auth::Authenticator;
use crate::error::ServiceError;
use crate::swagger;

/// One REST route: the RPC it serves, its method and its path template (relative to
/// `BASE_PATH`, in the annotation's `{field}` syntax, which axum shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub rpc: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// Whether the route needs an authenticated user.
    pub authenticated: bool,
}

const fn route(rpc: &'static str, method: &'static str, path: &'static str) -> RouteSpec {
    RouteSpec {
        rpc,
        method,
        path,
        authenticated: true,
    }
}

/// Every REST route of `service.Service`.
pub const ROUTES: &[RouteSpec] = &[
    route("GetUserChallenges", "GET", "/v1/challenges"),
    route("GetUserChallenge", "GET", "/v1/challenges/{challenge_id}"),
    route("InitializePlayer", "POST", "/v1/challenges/initialize"),
    route(
        "SetGoalActive",
        "PUT",
        "/v1/challenges/{challenge_id}/goals/{goal_id}/active",
    ),
    route(
        "ClaimGoalReward",
        "POST",
        "/v1/challenges/{challenge_id}/goals/{goal_id}/claim",
    ),
    route(
        "BatchSelectGoals",
        "POST",
        "/v1/challenges/{challenge_id}/goals/batch-select",
    ),
    route(
        "RandomSelectGoals",
        "POST",
        "/v1/challenges/{challenge_id}/goals/random-select",
    ),
    route(
        "GetRotationStatus",
        "GET",
        "/v1/challenges/{challenge_id}/rotation",
    ),
    route("DeleteUserData", "DELETE", "/v1/users/me/data"),
    RouteSpec {
        rpc: "HealthCheck",
        method: "GET",
        path: "/healthz",
        authenticated: false,
    },
];

#[derive(Clone)]
pub struct RestState {
    pub service: ChallengeService,
    pub auth: Authenticator,
}

/// The caller, as established by the auth middleware.
#[derive(Debug, Clone)]
pub struct UserId(pub String);

/// The whole HTTP app: API routes and Swagger under `base_path`, JSON 404/405 elsewhere.
pub fn router(state: RestState, base_path: &str) -> Router {
    let mut open = Router::new();
    let mut protected = Router::new();
    for spec in ROUTES {
        let filter = method_filter(spec.method);
        let handler = handler_for(spec.rpc, filter);
        if spec.authenticated {
            protected = protected.route(spec.path, handler);
        } else {
            open = open.route(spec.path, handler);
        }
    }
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let api = open
        .merge(protected)
        .merge(swagger::router(base_path))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let app = if base_path.is_empty() {
        api
    } else {
        Router::new().nest(base_path, api)
    };
    let base = base_path.to_string();
    app.fallback(move |uri: axum::http::Uri| {
        let base = base.clone();
        async move {
            let inside = uri.path() == base || uri.path().starts_with(&format!("{base}/"));
            if base.is_empty() || inside {
                not_found().await
            } else {
                ServiceError::OutsideBasePath(base).into_response()
            }
        }
    })
    .method_not_allowed_fallback(method_not_allowed)
}

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        "PATCH" => MethodFilter::PATCH,
        other => panic!("unsupported method in ROUTES: {other}"),
    }
}

fn handler_for(rpc: &str, filter: MethodFilter) -> MethodRouter<RestState> {
    match rpc {
        "GetUserChallenges" => on(filter, get_user_challenges),
        "GetUserChallenge" => on(filter, get_user_challenge),
        "InitializePlayer" => on(filter, initialize_player),
        "SetGoalActive" => on(filter, set_goal_active),
        "ClaimGoalReward" => on(filter, claim_goal_reward),
        "BatchSelectGoals" => on(filter, batch_select_goals),
        "RandomSelectGoals" => on(filter, random_select_goals),
        "GetRotationStatus" => on(filter, get_rotation_status),
        "HealthCheck" => on(filter, health_check),
        "DeleteUserData" => on(filter, delete_user_data),
        other => panic!("no REST handler for {other}"),
    }
}

async fn authenticate(State(state): State<RestState>, mut req: Request, next: Next) -> Response {
    match state.auth.authenticate(req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(UserId(user));
            next.run(req).await
        }
        Err(e) => {
            let err = match e.code() {
                tonic::Code::PermissionDenied => ServiceError::PermissionDenied(e.to_string()),
                tonic::Code::InvalidArgument => ServiceError::InvalidArgument(e.to_string()),
                _ => ServiceError::Unauthenticated(e.to_string()),
            };
            err.into_response()
        }
    }
}

// ---- handlers ----------------------------------------------------------------------------

type ApiResult = Result<Response, ServiceError>;

async fn get_user_challenges(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let active_only = active_only(query.as_deref())?;
    let body = s.service.challenges_json(&user, active_only).await?;
    Ok(json_text(body))
}

async fn get_user_challenge(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    Path(challenge_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let active_only = active_only(query.as_deref())?;
    let body = s
        .service
        .challenge_json(&user, &challenge_id, active_only)
        .await?;
    Ok(json_text(body))
}

async fn initialize_player(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    body: Bytes,
) -> ApiResult {
    let _: pb::InitializeRequest = parse_body(&body)?;
    Ok(json(&s.service.initialize_player(&user).await?))
}

async fn set_goal_active(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    Path((challenge_id, goal_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::SetGoalActiveRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    req.goal_id = goal_id;
    Ok(json(&s.service.set_goal_active(&user, req).await?))
}

async fn claim_goal_reward(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    Path((challenge_id, goal_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::ClaimRewardRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    req.goal_id = goal_id;
    Ok(json(&s.service.claim_goal_reward(&user, req).await?))
}

async fn batch_select_goals(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    Path(challenge_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::BatchSelectRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    Ok(json(&s.service.batch_select_goals(&user, req).await?))
}

async fn random_select_goals(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
    Path(challenge_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::RandomSelectRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    Ok(json(&s.service.random_select_goals(&user, req).await?))
}

async fn get_rotation_status(
    State(s): State<RestState>,
    axum::Extension(UserId(_user)): axum::Extension<UserId>,
    Path(challenge_id): Path<String>,
) -> ApiResult {
    let req = pb::GetRotationStatusRequest { challenge_id };
    Ok(json(&s.service.get_rotation_status(req)?))
}

async fn delete_user_data(
    State(s): State<RestState>,
    axum::Extension(UserId(user)): axum::Extension<UserId>,
) -> ApiResult {
    Ok(json(&s.service.delete_user_data(&user, "rest").await?))
}

async fn health_check(State(s): State<RestState>) -> ApiResult {
    Ok(json(&s.service.health_check().await?))
}

async fn not_found() -> Response {
    ServiceError::RouteNotFound.into_response()
}

async fn method_not_allowed() -> Response {
    ServiceError::MethodNotAllowed.into_response()
}

// ---- translation -------------------------------------------------------------------------

/// `active_only` / `activeOnly` as grpc-gateway reads a bool: `true`, `1`, `t`, … .
fn active_only(query: Option<&str>) -> Result<bool, ServiceError> {
    let mut value = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "active_only" || k == "activeOnly" {
            value = parse_bool(v).ok_or_else(|| {
                ServiceError::InvalidArgument(format!(
                    "invalid value for query parameter {k}: {v:?} (expected true or false)"
                ))
            })?;
        }
    }
    Ok(value)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// proto3 JSON body; an empty body is `{}`.
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ServiceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ServiceError::InvalidArgument(format!("invalid request body: {e}")))
}

fn json_text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(s) => json_text(s),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        crate::log_if_server_fault(&self);
        let message = self.to_string();
        let body = ErrorBody {
            code: self.code() as i32,
            message: &message,
            details: [],
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut resp = json_text(text);
        *resp.status_mut() = self.http_status();
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_only_accepts_both_spellings_and_go_bools() {
        assert!(!active_only(None).unwrap());
        assert!(active_only(Some("active_only=true")).unwrap());
        assert!(active_only(Some("activeOnly=1")).unwrap());
        assert!(active_only(Some("x=y&active_only=T")).unwrap());
        assert!(!active_only(Some("active_only=false")).unwrap());
        assert!(active_only(Some("active_only=maybe")).is_err());
    }

    #[test]
    fn empty_body_is_the_default_request() {
        let r: pb::RandomSelectRequest = parse_body(b"").unwrap();
        assert_eq!(r, pb::RandomSelectRequest::default());
        let r: pb::RandomSelectRequest =
            parse_body(br#"{"count":2,"exclude_active":true,"extra":1}"#).unwrap();
        assert_eq!(r.count, 2);
        assert!(r.exclude_active);
        assert!(parse_body::<pb::RandomSelectRequest>(b"{").is_err());
    }
}
