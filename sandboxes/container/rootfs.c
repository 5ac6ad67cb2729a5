/* rootfs.c: the container child, from clone() to execve().
 *
 * The child is cloned straight into new user, PID, mount, network, IPC and UTS
 * namespaces and is PID 1 there. It runs on a copy of the gateway's memory, so it
 * uses only raw system calls and memory prepared before clone: no malloc, no stdio,
 * no glibc wrappers that take locks or signal other threads. In order:
 *   1. close every inherited fd but its own, wipe the gateway's argv/environ strings;
 *   2. clone the read-only bind sources (open_tree) while still holding the gateway's
 *      host uid, so root-owned 0700 directories on the way can be traversed;
 *   3. wait for the parent to write the uid/gid maps and attach the cgroup, then become
 *      the tool's (unprivileged, mapped) uid/gid and enter a new cgroup namespace;
 *   4. build a fresh tmpfs root, pivot_root into it and detach the old root;
 *   5. set the rlimits, drop every capability, install the seccomp filter compiled at
 *      policy load (with no_new_privs), then start the tool (vfork-style) and act as its
 *      init: reap, forward SIGTERM and SIGINT, exit with the tool's status (written to the
 *      status pipe first).
 * The tool inherits all of that, and only makes itself a session leader (no controlling
 * terminal), keeps fds 0-2, checks its cwd and execs.
 * Any failing step is reported with sbx_child_fail naming it; nothing runs weaker.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "container.h"

/* The last, kvm, only for a jailed VMM that runs its guests with KVM (ct_child_args.dev_kvm). */
static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "kvm"};

static size_t n_devices(const struct ct_child_args *a)
{
    return sizeof(devices) / sizeof(devices[0]) - (a->dev_kvm ? 0 : 1);
}

/* OCI default masked paths (files get /dev/null, directories an empty read-only tmpfs) and
 * read-only paths. /sys is not mounted at all, so /sys/firmware needs nothing. */
static const char *const masked_files[] = {
    "proc/kcore",       "proc/keys", "proc/latency_stats", "proc/timer_list", "proc/timer_stats",
    "proc/sched_debug", NULL};
static const char *const masked_dirs[] = {"proc/acpi", "proc/scsi", NULL};
static const char *const readonly_paths[] = {
    "proc/asound", "proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger", NULL};

/* The tool starts on init's memory (CLONE_VM|CLONE_VFORK, like posix_spawn) until it execs:
 * no page tables to copy. It runs on a->tool_stack; init is suspended meanwhile. */

/* ---- system calls that do not touch errno -------------------------------------------- */
/* A pool helper's children share its memory (helper.c), errno included. Their setup runs
 * while nothing else in that memory runs, but the tool's start and init's loop can overlap
 * the next child's setup: there, system calls go through raw_syscall, which returns -errno
 * and leaves errno alone. */
#if defined(__x86_64__)
static long raw_syscall(long nr, long a1, long a2, long a3, long a4)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
#error "raw_syscall: only x86-64 is supported (the seccomp allowlist is x86-64 too)"
#endif
#define KSIGSET 8 /* the kernel's sigset_t: 64 signals, 8 bytes (glibc's is 128) */
#define RAW(nr, a, b, c, d) raw_syscall((nr), (long)(a), (long)(b), (long)(c), (long)(d))

/* ---- small async-signal-safe helpers ------------------------------------------------ */

__attribute__((noreturn)) static void fail_at(int report, const char *step, const char *path,
                                              int errnum)
{
    char buf[120];
    size_t n = 0;
    for (const char *s = step; *s && n < sizeof(buf) - 1; s++)
        buf[n++] = *s;
    if (path && n < sizeof(buf) - 2) {
        buf[n++] = ' ';
        if (path[0] != '/') buf[n++] = '/';
        for (const char *s = path; *s && n < sizeof(buf) - 1; s++)
            buf[n++] = *s;
    }
    buf[n] = '\0';
    sbx_child_fail(report, buf, errnum);
}

static int write_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len) {
        ssize_t w = write(fd, s, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        len -= (size_t)w;
    }
    return 0;
}

void ct_own_strings(struct ct_ids *ids)
{
    /* /proc/self/stat fields 48-51: where the kernel thinks our argv and environ strings are.
     * Plain reads: the static pool helper calls this too. */
    char buf[4096];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    char *s = strrchr(buf, ')'); /* the comm field may hold spaces and parentheses */
    unsigned long long v[52] = {0};
    int field = 2;
    char *save = NULL;
    for (char *tok = s ? strtok_r(s + 1, " ", &save) : NULL; tok && field < 51;
         tok = strtok_r(NULL, " ", &save))
        v[++field] = strtoull(tok, NULL, 10);
    if (field >= 51) {
        ids->arg_start = (char *)(uintptr_t)v[48];
        ids->arg_end = (char *)(uintptr_t)v[49];
        ids->env_start = (char *)(uintptr_t)v[50];
        ids->env_end = (char *)(uintptr_t)v[51];
    }
}

/* Close every fd except the n listed (n <= 8), with close_range over the gaps. */
void ct_close_all_but(const int *keep, int n)
{
    int k[8], m = 0;
    for (int i = 0; i < n && m < 8; i++)
        if (keep[i] >= 0) k[m++] = keep[i];
    n = m;
    for (int i = 1; i < n; i++) /* insertion sort: n is tiny */
        for (int j = i; j > 0 && k[j - 1] > k[j]; j--) {
            int t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
    unsigned lo = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)k[i] > lo) syscall(SYS_close_range, lo, (unsigned)k[i] - 1, 0U);
        lo = (unsigned)k[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0U, 0U);
}

/* The child's copy of memory still holds the gateway's command line and environment
 * (tokens, canaries); /proc/1/cmdline and /proc/1/environ read exactly these bytes. */
static void wipe_gateway_strings(const struct ct_child_args *a)
{
    static const char name[] = "gatehouse-init";
    if (a->env_start && a->env_end > a->env_start)
        memset(a->env_start, 0, (size_t)(a->env_end - a->env_start));
    if (a->arg_start && a->arg_end > a->arg_start) {
        size_t len = (size_t)(a->arg_end - a->arg_start);
        memset(a->arg_start, 0, len);
        if (len > sizeof(name)) memcpy(a->arg_start, name, sizeof(name));
    }
}

/* Drop every capability: the bounding set (needs CAP_SETPCAP, so first), the ambient set,
 * then effective, permitted and inheritable. After this the process holds nothing even in
 * its own user namespace. */
static int drop_caps(int cap_last)
{
    for (int c = 0; c <= cap_last; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    return (int)syscall(SYS_capset, &hdr, data);
}

/* ---- the root --------------------------------------------------------------------------- */

static int clone_tree(const char *path, unsigned long long attrs, bool recursive)
{
    int fd = open_tree(AT_FDCWD, path,
                       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    if (fd < 0) return -1;
    struct mount_attr attr = {.attr_set = attrs};
    if (mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr)) <
        0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void write_etc(const struct ct_child_args *a, const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, text) < 0) fail_at(a->report, "write", path, errno);
    close(fd);
}

static void make_tree(const struct ct_child_args *a)
{
    const struct ct_spec *st = a->spec;
    for (size_t i = 0; st->dirs[i]; i++)
        if (mkdir(st->dirs[i], 0755) < 0 && errno != EEXIST)
            fail_at(a->report, "mkdir", st->dirs[i], errno);
    for (size_t i = 0; st->files[i]; i++) {
        int fd = open(st->files[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
        if (fd < 0) fail_at(a->report, "create", st->files[i], errno);
        close(fd);
    }
    for (size_t i = 0; st->links[i]; i += 2)
        if (symlink(st->links[i + 1], st->links[i]) < 0)
            fail_at(a->report, "symlink", st->links[i], errno);
    write_etc(a, "etc/passwd", st->passwd);
    write_etc(a, "etc/group", st->group);
    write_etc(a, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost\n");
    /* No resolver and files-only lookups unless the policy allows DNS: name resolution then
     * fails at once, no packet sent. */
    write_etc(a, "etc/resolv.conf", st->resolv);
    write_etc(a, "etc/nsswitch.conf",
              st->dns ? "passwd: files\ngroup: files\nshadow: files\n"
                        "hosts: files dns\nnetworks: files\nservices: files\n"
                      : "passwd: files\ngroup: files\nshadow: files\n"
                        "hosts: files\nnetworks: files\nservices: files\n");
}

static void mount_dev(const struct ct_child_args *a, const int *dev_fd)
{
    int r = a->report;
    /* A small tmpfs for /dev: no executables, no setuid, and no device nodes of its own
     * (a user namespace cannot create working ones anyway); the five device files are
     * binds of the host's nodes. */
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=64k,nr_inodes=64,mode=0755") < 0)
        fail_at(r, "mount tmpfs", "dev", errno);
    char path[32];
    for (size_t i = 0; i < n_devices(a); i++) {
        memcpy(path, "dev/", 4);
        size_t n = strlen(devices[i]);
        memcpy(path + 4, devices[i], n + 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
        if (fd < 0) fail_at(r, "create", path, errno);
        close(fd);
        if (move_mount(dev_fd[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            fail_at(r, "move_mount", path, errno);
    }
    if (mkdir("dev/shm", 01777) < 0 || mkdir("dev/pts", 0755) < 0)
        fail_at(r, "mkdir", "dev/shm", errno);
    if (mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, a->spec->tmp_opts) < 0)
        fail_at(r, "mount tmpfs", "dev/shm", errno);
    /* A private devpts instance: the tool sees no host terminals. */
    if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") < 0)
        fail_at(r, "mount devpts", "dev/pts", errno);
    static const char *const links[] = {
        "dev/ptmx",   "pts/ptmx",        "dev/fd",     "/proc/self/fd",
        "dev/stdin",  "/proc/self/fd/0", "dev/stdout", "/proc/self/fd/1",
        "dev/stderr", "/proc/self/fd/2", NULL};
    for (size_t i = 0; links[i]; i += 2)
        if (symlink(links[i + 1], links[i]) < 0) fail_at(r, "symlink", links[i], errno);
    if (mount(NULL, "dev", NULL,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail_at(r, "remount ro", "dev", errno);
}

static void mount_proc(const struct ct_child_args *a)
{
    int r = a->report;
    /* procfs of the new PID namespace: only the sandbox's processes are visible. */
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail_at(r, "mount proc", "proc", errno);
    for (size_t i = 0; masked_files[i]; i++)
        if (access(masked_files[i], F_OK) == 0 &&
            mount("dev/null", masked_files[i], NULL, MS_BIND, NULL) < 0)
            fail_at(r, "mask", masked_files[i], errno);
    for (size_t i = 0; masked_dirs[i]; i++)
        if (access(masked_dirs[i], F_OK) == 0 &&
            mount("tmpfs", masked_dirs[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=4k,nr_inodes=1,mode=0555") < 0)
            fail_at(r, "mask", masked_dirs[i], errno);
    for (size_t i = 0; readonly_paths[i]; i++) {
        if (access(readonly_paths[i], F_OK) < 0) continue;
        if (mount(readonly_paths[i], readonly_paths[i], NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, readonly_paths[i], NULL,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            fail_at(r, "read-only", readonly_paths[i], errno);
    }
}

static void build_root(const struct ct_child_args *a, const int *bind_fd, const int *dev_fd)
{
    const struct ct_spec *st = a->spec;
    int r = a->report;
    /* Nothing we mount from here on may propagate back to the host's mount namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fail_at(r, "make-rprivate", "/", errno);
    /* The new root is a fresh tmpfs mounted over /tmp of this (private) mount namespace:
     * every bind source is already held as an fd, so hiding /tmp hides nothing we need. */
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=1024,mode=0755") <
        0)
        fail_at(r, "mount tmpfs", "/", errno);
    if (chdir("/tmp") < 0) fail_at(r, "chdir", "new root", errno);
    /* The scratch tmpfs first: a tool directory below /tmp is then bound inside it. */
    if (mkdir("tmp", 01777) < 0 || (st->workspace && mkdir("workspace", 0755) < 0))
        fail_at(r, "mkdir", "tmp", errno);
    if (mount("tmpfs", "tmp", "tmpfs", st->scratch_flags, st->tmp_opts) < 0)
        fail_at(r, "mount tmpfs", "tmp", errno);
    if (st->workspace && mount("tmpfs", "workspace", "tmpfs", st->scratch_flags, st->ws_opts) < 0)
        fail_at(r, "mount tmpfs", "workspace", errno);
    make_tree(a);
    for (size_t i = 0; i < st->nbinds; i++)
        if (move_mount(bind_fd[i], "", AT_FDCWD, st->bind_dst[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
            fail_at(r, "bind", st->bind_src[i], errno);
    mount_dev(a, dev_fd);
    mount_proc(a);
    /* pivot_root(".", "."): the old root ends up stacked on the new one and is detached
     * at once, so no path from the sandbox leads back to the host's tree. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail_at(r, "pivot_root", NULL, errno);
    if (umount2(".", MNT_DETACH) < 0) fail_at(r, "umount old root", NULL, errno);
    if (chdir("/") < 0) fail_at(r, "chdir", "/", errno);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        fail_at(r, "remount ro", "/", errno);
}

static void loopback_up(int report)
{
    /* The network namespace is new and empty; lo is its only interface and has no route
     * to anywhere else. CAP_NET_ADMIN here is over this namespace only. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail_at(report, "socket", NULL, errno);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail_at(report, "SIOCGIFFLAGS lo", NULL, errno);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail_at(report, "SIOCSIFFLAGS lo", NULL, errno);
    close(s);
}

/* ---- the tool and init ---------------------------------------------------------------- */

static void set_limit(const struct ct_child_args *a, int resource, rlim_t value, const char *name)
{
    struct rlimit rl = {value, value};
    if (setrlimit(resource, &rl) < 0) fail_at(a->report, "setrlimit", name, errno);
}

/* The tool, on init's memory until execve (CLONE_VM|CLONE_VFORK): raw system calls only. */
static int tool_main(void *arg)
{
    const struct ct_child_args *a = arg;
    int report = a->report;
    long rc;
    /* init blocks the signals it waits for; the tool starts with none blocked. */
    sigset_t none;
    sigemptyset(&none);
    if ((rc = RAW(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, KSIGSET)) < 0)
        sbx_child_fail(report, "sigprocmask", (int)-rc);
    /* A new session: no controlling terminal, so TIOCSTI has nothing to inject into. */
    if ((rc = RAW(SYS_setsid, 0, 0, 0, 0)) < 0) sbx_child_fail(report, "setsid", (int)-rc);
    /* Lift the ends above 2 first, so no dup2 below clobbers another end, and so each dup2
     * makes a fresh fd without FD_CLOEXEC (dup2 onto itself would keep the flag). */
    long in = RAW(SYS_fcntl, a->in, F_DUPFD_CLOEXEC, 10, 0);
    long out = RAW(SYS_fcntl, a->out, F_DUPFD_CLOEXEC, 10, 0);
    long errfd = RAW(SYS_fcntl, a->errfd, F_DUPFD_CLOEXEC, 10, 0);
    if ((rc = RAW(SYS_fcntl, report, F_DUPFD_CLOEXEC, 10, 0)) < 0)
        sbx_child_fail(a->report, "dup", (int)-rc);
    report = (int)rc;
    if (in < 0 || out < 0 || errfd < 0)
        sbx_child_fail(report, "dup", (int)-(in < 0 ? in : out < 0 ? out : errfd));
    if ((rc = RAW(SYS_dup2, in, 0, 0, 0)) < 0 || (rc = RAW(SYS_dup2, out, 1, 0, 0)) < 0 ||
        (rc = RAW(SYS_dup2, errfd, 2, 0, 0)) < 0)
        sbx_child_fail(report, "dup2", (int)-rc);
    if (report != 3) {
        if ((rc = RAW(SYS_dup3, report, 3, O_CLOEXEC, 0)) < 0)
            sbx_child_fail(report, "dup3", (int)-rc);
        report = 3;
    }
    /* Only stdio and the report pipe (CLOEXEC: it closes on execve) are left. */
    RAW(SYS_close_range, 4U, ~0U, 0U, 0);
    /* CVE-2024-21626: the cwd must be a directory inside the new root, not an inherited
     * handle to the host's tree. getcwd reports "(unreachable)" for anything outside. */
    char cwd[64];
    if ((rc = RAW(SYS_chdir, a->spec->cwd, 0, 0, 0)) < 0) sbx_child_fail(report, "chdir", (int)-rc);
    if (RAW(SYS_getcwd, cwd, sizeof(cwd), 0, 0) < 0 || strcmp(cwd, a->spec->cwd) != 0)
        sbx_child_fail(report, "cwd outside the sandbox root", EACCES);
    rc = RAW(SYS_execve, a->spec->argv[0], a->spec->argv, a->spec->env, 0);
    fail_at(report, "execve", a->spec->argv[0], (int)-rc);
}

/* Everything the tool must not have, removed from init before the tool exists, so the tool
 * inherits it: rlimits, no capabilities, no_new_privs and the seccomp filter. The filter
 * allows what the rest of init and the tool's own setup need (rt_sigtimedwait, wait4, kill,
 * setsid, dup2, close_range, chdir, getcwd, execve, ...): a policy denying one of those
 * fails to load (container.c). */
static void confine(const struct ct_child_args *a)
{
    const struct ct_spec *sp = a->spec;
    set_limit(a, RLIMIT_CORE, 0, "core");
    set_limit(a, RLIMIT_CPU, (rlim_t)sp->cpu_time_s, "cpu");
    set_limit(a, RLIMIT_FSIZE, (rlim_t)sp->file_size_bytes, "fsize");
    /* Open files: the usual default, whatever the gateway raised its own limit to. */
    set_limit(a, RLIMIT_NOFILE, 1024, "nofile");
    if (drop_caps(a->cap_last) < 0) fail_at(a->report, "drop capabilities", NULL, errno);
    if (sbx_seccomp_install(&sp->seccomp) < 0) fail_at(a->report, "seccomp", NULL, errno);
}

void ct_child_start(const struct ct_child_args *a)
{
    if (a->extra_fd >= 0) close(a->extra_fd);
    if (a->setup_fd >= 0) close(a->setup_fd);
    /* init waits for these instead of handling them: no handler, no state outside this
     * stack. Blocked before the tool exists, so its SIGCHLD cannot be lost (a blocked
     * signal stays pending even with the default, ignoring, disposition). */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGINT);
    long rc = RAW(SYS_rt_sigprocmask, SIG_BLOCK, &waited, NULL, KSIGSET);
    if (rc < 0) fail_at(a->report, "sigprocmask", NULL, (int)-rc);
    pid_t pid = clone(tool_main, a->tool_stack + a->tool_stack_size,
                      CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)a);
    if (pid < 0) fail_at(a->report, "start the tool", NULL, errno);
    int status_fd = a->status;
    int keep[] = {status_fd};
    /* init keeps only the status pipe: the report pipe closed when the tool exec'd. */
    ct_close_all_but(keep, 1);
    /* Reap everything, forward SIGTERM and SIGINT to the tool, until the tool has ended. */
    int status = 0;
    for (bool done = false; !done;) {
        siginfo_t info;
        long sig = RAW(SYS_rt_sigtimedwait, &waited, &info, NULL, KSIGSET);
        if (sig == SIGTERM || sig == SIGINT) {
            RAW(SYS_kill, pid, sig, 0, 0);
            continue;
        }
        int st = 0;
        long w;
        while ((w = RAW(SYS_wait4, -1, &st, WNOHANG, NULL)) > 0)
            if (w == pid) status = st, done = true;
        if (w < 0 && w != -EINTR) break; /* -ECHILD: nothing left to wait for */
    }
    RAW(SYS_write, status_fd, &status, sizeof(status), 0);
    /* Leaving PID 1 kills every other process of the namespace. */
    RAW(SYS_exit_group, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), 0, 0, 0);
    __builtin_unreachable();
}

/* The gateway's signal mask and handlers are not the tool's: start from the defaults. */
static void reset_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void ct_child_setup(const struct ct_child_args *a)
{
    const struct ct_spec *st = a->spec;
    int r = a->report;
    int keep[] = {a->in, a->out, a->errfd, a->report, a->status, a->sync, a->extra_fd, a->setup_fd};
    ct_close_all_but(keep, 8);
    wipe_gateway_strings(a);
    reset_signals();
    int bind_fd[CT_MAX_BINDS];
    int dev_fd[sizeof(devices) / sizeof(devices[0])];
    for (size_t i = 0; i < st->nbinds && i < CT_MAX_BINDS; i++)
        if ((bind_fd[i] =
                 clone_tree(st->bind_src[i],
                            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true)) < 0)
            fail_at(r, "open_tree", st->bind_src[i], errno);
    char path[32];
    for (size_t i = 0; i < n_devices(a); i++) {
        memcpy(path, "/dev/", 5);
        memcpy(path + 5, devices[i], strlen(devices[i]) + 1);
        /* Device binds keep their device semantics (no nodev) but nothing else. */
        if ((dev_fd[i] = clone_tree(path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)) < 0)
            fail_at(r, "open_tree", path, errno);
    }
    if (a->sync >= 0) {
        char c;
        if (read(a->sync, &c, 1) != 1) fail_at(r, "waiting for the uid map", NULL, EPIPE);
        close(a->sync);
    }
    /* A SysV shared memory segment outlives its creator in the IPC namespace, which the
     * kernel frees some time after the call: its pages would count against the next call in
     * the same cgroup. With this namespace's shm_rmid_forced, a segment goes when its last
     * user exits, before the call's init does. Written while we still hold the host uid that
     * owns the new namespace's sysctls (they answer for the writer's IPC namespace). */
    int shm = open("/proc/sys/kernel/shm_rmid_forced", O_WRONLY | O_CLOEXEC);
    if (shm < 0 || write(shm, "1", 1) != 1)
        fail_at(r, "write", "/proc/sys/kernel/shm_rmid_forced", errno);
    close(shm);
    /* Become the tool's identity (mapped to the same unprivileged host ids). Raw syscalls:
     * glibc's wrappers would try to signal gateway threads that do not exist here. The
     * capabilities held in the new user namespace survive, since ns uid 0 is not mapped. */
    if (syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0) fail_at(r, "setresgid", NULL, errno);
    if (syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0) fail_at(r, "setresuid", NULL, errno);
    /* setgroups is denied in this namespace, so the supplementary groups must already be
     * empty (the tier clears the gateway's at init); refuse to run with host groups. */
    if (syscall(SYS_getgroups, 0, NULL) != 0)
        fail_at(r, "setgroups", "(supplementary groups left)", EPERM);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* set after the uid change, which clears it */
    /* A cgroup namespace rooted at the call's own cgroup (joined by the parent above). */
    if (unshare(CLONE_NEWCGROUP) < 0) fail_at(r, "unshare", "cgroup", errno);
    if (sethostname("sandbox", 7) < 0) fail_at(r, "sethostname", NULL, errno);
    build_root(a, bind_fd, dev_fd);
    if (!a->spec->host_net) loopback_up(r); /* the host's namespace is not ours to touch */
    confine(a);
}

void ct_child_recheck(const struct ct_child_args *a)
{
    const struct ct_spec *st = a->spec;
    /* A bind whose host source was removed since setup still shows the old, now unlinked
     * inode (link count 0): fail as the setup would have failed now. */
    for (size_t i = 0; i < st->nbinds; i++) {
        struct stat sb;
        if (stat(st->bind_dst[i], &sb) < 0 || sb.st_nlink == 0)
            fail_at(a->report, CT_STALE_STEP, st->bind_src[i], ENOENT);
    }
}

pid_t ct_fork_into(unsigned long flags)
{
    /* x86-64 argument order: flags, new stack (0: the caller's, copied), parent tid,
     * child tid, tls. No CLONE_VM: the child has its own copy of everything. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0UL, NULL, NULL, 0UL);
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    if (w == (ssize_t)strlen(text)) return 0;
    errno = w < 0 ? e : EIO;
    return -1;
}

int ct_map_ids(pid_t pid, uid_t uid, gid_t gid, const char **step)
{
    char umap[64], gmap[64];
    snprintf(umap, sizeof(umap), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    snprintf(gmap, sizeof(gmap), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    /* The OOM killer's first choice, ahead of anything of the gateway's or a pool helper
     * sharing the cgroup (raising a score needs no privilege; lowering would). setgroups is
     * denied before gid_map is written (the kernel requires that order). */
    const char *const files[] = {"oom_score_adj", "setgroups", "uid_map", "gid_map"};
    const char *const texts[] = {"1000", "deny", umap, gmap};
    for (size_t i = 0; i < 4; i++)
        if (write_proc(pid, files[i], texts[i]) < 0) {
            *step = files[i];
            return -1;
        }
    return 0;
}

int ct_child_main(void *arg)
{
    const struct ct_child_args *a = arg;
    ct_child_setup(a);
    ct_child_start(a);
}
