#!/usr/bin/env bash
# Build the microVM guest kernel from Debian's linux-source-6.1, or reuse the cached one.
#
#   build.sh          build if missing; print the path of the cached vmlinux
#   build.sh --path   print where the vmlinux for these inputs lives, without building
#
# The result is cached outside the clone, under $GATE_MICROVM_CACHE (default
# /var/cache/gatehouse/microvm), in a directory named by the hash of its inputs: this
# script, kernel.config and the source package's version. Changing any of them builds a
# new kernel next to the old one; an unchanged tree finds its kernel in a few ms. A lock
# serialises concurrent builders (the plain and ASan builds of one CI run), so the kernel
# is built at most once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkg=linux-source-6.1
tarball=/usr/src/$pkg.tar.xz
cache=${GATE_MICROVM_CACHE:-/var/cache/gatehouse/microvm}

version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
if [ -z "$version" ] || [ ! -f "$tarball" ]; then
  echo "build.sh: $pkg is not installed (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
key=$( { cat "$here/build.sh" "$here/kernel.config"; echo "$pkg $version"; } | sha256sum | cut -c1-16)
out=$cache/kernel-$key
if [ "${1:-}" = "--path" ]; then
  echo "$out/vmlinux"
  exit 0
fi
if [ -f "$out/vmlinux" ]; then
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/vmlinux" ]; then # another builder finished while we waited
  echo "$out/vmlinux"
  exit 0
fi
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build.sh: building the guest kernel ($pkg $version, key $key); this takes 10-20 minutes" >&2
start=$(date +%s)
tar -xJf "$tarball" -C "$work"
src=$work/$pkg
cd "$src"
mk() { nice make -s ARCH=x86_64 "$@"; }
mk tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$here/kernel.config" >/dev/null
mk olddefconfig >/dev/null
# Every line of the fragment must have survived olddefconfig (a missing dependency drops an
# option silently otherwise).
bad=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF "$line" .config || { echo "build.sh: not in .config: $line" >&2; bad=1; } ;;
    "# CONFIG_"*" is not set")
      opt=${line#\# }; opt=${opt%% *}
      ! grep -q "^$opt=" .config || { echo "build.sh: still set: $opt" >&2; bad=1; } ;;
  esac
done <"$here/kernel.config"
[ "$bad" = 0 ] || exit 1
mk -j"${GATE_BUILD_JOBS:-2}" vmlinux >/dev/null
mkdir -p "$work/out"
cp vmlinux "$work/out/vmlinux"
cp .config "$work/out/config"
rm -rf "$out"
mv "$work/out" "$out"
echo "build.sh: guest kernel built in $(( $(date +%s) - start )) s: $out/vmlinux" >&2
echo "$out/vmlinux"
