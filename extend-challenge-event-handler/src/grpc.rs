//! The OnMessage services of CONTRACT §2, and the deployment guide's generic envelope
//! `accelbyte.EventHandler`: translate the message into an [`Event`] (or `InvalidArgument`)
//! and hand it to the [`Engine`]; IAM's GDPR deletion becomes an [`Erasure`] the engine
//! carries out at once (§3.6). Every answer, the engine's or the one given at the door to
//! a message that is no valid event, is a `Result<Accepted, IngestError>`:
//! `From<IngestError> for Status` makes it the RPC's status, [`count_event`] counts it.

use std::sync::Arc;

use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    GdprRequestDataDeletionResponse, UserLoggedIn, UserThirdPartyLoggedIn,
    deletion_account_gdpr_gdpr_request_data_deletion_response_service_server::{
        DeletionAccountGdprGdprRequestDataDeletionResponseService,
        DeletionAccountGdprGdprRequestDataDeletionResponseServiceServer,
    },
    user_authentication_user_logged_in_service_server::{
        UserAuthenticationUserLoggedInService, UserAuthenticationUserLoggedInServiceServer,
    },
    user_authentication_user_third_party_logged_in_service_server::{
        UserAuthenticationUserThirdPartyLoggedInService,
        UserAuthenticationUserThirdPartyLoggedInServiceServer,
    },
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItemUpdated,
    statistic_stat_item_updated_service_server::{
        StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
    },
};
use extend_challenge_common::pb::accelbyte::{
    Event as GenericEnvelope, EventResponse,
    event_handler_server::{EventHandler, EventHandlerServer},
};
use tonic::{Request, Response, Status};

use crate::engine::{Accepted, Engine, IngestError, Skip, count_event};
use crate::event::{Erasure, Event, EventKind, Generic, Invalid};

/// The `event` label of generic-envelope events that never became an [`Event`] (invalid,
/// unknown type); the others carry the kind they map to (`login`, `stat_item_updated`).
const GENERIC: &str = "generic";

/// Implements all the event services over one engine.
#[derive(Clone)]
pub struct EventServices {
    engine: Arc<Engine>,
}

impl EventServices {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    async fn handle<M>(&self, kind: EventKind, msg: M) -> Result<Response<()>, Status>
    where
        Event: TryFrom<M, Error = Invalid>,
    {
        let answer = match Event::try_from(msg) {
            Ok(ev) => self.engine.ingest(ev).await,
            Err(invalid) => refuse(kind.as_str(), invalid),
        };
        answer.map(|_| Response::new(())).map_err(Status::from)
    }

    /// The generic envelope: `Ok(true)` when the event went through the pipeline,
    /// `Ok(false)` for an unknown `eventType` (skipped, counted).
    async fn handle_generic(&self, msg: GenericEnvelope) -> Result<bool, Status> {
        let answer = match Generic::try_from(msg) {
            Ok(Generic::Known(ev)) => self.engine.ingest(ev).await.map(|_| true),
            Ok(Generic::UnknownType) => {
                count_event(GENERIC, &Ok(Accepted::Skipped(Skip::UnknownEventType)));
                tracing::debug!(event = GENERIC, "unknown eventType skipped");
                Ok(false)
            }
            Err(invalid) => refuse(GENERIC, invalid).map(|_| false),
        };
        answer.map_err(Status::from)
    }

    /// `accelbyte.EventHandler` (the deployment guide's generic envelope).
    pub fn generic_server(&self) -> EventHandlerServer<Self> {
        EventHandlerServer::new(self.clone())
    }

    pub fn login_server(&self) -> UserAuthenticationUserLoggedInServiceServer<Self> {
        UserAuthenticationUserLoggedInServiceServer::new(self.clone())
    }

    pub fn third_party_login_server(
        &self,
    ) -> UserAuthenticationUserThirdPartyLoggedInServiceServer<Self> {
        UserAuthenticationUserThirdPartyLoggedInServiceServer::new(self.clone())
    }

    pub fn stat_server(&self) -> StatisticStatItemUpdatedServiceServer<Self> {
        StatisticStatItemUpdatedServiceServer::new(self.clone())
    }

    pub fn gdpr_server(
        &self,
    ) -> DeletionAccountGdprGdprRequestDataDeletionResponseServiceServer<Self> {
        DeletionAccountGdprGdprRequestDataDeletionResponseServiceServer::new(self.clone())
    }
}

#[tonic::async_trait]
impl UserAuthenticationUserLoggedInService for EventServices {
    async fn on_message(&self, request: Request<UserLoggedIn>) -> Result<Response<()>, Status> {
        self.handle(EventKind::Login, request.into_inner()).await
    }
}

#[tonic::async_trait]
impl UserAuthenticationUserThirdPartyLoggedInService for EventServices {
    async fn on_message(
        &self,
        request: Request<UserThirdPartyLoggedIn>,
    ) -> Result<Response<()>, Status> {
        self.handle(EventKind::ThirdPartyLogin, request.into_inner())
            .await
    }
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for EventServices {
    async fn on_message(&self, request: Request<StatItemUpdated>) -> Result<Response<()>, Status> {
        self.handle(EventKind::Stat, request.into_inner()).await
    }
}

#[tonic::async_trait]
impl EventHandler for EventServices {
    async fn handle_event(
        &self,
        request: Request<GenericEnvelope>,
    ) -> Result<Response<EventResponse>, Status> {
        let success = self.handle_generic(request.into_inner()).await?;
        Ok(Response::new(EventResponse { success }))
    }

    async fn on_message(&self, request: Request<GenericEnvelope>) -> Result<Response<()>, Status> {
        self.handle_generic(request.into_inner())
            .await
            .map(|_| Response::new(()))
    }
}

#[tonic::async_trait]
impl DeletionAccountGdprGdprRequestDataDeletionResponseService for EventServices {
    async fn on_message(
        &self,
        request: Request<GdprRequestDataDeletionResponse>,
    ) -> Result<Response<()>, Status> {
        let answer = match Erasure::try_from(request.into_inner()) {
            Ok(e) => self.engine.erase(e).await,
            Err(invalid) => refuse(EventKind::GdprDeletion.as_str(), invalid),
        };
        answer.map(|_| Response::new(())).map_err(Status::from)
    }
}

/// A message that does not make a valid event: counted, answered `InvalidArgument` (never
/// `Internal`, which a platform would redeliver forever).
fn refuse(event: &str, invalid: Invalid) -> Result<Accepted, IngestError> {
    let refused = Err(IngestError::Invalid(invalid));
    count_event(event, &refused);
    tracing::debug!(event, reason = invalid.reason(), "invalid event");
    refused
}
