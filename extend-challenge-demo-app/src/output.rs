//! The demo's shared formatter (`--format` json | table | text; anything else is json)
//! and its result envelopes.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, TimeZone};
use serde_json::{Value, json};

use crate::model::{Challenge, Reward, to_go_json};
use crate::verifier::{Entitlement, Wallet, rfc3339_nano, rfc3339_secs, short_time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
    Text,
}

impl Format {
    /// The shared formatter's choice: unknown formats print JSON.
    pub fn shared(s: &str) -> Format {
        match s {
            "table" => Format::Table,
            "text" => Format::Text,
            _ => Format::Json,
        }
    }
}

/// The outcome of `trigger-event`.
pub struct EventResult {
    pub event: &'static str,
    pub user_id: String,
    pub stat_code: String,
    pub value: i64,
    pub timestamp: DateTime<FixedOffset>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// The outcome of `claim-reward`.
pub struct ClaimOutcome {
    pub challenge_id: String,
    pub goal_id: String,
    pub reward: Option<Reward>,
    pub timestamp: DateTime<FixedOffset>,
    pub error: Option<String>,
}

/// Go's JSON for a `time.Time`: RFC 3339 with nanoseconds, trailing zeros dropped, `Z`
/// for UTC.
pub fn go_time<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let t = t.fixed_offset();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    if t.offset().local_minus_utc() == 0 {
        s.push('Z');
    } else {
        s.push_str(&t.format("%:z").to_string());
    }
    s
}

fn challenge_progress(c: &Challenge) -> (usize, &'static str) {
    let goals = c.goals();
    let completed = goals
        .iter()
        .filter(|g| g.status == "completed" || g.status == "claimed")
        .count();
    let status = if completed == goals.len() {
        "completed"
    } else if completed > 0 {
        "in_progress"
    } else {
        "not_started"
    };
    (completed, status)
}

/// The demo's `truncate` (byte-based, as Go slices strings).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max.saturating_sub(3);
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

pub fn challenges(f: Format, list: &Option<Vec<Challenge>>) -> String {
    let items = list.as_deref().unwrap_or_default();
    match f {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                challenges: &'a Option<Vec<Challenge>>,
                total: usize,
            }
            to_go_json(&Out {
                challenges: list,
                total: items.len(),
            })
        }
        Format::Table => {
            let mut b = format!(
                "{:<20} {:<30} {:<15} {:<15}\n{}\n",
                "ID",
                "NAME",
                "PROGRESS",
                "STATUS",
                "-".repeat(80)
            );
            for c in items {
                let (done, status) = challenge_progress(c);
                b.push_str(&format!(
                    "{:<20} {:<30} {:<15} {:<15}\n",
                    c.id,
                    truncate(&c.name, 30),
                    format!("{done}/{}", c.goals().len()),
                    status
                ));
            }
            b
        }
        Format::Text => {
            let mut b = format!("Found {} challenge(s)\n\n", items.len());
            for (i, c) in items.iter().enumerate() {
                let (done, status) = challenge_progress(c);
                b.push_str(&format!("{}. {} ({})\n", i + 1, c.name, c.id));
                b.push_str(&format!("   {}\n", c.description));
                b.push_str(&format!(
                    "   Progress: {done}/{} goals | Status: {status}\n",
                    c.goals().len()
                ));
                if i + 1 < items.len() {
                    b.push('\n');
                }
            }
            b
        }
    }
}

fn reward_line(r: &Reward) -> String {
    let mut s = format!("{} {}", r.kind, r.reward_id);
    if r.quantity > 1 {
        s.push_str(&format!(" x{}", r.quantity));
    }
    s
}

pub fn challenge(f: Format, c: &Challenge) -> String {
    match f {
        Format::Json => to_go_json(c),
        Format::Table => {
            let mut b = format!(
                "Challenge: {}\nID: {}\nDescription: {}\n\n",
                c.name, c.id, c.description
            );
            b.push_str(&format!(
                "{:<30} {:<15} {:<15}\n{}\n",
                "GOAL",
                "PROGRESS",
                "STATUS",
                "-".repeat(60)
            ));
            for g in c.goals() {
                b.push_str(&format!(
                    "{:<30} {:<15} {:<15}\n",
                    truncate(&g.name, 30),
                    format!("{}/{}", g.progress, g.requirement.target_value),
                    g.status
                ));
            }
            b
        }
        Format::Text => {
            let mut b = format!(
                "Challenge: {}\nID: {}\nDescription: {}\n\nGoals:\n",
                c.name, c.id, c.description
            );
            for g in c.goals() {
                b.push_str(&format!(
                    "  [{}] {} ({}/{})\n",
                    g.status.to_uppercase(),
                    g.name,
                    g.progress,
                    g.requirement.target_value
                ));
                if !g.description.is_empty() {
                    b.push_str(&format!("    {}\n", g.description));
                }
                b.push_str(&format!("    Reward: {}\n\n", reward_line(&g.reward)));
            }
            b
        }
    }
}

pub fn event_result(f: Format, r: &EventResult) -> String {
    match f {
        Format::Json => {
            // Go prints the demo's map with sorted keys: fields in that order.
            #[derive(serde::Serialize)]
            struct Out<'a> {
                duration_ms: i64,
                #[serde(skip_serializing_if = "Option::is_none")]
                error: Option<&'a str>,
                event: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                stat_code: Option<&'a str>,
                status: &'a str,
                timestamp: String,
                user_id: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                value: Option<i64>,
            }
            let stat = !r.stat_code.is_empty();
            to_go_json(&Out {
                duration_ms: r.duration_ms,
                error: r.error.as_deref(),
                event: r.event,
                stat_code: stat.then_some(r.stat_code.as_str()),
                status: if r.error.is_some() {
                    "error"
                } else {
                    "success"
                },
                timestamp: go_time(&r.timestamp),
                user_id: &r.user_id,
                value: stat.then_some(r.value),
            })
        }
        Format::Table => {
            let mut b = format!("Event:    {}\nUser ID:  {}\n", r.event, r.user_id);
            if !r.stat_code.is_empty() {
                b.push_str(&format!("Stat:     {} = {}\n", r.stat_code, r.value));
            }
            b.push_str(&format!(
                "Status:   {}\nDuration: {}ms\n",
                if r.error.is_some() {
                    "error"
                } else {
                    "success"
                },
                r.duration_ms
            ));
            if let Some(e) = &r.error {
                b.push_str(&format!("Error:    {e}\n"));
            }
            b
        }
        Format::Text => {
            if let Some(e) = &r.error {
                return format!("✗ Event failed: {e}\n");
            }
            let mut b = format!(
                "✓ Event triggered successfully ({}ms)\n  Event: {}\n  User: {}\n",
                r.duration_ms, r.event, r.user_id
            );
            if !r.stat_code.is_empty() {
                b.push_str(&format!("  Stat: {} = {}\n", r.stat_code, r.value));
            }
            b
        }
    }
}

pub fn claim_result(f: Format, r: &ClaimOutcome) -> String {
    let status = if r.error.is_some() {
        "error"
    } else {
        "success"
    };
    match f {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Out<'a> {
                challenge_id: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                error: Option<&'a str>,
                goal_id: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                reward: Option<&'a Reward>,
                status: &'a str,
                timestamp: String,
            }
            to_go_json(&Out {
                challenge_id: &r.challenge_id,
                error: r.error.as_deref(),
                goal_id: &r.goal_id,
                reward: r.reward.as_ref(),
                status,
                timestamp: go_time(&r.timestamp),
            })
        }
        Format::Table => {
            let mut b = format!(
                "Challenge: {}\nGoal:      {}\nStatus:    {status}\n",
                r.challenge_id, r.goal_id
            );
            if let Some(reward) = &r.reward {
                b.push_str(&format!("Reward:    {}\n", reward_line(reward)));
            }
            if let Some(e) = &r.error {
                b.push_str(&format!("Error:     {e}\n"));
            }
            b
        }
        Format::Text => {
            if let Some(e) = &r.error {
                return format!("✗ Claim failed: {e}\n");
            }
            let mut b = format!(
                "✓ Reward claimed successfully\n  Challenge: {}\n  Goal: {}\n",
                r.challenge_id, r.goal_id
            );
            if let Some(reward) = &r.reward {
                b.push_str(&format!("  Reward: {}\n", reward_line(reward)));
            }
            b
        }
    }
}

fn entitlement_json(e: &Entitlement) -> String {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("entitlement_id", json!(e.entitlement_id));
    m.insert("item_id", json!(e.item_id));
    m.insert("namespace", json!(e.namespace));
    m.insert("status", json!(e.status));
    m.insert("quantity", json!(e.quantity));
    m.insert("granted_at", json!(rfc3339_secs(e.granted_at.as_ref())));
    to_go_json(&m)
}

pub fn entitlement(f: Format, e: &Entitlement) -> String {
    match f {
        Format::Json | Format::Table => entitlement_json(e),
        Format::Text => format!(
            "✓ Entitlement found\n  Item ID: {}\n  Status: {}\n  Quantity: {}\n  Granted: {}\n",
            e.item_id,
            e.status,
            e.quantity,
            short_time(e.granted_at.as_ref())
        ),
    }
}

pub fn entitlements(f: Format, list: &[Entitlement]) -> String {
    match f {
        Format::Json => {
            // The demo's struct has no JSON tags: Go field names, declaration order.
            let items: Vec<GoOrdered> = list
                .iter()
                .map(|e| {
                    GoOrdered(vec![
                        ("EntitlementID", json!(e.entitlement_id)),
                        ("ItemID", json!(e.item_id)),
                        ("Namespace", json!(e.namespace)),
                        ("Status", json!(e.status)),
                        ("Quantity", json!(e.quantity)),
                        ("GrantedAt", json!(rfc3339_nano(e.granted_at.as_ref()))),
                    ])
                })
                .collect();
            #[derive(serde::Serialize)]
            struct Out {
                entitlements: Vec<GoOrdered>,
                total: usize,
            }
            to_go_json(&Out {
                entitlements: items,
                total: list.len(),
            })
        }
        Format::Table => {
            let mut b = format!(
                "{:<20} {:<30} {:<10} {:<10} {:<20}\n{}\n",
                "ENTITLEMENT_ID",
                "ITEM_ID",
                "STATUS",
                "QUANTITY",
                "GRANTED_AT",
                "-".repeat(90)
            );
            for e in list {
                b.push_str(&format!(
                    "{:<20} {:<30} {:<10} {:<10} {:<20}\n",
                    truncate(&e.entitlement_id, 20),
                    truncate(&e.item_id, 30),
                    e.status,
                    e.quantity,
                    short_time(e.granted_at.as_ref())
                ));
            }
            b.push_str(&format!("\nTotal: {} entitlements\n", list.len()));
            b
        }
        Format::Text => {
            if list.is_empty() {
                return "No entitlements found\n".into();
            }
            let mut b = format!("Found {} entitlement(s):\n\n", list.len());
            for (i, e) in list.iter().enumerate() {
                b.push_str(&format!("{}. {}\n", i + 1, e.item_id));
                b.push_str(&format!(
                    "   Status: {} | Quantity: {}\n",
                    e.status, e.quantity
                ));
                b.push_str(&format!(
                    "   Granted: {}\n",
                    short_time(e.granted_at.as_ref())
                ));
                if i + 1 < list.len() {
                    b.push('\n');
                }
            }
            b
        }
    }
}

fn wallet_json(w: &Wallet) -> String {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("wallet_id", json!(w.wallet_id));
    m.insert("currency_code", json!(w.currency_code));
    m.insert("namespace", json!(w.namespace));
    m.insert("balance", json!(w.balance));
    m.insert("status", json!(w.status));
    to_go_json(&m)
}

pub fn wallet(f: Format, w: &Wallet) -> String {
    match f {
        Format::Json | Format::Table => wallet_json(w),
        Format::Text => format!(
            "✓ Wallet found\n  Currency: {}\n  Balance: {}\n  Status: {}\n",
            w.currency_code, w.balance, w.status
        ),
    }
}

pub fn wallets(f: Format, list: &[Wallet]) -> String {
    match f {
        Format::Json => {
            let items: Vec<GoOrdered> = list
                .iter()
                .map(|w| {
                    GoOrdered(vec![
                        ("WalletID", json!(w.wallet_id)),
                        ("CurrencyCode", json!(w.currency_code)),
                        ("Namespace", json!(w.namespace)),
                        ("Balance", json!(w.balance)),
                        ("Status", json!(w.status)),
                    ])
                })
                .collect();
            #[derive(serde::Serialize)]
            struct Out {
                total: usize,
                wallets: Vec<GoOrdered>,
            }
            to_go_json(&Out {
                total: list.len(),
                wallets: items,
            })
        }
        Format::Table => {
            let mut b = format!(
                "{:<20} {:<15} {:<15} {:<10}\n{}\n",
                "WALLET_ID",
                "CURRENCY",
                "BALANCE",
                "STATUS",
                "-".repeat(60)
            );
            for w in list {
                b.push_str(&format!(
                    "{:<20} {:<15} {:<15} {:<10}\n",
                    truncate(&w.wallet_id, 20),
                    w.currency_code,
                    w.balance,
                    w.status
                ));
            }
            b.push_str(&format!("\nTotal: {} wallets\n", list.len()));
            b
        }
        Format::Text => {
            if list.is_empty() {
                return "No wallets found\n".into();
            }
            let mut b = format!("Found {} wallet(s):\n\n", list.len());
            for (i, w) in list.iter().enumerate() {
                b.push_str(&format!(
                    "{}. {}: {} ({})\n",
                    i + 1,
                    w.currency_code,
                    w.balance,
                    w.status
                ));
            }
            b
        }
    }
}

/// An object serialised with its keys in the given order (Go struct field order),
/// whatever map type serde_json uses.
struct GoOrdered(Vec<(&'static str, Value)>);

impl serde::Serialize for GoOrdered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_trims_nanoseconds_like_rfc3339nano() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.120000000Z").unwrap();
        assert_eq!(go_time(&t), "2026-01-02T03:04:05.12Z");
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05+07:00").unwrap();
        assert_eq!(go_time(&t), "2026-01-02T03:04:05+07:00");
    }

    #[test]
    fn envelopes_have_sorted_keys_and_optional_fields() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap();
        let r = EventResult {
            event: "stat-update",
            user_id: "u".into(),
            stat_code: "kills".into(),
            value: -10,
            timestamp: t,
            duration_ms: 3,
            error: Some("boom".into()),
        };
        let s = event_result(Format::Json, &r);
        let keys = [
            "duration_ms",
            "error",
            "event",
            "stat_code",
            "status",
            "timestamp",
            "user_id",
            "value",
        ];
        let pos: Vec<usize> = keys
            .iter()
            .map(|k| s.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{s}");
        assert!(s.contains("\"status\": \"error\""));
        assert!(s.contains("\"value\": -10"));
        let login = EventResult {
            event: "login",
            stat_code: String::new(),
            error: None,
            ..r
        };
        let s = event_result(Format::Json, &login);
        assert!(!s.contains("stat_code") && !s.contains("value") && !s.contains("error"));
        assert_eq!(
            event_result(Format::Text, &login).lines().next(),
            Some("✓ Event triggered successfully (3ms)")
        );
    }

    #[test]
    fn list_json_keeps_go_field_names_in_order() {
        let w = vec![Wallet {
            wallet_id: "w".into(),
            currency_code: "GOLD".into(),
            namespace: "demo".into(),
            balance: 150,
            status: "ACTIVE".into(),
        }];
        let s = wallets(Format::Json, &w);
        let order = [
            "\"total\"",
            "\"wallets\"",
            "WalletID",
            "CurrencyCode",
            "Namespace",
            "Balance",
            "Status",
        ];
        let pos: Vec<usize> = order.iter().map(|k| s.find(k).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{s}");
        let nothing: Option<Vec<Challenge>> = None;
        assert!(challenges(Format::Json, &nothing).contains("\"challenges\": null"));
        assert_eq!(truncate("abcdefghij", 8), "abcde...");
    }
}
