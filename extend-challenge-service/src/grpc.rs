//! The gRPC adapter: `service.Service` over tonic. Each method authenticates the caller
//! from the request metadata and hands the request to [`ChallengeService`].
//!
//! `GetUserChallenges`, the hot read, skips building protobuf structs: [`ServiceRouter`]
//! answers it with bytes spliced from the pre-encoded config (see `catalog`), and hands
//! every other method to the generated server.

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
use crate::auth::Authenticator;

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

    async fn user<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let headers = req.metadata().clone().into_headers();
        self.auth
            .authenticate(&headers)
            .await
            .map_err(|e| Status::new(e.code(), e.to_string()))
    }
}

#[tonic::async_trait]
impl Service for GrpcAdapter {
    async fn get_user_challenges(
        &self,
        request: Request<pb::GetChallengesRequest>,
    ) -> Result<Response<pb::GetChallengesResponse>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .get_user_challenges(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_user_challenge(
        &self,
        request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::Challenge>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .get_user_challenge(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn initialize_player(
        &self,
        request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeResponse>, Status> {
        let user = self.user(&request).await?;
        Ok(Response::new(self.service.initialize_player(&user).await?))
    }

    async fn set_goal_active(
        &self,
        request: Request<pb::SetGoalActiveRequest>,
    ) -> Result<Response<pb::SetGoalActiveResponse>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .set_goal_active(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn claim_goal_reward(
        &self,
        request: Request<pb::ClaimRewardRequest>,
    ) -> Result<Response<pb::ClaimRewardResponse>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .claim_goal_reward(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn batch_select_goals(
        &self,
        request: Request<pb::BatchSelectRequest>,
    ) -> Result<Response<pb::GoalSelectionResponse>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .batch_select_goals(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete_user_data(
        &self,
        request: Request<pb::DeleteUserDataRequest>,
    ) -> Result<Response<pb::DeleteUserDataResponse>, Status> {
        let user = self.user(&request).await?;
        Ok(Response::new(
            self.service.delete_user_data(&user, "grpc").await?,
        ))
    }

    async fn random_select_goals(
        &self,
        request: Request<pb::RandomSelectRequest>,
    ) -> Result<Response<pb::GoalSelectionResponse>, Status> {
        let user = self.user(&request).await?;
        let resp = self
            .service
            .random_select_goals(&user, request.into_inner())
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_rotation_status(
        &self,
        request: Request<pb::GetRotationStatusRequest>,
    ) -> Result<Response<pb::GetRotationStatusResponse>, Status> {
        self.user(&request).await?;
        Ok(Response::new(
            self.service.get_rotation_status(request.into_inner())?,
        ))
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

    fn call(&mut self, request: Request<pb::GetChallengesRequest>) -> Self::Future {
        let adapter = self.0.clone();
        Box::pin(async move {
            let user = adapter.user(&request).await?;
            let bytes = adapter
                .service
                .challenges_proto(&user, request.get_ref().active_only)
                .await?;
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

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == GET_USER_CHALLENGES {
            let method = ListChallenges(self.adapter.clone());
            Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Encoded, pb::GetChallengesRequest>::default();
                Ok(tonic::server::Grpc::new(codec).unary(method, req).await)
            })
        } else {
            tower::Service::call(&mut self.generated, req)
        }
    }
}
