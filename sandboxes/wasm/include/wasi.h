/* wasi.h: WASI for gatehouse's WebAssembly tools: all of wasi_snapshot_preview1, and the older
 * wasi_unstable through the same functions (converting where its ABI differs).
 *
 * What a tool can reach is what its context holds: its arguments and environment, stdin from a
 * buffer, stdout/stderr into buffers under one output cap, clocks, random bytes, and files only
 * beneath its preopened directories: the per-call workspace ("/workspace", writable) and any
 * read-only directories the policy lists. Paths are resolved by the kernel with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so neither "..", absolute paths nor symlinks can
 * leave a preopen; symlinks a tool creates must point beneath it. There are no sockets (the
 * sock_* functions fail, never succeed); proc_raise traps. Every pointer and length a module
 * passes is checked against its linear memory first.
 */
#ifndef GATE_WASI_H
#define GATE_WASI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate.h"
#include "wasmrt.h"

#define WASI_MAX_FDS 128

enum wasi_fd_kind {
    WASI_FD_FREE,
    WASI_FD_STDIN,  /* reads the call's input buffer */
    WASI_FD_STDOUT, /* appends to out */
    WASI_FD_STDERR, /* appends to err */
    WASI_FD_FILE,
    WASI_FD_DIR,
};

struct wasi_fd {
    uint8_t kind;        /* enum wasi_fd_kind */
    bool readonly;       /* beneath a read-only preopen: nothing may be created or changed */
    bool owned;          /* the context closes host (false for preopens, which callers own) */
    int host;            /* host descriptor of a FILE or DIR, else -1 */
    uint16_t fdflags;    /* WASI fdflags as last set */
    const char *preopen; /* the preopen's name ("/workspace"), NULL for others; borrowed */
    uint64_t rights, rights_inh;
};

struct wasi_ctx {
    char *const *argv;         /* NULL-terminated; borrowed */
    char *const *env;          /* NULL-terminated "K=V"; borrowed */
    const uint8_t *stdin_data; /* borrowed */
    size_t stdin_len, stdin_pos;
    struct gate_buf out, err; /* owned; wasi_ctx_free releases them */
    uint64_t output_cap;      /* stdout + stderr bytes */
    uint64_t deadline_ns;     /* gate_monotonic_ns() deadline that poll_oneoff never sleeps past */
    bool truncated;           /* a write hit output_cap (the call was stopped) */
    int exit_code;
    int raised; /* the signal a proc_raise asked for (the call traps), else 0 */
    struct wasi_fd fds[WASI_MAX_FDS];
};

/* dirfd: the per-call workspace, preopened as fd 3 "/workspace" (borrowed, -1 for none). */
void wasi_ctx_init(struct wasi_ctx *w, char *const *argv, char *const *env, const void *in,
                   size_t in_len, uint64_t output_cap, int dirfd);
/* Preopen another directory (borrowed fd) under name at the next descriptor. Read-only: files
 * beneath it open for reading only and nothing beneath it is created, changed or removed.
 * 0, or -1 when the table is full. */
int wasi_ctx_add_preopen(struct wasi_ctx *w, int dirfd, const char *name, bool readonly);
/* Closes files the module opened (not the preopens) and frees the output buffers. */
void wasi_ctx_free(struct wasi_ctx *w);

/* Fail naming the first import that is not a WASI function we provide (or has another type). */
int wasi_check_imports(const struct wasm_module *m, struct gate_error *err);
/* Create host functions in s for every import of m; imports[] must hold nimports entries. */
int wasi_link(struct wasm_store *s, const struct wasm_module *m, struct wasi_ctx *w,
              struct wasm_extern *imports, struct gate_error *err);

#endif
