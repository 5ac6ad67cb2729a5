/* wasm_tier.h: the `wasm` isolation tier's parts: the per-policy state built at policy load
 * and its pool of workers (backend.c, pool.c, in the gateway), the worker program that runs
 * calls (worker.c, worker_exec.c: gatehouse-wasm-worker), and the protocol between them.
 *
 * A worker is started by clone (CLONE_VM|CLONE_VFORK) + exec of gatehouse-wasm-worker as the
 * tool identity, with
 *   fd 3  a socketpair to the gateway, which sends one wasm_init header, the tool's name, its
 *         environment and its read-only directories first, then requests;
 *   fd 4  the setup status pipe: a failed step is reported on it (sbx_child_fail, errno and
 *         the step's name), and the worker closes it once it is ready to serve;
 *   fd 5  the module: the sealed memfd image of the compiled module (wasm_module_share), which
 *         the worker maps (wasm_module_map) before its seccomp filter is installed.
 * A request is one wasm_req header (with the per-call workspace directory attached as
 * SCM_RIGHTS when the policy has one) followed by the input bytes; a response is one wasm_resp
 * header followed by the stdout and stderr bytes.
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
#define WASM_INIT_MAGIC 0x77617369u /* "wasi" */
#define WASM_WORKER_MAX_CALLS 100   /* a worker is replaced after this many calls */
#define WASM_POOL_HEADROOM 2        /* idle workers kept ready ahead of demand */
#define WASM_POOL_MAX 1024          /* the most workers one policy may keep */
#define WASM_FUEL_PER_MS 200000ull  /* default fuel: limits.cpu_time_ms times this */
#define WASM_FD_SOCK 3
#define WASM_FD_STATUS 4
#define WASM_FD_MODULE 5

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

/* Sent once to a worker, followed by the tool's name, its environment and its read-only
 * directories (absolute host paths), the last two as strings each ending in NUL. */
struct wasm_init {
    uint32_t magic;
    uint32_t max_mem_pages;
    uint64_t output_cap;
    uint64_t name_len, env_len, ro_len;
};

/* ---- the gateway side (backend.c, pool.c) ---------------------------------------------- */
struct wasm_worker {
    pid_t pid;
    int sock;
    unsigned calls;
};

/* What prepare builds for one policy; freed with the policy. */
struct wasm_state {
    int module_fd; /* the compiled module's sealed image (wasm_module_share), for workers */
    char *name;
    char **env;     /* NULL-terminated copy of the policy's environment */
    char **ro_dirs; /* NULL-terminated filesystem.read_only directories, preopened read-only */
    bool workspace; /* give the tool an empty /workspace preopen per call */
    uint32_t max_mem_pages;
    uint64_t output_cap;
    uid_t uid;
    gid_t gid;
    bool drop_identity;
    const char *helper; /* gatehouse-wasm-worker (borrowed) */

    /* The pool: at most `size` workers (idle + busy + being started); the refill thread keeps
     * WASM_POOL_HEADROOM of them idle while the total is under `size`. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_started, stopping;
    unsigned size;
    struct wasm_worker *idle; /* [size] */
    unsigned nidle, nbusy, nspawning;
    uint64_t calls, traps, spawned, hits, misses, spawn_failures;
    struct wasm_state *next; /* backend.c's list of prepared policies */
};

/* Start a worker for st (clone, drop to st's identity, exec st->helper, send the init message,
 * wait for its setup status). 0, or -1 with err naming the step that failed. */
int wasm_worker_spawn(struct wasm_state *st, struct wasm_worker *w, struct gate_error *err);
void wasm_worker_kill(struct wasm_worker *w);
/* Start the refill thread (which starts the first workers in the background). */
int wasm_pool_start(struct wasm_state *st, struct gate_error *err);
/* Stop the refill thread and kill the idle workers. */
void wasm_pool_stop(struct wasm_state *st);
/* A worker for one call: an idle one (a hit), else a newly started one (a miss). */
int wasm_pool_take(struct wasm_state *st, struct wasm_worker *w, struct gate_error *err);
/* Give a worker back after its call; one that is not reusable is killed and replaced. */
void wasm_pool_put(struct wasm_state *st, struct wasm_worker *w, bool reusable);

/* ---- the worker side (worker.c) --------------------------------------------------------- */
struct wasm_worker_cfg {
    struct wasm_module *mod;
    char *name;
    char **env;
    char **ro_dirs; /* host paths, preopened under the same names */
    int *ro_fds;
    uint32_t max_mem_pages;
    uint64_t output_cap;
};
/* Read exactly len bytes (retrying on EINTR); -1 on error or early EOF. */
int wasm_read_full(int fd, void *buf, size_t len);
/* Install the worker's seccomp filter (kill by default); image_fd is the module's memory image
 * (wasm_module_image_fd, -1: none), the one file the worker may map. -1 with errno. */
int wasm_worker_filter(int image_fd);
/* Serve calls on fd until the gateway closes it or WASM_WORKER_MAX_CALLS were served. */
__attribute__((noreturn)) void wasm_worker_loop(const struct wasm_worker_cfg *cfg, int fd);

#endif
