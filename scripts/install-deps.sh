#!/usr/bin/env bash
# Install what gatehouse needs to build and test, from Debian's packages. Idempotent.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config python3 clang-format
  libmicrohttpd-dev libjansson-dev libyaml-dev libseccomp-dev libcmocka-dev libssl-dev
  libsqlite3-dev libpcre2-dev libbpf-dev libcap-dev bpftool
  clang lld wasi-libc libclang-rt-14-dev libclang-rt-14-dev-wasm32 wabt
  bubblewrap runsc libcap2-bin curl util-linux iproute2 procps
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
