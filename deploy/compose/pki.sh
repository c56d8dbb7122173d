#!/bin/bash
# A trial certificate authority and a server certificate for each HTTPS
# service: custodians and the pseudonym service must be reached over TLS
# beyond loopback (docs/custodians.md). In production each organisation
# uses its own certificates; the parties that call them trust the issuing
# authority (the mediator's custodians file ca_file, SSL_CERT_FILE).
set -euo pipefail
cd /pki
[ -f ca.pem ] && exit 0
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=mediator trial CA" -keyout ca.key -out ca.pem 2> /dev/null
for host in custodian-acme custodian-bank custodian-trust pseudonym; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
    -keyout "$host.key" -out "$host.csr" 2> /dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" > "$host.ext"
  openssl x509 -req -in "$host.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$host.ext" -out "$host.pem" 2> /dev/null
  rm "$host.csr" "$host.ext"
done
chmod 644 ca.pem ./*.pem
echo "pki: trial CA and certificates made"
