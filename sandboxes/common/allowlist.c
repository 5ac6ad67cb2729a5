/* allowlist.c: the seccomp allowlist of the container tier (also used by the gVisor launcher).
 *
 * Modelled on Docker's default profile (default action EPERM, a list of
 * ordinary system calls allowed), minus what Docker only allows to processes
 * holding a capability (our tools hold none) and minus what this project
 * refuses outright: io_uring, the keyring, bpf, perf_event_open, userfaultfd,
 * the mount family, ptrace, process_vm_*, kcmp, pidfd_getfd, adjtimex,
 * clock_adjtime, name_to_handle_at, modify_ldt. clone and clone3 are not listed
 * here: the shared compiler (sandboxes/common/seccomp.c) adds them, clone only
 * without namespace flags, clone3 answering ENOSYS.
 *
 * Arguments are filtered where a call is only sometimes safe: ioctl refuses
 * TIOCSTI and TIOCLINUX comparing the low 32 bits of the command only (the
 * kernel truncates it to 32 bits, so TIOCSTI | 1 << 32 is still TIOCSTI:
 * CVE-2019-10063); socket/socketpair only for the families a tool needs;
 * personality only for the harmless personas Docker allows.
 */
#include <errno.h>
#include <seccomp.h>
#include <string.h>
#include <sys/socket.h>

#include "sbx_internal.h"

/* One table, filled like a paragraph. */
/* clang-format off */
static const char *const allowed[] = {
    "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat",
    "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr",
    "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
    "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid",
    "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
    "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "splice", "stat", "statfs", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
    "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill", "truncate", "umask",
    "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork", "vmsplice", "wait4",
    "waitid", "write", "writev", NULL};
/* clang-format on */

/* Socket families a tool may open; AF_PACKET, AF_ALG, AF_VSOCK and the rest get EPERM.
 * Raw sockets and netlink route changes additionally need CAP_NET_RAW/CAP_NET_ADMIN,
 * which the tool does not hold. */
static const int socket_families[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};

/* personality(): PER_LINUX, PER_LINUX32, UNAME26 variants and the 0xffffffff query. */
static const unsigned long long personas[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffffULL};

/* The terminal ioctls a tool must never reach: TIOCSTI pushes input into the terminal
 * (CVE-2017-5226), TIOCLINUX can do the same on a VT. */
#define TIOCSTI_NR 0x5412u
#define TIOCLINUX_NR 0x541Cu

static bool listed(char *const *names, const char *name)
{
    for (size_t i = 0; names && names[i]; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

static int allow_rule(scmp_filter_ctx ctx, const char *name, unsigned n,
                      const struct scmp_arg_cmp *cmp, struct gate_error *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0; /* not a system call on this architecture */
    int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
    if (rc < 0) return gate_err_errno(err, GATE_E_SANDBOX, -rc, "seccomp allow rule for %s", name);
    return 0;
}

/* libseccomp cannot express "allow unless arg == X" next to the default action (an
 * unconditional allow swallows conditional refusals), so the ioctl allow rule is written as
 * a disjunction over the low 32 bits: the command is allowed when it differs from both
 * refused values in some bit they share, or when their three differing bits (1..3) take any
 * value other than the two refused ones. Every comparison masks with at most 0xffffffff. */
static int ioctl_rules(scmp_filter_ctx ctx, struct gate_error *err)
{
    const uint32_t differ = TIOCSTI_NR ^ TIOCLINUX_NR; /* bits 1..3 */
    const uint32_t common = TIOCSTI_NR & ~differ;      /* equal to TIOCLINUX_NR & ~differ */
    for (int bit = 0; bit < 32; bit++) {
        uint32_t m = 1u << bit;
        if (m & differ) continue;
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, m, (~common) & m);
        if (allow_rule(ctx, "ioctl", 1, &c, err) < 0) return -1;
    }
    for (uint32_t v = 0; v <= differ; v += 2) { /* differ is 0b1110: v walks its 8 values */
        if ((v & differ) != v || v == (TIOCSTI_NR & differ) || v == (TIOCLINUX_NR & differ))
            continue;
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, differ, v);
        if (allow_rule(ctx, "ioctl", 1, &c, err) < 0) return -1;
    }
    return 0;
}

static int argument_rules(scmp_filter_ctx ctx, char *const *deny, struct gate_error *err)
{
    if (!listed(deny, "ioctl") && ioctl_rules(ctx, err) < 0) return -1;
    for (size_t i = 0; i < sizeof(socket_families) / sizeof(socket_families[0]); i++) {
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)socket_families[i]);
        if (!listed(deny, "socket") && allow_rule(ctx, "socket", 1, &c, err) < 0) return -1;
    }
    struct scmp_arg_cmp unix_only = SCMP_A0(SCMP_CMP_EQ, AF_UNIX);
    if (!listed(deny, "socketpair") && allow_rule(ctx, "socketpair", 1, &unix_only, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(personas) / sizeof(personas[0]); i++) {
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_EQ, personas[i]);
        if (!listed(deny, "personality") && allow_rule(ctx, "personality", 1, &c, err) < 0)
            return -1;
    }
    return 0;
}

int sbx_container_allowlist(void *scmp_ctx, char *const *deny, struct gate_error *err)
{
    scmp_filter_ctx ctx = scmp_ctx;
    for (size_t i = 0; allowed[i]; i++)
        if (!listed(deny, allowed[i]) && allow_rule(ctx, allowed[i], 0, NULL, err) < 0) return -1;
    return argument_rules(ctx, deny, err);
}

bool sbx_allowlist_has(const char *name)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(allowed[i], name) == 0) return true;
    return strcmp(name, "ioctl") == 0 || strcmp(name, "socket") == 0 ||
           strcmp(name, "socketpair") == 0 || strcmp(name, "personality") == 0;
}
