//! Swagger: `BASE_PATH/apidocs/api.json` (Swagger 2.0, generated at start-up from the
//! compiled `service.proto` descriptor and the REST route table, `basePath` = `BASE_PATH`)
//! and the Swagger UI at `BASE_PATH/apidocs/`, served from files vendored under `dist/`
//! (swagger-ui-dist from npm), so nothing is fetched at build or run time.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::error::ServiceError;
use crate::rest::{ROUTES, RouteSpec};

const SERVICE: &str = "service.Service";
const ADMIN: &str = "service.Admin";

/// The admin catalog routes carry the catalog as JSON over REST (`config_json`, its text,
/// is gRPC's form): their bodies and answers are documented here.
fn admin_catalog_doc(rpc: &str, op: &mut Value) {
    let catalog = json!({"type": "object",
        "description": "A challenges.json: {\"challenges\": [...]}, as CHALLENGE_CONFIG_PATH holds it."});
    let impact = json!({"type": "object", "properties": {
        "changes": {"type": "array", "items": {"type": "object", "properties": {
            "challengeId": {"type": "string"}, "goalId": {"type": "string"},
            "change": {"type": "string", "enum": ["added", "removed", "changed"]},
            "fields": {"type": "array", "items": {"type": "string"}},
            "players": {"type": "integer"},
            "statusChanges": {"type": "object", "additionalProperties": {"type": "integer"}}}}}}});
    let body =
        |schema: Value| json!([{"name": "body", "in": "body", "required": true, "schema": schema}]);
    match rpc {
        "ValidateCatalog" => {
            op["parameters"] = body(catalog);
            op["responses"]["200"]["schema"] = json!({"type": "object", "properties": {
                "valid": {"type": "boolean"}, "errors": {"type": "array", "items": {"type": "string"}},
                "challenges": {"type": "integer"}, "goals": {"type": "integer"}}});
        }
        "DryRunCatalog" => {
            op["parameters"] = body(catalog);
            let mut schema = impact;
            schema["properties"]["activeVersion"] = json!({"type": "integer"});
            op["responses"]["200"]["schema"] = schema;
        }
        "ApplyCatalog" | "RollbackCatalog" => {
            if rpc == "ApplyCatalog" {
                op["parameters"] = body(
                    json!({"type": "object", "required": ["config"], "properties": {
                    "config": catalog,
                    "expectedVersion": {"type": "integer", "description": "409 unless this is the active version"},
                    "note": {"type": "string"}}}),
                );
            } else {
                op["parameters"] = body(
                    json!({"type": "object", "required": ["version"], "properties": {
                    "version": {"type": "integer", "description": "the version whose content becomes a new version"},
                    "expectedVersion": {"type": "integer"}}}),
                );
            }
            let mut schema = impact;
            schema["properties"]["version"] = json!({"type": "integer"});
            schema["properties"]["previousVersion"] = json!({"type": "integer"});
            op["responses"]["200"]["schema"] = schema;
        }
        "GetCatalog" => {
            op["responses"]["200"]["schema"] = json!({"type": "object", "properties": {
                "version": {"type": "integer"}, "sha256": {"type": "string"},
                "source": {"type": "string"}, "activatedAt": {"type": "string"},
                "servedVersion": {"type": "integer", "description": "the version this replica serves"},
                "config": catalog}});
        }
        "ListCatalogVersions" => {
            op["responses"]["200"]["schema"] = json!({"type": "object", "properties": {
                "versions": {"type": "array", "items": {"type": "object", "properties": {
                    "version": {"type": "integer"}, "sha256": {"type": "string"},
                    "source": {"type": "string"}, "note": {"type": "string"},
                    "createdAt": {"type": "string"}, "active": {"type": "boolean"}}}}}});
        }
        "SetPlayerGoalProgress" | "ResetPlayerGoal" | "UnenrollPlayer" => {
            if let Some(p) = op["parameters"].as_array_mut() {
                p.retain(|x| x["in"] != "body");
                if rpc == "SetPlayerGoalProgress" {
                    p.push(json!({"name": "body", "in": "body", "required": true,
                        "schema": {"type": "object", "required": ["progress"],
                                   "properties": {"progress": {"type": "integer"}}}}));
                }
            }
        }
        _ => {}
    }
}

/// Routes of the docs, relative to `BASE_PATH` (the REST router serves them beside the
/// API; they need no state).
pub fn router<S: Clone + Send + Sync + 'static>(base_path: &str) -> Router<S> {
    let spec: Arc<str> = serde_json::to_string_pretty(&api_json(base_path))
        .expect("spec serializes")
        .into();
    let index = format!("{base_path}/apidocs/");
    Router::new()
        .route(
            "/apidocs",
            get(move || async move { Redirect::permanent(&index) }),
        )
        .route("/apidocs/", get(|| async { asset("index.html") }))
        .route(
            "/apidocs/api.json",
            get(move || {
                let spec = spec.clone();
                async move { typed("application/json", spec.as_bytes().to_vec()) }
            }),
        )
        .route(
            "/apidocs/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let (ctype, body): (&str, &'static [u8]) = match name {
        "index.html" => ("text/html; charset=utf-8", include_bytes!("index.html")),
        "initializer.js" => ("application/javascript", include_bytes!("initializer.js")),
        "swagger-ui-bundle.js" => (
            "application/javascript",
            include_bytes!("dist/swagger-ui-bundle.js"),
        ),
        "swagger-ui-standalone-preset.js" => (
            "application/javascript",
            include_bytes!("dist/swagger-ui-standalone-preset.js"),
        ),
        "swagger-ui.css" => ("text/css", include_bytes!("dist/swagger-ui.css")),
        "index.css" => ("text/css", include_bytes!("dist/index.css")),
        "favicon-32x32.png" => ("image/png", include_bytes!("dist/favicon-32x32.png")),
        "favicon-16x16.png" => ("image/png", include_bytes!("dist/favicon-16x16.png")),
        _ => return ServiceError::RouteNotFound.into_response(),
    };
    typed(ctype, body.to_vec())
}

fn typed(ctype: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(ctype))],
        body,
    )
        .into_response()
}

fn summary(rpc: &str) -> &'static str {
    match rpc {
        "GetUserChallenges" => "Every challenge with the caller's progress",
        "GetUserChallenge" => "One challenge with the caller's progress",
        "InitializePlayer" => "Assign the default goals the caller lacks; list active goals",
        "SetGoalActive" => "Activate or deactivate one goal",
        "ClaimGoalReward" => "Claim the reward of a completed goal",
        "BatchSelectGoals" => "Activate the listed goals",
        "RandomSelectGoals" => "Activate goals drawn at random",
        "GetRotationStatus" => "Rotation schedule and periods of a challenge",
        "HealthCheck" => "Service and database health",
        "DeleteUserData" => "Erase every record of the caller (GDPR); once a minute at most",
        "ClaimChallengeRewards" => {
            "Claim every goal of a challenge that passes the claim checks; list the others with their answer"
        }
        "GetRewardHistory" => "The caller's reward grants, newest first, paged",
        "GetGoalEvents" => {
            "Why an event did or did not count: the latest events (up to 64, kept 7 days) \
             that reached one of the caller's goals, newest first, each counted (progress \
             before and after) or ignored with the rule that ignored it"
        }
        "AdminGetGoalEvents" => {
            "Support: the event trail of any player's goal (needs the \
             ADMIN:NAMESPACE:{namespace}:CHALLENGE permission with the read bit, held by the \
             token or one of its roles, when auth is on)"
        }
        "WatchProgress" => {
            "The caller's changed goals, pushed as they change (Server-Sent Events: \
             `event: heartbeat` first and every PROGRESS_STREAM_HEARTBEAT_SECONDS, \
             `event: progress` with the changed goals; each `data:` is a ProgressUpdate as \
             JSON). gRPC: service.Service/WatchProgress (server stream)"
        }
        "GetCatalog" => "The active catalog version and its challenges.json",
        "ListCatalogVersions" => "Every catalog version, newest first",
        "ValidateCatalog" => {
            "Checks a challenges.json as start-up does (every problem, naming challenge, goal and field)"
        }
        "DryRunCatalog" => {
            "What applying a challenges.json would do to live players: per added, removed or \
             changed goal, the fields changed, the players with rows and the exact status changes"
        }
        "ApplyCatalog" => {
            "Applies a challenges.json as a new catalog version (exactly what its dry-run \
             reports, in one transaction); every replica serves it within 2 s. 409 when \
             expectedVersion is not the active version"
        }
        "RollbackCatalog" => "A new catalog version with the content of an earlier one",
        "GetPlayerChallenges" => "A player's challenge list, as the player sees it",
        "SetPlayerGoalProgress" => "Sets a player's progress on a goal (QA; audited)",
        "ResetPlayerGoal" => {
            "Resets a player's goal to not started; its reward can be earned and paid again \
             (QA; audited)"
        }
        "UnenrollPlayer" => "Removes a player's every goal row (QA; audited)",
        _ => "",
    }
}

/// The Swagger tag a route is listed under.
fn tag_of(spec: &RouteSpec) -> &'static str {
    match spec.rpc {
        "DeleteUserData" => "GDPR",
        "ClaimGoalReward" | "ClaimChallengeRewards" | "GetRewardHistory" => "Rewards",
        "GetGoalEvents" | "AdminGetGoalEvents" | "WatchProgress" => "Progress",
        _ if spec.admin => "Admin",
        _ if spec.authenticated => "Challenges",
        _ => "Health",
    }
}

/// Description (and allowed values) of the list's query parameters (CONTRACT §8).
fn query_param_doc(rpc: &str, field: &str, param: &mut Map<String, Value>) {
    if rpc != "GetUserChallenges" && rpc != "GetUserChallenge" {
        return;
    }
    let text = match field {
        "active_only" => "Only the caller's active goals (also `activeOnly`).",
        "tags" => {
            "Only goals that carry, or whose challenge carries, any of these tags \
             (comma separated)."
        }
        "status" => "Only goals the caller sees in this status.",
        "page_size" => {
            "Challenges per page, 1–100 (also `pageSize`). When given, the answer has \
             `nextPageToken`, empty on the last page."
        }
        "page_token" => "`nextPageToken` of the previous page (also `pageToken`).",
        _ => return,
    };
    param.insert("description".into(), text.into());
    if field == "status" {
        param.insert(
            "enum".into(),
            json!(["not_started", "in_progress", "completed", "claimed"]),
        );
    }
}

/// `{challenge_id}` → `challengeId` for each path field, as grpc-gateway names them.
fn path_fields(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn definition_name(m: &MessageDescriptor) -> String {
    // `service.Goal` → `serviceGoal`, grpc-gateway's convention.
    m.full_name().replace('.', "")
}

fn field_schema(f: &FieldDescriptor, defs: &mut Map<String, Value>) -> Value {
    let item = match f.kind() {
        Kind::String => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64"}),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(_) => json!({"type": "string"}),
        Kind::Message(m) => {
            add_definition(&m, defs);
            json!({"$ref": format!("#/definitions/{}", definition_name(&m))})
        }
    };
    if f.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    }
}

fn message_schema(m: &MessageDescriptor, skip: &[&str], defs: &mut Map<String, Value>) -> Value {
    let mut props = Map::new();
    for f in m.fields() {
        if skip.contains(&f.name()) {
            continue;
        }
        props.insert(f.json_name().to_string(), field_schema(&f, defs));
    }
    json!({"type": "object", "properties": props})
}

fn add_definition(m: &MessageDescriptor, defs: &mut Map<String, Value>) {
    let name = definition_name(m);
    if defs.contains_key(&name) {
        return;
    }
    defs.insert(name.clone(), Value::Null);
    let schema = message_schema(m, &[], defs);
    defs.insert(name, schema);
}

fn to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// The Swagger 2.0 document of the REST API.
/// The error statuses a route can answer (CONTRACT §3.2), each with the contract's JSON
/// body `{"code": <gRPC code>, "message": "…", "details": []}`.
fn responses(rpc: &str, authenticated: bool, output: &str) -> Value {
    let status = |description: &str, code: i32, example: &str| {
        json!({"description": format!("{description} (gRPC code {code})."),
               "schema": {"$ref": "#/definitions/rpcStatus"},
               "examples": {"application/json": {"code": code, "message": example, "details": []}}})
    };
    let mut r = Map::new();
    r.insert(
        "200".into(),
        json!({"description": "A successful response.",
               "schema": {"$ref": format!("#/definitions/{output}")}}),
    );
    let bad_request = match rpc {
        "ClaimGoalReward" => {
            "Goal not completed. Please wait 1 second and try again. (goal_id: kill-10-snowmen, status: in_progress)"
        }
        "BatchSelectGoals" => "goal_ids cannot be empty",
        "RandomSelectGoals" => "count must be greater than 0",
        _ => "invalid request body",
    };
    if rpc != "HealthCheck" {
        r.insert(
            "400".into(),
            status(
                "Invalid request, or a goal not in a state that allows it",
                3,
                bad_request,
            ),
        );
    }
    if authenticated {
        r.insert(
            "401".into(),
            status(
                "Missing, invalid, expired or revoked token",
                16,
                "invalid token",
            ),
        );
        r.insert(
            "403".into(),
            status(
                "The token does not grant this namespace",
                7,
                "permission denied",
            ),
        );
    }
    if rpc.contains("Challenge") || rpc.contains("Goal") || rpc.contains("Rotation") {
        let not_found = if rpc == "ClaimGoalReward" || rpc == "SetGoalActive" {
            "Goal not found or removed from config (goal_id: g, challenge_id: c)"
        } else {
            "challenge 'c' not found"
        };
        r.insert(
            "404".into(),
            status("Unknown challenge or goal", 5, not_found),
        );
    }
    if rpc == "ClaimGoalReward" {
        r.insert(
            "409".into(),
            status(
                "Reward already claimed, or a claim of it in progress",
                6,
                "Reward has already been claimed (goal_id: g, claimed_at: 2025-10-15T10:00:00Z)",
            ),
        );
        r.insert(
            "502".into(),
            status(
                "AGS refused the grant or retries ran out",
                13,
                "Failed to grant reward via Platform Service after 3 retries (goal_id: g)",
            ),
        );
    }
    r.insert(
        "429".into(),
        status("Too many requests in flight", 8, "server busy, retry later"),
    );
    r.insert("500".into(), status("Server fault", 13, "internal error"));
    r.insert(
        "503".into(),
        status(
            "Database unreachable, or a reward grant in doubt: retry",
            14,
            "database unavailable",
        ),
    );
    r.insert(
        "default".into(),
        json!({"description": "Any other error, same JSON shape.",
               "schema": {"$ref": "#/definitions/rpcStatus"}}),
    );
    Value::Object(r)
}

pub fn api_json(base_path: &str) -> Value {
    let pool = DescriptorPool::decode(extend_challenge_common::pb::FILE_DESCRIPTOR_SET)
        .expect("compiled descriptor set decodes");
    let services: Vec<_> = [SERVICE, ADMIN]
        .iter()
        .map(|name| {
            pool.get_service_by_name(name)
                .unwrap_or_else(|| panic!("{name} is compiled"))
        })
        .collect();
    let mut defs = Map::new();
    defs.insert(
        "protobufAny".into(),
        json!({"type": "object", "properties": {"@type": {"type": "string"}},
               "additionalProperties": {}}),
    );
    defs.insert(
        "rpcStatus".into(),
        json!({"type": "object", "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": "#/definitions/protobufAny"}}}}),
    );
    let mut paths = Map::new();
    for spec in ROUTES {
        let method = services
            .iter()
            .flat_map(|s| s.methods())
            .find(|m| m.name() == spec.rpc)
            .unwrap_or_else(|| panic!("{} is not a method of {SERVICE} or {ADMIN}", spec.rpc));
        let service_name = method.parent_service().name().to_string();
        let input = method.input();
        let output = method.output();
        add_definition(&output, &mut defs);
        let in_path = path_fields(spec.path);
        let mut params = Vec::new();
        for field in &in_path {
            params.push(
                json!({"name": to_camel(field), "in": "path", "required": true,
                               "type": "string"}),
            );
        }
        if spec.method.as_str() == "GET" || spec.method.as_str() == "DELETE" {
            for f in input.fields() {
                if in_path.contains(&f.name()) || matches!(f.kind(), Kind::Message(_)) {
                    continue;
                }
                let mut p = field_schema(&f, &mut defs);
                if let Value::Object(o) = &mut p {
                    // As clients send it (`?active_only=true`); `activeOnly` works too.
                    o.insert("name".into(), f.name().into());
                    o.insert("in".into(), "query".into());
                    o.insert("required".into(), false.into());
                    if f.is_list() {
                        // `tags=a,b` (repeating the parameter works too).
                        o.insert("collectionFormat".into(), "csv".into());
                    }
                    query_param_doc(spec.rpc, f.name(), o);
                }
                params.push(p);
            }
        } else {
            params.push(json!({"name": "body", "in": "body", "required": true,
                               "schema": message_schema(&input, &in_path, &mut defs)}));
        }
        let mut op = json!({
            "summary": summary(spec.rpc),
            "operationId": format!("{service_name}_{}", spec.rpc),
            "parameters": params,
            "responses": responses(spec.rpc, spec.authenticated, &definition_name(&output)),
            "tags": [tag_of(spec)],
        });
        if spec.authenticated {
            op["security"] = json!([{"Bearer": []}]);
        }
        match spec.rpc {
            // The conditional list (CONTRACT §10).
            "GetUserChallenges" => {
                if let Some(Value::Array(params)) = op.get_mut("parameters") {
                    params.push(
                        json!({"name": "If-None-Match", "in": "header", "required": false,
                        "type": "string",
                        "description": "An ETag of an earlier answer: 304 Not Modified, no body, \
                            while the caller's list is unchanged (the tag is weak: \
                            expiresInSeconds counts down under one tag)."}),
                    );
                }
                op["responses"]["200"]["headers"] = json!({"ETag": {"type": "string",
                    "description": "Weak validator of this answer, for If-None-Match."}});
                op["responses"]["304"] = json!({"description": "Not modified: the If-None-Match \
                    tag is current.", "headers": {"ETag": {"type": "string"}}});
            }
            "WatchProgress" => {
                op["produces"] = json!(["text/event-stream"]);
                op["responses"]["200"]["description"] =
                    "A stream of Server-Sent Events (heartbeat, progress); each data line is a \
                     ProgressUpdate as JSON."
                        .into();
            }
            _ => {}
        }
        admin_catalog_doc(spec.rpc, &mut op);
        let swagger_path: String = spec
            .path
            .split('/')
            .map(
                |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(f) => format!("{{{}}}", to_camel(f)),
                    None => seg.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let entry = paths
            .entry(swagger_path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[spec.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "swagger": "2.0",
        "info": {
            "title": "Extend Challenge Service API",
            "description": "Player API of the Extend Challenge service: challenge progress, goal selection and reward claims.",
            "version": "1.0"
        },
        "tags": [{"name": "Challenges"}, {"name": "Rewards"}, {"name": "Progress"}, {"name": "GDPR"}, {"name": "Admin", "description": "Live operations (CONTRACT §9): the catalog versions and the player QA tools; ADMIN:NAMESPACE:{namespace}:CHALLENGE with the route's CRUD bit."}, {"name": "Health"}],
        "basePath": if base_path.is_empty() { "/" } else { base_path },
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": defs,
        "securityDefinitions": {
            "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header",
                        "description": "Bearer <AGS IAM access token>"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONTRACT §10: the conditional list, the event trail and the progress stream.
    #[test]
    fn spec_documents_etag_trail_and_stream() {
        let spec = api_json("/challenge");
        let paths = &spec["paths"];
        let list = &paths["/v1/challenges"]["get"];
        assert!(
            list["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| { p["name"] == "If-None-Match" && p["in"] == "header" })
        );
        assert!(list["responses"]["304"].is_object());
        assert!(list["responses"]["200"]["headers"]["ETag"].is_object());
        let events = &paths["/v1/challenges/{challengeId}/goals/{goalId}/events"]["get"];
        assert_eq!(
            events["responses"]["200"]["schema"]["$ref"],
            "#/definitions/serviceGetGoalEventsResponse"
        );
        assert!(
            paths["/v1/admin/users/{userId}/challenges/{challengeId}/goals/{goalId}/events"]["get"]
                .is_object()
        );
        let stream = &paths["/v1/users/me/progress/stream"]["get"];
        assert_eq!(stream["produces"][0], "text/event-stream");
        assert_eq!(stream["tags"][0], "Progress");
    }

    #[test]
    fn admin_routes_are_under_their_own_tag_with_json_bodies() {
        let spec = api_json("/challenge");
        let paths = &spec["paths"];
        let apply = &paths["/v1/admin/catalog"]["post"];
        assert_eq!(apply["tags"], json!(["Admin"]));
        assert_eq!(apply["operationId"], "Admin_ApplyCatalog");
        let body = &apply["parameters"][0]["schema"];
        assert_eq!(body["required"], json!(["config"]));
        assert!(body["properties"]["expectedVersion"].is_object());
        let dry = &paths["/v1/admin/catalog/dry-run"]["post"];
        assert!(
            dry["responses"]["200"]["schema"]["properties"]["changes"]["items"]["properties"]
                ["statusChanges"]
                .is_object()
        );
        let reset = &paths["/v1/admin/users/{userId}/challenges/{challengeId}/goals/{goalId}/reset"]
            ["post"];
        assert_eq!(reset["tags"], json!(["Admin"]));
        assert!(
            reset["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["in"] == "path")
        );
        assert_eq!(
            paths["/v1/admin/users/{userId}/goals"]["delete"]["tags"],
            json!(["Admin"])
        );
        assert!(
            spec["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "Admin")
        );
    }

    #[test]
    fn spec_has_every_route_and_the_base_path() {
        let spec = api_json("/challenge");
        assert_eq!(spec["basePath"], "/challenge");
        let paths = spec["paths"].as_object().unwrap();
        assert!(paths["/v1/challenges"]["get"].is_object());
        let claim = &paths["/v1/challenges/{challengeId}/goals/{goalId}/claim"]["post"];
        assert_eq!(claim["operationId"], "Service_ClaimGoalReward");
        let active = &paths["/v1/challenges/{challengeId}/goals/{goalId}/active"]["put"];
        let body = &active["parameters"][2]["schema"]["properties"];
        assert!(body["isActive"].is_object());
        assert!(body.get("goalId").is_none());
        let goal = &spec["definitions"]["serviceGoal"]["properties"];
        assert_eq!(goal["prerequisites"]["type"], "array");
        assert_eq!(
            goal["requirement"]["$ref"],
            "#/definitions/serviceRequirement"
        );
        assert!(paths["/healthz"]["get"].get("security").is_none());
        // Each error status with the contract's JSON; the query parameter as clients send it.
        for status in ["400", "401", "403", "404", "409", "500", "502", "503"] {
            let r = &claim["responses"][status];
            assert_eq!(r["schema"]["$ref"], "#/definitions/rpcStatus", "{status}");
            let example = &r["examples"]["application/json"];
            assert!(
                example["code"].is_i64() && example["details"].is_array(),
                "{status}"
            );
        }
        assert_eq!(
            claim["responses"]["409"]["examples"]["application/json"]["code"],
            6
        );
        let list = &paths["/v1/challenges"]["get"]["parameters"];
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "active_only"),
            "{list}"
        );
        // The list's filters and paging (CONTRACT §8).
        let by_name = |name: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {list}"))
                .clone()
        };
        let tags = by_name("tags");
        assert_eq!(
            (&tags["in"], &tags["type"], &tags["items"]["type"]),
            (&json!("query"), &json!("array"), &json!("string"))
        );
        assert_eq!(tags["collectionFormat"], "csv");
        assert_eq!(by_name("status")["enum"][3], "claimed");
        assert_eq!(by_name("page_size")["format"], "int32");
        assert!(
            by_name("page_token")["description"]
                .as_str()
                .unwrap()
                .contains("nextPageToken")
        );
        let one = &paths["/v1/challenges/{challengeId}"]["get"]["parameters"];
        let names: Vec<&str> = one
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["challengeId", "active_only", "tags", "status"]);
        let resp = &spec["definitions"]["serviceGetChallengesResponse"]["properties"];
        assert_eq!(resp["nextPageToken"]["type"], "string");
        let erase = &paths["/v1/users/me/data"]["delete"];
        assert_eq!(erase["tags"][0], "GDPR");
        assert_eq!(erase["parameters"].as_array().unwrap().len(), 0);
        // Rewards (CONTRACT §7): claim all, and the history's paging parameters.
        let all = &paths["/v1/challenges/{challengeId}/claim"]["post"];
        assert_eq!(all["tags"][0], "Rewards");
        assert_eq!(
            all["responses"]["200"]["schema"]["$ref"],
            "#/definitions/serviceClaimChallengeRewardsResponse"
        );
        let history = &paths["/v1/users/me/rewards"]["get"];
        assert_eq!(history["tags"][0], "Rewards");
        let names: Vec<&str> = history["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["page_size", "page_token"]);
        let n: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(n, ROUTES.len());
    }
}
