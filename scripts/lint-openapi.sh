#!/usr/bin/env bash
# Lints api/openapi.yaml with Spectral's "oas" ruleset (api/.spectral.yaml),
# failing on any warning. The Spectral CLI and every package it depends on
# are pinned in tools/spectral/package-lock.json and installed once, with
# `npm ci`, into the cache outside the tree (keyed by the lock file's hash).
# Node.js and npm come from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "lint: installing nodejs and npm from Debian (one time)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
  else
    echo "lint: the OpenAPI lint needs Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
fi

cache="${MEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mediator}"
lock=tools/spectral/package-lock.json
dir="$cache/spectral-$(sha256sum "$lock" | cut -c1-12)"
if [ ! -x "$dir/node_modules/.bin/spectral" ]; then
  echo "lint: installing the pinned Spectral CLI into $dir (one time)"
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp tools/spectral/package.json "$lock" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  rm -rf "$dir"
  mv "$tmp" "$dir"
fi
"$dir/node_modules/.bin/spectral" lint --ruleset api/.spectral.yaml --fail-severity warn api/openapi.yaml
