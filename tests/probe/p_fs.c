/* p_fs.c: filesystem probes: read-only root, /proc and /sys, devices, host
 * control sockets, inherited fds and cwd, the launcher binary, path
 * traversal, planted links, protected paths and cross-call leftovers.
 * Files are opened for writing but never written; anything created is removed
 * at once (except the links P27 plants on purpose for the host to trip on).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#define PROC_SUPER_MAGIC_ 0x9fa0

static void try_create(struct verdict *v, const char *dir)
{
    char path[PROBE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/.gatehouse-probe-%d", strcmp(dir, "/") ? dir : "", getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    char what[PROBE_PATH_MAX + 16];
    snprintf(what, sizeof(what), "create(%s)", dir);
    v_attempt(v, what, fd, e, fd >= 0);
}

static void try_open_w(struct verdict *v, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int e = errno;
    if (fd >= 0) close(fd);
    char what[PROBE_PATH_MAX + 16];
    snprintf(what, sizeof(what), "openW(%s)", path);
    v_attempt(v, what, fd, e, fd >= 0);
}

void p20_rootfs(void)
{
    static const char *const dirs[] = {"/", "/usr", "/etc", "/bin", "/usr/bin", "/lib"};
    struct verdict v = {0};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        try_create(&v, dirs[i]);
    try_open_w(&v, "/etc/passwd");
    try_open_w(&v, "/usr/bin/env");
    v_emit(&v, "P20");
}

/* A masked path is fine when it cannot be opened or reads empty. */
static void try_read(struct verdict *v, const char *path)
{
    char buf[4096];
    long n = read_small(path, buf, sizeof(buf));
    int e = errno;
    char what[PROBE_PATH_MAX + 16];
    snprintf(what, sizeof(what), "read(%s)", path);
    if (n >= 0) {
        v_note(v, "%s%s=%ldB", v->len ? " " : "", what, n);
        if (n > 0) v->exposed = true;
    } else {
        v_attempt(v, what, -1, e, false);
    }
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

void p21_proc_sys(void)
{
    struct verdict v = {0};
    try_open_w(&v, "/proc/sys/kernel/core_pattern");
    try_open_w(&v, "/proc/sysrq-trigger");
    try_open_w(&v, "/sys/kernel/uevent_helper");
    try_open_w(&v, "/proc/sys/vm/drop_caches");
    try_read(&v, "/proc/kcore");
    try_read(&v, "/proc/keys");
    try_read(&v, "/proc/timer_list");
    try_read(&v, "/proc/sched_debug");
    try_read(&v, "/proc/latency_stats");
    int fw = dir_entries("/sys/firmware");
    v_note(&v, " /sys/firmware entries=%d", fw);
    if (fw > 0) v.exposed = true;
    struct statfs sf;
    if (statfs("/proc", &sf) == 0) {
        v_note(&v, " /proc f_type=0x%lx", (unsigned long)sf.f_type);
        if (sf.f_type != PROC_SUPER_MAGIC_)
            v.exposed = true; /* a fake /proc hides what the kernel would enforce */
    }
    v_emit(&v, "P21");
}

void p22_devices(void)
{
    static const char *const allowed[] = {"null",   "zero",   "full", "random", "urandom",
                                          "pts",    "shm",    "ptmx", "fd",     "stdin",
                                          "stdout", "stderr", "tty",  "core",   "mqueue"};
    struct verdict v = {0};
    DIR *d = opendir("/dev");
    int extra = 0, total = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        total++;
        bool ok = false;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
            ok = ok || strcmp(e->d_name, allowed[i]) == 0;
        if (!ok && extra++ < 12)
            v_note(&v, "%s%s", extra == 1 ? "unexpected /dev entries:" : ",", e->d_name);
    }
    if (d) closedir(d);
    v_note(&v, "%s/dev has %d entries, %d unexpected;", v.len ? " " : "", total, extra);
    if (extra) v.exposed = true;
    static const char *const devs[] = {"/dev/kvm", "/dev/mem", "/dev/kmsg",    "/dev/fuse",
                                       "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/port"};
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        int fd = open(devs[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        int e = errno;
        if (fd >= 0) close(fd);
        char what[64];
        snprintf(what, sizeof(what), " open(%s)", devs[i]);
        if (fd >= 0 || e != ENOENT) v_attempt(&v, what, fd, e, fd >= 0);
    }
    const char *dir = scratch_dir();
    if (dir) {
        char node[PROBE_PATH_MAX];
        snprintf(node, sizeof(node), "%s/.probe-node-%d", dir, getpid());
        int rc = mknod(node, S_IFCHR | 0600, makedev(1, 3));
        int e = errno;
        if (rc == 0) unlink(node);
        v_attempt(&v, " mknod(c1:3)", rc, e, rc == 0);
    }
    v_emit(&v, "P22");
}

void p23_host_sockets(void)
{
    static const char *const paths[] = {
        "/var/run/docker.sock", "/run/docker.sock",     "/run/containerd/containerd.sock",
        "/run/containerd",      "/run/systemd/private", "/var/run/dbus/system_bus_socket"};
    struct verdict v = {0};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0) {
            v_note(&v, "%s%s present;", v.len ? " " : "", paths[i]);
            v.exposed = true;
        }
    }
    /* Stream the table: on a busy host it is far larger than any fixed buffer. */
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f) {
        v_note(&v, "%s/proc/net/unix=%s", v.len ? " " : "", errname(errno));
    } else {
        int named = 0, abstract = 0;
        char line[1024];
        bool header = true;
        while (fgets(line, sizeof(line), f)) {
            if (header) {
                header = false;
                continue;
            }
            /* Num RefCount Protocol Flags Type St Inode Path */
            char path[256] = "";
            if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %255s", path) == 1 && path[0]) {
                if (path[0] == '@') {
                    if (abstract++ < 3) v_note(&v, " abstract:%.60s", path);
                } else if (named++ < 3) {
                    v_note(&v, " named:%.60s", path);
                }
            }
        }
        fclose(f);
        v_note(&v, " /proc/net/unix: %d named, %d abstract", named, abstract);
        if (named || abstract) v.exposed = true;
    }
    v_emit(&v, "P23");
}

void p24_fds_cwd(void)
{
    struct verdict v = {0};
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        emit("P24", "error", errno, "cannot list /proc/self/fd");
        return;
    }
    int self = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == self || fd == g_report_fd) continue;
        char path[64], target[PROBE_PATH_MAX] = "";
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        (void)!readlink(path, target, sizeof(target) - 1);
        struct stat st;
        bool is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
        v_note(&v, "%sfd%d=%.80s", v.len ? " " : "", fd, target);
        if (fd > 2 || is_dir) v.exposed = true;
    }
    closedir(d);
    char cwd_link[PROBE_PATH_MAX] = "", cwd[PROBE_PATH_MAX];
    (void)!readlink("/proc/self/cwd", cwd_link, sizeof(cwd_link) - 1);
    v_note(&v, " cwd=%.200s", cwd_link);
    if (!getcwd(cwd, sizeof(cwd))) {
        v_note(&v, " getcwd=%s", errname(errno));
        v.exposed = true; /* a cwd outside our root (CVE-2024-21626) */
    } else {
        struct stat a, b;
        if (strncmp(cwd, "(unreachable)", 13) == 0 || stat(cwd, &a) < 0 || stat(".", &b) < 0 ||
            a.st_ino != b.st_ino || a.st_dev != b.st_dev)
            v.exposed = true;
    }
    v_emit(&v, "P24");
}

/* The launcher is exposed when a host-side gatehouse process is visible (its command line
 * names the listen address, policies and state directory), or when any gatehouse image's
 * /proc/<pid>/exe can be opened at all: an fd on the host binary is how CVE-2019-5736 later
 * rewrote it. A sandbox init forked from the gateway that wiped its strings and whose exe is
 * inaccessible is only noted. Nothing is ever written. */
static void launcher_check(struct verdict *v, const char *pid, int *writable, int *seen)
{
    char path[300], exe[PROBE_PATH_MAX] = "", cmd[512] = "";
    snprintf(path, sizeof(path), "/proc/%s/exe", pid);
    (void)!readlink(path, exe, sizeof(exe) - 1);
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        if ((*writable)++ < 3) v_note(v, "%sopenW(/proc/%s/exe)=OK", v->len ? " " : "", pid);
    } else if (v->err == 0 && errno != ENOENT) {
        v->err = errno;
    }
    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    long n = read_small(path, cmd, sizeof(cmd));
    for (long i = 0; i + 1 < n; i++)
        if (cmd[i] == '\0') cmd[i] = ' ';
    const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
    const char *cbase = cmd;
    for (const char *c = cmd; *c && *c != ' '; c++)
        if (*c == '/') cbase = c + 1;
    if (!strstr(base, "gatehouse") && strncmp(cbase, "gatehouse", 9) != 0) return;
    snprintf(path, sizeof(path), "/proc/%s/exe", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    if (fd >= 0) close(fd);
    bool host_side =
        strstr(cmd, " serve") || strstr(cmd, "--policies") || strstr(cmd, "--state-dir");
    if (fd >= 0 || host_side) {
        if ((*seen)++ < 3)
            v_note(v, "%slauncher pid %s exposed: exe=%.60s openR=%s cmdline=[%.80s]",
                   v->len ? " " : "", pid, exe, fd >= 0 ? "OK" : errname(e), cmd);
    } else {
        v_note(v, "%spid %s is a gatehouse image [%.40s], exe %s", v->len ? " " : "", pid, cmd,
               errname(e));
    }
}

void p25_launcher(void)
{
    struct verdict v = {0};
    DIR *d = opendir("/proc");
    int writable = 0, seen = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            launcher_check(&v, e->d_name, &writable, &seen);
    if (d) closedir(d);
    int fd = open("/proc/self/exe", O_WRONLY | O_CLOEXEC);
    v_attempt(&v, " openW(/proc/self/exe)", fd, errno, fd >= 0);
    if (fd >= 0) close(fd);
    v_note(&v, "; %d exe writable, launcher exposed %d times", writable, seen);
    if (writable || seen) v.exposed = true;
    v_emit(&v, "P25");
}

/* The workspace the policy gave us, if any: the arguments, GATEHOUSE_WORKSPACE, or /workspace.
 * Never a guess beyond that: P27 plants links there, which must not land on a host. */
static const char *workspace(void)
{
    if (g_args.workspace[0]) return g_args.workspace;
    const char *env = getenv("GATEHOUSE_WORKSPACE");
    if (env && *env) return env;
    if (access("/workspace", W_OK) == 0) return "/workspace";
    return NULL;
}

void p26_traversal(void)
{
    char longp[4200];
    size_t o = 0;
    while (o + 3 < 4100)
        o += (size_t)snprintf(longp + o, sizeof(longp) - o, "../");
    snprintf(longp + o, sizeof(longp) - o, "etc/shadow");
    const char *defaults[] = {"../../etc/shadow", "/etc/shadow", "%2e%2e/%2e%2e/etc/shadow", longp};
    const char *const *paths = (const char *const *)g_args.paths;
    size_t n = g_args.n_paths;
    if (n == 0) {
        paths = defaults;
        n = 4;
    }
    const char *ws = workspace();
    if (ws && chdir(ws) < 0) ws = NULL;
    struct verdict v = {0};
    v_note(&v, "from %s:", ws ? ws : "cwd");
    for (size_t i = 0; i < n; i++) {
        char buf[4096];
        long r = read_small(paths[i], buf, sizeof(buf));
        int e = errno;
        bool leak = r > 0 && strstr(buf, "root:") != NULL;
        char what[80];
        snprintf(what, sizeof(what), " %.40s%s", paths[i], strlen(paths[i]) > 40 ? "..." : "");
        v_attempt(&v, what, r < 0 ? -1 : 0, e, leak);
    }
    v_emit(&v, "P26");
}

void p27_links(void)
{
    const char *ws = workspace();
    if (!ws) {
        emit("P27", "skipped", 0, "no workspace in this sandbox");
        return;
    }
    struct verdict v = {0};
    char p[PROBE_PATH_MAX + 32];
    v_note(&v, "workspace=%s;", ws);
    snprintf(p, sizeof(p), "%s/out", ws);
    v_attempt(&v, " plant(out->/etc/shadow)", symlink("/etc/shadow", p), errno, false);
    snprintf(p, sizeof(p), "%s/d", ws);
    v_attempt(&v, " plant(d->/)", symlink("/", p), errno, false);
    /* A hard link to a file the host owns would let host post-processing touch it. */
    char self[PROBE_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    static const char *const host_files[] = {"/usr/bin/env", "/etc/passwd"};
    for (size_t i = 0; i < 3; i++) {
        const char *src = i < 2 ? host_files[i] : self;
        if (!src[0]) continue;
        snprintf(p, sizeof(p), "%s/hl%zu", ws, i);
        int rc = link(src, p);
        char what[PROBE_PATH_MAX + 16];
        snprintf(what, sizeof(what), " link(%s)", src);
        v_attempt(&v, what, rc, errno, rc == 0);
    }
    v_emit(&v, "P27");
}

void p28_protected(void)
{
    const char *ws = workspace();
    struct verdict v = {0};
    int tried = 0;
    char p[PROBE_PATH_MAX + 64];
    if (ws) {
        snprintf(p, sizeof(p), "%s/.git", ws);
        if (access(p, F_OK) == 0) {
            snprintf(p, sizeof(p), "%s/.git/hooks/post-checkout", ws);
            int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
            v_attempt(&v, "create(ws/.git/hooks/post-checkout)", fd, errno, fd >= 0);
            if (fd >= 0) {
                close(fd);
                unlink(p);
            }
            tried++;
        }
    }
    if (g_args.policy_file[0]) {
        int fd = open(g_args.policy_file, O_WRONLY | O_APPEND | O_CLOEXEC);
        v_attempt(&v, " openW(policy)", fd, errno, fd >= 0);
        if (fd >= 0) close(fd);
        tried++;
        const char *dir = ws ? ws : scratch_dir();
        if (dir) {
            snprintf(p, sizeof(p), "%s/.probe-pol-link-%d", dir, getpid());
            if (symlink(g_args.policy_file, p) == 0) {
                fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
                v_attempt(&v, " openW(symlink->policy)", fd, errno, fd >= 0);
                if (fd >= 0) close(fd);
                unlink(p);
            }
        }
    }
    if (g_args.audit_dir[0]) {
        snprintf(p, sizeof(p), "%s/.probe-%d", g_args.audit_dir, getpid());
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        v_attempt(&v, " create(audit_dir/x)", fd, errno, fd >= 0);
        if (fd >= 0) {
            close(fd);
            unlink(p);
        }
        tried++;
    }
    if (tried == 0) {
        emit("P28", "skipped", 0, "no workspace .git, policy_file or audit_dir to try");
        return;
    }
    v_emit(&v, "P28");
}

static key_t p29_key(void)
{
    unsigned h = 2166136261u;
    for (const char *s = g_args.tag; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (key_t)(0x29000000u | (h & 0xffffffu));
}

static socklen_t p29_addr(struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    int n =
        snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "gatehouse-probe-p29-%s", g_args.tag);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* CLOCK_REALTIME in ns: the one clock every tier here shares with the host (gVisor's sentry
 * keeps it in step with the host's), so the harness can order a plant and a look. */
static unsigned long long p29_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* One look for P29's objects; true if any of them is visible. */
static bool p29_look_once(struct verdict *v, const char *file, const struct sockaddr_un *addr,
                          socklen_t alen)
{
    struct stat st;
    bool file_seen = stat(file, &st) == 0;
    v_attempt(v, "see(/tmp file)", file_seen ? 0 : -1, errno, file_seen);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = s >= 0 ? bind(s, (const struct sockaddr *)addr, alen) : -1;
    bool sock_seen = rc < 0 && errno == EADDRINUSE;
    v_note(v, " see(abstract socket)=%s", sock_seen ? "OK" : "no");
    if (s >= 0) close(s);
    int shm = shmget(p29_key(), 0, 0);
    v_attempt(v, " see(SysV shm)", shm, errno, shm >= 0);
    v->exposed = file_seen || sock_seen || shm >= 0;
    return v->exposed;
}

/* P29 runs as two calls. "plant" creates a /tmp file, an abstract socket and a SysV shm
 * segment, keeps them hold_ms, and reports when they all existed (planted_ns..released_ns);
 * a plant that fails is an error, never a block, so a look cannot pass vacuously. "look",
 * from a concurrent or later call, looks every 10 ms until it sees one of them or hold_ms
 * passed (at least once), and reports when it looked, the largest gap between two looks, and
 * when it saw something; the harness checks that a look fell inside the plant's window. */
void p29_cross_call(void)
{
    char file[256];
    snprintf(file, sizeof(file), "/tmp/gatehouse-probe-p29-%s", g_args.tag);
    struct sockaddr_un addr;
    socklen_t alen = p29_addr(&addr);
    struct verdict v = {0};
    if (strcmp(g_args.p29, "plant") == 0) {
        int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        v_attempt(&v, "plant(/tmp file)", fd, errno, false);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int rc = s >= 0 ? bind(s, (struct sockaddr *)&addr, alen) : -1;
        v_attempt(&v, " plant(abstract socket)", rc, errno, false);
        int shm = shmget(p29_key(), 4096, IPC_CREAT | 0644), shm_errno = errno;
        v_attempt(&v, " plant(SysV shm)", shm, shm_errno, false);
        /* ENOSYS: this kernel has no SysV IPC (the microVM guest's): no such channel to plant
         * in, nor to see through; the other two still must be planted. */
        v.error = fd < 0 || rc < 0 || (shm < 0 && shm_errno != ENOSYS);
        unsigned long long planted = p29_now_ns();
        struct timespec ts = {(time_t)(g_args.hold_ms / 1000),
                              (long)(g_args.hold_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        unsigned long long released = p29_now_ns();
        if (!g_args.keep) {
            unlink(file);
            if (shm >= 0) shmctl(shm, IPC_RMID, NULL);
        }
        v_note(&v, "; planted for %llu ms (keep=%d) planted_ns=%llu released_ns=%llu",
               (unsigned long long)g_args.hold_ms, g_args.keep, planted, released);
        v_emit(&v, "P29");
        return;
    }
    unsigned long long from = p29_now_ns(), last = from, max_gap = 0, t = from;
    unsigned looks = 0;
    for (;;) {
        t = p29_now_ns();
        if (t - last > max_gap) max_gap = t - last;
        last = t;
        looks++;
        v = (struct verdict){0};
        if (p29_look_once(&v, file, &addr, alen) || t - from >= g_args.hold_ms * 1000000ull) break;
        struct timespec tick = {0, 10 * 1000000L};
        nanosleep(&tick, NULL);
    }
    v_note(&v, " looks=%u looked_ns=%llu..%llu max_gap_ns=%llu seen_ns=%llu", looks, from, last,
           max_gap, v.exposed ? t : 0ull);
    v_emit(&v, "P29");
}
