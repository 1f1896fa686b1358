//! JSON on the wire (CONTRACT §3.1): every field emitted once, camelCase, requests in
//! either case, empty bodies, unknown fields ignored.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::json;

use crate::support::*;
use extend_challenge_common::pb::service::{HealthCheckRequest, service_client::ServiceClient};

/// Deserializes any JSON and fails on an object with a repeated key (serde_json itself
/// keeps the last one silently).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDupVisitor)
    }
}

struct NoDupVisitor;

impl<'de> Visitor<'de> for NoDupVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("object expected, got {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn json_shapes_follow_the_contract() {
    let (stack, events) = start("json_shapes").await;
    let u = user("wire");
    let api = stack.api(&u);

    // An empty POST body is `{}`.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/challenges/initialize", stack.service_url()))
        .header("x-mock-user-id", &u)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    events.login(&u).await;

    let raw = reqwest::Client::new()
        .get(format!("{}/v1/challenges", stack.service_url()))
        .header("x-mock-user-id", &u)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str::<NoDuplicateKeys>(&raw)
        .unwrap_or_else(|e| panic!("GET /v1/challenges: {e}"));
    let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(keys(&list), ["challenges"]);
    // Paged (CONTRACT §8): the same challenges, one per page, then `nextPageToken` once.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let raw = reqwest::Client::new()
            .get(format!(
                "{}/v1/challenges?pageSize=1&pageToken={token}",
                stack.service_url()
            ))
            .header("x-mock-user-id", &u)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str::<NoDuplicateKeys>(&raw)
            .unwrap_or_else(|e| panic!("GET /v1/challenges?pageSize=1: {e}"));
        let page: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(keys(&page), ["challenges", "nextPageToken"]);
        // Ids only: progress may still move meanwhile (the login above).
        paged.extend(
            page["challenges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["challengeId"].clone()),
        );
        token = page["nextPageToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    let ids: Vec<serde_json::Value> = list["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["challengeId"].clone())
        .collect();
    assert_eq!(paged, ids);
    let challenge = &list["challenges"][0];
    assert_eq!(
        keys(challenge),
        ["challengeId", "description", "goals", "name"]
    );
    let goal_keys = [
        "claimedAt",
        "completedAt",
        "description",
        "expiresAt",
        "expiresInSeconds",
        "goalId",
        "isActive",
        "locked",
        "maxTimes",
        "name",
        "prerequisites",
        "progress",
        "requirement",
        "requirementGroups",
        "reward",
        "rewards",
        "status",
        "timesClaimed",
    ];
    for c in list["challenges"].as_array().unwrap() {
        for g in c["goals"].as_array().unwrap() {
            assert_eq!(keys(g), goal_keys, "{g}");
            assert_eq!(
                keys(&g["requirement"]),
                ["operator", "statCode", "targetValue"]
            );
            assert_eq!(keys(&g["reward"]), ["quantity", "rewardId", "type"]);
            assert_eq!(g["rewards"][0], g["reward"], "the first of the rewards");
        }
    }
    // Zero values are emitted, not omitted.
    let untouched = api.goal(WINTER, "reach-level-5").await;
    assert_eq!(untouched["progress"], 0);
    assert_eq!(untouched["isActive"], false);
    assert_eq!(untouched["completedAt"], "");
    assert_eq!(untouched["requirement"]["operator"], ">=");

    // Requests accept snake_case and ignore unknown fields.
    let body = api
        .post(
            &format!("/v1/challenges/{POOL}/goals/batch-select"),
            json!({"goal_ids": ["dc-goal-1"], "replace_existing": false, "somethingElse": 1}),
        )
        .await
        .expect(200);
    assert_eq!(goal_ids(&body["selectedGoals"]), ["dc-goal-1"]);
    let r = api
        .put(
            &format!("/v1/challenges/{POOL}/goals/dc-goal-2/active"),
            json!({"is_active": true}),
        )
        .await
        .expect(200);
    assert_eq!(r["isActive"], true);

    // Errors are JSON with exactly code, message, details.
    let err = api.claim(WINTER, "no-such-goal").await.expect(404);
    assert_eq!(keys(&err), ["code", "details", "message"]);

    // Ops endpoints of both binaries (CONTRACT §1, §6), after one gRPC call to each.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", stack.service_grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    ServiceClient::new(channel)
        .health_check(HealthCheckRequest {})
        .await
        .expect("service.Service/HealthCheck");
    let http = reqwest::Client::new();
    for (who, port) in [
        ("service", stack.service_ports.metrics),
        ("event handler", stack.handler_ports.metrics),
    ] {
        for path in ["/healthz", "/livez"] {
            let r = http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{who} {path}");
        }
        let metrics = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in ["grpc_server_handled_total", "challenge_"] {
            assert!(metrics.contains(name), "{who} /metrics lacks {name}");
        }
    }
}
