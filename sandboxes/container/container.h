/* container.h: internals of the container tier (private to sandboxes/container/).
 *
 * container.c   the sbx_ops row: init, prepare (compile and precompute), run (parent side)
 * plan.c        the mount plan and generated /etc, computed at policy load
 * image.c       that plan as one flat image, decoded without allocating in a child
 * rootfs.c      the child: fresh root, pivot_root, privileges dropped, init and the tool
 * pool.c        the gateway's side of the pool: slots, each a cgroup with a resident helper
 * helper.c      gatehouse-ct-helper, the helper of one slot: starts (and primes) children
 * msg.c         messages with fds on the pool's sockets (both sides)
 * cgroup.c      cgroups v1 and v2: limits, OOM/pids outcome, kill, removal
 * jail.c        a program of the gateway's own (the microVM tier's QEMU) in a container
 *               sandbox, through the direct path (ct_direct_spawn); its API is jail.h
 * (the Docker-like seccomp allowlist is sandboxes/common/allowlist.c)
 */
#ifndef GATE_CONTAINER_H
#define GATE_CONTAINER_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../common/sbx_internal.h" /* relative: also found from tests/unit */

struct sbx_net;

#define CT_MAX_BINDS 64
#define CT_MAX_STRS 1024
#define CT_IMAGE_MAX (128 * 1024)

/* ---- precomputed at policy load -------------------------------------------------- */
struct ct_bind {
    char *src; /* absolute host path */
    char *dst; /* path inside the sandbox root, relative ("usr", "opt/tool") */
    bool is_dir;
};

struct ct_state {
    struct sock_fprog seccomp;
    struct ct_bind *binds; /* read-only bind mounts, in mount order */
    size_t nbinds;
    char **dirs;  /* directories to create in the new root, parents first, relative; NULL-ended */
    char **files; /* empty files to create as mount points, relative; NULL-ended */
    char **links; /* pairs: link path (relative), target; NULL-ended */
    char *passwd;
    char *group;
    char tmp_opts[96];
    char ws_opts[96];
    unsigned long scratch_flags; /* mount flags of /tmp and /workspace (noexec unless allowed) */
    bool workspace;
    const char *cwd; /* "/workspace" or "/tmp" */
    uint64_t cpu_time_s;
    uint64_t file_size_bytes;
    bool primable; /* see struct ct_spec */
    /* network.egress: the host's network namespace, filtered by the BPF programs on the
     * sandbox's cgroup (netpolicy.h); otherwise a namespace of its own with only lo. */
    bool host_net;
    bool dns;              /* network.dns: resolv.conf names the host's resolvers */
    char *resolv;          /* /etc/resolv.conf */
    struct sbx_net *net;   /* the network policy's map entries, or NULL (not enforced) */
    struct gate_buf image; /* everything above plus argv/env, flat (image.c) */
    /* Unique per prepared image, never reused: what the pool matches primed sandboxes by
     * (an address could be reused by the next policy set after a reload). */
    uint64_t image_id;
};

void ct_state_free(void *state);
/* Build st's mount plan for p. Returns -1 with err on a problem found at load. */
int ct_plan(const struct policy *p, struct ct_state *st, struct gate_error *err);
/* Generate /etc/passwd and /etc/group for the tool's identity (after ct_plan). */
int ct_plan_identity(struct ct_state *st, uid_t uid, gid_t gid);

/* ---- the flat plan a child runs from ------------------------------------------------ */
/* What the child needs, decoded from a policy's image without allocating: every pointer
 * points into the image or into strs. */
struct ct_spec {
    size_t nbinds;
    const char *bind_src[CT_MAX_BINDS];
    const char *bind_dst[CT_MAX_BINDS];
    char **dirs, **files, **links, **argv, **env;
    const char *passwd, *group, *tmp_opts, *ws_opts, *cwd;
    uint64_t scratch_flags, cpu_time_s, file_size_bytes;
    bool workspace;
    bool primable; /* the policy's filter allows what a primed child does after it */
    bool host_net; /* cloned without CLONE_NEWNET (struct ct_state) */
    bool dns;
    const char *resolv;
    struct sock_fprog seccomp;
    char *strs[CT_MAX_STRS];
    char call_env[96];
};
/* Encode p's plan (after ct_plan and the seccomp compile) into img (owned by the caller). */
int ct_image_build(const struct policy *p, const struct ct_state *st, struct gate_buf *img);
/* Decode an image; spec's pointers point into img, which must stay alive and 8-aligned. */
int ct_image_decode(const char *img, size_t len, const char *call_id, struct ct_spec *spec);

/* ---- the child ---------------------------------------------------------------------- */
struct ct_child_args {
    const struct ct_spec *spec;
    int in, out, errfd; /* the tool's stdio (child ends) */
    int report;         /* setup error channel (sbx_child_fail) */
    int status;         /* init writes the tool's wait status here */
    int sync;           /* parent writes one byte once uid/gid maps (and cgroup) are set; or -1 */
    int extra_fd;       /* kept open through setup, closed before the tool starts; or -1 */
    int setup_fd;       /* likewise (helper.c closes it when setup has ended); or -1 */
    /* The stack the tool runs on until it execs (it shares init's memory). A child of the
     * pool helper shares the helper's memory too, so each has its own. */
    char *tool_stack;
    size_t tool_stack_size;
    uid_t uid; /* the tool's identity, the same number inside and outside */
    gid_t gid;
    int cap_last;
    bool dev_kvm; /* also bind /dev/kvm (the microVM tier's jailed QEMU with KVM) */
    /* The gateway's argv and environ strings, which the child's copy of memory still holds
     * and /proc/1/{cmdline,environ} would show: wiped in the child. */
    char *arg_start, *arg_end, *env_start, *env_end;
};
/* clone() entry point: runs as PID 1 of the new namespaces; never returns. */
int ct_child_main(void *arg);
/* clone(flags | SIGCHLD) the fork() way: the child continues on a copy of the caller's
 * stack (a stack the sanitizers know, unlike a separate clone stack). Returns like fork(). */
pid_t ct_fork_into(unsigned long flags);
/* Give a child cloned with CLONE_NEWUSER its only identity: uid and gid mapped to the same
 * (unprivileged) host ids, nothing else mapped, so no id in the sandbox is host root; setgroups
 * denied, so a tool can never drop a group to get past a negative group permission. Called by
 * every parent of a sandbox (the direct path, a pool helper, a jail). -1 with errno and the
 * /proc file that failed in *step. */
int ct_map_ids(pid_t pid, uid_t uid, gid_t gid, const char **step);
/* Its two halves. Setup: everything up to and including the seccomp filter (a failure is
 * reported on a->report and exits). Start: the tool and init; never returns. A primed pool
 * child runs setup ahead of its call and receives the call's fds in between. */
void ct_child_setup(const struct ct_child_args *a);
__attribute__((noreturn)) void ct_child_start(const struct ct_child_args *a);
/* In a primed child, once its call (and report fd) arrived: the binds still exist. If not,
 * it fails with this step, and the call is retried in a child set up afresh. */
void ct_child_recheck(const struct ct_child_args *a);
#define CT_STALE_STEP "primed sandbox is stale:"
/* The namespaces a child of spec is cloned into: all of them, but the host's network
 * namespace for a policy with network.egress. */
unsigned long ct_ns_flags(const struct ct_spec *spec);
/* Fill ids' argv/environ ranges with this process's own (from /proc/self/stat). */
struct ct_ids;
void ct_own_strings(struct ct_ids *ids);
/* Close every fd except the n (<= 8) listed. Async-signal-safe. */
void ct_close_all_but(const int *keep, int n);

/* ---- cgroups ----------------------------------------------------------------------- */
enum ct_cg_version { CT_CG_NONE, CT_CG_V1, CT_CG_V2 };
/* v1 hierarchies. CT_V1_UNIFIED is the controller-less cgroup2 tree of a hybrid host
 * (/sys/fs/cgroup/unified): no limits, but every sandbox is born in a cgroup2 directory of its
 * slot (or call), where cgroup BPF programs (network policy) can be attached once. */
enum { CT_V1_MEMORY, CT_V1_PIDS, CT_V1_CPU, CT_V1_FREEZER, CT_V1_UNIFIED, CT_V1__COUNT };

struct ct_cg_config {
    enum ct_cg_version version;
    char parent[CT_V1__COUNT][PATH_MAX]; /* v1: per controller; v2: parent[0] only */
    bool has_memsw;                      /* v1 memory.memsw.* (swap accounting) */
    bool has_freezer;
    bool has_unified;  /* v1: the hybrid host's cgroup2 tree (parent[CT_V1_UNIFIED]) */
    bool has_swap_max; /* v2 memory.swap.max */
};

struct ct_cgroup {
    char path[CT_V1__COUNT][PATH_MAX]; /* v2: path[0] only */
    bool made[CT_V1__COUNT];
};

/* Detect the cgroup version under mount_root ("/sys/fs/cgroup") and create the gateway's
 * parent cgroup(s) below the gateway's own cgroup (read from self_cgroup, the text of
 * /proc/self/cgroup). Fills cfg. */
int ct_cg_setup(const char *mount_root, const char *self_cgroup, const char *name,
                struct ct_cg_config *cfg, struct gate_error *err);
/* Remove the gateway's parent cgroup(s) (they must be empty). */
void ct_cg_teardown(const struct ct_cg_config *cfg);
/* Create one call's cgroup under cfg's parents and write the limits (pids + extra_pids). */
int ct_cg_create(const struct ct_cg_config *cfg, const char *name, const struct policy_limits *l,
                 struct ct_cgroup *cg, struct gate_error *err);
/* (Re)write cg's limits; extra_pids are added to pids.max for a resident helper. */
int ct_cg_set_limits(const struct ct_cg_config *cfg, const struct ct_cgroup *cg,
                     const struct policy_limits *l, uint64_t extra_pids, struct gate_error *err);
/* Move pid into cg (every hierarchy). */
int ct_cg_attach(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, pid_t pid,
                 struct gate_error *err);
/* Kill every process in cg, or with pidns != 0 only those in that PID namespace (a pool
 * slot's cgroup also holds its helper and the next warm child): v2 cgroup.kill when killing
 * all; otherwise (and on v1) freeze, SIGKILL each, thaw. */
void ct_cg_kill(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, ino_t pidns);
/* How many members of cg (in pidns, if not 0) are left (v1: the pids hierarchy). */
size_t ct_cg_members(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, ino_t pidns);
/* Up to max pids of cg's members. */
size_t ct_cg_list(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, pid_t *pids,
                  size_t max);
/* Cumulative counters: OOM kills and pids cap hits so far. */
void ct_cg_counters(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, uint64_t *oom_kills,
                    uint64_t *pids_max_hits);
/* Kill what is left, wait until empty, remove. Returns -1 if it could not be removed. */
int ct_cg_destroy(const struct ct_cg_config *cfg, struct ct_cgroup *cg);
/* cg's cgroup v2 directory (v2, or the hybrid host's unified tree), or NULL. */
const char *ct_cg_v2_dir(const struct ct_cg_config *cfg, const struct ct_cgroup *cg);
/* Read an integer field ("oom_kill 3") from a flat-keyed cgroup file; 0 if absent. */
uint64_t ct_cg_read_key(const char *path, const char *key);

/* ---- the direct path --------------------------------------------------------------------- */
/* The direct path, the one way a sandbox child is started from the gateway itself (a call
 * when every pool slot is busy, and jail.c's jailed programs): a fresh cgroup `cg_name` under
 * cfg with `limits`; a child cloned from this thread into new user, PID, mount, network, IPC
 * and UTS namespaces, with a->spec decoded here from `image` for `call_id`; the child waits on
 * a->sync until it is inside the cgroup with its ids mapped (a->uid, a->gid), then runs
 * child(a, arg), which never returns. Returns the child's pid, released; or -1 with err set and
 * the child (if any) killed and reaped. Once made, the cgroup is d->cg (d->have_cg): the
 * caller removes it, after the child is gone. */
struct ct_direct {
    const struct ct_cg_config *cfg;
    const char *cg_name;
    const struct policy_limits *limits;
    const struct gate_buf *image;
    const char *call_id;
    int sync_w; /* the write end of a->sync's pipe */
    void (*child)(const struct ct_child_args *a, const void *arg);
    const void *arg;
    const struct sbx_net *net; /* the call's network policy (netpolicy.h), or NULL */
    bool net_hold;             /* without net: hold the directory to deny-all (a jail's) */
    struct ct_cgroup cg;       /* out */
    bool have_cg;              /* out */
    uint64_t cgid;             /* out: cg's directory under net's policy or held, or 0 */
};
pid_t ct_direct_spawn(struct ct_direct *d, struct ct_child_args *a, struct gate_error *err);

/* ---- the helper pool ---------------------------------------------------------------------- */
/* Small helper processes, each resident in its own cgroup, that clone sandbox children on
 * request (CLONE_PARENT: the child is the gateway's): the child starts inside the cgroup,
 * so no call pays for migrating a process between cgroups (an RCU grace period on v1). */
struct ct_slot;
struct ct_ids {
    uid_t uid;
    gid_t gid;
    int cap_last;
    char *arg_start, *arg_end, *env_start, *env_end;
};
/* Start n helpers (the program at path helper, gatehouse-ct-helper) with cgroups under cfg's
 * parents. Call from the main thread (the children's parent-death signal follows the forking
 * thread). Returns how many were made. */
int ct_pool_init(const struct ct_cg_config *cfg, const struct ct_ids *ids, const char *helper,
                 int n);
/* A free slot, preferring one primed for img; NULL when all are busy. */
struct ct_slot *ct_pool_acquire(uint64_t image_id);
/* The cgroup v2 id of the slot's directory (netpolicy.h), 0 if it has none. */
uint64_t ct_pool_cgroup_id(const struct ct_slot *s);
/* Set the slot cgroup's limits for this call and remember its counters. */
int ct_pool_limits(struct ct_slot *s, const struct policy_limits *l, struct gate_error *err);
/* Hand the job (st's image, call_id, fds: in, out, err, report, status, sync; child ends, the
 * caller keeps and closes its copies) to the slot's warm child, or with fresh (or when that
 * child cannot take it) to a child the helper sets up for it now. Returns the child's pid, or -1;
 * then *sent says whether the job may have started anyway (the call must not be retried). */
pid_t ct_pool_spawn(struct ct_slot *s, const struct ct_state *st, const char *call_id,
                    const int fds[6], bool fresh, bool *sent, struct gate_error *err);
/* The call's child is pid: only processes in its PID namespace are the call's. */
void ct_pool_started(struct ct_slot *s, pid_t pid);
void ct_pool_kill(struct ct_slot *s);
void ct_pool_outcome(struct ct_slot *s, bool *oom, bool *pids_hit);
/* Give the slot back; it is retired instead when it cannot be emptied or its helper died. */
void ct_pool_release(struct ct_slot *s);
void ct_pool_shutdown(void);
/* Prometheus lines: slots, busy, retired, which way calls went, the refill wait. */
void ct_pool_metrics(struct gate_buf *out);
/* One Prometheus sample with its HELP and TYPE lines. */
void ct_metric(struct gate_buf *out, const char *name, const char *type, const char *help,
               double value);

/* ---- the pool's protocol (pool.c <-> helper.c) ---------------------------------------- */
/* The helper is gatehouse-ct-helper, started with its socket on fd 3 and this one variable,
 * "uid:gid:cap_last", in its environment. Messages on that socket:
 *   gateway -> helper  'a' (1 byte): the helper is in its cgroup, it may start children;
 *                      'J' header, call id, image + the child's 6 fds: a job for a child
 *                      made now; 'U' header [+ image]: the slot's call has ended (its child,
 *                      announced or made for a job, is reaped), with its mount namespace to
 *                      drop, and the image it ran when the helper did not know it.
 *   helper -> gateway  struct ct_pool_note: 'N' announces the next child (its socket comes
 *                      with it: the gateway talks to that child directly), 'R' answers 'J'.
 *   child -> gateway   struct ct_ready, when a primed child has set up;
 *   gateway -> child   the call id + 6 fds (primed), or id + image + 6 fds (blank). */
#define CT_HELPER_ENV "GATEHOUSE_CT_HELPER"
#define CT_CALL_ID_MAX 64
#define CT_MSG_HDR 8 /* tag + pid; keeps the image 8-aligned behind it */
#define CT_MSG_MAX_FDS 6
struct ct_pool_note {
    char tag;
    int pid;      /* R: the child running the job, or -errno; N: the warm child, 0 if none */
    int primed;   /* N: set up ahead for the image of the slot's last call */
    int stale[2]; /* children the helper discarded: the gateway's (CLONE_PARENT) to reap */
};
/* A primed child's "ready": device and inode of what each of its binds holds. */
struct ct_ready {
    char tag; /* 'r' */
    uint32_t n;
    uint64_t id[CT_MAX_BINDS][2];
};
/* Receive one message into buf and up to max (<= CT_MSG_MAX_FDS) fds, *nfds of them. Returns
 * the length, 0 for a malformed message (its fds closed), -1 when the peer is gone. */
int ct_msg_recv(int sock, char *buf, size_t cap, int *fds, int max, int *nfds);
/* Send iov[0..n) with nfds fds. */
int ct_msg_send(int sock, struct iovec *iov, int n, const int *fds, int nfds);

#endif
