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

use futures::StreamExt;
use futures::stream::FuturesUnordered;
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

    /// `(stage index, rate)` at offset `t` seconds, `None` past the end.
    fn stage_at(&self, t: f64) -> Option<(usize, f64)> {
        let mut acc = 0.0;
        for (i, s) in self.stages.iter().enumerate() {
            acc += s.secs;
            if t < acc {
                return Some((i, s.rate));
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

/// All ops of the requests whose intended send time fell in one stage of a multi-stage plan.
struct StageStats {
    stage: Stage,
    all: OpStats,
    sent: u64,
    late: u64,
    dropped: u64,
}

#[derive(Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    /// Per stage, only for plans with more than one stage (ramps).
    stages: Mutex<Vec<StageStats>>,
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

    /// Adds one task's own figures ([`LocalStats`]).
    fn merge(&self, local: LocalStats) {
        let mut ops = self.ops.lock();
        for (op, l) in local.ops {
            let s = ops.entry(op).or_insert_with(OpStats::new);
            s.hist.add(&l.hist).ok();
            s.ok += l.ok;
            for (code, n) in l.errors {
                *s.errors.entry(code).or_default() += n;
            }
        }
    }

    fn init_stages(&self, stages: &[Stage]) {
        *self.stages.lock() = stages
            .iter()
            .map(|&stage| StageStats {
                stage,
                all: OpStats::new(),
                sent: 0,
                late: 0,
                dropped: 0,
            })
            .collect();
    }

    fn record_stage(&self, stage: usize, latency: Duration, result: &Result<(), String>) {
        let us = (latency.as_micros() as u64).clamp(1, 120_000_000);
        if let Some(s) = self.stages.lock().get_mut(stage) {
            s.all.hist.saturating_record(us);
            match result {
                Ok(()) => s.all.ok += 1,
                Err(code) => *s.all.errors.entry(code.clone()).or_default() += 1,
            }
        }
    }

    /// `what`: 0 = sent, 1 = late, 2 = dropped.
    fn count_stage(&self, stage: usize, what: u8) {
        if let Some(s) = self.stages.lock().get_mut(stage) {
            match what {
                0 => s.sent += 1,
                1 => s.late += 1,
                _ => s.dropped += 1,
            }
        }
    }

    /// One entry per stage (empty unless the plan had several): the requests *scheduled* in
    /// that stage, whenever they completed; `ok_per_sec` = their successes ÷ the stage length.
    fn stage_summary(&self) -> Vec<Value> {
        self.stages
            .lock()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let h = &s.all.hist;
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                let errors: u64 = s.all.errors.values().sum();
                json!({
                    "stage": i,
                    "secs": s.stage.secs,
                    "offered_rate": s.stage.rate,
                    "sent": s.sent,
                    "late": s.late,
                    "dropped": s.dropped,
                    "ok": s.all.ok,
                    "errors": errors,
                    "errors_by_code": s.all.errors,
                    "ok_per_sec": s.all.ok as f64 / s.stage.secs.max(1e-9),
                    "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
                    "max_ms": h.max() as f64 / 1000.0,
                })
            })
            .collect()
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
        drop(ops);
        let stages = self.stage_summary();
        let mut doc = json!({
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
        });
        if !stages.is_empty() {
            doc["stages"] = Value::Array(stages);
        }
        doc
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
    let staged = plan.stages.len() > 1;
    if staged {
        stats.init_stages(&plan.stages);
    }
    let mut offset = 0.0f64;
    let mut i = 0u64;
    while let Some((stage, rate)) = plan.stage_at(offset) {
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
            if staged {
                stats.count_stage(stage, 1);
            }
        }
        stats.scheduled.fetch_add(1, Ordering::Relaxed);
        if stats.in_flight.load(Ordering::Relaxed) >= plan.max_in_flight {
            // Not built at all: past saturation the generator must not spend its CPU here.
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            stats.record_dropped("(dropped)");
            if staged {
                stats.count_stage(stage, 2);
            }
            continue;
        }
        let (op, fut) = make(i);
        i += 1;
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if staged {
            stats.count_stage(stage, 0);
        }
        let st = stats.clone();
        tokio::spawn(async move {
            let r = fut.await;
            let latency = intended.elapsed();
            if staged {
                st.record_stage(stage, latency, &r);
            }
            st.record(op, latency, r);
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
/// from the actual send (there is no schedule to fall behind). All chains run in this one task
/// (a `FuturesUnordered`, no spawn per request) and record into its own histograms, merged into
/// `stats` at the end: the generator's CPU per call stays below the server's it measures.
async fn run_closed<F, Fut>(secs: f64, workers: usize, stats: Arc<Stats>, mut make: F) -> Duration
where
    F: FnMut(u64) -> (&'static str, Fut),
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut local = LocalStats::default();
    let mut running = FuturesUnordered::new();
    let mut launch = |i: u64| {
        let (op, fut) = make(i);
        async move {
            let t = Instant::now();
            let r = fut.await;
            (op, t.elapsed(), r)
        }
    };
    let mut i = 0u64;
    for _ in 0..workers.max(1) {
        running.push(launch(i));
        i += 1;
    }
    while let Some((op, latency, r)) = running.next().await {
        local.record(op, latency, r);
        if Instant::now() < deadline {
            running.push(launch(i));
            i += 1;
        }
    }
    stats.scheduled.fetch_add(i, Ordering::Relaxed);
    stats.sent.fetch_add(i, Ordering::Relaxed);
    stats.merge(local);
    start.elapsed()
}

/// Per-op figures kept by one task without a lock, merged into [`Stats`] once.
#[derive(Default)]
struct LocalStats {
    ops: Vec<(&'static str, OpStats)>,
}

impl LocalStats {
    fn record(&mut self, op: &'static str, latency: Duration, result: Result<(), String>) {
        let us = (latency.as_micros() as u64).clamp(1, 120_000_000);
        // A handful of op names: a linear scan beats a map.
        let s = match self.ops.iter().position(|(k, _)| *k == op) {
            Some(p) => &mut self.ops[p].1,
            None => {
                self.ops.push((op, OpStats::new()));
                &mut self.ops.last_mut().expect("just pushed").1
            }
        };
        s.hist.saturating_record(us);
        match result {
            Ok(()) => s.ok += 1,
            Err(code) => *s.errors.entry(code).or_default() += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ramp_reports_each_stage() {
        let mut plan = Plan::constant(0.0, Duration::ZERO, 100);
        plan.stages = vec![
            Stage {
                secs: 0.2,
                rate: 50.0,
            },
            Stage {
                secs: 0.2,
                rate: 200.0,
            },
        ];
        plan.drain = Duration::from_secs(2);
        let stats = Arc::new(Stats::default());
        let elapsed = run(&plan, stats.clone(), |i| {
            let fut = async move {
                if i % 2 == 0 {
                    Ok(())
                } else {
                    Err("odd".to_string())
                }
            };
            ("op", fut)
        })
        .await;
        let doc = stats.summary(elapsed);
        let stages = doc["stages"].as_array().expect("per-stage figures");
        assert_eq!(stages.len(), 2);
        let sent = |i: usize| stages[i]["sent"].as_u64().unwrap();
        // 0.2 s at 50/s, then 0.2 s at 200/s (the first send of a stage comes one interval of
        // the previous stage after the last one, so a few fewer around the boundary).
        assert!((9..=11).contains(&sent(0)), "{}", sent(0));
        assert!((34..=41).contains(&sent(1)), "{}", sent(1));
        assert_eq!(sent(0) + sent(1), doc["sent"].as_u64().unwrap());
        let done: u64 = stages
            .iter()
            .map(|s| s["ok"].as_u64().unwrap() + s["errors"].as_u64().unwrap())
            .sum();
        assert_eq!(
            done,
            doc["ok"].as_u64().unwrap() + doc["errors"].as_u64().unwrap()
        );
        assert!(stages[1]["p99_ms"].as_f64().is_some());

        // A single-stage plan reports no stages.
        let one = Arc::new(Stats::default());
        let p = Plan::constant(100.0, Duration::from_millis(50), 10);
        let e = run(&p, one.clone(), |_| ("op", async { Ok(()) })).await;
        assert!(one.summary(e).get("stages").is_none());
    }

    /// Closed loop: every request sent is accounted once, per op, with its error codes, and
    /// no more than `workers` are in flight at once.
    #[tokio::test]
    async fn a_closed_loop_accounts_every_request() {
        let mut plan = Plan::constant(0.0, Duration::from_millis(100), 100);
        plan.closed = Some(8);
        let stats = Arc::new(Stats::default());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        run(&plan, stats.clone(), |i| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            let fut = async move {
                let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if i % 3 == 0 {
                    Err("three".to_string())
                } else {
                    Ok(())
                }
            };
            (if i % 2 == 0 { "even" } else { "odd" }, fut)
        })
        .await;
        let doc = stats.summary(Duration::from_millis(100));
        let sent = doc["sent"].as_u64().unwrap();
        assert!(sent >= 8, "{sent}");
        assert_eq!(
            doc["ok"].as_u64().unwrap() + doc["errors"].as_u64().unwrap(),
            sent
        );
        assert_eq!(doc["scheduled"].as_u64().unwrap(), sent);
        assert_eq!(doc["errors"].as_u64().unwrap(), sent.div_ceil(3));
        assert!(doc["ops"]["even"]["ok"].as_u64().unwrap() > 0);
        assert!(
            doc["ops"]["odd"]["errors_by_code"]["three"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(peak.load(Ordering::SeqCst), 8);
    }
}
