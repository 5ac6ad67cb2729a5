/* cgroup.c: one cgroup per container call, on cgroup v1 or v2.
 *
 * The gateway's cgroups live below the gateway's own cgroup (so tools stay inside whatever
 * limits the gateway itself runs under), in a parent named after the gateway's pid:
 *   v1: <root>/<ctrl>/<own path>/<name>/<call>   for ctrl in memory, pids, cpu, freezer, and
 *       the controller-less cgroup2 tree "unified" of a hybrid host when there is one
 *   v2: <root>/<own path>/<name>/<call>          with +memory +pids +cpu delegated
 * A call's cgroup gets memory (no swap), pids and cpu quota limits, is killed as a whole
 * at the end of the call (v2 cgroup.kill; v1 freeze, SIGKILL every member, thaw) and removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "container.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const char *const v1_names[CT_V1__COUNT] = {"memory", "pids", "cpu", "freezer", "unified"};

static size_t members(const char *dir, ino_t pidns, pid_t *pids, size_t max);

/* dir + "/" + name into out; -1 (ENAMETOOLONG) if it does not fit. */
static int join(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* O_CREAT|O_TRUNC are no-ops on cgroupfs files (which always exist when the controller is
 * there) and let the unit test run this code against a plain directory tree. */
static int write_file(const char *dir, const char *file, const char *value)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t len = strlen(value);
    ssize_t w = write(fd, value, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)len ? 0 : -1;
}

static int write_limit(const char *dir, const char *file, const char *value, struct gate_error *err)
{
    if (write_file(dir, file, value) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "cgroup %s/%s = %s", dir, file, value);
    return 0;
}

static bool exists(const char *dir, const char *file)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

uint64_t ct_cg_read_key(const char *path, const char *key)
{
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char line[256];
    size_t klen = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            v = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The gateway's own cgroup for a v1 controller ("memory") or v2 (ctrl == NULL), from the
 * text of /proc/self/cgroup: "4:memory:/a/b" or "0::/a/b". */
static int own_path(const char *self_cgroup, const char *ctrl, char *out, size_t outlen)
{
    const char *line = self_cgroup;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            size_t clen = (size_t)(c2 - c1 - 1);
            bool match = false;
            if (!ctrl) {
                match = clen == 0;
            } else {
                /* The controller list is comma-separated ("cpu,cpuacct"). */
                for (const char *s = c1 + 1; s < c2;) {
                    const char *comma = memchr(s, ',', (size_t)(c2 - s));
                    size_t n = comma ? (size_t)(comma - s) : (size_t)(c2 - s);
                    if (n == strlen(ctrl) && strncmp(s, ctrl, n) == 0) match = true;
                    s += n + 1;
                }
            }
            if (match) {
                size_t plen = len - (size_t)(c2 + 1 - line);
                if (plen + 1 > outlen) return -1;
                memcpy(out, c2 + 1, plen);
                out[plen] = '\0';
                if (strcmp(out, "/") == 0) out[0] = '\0';
                return 0;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

/* A call or pool cgroup of a gateway that no longer exists: whatever still runs in it is a
 * sandbox, pool helper or warm child that gateway left behind (killed with SIGKILL, it never
 * ran its teardown). Kill it and remove the cgroup. */
static void remove_dead_call(const char *dir)
{
    pid_t pids[256];
    for (int round = 0; round < 200; round++) {
        size_t n = members(dir, 0, pids, sizeof(pids) / sizeof(pids[0]));
        if (n == 0) break;
        for (size_t i = 0; i < n; i++)
            kill(pids[i], SIGKILL);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    rmdir(dir);
}

/* Remove the parents (and their children) left by gateways that are gone: a gateway
 * killed with SIGKILL never runs its teardown. Only directories named <prefix><pid> whose
 * pid no longer exists are touched; rmdir refuses anything still populated. */
static void remove_stale(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    if (!d) return;
    /* Our parent is "<prefix><pid>" ("gatehouse-", or "gatehouse-microvm-" for jails): the
     * same prefix with other pids. */
    size_t plen = strlen(name);
    while (plen > 0 && name[plen - 1] >= '0' && name[plen - 1] <= '9')
        plen--;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, name, plen) != 0) continue;
        char *end = NULL;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (pid <= 0 || !end || (*end != '\0' && strcmp(end, "-gateway") != 0) ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[PATH_MAX], sub[PATH_MAX];
        if (join(path, sizeof(path), dir, e->d_name) < 0) continue;
        DIR *c = opendir(path);
        struct dirent *ce;
        while (c && (ce = readdir(c)))
            if (ce->d_type == DT_DIR && ce->d_name[0] != '.' &&
                join(sub, sizeof(sub), path, ce->d_name) == 0)
                remove_dead_call(sub);
        if (c) closedir(c);
        rmdir(path);
    }
    closedir(d);
}

static int make_dir(const char *path, struct gate_error *err)
{
    /* Root creates the directory in cgroupfs; it is owned by root and only the gateway
     * writes its limit files. */
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "cgroup mkdir %s", path);
    return 0;
}

static int setup_v2(const char *root, const char *self, const char *name, struct ct_cg_config *cfg,
                    struct gate_error *err)
{
    char own[PATH_MAX / 2], base[PATH_MAX];
    if (own_path(self, NULL, own, sizeof(own)) < 0)
        return gate_err(err, GATE_E_SANDBOX, "cgroup v2: cannot find the gateway's own cgroup");
    snprintf(base, sizeof(base), "%s%s", root, own);
    remove_stale(base, name);
    if (join(cfg->parent[0], sizeof(cfg->parent[0]), base, name) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "cgroup path %s", base);
    if (make_dir(cfg->parent[0], err) < 0) return -1;
    /* Delegate the controllers to our parent. A non-root cgroup that holds processes cannot
     * enable controllers for its children (the "no internal processes" rule): then move the
     * gateway into a leaf of its own first. */
    if (write_file(base, "cgroup.subtree_control", "+memory +pids +cpu") < 0) {
        if (errno != EBUSY)
            return gate_err_errno(err, GATE_E_SANDBOX, errno,
                                  "cgroup v2: enabling controllers in %s", base);
        char leaf[PATH_MAX + 16], pid[32];
        snprintf(leaf, sizeof(leaf), "%s-gateway", cfg->parent[0]);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if (make_dir(leaf, err) < 0 || write_limit(leaf, "cgroup.procs", pid, err) < 0 ||
            write_limit(base, "cgroup.subtree_control", "+memory +pids +cpu", err) < 0)
            return -1;
    }
    if (write_limit(cfg->parent[0], "cgroup.subtree_control", "+memory +pids +cpu", err) < 0)
        return -1;
    cfg->has_swap_max = true; /* checked per call: only present with swap accounting */
    cfg->version = CT_CG_V2;
    return 0;
}

static int setup_v1(const char *root, const char *self, const char *name, struct ct_cg_config *cfg,
                    struct gate_error *err)
{
    for (int i = 0; i < CT_V1__COUNT; i++) {
        char own[PATH_MAX / 2], dir[PATH_MAX / 2];
        snprintf(dir, sizeof(dir), "%s/%s", root, v1_names[i]);
        /* The unified tree's own path is the "0::" line. */
        const char *ctrl = i == CT_V1_UNIFIED ? NULL : v1_names[i];
        if (access(dir, F_OK) < 0 || own_path(self, ctrl, own, sizeof(own)) < 0) {
            /* optional: without a freezer, ct_cg_kill loops kill until empty; without the
             * unified tree, there is no cgroup2 directory to attach BPF programs to. */
            if (i == CT_V1_FREEZER || i == CT_V1_UNIFIED) continue;
            return gate_err(err, GATE_E_SANDBOX, "cgroup v1: no %s controller at %s", v1_names[i],
                            dir);
        }
        char base[PATH_MAX];
        snprintf(base, sizeof(base), "%s%s", dir, own);
        remove_stale(base, name);
        if (join(cfg->parent[i], sizeof(cfg->parent[i]), base, name) < 0)
            return gate_err_errno(err, GATE_E_SANDBOX, errno, "cgroup path %s", base);
        if (make_dir(cfg->parent[i], err) < 0) return -1;
        if (i == CT_V1_FREEZER) cfg->has_freezer = true;
        if (i == CT_V1_UNIFIED) cfg->has_unified = true;
    }
    cfg->has_memsw = exists(cfg->parent[CT_V1_MEMORY], "memory.memsw.limit_in_bytes");
    cfg->version = CT_CG_V1;
    return 0;
}

int ct_cg_setup(const char *mount_root, const char *self_cgroup, const char *name,
                struct ct_cg_config *cfg, struct gate_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    struct statfs sfs;
    if (statfs(mount_root, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
        return setup_v2(mount_root, self_cgroup, name, cfg, err);
    char probe[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s/memory/cgroup.procs", mount_root);
    if (access(probe, F_OK) == 0) return setup_v1(mount_root, self_cgroup, name, cfg, err);
    /* A mount root that is a plain directory holding cgroup.controllers: a v2 tree (also
     * how the unit test lays out a fake hierarchy). */
    snprintf(probe, sizeof(probe), "%s/cgroup.controllers", mount_root);
    if (access(probe, F_OK) == 0) return setup_v2(mount_root, self_cgroup, name, cfg, err);
    return gate_err(err, GATE_E_SANDBOX,
                    "no usable cgroup hierarchy at %s (neither cgroup v2 nor "
                    "v1 memory/pids/cpu)",
                    mount_root);
}

void ct_cg_teardown(const struct ct_cg_config *cfg)
{
    int n = cfg->version == CT_CG_V2 ? 1 : CT_V1__COUNT;
    for (int i = 0; i < n; i++)
        if (cfg->parent[i][0]) rmdir(cfg->parent[i]);
}

static int memory_v1(const struct ct_cg_config *cfg, const char *dir, const char *bytes,
                     struct gate_error *err)
{
    /* memory.memsw.limit (memory + swap) must never be below memory.limit: when raising, the
     * first write fails with EINVAL until memsw is raised. memsw equal to memory: no swap. */
    if (write_file(dir, "memory.limit_in_bytes", bytes) < 0) {
        if (errno != EINVAL || !cfg->has_memsw ||
            write_limit(dir, "memory.memsw.limit_in_bytes", bytes, err) < 0 ||
            write_limit(dir, "memory.limit_in_bytes", bytes, err) < 0)
            return errno == EINVAL
                       ? gate_err_errno(err, GATE_E_SANDBOX, errno,
                                        "cgroup %s/memory.limit_in_bytes = %s", dir, bytes)
                       : -1;
    }
    if (cfg->has_memsw) return write_limit(dir, "memory.memsw.limit_in_bytes", bytes, err);
    /* Without swap accounting, swappiness 0 is the closest v1 offers. */
    return write_limit(dir, "memory.swappiness", "0", err);
}

static int limits_v1(const struct ct_cg_config *cfg, const struct ct_cgroup *cg,
                     const struct policy_limits *l, uint64_t extra_pids, struct gate_error *err)
{
    char v[64];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb << 20);
    if (memory_v1(cfg, cg->path[CT_V1_MEMORY], v, err) < 0) return -1;
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(l->pids + extra_pids));
    if (write_limit(cg->path[CT_V1_PIDS], "pids.max", v, err) < 0) return -1;
    snprintf(v, sizeof(v), "%llu", (unsigned long long)l->cpu_millis * 100ULL);
    if (write_limit(cg->path[CT_V1_CPU], "cpu.cfs_period_us", "100000", err) < 0 ||
        write_limit(cg->path[CT_V1_CPU], "cpu.cfs_quota_us", v, err) < 0)
        return -1;
    return 0;
}

static int limits_v2(const struct ct_cgroup *cg, const struct policy_limits *l, uint64_t extra_pids,
                     struct gate_error *err)
{
    char v[64];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)l->memory_mb << 20);
    if (write_limit(cg->path[0], "memory.max", v, err) < 0) return -1;
    /* No swap. memory.swap.max only exists with swap accounting; without it, nothing swaps
     * on behalf of this cgroup beyond what memory.max allows anyway. */
    if (exists(cg->path[0], "memory.swap.max") &&
        write_limit(cg->path[0], "memory.swap.max", "0", err) < 0)
        return -1;
    snprintf(v, sizeof(v), "%llu", (unsigned long long)(l->pids + extra_pids));
    if (write_limit(cg->path[0], "pids.max", v, err) < 0) return -1;
    snprintf(v, sizeof(v), "%llu 100000", (unsigned long long)l->cpu_millis * 100ULL);
    return write_limit(cg->path[0], "cpu.max", v, err);
}

int ct_cg_set_limits(const struct ct_cg_config *cfg, const struct ct_cgroup *cg,
                     const struct policy_limits *l, uint64_t extra_pids, struct gate_error *err)
{
    return cfg->version == CT_CG_V2 ? limits_v2(cg, l, extra_pids, err)
                                    : limits_v1(cfg, cg, l, extra_pids, err);
}

int ct_cg_create(const struct ct_cg_config *cfg, const char *name, const struct policy_limits *l,
                 struct ct_cgroup *cg, struct gate_error *err)
{
    memset(cg, 0, sizeof(*cg));
    int n = cfg->version == CT_CG_V2 ? 1 : CT_V1__COUNT;
    for (int i = 0; i < n; i++) {
        if (!cfg->parent[i][0]) continue;
        if (join(cg->path[i], sizeof(cg->path[i]), cfg->parent[i], name) < 0 ||
            mkdir(cg->path[i], 0755) < 0) {
            gate_err_errno(err, GATE_E_SANDBOX, errno, "cgroup mkdir %s", cg->path[i]);
            ct_cg_destroy(cfg, cg);
            return -1;
        }
        cg->made[i] = true;
    }
    int rc = ct_cg_set_limits(cfg, cg, l, 0, err);
    if (rc < 0) ct_cg_destroy(cfg, cg);
    return rc;
}

int ct_cg_attach(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, pid_t pid,
                 struct gate_error *err)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    int n = cfg->version == CT_CG_V2 ? 1 : CT_V1__COUNT;
    for (int i = 0; i < n; i++)
        if (cg->made[i] && write_limit(cg->path[i], "cgroup.procs", v, err) < 0) return -1;
    return 0;
}

const char *ct_cg_v2_dir(const struct ct_cg_config *cfg, const struct ct_cgroup *cg)
{
    int i = cfg->version == CT_CG_V2 ? 0 : CT_V1_UNIFIED;
    return cfg->version != CT_CG_NONE && cg->made[i] ? cg->path[i] : NULL;
}

static bool in_pidns(pid_t pid, ino_t pidns)
{
    char path[64];
    struct stat sb;
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    return stat(path, &sb) == 0 && sb.st_ino == pidns;
}

/* Up to max pids of the members of dir (in pidns, if not 0). Returns the count. */
static size_t members(const char *dir, ino_t pidns, pid_t *pids, size_t max)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    size_t n = 0;
    int pid;
    while (n < max && fscanf(f, "%d", &pid) == 1)
        if (!pidns || in_pidns(pid, pidns)) pids[n++] = pid;
    fclose(f);
    return n;
}

static const char *procs_dir(const struct ct_cg_config *cfg, const struct ct_cgroup *cg)
{
    return cfg->version == CT_CG_V2 ? cg->path[0] : cg->path[CT_V1_PIDS];
}

size_t ct_cg_members(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, ino_t pidns)
{
    pid_t pids[64];
    return members(procs_dir(cfg, cg), pidns, pids, sizeof(pids) / sizeof(pids[0]));
}

size_t ct_cg_list(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, pid_t *pids,
                  size_t max)
{
    return members(procs_dir(cfg, cg), 0, pids, max);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void wait_frozen(const char *fz)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/freezer.state", fz);
    for (int i = 0; i < 100; i++) {
        char state[32] = "";
        FILE *f = fopen(path, "re");
        if (f) {
            if (!fgets(state, sizeof(state), f)) state[0] = '\0';
            fclose(f);
        }
        if (strncmp(state, "FROZEN", 6) == 0) return;
        sleep_ms(1);
    }
}

/* Freeze (so nothing can fork while we kill), SIGKILL every member (in pidns, if not 0),
 * thaw: the kills are delivered on thaw. A pool helper and a warm child frozen with the
 * rest are idle in recvmsg. */
static void kill_members(const char *dir, const char *fz, ino_t pidns)
{
    pid_t pids[256];
    if (members(dir, pidns, pids, 1) == 0)
        return; /* the common case: the pid namespace already took everything with it */
    if (fz && write_file(fz, "freezer.state", "FROZEN") == 0) wait_frozen(fz);
    for (int round = 0; round < 50; round++) {
        size_t n = members(dir, pidns, pids, sizeof(pids) / sizeof(pids[0]));
        if (n == 0) break;
        /* Every pid read from the call's own cgroup belongs to the call. */
        for (size_t i = 0; i < n; i++)
            kill(pids[i], SIGKILL);
        if (fz) write_file(fz, "freezer.state", "THAWED");
        sleep_ms(1);
    }
    if (fz) write_file(fz, "freezer.state", "THAWED");
}

void ct_cg_kill(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, ino_t pidns)
{
    if (cfg->version == CT_CG_V2) {
        /* cgroup.kill takes everything, a pool helper too: then kill one by one (every
         * target is in the call's PID namespace, which cannot be left, and whose init is
         * killed first, so nothing forks past this). */
        if (!pidns && cg->made[0])
            write_file(cg->path[0], "cgroup.kill", "1");
        else if (cg->made[0])
            kill_members(cg->path[0], NULL, pidns);
        return;
    }
    const char *fz = cfg->has_freezer && cg->made[CT_V1_FREEZER] ? cg->path[CT_V1_FREEZER] : NULL;
    kill_members(cg->path[CT_V1_PIDS], fz, pidns);
}

void ct_cg_counters(const struct ct_cg_config *cfg, const struct ct_cgroup *cg, uint64_t *oom_kills,
                    uint64_t *pids_max_hits)
{
    char path[PATH_MAX + 32];
    const char *mem = cfg->version == CT_CG_V2 ? cg->path[0] : cg->path[CT_V1_MEMORY];
    snprintf(path, sizeof(path), "%s/%s", mem,
             cfg->version == CT_CG_V2 ? "memory.events" : "memory.oom_control");
    *oom_kills = ct_cg_read_key(path, "oom_kill");
    snprintf(path, sizeof(path), "%s/pids.events", procs_dir(cfg, cg));
    *pids_max_hits = ct_cg_read_key(path, "max");
}

int ct_cg_destroy(const struct ct_cg_config *cfg, struct ct_cgroup *cg)
{
    int n = cfg->version == CT_CG_V2 ? 1 : CT_V1__COUNT;
    int rc = 0;
    bool killed = false;
    for (int i = 0; i < n; i++) {
        if (!cg->made[i]) continue;
        /* rmdir fails with EBUSY while a member is still exiting: kill and retry briefly. */
        int tries = 0;
        bool removed = true;
        while (rmdir(cg->path[i]) < 0) {
            if (errno != EBUSY || ++tries > 2000) {
                gate_log("warn", "container.cgroup_leak", "rmdir %s: %s", cg->path[i],
                         strerror(errno));
                removed = false;
                rc = -1;
                break;
            }
            if (!killed) {
                ct_cg_kill(cfg, cg, 0);
                killed = true;
            }
            sleep_ms(1);
        }
        if (removed) cg->made[i] = false;
    }
    return rc;
}
