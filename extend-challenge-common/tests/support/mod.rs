//! Helpers shared by this crate's integration tests.

pub mod explain;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use extend_challenge_common::config::Goal;
use extend_challenge_common::progress::Delta;
use extend_challenge_common::store::flush::{BatchItem, BatchUser};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor as _, PgPool};

/// A batch in which each of `players` reaches each of `goals` once (one event per player).
pub fn batch_of(
    players: &[String],
    goals: &[Arc<Goal>],
    namespace: &str,
    now: DateTime<Utc>,
) -> (Vec<BatchItem>, Vec<BatchUser>) {
    let items = players
        .iter()
        .flat_map(|u| {
            goals.iter().map(move |g| BatchItem {
                user_id: Arc::from(u.as_str()),
                goal: g.clone(),
                namespace: Arc::from(namespace),
                delta: Delta::Count(1),
            })
        })
        .collect();
    let users = players
        .iter()
        .map(|u| BatchUser {
            user_id: Arc::from(u.as_str()),
            keys: goals.len(),
            event_ids: vec![Arc::from(format!("event-{u}").as_str())],
            oldest_at: Some(now),
        })
        .collect();
    (items, users)
}

/// A database of its own on `DATABASE_URL`'s server, named `<prefix>_<pid>`, dropped by
/// [`FreshDb::drop`].
pub struct FreshDb {
    admin: PgPool,
    pub name: String,
    /// Connect options for the database.
    pub options: PgConnectOptions,
}

impl FreshDb {
    pub async fn new(prefix: &str) -> FreshDb {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("Postgres at DATABASE_URL");
        let name = format!("{prefix}_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        }
        let options = url.parse::<PgConnectOptions>().unwrap().database(&name);
        FreshDb {
            admin,
            name,
            options,
        }
    }

    /// A pool of at most `max` plain sessions.
    pub async fn pool(&self, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .connect_with(self.options.clone())
            .await
            .unwrap()
    }

    pub async fn drop(self) {
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await
            .unwrap();
    }
}
