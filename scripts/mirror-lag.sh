#!/usr/bin/env bash
# mirror-lag.sh: issue 25's mirror figure (docs/performance.md, "Mirror
# lag"). On a fresh `mediator dev --mirror` (a regulator's mirror on a
# database of its own, required by the witness policy beside the
# custodians' quorum) it sends RATE events a second for DURATION and
# reports, for every acknowledged batch, the time until the mirror's
# cosigned checkpoint covered it (mirror lag) and until the published
# checkpoint did (publication lag, which waits for the mirror).
# MIRROR=0 runs the same load without the mirror, for the baseline.
# Needs bin/mediator (make build).
#
#   RATE=25000 DURATION=60s scripts/mirror-lag.sh
#   RATE=25000 DURATION=60s MIRROR=0 scripts/mirror-lag.sh
set -euo pipefail
RATE=${RATE:-25000}
DURATION=${DURATION:-60s}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ADDR=127.0.0.1:8094
BIN=${BIN:-bin/mediator}
MIRROR=${MIRROR:-1}

. "$(dirname "$0")/dev-lib.sh"
trap stop_dev EXIT
export MEDIATOR_DEV_STATE_DIR=$OUT/dev
if [ "$MIRROR" = 0 ]; then
  start_dev "$ADDR" "$OUT/dev.log"
  echo "== $RATE events/s for $DURATION, no mirror"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --rate "$RATE" --duration "$DURATION" --workers "$WORKERS" \
    --batch "$BATCH" | tee "$OUT/loadgen.txt"
else
  start_dev "$ADDR" "$OUT/dev.log" --mirror
  COPY=$(sed -n 's/.*"msg":"dev mirror serving.*"copy":"\([^"]*\)".*/\1/p' "$OUT/dev.log" | head -1)
  [ -n "$COPY" ] || { echo "no mirror in $OUT/dev.log" >&2; exit 1; }
  echo "== $RATE events/s for $DURATION, mirror copy at $COPY"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --rate "$RATE" --duration "$DURATION" --workers "$WORKERS" \
    --batch "$BATCH" --mirror "${COPY%/}" | tee "$OUT/loadgen.txt"
fi
echo "results in $OUT"
