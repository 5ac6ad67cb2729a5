/* helper.c: gatehouse-gvisor-helper, a small static program with two roles.
 *
 * `keep` runs on the host, one per gVisor sandbox, as a child of the gateway. It
 * becomes a child subreaper, runs `runsc run --detach` (create + start), tells the
 * gateway the sandbox is ready, and then waits: every runsc process of the
 * sandbox (the sentry, the gofer, the ptrace stubs) is its descendant, so it
 * can report the sandbox's exit status as its own, and it exits only once every
 * one of them is gone. SIGTERM, or the gateway's death (EOF on the lifeline
 * pipe), makes it SIGKILL the whole tree. The gateway therefore never needs to
 * be a subreaper itself and never reaps processes it did not start.
 *
 * `launch` is the sandbox's PID 1 inside gVisor. It starts as the sandbox's
 * root with three capabilities, removes the emulated /dev/fuse and /dev/net/tun,
 * and drops for good to the tool's uid/gid with an empty bounding set,
 * no_new_privs and the policy's seccomp filters (passed as hex argv words), all
 * at boot, before any input. A pooled sandbox is booted before the call it will
 * serve is known, so the call's environment (policy env, GATEHOUSE_CALL_ID,
 * GATEHOUSE_TOOL) arrives as a header on stdin: 8 decimal digits of length, then
 * NUL-terminated KEY=VALUE strings. A child forked at boot reads exactly the
 * header, leaving the arguments JSON on stdin, and execs the tool with exactly
 * that environment (nothing runsc adds, such as HOME, is passed on). PID 1 waits
 * for it and exits with its status (128+signal if it was killed); gVisor then
 * kills every other process of the sandbox. It also enforces limits.cpu_time over
 * the whole tool (--cpu-ms), which this gVisor's RLIMIT_CPU does not.
 *
 * The binary is static so that it runs inside any sandbox root, whatever the
 * policy mounts. It is ours and trusted; the tool's own command is unchanged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEADER_MAX (1u << 20)
#define STATUS_FD 3
#define LIFELINE_FD 4
/* After the sentry exits, the gofer notices and exits by itself; stragglers are killed. */
#define GRACE_MS 2000

/* ---- launch (inside the sandbox) --------------------------------------------------- */

static int read_exact(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static char **parse_env(char *hdr, size_t len)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += hdr[i] == '\0';
    char **env = calloc(count + 1, sizeof(char *));
    if (!env) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len && n < count; n++) {
        env[n] = hdr + i;
        i += strlen(hdr + i) + 1;
    }
    return env;
}

/* One header section: 8 decimal digits of length, then that many bytes (NUL-terminated). */
static char *read_section(size_t *len)
{
    char lenbuf[9] = {0};
    if (read_exact(0, lenbuf, 8) < 0) return NULL;
    char *end = NULL;
    unsigned long n = strtoul(lenbuf, &end, 10);
    if (*end != '\0' || n > HEADER_MAX) return NULL;
    char *data = malloc(n + 1);
    if (!data || read_exact(0, data, n) < 0) {
        free(data);
        return NULL;
    }
    data[n] = '\0';
    *len = n;
    return data;
}

/* Our own environment (runsc's additions such as HOME) would show in /proc/1/environ: wipe it. */
static void wipe_own_environment(char **envp)
{
    for (size_t i = 0; envp && envp[i]; i++)
        memset(envp[i], 0, strlen(envp[i]));
}

struct launch_opts {
    uid_t uid;
    gid_t gid;
    struct sock_fprog filters[4];
    size_t n_filters;
    unsigned long long cpu_ms; /* limits.cpu_time for the whole tool; 0 = none */
    char **cmd;
};

static int parse_hex(const char *hex, struct sock_fprog *prog)
{
    size_t n = strlen(hex);
    if (n % (2 * sizeof(struct sock_filter)) != 0 || n == 0) return -1;
    unsigned char *b = malloc(n / 2);
    if (!b) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        b[i] = (unsigned char)v;
    }
    prog->filter = (struct sock_filter *)b;
    prog->len = (unsigned short)(n / 2 / sizeof(struct sock_filter));
    return 0;
}

/* launch --user=UID:GID [--seccomp=HEX]... -- TOOL [ARG...] */
static int parse_launch(char **argv, struct launch_opts *o)
{
    bool user = false;
    for (; *argv; argv++) {
        unsigned u = 0, g = 0;
        if (strcmp(*argv, "--") == 0) {
            o->cmd = argv + 1;
            return user && o->cmd[0] ? 0 : -1;
        } else if (sscanf(*argv, "--user=%u:%u", &u, &g) == 2) {
            o->uid = u, o->gid = g, user = true;
        } else if (sscanf(*argv, "--cpu-ms=%llu", &o->cpu_ms) == 1) {
            continue;
        } else if (strncmp(*argv, "--seccomp=", 10) == 0 && o->n_filters < 4) {
            if (parse_hex(*argv + 10, &o->filters[o->n_filters++]) < 0) return -1;
        } else {
            return -1;
        }
    }
    return -1;
}

/* At boot, as the sandbox's root and before any input arrives: remove the emulated devices a
 * tool has no use for, then become the tool's identity for good (empty bounding set, no
 * capabilities, no_new_privs, the policy's seccomp filters). The tool inherits all of it. */
static int confine(const struct launch_opts *o)
{
    unlink("/dev/fuse"); /* gVisor emulates FUSE and TUN; this runsc has no switch for them */
    unlink("/dev/net/tun");
    rmdir("/dev/net");
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL) break;
    /* Groups, then gid, then uid: once uid is unprivileged nothing else can change. Leaving
     * uid 0 clears the permitted and effective capabilities. */
    if (setgroups(0, NULL) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
        setresuid(o->uid, o->uid, o->uid) < 0) {
        fprintf(stderr, "gatehouse launcher: dropping to %u:%u: %s\n", (unsigned)o->uid,
                (unsigned)o->gid, strerror(errno));
        return -1;
    }
    if (o->uid != 0 && (setuid(0) == 0 || geteuid() != o->uid)) {
        fprintf(stderr, "gatehouse launcher: could regain root\n");
        return -1;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* the tool shares our uid: no ptrace of PID 1 */
    /* no_new_privs first: it lets an unprivileged process load a filter, and setuid binaries
     * can never regain privileges. Never start the tool without every filter. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        fprintf(stderr, "gatehouse launcher: no_new_privs: %s\n", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < o->n_filters; i++)
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &o->filters[i]) < 0) {
            fprintf(stderr, "gatehouse launcher: seccomp: %s\n", strerror(errno));
            return -1;
        }
    return 0;
}

/* In the forked child: wait for the call header, then become the tool. */
__attribute__((noreturn)) static void start_tool(char **cmd)
{
    size_t env_len = 0;
    char *hdr = read_section(&env_len);
    char **env = hdr ? parse_env(hdr, env_len) : NULL;
    if (!env) {
        fprintf(stderr, "gatehouse launcher: bad call header\n");
        _exit(125);
    }
    execve(cmd[0], cmd, env);
    fprintf(stderr, "gatehouse launcher: execve %s: %s\n", cmd[0], strerror(errno));
    _exit(127);
}

/* CPU time used so far by the tool: every process of the sandbox but us, plus the children we
 * reaped. gVisor (0.0~20221219) does not enforce RLIMIT_CPU, so the launcher does. */
static unsigned long long sandbox_cpu_ms(void)
{
    long tck = sysconf(_SC_CLK_TCK);
    unsigned long long ticks = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *de; d && (de = readdir(d));) {
        char *end = NULL;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0) close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        long long cut = 0, cst = 0;
        if (!rp ||
            sscanf(rp + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &ut,
                   &st, &cut, &cst) != 4)
            continue;
        ticks += (pid == 1 ? 0 : ut + st) + (unsigned long long)(cut + cst);
    }
    if (d) closedir(d);
    return ticks * 1000 / (unsigned long long)(tck > 0 ? tck : 100);
}

static int exit_status(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Reap until the tool ends (orphans of the tool are ours as PID 1), checking its CPU time
 * every 100 ms once it runs; SIGCHLD wakes us at once, so a call never waits for a tick. */
static int wait_tool(pid_t pid, unsigned long long cpu_ms)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    for (;;) {
        int st = 0;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            if (w == pid) return exit_status(st);
        if (w < 0 && errno != EINTR) return 125;
        unsigned long long used = cpu_ms ? sandbox_cpu_ms() : 0;
        if (cpu_ms && used >= cpu_ms) {
            /* Every other process of the sandbox is the tool's: end them all, report SIGXCPU. */
            kill(-1, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return 128 + SIGXCPU;
        }
        /* Idle in the pool (no CPU used yet): look twice a second, not ten times. */
        struct timespec tick = {0, (used ? 100 : 500) * 1000 * 1000L};
        sigtimedwait(&chld, NULL, &tick);
    }
}

static int launch(char **argv, char **envp)
{
    struct launch_opts o = {0};
    if (parse_launch(argv, &o) < 0) {
        fprintf(stderr, "gatehouse launcher: bad arguments\n");
        return 125;
    }
    wipe_own_environment(envp);
    if (confine(&o) < 0) return 125;
    /* Fork while the sandbox is still warming in the pool: a call then pays only for exec. */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "gatehouse launcher: fork: %s\n", strerror(errno));
        return 125;
    }
    if (pid == 0) start_tool(o.cmd);
    return wait_tool(pid, o.cpu_ms);
}

/* ---- keep (on the host) ---------------------------------------------------------------- */

struct keeper {
    char **runsc_base; /* runsc --root R --platform P --network N */
    const char *bundle, *id, *pidfile;
    pid_t run_pid, sandbox_pid; /* runsc run --detach; the sentry */
    int sandbox_status;
    bool sandbox_done, stopping, ready_sent;
    long long grace_deadline_ms;
    /* Exit statuses of children reaped before we knew which one was the sandbox. */
    pid_t early_pid[32];
    int early_status[32];
    size_t n_early;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report(const char *kind, const char *msg)
{
    static bool reported; /* fd 3 may be reused once closed: write to it exactly once */
    if (reported) return;
    reported = true;
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "%s%s", kind, msg);
    if (n > 0 && write(STATUS_FD, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0) {
        /* the gateway is gone; the lifeline will end us */
    }
    close(STATUS_FD);
}

/* runsc with our fds 0-2 (the sandbox's stdio), which it hands to the sandbox. */
static pid_t spawn_runsc(struct keeper *k, const char *const *tail)
{
    char *argv[32];
    size_t n = 0;
    for (; k->runsc_base[n]; n++)
        argv[n] = k->runsc_base[n];
    for (size_t i = 0; tail[i] && n < 31; i++)
        argv[n++] = (char *)tail[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid != 0) return pid;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close(STATUS_FD), close(LIFELINE_FD);
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    execve(argv[0], argv, env);
    _exit(127);
}

/* Every direct child of ours (the subreaper collects the whole tree as it dies). */
static void kill_children(void)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end = NULL;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
        int ppid = 0;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self) kill((pid_t)pid, SIGKILL);
    }
    closedir(d);
}

static void stop_all(struct keeper *k)
{
    k->stopping = true;
    if (k->sandbox_pid > 0 && !k->sandbox_done) kill(k->sandbox_pid, SIGKILL);
    kill_children();
}

static void on_run_done(struct keeper *k, int st)
{
    k->run_pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || k->stopping) {
        if (!k->stopping) report("E", "runsc run failed");
        stop_all(k);
        return;
    }
    char buf[32] = {0};
    int fd = open(k->pidfile, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) close(fd);
    k->sandbox_pid = n > 0 ? (pid_t)atoi(buf) : 0;
    if (k->sandbox_pid <= 0) {
        report("E", "runsc run wrote no sandbox pid");
        stop_all(k);
        return;
    }
    for (size_t i = 0; i < k->n_early; i++)
        if (k->early_pid[i] == k->sandbox_pid) {
            k->sandbox_done = true;
            k->sandbox_status = k->early_status[i];
        }
    if (k->sandbox_done) {
        report("E", "the sandbox exited while booting");
        return;
    }
    report("R", "");
    k->ready_sent = true;
}

static void on_child(struct keeper *k, pid_t w, int st)
{
    if (w == k->run_pid) {
        on_run_done(k, st);
    } else if (w == k->sandbox_pid) {
        k->sandbox_done = true;
        k->sandbox_status = st;
        k->grace_deadline_ms = now_ms() + GRACE_MS;
        if (!k->ready_sent && k->run_pid == 0 && !k->stopping) {
            report("E", "the sandbox exited while booting");
            stop_all(k);
        }
    } else if (k->sandbox_pid == 0 && k->n_early < 32) {
        k->early_pid[k->n_early] = w;
        k->early_status[k->n_early++] = st;
    }
}

/* Exit with the sandbox's status: its exit code, or the signal that killed it. */
__attribute__((noreturn)) static void exit_like(const struct keeper *k)
{
    if (k->sandbox_done && WIFEXITED(k->sandbox_status)) _exit(WEXITSTATUS(k->sandbox_status));
    int sig =
        k->sandbox_done && WIFSIGNALED(k->sandbox_status) ? WTERMSIG(k->sandbox_status) : SIGKILL;
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
    _exit(128 + sig);
}

static void handle_signals(struct keeper *k, int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo != SIGCHLD) stop_all(k);
}

/* network.egress: into the sandbox's filtered cgroup v2 directory before anything else starts,
 * so runsc, the gofer and the sentry are born there (costs one migration, while the sandbox
 * boots in the warm pool, not during a call). */
static int join_cgroup(const char *dir)
{
    if (strcmp(dir, "-") == 0) return 0;
    char path[4096 + 16], pid[16];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    int len = snprintf(pid, sizeof(pid), "%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc = fd >= 0 && write(fd, pid, (size_t)len) == len ? 0 : -1;
    if (fd >= 0) close(fd);
    return rc;
}

static int keep(char **argv)
{
    /* argv: RUNSC ROOT PLATFORM NETWORK BUNDLE ID PIDFILE CGROUP2-DIR|- */
    for (int i = 0; i < 8; i++)
        if (!argv[i]) return 125;
    if (join_cgroup(argv[7]) < 0) {
        report("E", "cannot join the sandbox's network cgroup");
        return 125;
    }
    char root[4096 + 8], platform[64], network[64];
    snprintf(root, sizeof(root), "--root=%s", argv[1]);
    snprintf(platform, sizeof(platform), "--platform=%s", argv[2]);
    snprintf(network, sizeof(network), "--network=%s", argv[3]);
    char *base[] = {argv[0], root, platform, network, NULL};
    struct keeper k = {.runsc_base = base, .bundle = argv[4], .id = argv[5], .pidfile = argv[6]};
    /* Orphans of the runsc tree are reparented to us, never to the host's init. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        report("E", "prctl(PR_SET_CHILD_SUBREAPER) failed");
        return 125;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD), sigaddset(&set, SIGTERM), sigaddset(&set, SIGINT),
        sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        report("E", "signalfd failed");
        return 125;
    }
    /* run --detach is create + start in one runsc process (~15 ms less than two). */
    const char *tail[] = {"run",        "--detach", "--bundle", k.bundle,
                          "--pid-file", k.pidfile,  k.id,       NULL};
    k.run_pid = spawn_runsc(&k, tail);
    /* The sandbox holds its stdio now; we keep no copy, so EOF means the sandbox is gone. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
    bool lifeline_open = true;
    for (;;) {
        int st = 0;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            on_child(&k, w, st);
        if (w < 0 && errno == ECHILD) exit_like(&k);
        if (k.sandbox_done && now_ms() >= k.grace_deadline_ms) kill_children();
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
                                {.fd = lifeline_open ? LIFELINE_FD : -1, .events = POLLIN}};
        int timeout = k.sandbox_done || k.stopping ? 100 : -1;
        if (poll(pfd, 2, timeout) < 0 && errno != EINTR) stop_all(&k);
        if (pfd[0].revents) handle_signals(&k, sfd);
        if (pfd[1].revents) { /* the gateway died: take the sandbox down with it */
            lifeline_open = false;
            stop_all(&k);
        }
        if (k.stopping) kill_children();
    }
}

int main(int argc, char **argv, char **envp)
{
    if (argc >= 3 && strcmp(argv[1], "launch") == 0) return launch(argv + 2, envp);
    if (argc >= 10 && strcmp(argv[1], "keep") == 0) return keep(argv + 2);
    fprintf(stderr,
            "usage: %s launch TOOL [ARG...] | keep RUNSC ROOT PLATFORM NETWORK BUNDLE ID PIDFILE "
            "CGROUP2-DIR|-\n",
            argv[0]);
    return 2;
}
