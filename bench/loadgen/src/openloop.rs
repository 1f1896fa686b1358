//! Open-loop scheduling. Request `i` has an *intended* send time fixed by the arrival-rate
//! schedule, whatever happened to earlier requests; latency is measured from that intended
//! time, so a stalled server shows up as latency instead of silently lowering the offered
//! load (coordinated omission). Requests that would exceed `max_in_flight` are not sent and
//! are counted as dropped (the Extend platform caps concurrent deliveries the same way);
//! requests sent later than `late_after` past their intended time are counted as late.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
pub struct Stage {
    pub secs: f64,
    pub rate: f64,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub stages: Vec<Stage>,
    pub max_in_flight: usize,
    pub late_after: Duration,
    /// How long to wait for in-flight requests after the last send.
    pub drain: Duration,
    /// `Some(n)`: closed loop instead, `n` workers each sending the next request as soon as
    /// the previous one returns (for ceilings: the most a target can do at `n` in flight).
    pub closed: Option<usize>,
}

impl Plan {
    pub fn constant(rate: f64, duration: Duration, max_in_flight: usize) -> Self {
        Plan {
            stages: vec![Stage {
                secs: duration.as_secs_f64(),
                rate,
            }],
            max_in_flight,
            late_after: Duration::from_millis(5),
            drain: Duration::from_secs(30),
            closed: None,
        }
    }

    pub fn total_secs(&self) -> f64 {
        self.stages.iter().map(|s| s.secs).sum()
    }

    /// Rate at offset `t` seconds, `None` past the end.
    fn rate_at(&self, t: f64) -> Option<f64> {
        let mut acc = 0.0;
        for s in &self.stages {
            acc += s.secs;
            if t < acc {
                return Some(s.rate);
            }
        }
        None
    }

    pub fn describe(&self) -> Value {
        json!({
            "stages": self.stages.iter().map(|s| json!({"secs": s.secs, "rate": s.rate})).collect::<Vec<_>>(),
            "max_in_flight": self.max_in_flight,
            "late_after_ms": self.late_after.as_millis() as u64,
            "closed_loop_workers": self.closed,
        })
    }
}

pub struct OpStats {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    pub scheduled: AtomicU64,
    pub sent: AtomicU64,
    pub late: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicUsize,
}

impl Stats {
    pub fn record(&self, op: &'static str, latency: Duration, result: Result<(), String>) {
        let us = (latency.as_micros() as u64).clamp(1, 120_000_000);
        let mut ops = self.ops.lock();
        let s = ops.entry(op).or_insert_with(OpStats::new);
        s.hist.saturating_record(us);
        match result {
            Ok(()) => s.ok += 1,
            Err(code) => *s.errors.entry(code).or_default() += 1,
        }
    }

    fn record_dropped(&self, op: &'static str) {
        let mut ops = self.ops.lock();
        let s = ops.entry(op).or_insert_with(OpStats::new);
        *s.errors.entry("dropped(in-flight cap)".into()).or_default() += 1;
    }

    /// Successful completions of ops whose name starts with `prefix`.
    pub fn ok_with_prefix(&self, prefix: &str) -> u64 {
        self.ops
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.ok)
            .sum()
    }

    pub fn summary(&self, elapsed: Duration) -> Value {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ops = self.ops.lock();
        let mut per_op = serde_json::Map::new();
        for (name, s) in ops.iter() {
            let h = &s.hist;
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            let err_total: u64 = s.errors.values().sum();
            per_op.insert(
                name.to_string(),
                json!({
                    "ok": s.ok,
                    "errors": err_total,
                    "errors_by_code": s.errors,
                    "ok_per_sec": s.ok as f64 / secs,
                    "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
                    "max_ms": h.max() as f64 / 1000.0,
                    "mean_ms": h.mean() / 1000.0,
                }),
            );
        }
        // All ops together (what a single k6 threshold over every request sees).
        let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
        let mut ok = 0;
        let mut errors = 0;
        for s in ops.values() {
            all.add(&s.hist).ok();
            ok += s.ok;
            errors += s.errors.values().sum::<u64>();
        }
        json!({
            "elapsed_s": secs,
            "scheduled": self.scheduled.load(Ordering::Relaxed),
            "sent": self.sent.load(Ordering::Relaxed),
            "late": self.late.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "ok": ok,
            "errors": errors,
            "achieved_ok_per_sec": ok as f64 / secs,
            "all": {
                "p50_ms": all.value_at_quantile(0.5) as f64 / 1000.0,
                "p95_ms": all.value_at_quantile(0.95) as f64 / 1000.0,
                "p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
                "max_ms": all.max() as f64 / 1000.0,
            },
            "ops": per_op,
        })
    }
}

/// Runs `plan`, calling `make(i)` for request `i` at its intended time. `make` returns the
/// op name and the request future (its `Err` is an error code such as `http_429`).
/// Returns the wall time from the first intended send to the end of the drain.
pub async fn run<F, Fut>(plan: &Plan, stats: Arc<Stats>, mut make: F) -> Duration
where
    F: FnMut(u64) -> (&'static str, Fut),
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    if let Some(workers) = plan.closed {
        return run_closed(plan.total_secs(), workers, stats, make).await;
    }
    let start = Instant::now() + Duration::from_millis(20);
    let total = plan.total_secs();
    let mut offset = 0.0f64;
    let mut i = 0u64;
    while let Some(rate) = plan.rate_at(offset) {
        let intended = start + Duration::from_secs_f64(offset);
        offset += 1.0 / rate.max(1e-6);
        if offset > total + 1.0 {
            break;
        }
        let now = Instant::now();
        if intended > now {
            tokio::time::sleep_until(intended.into()).await;
        } else if now - intended > plan.late_after {
            stats.late.fetch_add(1, Ordering::Relaxed);
        }
        stats.scheduled.fetch_add(1, Ordering::Relaxed);
        if stats.in_flight.load(Ordering::Relaxed) >= plan.max_in_flight {
            // Not built at all: past saturation the generator must not spend its CPU here.
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            stats.record_dropped("(dropped)");
            continue;
        }
        let (op, fut) = make(i);
        i += 1;
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let st = stats.clone();
        tokio::spawn(async move {
            let r = fut.await;
            st.record(op, intended.elapsed(), r);
            st.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let deadline = Instant::now() + plan.drain;
    while stats.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Closed loop: `workers` request chains, each waiting for its previous answer. Latency is
/// from the actual send (there is no schedule to fall behind).
async fn run_closed<F, Fut>(secs: f64, workers: usize, stats: Arc<Stats>, mut make: F) -> Duration
where
    F: FnMut(u64) -> (&'static str, Fut),
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut i = 0u64;
    let mut running = 0usize;
    let mut launch = |i: &mut u64, running: &mut usize| {
        let (op, fut) = make(*i);
        *i += 1;
        *running += 1;
        stats.scheduled.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let (st, tx) = (stats.clone(), tx.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = fut.await;
            st.record(op, t.elapsed(), r);
            let _ = tx.send(());
        });
    };
    for _ in 0..workers.max(1) {
        launch(&mut i, &mut running);
    }
    while running > 0 {
        if rx.recv().await.is_none() {
            break;
        }
        running -= 1;
        if Instant::now() < deadline {
            launch(&mut i, &mut running);
        }
    }
    start.elapsed()
}
