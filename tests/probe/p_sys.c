/* p_sys.c: kernel-surface probes: namespaces, setns, mounts, cgroups, keyrings
 * and eBPF, risky subsystems, host state, foreign-ABI and ioctl bypasses, TTY
 * injection. Every attempt that could change state if it succeeded runs in a
 * forked child, is chosen to fail after the permission check (bad magic, bad
 * flags, a fresh scratch directory), and is undone at once when it succeeds.
 * The full syscall sweep (P19) lives in p_sweep.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

/* Run one attempt in a forked child: the child does `fn` and sends back rc and errno. An
 * attempt that kills its child (seccomp SIGSYS) counts as blocked. */
struct attempt {
    long (*fn)(void *ctx);
    void *ctx;
};

struct attempt_result {
    long rc;
    int err;
};

static int attempt_child(void *arg, int fd)
{
    const struct attempt *a = arg;
    errno = 0;
    struct attempt_result r;
    r.rc = a->fn(a->ctx);
    r.err = errno;
    (void)!write(fd, &r, sizeof(r));
    return 0;
}

static void forked(struct verdict *v, const char *what, long (*fn)(void *), void *ctx, int also)
{
    struct attempt a = {fn, ctx};
    char buf[sizeof(struct attempt_result) + 1];
    memset(buf, 0, sizeof(buf));
    int st = run_child(attempt_child, &a, buf, sizeof(buf), 3000);
    struct attempt_result r;
    memcpy(&r, buf, sizeof(r));
    if (st >= 0 && WIFSIGNALED(st) && !(r.rc || r.err)) {
        v_note(v, "%s%s=killed(SIG%s)", v->len ? " " : "", what, sigabbrev_np(WTERMSIG(st)));
        return;
    }
    if (st < 0) {
        v_note(v, "%s%s=%s", v->len ? " " : "", what, st == -2 ? "timeout" : "nofork");
        v->error = true;
        return;
    }
    v_syscall(v, what, r.rc, r.err, also);
}

/* ---- P09 namespaces ---------------------------------------------------------------- */

static long do_unshare(void *ctx)
{
    return unshare((int)(long)ctx);
}

static long do_clone_ns(void *ctx)
{
    (void)ctx;
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid > 0 ? 0 : pid;
}

static long do_clone3(void *ctx)
{
    (void)ctx;
    struct clone_args ca;
    memset(&ca, 0, sizeof(ca));
    ca.flags = CLONE_NEWUSER;
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid((pid_t)pid, NULL, 0);
    return pid > 0 ? 0 : pid;
}

void p09_namespaces(void)
{
    struct verdict v = {0};
    forked(&v, "unshare(USER)", do_unshare, (void *)(long)CLONE_NEWUSER, -1);
    forked(&v, "unshare(NS|NET)", do_unshare, (void *)(long)(CLONE_NEWNS | CLONE_NEWNET), -1);
    forked(&v, "unshare(PID)", do_unshare, (void *)(long)CLONE_NEWPID, -1);
    forked(&v, "clone(NEWUSER)", do_clone_ns, NULL, -1);
    forked(&v, "clone3(NEWUSER)", do_clone3, NULL, -1);
    v_emit(&v, "P09");
}

/* ---- P10 setns ---------------------------------------------------------------------------- */

static long do_setns(void *ctx)
{
    int fd = open((const char *)ctx, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    return setns(fd, 0);
}

void p10_setns(void)
{
    static const char *const ns[] = {"mnt", "net", "pid", "user", "uts", "ipc", "cgroup"};
    struct verdict v = {0};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        char path[64], self[64], mine[128] = "", theirs[128] = "";
        snprintf(path, sizeof(path), "/proc/1/ns/%s", ns[i]);
        snprintf(self, sizeof(self), "/proc/self/ns/%s", ns[i]);
        (void)!readlink(path, theirs, sizeof(theirs) - 1);
        (void)!readlink(self, mine, sizeof(mine) - 1);
        if (theirs[0] && strcmp(theirs, mine) == 0) {
            v_note(&v, "%s%s=same-as-pid1", v.len ? " " : "", ns[i]);
            continue; /* joining our own namespace proves nothing */
        }
        /* Only a successful join is an escape (ENOENT: not even nameable from here). */
        forked(&v, ns[i], do_setns, path, -1);
    }
    v_emit(&v, "P10");
}

/* ---- P11 mount family ------------------------------------------------------------------ */

static char mount_dir[PROBE_PATH_MAX];

static long do_mount_tmpfs(void *ctx)
{
    (void)ctx;
    long rc = mount("probe", mount_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m");
    if (rc == 0) umount2(mount_dir, MNT_DETACH);
    return rc;
}

/* umount2 checks the capability before whether the path is a mount point: EINVAL on a plain
 * directory means the unmount would have been allowed. */
static long do_umount_plain(void *ctx)
{
    (void)ctx;
    return umount2(mount_dir, 0);
}

static long do_umount_proc(void *ctx)
{
    (void)ctx;
    /* MNT_EXPIRE on a busy /proc never unmounts it (it only marks it, then EAGAIN). */
    return umount2("/proc", MNT_EXPIRE);
}

static long do_pivot_root(void *ctx)
{
    (void)ctx;
    return syscall(SYS_pivot_root, mount_dir, mount_dir);
}

static long do_fsopen(void *ctx)
{
    long fd = syscall(SYS_fsopen, (const char *)ctx, 0);
    if (fd >= 0) close((int)fd);
    return fd;
}

static long do_fsconfig(void *ctx)
{
    (void)ctx;
    return syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0);
}

static long do_move_mount(void *ctx)
{
    (void)ctx;
    return syscall(SYS_move_mount, -1, "", -1, "", 0);
}

static bool make_mount_dir(void)
{
    const char *base = scratch_dir();
    if (!base) return false;
    snprintf(mount_dir, sizeof(mount_dir), "%s/probe-mnt-XXXXXX", base);
    return mkdtemp(mount_dir) != NULL;
}

void p11_mount(void)
{
    struct verdict v = {0};
    bool dir = make_mount_dir();
    if (dir) {
        forked(&v, "mount(tmpfs)", do_mount_tmpfs, NULL, 0);
        forked(&v, "umount2(dir)", do_umount_plain, NULL, 0);
        forked(&v, "pivot_root", do_pivot_root, NULL, 0);
        rmdir(mount_dir);
    } else {
        v_note(&v, "no writable scratch dir;");
    }
    forked(&v, "umount2(/proc,EXPIRE)", do_umount_proc, NULL, 0);
    forked(&v, "fsopen(tmpfs)", do_fsopen, "tmpfs", 0);
    forked(&v, "fsconfig", do_fsconfig, NULL, 0);
    forked(&v, "move_mount", do_move_mount, NULL, 0);
    v_emit(&v, "P11");
}

/* ---- P12 cgroups ------------------------------------------------------------------------- */

static long do_mount_cgroup(void *ctx)
{
    (void)ctx;
    long rc = mount("cgroup", mount_dir, "cgroup", MS_NOSUID | MS_NODEV, "pids");
    if (rc == 0) umount2(mount_dir, MNT_DETACH);
    return rc;
}

/* Open for writing only, never write: success is the escape (release_agent, CVE-2022-0492). */
static void try_open_w(struct verdict *v, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    if (fd >= 0) close(fd);
    if (fd < 0 && e == ENOENT) return;
    v_attempt(v, path, fd, e, fd >= 0);
}

void p12_cgroup(void)
{
    struct verdict v = {0};
    char cg[2048] = "";
    read_small("/proc/self/cgroup", cg, sizeof(cg));
    int lines = 0;
    for (char *line = cg; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        /* "id:controllers:path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2) {
            *c2 = '\0';
            const char *ctrl = c1 + 1, *path = c2 + 1;
            if (lines++ < 4) v_note(&v, "%s%s:%s", v.len ? " " : "", ctrl, path);
            char p[PROBE_PATH_MAX];
            const char *dir = ctrl[0] ? ctrl : "unified";
            if (strncmp(dir, "name=", 5) == 0) dir += 5;
            snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/release_agent", dir);
            try_open_w(&v, p);
            snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%s/cgroup.procs", dir, path);
            try_open_w(&v, p);
            snprintf(p, sizeof(p), "/sys/fs/cgroup/%s%s/pids.max", dir, path);
            try_open_w(&v, p);
        }
        line = next;
    }
    try_open_w(&v, "/sys/fs/cgroup/release_agent");
    try_open_w(&v, "/sys/fs/cgroup/cgroup.procs");
    if (make_mount_dir()) {
        forked(&v, "mount(cgroup)", do_mount_cgroup, NULL, 0);
        rmdir(mount_dir);
    }
    v_emit(&v, "P12");
}

/* ---- P13 keyrings and eBPF ------------------------------------------------------------------ */

static long do_add_key(void *ctx)
{
    (void)ctx;
    return syscall(SYS_add_key, "user", "gatehouse-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
}

static long do_keyctl(void *ctx)
{
    (void)ctx;
    return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
}

static long do_request_key(void *ctx)
{
    (void)ctx;
    return syscall(SYS_request_key, "user", "gatehouse-probe-none", NULL, 0);
}

static long do_bpf(void *ctx)
{
    (void)ctx;
    struct bpf_insn insns[2];
    memset(insns, 0, sizeof(insns));
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K; /* r0 = 0 */
    insns[1].code = BPF_JMP | BPF_EXIT;
    static char license[] = "GPL";
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (unsigned long)insns;
    attr.license = (unsigned long)license;
    long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
    if (fd >= 0) close((int)fd);
    return fd;
}

void p13_keyring_bpf(void)
{
    struct verdict v = {0};
    forked(&v, "add_key", do_add_key, NULL, 0);
    forked(&v, "keyctl", do_keyctl, NULL, 0);
    /* ENOKEY would mean the key service answered: only EPERM/ENOSYS count as blocked. */
    forked(&v, "request_key", do_request_key, NULL, 0);
    forked(&v, "bpf(PROG_LOAD)", do_bpf, NULL, 0);
    v_emit(&v, "P13");
}

/* ---- P14 risky subsystems ----------------------------------------------------------------- */

static long do_perf(void *ctx)
{
    (void)ctx;
    struct perf_event_attr pa;
    memset(&pa, 0, sizeof(pa));
    pa.type = PERF_TYPE_SOFTWARE;
    pa.size = sizeof(pa);
    pa.config = PERF_COUNT_SW_TASK_CLOCK;
    pa.disabled = 1;
    pa.exclude_kernel = 1;
    pa.exclude_hv = 1;
    long fd = syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0);
    if (fd >= 0) close((int)fd);
    return fd;
}

static long do_io_uring(void *ctx)
{
    (void)ctx;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    long fd = syscall(SYS_io_uring_setup, 1, &p);
    if (fd >= 0) close((int)fd);
    return fd;
}

static long do_userfaultfd(void *ctx)
{
    long fd = syscall(SYS_userfaultfd, (long)ctx);
    if (fd >= 0) close((int)fd);
    return fd;
}

void p14_subsystems(void)
{
    struct verdict v = {0};
    /* Valid arguments: only success counts (ENODEV: no PMU, equally unusable). */
    forked(&v, "perf_event_open", do_perf, NULL, -1);
    forked(&v, "io_uring_setup", do_io_uring, NULL, -1);
    forked(&v, "userfaultfd", do_userfaultfd, (void *)0L, -1);
    forked(&v, "userfaultfd(USER_MODE_ONLY)", do_userfaultfd, (void *)1L, -1);
    v_emit(&v, "P14");
}

/* ---- P15 kernel and host state ------------------------------------------------------------ */

static long do_init_module(void *ctx)
{
    (void)ctx;
    return syscall(SYS_init_module, NULL, 0, "");
}

static long do_finit_module(void *ctx)
{
    (void)ctx;
    return syscall(SYS_finit_module, -1, "", 0);
}

static long do_kexec(void *ctx)
{
    (void)ctx;
    /* The capability check comes before the flags check: bad flags never load anything. */
    return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
}

static long do_reboot(void *ctx)
{
    (void)ctx;
    /* A wrong magic number: refused with EINVAL after the capability check, never acted on. */
    return syscall(SYS_reboot, 0x12345678, 0x9abcdef0, 0, NULL);
}

static long do_swapon(void *ctx)
{
    (void)ctx;
    return syscall(SYS_swapon, "/nonexistent-probe-swap", 0);
}

static long do_acct(void *ctx)
{
    (void)ctx;
    return syscall(SYS_acct, "/nonexistent-probe-acct");
}

static long do_quotactl(void *ctx)
{
    (void)ctx;
    return syscall(SYS_quotactl, (0x800002 << 8) | 0, "/nonexistent-probe", 0, NULL);
}

static long do_clock_settime(void *ctx)
{
    (void)ctx;
    /* An invalid time (tv_nsec too large): a filter that lets the call through gets EINVAL. */
    struct timespec ts = {0, 2000000000L};
    return syscall(SYS_clock_settime, CLOCK_REALTIME, &ts);
}

static long do_settimeofday(void *ctx)
{
    (void)ctx;
    /* Both NULL: only the capability check runs; nothing changes even when it passes. */
    return syscall(SYS_settimeofday, NULL, NULL);
}

static long do_adjtimex(void *ctx)
{
    (void)ctx;
    /* A tick out of range: EPERM before the range check, EINVAL after it. */
    struct timex tx;
    memset(&tx, 0, sizeof(tx));
    tx.modes = ADJ_TICK;
    tx.tick = 1;
    return syscall(SYS_adjtimex, &tx);
}

static long do_iopl(void *ctx)
{
    (void)ctx;
    return syscall(SYS_iopl, 3);
}

static long do_ioperm(void *ctx)
{
    (void)ctx;
    return syscall(SYS_ioperm, 0x80, 1, 1);
}

static long do_open_by_handle(void *ctx)
{
    (void)ctx;
    return syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, O_RDONLY);
}

static long do_personality(void *ctx)
{
    (void)ctx;
    long rc = syscall(SYS_personality, ADDR_NO_RANDOMIZE);
    return rc < 0 ? rc : 0;
}

void p15_host_state(void)
{
    static const struct {
        const char *name;
        long (*fn)(void *);
    } calls[] = {
        {"init_module", do_init_module},
        {"finit_module", do_finit_module},
        {"kexec_load", do_kexec},
        {"reboot(bad magic)", do_reboot},
        {"swapon", do_swapon},
        {"acct", do_acct},
        {"quotactl", do_quotactl},
        {"clock_settime", do_clock_settime},
        {"settimeofday(NULL)", do_settimeofday},
        {"adjtimex(ADJ_TICK)", do_adjtimex},
        {"iopl", do_iopl},
        {"ioperm", do_ioperm},
        {"open_by_handle_at", do_open_by_handle},
        {"personality(ADDR_NO_RANDOMIZE)", do_personality},
    };
    struct verdict v = {0};
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
        forked(&v, calls[i].name, calls[i].fn, NULL, calls[i].fn == do_personality ? -1 : 0);
    v_emit(&v, "P15");
}

/* ---- P16 foreign ABIs ---------------------------------------------------------------------- */

/* A 32-bit system call through the i386 gate. Arguments are 32-bit; we pass none that matter. */
static long int80(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

static long raw_result(long ret)
{
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static long do_i386(void *ctx)
{
    long nr = (long)ctx;
    /* getpid (20) is harmless; the others get flags that are refused when permitted
     * (unshare(0) is a no-op, keyctl(-1) is EINVAL/EOPNOTSUPP). */
    switch (nr) {
    case 20: {
        /* Only our pid proves the i386 table answered (gVisor's ptrace platform, for one, runs
         * int 0x80 as a native call: 20 is then writev and fails with EBADF). */
        long r = raw_result(int80(20, 0, 0, 0));
        if (r >= 0 && r != getpid()) {
            errno = EINVAL;
            return -1;
        }
        return r;
    }
    case 310:
        return raw_result(int80(310, CLONE_NEWUSER, 0, 0));
    case 288:
        return raw_result(int80(288, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    case 26:
        return raw_result(int80(26, 0xffff, 0, 0)); /* ptrace(bad request) */
    case 357:
        return raw_result(int80(357, 0xffff, 0, 0)); /* bpf(bad cmd) */
    default:
        return raw_result(int80(nr, 0, 0, 0));
    }
}

static long do_x32(void *ctx)
{
    long nr = (long)ctx;
    return syscall(nr | 0x40000000L, 0, 0, 0);
}

void p16_arch_bypass(void)
{
    struct verdict v = {0};
    /* Any answer but success (or a kill) means the foreign call did nothing useful. */
    forked(&v, "i386:getpid", do_i386, (void *)20L, -1);
    forked(&v, "i386:unshare(USER)", do_i386, (void *)310L, -1);
    forked(&v, "i386:keyctl", do_i386, (void *)288L, -1);
    forked(&v, "i386:ptrace", do_i386, (void *)26L, -1);
    forked(&v, "i386:bpf", do_i386, (void *)357L, -1);
    forked(&v, "x32:getpid", do_x32, (void *)39L, -1);
    forked(&v, "x32:unshare(0)", do_x32, (void *)272L, -1);
    v_emit(&v, "P16");
}

/* ---- P17 / P18 TTY ------------------------------------------------------------------------- */

/* Open a fresh pty and make it our controlling terminal (a session leader without one gets it
 * on open), so TIOCSTI's own permission check passes and only the filter can refuse it. The
 * injected byte lands in our own pty; no other terminal is touched. */
static long do_tiocsti(void *ctx)
{
    unsigned long cmd = (unsigned long)ctx;
    setsid();
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0) return -1;
    if (grantpt(m) < 0 || unlockpt(m) < 0) return -1;
    const char *name = ptsname(m);
    int s = name ? open(name, O_RDWR) : -1;
    if (s < 0) return -1;
    char c = 'x';
    return syscall(SYS_ioctl, s, cmd, &c);
}

void p17_ioctl_highbit(void)
{
    struct verdict v = {0};
    /* Only an injected byte counts; no pty at all (ENOENT) or ENOTTY is as good as a refusal. */
    forked(&v, "TIOCSTI(own pty)", do_tiocsti, (void *)(unsigned long)TIOCSTI, -1);
    forked(&v, "TIOCSTI|1<<32(own pty)", do_tiocsti, (void *)((unsigned long)TIOCSTI | (1UL << 32)),
           -1);
    v_emit(&v, "P17");
}

void p18_tty(void)
{
    struct verdict v = {0};
    for (int fd = 0; fd <= 2; fd++) {
        char c = 'x', what[32];
        snprintf(what, sizeof(what), "TIOCSTI(fd%d)", fd);
        long rc = syscall(SYS_ioctl, fd, TIOCSTI, &c);
        v_syscall(&v, what, rc, errno, ENOTTY);
        char sub = 2; /* TIOCL_SETSEL-style subcode; refused without a VT */
        snprintf(what, sizeof(what), "TIOCLINUX(fd%d)", fd);
        rc = syscall(SYS_ioctl, fd, TIOCLINUX, &sub);
        v_syscall(&v, what, rc, errno, ENOTTY);
    }
    int t = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int e = errno;
    if (t >= 0) close(t);
    v_attempt(&v, "open(/dev/tty)", t, e, t >= 0);
    char st[1024];
    if (read_small("/proc/self/stat", st, sizeof(st)) > 0) {
        const char *rp = strrchr(st, ')');
        int tty_nr = 0;
        if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %d", &tty_nr) == 1) {
            v_note(&v, " tty_nr=%d", tty_nr);
            if (tty_nr != 0) v.exposed = true;
        }
    }
    v_emit(&v, "P18");
}
