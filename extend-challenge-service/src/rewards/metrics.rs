//! `challenge_reward_grants_total{type, outcome}`, and the reconciler's
//! `challenge_reward_grants_in_doubt` and `challenge_reward_reconciler_total{outcome}`.

use std::sync::LazyLock;

use extend_challenge_common::config::RewardType;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::type_label;

const NAME: &str = "challenge_reward_grants_total";
const HELP: &str = "Reward grants by reward type and outcome";

/// Counts grants. Clones share the counters.
#[derive(Clone)]
pub struct RewardMetrics {
    grants: IntCounterVec,
}

/// Registered once in the Prometheus default registry, however many clients are built.
static GLOBAL: LazyLock<RewardMetrics> = LazyLock::new(|| {
    let metrics = RewardMetrics::unregistered();
    if let Err(error) = prometheus::default_registry().register(Box::new(metrics.grants.clone())) {
        tracing::warn!(%error, "cannot register {NAME}; reward grants are not exported");
    }
    metrics
});

impl RewardMetrics {
    /// The counters exported on `/metrics` (the default registry).
    pub fn global() -> Self {
        GLOBAL.clone()
    }

    /// Counters registered in `registry` (tests use a private one to read exact counts).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.grants.clone()))?;
        Ok(metrics)
    }

    fn unregistered() -> Self {
        let grants = IntCounterVec::new(Opts::new(NAME, HELP), &["type", "outcome"])
            .expect("valid metric definition");
        RewardMetrics { grants }
    }

    pub fn record(&self, reward_type: RewardType, outcome: &str) {
        self.grants
            .with_label_values(&[type_label(reward_type), outcome])
            .inc();
    }

    pub fn count(&self, reward_type: RewardType, outcome: &str) -> u64 {
        self.grants
            .with_label_values(&[type_label(reward_type), outcome])
            .get()
    }
}

const IN_DOUBT: &str = "challenge_reward_grants_in_doubt";
const RECONCILED: &str = "challenge_reward_reconciler_total";

/// What the reconciler sees and does. Clones share the metrics.
#[derive(Clone)]
pub struct ReconcilerMetrics {
    in_doubt: IntGauge,
    outcomes: IntCounterVec,
}

static RECONCILER: LazyLock<ReconcilerMetrics> = LazyLock::new(|| {
    let metrics = ReconcilerMetrics::unregistered();
    let registry = prometheus::default_registry();
    if let Err(error) = registry
        .register(Box::new(metrics.in_doubt.clone()))
        .and_then(|()| registry.register(Box::new(metrics.outcomes.clone())))
    {
        tracing::warn!(%error, "cannot register the reconciler metrics");
    }
    metrics
});

impl ReconcilerMetrics {
    /// The metrics exported on `/metrics` (the default registry).
    pub fn global() -> Self {
        RECONCILER.clone()
    }

    /// Metrics registered in `registry` (tests read exact values).
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::unregistered();
        registry.register(Box::new(metrics.in_doubt.clone()))?;
        registry.register(Box::new(metrics.outcomes.clone()))?;
        Ok(metrics)
    }

    fn unregistered() -> Self {
        ReconcilerMetrics {
            in_doubt: IntGauge::new(
                IN_DOUBT,
                "Reward grant intents pending with nobody working on them (outcome unknown)",
            )
            .expect("valid metric definition"),
            outcomes: IntCounterVec::new(
                Opts::new(
                    RECONCILED,
                    "Reward grant intents resolved by the reconciler, by outcome",
                ),
                &["outcome"],
            )
            .expect("valid metric definition"),
        }
    }

    pub fn set_in_doubt(&self, n: i64) {
        self.in_doubt.set(n);
    }

    pub fn in_doubt(&self) -> i64 {
        self.in_doubt.get()
    }

    pub fn record(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }

    pub fn count(&self, outcome: &str) -> u64 {
        self.outcomes.with_label_values(&[outcome]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_registers_once_in_default_registry() {
        let a = RewardMetrics::global();
        let b = RewardMetrics::global();
        a.record(RewardType::Wallet, "registration-probe");
        assert_eq!(b.count(RewardType::Wallet, "registration-probe"), 1);
        let families = prometheus::default_registry().gather();
        assert_eq!(families.iter().filter(|f| f.name() == NAME).count(), 1);
    }
}
