//! The executed plans of real statements, as Postgres reports them: sessions that load
//! `auto_explain` with `log_analyze` and `log_level = notice` send the plan of every
//! statement back as a notice, sqlx reports it as a tracing event, and a subscriber keeps
//! it. One subscriber per test binary: the tests of a binary that read plans run one at a
//! time.

use std::sync::{Mutex, OnceLock};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor as _, PgConnection, PgPool};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// The plans (auto_explain notices) received since the last [`take_plans`].
static PLANS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Notices;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        struct Message(Option<String>);
        impl Visit for Message {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut m = Message(None);
        event.record(&mut m);
        if let Some(text) = m.0.filter(|t| t.contains("plan:")) {
            PLANS.lock().unwrap().push(text);
        }
    }
}

/// Installs the subscriber (once per test binary).
pub fn capture_notices() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Notices);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

/// The JSON plans (`{"Query Text", "Plan"}`) received since the last call.
pub fn take_plans() -> Vec<serde_json::Value> {
    let plans = std::mem::take(&mut *PLANS.lock().unwrap());
    plans
        .iter()
        .map(|text| {
            let json = &text[text.find('{').expect("a JSON plan")..];
            serde_json::from_str(json).expect("auto_explain JSON")
        })
        .collect()
}

/// A pool of at most `max` sessions that report the executed plan of every statement.
pub fn explained_pool(options: PgConnectOptions, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .after_connect(|conn: &mut PgConnection, _| {
            Box::pin(async move {
                conn.execute(
                    "LOAD 'auto_explain'; \
                     SET auto_explain.log_min_duration = 0; \
                     SET auto_explain.log_analyze = on; \
                     SET auto_explain.log_timing = off; \
                     SET auto_explain.log_format = 'json'; \
                     SET auto_explain.log_nested_statements = on; \
                     SET auto_explain.log_level = 'notice'",
                )
                .await?;
                Ok(())
            })
        })
        .connect_lazy_with(options)
}
