//! `--name value` flags; no parser dependency for a bench tool.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};

pub struct Args {
    pub command: String,
    flags: HashMap<String, String>,
}

impl Args {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut it = std::env::args().skip(1);
        let command = it.next().unwrap_or_default();
        let mut flags = HashMap::new();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                bail!("expected --flag, got {k:?}");
            };
            let v = it
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_string(), v);
        }
        Ok(Args { command, flags })
    }

    pub fn get_str(&self, name: &str, default: &str) -> String {
        self.flags
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        self.flags.get(name).cloned()
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}")),
        }
    }

    pub fn get_usize(&self, name: &str, default: usize) -> anyhow::Result<usize> {
        self.parse(name, default)
    }

    pub fn get_f64(&self, name: &str, default: f64) -> anyhow::Result<f64> {
        self.parse(name, default)
    }

    pub fn get_bool(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        self.parse(name, default)
    }

    /// Seconds, fractional allowed.
    pub fn get_secs(&self, name: &str, default: f64) -> anyhow::Result<Duration> {
        Ok(Duration::from_secs_f64(self.get_f64(name, default)?))
    }

    /// Comma-separated process ids to account CPU and RSS for.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let Some(list) = self.flags.get("pids") else {
            return Vec::new();
        };
        list.split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|item| {
                let (name, pid) = item.split_once('=').unwrap_or((item, item));
                pid.parse().ok().map(|p| (name.to_string(), p))
            })
            .collect()
    }
}
