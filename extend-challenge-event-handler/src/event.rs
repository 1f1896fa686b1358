//! Validation at the door (CONTRACT §2): the three AGS messages become one [`Event`], or an
//! [`Invalid`] reason that the RPC answers with `InvalidArgument`. Nothing that passes here
//! can fail later inside a batch.

use chrono::{DateTime, Utc};
use extend_challenge_common::pb::accelbyte::Event as GenericEnvelope;
use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    GdprRequestDataDeletionResponse, UserLoggedIn, UserThirdPartyLoggedIn,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::StatItemUpdated;

use crate::metrics;

/// The `user_id` column is `VARCHAR(100)`.
pub const MAX_USER_ID_CHARS: usize = extend_challenge_common::store::ID_COLUMN_CHARS;

/// The `namespace` column is `VARCHAR(100)` (written when a player is auto-initialized).
pub const MAX_NAMESPACE_CHARS: usize = extend_challenge_common::store::ID_COLUMN_CHARS;

/// Event ids are kept in the `event_ledger` primary key (a B-tree entry must stay under
/// about 2,700 bytes); AGS ids are 32 hex digits.
pub const MAX_EVENT_ID_CHARS: usize = 256;

/// Which RPC delivered the event (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Login,
    ThirdPartyLogin,
    Stat,
    /// IAM's GDPR data deletion (CONTRACT §3.6): not a progress event, see [`Erasure`].
    GdprDeletion,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::ThirdPartyLogin => "third_party_login",
            EventKind::Stat => "stat_item_updated",
            EventKind::GdprDeletion => "gdpr_deletion",
        }
    }
}

/// What the event feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Login or third-party login: feeds `eventSource: login` goals.
    Login,
    /// Stat update, values truncated toward zero and clamped into `i32`: feeds
    /// `eventSource: statistic` goals with this stat code.
    Stat { code: String, value: i32, inc: i32 },
}

/// A validated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Envelope id (de-duplication key; empty = never de-duplicated).
    pub id: String,
    pub namespace: String,
    pub user_id: String,
    /// The envelope's RFC 3339 `timestamp`, when present and parseable.
    pub timestamp: Option<DateTime<Utc>>,
    pub source: Source,
}

/// Why an event is rejected with `InvalidArgument`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("userId cannot be empty")]
    EmptyUserId,
    #[error("userId is longer than 100 characters")]
    UserIdTooLong,
    #[error("userId must not contain control characters")]
    UserIdControlChars,
    #[error("namespace must be at most 100 characters without control characters")]
    BadNamespace,
    #[error("id must be at most 256 characters without control characters")]
    BadEventId,
    #[error("payload cannot be empty")]
    MissingPayload,
    #[error("statCode cannot be empty")]
    EmptyStatCode,
    #[error("latestValue must be a finite number")]
    NonFiniteValue,
    #[error("inc must be a finite number")]
    NonFiniteInc,
    #[error("eventType cannot be empty")]
    EmptyEventType,
    #[error("payload must be a JSON object")]
    PayloadNotJson,
    #[error("payload needs latestValue (or value)")]
    MissingStatValue,
    #[error("latestValue, value and inc must be JSON numbers, and statCode a string")]
    BadPayloadField,
}

impl Invalid {
    /// Metric reason label.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::EmptyUserId => "empty_user_id",
            Invalid::UserIdTooLong => "user_id_too_long",
            Invalid::UserIdControlChars => "user_id_control_chars",
            Invalid::BadNamespace => "bad_namespace",
            Invalid::BadEventId => "bad_event_id",
            Invalid::MissingPayload => "missing_payload",
            Invalid::EmptyStatCode => "empty_stat_code",
            Invalid::NonFiniteValue => "non_finite_value",
            Invalid::NonFiniteInc => "non_finite_inc",
            Invalid::EmptyEventType => "empty_event_type",
            Invalid::PayloadNotJson => "payload_not_json",
            Invalid::MissingStatValue => "missing_stat_value",
            Invalid::BadPayloadField => "bad_payload_field",
        }
    }
}

/// The envelope fields that reach Postgres: a text column refuses NUL, and the columns
/// have lengths. Other control characters would be stored, but no AGS id holds one, so
/// they are refused too (one rule, and logs stay one line per event).
fn check_envelope(id: &str, namespace: &str, user_id: &str) -> Result<(), Invalid> {
    if user_id.is_empty() {
        return Err(Invalid::EmptyUserId);
    }
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(Invalid::UserIdTooLong);
    }
    if user_id.chars().any(char::is_control) {
        return Err(Invalid::UserIdControlChars);
    }
    if namespace.chars().count() > MAX_NAMESPACE_CHARS || namespace.chars().any(char::is_control) {
        return Err(Invalid::BadNamespace);
    }
    if id.chars().count() > MAX_EVENT_ID_CHARS || id.chars().any(char::is_control) {
        return Err(Invalid::BadEventId);
    }
    Ok(())
}

fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn login(
    kind: EventKind,
    id: String,
    namespace: String,
    user_id: String,
    timestamp: &str,
) -> Result<Event, Invalid> {
    check_envelope(&id, &namespace, &user_id)?;
    Ok(Event {
        kind,
        id,
        namespace,
        user_id,
        timestamp: parse_timestamp(timestamp),
        source: Source::Login,
    })
}

impl TryFrom<UserLoggedIn> for Event {
    type Error = Invalid;

    fn try_from(m: UserLoggedIn) -> Result<Self, Invalid> {
        login(EventKind::Login, m.id, m.namespace, m.user_id, &m.timestamp)
    }
}

impl TryFrom<UserThirdPartyLoggedIn> for Event {
    type Error = Invalid;

    fn try_from(m: UserThirdPartyLoggedIn) -> Result<Self, Invalid> {
        login(
            EventKind::ThirdPartyLogin,
            m.id,
            m.namespace,
            m.user_id,
            &m.timestamp,
        )
    }
}

impl TryFrom<StatItemUpdated> for Event {
    type Error = Invalid;

    fn try_from(m: StatItemUpdated) -> Result<Self, Invalid> {
        check_envelope(&m.id, &m.namespace, &m.user_id)?;
        let payload = m.payload.ok_or(Invalid::MissingPayload)?;
        if payload.stat_code.is_empty() {
            return Err(Invalid::EmptyStatCode);
        }
        if !payload.latest_value.is_finite() {
            return Err(Invalid::NonFiniteValue);
        }
        if !payload.inc.is_finite() {
            return Err(Invalid::NonFiniteInc);
        }
        let value = to_i32_counted(payload.latest_value, "latest_value");
        let inc = to_i32_counted(payload.inc, "inc");
        Ok(Event {
            kind: EventKind::Stat,
            id: m.id,
            namespace: m.namespace,
            user_id: m.user_id,
            timestamp: parse_timestamp(&m.timestamp),
            source: Source::Stat {
                code: payload.stat_code,
                value,
                inc,
            },
        })
    }
}

/// What the deployment guide's generic envelope (`accelbyte.EventHandler`) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generic {
    /// A login or stat update, validated exactly as the real AsyncAPI message would be.
    Known(Event),
    /// An `eventType` this handler does not consume: answered OK and counted (the platform
    /// would not deliver it; a developer learns of it from `success: false`).
    UnknownType,
}

impl TryFrom<GenericEnvelope> for Generic {
    type Error = Invalid;

    /// `userLoggedIn` (and `userThirdPartyLoggedIn`) become the AGS login messages,
    /// `statItemUpdated` the AGS stat message (`statCode`, `latestValue` or `value`, `inc`
    /// read from the payload JSON), then go through the same validation as those.
    fn try_from(m: GenericEnvelope) -> Result<Self, Invalid> {
        let payload = m.payload.trim();
        let json = if payload.is_empty() {
            None
        } else {
            match serde_json::from_str::<serde_json::Value>(payload) {
                Ok(serde_json::Value::Object(map)) => Some(map),
                _ => return Err(Invalid::PayloadNotJson),
            }
        };
        match m.event_type.trim() {
            "" => Err(Invalid::EmptyEventType),
            "userLoggedIn" => Event::try_from(UserLoggedIn {
                id: m.id,
                namespace: m.namespace,
                user_id: m.user_id,
                timestamp: m.timestamp,
                ..Default::default()
            })
            .map(Generic::Known),
            "userThirdPartyLoggedIn" => Event::try_from(UserThirdPartyLoggedIn {
                id: m.id,
                namespace: m.namespace,
                user_id: m.user_id,
                timestamp: m.timestamp,
                ..Default::default()
            })
            .map(Generic::Known),
            "statItemUpdated" => {
                let item = match json {
                    None => None,
                    Some(map) => Some(stat_item(&map)?),
                };
                Event::try_from(StatItemUpdated {
                    id: m.id,
                    namespace: m.namespace,
                    user_id: m.user_id,
                    timestamp: m.timestamp,
                    payload: item,
                    ..Default::default()
                })
                .map(Generic::Known)
            }
            _ => Ok(Generic::UnknownType),
        }
    }
}

/// The stat fields of a generic payload.
fn stat_item(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<extend_challenge_common::pb::accelbyte::social::statistic::v1::StatItem, Invalid> {
    let number = |key: &str| -> Result<Option<f64>, Invalid> {
        match map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or(Invalid::BadPayloadField),
        }
    };
    let stat_code = match map.get("statCode") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(Invalid::BadPayloadField),
    };
    let latest_value = match number("latestValue")? {
        Some(v) => v,
        None => number("value")?.ok_or(Invalid::MissingStatValue)?,
    };
    Ok(
        extend_challenge_common::pb::accelbyte::social::statistic::v1::StatItem {
            stat_code,
            latest_value,
            inc: number("inc")?.unwrap_or(0.0),
            ..Default::default()
        },
    )
}

/// A validated GDPR data deletion request from IAM: erase this user's data now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub id: String,
    pub namespace: String,
    pub user_id: String,
}

impl TryFrom<GdprRequestDataDeletionResponse> for Erasure {
    type Error = Invalid;

    /// The user is `payload.deletionGDPR.userId`, else the envelope's `userId`; the
    /// namespace the envelope's, else the payload's.
    fn try_from(m: GdprRequestDataDeletionResponse) -> Result<Self, Invalid> {
        let gdpr = m.payload.and_then(|p| p.deletion_gdpr).unwrap_or_default();
        let user_id = if gdpr.user_id.is_empty() {
            m.user_id
        } else {
            gdpr.user_id
        };
        let namespace = if m.namespace.is_empty() {
            gdpr.namespace
        } else {
            m.namespace
        };
        check_envelope(&m.id, &namespace, &user_id)?;
        Ok(Erasure {
            id: m.id,
            namespace,
            user_id,
        })
    }
}

/// Truncates a finite value toward zero and clamps it into `i32`; `true` when clamped.
pub fn to_i32(v: f64) -> (i32, bool) {
    let t = v.trunc();
    if t > f64::from(i32::MAX) {
        (i32::MAX, true)
    } else if t < f64::from(i32::MIN) {
        (i32::MIN, true)
    } else {
        // In range and integral: exact.
        (t as i32, false)
    }
}

fn to_i32_counted(v: f64, field: &'static str) -> i32 {
    let (n, clamped) = to_i32(v);
    if clamped {
        metrics::VALUE_CLAMPS_TOTAL
            .with_label_values(&[field])
            .inc();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use extend_challenge_common::pb::accelbyte::social::statistic::v1::StatItem;

    fn stat(user: &str, code: &str, v: f64, inc: f64) -> StatItemUpdated {
        StatItemUpdated {
            id: "e1".into(),
            namespace: "ns".into(),
            user_id: user.into(),
            timestamp: "2025-11-04T12:00:00.5Z".into(),
            payload: Some(StatItem {
                stat_code: code.into(),
                latest_value: v,
                inc,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn values_truncate_toward_zero_and_clamp() {
        assert_eq!(to_i32(42.9), (42, false));
        assert_eq!(to_i32(-42.9), (-42, false));
        assert_eq!(to_i32(-0.5), (0, false));
        assert_eq!(to_i32(2147483647.9), (i32::MAX, false));
        assert_eq!(to_i32(2147483648.0), (i32::MAX, true));
        assert_eq!(to_i32(1e300), (i32::MAX, true));
        assert_eq!(to_i32(-2147483648.7), (i32::MIN, false));
        assert_eq!(to_i32(-1e300), (i32::MIN, true));
    }

    #[test]
    fn stat_events_are_validated() {
        let ok = Event::try_from(stat("u", "kills", 3.7, 1.2)).unwrap();
        assert_eq!(
            ok.source,
            Source::Stat {
                code: "kills".into(),
                value: 3,
                inc: 1
            }
        );
        assert_eq!(
            ok.timestamp.unwrap().timestamp_millis() % 1000,
            500,
            "sub-second timestamp kept"
        );
        let cases = [
            (stat("", "k", 1.0, 1.0), Invalid::EmptyUserId),
            (
                stat(&"x".repeat(101), "k", 1.0, 1.0),
                Invalid::UserIdTooLong,
            ),
            (
                stat("nul\u{0}user", "k", 1.0, 1.0),
                Invalid::UserIdControlChars,
            ),
            (
                stat("tab\tuser", "k", 1.0, 1.0),
                Invalid::UserIdControlChars,
            ),
            (
                stat("del\u{7f}", "k", 1.0, 1.0),
                Invalid::UserIdControlChars,
            ),
            (stat("u", "", 1.0, 1.0), Invalid::EmptyStatCode),
            (stat("u", "k", f64::NAN, 1.0), Invalid::NonFiniteValue),
            (stat("u", "k", f64::INFINITY, 1.0), Invalid::NonFiniteValue),
            (
                stat("u", "k", 1.0, f64::NEG_INFINITY),
                Invalid::NonFiniteInc,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(Event::try_from(msg).unwrap_err(), want);
        }
        let mut no_payload = stat("u", "k", 1.0, 1.0);
        no_payload.payload = None;
        assert_eq!(
            Event::try_from(no_payload).unwrap_err(),
            Invalid::MissingPayload
        );
        assert!(Event::try_from(stat(&"é".repeat(100), "k", 1.0, 1.0)).is_ok());
        let mut bad_ns = stat("u", "k", 1.0, 1.0);
        bad_ns.namespace = "ns\u{0}".into();
        assert_eq!(Event::try_from(bad_ns).unwrap_err(), Invalid::BadNamespace);
        let mut long_ns = stat("u", "k", 1.0, 1.0);
        long_ns.namespace = "n".repeat(101);
        assert_eq!(Event::try_from(long_ns).unwrap_err(), Invalid::BadNamespace);
        let mut bad_id = stat("u", "k", 1.0, 1.0);
        bad_id.id = "e\u{0}1".into();
        assert_eq!(Event::try_from(bad_id).unwrap_err(), Invalid::BadEventId);
        let mut long_id = stat("u", "k", 1.0, 1.0);
        long_id.id = "e".repeat(257);
        assert_eq!(Event::try_from(long_id).unwrap_err(), Invalid::BadEventId);
    }

    #[test]
    fn login_user_ids_with_control_characters_are_refused() {
        let e = Event::try_from(UserLoggedIn {
            user_id: "nul\u{0}user".into(),
            ..Default::default()
        });
        assert_eq!(e.unwrap_err(), Invalid::UserIdControlChars);
        let e = Event::try_from(UserThirdPartyLoggedIn {
            user_id: "line\nbreak".into(),
            ..Default::default()
        });
        assert_eq!(e.unwrap_err(), Invalid::UserIdControlChars);
    }

    fn generic(event_type: &str, payload: &str) -> GenericEnvelope {
        GenericEnvelope {
            id: "test-event-001".into(),
            namespace: "mygame".into(),
            user_id: "test-user-123".into(),
            event_type: event_type.into(),
            payload: payload.into(),
            timestamp: "2025-10-15T10:00:00Z".into(),
        }
    }

    #[test]
    fn generic_envelope_maps_onto_the_real_messages() {
        let Generic::Known(e) = Generic::try_from(generic(
            "statItemUpdated",
            r#"{"statCode":"snowman_kills","value":7}"#,
        ))
        .unwrap() else {
            panic!("a stat event")
        };
        assert_eq!(e.kind, EventKind::Stat);
        assert_eq!(
            (e.id.as_str(), e.user_id.as_str()),
            ("test-event-001", "test-user-123")
        );
        assert_eq!(e.namespace, "mygame");
        assert!(e.timestamp.is_some());
        let want = Source::Stat {
            code: "snowman_kills".into(),
            value: 7,
            inc: 0,
        };
        assert_eq!(e.source, want);
        // latestValue wins over value; inc is read.
        let Generic::Known(e) = Generic::try_from(generic(
            "statItemUpdated",
            r#"{"statCode":"k","latestValue":9.9,"value":1,"inc":2}"#,
        ))
        .unwrap() else {
            panic!("a stat event")
        };
        let want = Source::Stat {
            code: "k".into(),
            value: 9,
            inc: 2,
        };
        assert_eq!(e.source, want);
        for payload in ["{}", "", "  "] {
            let Generic::Known(e) = Generic::try_from(generic("userLoggedIn", payload)).unwrap()
            else {
                panic!("a login")
            };
            assert_eq!((e.kind, e.source), (EventKind::Login, Source::Login));
        }
        assert_eq!(
            Generic::try_from(generic("userBanned", "{}")).unwrap(),
            Generic::UnknownType
        );
    }

    #[test]
    fn generic_envelope_is_validated() {
        let cases = [
            (generic("", "{}"), Invalid::EmptyEventType),
            (
                generic("statItemUpdated", "not json"),
                Invalid::PayloadNotJson,
            ),
            (generic("userLoggedIn", "[1]"), Invalid::PayloadNotJson),
            (generic("statItemUpdated", ""), Invalid::MissingPayload),
            (
                generic("statItemUpdated", r#"{"statCode":"k"}"#),
                Invalid::MissingStatValue,
            ),
            (
                generic("statItemUpdated", r#"{"value":1}"#),
                Invalid::EmptyStatCode,
            ),
            (
                generic("statItemUpdated", r#"{"statCode":"k","value":"7"}"#),
                Invalid::BadPayloadField,
            ),
            (
                generic("statItemUpdated", r#"{"statCode":1,"value":7}"#),
                Invalid::BadPayloadField,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(Generic::try_from(msg).unwrap_err(), want);
        }
        // The real messages' rules apply: an empty user id, a NUL in it.
        let mut no_user = generic("userLoggedIn", "{}");
        no_user.user_id.clear();
        assert_eq!(
            Generic::try_from(no_user).unwrap_err(),
            Invalid::EmptyUserId
        );
        let mut nul = generic("statItemUpdated", r#"{"statCode":"k","value":1}"#);
        nul.user_id = "a\u{0}b".into();
        assert_eq!(
            Generic::try_from(nul).unwrap_err(),
            Invalid::UserIdControlChars
        );
    }

    #[test]
    fn bad_timestamp_falls_back_to_none() {
        let e = Event::try_from(UserLoggedIn {
            user_id: "u".into(),
            timestamp: "yesterday".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.timestamp, None);
        assert_eq!(e.source, Source::Login);
    }

    #[test]
    fn gdpr_user_comes_from_the_payload_else_the_envelope() {
        use extend_challenge_common::pb::accelbyte::iam::account::v1::{
            DeletionGdpr, GdprRequestDataDeletionResponsePayloadData,
        };
        let msg = |envelope: &str, payload: Option<&str>| GdprRequestDataDeletionResponse {
            id: "g1".into(),
            namespace: "ns".into(),
            user_id: envelope.into(),
            payload: payload.map(|u| GdprRequestDataDeletionResponsePayloadData {
                deletion_gdpr: Some(DeletionGdpr {
                    user_id: u.into(),
                    namespace: "ns".into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let e = Erasure::try_from(msg("envelope-user", Some("payload-user"))).unwrap();
        assert_eq!(e.user_id, "payload-user");
        let e = Erasure::try_from(msg("envelope-user", Some(""))).unwrap();
        assert_eq!(e.user_id, "envelope-user");
        let e = Erasure::try_from(msg("envelope-user", None)).unwrap();
        assert_eq!(e.user_id, "envelope-user");
        assert_eq!(
            Erasure::try_from(msg("", None)).unwrap_err(),
            Invalid::EmptyUserId
        );
        assert_eq!(
            Erasure::try_from(msg("", Some("a\u{0}b"))).unwrap_err(),
            Invalid::UserIdControlChars
        );
    }
}
