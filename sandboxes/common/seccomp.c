/* seccomp.c: compile seccomp profiles once (at policy load) and install them in a child.
 *
 * Both profiles share: only the native x86-64 ABI (i386 `int 0x80` and x32 calls hit the
 * bad-arch action and kill the process), clone3 answering ENOSYS so libc falls back to clone,
 * and clone refused whenever it asks for a new namespace.
 */
#include <errno.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sbx_internal.h"

/* What Docker's default profile refuses, plus setsid/setpgid for the process tier: the tool
 * starts as the leader of its own session and process group, and must not leave that group,
 * because killing the group is how the process tier guarantees that nothing outlives a call. */
static const char *const denylist[] = {"acct",
                                       "add_key",
                                       "adjtimex",
                                       "bpf",
                                       "clock_adjtime",
                                       "clock_settime",
                                       "create_module",
                                       "delete_module",
                                       "finit_module",
                                       "fanotify_init",
                                       "fsconfig",
                                       "fsmount",
                                       "fsopen",
                                       "fspick",
                                       "get_kernel_syms",
                                       "get_mempolicy",
                                       "init_module",
                                       "io_uring_enter",
                                       "io_uring_register",
                                       "io_uring_setup",
                                       "ioperm",
                                       "iopl",
                                       "kcmp",
                                       "kexec_file_load",
                                       "kexec_load",
                                       "keyctl",
                                       "lookup_dcookie",
                                       "mbind",
                                       "mount",
                                       "mount_setattr",
                                       "move_mount",
                                       "move_pages",
                                       "name_to_handle_at",
                                       "nfsservctl",
                                       "open_by_handle_at",
                                       "open_tree",
                                       "perf_event_open",
                                       "pidfd_getfd",
                                       "pivot_root",
                                       "process_madvise",
                                       "process_vm_readv",
                                       "process_vm_writev",
                                       "ptrace",
                                       "query_module",
                                       "quotactl",
                                       "quotactl_fd",
                                       "reboot",
                                       "request_key",
                                       "set_mempolicy",
                                       "setns",
                                       "settimeofday",
                                       "stime",
                                       "swapoff",
                                       "swapon",
                                       "sysfs",
                                       "_sysctl",
                                       "syslog",
                                       "umount",
                                       "umount2",
                                       "unshare",
                                       "uselib",
                                       "userfaultfd",
                                       "ustat",
                                       "vm86",
                                       "vm86old",
                                       "chroot",
                                       "setsid",
                                       "setpgid",
                                       "landlock_create_ruleset",
                                       NULL};

static const unsigned long long ns_flags[] = {CLONE_NEWUSER,   CLONE_NEWNS,  CLONE_NEWPID,
                                              CLONE_NEWNET,    CLONE_NEWIPC, CLONE_NEWUTS,
                                              CLONE_NEWCGROUP, CLONE_NEWTIME};

/* personality() bits that weaken the address space (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE,
 * MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT); Docker allows only a few harmless personas. */
static const unsigned long long bad_personality[] = {0x0400000, 0x0040000, 0x0100000, 0x0200000};

static bool listed(char *const *names, const char *name)
{
    for (size_t i = 0; names && names[i]; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
               const struct scmp_arg_cmp *cmp, struct gate_error *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0; /* not a syscall on this architecture: nothing to refuse */
    int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    if (rc < 0) return gate_err_errno(err, GATE_E_SANDBOX, -rc, "seccomp rule for %s", name);
    return 0;
}

static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *prog, struct gate_error *err)
{
    autoclose int fd = memfd_create("gatehouse-seccomp", MFD_CLOEXEC);
    if (fd < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "memfd_create");
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) return gate_err_errno(err, GATE_E_SANDBOX, -rc, "seccomp_export_bpf");
    off_t size = lseek(fd, 0, SEEK_END);
    /* The kernel refuses programs over BPF_MAXINSNS; refuse them here, at policy load. */
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        size > (off_t)(BPF_MAXINSNS * sizeof(struct sock_filter)))
        return gate_err(err, GATE_E_SANDBOX, "seccomp program has a bad size (%lld bytes)",
                        (long long)size);
    struct sock_filter *insns = malloc((size_t)size);
    if (!insns) return gate_err(err, GATE_E_NOMEM, "seccomp program: out of memory");
    if (pread(fd, insns, (size_t)size, 0) != size) {
        free(insns);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "reading the seccomp program");
    }
    prog->filter = insns;
    prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    return 0;
}

static int shared_rules(scmp_filter_ctx ctx, enum sbx_seccomp_profile profile,
                        struct gate_error *err)
{
    if (add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0) return -1;
    if (profile == SBX_SECCOMP_ALLOWLIST) {
        unsigned long long mask = 0;
        for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
            mask |= ns_flags[i];
        struct scmp_arg_cmp no_ns = SCMP_A0(SCMP_CMP_MASKED_EQ, mask, 0);
        return add(ctx, SCMP_ACT_ALLOW, "clone", 1, &no_ns, err);
    }
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
        struct scmp_arg_cmp has = SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
        if (add(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &has, err) < 0) return -1;
    }
    for (size_t i = 0; i < sizeof(bad_personality) / sizeof(bad_personality[0]); i++) {
        struct scmp_arg_cmp has =
            SCMP_A0(SCMP_CMP_MASKED_EQ, bad_personality[i], bad_personality[i]);
        if (add(ctx, SCMP_ACT_ERRNO(EPERM), "personality", 1, &has, err) < 0) return -1;
    }
    return 0;
}

/* setsid answers EPERM unless all six argument registers hold the cookie: one rule per
 * register, each refusing when that register differs (the default action allows). */
static int setsid_unless_cookie(scmp_filter_ctx ctx, const uint64_t *cookie, struct gate_error *err)
{
    for (unsigned i = 0; i < 6; i++) {
        struct scmp_arg_cmp differs = {i, SCMP_CMP_NE, cookie[i], 0};
        if (add(ctx, SCMP_ACT_ERRNO(EPERM), "setsid", 1, &differs, err) < 0) return -1;
    }
    return 0;
}

/* With a cookie, setsid gets the cookie rules above and never a plain EPERM rule, which
 * would refuse it whatever its registers hold. */
static bool plain_deny(const uint64_t *setsid_cookie, const char *name)
{
    return !(setsid_cookie && strcmp(name, "setsid") == 0);
}

int sbx_seccomp_compile(enum sbx_seccomp_profile profile, char *const *allow, char *const *deny,
                        const uint64_t *setsid_cookie, struct sock_fprog *prog,
                        struct gate_error *err)
{
    uint32_t def = profile == SBX_SECCOMP_DENYLIST ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EPERM);
    scmp_filter_ctx ctx = seccomp_init(def);
    if (!ctx) return gate_err(err, GATE_E_SANDBOX, "seccomp_init failed");
    int rc = -1;
    /* A call through a foreign ABI (i386 int 0x80, x32) is an attack, not a mistake: kill. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0) {
        gate_err(err, GATE_E_SANDBOX, "seccomp: cannot set the bad-arch action");
        goto out;
    }
    /* A binary tree of syscall numbers instead of a chain of comparisons. Installing a filter
     * makes the kernel run it for every syscall number to build its action cache, under a
     * lock with interrupts off: with the chain that cost ~0.15 ms per spawn, the tree ~0.05.
     * Optional: an older libseccomp without the attribute just keeps the chain. */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (profile == SBX_SECCOMP_ALLOWLIST) {
        if (sbx_container_allowlist(ctx, deny, err) < 0) goto out;
        for (size_t i = 0; allow && allow[i]; i++)
            if (!listed(deny, allow[i]) && add(ctx, SCMP_ACT_ALLOW, allow[i], 0, NULL, err) < 0)
                goto out;
    } else {
        for (size_t i = 0; denylist[i]; i++)
            if (!listed(allow, denylist[i]) && plain_deny(setsid_cookie, denylist[i]) &&
                add(ctx, SCMP_ACT_ERRNO(EPERM), denylist[i], 0, NULL, err) < 0)
                goto out;
        if (setsid_cookie && setsid_unless_cookie(ctx, setsid_cookie, err) < 0) goto out;
    }
    /* In the allowlist profile a denied name was left out of the allowlist above and falls to
     * the default action, EPERM (libseccomp refuses a rule equal to the default). */
    for (size_t i = 0; profile == SBX_SECCOMP_DENYLIST && deny && deny[i]; i++)
        if (plain_deny(setsid_cookie, deny[i]) &&
            add(ctx, SCMP_ACT_ERRNO(EPERM), deny[i], 0, NULL, err) < 0)
            goto out;
    if (shared_rules(ctx, profile, err) < 0) goto out;
    rc = export_bpf(ctx, prog, err);
out:
    seccomp_release(ctx);
    return rc;
}

int sbx_seccomp_install(const struct sock_fprog *prog)
{
    /* no_new_privs first: it is what allows an unprivileged process to load a filter, and it
     * stops setuid binaries from regaining privileges the filter's owner never had. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog);
}
