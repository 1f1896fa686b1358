//! The player REST API as a game client sees it.

use reqwest::{Client, Method};
use serde_json::Value;

/// How the caller identifies itself.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `x-mock-user-id` (auth disabled).
    Mock(String),
    /// `Authorization: Bearer <token>` (auth enabled).
    Bearer(String),
    /// No identification at all.
    Anonymous,
}

/// One HTTP answer: status and body (JSON when it parses, else the raw text as a string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body, after asserting the status.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// The `message` of a contract error body, after asserting status and JSON shape
    /// (`{"code": <gRPC code>, "message": "...", "details": []}`).
    #[track_caller]
    pub fn error(self, status: u16, grpc_code: i64) -> String {
        let body = self.expect(status);
        assert_eq!(body["code"], grpc_code, "gRPC code in error body {body}");
        assert!(body["details"].is_array(), "details array in {body}");
        body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("message string in error body {body}"))
            .to_string()
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    /// `http://127.0.0.1:<port><BASE_PATH>`.
    pub base: String,
    pub caller: Caller,
}

impl Api {
    pub fn new(base: impl Into<String>, caller: Caller) -> Self {
        Api {
            client: Client::new(),
            base: base.into(),
            caller,
        }
    }

    /// The same API for another caller.
    pub fn as_caller(&self, caller: Caller) -> Self {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            caller,
        }
    }

    pub async fn send(&self, m: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        req = match &self.caller {
            Caller::Mock(user) => req.header("x-mock-user-id", user),
            Caller::Bearer(token) => req.bearer_auth(token),
            Caller::Anonymous => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("HTTP request to the service");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("read the response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// `GET /v1/challenges` (200 asserted).
    pub async fn challenges(&self) -> Value {
        self.get("/v1/challenges").await.expect(200)
    }

    /// One goal as the list shows it.
    pub async fn goal(&self, challenge: &str, goal: &str) -> Value {
        let list = self.challenges().await;
        find_goal(&list, challenge, goal)
            .unwrap_or_else(|| panic!("goal {challenge}/{goal} not in {list}"))
            .clone()
    }

    /// `(progress, status)` of one goal.
    pub async fn progress(&self, challenge: &str, goal: &str) -> (i64, String) {
        let g = self.goal(challenge, goal).await;
        (
            g["progress"].as_i64().expect("numeric progress"),
            g["status"].as_str().expect("string status").to_string(),
        )
    }

    /// `POST /v1/challenges/initialize` (200 asserted).
    pub async fn initialize(&self) -> Value {
        self.post(
            "/v1/challenges/initialize",
            Value::Object(Default::default()),
        )
        .await
        .expect(200)
    }

    pub async fn set_active(&self, challenge: &str, goal: &str, active: bool) -> Reply {
        self.put(
            &format!("/v1/challenges/{challenge}/goals/{goal}/active"),
            serde_json::json!({ "isActive": active }),
        )
        .await
    }

    /// Activates a goal (200 asserted).
    pub async fn activate(&self, challenge: &str, goal: &str) {
        self.set_active(challenge, goal, true).await.expect(200);
    }

    pub async fn claim(&self, challenge: &str, goal: &str) -> Reply {
        self.post(
            &format!("/v1/challenges/{challenge}/goals/{goal}/claim"),
            Value::Object(Default::default()),
        )
        .await
    }
}

/// Finds `challenge/goal` in a `GetUserChallenges` body.
pub fn find_goal<'a>(list: &'a Value, challenge: &str, goal: &str) -> Option<&'a Value> {
    list["challenges"]
        .as_array()?
        .iter()
        .find(|c| c["challengeId"] == challenge)?["goals"]
        .as_array()?
        .iter()
        .find(|g| g["goalId"] == goal)
}

/// The goal ids of one challenge in a `GetUserChallenges` body, in order.
pub fn goal_ids(list: &Value, challenge: &str) -> Vec<String> {
    list["challenges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["challengeId"] == challenge)
        .flat_map(|c| c["goals"].as_array().cloned().unwrap_or_default())
        .filter_map(|g| g["goalId"].as_str().map(str::to_string))
        .collect()
}
