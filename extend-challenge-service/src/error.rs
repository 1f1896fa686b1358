//! The one error type of the player API. Each variant knows its gRPC code and HTTP status
//! (CONTRACT §3.2); the transports only translate. Messages that clients match on are kept
//! verbatim. Internal details (SQL errors) are logged once at the edge and never shown.

use http::StatusCode;
use tonic::Code;

use crate::auth::{AuthError, PermissionLookupError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "Goal not found or removed from config (goal_id: {goal_id}, challenge_id: {challenge_id})"
    )]
    GoalNotFound {
        goal_id: String,
        challenge_id: String,
    },
    #[error(
        "Goal not completed. Please wait 1 second and try again. (goal_id: {goal_id}, status: {status})"
    )]
    GoalNotCompleted { goal_id: String, status: String },
    #[error(
        "Goal must be active to claim reward. Activate it first via PUT /v1/challenges/{challenge_id}/goals/{goal_id}/active (goal_id: {goal_id})"
    )]
    GoalNotActive {
        goal_id: String,
        challenge_id: String,
    },
    #[error(
        "Goal has rotated and must be re-completed (goal_id: {goal_id}, challenge_id: {challenge_id})"
    )]
    GoalRotated {
        goal_id: String,
        challenge_id: String,
    },
    #[error("Reward has already been claimed (goal_id: {goal_id}, claimed_at: {claimed_at})")]
    AlreadyClaimed { goal_id: String, claimed_at: String },
    #[error("Prerequisites not completed (goal_id: {goal_id})")]
    PrerequisitesNotMet { goal_id: String },
    #[error("Failed to grant reward via Platform Service after 3 retries (goal_id: {goal_id})")]
    RewardGrantFailed { goal_id: String },
    /// Another claim of the same goal is working on it (CONTRACT §3.3).
    #[error("Claim already in progress (goal_id: {goal_id})")]
    ClaimInProgress { goal_id: String },
    /// AGS may or may not have granted: the intent stays pending and a retry (or the
    /// reconciler) completes it without granting twice.
    #[error("Reward grant in progress, please retry (goal_id: {goal_id})")]
    GrantInDoubt { goal_id: String },
    #[error("goal_ids cannot be empty")]
    GoalIdsEmpty,
    #[error("challenge '{0}' not found")]
    ChallengeNotFound(String),
    /// A selection names a goal that is not in the challenge.
    #[error("goal '{0}' not found")]
    SelectedGoalNotFound(String),
    #[error("count must be greater than 0")]
    CountNotPositive,
    #[error(
        "INSUFFICIENT_GOALS: no goals available for selection (available: 0, requested: {requested})"
    )]
    InsufficientGoals { requested: i32 },
    /// `expectedVersion` was not the active catalog version (CONTRACT §9).
    #[error(
        "catalog version {active} is active, not the expected {expected}: another version was applied meanwhile; dry-run against version {active} and apply again"
    )]
    CatalogConflict { expected: i64, active: i64 },
    #[error("catalog version {0} does not exist")]
    CatalogVersionNotFound(i64),
    /// An admin reset while a grant of the goal is under way.
    #[error("a reward grant of goal {goal_id} is in progress; reset it once the grant settles")]
    ResetWhileGranting { goal_id: String },
    /// A malformed request (bad JSON body, bad query value).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// An admin request whose permissions depend on IAM roles that IAM cannot be asked
    /// about now: the caller may retry.
    #[error("cannot check the caller's permissions now (AGS IAM unavailable); please retry")]
    PermissionsUnavailable(#[source] PermissionLookupError),
    /// Postgres unreachable or the pool exhausted: the caller may retry.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("internal error")]
    Database(#[source] sqlx::Error),
    /// The claim did not finish within its deadline; nothing was changed.
    #[error("Claim timed out, please try again (goal_id: {goal_id})")]
    ClaimTimedOut { goal_id: String },
    /// `DeleteUserData` again within the rate limit's window (CONTRACT §3.6).
    #[error("Player data was erased less than a minute ago; try again later")]
    ErasureRateLimited,
    /// A live progress stream beyond `PROGRESS_STREAM_MAX` on this replica.
    #[error("too many live progress streams on this replica; retry later")]
    TooManyStreams,
    /// Health check: Postgres does not answer.
    #[error("database connectivity check failed")]
    Unhealthy,
    /// REST only: no route.
    #[error("Not Found")]
    RouteNotFound,
    /// REST only: a path outside `BASE_PATH` (the guide's `curl localhost:8000/v1/challenges`).
    #[error(
        "Not Found: the REST API is served under {0} (for example GET {0}/v1/challenges); Swagger UI: {0}/apidocs/"
    )]
    OutsideBasePath(String),
    /// REST only: the route exists with another method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
}

impl ServiceError {
    pub fn code(&self) -> Code {
        use ServiceError::*;
        match self {
            GoalNotFound { .. }
            | ChallengeNotFound(_)
            | SelectedGoalNotFound(_)
            | RouteNotFound
            | CatalogVersionNotFound(_)
            | OutsideBasePath(_) => Code::NotFound,
            GoalNotCompleted { .. }
            | GoalNotActive { .. }
            | GoalRotated { .. }
            | PrerequisitesNotMet { .. } => Code::FailedPrecondition,
            // 409 both; the contract's table maps only AlreadyExists to 409.
            AlreadyClaimed { .. } | ClaimInProgress { .. } | ResetWhileGranting { .. } => {
                Code::AlreadyExists
            }
            // A lost race (409), as for a claim.
            CatalogConflict { .. } => Code::Aborted,
            GoalIdsEmpty | CountNotPositive | InsufficientGoals { .. } | InvalidArgument(_) => {
                Code::InvalidArgument
            }
            // gRPC has no "bad gateway"; Internal is what the reference sends. REST says 502.
            RewardGrantFailed { .. } | Database(_) => Code::Internal,
            Unauthenticated(_) => Code::Unauthenticated,
            PermissionDenied(_) => Code::PermissionDenied,
            Unavailable(_)
            | ClaimTimedOut { .. }
            | GrantInDoubt { .. }
            | Unhealthy
            | PermissionsUnavailable(_) => Code::Unavailable,
            MethodNotAllowed => Code::Unimplemented,
            ErasureRateLimited | TooManyStreams => Code::ResourceExhausted,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            ServiceError::RewardGrantFailed { .. } => StatusCode::BAD_GATEWAY,
            ServiceError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            other => http_status_of(other.code()),
        }
    }

    /// Server-side faults worth an error log line (client mistakes are not).
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            ServiceError::Database(_)
                | ServiceError::Unavailable(_)
                | ServiceError::RewardGrantFailed { .. }
                | ServiceError::ClaimTimedOut { .. }
                | ServiceError::PermissionsUnavailable(_)
        )
    }
}

/// grpc-gateway's mapping of the codes this service uses (CONTRACT §3.2).
pub fn http_status_of(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<extend_challenge_common::store::catalog::CatalogError> for ServiceError {
    fn from(e: extend_challenge_common::store::catalog::CatalogError) -> Self {
        use extend_challenge_common::store::catalog::CatalogError;
        match e {
            CatalogError::Invalid(problems) => ServiceError::InvalidArgument(problems.join("\n")),
            CatalogError::Conflict { expected, active } => {
                ServiceError::CatalogConflict { expected, active }
            }
            CatalogError::NoSuchVersion(v) => ServiceError::CatalogVersionNotFound(v),
            CatalogError::Database(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        use extend_challenge_common::store::{DbFault, classify};
        // A value longer than its column (a user id over 100 characters).
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("22001")
        {
            return ServiceError::InvalidArgument(
                "a value in the request is longer than allowed".to_string(),
            );
        }
        match classify(&e) {
            // Unreachable database (I/O, TLS, protocol, pool time-out, SQLSTATE 08/57P), or
            // a statement that lost a race or ran out of time: worth a retry.
            DbFault::Connectivity | DbFault::Transient => ServiceError::Unavailable(e),
            DbFault::Data | DbFault::Other => ServiceError::Database(e),
        }
    }
}

/// The one translation of an authentication refusal, for both transports: a valid token of
/// another namespace is `PermissionDenied` (403), an unusable mock user id
/// `InvalidArgument` (400), anything else `Unauthenticated` (401); the message is
/// [`AuthError`]'s, which never contains the token.
impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e.code() {
            Code::PermissionDenied => ServiceError::PermissionDenied(message),
            Code::InvalidArgument => ServiceError::InvalidArgument(message),
            _ => ServiceError::Unauthenticated(message),
        }
    }
}

/// Logs server-side faults once, at the edge, with their cause; client errors are not
/// logged (they are counted by the request metrics). Both transports call it when they
/// render the error.
pub(crate) fn log_if_server_fault(e: &ServiceError) {
    if e.is_server_fault() {
        match std::error::Error::source(e) {
            Some(cause) => tracing::error!(error = %e, cause = %cause, "request failed"),
            None => tracing::error!(error = %e, "request failed"),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        log_if_server_fault(&e);
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let grant = ServiceError::RewardGrantFailed {
            goal_id: "g".into(),
        };
        assert_eq!(grant.http_status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            grant.to_string(),
            "Failed to grant reward via Platform Service after 3 retries (goal_id: g)"
        );
        assert_eq!(
            ServiceError::AlreadyClaimed {
                goal_id: "g".into(),
                claimed_at: "t".into()
            }
            .http_status(),
            StatusCode::CONFLICT
        );
        let busy = ServiceError::ClaimInProgress {
            goal_id: "g".into(),
        };
        assert_eq!(busy.http_status(), StatusCode::CONFLICT);
        assert_eq!(busy.to_string(), "Claim already in progress (goal_id: g)");
        let doubt = ServiceError::GrantInDoubt {
            goal_id: "g".into(),
        };
        assert_eq!(doubt.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            doubt.to_string(),
            "Reward grant in progress, please retry (goal_id: g)"
        );
        assert_eq!(
            ServiceError::CountNotPositive.http_status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ServiceError::Unavailable(sqlx::Error::PoolTimedOut).http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ServiceError::ErasureRateLimited.http_status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            ServiceError::MethodNotAllowed.http_status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let foreign = ServiceError::from(AuthError::WrongNamespace);
        assert_eq!(foreign.http_status(), StatusCode::FORBIDDEN);
        assert_eq!(
            foreign.to_string(),
            "access token is not valid for this namespace"
        );
        let bad_mock = ServiceError::from(AuthError::InvalidMockUser("longer than 100 characters"));
        assert_eq!(bad_mock.code(), Code::InvalidArgument);
        assert_eq!(
            bad_mock.to_string(),
            "invalid x-mock-user-id: longer than 100 characters"
        );
        for e in [
            AuthError::MissingToken,
            AuthError::Expired,
            AuthError::KeysUnavailable,
        ] {
            let message = e.to_string();
            let e = ServiceError::from(e);
            assert_eq!(e.http_status(), StatusCode::UNAUTHORIZED);
            assert_eq!(e.to_string(), message);
        }
        assert_eq!(
            ServiceError::InsufficientGoals { requested: 3 }.to_string(),
            "INSUFFICIENT_GOALS: no goals available for selection (available: 0, requested: 3)"
        );
    }
}
