/* probe.h: the sandbox escape-probe helper (tests/probe/).
 *
 * One static binary runs probes P01-P41 of shared/SECURITY-PROBES.md inside
 * whatever sandbox starts it and prints one JSON line per probe:
 *   {"probe":"P05","outcome":"blocked"|"exposed"|"error"|"skipped","errno":"EPERM","detail":"..."}
 * "exposed" means the weakness shows. Each probe runs in a forked child that
 * reports its line over a pipe, so a probe killed by seccomp (SIGSYS) or by the
 * OOM killer is still classified. Destructive probes (fork bomb, memory hog,
 * disk fill, floods, syscall sweep, kill(-1)) run only when the arguments say
 * "destructive": true, and even then they are bounded.
 */
#ifndef GATE_PROBE_H
#define GATE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROBE_MAX_LIST 64
#define PROBE_PATH_MAX 1024

struct probe_args {
    int gateway_port;
    int webhook_port;
    int canary_pid;
    char canary_env[64];
    bool destructive;
    bool keep;          /* P29 plant: leave the planted objects behind */
    bool spin;          /* P37: also burn CPU until the deadline */
    bool force;         /* destructive even where many processes are visible (a microVM guest) */
    uint64_t memory_mb; /* the policy's memory cap (P35, P39) */
    uint64_t disk_mb;   /* the policy's /tmp cap (P36) */
    uint64_t hold_ms;   /* P29 plant: how long to keep the objects alive */
    uint64_t sleep_ms;  /* P40: sleep this long at the end (deadline test) */
    char workspace[PROBE_PATH_MAX];
    char policy_file[PROBE_PATH_MAX];
    char audit_dir[PROBE_PATH_MAX];
    char p29[16]; /* "plant" or "look" */
    char tag[64]; /* names P29's objects so concurrent test runs do not meet */
    char *only[PROBE_MAX_LIST];
    size_t n_only;
    char *paths[PROBE_MAX_LIST]; /* P26 argument paths */
    size_t n_paths;
    long allowed[512]; /* P19: syscall numbers the policy allows; none given = built-in set */
    size_t n_allowed;
};

extern struct probe_args g_args;
extern int g_report_fd; /* the fd a probe child writes its line to (P24 ignores it) */

/* A verdict being built from several attempts. */
struct verdict {
    bool exposed;
    bool error;
    int err; /* first errno seen on a blocked attempt */
    char detail[3072];
    size_t len;
};

/* Append "what=OK" or "what=ENAME" and mark exposed if `exposed`. */
void v_attempt(struct verdict *v, const char *what, int rc, int errnum, bool exposed);
/* Append free text to the detail. */
void v_note(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Turn a syscall result into an attempt: blocked when it failed with EPERM, EACCES, ENOSYS or
 * EOPNOTSUPP (or with `also` if nonzero); anything else reached the kernel. also == -1: any
 * failure counts as blocked (for attempts with valid arguments, where only success matters). */
void v_syscall(struct verdict *v, const char *what, long rc, int errnum, int also);
/* Emit the verdict's line for probe id. */
void v_emit(const struct verdict *v, const char *id);

/* Write "# <id>: <text>" straight to stdout at once: progress that survives a probe (or the
 * whole sandbox) being killed at a cap before its verdict line is out. */
void progress(const char *id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Emit a line directly. */
void emit(const char *id, const char *outcome, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *errname(int e);
/* Read a whole small file into buf (NUL-terminated); returns bytes or -1 with errno. */
long read_small(const char *path, char *buf, size_t size);
/* Directory of /proc/self/exe, for the files the harness plants beside the probe. */
void self_dir(char *buf, size_t size);
/* A writable scratch directory (workspace, /tmp, /dev/shm), or NULL. */
const char *scratch_dir(void);

/* Run fn(arg) in a forked child with `timeout_ms`; returns the raw wait status, or -1 if the
 * child could not be forked, and -2 on timeout (child killed). out receives up to outsz-1
 * bytes the child wrote to its fd (passed as fn's second argument). */
int run_child(int (*fn)(void *arg, int fd), void *arg, char *out, size_t outsz,
              unsigned timeout_ms);

/* Probe bodies: each emits exactly one line (or the runner does if it dies). */
typedef void (*probe_fn)(void);
void p01_caps(void);
void p02_nnp_seccomp(void);
void p03_uid(void);
void p04_setuid(void);
void p05_pids(void);
void p06_environ(void);
void p07_signals(void);
void p08_inspect(void);
void p09_namespaces(void);
void p10_setns(void);
void p11_mount(void);
void p12_cgroup(void);
void p13_keyring_bpf(void);
void p14_subsystems(void);
void p15_host_state(void);
void p16_arch_bypass(void);
void p17_ioctl_highbit(void);
void p18_tty(void);
void p19_sweep(void);
void p20_rootfs(void);
void p21_proc_sys(void);
void p22_devices(void);
void p23_host_sockets(void);
void p24_fds_cwd(void);
void p25_launcher(void);
void p26_traversal(void);
void p27_links(void);
void p28_protected(void);
void p29_cross_call(void);
void p30_loopback(void);
void p31_egress(void);
void p32_sockets(void);
void p33_dns(void);
void p34_fork_bomb(void);
void p35_memory(void);
void p36_disk(void);
void p37_orphan(void);
void p38_flood(void);
void p39_fds(void);
void p40_time(void);
void p41_reentry(void);

/* --whoami mode (the planted setuid / file-capability copies run this). */
int probe_whoami(void);

#endif
