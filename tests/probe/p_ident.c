/* p_ident.c: identity and process probes: capabilities, NNP/seccomp, uid
 * mapping, setuid escalation, PID visibility, environ leaks, signals,
 * cross-process inspection and the confinement of every visible process.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

/* The value of "Key:\t..." in a /proc status text, or NULL. */
static const char *status_field(const char *status, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == ':') return p + kl + 1;
    return NULL;
}

static unsigned long long status_hex(const char *status, const char *key)
{
    const char *v = status_field(status, key);
    return v ? strtoull(v, NULL, 16) : ~0ULL;
}

static long status_long(const char *status, const char *key)
{
    const char *v = status_field(status, key);
    return v ? strtol(v, NULL, 10) : -1;
}

static bool is_pid_name(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* cmdline of pid with NULs as spaces, "" if unreadable. */
static void cmdline_of(long pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    long n = read_small(path, buf, size);
    if (n < 0) {
        buf[0] = '\0';
        return;
    }
    for (long i = 0; i < n; i++)
        if (buf[i] == '\0') buf[i] = ' ';
}

/* The host canary: the `sleep` the harness started, if it is visible here. */
static bool canary_visible(void)
{
    char cmd[256];
    if (g_args.canary_pid <= 0) return false;
    cmdline_of(g_args.canary_pid, cmd, sizeof(cmd));
    return strstr(cmd, "sleep") != NULL;
}

void p01_caps(void)
{
    char st[8192];
    if (read_small("/proc/self/status", st, sizeof(st)) < 0) {
        emit("P01", "error", errno, "cannot read /proc/self/status");
        return;
    }
    static const char *const keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    struct verdict v = {0};
    for (size_t i = 0; i < 5; i++) {
        if (!status_field(st, keys[i])) {
            v_note(&v, "%s%s=absent", i ? " " : "", keys[i]);
            continue;
        }
        unsigned long long c = status_hex(st, keys[i]);
        v_note(&v, "%s%s=%016llx", i ? " " : "", keys[i], c);
        if (c != 0) v.exposed = true;
    }
    v_emit(&v, "P01");
}

static void *parked(void *arg)
{
    int fd = *(int *)arg;
    char c;
    while (read(fd, &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

void p02_nnp_seccomp(void)
{
    /* A second thread, so "every thread" means more than one. */
    int p[2];
    pthread_t th;
    bool have_thread = pipe(p) == 0 && pthread_create(&th, NULL, parked, &p[0]) == 0;
    struct verdict v = {0};
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        emit("P02", "error", errno, "cannot list /proc/self/task");
        return;
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_pid_name(e->d_name)) continue;
        char path[300], st[8192];
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        if (read_small(path, st, sizeof(st)) < 0) continue;
        long nnp = status_long(st, "NoNewPrivs"), sc = status_long(st, "Seccomp");
        v_note(&v, "%stid%s:nnp=%ld,seccomp=%ld", n++ ? " " : "", e->d_name, nnp, sc);
        /* gVisor's /proc has no NoNewPrivs line (-1): not judged, shown in the detail. */
        if ((nnp != 1 && nnp != -1) || sc != 2) v.exposed = true;
    }
    closedir(d);
    if (n == 0) v.error = true;
    if (have_thread) {
        (void)!write(p[1], "x", 1);
        pthread_join(th, NULL);
    }
    v_emit(&v, "P02");
}

void p03_uid(void)
{
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    struct verdict v = {0};
    v_note(&v, "uid=%u euid=%u suid=%u gid=%u", r, e, s, getgid());
    if (r == 0 || e == 0 || s == 0) v.exposed = true;
    char map[4096];
    if (read_small("/proc/self/uid_map", map, sizeof(map)) < 0) {
        v_note(&v, " uid_map unreadable(%s)", errname(errno));
    } else {
        for (char *line = map; line && *line;) {
            char *next = strchr(line, '\n');
            if (next) *next++ = '\0';
            unsigned long in, out, count;
            if (sscanf(line, "%lu %lu %lu", &in, &out, &count) == 3) {
                v_note(&v, " map[%lu->%lu x%lu]", in, out, count);
                if (r >= in && r - in < count && out + (r - in) == 0)
                    v.exposed = true; /* our uid is the host's root */
            }
            line = next;
        }
    }
    v_emit(&v, "P03");
}

struct exec_args {
    const char *path;
    char *const *argv;
};

static int exec_capture(void *arg, int fd)
{
    const struct exec_args *a = arg;
    dup2(fd, 1);
    dup2(fd, 2);
    execv(a->path, a->argv);
    printf("exec-failed=%s\n", errname(errno));
    fflush(stdout);
    return 127;
}

int probe_whoami(void)
{
    char st[8192] = "";
    read_small("/proc/self/status", st, sizeof(st));
    unsigned long long eff = status_hex(st, "CapEff");
    uid_t euid = geteuid();
    int rc = (int)syscall(SYS_setresuid, 0, 0, 0);
    printf("euid=%u capeff=%llx setresuid0=%s\n", euid, eff, rc == 0 ? "OK" : errname(errno));
    return 0;
}

/* The harness plants, in the tool's own directory, a setuid-root copy of `id` and a copy of
 * `cat` carrying cap_setuid+ep. Both only print: `id -u` the effective uid, `cat` its own
 * /proc/self/status. Either showing root or a capability is an escalation. */
void p04_setuid(void)
{
    char dir[PROBE_PATH_MAX];
    self_dir(dir, sizeof(dir));
    static const char *const planted[] = {"id-suid", "cat-fcap", "probe-suid"};
    struct verdict v = {0};
    int found = 0;
    for (size_t i = 0; i < 3; i++) {
        char path[PROBE_PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", dir, planted[i]);
        if (access(path, F_OK) < 0) continue;
        found++;
        char *argv[] = {path, i == 0 ? "-u" : i == 1 ? "/proc/self/status" : "--whoami", NULL};
        struct exec_args ea = {path, argv};
        static char out[8192];
        out[0] = '\0';
        int st = run_child(exec_capture, &ea, out, sizeof(out), 5000);
        bool root = false;
        if (i == 0) {
            root = strtol(out, NULL, 10) == 0 && out[0] == '0';
            char *nl = strchr(out, '\n');
            if (nl) *nl = '\0';
            v_note(&v, "%s%s:euid=[%.40s]", v.len ? " " : "", planted[i], out);
        } else if (i == 1) {
            unsigned long long eff = status_hex(out, "CapEff"), prm = status_hex(out, "CapPrm");
            root = (eff != 0 && eff != ~0ULL) || (prm != 0 && prm != ~0ULL);
            v_note(&v, "%s%s:CapEff=%llx,CapPrm=%llx", v.len ? " " : "", planted[i], eff, prm);
            if (eff == ~0ULL) v_note(&v, "[%.60s]", out);
        } else {
            char *nl = strchr(out, '\n');
            if (nl) *nl = '\0';
            root = strstr(out, "euid=0 ") || strstr(out, "setresuid0=OK");
            v_note(&v, "%s%s:[%.80s]", v.len ? " " : "", planted[i], out);
        }
        if (root) v.exposed = true;
        if (st < 0) v_note(&v, "(%s)", st == -2 ? "timeout" : "nofork");
    }
    if (found == 0) {
        emit("P04", "skipped", 0, "no planted setuid/file-capability binaries next to %s", dir);
        return;
    }
    v_emit(&v, "P04");
}

void p05_pids(void)
{
    DIR *d = opendir("/proc");
    if (!d) {
        emit("P05", "error", errno, "cannot list /proc");
        return;
    }
    int count = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (is_pid_name(e->d_name)) count++;
    closedir(d);
    char cmd[256];
    cmdline_of(1, cmd, sizeof(cmd));
    bool canary = canary_visible();
    struct verdict v = {0};
    v_note(&v, "visible_pids=%d pid1=[%.120s] host_canary_visible=%s", count, cmd,
           canary ? "yes" : "no");
    /* A sandbox holds its init, the probe and a child: a dozen or more is the host. */
    v.exposed = count > 10 || canary;
    v_emit(&v, "P05");
}

static bool contains_mem(const char *hay, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        if (memcmp(hay + i, needle, nl) == 0) return true;
    return false;
}

void p06_environ(void)
{
    struct verdict v = {0};
    char needle[80];
    snprintf(needle, sizeof(needle), "%s=", g_args.canary_env);
    if (getenv(g_args.canary_env)) {
        v.exposed = true;
        v_note(&v, "own environment has %s;", g_args.canary_env);
    }
    extern char **environ;
    v_note(&v, "own env keys:");
    for (char **e = environ; *e; e++)
        v_note(&v, " %.*s", (int)(strchr(*e, '=') ? strchr(*e, '=') - *e : (long)strlen(*e)), *e);
    DIR *d = opendir("/proc");
    int readable = 0, leaked = 0;
    static char buf[1 << 17];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!is_pid_name(e->d_name)) continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/environ", e->d_name);
        long n = read_small(path, buf, sizeof(buf));
        if (n < 0) continue;
        readable++;
        if (contains_mem(buf, (size_t)n, needle)) {
            leaked++;
            if (leaked <= 3) v_note(&v, "; canary in /proc/%s/environ", e->d_name);
        }
    }
    if (d) closedir(d);
    v_note(&v, "; environ readable for %d pids, canary found in %d", readable, leaked);
    if (leaked) v.exposed = true;
    v_emit(&v, "P06");
}

void p07_signals(void)
{
    struct verdict v = {0};
    bool visible = canary_visible();
    v_note(&v, "canary pid %d %s", g_args.canary_pid, visible ? "visible" : "not visible");
    if (visible) {
        int rc = kill(g_args.canary_pid, 0);
        v_attempt(&v, " kill(canary,0)", rc, errno, rc == 0);
    }
    if (!g_args.destructive) {
        v_note(&v, "; kill(-1,SIGKILL) disarmed (destructive=false)");
        v_emit(&v, "P07");
        return;
    }
    if (visible) {
        int rc = kill(g_args.canary_pid, SIGKILL);
        v_attempt(&v, " kill(canary,SIGKILL)", rc, errno, rc == 0);
    }
    /* kill(-1) takes the runner with it: write the line to stdout ourselves first and leave a
     * bare newline in the report pipe so the runner prints nothing more. */
    v_note(&v, "; kill(-1,SIGKILL) follows: the harness checks the host canary survived");
    int report = g_report_fd;
    g_report_fd = 1;
    v_emit(&v, "P07");
    (void)!write(report, "\n", 1);
    kill(-1, SIGKILL);
}

static void inspect_target(struct verdict *v, long pid, const char *label)
{
    char what[64];
    errno = 0;
    long rc = ptrace(PTRACE_SEIZE, (pid_t)pid, NULL, NULL);
    int e = errno;
    if (rc == 0) ptrace(PTRACE_DETACH, (pid_t)pid, NULL, NULL);
    snprintf(what, sizeof(what), "ptrace(%s)", label);
    v_syscall(v, what, rc, e, ESRCH);

    /* Permission is checked before the address: EFAULT means the read was allowed. */
    char local[8];
    struct iovec l = {local, sizeof(local)}, r = {(void *)0x10000, sizeof(local)};
    rc = process_vm_readv((pid_t)pid, &l, 1, &r, 1, 0);
    snprintf(what, sizeof(what), "process_vm_readv(%s)", label);
    v_syscall(v, what, rc, errno, ESRCH);

    rc = syscall(SYS_kcmp, getpid(), (pid_t)pid, KCMP_FILE, 0, 0);
    snprintf(what, sizeof(what), "kcmp(%s)", label);
    v_syscall(v, what, rc, errno, ESRCH);

    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (pidfd >= 0) {
        rc = syscall(SYS_pidfd_getfd, pidfd, 0, 0);
        e = errno;
        if (rc >= 0) close((int)rc);
        close(pidfd);
        snprintf(what, sizeof(what), "pidfd_getfd(%s)", label);
        v_syscall(v, what, rc, e, ESRCH);
    }
}

void p08_inspect(void)
{
    struct verdict v = {0};
    if (canary_visible()) inspect_target(&v, g_args.canary_pid, "canary");
    if (getpid() != 1) inspect_target(&v, 1, "pid1");
    if (getppid() > 1) inspect_target(&v, getppid(), "parent");
    v_emit(&v, "P08");
}

/* Every process this one can see must carry the same confinement: a helper that joins the
 * sandbox later (exec into it, the sandbox init) is as visible, and as dangerous, as the tool. */
void p41_reentry(void)
{
    char own_cg[2048] = "";
    read_small("/proc/self/cgroup", own_cg, sizeof(own_cg));
    DIR *d = opendir("/proc");
    if (!d) {
        emit("P41", "error", errno, "cannot list /proc");
        return;
    }
    struct verdict v = {0};
    int checked = 0, weak = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_pid_name(e->d_name)) continue;
        char path[300], st[8192], cg[2048];
        snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
        if (read_small(path, st, sizeof(st)) < 0) continue;
        snprintf(path, sizeof(path), "/proc/%s/cgroup", e->d_name);
        bool same_cg = read_small(path, cg, sizeof(cg)) >= 0 && strcmp(cg, own_cg) == 0;
        checked++;
        long nnp = status_long(st, "NoNewPrivs"), sc = status_long(st, "Seccomp");
        unsigned long long eff = status_hex(st, "CapEff");
        if ((nnp == 1 || nnp == -1) && sc == 2 && eff == 0 && same_cg) continue;
        if (weak++ < 4) {
            char cmd[80];
            cmdline_of(strtol(e->d_name, NULL, 10), cmd, sizeof(cmd));
            v_note(&v, "%spid%s[%.40s]:nnp=%ld,seccomp=%ld,capeff=%llx,same_cgroup=%s",
                   v.len ? " " : "", e->d_name, cmd, nnp, sc, eff, same_cg ? "yes" : "no");
        }
    }
    closedir(d);
    v_note(&v, "%s%d visible processes, %d not confined like this one", v.len ? "; " : "", checked,
           weak);
    v.exposed = weak > 0;
    v_emit(&v, "P41");
}
