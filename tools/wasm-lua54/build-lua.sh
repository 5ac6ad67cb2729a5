#!/usr/bin/env bash
# build-lua.sh OUT.wasm: the stock Lua 5.4 interpreter (lua.c and the library, unmodified),
# compiled with clang --target=wasm32-wasi, from the source Debian ships (source package
# lua5.4). The source and the result are cached outside the build tree, keyed by the source
# tarball and this directory's files, under ${GATE_CACHE:-~/.cache/gatehouse}/wasm-lua54.
# Only the ISO C configuration is used; what it needs and wasi-libc lacks comes from
# include/setjmp.h (a Lua error traps) and wasi_compat.c (no shell, no tmpfile).
# Exits 0 without writing OUT (saying why) when the source cannot be had.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
cache=${GATE_CACHE:-${HOME:-/root}/.cache/gatehouse}/wasm-lua54
mkdir -p "$cache"
src_tgz=$(ls "$cache"/lua5.4_*.orig.tar.gz 2>/dev/null | tail -1 || true)
if [ -z "$src_tgz" ]; then
  # Debian's source package, through a private apt configuration: the machine's own
  # sources list (deb lines only) is left alone.
  apt_dir=$cache/apt
  mkdir -p "$apt_dir/lists/partial"
  echo "deb-src http://deb.debian.org/debian bookworm main" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::Lists=$apt_dir/lists" -o "APT::Sandbox::User=root")
  if ! (apt-get "${apt_opts[@]}" update -qq &&
        cd "$cache" && apt-get "${apt_opts[@]}" source --download-only -qq lua5.4) >"$cache/fetch.log" 2>&1; then
    echo "wasm-lua54: cannot fetch Debian's lua5.4 source (see $cache/fetch.log); Lua is not built"
    exit 0
  fi
  src_tgz=$(ls "$cache"/lua5.4_*.orig.tar.gz | tail -1)
fi
key=$(cat "$src_tgz" "$here"/build-lua.sh "$here"/include/setjmp.h "$here"/wasi_compat.c |
      sha256sum | cut -c1-16)
if [ ! -s "$cache/lua-$key.wasm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$src_tgz" -C "$work"
  srcdir=$(echo "$work"/lua-*/src)
  srcs=$(ls "$srcdir"/*.c | grep -v '/luac\.c$')
  # L_tmpnam: wasi-libc declares tmpnam but not its buffer size.
  # -Wno-deprecated-declarations: wasi-libc marks tmpfile/tmpnam, which wasi_compat.c provides.
  ${WASI_CC:-clang} --target=wasm32-wasi -O2 -Wno-deprecated-declarations -I"$here/include" -DL_tmpnam=32 \
    -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -o "$work/lua.wasm" \
    $srcs "$here/wasi_compat.c" -lwasi-emulated-signal -lwasi-emulated-process-clocks
  mv "$work/lua.wasm" "$cache/lua-$key.wasm"
fi
cp "$cache/lua-$key.wasm" "$out"
