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
scripts/cpu-per-entry.py reads the file.
"""
import glob
import os
import sys
import time

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
            if comm == 'mediator':
                argv = open(f'/proc/{pid}/cmdline').read().split('\0')
                comm = 'mediator-' + (argv[1] if len(argv) > 1 else '')
            elif comm == 'postgres':
                comm = postgres_role(open(f'/proc/{pid}/cmdline').read())
        except OSError:
            continue
        if comm.startswith('kworker'):
            comm = 'kworker'
        a = agg.setdefault(comm, [0, 0])
        a[0] += cpu
        a[1] += wait
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


def main():
    out = open(sys.argv[1], 'a')
    while True:
        t = time.time()
        mem = {l.split(':')[0]: l.split()[1] for l in open('/proc/meminfo') if l.startswith(('Dirty:', 'Writeback:', 'Cached:', 'MemFree:'))}
        speed = ' '.join(f'probe_{k}={v}' for k, v in machine_speed.probe().items())
        vm = ' '.join(f'{k}={v}' for k, v in vmstat().items())
        procs = ' '.join(f'{k}={v[0]},{v[1]}' for k, v in processes().items() if v[0] > 10**8)
        out.write(f"{t:.1f} psi_cpu={pressure('cpu')} psi_io={pressure('io')} dirty={mem['Dirty']} wb={mem['Writeback']}"
                  f" cached={mem['Cached']} free={mem['MemFree']} {vm} damon_out={damon_paged_out()} {speed} {procs}\n")
        out.flush()
        time.sleep(max(0.0, 1 - (time.time() - t)))


if __name__ == '__main__':
    main()
