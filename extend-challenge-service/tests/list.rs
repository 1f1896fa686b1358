//! The list's tags, status and paging (CONTRACT §8) through both transports against real
//! Postgres: REST and gRPC on the real sockets of one service (the fixture config with tags
//! and four more challenges), and, in process, that a list without these parameters is byte
//! for byte what the existing fast paths write.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use extend_challenge_common::clock::Clock;
use extend_challenge_common::config::{self, ChallengeConfig};
use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_client::ServiceClient;
use extend_challenge_service::auth::Authenticator;
use extend_challenge_service::server::{Application, Dependencies};
use http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const LIST: &str = "/challenge/v1/challenges";

/// The shared fixture with tags (challenge `winter` is `seasonal`, `daily` is `daily`; goals
/// `combat`, `pvp`, `hard`) and four one-goal challenges `e1`–`e4` (`e2`'s goal is `combat`).
fn tagged_config() -> Arc<ChallengeConfig> {
    let mut raw: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let challenges = raw["challenges"].as_array_mut().unwrap();
    let goal_tags: &[(&str, &[&str])] = &[
        ("kill-10", &["combat"]),
        ("kill-50", &["combat", "hard"]),
        ("win-5", &["pvp"]),
        ("win-20", &["pvp", "hard"]),
        ("daily-play", &["pvp"]),
        ("weekly-wins", &["pvp"]),
    ];
    for c in challenges.iter_mut() {
        match c["challengeId"].as_str().unwrap() {
            "winter" => c["tags"] = json!(["seasonal"]),
            "daily" => c["tags"] = json!(["daily"]),
            _ => {}
        }
        for g in c["goals"].as_array_mut().unwrap() {
            if let Some((_, tags)) = goal_tags.iter().find(|(id, _)| g["goalId"] == *id) {
                g["tags"] = json!(tags);
            }
        }
    }
    for i in 1..=4 {
        let mut goal = json!({
            "goalId": format!("e{i}-g"), "name": format!("Extra {i}"), "description": "",
            "eventSource": "statistic", "defaultAssigned": false,
            "requirement": {"statCode": "kills", "operator": ">=", "targetValue": 1},
            "reward": {"type": "ITEM", "rewardId": "x", "quantity": 1}
        });
        if i == 2 {
            goal["tags"] = json!(["combat"]);
        }
        challenges.push(
            json!({"challengeId": format!("e{i}"), "name": format!("Extra {i}"),
                               "goals": [goal]}),
        );
    }
    Arc::new(config::parse_and_validate("tagged.json", &raw.to_string()).unwrap())
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    pool: PgPool,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(pool: PgPool) -> Running {
    let settings = settings(&[]);
    let (clock, _hand) = Clock::manual(at(NOON));
    let deps = Dependencies {
        catalog_version: None,
        pool: pool.clone(),
        config: tagged_config(),
        granter: Arc::new(CountingGranter::default()),
        auth: Authenticator::from_settings(&settings, reqwest::Client::new()),
        clock,
    };
    let app = Application::build(&settings, deps).await.unwrap();
    Running {
        grpc: app.grpc_addr(),
        http: app.http_addr(),
        pool,
        stop: app.shutdown_token(),
        task: tokio::spawn(app.run_until_stopped()),
    }
}

impl Running {
    async fn client(&self) -> ServiceClient<Channel> {
        ServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// `GET {LIST}{rest}` as `user` over HTTP: status and JSON body.
    async fn rest(&self, rest: &str, user: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{LIST}{rest}", self.http))
            .header("x-mock-user-id", user)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn grpc_list(
        &self,
        user: &str,
        req: pb::GetChallengesRequest,
    ) -> Result<pb::GetChallengesResponse, tonic::Status> {
        let mut req = tonic::Request::new(req);
        req.metadata_mut()
            .insert("x-mock-user-id", user.parse().unwrap());
        self.client()
            .await
            .get_user_challenges(req)
            .await
            .map(|r| r.into_inner())
    }

    async fn grpc_one(
        &self,
        user: &str,
        req: pb::GetChallengeRequest,
    ) -> Result<pb::Challenge, tonic::Status> {
        let mut req = tonic::Request::new(req);
        req.metadata_mut()
            .insert("x-mock-user-id", user.parse().unwrap());
        self.client()
            .await
            .get_user_challenge(req)
            .await
            .map(|r| r.into_inner())
    }

    /// Initializes `user` (kill-10, login-3 and daily-login assigned and active), then puts
    /// kill-10 at completed and login-3 at in_progress.
    async fn player(&self, user: &str) {
        let resp = reqwest::Client::new()
            .post(format!("http://{}{LIST}/initialize", self.http))
            .header("x-mock-user-id", user)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        for (goal, progress, status) in
            [("kill-10", 10, "completed"), ("login-3", 1, "in_progress")]
        {
            materialize(&self.pool, &tagged_config(), user, goal).await;
            let n = sqlx::query(
                "UPDATE user_goal_progress SET progress = $3, status = $4, \
                 completed_at = CASE WHEN $4 = 'completed' THEN now() END \
                 WHERE user_id = $1 AND goal_id = $2",
            )
            .bind(user)
            .bind(goal)
            .bind(progress)
            .bind(status)
            .execute(&self.pool)
            .await
            .unwrap()
            .rows_affected();
            assert_eq!(n, 1);
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn query(
    tags: &[&str],
    status: &str,
    page_size: i32,
    page_token: &str,
) -> pb::GetChallengesRequest {
    pb::GetChallengesRequest {
        active_only: false,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        status: status.into(),
        page_size,
        page_token: page_token.into(),
    }
}

/// `[(challenge, [goal…])…]` of a REST list body.
fn shape(body: &Value) -> Vec<(String, Vec<String>)> {
    body["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["challengeId"].as_str().unwrap().to_string(), goal_ids(c)))
        .collect()
}

fn pb_shape(resp: &pb::GetChallengesResponse) -> Vec<(String, Vec<String>)> {
    resp.challenges
        .iter()
        .map(|c| {
            (
                c.challenge_id.clone(),
                c.goals.iter().map(|g| g.goal_id.clone()).collect(),
            )
        })
        .collect()
}

fn owned(expected: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    expected
        .iter()
        .map(|(c, gs)| (c.to_string(), gs.iter().map(|g| g.to_string()).collect()))
        .collect()
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn tags_and_status_filter_goals_over_both_transports(pool: PgPool) {
    let svc = start(pool).await;
    svc.player("amy").await;
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a [(&'a str, &'a [&'a str])],
    );
    let cases: &[Case] = &[
        // A goal's own tag; challenges left without goals are dropped.
        (
            "tags=combat",
            &["combat"],
            "",
            &[("winter", &["kill-10", "kill-50"]), ("e2", &["e2-g"])],
        ),
        // A challenge's tag shows every goal of it.
        (
            "tags=seasonal",
            &["seasonal"],
            "",
            &[(
                "winter",
                &["kill-10", "kill-50", "login-3", "win-5", "win-20"],
            )],
        ),
        // Any of the tags.
        (
            "tags=pvp,daily",
            &["pvp", "daily"],
            "",
            &[
                ("winter", &["win-5", "win-20"]),
                ("daily", &["daily-login", "daily-play"]),
                ("weekly", &["weekly-wins"]),
            ],
        ),
        (
            "tags=pvp&tags=hard",
            &["pvp", "hard"],
            "",
            &[
                ("winter", &["kill-50", "win-5", "win-20"]),
                ("daily", &["daily-play"]),
                ("weekly", &["weekly-wins"]),
            ],
        ),
        // A tag no goal has: nothing.
        ("tags=nope", &["nope"], "", &[]),
        // Status as the player sees it (no row: not_started).
        (
            "status=completed",
            &[],
            "completed",
            &[("winter", &["kill-10"])],
        ),
        (
            "status=in_progress",
            &[],
            "in_progress",
            &[("winter", &["login-3"])],
        ),
        ("status=claimed", &[], "claimed", &[]),
        (
            "status=not_started&tags=combat,daily",
            &["combat", "daily"],
            "not_started",
            &[
                ("winter", &["kill-50"]),
                ("daily", &["daily-login", "daily-play"]),
                ("e2", &["e2-g"]),
            ],
        ),
    ];
    for (q, tags, status, expected) in cases {
        let (code, body) = svc.rest(&format!("?{q}"), "amy").await;
        assert_eq!(code, 200, "{q}: {body}");
        assert_eq!(shape(&body), owned(expected), "REST {q}");
        assert!(body.get("nextPageToken").is_none(), "{q}: unpaged: {body}");
        let resp = svc
            .grpc_list("amy", query(tags, status, 0, ""))
            .await
            .unwrap();
        assert_eq!(pb_shape(&resp), owned(expected), "gRPC {q}");
        assert_eq!(resp.next_page_token, "");
        // Both transports show the same goals with the same content.
        let mut as_json = serde_json::to_value(&resp).unwrap();
        as_json.as_object_mut().unwrap().remove("nextPageToken");
        assert_eq!(as_json, body, "{q}");
    }
    // Combined with active_only: amy's active goals are kill-10, login-3 and daily-login.
    let (_, body) = svc.rest("?active_only=true&tags=combat,daily", "amy").await;
    assert_eq!(
        shape(&body),
        owned(&[("winter", &["kill-10"]), ("daily", &["daily-login"])])
    );
    let mut req = query(&["combat", "daily"], "", 0, "");
    req.active_only = true;
    let resp = svc.grpc_list("amy", req).await.unwrap();
    assert_eq!(pb_shape(&resp), shape(&body));
    // Another player sees every goal not_started.
    let (_, body) = svc.rest("?status=completed", "bob").await;
    assert_eq!(body, json!({"challenges": []}));

    // One challenge takes tags and status too, and keeps the challenge when nothing shows.
    let (code, one) = svc.rest("/winter?tags=pvp", "amy").await;
    assert_eq!(code, 200);
    assert_eq!(goal_ids(&one), ["win-5", "win-20"]);
    let (_, one) = svc.rest("/winter?status=in_progress", "amy").await;
    assert_eq!(goal_ids(&one), ["login-3"]);
    let (_, none) = svc.rest("/daily?tags=combat", "amy").await;
    assert_eq!(none["challengeId"], "daily");
    assert_eq!(none["goals"], json!([]));
    let one_pb = svc
        .grpc_one(
            "amy",
            pb::GetChallengeRequest {
                challenge_id: "winter".into(),
                tags: vec!["hard".into()],
                status: "not_started".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = one_pb.goals.iter().map(|g| g.goal_id.as_str()).collect();
    assert_eq!(ids, ["kill-50", "win-20"]);
    let (_, one) = svc
        .rest("/winter?tags=hard&status=not_started", "amy")
        .await;
    assert_eq!(one, serde_json::to_value(&one_pb).unwrap());
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn pages_follow_tokens_over_both_transports(pool: PgPool) {
    let svc = start(pool).await;
    svc.player("cat").await;
    let (_, all) = svc.rest("", "cat").await;
    assert_eq!(all["challenges"].as_array().unwrap().len(), 7);

    // REST: pages of 2 over the 7 challenges, each token taken from the previous page.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (code, body) = svc
            .rest(&format!("?pageSize=2&pageToken={token}"), "cat")
            .await;
        assert_eq!(code, 200, "{body}");
        token = body["nextPageToken"].as_str().unwrap().to_string();
        pages.push(shape(&body).into_iter().map(|c| c.0).collect::<Vec<_>>());
        if token.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "no end: {pages:?}");
    }
    assert_eq!(
        pages,
        [
            vec!["winter", "daily"],
            vec!["weekly", "e1"],
            vec!["e2", "e3"],
            vec!["e4"]
        ]
    );
    // Page by page, the same content as the unpaged list.
    let mut joined = Vec::new();
    let mut token = String::new();
    loop {
        let resp = svc
            .grpc_list("cat", query(&[], "", 3, &token))
            .await
            .unwrap();
        joined.extend(resp.challenges);
        token = resp.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut unpaged = serde_json::to_value(pb::GetChallengesResponse {
        challenges: joined,
        next_page_token: String::new(),
    })
    .unwrap();
    unpaged.as_object_mut().unwrap().remove("nextPageToken");
    assert_eq!(unpaged, all);

    // A page that ends exactly at the last match says so: e3 and e4 have no combat goal.
    let (_, p1) = svc.rest("?tags=combat&pageSize=1", "cat").await;
    assert_eq!(shape(&p1)[0].0, "winter");
    let t1 = p1["nextPageToken"].as_str().unwrap();
    assert!(!t1.is_empty());
    let (_, p2) = svc
        .rest(&format!("?tags=combat&pageSize=1&pageToken={t1}"), "cat")
        .await;
    assert_eq!(shape(&p2), owned(&[("e2", &["e2-g"])]));
    assert_eq!(p2["nextPageToken"], "");
    // The page size may change between pages; the token works over the other transport.
    let resp = svc
        .grpc_list("cat", query(&["combat"], "", 5, t1))
        .await
        .unwrap();
    assert_eq!(pb_shape(&resp), owned(&[("e2", &["e2-g"])]));
    assert_eq!(resp.next_page_token, "");
    // Everything on one page: the token is there, and empty.
    let (_, one) = svc.rest("?pageSize=100", "cat").await;
    assert_eq!(one["nextPageToken"], "");
    assert_eq!(one["challenges"], all["challenges"]);
    // No match at all, paged.
    let (_, none) = svc.rest("?tags=nope&pageSize=5", "cat").await;
    assert_eq!(none, json!({"challenges": [], "nextPageToken": ""}));
    svc.stop().await;
}

#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn bad_parameters_are_invalid_argument_over_both_transports(pool: PgPool) {
    let svc = start(pool).await;
    let (_, p1) = svc.rest("?tags=combat&pageSize=1", "dan").await;
    let combat_token = p1["nextPageToken"].as_str().unwrap().to_string();
    let rest_cases = [
        ("?status=done", "invalid status 'done'"),
        ("?status=Completed", "invalid status 'Completed'"),
        ("?pageSize=0", "pageSize"),
        (
            "?pageSize=101",
            "pageSize must be between 1 and 100, got 101",
        ),
        ("?pageSize=-1", "pageSize must be between 1 and 100, got -1"),
        ("?pageSize=x", "pageSize"),
        ("?pageSize=2&pageToken=garbage", "invalid pageToken"),
        ("?pageToken=abc", "pageToken needs pageSize"),
        ("?tags=a,,b", "empty tag"),
        ("/winter?status=nope", "invalid status 'nope'"),
    ];
    for (q, text) in rest_cases {
        let (code, body) = svc.rest(q, "dan").await;
        assert_eq!(code, 400, "{q}: {body}");
        assert_eq!(body["code"], 3, "{q}");
        assert!(
            body["message"].as_str().unwrap().contains(text),
            "{q}: {body}"
        );
    }
    // A token is bound to the filters it was issued for.
    let (code, body) = svc
        .rest(
            &format!("?tags=pvp&pageSize=1&pageToken={combat_token}"),
            "dan",
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("other tags, status or active_only"),
        "{body}"
    );
    let grpc_cases = [
        (query(&[], "done", 0, ""), "invalid status"),
        (
            query(&[], "", 101, ""),
            "pageSize must be between 1 and 100",
        ),
        (query(&[], "", -3, ""), "pageSize must be between 1 and 100"),
        (query(&[], "", 2, "%%%"), "invalid pageToken"),
        (query(&[], "", 0, "abc"), "pageToken needs pageSize"),
        (query(&[""], "", 0, ""), "empty tag"),
        (query(&["pvp"], "", 1, &combat_token), "other tags"),
    ];
    for (req, text) in grpc_cases {
        let err = svc.grpc_list("dan", req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}");
        assert!(err.message().contains(text), "{req:?}: {err:?}");
    }
    let err = svc
        .grpc_one(
            "dan",
            pb::GetChallengeRequest {
                challenge_id: "winter".into(),
                status: "nope".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    svc.stop().await;
}

/// Without tags, status, pageSize and pageToken the answer is the existing fast path's, byte
/// for byte (REST's JSON and gRPC's encoded message); and the filtered writers, asked for
/// everything on one page, write the same bytes (plus the empty token over REST).
#[sqlx::test(migrator = "extend_challenge_common::store::MIGRATOR")]
async fn without_the_new_parameters_the_answer_is_unchanged(pool: PgPool) {
    let h = Harness::with_config(pool, tagged_config(), None);
    h.completed("eve", "kill-10").await;
    h.set_row("eve", "login-3", 2, "in_progress", None).await;
    for active_only in [false, true] {
        let fast_json = h.service.challenges_json("eve", active_only).await.unwrap();
        let fast_proto = h
            .service
            .challenges_proto("eve", active_only)
            .await
            .unwrap();
        for q in [
            format!("?active_only={active_only}"),
            format!("?activeOnly={active_only}&tags=&status="),
            format!("?active_only={active_only}&pageToken="),
        ] {
            let (status, body) = h.call_raw("GET", &format!("{LIST}{q}"), "eve", None).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, fast_json, "{q}");
        }
        let plain = pb::GetChallengesRequest {
            active_only,
            ..Default::default()
        };
        assert_eq!(
            h.service.list_proto("eve", &plain).await.unwrap(),
            fast_proto
        );
        assert_eq!(h.service.list_json("eve", &plain).await.unwrap(), fast_json);

        // The filtered writers on the whole list: the same challenges and goals, spliced
        // the same way.
        let (_, paged) = h
            .call_raw(
                "GET",
                &format!("{LIST}?active_only={active_only}&pageSize=100"),
                "eve",
                None,
            )
            .await;
        let expected = format!(
            "{},\"nextPageToken\":\"\"}}",
            fast_json.strip_suffix('}').unwrap()
        );
        assert_eq!(paged, expected);
        let paged_req = pb::GetChallengesRequest {
            active_only,
            page_size: 100,
            ..Default::default()
        };
        let paged_proto = h.service.list_proto("eve", &paged_req).await.unwrap();
        assert_eq!(paged_proto, fast_proto);
        // The encoded filtered list decodes to the prost structs of the generated path.
        let filtered = pb::GetChallengesRequest {
            active_only,
            tags: vec!["combat".into(), "daily".into()],
            page_size: 1,
            ..Default::default()
        };
        let bytes = h.service.list_proto("eve", &filtered).await.unwrap();
        let decoded = <pb::GetChallengesResponse as prost::Message>::decode(&bytes[..]).unwrap();
        let structs = h
            .service
            .get_user_challenges("eve", filtered.clone())
            .await
            .unwrap();
        assert_eq!(decoded, structs);
        assert!(!structs.next_page_token.is_empty());
        let rest_json: Value =
            serde_json::from_str(&h.service.list_json("eve", &filtered).await.unwrap()).unwrap();
        assert_eq!(rest_json, serde_json::to_value(&structs).unwrap());
    }
}
