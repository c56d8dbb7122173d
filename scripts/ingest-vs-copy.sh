#!/usr/bin/env bash
# ingest-vs-copy.sh: issue 24's outcome 4 (docs/performance.md, "Ingest
# against a single raw COPY"). On a fresh `mediator dev` it sends events
# with loadgen for DURATION, then times a single raw PostgreSQL COPY of the
# same rows in one transaction (loadgen --copy-baseline) and prints the
# ratio, and sums the dev process's CPU profile by job
# (scripts/profile-categories.py). Needs bin/mediator (make build), psql,
# python3 and go.
#
#   DURATION=60s scripts/ingest-vs-copy.sh
set -euo pipefail
DURATION=${DURATION:-60s}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
BIN=${BIN:-bin/mediator}
. "$(dirname "$0")/dev-lib.sh"
trap stop_dev EXIT

export MEDIATOR_DEV_STATE_DIR=$OUT/dev
start_dev 127.0.0.1:8093 "$OUT/dev.log" --cpu-profile "$OUT/cpu.pprof"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --workers "$WORKERS" --batch "$BATCH" --duration "$DURATION" \
  --copy-baseline | tee "$OUT/loadgen.txt"
stop_dev
go tool pprof -traces "$BIN" "$OUT/cpu.pprof" 2>/dev/null | "$(dirname "$0")/profile-categories.py" | tee "$OUT/profile.txt"
echo "everything is in $OUT"
