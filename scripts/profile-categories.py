#!/usr/bin/env python3
"""profile-categories.py: where a CPU profile of the service goes, by job.

    go tool pprof -traces bin/mediator cpu.pprof | scripts/profile-categories.py

Each sample's stack is read from the leaf up; the first frame that belongs
to a job names the sample's category, so time in allocation, copying or
SHA-256 counts for the code that asked for it (SHA-256 under tlog is the
tree's, under an HMAC the redaction's). Frames of the runtime and the
general-purpose standard library name no job; a stack of nothing else is
the runtime's own (the background collector, the scheduler).
"""
import re
import sys

# (category, frame prefix), checked in order against each frame.
JOBS = [
    ("SQL (pgx: encoding, COPY, protocol)", ("github.com/jackc/",)),
    ("tree (tlog stored hashes, proofs)", ("golang.org/x/mod/sumdb/tlog",)),
    ("redaction (minimize, pseudonyms, canonical JSON)", ("github.com/mediatorhq/mediator/redact", "github.com/mediatorhq/mediator/pseudonym")),
    ("leaf (canonical form, leaf hash)", ("github.com/mediatorhq/mediator/audit.prepare", "github.com/mediatorhq/mediator/audit.(*preparedLeaf)", "github.com/mediatorhq/mediator/audit.preparedLeaf")),
    ("decode (JSON)", ("github.com/go-json-experiment/json", "encoding/json")),
    ("logging (slog)", ("log/slog",)),
    ("checkpoints, witnesses, dev custodians", ("github.com/mediatorhq/mediator/witness", "github.com/mediatorhq/mediator/custodian", "golang.org/x/mod/sumdb/note", "crypto/ed25519", "crypto/internal/fips140/ed25519", "crypto/internal/fips140/edwards25519")),
    ("Vault client", ("github.com/hashicorp/",)),
    ("policy (OPA)", ("github.com/open-policy-agent/",)),
    ("metrics", ("github.com/prometheus/", "github.com/mediatorhq/mediator/stats", "github.com/mediatorhq/mediator/pgmetrics")),
    ("sequencer (audit, batch: not SQL)", ("github.com/mediatorhq/mediator/audit", "github.com/mediatorhq/mediator/batch")),
    ("ingest handler (other)", ("github.com/mediatorhq/mediator/ingest", "github.com/mediatorhq/mediator/api")),
    ("HTTP (net/http, sockets)", ("net/http", "net.", "crypto/tls", "internal/poll", "vendor/golang.org/x/net")),
]
GENERIC = ("runtime.", "type:", "gcWriteBarrier", "countbody", "indexbody", "expandAVX", "internal/", "sync", "syscall", "crypto/", "bytes.", "strings.", "strconv.",
           "unicode", "sort.", "slices.", "maps.", "reflect.", "math", "io.", "bufio.", "encoding/",
           "hash/", "aeshashbody", "memeqbody", "cmpbody", "indexbyte", "errors.", "fmt.", "time.",
           "context.", "os.", "regexp", "unique.", "weak.", "iter.", "cmp.", "container/")


def category(frames):
    for f in frames:
        for name, prefixes in JOBS:
            if f.startswith(prefixes):
                return name
        if not f.startswith(GENERIC):
            return "other: " + re.sub(r"[.(].*", "", f.split("/")[-1]) if "/" in f else "other: " + f
    if any("gcBgMarkWorker" in f or "bgsweep" in f or "bgscavenge" in f for f in frames):
        return "runtime: background GC"
    return "runtime: scheduler, netpoll, other"


def seconds(v):
    m = re.match(r"([\d.]+)(ns|us|µs|ms|s|min|h)$", v)
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}[m.group(2)]


def main():
    totals, header = {}, []
    value, frames = None, []

    def flush():
        if value is not None:
            c = category(frames)
            totals[c] = totals.get(c, 0) + value

    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("-----------+"):
            flush()
            value, frames = None, []
            continue
        if value is None and not frames:
            m = re.match(r"\s+([\d.]+(?:ns|us|µs|ms|s|min|h))\s+(\S.*)$", line)
            if m:
                value, frames = seconds(m.group(1)), [m.group(2).replace(" (inline)", "")]
            elif line.startswith(("Duration", "File", "Type", "Time")):
                header.append(line)
            continue
        frames.append(line.strip().replace(" (inline)", ""))
    flush()
    total = sum(totals.values())
    small = [c for c, v in totals.items() if v < total / 200]
    if len(small) > 1:
        totals["other (each under 0.5 %)"] = sum(totals.pop(c) for c in small)
    for h in header:
        print(h)
    print(f"{'category':52} {'CPU s':>8} {'share':>6}")
    for c, v in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{c:52} {v:8.1f} {100 * v / total:5.1f}%")
    print(f"{'total':52} {total:8.1f}")


if __name__ == "__main__":
    main()
