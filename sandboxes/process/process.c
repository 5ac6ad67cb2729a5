/* process.c: the `process` tier: a bare process with seccomp.
 *
 * The cheapest isolation: spawn in a new session and process group, stdin
 * carrying the arguments JSON, a cleared environment, default signal
 * dispositions, every fd above 2 closed, rlimits from the policy, a host uid of
 * its own for the length of the call (so concurrent calls cannot signal or read
 * each other, and RLIMIT_NPROC is per call), no_new_privs and a seccomp filter
 * compiled at policy load that refuses what Docker's default profile refuses
 * (and setsid/setpgid, so the tool cannot leave its process group). At the end
 * of the call, at its deadline, or when the gateway stops, the group is killed.
 *
 * The filter is not installed per call. Installing one costs ~0.1 ms of CPU (the kernel
 * converts and JIT-compiles it, and runs it for every syscall number to build its cache,
 * with interrupts off; freeing it at exit costs more): about 13% of the calls per second
 * this tier can do on a 2-core machine. Filters are per thread and inherited by children,
 * so each policy has a few spawner threads that install the policy's filter on themselves
 * once and start every call's child (clone CLONE_VM|CLONE_VFORK, as before); the child
 * inherits the filter for free. The one thing the child needs that the tool must not do is
 * setsid: the filter allows it only when all six argument registers hold a 384-bit cookie
 * drawn at policy load. The tool cannot learn the cookie: it never enters the tool's memory
 * or registers (execve clears them), a filter cannot be read back without CAP_SYS_ADMIN,
 * and ptrace is refused. A policy may therefore not deny a syscall that the spawner or the
 * child needs before execve (spawn_path below): that is refused at load.
 *
 * Temporary files: each call gets a private TMPDIR, /tmp/gatehouse-call-XXXXXX, mode 0700 and
 * owned by the call's uid. When the call ends (its whole group is dead), the TMPDIR and
 * everything its uid made at the top of the shared temporary directories (/tmp, /dev/shm) is
 * removed: the next call that gets the same uid finds nothing of this one. What a call made is
 * known from inotify (names created or moved in, each attributed to its owner), so the cost
 * is that of the call's own entries, not of scanning /tmp (bench/call_latency measured
 * 4.7 us per entry in /tmp for each call with a scan); if the events were lost (queue
 * overflow) or a call made more than TMP_NAMES entries, its uid's entries are found by a scan.
 * At start-up a scan runs for the whole uid range (a gateway killed mid-call).
 * /var/tmp is left alone: it is where a process-tier tool may keep files across calls (the
 * example ledger does); a tool that needs privacy there belongs in the container tier.
 *
 * Known limit: without setpgid, tools that make their own process group (coreutils
 * `timeout`) cannot; use limits.wall_timeout instead.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netpolicy.h"
#include "sbx_internal.h"

/* Spawner threads per policy: two can start children at once on a 2-core machine. */
#define SPAWNERS 2

/* What the spawner thread and the child use under the policy's filter before execve. */
static const char *const spawn_path[] = {
    "clone",       "futex",     "rt_sigaction", "rt_sigprocmask", "dup2",      "dup3",  "close",
    "close_range", "prlimit64", "setgroups",    "setresgid",      "setresuid", "prctl", "chdir",
    "execve",      "write",     "exit",         "exit_group",     NULL};

struct child_args;

/* One child to start; lives on the caller's stack until done. */
struct spawn_req {
    struct child_args *args;
    char *stack_top;
    pid_t pid;
    int err;
    const char *step; /* what failed */
    bool done;
    pthread_cond_t answered;
    struct spawn_req *next;
};

struct process_state {
    struct sock_fprog seccomp;
    uint64_t setsid_cookie[6];
    struct sbx_net *net; /* the policy's network allowlist in the kernel */
    pthread_mutex_t lock;
    pthread_cond_t work; /* a request was queued, or stop */
    struct spawn_req *head, *tail;
    bool started, stop;
    int nthreads;
    pthread_t threads[SPAWNERS];
};

/* The per-call uids, and the process groups of running calls (killed at shutdown). */
static struct {
    pthread_mutex_t lock;
    uid_t base;
    unsigned count;
    gid_t gid;
    pid_t *running; /* running[i] = pgid of the call holding uid base+i, 0 = free */
    unsigned next;
} ids = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The shared temporary directories every uid may write to. */
static const char *const shared_tmp[] = {"/tmp", "/dev/shm", NULL};

/* Remove entry `name` of the shared directory `parent` if uids [lo, hi) own it (safe as root:
 * sbx_remove_inside walks by descriptor and never follows a link; the entry is checked and
 * removed relative to the shared directory's own descriptor, where the sticky bit keeps other
 * users from swapping it). */
static void remove_owned(int parent, const char *name, uid_t lo, uid_t hi)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid < lo || st.st_uid >= hi)
        return;
    if (S_ISDIR(st.st_mode)) {
        int sub = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) sbx_remove_inside(sub, st.st_dev);
        unlinkat(parent, name, AT_REMOVEDIR);
    } else {
        unlinkat(parent, name, 0);
    }
}

/* Remove what uids [lo, hi) own at the top of the shared directories, by a scan. */
static void sweep_tmp(uid_t lo, uid_t hi)
{
    for (size_t d = 0; shared_tmp[d]; d++) {
        DIR *dir = opendir(shared_tmp[d]);
        if (!dir) continue;
        for (struct dirent *de; (de = readdir(dir));)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                remove_owned(dirfd(dir), de->d_name, lo, hi);
        closedir(dir);
    }
}

/* Whether process pid (a /proc entry name) has a real or effective uid in [lo, hi): 0 no, 1 yes,
 * 2 yes but it is only a zombie (its one thread exited; no signal removes it). A zombie main
 * thread with other threads still running is a live process (Threads: > 1). Read from its
 * status, not from the owner of /proc/PID, which a tool can make root's (PR_SET_DUMPABLE 0). */
static int uid_in_range(const char *pid, uid_t lo, uid_t hi)
{
    char path[300], buf[2048];
    snprintf(path, sizeof(path), "/proc/%s/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char *u = strstr(buf, "\nUid:");
    unsigned long r = 0, e = 0;
    if (!u || sscanf(u + 5, "%lu %lu", &r, &e) != 2) return 0;
    if (!((r >= lo && r < hi) || (e >= lo && e < hi))) return 0;
    const char *state = strstr(buf, "\nState:"), *threads = strstr(buf, "\nThreads:");
    char st = state ? state[7 + strspn(state + 7, " \t")] : '?';
    unsigned long nthreads = 0;
    if (threads) sscanf(threads + 9, "%lu", &nthreads);
    return (st == 'Z' || st == 'X') && nthreads <= 1 ? 2 : 1;
}

/* Kill every process running as a uid of [lo, hi): after a gateway was killed, a tool's
 * children can outlive it (only the direct child has PDEATHSIG), with no network filter left
 * (the BPF links died with that gateway) and a uid the next calls would be given. Root may
 * signal any process; these uids belong to the tier alone (--tool-uids). Every one is sent
 * SIGKILL; a dead zombie is not waited for. */
static void kill_uid_range(uid_t lo, uid_t hi)
{
    for (int round = 0; round < 50; round++) {
        int found = 0;
        DIR *proc = opendir("/proc");
        if (!proc) return;
        struct dirent *de;
        while ((de = readdir(proc))) {
            if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
            int in = uid_in_range(de->d_name, lo, hi);
            if (in && kill((pid_t)atoi(de->d_name), SIGKILL) == 0 && in == 1) found++;
        }
        closedir(proc);
        if (!found) return;
        usleep(20 * 1000); /* let them die before looking again (a fork may have raced) */
    }
}

/* Whether this gateway is the only one on the host using tool uids [base, base+count): an
 * exclusive lock on a file named by the range, kept open until exit. Another gateway holding
 * it means both hand out the same uids, which lets their calls meet: say so. */
static bool own_uid_range(uid_t base, unsigned count)
{
    char path[128];
    mkdir("/run/gatehouse", 0700);
    snprintf(path, sizeof(path), "/run/gatehouse/tool-uids-%u-%u.lock", (unsigned)base, count);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return false;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true; /* fd stays open: the lock lives on */
    close(fd);
    gate_log("warn", "process.shared_uids",
             "another gateway on this host uses the same --tool-uids %u:%u: calls of the two can "
             "get the same uid; give each gateway its own range",
             (unsigned)base, count);
    return false;
}

/* What each tool uid made at the top of the shared temporary directories since its call began:
 * names as "<index in shared_tmp><name>", or `scan` when they are not all known. */
#define TMP_NAMES 16
static struct {
    pthread_mutex_t lock;
    int fd; /* inotify, -1: every call's entries are found by a scan */
    int wd[sizeof(shared_tmp) / sizeof(*shared_tmp)];
    int dirfd[sizeof(shared_tmp) / sizeof(*shared_tmp)];
    struct tmp_made {
        char *names[TMP_NAMES];
        unsigned n;
        bool scan;
    } * made; /* one per tool uid */
} tmpw = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static void made_forget(struct tmp_made *m, bool scan)
{
    for (unsigned i = 0; i < m->n; i++)
        free(m->names[i]);
    m->n = 0;
    m->scan = scan;
}

/* Attribute one new name in shared_tmp[d] to the tool uid that owns it now (an entry renamed
 * or replaced since has an event of its own). Called with tmpw.lock held. */
static void made_note(size_t d, const char *name)
{
    struct stat st;
    if (fstatat(tmpw.dirfd[d], name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid < ids.base ||
        st.st_uid - ids.base >= ids.count)
        return;
    struct tmp_made *m = &tmpw.made[st.st_uid - ids.base];
    if (m->scan) return;
    for (unsigned i = 0; i < m->n; i++)
        if ((size_t)(m->names[i][0] - '0') == d && !strcmp(m->names[i] + 1, name)) return;
    char *v = NULL;
    if (m->n == TMP_NAMES || asprintf(&v, "%zu%s", d, name) < 0) {
        made_forget(m, true);
        return;
    }
    m->names[m->n++] = v;
}

/* Read every queued event: each is queued by the syscall that made the entry, so once a
 * call's processes are gone (slot_release waits for its whole group), everything they made has
 * been seen. Called with tmpw.lock held. */
static void made_drain(void)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t len;
    while ((len = read(tmpw.fd, buf, sizeof(buf))) > 0) {
        for (char *at = buf; at < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)at;
            at += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) { /* lost events: every uid's next sweep scans */
                for (unsigned i = 0; i < ids.count; i++)
                    made_forget(&tmpw.made[i], true);
                continue;
            }
            for (size_t d = 0; shared_tmp[d]; d++)
                if (ev->len && ev->wd == tmpw.wd[d]) made_note(d, ev->name);
        }
    }
}

/* Watch the shared temporary directories (once, at start). Without inotify every sweep scans. */
static void made_init(void)
{
    tmpw.made = calloc(ids.count, sizeof(*tmpw.made));
    tmpw.fd = tmpw.made ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
    for (size_t d = 0; shared_tmp[d]; d++) {
        tmpw.dirfd[d] = open(shared_tmp[d], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        tmpw.wd[d] = tmpw.fd < 0 || tmpw.dirfd[d] < 0
                         ? -1
                         : inotify_add_watch(tmpw.fd, shared_tmp[d],
                                             IN_CREATE | IN_MOVED_TO | IN_DONT_FOLLOW | IN_ONLYDIR);
        if (tmpw.dirfd[d] >= 0 && tmpw.wd[d] < 0 && tmpw.fd >= 0) {
            gate_log("warn", "process.tmp_scan",
                     "cannot watch %s (%s): each call's end scans it for the call's files",
                     shared_tmp[d], strerror(errno));
            close(tmpw.fd);
            tmpw.fd = -1;
        }
    }
}

/* A call's end: remove its TMPDIR and what its uid made in the shared directories. */
static void tmp_release(uid_t uid, const char *tmpdir)
{
    struct tmp_made m = {.scan = true};
    pthread_mutex_lock(&tmpw.lock);
    if (tmpw.fd >= 0) {
        made_drain();
        m = tmpw.made[uid - ids.base];
        tmpw.made[uid - ids.base] = (struct tmp_made){0}; /* names now owned by m */
    }
    pthread_mutex_unlock(&tmpw.lock);
    if (*tmpdir) remove_owned(tmpw.dirfd[0], tmpdir + strlen(shared_tmp[0]) + 1, uid, uid + 1);
    if (m.scan) sweep_tmp(uid, uid + 1);
    for (unsigned i = 0; i < m.n; i++)
        remove_owned(tmpw.dirfd[m.names[i][0] - '0'], m.names[i] + 1, uid, uid + 1);
    made_forget(&m, false);
}

/* The call's private TMPDIR, owned by its uid. mkdtemp creates it (O_EXCL-like: never an
 * existing path or a link); /tmp is sticky, so no tool can rename or replace it before the
 * chown, which does not follow links either. */
static int make_tmpdir(char path[64], uid_t uid, struct gate_error *err)
{
    snprintf(path, 64, "/tmp/gatehouse-call-XXXXXX");
    if (!mkdtemp(path)) {
        *path = 0; /* nothing to remove */
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "mkdtemp /tmp");
    }
    if (fchownat(AT_FDCWD, path, uid, ids.gid, AT_SYMLINK_NOFOLLOW) < 0) {
        int e = errno;
        rmdir(path);
        gate_err_errno(err, GATE_E_SANDBOX, e, "chown %s", path);
        *path = 0;
        return -1;
    }
    return 0;
}

/* env + "TMPDIR=path" (a TMPDIR from the policy is replaced). Takes env; NULL on ENOMEM. */
static char **with_tmpdir(char **env, const char *path)
{
    size_t n = 0, k = 0;
    while (env[n])
        n++;
    char **out = calloc(n + 2, sizeof(char *));
    char *v = NULL;
    if (!out || asprintf(&v, "TMPDIR=%s", path) < 0) {
        free(out);
        sbx_free_strv(env);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (strncmp(env[i], "TMPDIR=", 7))
            out[k++] = env[i];
        else
            free(env[i]);
    out[k] = v;
    free(env);
    return out;
}

static int process_init(const struct sbx_config *cfg, struct gate_error *err)
{
    /* A tool must never run as the gateway's own user: it could then rewrite the audit log,
     * read the gateway's memory and environment (approver tokens, webhook secrets) and
     * signal it. Only root can give each call an identity of its own. */
    if (geteuid() != 0)
        return gate_err(err, GATE_E_SANDBOX,
                        "the process tier needs the gateway to run as root, to run each call "
                        "under a uid of its own");
    if (cfg->call_uid_count == 0 || cfg->call_uid_base == 0 || cfg->tool_gid == 0 ||
        (uint64_t)cfg->call_uid_base + cfg->call_uid_count >= (uint64_t)(uid_t)-1)
        return gate_err(err, GATE_E_SANDBOX, "the tool uid range or gid is invalid (root?)");
    ids.running = calloc(cfg->call_uid_count, sizeof(pid_t));
    if (!ids.running) return gate_err(err, GATE_E_NOMEM, "out of memory");
    ids.base = cfg->call_uid_base;
    ids.count = cfg->call_uid_count;
    ids.gid = cfg->tool_gid;
    /* What a gateway killed mid-call left: its tools' surviving processes, then their files;
     * unless another live gateway on this host hands out the same uids (then they may be its
     * running calls). The lock is held for the gateway's life. `gatehouse policy check` (no
     * gateway endpoint) touches neither. */
    if (cfg->gateway && own_uid_range(ids.base, ids.count)) { /* not for `policy check` */
        kill_uid_range(ids.base, ids.base + ids.count);
        sweep_tmp(ids.base, ids.base + ids.count);
    }
    made_init();
    /* Without the filter the tier still starts, but every policy naming it fails to load with
     * the reason (sbx_net_prepare): a tool never gets the host's network silently. */
    struct gate_error nerr = {0};
    if (sbx_net_init(cfg, &nerr) < 0)
        gate_log("error", "network.unavailable", "network policy cannot be enforced: %s", nerr.msg);
    return 0;
}

/* Take a free uid slot; -1 if every uid is in use. */
static int slot_acquire(void)
{
    int slot = -1;
    pthread_mutex_lock(&ids.lock);
    for (unsigned k = 0; k < ids.count && slot < 0; k++) {
        unsigned i = (ids.next + k) % ids.count;
        if (ids.running[i] == 0) {
            ids.running[i] = -1; /* taken, not started yet */
            ids.next = i + 1;
            slot = (int)i;
        }
    }
    pthread_mutex_unlock(&ids.lock);
    return slot;
}

static void slot_set(int slot, pid_t pgid)
{
    pthread_mutex_lock(&ids.lock);
    ids.running[slot] = pgid;
    pthread_mutex_unlock(&ids.lock);
}

/* The slot's uid may be reused: every process of the call is dead (its whole process group
 * was killed and the tool cannot leave the group). */
static void slot_release(int slot, const char *tmpdir)
{
    pthread_mutex_lock(&ids.lock);
    pid_t pgid = ids.running[slot];
    pthread_mutex_unlock(&ids.lock);
    /* SIGKILL is delivered asynchronously and only the leader was reaped: a member of the group
     * could still be finishing a creat() in /tmp, which the next call with this uid would then
     * find. Wait until the group is gone, at most 100 ms: far more than a killed process takes
     * to die, and an orphaned member's zombie stays in the group until init reaps it (some
     * init processes never do). */
    for (int i = 0; pgid > 0 && i < 100 && kill(-pgid, 0) == 0; i++) {
        kill(-pgid, SIGKILL);
        usleep(1000);
    }
    tmp_release(ids.base + (uid_t)slot, tmpdir);
    slot_set(slot, 0);
}

static void process_shutdown(void)
{
    pthread_mutex_lock(&ids.lock);
    for (unsigned i = 0; i < ids.count; i++)
        if (ids.running[i] > 0) kill(-ids.running[i], SIGKILL);
    pthread_mutex_unlock(&ids.lock);
}

static void state_free(void *state)
{
    struct process_state *st = state;
    if (!st) return;
    /* The policy is freed after its last call: the queue is empty. */
    pthread_mutex_lock(&st->lock);
    st->stop = true;
    pthread_cond_broadcast(&st->work);
    pthread_mutex_unlock(&st->lock);
    for (int i = 0; i < st->nthreads; i++)
        pthread_join(st->threads[i], NULL);
    pthread_cond_destroy(&st->work);
    pthread_mutex_destroy(&st->lock);
    free(st->seccomp.filter);
    sbx_net_free(st->net);
    free(st);
}

static int process_prepare(struct policy *p, struct gate_error *err)
{
    struct process_state *st = calloc(1, sizeof(*st));
    if (!st) return gate_err(err, GATE_E_NOMEM, "out of memory");
    /* The guarantee that nothing outlives a call rests on the tool staying in its group. */
    static const char *const leave_group[] = {"setsid", "setpgid", NULL};
    if (sbx_seccomp_refuse(p, false, leave_group,
                           "cannot be allowed in the process tier (a tool leaving its process "
                           "group could outlive its call)",
                           err) < 0 ||
        sbx_seccomp_refuse(p, true, spawn_path,
                           "cannot be denied in the process tier (it is used to start the tool, "
                           "before execve)",
                           err) < 0) {
        free(st);
        return -1;
    }
    if (getrandom(st->setsid_cookie, sizeof(st->setsid_cookie), 0) !=
        (ssize_t)sizeof(st->setsid_cookie)) {
        free(st);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "getrandom");
    }
    if (sbx_seccomp_compile(SBX_SECCOMP_DENYLIST, p->seccomp_allow, p->seccomp_deny,
                            st->setsid_cookie, &st->seccomp, err) < 0) {
        free(st);
        return -1;
    }
    if (sbx_net_prepare(p, &st->net, err) < 0) {
        free(st->seccomp.filter);
        free(st);
        return -1;
    }
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->work, NULL);
    p->sbx_state = st;
    p->sbx_state_free = state_free;
    return 0;
}

static void set_limit(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit rl = {soft, hard};
    setrlimit(resource, &rl);
}

/* The kernel's struct for rt_sigaction (not glibc's): only SIG_DFL is ever set here. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/* Ignored signals stay ignored across execve and a blocked mask is inherited: give the tool
 * the defaults, so that SIGTERM and SIGPIPE mean to it what they mean to any program. */
static void reset_signals(void)
{
    struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(uint64_t));
}

struct child_args {
    const struct policy *p;
    const struct process_state *st;
    char **env;
    int in, out, errfd, report;
    uid_t uid;
};

/* In the child, which shares the gateway's memory (CLONE_VM|CLONE_VFORK) until execve: only
 * raw system calls, nothing that allocates or takes a lock. Identity changes use the raw
 * syscalls on purpose: glibc's wrappers would try to change every thread of the gateway. */
static int child(void *arg)
{
    const struct child_args *a = arg;
    const struct policy *p = a->p;
    int report = a->report;
    reset_signals();
    const uint64_t *c = a->st->setsid_cookie;
    if (syscall(SYS_setsid, c[0], c[1], c[2], c[3], c[4], c[5]) < 0)
        sbx_child_fail(report, "setsid", errno);
    if (dup2(a->in, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->errfd, 2) < 0)
        sbx_child_fail(report, "dup2", errno);
    /* Keep only stdio and the report pipe (CLOEXEC, so it closes on exec). */
    if (report != 3) {
        if (dup3(report, 3, O_CLOEXEC) < 0) sbx_child_fail(report, "dup3", errno);
        report = 3;
    }
    sbx_close_fds_from(4);
    const struct policy_limits *l = &p->limits;
    rlim_t cpu = (rlim_t)((l->cpu_time_ms + 999) / 1000);
    set_limit(RLIMIT_AS, (rlim_t)l->memory_mb << 20, (rlim_t)l->memory_mb << 20);
    /* Hard above soft: the tool gets SIGXCPU (reported as resource_limit), not SIGKILL. */
    set_limit(RLIMIT_CPU, cpu, cpu + 1);
    set_limit(RLIMIT_FSIZE, (rlim_t)l->file_size_mb << 20, (rlim_t)l->file_size_mb << 20);
    /* Counted per uid, and the uid is this call's alone: a cap on this call's processes. */
    set_limit(RLIMIT_NPROC, (rlim_t)l->pids, (rlim_t)l->pids);
    set_limit(RLIMIT_CORE, 0, 0);
    /* Supplementary groups first, then gid, then uid: once uid is unprivileged the process
     * can no longer change its groups. Leaving uid 0 clears every capability. */
    if (syscall(SYS_setgroups, 0, NULL) < 0) sbx_child_fail(report, "setgroups", errno);
    if (syscall(SYS_setresgid, ids.gid, ids.gid, ids.gid) < 0)
        sbx_child_fail(report, "setresgid", errno);
    if (syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
        sbx_child_fail(report, "setresuid", errno);
    /* Set after the identity change, which clears it: the tool dies with the gateway. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (chdir("/") < 0) sbx_child_fail(report, "chdir /", errno);
    /* The filter came with the spawner thread; no_new_privs keeps setuid binaries from
     * regaining what the tool never had. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) sbx_child_fail(report, "no_new_privs", errno);
    execve(p->command[0], p->command, a->env);
    sbx_child_fail(report, "execve", errno);
}

/* A spawner thread: carries the policy's filter and starts the children queued to it. */
static void *spawner_main(void *arg)
{
    struct process_state *st = arg;
    /* No handler ever runs here (none could run in a CLONE_VM child either); every child
     * starts with all signals blocked and resets them before execve. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    prctl(PR_SET_NAME, "gh-spawn"); /* also each child's name until it execs */
    /* This thread only (no TSYNC): the rest of the gateway stays unfiltered. It is root, so
     * no_new_privs is not needed to load the filter; each child sets it for itself. A thread
     * that cannot load it answers every request with the error: no child ever starts
     * without the filter. */
    int install_errno = 0;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &st->seccomp) < 0) install_errno = errno;
    pthread_mutex_lock(&st->lock);
    while (!st->stop) {
        struct spawn_req *r = st->head;
        if (!r) {
            pthread_cond_wait(&st->work, &st->lock);
            continue;
        }
        st->head = r->next;
        if (!st->head) st->tail = NULL;
        pthread_mutex_unlock(&st->lock);
        pid_t pid = -1;
        int e = install_errno;
        const char *step = "install the seccomp filter";
        if (!install_errno) {
            /* CLONE_VM|CLONE_VFORK (what posix_spawn does): no copy of the gateway's page
             * tables, and this thread waits until the child has exec'd or failed. The child
             * runs on the caller's stack memory; the caller waits for r->done meanwhile. */
            pid = clone(child, r->stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, r->args);
            e = pid < 0 ? errno : 0;
            step = "clone";
        }
        pthread_mutex_lock(&st->lock);
        r->pid = pid;
        r->err = e;
        r->step = step;
        r->done = true;
        pthread_cond_signal(&r->answered);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* Start the child through one of the policy's spawner threads (started on first use).
 * Returns its pid, or -1 with err filled. */
static pid_t spawn(struct process_state *st, struct child_args *args, char *stack_top,
                   struct gate_error *err)
{
    struct spawn_req r = {.args = args, .stack_top = stack_top, .pid = -1};
    pthread_cond_init(&r.answered, NULL);
    pthread_mutex_lock(&st->lock);
    if (!st->started) {
        st->started = true;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        for (int i = 0; i < SPAWNERS; i++)
            if (pthread_create(&st->threads[st->nthreads], &attr, spawner_main, st) == 0)
                st->nthreads++;
        pthread_attr_destroy(&attr);
    }
    if (st->nthreads == 0) {
        pthread_mutex_unlock(&st->lock);
        pthread_cond_destroy(&r.answered);
        return gate_err(err, GATE_E_SANDBOX, "start the tool: no spawner thread could start");
    }
    if (st->tail)
        st->tail->next = &r;
    else
        st->head = &r;
    st->tail = &r;
    pthread_cond_signal(&st->work);
    while (!r.done)
        pthread_cond_wait(&r.answered, &st->lock);
    pthread_mutex_unlock(&st->lock);
    pthread_cond_destroy(&r.answered);
    if (r.pid < 0) gate_err_errno(err, GATE_E_SANDBOX, r.err, "%s", r.step);
    return r.pid;
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
    struct process_state *st = p->sbx_state;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, report[2] = {-1, -1};
    char **env = sbx_tool_env(p, call->call_id);
    int rc = -1;
    int slot = -1;
    char tmpdir[64] = "";
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
    slot = slot_acquire();
    if (slot < 0) {
        gate_err(err, GATE_E_SANDBOX, "all %u tool uids are in use", ids.count);
        goto done;
    }
    if (make_tmpdir(tmpdir, ids.base + (uid_t)slot, err) < 0) goto done;
    if (!(env = with_tmpdir(env, tmpdir))) {
        gate_err(err, GATE_E_NOMEM, "out of memory");
        goto done;
    }
    struct child_args args = {p,      st,      env,       in[0],
                              out[1], errp[1], report[1], ids.base + (uid_t)slot};
    /* The uid's network policy is set before the tool exists, and reset to deny-all below. */
    if (sbx_net_begin(st->net, args.uid, err) < 0) goto done;
    uint64_t start = gate_monotonic_ns();
    pid_t pid = spawn(st, &args, child_stack + sizeof(child_stack), err);
    if (pid < 0) goto done;
    slot_set(slot, pid);
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
    if (slot >= 0) {
        json_t *net = sbx_net_end(ids.base + (uid_t)slot);
        if (rc == 0)
            res->activity = net;
        else
            json_decref(net);
        slot_release(slot, tmpdir);
    }
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
    .shutdown = process_shutdown,
    .metrics = sbx_net_metrics,
};
