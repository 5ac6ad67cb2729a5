#!/usr/bin/env bash
# Install what gatehouse needs to build and test, from Debian's packages. Idempotent.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config python3 clang-format
  libmicrohttpd-dev libjansson-dev libyaml-dev libseccomp-dev libcmocka-dev libssl-dev
  libsqlite3-dev libpcre2-dev libbpf-dev libcap-dev libpq-dev postgresql bpftool
  clang lld wasi-libc libclang-rt-14-dev libclang-rt-14-dev-wasm32 wabt
  bubblewrap runsc libcap2-bin curl util-linux iproute2 procps
  prometheus
  # microvm tier: QEMU, and what sandboxes/microvm/guest/build.sh builds the guest kernel from
  qemu-system-x86 linux-source-6.1 flex bison bc libelf-dev xz-utils binutils
  nodejs # the MCP, provider-format and OpenAPI tests (tests/mcp/) run node clients
  openssl ca-certificates
  chromium chromium-driver  # the approval page's browser test (WebDriver, headless)
)
# npm: Debian's package, unless the installed nodejs already brings its own (nodesource).
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the independent validators of the tests (ajv, in tests/schema_diff/ and
# tests/integration/policy_review/).
# A machine may already have them from elsewhere (a nodejs build that bundles npm): then they
# are left alone, since Debian's npm package would conflict with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  for p in nodejs npm; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
