#!/usr/bin/env bash
# Fail if any tracked C file differs from what clang-format (with the checked-in .clang-format)
# makes of it. `cmake --build build --target format` applies it.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h')
if ((${#bad[@]})); then
  echo "clang-format: ${#bad[@]} file(s) need formatting:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "clang-format: clean"
