/* wasm_tier.h: the `wasm` isolation tier's parts: the per-policy state built at policy load,
 * the worker process that runs calls, and the protocol between the gateway and a worker.
 *
 * A request is one header (with the preopened workspace directory attached as SCM_RIGHTS when
 * the policy has one) followed by the input bytes; a response is one header followed by the
 * stdout and stderr bytes. Both travel over a private socketpair.
 */
#ifndef GATE_WASM_TIER_H
#define GATE_WASM_TIER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy.h"
#include "sandbox.h"
#include "wasi.h"
#include "wasmrt.h"

#define WASM_REQ_MAGIC 0x77617371u  /* "wasq" */
#define WASM_RESP_MAGIC 0x77617372u /* "wasr" */
#define WASM_WORKER_MAX_CALLS 100   /* a worker is replaced after this many calls */
#define WASM_POOL_IDLE 2            /* idle workers kept per policy */
#define WASM_FUEL_PER_MS 200000ull  /* default fuel: limits.cpu_time_ms times this */

struct wasm_req {
    uint32_t magic;
    uint32_t has_dir;
    uint64_t input_len;
    uint64_t fuel;
    uint64_t deadline_ns; /* CLOCK_MONOTONIC, shared by all processes */
    char call_id[48];
};

enum wasm_outcome {
    WASM_OUT_EXITED,    /* returned from _start or called proc_exit: exit_code */
    WASM_OUT_TRAPPED,   /* trap names it */
    WASM_OUT_TRUNCATED, /* output cap reached */
    WASM_OUT_ERROR,     /* could not instantiate: detail says why */
};

struct wasm_resp {
    uint32_t magic;
    uint32_t outcome; /* enum wasm_outcome */
    int32_t exit_code;
    uint32_t trap; /* enum wasm_trap */
    uint64_t out_len, err_len;
    char detail[200];
};

/* Sent once to an exec'd worker (gatehouse-wasm-worker) before any request: the header, then
 * the module's bytes, the tool's name and its environment as NUL-terminated strings. */
#define WASM_INIT_MAGIC 0x77617369u /* "wasi" */
struct wasm_init {
    uint32_t magic;
    uint32_t max_mem_pages;
    uint64_t output_cap;
    uint64_t module_len, name_len, env_len; /* env: strings each ending in NUL */
};

struct wasm_worker {
    pid_t pid;
    int sock;
    unsigned calls;
};

/* What prepare builds for one policy; freed with the policy. */
struct wasm_state {
    struct wasm_module *mod;
    uint8_t *bytes; /* the module's binary, for exec'd workers */
    size_t len;
    char *name;
    char **env;     /* NULL-terminated copy of the policy's environment */
    bool workspace; /* give the tool an empty /workspace preopen per call */
    uint32_t max_mem_pages;
    uint64_t output_cap;
    pthread_mutex_t lock;
    struct wasm_worker idle[WASM_POOL_IDLE];
    int nidle;
    uint64_t calls, traps, spawned;
};

/* Start a worker for st: fork, drop to uid/gid, then exec `helper` (gatehouse-wasm-worker) and
 * send it the module, so the worker holds none of the gateway's memory; with helper NULL the
 * forked child serves directly. 0 or -1 with err. */
int wasm_worker_spawn(struct wasm_state *st, const char *helper, uid_t uid, gid_t gid,
                      bool drop_identity, struct wasm_worker *w, struct gate_error *err);
/* In a worker: install the seccomp filter and serve calls on fd until done; never returns. */
__attribute__((noreturn)) void wasm_worker_loop(const struct wasm_state *st, int fd);
void wasm_worker_kill(struct wasm_worker *w);
/* Run one call inside a worker (in the worker process). Returns 1 if the worker must exit. */
int wasm_worker_serve(const struct wasm_state *st, int sock);
/* Read exactly len bytes (retrying on EINTR); -1 on error or early EOF. */
int wasm_read_full(int fd, void *buf, size_t len);

#endif
