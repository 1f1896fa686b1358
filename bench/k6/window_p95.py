#!/usr/bin/env python3
"""p95 per REST route of challenge_api_request_duration_seconds in two windows: from the
start to the first scrape, and from the first scrape to the second. Prints the upper bound
of the bucket holding the 95th percentile (the histogram's resolution), and the counts.

    window_p95.py SPLIT_SCRAPE END_SCRAPE
"""
import re
import sys
from collections import defaultdict

LINE = re.compile(r'^challenge_api_request_duration_seconds_bucket\{(.*)\} (\S+)$')


def buckets(path):
    """route -> {le: cumulative count}, summed over statuses."""
    out = defaultdict(lambda: defaultdict(float))
    try:
        text = open(path).read()
    except OSError:
        return out
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get('protocol') != 'http':
            continue
        le = float('inf') if labels['le'] == '+Inf' else float(labels['le'])
        out[labels['route']][le] += float(m.group(2))
    return out


def p95(cum):
    total = cum.get(float('inf'), 0)
    if total <= 0:
        return None, 0
    for le in sorted(cum):
        if cum[le] >= 0.95 * total:
            return le, int(total)
    return float('inf'), int(total)


def show(le):
    if le is None:
        return '-'
    return '> 10 s' if le == float('inf') else f'<= {le * 1000:g} ms'


first, end = buckets(sys.argv[1]), buckets(sys.argv[2])
for route in sorted(end):
    after = {le: end[route][le] - first.get(route, {}).get(le, 0) for le in end[route]}
    a, na = p95(first.get(route, {}))
    b, nb = p95(after)
    print(f'{route:55} {show(a):>12} ({na:5}) | {show(b):>12} ({nb:6})')
