#!/usr/bin/env bash
# tiles-at-scale.sh: issue 25's tile figures (docs/performance.md, "Tiles
# at 10 million entries"). On a fresh `mediator dev` it sends SEGMENTS
# segments of SEGMENT events, alternately without and with READERS tile
# readers fetching random full level-0 tiles for the whole segment (as fast
# as they are answered, or READER_RATE tiles a second each), so that
# each segment with readers sits between two without (the ingest rate falls
# slowly as the log grows, and neighbours see the same size). Then, at the
# final size, it times full-tile GETs with one reader (latency) and with
# READERS readers (bytes/s), against a binary COPY TO of the same leaf
# hashes in the same run.
# Needs bin/mediator (make build) and psql. The service limits tile readers
# by default (--rate-tiles 100 per identity, --rate-tiles-service 200 for
# all); the readers share one token and wait as told on 429.
#
#   SEGMENTS=5 SEGMENT=1000000 READERS=4 TILES=2000 scripts/tiles-at-scale.sh       # the default limits
#   SEGMENTS=10 SEGMENT=1000000 READERS=4 DEV_FLAGS="--rate-tiles 0 --rate-tiles-service 0" scripts/tiles-at-scale.sh
set -euo pipefail
SEGMENTS=${SEGMENTS:-10}
SEGMENT=${SEGMENT:-1000000}
READERS=${READERS:-4}
READER_RATE=${READER_RATE:-0}    # tiles a second per reader during ingest; 0: as fast as answered
TILES=${TILES:-5000}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ADDR=127.0.0.1:8093
BIN=${BIN:-bin/mediator}

. "$(dirname "$0")/dev-lib.sh"
trap stop_dev EXIT
export MEDIATOR_DEV_STATE_DIR=$OUT/dev
# DEV_FLAGS go to `mediator dev`, e.g. DEV_FLAGS="--rate-tiles 0
# --rate-tiles-service 0" (readers as fast as they are answered; the final
# latency and bytes/s figures need it).
# shellcheck disable=SC2086
start_dev "$ADDR" "$OUT/dev.log" ${DEV_FLAGS:-}

for i in $(seq 1 "$SEGMENTS"); do
  readers=0
  [ $((i % 2)) -eq 0 ] && readers=$READERS
  echo "== segment $i: $SEGMENT events, $readers tile readers"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --workers "$WORKERS" --batch "$BATCH" --events "$SEGMENT" \
    --duration 1h --tile-readers "$readers" --tile-rate "$READER_RATE" | tee "$OUT/segment-$i.txt"
done
echo "== full tiles at the final size: one reader"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --events "$BATCH" --tiles "$TILES" | tee "$OUT/tiles-1.txt"
echo "== full tiles at the final size: $READERS readers, against a COPY TO of the same hashes"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --events "$BATCH" --tiles "$TILES" --tile-readers "$READERS" --copy-baseline | tee "$OUT/tiles-$READERS.txt"
echo "== ingest by segment (events/s), readers on even segments"
for i in $(seq 1 "$SEGMENTS"); do
  printf '%s %s\n' "$i" "$(sed -n 's/^throughput: \([0-9]*\) events\/s/\1/p' "$OUT/segment-$i.txt")"
done | tee "$OUT/segments.txt"
awk '{r[$1]=$2} END {
  for (i = 2; i <= NR; i += 2) {
    n = r[i-1]; c = 1; if ((i+1) in r) { n += r[i+1]; c = 2 }
    printf "segment %d with readers: %d events/s against %.0f without (its neighbours): %.3f\n", i, r[i], n/c, r[i]/(n/c)
  }
}' "$OUT/segments.txt" | tee "$OUT/ratios.txt"
echo "results in $OUT"
