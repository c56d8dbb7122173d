#!/usr/bin/env python3
"""proofs-in-service.py LOG [N]: the p50 and p99 of the last N (1,000)
inclusion proofs as the service timed them, from its access log
(api/middleware.go: the "request" lines' duration_ms, route
/v1/audit/proof/inclusion). loadgen times the same proofs at the client;
the difference is the connection and the client's own scheduling."""
import json
import re
import sys

ROUTE = "/v1/audit/proof/inclusion"
TEXT = re.compile(r'route=(\S+).*?duration_ms=([0-9.]+)')


def durations(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if ROUTE not in line:
                continue
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("route") == ROUTE and "duration_ms" in rec:
                    out.append(float(rec["duration_ms"]))
                continue
            m = TEXT.search(line)
            if m and m.group(1) == ROUTE:
                out.append(float(m.group(2)))
    return out


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    d = durations(path)[-n:]
    if not d:
        sys.exit(f"proofs-in-service: no {ROUTE} requests in {path}")
    d.sort()
    p50 = d[len(d) // 2]
    p99 = d[min(len(d) - 1, len(d) * 99 // 100)]
    print(f"in the service (access log, last {len(d)}): p50 {p50:.2f} ms, p99 {p99:.2f} ms")


main()
