//! The challenge service's REST API (the gRPC-gateway routes), as the demo calls it:
//! URL = `--backend-url` + path, JSON both ways, `x-mock-user-id` and a bearer token on
//! every request, 3 attempts on a network error or a 5xx (1 s, then 2 s apart), 4xx
//! answered at once as `HTTP <code>: <body>`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{Auth, error_chain};
use crate::model::{
    BatchSelectRequest, Challenge, ChallengesResponse, ClaimResult, InitializeResponse,
    RandomSelectRequest, RotationStatusResponse, SelectResponse, SetGoalActiveResponse, decode,
};

const ATTEMPTS: u32 = 3;

pub struct ApiClient {
    base_url: String,
    user_id: String,
    auth: Arc<Auth>,
    http: reqwest::Client,
    /// Pause before attempt n (n ≥ 1) is `backoff * 2^(n-1)`.
    backoff: Duration,
}

impl ApiClient {
    pub fn new(base_url: &str, user_id: &str, auth: Arc<Auth>) -> ApiClient {
        ApiClient {
            base_url: base_url.to_string(),
            user_id: user_id.to_string(),
            auth,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            backoff: Duration::from_secs(1),
        }
    }

    /// The user's challenges; a missing `challenges` stays `None` (printed `null`, as Go's
    /// nil slice).
    pub async fn list_challenges(
        &self,
        active_only: bool,
    ) -> Result<Option<Vec<Challenge>>, String> {
        let path = if active_only {
            "/v1/challenges?active_only=true"
        } else {
            "/v1/challenges"
        };
        let r: ChallengesResponse = self
            .call(Method::GET, path, None::<&()>, "list challenges")
            .await?;
        Ok(r.challenges)
    }

    pub async fn get_challenge(&self, challenge: &str) -> Result<Challenge, String> {
        let path = format!("/v1/challenges/{challenge}");
        self.call(Method::GET, &path, None::<&()>, "get challenge")
            .await
    }

    pub async fn claim_reward(&self, challenge: &str, goal: &str) -> Result<ClaimResult, String> {
        let path = format!("/v1/challenges/{challenge}/goals/{goal}/claim");
        self.call(
            Method::POST,
            &path,
            Some(&serde_json::json!({})),
            "claim reward",
        )
        .await
    }

    pub async fn initialize_player(&self) -> Result<InitializeResponse, String> {
        self.call(
            Method::POST,
            "/v1/challenges/initialize",
            Some(&serde_json::json!({})),
            "initialize player",
        )
        .await
    }

    pub async fn set_goal_active(
        &self,
        challenge: &str,
        goal: &str,
        active: bool,
    ) -> Result<SetGoalActiveResponse, String> {
        let path = format!("/v1/challenges/{challenge}/goals/{goal}/active");
        self.call(
            Method::PUT,
            &path,
            Some(&serde_json::json!({ "isActive": active })),
            "set goal active",
        )
        .await
    }

    pub async fn batch_select(
        &self,
        challenge: &str,
        req: &BatchSelectRequest,
    ) -> Result<SelectResponse, String> {
        let path = format!("/v1/challenges/{challenge}/goals/batch-select");
        self.call(Method::POST, &path, Some(req), "batch select goals")
            .await
    }

    pub async fn random_select(
        &self,
        challenge: &str,
        req: &RandomSelectRequest,
    ) -> Result<SelectResponse, String> {
        let path = format!("/v1/challenges/{challenge}/goals/random-select");
        self.call(Method::POST, &path, Some(req), "random select goals")
            .await
    }

    pub async fn rotation_status(&self, challenge: &str) -> Result<RotationStatusResponse, String> {
        let path = format!("/v1/challenges/{challenge}/rotation");
        self.call(Method::GET, &path, None::<&()>, "get rotation status")
            .await
    }

    /// One call: errors read `<what>: <cause>` for transport failures, `HTTP <code>: <body>`
    /// for a 4xx, `decode response: <cause>` for a body that is not the expected JSON.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        what: &str,
    ) -> Result<T, String> {
        let (status, text) = self
            .send(method, path, body)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {text}"));
        }
        decode(&text).map_err(|e| format!("decode response: {e}"))
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{}", self.base_url, path);
        // A URL that cannot be sent is not worth three attempts.
        reqwest::Url::parse(&url).map_err(|e| format!("create request: parse \"{url}\": {e}"))?;
        let token = self
            .auth
            .token()
            .await
            .map_err(|e| format!("get auth token: {e}"))?;
        let body = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| format!("marshal request body: {e}"))?)
            }
            None => None,
        };
        let op = go_op(&method);
        let mut last_err = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * (1 << (attempt - 1))).await;
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .header("Authorization", format!("Bearer {}", token.access_token));
            if !self.user_id.is_empty() {
                req = req.header("x-mock-user-id", &self.user_id);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            match req.send().await {
                Err(e) => last_err = format!("{op} \"{url}\": {}", error_chain(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status >= 500 {
                        last_err = format!("server error: status {status}");
                        continue;
                    }
                    let text = resp.text().await.map_err(|e| {
                        format!("{op} \"{url}\": reading the body: {}", error_chain(&e))
                    })?;
                    return Ok((status, text));
                }
            }
        }
        Err(format!(
            "request failed after {ATTEMPTS} attempts: {last_err}"
        ))
    }
}

/// Go's `url.Error` operation name for a method (`Get`, `Post`, ...).
fn go_op(method: &Method) -> String {
    let m = method.as_str();
    let mut out = m[..1].to_string();
    out.push_str(&m[1..].to_ascii_lowercase());
    out
}
