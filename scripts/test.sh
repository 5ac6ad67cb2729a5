#!/usr/bin/env bash
# Install, build and run the whole test suite: once with -Werror, once under ASan+UBSan.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
# The microVM guest kernel: built once into /var/cache/gatehouse (keyed by its inputs), reused after.
sandboxes/microvm/guest/build.sh >/dev/null

echo "== format"
scripts/check-format.sh

echo "== build (plain, -Wall -Wextra -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGATE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
echo "== tests (plain)"
(cd build && ctest --output-on-failure --timeout 1200)

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGATE_WERROR=ON -DGATE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests (ASan + UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure --timeout 1800)
