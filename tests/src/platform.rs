//! The Extend platform's delivery, as the fault scenarios need it: at least once. An event
//! is sent until a handler answers `OK`; `Unavailable`, `ResourceExhausted`, deadlines and
//! transport failures (a replica that died) are retried — on the next replica when there
//! are several — with the same event id. Any other answer is final.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use extend_challenge_common::pb::accelbyte::iam::account::v1::UserLoggedIn;
use extend_challenge_common::pb::accelbyte::iam::account::v1::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::NAMESPACE;

type LoginClient = UserAuthenticationUserLoggedInServiceClient<Channel>;

/// Lazily connected clients of one or more event handlers; channels reconnect by
/// themselves when a handler comes back on the same port.
#[derive(Clone)]
pub struct Platform {
    clients: Vec<LoginClient>,
    clock_offset_seconds: i64,
    /// Every attempt beyond an event's first.
    pub redeliveries: Arc<AtomicU64>,
}

/// What a load run delivered: per user, the number of distinct event ids acknowledged.
#[derive(Debug, Default)]
pub struct Delivered {
    pub acked: HashMap<String, i64>,
    /// Events given up on (never acknowledged within the time allowed).
    pub given_up: u64,
}

impl Platform {
    /// Clients of the handlers at `addrs` (`host:port`).
    pub fn new(addrs: &[String], clock_offset_seconds: i64) -> Self {
        let clients = addrs
            .iter()
            .map(|a| {
                let channel = Endpoint::from_shared(format!("http://{a}"))
                    .expect("handler address")
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(15))
                    .connect_lazy();
                UserAuthenticationUserLoggedInServiceClient::new(channel)
            })
            .collect();
        Platform {
            clients,
            clock_offset_seconds,
            redeliveries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A login event for `user` with a fresh id, stamped with the stack's clock.
    pub fn login(&self, user: &str) -> UserLoggedIn {
        let ts = chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset_seconds);
        UserLoggedIn {
            id: uuid::Uuid::new_v4().to_string(),
            version: 1,
            name: "userLoggedIn".into(),
            namespace: NAMESPACE.into(),
            timestamp: ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user_id: user.into(),
            ..Default::default()
        }
    }

    /// Sends `ev` to handler `first` (then the next ones, round robin) until one answers
    /// `OK`, for at most `give_up`. `Err` with the final answer otherwise.
    pub async fn deliver(
        &self,
        ev: &UserLoggedIn,
        first: usize,
        give_up: Duration,
    ) -> Result<(), Status> {
        let deadline = Instant::now() + give_up;
        let mut pause = Duration::from_millis(50);
        for attempt in 0usize.. {
            if attempt > 0 {
                self.redeliveries.fetch_add(1, Ordering::Relaxed);
            }
            let mut client = self.clients[(first + attempt) % self.clients.len()].clone();
            let status = match client.on_message(ev.clone()).await {
                Ok(_) => return Ok(()),
                Err(s) => s,
            };
            let retryable = matches!(
                status.code(),
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::DeadlineExceeded
                    | Code::Unknown
                    | Code::Cancelled
            );
            if !retryable || Instant::now() + pause > deadline {
                return Err(status);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        unreachable!()
    }

    /// Sends logins for `users` (round robin) from `concurrency` workers until `stop` is
    /// set, each delivered until acknowledged (see [`Platform::deliver`]); event `n` goes
    /// first to handler `n % handlers`. With `duplicate_every = k > 0`, every k-th event is
    /// also delivered a second time, concurrently, starting at another handler (the
    /// platform's duplicate deliveries).
    pub async fn run_logins(
        &self,
        users: Arc<Vec<String>>,
        concurrency: usize,
        duplicate_every: usize,
        stop: Arc<AtomicBool>,
        give_up: Duration,
    ) -> Delivered {
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (me, users, next, stop) =
                    (self.clone(), users.clone(), next.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut out = Delivered::default();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let user = &users[n % users.len()];
                        let ev = me.login(user);
                        let ok = if duplicate_every > 0 && n.is_multiple_of(duplicate_every) {
                            let (a, b) = tokio::join!(
                                me.deliver(&ev, n, give_up),
                                me.deliver(&ev, n + 1, give_up)
                            );
                            a.is_ok() || b.is_ok()
                        } else {
                            me.deliver(&ev, n, give_up).await.is_ok()
                        };
                        if ok {
                            *out.acked.entry(user.clone()).or_default() += 1;
                        } else {
                            out.given_up += 1;
                        }
                    }
                    out
                })
            })
            .collect();
        let mut total = Delivered::default();
        for w in workers {
            let part = w.await.expect("delivery worker");
            total.given_up += part.given_up;
            for (user, n) in part.acked {
                *total.acked.entry(user).or_default() += n;
            }
        }
        total
    }
}
