#!/usr/bin/env bash
# Makes sure what the tests need from Debian is installed: the C compiler
# that `go test -race` and the PKCS#11 bindings need, and SoftHSM2 (the
# software HSM the PKCS#11 custodian is tested against). On a fresh Debian
# machine, as root, installs what is missing; elsewhere says what to install.
set -euo pipefail
missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "toolchain: installing ${missing[*]} (one time)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  exit 0
fi
echo "toolchain: the tests need ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
exit 1
