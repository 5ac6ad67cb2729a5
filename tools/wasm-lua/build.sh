#!/usr/bin/env bash
# Build a stock Lua 5.4 interpreter (lua.c and the library, sources unmodified) for
# wasm32-wasi with clang and Debian's wasi-libc, from Debian's lua5.4 source package.
#
# usage: tools/wasm-lua/build.sh            prints the path of lua.wasm on its last line
#
# The result is cached outside the build tree, keyed by its inputs (this directory's files,
# the Lua source tarball and the clang version): $GATE_CACHE_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/gatehouse)/wasm-lua/<key>/lua.wasm. The source package is fetched
# once with apt-get source, through a private apt state directory whose source lists are the
# system's own with their types turned into deb-src (the system's apt configuration is not
# touched). Build configuration: lua_wasi.h (no setjmp in WASI: a Lua error ends the program),
# wasi_stubs.c (tmpfile and system fail), wasi-libc's emulated signal and process clocks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${GATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse}/wasm-lua
mkdir -p "$cache/src"
clang=$(command -v clang || command -v clang-14)
sysroot=/usr # Debian's wasi-libc: /usr/include/wasm32-wasi, /usr/lib/wasm32-wasi
[ -f /usr/lib/wasm32-wasi/libc.a ] || { echo "wasi-libc is not installed" >&2; exit 1; }

fetch_source() {
    local apt="$cache/apt" work
    mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
    rm -f "$apt/sources.list.d/"*
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && sed -n 's/^deb \(.*\)/deb-src \1/p' "$f" >>"$apt/sources.list.d/src.list"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$apt/sources.list.d/$(basename "$f")"
    done
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list.d/src.list"
                -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    touch "$apt/sources.list.d/src.list"
    apt-get "${opts[@]}" -qq update
    work=$(mktemp -d)
    (cd "$work" && apt-get "${opts[@]}" -qq source --download-only lua5.4)
    mv "$work"/lua5.4_*.orig.tar.* "$cache/src/"
    rm -rf "$work"
}

tarball=$(ls "$cache"/src/lua5.4_*.orig.tar.* 2>/dev/null | sort | tail -n1 || true)
if [ -z "$tarball" ]; then
    fetch_source
    tarball=$(ls "$cache"/src/lua5.4_*.orig.tar.* | sort | tail -n1)
fi

key=$( (cat "$here/build.sh" "$here/lua_wasi.h" "$here/wasi_stubs.c" "$here/compat/setjmp.h" \
        "$tarball"; "$clang" --version) | sha256sum | cut -c1-16)
out="$cache/$key"
if [ ! -f "$out/lua.wasm" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tar -xf "$tarball" -C "$work"
    src=$(echo "$work"/lua-5.4*/src)
    cflags=(--target=wasm32-wasi --sysroot="$sysroot" -O2 -I"$here/compat" -include
            "$here/lua_wasi.h" -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS
            -Wno-deprecated-declarations) # liolib.c calls tmpfile, which WASI lacks
    objs=()
    for c in "$src"/*.c "$here/wasi_stubs.c"; do
        [ "$(basename "$c")" = luac.c ] && continue
        o="$work/$(basename "${c%.c}").o"
        "$clang" "${cflags[@]}" -c "$c" -o "$o"
        objs+=("$o")
    done
    mkdir -p "$out"
    "$clang" --target=wasm32-wasi --sysroot="$sysroot" -O2 "${objs[@]}" -o "$work/lua.wasm" \
        -lwasi-emulated-signal -lwasi-emulated-process-clocks -Wl,-z,stack-size=1048576
    mv "$work/lua.wasm" "$out/lua.wasm"
fi
echo "$out/lua.wasm"
