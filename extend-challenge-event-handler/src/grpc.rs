//! The OnMessage services of CONTRACT §2, and the deployment guide's generic envelope
//! `accelbyte.EventHandler`: translate the message into an [`Event`] (or `InvalidArgument`)
//! and hand it to the [`Engine`]; IAM's GDPR deletion becomes an [`Erasure`] the engine
//! carries out at once (§3.6).

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

use crate::engine::Engine;
use crate::event::{Erasure, Event, EventKind, Generic, Invalid};
use crate::metrics;

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
        match Event::try_from(msg) {
            Ok(ev) => self.engine.ingest(ev).await.map(Response::new),
            Err(invalid) => {
                metrics::EVENTS_TOTAL
                    .with_label_values(&[kind.as_str(), "invalid", invalid.reason()])
                    .inc();
                tracing::debug!(
                    event = kind.as_str(),
                    reason = invalid.reason(),
                    "invalid event"
                );
                Err(Status::invalid_argument(invalid.to_string()))
            }
        }
    }

    /// The generic envelope: `Ok(true)` when the event went through the pipeline,
    /// `Ok(false)` for an unknown `eventType` (skipped, counted).
    async fn handle_generic(&self, msg: GenericEnvelope) -> Result<bool, Status> {
        match Generic::try_from(msg) {
            Ok(Generic::Known(ev)) => self.engine.ingest(ev).await.map(|()| true),
            Ok(Generic::UnknownType) => {
                metrics::EVENTS_TOTAL
                    .with_label_values(&[GENERIC, "skipped", "unknown_event_type"])
                    .inc();
                tracing::debug!(event = GENERIC, "unknown eventType skipped");
                Ok(false)
            }
            Err(invalid) => {
                metrics::EVENTS_TOTAL
                    .with_label_values(&[GENERIC, "invalid", invalid.reason()])
                    .inc();
                tracing::debug!(event = GENERIC, reason = invalid.reason(), "invalid event");
                Err(Status::invalid_argument(invalid.to_string()))
            }
        }
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
        let kind = EventKind::GdprDeletion.as_str();
        match Erasure::try_from(request.into_inner()) {
            Ok(e) => self.engine.erase(e).await.map(Response::new),
            Err(invalid) => {
                metrics::EVENTS_TOTAL
                    .with_label_values(&[kind, "invalid", invalid.reason()])
                    .inc();
                tracing::debug!(event = kind, reason = invalid.reason(), "invalid event");
                Err(Status::invalid_argument(invalid.to_string()))
            }
        }
    }
}
