#!/bin/sh
# Runs in the Vault image, once per start of one organisation's Vault: on
# the first start it initialises the Vault (one unseal key, for a trial; use
# Shamir shares held by separate people, or auto-unseal with a KMS or HSM,
# in production) and keeps the unseal key and the root token in this
# Vault's own init volume, 0600; on every start it unseals it.
set -eu
export VAULT_ADDR=${VAULT_ADDR:?}
until vault status -format=json > /tmp/status 2>/dev/null || [ $? = 2 ]; do sleep 1; done
umask 077
if grep -q '"initialized": false' /tmp/status; then
  vault operator init -key-shares=1 -key-threshold=1 > /init/init.txt
  sed -n 's/^Unseal Key 1: //p' /init/init.txt > /init/unseal-key
  sed -n 's/^Initial Root Token: //p' /init/init.txt > /init/root-token
  rm /init/init.txt
  # The organisation's setup step (the tools image's user) reads them.
  chown 65532:65532 /init/unseal-key /init/root-token
fi
vault operator unseal "$(cat /init/unseal-key)" > /dev/null
echo "vault at $VAULT_ADDR unsealed"
