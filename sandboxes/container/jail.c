/* jail.c: a program of the gateway's own (the microVM tier's QEMU) in a container sandbox.
 *
 * The jail is the container tier's direct path (ct_direct_spawn, container.c) with a different
 * last step: clone into new user, PID, mount, network, IPC and UTS namespaces, wait until the
 * parent has mapped the ids and moved the child into the jail's cgroup, then ct_child_setup (fresh
 * read-only root, unprivileged uid, no capabilities, no_new_privs, container allowlist);
 * and then, instead of starting a tool under an init, exec the program itself as PID 1
 * with exactly the fds the caller passed. See jail.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail.h"

#include "../common/netpolicy.h"

int ct_jail_init(struct ct_jail *j, const char *name, uid_t uid, gid_t gid, struct gate_error *err)
{
    memset(j, 0, sizeof(*j));
    if (uid == 0 || gid == 0)
        return gate_err(err, GATE_E_SANDBOX, "jail: the jailed identity must not be root");
    j->ids.uid = uid;
    j->ids.gid = gid;
    j->ids.cap_last = 63; /* dropping a capability the kernel does not know is EINVAL, ignored */
    ct_own_strings(&j->ids);
    char *self = NULL;
    size_t len = 0;
    if (gate_read_file("/proc/self/cgroup", 65536, &self, &len, err) < 0) return -1;
    int rc = ct_cg_setup("/sys/fs/cgroup", self, name, &j->cg, err);
    free(self);
    if (rc < 0) return -1; /* ct_cg_setup removed the parents of dead gateways' jails */
    j->ready = true;
    return 0;
}

void ct_jail_teardown(struct ct_jail *j)
{
    if (j->ready) ct_cg_teardown(&j->cg);
    j->ready = false;
}

int ct_jail_plan(const char *program, char *const *read_only, char *const *allow,
                 const struct ct_jail_net *net, struct ct_jail_plan *plan, struct gate_error *err)
{
    static char *const none[] = {NULL};
    char *argv[] = {(char *)program, NULL};
    /* The container plan is computed from a policy: describe the program as one. Its tmpfs
     * /tmp is tiny (the program writes nothing there), the rlimits generous: the jail's
     * cgroup is what bounds it. */
    struct policy jp = {
        .name = "jail",
        .command = argv,
        .env = (char **)none,
        .seccomp_allow = allow ? (char **)allow : (char **)none,
        .seccomp_deny = (char **)none,
        .filesystem = {.read_only = (char **)read_only},
        .limits = {.disk_mb = 1, .cpu_time_ms = 24ULL * 3600 * 1000, .file_size_mb = 65536},
    };
    struct ct_state *st = calloc(1, sizeof(*st));
    if (!st) return gate_err(err, GATE_E_NOMEM, "out of memory");
    /* The host's namespace only with a filter in force: the jail's cgroup is held to deny-all
     * before the program is in it (ct_jail_spawn), and the caller opens it per call. */
    st->host_net = net && net->host;
    if (st->host_net && !sbx_net_enforced()) {
        ct_state_free(st);
        return gate_err(err, GATE_E_POLICY, "jail: no network filter on this host: %s",
                        sbx_net_unavailable());
    }
    if (st->host_net && net->resolv && !(st->resolv = strdup(net->resolv))) {
        ct_state_free(st);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    if (sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, jp.seccomp_allow, jp.seccomp_deny, NULL,
                            &st->seccomp, err) < 0 ||
        ct_plan(&jp, st, err) < 0) {
        ct_state_free(st);
        return -1;
    }
    if (ct_plan_identity(st, 65534, 65534) < 0 || ct_image_build(&jp, st, &st->image) < 0) {
        ct_state_free(st);
        return gate_err(err, GATE_E_SANDBOX, "jail: the plan is too large");
    }
    plan->st = st;
    return 0;
}

void ct_jail_plan_free(struct ct_jail_plan *plan)
{
    ct_state_free(plan->st);
    plan->st = NULL;
}

/* In the child, after ct_child_setup: fds[i] becomes fd i, the report pipe stays (CLOEXEC) above
 * them, everything else closes, and the program replaces us as PID 1. System calls only. */
__attribute__((noreturn)) static void exec_jailed(char *const *argv, const int *fds, int nfds,
                                                  int report)
{
    static char *const empty_env[] = {NULL};
    int lifted[CT_JAIL_MAX_FDS];
    /* Lift every fd above the targets first, so no dup2 below clobbers one not yet placed. */
    for (int i = 0; i < nfds; i++)
        if ((lifted[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 16)) < 0)
            sbx_child_fail(report, "dup", errno);
    if ((report = fcntl(report, F_DUPFD_CLOEXEC, 16)) < 0) sbx_child_fail(report, "dup", errno);
    for (int i = 0; i < nfds; i++)
        if (dup2(lifted[i], i) < 0) sbx_child_fail(report, "dup2", errno);
    if (dup3(report, nfds, O_CLOEXEC) < 0) sbx_child_fail(report, "dup3", errno);
    report = nfds;
    syscall(SYS_close_range, (unsigned)nfds + 1, ~0U, 0U);
    if (setsid() < 0) sbx_child_fail(report, "setsid", errno);
    if (chdir("/") < 0) sbx_child_fail(report, "chdir", errno);
    execve(argv[0], argv, empty_env);
    sbx_child_fail(report, "execve", errno);
}

struct exec_args {
    char *const *argv;
    const int *fds;
    int nfds;
};

/* The jail's last step, in the child (ct_direct_spawn): the container setup, then the program. */
static void setup_and_exec(const struct ct_child_args *a, const void *arg)
{
    const struct exec_args *x = arg;
    ct_child_setup(a);
    exec_jailed(x->argv, x->fds, x->nfds, a->report);
}

int ct_jail_spawn(struct ct_jail *j, const struct ct_jail_plan *plan, char *const *argv,
                  const int *fds, int nfds, const struct policy_limits *l, struct ct_jail_proc *p,
                  struct gate_error *err)
{
    static unsigned long long seq;
    memset(p, 0, sizeof(*p));
    p->pid = -1;
    if (!j->ready || nfds < 3 || nfds > CT_JAIL_MAX_FDS)
        return gate_err(err, GATE_E_SANDBOX, "jail: not initialised");
    char name[48];
    snprintf(name, sizeof(name), "j%d-%llu", (int)getpid(),
             __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    int report[2] = {-1, -1}, sync[2] = {-1, -1};
    if (pipe2(report, O_CLOEXEC) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "jail: pipe2");
        goto fail;
    }
    /* ct_child_setup keeps in, out, errfd, report, sync, status and extra_fd open through the
     * setup: fds 3 and 4 travel as the last two. */
    struct ct_child_args a = {
        .in = fds[0],
        .out = fds[1],
        .errfd = fds[2],
        .report = report[1],
        .status = nfds > 3 ? fds[3] : -1,
        .sync = sync[0],
        .extra_fd = nfds > 4 ? fds[4] : -1,
        .setup_fd = -1,
        .uid = j->ids.uid,
        .gid = j->ids.gid,
        .cap_last = j->ids.cap_last,
        .dev_kvm = plan->dev_kvm,
        .arg_start = j->ids.arg_start,
        .arg_end = j->ids.arg_end,
        .env_start = j->ids.env_start,
        .env_end = j->ids.env_end,
    };
    struct exec_args x = {argv, fds, nfds};
    struct ct_direct d = {.cfg = &j->cg,
                          .cg_name = name,
                          .limits = l,
                          .image = &plan->st->image,
                          .call_id = "jail",
                          .sync_w = sync[1],
                          .child = setup_and_exec,
                          .arg = &x,
                          .net_hold = plan->st->host_net};
    p->pid = ct_direct_spawn(&d, &a, err);
    p->cg = d.cg;
    p->have_cg = d.have_cg;
    p->cgid = d.cgid;
    if (p->pid < 0) goto fail;
    close(report[1]), report[1] = -1;
    if (sbx_child_status(report[0], err) < 0) goto fail;
    close(report[0]);
    close(sync[0]);
    close(sync[1]);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (report[i] >= 0) close(report[i]);
        if (sync[i] >= 0) close(sync[i]);
    }
    ct_jail_kill(j, p);
    ct_jail_reap(j, p, false);
    return -1;
}

void ct_jail_kill(struct ct_jail *j, struct ct_jail_proc *p)
{
    /* p->pid is our unreaped child, so the number cannot have been reused. It is PID 1 of the
     * jail's namespace, which nothing can leave: its death takes every process of the jail
     * with it (the kernel kills and reaps them before PID 1's exit completes). Without a pid
     * (a failed start) the cgroup kill takes what may be there; ct_jail_reap falls back to it
     * too if the cgroup is still busy. */
    if (p->pid > 0)
        kill(p->pid, SIGKILL);
    else if (p->have_cg)
        ct_cg_kill(&j->cg, &p->cg, 0);
}

int ct_jail_reap(struct ct_jail *j, struct ct_jail_proc *p, bool reaped)
{
    if (p->pid > 0 && !reaped)
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    p->pid = -1;
    int rc = 0;
    if (p->have_cg && ct_cg_destroy(&j->cg, &p->cg) < 0) rc = -1;
    if (rc == 0) sbx_net_forget_cgroup(p->cgid); /* else the directory stays held to deny-all */
    p->have_cg = false;
    p->cgid = 0;
    return rc;
}

void ct_jail_cpu_background(struct ct_jail *j, const struct ct_jail_proc *p, bool background)
{
    if (!p->have_cg) return;
    /* v1 cpu.shares (default 1024) or v2 cpu.weight (default 100): one sixteenth in the
     * background. A failed write only costs latency, never isolation. */
    bool v2 = j->cg.version == CT_CG_V2;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", p->cg.path[v2 ? 0 : CT_V1_CPU],
             v2 ? "cpu.weight" : "cpu.shares");
    const char *v = v2 ? (background ? "6" : "100") : (background ? "64" : "1024");
    autoclose int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && gate_write_all(fd, v, strlen(v)) < 0)
        gate_log("warn", "jail.cpu_weight", "write %s: %s", path, strerror(errno));
}

bool ct_jail_oom(struct ct_jail *j, const struct ct_jail_proc *p)
{
    uint64_t oom = 0, pids = 0;
    if (p->have_cg) ct_cg_counters(&j->cg, &p->cg, &oom, &pids);
    return oom > 0;
}
