#!/usr/bin/env python3
"""machine-speed.py [--load N] [--fill DIR] [--seconds S] [--interval I]: how
fast this machine runs the same work over time, whatever else runs on it.

Once a second it times three fixed pieces of work by the CPU time its own
thread is charged (time.thread_time_ns, so waiting for a core does not
count):

  hash    SHA-256 of 4 MiB (the CPU alone);
  fault   first touch of 1,024 fresh 4 KiB pages of an anonymous mapping
          (page faults: the kernel's page allocator, and under a
          virtualised guest, the host's mapping of guest memory);
  syscall 5,000 getppid calls (entering and leaving the kernel).

The same instructions every time: if their CPU time rises, the machine got
slower, not the program. Every I seconds it prints the median of each in
microseconds, and the page cache (GiB). --load N keeps N other processes
busy hashing for the whole run, to see whether sustained load alone slows
the machine down. --fill DIR writes 1 GiB more to a file in DIR before
each interval (and removes it at the end), to see whether a growing page
cache does, as a growing database's files grow it.

scripts/cpu-sample.py calls probe() once a second during a
log-at-scale.sh run (SAMPLE=1), so the CPU an entry costs can be set
against the machine's own speed at the same moment.
"""
import argparse
import hashlib
import mmap
import multiprocessing
import os
import statistics
import time

_BLOCK = bytes(1 << 20)
_PAGES = 1024


def probe():
    """Returns the thread CPU time, in ns, of each piece of fixed work."""
    t0 = time.thread_time_ns()
    for _ in range(4):
        hashlib.sha256(_BLOCK).digest()
    t1 = time.thread_time_ns()
    m = mmap.mmap(-1, _PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t2 = time.thread_time_ns()
    for i in range(0, _PAGES * mmap.PAGESIZE, mmap.PAGESIZE):
        m[i] = 1
    t3 = time.thread_time_ns()
    m.close()
    t4 = time.thread_time_ns()
    for _ in range(5000):
        os.getppid()
    t5 = time.thread_time_ns()
    return {'hash': t1 - t0, 'fault': t3 - t2, 'syscall': t5 - t4}


def _busy():
    while True:
        hashlib.sha256(_BLOCK).digest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--load', type=int, default=0)
    p.add_argument('--seconds', type=int, default=600)
    p.add_argument('--interval', type=int, default=30)
    p.add_argument('--fill', metavar='DIR')
    a = p.parse_args()
    fill = None
    if a.fill:
        fill = open(os.path.join(a.fill, f'machine-speed-fill.{os.getpid()}'), 'wb')
        os.unlink(fill.name)  # removed when closed, whatever happens
    load = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(a.load)]
    for proc in load:
        proc.start()
    start = time.time()
    window = []
    print('seconds  hash µs  fault µs  syscall µs  cache GiB  (medians of one probe a second)', flush=True)
    chunk = os.urandom(1 << 20)
    while time.time() - start < a.seconds:
        if fill and not window:
            for _ in range(1024):
                fill.write(chunk)
            fill.flush()
            os.fsync(fill.fileno())
        t = time.time()
        window.append(probe())
        if len(window) >= a.interval:
            med = {k: statistics.median(w[k] for w in window) / 1e3 for k in window[0]}
            cached = next(int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('Cached:')) / 2**20
            print(f"{t - start:7.0f}  {med['hash']:7.0f}  {med['fault']:8.0f}  {med['syscall']:10.0f}  {cached:9.1f}", flush=True)
            window = []
        time.sleep(max(0.0, 1 - (time.time() - t)))
    for proc in load:
        proc.terminate()


if __name__ == '__main__':
    main()
