#!/usr/bin/env bash
# Makes sure what the tests need from Debian is installed: the C compiler
# that `go test -race` and the PKCS#11 bindings need, SoftHSM2 (the
# software HSM the PKCS#11 custodian is tested against), and Prometheus's
# promtool (the alert rules are checked with it). On a fresh Debian
# machine, as root, installs what is missing; elsewhere says what to install.
set -euo pipefail

# promtool: only the one program is needed, not a Prometheus server, so it
# is unpacked from Debian's prometheus package into the cache rather than
# installed (no daemon, no service). A promtool on PATH is used as it is.
cache="${MEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mediator}"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$cache/promtool" ]; then
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    echo "toolchain: unpacking promtool from Debian's prometheus package into $cache (one time)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1)
      fi
    fi
    if ls "$tmp"/prometheus_*.deb >/dev/null 2>&1; then
      dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
      mkdir -p "$cache"
      cp "$tmp/x/usr/bin/promtool" "$cache/promtool.tmp" && mv "$cache/promtool.tmp" "$cache/promtool"
    else
      echo "toolchain: could not download Debian's prometheus package for promtool" >&2
      exit 1
    fi
  else
    echo "toolchain: the tests need promtool (Debian: apt-get install prometheus, or put promtool on PATH)" >&2
    exit 1
  fi
fi
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
