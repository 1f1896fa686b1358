#!/usr/bin/env python3
"""HTTP/1.1 request latency as the wire saw it, from a pcap of the loopback interface
(`tcpdump -i lo -w FILE tcp port PORT`): per client connection, each request's first
payload packet to the server's last payload packet before the client's next request.
Prints the percentiles of the first request of each connection (a k6 VU's first call:
scenario 5's opening `initialize`) and of all requests. What the server's own histogram
misses (accept, reading, queueing for a CPU) is in these; what the client adds after the
response reached it (its own scheduling) is not.

    bench/wire_latency.py FILE SERVER_PORT
"""
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        header = f.read(24)
        magic = struct.unpack("<I", header[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
            magic = struct.unpack(">I", header[:4])[0]
        nanos = magic == 0xA1B23C4D
        linktype = struct.unpack(endian + "I", header[20:24])[0]
        # 1: Ethernet (lo on Linux); 113: Linux cooked; 276: Linux cooked v2.
        skip = {1: 14, 113: 16, 276: 20}.get(linktype)
        if skip is None:
            sys.exit(f"link type {linktype} not handled")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, caplen, _ = struct.unpack(endian + "IIII", rec)
            data = f.read(caplen)
            ts = sec + frac / (1e9 if nanos else 1e6)
            ip = data[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:]
            sport, dport = struct.unpack(">HH", tcp[:4])
            off = (tcp[12] >> 4) * 4
            payload = total - ihl - off
            yield ts, sport, dport, payload


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    conns = {}  # client port -> list of [request start, last response byte]
    for ts, sport, dport, payload in packets(path):
        if payload <= 0:
            continue
        if dport == port:
            reqs = conns.setdefault(sport, [])
            # A new request once the previous one has an answer.
            if not reqs or reqs[-1][1] is not None:
                reqs.append([ts, None])
        elif sport == port and dport in conns and conns[dport]:
            conns[dport][-1][1] = ts
    first = [r[0][1] - r[0][0] for r in conns.values() if r and r[0][1] is not None]
    every = [b - a for r in conns.values() for a, b in r if b is not None]
    for name, values in (("first request per connection", first), ("all requests", every)):
        if values:
            print(
                f"{name}: n {len(values)} p50 {pct(values, .5):.1f} p90 {pct(values, .9):.1f} "
                f"p95 {pct(values, .95):.1f} max {max(values) * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
