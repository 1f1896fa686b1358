//! AGS permissions, and when a held one allows what a route wants. The rules are those of
//! AccelByte's Go SDK token validator (`accelbyte-go-sdk`,
//! `services-api/pkg/service/iam/auth_validator.go`: `validatePermissions`,
//! `replaceResource`), written afresh:
//!
//! - A resource is `:`-separated segments; a held `*` segment matches any one segment.
//! - A held resource shorter than the wanted one matches only if it ends in `*` and the
//!   segment before that `*` is neither `NAMESPACE` nor `USER` (`ADMIN:*` covers
//!   `ADMIN:NAMESPACE:ns:CHALLENGE`; `ADMIN:NAMESPACE:*` does not). A lone `*` covers
//!   everything.
//! - A held resource longer than the wanted one matches only if every extra segment is `*`.
//! - Studio namespaces: a held segment right after `NAMESPACE` that ends in `-` (a studio,
//!   `mystudio-`) covers the studio's own namespace (`mystudio`) and each of its game
//!   namespaces written `{studio}-{game}` (`mystudio-mygame`: exactly one `-`).
//! - The action bits: the held action must share a bit with the wanted one.
//!
//! Role permissions carry placeholders: `{namespace}` and `{userId}` are replaced before
//! matching ([`substitute`]).
//!
//! Not done (see docs/DEVIATIONS.md): the SDK also asks AGS Basic for the token namespace's
//! context, so that a studio segment covers a game namespace that does not start with the
//! studio's name; and it lets a lone `*` through whatever its action bits.

use serde::Deserialize;

/// The CRUD action bits of AGS permissions.
pub const ACTION_CREATE: u32 = 1;
pub const ACTION_READ: u32 = 2;
pub const ACTION_UPDATE: u32 = 4;
pub const ACTION_DELETE: u32 = 8;

/// One AGS permission: a resource pattern and its action bits (the token claim's
/// `{"Resource", "Action"}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Permission {
    #[serde(rename = "Resource", default)]
    pub resource: String,
    #[serde(rename = "Action", default)]
    pub action: u32,
}

impl Permission {
    /// Whether this permission allows `action` on `resource`.
    pub fn grants(&self, resource: &str, action: u32) -> bool {
        self.action & action != 0 && resource_matches(&self.resource, resource)
    }
}

/// The name of an action for messages: `read`, `create|update`, ….
pub fn action_name(action: u32) -> String {
    let names: Vec<&str> = [
        (ACTION_CREATE, "create"),
        (ACTION_READ, "read"),
        (ACTION_UPDATE, "update"),
        (ACTION_DELETE, "delete"),
    ]
    .iter()
    .filter(|(bit, _)| action & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        format!("action {action}")
    } else {
        names.join("|")
    }
}

/// `resource` with `{namespace}` replaced by `namespace` and, when given, `{userId}` by
/// `user_id` (the SDK's `replaceResource`).
pub fn substitute(resource: &str, namespace: &str, user_id: Option<&str>) -> String {
    let out = resource.replace("{namespace}", namespace);
    match user_id {
        Some(user) => out.replace("{userId}", user),
        None => out,
    }
}

/// Whether the held resource pattern covers the wanted resource (rules in the module doc).
pub fn resource_matches(held: &str, wanted: &str) -> bool {
    let held: Vec<&str> = held.split(':').collect();
    let wanted: Vec<&str> = wanted.split(':').collect();
    for (i, (h, w)) in held.iter().zip(&wanted).enumerate() {
        if h == w || *h == "*" {
            continue;
        }
        if i > 0 && held[i - 1] == "NAMESPACE" && studio_covers(h, w) {
            continue;
        }
        return false;
    }
    match held.len().cmp(&wanted.len()) {
        std::cmp::Ordering::Equal => true,
        std::cmp::Ordering::Less => match held.as_slice() {
            [.., before, "*"] => !matches!(*before, "NAMESPACE" | "USER"),
            ["*"] => true,
            _ => false,
        },
        std::cmp::Ordering::Greater => held[wanted.len()..].iter().all(|s| *s == "*"),
    }
}

/// Whether a held namespace segment naming a studio (`mystudio-`) covers the wanted
/// namespace: the studio itself (`mystudio`) or one of its games (`mystudio-mygame`).
fn studio_covers(held: &str, wanted: &str) -> bool {
    let Some(studio) = held.strip_suffix('-') else {
        return false;
    };
    wanted == studio || (wanted.starts_with(held) && wanted.matches('-').count() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: &str = "ADMIN:NAMESPACE:mygame:CHALLENGE";

    #[test]
    fn exact_and_wildcard_segments() {
        assert!(resource_matches("ADMIN:NAMESPACE:mygame:CHALLENGE", WANT));
        assert!(resource_matches("ADMIN:NAMESPACE:*:CHALLENGE", WANT));
        assert!(resource_matches("*:*:*:*", WANT));
        assert!(!resource_matches("ADMIN:NAMESPACE:other:CHALLENGE", WANT));
        assert!(!resource_matches("NAMESPACE:mygame:CHALLENGE", WANT));
        assert!(!resource_matches("ADMIN:NAMESPACE:mygame:CHALLENG", WANT));
        assert!(!resource_matches("", WANT));
    }

    #[test]
    fn a_shorter_pattern_needs_a_trailing_star_not_after_namespace_or_user() {
        assert!(resource_matches("ADMIN:*", WANT));
        assert!(resource_matches(
            "ADMIN:NAMESPACE:mygame:*",
            "ADMIN:NAMESPACE:mygame:X:Y"
        ));
        assert!(resource_matches("*", WANT));
        assert!(!resource_matches("ADMIN:NAMESPACE:*", WANT));
        assert!(!resource_matches(
            "ADMIN:NAMESPACE:mygame:USER:*",
            "ADMIN:NAMESPACE:mygame:USER:u1:PROFILE"
        ));
        assert!(!resource_matches("ADMIN:NAMESPACE:mygame", WANT));
        assert!(!resource_matches("ADMIN", WANT));
    }

    #[test]
    fn a_longer_pattern_matches_only_with_star_extras() {
        assert!(resource_matches("ADMIN:NAMESPACE:mygame:CHALLENGE:*", WANT));
        assert!(resource_matches(
            "ADMIN:NAMESPACE:mygame:CHALLENGE:*:*",
            WANT
        ));
        assert!(!resource_matches(
            "ADMIN:NAMESPACE:mygame:CHALLENGE:X",
            WANT
        ));
    }

    #[test]
    fn a_studio_segment_covers_the_studio_and_its_prefixed_games() {
        let game = "ADMIN:NAMESPACE:mystudio-mygame:CHALLENGE";
        let studio = "ADMIN:NAMESPACE:mystudio:CHALLENGE";
        let held = "ADMIN:NAMESPACE:mystudio-:CHALLENGE";
        assert!(resource_matches(held, game));
        assert!(resource_matches(held, studio));
        assert!(!resource_matches(
            held,
            "ADMIN:NAMESPACE:otherstudio-mygame:CHALLENGE"
        ));
        assert!(!resource_matches(
            held,
            "ADMIN:NAMESPACE:mystudio-a-b:CHALLENGE"
        ));
        // Only right after NAMESPACE.
        assert!(!resource_matches(
            "ADMIN:mystudio-:x",
            "ADMIN:mystudio-game:x"
        ));
        // A game namespace does not cover its studio.
        assert!(!resource_matches(game, studio));
    }

    #[test]
    fn the_action_must_share_a_bit() {
        let p = |action| Permission {
            resource: WANT.into(),
            action,
        };
        assert!(p(ACTION_READ).grants(WANT, ACTION_READ));
        assert!(p(15).grants(WANT, ACTION_DELETE));
        assert!(!p(ACTION_UPDATE).grants(WANT, ACTION_READ));
        assert!(!p(0).grants(WANT, ACTION_READ));
        let all = Permission {
            resource: "*".into(),
            action: 0,
        };
        assert!(
            !all.grants(WANT, ACTION_READ),
            "a lone * still needs the bit"
        );
    }

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            substitute(
                "ADMIN:NAMESPACE:{namespace}:USER:{userId}",
                "ns",
                Some("u1")
            ),
            "ADMIN:NAMESPACE:ns:USER:u1"
        );
        assert_eq!(
            substitute("ADMIN:NAMESPACE:{namespace}:USER:{userId}", "ns", None),
            "ADMIN:NAMESPACE:ns:USER:{userId}"
        );
    }

    #[test]
    fn action_names() {
        assert_eq!(action_name(ACTION_READ), "read");
        assert_eq!(action_name(ACTION_CREATE | ACTION_UPDATE), "create|update");
        assert_eq!(action_name(0), "action 0");
    }
}
