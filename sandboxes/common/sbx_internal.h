/* sbx_internal.h: pieces shared by the sandbox tiers (private to sandboxes/).
 *
 * - supervise: feed stdin, drain stdout/stderr up to the output cap, enforce the
 *   wall-clock deadline on CLOCK_MONOTONIC, and classify how the call ended.
 * - child error channel: a child that fails during setup reports errno and the
 *   step over a CLOEXEC pipe, so "pivot_root: EPERM" reaches the caller.
 * - seccomp: compile a libseccomp profile to BPF once (at policy load) and
 *   install the compiled program in a child.
 * - warm pools: sandboxes made ready ahead of demand by a refill thread per policy.
 * - the tier table rows, declared here and defined in each tier's directory.
 */
#ifndef GATE_SBX_INTERNAL_H
#define GATE_SBX_INTERNAL_H

#include <linux/filter.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox.h"

/* ---- supervise ------------------------------------------------------------- */
struct supervise {
    pid_t pid;     /* the child whose exit ends the call */
    int stdin_fd;  /* parent's write end of the child's stdin; owned, closed by sbx_supervise */
    int stdout_fd; /* parent's read end of the child's stdout; owned */
    int stderr_fd; /* parent's read end of the child's stderr; owned */
    const char *input;
    size_t input_len;
    uint64_t wall_timeout_ms;
    uint64_t output_bytes; /* stdout+stderr cap */
    uint64_t start_ns;     /* gate_monotonic_ns() when the child was started */
    /* Kill every process of the call (process group, cgroup, pid namespace). Called on
     * timeout, on output overflow and after the child exits (so nothing outlives it). */
    void (*kill_all)(void *ctx);
    void *ctx;
};
/* Run the call to its end. Fills res->out, res->err, res->status (SUCCEEDED, FAILED,
 * KILLED, TIMED_OUT, OUTPUT_TRUNCATED), exit_code and term_signal, and *wait_status with the
 * raw waitpid status. The child is always reaped. Returns 0, or -1 on an internal error. */
int sbx_supervise(struct supervise *s, struct sbx_result *res, int *wait_status,
                  struct gate_error *err);
/* A tool's wait status as the call's outcome: exit_code or term_signal; SUCCEEDED, FAILED,
 * KILLED, or RESOURCE_LIMIT for SIGXCPU/SIGXFSZ with the limit named in detail. Shared by
 * sbx_supervise and the tiers whose tool is not the supervised process (its init or agent
 * reports the tool's status). */
void sbx_result_from_wait(struct sbx_result *res, int status);

/* ---- child error channel ----------------------------------------------------- */
/* In a child after fork: report that `step` failed with errnum, then _exit(127). */
__attribute__((noreturn)) void sbx_child_fail(int err_fd, const char *step, int errnum);
/* In the parent: read the report. Returns 0 if the child closed the pipe without writing
 * (exec succeeded), -1 with err = GATE_E_SANDBOX "<step>: <ERRNO NAME> (<message>)" if it
 * reported a failure. Closes nothing. */
int sbx_child_status(int err_fd, struct gate_error *err);

/* ---- seccomp --------------------------------------------------------------------- */
enum sbx_seccomp_profile {
    /* process tier: default allow, refuse what Docker's default profile refuses */
    SBX_SECCOMP_DENYLIST,
    /* container tier: Docker-like allowlist, default EPERM */
    SBX_SECCOMP_ALLOWLIST,
};
/* Compile a profile plus the policy's seccomp.allow / seccomp.deny names to a BPF program.
 * Common to both: clone3 -> ENOSYS, clone with namespace flags -> EPERM, non-native ABIs
 * (i386, x32) killed. With setsid_cookie (six words; denylist only), setsid is allowed when
 * its six argument registers hold exactly those words and refused otherwise (see
 * sandboxes/process/). The caller owns prog->filter (free). */
int sbx_seccomp_compile(enum sbx_seccomp_profile profile, char *const *allow, char *const *deny,
                        const uint64_t *setsid_cookie, struct sock_fprog *prog,
                        struct gate_error *err);
/* Add the allowlist rules shared by the container, gVisor-launcher and microVM tiers to ctx
 * (allowlist.c), skipping
 * every name listed in deny (the policy's seccomp.deny: the compiler then adds an EPERM rule
 * for it; libseccomp refuses two actions for one syscall). The compiler adds the shared rules
 * (clone, clone3, ABIs) and the policy's seccomp.allow names after it. */
int sbx_container_allowlist(void *scmp_ctx, char *const *deny, struct gate_error *err);
/* Refuse a policy whose seccomp.deny (deny) or seccomp.allow names one of names (NULL-
 * terminated): "seccomp.deny: 'NAME' <why>", located at that entry for sbx_prepare. */
int sbx_seccomp_refuse(struct policy *p, bool deny, const char *const *names, const char *why,
                       struct gate_error *err);
/* Whether the allowlist allows name (unconditionally or with argument rules). */
bool sbx_allowlist_has(const char *name);
/* In a child: set no_new_privs and install prog. Returns -1 with errno set on failure. */
int sbx_seccomp_install(const struct sock_fprog *prog);

/* ---- helpers ------------------------------------------------------------------- */
/* Close every fd from `first` up (close_range, falling back to a loop on old kernels). */
void sbx_close_fds_from(int first);
/* Build the tool environment: policy env + GATEHOUSE_CALL_ID + GATEHOUSE_TOOL. NULL-terminated,
 * caller frees with sbx_free_strv. */
char **sbx_tool_env(const struct policy *p, const char *call_id);
void sbx_free_strv(char **v);
/* Find a helper program shipped with the gateway: next to the running program, in ../libexec
 * (the build tree's layout) or in ../libexec/gatehouse (an installed layout). Fills out with
 * its path; -1 if none is executable. */
int sbx_find_libexec(const char *name, char *out, size_t len);
/* Remove everything inside the directory open as dirfd (taken and closed), by descriptor only:
 * O_NOFOLLOW, unlinkat relative to open directories, nothing on another device than dev. Safe
 * as root on a tree a tool wrote, even while another tool changes it. */
void sbx_remove_inside(int dirfd, dev_t dev);

/* ---- warm pools (pool.c) -------------------------------------------------------- */
/* Sandboxes made ready ahead of demand, one pool per prepared policy: a refill thread keeps
 * `size` items ready; a call takes one (a hit) or makes its own (a miss); each item serves one
 * call. What an item is, and the metric names, come from the tier's kind. */
#define SBX_POOL_MAX 16
struct sbx_pool_kind {
    /* Make one ready item (blocking); give up early once *cancel turns true. NULL on failure,
     * err says why. */
    void *(*spawn)(void *ctx, const bool *cancel, struct gate_error *err);
    void (*destroy)(void *item);
    bool (*dead)(void *item);    /* an idle item that died is destroyed, never handed out */
    void (*claimed)(void *item); /* as it is handed to a call; may be NULL */
    const char *family;          /* metric prefix: "gatehouse_microvm_pool" */
    const char *failures_suffix; /* "restore_failures_total" */
    const char *help_size, *help_hits, *help_misses, *help_failures;
    const char *refill_failed_event, *died_event; /* log events */
};
struct sbx_pool {
    const struct sbx_pool_kind *kind;
    void *ctx;
    char *name; /* the tool, for metrics and logs */
    uint32_t size;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *ready[SBX_POOL_MAX];
    uint32_t n_ready;
    bool stopping, thread_started, initialised, listed;
    pthread_t thread;
    uint64_t hits, misses, failures;
    struct sbx_pool *next;
};
/* Start p (size 0: no thread, every take is a miss). The caller owns p; stop it before freeing. */
int sbx_pool_start(struct sbx_pool *p, const struct sbx_pool_kind *kind, void *ctx,
                   const char *name, uint32_t size, struct gate_error *err);
/* A ready item, or NULL (a miss). Counts the hit or miss. The caller owns the item. */
void *sbx_pool_take(struct sbx_pool *p);
/* Stop refilling, destroy the idle items, forget p. Idempotent; safe on a never-started pool
 * that was zeroed. */
void sbx_pool_stop(struct sbx_pool *p);
/* Stop refilling and destroy the idle items of every pool of kind (shutdown). */
void sbx_pool_stop_all(const struct sbx_pool_kind *kind);
/* Prometheus lines for every pool of kind. */
void sbx_pool_metrics(struct gate_buf *out, const struct sbx_pool_kind *kind);

/* ---- the tier rows ----------------------------------------------------------- */
extern const struct sbx_ops sbx_process_ops;
extern const struct sbx_ops sbx_container_ops;
extern const struct sbx_ops sbx_gvisor_ops;
extern const struct sbx_ops sbx_microvm_ops;
extern const struct sbx_ops sbx_wasm_ops;

#endif
