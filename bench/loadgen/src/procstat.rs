//! CPU time (utime + stime from /proc/<pid>/stat) and peak RSS (VmHWM) of the processes under test.

use serde_json::{Value, json};

const CLK_TCK: f64 = 100.0;

/// CPU seconds used so far by `pid` (all threads).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// `(VmHWM, VmRSS)` in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

pub struct Watch {
    pids: Vec<(String, u32, f64)>,
}

impl Watch {
    /// Always watches this process too, as `loadgen`.
    pub fn start(pids: &[(String, u32)]) -> Self {
        let mut all: Vec<(String, u32)> = pids.to_vec();
        all.push(("loadgen".into(), std::process::id()));
        Watch {
            pids: all
                .into_iter()
                .map(|(n, p)| {
                    let c = cpu_secs(p).unwrap_or(f64::NAN);
                    (n, p, c)
                })
                .collect(),
        }
    }

    /// `ops_for(name)`: the completed operations to divide that process's CPU by.
    pub fn finish(&self, wall_secs: f64, ops_for: impl Fn(&str) -> u64) -> Value {
        let mut out = serde_json::Map::new();
        for (name, pid, c0) in &self.pids {
            let c1 = cpu_secs(*pid).unwrap_or(f64::NAN);
            let used = c1 - c0;
            let ops = ops_for(name);
            let (hwm, rss) = rss_kib(*pid).unwrap_or((0, 0));
            out.insert(
                name.clone(),
                json!({
                    "pid": pid,
                    "cpu_s": used,
                    "cpu_cores": used / wall_secs.max(1e-9),
                    "ops": ops,
                    "cpu_us_per_op": if ops > 0 { used * 1e6 / ops as f64 } else { f64::NAN },
                    "vm_hwm_mib": hwm as f64 / 1024.0,
                    "vm_rss_mib": rss as f64 / 1024.0,
                }),
            );
        }
        Value::Object(out)
    }
}
