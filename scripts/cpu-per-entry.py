#!/usr/bin/env python3
"""cpu-per-entry.py OUT [SECONDS]: from a log-at-scale.sh run made with
SAMPLE=1, print for every window of SECONDS (default 30) of the first
loadgen run the entries appended, the rate, and per entry appended the
CPU time and the run-queue wait (µs) of PostgreSQL, of `mediator dev`
(the service, its custodians and pseudonym service) and of loadgen, the
CPU of everything else, and the share of time some task waited for CPU
or I/O (PSI). A cost that grows with the log shows as a column that
grows down the table at a steady rate; a machine that slows down shows
as every column growing together.
"""
import bisect
import re
import sys

out_dir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else 30
first = open(f'{out_dir}/first.txt', errors='ignore').read()
progress = [(int(s), int(n)) for s, n in re.findall(r'\s(\d+)s\s+(\d+) events', first)]
rows = []
for line in open(f'{out_dir}/cpu.txt'):
    fields = line.split()
    rows.append((float(fields[0]), dict(f.split('=', 1) for f in fields[1:])))
start = next(t for t, kv in rows if 'mediator-loadgen' in kv)
times = [start + s for s, _ in progress]
counts = [n for _, n in progress]


def entries_at(t):
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return 0
    if i >= len(times):
        return counts[-1]
    return counts[i - 1] + (counts[i] - counts[i - 1]) * (t - times[i - 1]) / (times[i] - times[i - 1])


def ns(kv, name, i):
    v = kv.get(name, '')
    return int(v.split(',')[i]) if ',' in v else 0


named = ('postgres', 'mediator-dev', 'mediator-loadgen')
print('entries   events/s  postgres cpu/wait  dev cpu/wait  loadgen cpu  other cpu  (µs an entry)  PSI cpu  io')
first_row = next(i for i, (t, _) in enumerate(rows) if t >= start)
for i in range(first_row, len(rows) - step, step):
    (ta, a), (tb, b) = rows[i], rows[i + step]
    if tb > times[-1]:
        break
    n = entries_at(tb) - entries_at(ta)
    per = lambda name, j: (ns(b, name, j) - ns(a, name, j)) / 1e3 / n
    other = sum(ns(b, k, 0) - ns(a, k, 0) for k in b if ',' in b[k] and k not in named) / 1e3 / n
    psi = lambda k: (int(b[k]) - int(a[k])) / (tb - ta) / 1e4
    print(f"{entries_at(tb) / 1e6:6.2f} M  {n / (tb - ta):8.0f}  {per('postgres', 0):8.1f} /{per('postgres', 1):5.1f}"
          f"  {per('mediator-dev', 0):6.1f} /{per('mediator-dev', 1):5.1f}  {per('mediator-loadgen', 0):10.1f}"
          f"  {other:9.1f}  {psi('psi_cpu'):20.0f}%  {psi('psi_io'):3.0f}%")
