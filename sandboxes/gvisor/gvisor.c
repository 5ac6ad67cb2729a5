/* gvisor.c: the `gvisor` tier: each call in its own gVisor sandbox (runsc).
 *
 * gVisor's user-space kernel stands between the tool and the host: the tier
 * for untrusted code that needs a real Linux userland. Every call gets a fresh
 * sandbox (OCI bundle from bundle.c, booted by box.c), used once and destroyed;
 * warm pools (sandboxes/common/pool.c) boot them ahead of demand so a call pays only for the
 * tool itself. The tier keeps its own runsc state root under the gateway's
 * state directory, so it never touches anyone else's containers, and at start
 * removes whatever a crashed gateway left there.
 *
 * Platforms: ptrace (default). `kvm` is used only when a policy asks for it and
 * /dev/kvm exists; such a policy boots a trial sandbox at load, and since kvm
 * hangs at boot on the development machine the trial times out (10 s) and the
 * policy is refused with that reason. This runsc (0.0~20221219) has no systrap.
 * Calls go through our launcher (helper.c) rather than `runsc exec` or `runsc do`:
 * do passes the gateway's environment through, and exec costs ~40 ms a call.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <seccomp.h>
#include <unistd.h>

#include "gvisor_internal.h"

struct gv_tier gv = {.lifeline_r = -1, .lifeline_w = -1};
static bool tier_ready;

static bool executable(const char *path)
{
    struct stat st;
    return path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int find_binaries(struct gate_error *err)
{
    static const char *const runscs[] = {"/usr/bin/runsc", "/usr/sbin/runsc",
                                         "/usr/local/bin/runsc"};
    gv.runsc[0] = '\0';
    for (size_t i = 0; i < sizeof(runscs) / sizeof(runscs[0]) && !gv.runsc[0]; i++)
        if (executable(runscs[i])) snprintf(gv.runsc, sizeof(gv.runsc), "%s", runscs[i]);
    if (!gv.runsc[0])
        return gate_err(err, GATE_E_SANDBOX,
                        "runsc not installed (looked in /usr/bin, /usr/sbin, "
                        "/usr/local/bin; Debian package: runsc)");
    if (sbx_find_libexec("gatehouse-gvisor-helper", gv.helper, sizeof(gv.helper)) < 0)
        return gate_err(err, GATE_E_SANDBOX,
                        "gatehouse-gvisor-helper not found (looked beside the gatehouse binary, "
                        "in ../libexec and ../libexec/gatehouse)");
    return 0;
}

static int mkdir_p(const char *path, struct gate_error *err)
{
    char tmp[PATH_MAX];
    GV_PATH(tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: mkdir %s", tmp);
    return 0;
}

/* Remove a bundle directory left by a crashed gateway (only files we write live there). */
static void remove_bundle_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(path);
}

/* A previous gateway that crashed may have left sandboxes, runsc state, bundles and cgroups
 * under our state directory and cgroup parent. They are all ours: remove them. */
static void clean_leftovers(void)
{
    char ids[8192];
    const char *list[] = {"list", "--quiet", NULL};
    if (gv_runsc(list, ids, sizeof(ids)) == 0) {
        char *save = NULL;
        for (char *id = strtok_r(ids, "\n", &save); id; id = strtok_r(NULL, "\n", &save)) {
            char bundle[PATH_MAX];
            GV_PATH(bundle, "%s/%s", gv.bundles, id);
            gate_log("info", "gvisor.stale_sandbox", "deleting %s left by a previous gateway", id);
            gv_cleanup_id(id, bundle);
        }
    }
    DIR *d = opendir(gv.bundles);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char path[PATH_MAX];
            GV_PATH(path, "%s/%s", gv.bundles, de->d_name);
            gv_cleanup_id(de->d_name, path); /* also its cgroups, if runsc lost track */
            remove_bundle_dir(path);
        }
        closedir(d);
    }
    /* Cgroups whose sandbox runsc no longer knows (a crash between delete and rmdir). */
    char path[PATH_MAX];
    GV_PATH(path, "/sys/fs/cgroup/memory/%s", gv.cgroup_parent);
    d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strncmp(de->d_name, "gh-", 3) == 0) {
                char bundle[PATH_MAX];
                GV_PATH(bundle, "%s/%s", gv.bundles, de->d_name);
                gv_cleanup_id(de->d_name, bundle);
            }
        closedir(d);
    }
    gv_remove_cgroup_parent(); /* runsc recreates it with the first sandbox */
}

static int gvisor_init(const struct sbx_config *cfg, struct gate_error *err)
{
    if (find_binaries(err) < 0) return -1;
    /* runsc without --rootless needs root to set up namespaces, cgroups and the gofer. */
    if (geteuid() != 0)
        return gate_err(err, GATE_E_SANDBOX, "the gvisor tier needs a root gateway (runsc)");
    gv.uid = cfg->tool_uid;
    gv.gid = cfg->tool_gid;
    gv.has_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
    char state[PATH_MAX];
    if (!realpath(cfg->state_dir, state))
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: state directory %s",
                              cfg->state_dir);
    snprintf(gv.dir, sizeof(gv.dir), "%.4000s/gvisor", state);
    snprintf(gv.root, sizeof(gv.root), "%.4000s/root", gv.dir);
    snprintf(gv.bundles, sizeof(gv.bundles), "%.4000s/bundles", gv.dir);
    snprintf(gv.rootfs, sizeof(gv.rootfs), "%.4000s/rootfs", gv.dir);
    snprintf(gv.etc, sizeof(gv.etc), "%.4000s/etc", gv.dir);
    /* One cgroup parent per state directory: two gateways on one host never collide. */
    char hash[65];
    gate_sha256_hex(state, strlen(state), hash);
    snprintf(gv.cgroup_parent, sizeof(gv.cgroup_parent), "gatehouse-gvisor-%.12s", hash);
    if (mkdir_p(gv.root, err) < 0 || mkdir_p(gv.bundles, err) < 0) return -1;
    clean_leftovers();
    if (gv_write_shared_files(err) < 0) return -1;
    if (gv.lifeline_w < 0) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
            return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: pipe2");
        gv.lifeline_r = fds[0];
        gv.lifeline_w = fds[1];
    }
    if (gv_cleaner_start() < 0)
        return gate_err(err, GATE_E_SANDBOX, "gvisor: cannot start the cleanup thread");
    tier_ready = true;
    return 0;
}

static void policy_state_free(struct gv_policy *gp)
{
    sbx_net_free(gp->net);
    free(gp->seccomp.filter);
    free(gp->seccomp_dev.filter);
    free(gp->config_json);
    free(gp);
}

/* ---- the warm pool: booted sandboxes, each for one call -------------------------------- */

static void *pool_spawn(void *ctx, const bool *cancel, struct gate_error *err)
{
    (void)cancel; /* a boot is bounded by GV_BOOT_TIMEOUT_MS */
    struct gv_box *box = NULL;
    return gv_box_spawn(ctx, GV_BOOT_TIMEOUT_MS, &box, err) < 0 ? NULL : box;
}

static void pool_destroy(void *item)
{
    gv_box_destroy(item);
}

/* A sandbox whose keeper exited while it waited cannot serve a call. */
static bool pool_dead(void *item)
{
    struct gv_box *box = item;
    int st = 0;
    if (waitpid(box->keeper, &st, WNOHANG) != box->keeper) return false;
    box->keeper = -1; /* reaped */
    return true;
}

static const struct sbx_pool_kind pool_kind = {
    .spawn = pool_spawn,
    .destroy = pool_destroy,
    .dead = pool_dead,
    .family = "gatehouse_gvisor_pool",
    .failures_suffix = "boot_failures_total",
    .help_size = "Warm gVisor sandboxes ready for a call.",
    .help_hits = "gVisor calls served by a warm sandbox.",
    .help_misses = "gVisor calls that booted their own sandbox (empty pool).",
    .help_failures = "Warm gVisor sandboxes that failed to boot.",
    .refill_failed_event = "gvisor.pool_refill_failed",
    .died_event = "gvisor.pool_sandbox_died",
};

static void state_free(void *state)
{
    struct gv_policy *gp = state;
    if (!gp) return;
    sbx_pool_stop(&gp->pool);
    policy_state_free(gp);
}

static int check_platform(const struct policy *p, const char **out, struct gate_error *err)
{
    const char *pf = p->gvisor_platform ? p->gvisor_platform : "ptrace";
    if (strcmp(pf, "ptrace") == 0) {
        *out = "ptrace";
        return 0;
    }
    if (strcmp(pf, "kvm") == 0) {
        if (!gv.has_kvm)
            return gate_err(err, GATE_E_POLICY,
                            "gvisor.platform: kvm needs /dev/kvm, which this "
                            "host does not have");
        *out = "kvm";
        return 0;
    }
    return gate_err(err, GATE_E_POLICY,
                    "gvisor.platform: '%s' is not available in the installed "
                    "runsc (it has ptrace and kvm)",
                    pf);
}

/* gVisor lets an unprivileged process mknod device nodes in its tmpfs (they are the sentry's
 * emulated devices, but a tool has no business making them): a second, stacked filter refuses
 * mknod/mknodat of character and block devices and allows everything else. */
static int compile_dev_filter(struct sock_fprog *prog, struct gate_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return gate_err(err, GATE_E_SANDBOX, "seccomp_init failed");
    int rc = 0;
    static const unsigned types[] = {S_IFCHR, S_IFBLK};
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknod), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, types[i]));
        if (rc == 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknodat), 1,
                                  SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, types[i]));
    }
    autoclose int fd = rc == 0 ? memfd_create("gatehouse-gvisor-dev", MFD_CLOEXEC) : -1;
    if (rc == 0 && fd >= 0) rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    off_t size = rc == 0 && fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    struct sock_filter *insns = NULL;
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 ||
        !(insns = malloc((size_t)size)) || pread(fd, insns, (size_t)size, 0) != size) {
        free(insns);
        return gate_err(err, GATE_E_SANDBOX, "seccomp: cannot build the device filter");
    }
    prog->filter = insns;
    prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    return 0;
}

/* The filters the launcher installs on itself and so on the tool: the container tier's
 * allowlist when it is built in, else the process tier's denylist, plus the device filter.
 * gVisor is the boundary either way; this narrows what a tool can ask of the sentry (and keeps
 * the policy's seccomp.allow/deny meaningful). */
static int compile_seccomp(const struct policy *p, struct gv_policy *gp, struct gate_error *err)
{
    struct gate_error ignored = {0};
    if (sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, p->seccomp_allow, p->seccomp_deny, NULL,
                            &gp->seccomp, &ignored) < 0 &&
        sbx_seccomp_compile(SBX_SECCOMP_DENYLIST, p->seccomp_allow, p->seccomp_deny, NULL,
                            &gp->seccomp, err) < 0)
        return -1;
    return compile_dev_filter(&gp->seccomp_dev, err);
}

static int gvisor_prepare(struct policy *p, struct gate_error *err)
{
    struct gv_policy *gp = calloc(1, sizeof(*gp));
    if (!gp) return gate_err(err, GATE_E_NOMEM, "out of memory");
    /* network.egress: runsc's host network (the sentry's own host sockets carry the tool's
     * traffic), filtered by the BPF programs on the sandbox's cgroup v2 directory. */
    gp->network = p->network == NETWORK_SANDBOX  ? "sandbox"
                  : p->network == NETWORK_EGRESS ? "host"
                                                 : "none";
    /* On a pure cgroup v2 host runsc joins the spec's cgroup (outside the filtered directory)
     * before it starts the sentry, whose host sockets would then go unfiltered. Only the hybrid
     * layout (runsc joins v1 controllers, the v2 directory stays ours) is known to hold. */
    const char *filtered = sbx_net_cgroup_dir();
    if (p->network == NETWORK_EGRESS && filtered &&
        strncmp(filtered, "/sys/fs/cgroup/unified/", 23) != 0) {
        policy_state_free(gp);
        return gate_err(err, GATE_E_POLICY,
                        "network.egress with isolation: gvisor needs a cgroup v1 hybrid host "
                        "here: on a pure cgroup v2 host runsc would place the sandbox outside the "
                        "network filter (not supported yet)");
    }
    if ((p->network == NETWORK_EGRESS && sbx_net_prepare(p, &gp->net, err) < 0) ||
        check_platform(p, &gp->platform, err) < 0 || compile_seccomp(p, gp, err) < 0 ||
        gv_config_template(p, gp, &gp->config_json, err) < 0) {
        policy_state_free(gp);
        return -1;
    }
    /* Boot one sandbox now when the policy asks for something this runsc may not manage, so
     * the policy fails to load instead of failing every call: runsc 0.0~20221219 takes every
     * network namespace for the host's on recent kernels ("cannot run with network enabled in
     * root network namespace"), and its kvm platform hangs at boot on the development host. */
    if (p->network != NETWORK_NONE || strcmp(gp->platform, "ptrace") != 0) {
        struct gv_box *trial = NULL;
        if (gv_box_spawn(gp, GV_TRIAL_TIMEOUT_MS, &trial, err) < 0) {
            policy_state_free(gp);
            return gate_err_wrap(err, "%s does not work with this runsc",
                                 p->network == NETWORK_SANDBOX  ? "network: sandbox"
                                 : p->network == NETWORK_EGRESS ? "network.egress"
                                                                : "gvisor.platform");
        }
        gv_box_destroy(trial);
    }
    if (sbx_pool_start(&gp->pool, &pool_kind, gp, p->name, p->pool_size, err) < 0) {
        state_free(gp);
        return -1;
    }
    p->sbx_state = gp;
    p->sbx_state_free = state_free;
    return 0;
}

/* kill_all: the keeper SIGKILLs the sandbox (the whole gVisor kernel, so every process in it)
 * and reaps the runsc tree. Signalled through a pidfd, which cannot hit a recycled pid. */
static void kill_box(void *ctx)
{
    syscall(SYS_pidfd_send_signal, *(int *)ctx, SIGTERM, NULL, 0);
}

/* The keeper exits like the sandbox, and the sandbox like our launcher, which reports a tool
 * killed by signal N as exit code 128+N (a tool exiting 128+N by itself looks the same). */
static void classify(const struct policy *p, const struct gv_box *box, struct sbx_result *res)
{
    if (res->status == SBX_TIMED_OUT || res->status == SBX_OUTPUT_TRUNCATED) return;
    if (gv_box_oom(box)) {
        res->status = SBX_OOM;
        snprintf(res->detail, sizeof(res->detail), "memory limit reached (memory_mb %llu)",
                 (unsigned long long)p->limits.memory_mb);
        return;
    }
    if (res->status == SBX_KILLED) {
        snprintf(res->detail, sizeof(res->detail), "the gVisor sandbox was killed (signal %d)",
                 res->term_signal);
        return;
    }
    if (res->status == SBX_FAILED && res->exit_code > 128 && res->exit_code <= 128 + 64) {
        res->term_signal = res->exit_code - 128;
        res->exit_code = -1;
        if (res->term_signal == SIGXCPU || res->term_signal == SIGXFSZ) {
            res->status = SBX_RESOURCE_LIMIT;
            snprintf(res->detail, sizeof(res->detail), "%s",
                     res->term_signal == SIGXCPU ? "cpu_time limit reached"
                                                 : "file_size limit reached");
        } else {
            res->status = SBX_KILLED;
        }
    }
}

/* What the call did on the network, once the keeper (and so the whole sandbox tree) is gone.
 * The sentry makes the tool's connections on the host and the filter sees each; the tool's
 * execs happen inside gVisor's kernel (said so, instead of listing runsc's own). */
static void record_network(uint64_t cgid, int rc, struct sbx_result *res)
{
    json_t *net = sbx_net_end_cgroup_unseen(cgid, "gVisor's kernel");
    if (!net || rc < 0) {
        json_decref(net);
        return;
    }
    res->activity = net;
}

static int gvisor_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
                      struct gate_error *err)
{
    struct gv_policy *gp = p->sbx_state;
    if (!tier_ready || !gp) return gate_err(err, GATE_E_SANDBOX, "gvisor: tier not initialised");
    if (p->network == NETWORK_EGRESS && !gp->net) /* prepared by `policy check`: never run so */
        return gate_err(err, GATE_E_SANDBOX, "gvisor: the network policy is not enforced");
    struct gate_buf input = {0};
    if (gv_call_input(p, call, &input) < 0) return gate_err(err, GATE_E_NOMEM, "out of memory");
    struct gv_box *box = sbx_pool_take(&gp->pool);
    if (!box && gv_box_spawn(gp, GV_BOOT_TIMEOUT_MS, &box, err) < 0) {
        gate_buf_free(&input);
        return -1;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, box->keeper, 0);
    /* Without a pidfd a timeout could not kill the sandbox: never run so. The sandbox's
     * directory goes under the call's policy before the tool has its input (and so starts). */
    if (pidfd < 0 || (box->cgid && sbx_net_begin_cgroup(gp->net, box->cgid, err) < 0)) {
        if (pidfd < 0) gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: pidfd_open");
        if (pidfd >= 0) close(pidfd);
        gv_box_destroy(box);
        gate_buf_free(&input);
        return -1;
    }
    struct supervise sv = {
        .pid = box->keeper,
        .stdin_fd = steal_fd(&box->in_w),
        .stdout_fd = steal_fd(&box->out_r),
        .stderr_fd = steal_fd(&box->err_r),
        .input = input.data,
        .input_len = input.len,
        .wall_timeout_ms = p->limits.wall_timeout_ms,
        .output_bytes = p->limits.output_bytes,
        .start_ns = gate_monotonic_ns(),
        .kill_all = kill_box,
        .ctx = &pidfd,
    };
    int rc = sbx_supervise(&sv, res, NULL, err);
    box->keeper = -1; /* reaped by sbx_supervise */
    close(pidfd);
    if (box->cgid) record_network(box->cgid, rc, res);
    gate_buf_free(&input);
    classify(p, box, res);
    /* A sandbox that ended badly is deleted before the call returns; a clean one in the
     * background, so the caller does not wait for `runsc delete`. */
    if (rc < 0 || res->status == SBX_TIMED_OUT || res->status == SBX_KILLED ||
        res->status == SBX_OOM || res->status == SBX_OUTPUT_TRUNCATED) {
        gv_cleanup_id(box->id, box->bundle);
        box->id[0] = '\0';
    }
    if (box->id[0])
        gv_box_retire(box);
    else
        free(box);
    return rc;
}

static void gvisor_metrics(struct gate_buf *out)
{
    sbx_pool_metrics(out, &pool_kind);
}

static void gvisor_shutdown(void)
{
    sbx_pool_stop_all(&pool_kind);
    gv_cleaner_stop();
    gv_remove_cgroup_parent(); /* fails harmlessly while a call is still running */
}

const struct sbx_ops sbx_gvisor_ops = {
    .name = "gvisor",
    .isolation = ISOLATION_GVISOR,
    .init = gvisor_init,
    .prepare = gvisor_prepare,
    .run = gvisor_run,
    .shutdown = gvisor_shutdown,
    .metrics = gvisor_metrics,
};
