#!/usr/bin/env bash
# log-at-scale.sh: the 10 M entry run of issue 24 (docs/performance.md,
# "The log at 10 million entries"). On a fresh `mediator dev` (PostgreSQL,
# Vault, the witnessing dev custodians, all on this machine) it
#
#   1. sends FIRST events (9 M) with loadgen, reporting the rate of every
#      million and the CPU by process;
#   2. runs `audit verify --state` over them: a full verification that
#      leaves its state file behind;
#   3. sends LAST events (1 M) more, timing inclusion proofs at the end;
#      before it, as before step 1, the server is settled (a CHECKPOINT
#      and a sync, timed): step 2 is the first reader of any row the
#      service's leader did not read as it came (before migration 00023,
#      every row), and sets its hint bits, so PostgreSQL writes those
#      pages out again after it (docs/performance.md, "Seventh pass" and
#      "Thirteenth pass"); the two rates compared start from the same
#      quiet server;
#   4. runs `audit verify --state` again: only the last million, plus a
#      consistency proof from the state's root, then times 1,000 inclusion
#      proofs again on the settled log (step 3's run right after ingest,
#      while the service still stores tiles and checkpoints), and prints
#      the blocks each proof read from outside shared buffers, by table;
#   5. prints the statistics PostgreSQL holds on audit_entries, so the
#      figures say whether the planner had any;
#   6. with CONTROL=1, sends LAST events into a fresh log on the same
#      server, beside the big one, as a control of the machine's drift.
#
# Inclusion proofs are timed at the client (loadgen) and, from the access
# log, in the service (scripts/proofs-in-service.py).
#
# AUTOVACUUM=on turns the server's autovacuum on for the run (ALTER SYSTEM,
# then RESET on exit: needs the server's superuser in ADMIN_URL); the
# default leaves the server as it is (on the project machine: off).
# SAMPLE=1 samples every process's CPU and run-queue wait once a second
# while the FIRST events are sent (scripts/cpu-sample.py) and prints them
# per entry appended, by 30-second window (scripts/cpu-per-entry.py), with
# the sequencer's time by step and PostgreSQL's WAL, buffers and reads;
# and again while the LAST events are sent, by 5-second window. Each time
# the sampler stops by itself once those events are in the log, so that
# the proofs timed right after them do not share the machine with it.
# MEMORY=5G holds the machine's PostgreSQL server, while the run lasts, to
# that much memory, page cache included, as a database container with a
# memory limit is held (scripts/memory-lib.sh: needs root and a memory
# cgroup controller); the default leaves memory unbounded.
# Needs bin/mediator (make build) and psql.
#
#   FIRST=9000000 LAST=1000000 AUTOVACUUM=off MEMORY=5G CONTROL=1 scripts/log-at-scale.sh
set -euo pipefail
FIRST=${FIRST:-9000000}
LAST=${LAST:-1000000}
SEGMENT=${SEGMENT:-1000000}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-1000}
AUTOVACUUM=${AUTOVACUUM:-}
MEMORY=${MEMORY:-}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
ADDR=127.0.0.1:8092
BIN=${BIN:-bin/mediator}

. "$(dirname "$0")/dev-lib.sh"
. "$(dirname "$0")/memory-lib.sh"
cleanup() {
  stop_dev
  if [ -n "${main_pid:-}" ]; then # stopped during the control: stop the big log's instance too
    DEV_PID=$main_pid
    main_pid=
    stop_dev
  fi
  unbound_memory
  if [ -n "$AUTOVACUUM" ]; then
    psql -X -q "$ADMIN_URL" -c "ALTER SYSTEM RESET autovacuum" -c "SELECT pg_reload_conf()" >/dev/null
  fi
}
trap cleanup EXIT
if [ -n "$AUTOVACUUM" ]; then
  psql -X -q "$ADMIN_URL" -c "ALTER SYSTEM SET autovacuum = $AUTOVACUUM" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
fi
echo "autovacuum: $(psql -X -Atq "$ADMIN_URL" -c 'SHOW autovacuum')" | tee "$OUT/settings.txt"

if [ -n "$MEMORY" ]; then
  bound_memory "$MEMORY" "$ADMIN_URL" >"$OUT/memory.txt"
  tee -a "$OUT/settings.txt" <"$OUT/memory.txt"
fi

export MEDIATOR_DEV_STATE_DIR=$OUT/dev
start_dev "$ADDR" "$OUT/dev.log" ${CPU_PROFILE:+--cpu-profile "$CPU_PROFILE"}

# settle writes out what PostgreSQL and the kernel hold dirty, and says
# how long that took.
settle() {
  local start=$SECONDS dirty
  dirty=$(awk '/^Dirty:/ {print int($2 / 1024)}' /proc/meminfo)
  psql -X -q "$ADMIN_URL" -c CHECKPOINT
  sync
  echo "settled: $dirty MiB dirty, CHECKPOINT and sync in $((SECONDS - start)) s" | tee -a "$OUT/settle.txt"
}

# start_sampler FILE EVENTS samples into OUT/FILE while a loadgen sends
# EVENTS (SAMPLE=1), and stops by itself once they are in the log: the
# proofs timed right after the last ingest then run without it.
SAMPLER=
start_sampler() {
  [ -n "${SAMPLE:-}" ] || return 0
  local size
  size=$(psql -X -Atq "$DATABASE_URL" -c "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries")
  STOP_AT_SIZE=$((size + $2)) METRICS_URL=$MEDIATOR_ADDR METRICS_TOKEN=$("$BIN" dev token --sub sampler --roles metrics) \
    python3 "$(dirname "$0")/cpu-sample.py" "$OUT/$1" &
  SAMPLER=$!
}

# stop_sampler SECONDS RUN FILE stops it and prints RUN's samples per entry
# appended, by window of SECONDS, into OUT/FILE.
stop_sampler() {
  [ -n "$SAMPLER" ] || return 0
  kill "$SAMPLER" 2>/dev/null || true # it may have stopped by itself
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=
  echo "== CPU per entry appended, by $1-second window, the $2 run"
  python3 "$(dirname "$0")/cpu-per-entry.py" "$OUT" "$1" "$2" | tee "$OUT/$3"
}

# statio prints the blocks audit_entries and the tile tables have read
# from outside shared buffers so far (heap, indexes, TOAST and its index),
# then their sizes in blocks (the same three), a line a table, sorted for
# join. PostgreSQL counts a block a table grows by as a block read, so
# the growth is subtracted from the reads below: what is left is read.
statio() {
  psql -X -Atq -F ' ' "$DATABASE_URL" -c "SELECT s.relname, s.heap_blks_read, coalesce(s.idx_blks_read, 0),
    coalesce(s.toast_blks_read, 0) + coalesce(s.tidx_blks_read, 0),
    pg_relation_size(s.relid) / 8192, pg_indexes_size(s.relid) / 8192,
    CASE c.reltoastrelid WHEN 0 THEN 0 ELSE (pg_relation_size(c.reltoastrelid) + pg_indexes_size(c.reltoastrelid)) / 8192 END
    FROM pg_statio_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.relname IN ('audit_entries', 'audit_leaf_tile_parts', 'audit_partial_tiles', 'audit_tiles') ORDER BY s.relname COLLATE \"C\""
}

settle
echo "== $FIRST events"
start_sampler cpu.txt "$FIRST"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --workers "$WORKERS" --batch "$BATCH" --events "$FIRST" \
  --duration 1h --segment "$SEGMENT" 2>&1 | tee "$OUT/first.txt"
stop_sampler 30 first cpu-per-entry.txt
echo "== audit verify --state (full, $FIRST entries)"
/usr/bin/time -f "verify: %e s, max RSS %M KiB" "$BIN" audit verify --state "$OUT/verify-state.json" 2>&1 | tee "$OUT/verify-full.txt"
settle
echo "== $LAST events more"
start_sampler cpu-last.txt "$LAST"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --workers "$WORKERS" --batch "$BATCH" --events "$LAST" \
  --duration 1h --segment "$SEGMENT" --proofs 1000 2>&1 | tee "$OUT/last.txt"
python3 "$(dirname "$0")/proofs-in-service.py" "$OUT/dev.log" 1000 | tee -a "$OUT/last.txt"
stop_sampler 5 last cpu-per-entry-last.txt
echo "== audit verify --state (incremental)"
/usr/bin/time -f "verify: %e s, max RSS %M KiB" "$BIN" audit verify --state "$OUT/verify-state.json" 2>&1 | tee "$OUT/verify-incremental.txt"
echo "== inclusion proofs on the settled log (one batch more, then 1,000 proofs)"
statio >"$OUT/statio-before.txt"
"$BIN" loadgen --url "$MEDIATOR_ADDR" --workers 1 --batch "$BATCH" --events "$BATCH" \
  --duration 1m --proofs 1000 | grep -a "inclusion proofs" | tee "$OUT/proofs-settled.txt"
python3 "$(dirname "$0")/proofs-in-service.py" "$OUT/dev.log" 1000 | tee -a "$OUT/proofs-settled.txt"
sleep 11 # PostgreSQL's backends report their block counts when idle 10 s
statio >"$OUT/statio-after.txt"
echo "blocks read from outside shared buffers per proof (the batch's $BATCH entries included; blocks the tables grew by are not reads):" | tee -a "$OUT/proofs-settled.txt"
LC_ALL=C join "$OUT/statio-before.txt" "$OUT/statio-after.txt" | awk '{
  printf "  %-20s heap %.2f, indexes %.2f, TOAST %.2f (grew by %d, %d and %d blocks)\n", $1,
    (($8-$2)-($11-$5))/1000, (($9-$3)-($12-$6))/1000, (($10-$4)-($13-$7))/1000, $11-$5, $12-$6, $13-$7}' | tee -a "$OUT/proofs-settled.txt"
echo "== what the planner knew of audit_entries"
psql -X "$DATABASE_URL" -c "SELECT reltuples, (SELECT count(*) FROM pg_statistic WHERE starelid = 'audit_entries'::regclass) AS statistics_rows,
  (SELECT last_autovacuum FROM pg_stat_user_tables WHERE relname = 'audit_entries') AS last_autovacuum,
  (SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'audit_entries') AS autovacuums,
  (SELECT last_autoanalyze FROM pg_stat_user_tables WHERE relname = 'audit_entries') AS last_autoanalyze,
  (SELECT autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'audit_entries') AS autoanalyzes
  FROM pg_class WHERE relname = 'audit_entries'" | tee "$OUT/statistics.txt"

first=$(sed -n 's/^events\/s by segment of [0-9]*: \([0-9]*\).*/\1/p' "$OUT/first.txt")
last=$(sed -n 's/^events\/s by segment of [0-9]*:.* \([0-9]*\)$/\1/p' "$OUT/last.txt")
echo "last million against the first: $last / $first = $(python3 -c "print(round($last/$first, 2))")" | tee "$OUT/ratio.txt"

# CONTROL=1 then sends LAST events into a fresh log: a second `mediator
# dev` with a database of its own on the same server, started while the
# big log's instance still runs and its files still fill the page cache,
# after the same settling. Its rate is what a log's first million costs
# on the machine as it is now, so the last million against it is what the
# log's size costs, and the two first millions say how far the machine
# itself moved during the run (docs/performance.md, "Twelfth pass").
if [ -n "${CONTROL:-}" ]; then
  echo "== control: $LAST events into a fresh log on the same server"
  main_pid=$DEV_PID
  # Forget how to reach the big log (DATABASE_URL above all: dev appends
  # to a database it names, and never drops it).
  for v in $("$BIN" dev env | sed -n 's/^export \([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
  export MEDIATOR_DEV_STATE_DIR=$OUT/dev-control
  start_dev 127.0.0.1:8093 "$OUT/dev-control.log"
  settle
  start_sampler cpu-control.txt "$LAST"
  "$BIN" loadgen --url "$MEDIATOR_ADDR" --workers "$WORKERS" --batch "$BATCH" --events "$LAST" \
    --duration 1h --segment "$SEGMENT" 2>&1 | tee "$OUT/control.txt"
  stop_sampler 5 control cpu-per-entry-control.txt
  stop_dev # drops the control's database
  DEV_PID=$main_pid
  main_pid=
  control=$(sed -n 's/^events\/s by segment of [0-9]*: \([0-9]*\).*/\1/p' "$OUT/control.txt")
  echo "a fresh log's first million now against the run's first: $control / $first = $(python3 -c "print(round($control/$first, 2))")" | tee -a "$OUT/ratio.txt"
  echo "last million against a fresh log's first million now: $last / $control = $(python3 -c "print(round($last/$control, 2))")" | tee -a "$OUT/ratio.txt"
fi
if [ -n "$MEMORY" ]; then
  echo "memory: peak $(memory_peak) bytes of $MEMORY" | tee -a "$OUT/settings.txt"
fi
echo "everything is in $OUT"
