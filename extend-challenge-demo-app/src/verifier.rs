//! Looking up what a player received: the demo's fixed mock set, or AGS Platform's
//! admin endpoints with a client-credentials token (admin credentials, falling back to
//! the client ones).

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};
use serde::Deserialize;

use crate::auth::{Token, error_chain, token_grant, token_url};
use crate::log;

#[derive(Debug, Clone, PartialEq)]
pub struct Entitlement {
    pub entitlement_id: String,
    pub item_id: String,
    pub namespace: String,
    pub status: String,
    pub quantity: i64,
    /// `None`: Go's zero time.
    pub granted_at: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wallet {
    pub wallet_id: String,
    pub currency_code: String,
    pub namespace: String,
    pub balance: i64,
    pub status: String,
}

pub enum Verifier {
    Mock,
    Platform(Box<Platform>),
}

pub struct Platform {
    /// AGS base URL (no `/iam`, no `/platform`).
    base_url: String,
    client_id: String,
    client_secret: String,
    namespace: String,
    user_id: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
    retry_delay: Duration,
}

impl Verifier {
    /// The demo's choice: mock in mock mode or without a Platform URL, AGS otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth_mode: &str,
        iam_url: &str,
        platform_url: &str,
        client_id: &str,
        client_secret: &str,
        admin_client_id: &str,
        admin_client_secret: &str,
        namespace: &str,
        user_id: &str,
    ) -> Verifier {
        if auth_mode == "mock" {
            return Verifier::Mock;
        }
        if platform_url.is_empty() {
            log("Warning: No platform URL provided, using mock reward verifier");
            return Verifier::Mock;
        }
        let (id, secret) = if admin_client_id.is_empty() {
            log(
                "Admin credentials not provided, using regular client credentials for Platform SDK",
            );
            (client_id, client_secret)
        } else {
            (admin_client_id, admin_client_secret)
        };
        // As the AGS SDK's AB_BASE_URL: the IAM URL minus `/iam` when set, else the
        // Platform URL minus `/platform`.
        let base_url = if iam_url.is_empty() {
            platform_url
                .strip_suffix("/platform")
                .unwrap_or(platform_url)
        } else {
            iam_url.strip_suffix("/iam").unwrap_or(iam_url)
        }
        .trim_end_matches('/')
        .to_string();
        Verifier::Platform(Box::new(Platform {
            base_url,
            client_id: id.to_string(),
            client_secret: secret.to_string(),
            namespace: namespace.to_string(),
            user_id: user_id.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            token: tokio::sync::Mutex::new(None),
            retry_delay: Duration::from_millis(500),
        }))
    }

    pub async fn entitlement(&self, item_id: &str) -> Result<Entitlement, String> {
        match self {
            Verifier::Mock => mock_entitlements()
                .into_iter()
                .find(|e| e.item_id == item_id)
                .ok_or_else(|| format!("entitlement not found for item: {item_id}")),
            Verifier::Platform(p) => p.retry(|| p.entitlement(item_id)).await,
        }
    }

    pub async fn entitlements(&self, status: &str) -> Result<Vec<Entitlement>, String> {
        match self {
            Verifier::Mock => Ok(mock_entitlements()
                .into_iter()
                .filter(|e| status.is_empty() || e.status == status)
                .collect()),
            Verifier::Platform(p) => p.retry(|| p.entitlements(status)).await,
        }
    }

    pub async fn wallet(&self, currency: &str) -> Result<Wallet, String> {
        match self {
            Verifier::Mock => mock_wallets()
                .into_iter()
                .find(|w| w.currency_code == currency)
                .ok_or_else(|| format!("wallet not found for currency: {currency}")),
            Verifier::Platform(p) => {
                p.retry(|| async {
                    let wallets = p
                        .wallets()
                        .await
                        .map_err(|e| format!("query wallets failed: {e}"))?;
                    wallets
                        .into_iter()
                        .find(|w| w.currency_code == currency)
                        .ok_or_else(|| format!("wallet with currency code {currency} not found"))
                })
                .await
            }
        }
    }

    pub async fn wallets(&self) -> Result<Vec<Wallet>, String> {
        match self {
            Verifier::Mock => Ok(mock_wallets()),
            Verifier::Platform(p) => p.retry(|| p.wallets()).await,
        }
    }
}

fn mock_entitlements() -> Vec<Entitlement> {
    let now = Local::now().fixed_offset();
    vec![
        Entitlement {
            entitlement_id: "ent-mock-1".into(),
            item_id: "winter_sword".into(),
            namespace: "demo".into(),
            status: "ACTIVE".into(),
            quantity: 1,
            granted_at: Some(now - chrono::Duration::hours(24)),
        },
        Entitlement {
            entitlement_id: "ent-mock-2".into(),
            item_id: "bronze_shield".into(),
            namespace: "demo".into(),
            status: "ACTIVE".into(),
            quantity: 2,
            granted_at: Some(now - chrono::Duration::hours(48)),
        },
    ]
}

fn mock_wallets() -> Vec<Wallet> {
    vec![
        Wallet {
            wallet_id: "wallet-mock-1".into(),
            currency_code: "GOLD".into(),
            namespace: "demo".into(),
            balance: 150,
            status: "ACTIVE".into(),
        },
        Wallet {
            wallet_id: "wallet-mock-2".into(),
            currency_code: "GEMS".into(),
            namespace: "demo".into(),
            balance: 25,
            status: "ACTIVE".into(),
        },
    ]
}

/// Platform's `EntitlementInfo`, the fields read here.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EntitlementInfo {
    id: Option<String>,
    item_id: Option<String>,
    status: Option<String>,
    use_count: Option<i64>,
    granted_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EntitlementPage {
    data: Option<Vec<EntitlementInfo>>,
}

/// Platform's `CurrencyWallet` (the wallet summary).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CurrencyWallet {
    currency_code: Option<String>,
    balance: Option<i64>,
    wallet_infos: Option<Vec<WalletInfo>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WalletInfo {
    id: Option<String>,
    status: Option<String>,
}

impl Platform {
    /// Up to 3 retries (0.5 s, doubling) on time-outs, connection errors, 5xx and 429.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut delay = self.retry_delay;
        let mut last = String::new();
        for attempt in 0..=3 {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!("failed after 3 retries: {last}"))
    }

    async fn token(&self) -> Result<String, String> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.expires_at > std::time::Instant::now() + Duration::from_secs(60)
        {
            return Ok(t.access_token.clone());
        }
        let url = token_url(&format!("{}/iam", self.base_url));
        let t = token_grant(
            &self.http,
            &url,
            &self.client_id,
            &self.client_secret,
            &[("grant_type", "client_credentials")],
        )
        .await
        .map_err(|e| format!("platform login failed: {e}"))?;
        *cached = Some(t.clone());
        Ok(t.access_token)
    }

    async fn get(&self, path_and_query: &str) -> Result<String, String> {
        let token = self.token().await?;
        let url = format!(
            "{}/platform/admin/namespaces/{}/users/{}{}",
            self.base_url, self.namespace, self.user_id, path_and_query
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                let text = error_chain(&e);
                if e.is_timeout() {
                    format!("Get \"{url}\": timeout: {text}")
                } else if e.is_connect() {
                    format!("Get \"{url}\": connection refused: {text}")
                } else {
                    format!("Get \"{url}\": {text}")
                }
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(format!("[GET {url}] returned {status}: {body}"));
        }
        Ok(body)
    }

    async fn entitlement(&self, item_id: &str) -> Result<Entitlement, String> {
        let body = self
            .get(&format!(
                "/entitlements/byItemId?itemId={}",
                query_escape(item_id)
            ))
            .await
            .map_err(|e| format!("get entitlement failed: {e}"))?;
        let info: EntitlementInfo =
            crate::model::decode(&body).map_err(|e| format!("get entitlement failed: {e}"))?;
        let mut e = self.to_entitlement(info);
        e.item_id = item_id.to_string();
        Ok(e)
    }

    async fn entitlements(&self, status: &str) -> Result<Vec<Entitlement>, String> {
        // The demo passes its status filter as `entitlementName` (kept as it does).
        let query = if status.is_empty() {
            String::new()
        } else {
            format!("?entitlementName={}", query_escape(status))
        };
        let body = self
            .get(&format!("/entitlements{query}"))
            .await
            .map_err(|e| format!("query entitlements failed: {e}"))?;
        let page: EntitlementPage =
            crate::model::decode(&body).map_err(|e| format!("query entitlements failed: {e}"))?;
        Ok(page
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|i| self.to_entitlement(i))
            .collect())
    }

    async fn wallets(&self) -> Result<Vec<Wallet>, String> {
        let body = self
            .get("/wallets/currencies/summary")
            .await
            .map_err(|e| format!("query wallets failed: {e}"))?;
        let list: Option<Vec<CurrencyWallet>> =
            crate::model::decode(&body).map_err(|e| format!("query wallets failed: {e}"))?;
        Ok(list
            .unwrap_or_default()
            .into_iter()
            .map(|w| {
                let info = w.wallet_infos.and_then(|v| v.into_iter().next());
                Wallet {
                    wallet_id: info.as_ref().and_then(|i| i.id.clone()).unwrap_or_default(),
                    currency_code: w.currency_code.unwrap_or_default(),
                    namespace: self.namespace.clone(),
                    balance: w.balance.unwrap_or_default(),
                    status: info.and_then(|i| i.status).unwrap_or_default(),
                }
            })
            .collect())
    }

    fn to_entitlement(&self, i: EntitlementInfo) -> Entitlement {
        Entitlement {
            entitlement_id: i.id.unwrap_or_default(),
            item_id: i.item_id.unwrap_or_default(),
            namespace: self.namespace.clone(),
            status: i.status.unwrap_or_default(),
            quantity: i.use_count.unwrap_or_default(),
            granted_at: i
                .granted_at
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok()),
        }
    }
}

fn retryable(e: &str) -> bool {
    [
        "timeout",
        "deadline exceeded",
        "connection refused",
        "no such host",
        "500",
        "502",
        "503",
        "504",
        "429",
        "rate limit",
    ]
    .iter()
    .any(|p| e.contains(p))
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's zero `time.Time` as RFC 3339 (what the demo prints for a missing grant time).
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `time.Format("2006-01-02T15:04:05Z07:00")`.
pub fn rfc3339_secs(t: Option<&DateTime<FixedOffset>>) -> String {
    match t {
        None => GO_ZERO_TIME.to_string(),
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Go's `time.Time` JSON (RFC 3339 with nanoseconds, trailing zeros dropped).
pub fn rfc3339_nano(t: Option<&DateTime<FixedOffset>>) -> String {
    match t {
        None => GO_ZERO_TIME.to_string(),
        Some(t) => crate::output::go_time(t),
    }
}

/// `time.Format("2006-01-02 15:04")`.
pub fn short_time(t: Option<&DateTime<FixedOffset>>) -> String {
    match t {
        None => "0001-01-01 00:00".to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
    }
}
