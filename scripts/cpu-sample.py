#!/usr/bin/env python3
"""cpu-sample.py OUT: once a second, append to OUT one line with the time,
the machine's CPU and I/O pressure (PSI totals, µs), dirty and writeback
memory (kB), and for every process name with over 0.1 s of CPU the CPU
time and the run-queue wait, in ns, summed over its threads
(/proc/PID/task/TID/schedstat). `mediator` processes are named by their
subcommand (mediator-dev, mediator-loadgen). Processes that exit take
their counts with them. scripts/cpu-per-entry.py reads the file.
"""
import os
import sys
import time


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
        except OSError:
            continue
        if comm.startswith('kworker'):
            comm = 'kworker'
        a = agg.setdefault(comm, [0, 0])
        a[0] += cpu
        a[1] += wait
    return agg


def pressure(kind):
    return open(f'/proc/pressure/{kind}').readline().split('total=')[1].strip()


def main():
    out = open(sys.argv[1], 'a')
    while True:
        t = time.time()
        mem = {l.split(':')[0]: l.split()[1] for l in open('/proc/meminfo') if l.startswith(('Dirty:', 'Writeback:'))}
        procs = ' '.join(f'{k}={v[0]},{v[1]}' for k, v in processes().items() if v[0] > 10**8)
        out.write(f"{t:.1f} psi_cpu={pressure('cpu')} psi_io={pressure('io')} dirty={mem['Dirty']} wb={mem['Writeback']} {procs}\n")
        out.flush()
        time.sleep(max(0.0, 1 - (time.time() - t)))


if __name__ == '__main__':
    main()
