/* wasi.h: the WASI preview 1 subset gatehouse offers WebAssembly tools.
 *
 * Arguments and environment, stdin from a buffer, stdout/stderr into capped buffers, clocks,
 * random bytes, proc_exit, sched_yield, and files only beneath one optional preopened
 * directory (fd 3, "/workspace"), resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
 * | RESOLVE_NO_MAGICLINKS) so neither "..", absolute paths nor symlinks leave it. Every
 * pointer and length a module passes is checked against its linear memory first.
 */
#ifndef GATE_WASI_H
#define GATE_WASI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate.h"
#include "wasmrt.h"

#define WASI_MAX_FDS 64

struct wasi_fd {
    int host; /* -1 = free */
    bool is_dir;
};

struct wasi_ctx {
    char *const *argv;         /* NULL-terminated; borrowed */
    char *const *env;          /* NULL-terminated "K=V"; borrowed */
    const uint8_t *stdin_data; /* borrowed */
    size_t stdin_len, stdin_pos;
    struct gate_buf out, err; /* owned; wasi_ctx_free releases them */
    uint64_t output_cap;      /* stdout + stderr bytes */
    bool truncated;           /* a write hit output_cap (the call was stopped) */
    int exit_code;
    struct wasi_fd fds[WASI_MAX_FDS]; /* 0-2 stdio, 3 the preopen when present */
};

/* dirfd: the preopened workspace (borrowed, -1 for none). */
void wasi_ctx_init(struct wasi_ctx *w, char *const *argv, char *const *env, const void *in,
                   size_t in_len, uint64_t output_cap, int dirfd);
/* Closes files the module opened (not the preopen) and frees the output buffers. */
void wasi_ctx_free(struct wasi_ctx *w);

/* Fail naming the first import that is not a WASI function we provide (or has another type). */
int wasi_check_imports(const struct wasm_module *m, struct gate_error *err);
/* Create host functions in s for every import of m; imports[] must hold nimports entries. */
int wasi_link(struct wasm_store *s, const struct wasm_module *m, struct wasi_ctx *w,
              struct wasm_extern *imports, struct gate_error *err);

#endif
