//! A small load generator for a running handler (manual checks, not a test):
//!
//! ```sh
//! HANDLER_ADDR=127.0.0.1:6565 CONCURRENCY=256 EVENTS=50000 USERS=5000 NAMESPACE=accelbyte \
//!   cargo run -p extend-challenge-event-handler --example load
//! ```
//!
//! Sends login and stat (`STAT_CODE`, default `kills`) events with unique ids over a few
//! connections and prints the rate and the answers by gRPC code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use extend_challenge_common::pb::accelbyte::iam::account::v1::{
    UserLoggedIn,
    user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient,
};
use extend_challenge_common::pb::accelbyte::social::statistic::v1::{
    StatItem, StatItemUpdated,
    statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient,
};
use parking_lot::Mutex;
use tonic::transport::Channel;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = var("HANDLER_ADDR", "127.0.0.1:6565");
    let concurrency: usize = var("CONCURRENCY", "256").parse()?;
    let events: usize = var("EVENTS", "50000").parse()?;
    let users: usize = var("USERS", "5000").parse()?;
    let namespace = var("NAMESPACE", "accelbyte");
    let stat_code = var("STAT_CODE", "kills");
    let run = std::process::id();

    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let next = Arc::new(AtomicUsize::new(0));
    let codes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let channel = channels[t % channels.len()].clone();
            let (next, codes, namespace, stat_code) = (
                next.clone(),
                codes.clone(),
                namespace.clone(),
                stat_code.clone(),
            );
            tokio::spawn(async move {
                let mut logins = UserAuthenticationUserLoggedInServiceClient::new(channel.clone());
                let mut stats = StatisticStatItemUpdatedServiceClient::new(channel);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        break;
                    }
                    let user = format!("load-{}", i % users);
                    let id = format!("load-{run}-{i}");
                    let res = if i % 2 == 0 {
                        logins
                            .on_message(UserLoggedIn {
                                id,
                                namespace: namespace.clone(),
                                user_id: user,
                                ..Default::default()
                            })
                            .await
                    } else {
                        stats
                            .on_message(StatItemUpdated {
                                id,
                                namespace: namespace.clone(),
                                user_id: user.clone(),
                                payload: Some(StatItem {
                                    stat_code: stat_code.clone(),
                                    user_id: user,
                                    latest_value: i as f64,
                                    inc: 1.0,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })
                            .await
                    };
                    let code = match res {
                        Ok(_) => "OK".to_string(),
                        Err(s) => format!("{:?}", s.code()),
                    };
                    *codes.lock().entry(code).or_default() += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{events} events in {secs:.2}s = {:.0} events/s; answers {:?}",
        events as f64 / secs,
        codes.lock()
    );
    Ok(())
}
