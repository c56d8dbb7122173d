#!/bin/bash
# docs/deploy.md step 3, as the mediator's operator: its Vault (mounts,
# Transit keys, policy, AppRole) and its log's verifier key, which goes
# into the genesis draft.
set -euo pipefail
export VAULT_TOKEN=$(cat /vault-init/root-token)
mediator vault bootstrap --secret-id-file /mediator/secret-id --role-id-file /mediator/role-id --replace > /mediator/vault.json
mediator audit verifier-key > /ceremony/log-key
echo "mediator: log verifier key $(cat /ceremony/log-key)"
