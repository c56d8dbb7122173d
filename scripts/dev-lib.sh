# dev-lib.sh: start and stop a throwaway `mediator dev` for the measuring
# scripts. Source it, then: start_dev ADDR LOG [dev flags...]; it exports
# what `mediator dev env` prints plus MEDIATOR_ADDR, and stop_dev (run it
# from an EXIT trap) interrupts the instance, which drops its database.
# Needs BIN (the mediator binary) and MEDIATOR_DEV_STATE_DIR set.

DEV_PID=

start_dev() {
  local addr=$1 log=$2
  shift 2
  MEDIATOR_RATE_INGEST=0 setsid "$BIN" dev --addr "$addr" "$@" >"$log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 180); do
    curl -sf "http://$addr/readyz" >/dev/null && "$BIN" dev env >/dev/null 2>&1 && break
    sleep 1
  done
  curl -sf "http://$addr/readyz" >/dev/null || { echo "mediator dev did not get ready; see $log" >&2; return 1; }
  eval "$("$BIN" dev env)"
  export MEDIATOR_ADDR=http://$addr
}

stop_dev() {
  if [ -n "$DEV_PID" ]; then
    kill -INT -- -"$DEV_PID" 2>/dev/null || kill -INT "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" || true
    DEV_PID=
  fi
}
