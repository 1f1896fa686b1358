//! The REST adapter (axum) under `BASE_PATH`. Routes are built from [`ROUTES`], a table
//! of `(RPC, method, path, handler)` that a test checks against the `google.api.http`
//! annotations of `service.proto`; handlers only translate JSON to the protobuf request,
//! call [`ChallengeService`], and back. Authenticated routes sit behind one middleware that
//! asks [`Authenticator::caller`] (the same question gRPC asks) and hands the handlers the
//! [`AuthUser`].

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use extend_challenge_common::pb::service as pb;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod admin;

use crate::app::ChallengeService;
use crate::auth::{ACTION_READ, AuthUser, Authenticator};
use crate::error::ServiceError;

/// The HTTP methods the API uses (those `google.api.http` rules name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    /// As HTTP spells it: `GET`, `POST`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Builds a route's handler for the method it is routed under (`|m| on(m, handler_fn)`).
pub type Handler = fn(MethodFilter) -> MethodRouter<RestState>;

/// One REST route: the RPC it serves, its method and its path template (relative to
/// `BASE_PATH`, in the annotation's `{field}` syntax, which axum shares), and its handler.
#[derive(Clone, Copy)]
pub struct RouteSpec {
    pub rpc: &'static str,
    pub method: Verb,
    pub path: &'static str,
    /// Whether the route needs an authenticated user.
    pub authenticated: bool,
    /// Whether that user must hold the admin permission (support routes).
    pub admin: bool,
    pub handler: Handler,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSpec")
            .field("rpc", &self.rpc)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("authenticated", &self.authenticated)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

const fn route(rpc: &'static str, method: Verb, path: &'static str, handler: Handler) -> RouteSpec {
    RouteSpec {
        rpc,
        method,
        path,
        authenticated: true,
        admin: false,
        handler,
    }
}

const fn admin_route(
    rpc: &'static str,
    method: Verb,
    path: &'static str,
    handler: Handler,
) -> RouteSpec {
    RouteSpec {
        rpc,
        method,
        path,
        authenticated: true,
        admin: true,
        handler,
    }
}

/// Every REST route of `service.Service` and `service.Admin`.
pub const ROUTES: &[RouteSpec] = &[
    route("GetUserChallenges", Verb::Get, "/v1/challenges", |m| {
        on(m, get_user_challenges)
    }),
    route(
        "GetUserChallenge",
        Verb::Get,
        "/v1/challenges/{challenge_id}",
        |m| on(m, get_user_challenge),
    ),
    route(
        "InitializePlayer",
        Verb::Post,
        "/v1/challenges/initialize",
        |m| on(m, initialize_player),
    ),
    route(
        "SetGoalActive",
        Verb::Put,
        "/v1/challenges/{challenge_id}/goals/{goal_id}/active",
        |m| on(m, set_goal_active),
    ),
    route(
        "ClaimGoalReward",
        Verb::Post,
        "/v1/challenges/{challenge_id}/goals/{goal_id}/claim",
        |m| on(m, claim_goal_reward),
    ),
    route(
        "BatchSelectGoals",
        Verb::Post,
        "/v1/challenges/{challenge_id}/goals/batch-select",
        |m| on(m, batch_select_goals),
    ),
    route(
        "RandomSelectGoals",
        Verb::Post,
        "/v1/challenges/{challenge_id}/goals/random-select",
        |m| on(m, random_select_goals),
    ),
    route(
        "GetRotationStatus",
        Verb::Get,
        "/v1/challenges/{challenge_id}/rotation",
        |m| on(m, get_rotation_status),
    ),
    route("DeleteUserData", Verb::Delete, "/v1/users/me/data", |m| {
        on(m, delete_user_data)
    }),
    route(
        "ClaimChallengeRewards",
        Verb::Post,
        "/v1/challenges/{challenge_id}/claim",
        |m| on(m, claim_challenge_rewards),
    ),
    route("GetRewardHistory", Verb::Get, "/v1/users/me/rewards", |m| {
        on(m, get_reward_history)
    }),
    route(
        "GetGoalEvents",
        Verb::Get,
        "/v1/challenges/{challenge_id}/goals/{goal_id}/events",
        |m| on(m, get_goal_events),
    ),
    RouteSpec {
        rpc: "AdminGetGoalEvents",
        method: Verb::Get,
        path: "/v1/admin/users/{user_id}/challenges/{challenge_id}/goals/{goal_id}/events",
        authenticated: true,
        admin: true,
        handler: |m| on(m, admin_get_goal_events),
    },
    admin_route("GetCatalog", Verb::Get, "/v1/admin/catalog", |m| {
        on(m, admin::get_catalog)
    }),
    admin_route(
        "ListCatalogVersions",
        Verb::Get,
        "/v1/admin/catalog/versions",
        |m| on(m, admin::list_versions),
    ),
    admin_route(
        "ValidateCatalog",
        Verb::Post,
        "/v1/admin/catalog/validate",
        |m| on(m, admin::validate_catalog),
    ),
    admin_route(
        "DryRunCatalog",
        Verb::Post,
        "/v1/admin/catalog/dry-run",
        |m| on(m, admin::dry_run),
    ),
    admin_route("ApplyCatalog", Verb::Post, "/v1/admin/catalog", |m| {
        on(m, admin::apply)
    }),
    admin_route(
        "RollbackCatalog",
        Verb::Post,
        "/v1/admin/catalog/rollback",
        |m| on(m, admin::rollback),
    ),
    admin_route(
        "GetPlayerChallenges",
        Verb::Get,
        "/v1/admin/users/{user_id}/challenges",
        |m| on(m, admin::player_challenges),
    ),
    admin_route(
        "SetPlayerGoalProgress",
        Verb::Put,
        "/v1/admin/users/{user_id}/challenges/{challenge_id}/goals/{goal_id}/progress",
        |m| on(m, admin::set_progress),
    ),
    admin_route(
        "ResetPlayerGoal",
        Verb::Post,
        "/v1/admin/users/{user_id}/challenges/{challenge_id}/goals/{goal_id}/reset",
        |m| on(m, admin::reset_goal),
    ),
    admin_route(
        "UnenrollPlayer",
        Verb::Delete,
        "/v1/admin/users/{user_id}/goals",
        |m| on(m, admin::unenroll),
    ),
    route(
        "WatchProgress",
        Verb::Get,
        "/v1/users/me/progress/stream",
        |m| on(m, watch_progress),
    ),
    RouteSpec {
        rpc: "HealthCheck",
        method: Verb::Get,
        path: "/healthz",
        authenticated: false,
        admin: false,
        handler: |m| on(m, health_check),
    },
];

#[derive(Clone)]
pub struct RestState {
    pub service: ChallengeService,
    pub auth: Authenticator,
}

/// The whole HTTP app: API routes and `docs` (the Swagger routes, relative to `base_path`)
/// under `base_path`, JSON 404/405 elsewhere. The docs come in from the caller so that
/// `swagger`, which documents [`ROUTES`], is the only one of the two importing the other.
pub fn router(state: RestState, base_path: &str, docs: Router<RestState>) -> Router {
    let mut open = Router::new();
    let mut protected = Router::new();
    let mut admin = Router::new();
    for spec in ROUTES {
        let handler = (spec.handler)(spec.method.filter());
        if spec.admin {
            admin = admin.route(spec.path, handler);
        } else if spec.authenticated {
            protected = protected.route(spec.path, handler);
        } else {
            open = open.route(spec.path, handler);
        }
    }
    let protected =
        protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        authenticate_admin,
    ));
    let api = open
        .merge(protected)
        .merge(admin)
        .merge(docs)
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

/// The authenticated routes' middleware: the caller as [`Authenticator::caller`] finds it,
/// for the handlers (`Extension<AuthUser>`), or its refusal as the contract's JSON error.
async fn authenticate(State(state): State<RestState>, mut req: Request, next: Next) -> Response {
    match state.auth.caller(req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The admin routes' middleware: as [`authenticate`], and the caller must hold the admin
/// permission ([`Authenticator::admin_caller`]) with the route's CRUD bit
/// ([`crate::admin_grpc::action_of`], as over gRPC).
async fn authenticate_admin(
    State(state): State<RestState>,
    mut req: Request,
    next: Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().as_str().to_string();
    let action = ROUTES
        .iter()
        .find(|r| r.admin && r.method.as_str() == method && matched.ends_with(r.path))
        .map_or(ACTION_READ, |r| crate::admin_grpc::action_of(r.rpc));
    match state.auth.admin_caller(req.headers(), action).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

// ---- handlers ----------------------------------------------------------------------------

type ApiResult = Result<Response, ServiceError>;

/// The list, with its `ETag`. With `If-None-Match`, the current tag is read first, from one
/// aggregate query (`app::etag`), and a match is answered `304` before anything is built;
/// otherwise the list and its tag come from one read.
async fn get_user_challenges(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let req = list_request(query.as_deref())?;
    let query = query.as_deref().unwrap_or("");
    let conditions: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !conditions.is_empty() {
        let etag = s.service.list_etag(&user, query).await?;
        if conditions.iter().any(|c| crate::app::none_match(c, &etag)) {
            return Ok((
                StatusCode::NOT_MODIFIED,
                [(header::ETAG, header_value(&etag))],
            )
                .into_response());
        }
    }
    let (body, etag) = s.service.list_json_tagged(&user, &req, query).await?;
    let mut resp = json_text(body);
    resp.headers_mut().insert(header::ETAG, header_value(&etag));
    Ok(resp)
}

/// A tag as a header value (hex digits in quotes: always valid).
fn header_value(etag: &str) -> HeaderValue {
    HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

async fn get_user_challenge(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path(challenge_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let list = list_request(query.as_deref())?;
    let req = pb::GetChallengeRequest {
        challenge_id,
        active_only: list.active_only,
        tags: list.tags,
        status: list.status,
    };
    let body = s.service.challenge_json_for(&user, &req).await?;
    Ok(json_text(body))
}

async fn initialize_player(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    body: Bytes,
) -> ApiResult {
    let _: pb::InitializeRequest = parse_body(&body)?;
    Ok(json_text(s.service.initialize_json(&user).await?))
}

async fn set_goal_active(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
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
    Extension(AuthUser(user)): Extension<AuthUser>,
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
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path(challenge_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::BatchSelectRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    Ok(json(&s.service.batch_select_goals(&user, req).await?))
}

async fn random_select_goals(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path(challenge_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::RandomSelectRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    Ok(json(&s.service.random_select_goals(&user, req).await?))
}

async fn get_rotation_status(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path(challenge_id): Path<String>,
) -> ApiResult {
    let req = pb::GetRotationStatusRequest { challenge_id };
    Ok(json(&s.service.get_rotation_status(&user, req).await?))
}

async fn delete_user_data(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
) -> ApiResult {
    Ok(json(&s.service.delete_user_data(&user, "rest").await?))
}

async fn claim_challenge_rewards(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path(challenge_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut req: pb::ClaimChallengeRewardsRequest = parse_body(&body)?;
    req.challenge_id = challenge_id;
    Ok(json(&s.service.claim_challenge_rewards(&user, req).await?))
}

async fn get_reward_history(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let req = history_request(query.as_deref())?;
    Ok(json(&s.service.get_reward_history(&user, req).await?))
}

async fn get_goal_events(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
    Path((challenge_id, goal_id)): Path<(String, String)>,
) -> ApiResult {
    Ok(json(
        &s.service
            .get_goal_events(&user, &challenge_id, &goal_id)
            .await?,
    ))
}

async fn admin_get_goal_events(
    State(s): State<RestState>,
    Extension(AuthUser(_admin)): Extension<AuthUser>,
    Path((user_id, challenge_id, goal_id)): Path<(String, String, String)>,
) -> ApiResult {
    Ok(json(
        &s.service
            .get_goal_events(&user_id, &challenge_id, &goal_id)
            .await?,
    ))
}

/// `WatchProgress` as Server-Sent Events: `event: heartbeat` (the first one says the
/// stream is live) and `event: progress`, each with a `ProgressUpdate` as JSON; a failed
/// read is an `event: error` with the contract's error JSON, and the stream goes on.
async fn watch_progress(
    State(s): State<RestState>,
    Extension(AuthUser(user)): Extension<AuthUser>,
) -> ApiResult {
    use axum::response::sse::{Event, Sse};
    use futures::StreamExt;
    let stream = s.service.watch_progress(&user)?;
    let events = stream.map(|update| {
        let event = match update {
            Ok(u) => Event::default()
                .event(if u.heartbeat { "heartbeat" } else { "progress" })
                .data(serde_json::to_string(&u).unwrap_or_default()),
            Err(e) => {
                crate::error::log_if_server_fault(&e);
                let message = e.to_string();
                let body = ErrorBody {
                    code: e.code() as i32,
                    message: &message,
                    details: [],
                };
                Event::default()
                    .event("error")
                    .data(serde_json::to_string(&body).unwrap_or_default())
            }
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Ok(Sse::new(events).into_response())
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

/// The list's query (CONTRACT §8): `active_only`, `tags` (comma separated, or repeated),
/// `status`, `pageSize` / `page_size` (1–100 when given) and `pageToken` / `page_token`.
/// Values are percent-decoded; an empty `tags` or `status` is as if not given. The one
/// challenge route reads the same parameters and uses `active_only`, `tags` and `status`.
fn list_request(query: Option<&str>) -> Result<pb::GetChallengesRequest, ServiceError> {
    let mut req = pb::GetChallengesRequest {
        active_only: active_only(query)?,
        ..Default::default()
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_decode(v).ok_or_else(|| {
                ServiceError::InvalidArgument(format!(
                    "invalid value for query parameter {k}: not percent-encoded UTF-8"
                ))
            })
        };
        match k {
            "tags" => {
                let v = value()?;
                if !v.is_empty() {
                    req.tags.extend(v.split(',').map(str::to_string));
                }
            }
            "status" => req.status = value()?,
            "pageSize" | "page_size" => {
                req.page_size = match v.parse() {
                    Ok(0) | Err(_) => {
                        return Err(ServiceError::InvalidArgument(format!(
                            "invalid value for query parameter {k}: {v:?} (expected a number \
                             from 1 to {})",
                            crate::catalog::MAX_PAGE_SIZE
                        )));
                    }
                    Ok(n) => n,
                };
            }
            "pageToken" | "page_token" => req.page_token = value()?,
            _ => {}
        }
    }
    Ok(req)
}

/// `%XX` and `+` (a space) decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(v: &str) -> Option<String> {
    if !v.contains(['%', '+']) {
        return Some(v.to_string());
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `pageSize` / `page_size` and `pageToken` / `page_token` of the reward history. The
/// token is base64url and needs no decoding; a size that is not a number is refused.
fn history_request(query: Option<&str>) -> Result<pb::GetRewardHistoryRequest, ServiceError> {
    let mut req = pb::GetRewardHistoryRequest::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "pageSize" | "page_size" => {
                req.page_size = v.parse().map_err(|_| {
                    ServiceError::InvalidArgument(format!(
                        "invalid value for query parameter {k}: {v:?} (expected a number)"
                    ))
                })?;
            }
            "pageToken" | "page_token" => req.page_token = v.to_string(),
            _ => {}
        }
    }
    Ok(req)
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
        crate::error::log_if_server_fault(&self);
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
    fn list_query_reads_tags_status_and_page() {
        assert_eq!(list_request(None).unwrap(), Default::default());
        let r = list_request(Some(
            "tags=pvp,daily%20quest&tags=x+y&status=in_progress&pageSize=20&pageToken=ab_-",
        ))
        .unwrap();
        assert_eq!(r.tags, ["pvp", "daily quest", "x y"]);
        assert_eq!(
            (r.status.as_str(), r.page_size, r.page_token.as_str()),
            ("in_progress", 20, "ab_-")
        );
        let r = list_request(Some("page_size=5&page_token=t&activeOnly=1")).unwrap();
        assert_eq!(
            (r.page_size, r.page_token.as_str(), r.active_only),
            (5, "t", true)
        );
        // Empty values are as if not given; an empty tag inside a list is kept (and refused
        // by the service).
        assert_eq!(
            list_request(Some("tags=&status=")).unwrap(),
            Default::default()
        );
        assert_eq!(
            list_request(Some("tags=a,,b")).unwrap().tags,
            ["a", "", "b"]
        );
        for bad in [
            "pageSize=0",
            "pageSize=",
            "page_size=ten",
            "tags=%zz",
            "status=%ff",
        ] {
            let err = list_request(Some(bad)).unwrap_err();
            assert!(
                matches!(&err, ServiceError::InvalidArgument(m) if m.contains("query parameter")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn history_query_takes_both_spellings() {
        let r = history_request(Some("pageSize=5&pageToken=abc_-")).unwrap();
        assert_eq!((r.page_size, r.page_token.as_str()), (5, "abc_-"));
        let r = history_request(Some("page_size=7&page_token=t")).unwrap();
        assert_eq!((r.page_size, r.page_token.as_str()), (7, "t"));
        assert_eq!(history_request(None).unwrap(), Default::default());
        assert!(history_request(Some("pageSize=ten")).is_err());
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
