#!/usr/bin/env bash
# bench-agent.sh: the figures of issue 22 in docs/performance.md: events
# and deposits through the gateway agent against the Go client straight
# to the mediator, each on a fresh `mediator dev` (PostgreSQL, Vault, five
# witnessing custodians, the pseudonym service and the agent, all on this
# machine), with the per-identity rates lifted (one agent is one identity).
#
# Each of the two phases starts its own dev instance on 127.0.0.1:8091,
# sends the same 10,000 events first, which name every identifier the
# generator uses once (loadgen --cover: for the agent, this warms its
# cache with all 25,000; for both, the log then holds as many rows when
# the measurement starts, since its duplicate check slows as an
# unanalysed table grows: issue 24), then measures events for DURATION
# and deposits for DURATION, and stops.
# Needs bin/mediator (make build).
#
#   DURATION=30s WORKERS=4 BATCH=1000 DEPOSIT_WORKERS=32 scripts/bench-agent.sh
set -euo pipefail
DURATION=${DURATION:-30s}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
DEPOSIT_WORKERS=${DEPOSIT_WORKERS:-32}
ONLY=${ONLY:-}   # "deposits" skips the events
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ADDR=127.0.0.1:8091
BIN=${BIN:-bin/mediator}

# phase agent|direct, run in a subshell: what `dev env` exports stays in it.
phase() {
  local how=$1 via=()
  export MEDIATOR_DEV_STATE_DIR=$OUT/dev-$how
  MEDIATOR_RATE_DEPOSIT=0 MEDIATOR_RATE_INGEST=0 setsid "$BIN" dev --addr "$ADDR" >"$OUT/dev-$how.log" 2>&1 &
  DEV=$!
  trap '[ -n "$DEV" ] && { kill -- -$DEV 2>/dev/null || kill $DEV 2>/dev/null || true; }' EXIT
  for _ in $(seq 120); do
    curl -sf "http://$ADDR/readyz" >/dev/null && "$BIN" dev env >/dev/null 2>&1 && break
    sleep 1
  done
  eval "$("$BIN" dev env)"
  export MEDIATOR_ADDR=http://$ADDR
  if [ "$how" = agent ]; then via=(--agent "$MEDIATOR_AGENT_URL"); fi
  if [ "$ONLY" != deposits ]; then
  echo "== $how: 10,000 events first, naming every identifier"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" "${via[@]}" --cover --events 10000 --duration 2m | tee "$OUT/warm-$how.txt"
  echo "== $how: events for $DURATION"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" "${via[@]}" --workers "$WORKERS" --batch "$BATCH" --duration "$DURATION" | tee "$OUT/events-$how.txt"
  fi
  echo "== $how: deposits for $DURATION"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" "${via[@]}" --deposits --workers "$DEPOSIT_WORKERS" --duration "$DURATION" | tee "$OUT/deposits-$how.txt"
  kill -INT -- -$DEV 2>/dev/null || kill -INT $DEV
  wait $DEV || true
  DEV=
}
(phase agent)
(phase direct)
[ "$ONLY" = deposits ] && exit 0
a=$(sed -n 's/^throughput: \([0-9]*\) events.*/\1/p' "$OUT/events-agent.txt")
d=$(sed -n 's/^throughput: \([0-9]*\) events.*/\1/p' "$OUT/events-direct.txt")
echo "events through the agent / straight: $a / $d = $(python3 -c "print(round($a/$d, 2))")"
echo "everything is in $OUT"
