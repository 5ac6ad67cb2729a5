/* gvisor_internal.h: pieces of the gVisor tier shared by its files (private to sandboxes/gvisor).
 *
 * bundle.c writes the tier's shared files (rootfs template, /etc) and the per-policy OCI
 * config template; box.c starts one sandbox through gatehouse-gvisor-helper (`keep`) and
 * cleans up after it; gvisor.c is the ops row, with a warm pool per policy
 * (sandboxes/common/pool.c).
 */
#ifndef GATE_GVISOR_INTERNAL_H
#define GATE_GVISOR_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpolicy.h"
#include "sbx_internal.h"

/* The sentry's own memory is charged to the sandbox's cgroup too (an idle sandbox: ~15 MB
 * measured): this much is added on top of limits.memory_mb so that a small tool still boots. */
#define GV_SENTRY_OVERHEAD_MB 32
/* runsc run --detach normally takes ~0.15 s; give up on a sandbox that takes this long. */
#define GV_BOOT_TIMEOUT_MS 30000
/* A policy whose platform or network mode may not work here boots one sandbox at load. */
#define GV_TRIAL_TIMEOUT_MS 10000

/* snprintf into a path buffer; a path that does not fit becomes "" and fails loudly later. */
#define GV_PATH(buf, ...)                                                                          \
    do {                                                                                           \
        if (snprintf(buf, sizeof(buf), __VA_ARGS__) >= (int)sizeof(buf)) (buf)[0] = '\0';          \
    } while (0)

/* Tier-wide state, set by init. */
struct gv_tier {
    char runsc[PATH_MAX];   /* the runsc binary */
    char helper[PATH_MAX];  /* gatehouse-gvisor-helper (keeper on the host) */
    char dir[PATH_MAX];     /* STATE/gvisor */
    char root[PATH_MAX];    /* STATE/gvisor/root: runsc --root */
    char bundles[PATH_MAX]; /* STATE/gvisor/bundles */
    char rootfs[PATH_MAX];  /* STATE/gvisor/rootfs: the read-only root of every sandbox */
    char etc[PATH_MAX];     /* STATE/gvisor/etc: the generated /etc */
    char cgroup_parent[64]; /* gatehouse-gvisor-<hash of STATE>: our cgroups live below it */
    bool has_kvm;           /* runsc lists the kvm platform and /dev/kvm exists */
    uid_t uid;
    gid_t gid;
    int lifeline_r; /* read end given to every keeper; EOF there means the gateway died */
    int lifeline_w; /* held, never written, for the life of the gateway */
};
extern struct gv_tier gv;

/* One booted sandbox, waiting in its launcher for a call header on stdin. */
struct gv_box {
    char id[40];
    char bundle[PATH_MAX];
    pid_t keeper;  /* our child; exits with the sandbox's status once the whole tree is gone */
    int in_w;      /* the sandbox's stdin (write end); owned */
    int out_r;     /* its stdout (read end); owned */
    int err_r;     /* its stderr (read end); owned */
    uint64_t cgid; /* network.egress: the cgroup v2 directory the keeper moved into, or 0 */
};

/* A policy's compiled gVisor state (policy->sbx_state). */
struct gv_policy {
    char *config_json; /* OCI config.json without linux.cgroupsPath */
    const char *platform;
    const char *network;           /* "none", "sandbox", or "host" (network.egress) */
    struct sbx_net *net;           /* network.egress: the policy's map entries; owned */
    struct sock_fprog seccomp;     /* the tier's profile, installed by the launcher; owned */
    struct sock_fprog seccomp_dev; /* refuses mknod of devices (gVisor allows it); owned */
    struct sbx_pool pool;          /* warm sandboxes, booted ahead of demand (sbx_internal.h) */
};

/* bundle.c */
/* Create the shared rootfs template (merged-/usr links, launcher) and /etc under gv.dir. */
int gv_write_shared_files(struct gate_error *err);
/* Build the OCI config for p as a JSON string (caller frees). */
int gv_config_template(const struct policy *p, const struct gv_policy *gp, char **out,
                       struct gate_error *err);
/* What the sandbox's stdin receives: the launcher's header (8 digits of length, then the tool's
 * environment as NUL-terminated strings) followed by the arguments JSON for the tool. */
int gv_call_input(const struct policy *p, const struct sbx_call *call, struct gate_buf *out);

/* box.c */
/* Boot a sandbox for gp (runsc run --detach). The caller owns *out (gv_box_destroy). */
int gv_box_spawn(const struct gv_policy *gp, uint32_t timeout_ms, struct gv_box **out,
                 struct gate_error *err);
/* Kill an unused sandbox, reap its keeper and remove every trace of it. Frees box. */
void gv_box_destroy(struct gv_box *box);
/* After the keeper has been reaped: did the memory cgroup OOM-kill anything? */
bool gv_box_oom(const struct gv_box *box);
/* runsc delete --force, remove the cgroups and the bundle directory. */
void gv_cleanup_id(const char *id, const char *bundle);
/* network.egress: the cgroup v2 directory of sandbox id, below the gateway's filtered one;
 * "" when there is none. */
void gv_net_dir(const char *id, char *out, size_t len);
/* Remove the (empty) cgroup parent of the tier's sandboxes, at shutdown. */
void gv_remove_cgroup_parent(void);
/* Queue gv_cleanup_id for the background cleaner (falls back to doing it now). Frees box. */
void gv_box_retire(struct gv_box *box);
int gv_cleaner_start(void);
void gv_cleaner_stop(void);
/* Run runsc with the tier's --root and the given arguments; returns its wait status or -1. */
int gv_runsc(const char *const *args, char *out, size_t out_len);

#endif
