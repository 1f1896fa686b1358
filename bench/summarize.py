#!/usr/bin/env python3
"""One line per run from a results.jsonl written by bench/run.sh (loadgen --out)."""
import json
import sys


def num(x, fmt):
    return "n/a" if x is None else format(x, fmt)


def fmt_proc(p):
    return " ".join(
        f"{k}:{num(v['cpu_cores'], '.2f')}cores,{num(v['cpu_us_per_op'], '.0f')}us/op,"
        f"hwm{num(v['vm_hwm_mib'], '.0f')}MiB"
        for k, v in p.items()
    )


for line in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl"):
    d = json.loads(line)
    if "result" not in d:
        u, r = d["update_unnest"], d["read_user_rows"]
        print(f"{d['scenario']}: UPDATE unnest batch {u['batch']} x{u['writers']}: {u['rows_per_s']:.0f} rows/s "
              f"(batch p50 {u['batch_latency']['p50_ms']:.1f} ms); 500-row read x{r['readers']}: "
              f"{r['queries_per_s']:.0f} q/s (p50 {r['latency']['p50_ms']:.1f} ms)")
        continue
    r = d["result"]
    a = r["all"]
    v = d.get("validity")
    valid = v.get("valid") if isinstance(v, dict) else v
    print(f"{d['scenario']}: {r['achieved_ok_per_sec']:.0f} ok/s, p50 {a['p50_ms']:.2f} p95 {a['p95_ms']:.2f} "
          f"p99 {a['p99_ms']:.2f} max {a['max_ms']:.1f} ms; sent {r['sent']} dropped {r['dropped']} late {r['late']} "
          f"errors {r['errors']}; {fmt_proc(d.get('process', {}))}; valid={valid}")
    for op, s in r["ops"].items():
        print(f"    {op}: {s['ok_per_sec']:.0f}/s p50 {s['p50_ms']:.2f} p95 {s['p95_ms']:.2f} p99 {s['p99_ms']:.2f} "
              f"max {s['max_ms']:.1f} errors {s['errors_by_code']}")
    if d.get("events"):
        e = d["events"]
        print(f"    events: {e['achieved_ok_per_sec']:.0f} ok/s p95 {e['all']['p95_ms']:.2f} p99 {e['all']['p99_ms']:.2f} "
              f"dropped {e['dropped']} errors {e['errors']}")
    if d.get("thresholds_reference_m3"):
        print("    thresholds:", {k: v["pass"] for k, v in d["thresholds_reference_m3"].items()})
    if isinstance(v, dict) and not v.get("valid", True):
        print("    INVALID:", v.get("problems"))
