#!/bin/bash
# docs/deploy.md steps 9 and 10, for a trial: an admin proposes the genesis,
# every approver and officer in it signs it (each tool verifies it from the
# pin and pushes the adopted chain to the custodians), and the gateway gets
# its token at the mediator. Tokens come from the trial issuer.
set -euo pipefail
token() { mediator dev token --state-dir /issuer --sub "$1" --roles "$2" --ttl "${3:-1h}"; }
export MEDIATOR_ROSTER_GENESIS=$(cat /ceremony/genesis)
until curl -fsS "$MEDIATOR_ADDR/readyz" > /dev/null; do sleep 1; done
if ! MEDIATOR_TOKEN=$(token soc-1 auditor) mediator roster verify > /dev/null 2>&1; then
  MEDIATOR_TOKEN=$(token ada admin) mediator roster propose --file /ceremony/draft.json --yes
  MEDIATOR_TOKEN=$(token lena approver) mediator roster sign "$MEDIATOR_ROSTER_GENESIS" --key /people/lena.key --yes
  MEDIATOR_TOKEN=$(token sam approver) mediator roster sign "$MEDIATOR_ROSTER_GENESIS" --key /people/sam.key --yes
  MEDIATOR_TOKEN=$(token olga officer) mediator roster sign "$MEDIATOR_ROSTER_GENESIS" --key /people/olga-sign.key --yes
fi
MEDIATOR_TOKEN=$(token soc-1 auditor) mediator roster verify
token gateway-1 ingest,depositor 24h > /gateway/mediator.token
cat > /gateway/agent.json <<JSON
{"listen": "unix:///run/agent/agent.sock", "mediator_url": "$MEDIATOR_ADDR", "token_file": "/gateway/mediator.token",
 "roster_genesis": "$MEDIATOR_ROSTER_GENESIS", "pseudonym_token_file": "/gateway/pseudonym.token",
 "state_file": "/gateway/agent-state.json"}
JSON
