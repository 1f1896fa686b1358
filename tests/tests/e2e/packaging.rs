//! Packaging checked by reading (no Docker engine here): docker-compose.yml, the
//! Dockerfiles, extend-app-config.yaml, .env.example and README.md name only variables
//! the binaries read, and only the ports they serve.

use std::collections::BTreeSet;

use serde_norway::Value;

use extend_challenge_e2e::build::{fixture, workspace_root};

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    let mut v: Value = serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

/// Every quoted UPPER_CASE name in `settings.rs`: the variables the binaries read.
fn known_vars() -> BTreeSet<String> {
    let src = read("extend-challenge-common/src/settings.rs");
    let mut vars = BTreeSet::new();
    for (i, _) in src.match_indices('"') {
        let rest = &src[i + 1..];
        let Some(end) = rest.find('"') else { break };
        let word = &rest[..end];
        if word.len() > 2
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            vars.insert(word.to_string());
        }
    }
    assert!(
        vars.contains("AB_NAMESPACE") && vars.contains("GRPC_PORT"),
        "{vars:?}"
    );
    vars
}

/// Default of a port variable, read from `settings.rs` (`env.parse("GRPC_PORT", 6565u16)`).
fn default_port(var: &str) -> u16 {
    let src = read("extend-challenge-common/src/settings.rs");
    let at = src
        .find(&format!("\"{var}\","))
        .unwrap_or_else(|| panic!("{var} in settings.rs"));
    let digits: String = src[at + var.len() + 3..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("numeric default of {var}"))
}

struct Ports {
    grpc: u16,
    http: u16,
    metrics: u16,
}

fn ports() -> Ports {
    Ports {
        grpc: default_port("GRPC_PORT"),
        http: default_port("HTTP_PORT"),
        metrics: default_port("METRICS_PORT"),
    }
}

fn service_ports() -> BTreeSet<u16> {
    let p = ports();
    [p.grpc, p.http, p.metrics].into()
}

fn handler_ports() -> BTreeSet<u16> {
    let p = ports();
    [p.grpc, p.metrics].into()
}

#[track_caller]
fn assert_known(vars: impl IntoIterator<Item = String>, whence: &str) {
    let known = known_vars();
    for v in vars {
        assert!(
            known.contains(&v),
            "{whence} sets {v}, which neither binary reads (settings.rs)"
        );
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("scalar expected, got {other:?}"),
    }
}

#[test]
fn compose_names_known_variables_and_ports() {
    let doc = yaml("docker-compose.yml");
    let services = &doc["services"];
    assert!(str_of(&services["postgres"]["image"]).starts_with("postgres:15"));
    assert!(str_of(&services["redis"]["image"]).starts_with("redis:7"));
    for infra in ["postgres", "redis"] {
        assert!(
            services[infra]["healthcheck"]["test"].is_sequence(),
            "{infra} healthcheck"
        );
    }
    for (name, allowed, dockerfile) in [
        (
            "challenge-service",
            service_ports(),
            "extend-challenge-service/Dockerfile",
        ),
        (
            "challenge-event-handler",
            handler_ports(),
            "extend-challenge-event-handler/Dockerfile",
        ),
    ] {
        let svc = &services[name];
        assert_eq!(str_of(&svc["build"]["dockerfile"]), dockerfile);
        assert!(workspace_root().join(dockerfile).exists());
        let env = svc["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name}: environment map"));
        assert_known(
            env.keys().map(str_of),
            &format!("docker-compose.yml {name}"),
        );
        let mut container_ports = BTreeSet::new();
        for p in svc["ports"].as_sequence().unwrap() {
            let p = str_of(p);
            let container: u16 = p.rsplit(':').next().unwrap().parse().unwrap();
            container_ports.insert(container);
        }
        assert_eq!(container_ports, allowed, "{name}: container ports");
        let probe = format!("{:?}", svc["healthcheck"]["test"]);
        assert!(
            probe.contains(&format!("/{}", ports().metrics)) && probe.contains("/healthz"),
            "{name}: {probe}"
        );
        for dep in ["postgres", "redis"] {
            assert_eq!(
                str_of(&svc["depends_on"][dep]["condition"]),
                "service_healthy",
                "{name}"
            );
        }
    }
    // The seed guide's host ports: service 6565/8000/8080, handler 6566/8081.
    let host = |svc: &str| -> Vec<String> {
        services[svc]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect()
    };
    assert_eq!(
        host("challenge-service"),
        ["6565:6565", "8000:8000", "8080:8080"]
    );
    assert_eq!(host("challenge-event-handler"), ["6566:6565", "8081:8080"]);
}

#[test]
fn dockerfiles_are_multi_stage_non_root_and_expose_only_served_ports() {
    for (path, allowed, bin) in [
        (
            "extend-challenge-service/Dockerfile",
            service_ports(),
            "extend-challenge-service",
        ),
        (
            "extend-challenge-event-handler/Dockerfile",
            handler_ports(),
            "extend-challenge-event-handler",
        ),
    ] {
        let text = read(path);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
        assert!(froms >= 2, "{path}: multi-stage build expected");
        let user = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("USER "))
            .unwrap_or_else(|| panic!("{path}: USER"));
        assert!(
            !user.ends_with(" root") && !user.ends_with(" 0"),
            "{path}: non-root user, got {user}"
        );
        assert!(text.contains("ca-certificates"), "{path}: CA certificates");
        assert!(
            text.contains("COPY config/challenges.json"),
            "{path}: config copied in"
        );
        assert!(
            text.contains(&format!("--release -p {bin}")),
            "{path}: builds {bin}"
        );
        let exposed: BTreeSet<u16> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("EXPOSE "))
            .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
            .collect();
        assert_eq!(exposed, allowed, "{path}: EXPOSE");
        let env_names = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ENV "))
            .map(|l| l.split(['=', ' ']).next().unwrap().to_string());
        assert_known(env_names, path);
    }
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        ".dockerignore keeps target/ out"
    );
}

#[test]
fn extend_app_config_follows_the_deployment_guide() {
    let doc = yaml("extend-app-config.yaml");
    let metrics = ports().metrics;
    for (app, allowed) in [
        ("serviceExtension", service_ports()),
        ("eventHandler", handler_ports()),
    ] {
        let a = &doc[app];
        assert!(a["replicas"].as_u64().unwrap() >= 1, "{app}: replicas");
        for k in ["requests", "limits"] {
            assert!(
                a["resources"][k]["cpu"].is_string() && a["resources"][k]["memory"].is_string(),
                "{app}: {k}"
            );
        }
        let env = a["env"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{app}: env list"));
        let names: Vec<String> = env.iter().map(|e| str_of(&e["name"])).collect();
        assert_known(names.clone(), &format!("extend-app-config.yaml {app}"));
        assert!(
            names.contains(&"AB_NAMESPACE".to_string()),
            "{app}: AB_NAMESPACE"
        );
        // Secrets come from secrets, never as plain values.
        for e in env {
            let name = str_of(&e["name"]);
            if name.ends_with("_SECRET") || name.ends_with("_PASSWORD") {
                assert!(
                    e["value"].is_null() && e["valueFrom"]["secretKeyRef"]["name"].is_string(),
                    "{app}: {name} from a secret"
                );
            }
        }
        let declared: BTreeSet<u16> = a["ports"]
            .as_mapping()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap() as u16)
            .collect();
        assert_eq!(declared, allowed, "{app}: ports");
        assert_eq!(str_of(&a["healthCheck"]["path"]), "/healthz");
        assert_eq!(a["healthCheck"]["port"].as_u64(), Some(metrics as u64));
    }
    let service_env: Vec<String> = doc["serviceExtension"]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_of(&e["name"]))
        .collect();
    for v in ["AB_CLIENT_ID", "AB_CLIENT_SECRET", "AB_BASE_URL"] {
        assert!(
            service_env.contains(&v.to_string()),
            "service needs {v} for rewards and auth"
        );
    }
    let topics: Vec<String> = doc["eventHandler"]["kafkaSubscription"]["topics"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(
        topics,
        [
            "{namespace}.iam.account.v1.userLoggedIn",
            "{namespace}.social.statistic.v1.statItemUpdated"
        ]
    );
    assert!(doc["serviceExtension"]["kafkaSubscription"].is_null());
}

#[test]
fn env_example_documents_exactly_the_variables_read() {
    let text = read(".env.example");
    let mut named = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some((name, _)) = l.split_once('=')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            named.insert(name.to_string());
        }
    }
    assert_known(named.clone(), ".env.example");
    let missing: Vec<_> = known_vars().difference(&named).cloned().collect();
    assert!(
        missing.is_empty(),
        ".env.example does not document {missing:?}"
    );
}

#[test]
fn readme_documents_every_variable() {
    let text = read("README.md");
    let missing: Vec<_> = known_vars()
        .into_iter()
        .filter(|v| !text.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md settings table lacks {missing:?}"
    );
}

#[test]
fn fixture_config_is_valid() {
    let path = fixture("challenges.json");
    let cfg = extend_challenge_common::config::loader::load_from_path(&path);
    assert!(cfg.is_ok(), "{}: {:?}", path.display(), cfg.err());
}

#[test]
fn per_service_compose_files_and_makefiles() {
    for (dir, name, allowed) in [
        (
            "extend-challenge-service",
            "challenge-service",
            service_ports(),
        ),
        (
            "extend-challenge-event-handler",
            "challenge-event-handler",
            handler_ports(),
        ),
    ] {
        let rel = format!("{dir}/docker-compose.yaml");
        let doc = yaml(&rel);
        let svc = &doc["services"][name];
        assert_eq!(str_of(&svc["build"]["context"]), "..", "{rel}");
        assert_eq!(
            str_of(&svc["build"]["dockerfile"]),
            format!("{dir}/Dockerfile")
        );
        let env = svc["environment"].as_mapping().expect("environment map");
        assert_known(env.keys().map(str_of), &rel);
        let container: BTreeSet<u16> = svc["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| str_of(p).rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(container, allowed, "{rel}");
        assert!(str_of(&doc["services"]["postgres"]["image"]).starts_with("postgres:15"));

        // The guide's Makefile targets exist and expand (make -n runs nothing).
        for target in ["proto", "build", "test", "run"] {
            let out = std::process::Command::new("make")
                .args(["-n", "-C", dir, target])
                .current_dir(workspace_root())
                .output()
                .expect("run make");
            assert!(
                out.status.success(),
                "{dir}: make {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(dir),
                "{dir} {target}"
            );
        }
    }
    for target in ["build", "test", "lint", "check-deploy", "migrate-up"] {
        let ok = std::process::Command::new("make")
            .args(["-n", target])
            .current_dir(workspace_root())
            .output()
            .expect("run make")
            .status
            .success();
        assert!(ok, "root make {target}");
    }
}

/// Every document of a multi-document YAML file.
fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kubernetes_manifests_follow_the_guide() {
    let dir = workspace_root().join("deploy/k8s");
    let mut kinds = Vec::new();
    let mut deployments = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!("deploy/k8s/{}", path.file_name().unwrap().to_string_lossy());
        for doc in yaml_docs(&rel) {
            let kind = str_of(&doc["kind"]);
            kinds.push(format!("{kind}/{}", str_of(&doc["metadata"]["name"])));
            if kind == "ConfigMap" {
                let data = doc["data"].as_mapping().unwrap();
                assert_known(data.keys().map(str_of), &rel);
            }
            let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_sequence()
            else {
                continue;
            };
            for c in containers {
                if let Some(env) = c["env"].as_sequence() {
                    assert_known(env.iter().map(|e| str_of(&e["name"])), &rel);
                }
                if kind == "Deployment" {
                    deployments += 1;
                    assert_eq!(str_of(&c["livenessProbe"]["httpGet"]["path"]), "/livez");
                    assert_eq!(str_of(&c["readinessProbe"]["httpGet"]["path"]), "/healthz");
                    let metrics = c["ports"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .find(|p| str_of(&p["name"]) == "metrics")
                        .expect("a metrics port");
                    assert_eq!(str_of(&metrics["containerPort"]), "8080");
                    assert!(!c["resources"]["requests"]["cpu"].is_null(), "{rel}");
                    assert!(!c["resources"]["limits"]["memory"].is_null(), "{rel}");
                }
            }
        }
    }
    kinds.sort();
    for want in [
        "ConfigMap/challenge-env",
        "Deployment/challenge-event-handler",
        "Deployment/challenge-service",
        "HorizontalPodAutoscaler/challenge-event-handler-hpa",
        "HorizontalPodAutoscaler/challenge-service-hpa",
        "Job/challenge-migrate",
        "Secret/challenge-secrets",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} missing: {kinds:?}");
    }
    assert_eq!(deployments, 2);
    // The Job runs the migrations CLI; the Deployments do not migrate at start-up.
    let job = read("deploy/k8s/migrate-job.yaml");
    assert!(job.contains(r#"args: ["migrate", "up"]"#));
    let env = read("deploy/k8s/configmap.yaml");
    assert!(env.contains(r#"MIGRATE_ON_START: "false""#));
}

/// The value a script assigns to `VAR` by default (`VAR="${...:-default}"` or
/// `VAR=${VAR:-default}`), innermost default first.
fn script_default(script: &str, var: &str) -> String {
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{var}=")))
        .unwrap_or_else(|| panic!("no default for {var}"));
    let last = line.rfind(":-").expect("a ${...:-default}") + 2;
    line[last..]
        .trim_end_matches(['}', '"', ' '])
        .trim_end_matches('}')
        .to_string()
}

#[test]
fn dev_script_and_grpcurl_script_agree_and_point_at_swagger() {
    let dev = read("scripts/dev.sh");
    let events = read("scripts/grpcurl-events.sh");
    let port = script_default(&dev, "HANDLER_GRPC_PORT");
    let namespace = script_default(&dev, "AB_NAMESPACE");
    assert_eq!(
        script_default(&events, "ADDR"),
        format!("localhost:{port}"),
        "grpcurl-events.sh talks to the handler dev.sh starts"
    );
    assert_eq!(script_default(&events, "NAMESPACE"), namespace);
    assert!(
        dev.contains("/apidocs/"),
        "the dev.sh banner names the Swagger UI"
    );
    assert!(
        read("README.md").contains("/apidocs/"),
        "the README names the Swagger UI"
    );
}
