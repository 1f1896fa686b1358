//! Who is calling (CONTRACT §3.4): an AGS IAM access token verified locally, or, with auth
//! disabled, the `x-mock-user-id` header.
//!
//! Verification is local: RS256 signatures against IAM's JWKS, `exp`/`nbf`, IAM's revocation
//! list, and the `extend_namespace` claim. The JWKS and the revocation list are cached and
//! refreshed lazily: a request that finds them older than `REFRESH_INTERVAL` starts a refresh
//! in the background and is checked against what is cached. A token whose `kid` is unknown
//! forces a JWKS refresh before it is rejected. Every trip to IAM, forced or not, is
//! rate-limited (`AuthConfig::min_refresh_gap`), so neither a flood of made-up `kid`s nor an IAM
//! outage turns into a flood of requests to IAM. Until the keys have loaded once, tokens are
//! rejected with 401 and the process keeps running.
//!
//! Both transports ask the same question the same way: [`Authenticator::caller`] takes the
//! request's headers (REST's, or the gRPC request's HTTP/2 headers, which are its metadata)
//! and yields the [`AuthUser`] or the [`ServiceError`] that [`AuthError`] maps to — one
//! mapping (in `error.rs`), which REST renders as JSON and gRPC as a status.
//!
//! Admin routes ask [`Authenticator::admin_caller`] with the route's action bit: the token
//! must hold `ADMIN:NAMESPACE:{namespace}:CHALLENGE` with that bit, as AccelByte's Go SDK
//! token validator reads permissions — the token's own `permissions`, then those of its
//! `namespace_roles` and `roles`, fetched from IAM with the service's client token and
//! cached (`roles.rs`); matching rules in [`permissions`].

pub mod permissions;
pub mod revocation;

mod keys;
mod roles;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

// Tokio's clock (the same as std's unless a test pauses time) for the cache's age and the
// refresh rate limit.
use tokio::time::Instant;

use extend_challenge_common::settings::{Secret, Settings};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;

pub use self::permissions::{ACTION_CREATE, ACTION_DELETE, ACTION_READ, ACTION_UPDATE, Permission};
use self::revocation::RevocationList;
use self::roles::{RoleCache, RoleCacheConfig, RoleKey};
use crate::client_token::ClientToken;
use crate::error::ServiceError;

/// The user when auth is disabled and the caller names none.
pub const DEFAULT_MOCK_USER_ID: &str = "test-user-id";
/// Header (and gRPC metadata key) naming the user when auth is disabled.
pub const MOCK_USER_HEADER: &str = "x-mock-user-id";
/// The `user_id` column's width.
const MAX_USER_ID_CHARS: usize = extend_challenge_common::store::ID_COLUMN_CHARS;
/// The same header as forwarded by a grpc-gateway, which the reference also accepted.
const GATEWAY_MOCK_USER_HEADER: &str = "grpcgateway-x-mock-user-id";

const JWKS_PATH: &str = "/iam/v3/oauth/jwks";
const REVOCATION_LIST_PATH: &str = "/iam/v3/oauth/revocationlist";
/// Role entries the permission cache keeps at most.
pub const ROLE_CACHE_CAPACITY: usize = 10_000;
/// Role look-ups one admin request runs at once.
const ROLE_LOOKUPS_AT_ONCE: usize = 8;

/// Why a caller was refused. `Display` is the client-facing message; it never contains the
/// token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing access token: send 'Authorization: Bearer <token>'")]
    MissingToken,
    #[error("access token is malformed")]
    Malformed,
    #[error("access token has expired")]
    Expired,
    #[error("access token is not valid yet")]
    NotYetValid,
    #[error("access token signature is invalid")]
    InvalidSignature,
    #[error("access token is signed by an unknown key")]
    UnknownKey,
    #[error("access token cannot be verified yet: signing keys are not loaded")]
    KeysUnavailable,
    #[error("access token has been revoked")]
    Revoked,
    #[error("access token is not valid for this namespace")]
    WrongNamespace,
    /// Auth disabled: the `x-mock-user-id` header is not a usable user id.
    #[error("invalid x-mock-user-id: {0}")]
    InvalidMockUser(&'static str),
}

impl AuthError {
    /// `PermissionDenied` (HTTP 403) for a valid token of another namespace; `Unauthenticated`
    /// (HTTP 401) for everything else.
    pub fn code(&self) -> tonic::Code {
        match self {
            AuthError::WrongNamespace => tonic::Code::PermissionDenied,
            AuthError::InvalidMockUser(_) => tonic::Code::InvalidArgument,
            _ => tonic::Code::Unauthenticated,
        }
    }
}

/// IAM could not say what the caller's roles allow (unreachable, failing, or refusing the
/// service's client): the admin request cannot be judged. The text is for logs.
#[derive(Debug, thiserror::Error)]
#[error("cannot look up the caller's role permissions: {0}")]
pub struct PermissionLookupError(pub String);

/// The authenticated caller: the token's `sub`, or with auth disabled the mock user. REST's
/// auth middleware and gRPC's router put it in the request's extensions for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser(pub String);

/// What the authenticator needs; `from_settings` fills it from the environment.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `PLUGIN_GRPC_SERVER_AUTH_ENABLED`.
    pub enabled: bool,
    /// `AB_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// `AB_NAMESPACE`: tokens carrying another `extend_namespace` are refused.
    pub namespace: String,
    /// `REFRESH_INTERVAL`: how old the cached JWKS and revocation list may get.
    pub refresh_interval: Duration,
    /// At most one trip to IAM per this interval, whatever triggers it.
    pub min_refresh_gap: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Timeout of one request to IAM.
    pub fetch_timeout: Duration,
    /// `AB_CLIENT_ID` / `AB_CLIENT_SECRET`: the service's IAM client, whose token looks up
    /// role permissions (unless the authenticator is given a shared [`ClientToken`]).
    pub client_id: String,
    pub client_secret: Secret,
    /// `ROLES_CACHE_EXPIRATION_TIME`: how long fetched role permissions are used.
    pub role_cache_ttl: Duration,
    /// Role entries kept at most.
    pub role_cache_capacity: usize,
}

impl AuthConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        AuthConfig {
            enabled: settings.auth.enabled,
            base_url: settings.ags.base_url.trim_end_matches('/').to_string(),
            namespace: settings.ags.namespace.clone(),
            refresh_interval: settings.auth.refresh_interval,
            min_refresh_gap: Duration::from_secs(5),
            leeway: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            client_id: settings.ags.client_id.clone(),
            client_secret: settings.ags.client_secret.clone(),
            role_cache_ttl: settings.auth.role_cache_ttl,
            role_cache_capacity: ROLE_CACHE_CAPACITY,
        }
    }
}

/// Verifies callers. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthConfig,
    http: reqwest::Client,
    validation: Validation,
    cache: RwLock<Cache>,
    /// Held while talking to IAM, so concurrent triggers queue and then see the fresh result.
    refresh: tokio::sync::Mutex<RefreshClock>,
    background_refresh: AtomicBool,
    /// Permissions of IAM roles, for admin routes.
    roles: RoleCache,
}

#[derive(Clone, Default)]
struct Cache {
    keys: Arc<HashMap<String, DecodingKey>>,
    /// When the keys last loaded successfully; `None` until the first success.
    keys_loaded_at: Option<Instant>,
    revocations: Arc<RevocationList>,
}

#[derive(Default)]
struct RefreshClock {
    last_attempt: Option<Instant>,
}

/// The claims of an AGS access token that the service reads. The lists may be absent or
/// `null` in a token.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    extend_namespace: Option<String>,
    /// The namespace the token was issued in.
    #[serde(default)]
    namespace: Option<String>,
    /// Permissions granted to the token itself.
    #[serde(default)]
    permissions: Option<Vec<Permission>>,
    /// Role ids, valid in the token's namespace.
    #[serde(default)]
    roles: Option<Vec<String>>,
    /// Roles held in a given namespace.
    #[serde(default)]
    namespace_roles: Option<Vec<NamespaceRole>>,
}

#[derive(Deserialize)]
struct NamespaceRole {
    #[serde(rename = "roleId", default)]
    role_id: String,
    #[serde(default)]
    namespace: String,
}

impl Authenticator {
    /// From the service settings. With auth enabled and inside a Tokio runtime, the JWKS and
    /// revocation list start loading at once in the background; a failure is logged and
    /// retried when requests arrive.
    pub fn from_settings(settings: &Settings, http: reqwest::Client) -> Authenticator {
        let token = ClientToken::from_settings(settings, http.clone());
        Authenticator::from_settings_with_token(settings, http, token)
    }

    /// [`Authenticator::from_settings`], looking role permissions up with `token` (the
    /// service's one client token) instead of a token of its own.
    pub fn from_settings_with_token(
        settings: &Settings,
        http: reqwest::Client,
        token: Arc<ClientToken>,
    ) -> Authenticator {
        let auth =
            Authenticator::with_client_token(AuthConfig::from_settings(settings), http, token);
        if auth.inner.config.enabled
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let warm = auth.clone();
            rt.spawn(async move { warm.refresh_now().await });
        }
        auth
    }

    /// Builds an authenticator that loads nothing until asked (first request or
    /// [`Authenticator::refresh_now`]); role permissions are looked up with a client token
    /// of `config.client_id`.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Authenticator {
        let token = Arc::new(ClientToken::new(
            http.clone(),
            &config.base_url,
            &config.client_id,
            config.client_secret.expose(),
        ));
        Authenticator::with_client_token(config, http, token)
    }

    /// [`Authenticator::new`] with the service's shared client token.
    pub fn with_client_token(
        config: AuthConfig,
        http: reqwest::Client,
        token: Arc<ClientToken>,
    ) -> Authenticator {
        let roles = RoleCache::new(
            RoleCacheConfig {
                base_url: config.base_url.clone(),
                ttl: config.role_cache_ttl,
                capacity: config.role_cache_capacity,
                retry_gap: config.min_refresh_gap,
                fetch_timeout: config.fetch_timeout,
            },
            http.clone(),
            token,
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator {
            inner: Arc::new(Inner {
                config,
                http,
                validation,
                cache: RwLock::new(Cache::default()),
                refresh: tokio::sync::Mutex::new(RefreshClock::default()),
                background_refresh: AtomicBool::new(false),
                roles,
            }),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// Whether the signing keys have loaded at least once (for readiness logs and tests).
    pub fn keys_loaded(&self) -> bool {
        self.inner.cache.read().keys_loaded_at.is_some()
    }

    /// Fetches the JWKS and the revocation list now, ignoring the rate limit.
    pub async fn refresh_now(&self) {
        let mut clock = self.inner.refresh.lock().await;
        clock.last_attempt = Some(Instant::now());
        self.inner.refresh_all().await;
    }

    /// The caller of a request with these headers, for either transport; a refusal is
    /// already the service's error (`Unauthenticated`, `PermissionDenied` or
    /// `InvalidArgument`, with [`AuthError`]'s message).
    pub async fn caller(&self, headers: &http::HeaderMap) -> Result<AuthUser, ServiceError> {
        Ok(AuthUser(self.authenticate(headers).await?))
    }

    /// The caller of an admin route whose action bit is `action` ([`ACTION_CREATE`],
    /// [`ACTION_READ`], [`ACTION_UPDATE`], [`ACTION_DELETE`]; CONTRACT §9). With auth
    /// enabled the token must hold `ADMIN:NAMESPACE:{namespace}:CHALLENGE` with that bit:
    /// among its own `permissions`, or those of its `namespace_roles` and `roles` (fetched
    /// from IAM and cached). A token that holds it nowhere is `PermissionDenied` (403); when
    /// IAM cannot tell what the roles hold and nothing else grants it,
    /// `PermissionsUnavailable` (503). With auth disabled, as [`Authenticator::caller`].
    pub async fn admin_caller(
        &self,
        headers: &http::HeaderMap,
        action: u32,
    ) -> Result<AuthUser, ServiceError> {
        if !self.inner.config.enabled {
            return self.caller(headers).await;
        }
        let claims = self.authenticate_claims(headers).await?;
        let wanted = format!("ADMIN:NAMESPACE:{}:CHALLENGE", self.inner.config.namespace);
        match self.permitted(&claims, &wanted, action).await {
            Ok(true) => Ok(AuthUser(claims.sub)),
            Ok(false) => Err(ServiceError::PermissionDenied(format!(
                "this route needs the permission {wanted} [{}]",
                permissions::action_name(action).to_uppercase()
            ))),
            // Logged once, with its cause, where the error is rendered.
            Err(error) => Err(ServiceError::PermissionsUnavailable(error)),
        }
    }

    /// Whether the token's claims allow `action` on `wanted`, as the Go SDK's validator
    /// decides (`hasValidPermissions`): a token without a namespace holds nothing; then its
    /// own permissions; then its namespace roles (`{namespace}` is the role's namespace,
    /// `{userId}` the token's subject); then its roles (`{namespace}` is the token's
    /// namespace). An error only when nothing allows it and some role could not be looked
    /// up.
    async fn permitted(
        &self,
        claims: &Claims,
        wanted: &str,
        action: u32,
    ) -> Result<bool, PermissionLookupError> {
        let Some(token_namespace) = claims.namespace.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(false);
        };
        let own = claims.permissions.as_deref().unwrap_or_default();
        if own.iter().any(|p| p.grants(wanted, action)) {
            return Ok(true);
        }
        // (the role, its `{namespace}`, its `{userId}`) for every role the token names.
        let namespace_roles = claims.namespace_roles.as_deref().unwrap_or_default();
        let roles = claims.roles.as_deref().unwrap_or_default();
        let held: Vec<(RoleKey, &str, Option<&str>)> = namespace_roles
            .iter()
            .map(|r| {
                (
                    RoleKey::new(&r.role_id, &r.namespace),
                    r.namespace.as_str(),
                    Some(claims.sub.as_str()),
                )
            })
            .chain(
                roles
                    .iter()
                    .map(|id| (RoleKey::new(id, token_namespace), token_namespace, None)),
            )
            .collect();
        let mut pending = held.iter();
        let mut lookups = FuturesUnordered::new();
        let mut failure = None;
        loop {
            while lookups.len() < ROLE_LOOKUPS_AT_ONCE
                && let Some(role) = pending.next()
            {
                lookups.push(self.role_permissions(role));
            }
            let Some((result, namespace, user)) = lookups.next().await else {
                break;
            };
            match result {
                Ok(held) => {
                    let grants = held.iter().any(|p| {
                        Permission {
                            resource: permissions::substitute(&p.resource, namespace, user),
                            action: p.action,
                        }
                        .grants(wanted, action)
                    });
                    if grants {
                        return Ok(true);
                    }
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) => Err(PermissionLookupError(error)),
            None => Ok(false),
        }
    }

    /// One held role's permissions, with its placeholders' values.
    async fn role_permissions<'a>(
        &self,
        (key, namespace, user): &'a (RoleKey, &'a str, Option<&'a str>),
    ) -> (Result<Arc<[Permission]>, String>, &'a str, Option<&'a str>) {
        (self.inner.roles.permissions(key).await, namespace, *user)
    }

    /// The user id of the caller: the token's `sub`, or with auth disabled the
    /// `x-mock-user-id` header (default `test-user-id`).
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<String, AuthError> {
        if !self.inner.config.enabled {
            return mock_user(headers);
        }
        Ok(self.authenticate_claims(headers).await?.sub)
    }

    /// [`Authenticator::authenticate`] with auth enabled: the verified token's claims.
    async fn authenticate_claims(&self, headers: &http::HeaderMap) -> Result<Claims, AuthError> {
        let token = bearer_token(headers)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed);
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Malformed)?;

        let mut cache = self.fresh_cache().await;
        if !cache.keys.contains_key(&kid) {
            self.inner.refresh_limited(RefreshScope::KeysOnly).await;
            cache = self.inner.cache.read().clone();
        }
        let Some(key) = cache.keys.get(&kid) else {
            return Err(if cache.keys_loaded_at.is_none() {
                AuthError::KeysUnavailable
            } else {
                AuthError::UnknownKey
            });
        };

        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.inner.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::InvalidSignature,
                _ => AuthError::Malformed,
            })?
            .claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Malformed);
        }
        let issued_at = claims.iat.map(|t| t.floor() as i64);
        if cache.revocations.is_token_revoked(token)
            || cache.revocations.is_user_revoked(&claims.sub, issued_at)
        {
            return Err(AuthError::Revoked);
        }
        if let Some(ns) = claims
            .extend_namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            && ns != self.inner.config.namespace
        {
            return Err(AuthError::WrongNamespace);
        }
        Ok(claims)
    }

    /// The cache, loading it first if it never loaded, or starting a background refresh if
    /// it is older than the refresh interval.
    async fn fresh_cache(&self) -> Cache {
        let cache = self.inner.cache.read().clone();
        match cache.keys_loaded_at {
            None => {
                self.inner.refresh_limited(RefreshScope::All).await;
                self.inner.cache.read().clone()
            }
            Some(at) if at.elapsed() >= self.inner.config.refresh_interval => {
                self.spawn_background_refresh();
                cache
            }
            Some(_) => cache,
        }
    }

    fn spawn_background_refresh(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.background_refresh.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        rt.spawn(async move {
            this.inner.refresh_limited(RefreshScope::All).await;
            this.inner
                .background_refresh
                .store(false, Ordering::Release);
        });
    }
}

#[derive(Clone, Copy)]
enum RefreshScope {
    All,
    KeysOnly,
}

impl Inner {
    /// Refreshes unless a refresh started less than `min_refresh_gap` ago. Callers that
    /// arrive during a refresh wait for it and then use its result.
    async fn refresh_limited(&self, scope: RefreshScope) {
        let mut clock = self.refresh.lock().await;
        if clock
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.config.min_refresh_gap)
        {
            return;
        }
        clock.last_attempt = Some(Instant::now());
        match scope {
            RefreshScope::All => self.refresh_all().await,
            RefreshScope::KeysOnly => self.refresh_keys().await,
        }
    }

    async fn refresh_all(&self) {
        tokio::join!(self.refresh_keys(), self.refresh_revocations());
    }

    async fn refresh_keys(&self) {
        let result = self
            .fetch(JWKS_PATH)
            .await
            .and_then(|body| keys::parse_jwks(&body));
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "loaded IAM signing keys");
                let mut cache = self.cache.write();
                cache.keys = Arc::new(keys);
                cache.keys_loaded_at = Some(Instant::now());
            }
            Err(error) if self.cache.read().keys_loaded_at.is_none() => tracing::error!(
                %error,
                "cannot load IAM signing keys; every token is refused until they load"
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot refresh IAM signing keys; keeping the cached ones")
            }
        }
    }

    async fn refresh_revocations(&self) {
        let result = self.fetch(REVOCATION_LIST_PATH).await.and_then(|body| {
            RevocationList::parse(&body).map_err(|e| format!("invalid revocation list: {e}"))
        });
        match result {
            Ok((list, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(skipped, "revocation list entries with unreadable times");
                }
                tracing::debug!(
                    revoked_users = list.revoked_user_count(),
                    "loaded IAM revocation list"
                );
                self.cache.write().revocations = Arc::new(list);
            }
            Err(error) => tracing::warn!(
                %error,
                "cannot refresh IAM revocation list; keeping the cached one"
            ),
        }
    }

    async fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{}", self.config.base_url, path);
        let response = self
            .http
            .get(&url)
            .timeout(self.config.fetch_timeout)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {path}: HTTP {}", status.as_u16()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        Ok(body.to_vec())
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?
        .trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// The user named by the mock header (`x-mock-user-id`, else `grpcgateway-x-mock-user-id`),
/// or [`DEFAULT_MOCK_USER_ID`] when neither is set or both are blank. A value that is not a
/// usable id — not visible ASCII, or longer than the table's 100 characters — is refused
/// instead of silently becoming the default user.
fn mock_user(headers: &http::HeaderMap) -> Result<String, AuthError> {
    for name in [MOCK_USER_HEADER, GATEWAY_MOCK_USER_HEADER] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidMockUser("must be visible ASCII"))?
            .trim();
        if value.is_empty() {
            continue;
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::InvalidMockUser(
                "must be visible ASCII without spaces",
            ));
        }
        if value.len() > MAX_USER_ID_CHARS {
            return Err(AuthError::InvalidMockUser("longer than 100 characters"));
        }
        return Ok(value.to_string());
    }
    Ok(DEFAULT_MOCK_USER_ID.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn disabled() -> Authenticator {
        Authenticator::new(
            AuthConfig {
                enabled: false,
                base_url: "http://127.0.0.1:9".into(),
                namespace: "ns".into(),
                refresh_interval: Duration::from_secs(600),
                min_refresh_gap: Duration::from_secs(5),
                leeway: Duration::from_secs(10),
                fetch_timeout: Duration::from_millis(200),
                client_id: "id".into(),
                client_secret: Secret::new("secret"),
                role_cache_ttl: Duration::from_secs(3600),
                role_cache_capacity: 100,
            },
            reqwest::Client::new(),
        )
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(
                bearer_token(&headers(&[("authorization", v)])).unwrap(),
                "abc"
            );
        }
        for v in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            assert!(matches!(
                bearer_token(&headers(&[("authorization", v)])),
                Err(AuthError::MissingToken)
            ));
        }
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        ));
    }

    #[test]
    fn codes_split_401_and_403() {
        assert_eq!(
            AuthError::WrongNamespace.code(),
            tonic::Code::PermissionDenied
        );
        for e in [
            AuthError::MissingToken,
            AuthError::Malformed,
            AuthError::Expired,
            AuthError::InvalidSignature,
            AuthError::UnknownKey,
            AuthError::KeysUnavailable,
            AuthError::Revoked,
        ] {
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        }
    }

    #[tokio::test]
    async fn disabled_mode_uses_mock_header_or_default() {
        let auth = disabled();
        let user = auth
            .authenticate(&headers(&[("x-mock-user-id", "player-7")]))
            .await;
        assert_eq!(user.unwrap(), "player-7");
        let user = auth
            .authenticate(&headers(&[("grpcgateway-x-mock-user-id", "player-8")]))
            .await;
        assert_eq!(user.unwrap(), "player-8");
        let user = auth
            .authenticate(&headers(&[("x-mock-user-id", " ")]))
            .await;
        assert_eq!(user.unwrap(), DEFAULT_MOCK_USER_ID);
        let user = auth.authenticate(&HeaderMap::new()).await;
        assert_eq!(user.unwrap(), DEFAULT_MOCK_USER_ID);
    }

    #[tokio::test]
    async fn disabled_mode_refuses_unusable_mock_users() {
        let auth = disabled();
        let mut h = HeaderMap::new();
        h.insert(
            MOCK_USER_HEADER,
            HeaderValue::from_bytes("jos\u{e9}".as_bytes()).unwrap(),
        );
        let too_long = "x".repeat(101);
        for bad in [
            h,
            headers(&[("x-mock-user-id", "a b")]),
            headers(&[("x-mock-user-id", &too_long)]),
        ] {
            let err = auth.authenticate(&bad).await.unwrap_err();
            assert!(matches!(err, AuthError::InvalidMockUser(_)), "{err:?}");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
        let ok = auth
            .authenticate(&headers(&[("x-mock-user-id", &"x".repeat(100))]))
            .await;
        assert_eq!(ok.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn garbage_is_refused_without_calling_iam() {
        // The base URL points at a closed port: reaching IAM would make this slow, not wrong,
        // so the assertion is on the error kind.
        let mut config = disabled().config().clone();
        config.enabled = true;
        let auth = Authenticator::new(config, reqwest::Client::new());
        let err = auth
            .authenticate(&headers(&[("authorization", "Bearer not-a-jwt")]))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Malformed), "{err:?}");
        assert!(!auth.keys_loaded());
    }
}
