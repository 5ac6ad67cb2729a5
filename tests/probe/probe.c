/* probe.c: entry point of the escape-probe helper: read the arguments JSON on
 * stdin, run each selected probe in a forked child, forward its JSON line.
 *
 * The argument scanner is deliberately tiny (keys are looked up by name, values
 * are numbers, booleans, strings or flat arrays): this is a test helper that
 * reads what our own harness writes, not a general JSON parser.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

struct probe_args g_args;
int g_report_fd = 1;

/* ---- output ------------------------------------------------------------------ */

const char *errname(int e)
{
    if (e == 0) return "";
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* Escape into out: quotes, backslashes and control bytes; bytes >= 0x80 become '?' so the
 * line is always valid UTF-8 whatever a probe read from the sandbox. */
static size_t json_escape(char *out, size_t size, const char *in)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 8 < size; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", *p);
        } else {
            out[o++] = *p >= 0x80 ? '?' : (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        buf += n;
        len -= (size_t)n;
    }
}

static void emit_line(const char *id, const char *outcome, int errnum, const char *detail)
{
    char esc[8192];
    char line[8600];
    json_escape(esc, sizeof(esc), detail);
    int n = snprintf(line, sizeof(line),
                     "{\"probe\":\"%s\",\"outcome\":\"%s\",\"errno\":\"%s\",\"detail\":\"%s\"}\n",
                     id, outcome, errname(errnum), esc);
    if (n > 0)
        write_all(g_report_fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void emit(const char *id, const char *outcome, int errnum, const char *fmt, ...)
{
    char detail[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    emit_line(id, outcome, errnum, detail);
}

void progress(const char *id, const char *fmt, ...)
{
    char text[1024], line[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof(line), "# %s: %s\n", id, text);
    if (n > 0) write_all(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void v_note(struct verdict *v, const char *fmt, ...)
{
    if (v->len >= sizeof(v->detail) - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(v->detail + v->len, sizeof(v->detail) - v->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        v->len +=
            (size_t)n < sizeof(v->detail) - v->len ? (size_t)n : sizeof(v->detail) - v->len - 1;
}

void v_attempt(struct verdict *v, const char *what, int rc, int errnum, bool exposed)
{
    v_note(v, "%s%s=%s", v->len ? " " : "", what, rc >= 0 ? "OK" : errname(errnum));
    if (exposed)
        v->exposed = true;
    else if (rc < 0 && v->err == 0)
        v->err = errnum;
}

void v_syscall(struct verdict *v, const char *what, long rc, int errnum, int also)
{
    bool blocked =
        rc < 0 && (also == -1 || errnum == EPERM || errnum == EACCES || errnum == ENOSYS ||
                   errnum == EOPNOTSUPP || (also != 0 && errnum == also));
    v_attempt(v, what, rc < 0 ? -1 : 0, errnum, !blocked);
}

void v_emit(const struct verdict *v, const char *id)
{
    const char *outcome = v->exposed ? "exposed" : v->error ? "error" : "blocked";
    emit_line(id, outcome, v->err, v->detail);
}

/* ---- small helpers shared by the probes ------------------------------------------ */

long read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off + 1 < size) {
        ssize_t n = read(fd, buf + off, size - 1 - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0) break;
        off += (size_t)n;
    }
    buf[off] = '\0';
    close(fd);
    return (long)off;
}

void self_dir(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        snprintf(buf, size, ".");
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash && slash != buf)
        *slash = '\0';
    else if (slash)
        slash[1] = '\0';
}

const char *scratch_dir(void)
{
    static const char *const candidates[] = {"/tmp", "/dev/shm", "/var/tmp"};
    if (g_args.workspace[0] && access(g_args.workspace, W_OK) == 0) return g_args.workspace;
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], W_OK) == 0) return candidates[i];
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int run_child(int (*fn)(void *arg, int fd), void *arg, char *out, size_t outsz, unsigned timeout_ms)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        _exit(fn(arg, p[1]) & 0xff);
    }
    close(p[1]);
    size_t off = 0;
    uint64_t deadline = now_ms() + timeout_ms;
    bool timed_out = false;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        int r = poll(&pfd, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t keep = (size_t)n;
        if (outsz > 0 && off + keep > outsz - 1) keep = outsz - 1 - off;
        if (keep > 0) {
            memcpy(out + off, tmp, keep);
            off += keep;
        }
    }
    close(p[0]);
    if (outsz > 0) out[off] = '\0';
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return timed_out ? -2 : status;
}

/* ---- the argument scanner ------------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
    while (*p && isspace((unsigned char)*p))
        p++;
    return p;
}

/* The value after "key": in json, or NULL. */
static const char *find_key(const char *json, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    for (const char *p = strstr(json, pat); p; p = strstr(p + 1, pat)) {
        const char *q = skip_ws(p + strlen(pat));
        if (*q == ':') return skip_ws(q + 1);
    }
    return NULL;
}

/* Parse a JSON string at p into out; returns the position after it or NULL. */
static const char *scan_string(const char *p, char *out, size_t size)
{
    if (*p != '"') return NULL;
    size_t o = 0;
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && p[1]) {
            p++;
            switch (*p) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                char hex[5] = {0};
                for (int i = 0; i < 4 && p[1]; i++)
                    hex[i] = *++p;
                c = (char)strtol(hex, NULL, 16);
                break;
            }
            default:
                c = *p;
                break;
            }
        }
        if (o + 1 < size) out[o++] = c;
    }
    out[o] = '\0';
    return *p == '"' ? p + 1 : NULL;
}

static long long get_int(const char *json, const char *key, long long dflt)
{
    const char *v = find_key(json, key);
    return v && (isdigit((unsigned char)*v) || *v == '-') ? strtoll(v, NULL, 10) : dflt;
}

static bool get_bool(const char *json, const char *key, bool dflt)
{
    const char *v = find_key(json, key);
    if (v && strncmp(v, "true", 4) == 0) return true;
    if (v && strncmp(v, "false", 5) == 0) return false;
    return dflt;
}

static void get_str(const char *json, const char *key, char *out, size_t size)
{
    const char *v = find_key(json, key);
    if (!v || !scan_string(v, out, size)) out[0] = '\0';
}

static size_t get_str_array(const char *json, const char *key, char **out, size_t max)
{
    const char *v = find_key(json, key);
    size_t n = 0;
    if (!v || *v != '[') return 0;
    for (v = skip_ws(v + 1); *v == '"' && n < max; v = skip_ws(v)) {
        char buf[8192];
        v = scan_string(v, buf, sizeof(buf));
        if (!v) break;
        out[n++] = strdup(buf);
        v = skip_ws(v);
        if (*v == ',') v++;
    }
    return n;
}

static size_t get_int_array(const char *json, const char *key, long *out, size_t max)
{
    const char *v = find_key(json, key);
    size_t n = 0;
    if (!v || *v != '[') return 0;
    for (v = skip_ws(v + 1); (isdigit((unsigned char)*v) || *v == '-') && n < max;) {
        char *end;
        out[n++] = strtol(v, &end, 10);
        v = skip_ws(end);
        if (*v == ',') v = skip_ws(v + 1);
    }
    return n;
}

static void parse_args(const char *json)
{
    struct probe_args *a = &g_args;
    a->gateway_port = (int)get_int(json, "gateway_port", 0);
    a->webhook_port = (int)get_int(json, "webhook_port", 0);
    a->canary_pid = (int)get_int(json, "canary_pid", 0);
    a->destructive = get_bool(json, "destructive", false);
    a->keep = get_bool(json, "keep", false);
    a->spin = get_bool(json, "spin", false);
    a->force = get_bool(json, "force", false);
    a->memory_mb = (uint64_t)get_int(json, "memory_mb", 256);
    a->disk_mb = (uint64_t)get_int(json, "disk_mb", 64);
    a->hold_ms = (uint64_t)get_int(json, "hold_ms", 1500);
    a->sleep_ms = (uint64_t)get_int(json, "sleep_ms", 0);
    get_str(json, "canary_env", a->canary_env, sizeof(a->canary_env));
    get_str(json, "workspace", a->workspace, sizeof(a->workspace));
    get_str(json, "policy_file", a->policy_file, sizeof(a->policy_file));
    get_str(json, "audit_dir", a->audit_dir, sizeof(a->audit_dir));
    get_str(json, "p29", a->p29, sizeof(a->p29));
    get_str(json, "tag", a->tag, sizeof(a->tag));
    if (!a->canary_env[0]) snprintf(a->canary_env, sizeof(a->canary_env), "GW_CANARY");
    if (!a->tag[0]) snprintf(a->tag, sizeof(a->tag), "default");
    a->n_only = get_str_array(json, "only", a->only, PROBE_MAX_LIST);
    a->n_paths = get_str_array(json, "paths", a->paths, PROBE_MAX_LIST);
    a->n_allowed = get_int_array(json, "allowed_syscalls", a->allowed,
                                 sizeof(a->allowed) / sizeof(a->allowed[0]));
}

/* ---- the probe table and runner ---------------------------------------------------------- */

struct probe_row {
    const char *id;
    probe_fn fn;
    unsigned timeout_ms;
    bool sigkill_means_blocked; /* the memory hog: SIGKILL is the OOM killer doing its job */
};

static const struct probe_row probes[] = {
    {"P01", p01_caps, 5000, false},          {"P02", p02_nnp_seccomp, 5000, false},
    {"P03", p03_uid, 5000, false},           {"P04", p04_setuid, 10000, false},
    {"P05", p05_pids, 5000, false},          {"P06", p06_environ, 5000, false},
    {"P07", p07_signals, 10000, false},      {"P08", p08_inspect, 5000, false},
    {"P09", p09_namespaces, 5000, false},    {"P10", p10_setns, 5000, false},
    {"P11", p11_mount, 5000, false},         {"P12", p12_cgroup, 5000, false},
    {"P13", p13_keyring_bpf, 5000, false},   {"P14", p14_subsystems, 5000, false},
    {"P15", p15_host_state, 5000, false},    {"P16", p16_arch_bypass, 5000, false},
    {"P17", p17_ioctl_highbit, 5000, false}, {"P18", p18_tty, 5000, false},
    {"P19", p19_sweep, 60000, false},        {"P20", p20_rootfs, 5000, false},
    {"P21", p21_proc_sys, 5000, false},      {"P22", p22_devices, 5000, false},
    {"P23", p23_host_sockets, 5000, false},  {"P24", p24_fds_cwd, 5000, false},
    {"P25", p25_launcher, 5000, false},      {"P26", p26_traversal, 5000, false},
    {"P27", p27_links, 5000, false},         {"P28", p28_protected, 5000, false},
    {"P29", p29_cross_call, 30000, false},   {"P30", p30_loopback, 5000, false},
    {"P31", p31_egress, 5000, false},        {"P32", p32_sockets, 5000, false},
    {"P33", p33_dns, 5000, false},           {"P34", p34_fork_bomb, 60000, false},
    {"P35", p35_memory, 60000, true},        {"P36", p36_disk, 60000, false},
    {"P37", p37_orphan, 60000, false},       {"P38", p38_flood, 120000, false},
    {"P39", p39_fds, 60000, false},          {"P40", p40_time, 600000, false},
    {"P41", p41_reentry, 5000, false},
};

static bool selected(const char *id)
{
    if (g_args.n_only == 0) return true;
    for (size_t i = 0; i < g_args.n_only; i++)
        if (strcmp(g_args.only[i], id) == 0) return true;
    return false;
}

static int run_probe(void *arg, int fd)
{
    const struct probe_row *row = arg;
    g_report_fd = fd;
    row->fn();
    return 0;
}

static void run_one(const struct probe_row *row)
{
    char out[16384];
    int st = run_child(run_probe, (void *)row, out, sizeof(out), row->timeout_ms);
    g_report_fd = 1;
    if (st == -1) {
        emit(row->id, "error", errno, "could not fork the probe child");
        return;
    }
    if (out[0]) {
        size_t len = strlen(out);
        if (out[len - 1] != '\n' && len + 1 < sizeof(out)) out[len++] = '\n';
        write_all(1, out, len);
        return;
    }
    if (st == -2)
        emit(row->id, "error", 0, "probe timed out after %u ms", row->timeout_ms);
    else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
        emit(row->id, "blocked", 0, "probe killed by SIGSYS (seccomp)");
    else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && row->sigkill_means_blocked)
        emit(row->id, "blocked", 0, "probe killed by SIGKILL (memory cap)");
    else if (WIFSIGNALED(st))
        emit(row->id, "error", 0, "probe died of signal %d (%s)", WTERMSIG(st),
             sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
    else
        emit(row->id, "error", 0, "probe exited %d without a verdict", WEXITSTATUS(st));
}

/* The interlock for destructive probes: a sandbox shows a handful of processes, a host
 * dozens. Refuse to bomb, hog or kill(-1) where the host is visible, unless forced. */
static void destructive_interlock(void)
{
    if (!g_args.destructive || g_args.force) return;
    int count = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') count++;
    if (d) closedir(d);
    if (count > 16) {
        g_args.destructive = false;
        progress("probe",
                 "destructive refused: %d processes visible, this looks like a host "
                 "(pass \"force\": true inside a sandbox that shows many)",
                 count);
    }
}

static char *read_stdin(void)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return NULL;
    if (isatty(0)) {
        buf[0] = '\0';
        return buf;
    }
    for (;;) {
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len == cap) {
            if (cap >= (1u << 20)) break;
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--whoami") == 0) return probe_whoami();
    char *json = argc > 1 ? strdup(argv[1]) : read_stdin();
    if (!json) {
        fprintf(stderr, "probe: out of memory\n");
        return 2;
    }
    parse_args(json);
    free(json);
    destructive_interlock();
    /* Probes report through pipes; a reader that goes away must not kill the runner. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
        if (selected(probes[i].id)) run_one(&probes[i]);
    return 0;
}
