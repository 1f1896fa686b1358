//! One JSON document per run: printed, and appended to `--out` as one line.

use std::io::Write;

use serde_json::Value;

use crate::args::Args;

pub fn emit(args: &Args, doc: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    if let Some(path) = args.opt("out") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(f, "{}", serde_json::to_string(doc)?)?;
    }
    Ok(())
}
