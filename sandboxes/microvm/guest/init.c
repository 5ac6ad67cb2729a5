/* init.c: the guest agent, PID 1 of every microVM guest (static, from the initramfs).
 *
 * It boots the guest's userland (proc, a minimal /dev, a cgroup for the tool, the
 * tool's read-only files bound where the host had them), says READY on the
 * virtio-serial port and waits. For the one CALL it receives (../proto.h) it sets
 * the clock and reseeds the RNG (a guest restored from a snapshot has stale ones),
 * mounts fresh scratch tmpfs, starts the tool as an unprivileged uid with no
 * capabilities, no_new_privs and the seccomp allowlist the host compiled, streams
 * stdout/stderr back up to the output cap, reports the exit status and powers the
 * VM off. The guest kernel is the tool's own: this agent is what stands between
 * the tool and the channel to the host, so it never runs anything the host sent
 * as root and never trusts what the tool leaves behind.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../proto.h"

/* Root-only (0700): the full devtmpfs (briefly), the cgroup tree and the tool's files as the
 * image carries them, from where they are bound into place. */
#define PRIVATE_DIR "/.gate"
#define RO_DIR PRIVATE_DIR "/ro"
#define CG_DIR PRIVATE_DIR "/cg"
#define TOOL_CG CG_DIR "/tool"
/* Guest memory the tool's cgroup leaves to the kernel and this agent. */
#define AGENT_RESERVE_KB (6 * 1024)

static int port = -1;
static int sigchld = -1; /* signalfd: a child of ours exited */
static int tool_cg = -1; /* the tool's cgroup directory */

static void log_console(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_console(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof(buf) - 2) n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    (void)!write(2, "gatehouse-init: ", 16);
    (void)!write(2, buf, (size_t)n);
}

/* Leave the VM: the kernel runs with reboot=t and QEMU with -no-reboot, so a reset ends
 * QEMU (a power-off without ACPI would only halt the CPU). */
__attribute__((noreturn)) static void power_off(void)
{
    sync();
    reboot(RB_AUTOBOOT);
    for (;;)
        pause();
}

__attribute__((noreturn)) static void fatal(const char *what, int errnum)
{
    log_console("fatal: %s: %s", what, strerror(errnum));
    power_off();
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static void send_frame(uint32_t type, const void *data, size_t len)
{
    struct mvm_hdr h = {type, (uint32_t)len};
    if (write_all(port, &h, sizeof(h)) < 0 || (len && write_all(port, data, len) < 0))
        fatal("write to the host", errno);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
        log_console("%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
}

/* "key value" from a flat-keyed file (memory.events, /proc/meminfo "Key:   N kB"). */
static unsigned long long read_key(const char *path, const char *key)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    size_t kl = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, key, kl) == 0 && (line[kl] == ' ' || line[kl] == ':'))
            return strtoull(line + kl + 1 + strspn(line + kl + 1, " :"), NULL, 10);
    return 0;
}

/* ---- boot ------------------------------------------------------------------------------ */

static void make_dev(void)
{
    /* A small /dev of our own: the five harmless nodes and the usual links. The devtmpfs,
     * with the host channel and the console, stays out of the tool's sight. */
    if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") <
        0)
        fatal("mount /dev", errno);
    static const struct {
        const char *name;
        unsigned minor;
    } nodes[] = {{"null", 3}, {"zero", 5}, {"full", 7}, {"random", 8}, {"urandom", 9}};
    char path[32];
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        snprintf(path, sizeof(path), "/dev/%s", nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(1, nodes[i].minor)) < 0) fatal(path, errno);
        chmod(path, 0666); /* umask */
    }
    static const char *const links[] = {"fd",     "/proc/self/fd",   "stdin",  "/proc/self/fd/0",
                                        "stdout", "/proc/self/fd/1", "stderr", "/proc/self/fd/2"};
    for (size_t i = 0; i < 8; i += 2) {
        snprintf(path, sizeof(path), "/dev/%s", links[i]);
        if (symlink(links[i + 1], path) < 0) fatal(path, errno);
    }
    if (mkdir("/dev/shm", 01777) < 0) fatal("mkdir /dev/shm", errno);
    if (mount(NULL, "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
              "size=64k,nr_inodes=64,mode=0755") < 0)
        fatal("remount /dev read-only", errno);
}

static void open_port(void)
{
    if (mkdir(PRIVATE_DIR "/dev", 0700) < 0 && errno != EEXIST) fatal("mkdir", errno);
    if (mount("devtmpfs", PRIVATE_DIR "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL) < 0)
        fatal("mount devtmpfs", errno);
    /* The first (and only) virtio-serial port of the first controller. */
    port = open(PRIVATE_DIR "/dev/vport0p1", O_RDWR | O_CLOEXEC);
    if (port < 0) fatal("open the virtio-serial port", errno);
    if (umount2(PRIVATE_DIR "/dev", MNT_DETACH) < 0) fatal("umount devtmpfs", errno);
}

static void mask_proc(void)
{
    /* The OCI runtime's masked paths: files that leak kernel state to an unprivileged reader. */
    static const char *const masked[] = {"/proc/kcore",         "/proc/keys",
                                         "/proc/timer_list",    "/proc/sched_debug",
                                         "/proc/latency_stats", "/proc/timer_stats"};
    for (size_t i = 0; i < sizeof(masked) / sizeof(masked[0]); i++)
        if (access(masked[i], F_OK) == 0 && mount("/dev/null", masked[i], NULL, MS_BIND, NULL) < 0)
            fatal(masked[i], errno);
}

static void sysctls(void)
{
    static const char *const kv[] = {
        "/proc/sys/fs/protected_hardlinks", "1", "/proc/sys/fs/protected_symlinks", "1",
        "/proc/sys/kernel/kptr_restrict", "2", "/proc/sys/kernel/dmesg_restrict", "1",
        /* An oops leaves a guest half-dead: panic instead, so the VM ends and the host says why. */
        "/proc/sys/kernel/panic_on_oops", "1"};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i += 2)
        if (access(kv[i], F_OK) == 0) write_file(kv[i], kv[i + 1]);
}

/* Give interface `name` address addr/mask and bring it up. */
static int iface_up(int s, const char *name, in_addr_t addr, in_addr_t mask)
{
    struct ifreq r;
    memset(&r, 0, sizeof(r));
    snprintf(r.ifr_name, sizeof(r.ifr_name), "%s", name);
    struct sockaddr_in *in = (struct sockaddr_in *)&r.ifr_addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = addr;
    if (ioctl(s, SIOCSIFADDR, &r) < 0) return -1;
    in->sin_addr.s_addr = mask;
    if (ioctl(s, SIOCSIFNETMASK, &r) < 0 || ioctl(s, SIOCGIFFLAGS, &r) < 0) return -1;
    r.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &r);
}

/* Loopback up; and, where the host gave the guest a NIC (network.egress), the address QEMU's
 * user-mode stack expects (10.0.2.15/24, its gateway 10.0.2.2). What the NIC can reach is
 * decided on the host, by the filter on QEMU's own sockets, not here. */
static void network(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    if (iface_up(s, "lo", htonl(INADDR_LOOPBACK), htonl(0xff000000)) < 0)
        log_console("lo: %s", strerror(errno));
    struct ifreq probe;
    memset(&probe, 0, sizeof(probe));
    snprintf(probe.ifr_name, sizeof(probe.ifr_name), "eth0");
    if (ioctl(s, SIOCGIFINDEX, &probe) == 0) {
        struct rtentry rt;
        memset(&rt, 0, sizeof(rt));
        struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;
        gw->sin_family = AF_INET;
        gw->sin_addr.s_addr = inet_addr("10.0.2.2");
        ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
        ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (iface_up(s, "eth0", inet_addr("10.0.2.15"), inet_addr("255.255.255.0")) < 0 ||
            ioctl(s, SIOCADDRT, &rt) < 0)
            fatal("eth0", errno);
    }
    close(s);
}

static void make_cgroup(void)
{
    if (mkdir(CG_DIR, 0700) < 0 && errno != EEXIST) fatal("mkdir " CG_DIR, errno);
    if (mount("cgroup2", CG_DIR, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fatal("mount cgroup2", errno);
    write_file(CG_DIR "/cgroup.subtree_control", "+memory +pids");
    if (mkdir(TOOL_CG, 0755) < 0) fatal("mkdir " TOOL_CG, errno);
    if ((tool_cg = open(TOOL_CG, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) fatal(TOOL_CG, errno);
}

/* Bind dst to src read-only (nosuid, nodev). */
static int bind_ro(const char *src, const char *dst)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    return mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}

static bool empty_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return true;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n == 0;
}

/* The tool's files sit under RO_DIR at their host paths. Bind RO_DIR/<rel>'s entries at
 * /<rel>/...: an entry the guest's root does not have is bound whole, read-only; a directory
 * it already has with content of its own (/etc) is merged entry by entry. The scratch
 * mounts are fresh per call: their part of the tree is bound after them (rel "tmp"). */
static void bind_tree(const char *rel)
{
    char from[PATH_MAX], to[PATH_MAX], child[PATH_MAX];
    snprintf(from, sizeof(from), RO_DIR "/%.3800s", rel);
    DIR *d = opendir(from);
    if (!d) return; /* nothing of the tool's lives there */
    for (struct dirent *e; (e = readdir(d));) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
        if (!*rel && (!strcmp(n, "tmp") || !strcmp(n, "workspace") || !strcmp(n, "dev") ||
                      !strcmp(n, "proc")))
            continue;
        if (snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", n) >= 3800) continue;
        snprintf(from, sizeof(from), RO_DIR "/%.3800s", child);
        snprintf(to, sizeof(to), "/%.3800s", child);
        struct stat st, have;
        if (lstat(from, &st) < 0) continue;
        bool exists = lstat(to, &have) == 0;
        if (S_ISDIR(st.st_mode) && exists && S_ISDIR(have.st_mode) && !empty_dir(to)) {
            bind_tree(child);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (!exists && mkdir(to, 0755) < 0) fatal(to, errno);
        } else if (S_ISREG(st.st_mode)) {
            int fd = exists ? -2 : open(to, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
            if (fd == -1) fatal(to, errno);
            if (fd >= 0) close(fd);
        } else {
            continue; /* links live inside the bound directories */
        }
        if (bind_ro(from, to) < 0) fatal(to, errno);
    }
    closedir(d);
}

static void boot(void)
{
    umask(022);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible") < 0)
        fatal("mount /proc", errno);
    /* The initramfs root is a tmpfs whose root directory is world-writable (1777). */
    if (chmod("/", 0755) < 0) fatal("chmod /", errno);
    if (mkdir(PRIVATE_DIR, 0700) < 0 && errno != EEXIST) fatal("mkdir " PRIVATE_DIR, errno);
    chmod(PRIVATE_DIR, 0700);
    open_port();
    make_dev();
    mask_proc();
    sysctls();
    network();
    make_cgroup();
    bind_tree("");
    signal(SIGPIPE, SIG_IGN);
    /* Child exits wake the relay's poll (the tool's child unblocks SIGCHLD again). */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    if ((sigchld = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) fatal("signalfd", errno);
}

/* ---- one call ------------------------------------------------------------------------------ */

struct call {
    struct mvm_call c;
    struct sock_fprog seccomp;
    char **argv, **env;
    const char *input;
};

/* Split the CALL payload; every length was checked against len. */
static int parse_call(char *buf, size_t len, struct call *out)
{
    if (len < sizeof(out->c)) return -1;
    memcpy(&out->c, buf, sizeof(out->c));
    const struct mvm_call *c = &out->c;
    size_t off = sizeof(*c);
    if (c->seccomp_len % sizeof(struct sock_filter) || c->seccomp_len > len - off ||
        c->seccomp_len / sizeof(struct sock_filter) > 4096 || c->argc == 0 || c->argc > 4096 ||
        c->envc > 4096 || c->input_len > len - off - c->seccomp_len)
        return -1;
    out->seccomp.len = (unsigned short)(c->seccomp_len / sizeof(struct sock_filter));
    out->seccomp.filter = (struct sock_filter *)(void *)(buf + off);
    off += c->seccomp_len;
    size_t strings_end = len - c->input_len;
    out->argv = calloc(c->argc + 1, sizeof(char *));
    out->env = calloc(c->envc + 1, sizeof(char *));
    if (!out->argv || !out->env) return -1;
    for (uint32_t i = 0; i < c->argc + c->envc; i++) {
        char *s = buf + off;
        char *nul = memchr(s, '\0', strings_end - off);
        if (off >= strings_end || !nul) return -1;
        if (i < c->argc)
            out->argv[i] = s;
        else
            out->env[i - c->argc] = s;
        off = (size_t)(nul - buf) + 1;
    }
    if (off != strings_end) return -1;
    out->input = buf + off;
    return 0;
}

/* A restored guest's clock and entropy pool are the snapshot's: take the host's. */
static void refresh(const struct mvm_call *c)
{
    struct timespec ts = {(time_t)(c->realtime_ns / 1000000000ull),
                          (long)(c->realtime_ns % 1000000000ull)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) log_console("clock_settime: %s", strerror(errno));
    struct {
        struct rand_pool_info info;
        uint8_t bytes[sizeof(c->seed)];
    } seed;
    seed.info.entropy_count = (int)sizeof(c->seed) * 8;
    seed.info.buf_size = (int)sizeof(c->seed);
    memcpy(seed.bytes, c->seed, sizeof(c->seed));
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &seed) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
        fatal("reseed the RNG", errno);
    close(fd);
}

static void scratch_mounts(const struct mvm_call *c)
{
    unsigned long flags = MS_NOSUID | MS_NODEV;
    if (!(c->flags & MVM_CALL_EXEC_SCRATCH)) flags |= MS_NOEXEC;
    char opts[128];
    /* Inode caps scale with size, as in the container tier. */
    snprintf(opts, sizeof(opts), "size=%um,nr_inodes=%llu,mode=1777", c->disk_mb,
             (unsigned long long)c->disk_mb * 256 + 64);
    if (mount("tmpfs", "/tmp", "tmpfs", flags, opts) < 0) fatal("mount /tmp", errno);
    if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        fatal("mount /dev/shm", errno);
    bind_tree("tmp");
    if (c->workspace_mb) {
        snprintf(opts, sizeof(opts), "size=%um,nr_inodes=%llu,mode=0755,uid=%u,gid=%u",
                 c->workspace_mb, (unsigned long long)c->workspace_mb * 256 + 64, c->uid, c->gid);
        if (mkdir("/workspace", 0755) < 0 && errno != EEXIST) fatal("mkdir /workspace", errno);
        if (mount("tmpfs", "/workspace", "tmpfs", flags, opts) < 0)
            fatal("mount /workspace", errno);
    }
}

static void tool_limits(const struct mvm_call *c)
{
    char v[64];
    /* Whatever the kernel and this agent use now stays theirs; the tool gets the rest. */
    unsigned long long avail = read_key("/proc/meminfo", "MemAvailable");
    unsigned long long max_kb = avail > 2 * AGENT_RESERVE_KB ? avail - AGENT_RESERVE_KB : avail / 2;
    snprintf(v, sizeof(v), "%llu", max_kb * 1024);
    write_file(TOOL_CG "/memory.max", v);
    snprintf(v, sizeof(v), "%u", c->pids);
    write_file(TOOL_CG "/pids.max", v);
}

__attribute__((noreturn)) static void child_fail(int fd, const char *step)
{
    char msg[MVM_FAIL_MAX];
    int n = snprintf(msg, sizeof(msg), "%s: %s", step, strerrorname_np(errno) ?: "error");
    (void)!write(fd, msg, n > 0 ? (size_t)n : 0);
    _exit(127);
}

static void set_limit(int fd, int resource, rlim_t value)
{
    struct rlimit rl = {value, value};
    if (setrlimit(resource, &rl) < 0) child_fail(fd, "setrlimit");
}

/* The ELF interpreter argv[0] names (PT_INTERP), into buf; false for a static program or a
 * script. Read from the guest's own copy of the file. */
static bool elf_interp(const char *path, char *buf, size_t len)
{
    char head[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, head, sizeof(head)) : -1;
    if (fd >= 0) close(fd);
    const Elf64_Ehdr *eh = (const void *)head;
    if (n < (ssize_t)sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phoff > (uint64_t)n || eh->e_phnum > ((uint64_t)n - eh->e_phoff) / sizeof(Elf64_Phdr))
        return false;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const void *)(head + eh->e_phoff + i * sizeof(Elf64_Phdr));
        if (ph->p_type != PT_INTERP) continue;
        int fd2 = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t got = ph->p_filesz < len && fd2 >= 0
                          ? pread(fd2, buf, ph->p_filesz, (off_t)ph->p_offset)
                          : -1;
        if (fd2 >= 0) close(fd2);
        if (got <= 0 || got != (ssize_t)ph->p_filesz) return false;
        buf[got] = '\0';
        return buf[0] == '/';
    }
    return false;
}

/* In the forked child: confine, then exec the tool. Setup errors go to report (CLOEXEC).
 * Rehearsing, the last step execs the tool's ELF interpreter in --list mode instead: it maps
 * the tool and its libraries and exits; no code of the tool runs. */
__attribute__((noreturn)) static void tool_child(const struct call *k, int in, int out, int err,
                                                 int report, bool rehearse)
{
    const struct mvm_call *c = &k->c;
    if (setsid() < 0) child_fail(report, "setsid");
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) child_fail(report, "dup2");
    if (report != 3 && (dup3(report, 3, O_CLOEXEC) < 0 || close(report) < 0))
        child_fail(report, "dup3");
    report = 3;
    syscall(SYS_close_range, 4U, ~0U, 0U);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Every capability goes, the bounding set first (dropping it needs CAP_SETPCAP); the uid
     * change below clears the rest. */
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            child_fail(report, "drop capabilities");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail(report, "clear ambient capabilities");
    if (setgroups(0, NULL) < 0) child_fail(report, "setgroups");
    if (setresgid(c->gid, c->gid, c->gid) < 0) child_fail(report, "setresgid");
    if (setresuid(c->uid, c->uid, c->uid) < 0) child_fail(report, "setresuid");
    set_limit(report, RLIMIT_CORE, 0);
    set_limit(report, RLIMIT_CPU, (rlim_t)c->cpu_time_s);
    set_limit(report, RLIMIT_FSIZE, (rlim_t)c->file_size_bytes);
    set_limit(report, RLIMIT_NOFILE, 1024);
    if (chdir(c->workspace_mb ? "/workspace" : "/tmp") < 0) child_fail(report, "chdir");
    /* no_new_privs, then the filter the host compiled at policy load: the last thing before
     * execve, which the filter allows. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail(report, "no_new_privs");
    if (k->seccomp.len && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &k->seccomp) < 0)
        child_fail(report, "seccomp");
    if (rehearse) {
        /* Only glibc's own loader: an interpreter the tool names elsewhere is the tool's code,
         * and none of that runs before its call. */
        char interp[PATH_MAX];
        if (!elf_interp(k->argv[0], interp, sizeof(interp)) ||
            (strcmp(interp, "/lib64/ld-linux-x86-64.so.2") != 0 &&
             strcmp(interp, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") != 0))
            _exit(0);
        char *argv[] = {interp, "--list", k->argv[0], NULL};
        execve(interp, argv, k->env);
        _exit(0);
    }
    execve(k->argv[0], k->argv, k->env);
    child_fail(report, "execve");
}

/* The tool's stdio, relayed to the host: OUT/ERR frames up to the cap, stdin from the call. */
struct relay {
    int fd[2];      /* stdout, stderr read ends; -1 once at EOF */
    int in;         /* stdin write end; -1 once everything was written */
    size_t in_off;  /* stdin bytes written */
    uint64_t sent;  /* output bytes sent */
    bool truncated; /* the cap was reached */
    bool discard;   /* a rehearsal: nothing goes to the host */
};

static void kill_tool(void)
{
    write_file(TOOL_CG "/cgroup.kill", "1");
}

/* Read one chunk of a stream. Returns false once it is at EOF. */
static bool relay_stream(struct relay *r, int i, uint64_t cap)
{
    static char buf[MVM_DATA_MAX];
    ssize_t n = read(r->fd[i], buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    size_t keep = (size_t)n;
    if (r->sent + keep > cap) {
        keep = (size_t)(cap - r->sent);
        if (!r->truncated) kill_tool();
        r->truncated = true;
    }
    if (keep && !r->discard) send_frame(i == 0 ? MVM_OUT : MVM_ERR, buf, keep);
    r->sent += keep;
    return true;
}

/* Relay until the tool has exited and both streams are at EOF (every writer gone). */
static int relay_until_exit(const struct call *k, struct relay *r, pid_t tool)
{
    int status = 0;
    bool exited = false;
    while (!exited || r->fd[0] >= 0 || r->fd[1] >= 0) {
        struct pollfd p[4] = {{r->fd[0], POLLIN, 0},
                              {r->fd[1], POLLIN, 0},
                              {r->in, POLLOUT, 0},
                              {sigchld, POLLIN, 0}};
        if (poll(p, 4, -1) < 0 && errno != EINTR) fatal("poll", errno);
        if (p[3].revents) {
            struct signalfd_siginfo si;
            while (read(sigchld, &si, sizeof(si)) > 0)
                ;
        }
        for (int i = 0; i < 2; i++)
            if (r->fd[i] >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                !relay_stream(r, i, k->c.output_bytes)) {
                close(r->fd[i]);
                r->fd[i] = -1;
            }
        if (r->in >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(r->in, k->input + r->in_off, k->c.input_len - r->in_off);
            if (w > 0) r->in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || r->in_off == k->c.input_len) {
                close(r->in);
                r->in = -1;
            }
        }
        /* Reap everything (orphans are ours as PID 1); the call ends with the tool. */
        for (int st; !exited;) {
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w <= 0) break;
            if (w == tool) {
                status = st;
                exited = true;
                kill_tool(); /* what the tool left running ends with it, as in the container */
            }
        }
        if (exited)
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
    }
    return status;
}

/* Run the call's command (or rehearse it) to its end, into x. Returns false with the child's
 * report in fail when it never started. */
static bool run_tool(const struct call *k, bool rehearse, struct mvm_exit *x, char *fail,
                     size_t *fail_len)
{
    refresh(&k->c);
    scratch_mounts(&k->c);
    tool_limits(&k->c);
    int in[2], out[2], err[2], report[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(report, O_CLOEXEC) < 0)
        fatal("pipe2", errno);
    /* OOM kills in the tool's cgroup, and guest-wide ones (the kernel's own needs can make the
     * whole guest run short before the cgroup's cap is reached: the tool is then the victim). */
    unsigned long long oom_before =
        read_key(TOOL_CG "/memory.events", "oom_kill") + read_key("/proc/vmstat", "oom_kill");
    unsigned long long pids_before = read_key(TOOL_CG "/pids.events", "max");
    /* Born inside the tool's cgroup (clone3 CLONE_INTO_CGROUP): moving a running process
     * there would wait for an RCU grace period, ~10 ms of a call here. */
    struct clone_args ca = {
        .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)tool_cg};
    pid_t tool = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (tool < 0) fatal("clone3", errno);
    if (tool == 0) tool_child(k, in[0], out[1], err[1], report[1], rehearse);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(report[1]);
    ssize_t n = read(report[0], fail, MVM_FAIL_MAX);
    close(report[0]);
    if (n > 0) { /* the tool never started */
        waitpid(tool, NULL, 0);
        close(in[1]);
        close(out[0]);
        close(err[0]);
        *fail_len = (size_t)n;
        return false;
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    struct relay r = {{out[0], err[0]}, in[1], 0, 0, false, rehearse};
    if (k->c.input_len == 0) {
        close(r.in);
        r.in = -1;
    }
    x->wait_status = relay_until_exit(k, &r, tool);
    x->flags = 0;
    if (r.in >= 0) close(r.in);
    if (read_key(TOOL_CG "/memory.events", "oom_kill") + read_key("/proc/vmstat", "oom_kill") >
        oom_before)
        x->flags |= MVM_EXIT_OOM;
    if (read_key(TOOL_CG "/pids.events", "max") > pids_before) x->flags |= MVM_EXIT_PIDS;
    if (r.truncated) x->flags |= MVM_EXIT_TRUNCATED;
    return true;
}

static struct call read_call(char *buf, size_t len)
{
    struct call k = {0};
    if (parse_call(buf, len, &k) < 0) fatal("malformed call", EINVAL);
    return k;
}

/* A rehearsal (proto.h: a PING carrying a call) walks the call's whole path once and undoes it:
 * a guest restored from a snapshot starts with QEMU's code cache empty under TCG, and this
 * fills it with the kernel and agent paths the real call takes, before the call waits on it. */
static void rehearse(char *buf, size_t len)
{
    struct call k = read_call(buf, len);
    struct mvm_exit x;
    char fail[MVM_FAIL_MAX];
    size_t fail_len = 0;
    run_tool(&k, true, &x, fail, &fail_len);
    static const char *const scratch[] = {"/tmp", "/dev/shm", "/workspace"};
    for (size_t i = 0; i < 3; i++)
        if (umount2(scratch[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
            fatal(scratch[i], errno);
    free(k.argv);
    free(k.env);
}

static void run_call(char *buf, size_t len)
{
    struct call k = read_call(buf, len);
    struct mvm_exit x;
    char fail[MVM_FAIL_MAX];
    size_t fail_len = 0;
    if (run_tool(&k, false, &x, fail, &fail_len))
        send_frame(MVM_EXIT, &x, sizeof(x));
    else
        send_frame(MVM_FAIL, fail, fail_len);
}

int main(void)
{
    if (getpid() != 1) {
        fprintf(stderr, "gatehouse-init runs as PID 1 of a microVM guest\n");
        return 1;
    }
    boot();
    send_frame(MVM_READY, NULL, 0);
    for (;;) {
        struct mvm_hdr h;
        if (read_full(port, &h, sizeof(h)) < 0) power_off(); /* the host went away */
        if ((h.type != MVM_CALL && h.type != MVM_PING) || h.len > MVM_CALL_MAX)
            fatal("unexpected frame", EPROTO);
        char *buf = malloc(h.len ? h.len : 1);
        if (!buf) fatal("malloc", ENOMEM);
        if (read_full(port, buf, h.len) < 0) fatal("read a frame", errno ? errno : EPIPE);
        if (h.type == MVM_PING) {
            if (h.len) rehearse(buf, h.len);
            free(buf);
            send_frame(MVM_PONG, NULL, 0);
            continue;
        }
        run_call(buf, h.len);
        /* A write to the port returns once the data is queued to QEMU, not once QEMU has
         * passed it on (it holds it while the host's pipe is full): powering off now could
         * lose the end of the output and the EXIT frame. The host stops the VM once it has
         * read EXIT; should it close the channel instead, power off then. */
        char c;
        while (read(port, &c, 1) > 0)
            ;
        power_off();
    }
}
