#!/usr/bin/env python3
"""One line per run from a results.jsonl written by bench/run.sh (loadgen --out), then, when a
run was repeated (REPEAT=n), the median (min-max) of each labelled run's figures across its
repeats: ok/s, p99, CPU us/op of each process under test, SIGTERM-to-exit time."""
import json
import statistics
import sys
from collections import OrderedDict


def num(x, fmt):
    return "n/a" if x is None else format(x, fmt)


def fmt_proc(p):
    return " ".join(
        f"{k}:{num(v['cpu_cores'], '.2f')}cores,{num(v['cpu_us_per_op'], '.0f')}us/op,"
        f"hwm{num(v['vm_hwm_mib'], '.0f')}MiB"
        for k, v in p.items()
    )


def rep(d):
    return f" [repeat {d['repeat']}]" if "repeat" in d else ""


def finite(x):
    return isinstance(x, (int, float)) and x == x and x not in (float("inf"), float("-inf"))


# group key -> metric name -> values, in first-seen order
groups = OrderedDict()


def add(key, metric, value):
    if finite(value):
        groups.setdefault(key, OrderedDict()).setdefault(metric, []).append(value)


def run_line(d):
    r = d["result"]
    a = r["all"]
    v = d.get("validity")
    valid = v.get("valid") if isinstance(v, dict) else v
    layout = f" layout={d['layout']}" if d.get("layout") not in (None, "reference") else ""
    print(f"{d['scenario']}{rep(d)}: {r['achieved_ok_per_sec']:.0f} ok/s, p50 {a['p50_ms']:.2f} p95 {a['p95_ms']:.2f} "
          f"p99 {a['p99_ms']:.2f} max {a['max_ms']:.1f} ms; sent {r['sent']} dropped {r['dropped']} late {r['late']} "
          f"errors {r['errors']}; {fmt_proc(d.get('process', {}))}; valid={valid}{layout}")
    for op, s in r["ops"].items():
        print(f"    {op}: {s['ok_per_sec']:.0f}/s p50 {s['p50_ms']:.2f} p95 {s['p95_ms']:.2f} p99 {s['p99_ms']:.2f} "
              f"max {s['max_ms']:.1f} errors {s['errors_by_code']}")
    for s in r.get("stages", []):
        print(f"    stage {s['stage']} ({s['secs']:g} s at {s['offered_rate']:g}/s): {s['ok_per_sec']:.0f} ok/s "
              f"p50 {s['p50_ms']:.2f} p95 {s['p95_ms']:.2f} p99 {s['p99_ms']:.2f} max {s['max_ms']:.1f} ms; "
              f"sent {s['sent']} dropped {s['dropped']} errors {s['errors']}")
    if d.get("events"):
        e = d["events"]
        print(f"    events: {e['achieved_ok_per_sec']:.0f} ok/s p95 {e['all']['p95_ms']:.2f} p99 {e['all']['p99_ms']:.2f} "
              f"dropped {e['dropped']} errors {e['errors']}")
    if d.get("thresholds_reference_m3"):
        print("    thresholds:", {k: v["pass"] for k, v in d["thresholds_reference_m3"].items()})
    if isinstance(v, dict) and "checked_rows_per_acked_event" in v:
        print(f"    rows written per acknowledged event (checked rows): {v['checked_rows_per_acked_event']:.2f}; "
              f"goals per event in the config: {num(d.get('goals_per_event_in_config'), '.2f')}")
    if isinstance(v, dict) and not v.get("valid", True):
        print("    INVALID:", v.get("problems"))

    key = d["scenario"]
    add(key, "ok/s", r["achieved_ok_per_sec"])
    add(key, "p99 ms", a["p99_ms"])
    for name, p in d.get("process", {}).items():
        if name != "loadgen":
            add(key, f"{name} CPU us/op", p.get("cpu_us_per_op"))
    if d.get("events"):
        add(key, "events ok/s", d["events"]["achieved_ok_per_sec"])
        add(key, "events p99 ms", d["events"]["all"]["p99_ms"])
    for s in r.get("stages", []):
        add(key, f"stage {s['stage']} ({s['offered_rate']:g}/s) ok/s", s["ok_per_sec"])
        add(key, f"stage {s['stage']} ({s['offered_rate']:g}/s) p99 ms", s["p99_ms"])
    add(key, "valid", 1 if valid is True else 0 if valid is False else None)


def pg_line(d):
    u, r = d["update_unnest"], d["read_user_rows"]
    print(f"{d['scenario']}{rep(d)}: UPDATE unnest batch {u['batch']} x{u['writers']}: {u['rows_per_s']:.0f} rows/s "
          f"(batch p50 {u['batch_latency']['p50_ms']:.1f} ms); 500-row read x{r['readers']}: "
          f"{r['queries_per_s']:.0f} q/s (p50 {r['latency']['p50_ms']:.1f} ms)")
    key = f"{d['scenario']} (batch {u['batch']})"
    add(key, "UPDATE rows/s", u["rows_per_s"])
    add(key, "500-row reads/s", r["queries_per_s"])


def shutdown_line(d):
    killed = ", SIGKILLed" if d.get("killed") else ""
    print(f"    shutdown ({d['scenario']}{rep(d)}): {d['process']} exited {d['sigterm_to_exit_s']:.2f} s "
          f"after SIGTERM{killed} (limit {d.get('stop_wait_s')} s)")
    add(d["scenario"], f"{d['process']} SIGTERM-to-exit s", d["sigterm_to_exit_s"])
    add(d["scenario"], f"{d['process']} SIGKILLed", 1 if d.get("killed") else 0)


for line in open(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl"):
    if not line.strip():
        continue
    d = json.loads(line)
    if d.get("kind") == "shutdown":
        shutdown_line(d)
    elif d.get("kind") == "h2load":
        print(f"{d['scenario']}{rep(d)}: {d['req_per_s']:.0f} calls/s, server {d['server_cpu_us_per_call']:.1f} us/call, "
              f"h2load {d['h2load_cpu_us_per_call']:.1f} us/call; valid={d['valid']}")
        add(d["scenario"], "calls/s", d["req_per_s"])
        add(d["scenario"], "server us/call", d["server_cpu_us_per_call"])
    elif d.get("kind") == "pg_cost":
        print(f"    postgres ({d['scenario']}{rep(d)}): {d['pg_cpu_us_per_event']:.1f} us CPU and "
              f"{d['wal_bytes_per_event']} WAL bytes per acknowledged event")
        add(d["scenario"], "postgres CPU us/event", d["pg_cpu_us_per_event"])
        add(d["scenario"], "WAL bytes/event", d["wal_bytes_per_event"])
    elif "result" not in d:
        pg_line(d)
    else:
        run_line(d)


def fmt(x):
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"


repeated = [k for k, m in groups.items() if max(len(v) for v in m.values()) > 1]
if repeated:
    print("\nMedians across repeats: median (min-max) [n]")
    for key in repeated:
        print(f"{key}:")
        for metric, vals in groups[key].items():
            if metric in ("valid",) or metric.endswith("SIGKILLed"):
                print(f"    {metric}: {sum(vals):g} of {len(vals)}")
                continue
            print(f"    {metric}: {fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))}) [{len(vals)}]")
