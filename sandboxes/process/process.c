/* process.c: the `process` tier: a bare process with seccomp.
 *
 * The cheapest isolation: fork/exec in a new session and process group, stdin
 * carrying the arguments JSON, a cleared environment, every fd above 2 closed,
 * rlimits from the policy, an unprivileged uid/gid, no_new_privs and a seccomp
 * filter compiled at policy load that refuses what Docker's default profile
 * refuses (and setsid/setpgid, so the tool cannot leave its process group). At
 * the end of the call, or at its deadline, the whole group is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sbx_internal.h"

struct process_state {
    struct sock_fprog seccomp;
};

static uid_t tool_uid;
static gid_t tool_gid;
static bool drop_identity;

static int process_init(const struct sbx_config *cfg, struct gate_error *err)
{
    (void)err;
    tool_uid = cfg->tool_uid;
    tool_gid = cfg->tool_gid;
    /* Only root can (and must) switch to the unprivileged tool identity. An unprivileged
     * gateway runs tools as itself: they can never have more than it has. */
    drop_identity = geteuid() == 0;
    return 0;
}

static void state_free(void *state)
{
    struct process_state *st = state;
    if (st) {
        free(st->seccomp.filter);
        free(st);
    }
}

static int process_prepare(struct policy *p, struct gate_error *err)
{
    struct process_state *st = calloc(1, sizeof(*st));
    if (!st)
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (sbx_seccomp_compile(SBX_SECCOMP_DENYLIST, p->seccomp_allow, p->seccomp_deny, &st->seccomp,
                            err) < 0) {
        free(st);
        return -1;
    }
    p->sbx_state = st;
    p->sbx_state_free = state_free;
    return 0;
}

static void set_limit(int resource, rlim_t value)
{
    struct rlimit rl = {value, value};
    setrlimit(resource, &rl);
}

struct child_args {
    const struct policy *p;
    const struct process_state *st;
    char **env;
    int in, out, errfd, report;
};

/* In the child, which shares the gateway's memory (CLONE_VM|CLONE_VFORK) until execve: only
 * raw system calls, nothing that allocates or takes a lock. Identity changes use the raw
 * syscalls on purpose: glibc's wrappers would try to change every thread of the gateway. */
static int child(void *arg)
{
    const struct child_args *a = arg;
    const struct policy *p = a->p;
    int report = a->report;
    if (setsid() < 0)
        sbx_child_fail(report, "setsid", errno);
    if (dup2(a->in, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->errfd, 2) < 0)
        sbx_child_fail(report, "dup2", errno);
    /* Keep only stdio and the report pipe (CLOEXEC, so it closes on exec). */
    if (report != 3) {
        if (dup3(report, 3, O_CLOEXEC) < 0)
            sbx_child_fail(report, "dup3", errno);
        report = 3;
    }
    syscall(SYS_close_range, 4U, ~0U, 0U);
    const struct policy_limits *l = &p->limits;
    set_limit(RLIMIT_AS, (rlim_t)l->memory_mb << 20);
    set_limit(RLIMIT_CPU, (rlim_t)((l->cpu_time_ms + 999) / 1000));
    set_limit(RLIMIT_FSIZE, (rlim_t)l->file_size_mb << 20);
    set_limit(RLIMIT_NPROC, (rlim_t)l->pids);
    set_limit(RLIMIT_CORE, 0);
    if (drop_identity) {
        /* Supplementary groups first, then gid, then uid: once uid is unprivileged the
         * process can no longer change its groups. Dropping uid 0 clears every capability. */
        if (syscall(SYS_setgroups, 0, NULL) < 0)
            sbx_child_fail(report, "setgroups", errno);
        if (syscall(SYS_setresgid, tool_gid, tool_gid, tool_gid) < 0)
            sbx_child_fail(report, "setresgid", errno);
        if (syscall(SYS_setresuid, tool_uid, tool_uid, tool_uid) < 0)
            sbx_child_fail(report, "setresuid", errno);
    }
    /* Set after the identity change, which clears it: the tool dies with the gateway. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (chdir("/") < 0)
        sbx_child_fail(report, "chdir /", errno);
    if (sbx_seccomp_install(&a->st->seccomp) < 0)
        sbx_child_fail(report, "seccomp", errno);
    execve(p->command[0], p->command, a->env);
    sbx_child_fail(report, "execve", errno);
}

static void kill_group(void *ctx)
{
    pid_t pgid = *(pid_t *)ctx;
    kill(-pgid, SIGKILL);
}

static void close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

static int process_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
                       struct gate_error *err)
{
    const struct process_state *st = p->sbx_state;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, report[2] = {-1, -1};
    char **env = sbx_tool_env(p, call->call_id);
    int rc = -1;
    /* Enough for the child's few frames before execve; one per call on this thread's stack. */
    char child_stack[32768] __attribute__((aligned(16)));
    if (!env) {
        gate_err(err, GATE_E_NOMEM, "out of memory");
        goto done;
    }
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(report, O_CLOEXEC) < 0) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "pipe2");
        goto done;
    }
    struct child_args args = {p, st, env, in[0], out[1], errp[1], report[1]};
    uint64_t start = gate_monotonic_ns();
    /* CLONE_VM|CLONE_VFORK (what posix_spawn does): no copy of the gateway's page tables, and
     * the parent waits until the child has exec'd or failed. The child stack is ours. */
    pid_t pid = clone(child, child_stack + sizeof(child_stack), CLONE_VM | CLONE_VFORK | SIGCHLD,
                      &args);
    if (pid < 0) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "clone");
        goto done;
    }
    close(in[0]), in[0] = -1;
    close(out[1]), out[1] = -1;
    close(errp[1]), errp[1] = -1;
    close(report[1]), report[1] = -1;
    if (sbx_child_status(report[0], err) < 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        goto done;
    }
    struct supervise sv = {
        .pid = pid,
        .stdin_fd = in[1],
        .stdout_fd = out[0],
        .stderr_fd = errp[0],
        .input = call->input,
        .input_len = call->input_len,
        .wall_timeout_ms = p->limits.wall_timeout_ms,
        .output_bytes = p->limits.output_bytes,
        .start_ns = start,
        .kill_all = kill_group,
        .ctx = &pid,
    };
    in[1] = out[0] = errp[0] = -1; /* owned by sbx_supervise now */
    rc = sbx_supervise(&sv, res, NULL, err);
done:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    close_pair(report);
    sbx_free_strv(env);
    return rc;
}

const struct sbx_ops sbx_process_ops = {
    .name = "process",
    .isolation = ISOLATION_PROCESS,
    .init = process_init,
    .prepare = process_prepare,
    .run = process_run,
};
