#!/bin/bash
# docs/deploy.md step 4, as the pseudonym service's organisation: its VOPRF
# key, its callers' tokens (the gateway's goes to the gateway, the
# officers' to the officers), and its public key for the genesis draft.
set -euo pipefail
cd /pseudonym
umask 077
[ -f oprf.key ] || mediator pseudonym keygen --out oprf.key > /ceremony/pseudonym-key
for caller in gateway-1 officers; do
  [ -f "$caller.token" ] || head -c 32 /dev/urandom | base64 > "$caller.token"
done
cp gateway-1.token /gateway/pseudonym.token
cat > config.json <<JSON
{"listen": "0.0.0.0:8443", "tls_cert_file": "/pki/pseudonym.pem", "tls_key_file": "/pki/pseudonym.key",
 "key_file": "/pseudonym/oprf.key",
 "callers": [{"name": "gateway-1", "token_file": "/pseudonym/gateway-1.token"},
             {"name": "officers", "token_file": "/pseudonym/officers.token"}]}
JSON
echo "pseudonym: key $(cat /ceremony/pseudonym-key)"
