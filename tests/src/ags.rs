//! A fake AGS (IAM + Platform) on a real local HTTP port, backed by wiremock.
//!
//! Serves what the service calls: the JWKS and revocation list (auth), the
//! client-credentials token endpoint, and Platform's entitlement and wallet-credit grants
//! and their look-ups (rewards). Platform is stateful: a grant is recorded, and the
//! look-ups (`queryUserEntitlements`, `listUserCurrencyTransactions`) answer from the
//! records with exactly AccelByte's published models ([`crate::platform_models`]), so a
//! marker is found only where AGS gives it back. Tests read the grants it received and may
//! mount failing responses first, or lose a grant's reply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::NAMESPACE;
use crate::build::fixture;
use crate::platform_models::{self as models, Entitlement};

/// `kid` of the fixture signing key (`tests/fixtures/jwks.json`).
pub const KEY_ID: &str = "e2e-test-key";

/// A user the fake IAM's revocation list revokes as of tomorrow: every token issued to it
/// today is revoked.
pub const REVOKED_USER: &str = "revoked-user";

pub struct FakeAgs {
    pub server: MockServer,
    records: Arc<Mutex<Records>>,
}

/// What Platform holds: every grant it made, as its look-ups list them.
#[derive(Default)]
struct Records {
    /// `EntitlementInfo`s.
    entitlements: Vec<Value>,
    /// `WalletTransactionInfo`s, oldest first.
    credits: Vec<Value>,
}

/// The user segment of a Platform admin path (`…/users/{userId}/…`).
fn user_of(path: &str) -> String {
    let mut segments = path.split('/');
    segments.find(|s| *s == "users");
    segments.next().unwrap_or_default().to_string()
}

/// Platform's grant endpoints: records the grant and answers its published model, after
/// `delay` (a reply that arrives after the client gave up is a lost reply).
struct GrantResponder {
    records: Arc<Mutex<Records>>,
    delay: Duration,
}

impl Respond for GrantResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path();
        let user = user_of(path);
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let now = chrono::Utc::now();
        let mut r = self.records.lock().unwrap();
        let answer = if path.ends_with("/credit") {
            let currency = path
                .trim_end_matches("/credit")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let amount = body["amount"].as_i64().unwrap_or_default();
            r.credits.push(models::wallet_transaction(
                NAMESPACE,
                &user,
                &currency,
                amount,
                body["reason"].as_str(),
                now,
            ));
            let balance = models::balance(&r.credits, &user, &currency);
            models::wallet(NAMESPACE, &user, &currency, balance)
        } else {
            let mut out = Vec::new();
            for item in body.as_array().map(Vec::as_slice).unwrap_or_default() {
                let id = format!("ent-{}", r.entitlements.len() + 1);
                let e = Entitlement::of_item(&id, NAMESPACE, &user, item, now);
                r.entitlements.push(e.info());
                out.push(e.stackable());
            }
            Value::Array(out)
        };
        ResponseTemplate::new(200)
            .set_body_json(answer)
            .set_delay(self.delay)
    }
}

/// Platform's look-ups, answered from the records.
struct Lookup {
    records: Arc<Mutex<Records>>,
}

impl Respond for Lookup {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path();
        let user = user_of(path);
        let query: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let number = |k: &str, d: usize| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let (limit, offset) = (number("limit", 20), number("offset", 0));
        let r = self.records.lock().unwrap();
        if path.ends_with("/transactions") {
            let currency = path
                .trim_end_matches("/transactions")
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let mut data: Vec<Value> = r
                .credits
                .iter()
                .filter(|c| c["userId"] == user.as_str() && c["currencyCode"] == currency)
                .cloned()
                .collect();
            if data.is_empty() {
                return ResponseTemplate::new(404).set_body_json(
                    json!({"errorCode": 35141, "errorMessage": "wallet not found"}),
                );
            }
            data.reverse();
            let page = models::page(
                "WalletTransactionPagingSlicedResult",
                "WalletTransactionInfo",
                data,
                limit,
                offset,
            );
            return ResponseTemplate::new(200).set_body_json(page);
        }
        let item = query.get("itemId").cloned().unwrap_or_default();
        let data: Vec<Value> = r
            .entitlements
            .iter()
            .filter(|e| {
                e["userId"] == user.as_str() && (item.is_empty() || e["itemId"] == item.as_str())
            })
            .cloned()
            .collect();
        let page = models::page(
            "EntitlementPagingSlicedResult",
            "EntitlementInfo",
            data,
            limit,
            offset,
        );
        ResponseTemplate::new(200).set_body_json(page)
    }
}

/// A reward grant the fake Platform service received.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
}

impl FakeAgs {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let jwks: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("jwks.json")).expect("read fixtures/jwks.json"),
        )
        .expect("fixtures/jwks.json is JSON");
        Mock::given(method("GET"))
            .and(path("/iam/v3/oauth/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
            .mount(&server)
            .await;
        // No revoked tokens (a Bloom filter with every bit clear), one revoked user.
        let revoked_at = (chrono::Utc::now() + chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Mock::given(method("GET"))
            .and(path("/iam/v3/oauth/revocationlist"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "revoked_tokens": {"m": 2432, "k": 17, "bits": vec![0u64; 38]},
                "revoked_users": [{"id": REVOKED_USER, "revoked_at": revoked_at}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/iam/v3/oauth/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "fake-admin-token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "namespace": NAMESPACE
            })))
            .mount(&server)
            .await;
        let records = Arc::new(Mutex::new(Records::default()));
        Mock::given(method("POST"))
            .and(path_regex(format!(
                "^/platform/admin/namespaces/{NAMESPACE}/users/[^/]+/entitlements$"
            )))
            .respond_with(GrantResponder {
                records: records.clone(),
                delay: Duration::ZERO,
            })
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(format!(
                "^/platform/admin/namespaces/{NAMESPACE}/users/[^/]+/wallets/[^/]+/credit$"
            )))
            .respond_with(GrantResponder {
                records: records.clone(),
                delay: Duration::ZERO,
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(format!(
                "^/platform/admin/namespaces/{NAMESPACE}/users/[^/]+/(entitlements|wallets/currencies/[^/]+/transactions)$"
            )))
            .respond_with(Lookup {
                records: records.clone(),
            })
            .mount(&server)
            .await;
        FakeAgs { server, records }
    }

    /// Makes the next grant call for `user` whose body contains `body_part` (a reward id)
    /// grant, then answer only after `delay` — longer than the service waits, the reply is
    /// lost to it.
    pub async fn lose_next_grant_reply(&self, user: &str, body_part: &str, delay: Duration) {
        Mock::given(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/{user}/(entitlements|wallets/[^/]+/credit)$"
        )))
        .and(wiremock::matchers::body_string_contains(body_part))
        .respond_with(GrantResponder {
            records: self.records.clone(),
            delay,
        })
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&self.server)
        .await;
    }

    /// The entitlements (item ids) and wallet credits (currency, amount) Platform holds for
    /// `user`: what was really granted, whatever the service was told.
    pub fn granted(&self, user: &str) -> (Vec<String>, Vec<(String, i64)>) {
        let r = self.records.lock().unwrap();
        let items = r
            .entitlements
            .iter()
            .filter(|e| e["userId"] == user)
            .map(|e| e["itemId"].as_str().unwrap_or_default().to_string())
            .collect();
        let credits = r
            .credits
            .iter()
            .filter(|c| c["userId"] == user)
            .map(|c| {
                (
                    c["currencyCode"].as_str().unwrap_or_default().to_string(),
                    c["amount"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        (items, credits)
    }

    /// Base URL to hand to the binaries as `AB_BASE_URL`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Makes the next `times` grant calls (entitlement or wallet) for `user` answer `status`.
    pub async fn fail_grants(&self, user: &str, status: u16, times: u64) {
        Mock::given(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/{user}/(entitlements|wallets/[^/]+/credit)$"
        )))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "errorCode": 20000 + status,
            "errorMessage": "injected by the e2e suite"
        })))
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&self.server)
        .await;
    }

    /// Makes every grant call for `user` succeed only after `delay` (a slow Platform).
    pub async fn delay_grants(&self, user: &str, delay: Duration) {
        Mock::given(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/{user}/(entitlements|wallets/[^/]+/credit)$"
        )))
        .respond_with(GrantResponder {
            records: self.records.clone(),
            delay,
        })
        .with_priority(1)
        .mount(&self.server)
        .await;
    }

    /// Every reward grant request received so far for `user`, in arrival order (the
    /// look-ups of earlier grants, `GET`s, are not grants: see [`FakeAgs::lookups`]).
    pub async fn grants(&self, user: &str) -> Vec<Grant> {
        self.requests_of(user)
            .await
            .into_iter()
            .filter(|g| g.method != "GET")
            .collect()
    }

    /// The service's look-ups of earlier grants for `user` (entitlement and wallet
    /// transaction queries), in arrival order.
    pub async fn lookups(&self, user: &str) -> Vec<Grant> {
        self.requests_of(user)
            .await
            .into_iter()
            .filter(|g| g.method == "GET")
            .collect()
    }

    async fn requests_of(&self, user: &str) -> Vec<Grant> {
        let prefix = format!("/platform/admin/namespaces/{NAMESPACE}/users/{user}/");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().starts_with(&prefix))
            .map(grant)
            .collect()
    }

    /// How many requests hit `path` so far.
    pub async fn hits(&self, p: &str) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == p)
            .count()
    }
}

impl Grant {
    /// The grant key the service marks its grant with (an entitlement's `grantedCode`, the
    /// `[…]` ending a wallet credit's `reason`), if any.
    pub fn marker(&self) -> Option<&str> {
        if let Some(code) = self
            .body
            .get(0)
            .and_then(|e| e.get("grantedCode"))
            .and_then(Value::as_str)
        {
            return Some(code);
        }
        let reason = self.body.get("reason").and_then(Value::as_str)?;
        reason.strip_suffix(']')?.rsplit_once(" [").map(|(_, k)| k)
    }

    /// The body without the marker: the contract's request shape (CONTRACT §3.5).
    pub fn contract_body(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(items) = body.as_array_mut() {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    o.remove("grantedCode");
                }
            }
        } else if let Some(reason) = body.get("reason").and_then(Value::as_str) {
            let readable = reason
                .strip_suffix(']')
                .and_then(|r| r.rsplit_once(" ["))
                .map_or(reason, |(head, _)| head)
                .to_string();
            body["reason"] = json!(readable);
        }
        body
    }
}

fn grant(r: &Request) -> Grant {
    Grant {
        method: r.method.to_string(),
        path: r.url.path().to_string(),
        body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        authorization: r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// Claims of a player access token as AGS IAM issues them (the ones the service reads).
pub struct TokenClaims<'a> {
    pub sub: &'a str,
    pub namespace: &'a str,
    /// `extend_namespace`: when present it must equal the service's `AB_NAMESPACE`.
    pub extend_namespace: Option<&'a str>,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
}

impl<'a> TokenClaims<'a> {
    /// A valid token for `sub` in the suite's namespace, expiring in an hour.
    pub fn player(sub: &'a str) -> Self {
        TokenClaims {
            sub,
            namespace: NAMESPACE,
            extend_namespace: Some(NAMESPACE),
            expires_in: 3600,
        }
    }
}

/// Signs an RS256 JWT with the fixture key (`tests/fixtures/jwt-signing-key.pem`).
pub fn sign_token(claims: &TokenClaims<'_>) -> String {
    sign_token_with_kid(claims, KEY_ID)
}

/// Like [`sign_token`], with another `kid` in the header.
pub fn sign_token_with_kid(claims: &TokenClaims<'_>, kid: &str) -> String {
    let key = std::fs::read(fixture("jwt-signing-key.pem")).expect("read the fixture key");
    let key = EncodingKey::from_rsa_pem(&key).expect("fixture key is an RSA PEM");
    let now = chrono::Utc::now().timestamp();
    let mut body = json!({
        "sub": claims.sub,
        "namespace": claims.namespace,
        "client_id": "e2e-game-client",
        "iss": "https://fake-ags.invalid",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + claims.expires_in,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "scope": "account commerce",
    });
    if let Some(ns) = claims.extend_namespace {
        body["extend_namespace"] = json!(ns);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &body, &key).expect("sign the test token")
}
