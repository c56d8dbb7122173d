#!/usr/bin/env bash
# bench-release-many.sh: time a lawful release of many keys of one
# conversation over HTTP, as docs/performance.md reports it (issue 21).
#
# It starts `mediator dev` with its own state dir (its own database and
# Vault) on 127.0.0.1:8090, escrows KEYS keys under one conversation with
# the load generator, files a request for that conversation as the dev
# officer, approves it as dev-legal and dev-security, and releases it
# with `mediator request release` under /usr/bin/time -v. It stops the
# dev instance at the end. Needs bin/mediator (make build).
#
#   KEYS=100000 scripts/bench-release-many.sh      # about 25 minutes on 2 vCPU
set -euo pipefail
KEYS=${KEYS:-100000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export MEDIATOR_DEV_STATE_DIR=${MEDIATOR_DEV_STATE_DIR:-$OUT/dev}
STATE=$MEDIATOR_DEV_STATE_DIR
ADDR=127.0.0.1:8090
BIN=${BIN:-bin/mediator}

MEDIATOR_RATE_DEPOSIT=0 setsid "$BIN" dev --addr "$ADDR" >"$OUT/dev.log" 2>&1 &
DEV=$!
trap 'kill -- -$DEV 2>/dev/null || kill $DEV 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf "http://$ADDR/readyz" >/dev/null && break
  sleep 1
done
curl -sf "http://$ADDR/readyz" >/dev/null || { echo "mediator dev did not get ready; see $OUT/dev.log" >&2; exit 1; }
eval "$("$BIN" dev env)"
export MEDIATOR_URL=http://$ADDR MEDIATOR_ADDR=$ADDR

run=many$$
# Through the dev agent, so that the conversation's pseudonym is the one
# the officer's CLI computes from "$run-0" through the pseudonym service.
echo "escrowing $KEYS keys under conversation $run-0"
"$BIN" loadgen --deposits --agent "$MEDIATOR_AGENT_URL" --conversations 1 --run-id "$run" --events "$KEYS" \
  --duration 10m --workers 64 | tee "$OUT/deposits.txt"

"$BIN" keygen --recipient --out "$OUT/officer.key" >/dev/null
OFF=$("$BIN" dev token --sub dev-officer --roles officer --ttl 4h)
ID=$(MEDIATOR_TOKEN=$OFF "$BIN" request create --case case-many --legal-basis court_order --warrant W-1 \
  --jurisdiction US --justification "See the case file." --conversation "$run-0" \
  --from "$(date -u -d '-3 hour' +%FT%TZ)" --to "$(date -u -d '+1 hour' +%FT%TZ)" \
  --recipient "$OUT/officer.key.pub" --key "$STATE/dev-officer.key" 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for a in dev-legal dev-security; do
  MEDIATOR_TOKEN=$("$BIN" dev token --sub $a --roles approver) \
    "$BIN" request approve "$ID" --key "$STATE/$a.key" --yes >/dev/null 2>&1
done
echo "releasing request $ID"
MEDIATOR_TOKEN=$OFF /usr/bin/time -v "$BIN" request release "$ID" --key "$OUT/officer.key" \
  --out "$OUT/keys.ndjson" 2>"$OUT/release.txt" | tee -a "$OUT/release.txt"
grep -E 'Elapsed|Maximum resident' "$OUT/release.txt"
echo "keys opened: $(wc -l <"$OUT/keys.ndjson"); release calls (POST) by status:"
grep '"method":"POST","route":"/v1/access-requests/{id}/release"' "$OUT/dev.log" |
  python3 -c 'import json,sys,collections; print(dict(collections.Counter(json.loads(l)["status"] for l in sys.stdin)))'
echo "everything is in $OUT"
