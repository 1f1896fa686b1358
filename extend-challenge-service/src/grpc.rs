//! The gRPC adapter: `service.Service` over tonic. Each method authenticates the caller
//! from the request metadata and hands the request to [`ChallengeService`].

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::service_server::{Service, ServiceServer};
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

    pub fn into_server(self) -> ServiceServer<Self> {
        ServiceServer::new(self)
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
