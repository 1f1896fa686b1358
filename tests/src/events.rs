//! The Extend platform's side of the event handler: OnMessage calls over gRPC.

use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn, UserThirdPartyLoggedIn,
    user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient,
    user_authentication_user_third_party_logged_in_service_client::UserAuthenticationUserThirdPartyLoggedInServiceClient,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItem, StatItemUpdated,
    statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient,
};
use tonic::Status;
use tonic::transport::Channel;

use crate::NAMESPACE;

#[derive(Clone)]
pub struct Events {
    login: UserAuthenticationUserLoggedInServiceClient<Channel>,
    third_party: UserAuthenticationUserThirdPartyLoggedInServiceClient<Channel>,
    stat: StatisticStatItemUpdatedServiceClient<Channel>,
    /// Events are stamped with the system time plus this (matches `CLOCK_OFFSET_SECONDS`).
    pub clock_offset_seconds: i64,
}

impl Events {
    pub async fn connect(addr: &str, clock_offset_seconds: i64) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("handler address")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to the event handler at {addr}: {e}"));
        Events {
            login: UserAuthenticationUserLoggedInServiceClient::new(channel.clone()),
            third_party: UserAuthenticationUserThirdPartyLoggedInServiceClient::new(
                channel.clone(),
            ),
            stat: StatisticStatItemUpdatedServiceClient::new(channel),
            clock_offset_seconds,
        }
    }

    fn timestamp(&self) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset_seconds))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// A login event as IAM publishes it, with a fresh event id.
    pub fn login_event(&self, user: &str) -> UserLoggedIn {
        UserLoggedIn {
            id: uuid::Uuid::new_v4().to_string(),
            version: 1,
            name: "userLoggedIn".into(),
            namespace: NAMESPACE.into(),
            timestamp: self.timestamp(),
            user_id: user.into(),
            ..Default::default()
        }
    }

    /// A stat update as the Statistic service publishes it, with a fresh event id.
    pub fn stat_event(&self, user: &str, stat_code: &str, value: f64, inc: f64) -> StatItemUpdated {
        StatItemUpdated {
            payload: Some(StatItem {
                namespace: NAMESPACE.into(),
                stat_code: stat_code.into(),
                user_id: user.into(),
                latest_value: value,
                inc,
                ..Default::default()
            }),
            id: uuid::Uuid::new_v4().to_string(),
            version: 1,
            name: "statItemUpdated".into(),
            namespace: NAMESPACE.into(),
            timestamp: self.timestamp(),
            user_id: user.into(),
            ..Default::default()
        }
    }

    pub async fn send_login(&self, event: UserLoggedIn) -> Result<(), Status> {
        self.login.clone().on_message(event).await.map(|_| ())
    }

    pub async fn send_stat(&self, event: StatItemUpdated) -> Result<(), Status> {
        self.stat.clone().on_message(event).await.map(|_| ())
    }

    /// Sends one login for `user` and asserts it was acknowledged.
    pub async fn login(&self, user: &str) {
        let e = self.login_event(user);
        self.send_login(e)
            .await
            .unwrap_or_else(|s| panic!("login event for {user} rejected: {s:?}"));
    }

    /// Sends a third-party login for `user` and asserts it was acknowledged.
    pub async fn third_party_login(&self, user: &str) {
        let e = UserThirdPartyLoggedIn {
            id: uuid::Uuid::new_v4().to_string(),
            version: 1,
            name: "userThirdPartyLoggedIn".into(),
            namespace: NAMESPACE.into(),
            timestamp: self.timestamp(),
            user_id: user.into(),
            ..Default::default()
        };
        self.third_party
            .clone()
            .on_message(e)
            .await
            .unwrap_or_else(|s| panic!("third-party login for {user} rejected: {s:?}"));
    }

    /// Sends a stat update (`inc` = 0) and asserts it was acknowledged.
    pub async fn stat(&self, user: &str, stat_code: &str, value: f64) {
        self.stat_inc(user, stat_code, value, 0.0).await
    }

    /// Sends a stat update with an explicit `inc` and asserts it was acknowledged.
    pub async fn stat_inc(&self, user: &str, stat_code: &str, value: f64, inc: f64) {
        let e = self.stat_event(user, stat_code, value, inc);
        self.send_stat(e).await.unwrap_or_else(|s| {
            panic!("stat event {stat_code}={value} for {user} rejected: {s:?}")
        });
    }
}
