#!/usr/bin/env bash
# Makes sure the C compiler that `go test -race` needs is installed. On a
# fresh Debian machine that has Go but no gcc, installs Debian's gcc (root
# only); elsewhere says what to install.
set -euo pipefail
if command -v gcc >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "toolchain: installing gcc and libc6-dev for the race detector (one time)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev
  exit 0
fi
echo "toolchain: gcc is required by 'go test -race'; install gcc (Debian: apt-get install gcc libc6-dev)" >&2
exit 1
