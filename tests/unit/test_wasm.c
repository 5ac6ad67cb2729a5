/* test_wasm.c: the WebAssembly engine and tier.
 *
 * Decoder (malformed binaries of each kind), validator messages, every trap, resource caps,
 * the W rows of SECURITY-PROBES.md (W1 out-of-bounds, W2 growth, W3 runaway code, W4 spec
 * traps, W5 host ABI, W6 WASI paths) and the sandbox row. The test modules are embedded as
 * bytes; their WebAssembly text is in the comment above each group.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "wasi.h"
#include "wasmrt.h"
#include "../../sandboxes/wasm/wasm_tier.h"

extern const struct sbx_ops sbx_wasm_ops;

/* traps.wat:
 * (module
 *   (type $ii (func (param i32) (result i32)))  (type $vl (func (result i64)))
 *   (memory 1 4)  (table 2 10 funcref)  (elem (i32.const 0) $id)
 *   (func $id (type $ii) (local.get 0))
 *   (func (export "unreachable") unreachable)
 *   (func (export "div_s") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
 *   (func (export "rem_u") (param i32 i32) (result i32) (i32.rem_u (local.get 0) (local.get 1)))
 *   (func (export "trunc") (param f32) (result i32) (i32.trunc_f32_s (local.get 0)))
 *   (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
 *   (func (export "load_off") (param i32) (result i32) (i32.load offset=4294967295 (local.get 0)))
 *   (func (export "store") (param i32) (i32.store (local.get 0) (i32.const 1)))
 *   (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
 *   (func (export "size") (result i32) (memory.size))
 *   (func (export "tgrow") (param i32) (result i32) (table.grow 0 (ref.null func) (local.get 0)))
 *   (func (export "callind") (param i32) (result i32) (call_indirect (type $ii) (i32.const 7)
 * (local.get 0))) (func (export "callind_wrong") (param i32) (result i64) (call_indirect (type $vl)
 * (local.get 0))) (func $recurse (export "recurse") (param i32) (result i32) (i32.add (call
 * $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1))) (func (export "spin") (loop (br
 * 0))) (func (export "fill") (param i32 i32) (memory.fill (local.get 0) (i32.const 0) (local.get
 * 1))))
 *
 * wasi.wat: imports fd_write and path_open; memory 1 page; data "../etc/passwd" at 16,
 * "/etc/passwd" at 48, "link/passwd" at 80, "ok.txt" at 112;
 *   write_wrap: fd_write(1, iovs=0xfffffff8, 2, 8)        (iovec array wraps past 2^32)
 *   write_oob:  fd_write(1, iovs=0 -> {0xffff0000, 0x20000}, 1, 8)  (buffer out of memory)
 *   open(ptr, len, oflags): path_open(3, 0, ptr, len, oflags, rights, 0, 0, fd_out=200)
 * hello.wat: _start writes "hi\n" to stdout and calls proc_exit(3).
 * trap_start.wat: _start is `unreachable`.  spin_start.wat: _start is `(loop (br 0))`.
 * badimport.wat: imports env.system.
 * ws_start.wat: _start path_opens "../escape.txt" beneath fd 3 (must fail, else exit 99),
 *   creates "f.txt" (exit 100+errno on failure), writes "x\n" to it and exits with fd_write's
 *   errno.
 */
static const uint8_t mod_badimport[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x09, 0x02, 0x60, 0x01, 0x7f, 0x01,
    0x7f, 0x60, 0x00, 0x00, 0x02, 0x0e, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x06, 0x73, 0x79, 0x73,
    0x74, 0x65, 0x6d, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01, 0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73,
    0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
};
static const uint8_t mod_hello[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x10, 0x03, 0x60, 0x04, 0x7f, 0x7f, 0x7f,
    0x7f, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00, 0x02, 0x46, 0x02, 0x16, 0x77, 0x61,
    0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76,
    0x69, 0x65, 0x77, 0x31, 0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x00, 0x16,
    0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72,
    0x65, 0x76, 0x69, 0x65, 0x77, 0x31, 0x09, 0x70, 0x72, 0x6f, 0x63, 0x5f, 0x65, 0x78, 0x69, 0x74,
    0x00, 0x01, 0x03, 0x02, 0x01, 0x02, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d,
    0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x02,
    0x0a, 0x13, 0x01, 0x11, 0x00, 0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x20, 0x10, 0x00, 0x1a,
    0x41, 0x03, 0x10, 0x01, 0x0b, 0x0b, 0x16, 0x02, 0x00, 0x41, 0x00, 0x0b, 0x08, 0x10, 0x00, 0x00,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x41, 0x10, 0x0b, 0x03, 0x68, 0x69, 0x0a,
};
static const uint8_t mod_spin_start[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d,
    0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74,
    0x00, 0x00, 0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b,
};
static const uint8_t mod_trap_start[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00,
    0x00, 0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02,
    0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74,
    0x61, 0x72, 0x74, 0x00, 0x00, 0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b,
};
static const uint8_t mod_traps[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x2a, 0x09, 0x60, 0x01, 0x7f, 0x01, 0x7f,
    0x60, 0x00, 0x01, 0x7e, 0x60, 0x00, 0x00, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x01, 0x7d,
    0x01, 0x7f, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x01, 0x7e, 0x60,
    0x02, 0x7f, 0x7f, 0x00, 0x03, 0x11, 0x10, 0x00, 0x02, 0x03, 0x03, 0x04, 0x00, 0x00, 0x05, 0x00,
    0x06, 0x00, 0x00, 0x07, 0x00, 0x02, 0x08, 0x04, 0x05, 0x01, 0x70, 0x01, 0x02, 0x0a, 0x05, 0x04,
    0x01, 0x01, 0x01, 0x04, 0x07, 0x89, 0x01, 0x0f, 0x0b, 0x75, 0x6e, 0x72, 0x65, 0x61, 0x63, 0x68,
    0x61, 0x62, 0x6c, 0x65, 0x00, 0x01, 0x05, 0x64, 0x69, 0x76, 0x5f, 0x73, 0x00, 0x02, 0x05, 0x72,
    0x65, 0x6d, 0x5f, 0x75, 0x00, 0x03, 0x05, 0x74, 0x72, 0x75, 0x6e, 0x63, 0x00, 0x04, 0x04, 0x6c,
    0x6f, 0x61, 0x64, 0x00, 0x05, 0x08, 0x6c, 0x6f, 0x61, 0x64, 0x5f, 0x6f, 0x66, 0x66, 0x00, 0x06,
    0x05, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x00, 0x07, 0x04, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x08, 0x04,
    0x73, 0x69, 0x7a, 0x65, 0x00, 0x09, 0x05, 0x74, 0x67, 0x72, 0x6f, 0x77, 0x00, 0x0a, 0x07, 0x63,
    0x61, 0x6c, 0x6c, 0x69, 0x6e, 0x64, 0x00, 0x0b, 0x0d, 0x63, 0x61, 0x6c, 0x6c, 0x69, 0x6e, 0x64,
    0x5f, 0x77, 0x72, 0x6f, 0x6e, 0x67, 0x00, 0x0c, 0x07, 0x72, 0x65, 0x63, 0x75, 0x72, 0x73, 0x65,
    0x00, 0x0d, 0x04, 0x73, 0x70, 0x69, 0x6e, 0x00, 0x0e, 0x04, 0x66, 0x69, 0x6c, 0x6c, 0x00, 0x0f,
    0x09, 0x07, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x01, 0x00, 0x0a, 0x87, 0x01, 0x10, 0x04, 0x00, 0x20,
    0x00, 0x0b, 0x03, 0x00, 0x00, 0x0b, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6d, 0x0b, 0x07, 0x00,
    0x20, 0x00, 0x20, 0x01, 0x70, 0x0b, 0x05, 0x00, 0x20, 0x00, 0xa8, 0x0b, 0x07, 0x00, 0x20, 0x00,
    0x28, 0x02, 0x00, 0x0b, 0x0b, 0x00, 0x20, 0x00, 0x28, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0b,
    0x09, 0x00, 0x20, 0x00, 0x41, 0x01, 0x36, 0x02, 0x00, 0x0b, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00,
    0x0b, 0x04, 0x00, 0x3f, 0x00, 0x0b, 0x09, 0x00, 0xd0, 0x70, 0x20, 0x00, 0xfc, 0x0f, 0x00, 0x0b,
    0x09, 0x00, 0x41, 0x07, 0x20, 0x00, 0x11, 0x00, 0x00, 0x0b, 0x07, 0x00, 0x20, 0x00, 0x11, 0x01,
    0x00, 0x0b, 0x0c, 0x00, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x10, 0x0d, 0x41, 0x01, 0x6a, 0x0b, 0x07,
    0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, 0x0b, 0x00, 0x20, 0x00, 0x41, 0x00, 0x20, 0x01, 0xfc,
    0x0b, 0x00, 0x0b,
};
static const uint8_t mod_wasi[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x21, 0x04, 0x60, 0x04, 0x7f, 0x7f, 0x7f,
    0x7f, 0x01, 0x7f, 0x60, 0x09, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7e, 0x7e, 0x7f, 0x7f, 0x01, 0x7f,
    0x60, 0x00, 0x01, 0x7f, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x02, 0x46, 0x02, 0x16, 0x77,
    0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65,
    0x76, 0x69, 0x65, 0x77, 0x31, 0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x00,
    0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70,
    0x72, 0x65, 0x76, 0x69, 0x65, 0x77, 0x31, 0x09, 0x70, 0x61, 0x74, 0x68, 0x5f, 0x6f, 0x70, 0x65,
    0x6e, 0x00, 0x01, 0x03, 0x04, 0x03, 0x02, 0x02, 0x03, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x2a,
    0x04, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x0a, 0x77, 0x72, 0x69, 0x74, 0x65,
    0x5f, 0x77, 0x72, 0x61, 0x70, 0x00, 0x02, 0x09, 0x77, 0x72, 0x69, 0x74, 0x65, 0x5f, 0x6f, 0x6f,
    0x62, 0x00, 0x03, 0x04, 0x6f, 0x70, 0x65, 0x6e, 0x00, 0x04, 0x0a, 0x49, 0x03, 0x0c, 0x00, 0x41,
    0x01, 0x41, 0x78, 0x41, 0x02, 0x41, 0x08, 0x10, 0x00, 0x0b, 0x1e, 0x00, 0x41, 0x00, 0x41, 0x80,
    0x80, 0x7c, 0x36, 0x02, 0x00, 0x41, 0x04, 0x41, 0x80, 0x80, 0x08, 0x36, 0x02, 0x00, 0x41, 0x01,
    0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x0b, 0x1b, 0x00, 0x41, 0x03, 0x41, 0x00, 0x20,
    0x00, 0x20, 0x01, 0x20, 0x02, 0x42, 0xff, 0xff, 0xff, 0xff, 0x07, 0x42, 0x00, 0x41, 0x00, 0x41,
    0xc8, 0x01, 0x10, 0x01, 0x0b, 0x0b, 0x40, 0x04, 0x00, 0x41, 0x10, 0x0b, 0x0d, 0x2e, 0x2e, 0x2f,
    0x65, 0x74, 0x63, 0x2f, 0x70, 0x61, 0x73, 0x73, 0x77, 0x64, 0x00, 0x41, 0x30, 0x0b, 0x0b, 0x2f,
    0x65, 0x74, 0x63, 0x2f, 0x70, 0x61, 0x73, 0x73, 0x77, 0x64, 0x00, 0x41, 0xd0, 0x00, 0x0b, 0x0b,
    0x6c, 0x69, 0x6e, 0x6b, 0x2f, 0x70, 0x61, 0x73, 0x73, 0x77, 0x64, 0x00, 0x41, 0xf0, 0x00, 0x0b,
    0x06, 0x6f, 0x6b, 0x2e, 0x74, 0x78, 0x74,
};
static const uint8_t mod_ws_start[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x1d, 0x04, 0x60, 0x09, 0x7f, 0x7f, 0x7f,
    0x7f, 0x7f, 0x7e, 0x7e, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f,
    0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00, 0x02, 0x69, 0x03, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f,
    0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65, 0x77,
    0x31, 0x09, 0x70, 0x61, 0x74, 0x68, 0x5f, 0x6f, 0x70, 0x65, 0x6e, 0x00, 0x00, 0x16, 0x77, 0x61,
    0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76,
    0x69, 0x65, 0x77, 0x31, 0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x01, 0x16,
    0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72,
    0x65, 0x76, 0x69, 0x65, 0x77, 0x31, 0x09, 0x70, 0x72, 0x6f, 0x63, 0x5f, 0x65, 0x78, 0x69, 0x74,
    0x00, 0x02, 0x03, 0x02, 0x01, 0x03, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d,
    0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x03,
    0x0a, 0x66, 0x01, 0x64, 0x01, 0x01, 0x7f, 0x41, 0x03, 0x41, 0x00, 0x41, 0x20, 0x41, 0x0d, 0x41,
    0x01, 0x42, 0xff, 0xff, 0xff, 0xff, 0x07, 0x42, 0x00, 0x41, 0x00, 0x41, 0xc8, 0x01, 0x10, 0x00,
    0x45, 0x04, 0x40, 0x41, 0xe3, 0x00, 0x10, 0x02, 0x0b, 0x41, 0x03, 0x41, 0x00, 0x41, 0x10, 0x41,
    0x05, 0x41, 0x01, 0x42, 0xff, 0xff, 0xff, 0xff, 0x07, 0x42, 0x00, 0x41, 0x00, 0x41, 0xc8, 0x01,
    0x10, 0x00, 0x21, 0x00, 0x20, 0x00, 0x04, 0x40, 0x41, 0xe4, 0x00, 0x20, 0x00, 0x6a, 0x10, 0x02,
    0x0b, 0x41, 0xc8, 0x01, 0x28, 0x02, 0x00, 0x41, 0xc0, 0x00, 0x41, 0x01, 0x41, 0xcc, 0x01, 0x10,
    0x01, 0x21, 0x00, 0x20, 0x00, 0x10, 0x02, 0x0b, 0x0b, 0x33, 0x04, 0x00, 0x41, 0x10, 0x0b, 0x05,
    0x66, 0x2e, 0x74, 0x78, 0x74, 0x00, 0x41, 0x20, 0x0b, 0x0d, 0x2e, 0x2e, 0x2f, 0x65, 0x73, 0x63,
    0x61, 0x70, 0x65, 0x2e, 0x74, 0x78, 0x74, 0x00, 0x41, 0xc0, 0x00, 0x0b, 0x08, 0x50, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x41, 0xd0, 0x00, 0x0b, 0x02, 0x78, 0x0a,
};
/* loopparam.wat: a value produced before a loop with a parameter and stored by local.set at
 * the loop's start must be stored again on every back-edge (regression: the store was folded
 * into the producing instruction, before the loop).
 * (func (export "loopparam") (param $n i32) (result i32) (local $acc i32)
 *   (i32.add (local.get $n) (i32.const 0))
 *   (loop $l (param i32)
 *     (local.set $acc)
 *     (local.set $n (i32.sub (local.get $n) (i32.const 1)))
 *     (i32.add (local.get $acc) (i32.const 10))
 *     (br_if $l (local.get $n))
 *     (local.set $acc))
 *   (local.get $acc)) */
static const uint8_t mod_loopparam[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f,
    0x60, 0x01, 0x7f, 0x00, 0x03, 0x02, 0x01, 0x00, 0x07, 0x0d, 0x01, 0x09, 0x6c, 0x6f, 0x6f, 0x70,
    0x70, 0x61, 0x72, 0x61, 0x6d, 0x00, 0x00, 0x0a, 0x24, 0x01, 0x22, 0x01, 0x01, 0x7f, 0x20, 0x00,
    0x41, 0x00, 0x6a, 0x03, 0x01, 0x21, 0x01, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, 0x20, 0x01,
    0x41, 0x0a, 0x6a, 0x20, 0x00, 0x0d, 0x00, 0x21, 0x01, 0x0b, 0x20, 0x01, 0x0b,
};
/* flood_start.wat: _start writes 256-byte blocks to stdout forever. */
static const uint8_t mod_flood_start[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x02, 0x60, 0x04, 0x7f, 0x7f, 0x7f,
    0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00, 0x02, 0x23, 0x01, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73,
    0x6e, 0x61, 0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65, 0x77, 0x31,
    0x08, 0x66, 0x64, 0x5f, 0x77, 0x72, 0x69, 0x74, 0x65, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01, 0x05,
    0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00,
    0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x14, 0x01, 0x12, 0x00, 0x03, 0x40,
    0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, 0x0c, 0x00, 0x0b, 0x0b, 0x0b,
    0x0e, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x08, 0x10, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
};

/* ---- helpers ------------------------------------------------------------------------ */
struct rt {
    struct wasm_module *mod;
    struct wasm_store *store;
    struct wasm_instance *inst;
};

static void rt_open(struct rt *r, const uint8_t *bytes, size_t len, uint32_t max_pages,
                    uint64_t fuel)
{
    struct gate_error err = {0};
    struct wasm_limits_cfg lim;
    enum wasm_trap trap;
    assert_int_equal(wasm_module_load(bytes, len, &r->mod, &err), 0);
    wasm_limits_default(&lim);
    lim.max_mem_pages = max_pages;
    lim.max_table_elems = 5;
    lim.max_call_depth = 1000;
    lim.fuel = fuel;
    r->store = wasm_store_new(&lim);
    assert_non_null(r->store);
    assert_int_equal(wasm_instantiate(r->store, r->mod, NULL, 0, &r->inst, &trap, &err), 0);
}

static void rt_close(struct rt *r)
{
    wasm_store_free(r->store);
    wasm_module_free(r->mod);
}

static enum wasm_trap call(struct rt *r, const char *name, uint64_t *slots)
{
    struct wasm_extern e;
    assert_int_equal(wasm_instance_export(r->inst, name, &e), 0);
    assert_int_equal(e.kind, WASM_EXT_FUNC);
    return wasm_call(r->store, e.u.func, slots);
}

static void expect_trap(struct rt *r, const char *name, uint64_t a0, uint64_t a1,
                        enum wasm_trap want)
{
    uint64_t s[4] = {a0, a1};
    enum wasm_trap t = call(r, name, s);
    if (t != want)
        fail_msg("%s: trap %s, expected %s", name, wasm_trap_name(t), wasm_trap_name(want));
}

static uint32_t call_i32(struct rt *r, const char *name, uint64_t a0, uint64_t a1)
{
    uint64_t s[4] = {a0, a1};
    assert_int_equal(call(r, name, s), WASM_TRAP_NONE);
    return (uint32_t)s[0];
}

static void expect_invalid(const uint8_t *bytes, size_t len, const char *needle)
{
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    if (wasm_module_load(bytes, len, &m, &err) == 0) {
        wasm_module_free(m);
        fail_msg("module loaded, expected an error containing '%s'", needle);
    }
    if (!strstr(err.msg, needle)) fail_msg("error '%s' does not contain '%s'", err.msg, needle);
    assert_int_equal(err.code, GATE_E_WASM_INVALID);
}

/* ---- decoder and validator ---------------------------------------------------------- */
#define HDR 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00

struct bad_module {
    const char *what;
    uint8_t bytes[64];
    size_t len;
    const char *needle;
};

static const struct bad_module bad_modules[] = {
    {"magic", {0x00, 0x61, 0x73, 0x6e, 0x01, 0x00, 0x00, 0x00}, 8, "magic header"},
    {"version", {0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00}, 8, "unknown binary version"},
    {"short header", {0x00, 0x61, 0x73, 0x6d, 0x01}, 5, "unknown binary version"},
    {"section past the end", {HDR, 0x01, 0x05, 0x01}, 11, "length out of bounds"},
    {"LEB128 too long",
     {HDR, 0x01, 0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00},
     17,
     "integer representation too long"},
    {"LEB128 too large",
     {HDR, 0x01, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00},
     16,
     "integer too large"},
    {"section order", {HDR, 0x03, 0x01, 0x00, 0x01, 0x01, 0x00}, 14, "out of order"},
    {"section id", {HDR, 0x0d, 0x00}, 10, "malformed section id"},
    {"count beyond the section", {HDR, 0x01, 0x02, 0xe8, 0x07}, 12, "count"},
    {"function without code",
     {HDR, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00},
     18,
     "inconsistent lengths"},
    {"too many locals",
     {HDR,  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x0a,
      0x0a, 0x01, 0x08, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x0b},
     30,
     "too many locals"},
    {"SIMD lane index out of range", /* (i8x16.extract_lane_s 16 (v128.const ...)) */
     {HDR,  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x1a,
      0x01, 0x18, 0x00, 0xfd, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x15, 0x10, 0x1a, 0x0b},
     46,
     "invalid lane index"},
    {"bad value type", {HDR, 0x01, 0x05, 0x01, 0x60, 0x01, 0x55, 0x00}, 15, "malformed value type"},
    {"type mismatch",
     {HDR,  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02,
      0x01, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x42, 0x00, 0x0b},
     27,
     "validate: func 0: type mismatch at offset 0x"},
    {"reserved SIMD opcode",
     {HDR,  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01,
      0x00, 0x0a, 0x07, 0x01, 0x05, 0x00, 0xfd, 0x9a, 0x01, 0x0b},
     27,
     "illegal opcode 0xfd 154"},
    {"unknown opcode",
     {HDR, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x05, 0x01, 0x03, 0x00,
      0xff, 0x0b},
     25,
     "illegal opcode"},
    {"missing end",
     {HDR, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00,
      0x01},
     24,
     "END opcode expected"},
};

static void test_wasm_decoder_rejects_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_modules) / sizeof(bad_modules[0]); i++) {
        print_message("malformed: %s\n", bad_modules[i].what);
        expect_invalid(bad_modules[i].bytes, bad_modules[i].len, bad_modules[i].needle);
    }
}

static void test_wasm_decoder_rejects_every_truncation(void **state)
{
    (void)state;
    /* Every proper prefix of a valid module is refused without reading past its end. */
    for (size_t len = 0; len < sizeof(mod_traps); len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, mod_traps, len);
        struct wasm_module *m = NULL;
        struct gate_error err = {0};
        int rc = wasm_module_load(copy, len, &m, &err);
        if (rc == 0) wasm_module_free(m);
        free(copy);
        if (len < 8) assert_true(rc < 0);
    }
}

/* ---- traps (W4), bounds (W1), growth (W2), runaway code (W3) -------------------------- */
static void test_wasm_traps_by_name(void **state)
{
    (void)state;
    struct rt r;
    float big = 3e9f, nan = __builtin_nanf("");
    uint32_t big_bits, nan_bits;
    memcpy(&big_bits, &big, 4);
    memcpy(&nan_bits, &nan, 4);
    rt_open(&r, mod_traps, sizeof(mod_traps), 2, 0);
    expect_trap(&r, "unreachable", 0, 0, WASM_TRAP_UNREACHABLE);
    expect_trap(&r, "div_s", 1, 0, WASM_TRAP_DIV_ZERO);
    expect_trap(&r, "div_s", 0x80000000u, 0xffffffffu, WASM_TRAP_INT_OVERFLOW);
    expect_trap(&r, "rem_u", 5, 0, WASM_TRAP_DIV_ZERO);
    expect_trap(&r, "trunc", nan_bits, 0, WASM_TRAP_INVALID_CONV);
    expect_trap(&r, "trunc", big_bits, 0, WASM_TRAP_INT_OVERFLOW);
    assert_int_equal(call_i32(&r, "callind", 0, 0), 7);
    expect_trap(&r, "callind", 1, 0, WASM_TRAP_UNINIT_ELEM);
    expect_trap(&r, "callind", 5, 0, WASM_TRAP_UNDEF_ELEM);
    expect_trap(&r, "callind_wrong", 0, 0, WASM_TRAP_INDIRECT_MISMATCH);
    assert_string_equal(wasm_trap_name(WASM_TRAP_DIV_ZERO), "integer divide by zero");
    rt_close(&r);
}

static void test_wasm_memory_out_of_bounds_traps(void **state)
{
    (void)state;
    struct rt r;
    rt_open(&r, mod_traps, sizeof(mod_traps), 2, 0);
    assert_int_equal(call_i32(&r, "load", 65536 - 4, 0), 0);
    expect_trap(&r, "load", 65536, 0, WASM_TRAP_MEM_OOB);       /* at memory.size */
    expect_trap(&r, "load", 65536 - 3, 0, WASM_TRAP_MEM_OOB);   /* straddles the end */
    expect_trap(&r, "load", 0xffffffffu, 0, WASM_TRAP_MEM_OOB); /* 2^32 - 1 */
    expect_trap(&r, "load_off", 1, 0, WASM_TRAP_MEM_OOB);       /* address + offset > 2^32 */
    expect_trap(&r, "store", 65536, 0, WASM_TRAP_MEM_OOB);
    expect_trap(&r, "fill", 65000, 1000, WASM_TRAP_MEM_OOB);
    rt_close(&r);
}

static void test_wasm_growth_past_cap_returns_minus_one(void **state)
{
    (void)state;
    struct rt r;
    rt_open(&r, mod_traps, sizeof(mod_traps), 2, 0); /* module max 4 pages, store cap 2 */
    assert_int_equal(call_i32(&r, "grow", 1, 0), 1);
    assert_int_equal(call_i32(&r, "grow", 1, 0), 0xffffffffu);
    assert_int_equal(call_i32(&r, "grow", 0x10000, 0), 0xffffffffu);
    assert_int_equal(call_i32(&r, "size", 0, 0), 2);
    assert_int_equal(call_i32(&r, "load", 2 * 65536 - 4, 0), 0);
    expect_trap(&r, "load", 2 * 65536, 0, WASM_TRAP_MEM_OOB);
    assert_int_equal(call_i32(&r, "tgrow", 3, 0), 2); /* table cap 5 */
    assert_int_equal(call_i32(&r, "tgrow", 1, 0), 0xffffffffu);
    rt_close(&r);
}

static void test_wasm_runaway_code_is_stopped(void **state)
{
    (void)state;
    struct rt r;
    rt_open(&r, mod_traps, sizeof(mod_traps), 2, 1000000);
    expect_trap(&r, "recurse", 0, 0, WASM_TRAP_STACK_EXHAUSTED);
    expect_trap(&r, "spin", 0, 0, WASM_TRAP_FUEL);
    wasm_store_set_fuel(r.store, 0, gate_monotonic_ns() + 50 * 1000000ull);
    expect_trap(&r, "spin", 0, 0, WASM_TRAP_DEADLINE);
    rt_close(&r);
}

static void test_wasm_loop_params_survive_back_edges(void **state)
{
    (void)state;
    struct rt r;
    rt_open(&r, mod_loopparam, sizeof(mod_loopparam), 1, 0);
    assert_int_equal(call_i32(&r, "loopparam", 3, 0), 33);
    rt_close(&r);
}

/* simd.wat: v128 values in every place a value can be (parameters and results between
 * scalars, locals, a multi-value block result carried by br_if, a mutable global):
 * (module (memory 1)
 *   (global $g (mut v128) (v128.const i32x4 1 2 3 4))
 *   (func $mix (export "mix") (param $a i32) (param $b v128) (param $c i64) (param $d v128)
 *         (result v128 i32 v128)
 *     (i32x4.add (local.get $b) (local.get $d))
 *     (i32.add (local.get $a) (i32.wrap_i64 (local.get $c))) (local.get $d))
 *   (func (export "caller") (param $x i32) (result i32) (local $v v128) (local $n i32)
 *     (block (result v128 i32 v128)
 *       (call $mix (local.get $x) (global.get $g) (i64.const 10)
 *                  (v128.const i32x4 100 200 300 400))
 *       (br_if 0 (local.get $x)))
 *     (local.set $v) (local.set $n)
 *     (global.set $g (i32x4.add (local.get $v)))
 *     (i32.add (local.get $n) (i32x4.extract_lane 3 (global.get $g))))
 *   (func (export "load") (param i32) (result v128) (v128.load (local.get 0))))
 */
static const uint8_t mod_simd[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x1b, 0x04, 0x60, 0x04, 0x7f, 0x7b, 0x7e,
    0x7b, 0x03, 0x7b, 0x7f, 0x7b, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x03, 0x7b, 0x7f, 0x7b,
    0x60, 0x01, 0x7f, 0x01, 0x7b, 0x03, 0x04, 0x03, 0x00, 0x01, 0x03, 0x05, 0x03, 0x01, 0x00, 0x01,
    0x06, 0x16, 0x01, 0x7b, 0x01, 0xfd, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03,
    0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x0b, 0x07, 0x17, 0x03, 0x03, 0x6d, 0x69, 0x78, 0x00,
    0x00, 0x06, 0x63, 0x61, 0x6c, 0x6c, 0x65, 0x72, 0x00, 0x01, 0x04, 0x6c, 0x6f, 0x61, 0x64, 0x00,
    0x02, 0x0a, 0x57, 0x03, 0x11, 0x00, 0x20, 0x01, 0x20, 0x03, 0xfd, 0xae, 0x01, 0x20, 0x00, 0x20,
    0x02, 0xa7, 0x6a, 0x20, 0x03, 0x0b, 0x3a, 0x02, 0x01, 0x7b, 0x01, 0x7f, 0x02, 0x02, 0x20, 0x00,
    0x23, 0x00, 0x42, 0x0a, 0xfd, 0x0c, 0x64, 0x00, 0x00, 0x00, 0xc8, 0x00, 0x00, 0x00, 0x2c, 0x01,
    0x00, 0x00, 0x90, 0x01, 0x00, 0x00, 0x10, 0x00, 0x20, 0x00, 0x0d, 0x00, 0x0b, 0x21, 0x01, 0x21,
    0x02, 0x20, 0x01, 0xfd, 0xae, 0x01, 0x24, 0x00, 0x20, 0x02, 0x23, 0x00, 0xfd, 0x1b, 0x03, 0x6a,
    0x0b, 0x08, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x0b,
};

static uint64_t lanes32(uint32_t lo, uint32_t hi)
{
    return (uint64_t)hi << 32 | lo;
}

static void test_wasm_simd_values_take_two_slots(void **state)
{
    (void)state;
    struct rt r;
    rt_open(&r, mod_simd, sizeof(mod_simd), 1, 0);
    /* The host ABI: mix(7, {1,2,3,4}, 5, {10,20,30,40}) in six slots, results in five. */
    uint64_t s[8] = {7, lanes32(1, 2), lanes32(3, 4), 5, lanes32(10, 20), lanes32(30, 40)};
    uint32_t np = 0, nr = 0;
    struct wasm_extern e;
    assert_int_equal(wasm_instance_export(r.inst, "mix", &e), 0);
    wasm_functype_slots(wasm_func_type(e.u.func), &np, &nr);
    assert_int_equal(np, 6);
    assert_int_equal(nr, 5);
    assert_int_equal(call(&r, "mix", s), WASM_TRAP_NONE);
    assert_true(s[0] == lanes32(11, 22) && s[1] == lanes32(33, 44));
    assert_int_equal(s[2], 12);
    assert_true(s[3] == lanes32(10, 20) && s[4] == lanes32(30, 40));
    /* Through a call, a block and br_if inside the engine: 11 + (4 + 400 + 400); the global
     * keeps its new value for the next call: 11 + (804 + 400 + 400). */
    assert_int_equal(call_i32(&r, "caller", 1, 0), 815);
    assert_int_equal(call_i32(&r, "caller", 1, 0), 1615);
    expect_trap(&r, "load", 65536 - 15, 0, WASM_TRAP_MEM_OOB);
    uint64_t z[2] = {65536 - 16, 0};
    assert_int_equal(call(&r, "load", z), WASM_TRAP_NONE);
    assert_true(z[0] == 0 && z[1] == 0);
    rt_close(&r);
}

/* share.wat: (module (memory 1) (data (i32.const 100) "hello")
 *   (func (export "get") (param i32) (result i32) (i32.load8_u (local.get 0)))
 *   (func (export "put") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))) */
static const uint8_t mod_share[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0b, 0x02, 0x60, 0x01, 0x7f,
    0x01, 0x7f, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x03, 0x03, 0x02, 0x00, 0x01, 0x05, 0x03,
    0x01, 0x00, 0x01, 0x07, 0x0d, 0x02, 0x03, 0x67, 0x65, 0x74, 0x00, 0x00, 0x03, 0x70,
    0x75, 0x74, 0x00, 0x01, 0x0a, 0x13, 0x02, 0x07, 0x00, 0x20, 0x00, 0x2d, 0x00, 0x00,
    0x0b, 0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0x3a, 0x00, 0x00, 0x0b, 0x0b, 0x0c, 0x01,
    0x00, 0x41, 0xe4, 0x00, 0x0b, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

/* Instantiate a mapped module in a store of its own. */
static void rt_open_mapped(struct rt *r, int fd)
{
    struct gate_error err = {0};
    struct wasm_limits_cfg lim;
    enum wasm_trap trap;
    assert_int_equal(wasm_module_map(fd, &r->mod, &err), 0);
    wasm_limits_default(&lim);
    lim.max_mem_pages = 4;
    r->store = wasm_store_new(&lim);
    assert_non_null(r->store);
    assert_int_equal(wasm_instantiate(r->store, r->mod, NULL, 0, &r->inst, &trap, &err), 0);
}

static void test_wasm_shared_module_maps_sealed_and_copy_on_write(void **state)
{
    (void)state;
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    assert_int_equal(wasm_module_load(mod_share, sizeof(mod_share), &m, &err), 0);
    int fd = wasm_module_share(m, &err);
    wasm_module_free(m);
    assert_true(fd >= 0);
    int seals = fcntl(fd, F_GET_SEALS);
    assert_int_equal(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
                     F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    assert_true(write(fd, "x", 1) < 0); /* nobody can change the code under a worker */
    struct rt a, b;
    rt_open_mapped(&a, fd);
    rt_open_mapped(&b, fd);
    close(fd); /* the modules keep what they need */
    assert_int_equal(call_i32(&a, "get", 100, 0), 'h');
    uint64_t s[2] = {100, 'X'};
    assert_int_equal(call(&a, "put", s), WASM_TRAP_NONE);
    assert_int_equal(call_i32(&a, "get", 100, 0), 'X');
    assert_int_equal(call_i32(&b, "get", 100, 0), 'h'); /* a's write stayed a's */
    assert_int_equal(call_i32(&b, "get", 104, 0), 'o');
    expect_trap(&b, "get", 65536, 0, WASM_TRAP_MEM_OOB);
    rt_close(&a);
    rt_close(&b);
}

static void test_wasm_map_refuses_what_share_did_not_make(void **state)
{
    (void)state;
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    int fd = memfd_create("not-an-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    char junk[4096] = "GWASMIM1 but not an image";
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_int_equal(wasm_module_map(fd, &m, &err), -1); /* not sealed */
    assert_non_null(strstr(err.msg, "sealed"));
    assert_int_equal(
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), 0);
    assert_int_equal(wasm_module_map(fd, &m, &err), -1); /* sealed, but not an image */
    assert_int_equal(err.code, GATE_E_WASM_INVALID);
    close(fd);
}

/* ---- WASI: host ABI (W5) and paths (W6) ---------------------------------------------- */
struct wasi_rt {
    struct rt r;
    struct wasi_ctx w;
    struct wasm_extern imports[8];
};

static void wasi_open(struct wasi_rt *x, const uint8_t *bytes, size_t len, int dirfd)
{
    struct gate_error err = {0};
    struct wasm_limits_cfg lim;
    enum wasm_trap trap;
    static char *argv[] = {"t", NULL}, *env[] = {NULL};
    wasi_ctx_init(&x->w, argv, env, "", 0, 4096, dirfd);
    assert_int_equal(wasm_module_load(bytes, len, &x->r.mod, &err), 0);
    assert_int_equal(wasi_check_imports(x->r.mod, &err), 0);
    wasm_limits_default(&lim);
    x->r.store = wasm_store_new(&lim);
    assert_int_equal(wasi_link(x->r.store, x->r.mod, &x->w, x->imports, &err), 0);
    assert_int_equal(wasm_instantiate(x->r.store, x->r.mod, x->imports,
                                      wasm_module_nimports(x->r.mod), &x->r.inst, &trap, &err),
                     0);
}

static void wasi_close(struct wasi_rt *x)
{
    rt_close(&x->r);
    wasi_ctx_free(&x->w);
}

static void test_wasm_unlisted_import_is_refused(void **state)
{
    (void)state;
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    assert_int_equal(wasm_module_load(mod_badimport, sizeof(mod_badimport), &m, &err), 0);
    assert_int_equal(wasi_check_imports(m, &err), -1);
    assert_non_null(strstr(err.msg, "env.system"));
    wasm_module_free(m);
}

static void test_wasm_host_calls_check_pointers(void **state)
{
    (void)state;
    struct wasi_rt x;
    wasi_open(&x, mod_wasi, sizeof(mod_wasi), -1);
    assert_int_equal(call_i32(&x.r, "write_wrap", 0, 0), 21); /* EFAULT */
    assert_int_equal(call_i32(&x.r, "write_oob", 0, 0), 21);
    assert_int_equal(x.w.out.len, 0);
    wasi_close(&x);
}

static void test_wasm_wasi_paths_stay_in_the_preopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/test-wasm-ws-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ok.txt", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/link", dir);
    assert_int_equal(symlink("/etc", path), 0);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct wasi_rt x;
    wasi_open(&x, mod_wasi, sizeof(mod_wasi), dirfd);
    assert_int_not_equal(call_i32(&x.r, "open", 16, 13), 0); /* ../etc/passwd */
    assert_int_not_equal(call_i32(&x.r, "open", 48, 11), 0); /* /etc/passwd */
    assert_int_not_equal(call_i32(&x.r, "open", 80, 11), 0); /* link/passwd -> /etc */
    assert_int_equal(call_i32(&x.r, "open", 112, 6), 0);     /* ok.txt */
    wasi_close(&x);
    close(dirfd);
    unlink(path);
    snprintf(path, sizeof(path), "%s/ok.txt", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- the worker's seccomp filter --------------------------------------------------------- */
enum filter_probe {
    PROBE_INSTANTIATE,   /* a mapped module's memory image, copy-on-write: allowed */
    PROBE_FCNTL_GETFL,   /* WASI's fd_fdstat_get: allowed */
    PROBE_EXEC_MEMORY,   /* mmap of executable anonymous memory: killed */
    PROBE_MPROTECT_EXEC, /* making reserved memory executable: killed */
    PROBE_IMAGE_SHARED,  /* a shared (writable-through) mapping of the image: killed */
    PROBE_FCNTL_DUPFD,   /* any fcntl command but F_GETFL/F_SETFL: killed */
};

/* Run one probe in a child under the worker's filter; its wait status. */
static int run_filtered(struct wasm_module *m, enum filter_probe probe)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = wasm_module_image_fd(m);
        if (wasm_worker_filter(fd) < 0) _exit(2);
        if (probe == PROBE_INSTANTIATE) {
            struct gate_error err = {0};
            struct wasm_limits_cfg lim;
            struct wasm_instance *inst = NULL;
            struct wasm_extern get;
            enum wasm_trap trap = WASM_TRAP_NONE;
            wasm_limits_default(&lim);
            struct wasm_store *s = wasm_store_new(&lim);
            uint64_t slots[2] = {100, 0};
            if (!s || wasm_instantiate(s, m, NULL, 0, &inst, &trap, &err) < 0 ||
                wasm_instance_export(inst, "get", &get) < 0 ||
                wasm_call(s, get.u.func, slots) != WASM_TRAP_NONE || slots[0] != 'h')
                _exit(3);
            wasm_store_free(s);
        } else if (probe == PROBE_FCNTL_GETFL) {
            if (fcntl(fd, F_GETFL) < 0) _exit(3);
        } else if (probe == PROBE_EXEC_MEMORY) {
            mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        } else if (probe == PROBE_MPROTECT_EXEC) {
            void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            mprotect(p, 4096, PROT_READ | PROT_EXEC);
        } else if (probe == PROBE_IMAGE_SHARED) {
            mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        } else {
            fcntl(fd, F_DUPFD, 100);
        }
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_wasm_worker_filter_maps_only_the_module_image(void **state)
{
    (void)state;
    struct wasm_module *loaded = NULL, *m = NULL;
    struct gate_error err = {0};
    assert_int_equal(wasm_module_load(mod_share, sizeof(mod_share), &loaded, &err), 0);
    int fd = wasm_module_share(loaded, &err);
    wasm_module_free(loaded);
    assert_true(fd >= 0);
    assert_int_equal(wasm_module_map(fd, &m, &err), 0);
    close(fd);
    assert_true(wasm_module_image_fd(m) >= 0); /* a data segment at a constant offset */
    for (enum filter_probe p = PROBE_INSTANTIATE; p <= PROBE_FCNTL_GETFL; p++) {
        int status = run_filtered(m, p);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    for (enum filter_probe p = PROBE_EXEC_MEMORY; p <= PROBE_FCNTL_DUPFD; p++) {
        int status = run_filtered(m, p);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGSYS);
    }
    wasm_module_free(m);
}

/* ---- the sandbox row ------------------------------------------------------------------- */
static char tier_dir[] = "/tmp/test-wasm-tier-XXXXXX";

static int tier_setup(void **state)
{
    (void)state;
    struct sbx_config cfg = {.tool_uid = 65534, .tool_gid = 65534};
    struct gate_error err = {0};
    if (!mkdtemp(tier_dir)) return -1;
    chmod(tier_dir, 0755);
    cfg.state_dir = tier_dir;
    return sbx_wasm_ops.init(&cfg, &err);
}

static int tier_teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tier_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tier_policy(struct policy *p, const char *name, const uint8_t *bytes, size_t len)
{
    static char *no_env[] = {NULL};
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.wasm", tier_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(bytes, 1, len, f);
    fclose(f);
    memset(p, 0, sizeof(*p));
    p->name = strdup(name);
    p->module = strdup(path);
    p->env = no_env;
    p->isolation = ISOLATION_WASM;
    p->limits.wall_timeout_ms = 5000;
    p->limits.cpu_time_ms = 1000;
    p->limits.memory_mb = 16;
    p->limits.output_bytes = 4096;
    p->limits.module_mb = 1;
}

static void tier_release(struct policy *p)
{
    if (p->sbx_state_free) p->sbx_state_free(p->sbx_state);
    free(p->name);
    free(p->module);
}

static void tier_call(struct policy *p, struct sbx_result *res)
{
    struct sbx_call call = {.call_id = "c_test", .input = "{}", .input_len = 2};
    struct gate_error err = {0};
    assert_int_equal(sbx_wasm_ops.run(p, &call, res, &err), 0);
}

static void test_wasm_tier_runs_a_wasi_tool(void **state)
{
    (void)state;
    struct policy p;
    struct sbx_result res;
    struct gate_error err = {0};
    tier_policy(&p, "hello", mod_hello, sizeof(mod_hello));
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    for (int i = 0; i < 3; i++) { /* the worker is reused between calls */
        tier_call(&p, &res);
        assert_int_equal(res.status, SBX_FAILED);
        assert_int_equal(res.exit_code, 3);
        assert_string_equal(res.out.data, "hi\n");
        sbx_result_free(&res);
    }
    tier_release(&p);
}

static void test_wasm_tier_reports_traps_and_fuel(void **state)
{
    (void)state;
    struct policy p;
    struct sbx_result res;
    struct gate_error err = {0};
    tier_policy(&p, "trap", mod_trap_start, sizeof(mod_trap_start));
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    tier_call(&p, &res);
    assert_int_equal(res.status, SBX_TRAPPED);
    assert_string_equal(res.detail, "unreachable");
    sbx_result_free(&res);
    tier_release(&p);

    tier_policy(&p, "spin", mod_spin_start, sizeof(mod_spin_start));
    p.limits.fuel = 1000000;
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    tier_call(&p, &res);
    assert_int_equal(res.status, SBX_RESOURCE_LIMIT);
    assert_string_equal(res.detail, "fuel exhausted");
    sbx_result_free(&res);
    tier_release(&p);
}

static void test_wasm_tier_workspace_is_a_private_preopen(void **state)
{
    (void)state;
    struct policy p;
    struct sbx_result res;
    struct gate_error err = {0};
    tier_policy(&p, "ws", mod_ws_start, sizeof(mod_ws_start));
    p.filesystem.workspace = true;
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    tier_call(&p, &res);
    assert_int_equal(res.status, SBX_SUCCEEDED);
    assert_int_equal(res.exit_code, 0);
    sbx_result_free(&res);
    tier_release(&p);
}

static void test_wasm_tier_caps_output_and_wall_time(void **state)
{
    (void)state;
    struct policy p;
    struct sbx_result res;
    struct gate_error err = {0};
    tier_policy(&p, "flood", mod_flood_start, sizeof(mod_flood_start));
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    tier_call(&p, &res);
    assert_int_equal(res.status, SBX_OUTPUT_TRUNCATED);
    assert_true(res.output_truncated);
    assert_int_equal(res.out.len, 4096);
    sbx_result_free(&res);
    tier_release(&p);

    tier_policy(&p, "slow", mod_spin_start, sizeof(mod_spin_start));
    p.limits.fuel = UINT64_MAX / 2; /* fuel would last for hours: the deadline stops it */
    p.limits.wall_timeout_ms = 200;
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), 0);
    tier_call(&p, &res);
    assert_int_equal(res.status, SBX_TIMED_OUT);
    sbx_result_free(&res);
    tier_release(&p);
}

static void test_wasm_tier_refuses_unlisted_imports_at_load(void **state)
{
    (void)state;
    struct policy p;
    struct gate_error err = {0};
    tier_policy(&p, "bad", mod_badimport, sizeof(mod_badimport));
    assert_int_equal(sbx_wasm_ops.prepare(&p, &err), -1);
    assert_non_null(strstr(err.msg, "env.system"));
    tier_release(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wasm_decoder_rejects_malformed),
        cmocka_unit_test(test_wasm_decoder_rejects_every_truncation),
        cmocka_unit_test(test_wasm_traps_by_name),
        cmocka_unit_test(test_wasm_memory_out_of_bounds_traps),
        cmocka_unit_test(test_wasm_growth_past_cap_returns_minus_one),
        cmocka_unit_test(test_wasm_runaway_code_is_stopped),
        cmocka_unit_test(test_wasm_loop_params_survive_back_edges),
        cmocka_unit_test(test_wasm_simd_values_take_two_slots),
        cmocka_unit_test(test_wasm_shared_module_maps_sealed_and_copy_on_write),
        cmocka_unit_test(test_wasm_map_refuses_what_share_did_not_make),
        cmocka_unit_test(test_wasm_unlisted_import_is_refused),
        cmocka_unit_test(test_wasm_host_calls_check_pointers),
        cmocka_unit_test(test_wasm_wasi_paths_stay_in_the_preopen),
        cmocka_unit_test(test_wasm_worker_filter_maps_only_the_module_image),
        cmocka_unit_test_setup_teardown(test_wasm_tier_runs_a_wasi_tool, tier_setup, NULL),
        cmocka_unit_test(test_wasm_tier_reports_traps_and_fuel),
        cmocka_unit_test(test_wasm_tier_workspace_is_a_private_preopen),
        cmocka_unit_test(test_wasm_tier_caps_output_and_wall_time),
        cmocka_unit_test_setup_teardown(test_wasm_tier_refuses_unlisted_imports_at_load, NULL,
                                        tier_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
