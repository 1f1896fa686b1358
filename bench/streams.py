#!/usr/bin/env python3
"""Idle live progress streams (CONTRACT §10): opens N Server-Sent Events streams to the
service, one player each, waits for every stream's first heartbeat (the stream is
registered), then reports the service's resident memory before and after and holds the
streams for HOLD seconds (heartbeats keep coming). Loopback only; bounded in count and time.

    streams.py --url http://127.0.0.1:19000/challenge --pid <service pid> --n 10000
"""
import argparse
import asyncio
import json
import resource
import sys
import time


def rss_kib(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


async def open_stream(host: str, port: int, path: str, user: str, ready: asyncio.Event,
                      held: list, failures: list):
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nx-mock-user-id: {user}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        buf = b""
        while b"event: heartbeat" not in buf:
            chunk = await asyncio.wait_for(reader.read(4096), 30)
            if not chunk:
                raise RuntimeError(f"closed: {buf[:200]!r}")
            buf += chunk
        held.append((reader, writer))
    except Exception as e:  # noqa: BLE001 - counted and reported
        failures.append(repr(e))


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=500)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.n + 1024), hard))
    rest = a.url.split("://", 1)[1]
    hostport, _, base = rest.partition("/")
    host, _, port = hostport.partition(":")
    path = f"/{base}/v1/users/me/progress/stream"
    before = rss_kib(a.pid)
    held, failures = [], []
    started = time.monotonic()
    sem = asyncio.Semaphore(a.concurrency)

    async def one(i):
        async with sem:
            await open_stream(host, int(port), path, f"stream-{i:05d}", None, held, failures)

    await asyncio.gather(*(one(i) for i in range(a.n)))
    opened = time.monotonic() - started
    after_open = rss_kib(a.pid)
    await asyncio.sleep(a.hold)
    after_hold = rss_kib(a.pid)
    # Heartbeats still arrive on every stream: read what each holds.
    alive = 0
    for r, _ in held:
        try:
            data = await asyncio.wait_for(r.read(4096), 0.001)
            alive += 1 if data is not None else 0
        except asyncio.TimeoutError:
            alive += 1
    for _, w in held:
        w.close()
    result = {
        "kind": "streams", "streams": len(held), "failures": len(failures),
        "first_failure": failures[0] if failures else "",
        "open_seconds": round(opened, 1),
        "rss_before_kib": before.get("VmRSS"), "rss_open_kib": after_open.get("VmRSS"),
        "rss_after_hold_kib": after_hold.get("VmRSS"), "hwm_kib": after_hold.get("VmHWM"),
        "kib_per_stream": round((after_hold["VmRSS"] - before["VmRSS"]) / max(len(held), 1), 2),
        "alive_after_hold": alive,
    }
    print(json.dumps(result))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
