/* container.c: the `container` tier: namespaces, a fresh root, cgroups and seccomp.
 *
 * Each call runs in a child cloned straight into new user, PID, mount, network, IPC
 * and UTS namespaces (and a cgroup namespace once inside its cgroup); the child
 * (rootfs.c) builds a read-only tmpfs root, pivots into it and runs the tool under
 * its own init. Usually the child comes from the pool (pool.c): started by a helper
 * resident in a pooled cgroup, already mapped and, for a tool the slot ran before,
 * already set up. When every slot is busy, the call takes the direct path here:
 * clone from this thread, map the ids, move the child into a fresh cgroup.
 * This file is the parent's side of both: the supervision through sbx_supervise, and
 * turning the tool's status and the cgroup's counters into the result (oom, pids
 * cap). Everything that can be computed before a call is computed at policy load
 * (plan.c, image.c); nothing is compiled per call.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/netpolicy.h"
#include "container.h"

/* Helpers forked at start; calls beyond this many at once take the direct path. */
#define POOL_SIZE 8

static struct {
    uid_t uid;
    gid_t gid;
    int cap_last;
    char *arg_start, *arg_end, *env_start, *env_end;
    struct ct_cg_config cg;
    unsigned long long calls;      /* atomic */
    unsigned long long setup_errs; /* atomic */
    unsigned long long cg_leaks;   /* atomic */
    unsigned long long direct;     /* atomic: calls that took the direct path */
    /* atomic: where the gateway's side of calls spent its time, in ns (enum phase) */
    unsigned long long phase_ns[5];
} ct;

/* The gateway's side of a call, in order: a pool slot and its limits; the handoff to a
 * sandbox child (waiting for the slot's next child included); the child's setup until the
 * tool exec'd; the run until init's exit was reaped; the release of the slot or cgroup. */
enum phase { PH_ACQUIRE, PH_HANDOFF, PH_SETUP, PH_RUN, PH_RELEASE };
static const char *const phase_names[] = {"acquire", "handoff", "setup", "run", "release"};

/* Add the time since *t to phase ph and restart *t. */
static void phase_end(enum phase ph, uint64_t *t)
{
    uint64_t now = gate_monotonic_ns();
    __atomic_add_fetch(&ct.phase_ns[ph], now - *t, __ATOMIC_RELAXED);
    *t = now;
}

/* ---- init ---------------------------------------------------------------------------- */

static int read_cap_last(void)
{
    char *buf = NULL;
    size_t len = 0;
    int v = 63; /* dropping a capability the kernel does not know is EINVAL, ignored */
    if (gate_read_file("/proc/sys/kernel/cap_last_cap", 64, &buf, &len, NULL) == 0) {
        v = atoi(buf);
        free(buf);
    }
    return v > 0 && v < 64 ? v : 63;
}

static int noop_child(void *arg)
{
    (void)arg;
    return 0; /* clone() exits with this; no noreturn call on a foreign stack (ASan warns) */
}

/* Can this host give us every namespace we need? One throwaway clone says so at start. */
static int probe_namespaces(struct gate_error *err)
{
    static char stack[16384] __attribute__((aligned(16)));
    pid_t pid = clone(noop_child, stack + sizeof(stack),
                      CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                          CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD,
                      NULL);
    if (pid < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "container: cannot create namespaces");
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

static int container_init(const struct sbx_config *cfg, struct gate_error *err)
{
    if (geteuid() != 0)
        return gate_err(err, GATE_E_SANDBOX,
                        "container: the gateway must run as root (uid maps, "
                        "cgroups)");
    ct.uid = cfg->tool_uid ? cfg->tool_uid : 65534;
    ct.gid = cfg->tool_gid ? cfg->tool_gid : 65534;
    /* Tools never map to host uid 0: the identity is the configured unprivileged one. */
    if (ct.uid == 0 || ct.gid == 0)
        return gate_err(err, GATE_E_SANDBOX, "container: the tool identity must not be root");
    /* setgroups is denied inside the sandbox (so a tool can never drop a group to get past
     * a negative group permission), which also means the child cannot clear groups it
     * inherited. A root gateway needs no supplementary groups: clear them for every thread
     * here, once. */
    if (getgroups(0, NULL) > 0 && setgroups(0, NULL) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno,
                              "container: clearing supplementary groups");
    ct.cap_last = read_cap_last();
    struct ct_ids own = {0};
    ct_own_strings(&own);
    ct.arg_start = own.arg_start, ct.arg_end = own.arg_end;
    ct.env_start = own.env_start, ct.env_end = own.env_end;
    if (probe_namespaces(err) < 0) return -1;
    char *self = NULL;
    size_t len = 0;
    if (gate_read_file("/proc/self/cgroup", 65536, &self, &len, err) < 0) return -1;
    char name[64];
    snprintf(name, sizeof(name), "gatehouse-%d", (int)getpid());
    int rc = ct_cg_setup("/sys/fs/cgroup", self, name, &ct.cg, err);
    free(self);
    if (rc < 0) return -1;
    struct ct_ids ids = {ct.uid,     ct.gid,       ct.cap_last, ct.arg_start,
                         ct.arg_end, ct.env_start, ct.env_end};
    /* GATEHOUSE_CONTAINER_POOL overrides the pool size (0: every call takes the direct path,
     * which the tests use to cover it). */
    int want = POOL_SIZE;
    const char *env = getenv("GATEHOUSE_CONTAINER_POOL");
    if (env && *env) want = atoi(env);
    if (want < 0 || want > 32) want = POOL_SIZE;
    char helper[PATH_MAX];
    if (want > 0 && sbx_find_libexec("gatehouse-ct-helper", helper, sizeof(helper)) < 0) {
        gate_log("warn", "container.pool",
                 "gatehouse-ct-helper not found next to the gateway or in ../libexec: no pool, "
                 "every call takes the direct path");
        want = 0;
    }
    int made = ct_pool_init(&ct.cg, &ids, helper, want);
    if (made < want)
        gate_log("warn", "container.pool", "%d of %d pool slots made; the rest run direct", made,
                 want);
    return 0;
}

static void container_shutdown(void)
{
    ct_pool_shutdown();
    ct_cg_teardown(&ct.cg);
}

void ct_metric(struct gate_buf *out, const char *name, const char *type, const char *help,
               double value)
{
    gate_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                    value);
}

static void container_metrics(struct gate_buf *out)
{
#define LOAD(x) (double)__atomic_load_n(&(x), __ATOMIC_RELAXED)
    ct_metric(out, "gatehouse_container_calls_total", "counter", "Container calls started.",
              LOAD(ct.calls));
    ct_metric(out, "gatehouse_container_setup_errors_total", "counter",
              "Container calls whose sandbox could not be set up.", LOAD(ct.setup_errs));
    ct_metric(out, "gatehouse_container_cgroup_leaks_total", "counter",
              "Call cgroups that could not be removed.", LOAD(ct.cg_leaks));
    ct_metric(out, "gatehouse_container_direct_calls_total", "counter",
              "Container calls that took the direct path (no free pool slot).", LOAD(ct.direct));
    ct_metric(out, "gatehouse_container_cgroup_version", "gauge",
              "The cgroup version the container tier uses (1 or 2).",
              ct.cg.version == CT_CG_V2 ? 2 : 1);
    gate_buf_printf(out,
                    "# HELP gatehouse_container_phase_seconds_total Time the gateway's side of "
                    "container calls spent per phase.\n"
                    "# TYPE gatehouse_container_phase_seconds_total counter\n");
    for (int i = 0; i < 5; i++)
        gate_buf_printf(out, "gatehouse_container_phase_seconds_total{phase=\"%s\"} %.6f\n",
                        phase_names[i], LOAD(ct.phase_ns[i]) / 1e9);
#undef LOAD
    ct_pool_metrics(out);
}

/* ---- prepare ------------------------------------------------------------------------- */

/* network.egress: the host's network namespace, every connect and datagram decided by the BPF
 * programs on the sandbox's cgroup (a policy that cannot be enforced fails here, with why);
 * network: none: a namespace of its own, and the programs only record what the call did. */
static int prepare_network(const struct policy *p, struct ct_state *st, struct gate_error *err)
{
    st->host_net = p->network == NETWORK_EGRESS;
    st->dns = st->host_net && p->net.dns;
    if (!(st->resolv = sbx_net_resolv_conf(p, err))) return -1;
    if (st->host_net) {
        if (sbx_net_enforced() && !ct.cg.has_unified && ct.cg.version != CT_CG_V2)
            return gate_err(err, GATE_E_POLICY,
                            "network.egress: the container tier has no cgroup v2 directory to "
                            "filter in on this host");
        return sbx_net_prepare(p, &st->net, err);
    }
    return sbx_net_prepare_open(&st->net, err);
}

static int container_prepare(struct policy *p, struct gate_error *err)
{
    if (!p->command || !p->command[0] || p->command[0][0] != '/')
        return gate_err(err, GATE_E_POLICY, "container: command[0] must be an absolute path");
    struct ct_state *st = calloc(1, sizeof(*st));
    if (!st) return gate_err(err, GATE_E_NOMEM, "out of memory");
    /* What init and the tool's start do under the filter: a policy denying one of these would
     * leave init unable to start, wait for or forward signals to the tool (and report it). */
    static const char *const init_needs[] = {
        "rt_sigprocmask", "clone", "rt_sigtimedwait", "wait4",  "kill", "write",
        "exit_group",     "close", "close_range",     "fcntl",  "dup2", "dup3",
        "setsid",         "chdir", "getcwd",          "execve", NULL};
    for (size_t j = 0; p->seccomp_deny && p->seccomp_deny[j]; j++)
        for (size_t i = 0; init_needs[i]; i++)
            if (strcmp(init_needs[i], p->seccomp_deny[j]) == 0) {
                ct_state_free(st);
                return gate_err(err, GATE_E_POLICY,
                                "seccomp.deny: '%s' cannot be denied in the container tier (the "
                                "sandbox's init uses it to start and wait for the tool)",
                                p->seccomp_deny[j]);
            }
    if (sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, p->seccomp_allow, p->seccomp_deny, NULL,
                            &st->seccomp, err) < 0 ||
        ct_plan(p, st, err) < 0) {
        ct_state_free(st);
        return -1;
    }
    /* A pool child is primed (set up before its call arrives) unless the policy's own filter
     * refuses one of the calls it makes after the filter is in place and before its call. */
    static const char *const primed_needs[] = {"recvmsg", "newfstatat", "read", NULL};
    st->primable = true;
    for (size_t i = 0; primed_needs[i]; i++)
        for (size_t j = 0; p->seccomp_deny && p->seccomp_deny[j]; j++)
            if (strcmp(primed_needs[i], p->seccomp_deny[j]) == 0) st->primable = false;
    if (prepare_network(p, st, err) < 0) {
        ct_state_free(st);
        return -1;
    }
    static uint64_t next_image_id;
    st->image_id = __atomic_add_fetch(&next_image_id, 1, __ATOMIC_RELAXED);
    if (ct_plan_identity(st, ct.uid, ct.gid) < 0 || ct_image_build(p, st, &st->image) < 0) {
        ct_state_free(st);
        return gate_err(err, GATE_E_POLICY, "container: the policy's plan is too large");
    }
    p->sbx_state = st;
    p->sbx_state_free = ct_state_free;
    return 0;
}

/* ---- run ------------------------------------------------------------------------------- */

struct call_ctx {
    pid_t init;
    struct ct_slot *slot; /* pooled: the slot's cgroup */
    struct ct_cgroup cg;  /* direct: the call's own cgroup */
    bool have_cg;
    uint64_t cgid; /* the cgroup v2 directory under the call's network policy, or 0 */
};

static void kill_call(void *arg)
{
    struct call_ctx *c = arg;
    /* init is our child and not yet reaped (sbx_supervise calls this before waitpid), so its
     * pid cannot have been reused. Killing PID 1 of the namespace kills all of it; the
     * cgroup kill catches anything that is not (yet) in it. */
    kill(c->init, SIGKILL);
    if (c->slot)
        ct_pool_kill(c->slot);
    else if (c->have_cg)
        ct_cg_kill(&ct.cg, &c->cg, 0);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

struct pipes {
    int in[2], out[2], err[2], report[2], status[2], sync[2];
};

static void close_pipes(struct pipes *pp)
{
    int *fds = (int *)pp;
    for (size_t i = 0; i < sizeof(*pp) / sizeof(int); i++)
        close_fd(&fds[i]);
}

static int open_pipes(struct pipes *pp, struct gate_error *err)
{
    if (pipe2(pp->in, O_CLOEXEC) < 0 || pipe2(pp->out, O_CLOEXEC) < 0 ||
        pipe2(pp->err, O_CLOEXEC) < 0 || pipe2(pp->report, O_CLOEXEC) < 0 ||
        pipe2(pp->status, O_CLOEXEC) < 0 || pipe2(pp->sync, O_CLOEXEC) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "pipe2");
    return 0;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* The tool's own wait status, as init reported it; reclassify the result from it. */
static void tool_outcome(int status_fd, struct sbx_result *res)
{
    int status = 0;
    ssize_t n = read(status_fd, &status, sizeof(status));
    if (n != (ssize_t)sizeof(status))
        return; /* init was killed before the tool ended: keep what supervise saw */
    if (res->status == SBX_TIMED_OUT || res->status == SBX_OUTPUT_TRUNCATED) return;
    sbx_result_from_wait(res, status);
}

static void cgroup_outcome(struct call_ctx *cc, struct sbx_result *res)
{
    bool oom = false, pids_hit = false;
    if (cc->slot) {
        ct_pool_outcome(cc->slot, &oom, &pids_hit);
    } else {
        uint64_t oom_kills = 0, pids_max = 0;
        ct_cg_counters(&ct.cg, &cc->cg, &oom_kills, &pids_max);
        oom = oom_kills > 0, pids_hit = pids_max > 0; /* a fresh cgroup: all from this call */
    }
    if (pids_hit) {
        res->pids_limit_hit = true;
        if (res->status == SBX_FAILED || res->status == SBX_KILLED) {
            res->status = SBX_RESOURCE_LIMIT;
            snprintf(res->detail, sizeof(res->detail), "pids limit reached");
        }
    }
    if (oom && res->status != SBX_TIMED_OUT) {
        res->status = SBX_OOM;
        snprintf(res->detail, sizeof(res->detail), "memory limit reached: OOM kill in the cgroup");
    }
}

static int child_fds(const struct pipes *pp, int fds[6])
{
    fds[0] = pp->in[0], fds[1] = pp->out[1], fds[2] = pp->err[1];
    fds[3] = pp->report[1], fds[4] = pp->status[1], fds[5] = pp->sync[0];
    return 0;
}

pid_t ct_direct_spawn(struct ct_direct *d, struct ct_child_args *a, struct gate_error *err)
{
    if (ct_cg_create(d->cfg, d->cg_name, d->limits, &d->cg, err) < 0) return -1;
    d->have_cg = true;
    /* The directory is under the call's network policy (or held to deny-all) before the
     * child is in it. */
    if (d->net || d->net_hold) {
        d->cgid = sbx_net_cgroup_id(ct_cg_v2_dir(d->cfg, &d->cg));
        int rc = !d->cgid ? gate_err(err, GATE_E_SANDBOX, "network policy: no cgroup v2 directory")
                 : d->net ? sbx_net_begin_cgroup(d->net, d->cgid, err)
                          : sbx_net_hold_cgroup(d->cgid, err);
        if (rc < 0) {
            d->cgid = 0;
            return -1;
        }
    }
    autofree struct ct_spec *spec = malloc(sizeof(*spec));
    if (!spec) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (ct_image_decode(d->image->data, d->image->len, d->call_id, spec) < 0)
        return gate_err(err, GATE_E_INTERNAL, "container: bad policy image");
    a->spec = spec;
    /* No CLONE_VM: the child runs on its own copy of our memory (spec and the caller's
     * stack included), so nothing it does can touch the gateway. */
    pid_t pid = ct_fork_into(ct_ns_flags(spec));
    if (pid == 0) {
        d->child(a, d->arg);
        _exit(127); /* not reached: child() never returns */
    }
    a->spec = NULL;
    if (pid < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "container: clone");
    /* Nothing of the child runs before it is inside its cgroup and mapped, so nothing it runs
     * escapes the limits or holds another identity. */
    const char *step = "sync with the sandbox child";
    int rc = ct_cg_attach(d->cfg, &d->cg, pid, err);
    if (rc == 0 && (ct_map_ids(pid, a->uid, a->gid, &step) < 0 || write(d->sync_w, "g", 1) != 1))
        rc = gate_err_errno(err, GATE_E_SANDBOX, errno, "container: %s", step);
    if (rc < 0) {
        kill(pid, SIGKILL);
        reap(pid);
        return -1;
    }
    return pid;
}

static void run_tool(const struct ct_child_args *a, const void *arg)
{
    (void)arg;
    ct_child_main((void *)a);
}

/* The tool's stack until it execs, in a direct child's own copy of our memory. */
static char tool_stack[32768] __attribute__((aligned(16)));

/* The direct path for a call: a cgroup of its own, named c<n>. */
static pid_t clone_direct(const struct ct_state *st, const char *call_id, const struct pipes *pp,
                          struct call_ctx *cc, const struct policy *p, struct gate_error *err)
{
    char name[32];
    snprintf(name, sizeof(name), "c%llu", __atomic_add_fetch(&ct.direct, 1, __ATOMIC_RELAXED));
    struct ct_child_args a = {
        .in = pp->in[0],
        .out = pp->out[1],
        .errfd = pp->err[1],
        .report = pp->report[1],
        .status = pp->status[1],
        .sync = pp->sync[0],
        .extra_fd = -1,
        .setup_fd = -1,
        .tool_stack = tool_stack,
        .tool_stack_size = sizeof(tool_stack),
        .uid = ct.uid,
        .gid = ct.gid,
        .cap_last = ct.cap_last,
        .arg_start = ct.arg_start,
        .arg_end = ct.arg_end,
        .env_start = ct.env_start,
        .env_end = ct.env_end,
    };
    struct ct_direct d = {.cfg = &ct.cg,
                          .cg_name = name,
                          .limits = &p->limits,
                          .image = &st->image,
                          .call_id = call_id,
                          .sync_w = pp->sync[1],
                          .child = run_tool,
                          .net = st->net};
    pid_t pid = ct_direct_spawn(&d, &a, err);
    cc->cg = d.cg;
    cc->have_cg = d.have_cg;
    cc->cgid = d.cgid;
    return pid;
}

/* Start the child (pooled when a slot is free) and bring it to the point where the tool has
 * exec'd. Returns the init pid, or -1 (err set; the child, if any, killed and reaped). */
static pid_t start_child(const struct policy *p, const char *call_id, struct pipes *pp,
                         struct call_ctx *cc, bool fresh, uint64_t *t, struct gate_error *err)
{
    const struct ct_state *st = p->sbx_state;
    pid_t pid = -1;
    if ((cc->slot = ct_pool_acquire(st->image_id))) {
        int fds[6];
        bool sent = false;
        child_fds(pp, fds);
        int lim = ct_pool_limits(cc->slot, &p->limits, err);
        /* Before the slot's child can start the tool: the slot's directory under the call's
         * network policy (it is deny-all between calls). */
        if (lim == 0 && st->net) {
            lim = sbx_net_begin_cgroup(st->net, ct_pool_cgroup_id(cc->slot), err);
            if (lim == 0) cc->cgid = ct_pool_cgroup_id(cc->slot);
        }
        phase_end(PH_ACQUIRE, t);
        if (lim < 0 || (pid = ct_pool_spawn(cc->slot, st, call_id, fds, fresh, &sent, err)) < 0) {
            if (sent) /* it may be running: fail the call rather than run it twice */
                return -1;
            json_decref(sbx_net_end_cgroup(cc->cgid));
            cc->cgid = 0;
            ct_pool_release(cc->slot); /* retired if its helper failed; go direct */
            cc->slot = NULL;
            memset(err, 0, sizeof(*err));
        }
    }
    if (!cc->slot && (pid = clone_direct(st, call_id, pp, cc, p, err)) < 0) return -1;
    cc->init = pid;
    if (cc->slot) ct_pool_started(cc->slot, pid);
    close_fd(&pp->in[0]);
    close_fd(&pp->out[1]);
    close_fd(&pp->err[1]);
    close_fd(&pp->report[1]);
    close_fd(&pp->status[1]);
    close_fd(&pp->sync[0]);
    /* A pooled child was mapped by its helper before it was handed out and waits on no sync
     * pipe; a direct child was released by ct_direct_spawn once mapped and in its cgroup. */
    close_fd(&pp->sync[1]);
    phase_end(PH_HANDOFF, t);
    int setup = sbx_child_status(pp->report[0], err);
    phase_end(PH_SETUP, t);
    if (setup < 0) {
        kill(pid, SIGKILL);
        reap(pid);
        cc->init = -1;
        /* A child set up ahead of time whose binds changed since: nothing of the tool ran,
         * so the call may start again in a child set up now (-2). */
        return cc->slot && !fresh && strstr(err->msg, CT_STALE_STEP) ? -2 : -1;
    }
    return pid;
}

static int container_run(const struct policy *p, const struct sbx_call *call,
                         struct sbx_result *res, struct gate_error *err)
{
    struct gate_error local = {0};
    if (!err) err = &local;
    const struct ct_state *st = p->sbx_state;
    if (st->host_net && !st->net) /* prepared by `policy check`: never run so */
        return gate_err(err, GATE_E_SANDBOX, "container: the network policy is not enforced");
    __atomic_add_fetch(&ct.calls, 1, __ATOMIC_RELAXED);
    struct pipes pp;
    memset(&pp, 0xff, sizeof(pp)); /* every fd -1 */
    struct call_ctx cc = {.init = -1};
    int rc = -1;
    uint64_t t = gate_monotonic_ns();
    if (open_pipes(&pp, err) < 0) goto done;
    uint64_t start = t;
    pid_t started = start_child(p, call->call_id, &pp, &cc, false, &t, err);
    if (started == -2) { /* retry once, with fresh pipes and a sandbox set up now */
        json_decref(sbx_net_end_cgroup(cc.cgid));
        ct_pool_release(cc.slot);
        close_pipes(&pp);
        cc = (struct call_ctx){.init = -1};
        memset(err, 0, sizeof(*err));
        if (open_pipes(&pp, err) < 0) goto done;
        started = start_child(p, call->call_id, &pp, &cc, true, &t, err);
    }
    if (started < 0) goto done;
    struct supervise sv = {
        .pid = cc.init,
        .stdin_fd = pp.in[1],
        .stdout_fd = pp.out[0],
        .stderr_fd = pp.err[0],
        .input = call->input,
        .input_len = call->input_len,
        .wall_timeout_ms = p->limits.wall_timeout_ms,
        .output_bytes = p->limits.output_bytes,
        .start_ns = start,
        .kill_all = kill_call,
        .ctx = &cc,
    };
    pp.in[1] = pp.out[0] = pp.err[0] = -1; /* owned by sbx_supervise now */
    rc = sbx_supervise(&sv, res, NULL, err);
    phase_end(PH_RUN, &t);
    if (rc == 0) {
        tool_outcome(pp.status[0], res);
        cgroup_outcome(&cc, res);
    }
done:
    if (rc < 0) __atomic_add_fetch(&ct.setup_errs, 1, __ATOMIC_RELAXED);
    /* Every process of the call is gone (init reaped, its PID namespace with it): what it did
     * on the network, and its directory back to deny-all or out of the map. */
    json_t *net = sbx_net_end_cgroup(cc.cgid);
    /* network: none: the filter let everything through to a namespace holding only lo. */
    if (net && !st->host_net)
        json_object_set_new(json_object_get(net, "network"), "own_namespace", json_true());
    if (rc == 0)
        res->activity = net;
    else
        json_decref(net);
    if (cc.slot) ct_pool_release(cc.slot);
    if (cc.have_cg && ct_cg_destroy(&ct.cg, &cc.cg) < 0)
        __atomic_add_fetch(&ct.cg_leaks, 1, __ATOMIC_RELAXED);
    else if (!cc.slot)
        sbx_net_forget_cgroup(cc.cgid); /* the call's own directory is gone (or never was) */
    close_pipes(&pp);
    phase_end(PH_RELEASE, &t);
    return rc;
}

const struct sbx_ops sbx_container_ops = {
    .name = "container",
    .isolation = ISOLATION_CONTAINER,
    .init = container_init,
    .prepare = container_prepare,
    .run = container_run,
    .shutdown = container_shutdown,
    .metrics = container_metrics,
};
