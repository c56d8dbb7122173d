#!/bin/bash
# docs/deploy.md steps 6–8, for a trial on one host: the founding team's
# keys (in production each person makes theirs on their own machine), the
# genesis draft, its digest (printed with its readable summary, to compare
# out loud), each custodian's genesis pin and witness section, and the
# mediator's custodians and witnesses files, all from the draft.
set -euo pipefail
cd /ceremony
if [ ! -f genesis ]; then
  for who in lena sam; do [ -f "/people/$who.key" ] || mediator keygen --approver --out "/people/$who.key" > /dev/null; done
  [ -f /people/olga-sign.key ] || mediator keygen --officer --out /people/olga-sign.key > /dev/null
  jq -n --slurpfile c1 acme.entry.json --slurpfile c2 bank.entry.json --slurpfile c3 trust.entry.json \
    --arg lena "$(cat /people/lena.key.pub)" --arg sam "$(cat /people/sam.key.pub)" --arg olga "$(cat /people/olga-sign.key.pub)" \
    --arg ps_key "$(cat pseudonym-key)" --arg origin "$MEDIATOR_LOG_ORIGIN" --arg log_key "$(cat log-key)" '{
    approvers: [{id: "lena", roles: ["legal"], public_key: $lena},
                {id: "sam", roles: ["security"], public_key: $sam},
                {id: "olga", roles: ["officer"], public_key: $olga}],
    custodians: [$c1[0], $c2[0], $c3[0]],
    threshold: 2,
    rule: {min_signers: 2, required_roles: ["legal", "security"]},
    pseudonym: {url: "https://pseudonym:8443", public_keys: [$ps_key]},
    log: {origin: $origin, verifier_keys: [$log_key]}}' > draft.json
  mediator roster genesis --file draft.json > genesis.new
  mv genesis.new genesis
fi
echo "genesis $(cat genesis)"
witness=$(mediator roster witness-config --file draft.json)
for name in acme bank trust; do
  jq --arg g "$(cat genesis)" --argjson w "$witness" '.roster_genesis = $g | .witness = $w' \
    "/custodians/$name/custodian.json" > "/custodians/$name/custodian.json.new"
  mv "/custodians/$name/custodian.json.new" "/custodians/$name/custodian.json"
done
mediator roster custodians-file --file draft.json --tokens /mediator-tokens --ca-file /pki/ca.pem --out /mediator/custodians.json
mediator roster witnesses-file --file draft.json --out /mediator/witnesses.json
cp genesis /mediator/genesis
