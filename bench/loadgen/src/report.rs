//! One JSON document per run: printed, and appended to `--out` as one line. `--repeat n`
//! (bench/run.sh's REPEAT loop) is recorded in the document as `"repeat": n`, so repeats of one
//! labelled run can be told apart and summarised (bench/summarize.py: medians).

use std::io::Write;

use serde_json::Value;

use crate::args::Args;

pub fn emit(args: &Args, doc: &Value) -> anyhow::Result<()> {
    let mut doc = doc.clone();
    if let (Some(r), Some(map)) = (args.opt("repeat"), doc.as_object_mut()) {
        map.insert(
            "repeat".into(),
            r.parse::<u64>().map_or(Value::String(r), Value::from),
        );
    }
    let doc = &doc;
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
