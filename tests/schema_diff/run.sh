#!/usr/bin/env bash
# The differential test of the argument-schema validator against ajv (see diff.js). ajv and
# ajv-formats come from npm at the versions in package-lock.json, installed once into a cache
# outside the clone keyed by the lock file's hash. Exit 77 (skipped) only when npm or the
# registry cannot be reached; any other failure fails the test.
set -euo pipefail
driver=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are not installed (scripts/install-deps.sh installs them)"
  exit 77
fi
key=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
cache="${GATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse}/schema-diff-$key"
if [ ! -f "$cache/node_modules/.installed" ]; then
  if ! npm ping >/dev/null 2>&1; then
    echo "SKIP: the npm registry cannot be reached (npm ping failed), so ajv cannot be installed"
    exit 77
  fi
  mkdir -p "$(dirname "$cache")"
  tmp=$(mktemp -d "$cache.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp "$here/package.json" "$here/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$tmp/node_modules/.installed"
  rm -rf "$cache"
  mv "$tmp" "$cache"
  trap - EXIT
fi
NODE_PATH="$cache/node_modules" node "$here/diff.js" "$driver"
