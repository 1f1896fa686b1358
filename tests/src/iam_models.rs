//! AccelByte's published IAM models, for every fake IAM in the tests.
//!
//! `tests/fixtures/iam-models.json` lists, per model, the properties the published spec
//! gives it (accelbyte-go-sdk `iamclientmodels`, from `spec/iam.json`) and which are
//! required; the builders here make answers with exactly those fields and [`assert_model`]
//! refuses any other (the same check as [`crate::platform_models`]). A fake IAM that answers
//! through them cannot make a test pass on a field IAM never returns.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::platform_models::{Model, check_model, load_models};

static MODELS: LazyLock<HashMap<String, Model>> = LazyLock::new(|| load_models("iam-models.json"));

/// Whether `value` is the published IAM model `name`, with no field it does not have.
pub fn check(name: &str, value: &Value) -> Result<(), String> {
    let m = MODELS
        .get(name)
        .unwrap_or_else(|| panic!("no model {name} in iam-models.json"));
    check_model(name, m, value)
}

/// Panics unless [`check`] passes: a fake's answer must be a published model.
pub fn assert_model(name: &str, value: &Value) {
    if let Err(e) = check(name, value) {
        panic!("fake IAM answer is not AGS's: {e}");
    }
}

/// `AdminGetRoleNamespacePermissionV3`'s answer (`ModelRolePermissionResponseV3`): the
/// role's permissions as `AccountcommonPermission` (`Resource`, `Action`).
pub fn role_namespace_permissions(permissions: &[(&str, u32)]) -> Value {
    let permissions: Vec<Value> = permissions
        .iter()
        .map(|(resource, action)| {
            let p = json!({"Resource": resource, "Action": action});
            assert_model("AccountcommonPermission", &p);
            p
        })
        .collect();
    let v = json!({ "permissions": permissions });
    assert_model("ModelRolePermissionResponseV3", &v);
    v
}

/// `AdminGetRoleV3`'s answer (`ModelRoleResponseV3`): a role with its permissions as
/// `AccountcommonPermissionV3` (`resource`, `action`).
pub fn role(role_id: &str, role_name: &str, permissions: &[(&str, u32)]) -> Value {
    let permissions: Vec<Value> = permissions
        .iter()
        .map(|(resource, action)| {
            let p = json!({"resource": resource, "action": action});
            assert_model("AccountcommonPermissionV3", &p);
            p
        })
        .collect();
    let v = json!({
        "adminRole": true,
        "isWildcard": false,
        "permissions": permissions,
        "roleId": role_id,
        "roleName": role_name,
    });
    assert_model("ModelRoleResponseV3", &v);
    v
}

/// An IAM error answer (`RestErrorResponse`), e.g. 10456 "role not found".
pub fn error(code: i64, message: &str) -> Value {
    let v = json!({"errorCode": code, "errorMessage": message});
    assert_model("RestErrorResponse", &v);
    v
}

/// The client-credentials grant's answer (`TokenGrantV3`:
/// `OauthmodelTokenWithDeviceCookieResponseV3`).
pub fn client_token(access_token: &str, expires_in: i64, namespace: &str) -> Value {
    let v = json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "namespace": namespace,
        "permissions": [],
        "scope": "account commerce social publishing analytics",
        "token_type": "Bearer",
    });
    assert_model("OauthmodelTokenWithDeviceCookieResponseV3", &v);
    v
}

/// `GetJWKSV3`'s answer (`OauthcommonJWKSet`) with these keys (`OauthcommonJWKKey`).
pub fn jwks(keys: &[Value]) -> Value {
    for k in keys {
        assert_model("OauthcommonJWKKey", k);
    }
    let v = json!({ "keys": keys });
    assert_model("OauthcommonJWKSet", &v);
    v
}

/// `GetRevocationListV3`'s answer (`OauthapiRevocationList`) revoking nothing: an empty
/// Bloom filter (`BloomFilterJSON`) and no users.
pub fn empty_revocation_list() -> Value {
    let filter = json!({"m": 64, "k": 1, "bits": [0]});
    assert_model("BloomFilterJSON", &filter);
    let v = json!({"revoked_tokens": filter, "revoked_users": []});
    assert_model("OauthapiRevocationList", &v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_make_published_models_and_extra_fields_are_refused() {
        role_namespace_permissions(&[("ADMIN:NAMESPACE:{namespace}:CHALLENGE", 2)]);
        role("r1", "Support", &[("ADMIN:*", 15)]);
        error(10456, "role not found");
        client_token("tok", 3600, "ns");
        empty_revocation_list();
        // The two permission models differ in case: neither takes the other's fields.
        assert!(
            check(
                "AccountcommonPermission",
                &json!({"resource": "X", "action": 2})
            )
            .is_err()
        );
        assert!(
            check(
                "ModelRolePermissionResponseV3",
                &json!({"permissions": [], "roleId": "r1"})
            )
            .is_err()
        );
    }
}
