#!/usr/bin/env python3
"""AccelByte scenario 5's opening burst, alone: n clients connect first, then all send their
first `POST …/initialize` (new players) at once; prints the latency percentiles the clients
saw. bench/burst_initialize.sh starts the service for it.

    bench/burst_initialize.py TAG [n=150] [port=17000]
"""
import http.client
import sys
import threading
import time

tag = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 150
port = int(sys.argv[3]) if len(sys.argv) > 3 else 17000
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(n)]
for c in conns:
    c.connect()
start = threading.Barrier(n)
latency = [0.0] * n


def call(i):
    c = conns[i]
    start.wait()
    t = time.perf_counter()
    c.request(
        "POST",
        "/challenge/v1/challenges/initialize",
        body="{}",
        headers={"X-Mock-User-Id": f"{tag}-{i}", "Content-Type": "application/json"},
    )
    r = c.getresponse()
    r.read()
    latency[i] = (time.perf_counter() - t) * 1000
    if r.status != 200:
        sys.exit(f"initialize: {r.status}")


threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
latency.sort()
print(
    f"{tag}: p50 {latency[n // 2]:.0f} p90 {latency[int(n * .9)]:.0f} "
    f"p95 {latency[int(n * .95)]:.0f} max {latency[-1]:.0f} ms"
)
