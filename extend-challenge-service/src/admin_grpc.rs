//! `service.Admin` over tonic (CONTRACT §9): [`AdminRouter`] checks the admin permission
//! with the CRUD bit of the method ([`action_of`], shared with REST) before the generated
//! server runs the method, which hands it to [`ChallengeService`]'s admin logic.

use std::convert::Infallible;
use std::task::{Context, Poll};

use extend_challenge_common::pb::service as pb;
use extend_challenge_common::pb::service::admin_server::{Admin, AdminServer};
use extend_challenge_common::store::admin::{RowChange, RowState};
use extend_challenge_common::store::catalog::{Applied, GoalImpact};
use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::app::ChallengeService;
use crate::app::admin::validate;
use crate::auth::{ACTION_CREATE, ACTION_DELETE, ACTION_READ, ACTION_UPDATE, Authenticator};
use crate::grpc::user;
use crate::timefmt::rfc3339;

/// The CRUD bit an admin method needs (both transports): READ to look (validate and
/// dry-run change nothing), CREATE to make a version (apply, rollback), UPDATE to change a
/// player's goal, DELETE to unenroll.
pub fn action_of(rpc: &str) -> u32 {
    match rpc {
        "ApplyCatalog" | "RollbackCatalog" => ACTION_CREATE,
        "SetPlayerGoalProgress" | "ResetPlayerGoal" => ACTION_UPDATE,
        "UnenrollPlayer" => ACTION_DELETE,
        _ => ACTION_READ,
    }
}

#[derive(Clone)]
pub struct AdminAdapter {
    service: ChallengeService,
    auth: Authenticator,
}

impl AdminAdapter {
    pub fn new(service: ChallengeService, auth: Authenticator) -> Self {
        AdminAdapter { service, auth }
    }

    pub fn into_server(self) -> AdminRouter {
        AdminRouter {
            generated: AdminServer::new(self.clone()),
            adapter: self,
        }
    }
}

fn id(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

pub fn impacts_pb(changes: &[GoalImpact]) -> Vec<pb::GoalImpact> {
    changes
        .iter()
        .map(|c| pb::GoalImpact {
            challenge_id: c.challenge_id.clone(),
            goal_id: c.goal_id.clone(),
            change: c.change.to_string(),
            fields: c.fields.iter().map(|f| f.to_string()).collect(),
            players: id(c.players),
            status_changes: c
                .status_changes
                .iter()
                .map(|(k, v)| (k.clone(), id(*v)))
                .collect(),
        })
        .collect()
}

fn applied_pb(a: Applied) -> pb::AppliedCatalog {
    pb::AppliedCatalog {
        version: id(a.version),
        previous_version: id(a.previous.unwrap_or(0)),
        changes: impacts_pb(&a.impact.changes),
    }
}

fn state_pb(s: Option<RowState>) -> Option<pb::PlayerGoalState> {
    s.map(|s| pb::PlayerGoalState {
        progress: s.progress,
        status: s.status,
        is_active: s.is_active,
        times_claimed: s.times_claimed,
        resets: s.resets,
    })
}

fn change_pb(
    user_id: String,
    challenge_id: String,
    goal_id: String,
    c: RowChange,
) -> pb::PlayerGoalChange {
    pb::PlayerGoalChange {
        user_id,
        challenge_id,
        goal_id,
        before: state_pb(c.before),
        after: state_pb(c.after),
    }
}

#[tonic::async_trait]
impl Admin for AdminAdapter {
    async fn get_catalog(
        &self,
        _request: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::CatalogVersion>, Status> {
        let Some(active) = self.service.admin_catalog().await? else {
            return Err(Status::not_found("no catalog version was applied yet"));
        };
        Ok(Response::new(pb::CatalogVersion {
            version: id(active.version),
            sha256: active.sha256,
            source: active.source,
            note: String::new(),
            created_at: rfc3339(active.activated_at),
            active: true,
            config_json: active.content,
        }))
    }

    async fn list_catalog_versions(
        &self,
        _request: Request<pb::ListCatalogVersionsRequest>,
    ) -> Result<Response<pb::ListCatalogVersionsResponse>, Status> {
        let versions = self.service.admin_catalog_versions().await?;
        Ok(Response::new(pb::ListCatalogVersionsResponse {
            versions: versions
                .into_iter()
                .map(|v| pb::CatalogVersion {
                    version: id(v.version),
                    sha256: v.sha256,
                    source: v.source,
                    note: v.note.unwrap_or_default(),
                    created_at: rfc3339(v.created_at),
                    active: v.active,
                    config_json: String::new(),
                })
                .collect(),
        }))
    }

    async fn validate_catalog(
        &self,
        request: Request<pb::CatalogContent>,
    ) -> Result<Response<pb::ValidateCatalogResponse>, Status> {
        Ok(Response::new(
            match validate(&request.get_ref().config_json) {
                Ok(config) => pb::ValidateCatalogResponse {
                    valid: true,
                    errors: Vec::new(),
                    challenges: id(config.challenges.len() as i64),
                    goals: id(config.goal_count() as i64),
                },
                Err(errors) => pb::ValidateCatalogResponse {
                    valid: false,
                    errors,
                    challenges: 0,
                    goals: 0,
                },
            },
        ))
    }

    async fn dry_run_catalog(
        &self,
        request: Request<pb::CatalogContent>,
    ) -> Result<Response<pb::CatalogImpact>, Status> {
        let (active, impact) = self
            .service
            .admin_dry_run(&request.get_ref().config_json)
            .await?;
        Ok(Response::new(pb::CatalogImpact {
            active_version: id(active.unwrap_or(0)),
            changes: impacts_pb(&impact.changes),
        }))
    }

    async fn apply_catalog(
        &self,
        mut request: Request<pb::ApplyCatalogRequest>,
    ) -> Result<Response<pb::AppliedCatalog>, Status> {
        let who = user(&mut request)?;
        let req = request.into_inner();
        let note = (!req.note.is_empty()).then_some(req.note);
        let applied = self
            .service
            .admin_apply(
                &who,
                &req.config_json,
                req.expected_version.map(i64::from),
                note,
            )
            .await?;
        Ok(Response::new(applied_pb(applied)))
    }

    async fn rollback_catalog(
        &self,
        mut request: Request<pb::RollbackCatalogRequest>,
    ) -> Result<Response<pb::AppliedCatalog>, Status> {
        let who = user(&mut request)?;
        let req = request.into_inner();
        let applied = self
            .service
            .admin_rollback(
                &who,
                i64::from(req.version),
                req.expected_version.map(i64::from),
            )
            .await?;
        Ok(Response::new(applied_pb(applied)))
    }

    async fn get_player_challenges(
        &self,
        request: Request<pb::PlayerRequest>,
    ) -> Result<Response<pb::GetChallengesResponse>, Status> {
        let user_id = &request.get_ref().user_id;
        let resp = self
            .service
            .get_user_challenges(user_id, pb::GetChallengesRequest::default())
            .await?;
        Ok(Response::new(resp))
    }

    async fn set_player_goal_progress(
        &self,
        mut request: Request<pb::SetPlayerGoalProgressRequest>,
    ) -> Result<Response<pb::PlayerGoalChange>, Status> {
        let who = user(&mut request)?;
        let r = request.into_inner();
        let change = self
            .service
            .admin_set_progress(&who, &r.user_id, &r.challenge_id, &r.goal_id, r.progress)
            .await?;
        Ok(Response::new(change_pb(
            r.user_id,
            r.challenge_id,
            r.goal_id,
            change,
        )))
    }

    async fn reset_player_goal(
        &self,
        mut request: Request<pb::PlayerGoalRequest>,
    ) -> Result<Response<pb::PlayerGoalChange>, Status> {
        let who = user(&mut request)?;
        let r = request.into_inner();
        let change = self
            .service
            .admin_reset_goal(&who, &r.user_id, &r.challenge_id, &r.goal_id)
            .await?;
        Ok(Response::new(change_pb(
            r.user_id,
            r.challenge_id,
            r.goal_id,
            change,
        )))
    }

    async fn unenroll_player(
        &self,
        mut request: Request<pb::PlayerRequest>,
    ) -> Result<Response<pb::UnenrollPlayerResponse>, Status> {
        let who = user(&mut request)?;
        let user_id = request.into_inner().user_id;
        let removed = self.service.admin_unenroll(&who, &user_id).await?;
        Ok(Response::new(pb::UnenrollPlayerResponse {
            user_id,
            goals_removed: id(removed as i64),
        }))
    }
}

/// `service.Admin`: the admin permission with the method's bit, then the generated server.
#[derive(Clone)]
pub struct AdminRouter {
    adapter: AdminAdapter,
    generated: AdminServer<AdminAdapter>,
}

impl NamedService for AdminRouter {
    const NAME: &'static str = <AdminServer<AdminAdapter> as NamedService>::NAME;
}

impl tower::Service<http::Request<Body>> for AdminRouter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let rpc = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let adapter = self.adapter.clone();
        let mut generated = self.generated.clone();
        Box::pin(async move {
            match adapter
                .auth
                .admin_caller(req.headers(), action_of(&rpc))
                .await
            {
                Ok(user) => {
                    req.extensions_mut().insert(user);
                }
                Err(e) => return Ok(Status::from(e).into_http()),
            }
            tower::Service::call(&mut generated, req).await
        })
    }
}
