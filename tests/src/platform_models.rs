//! AccelByte's published Platform models, for every fake Platform in the tests.
//!
//! `tests/fixtures/platform-models.json` lists, per model, the properties the published
//! spec gives it (accelbyte-go-sdk `platformclientmodels`) and which are required. The
//! builders here make records with exactly those fields, and [`assert_model`] refuses any
//! answer holding a field the model does not have or missing a required one. A fake that
//! answers through them cannot make a test pass on a field AGS never returns (the wallet
//! marker once lived in a `metadata` that `WalletTransactionInfo` does not have).

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::build::fixture;

/// One model: its required and optional property names.
#[derive(Debug, Clone)]
pub struct Model {
    pub required: BTreeSet<String>,
    pub optional: BTreeSet<String>,
}

static MODELS: LazyLock<HashMap<String, Model>> =
    LazyLock::new(|| load_models("platform-models.json"));

/// The models of a field-list fixture under `tests/fixtures/` (`platform-models.json`,
/// `iam-models.json`): per model, `required` and `optional` property names; keys starting
/// with `_` are comments.
pub fn load_models(file: &str) -> HashMap<String, Model> {
    let path = fixture(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read fixtures/{file}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is JSON: {e}"));
    let names = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    doc.as_object()
        .unwrap_or_else(|| panic!("{file} is an object"))
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, m)| {
            (
                name.clone(),
                Model {
                    required: names(&m["required"]),
                    optional: names(&m["optional"]),
                },
            )
        })
        .collect()
}

/// The published model `name`.
pub fn model(name: &str) -> &'static Model {
    MODELS
        .get(name)
        .unwrap_or_else(|| panic!("no model {name} in platform-models.json"))
}

/// Whether `value` is an object with every required field of `name` and no other field
/// than the model's.
pub fn check(name: &str, value: &Value) -> Result<(), String> {
    check_model(name, model(name), value)
}

/// Whether `value` is an object with every required field of `m` (named `name`) and no
/// other field than the model's.
pub fn check_model(name: &str, m: &Model, value: &Value) -> Result<(), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{name}: not an object: {value}"))?;
    let unknown: Vec<&String> = obj
        .keys()
        .filter(|k| !m.required.contains(*k) && !m.optional.contains(*k))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{name} has no field {unknown:?} in AccelByte's published model: {value}"
        ));
    }
    let missing: Vec<&String> = m
        .required
        .iter()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(format!("{name} lacks required {missing:?}: {value}"));
    }
    Ok(())
}

/// Panics unless [`check`] passes: a fake's answer must be a published model.
pub fn assert_model(name: &str, value: &Value) {
    if let Err(e) = check(name, value) {
        panic!("fake Platform answer is not AGS's: {e}");
    }
}

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An entitlement record (`EntitlementInfo`, as `queryUserEntitlements` lists it).
pub struct Entitlement<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub user_id: &'a str,
    pub item_id: &'a str,
    pub quantity: i64,
    pub granted_code: Option<&'a str>,
    pub at: DateTime<Utc>,
}

impl<'a> Entitlement<'a> {
    /// The entitlement a grant request's `item` (`itemId`, `quantity`, `grantedCode`; an
    /// entitlement grant's or a fulfillment's) makes, at `at`.
    pub fn of_item(
        id: &'a str,
        namespace: &'a str,
        user_id: &'a str,
        item: &'a Value,
        at: DateTime<Utc>,
    ) -> Self {
        Entitlement {
            id,
            namespace,
            user_id,
            item_id: item["itemId"].as_str().unwrap_or_default(),
            quantity: item["quantity"].as_i64().unwrap_or(1),
            granted_code: item.get("grantedCode").and_then(Value::as_str),
            at,
        }
    }

    /// As `EntitlementInfo` (the look-up's records).
    pub fn info(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "namespace": self.namespace,
            "userId": self.user_id,
            "itemId": self.item_id,
            "itemNamespace": self.namespace,
            "name": self.item_id,
            "clazz": "ENTITLEMENT",
            "type": "CONSUMABLE",
            "status": "ACTIVE",
            "source": "OTHER",
            "quantity": self.quantity,
            "useCount": self.quantity,
            "features": [],
            "createdAt": ts(self.at),
            "grantedAt": ts(self.at),
            "updatedAt": ts(self.at),
        });
        if let Some(code) = self.granted_code {
            v["grantedCode"] = json!(code);
        }
        assert_model("EntitlementInfo", &v);
        v
    }

    /// As `StackableEntitlementInfo` (the grant's answer).
    pub fn stackable(&self) -> Value {
        let mut v = self.info();
        let o = v.as_object_mut().expect("object");
        // `StackableEntitlementInfo` has no `quantity`.
        o.remove("quantity");
        o.insert("source".into(), json!("REWARD"));
        o.insert("stackable".into(), json!(false));
        assert_model("StackableEntitlementInfo", &v);
        v
    }
}

/// A wallet transaction (`WalletTransactionInfo`, as `listUserCurrencyTransactions` lists
/// it): no `metadata` — only `reason` comes back.
pub fn wallet_transaction(
    namespace: &str,
    user_id: &str,
    currency: &str,
    amount: i64,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Value {
    let mut v = json!({
        "amount": amount,
        "balanceSource": "OTHER",
        "createdAt": ts(at),
        "currencyCode": currency,
        "namespace": namespace,
        "operator": "challenge-service-client",
        "transactionAmountDetails": [],
        "updatedAt": ts(at),
        "userId": user_id,
        "walletAction": "CREDIT",
    });
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    assert_model("WalletTransactionInfo", &v);
    v
}

/// The balance of `user_id`'s `currency` wallet: the sum of its credits (the
/// `WalletTransactionInfo`s a fake keeps).
pub fn balance(credits: &[Value], user_id: &str, currency: &str) -> i64 {
    credits
        .iter()
        .filter(|c| c["userId"] == user_id && c["currencyCode"] == currency)
        .filter_map(|c| c["amount"].as_i64())
        .sum()
}

/// A fulfillment's answer (`FulfillmentV2Result`, `fulfillItemsV3`): fulfilled, with the
/// requested `items`.
pub fn fulfillment(transaction_id: &str, namespace: &str, user_id: &str, items: &Value) -> Value {
    let state_info = json!({"successList": []});
    assert_model("FulfillmentStateInfo", &state_info);
    let v = json!({
        "transactionId": transaction_id,
        "namespace": namespace,
        "userId": user_id,
        "state": "FULFILLED",
        "stateInfo": state_info,
        "items": items,
    });
    assert_model("FulfillmentV2Result", &v);
    v
}

/// A wallet (`WalletInfo`, the credit's answer).
pub fn wallet(namespace: &str, user_id: &str, currency: &str, balance: i64) -> Value {
    let now = ts(Utc::now());
    let v = json!({
        "balance": balance,
        "createdAt": now,
        "currencyCode": currency,
        "currencySymbol": currency,
        "id": format!("wallet-{user_id}-{currency}"),
        "namespace": namespace,
        "status": "ACTIVE",
        "updatedAt": now,
        "userId": user_id,
    });
    assert_model("WalletInfo", &v);
    v
}

/// A paging answer (`<Model>PagingSlicedResult`) of `data`, for `limit`/`offset`; each
/// record is checked against `item_model`.
pub fn page(
    model_name: &str,
    item_model: &str,
    data: Vec<Value>,
    limit: usize,
    offset: usize,
) -> Value {
    for d in &data {
        assert_model(item_model, d);
    }
    let total = data.len();
    let slice: Vec<Value> = data.into_iter().skip(offset).take(limit).collect();
    let mut paging = serde_json::Map::new();
    if offset + limit < total {
        paging.insert(
            "next".into(),
            json!(format!("?offset={}&limit={limit}", offset + limit)),
        );
    }
    if offset > 0 {
        paging.insert(
            "previous".into(),
            json!(format!(
                "?offset={}&limit={limit}",
                offset.saturating_sub(limit)
            )),
        );
    }
    let v = json!({"data": slice, "paging": Value::Object(paging)});
    assert_model(model_name, &v);
    assert_model("Paging", &v["paging"]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_make_published_models_and_extras_are_refused() {
        let now = Utc::now();
        let e = Entitlement {
            id: "e1",
            namespace: "ns",
            user_id: "u",
            item_id: "sword",
            quantity: 1,
            granted_code: Some("chl-1"),
            at: now,
        };
        check("EntitlementInfo", &e.info()).unwrap();
        check("StackableEntitlementInfo", &e.stackable()).unwrap();
        let t = wallet_transaction("ns", "u", "GOLD", 5, Some("r"), now);
        check("WalletTransactionInfo", &t).unwrap();
        let t0 = t.clone();
        let mut with_metadata = t.clone();
        with_metadata["metadata"] = json!({"k": "v"});
        assert!(check("WalletTransactionInfo", &with_metadata).is_err());
        let mut without_amount = t;
        without_amount.as_object_mut().unwrap().remove("amount");
        assert!(check("WalletTransactionInfo", &without_amount).is_err());
        check("WalletInfo", &wallet("ns", "u", "GOLD", 5)).unwrap();
        assert_eq!(balance(&[t0.clone(), t0], "u", "GOLD"), 10);
        let items = json!([{"itemId": "sword", "quantity": 1}]);
        check(
            "FulfillmentV2Result",
            &fulfillment("chl-1", "ns", "u", &items),
        )
        .unwrap();
        let e = Entitlement::of_item("e2", "ns", "u", &items[0], now);
        assert_eq!((e.item_id, e.quantity, e.granted_code), ("sword", 1, None));
        let p = page(
            "WalletTransactionPagingSlicedResult",
            "WalletTransactionInfo",
            vec![],
            10,
            0,
        );
        assert_eq!(p["data"], json!([]));
    }
}
