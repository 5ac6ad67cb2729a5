/* box.c: one gVisor sandbox, from `runsc run --detach` to `runsc delete`.
 *
 * gv_box_spawn writes the bundle (config.json from the policy's template plus
 * this sandbox's cgroup path) and starts gatehouse-gvisor-helper `keep` with the
 * sandbox's stdio pipes as its fds 0-2, a status pipe as fd 3 and the tier's
 * lifeline as fd 4. It returns once the keeper reports the sandbox booted and its
 * launcher started (waiting for the call header on stdin). Afterwards the keeper's
 * exit is the sandbox's exit, so calls can use sbx_supervise on the keeper's pid.
 * Cleanup (runsc delete --force, cgroups, bundle directory) runs on a background
 * thread after successful calls and synchronously after failures.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gvisor_internal.h"

static char *const spawn_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void cgroup_path(const char *id, const char *ctrl, char *out, size_t len)
{
    if (ctrl)
        snprintf(out, len, "/sys/fs/cgroup/%s/%s/%s", ctrl, gv.cgroup_parent, id);
    else
        snprintf(out, len, "/sys/fs/cgroup/%s/%s", gv.cgroup_parent, id);
}

int gv_runsc(const char *const *args, char *out, size_t out_len)
{
    const char *argv[24];
    char root[PATH_MAX + 8];
    GV_PATH(root, "--root=%s", gv.root);
    size_t n = 0;
    argv[n++] = gv.runsc;
    argv[n++] = root;
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int pipefd[2] = {-1, -1};
    if (out && pipe2(pipefd, O_CLOEXEC) < 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, gv.runsc, &fa, NULL, (char *const *)argv, spawn_env);
    posix_spawn_file_actions_destroy(&fa);
    close_fd(&pipefd[1]);
    size_t got = 0;
    if (rc == 0 && out) {
        ssize_t r;
        while (got + 1 < out_len && (r = read(pipefd[0], out + got, out_len - 1 - got)) != 0) {
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) break;
            got += (size_t)r;
        }
        out[got] = '\0';
    }
    close_fd(&pipefd[0]);
    if (rc != 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return status;
}

/* rmdir <root>/<ctrl>/<parent>/<id> in every controller (id "" = the parent itself). */
static void remove_cgroups(const char *id)
{
    DIR *d = opendir("/sys/fs/cgroup");
    if (d) {
        struct dirent *de;
        char path[PATH_MAX];
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            cgroup_path(id, de->d_name, path, sizeof(path));
            rmdir(path);
        }
        closedir(d);
    }
    char path[PATH_MAX];
    cgroup_path(id, NULL, path, sizeof(path)); /* cgroup v2 */
    rmdir(path);
}

void gv_net_dir(const char *id, char *out, size_t len)
{
    const char *dir = sbx_net_cgroup_dir();
    if (!dir || snprintf(out, len, "%s/gv-%s", dir, id) >= (int)len) out[0] = '\0';
}

void gv_remove_cgroup_parent(void)
{
    remove_cgroups("");
}

void gv_cleanup_id(const char *id, const char *bundle)
{
    /* delete --force kills the sandbox if it is somehow still running and removes runsc's
     * state (and, when the sandbox exited cleanly, the cgroups runsc made). */
    const char *args[] = {"delete", "--force", id, NULL};
    gv_runsc(args, NULL, 0);
    /* After an OOM kill runsc leaves the cgroups behind; they are ours (our parent, our id). */
    remove_cgroups(id);
    char path[PATH_MAX];
    gv_net_dir(id, path, sizeof(path));
    if (path[0]) { /* the keeper's tree is gone: the directory is empty */
        uint64_t cgid = sbx_net_cgroup_id(path);
        if (rmdir(path) == 0) sbx_net_forget_cgroup(cgid); /* else it stays deny-all */
    }
    static const char *const files[] = {"config.json", "pid"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        GV_PATH(path, "%s/%s", bundle, files[i]);
        unlink(path);
    }
    rmdir(bundle);
}

bool gv_box_oom(const struct gv_box *box)
{
    char path[PATH_MAX];
    cgroup_path(box->id, "memory", path, sizeof(path));
    strncat(path, "/memory.oom_control", sizeof(path) - strlen(path) - 1);
    autofree char *text = NULL;
    size_t len = 0;
    if (gate_read_file(path, 4096, &text, &len, NULL) < 0) {
        cgroup_path(box->id, NULL, path, sizeof(path)); /* cgroup v2 */
        strncat(path, "/memory.events", sizeof(path) - strlen(path) - 1);
        if (gate_read_file(path, 4096, &text, &len, NULL) < 0) return false;
    }
    const char *k = strstr(text, "oom_kill ");
    return k && strtoull(k + 9, NULL, 10) > 0;
}

static void box_free(struct gv_box *box)
{
    close_fd(&box->in_w);
    close_fd(&box->out_r);
    close_fd(&box->err_r);
    free(box);
}

void gv_box_destroy(struct gv_box *box)
{
    if (!box) return;
    if (box->keeper > 0) {
        kill(box->keeper, SIGTERM); /* the keeper SIGKILLs the whole sandbox tree */
        while (waitpid(box->keeper, NULL, 0) < 0 && errno == EINTR)
            ;
        box->keeper = -1;
    }
    gv_cleanup_id(box->id, box->bundle);
    box_free(box);
}

/* Start the keeper with fds 0..4 = stdin, stdout, stderr, status, lifeline. The keeper and
 * runsc run as root because runsc needs it to build the sandbox; nothing of the tool does: the
 * sentry runs as nobody on the host, and the tool as the tool uid inside gVisor. */
static int start_keeper(const struct gv_policy *gp, struct gv_box *box, int child_fds[5],
                        struct gate_error *err)
{
    char pidfile[PATH_MAX], netdir[PATH_MAX] = "-";
    GV_PATH(pidfile, "%s/pid", box->bundle);
    if (box->cgid) gv_net_dir(box->id, netdir, sizeof(netdir));
    const char *argv[] = {"gatehouse-gvisor-helper",
                          "keep",
                          gv.runsc,
                          gv.root,
                          gp->platform,
                          gp->network,
                          box->bundle,
                          box->id,
                          pidfile,
                          netdir,
                          NULL};
    /* Move the sources above the targets first, so that no dup2 overwrites a later source. */
    int high[5] = {-1, -1, -1, -1, -1};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++)
        if ((high[i] = fcntl(child_fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
            rc = gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: fcntl(F_DUPFD)");
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < 5 && rc == 0; i++)
        posix_spawn_file_actions_adddup2(&fa, high[i], i);
    /* Nothing else of the gateway's reaches the keeper (or runsc, or the sandbox). */
    posix_spawn_file_actions_addclosefrom_np(&fa, 5);
    sigset_t none, deflt;
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGTERM), sigaddset(&deflt, SIGCHLD), sigaddset(&deflt, SIGPIPE);
    sigaddset(&deflt, SIGINT), sigaddset(&deflt, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    /* Its own session: terminal signals aimed at the gateway do not reach the sandbox. */
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0) {
        int e = posix_spawn(&box->keeper, gv.helper, &fa, &attr, (char *const *)argv, spawn_env);
        if (e != 0) {
            box->keeper = -1;
            rc = gate_err_errno(err, GATE_E_SANDBOX, e, "gvisor: spawn %s", gv.helper);
        }
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 5; i++)
        close_fd(&high[i]);
    return rc;
}

/* Wait for the keeper's verdict: "R" once booted, "E<message>" or EOF on failure. */
static int wait_ready(struct gv_box *box, int status_r, uint32_t timeout_ms, struct gate_error *err)
{
    char msg[512];
    size_t got = 0;
    uint64_t deadline = gate_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint64_t now = gate_monotonic_ns();
        if (now >= deadline)
            return gate_err(err, GATE_E_SANDBOX,
                            "gvisor: runsc run took over %u ms (is the platform usable here?)",
                            timeout_ms);
        struct pollfd pfd = {.fd = status_r, .events = POLLIN};
        int r = poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = read(status_r, msg + got, sizeof(msg) - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0 && (got += (size_t)n) < sizeof(msg) - 1) continue;
        break;
    }
    msg[got] = '\0';
    if (got > 0 && msg[0] == 'R') return 0;
    /* runsc's own error message went to the sandbox's stderr pipe. */
    char detail[256] = "";
    fcntl(box->err_r, F_SETFL, O_NONBLOCK);
    ssize_t n = read(box->err_r, detail, sizeof(detail) - 1);
    detail[n > 0 ? n : 0] = '\0';
    for (char *c = detail; *c; c++)
        if (*c == '\n') *c = ' ';
    return gate_err(err, GATE_E_SANDBOX, "gvisor: %s%s%s", got > 1 ? msg + 1 : "the keeper exited",
                    detail[0] ? ": " : "", detail);
}

static int write_bundle(const struct gv_policy *gp, struct gv_box *box, struct gate_error *err)
{
    if (mkdir(box->bundle, 0700) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: mkdir %s", box->bundle);
    json_error_t jerr;
    json_t *cfg = json_loads(gp->config_json, 0, &jerr);
    char cg[128], path[PATH_MAX];
    GV_PATH(cg, "/%s/%s", gv.cgroup_parent, box->id);
    GV_PATH(path, "%s/config.json", box->bundle);
    int rc =
        cfg ? json_object_set_new(json_object_get(cfg, "linux"), "cgroupsPath", json_string(cg))
            : -1;
    if (rc == 0) rc = json_dump_file(cfg, path, JSON_COMPACT);
    json_decref(cfg);
    return rc == 0 ? 0 : gate_err(err, GATE_E_SANDBOX, "gvisor: cannot write %s", path);
}

/* network.egress: a cgroup v2 directory of the sandbox's own below the gateway's filtered one,
 * held to deny-all until a call puts it under the policy. Made by root, 0755: nothing in the
 * sandbox can leave it. The keeper moves itself in before it starts runsc, so runsc, the
 * gofer and the sentry (whose host sockets carry the tool's traffic) are all born inside. */
static int make_net_dir(struct gv_box *box, struct gate_error *err)
{
    char dir[PATH_MAX];
    gv_net_dir(box->id, dir, sizeof(dir));
    if (!dir[0]) return gate_err(err, GATE_E_SANDBOX, "gvisor: no filtered cgroup v2 directory");
    if (mkdir(dir, 0755) < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "mkdir %s", dir);
    box->cgid = sbx_net_cgroup_id(dir);
    if (!box->cgid) return gate_err_errno(err, GATE_E_SANDBOX, errno, "stat %s", dir);
    return sbx_net_hold_cgroup(box->cgid, err);
}

int gv_box_spawn(const struct gv_policy *gp, uint32_t timeout_ms, struct gv_box **out,
                 struct gate_error *err)
{
    struct gv_box *box = calloc(1, sizeof(*box));
    if (!box) return gate_err(err, GATE_E_NOMEM, "out of memory");
    box->keeper = -1;
    box->in_w = box->out_r = box->err_r = -1;
    char hex[17]; /* 8 random bytes: 16 hex digits */
    if (gate_random_hex(hex, 8) < 0) {
        free(box);
        return gate_err(err, GATE_E_INTERNAL, "gvisor: no randomness for a sandbox id");
    }
    GV_PATH(box->id, "gh-%.16s", hex);
    GV_PATH(box->bundle, "%s/%s", gv.bundles, box->id);
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, status[2] = {-1, -1};
    int rc = write_bundle(gp, box, err);
    if (rc == 0 && gp->net) rc = make_net_dir(box, err);
    if (rc == 0 && (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 ||
                    pipe2(errp, O_CLOEXEC) < 0 || pipe2(status, O_CLOEXEC) < 0))
        rc = gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: pipe2");
    if (rc == 0) {
        int child_fds[5] = {in[0], outp[1], errp[1], status[1], gv.lifeline_r};
        rc = start_keeper(gp, box, child_fds, err);
    }
    box->in_w = steal_fd(&in[1]);
    box->out_r = steal_fd(&outp[0]);
    box->err_r = steal_fd(&errp[0]);
    close_fd(&in[0]), close_fd(&outp[1]), close_fd(&errp[1]), close_fd(&status[1]);
    if (rc == 0) rc = wait_ready(box, status[0], timeout_ms, err);
    close_fd(&status[0]);
    if (rc < 0) {
        gv_box_destroy(box);
        return -1;
    }
    *out = box;
    return 0;
}

/* ---- the background cleaner ------------------------------------------------------------ */

struct retired {
    char id[40];
    char bundle[PATH_MAX];
    struct retired *next;
};

static pthread_mutex_t cleaner_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cleaner_cond = PTHREAD_COND_INITIALIZER;
static struct retired *cleaner_queue;
static bool cleaner_running, cleaner_stopping;
static pthread_t cleaner_thread;

static void *cleaner_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cleaner_lock);
    for (;;) {
        while (!cleaner_queue && !cleaner_stopping)
            pthread_cond_wait(&cleaner_cond, &cleaner_lock);
        struct retired *r = cleaner_queue;
        if (!r) break; /* stopping and drained */
        cleaner_queue = r->next;
        pthread_mutex_unlock(&cleaner_lock);
        gv_cleanup_id(r->id, r->bundle);
        free(r);
        pthread_mutex_lock(&cleaner_lock);
    }
    pthread_mutex_unlock(&cleaner_lock);
    return NULL;
}

int gv_cleaner_start(void)
{
    pthread_mutex_lock(&cleaner_lock);
    int rc = 0;
    if (!cleaner_running) {
        cleaner_stopping = false;
        rc = pthread_create(&cleaner_thread, NULL, cleaner_main, NULL) == 0 ? 0 : -1;
        cleaner_running = rc == 0;
    }
    pthread_mutex_unlock(&cleaner_lock);
    return rc;
}

void gv_cleaner_stop(void)
{
    pthread_mutex_lock(&cleaner_lock);
    bool running = cleaner_running;
    cleaner_stopping = true;
    pthread_cond_broadcast(&cleaner_cond);
    pthread_mutex_unlock(&cleaner_lock);
    if (running) pthread_join(cleaner_thread, NULL);
    pthread_mutex_lock(&cleaner_lock);
    cleaner_running = false;
    pthread_mutex_unlock(&cleaner_lock);
}

void gv_box_retire(struct gv_box *box)
{
    struct retired *r = calloc(1, sizeof(*r));
    pthread_mutex_lock(&cleaner_lock);
    bool queued = r && cleaner_running && !cleaner_stopping;
    if (queued) {
        memcpy(r->id, box->id, sizeof(r->id));
        memcpy(r->bundle, box->bundle, sizeof(r->bundle));
        /* Append: deletions run in the order the calls ended. */
        struct retired **tail = &cleaner_queue;
        while (*tail)
            tail = &(*tail)->next;
        *tail = r;
        pthread_cond_signal(&cleaner_cond);
    }
    pthread_mutex_unlock(&cleaner_lock);
    if (!queued) {
        free(r);
        gv_cleanup_id(box->id, box->bundle);
    }
    box_free(box);
}
