//! Events sent to the event handler the way AGS delivers them: the `OnMessage` calls of
//! the generated tonic clients (no reflection). The connection is made on first use, so
//! commands that send no event never touch the handler.

use std::time::Duration;

use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn,
    user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItem, StatItemUpdated,
    statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::auth::error_chain;

pub struct EventSender {
    addr: String,
    channel: tokio::sync::OnceCell<Channel>,
    /// Deadline of one call (`None`: none, as the demo's CLI).
    call_timeout: Option<Duration>,
}

impl EventSender {
    pub fn new(addr: &str, call_timeout: Option<Duration>) -> EventSender {
        EventSender {
            addr: addr.to_string(),
            channel: tokio::sync::OnceCell::new(),
            call_timeout,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects (once; 5 s to establish the connection).
    pub async fn channel(&self) -> Result<Channel, String> {
        self.channel
            .get_or_try_init(|| connect(&self.addr))
            .await
            .cloned()
    }

    pub async fn login(&self, user_id: &str, namespace: &str) -> Result<(), String> {
        check_ids(user_id, namespace)?;
        let channel = self.channel().await?;
        let msg = UserLoggedIn {
            id: event_id(),
            user_id: user_id.to_string(),
            namespace: namespace.to_string(),
            ..Default::default()
        };
        let mut req = tonic::Request::new(msg);
        if let Some(t) = self.call_timeout {
            req.set_timeout(t);
        }
        UserAuthenticationUserLoggedInServiceClient::new(channel)
            .on_message(req)
            .await
            .map(|_| ())
            .map_err(|s| format!("trigger login event failed: {}", status_text(&s)))
    }

    pub async fn stat_update(
        &self,
        user_id: &str,
        namespace: &str,
        stat_code: &str,
        value: i64,
        inc: i64,
    ) -> Result<(), String> {
        check_ids(user_id, namespace)?;
        if stat_code.is_empty() {
            return Err("statCode cannot be empty".into());
        }
        let channel = self.channel().await?;
        let msg = StatItemUpdated {
            id: event_id(),
            user_id: user_id.to_string(),
            namespace: namespace.to_string(),
            payload: Some(StatItem {
                stat_code: stat_code.to_string(),
                latest_value: value as f64,
                inc: inc as f64,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut req = tonic::Request::new(msg);
        if let Some(t) = self.call_timeout {
            req.set_timeout(t);
        }
        StatisticStatItemUpdatedServiceClient::new(channel)
            .on_message(req)
            .await
            .map(|_| ())
            .map_err(|s| format!("trigger stat update event failed: {}", status_text(&s)))
    }
}

fn check_ids(user_id: &str, namespace: &str) -> Result<(), String> {
    if user_id.is_empty() {
        return Err("userID cannot be empty".into());
    }
    if namespace.is_empty() {
        return Err("namespace cannot be empty".into());
    }
    Ok(())
}

async fn connect(addr: &str) -> Result<Channel, String> {
    let fail = |e: String| format!("failed to connect to event handler at {addr}: {e}");
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| fail(error_chain(&e)))?;
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| fail(error_chain(&e)))
}

/// `<message>: rpc error: code = <Code> desc = <message>`, as grpc-go prints a status.
fn status_text(s: &tonic::Status) -> String {
    format!(
        "{}: rpc error: code = {:?} desc = {}",
        s.message(),
        s.code(),
        s.message()
    )
}

/// `demo-event-<UnixNano>`, the demo's event ids.
fn event_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("demo-event-{nanos}")
}
