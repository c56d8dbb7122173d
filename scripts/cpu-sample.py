#!/usr/bin/env python3
"""cpu-sample.py OUT: once a second, append to OUT one line with the time,
the machine's CPU and I/O pressure (PSI totals, µs), dirty and writeback
memory (kB), and for every process name with over 0.1 s of CPU the CPU
time and the run-queue wait, in ns, summed over its threads
(/proc/PID/task/TID/schedstat). `mediator` processes are named by their
subcommand (mediator-dev, mediator-loadgen), PostgreSQL's by role
(postgres-backend, postgres-checkpointer, postgres-walwriter, ...). Processes that exit take
their counts with them. Each line also holds the machine's own speed at
that moment: the CPU time of the same fixed work (probe_hash, probe_fault,
probe_syscall, ns; scripts/machine-speed.py), the page cache and free
memory (kB), the kernel's page-fault and file-refault counts, and what
DAMON has paged out (bytes), where the kernel runs it.

With METRICS_URL and METRICS_TOKEN set, each line also holds the
service's time in each step of its append transactions
(seq_begin=… seq_commit=…, seconds, from
mediator_audit_sequencer_seconds_total) and the event ids the duplicate
check looked up (probes_current=…, probes_closed=…). With DATABASE_URL set, it holds
PostgreSQL's counters at that moment (pg_…: WAL records, full-page images
and bytes, checkpoints, buffers written by the checkpointer, the
background writer and the backends, blocks read and hit, blocks read
of audit_entries' heap and of each of its indexes, how many times
autovacuum has vacuumed and analysed audit_entries, and the blocks each
vacuum and analyze running now has scanned, by table), read over one
psql connection.
With STOP_AT_SIZE=N as well, it exits at the first second the log holds
N entries (mediator_audit_tree_size), before that second's probes: what is
timed after an ingest (inclusion proofs) then runs without it, as the
probes, the /metrics scrape and the walk of /proc take the CPU for some
milliseconds every second.
scripts/cpu-per-entry.py reads the file.
"""
import glob
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
machine_speed = __import__('machine-speed')


def processes():
    agg = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            comm = open(f'/proc/{pid}/comm').read().strip()
            cpu = wait = 0
            for tid in os.listdir(f'/proc/{pid}/task'):
                fields = open(f'/proc/{pid}/task/{tid}/schedstat').read().split()
                cpu += int(fields[0])
                wait += int(fields[1])
            io = dict(l.split(': ') for l in open(f'/proc/{pid}/io').read().splitlines())
            if comm == 'mediator':
                argv = open(f'/proc/{pid}/cmdline').read().split('\0')
                comm = 'mediator-' + (argv[1] if len(argv) > 1 else '')
            elif comm == 'postgres':
                comm = postgres_role(open(f'/proc/{pid}/cmdline').read())
        except OSError:
            continue
        if comm.startswith('kworker'):
            comm = 'kworker'
        a = agg.setdefault(comm, [0, 0, 0, 0])
        a[0] += cpu
        a[1] += wait
        a[2] += int(io['read_bytes'])
        a[3] += int(io['write_bytes'])
    return agg


def postgres_role(cmdline):
    """postgres-backend for a client's backend, postgres-checkpointer,
    postgres-walwriter and so on for the server's own processes, from the
    title PostgreSQL gives each ("postgres: 15/main: checkpointer")."""
    parts = cmdline.rstrip('\0 ').split(': ', 2)
    if len(parts) < 3:
        return 'postgres'
    words = parts[2].split()
    servers = ('checkpointer', 'background', 'walwriter', 'autovacuum', 'logical', 'archiver', 'walsender', 'walreceiver', 'startup')
    if words and words[0] in servers:
        return 'postgres-' + '-'.join(words[:2] if words[0] in ('background', 'autovacuum', 'logical') else words[:1])
    return 'postgres-backend'


def pressure(kind):
    return open(f'/proc/pressure/{kind}').readline().split('total=')[1].strip()


def vmstat():
    want = ('pgfault', 'pgmajfault', 'workingset_refault_file')
    return {l.split()[0]: l.split()[1] for l in open('/proc/vmstat') if l.split()[0] in want}


def damon_paged_out():
    # DAMON's sysfs refreshes a scheme's statistics only when asked.
    for state in glob.glob('/sys/kernel/mm/damon/admin/kdamonds/*/state'):
        try:
            with open(state, 'w') as f:
                f.write('update_schemes_stats')
        except OSError:
            pass
    return sum(int(open(f).read()) for f in glob.glob('/sys/kernel/mm/damon/admin/kdamonds/*/contexts/*/schemes/*/stats/sz_applied'))


def sequencer_steps(url, token):
    """seq_STEP=seconds for each step of mediator_audit_sequencer_seconds_total,
    and the tree's size (None if the service did not answer)."""
    req = urllib.request.Request(url.rstrip('/') + '/metrics', headers={'Authorization': 'Bearer ' + token})
    try:
        body = urllib.request.urlopen(req, timeout=2).read().decode()
    except OSError:
        return '', None
    out = []
    size = None
    for line in body.splitlines():
        if line.startswith('mediator_audit_tree_size '):
            size = int(float(line.split()[-1]))
        elif line.startswith('mediator_audit_sequencer_seconds_total{step="'):
            step = line.split('"')[1]
            out.append(f'seq_{step}={float(line.split()[-1]):.6f}')
        elif line.startswith('mediator_audit_duplicate_probes_total{generation="'):
            out.append(f'probes_{line.split(chr(34))[1]}={line.split()[-1]}')
    return ' '.join(out), size


# One line of k=v fields: PostgreSQL's cumulative counters.
PG_QUERY = """SELECT concat_ws(' ',
  'pg_wal_records=' || w.wal_records, 'pg_wal_fpi=' || w.wal_fpi, 'pg_wal_bytes=' || w.wal_bytes,
  'pg_checkpoints=' || (b.checkpoints_timed + b.checkpoints_req), 'pg_buf_checkpoint=' || b.buffers_checkpoint,
  'pg_buf_clean=' || b.buffers_clean, 'pg_buf_backend=' || b.buffers_backend, 'pg_buf_alloc=' || b.buffers_alloc,
  'pg_blks_read=' || d.blks_read, 'pg_blks_hit=' || d.blks_hit,
  (SELECT 'pg_heap_read=' || heap_blks_read FROM pg_statio_user_tables WHERE relname = 'audit_entries'),
  (SELECT string_agg('pgidx_' || indexrelname || '=' || idx_blks_read, ' ' ORDER BY indexrelname)
     FROM pg_statio_user_indexes WHERE relname = 'audit_entries'),
  (SELECT 'av_vacuums=' || autovacuum_count || ' av_analyzes=' || autoanalyze_count
     FROM pg_stat_user_tables WHERE relname = 'audit_entries'),
  (SELECT string_agg('avvac_' || c.relname || '=' || p.heap_blks_scanned, ' ')
     FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid),
  (SELECT string_agg('avana_' || c.relname || '=' || p.sample_blks_scanned, ' ')
     FROM pg_stat_progress_analyze p JOIN pg_class c ON c.oid = p.relid))
FROM pg_stat_wal w, pg_stat_bgwriter b, pg_stat_database d WHERE d.datname = current_database();
"""


class Postgres:
    """A psql process kept open, asked PG_QUERY once a line."""

    def __init__(self, url):
        self.p = subprocess.Popen(['psql', '-X', '-q', '-At', url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def counters(self):
        if self.p.poll() is not None:
            return ''
        self.p.stdin.write(PG_QUERY)
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()


def main():
    out = open(sys.argv[1], 'a')
    metrics_url, metrics_token = os.environ.get('METRICS_URL'), os.environ.get('METRICS_TOKEN')
    pg = Postgres(os.environ['DATABASE_URL']) if os.environ.get('DATABASE_URL') else None
    stop_at = int(os.environ.get('STOP_AT_SIZE') or 0)
    while True:
        t = time.time()
        # The service first: once the log holds stop_at entries, stop
        # before the probes and the walk of /proc.
        steps, size = '', None
        if metrics_url and metrics_token:
            steps, size = sequencer_steps(metrics_url, metrics_token)
        if stop_at and size is not None and size >= stop_at:
            return
        mem = {l.split(':')[0]: l.split()[1] for l in open('/proc/meminfo') if l.startswith(('Dirty:', 'Writeback:', 'Cached:', 'MemFree:'))}
        speed = ' '.join(f'probe_{k}={v}' for k, v in machine_speed.probe().items())
        vm = ' '.join(f'{k}={v}' for k, v in vmstat().items())
        procs = ' '.join(f'{k}={v[0]},{v[1]},{v[2]},{v[3]}' for k, v in processes().items() if v[0] > 10**8)
        if steps:
            procs += ' ' + steps
        if pg:
            procs += ' ' + pg.counters()
        out.write(f"{t:.1f} psi_cpu={pressure('cpu')} psi_io={pressure('io')} dirty={mem['Dirty']} wb={mem['Writeback']}"
                  f" cached={mem['Cached']} free={mem['MemFree']} {vm} damon_out={damon_paged_out()} {speed} {procs}\n")
        out.flush()
        time.sleep(max(0.0, 1 - (time.time() - t)))


if __name__ == '__main__':
    main()
