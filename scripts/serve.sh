#!/usr/bin/env bash
# Install, build and start the gateway on 127.0.0.1:8080 with the example policies.
# State (audit log, approval queue) goes to ./var. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec build/gateway/gatehouse serve --listen 127.0.0.1:8080 --policies build/policies \
  --state-dir var --config gatehouse.yaml "$@"
