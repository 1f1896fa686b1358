//! The gRPC adapter: `service.Service` over tonic. Methods hand the request to
//! [`ChallengeService`] as the caller established in front of them.
//!
//! [`ServiceRouter`], the tower service in front of the generated server, does two things
//! before any method runs:
//! - authentication, once for every method that needs it ([`AUTHENTICATED`]): the HTTP/2
//!   request's headers go to [`Authenticator::caller`] as they are (no metadata copy); the
//!   caller travels to the method as an [`AuthUser`] request extension, and a refusal is
//!   answered right there with the status of its [`ServiceError`], the same mapping REST
//!   renders as JSON;
//! - `GetUserChallenges`, the hot read, skips building protobuf structs: it is answered with
//!   bytes spliced from the pre-encoded config (see `catalog`); every other method goes to
//!   the generated server.

use std::convert::Infallible;
use std::task::{Context, Poll};

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_server::{Service, ServiceServer};
use futures::future::BoxFuture;
use prost::bytes::{Buf, BufMut};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::app::ChallengeService;
use crate::auth::{ACTION_READ, AuthUser, Authenticator};
use crate::error::ServiceError;

#[derive(Clone)]
pub struct GrpcAdapter {
    service: ChallengeService,
    auth: Authenticator,
}

impl GrpcAdapter {
    pub fn new(service: ChallengeService, auth: Authenticator) -> Self {
        GrpcAdapter { service, auth }
    }

    /// The generated server with the fast `GetUserChallenges` in front.
    pub fn into_server(self) -> ServiceRouter {
        ServiceRouter {
            generated: ServiceServer::new(self.clone()),
            adapter: self,
        }
    }
}

/// The caller [`ServiceRouter`] (or `admin_grpc::AdminRouter`) established for this request.
/// Only methods listed in [`AUTHENTICATED`] (and every admin method) ask, and the router
/// authenticated every one of those before it ran.
pub(crate) fn user<T>(request: &mut Request<T>) -> Result<String, Status> {
    match request.extensions_mut().remove::<AuthUser>() {
        Some(AuthUser(user)) => Ok(user),
        // Unreachable through `ServiceRouter`; refuse rather than serve an unknown caller.
        None => Err(ServiceError::Unauthenticated("caller not authenticated".into()).into()),
    }
}

#[tonic::async_trait]
impl Service for GrpcAdapter {
    async fn get_user_challenges(
        &self,
        mut request: Request<pb::GetChallengesRequest>,
    ) -> Result<Response<pb::GetChallengesResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .get_user_challenges(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_user_challenge(
        &self,
        mut request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .get_user_challenge(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn initialize_player(
        &self,
        mut request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeResponse>, Status> {
        let user = user(&mut request)?;
        Ok(Response::new(self.service.initialize_player(&user).await?))
    }

    async fn set_goal_active(
        &self,
        mut request: Request<pb::SetGoalActiveRequest>,
    ) -> Result<Response<pb::SetGoalActiveResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .set_goal_active(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn claim_goal_reward(
        &self,
        mut request: Request<pb::ClaimRewardRequest>,
    ) -> Result<Response<pb::ClaimRewardResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .claim_goal_reward(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn batch_select_goals(
        &self,
        mut request: Request<pb::BatchSelectRequest>,
    ) -> Result<Response<pb::GoalSelectionResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .batch_select_goals(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn claim_challenge_rewards(
        &self,
        mut request: Request<pb::ClaimChallengeRewardsRequest>,
    ) -> Result<Response<pb::ClaimChallengeRewardsResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .claim_challenge_rewards(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_reward_history(
        &self,
        mut request: Request<pb::GetRewardHistoryRequest>,
    ) -> Result<Response<pb::GetRewardHistoryResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .get_reward_history(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete_user_data(
        &self,
        mut request: Request<pb::DeleteUserDataRequest>,
    ) -> Result<Response<pb::DeleteUserDataResponse>, Status> {
        let user = user(&mut request)?;
        Ok(Response::new(
            self.service.delete_user_data(&user, "grpc").await?,
        ))
    }

    async fn random_select_goals(
        &self,
        mut request: Request<pb::RandomSelectRequest>,
    ) -> Result<Response<pb::GoalSelectionResponse>, Status> {
        let user = user(&mut request)?;
        let resp = self
            .service
            .random_select_goals(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_rotation_status(
        &self,
        mut request: Request<pb::GetRotationStatusRequest>,
    ) -> Result<Response<pb::GetRotationStatusResponse>, Status> {
        let user = user(&mut request)?;
        Ok(Response::new(
            self.service
                .get_rotation_status(&user, request.into_inner())
                .await?,
        ))
    }

    async fn get_goal_events(
        &self,
        mut request: Request<pb::GetGoalEventsRequest>,
    ) -> Result<Response<pb::GetGoalEventsResponse>, Status> {
        let user = user(&mut request)?;
        let req = request.into_inner();
        let resp = self
            .service
            .get_goal_events(&user, &req.challenge_id, &req.goal_id)
            .await?;
        Ok(Response::new(resp))
    }

    /// The caller was checked for the admin permission by [`ServiceRouter`] ([`ADMIN`]).
    async fn admin_get_goal_events(
        &self,
        mut request: Request<pb::AdminGetGoalEventsRequest>,
    ) -> Result<Response<pb::GetGoalEventsResponse>, Status> {
        let _admin = user(&mut request)?;
        let req = request.into_inner();
        let resp = self
            .service
            .get_goal_events(&req.user_id, &req.challenge_id, &req.goal_id)
            .await?;
        Ok(Response::new(resp))
    }

    type WatchProgressStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::ProgressUpdate, Status>> + Send + 'static>,
    >;

    async fn watch_progress(
        &self,
        mut request: Request<pb::WatchProgressRequest>,
    ) -> Result<Response<Self::WatchProgressStream>, Status> {
        use futures::StreamExt;
        let user = user(&mut request)?;
        let stream = self.service.watch_progress(&user)?;
        Ok(Response::new(Box::pin(
            stream.map(|r| r.map_err(Status::from)),
        )))
    }

    /// Like `/healthz`: no token needed.
    async fn health_check(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        Ok(Response::new(self.service.health_check().await?))
    }
}

/// An already encoded protobuf message; encoding it copies the bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Encoded(pub Vec<u8>);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

const GET_USER_CHALLENGES: &str = "/service.Service/GetUserChallenges";

/// The paths of the methods that need an authenticated caller: every method of
/// `service.Service` but `HealthCheck`, which, like `/healthz`, needs no token (a test
/// checks the list against `service.proto`). A path not listed, known or not, goes to the
/// generated server untouched (an unknown method stays `Unimplemented`).
/// Methods for support staff: the caller must hold the admin permission
/// ([`Authenticator::admin_caller`]).
pub const ADMIN: [&str; 1] = ["/service.Service/AdminGetGoalEvents"];

pub const AUTHENTICATED: [&str; 13] = [
    GET_USER_CHALLENGES,
    "/service.Service/GetUserChallenge",
    "/service.Service/InitializePlayer",
    "/service.Service/SetGoalActive",
    "/service.Service/ClaimGoalReward",
    "/service.Service/BatchSelectGoals",
    "/service.Service/RandomSelectGoals",
    "/service.Service/GetRotationStatus",
    "/service.Service/DeleteUserData",
    "/service.Service/ClaimChallengeRewards",
    "/service.Service/GetRewardHistory",
    "/service.Service/GetGoalEvents",
    "/service.Service/WatchProgress",
];

/// `service.Service`: the fast list path, then the generated server.
#[derive(Clone)]
pub struct ServiceRouter {
    adapter: GrpcAdapter,
    generated: ServiceServer<GrpcAdapter>,
}

impl NamedService for ServiceRouter {
    const NAME: &'static str = <ServiceServer<GrpcAdapter> as NamedService>::NAME;
}

struct ListChallenges(GrpcAdapter);

impl tonic::server::UnaryService<pb::GetChallengesRequest> for ListChallenges {
    type Response = Encoded;
    type Future = BoxFuture<'static, Result<Response<Encoded>, Status>>;

    fn call(&mut self, mut request: Request<pb::GetChallengesRequest>) -> Self::Future {
        let adapter = self.0.clone();
        Box::pin(async move {
            let user = user(&mut request)?;
            let bytes = adapter.service.list_proto(&user, request.get_ref()).await?;
            Ok(Response::new(Encoded(bytes)))
        })
    }
}

impl tower::Service<http::Request<Body>> for ServiceRouter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let fast = path == GET_USER_CHALLENGES;
        let authenticate = AUTHENTICATED.contains(&path);
        let admin = ADMIN.contains(&path);
        let adapter = self.adapter.clone();
        let mut generated = self.generated.clone();
        Box::pin(async move {
            if authenticate || admin {
                let caller = if admin {
                    adapter.auth.admin_caller(req.headers(), ACTION_READ).await
                } else {
                    adapter.auth.caller(req.headers()).await
                };
                match caller {
                    Ok(user) => {
                        req.extensions_mut().insert(user);
                    }
                    Err(e) => return Ok(Status::from(e).into_http()),
                }
            }
            if fast {
                let method = ListChallenges(adapter);
                let codec = tonic_prost::ProstCodec::<Encoded, pb::GetChallengesRequest>::default();
                Ok(tonic::server::Grpc::new(codec).unary(method, req).await)
            } else {
                tower::Service::call(&mut generated, req).await
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use extend_challenge_common::pb::FILE_DESCRIPTOR_SET;
    use prost_reflect::DescriptorPool;

    use super::{ADMIN, AUTHENTICATED};

    /// Every method but health asks for a caller: a player ([`AUTHENTICATED`]) or an
    /// admin ([`ADMIN`]), never both.
    #[test]
    fn every_method_but_health_is_authenticated() {
        let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
        let service = pool.get_service_by_name("service.Service").unwrap();
        let mut expected: Vec<String> = service
            .methods()
            .filter(|m| m.name() != "HealthCheck")
            .map(|m| format!("/service.Service/{}", m.name()))
            .collect();
        expected.sort();
        let mut listed: Vec<String> = AUTHENTICATED
            .iter()
            .chain(ADMIN.iter())
            .map(|p| p.to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, expected);
        assert!(ADMIN.iter().all(|a| !AUTHENTICATED.contains(a)));
    }
}
