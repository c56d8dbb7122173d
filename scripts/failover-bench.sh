#!/usr/bin/env bash
# failover-bench.sh: issue 26's figures (docs/performance.md, "A
# synchronous standby and failover"). Needs bin/mediator (make build).
#
#   scripts/failover-bench.sh ratio      # ingest: one PostgreSQL against a
#                                        # primary with a synchronous standby,
#                                        # alternated ROUNDS times each
#   scripts/failover-bench.sh failovers  # FAILOVERS failovers under load:
#                                        # the acknowledgement gaps, and the
#                                        # publication lag around them
#   scripts/failover-bench.sh steady     # publication lag, HA, no failover
#   scripts/failover-bench.sh proofs     # EVENTS (10 M) entries, then inclusion
#                                        # proofs served from the standby
#
# Every run is a fresh `mediator dev` (with --ha: a pg_auto_failover
# monitor, primary and synchronous standby on loopback ports, the mediator
# reading from the standby). A failover is `kill -USR1` to dev: the
# primary's node is SIGKILLed, the standby promoted, the lost node brought
# back as the new standby.
set -euo pipefail
MODE=${1:-ratio}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-30s}
RATE=${RATE:-0}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
FAILOVERS=${FAILOVERS:-5}
EVERY=${EVERY:-25}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ADDR=127.0.0.1:8095
BIN=${BIN:-bin/mediator}

. "$(dirname "$0")/dev-lib.sh"
trap stop_dev EXIT

run() { # name, dev flags...
  local name=$1
  shift
  # What the previous run's `mediator dev env` exported names its servers.
  unset DATABASE_URL VAULT_ADDR VAULT_TOKEN
  export MEDIATOR_DEV_STATE_DIR=$OUT/$name/dev
  mkdir -p "$OUT/$name"
  start_dev "$ADDR" "$OUT/$name/dev.log" "$@"
}

case "$MODE" in
ratio)
  for r in $(seq "$ROUNDS"); do
    for ha in 0 1; do
      name=round$r-$([ "$ha" = 1 ] && echo ha || echo single)
      if [ "$ha" = 1 ]; then run "$name" --ha; else run "$name"; fi
      echo "== $name: $DURATION at full speed, $WORKERS workers"
      "$BIN" loadgen --url "$MEDIATOR_ADDR" --rate "$RATE" --duration "$DURATION" --workers "$WORKERS" \
        --batch "$BATCH" | tee "$OUT/$name/loadgen.txt"
      stop_dev
    done
  done
  ;;
failovers)
  run failovers --ha
  echo "== $FAILOVERS failovers, ${EVERY}s apart once the lost node is back as the standby, under $RATE events/s"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --rate "$RATE" --duration 1h --workers "$WORKERS" \
    --batch "$BATCH" >"$OUT/failovers/loadgen.txt" 2>/dev/null &
  lg=$!
  for n in $(seq "$FAILOVERS"); do
    sleep "$EVERY"
    kill -USR1 "$DEV_PID"
    # One failover at a time: wait until the lost node is the standby again.
    until [ "$(grep -c 'the lost node is the new standby' "$OUT/failovers/dev.log")" -ge "$n" ]; do sleep 1; done
  done
  sleep "$EVERY"
  kill -INT "$lg"
  wait "$lg" || true
  cat "$OUT/failovers/loadgen.txt"
  grep -o '"msg":"dev: failover[^"]*"[^}]*' "$OUT/failovers/dev.log" || true
  ;;
proofs)
  EVENTS=${EVENTS:-10000000}
  run proofs --ha
  echo "== $EVENTS events at full speed, then 2000 inclusion proofs served from the standby"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --events "$EVENTS" --duration 1h --workers "$WORKERS" \
    --batch "$BATCH" --proofs 2000 | tee "$OUT/proofs/loadgen.txt"
  ;;
steady)
  run steady --ha
  echo "== publication lag, $DURATION at ${RATE} events/s, HA"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --rate "$RATE" --duration "$DURATION" --workers "$WORKERS" \
    --batch "$BATCH" | tee "$OUT/steady/loadgen.txt"
  ;;
*)
  echo "usage: $0 ratio|failovers|steady|proofs" >&2
  exit 2
  ;;
esac
echo "results in $OUT"
