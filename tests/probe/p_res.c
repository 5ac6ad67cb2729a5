/* p_res.c: resource probes: fork and thread bombs, memory hog, disk and inode
 * fill, CPU spin with an orphan, output flood, fd and shm exhaustion, time.
 *
 * Everything here that consumes resources runs only with "destructive": true
 * (the harness sets it only inside real sandboxes) and is bounded even then:
 * at most 10000 forks or threads, 2x the memory cap, a few hundred MB of disk
 * or output, 65536 fds. Whatever a probe creates it removes before reporting.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#define BOMB_MAX 10000

static bool disarmed(const char *id, const char *what)
{
    if (g_args.destructive) return false;
    emit(id, "skipped", 0, "%s disarmed (destructive=false)", what);
    return true;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- P34 ---------------------------------------------------------------------------- */

static void *thread_park(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

void p34_fork_bomb(void)
{
    if (disarmed("P34", "fork/thread bomb")) return;
    static pid_t kids[BOMB_MAX];
    int forks = 0, fork_err = 0;
    while (forks < BOMB_MAX) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;)
                pause();
        }
        if (pid < 0) {
            fork_err = errno;
            break;
        }
        kids[forks++] = pid;
    }
    for (int i = 0; i < forks; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < forks; i++)
        waitpid(kids[i], NULL, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 65536);
    int threads = 0, thread_err = 0;
    while (threads < BOMB_MAX) {
        pthread_t t;
        int rc = pthread_create(&t, &attr, thread_park, NULL);
        if (rc != 0) {
            thread_err = rc;
            break;
        }
        threads++;
    }
    struct verdict v = {0};
    v_note(&v, "forks=%d (stopped by %s) threads=%d (stopped by %s)", forks,
           fork_err ? errname(fork_err) : "the 10000 bound", threads,
           thread_err ? errname(thread_err) : "the 10000 bound");
    v.err = fork_err ? fork_err : thread_err;
    v.exposed = forks >= BOMB_MAX || threads >= BOMB_MAX;
    /* Emit now: returning ends the process and with it every parked thread. */
    v_emit(&v, "P34");
}

/* ---- P35 / P39 / P36 helpers --------------------------------------------------------------- */

struct hog {
    uint64_t target_mb;
    int mode; /* 0 malloc+memset, 1 mmap(MAP_POPULATE), 2 file at path */
    const char *path;
};

/* In a child: consume up to target_mb, printing the MB reached; exit 0 when the target was
 * reached, 1 with the errno printed when refused. */
static int hog_child(void *arg, int fd)
{
    const struct hog *h = arg;
    signal(SIGXFSZ, SIG_IGN);
    int out = -1;
    if (h->mode == 2) {
        out = open(h->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
            dprintf(fd, "0 %s\n", errname(errno));
            return 1;
        }
    }
    static char chunk[1 << 20];
    memset(chunk, 0x5a, sizeof(chunk));
    for (uint64_t mb = 0; mb < h->target_mb; mb++) {
        void *p = NULL;
        int e = 0;
        if (h->mode == 0) {
            p = malloc(1 << 20);
            if (p) memset(p, 0x5a, 1 << 20);
            e = ENOMEM;
        } else if (h->mode == 1) {
            p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
            e = errno;
            if (p == MAP_FAILED) p = NULL;
        } else {
            ssize_t n = write(out, chunk, sizeof(chunk));
            e = errno;
            p = n == (ssize_t)sizeof(chunk) ? chunk : NULL;
        }
        if (!p) {
            dprintf(fd, "%llu %s\n", (unsigned long long)mb, errname(e));
            return 1;
        }
        if (mb % 16 == 0) dprintf(fd, "%llu\n", (unsigned long long)mb);
    }
    dprintf(fd, "%llu reached\n", (unsigned long long)h->target_mb);
    return 0;
}

/* Run a hog and append its result; returns true when it reached the target (exposed). */
static bool run_hog(struct verdict *v, const char *id, const char *what, const struct hog *h)
{
    progress(id, "%s: starting, target %llu MB", what, (unsigned long long)h->target_mb);
    char out[8192];
    int st = run_child(hog_child, (void *)h, out, sizeof(out), 50000);
    if (h->path) unlink(h->path);
    char *last = out, *nl;
    while ((nl = strchr(last, '\n')) && nl[1])
        last = nl + 1;
    if (nl) *nl = '\0';
    progress(id, "%s: ended at %s MB (wait status %d)", what, last, st);
    if (st == -2) {
        v_note(v, "%s%s=timeout(at %s MB)", v->len ? " " : "", what, last);
        return false;
    }
    if (st >= 0 && WIFSIGNALED(st)) {
        v_note(v, "%s%s=killed(SIG%s at ~%s MB)", v->len ? " " : "", what,
               sigabbrev_np(WTERMSIG(st)), last);
        return false;
    }
    v_note(v, "%s%s=%s MB", v->len ? " " : "", what, last);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void p35_memory(void)
{
    if (disarmed("P35", "memory hog")) return;
    uint64_t target = 2 * (g_args.memory_mb ? g_args.memory_mb : 256);
    if (target > 4096) target = 4096;
    struct verdict v = {0};
    v_note(&v, "cap=%lluMB target=%lluMB:", (unsigned long long)g_args.memory_mb,
           (unsigned long long)target);
    struct hog h = {target, 0, NULL};
    v.exposed |= run_hog(&v, "P35", " malloc+memset", &h);
    h.mode = 1;
    v.exposed |= run_hog(&v, "P35", " mmap(MAP_POPULATE)", &h);
    if (access("/dev/shm", W_OK) == 0) {
        char path[64];
        snprintf(path, sizeof(path), "/dev/shm/.probe-hog-%d", getpid());
        struct hog f = {target, 2, path};
        v.exposed |= run_hog(&v, "P35", " tmpfs(/dev/shm)", &f);
    }
    v_emit(&v, "P35");
}

/* ---- P36 ----------------------------------------------------------------------------------- */

static int inode_child(void *arg, int fd)
{
    const char *dir = arg;
    int n = 0;
    for (; n < 100000; n++) {
        char p[PROBE_PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/%d", dir, n);
        int f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (f < 0) {
            dprintf(fd, "%d %s\n", n, errname(errno));
            return 1;
        }
        close(f);
    }
    dprintf(fd, "%d reached\n", n);
    return 0;
}

void p36_disk(void)
{
    if (disarmed("P36", "disk fill")) return;
    const char *dir = access("/tmp", W_OK) == 0 ? "/tmp" : scratch_dir();
    if (!dir) {
        emit("P36", "skipped", 0, "no writable directory");
        return;
    }
    struct rlimit fs;
    getrlimit(RLIMIT_FSIZE, &fs);
    uint64_t target = 2 * (g_args.disk_mb ? g_args.disk_mb : 64);
    if (target > 512) target = 512;
    struct verdict v = {0};
    v_note(&v, "dir=%s disk_cap=%lluMB target=%lluMB RLIMIT_FSIZE=%lld:", dir,
           (unsigned long long)g_args.disk_mb, (unsigned long long)target,
           fs.rlim_cur == RLIM_INFINITY ? -1LL : (long long)fs.rlim_cur);
    char path[PROBE_PATH_MAX];
    snprintf(path, sizeof(path), "%s/.probe-fill-%d", dir, getpid());
    struct hog h = {target, 2, path};
    v.exposed |= run_hog(&v, "P36", " fill", &h);
    char sub[PROBE_PATH_MAX];
    snprintf(sub, sizeof(sub), "%s/.probe-inodes-%d", dir, getpid());
    if (mkdir(sub, 0700) == 0) {
        progress("P36", "inodes: creating up to 100000 empty files in %s", sub);
        char out[256];
        int st = run_child(inode_child, sub, out, sizeof(out), 50000);
        char *nl = strchr(out, '\n');
        if (nl) *nl = '\0';
        v_note(&v, " inodes=%s", out);
        progress("P36", "inodes: %s", out);
        if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) v.exposed = true;
        for (int n = 0; n < 100000; n++) {
            char p[PROBE_PATH_MAX + 32];
            snprintf(p, sizeof(p), "%s/%d", sub, n);
            if (unlink(p) < 0 && errno == ENOENT) break;
        }
        rmdir(sub);
    }
    v_emit(&v, "P36");
}

/* ---- P37 ------------------------------------------------------------------------------------- */

void p37_orphan(void)
{
    pid_t child = fork();
    if (child == 0) {
        pid_t gc = fork();
        if (gc == 0) {
            /* Keep stdout/stderr (the nasty case for the host) but not the report pipe. */
            close(g_report_fd);
            setsid();
            signal(SIGTERM, SIG_IGN);
            signal(SIGHUP, SIG_IGN);
            /* "po-<tag>": the harness looks for exactly this name, so concurrent runs do not
             * see each other's orphans (the kernel keeps 15 characters). */
            char name[16];
            snprintf(name, sizeof(name), "po-%.12s", g_args.tag);
            prctl(PR_SET_NAME, name);
            /* Bounded: even if nothing kills it, it is gone within a minute. */
            sleep_ms(60000);
            _exit(0);
        }
        _exit(gc > 0 ? 0 : 1);
    }
    int st = 0;
    if (child > 0) waitpid(child, &st, 0);
    bool started = child > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!(g_args.destructive && g_args.spin)) {
        emit("P37", "skipped", 0,
             "orphan 'po-%.12s' %s (ignores SIGTERM, setsid); the harness checks survivors",
             g_args.tag, started ? "started" : "not started");
        return;
    }
    /* The spin ends the call at its deadline: report first, straight to stdout. */
    int report = g_report_fd;
    g_report_fd = 1;
    emit("P37", "skipped", 0, "orphan %s; spinning until the deadline (at most 60 s)",
         started ? "started" : "not started");
    (void)!write(report, "\n", 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while (t.tv_sec - t0.tv_sec < 60);
}

/* ---- P38 ----------------------------------------------------------------------------------------
 */

struct flood {
    int fd;
    uint64_t bytes;
    uint64_t written;
    int err;
};

static void *flood_thread(void *arg)
{
    struct flood *f = arg;
    static char buf[2][65536];
    char *b = buf[f->fd == 1 ? 0 : 1];
    for (size_t i = 0; i < 65536; i++)
        b[i] = (char)(i % 3 == 0 ? 0xff : i % 3 == 1 ? 0xfe : 'A'); /* invalid UTF-8, no '\n' */
    while (f->written < f->bytes) {
        ssize_t n = write(f->fd, b, 65536);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            f->err = errno;
            break;
        }
        f->written += (uint64_t)n;
    }
    return NULL;
}

void p38_flood(void)
{
    if (disarmed("P38", "output flood")) return;
    uint64_t each = 300ull << 20;
    struct flood f[2] = {{1, each, 0, 0}, {2, each, 0, 0}};
    pthread_t t[2];
    int started = 0;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, flood_thread, &f[i]) == 0) started |= 1 << i;
    for (int i = 0; i < 2; i++)
        if (started & (1 << i)) pthread_join(t[i], NULL);
    struct verdict v = {0};
    v_note(&v, "stdout %llu/%llu bytes (%s), stderr %llu/%llu bytes (%s)",
           (unsigned long long)f[0].written, (unsigned long long)each, errname(f[0].err),
           (unsigned long long)f[1].written, (unsigned long long)each, errname(f[1].err));
    v.err = f[0].err ? f[0].err : f[1].err;
    v.exposed = f[0].written >= each && f[1].written >= each;
    v_emit(&v, "P38");
}

/* ---- P39 ----------------------------------------------------------------------------------------
 */

void p39_fds(void)
{
    if (disarmed("P39", "fd and shm exhaustion")) return;
    struct verdict v = {0};
    int n = 0, e = 0, first = -1, last = -1;
    for (; n < 65536; n++) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            e = errno;
            break;
        }
        if (first < 0) first = fd;
        last = fd;
    }
    if (first >= 0)
        for (int fd = first; fd <= last; fd++)
            if (fd != g_report_fd) close(fd);
    v_note(&v, "open: %d fds then %s", n, e ? errname(e) : "the 65536 bound");
    progress("P39", "open: %d fds then %s", n, e ? errname(e) : "the 65536 bound");
    v.err = e;
    if (n >= 65536) v.exposed = true;
    if (access("/dev/shm", W_OK) == 0) {
        uint64_t target = 2 * (g_args.memory_mb ? g_args.memory_mb : 256);
        if (target > 512) target = 512;
        char path[64];
        snprintf(path, sizeof(path), "/dev/shm/.probe-fill-%d", getpid());
        struct hog h = {target, 2, path};
        v.exposed |= run_hog(&v, "P39", "; /dev/shm fill", &h);
    } else {
        v_note(&v, "; /dev/shm not writable (%s)", errname(errno));
    }
    v_emit(&v, "P39");
}

/* ---- P40 ----------------------------------------------------------------------------------------
 */

void p40_time(void)
{
    struct verdict v = {0};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* With destructive=false the time is invalid: a filter that lets the call through gets
     * EINVAL and the clock is never touched. In a sandbox we set the clock to what it reads. */
    struct timespec ts = g_args.destructive ? now : (struct timespec){0, 2000000000L};
    long rc = syscall(SYS_clock_settime, CLOCK_REALTIME, &ts);
    v_syscall(&v, "clock_settime", rc, errno, 0);
    rc = syscall(SYS_settimeofday, NULL, NULL);
    v_syscall(&v, " settimeofday(NULL)", rc, errno, 0);
    const char *pre = getenv("LD_PRELOAD");
    v_note(&v, " LD_PRELOAD=%s", pre ? pre : "(unset)");
    if (pre) v.exposed = true;
    if (g_args.sleep_ms == 0) {
        v_emit(&v, "P40");
        return;
    }
    /* Sleep past the deadline: report first; the host's monotonic clock must end the call. */
    v_note(&v, "; sleeping %llu ms", (unsigned long long)g_args.sleep_ms);
    int report = g_report_fd;
    g_report_fd = 1;
    v_emit(&v, "P40");
    (void)!write(report, "\n", 1);
    sleep_ms(g_args.sleep_ms);
}
