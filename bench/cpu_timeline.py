#!/usr/bin/env python3
"""CPU use per process group over time, from /proc/<pid>/task/*/schedstat (nanoseconds on
CPU, every thread), sampled every INTERVAL seconds for SECONDS seconds. A group is a pid or
`comm:NAME` (every process whose comm is NAME, looked up at each sample, so Postgres
backends that start meanwhile count; one that exits between two samples loses its last
interval). Prints one line per interval: its end (seconds from start) and each group's
share of one core in percent; then the groups' totals. bench/k6/scenario5.sh runs it with
TIMELINE=1 over the scenario's opening seconds.

    bench/cpu_timeline.py SECONDS INTERVAL name=pid|comm:NAME ...
"""
import os
import sys
import time


def pids(spec):
    if not spec.startswith("comm:"):
        return [spec]
    name = spec[5:]
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == name:
                    found.append(pid)
        except OSError:
            pass
    return found


def on_cpu_ns(pid):
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return total


def sample(groups):
    """Per group: {pid: ns}."""
    return {name: {p: on_cpu_ns(p) for p in pids(spec)} for name, spec in groups}


def main():
    seconds, interval = float(sys.argv[1]), float(sys.argv[2])
    groups = [arg.split("=", 1) for arg in sys.argv[3:]]
    names = [name for name, _ in groups]
    print("t_s " + " ".join(f"{n}%" for n in names), flush=True)
    totals = dict.fromkeys(names, 0)
    start = time.monotonic()
    prev = sample(groups)
    t = interval
    while t <= seconds + 1e-9:
        time.sleep(max(0.0, start + t - time.monotonic()))
        now = sample(groups)
        line = [f"{t:.1f}"]
        for name in names:
            # Only processes seen at both samples: a new one counts from its first sample.
            used = sum(ns - prev[name][p] for p, ns in now[name].items() if p in prev[name])
            totals[name] += used
            line.append(f"{used / (interval * 1e7):.0f}")
        print(" ".join(line), flush=True)
        prev = now
        t += interval
    print("total_cpu_s " + " ".join(f"{totals[n] / 1e9:.2f}" for n in names))


if __name__ == "__main__":
    main()
