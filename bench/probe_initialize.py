#!/usr/bin/env python3
"""CPU per request of a running service, measured from its /proc ticks over a loop of
sequential requests on one keep-alive connection (issue 22: the cost of one `initialize`
behind AccelByte's scenario 5 opening burst).

    bench/probe_initialize.py SERVICE_PID [tag] [n=1500] [port=17000]

Sends n `POST …/initialize` for new players (`X-Mock-User-Id: <tag>-<i>`; run the service
with PLUGIN_GRPC_SERVER_AUTH_ENABLED=false), then n `GET …/challenges` for the same players,
and prints the mean wall time per request and the service's CPU per request. The service's
catalog decides the size of the answers (BENCHMARKS.md used bench/k6/m5_catalog.py 50)."""
import http.client
import os
import sys
import time

pid = sys.argv[1]
tag = sys.argv[2] if len(sys.argv) > 2 else "probe"
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
port = int(sys.argv[4]) if len(sys.argv) > 4 else 17000


def cpu_seconds(p):
    fields = open(f"/proc/{p}/stat").read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


conn = http.client.HTTPConnection("127.0.0.1", port)


def run(method, path):
    c0, t0 = cpu_seconds(pid), time.time()
    for i in range(n):
        conn.request(
            method,
            path,
            body="{}" if method == "POST" else None,
            headers={"X-Mock-User-Id": f"{tag}-{i}", "Content-Type": "application/json"},
        )
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"{method} {path}: {r.status}")
    return 1000 * (time.time() - t0) / n, 1000 * (cpu_seconds(pid) - c0) / n


init = run("POST", "/challenge/v1/challenges/initialize")
listed = run("GET", "/challenge/v1/challenges")
print(
    f"{tag}: initialize (new player) wall {init[0]:.3f} ms, service CPU {init[1]:.3f} ms | "
    f"list wall {listed[0]:.3f} ms, service CPU {listed[1]:.3f} ms"
)
