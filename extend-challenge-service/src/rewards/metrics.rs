//! `challenge_reward_grants_total{type, outcome}`.

use std::sync::LazyLock;

use extend_challenge_common::config::RewardType;
use prometheus::{IntCounterVec, Opts, Registry};

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
