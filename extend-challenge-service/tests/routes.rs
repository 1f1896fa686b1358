//! The REST route table must match the `google.api.http` annotations of `service.proto`,
//! read from the compiled descriptor set: any drift between a route and its annotation
//! fails here.

use std::collections::BTreeMap;

use extend_challenge_common::pb::FILE_DESCRIPTOR_SET;
use extend_challenge_service::rest::ROUTES;
use prost_reflect::{DescriptorPool, Value};

/// `rpc → (METHOD, path, body)` from the annotations.
fn annotated() -> BTreeMap<String, (String, String, String)> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
    let http = pool
        .get_extension_by_name("google.api.http")
        .expect("google.api.http is compiled in");
    let mut out = BTreeMap::new();
    let methods = ["service.Service", "service.Admin"].iter().flat_map(|s| {
        pool.get_service_by_name(s)
            .unwrap()
            .methods()
            .collect::<Vec<_>>()
    });
    for method in methods {
        let options = method.options();
        assert!(
            options.has_extension(&http),
            "{} has no google.api.http annotation",
            method.name()
        );
        let rule = options.get_extension(&http);
        let Value::Message(rule) = rule.as_ref() else {
            panic!("HttpRule is a message")
        };
        let mut found = None;
        for verb in ["get", "put", "post", "delete", "patch"] {
            if let Some(v) = rule.get_field_by_name(verb)
                && let Value::String(path) = v.as_ref()
                && !path.is_empty()
            {
                found = Some((verb.to_ascii_uppercase(), path.clone()));
            }
        }
        let (verb, path) = found.unwrap_or_else(|| panic!("{}: no verb", method.name()));
        let body = match rule.get_field_by_name("body").as_deref() {
            Some(Value::String(b)) => b.clone(),
            _ => String::new(),
        };
        out.insert(method.name().to_string(), (verb, path, body));
    }
    out
}

#[test]
fn every_rpc_has_exactly_its_annotated_route() {
    let annotations = annotated();
    // service.Service's 15 and service.Admin's 10 (CONTRACT §9).
    assert_eq!(annotations.len(), 25, "{annotations:?}");
    let mut routes = BTreeMap::new();
    for r in ROUTES {
        assert!(
            routes.insert(r.rpc.to_string(), r).is_none(),
            "{} is routed twice",
            r.rpc
        );
    }
    assert_eq!(
        routes.keys().collect::<Vec<_>>(),
        annotations.keys().collect::<Vec<_>>(),
        "routed RPCs differ from the annotated ones"
    );
    for (rpc, (verb, path, body)) in &annotations {
        let r = routes[rpc];
        assert_eq!(
            r.method.as_str(),
            verb,
            "{rpc}: method drifted from its annotation"
        );
        assert_eq!(r.path, path, "{rpc}: path drifted from its annotation");
        // Bodies: every write takes the whole request ("*"); reads and deletes take none.
        let expected_body = if verb == "GET" || verb == "DELETE" {
            ""
        } else {
            "*"
        };
        assert_eq!(body, expected_body, "{rpc}: body");
    }
}

#[test]
fn only_health_is_open() {
    for r in ROUTES {
        assert_eq!(r.authenticated, r.rpc != "HealthCheck", "{}", r.rpc);
    }
}
