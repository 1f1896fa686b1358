//! `challenge-demo` as a process against the real pair (the e2e harness starts the event
//! handler and the service on a fresh database with a fake AGS): the JSON shape of every
//! subcommand, exit codes and error texts, the bool-flag grammar, and password / client
//! auth against the fake IAM.

use std::time::Duration;

use extend_challenge_e2e::ags::{TokenClaims, sign_token};
use extend_challenge_e2e::{NAMESPACE, Stack, StackOptions, eventually};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WINTER: &str = "winter-challenge-2025";
const POOL: &str = "daily-challenges";
const ROTATING: &str = "rotating-daily";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn failed(self) -> Out {
        assert_eq!(
            self.code, 1,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

async fn cli<S: AsRef<str>>(args: &[S]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_challenge-demo"))
        .args(args.iter().map(AsRef::as_ref))
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run challenge-demo");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The global flags for `user` against `stack`, then `rest`.
fn args(stack: &Stack, user: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("--backend-url={}", stack.service_url()),
        format!("--event-handler-url={}", stack.handler_addr()),
        format!("--namespace={NAMESPACE}"),
        format!("--user-id={user}"),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// Types in place of values: what a golden shape compares.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Keys of the objects printed at `indent` spaces, in order of first appearance (the
/// demo prints struct fields in declaration order and map keys sorted).
fn keys_at(raw: &str, indent: usize) -> Vec<String> {
    let prefix = format!("{}\"", " ".repeat(indent));
    let mut keys: Vec<String> = Vec::new();
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix(&prefix)
            && let Some(end) = rest.find("\":")
        {
            let k = rest[..end].to_string();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

const GOAL_KEYS: [&str; 14] = [
    "goalId",
    "name",
    "description",
    "requirement",
    "reward",
    "prerequisites",
    "progress",
    "status",
    "locked",
    "completedAt",
    "claimedAt",
    "isActive",
    "expiresAt",
    "expiresInSeconds",
];

fn goal_shape() -> Value {
    json!({
        "goalId": "string", "name": "string", "description": "string",
        "requirement": {"statCode": "string", "operator": "string", "targetValue": "number"},
        "reward": {"type": "string", "rewardId": "string", "quantity": "number"},
        "prerequisites": [], "progress": "number", "status": "string", "locked": "bool",
        "completedAt": "string", "claimedAt": "string", "isActive": "bool",
        "expiresAt": "string", "expiresInSeconds": "number"
    })
}

async fn goal(stack: &Stack, user: &str, challenge: &str, goal: &str) -> Value {
    let c = cli(&args(stack, user, &["get-challenge", challenge]))
        .await
        .ok()
        .json();
    c["goals"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["goalId"] == goal).cloned())
        .unwrap_or_else(|| panic!("goal {goal} not in {c}"))
}

#[tokio::test]
async fn every_subcommand_prints_the_demos_json_shape() {
    let stack = Stack::start("demo-shapes", StackOptions::default()).await;
    let user = "shape-user";

    let out = cli(&args(&stack, user, &["initialize-player", "--format=json"]))
        .await
        .ok();
    assert!(out.stdout.ends_with("}\n"), "Println: {:?}", out.stdout);
    let v = out.json();
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["assignedGoals", "newAssignments", "totalActive"]
    );
    assert_eq!(
        keys_at(&out.stdout, 6),
        [
            "challengeId",
            "goalId",
            "name",
            "description",
            "isActive",
            "assignedAt",
            "expiresAt",
            "progress",
            "target",
            "status"
        ],
        "the demo's AssignedGoal drops the service's requirement and reward"
    );
    assert_eq!(v["newAssignments"], 3);

    let out = cli(&args(&stack, user, &["list-challenges"])).await.ok();
    let v = out.json();
    assert_eq!(keys_at(&out.stdout, 2), ["challenges", "total"]);
    assert_eq!(
        keys_at(&out.stdout, 6),
        ["challengeId", "name", "description", "goals"]
    );
    assert_eq!(keys_at(&out.stdout, 10), GOAL_KEYS);
    assert_eq!(v["total"], v["challenges"].as_array().unwrap().len());
    assert_eq!(
        shape(&v["challenges"][0]["goals"][0]),
        goal_shape(),
        "{}",
        v["challenges"][0]
    );
    // `>=` printed as Go escapes it.
    assert!(
        out.stdout.contains(r#""operator": "\u003e=""#),
        "{}",
        out.stdout
    );

    let out = cli(&args(&stack, user, &["get-challenge", WINTER]))
        .await
        .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["challengeId", "name", "description", "goals"]
    );
    assert_eq!(keys_at(&out.stdout, 6), GOAL_KEYS);

    let out = cli(&args(
        &stack,
        user,
        &[
            "set-goal-active",
            WINTER,
            "complete-tutorial",
            "--active=true",
        ],
    ))
    .await
    .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["challengeId", "goalId", "isActive", "assignedAt", "message"]
    );
    assert_eq!(out.json()["isActive"], true);

    let out = cli(&args(
        &stack,
        user,
        &[
            "trigger-event",
            "stat-update",
            "--stat-code=tutorial_completed",
            "--value=1",
        ],
    ))
    .await
    .ok();
    assert!(
        out.stdout.ends_with('}'),
        "fmt.Print, no newline: {:?}",
        out.stdout
    );
    assert_eq!(
        keys_at(&out.stdout, 2),
        [
            "duration_ms",
            "event",
            "stat_code",
            "status",
            "timestamp",
            "user_id",
            "value"
        ]
    );
    let v = out.json();
    assert_eq!(
        (
            v["status"].as_str(),
            v["user_id"].as_str(),
            v["value"].as_i64()
        ),
        (Some("success"), Some(user), Some(1))
    );

    let out = cli(&args(&stack, user, &["trigger-event", "login"]))
        .await
        .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["duration_ms", "event", "status", "timestamp", "user_id"]
    );

    eventually(
        "the tutorial goal to complete",
        Duration::from_secs(20),
        || async {
            let g = goal(&stack, user, WINTER, "complete-tutorial").await;
            (g["status"] == "completed")
                .then_some(())
                .ok_or(g.to_string())
        },
    )
    .await;

    let out = cli(&args(
        &stack,
        user,
        &["claim-reward", WINTER, "complete-tutorial", "--format=json"],
    ))
    .await
    .ok();
    assert!(out.stdout.ends_with('}'));
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["challenge_id", "goal_id", "reward", "status", "timestamp"]
    );
    assert_eq!(keys_at(&out.stdout, 4), ["type", "rewardId", "quantity"]);
    let v = out.json();
    assert_eq!(v["status"], "success");
    assert_eq!(
        v["reward"],
        json!({"type": "WALLET", "rewardId": "GOLD", "quantity": 100})
    );

    let out = cli(&args(
        &stack,
        user,
        &[
            "batch-select",
            POOL,
            "--goal-ids=dc-goal-1, dc-goal-2",
            "--replace-existing=false",
            "--format=json",
        ],
    ))
    .await
    .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        [
            "selectedGoals",
            "challengeId",
            "totalActiveGoals",
            "replacedGoals"
        ]
    );
    assert_eq!(keys_at(&out.stdout, 6), GOAL_KEYS);
    let v = out.json();
    let mut ids: Vec<&str> = v["selectedGoals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["goalId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["dc-goal-1", "dc-goal-2"],
        "ids split on ',' and trimmed"
    );

    let out = cli(&args(
        &stack,
        user,
        &[
            "random-select",
            POOL,
            "--count=2",
            "--exclude-active",
            "--format=json",
        ],
    ))
    .await
    .ok();
    let v = out.json();
    assert_eq!(
        keys_at(&out.stdout, 2),
        [
            "selectedGoals",
            "challengeId",
            "totalActiveGoals",
            "replacedGoals"
        ]
    );
    assert_eq!(v["selectedGoals"].as_array().unwrap().len(), 2);
    assert!(
        v["selectedGoals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["goalId"] != "dc-goal-1" && g["goalId"] != "dc-goal-2"),
        "--exclude-active reached the service: {v}"
    );

    // get-rotation-status ignores --format.
    let out = cli(&args(
        &stack,
        user,
        &["get-rotation-status", ROTATING, "--format=text"],
    ))
    .await
    .ok();
    let v = out.json();
    assert_eq!(keys_at(&out.stdout, 2), ["challengeId", "rotation"]);
    assert_eq!(
        keys_at(&out.stdout, 4),
        ["enabled", "type", "schedule", "currentPeriod", "nextPeriod"]
    );
    assert_eq!(v["challengeId"], ROTATING);
    assert_eq!(v["rotation"]["schedule"], "daily");
    assert!(
        v["rotation"]["currentPeriod"]["expiresInSeconds"]
            .as_i64()
            .unwrap()
            > 0,
        "{v}"
    );
    assert_eq!(
        shape(&v["rotation"]["currentPeriod"]),
        json!({"startTime": "string", "endTime": "string", "expiresInSeconds": "number"})
    );

    // The mock verifier (mock mode): the demo's fixed set.
    let out = cli(&args(
        &stack,
        user,
        &["verify-entitlement", "--item-id=winter_sword"],
    ))
    .await
    .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        [
            "entitlement_id",
            "granted_at",
            "item_id",
            "namespace",
            "quantity",
            "status"
        ]
    );
    assert_eq!(out.json()["status"], "ACTIVE");
    let out = cli(&args(&stack, user, &["verify-wallet", "--currency=GOLD"]))
        .await
        .ok();
    assert_eq!(
        keys_at(&out.stdout, 2),
        [
            "balance",
            "currency_code",
            "namespace",
            "status",
            "wallet_id"
        ]
    );
    assert_eq!(out.json()["balance"], 150);
    let out = cli(&args(&stack, user, &["list-inventory"])).await.ok();
    assert_eq!(keys_at(&out.stdout, 2), ["entitlements", "total"]);
    assert_eq!(
        keys_at(&out.stdout, 6),
        [
            "EntitlementID",
            "ItemID",
            "Namespace",
            "Status",
            "Quantity",
            "GrantedAt"
        ]
    );
    assert_eq!(out.json()["total"], 2);
    let out = cli(&args(&stack, user, &["list-wallets"])).await.ok();
    assert_eq!(keys_at(&out.stdout, 2), ["total", "wallets"]);
    assert_eq!(
        keys_at(&out.stdout, 6),
        ["WalletID", "CurrencyCode", "Namespace", "Balance", "Status"]
    );

    // watch --once prints the list once (text form: with the tick header).
    let out = cli(&args(
        &stack,
        user,
        &["watch", "--once", "--challenge", WINTER, "--format=text"],
    ))
    .await
    .ok();
    assert!(
        out.stdout.contains("] Initial fetch\nFound 1 challenge(s)"),
        "{}",
        out.stdout
    );
    let out = cli(&args(
        &stack,
        user,
        &["watch", "--once=true", "--challenge=nope"],
    ))
    .await
    .ok();
    assert_eq!(out.json(), json!({"challenges": [], "total": 0}));

    // Text and table forms of the shared formatter.
    let out = cli(&args(
        &stack,
        user,
        &["get-challenge", WINTER, "--format=text"],
    ))
    .await
    .ok();
    assert!(
        out.stdout.contains("  [CLAIMED] Complete Tutorial (1/1)"),
        "{}",
        out.stdout
    );
    let out = cli(&args(&stack, user, &["list-challenges", "--format=table"]))
        .await
        .ok();
    assert!(out.stdout.starts_with(&format!(
        "{:<20} {:<30} {:<15} {:<15}\n{}",
        "ID",
        "NAME",
        "PROGRESS",
        "STATUS",
        "-".repeat(80)
    )));
    let out = cli(&args(
        &stack,
        user,
        &["trigger-event", "login", "--format=text"],
    ))
    .await
    .ok();
    assert!(
        out.stdout.starts_with("✓ Event triggered successfully ("),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn failures_exit_1_with_the_demos_words() {
    let stack = Stack::start("demo-errors", StackOptions::default()).await;
    let user = "error-user";

    // Usage errors: `Error: ...` then the usage on stderr, exit 1, nothing on stdout.
    let out = cli(&args(&stack, user, &["list-challenges", "--bogus"]))
        .await
        .failed();
    assert!(
        out.stderr.starts_with("Error: unknown flag: --bogus\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Usage: challenge-demo list-challenges"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    let out = cli(&args(&stack, user, &["claim", "c", "g"]))
        .await
        .failed();
    assert_eq!(
        out.stderr,
        "Error: unknown command \"claim\" for \"challenge-demo\"\nRun 'challenge-demo --help' for usage.\n"
    );
    let out = cli(&args(&stack, user, &["claim-reward", WINTER]))
        .await
        .failed();
    assert!(
        out.stderr
            .starts_with("Error: accepts 2 arg(s), received 1\n"),
        "{}",
        out.stderr
    );
    let out = cli(&args(&stack, user, &["trigger-event", "stat-update"]))
        .await
        .failed();
    assert!(
        out.stderr
            .starts_with("Error: required flag(s) \"stat-code\", \"value\" not set\n"),
        "{}",
        out.stderr
    );
    let out = cli(&args(&stack, user, &["batch-select", POOL]))
        .await
        .failed();
    assert!(
        out.stderr
            .starts_with("Error: required flag(s) \"goal-ids\" not set\n"),
        "{}",
        out.stderr
    );
    let out = cli(&args(&stack, user, &["random-select", POOL, "--count=abc"]))
        .await
        .failed();
    assert!(
        out.stderr.starts_with("Error: invalid argument \"abc\" for \"--count\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax\n"),
        "{}",
        out.stderr
    );
    for count in ["--count=0", "--count=-1"] {
        let out = cli(&args(&stack, user, &["random-select", POOL, count]))
            .await
            .failed();
        assert!(
            out.stderr
                .starts_with("Error: count must be greater than 0\n"),
            "{}",
            out.stderr
        );
    }
    let out = cli(&args(
        &stack,
        user,
        &["trigger-event", "stat-update", "--stat-code=", "--value=1"],
    ))
    .await
    .failed();
    assert!(
        out.stderr.starts_with("Error: --stat-code is required\n"),
        "{}",
        out.stderr
    );

    // No subcommand starts the TUI, which needs a terminal: without one, an error, not a panic.
    for tui in [vec![], vec!["tui"]] {
        let out = cli(&tui).await.failed();
        assert!(
            out.stderr
                .starts_with("Error: the TUI needs an interactive terminal"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "no escape codes: {:?}", out.stdout);
    }

    // Help is not an error.
    let out = cli(&["trigger-event"]).await.ok();
    assert!(out.stdout.contains("stat-update"), "{}", out.stdout);
    cli(&["--help"]).await.ok();
    cli(&["help", "claim-reward"]).await.ok();

    // A 4xx from the service: `HTTP <code>: <body>`, not retried.
    cli(&args(&stack, user, &["initialize-player"])).await.ok();
    let out = cli(&args(&stack, user, &["get-challenge", "no-such-challenge"]))
        .await
        .failed();
    assert!(
        out.stderr.starts_with(
            "Error: failed to get challenge: HTTP 404: {\"code\":5,\"message\":\"challenge 'no-such-challenge' not found\",\"details\":[]}\n"
        ),
        "{}",
        out.stderr
    );
    // claim-reward prints its error envelope first, on stdout.
    let out = cli(&args(
        &stack,
        user,
        &["claim-reward", WINTER, "complete-tutorial", "--format=json"],
    ))
    .await
    .failed();
    let v = out.json();
    assert_eq!(
        keys_at(&out.stdout, 2),
        ["challenge_id", "error", "goal_id", "status", "timestamp"]
    );
    assert_eq!(v["status"], "error");
    assert!(
        v["error"].as_str().unwrap().starts_with("HTTP 400: "),
        "{v}"
    );
    assert!(
        v["error"].as_str().unwrap().contains("Goal not completed"),
        "{v}"
    );
    assert!(
        out.stderr.starts_with("Error: claim failed: HTTP 400: "),
        "{}",
        out.stderr
    );
    let out = cli(&args(&stack, user, &["batch-select", POOL, "--goal-ids="]))
        .await
        .failed();
    assert!(out.stderr.contains("HTTP 4"), "{}", out.stderr);

    // A 5xx: three attempts, then the demo's words without the body.
    let failing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("{\"code\":14}"))
        .mount(&failing)
        .await;
    let out = cli(&[
        format!("--backend-url={}", failing.uri()),
        "list-challenges".into(),
    ])
    .await
    .failed();
    assert!(
        out.stderr.starts_with(
            "Error: failed to list challenges: list challenges: request failed after 3 attempts: server error: status 503\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(failing.received_requests().await.unwrap().len(), 3);

    // A backend URL that is not one: at once, no retries.
    let out = cli(&["--backend-url=notaurl", "list-challenges"])
        .await
        .failed();
    assert!(
        out.stderr.starts_with("Error: failed to list challenges: list challenges: create request: parse \"notaurl/v1/challenges\""),
        "{}",
        out.stderr
    );

    // An unreachable event handler: the envelope with the error, exit 1, no panic. Other
    // commands never connect to it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut a = args(&stack, user, &["trigger-event", "login"]);
    a[1] = format!("--event-handler-url={closed_addr}");
    let out = cli(&a).await.failed();
    let v = out.json();
    assert_eq!(v["status"], "error");
    assert!(
        v["error"].as_str().unwrap().starts_with(&format!(
            "failed to connect to event handler at {closed_addr}"
        )),
        "{v}"
    );
    assert!(
        out.stderr
            .starts_with("Error: event trigger failed: failed to connect"),
        "{}",
        out.stderr
    );
    let mut a = args(&stack, user, &["list-challenges"]);
    a[1] = format!("--event-handler-url={closed_addr}");
    cli(&a).await.ok();
}

#[tokio::test]
async fn bool_flags_take_a_value_only_with_equals() {
    let stack = Stack::start("demo-bools", StackOptions::default()).await;
    let user = "bool-user";
    cli(&args(&stack, user, &["initialize-player"])).await.ok();
    let set = |v: &'static str| {
        let a = args(
            &stack,
            user,
            &["set-goal-active", WINTER, "complete-tutorial", v],
        );
        async move { cli(&a).await }
    };

    assert_eq!(set("--active=false").await.ok().json()["isActive"], false);
    assert_eq!(
        goal(&stack, user, WINTER, "complete-tutorial").await["isActive"],
        false
    );
    assert_eq!(set("--active").await.ok().json()["isActive"], true);
    for (v, want) in [
        ("--active=0", false),
        ("--active=T", true),
        ("--active=FALSE", false),
        ("--active=1", true),
    ] {
        assert_eq!(set(v).await.ok().json()["isActive"], want, "{v}");
    }
    let out = set("--active=yes").await.failed();
    assert!(
        out.stderr.starts_with("Error: invalid argument \"yes\" for \"--active\" flag: strconv.ParseBool: parsing \"yes\": invalid syntax\n"),
        "{}",
        out.stderr
    );
    // `--active false` is `--active` plus a third positional argument.
    let a = args(
        &stack,
        user,
        &[
            "set-goal-active",
            WINTER,
            "complete-tutorial",
            "--active",
            "false",
        ],
    );
    let out = cli(&a).await.failed();
    assert!(
        out.stderr
            .starts_with("Error: accepts 2 arg(s), received 3\n"),
        "{}",
        out.stderr
    );
    assert_eq!(
        goal(&stack, user, WINTER, "complete-tutorial").await["isActive"],
        true,
        "nothing was sent"
    );

    // Where extra arguments are ignored, `--active-only false` means active only.
    let all = cli(&args(&stack, user, &["list-challenges"]))
        .await
        .ok()
        .json();
    let active = cli(&args(
        &stack,
        user,
        &["list-challenges", "--active-only", "false"],
    ))
    .await
    .ok()
    .json();
    let count = |v: &Value| -> usize {
        v["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["goals"].as_array().unwrap().len())
            .sum()
    };
    assert!(count(&active) < count(&all), "active {active} vs all {all}");
    assert!(active["challenges"].as_array().unwrap().iter().all(|c| {
        c["goals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["isActive"] == true)
    }));
    let explicit_false = cli(&args(
        &stack,
        user,
        &["list-challenges", "--active-only=false"],
    ))
    .await
    .ok()
    .json();
    assert_eq!(count(&explicit_false), count(&all));

    // Negative numbers as values, with or without `=`.
    let out = cli(&args(
        &stack,
        user,
        &[
            "trigger-event",
            "stat-update",
            "--stat-code",
            "tutorial_completed",
            "--value",
            "-10",
        ],
    ))
    .await
    .ok();
    assert_eq!(out.json()["value"], -10);
}

#[tokio::test]
async fn password_and_client_auth_against_the_fake_iam() {
    let stack = Stack::start(
        "demo-auth",
        StackOptions {
            auth_enabled: true,
            ..StackOptions::default()
        },
    )
    .await;
    let iam = &stack.ags.server;
    let player_token = sign_token(&TokenClaims::player("player-from-iam"));
    Mock::given(method("POST"))
        .and(path("/iam/v3/oauth/token"))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("username=dev%40example.com"))
        .and(body_string_contains("password=s3cret"))
        // Basic demo-client:demo-secret
        .and(header(
            "authorization",
            "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": player_token, "token_type": "Bearer", "expires_in": 3600
        })))
        .with_priority(1)
        .mount(iam)
        .await;
    let service_token = sign_token(&TokenClaims::player("service-account-user"));
    Mock::given(method("POST"))
        .and(path("/iam/v3/oauth/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        // Basic svc-client:svc-secret
        .and(header(
            "authorization",
            "Basic c3ZjLWNsaWVudDpzdmMtc2VjcmV0",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": service_token, "token_type": "Bearer", "expires_in": 3600
        })))
        .with_priority(1)
        .mount(iam)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/player-from-iam/entitlements/byItemId$"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "ent-42", "itemId": "snowman-trophy", "status": "ACTIVE", "useCount": 1,
            "grantedAt": "2026-01-02T03:04:05.000Z"
        })))
        .with_priority(1)
        .mount(iam)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/player-from-iam/wallets/currencies/summary$"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"currencyCode": "GOLD", "balance": 100, "walletInfos": [{"id": "w-1", "status": "ACTIVE"}]}
        ])))
        .with_priority(1)
        .mount(iam)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/platform/admin/namespaces/{NAMESPACE}/users/player-from-iam/entitlements$"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [
                {"id": "ent-42", "itemId": "snowman-trophy", "status": "ACTIVE", "useCount": 1,
                 "grantedAt": "2026-01-02T03:04:05.000Z"},
                {"id": "ent-43", "itemId": "winter-hat", "status": "INACTIVE", "useCount": 2}
            ],
            "paging": {}
        })))
        .with_priority(1)
        .mount(iam)
        .await;
    let iam_url = format!("{}/iam", stack.ags.url());
    let password = |rest: &[&str]| {
        let mut a = vec![
            format!("--backend-url={}", stack.service_url()),
            format!("--event-handler-url={}", stack.handler_addr()),
            format!("--namespace={NAMESPACE}"),
            "--auth-mode=password".to_string(),
            "--email=dev@example.com".to_string(),
            "--password=s3cret".to_string(),
            "--client-id=demo-client".to_string(),
            "--client-secret=demo-secret".to_string(),
            format!("--iam-url={iam_url}"),
            format!("--platform-url={}/platform", stack.ags.url()),
        ];
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    };

    // Password mode: the user is the token's `sub`, for REST and for events.
    let out = cli(&password(&["initialize-player", "--format=json"]))
        .await
        .ok();
    assert!(
        out.stderr
            .contains("Extracted user ID from JWT token: player-from-iam"),
        "{}",
        out.stderr
    );
    assert_eq!(out.json()["newAssignments"], 3);
    let out = cli(&password(&[
        "trigger-event",
        "stat-update",
        "--stat-code=tutorial_completed",
        "--value=1",
    ]))
    .await
    .ok();
    assert_eq!(out.json()["user_id"], "player-from-iam");
    eventually(
        "the event to count for the IAM user",
        Duration::from_secs(20),
        || async {
            let out = cli(&password(&["get-challenge", WINTER])).await;
            let v: Value =
                serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stderr))?;
            (v["goals"][0]["status"] == "completed")
                .then_some(())
                .ok_or(v.to_string())
        },
    )
    .await;
    // Verifier in password mode: Platform with the client-credentials fallback.
    let out = cli(&password(&[
        "verify-entitlement",
        "--item-id=snowman-trophy",
        "--admin-client-id=svc-client",
        "--admin-client-secret=svc-secret",
    ]))
    .await
    .ok();
    let v = out.json();
    assert_eq!(
        v,
        json!({"entitlement_id": "ent-42", "granted_at": "2026-01-02T03:04:05Z", "item_id": "snowman-trophy",
               "namespace": NAMESPACE, "quantity": 1, "status": "ACTIVE"})
    );
    let out = cli(&password(&[
        "verify-wallet",
        "--currency=GOLD",
        "--admin-client-id=svc-client",
        "--admin-client-secret=svc-secret",
    ]))
    .await
    .ok();
    assert_eq!(out.json()["wallet_id"], "w-1");
    let out = cli(&password(&[
        "verify-wallet",
        "--currency=GEMS",
        "--admin-client-id=svc-client",
        "--admin-client-secret=svc-secret",
    ]))
    .await
    .failed();
    assert!(
        out.stderr
            .contains("Error: failed to get wallet: wallet with currency code GEMS not found"),
        "{}",
        out.stderr
    );

    let admin = [
        "--admin-client-id=svc-client",
        "--admin-client-secret=svc-secret",
    ];
    let out = cli(&password(&["list-inventory", admin[0], admin[1]]))
        .await
        .ok();
    let v = out.json();
    assert_eq!(v["total"], 2);
    assert_eq!(
        v["entitlements"][1],
        json!({"EntitlementID": "ent-43", "ItemID": "winter-hat", "Namespace": NAMESPACE,
               "Status": "INACTIVE", "Quantity": 2, "GrantedAt": "0001-01-01T00:00:00Z"}),
        "a missing grantedAt is Go's zero time"
    );
    let out = cli(&password(&[
        "list-wallets",
        "--format=table",
        admin[0],
        admin[1],
    ]))
    .await
    .ok();
    assert!(out.stdout.contains("GOLD"), "{}", out.stdout);
    assert!(out.stdout.contains("Total: 1 wallets"), "{}", out.stdout);
    // Every Platform call carried the admin client's token, not the player's.
    let platform_calls: Vec<_> = iam
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/platform/admin/") && r.method.as_str() == "GET")
        .collect();
    assert!(platform_calls.len() >= 4, "{}", platform_calls.len());
    for r in &platform_calls {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(auth, format!("Bearer {service_token}"), "{}", r.url);
    }

    // IAM refusing the grant: a warning, then the call fails (exit 1, not a panic).
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string("{\"error\":\"invalid_grant\"}"))
        .mount(&refusing)
        .await;
    let mut bad = password(&["list-challenges"]);
    bad[8] = format!("--iam-url={}/iam", refusing.uri());
    let out = cli(&bad).await.failed();
    assert!(
        out.stderr
            .contains("Warning: Failed to authenticate with password"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Error: failed to list challenges: list challenges: get auth token: password grant failed: authentication failed with status 401"),
        "{}",
        out.stderr
    );

    // Client mode: client credentials, the token's `sub` when it has one.
    let client = vec![
        format!("--backend-url={}", stack.service_url()),
        "--auth-mode=client".to_string(),
        "--client-id=svc-client".to_string(),
        "--client-secret=svc-secret".to_string(),
        format!("--iam-url={iam_url}"),
        "initialize-player".to_string(),
    ];
    let out = cli(&client).await.ok();
    assert!(
        out.stderr
            .contains("Extracted user ID from JWT token: service-account-user"),
        "{}",
        out.stderr
    );
    assert_eq!(out.json()["newAssignments"], 3);

    // Mock mode against a service that checks tokens: 401, exit 1.
    let out = cli(&[
        format!("--backend-url={}", stack.service_url()),
        "list-challenges".into(),
    ])
    .await
    .failed();
    assert!(
        out.stderr
            .starts_with("Error: failed to list challenges: HTTP 401: "),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn watch_ticks_until_interrupted() {
    let backend = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/challenges"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"challenges": [{"challengeId": "c"}]})),
        )
        .mount(&backend)
        .await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_challenge-demo"))
        .args([
            format!("--backend-url={}", backend.uri()),
            "watch".into(),
            "--interval=50ms".into(),
            "--format=text".into(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start watch");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    // The first fetch, then at least two ticks that found nothing new.
    while seen
        .iter()
        .filter(|l: &&String| l.ends_with("] No changes"))
        .count()
        < 2
    {
        match lines.next_line().await.unwrap() {
            Some(l) => seen.push(l),
            None => panic!("watch ended early: {seen:?}"),
        }
    }
    assert!(seen[0].ends_with("] Initial fetch"), "{seen:?}");
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push(l);
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some("Stopping watch..."),
        "{rest:?}"
    );
}
