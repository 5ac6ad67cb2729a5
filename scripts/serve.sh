#!/usr/bin/env bash
# Install, build and start the gateway on 127.0.0.1:8080 with the example policies.
# State (audit log, approval queue) goes to ./var. Stop with Ctrl-C.
# The README's demo approver gets a random token, made once into var/demo-approver.token (0600).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The microVM guest kernel, for the example microvm policy (the policy set loads all or nothing):
# built once into /var/cache/gatehouse (8-18 minutes on two cores), reused after.
sandboxes/microvm/guest/build.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
mkdir -p -m 0700 var
if [ ! -s var/demo-approver.token ]; then
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' > var/demo-approver.token)
fi
GATEHOUSE_DEMO_APPROVER_TOKEN=$(cat var/demo-approver.token)
export GATEHOUSE_DEMO_APPROVER_TOKEN
exec build/gateway/gatehouse serve --listen 127.0.0.1:8080 --policies build/policies \
  --state-dir var --config gatehouse.yaml "$@"
