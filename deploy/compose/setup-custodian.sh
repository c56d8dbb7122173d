#!/bin/bash
# docs/deploy.md step 5, as one custodian organisation: NAME, and "hsm"
# when its key lives on an HSM (SoftHSM2 here). Its own Vault, its own
# tokens, its configuration without a genesis yet, and its roster entry,
# which goes to the ceremony; its mediator token goes to the mediator's
# operator.
set -euo pipefail
name=$1 kind=${2:-transit}
cd /custodian
export VAULT_TOKEN=$(cat /vault-init/root-token)
if [ ! -f custodian.json ]; then
  umask 077
  head -c 32 /dev/urandom | base64 > mediator-token
  head -c 32 /dev/urandom | base64 > operator-token
  if [ "$kind" = hsm ]; then
    mediator vault bootstrap --custodian "$name" --hsm --secret-id-file /custodian/secret-id --role-id-file /custodian/role-id > vault.json
    head -c 12 /dev/urandom | base64 | tr '+/' '-_' > hsm-pin
    mkdir -p softhsm/tokens
    printf 'directories.tokendir = /custodian/softhsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' > softhsm/softhsm2.conf
    softhsm2-util --init-token --free --label "$name" --pin "$(cat hsm-pin)" --so-pin "$(head -c 12 /dev/urandom | base64)" > /dev/null
    key='{"pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "'"$name"'", "key_label": "'"$name"'-wrap", "pin_file": "/custodian/hsm-pin"}}'
  else
    mediator vault bootstrap --custodian "$name" --secret-id-file /custodian/secret-id --role-id-file /custodian/role-id > vault.json
    key='{"transit": {"mount": "mediator-transit", "key": "'"$name"'"}}'
  fi
  jq -n --arg name "$name" --arg vault "$VAULT_ADDR" --argjson key "$key" '{
    name: $name, listen: "0.0.0.0:8443",
    tls_cert_file: "/pki/custodian-\($name).pem", tls_key_file: "/pki/custodian-\($name).key",
    vault: {addr: $vault, role_id_file: "/custodian/role-id", secret_id_file: "/custodian/secret-id"},
    kv: {mount: "mediator-kv", prefix: "custodians/\($name)"},
    mediator_token_file: "/custodian/mediator-token", operator_token_file: "/custodian/operator-token",
    roster_genesis: "", min_retention: "2160h"} + $key' > custodian.json
fi
mediator custodian init --config custodian.json --url "https://custodian-$name:8443" > "/ceremony/$name.entry.json"
cp mediator-token "/mediator-tokens/$name-token"
echo "custodian $name: entry written"
