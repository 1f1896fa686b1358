//! The permissions of IAM roles, for admin authorisation: a token's `roles` and
//! `namespace_roles` name roles, whose permissions only IAM knows. They are fetched with the
//! service's client token ([`ClientToken`]) from the endpoints AccelByte's Go SDK token
//! validator uses (`getRole` in `services-api/pkg/service/iam/auth_validator.go`), models
//! as published in the SDK's `spec/iam.json`:
//!
//! - a role in a namespace: `AdminGetRoleNamespacePermissionV3`,
//!   `GET /iam/v3/admin/namespaces/{namespace}/roleoverride/{roleId}/permissions` →
//!   `model.RolePermissionResponseV3` `{"permissions": [accountcommon.Permission
//!   {"Resource", "Action", "SchedAction", "SchedCron", "SchedRange"}]}`;
//! - a role in namespace `*` (a global role): `AdminGetRoleV3`,
//!   `GET /iam/v3/admin/roles/{roleId}` → `model.RoleResponseV3` whose `permissions` are
//!   `accountcommon.PermissionV3` `{"resource", "action", "schedAction", "schedCron",
//!   "schedRange"}`.
//!
//! As in the SDK, a trailing `-` of the namespace (a studio) is dropped for the look-up, and
//! the scheduled-action fields are ignored. A role IAM does not know (404, or 400 for an id
//! it cannot read) has no permissions. Anything else that keeps an answer from IAM
//! (transport error, time-out, 401 twice, 403, 5xx, no client token) is an error: the caller
//! cannot be judged, which the service answers `Unavailable` rather than guess.
//!
//! The cache: one entry per (role, namespace), fresh for `ttl` (`ROLES_CACHE_EXPIRATION_TIME`,
//! default one hour, as the SDK). Concurrent requests for one entry share one fetch. When a
//! refresh fails, the expired permissions are used (the SDK's "serve stale"), and the entry
//! is not fetched again for `retry_gap`, so an IAM outage is not hammered. At most
//! `capacity` entries are kept; the least recently used goes first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::permissions::Permission;
use crate::client_token::{ClientToken, TokenError};

/// The namespace of global roles (`namespace_roles` entries may name it).
const GLOBAL_NAMESPACE: &str = "*";

/// Which role's permissions: `namespace` is as it is looked up (a trailing `-` dropped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RoleKey {
    pub role_id: String,
    pub namespace: String,
}

impl RoleKey {
    /// The key of `role_id` in `namespace` as the token names it.
    pub fn new(role_id: &str, namespace: &str) -> Self {
        RoleKey {
            role_id: role_id.to_string(),
            namespace: namespace.strip_suffix('-').unwrap_or(namespace).to_string(),
        }
    }
}

/// How the cache behaves; see the module doc.
#[derive(Debug, Clone)]
pub(crate) struct RoleCacheConfig {
    pub base_url: String,
    pub ttl: Duration,
    pub capacity: usize,
    pub retry_gap: Duration,
    pub fetch_timeout: Duration,
}

pub(crate) struct RoleCache {
    config: RoleCacheConfig,
    http: reqwest::Client,
    token: Arc<ClientToken>,
    entries: Mutex<HashMap<RoleKey, Entry>>,
}

struct Entry {
    last_used: Instant,
    slot: Arc<tokio::sync::Mutex<Slot>>,
}

#[derive(Default)]
struct Slot {
    known: Option<Known>,
    failed_at: Option<Instant>,
}

struct Known {
    permissions: Arc<[Permission]>,
    fetched_at: Instant,
}

/// The field read of both answers: `model.RolePermissionResponseV3` (a namespace role) and
/// `model.RoleResponseV3` (a global role). Both carry `permissions`.
#[derive(Deserialize)]
struct RolePermissions {
    #[serde(default)]
    permissions: Option<Vec<RolePermission>>,
}

/// `accountcommon.Permission` (`Resource`, `Action`) or `accountcommon.PermissionV3`
/// (`resource`, `action`): the fields read.
#[derive(Deserialize)]
struct RolePermission {
    #[serde(alias = "Resource", default)]
    resource: String,
    #[serde(alias = "Action", default)]
    action: i64,
}

fn permission(resource: String, action: i64) -> Permission {
    Permission {
        resource,
        action: u32::try_from(action).unwrap_or(0),
    }
}

impl RoleCache {
    pub fn new(config: RoleCacheConfig, http: reqwest::Client, token: Arc<ClientToken>) -> Self {
        RoleCache {
            config,
            http,
            token,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The permissions of the role, placeholders as IAM states them; an error says why IAM
    /// could not tell (and nothing earlier is known).
    pub async fn permissions(&self, key: &RoleKey) -> Result<Arc<[Permission]>, String> {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        let now = Instant::now();
        if let Some(known) = slot
            .known
            .as_ref()
            .filter(|k| now.duration_since(k.fetched_at) < self.config.ttl)
        {
            return Ok(known.permissions.clone());
        }
        let recently_failed = slot
            .failed_at
            .is_some_and(|t| now.duration_since(t) < self.config.retry_gap);
        let error = if recently_failed {
            "IAM failed to answer for this role moments ago".to_string()
        } else {
            match self.fetch(key).await {
                Ok(permissions) => {
                    tracing::debug!(
                        role_id = %key.role_id,
                        namespace = %key.namespace,
                        permissions = permissions.len(),
                        "fetched IAM role permissions"
                    );
                    slot.known = Some(Known {
                        permissions: permissions.clone(),
                        fetched_at: Instant::now(),
                    });
                    slot.failed_at = None;
                    return Ok(permissions);
                }
                Err(error) => {
                    slot.failed_at = Some(Instant::now());
                    error
                }
            }
        };
        match &slot.known {
            Some(stale) => {
                tracing::warn!(
                    role_id = %key.role_id,
                    namespace = %key.namespace,
                    %error,
                    "cannot refresh IAM role permissions; using the expired ones"
                );
                Ok(stale.permissions.clone())
            }
            None => Err(error),
        }
    }

    /// The entry of `key`, made (evicting the least recently used one when full) if new.
    fn slot(&self, key: &RoleKey) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        if let Some(entry) = entries.get_mut(key) {
            entry.last_used = now;
            return entry.slot.clone();
        }
        if entries.len() >= self.config.capacity.max(1) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let slot = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        entries.insert(
            key.clone(),
            Entry {
                last_used: now,
                slot: slot.clone(),
            },
        );
        slot
    }

    /// How many entries the cache holds (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().len()
    }

    async fn fetch(&self, key: &RoleKey) -> Result<Arc<[Permission]>, String> {
        let global = key.namespace == GLOBAL_NAMESPACE;
        let segments: Vec<&str> = if global {
            vec!["iam", "v3", "admin", "roles", &key.role_id]
        } else {
            vec![
                "iam",
                "v3",
                "admin",
                "namespaces",
                &key.namespace,
                "roleoverride",
                &key.role_id,
                "permissions",
            ]
        };
        let Some(url) = self.url(&segments)? else {
            // An empty, `.` or `..` id or namespace names no role IAM could hold.
            return Ok(Arc::from([]));
        };
        let path = url.path().to_string();
        let mut renewed = false;
        loop {
            let token = self.token.get().await.map_err(|e| match e {
                TokenError::Unavailable(reason) => format!("no client token: {reason}"),
                rejected @ TokenError::Rejected { .. } => rejected.to_string(),
            })?;
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(&token)
                .timeout(self.config.fetch_timeout)
                .send()
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            let status = response.status();
            if status.is_success() {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("GET {path}: {e}"))?;
                let permissions: Vec<Permission> = serde_json::from_slice::<RolePermissions>(&body)
                    .map_err(|e| format!("GET {path}: unreadable answer: {e}"))?
                    .permissions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| permission(p.resource, p.action))
                    .collect();
                return Ok(permissions.into());
            }
            match status {
                StatusCode::NOT_FOUND => {
                    tracing::debug!(role_id = %key.role_id, namespace = %key.namespace, "IAM does not know the role");
                    return Ok(Arc::from([]));
                }
                StatusCode::BAD_REQUEST => {
                    tracing::warn!(role_id = %key.role_id, namespace = %key.namespace, "IAM refuses the role look-up as invalid; the role grants nothing");
                    return Ok(Arc::from([]));
                }
                StatusCode::UNAUTHORIZED if !renewed => {
                    renewed = true;
                    self.token.forget(&token).await;
                }
                StatusCode::FORBIDDEN => {
                    tracing::error!(
                        "AGS IAM refuses role look-ups: AB_CLIENT_ID needs the permission ADMIN:ROLE [READ]"
                    );
                    return Err(format!("GET {path}: HTTP 403"));
                }
                _ => return Err(format!("GET {path}: HTTP {}", status.as_u16())),
            }
        }
    }

    /// `base_url` followed by `segments`, each percent-encoded as one path segment; `None`
    /// if a segment is empty, `.` or `..`.
    fn url(&self, segments: &[&str]) -> Result<Option<Url>, String> {
        if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
            return Ok(None);
        }
        let mut url = Url::parse(&self.config.base_url)
            .map_err(|e| format!("AB_BASE_URL is not a URL: {e}"))?;
        url.path_segments_mut()
            .map_err(|_| "AB_BASE_URL cannot take a path".to_string())?
            .pop_if_empty()
            .extend(segments);
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(base: &str, capacity: usize) -> RoleCache {
        let http = reqwest::Client::new();
        RoleCache::new(
            RoleCacheConfig {
                base_url: base.into(),
                ttl: Duration::from_secs(3600),
                capacity,
                retry_gap: Duration::from_secs(5),
                fetch_timeout: Duration::from_millis(200),
            },
            http.clone(),
            Arc::new(ClientToken::new(http, base, "id", "secret")),
        )
    }

    #[test]
    fn a_studio_namespace_is_looked_up_without_its_dash() {
        assert_eq!(RoleKey::new("r", "mystudio-").namespace, "mystudio");
        assert_eq!(RoleKey::new("r", "mygame").namespace, "mygame");
        assert_eq!(RoleKey::new("r", "*").namespace, "*");
    }

    #[test]
    fn urls_encode_segments_and_refuse_dot_segments() {
        let c = cache("http://iam.example/base/", 10);
        let url = c
            .url(&[
                "iam",
                "v3",
                "admin",
                "namespaces",
                "a b",
                "roleoverride",
                "r/1",
                "permissions",
            ])
            .unwrap()
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://iam.example/base/iam/v3/admin/namespaces/a%20b/roleoverride/r%2F1/permissions"
        );
        for bad in ["", ".", ".."] {
            assert!(c.url(&["iam", bad]).unwrap().is_none(), "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_keeps_at_most_its_capacity_dropping_the_least_recently_used() {
        let c = cache("http://127.0.0.1:9", 2);
        let tick = || tokio::time::advance(Duration::from_millis(1));
        c.slot(&RoleKey::new("a", "ns"));
        tick().await;
        c.slot(&RoleKey::new("b", "ns"));
        tick().await;
        c.slot(&RoleKey::new("a", "ns"));
        tick().await;
        c.slot(&RoleKey::new("c", "ns"));
        assert_eq!(c.len(), 2);
        let entries = c.entries.lock();
        assert!(
            entries.contains_key(&RoleKey::new("a", "ns")),
            "a was used last"
        );
        assert!(!entries.contains_key(&RoleKey::new("b", "ns")), "b went");
    }

    #[tokio::test]
    async fn a_role_without_a_usable_id_grants_nothing_without_asking_iam() {
        let c = cache("http://127.0.0.1:9", 2);
        let perms = c.permissions(&RoleKey::new("", "ns")).await.unwrap();
        assert!(perms.is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_iam_is_an_error_then_not_asked_again_at_once() {
        let c = cache("http://127.0.0.1:9", 2);
        let key = RoleKey::new("r", "ns");
        let first = c.permissions(&key).await.unwrap_err();
        assert!(first.contains("no client token"), "{first}");
        let again = c.permissions(&key).await.unwrap_err();
        assert!(again.contains("moments ago"), "{again}");
    }
}
