#!/usr/bin/env python3
"""cpu-per-entry.py OUT [SECONDS [RUN]]: from a log-at-scale.sh run made
with SAMPLE=1, print for every window of SECONDS (default 30) of a loadgen
run (RUN: first, the default, from first.txt and cpu.txt; last, from
last.txt and cpu-last.txt; or control, from control.txt and
cpu-control.txt) the entries appended, the rate, and per entry appended the
CPU time and the run-queue wait (µs) of PostgreSQL, of `mediator dev`
(the service, its custodians and pseudonym service) and of loadgen, the
CPU of everything else, and the share of time some task waited for CPU
or I/O (PSI). A cost that grows with the log shows as a column that
grows down the table at a steady rate; a machine that slows down shows
as every column growing together, and as the last columns: the median
CPU time of the same fixed work in that window (hash, page faults,
syscalls, µs; scripts/machine-speed.py), the page cache, and what DAMON
had paged out by then (GiB).

When the samples hold them (cpu-sample.py with METRICS_URL and
DATABASE_URL), two more tables follow, by the same windows: the
sequencer's time per entry in each step of its transactions (µs), the
event ids the duplicate check looked up per 1,000 entries, and
PostgreSQL's work per 1,000 entries: WAL bytes (kB) and full-page images,
buffers written by the checkpointer, the background writer and the
backends, blocks read, and blocks read of audit_entries' heap and each
index; each PostgreSQL process's disk reads and writes; and what
autovacuum did: its vacuums and analyzes of audit_entries, and the blocks
each vacuum and analyze scanned, by table.
"""
import bisect
import re
import statistics
import sys

out_dir = sys.argv[1]
step = int(sys.argv[2]) if len(sys.argv) > 2 else 30
run = sys.argv[3] if len(sys.argv) > 3 else 'first'
samples = {'first': 'cpu.txt', 'last': 'cpu-last.txt', 'control': 'cpu-control.txt'}[run]
loadgen = open(f'{out_dir}/{run}.txt', errors='ignore').read()
progress = [(int(s), int(n)) for s, n in re.findall(r'\s(\d+)s\s+(\d+) events', loadgen)]
if not progress:
    sys.exit(f'cpu-per-entry: no progress lines in {out_dir}/{run}.txt (loadgen prints them on stderr)')
rows = []
for line in open(f'{out_dir}/{samples}'):
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


def raw(kv, name, i):
    v = kv.get(name, '').split(',')
    return int(v[i]) if len(v) > i and v[i] else 0


def ns(kv, name, i):
    if name == 'postgres':  # all of PostgreSQL's processes
        return sum(raw(kv, k, i) for k in kv if k == 'postgres' or k.startswith('postgres-'))
    return raw(kv, name, i)


named = ('postgres', 'mediator-dev', 'mediator-loadgen')
print('entries   events/s  postgres cpu/wait  dev cpu/wait  loadgen cpu  other cpu  (µs an entry)  PSI cpu  io'
      '   probe hash fault syscall (µs)  cache  paged out (GiB)')
first_row = next(i for i, (t, _) in enumerate(rows) if t >= start)
for i in range(first_row, len(rows) - step, step):
    (ta, a), (tb, b) = rows[i], rows[i + step]
    if tb > times[-1]:
        break
    n = entries_at(tb) - entries_at(ta)
    per = lambda name, j: (ns(b, name, j) - ns(a, name, j)) / 1e3 / n
    other = sum(raw(b, k, 0) - raw(a, k, 0) for k in b if ',' in b[k] and k not in named and not k.startswith('postgres')) / 1e3 / n
    psi = lambda k: (int(b[k]) - int(a[k])) / (tb - ta) / 1e4
    probe = lambda k: statistics.median(int(kv.get(f'probe_{k}', 0)) for _, kv in rows[i:i + step]) / 1e3
    gib = lambda v: int(v) / 2**30
    print(f"{entries_at(tb) / 1e6:6.2f} M  {n / (tb - ta):8.0f}  {per('postgres', 0):8.1f} /{per('postgres', 1):5.1f}"
          f"  {per('mediator-dev', 0):6.1f} /{per('mediator-dev', 1):5.1f}  {per('mediator-loadgen', 0):10.1f}"
          f"  {other:9.1f}  {psi('psi_cpu'):20.0f}%  {psi('psi_io'):3.0f}%"
          f"  {probe('hash'):10.0f} {probe('fault'):5.0f} {probe('syscall'):7.0f}"
          f"  {gib(b.get('cached', 0)) * 1024:6.1f} {gib(b.get('damon_out', 0)):6.1f}")

# Every process's CPU per entry in the first and the last full window: which
# one grows.
windows = [i for i in range(first_row, len(rows) - step, step) if rows[i + step][0] <= times[-1]]
if len(windows) >= 2:
    print()
    print('CPU per entry appended (µs), by process, first window against last:')
    per_window = []
    for i in (windows[0], windows[-1]):
        (ta, a), (tb, b) = rows[i], rows[i + step]
        n = entries_at(tb) - entries_at(ta)
        per_window.append({k: (raw(b, k, 0) - raw(a, k, 0)) / 1e3 / n for k in b if ',' in b[k]})
    names = sorted(set(per_window[0]) | set(per_window[1]), key=lambda k: -per_window[1].get(k, 0))
    for k in names:
        x, y = per_window[0].get(k, 0), per_window[1].get(k, 0)
        if max(x, y) >= 0.1:
            print(f'  {k:32s} {x:6.2f} → {y:6.2f}  ({y - x:+.2f})')


def counter_table(title, prefix, scale, fmt):
    """One row per window: each counter named prefix… in the samples, its
    growth over the window per entry appended, times scale."""
    names = sorted({k for _, kv in rows for k in kv if k.startswith(prefix)})
    if not names or not windows:
        return
    print()
    print(title)
    print('entries   ' + ' '.join(f'{k[len(prefix):][:14]:>14s}' for k in names))
    for i in windows:
        (ta, a), (tb, b) = rows[i], rows[i + step]
        n = entries_at(tb) - entries_at(ta)
        cells = []
        for k in names:
            if k in a and k in b:
                cells.append(f'{(float(b[k]) - float(a[k])) * scale / n:14{fmt}}')
            else:
                cells.append(f'{"":>14s}')
        print(f'{entries_at(tb) / 1e6:6.2f} M  ' + ' '.join(cells))


# Each PostgreSQL process's reads from and writes to the disk: what the
# server's own processes (autovacuum above all) add beside the backends.
if windows:
    roles = sorted({k for _, kv in rows for k in kv if k.startswith('postgres') and len(kv[k].split(',')) == 4})
    print()
    print("Disk reads / writes per 1,000 entries appended (kB), by PostgreSQL process:")
    print('entries   ' + ' '.join(f'{k[len("postgres-"):][:18]:>18s}' for k in roles))
    for i in windows:
        (ta, a), (tb, b) = rows[i], rows[i + step]
        n = entries_at(tb) - entries_at(ta)
        cells = [f'{(raw(b, k, 2) - raw(a, k, 2)) / n:8.0f} /{(raw(b, k, 3) - raw(a, k, 3)) / n:8.0f}' for k in roles]
        print(f'{entries_at(tb) / 1e6:6.2f} M  ' + ' '.join(cells))

counter_table('Sequencer time per entry appended, by step (µs):', 'seq_', 1e6, '.2f')
counter_table('Event ids looked up in the database per 1,000 entries appended, by generation:', 'probes_', 1e3, '.2f')
counter_table('PostgreSQL per 1,000 entries appended (WAL in bytes; buffers and blocks in 8 kB pages):', 'pg_', 1e3, '.0f')
counter_table("Blocks read of audit_entries' indexes per 1,000 entries appended:", 'pgidx_', 1e3, '.1f')
counter_table('Autovacuum: vacuums and analyzes of audit_entries begun, and blocks scanned per 1,000 entries appended by the vacuums (avvac_) and analyzes (avana_) running, by table:', 'av', 1e3, '.1f')
