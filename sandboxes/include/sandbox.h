/* sandbox.h: running one tool call in the isolation tier its policy demands.
 *
 * Every tier (process, container, gvisor, microvm, wasm) is a row of
 * struct sbx_ops in sandboxes/sandbox.c; adding a tier means adding a
 * directory under sandboxes/ and one row. The gateway calls sbx_init once,
 * sbx_prepare for each policy when a policy set loads (compile seccomp,
 * validate modules, start warm pools) and sbx_run per call; what prepare made
 * is freed with the policy (p->sbx_state_free). A tier that cannot work on this
 * host (no runsc, no hardware virtualisation) reports why from init, and
 * policies naming it fail to load with that reason.
 */
#ifndef GATE_SANDBOX_H
#define GATE_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "gate.h"
#include "policy.h"

/* X(enum suffix, API string) — the status of a finished call. */
#define SBX_STATUS_MAP(X)                                                                          \
    X(SUCCEEDED, "succeeded")               /* exit code 0 */                                      \
    X(FAILED, "failed")                     /* non-zero exit code */                               \
    X(TIMED_OUT, "timed_out")               /* wall_timeout reached; everything killed */          \
    X(KILLED, "killed")                     /* died of a signal it did not ask for */              \
    X(OUTPUT_TRUNCATED, "output_truncated") /* output cap reached; tool killed */                  \
    X(OOM, "oom")                           /* killed by the memory cap */                         \
    X(RESOURCE_LIMIT, "resource_limit")     /* CPU time, file size or pids cap hit */              \
    X(TRAPPED, "trapped")                   /* wasm trap; detail names it */                       \
    X(SANDBOX_ERROR, "sandbox_error") /* sandbox could not be set up; detail names the step */     \
    X(INTERRUPTED, "interrupted")     /* started before a gateway crash; outcome unknown */

enum sbx_status {
#define SBX_X_ENUM(name, str) SBX_##name,
    SBX_STATUS_MAP(SBX_X_ENUM)
#undef SBX_X_ENUM
        SBX__COUNT
};
const char *sbx_status_str(enum sbx_status s);

struct sbx_config {
    const char *state_dir; /* gateway state directory; tiers keep their files beneath it */
    uid_t tool_uid;        /* unprivileged identity for tools (default: nobody) */
    gid_t tool_gid;
    /* Host uids handed out one per running call (process tier), so that concurrent calls can
     * neither signal nor inspect each other and per-uid limits (RLIMIT_NPROC) are per call.
     * Their group is tool_gid. */
    uid_t call_uid_base;
    unsigned call_uid_count;
    unsigned max_concurrent; /* --max-concurrent: calls the gateway runs at once (pool sizes) */
    /* The gateway's API endpoint, which no tool may reach (network policy); NULL when policies
     * are only checked (gatehouse policy check): nothing is then enforced. */
    const struct policy_endpoint *gateway;
};

struct sbx_call {
    const char *call_id;
    const char *input; /* the arguments JSON, written to the tool's stdin */
    size_t input_len;
};

struct sbx_result {
    enum sbx_status status;
    int exit_code;       /* -1 when the tool did not exit normally */
    int term_signal;     /* signal that ended it, or 0 */
    struct gate_buf out; /* stdout, raw bytes (may be invalid UTF-8); owned */
    struct gate_buf err; /* stderr; owned */
    bool output_truncated;
    bool pids_limit_hit;
    char detail[256]; /* trap name, failed setup step, limit hit; "" if none */
    json_t *activity; /* what the call did, as keys merged into its record and call.finished
                         ({"network": {allowed, denied, ...}, "execs": [...]}); owned; NULL where
                         the tier does not report it */
};
void sbx_result_free(struct sbx_result *r);

struct sbx_ops {
    const char *name;
    enum isolation isolation;
    /* Once at gateway start. Returns -1 if the tier cannot run here; err says why. */
    int (*init)(const struct sbx_config *cfg, struct gate_error *err);
    /* When a policy loads: validate tier specifics and compile what calls need, into
     * p->sbx_state with p->sbx_state_free, which policy_free calls when the set goes. */
    int (*prepare)(struct policy *p, struct gate_error *err);
    /* Run one call. 0: res is filled (any status). -1: the sandbox could not be set up; err
     * names the step and res->status is SBX_SANDBOX_ERROR. Never runs a weaker sandbox. */
    int (*run)(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
               struct gate_error *err);
    /* Stop background work (pools, workers) before exit. May be NULL. */
    void (*shutdown)(void);
    /* Append Prometheus text lines (pool sizes, hits, ...). May be NULL. */
    void (*metrics)(struct gate_buf *out);
};

int sbx_init(const struct sbx_config *cfg);
/* Why a tier is unavailable ("" when it works), after sbx_init. */
const char *sbx_unavailable_reason(enum isolation iso);
int sbx_prepare(struct policy *p, struct gate_error *err);
int sbx_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
            struct gate_error *err);
void sbx_shutdown(void);
void sbx_metrics(struct gate_buf *out);

#endif
