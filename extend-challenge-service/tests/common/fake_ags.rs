//! A stateful fake of the AGS endpoints the service uses, as a real HTTP/1.1 server on
//! 127.0.0.1 (hyper): IAM's token endpoint, JWKS (fixture key 1 as `k1`), revocation list
//! (empty) and the two role look-ups of admin authorisation; Platform's entitlement grant
//! and query, wallet credit and transaction list, and fulfillment v3 (de-duplicated by
//! transaction id). Faults model what a real deployment does wrong: a 5xx before or after
//! the grant was recorded, a grant whose reply is lost (the connection closes without an
//! answer), a late answer, a refusal; IAM unreachable ([`AgsState::iam_down`]).
//!
//! Every answer is one of AccelByte's published Platform or IAM models with exactly its
//! fields (`extend_challenge_e2e::platform_models`, `::iam_models`): a look-up can find a
//! marker only where AGS would give it back, and a role's permissions only as IAM states
//! them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use extend_challenge_e2e::iam_models;
use extend_challenge_e2e::platform_models::{self as models, Entitlement};

/// The client token the fake issues; IAM's role look-ups answer 401 to any other bearer.
pub const CLIENT_TOKEN: &str = "tok";
/// The fake IAM's signing key id (fixture key `iam_key1`).
pub const KEY_ID: &str = "k1";
const JWK_COMPONENTS: &str = include_str!("../fixtures/iam_jwk_components.json");

/// What the fake does with the next grant request (entitlement grant, wallet credit or
/// fulfillment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer `status` without granting.
    FailBefore(u16),
    /// Grant, then answer `status`.
    FailAfter(u16),
    /// Grant, then close the connection without answering.
    LoseReply,
    /// Close the connection without answering, and without granting.
    DropRequest,
    /// Grant, then answer 200 after the delay.
    AnswerLate(Duration),
    /// Refuse with `status` (nothing granted).
    Refuse(u16),
}

#[derive(Default)]
pub struct AgsState {
    /// Every entitlement granted, as `EntitlementInfo`.
    pub entitlements: Vec<Value>,
    /// Every wallet credit, as `WalletTransactionInfo` (no `metadata`: AGS keeps none).
    pub credits: Vec<Value>,
    /// Fulfillment results by transaction id.
    pub fulfillments: HashMap<String, Value>,
    /// Grant requests received (entitlement POSTs, credit PUTs, fulfillment PUTs).
    pub grant_requests: usize,
    /// Look-up GETs received.
    pub lookups: usize,
    /// Request bodies of grant requests, in order.
    pub grant_bodies: Vec<Value>,
    /// Faults for the next grant requests, in order; none left = behave.
    pub faults: VecDeque<Fault>,
    /// Faults for the next grant requests whose path or body contains the text, before
    /// `faults` (to aim at one reward among several granted side by side).
    pub aimed: Vec<(String, Fault)>,
    /// IAM roles: permissions (`resource`, `action`) by (namespace, role id). Namespace `*`
    /// holds global roles (`AdminGetRoleV3`); others answer
    /// `AdminGetRoleNamespacePermissionV3`. An unknown role is 404.
    pub roles: HashMap<(String, String), Vec<(String, u32)>>,
    /// Paths of the role look-ups received, in order.
    pub role_lookups: Vec<String>,
    /// Client-credentials token requests received.
    pub token_requests: usize,
    /// While set, every IAM endpoint hangs up without an answer (IAM unreachable).
    pub iam_down: bool,
}

impl AgsState {
    /// Grants recorded: entitlements plus wallet credits.
    pub fn grants(&self) -> usize {
        self.entitlements.len() + self.credits.len()
    }

    /// Gives role `role_id` of `namespace` (`*`: a global role) these permissions.
    pub fn add_role(&mut self, namespace: &str, role_id: &str, permissions: &[(&str, u32)]) {
        self.roles.insert(
            (namespace.to_string(), role_id.to_string()),
            permissions
                .iter()
                .map(|(r, a)| (r.to_string(), *a))
                .collect(),
        );
    }
}

pub struct FakeAgs {
    pub url: String,
    state: Arc<Mutex<AgsState>>,
    received: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAgs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAgs {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(AgsState::default()));
        let received = Arc::new(Notify::new());
        let (st, rx) = (state.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, rx) = (st.clone(), rx.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (st, rx) = (st.clone(), rx.clone());
                        async move { handle(req, st, rx).await }
                    });
                    // A handler error closes the connection without an answer.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeAgs {
            url,
            state,
            received,
            task,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, AgsState> {
        self.state.lock().unwrap()
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().faults.extend(faults);
    }

    /// The next grant request whose path or body contains `part` meets `fault`.
    pub fn aim_fault(&self, part: &str, fault: Fault) {
        self.state().aimed.push((part.to_string(), fault));
    }

    pub fn grants(&self) -> usize {
        self.state().grants()
    }

    /// Waits until at least `n` grant requests have arrived (no polling sleeps).
    pub async fn wait_for_grant_requests(&self, n: usize) {
        loop {
            let notified = self.received.notified();
            if self.state().grant_requests >= n {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake AGS hangs up")
    }
}

impl std::error::Error for Hangup {}

type Answer = Result<Response<Full<Bytes>>, Hangup>;

fn json_answer(status: u16, body: Value) -> Answer {
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<AgsState>>,
    received: Arc<Notify>,
) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                .collect()
        })
        .unwrap_or_default();
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if path.starts_with("/iam/") && state.lock().unwrap().iam_down {
        return Err(Hangup);
    }
    if path == "/iam/v3/oauth/token" {
        state.lock().unwrap().token_requests += 1;
        return json_answer(
            200,
            iam_models::client_token(CLIENT_TOKEN, 3600, "publisher"),
        );
    }
    if path == "/iam/v3/oauth/jwks" {
        let all: Value = serde_json::from_str(JWK_COMPONENTS).unwrap();
        let mut key = all["iam_key1"].clone();
        key["kid"] = KEY_ID.into();
        return json_answer(200, iam_models::jwks(&[key]));
    }
    if path == "/iam/v3/oauth/revocationlist" {
        return json_answer(200, iam_models::empty_revocation_list());
    }
    let seg: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match (method, seg.as_slice()) {
        (
            Method::GET,
            [
                "iam",
                "v3",
                "admin",
                "namespaces",
                ns,
                "roleoverride",
                role,
                "permissions",
            ],
        ) => role_lookup(&state, &path, bearer.as_deref(), ns, role),
        (Method::GET, ["iam", "v3", "admin", "roles", role]) => {
            role_lookup(&state, &path, bearer.as_deref(), "*", role)
        }
        (
            Method::POST,
            [
                "platform",
                "admin",
                "namespaces",
                ns,
                "users",
                user,
                "entitlements",
            ],
        ) => {
            let items: Vec<Value> = serde_json::from_slice(&body).unwrap();
            let (ns, user) = (ns.to_string(), user.to_string());
            grant(&state, &received, &path, items.clone().into(), move |s| {
                let mut out = Vec::new();
                for item in &items {
                    let id = format!("ent-{}", s.entitlements.len() + 1);
                    let e = Entitlement::of_item(&id, &ns, &user, item, chrono::Utc::now());
                    s.entitlements.push(e.info());
                    out.push(e.stackable());
                }
                (201, Value::Array(out))
            })
            .await
        }
        (
            Method::GET,
            [
                "platform",
                "admin",
                "namespaces",
                _,
                "users",
                user,
                "entitlements",
            ],
        ) => {
            let mut s = state.lock().unwrap();
            s.lookups += 1;
            let item = query.get("itemId").cloned().unwrap_or_default();
            let data: Vec<Value> = s
                .entitlements
                .iter()
                .filter(|e| e["userId"] == *user && e["itemId"] == item.as_str())
                .cloned()
                .collect();
            json_answer(
                200,
                page(
                    "EntitlementPagingSlicedResult",
                    "EntitlementInfo",
                    data,
                    &query,
                ),
            )
        }
        (
            Method::PUT,
            [
                "platform",
                "admin",
                "namespaces",
                ns,
                "users",
                user,
                "wallets",
                code,
                "credit",
            ],
        ) => {
            let credit: Value = serde_json::from_slice(&body).unwrap();
            let (ns, user, code) = (ns.to_string(), user.to_string(), code.to_string());
            grant(&state, &received, &path, credit.clone(), move |s| {
                let amount = credit["amount"].as_i64().unwrap_or_default();
                s.credits.push(models::wallet_transaction(
                    &ns,
                    &user,
                    &code,
                    amount,
                    credit["reason"].as_str(),
                    chrono::Utc::now(),
                ));
                let balance = models::balance(&s.credits, &user, &code);
                (200, models::wallet(&ns, &user, &code, balance))
            })
            .await
        }
        (
            Method::GET,
            [
                "platform",
                "admin",
                "namespaces",
                _,
                "users",
                user,
                "wallets",
                "currencies",
                code,
                "transactions",
            ],
        ) => {
            let mut s = state.lock().unwrap();
            s.lookups += 1;
            let mut data: Vec<Value> = s
                .credits
                .iter()
                .filter(|c| c["userId"] == *user && c["currencyCode"] == *code)
                .cloned()
                .collect();
            if data.is_empty() {
                return json_answer(
                    404,
                    json!({"errorCode": 35141, "errorMessage": "no wallet"}),
                );
            }
            // Newest first, as Platform lists them.
            data.reverse();
            json_answer(
                200,
                page(
                    "WalletTransactionPagingSlicedResult",
                    "WalletTransactionInfo",
                    data,
                    &query,
                ),
            )
        }
        (
            Method::PUT,
            [
                "platform",
                "v3",
                "admin",
                "namespaces",
                ns,
                "users",
                user,
                "fulfillments",
                tx,
            ],
        ) => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            let (ns, user, tx) = (ns.to_string(), user.to_string(), tx.to_string());
            grant(&state, &received, &path, request.clone(), move |s| {
                if let Some(done) = s.fulfillments.get(&tx) {
                    return (200, done.clone());
                }
                for item in request["items"].as_array().unwrap() {
                    let id = format!("ent-{}", s.entitlements.len() + 1);
                    let e = Entitlement::of_item(&id, &ns, &user, item, chrono::Utc::now());
                    s.entitlements.push(e.info());
                }
                let result = models::fulfillment(&tx, &ns, &user, &request["items"]);
                s.fulfillments.insert(tx.clone(), result.clone());
                (200, result)
            })
            .await
        }
        _ => json_answer(
            404,
            json!({"errorCode": 404, "errorMessage": "no such route"}),
        ),
    }
}

/// IAM's role look-ups: `AdminGetRoleV3` (namespace `*`) or
/// `AdminGetRoleNamespacePermissionV3`, for the client token only.
fn role_lookup(
    state: &Mutex<AgsState>,
    path: &str,
    bearer: Option<&str>,
    namespace: &str,
    role_id: &str,
) -> Answer {
    let mut s = state.lock().unwrap();
    s.role_lookups.push(path.to_string());
    if bearer != Some(CLIENT_TOKEN) {
        return json_answer(401, iam_models::error(20001, "unauthorized access"));
    }
    let Some(permissions) = s.roles.get(&(namespace.to_string(), role_id.to_string())) else {
        return json_answer(404, iam_models::error(10456, "role not found"));
    };
    let permissions: Vec<(&str, u32)> = permissions.iter().map(|(r, a)| (r.as_str(), *a)).collect();
    if namespace == "*" {
        json_answer(200, iam_models::role(role_id, role_id, &permissions))
    } else {
        json_answer(200, iam_models::role_namespace_permissions(&permissions))
    }
}

/// A grant request: applies the next fault around `apply` (which records the grant and
/// returns the normal answer).
async fn grant(
    state: &Mutex<AgsState>,
    received: &Notify,
    path: &str,
    body: Value,
    apply: impl FnOnce(&mut AgsState) -> (u16, Value),
) -> Answer {
    let (fault, answer) = {
        let mut s = state.lock().unwrap();
        s.grant_requests += 1;
        let text = body.to_string();
        s.grant_bodies.push(body);
        let aimed = s
            .aimed
            .iter()
            .position(|(part, _)| path.contains(part.as_str()) || text.contains(part.as_str()));
        let fault = match aimed {
            Some(i) => Some(s.aimed.remove(i).1),
            None => s.faults.pop_front(),
        };
        let answer = match fault {
            None
            | Some(Fault::FailAfter(_))
            | Some(Fault::LoseReply)
            | Some(Fault::AnswerLate(_)) => Some(apply(&mut s)),
            Some(Fault::FailBefore(_)) | Some(Fault::DropRequest) | Some(Fault::Refuse(_)) => None,
        };
        (fault, answer)
    };
    received.notify_waiters();
    match (fault, answer) {
        (None, Some((status, body))) => json_answer(status, body),
        (Some(Fault::FailAfter(status)) | Some(Fault::FailBefore(status)), _) => json_answer(
            status,
            json!({"errorCode": 20000, "errorMessage": "internal"}),
        ),
        (Some(Fault::LoseReply) | Some(Fault::DropRequest), _) => Err(Hangup),
        (Some(Fault::AnswerLate(delay)), Some((status, body))) => {
            tokio::time::sleep(delay).await;
            json_answer(status, body)
        }
        (Some(Fault::Refuse(status)), _) => json_answer(
            status,
            json!({"errorCode": 20002, "errorMessage": "validation error"}),
        ),
        (_, None) => json_answer(500, json!({})),
    }
}

/// A Platform paging answer (`model` of `item` records) for `limit`/`offset`.
fn page(model: &str, item: &str, data: Vec<Value>, query: &HashMap<String, String>) -> Value {
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    let offset: usize = query
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    models::page(model, item, data, limit, offset)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = if bytes[i] == b'%' && i + 2 < bytes.len() {
            hex(bytes[i + 1]).zip(hex(bytes[i + 2]))
        } else {
            None
        };
        match escaped {
            Some((h, l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
