/* backend.c: the `wasm` row of the sandbox table (sbx_wasm_ops).
 *
 * init: find gatehouse-wasm-worker, the program every worker runs. Without it the tier does
 *   not start (policies naming it fail to load, naming the missing file): a worker is never a
 *   plain fork of the gateway, which would hold a copy of the gateway's memory and secrets.
 * prepare: read the policy's module (at most limits.module_mb), decode, validate and compile
 *   it once, refuse imports that are not WASI, write the compiled module into a sealed memfd
 *   (wasm_module_share) that the workers map, and start the policy's worker pool (pool.c).
 * run: hand the call to a worker of the pool, wait for its answer until the wall-clock
 *   deadline, and map the outcome:
 *     _start returned / proc_exit(n)  -> SUCCEEDED or FAILED with exit_code n
 *     a trap, proc_raise              -> TRAPPED, detail = the trap's name or the signal
 *     fuel exhausted                  -> RESOURCE_LIMIT, detail "fuel exhausted" (fuel stands
 *                                        in for CPU time, whose cap the other tiers report so)
 *     interpreter deadline / timeout  -> TIMED_OUT (the worker is killed)
 *     output cap                      -> OUTPUT_TRUNCATED
 *     worker died (e.g. seccomp)      -> KILLED with the signal
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sbx_internal.h"
#include "wasm_tier.h"

static struct sbx_config config;
static char helper_path[4200]; /* gatehouse-wasm-worker */
/* Prometheus counters across every wasm policy (atomics: calls run on many threads). */
static uint64_t metric_calls, metric_traps, metric_fuel_exhausted;
static char ws_root[4096];
static bool drop_identity;
/* Every prepared wasm policy, for /metrics. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wasm_state *live;

/* Find gatehouse-wasm-worker beside the gateway or in its libexec directory (the build tree's
 * and the installed layouts). Missing, the tier is refused: never a weaker sandbox. */
static int find_helper(struct gate_error *err)
{
    if (sbx_find_libexec("gatehouse-wasm-worker", helper_path, sizeof(helper_path)) == 0) return 0;
    return gate_err(err, GATE_E_SANDBOX,
                    "gatehouse-wasm-worker not found beside the gatehouse program nor in its "
                    "../libexec or ../libexec/gatehouse directory");
}

static int wasm_init(const struct sbx_config *cfg, struct gate_error *err)
{
    if (find_helper(err) < 0) return -1;
    config = *cfg;
    if (!config.max_concurrent) { /* as `gatehouse serve` defaults it */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        config.max_concurrent = 16 * (unsigned)(ncpu > 0 ? ncpu : 1);
    }
    drop_identity = geteuid() == 0;
    snprintf(ws_root, sizeof(ws_root), "%s/wasm-workspaces",
             cfg->state_dir ? cfg->state_dir : "/tmp");
    if (mkdir(ws_root, 0711) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm: mkdir %s", ws_root);
    return 0;
}

static void state_free(void *p)
{
    struct wasm_state *st = p;
    if (!st) return;
    pthread_mutex_lock(&live_lock);
    for (struct wasm_state **pp = &live; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    wasm_pool_stop(st);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st->idle);
    if (st->module_fd >= 0) close(st->module_fd);
    sbx_free_strv(st->env);
    sbx_free_strv(st->ro_dirs);
    free(st->name);
    free(st);
}

static char **copy_strv(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            sbx_free_strv(out);
            return NULL;
        }
    return out;
}

/* Read, validate, compile and check the module once; on success st holds its compiled image
 * in a sealed memfd (wasm_module_share), which every worker maps read-only instead of
 * decoding and compiling the module again, and no process (the gateway included) can change
 * under a running worker. */
static int load_module(struct policy *p, struct wasm_state *st, struct gate_error *err)
{
    autofree char *bytes = NULL;
    size_t len = 0;
    struct wasm_module *mod = NULL;
    if (gate_read_file(p->module, p->limits.module_mb * 1024 * 1024, &bytes, &len, err) < 0 ||
        wasm_module_load((const uint8_t *)bytes, len, &mod, err) < 0 ||
        wasi_check_imports(mod, err) < 0 || (st->module_fd = wasm_module_share(mod, err)) < 0) {
        wasm_module_free(mod);
        return gate_err_wrap(err, "module %s", p->module);
    }
    wasm_module_free(mod); /* the workers' copy is the image */
    return 0;
}

/* filesystem.read_only: directories the tool may read, preopened under their own paths. */
static int check_ro_dirs(const struct policy *p, struct gate_error *err)
{
    for (size_t i = 0; p->filesystem.read_only && p->filesystem.read_only[i]; i++) {
        struct stat sb;
        const char *d = p->filesystem.read_only[i];
        if (stat(d, &sb) < 0 || !S_ISDIR(sb.st_mode))
            return gate_err(err, GATE_E_POLICY,
                            "filesystem.read_only: %s is not a directory (the wasm tier "
                            "preopens directories)",
                            d);
    }
    return 0;
}

static int wasm_prepare(struct policy *p, struct gate_error *err)
{
    if (!p->module) return gate_err(err, GATE_E_POLICY, "isolation wasm needs `module`");
    if (check_ro_dirs(p, err) < 0) return -1;
    struct wasm_state *st = calloc(1, sizeof(*st));
    if (!st) return gate_err(err, GATE_E_NOMEM, "out of memory");
    st->module_fd = -1;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    if (load_module(p, st, err) < 0) {
        state_free(st);
        return -1;
    }
    st->name = strdup(p->name ? p->name : "tool");
    st->env = copy_strv(p->env);
    st->ro_dirs = copy_strv(p->filesystem.read_only);
    st->workspace = p->filesystem.workspace;
    uint64_t pages = p->limits.memory_mb * 16;
    st->max_mem_pages = pages > 65536 ? 65536 : (uint32_t)pages;
    st->output_cap = p->limits.output_bytes;
    st->uid = config.tool_uid;
    st->gid = config.tool_gid;
    st->drop_identity = drop_identity;
    st->helper = helper_path;
    /* Enough workers for every call the gateway may run at once, unless the policy says. */
    unsigned size = p->pool_size_set ? p->pool_size : config.max_concurrent;
    st->size = size > WASM_POOL_MAX ? WASM_POOL_MAX : size;
    if (!st->name || !st->env || !st->ro_dirs || wasm_pool_start(st, err) < 0) {
        if (!err->msg[0]) gate_err(err, GATE_E_NOMEM, "out of memory");
        state_free(st);
        return -1;
    }
    pthread_mutex_lock(&live_lock);
    st->next = live;
    live = st;
    pthread_mutex_unlock(&live_lock);
    p->sbx_state = st;
    p->sbx_state_free = state_free;
    return 0;
}

/* An empty per-call workspace owned by the tool identity. Returns an O_DIRECTORY fd. */
static int make_workspace(char *path, size_t cap, struct gate_error *err)
{
    snprintf(path, cap, "%s/ws-XXXXXX", ws_root);
    if (!mkdtemp(path)) return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm: mkdtemp %s", path);
    /* The worker runs as the tool identity; only it (and root) may use the directory. */
    if (drop_identity && chown(path, config.tool_uid, config.tool_gid) < 0) {
        rmdir(path);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm: chown workspace");
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rmdir(path);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm: open workspace");
    }
    return fd;
}

static int send_req(int sock, const struct wasm_req *req, int dirfd, const struct sbx_call *call)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {(void *)req, sizeof(*req)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    memset(cbuf, 0, sizeof(cbuf));
    if (dirfd >= 0) {
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &dirfd, sizeof(int));
    }
    ssize_t k;
    do
        k = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (k < 0 && errno == EINTR);
    if (k != (ssize_t)sizeof(*req)) return -1;
    /* send(MSG_NOSIGNAL), not write: a worker that died must not SIGPIPE the gateway. */
    for (size_t off = 0; off < call->input_len;) {
        k = send(sock, call->input + off, call->input_len - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        off += (size_t)k;
    }
    return 0;
}

/* Read exactly len bytes before the deadline. 0, -1 on EOF/error, -2 on timeout. */
static int read_deadline(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t now = gate_monotonic_ns();
        if (now >= deadline_ns) return -2;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)((deadline_ns - now) / 1000000 + 1));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) continue;
        ssize_t k = read(fd, p, len);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int read_stream(int fd, struct gate_buf *b, uint64_t len, uint64_t deadline_ns)
{
    if (!len) return 0;
    char *tmp = malloc(len);
    if (!tmp) return -1;
    int rc = read_deadline(fd, tmp, len, deadline_ns);
    if (rc == 0 && gate_buf_append(b, tmp, len) < 0) rc = -1;
    free(tmp);
    return rc;
}

/* The worker died or went silent: reap it and say how it ended. */
static void worker_lost(struct wasm_worker *w, int rc, struct sbx_result *res)
{
    int status = 0;
    if (w->sock >= 0) close(w->sock);
    w->sock = -1;
    if (rc == -2) kill(w->pid, SIGKILL);
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    w->pid = -1;
    res->exit_code = -1;
    if (rc == -2) {
        res->status = SBX_TIMED_OUT;
        snprintf(res->detail, sizeof(res->detail), "wall-clock timeout");
    } else if (WIFSIGNALED(status)) {
        res->status = SBX_KILLED;
        res->term_signal = WTERMSIG(status);
        snprintf(res->detail, sizeof(res->detail), "wasm worker killed by signal %d%s",
                 WTERMSIG(status), WTERMSIG(status) == SIGSYS ? " (seccomp)" : "");
    } else {
        res->status = SBX_KILLED;
        snprintf(res->detail, sizeof(res->detail), "wasm worker exited with status %d",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

static void map_outcome(const struct wasm_resp *resp, struct sbx_result *res)
{
    res->exit_code = -1;
    switch (resp->outcome) {
    case WASM_OUT_EXITED:
        res->exit_code = resp->exit_code;
        res->status = resp->exit_code == 0 ? SBX_SUCCEEDED : SBX_FAILED;
        break;
    case WASM_OUT_TRUNCATED:
        res->status = SBX_OUTPUT_TRUNCATED;
        res->output_truncated = true;
        snprintf(res->detail, sizeof(res->detail), "output cap reached");
        break;
    case WASM_OUT_TRAPPED:
        res->status = resp->trap == WASM_TRAP_FUEL       ? SBX_RESOURCE_LIMIT
                      : resp->trap == WASM_TRAP_DEADLINE ? SBX_TIMED_OUT
                                                         : SBX_TRAPPED;
        snprintf(res->detail, sizeof(res->detail), "%.*s", (int)sizeof(resp->detail), resp->detail);
        break;
    default:
        res->status = SBX_SANDBOX_ERROR;
        snprintf(res->detail, sizeof(res->detail), "%.*s", (int)sizeof(resp->detail), resp->detail);
        break;
    }
}

static int exchange(struct wasm_worker *w, const struct policy *p, const struct sbx_call *call,
                    int dirfd, struct sbx_result *res)
{
    uint64_t start = gate_monotonic_ns();
    uint64_t deadline = start + p->limits.wall_timeout_ms * 1000000ull;
    struct wasm_req req = {.magic = WASM_REQ_MAGIC,
                           .has_dir = dirfd >= 0,
                           .input_len = call->input_len,
                           .deadline_ns = deadline};
    req.fuel = p->limits.fuel ? p->limits.fuel : p->limits.cpu_time_ms * WASM_FUEL_PER_MS;
    snprintf(req.call_id, sizeof(req.call_id), "%s", call->call_id ? call->call_id : "");
    struct wasm_resp resp;
    /* A little grace beyond the interpreter's own deadline, so it can report it. */
    uint64_t hard = deadline + 200000000ull;
    if (send_req(w->sock, &req, dirfd, call) < 0)
        return -3; /* not delivered: the tool did not run */
    int rc = read_deadline(w->sock, &resp, sizeof(resp), hard);
    if (rc == 0 && resp.magic != WASM_RESP_MAGIC) rc = -1;
    if (rc == 0) rc = read_stream(w->sock, &res->out, resp.out_len, hard);
    if (rc == 0) rc = read_stream(w->sock, &res->err, resp.err_len, hard);
    if (rc < 0) {
        worker_lost(w, rc, res);
        return 0;
    }
    w->calls++;
    map_outcome(&resp, res);
    return resp.outcome == WASM_OUT_EXITED ? 1 : 0; /* reusable */
}

static void remove_workspace(int *dirfd, const char *path)
{
    if (*dirfd < 0) return;
    struct stat st;
    if (fstat(*dirfd, &st) == 0)
        sbx_remove_inside(*dirfd, st.st_dev); /* takes the descriptor */
    else
        close(*dirfd);
    *dirfd = -1;
    rmdir(path);
}

static int wasm_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
                    struct gate_error *err)
{
    struct wasm_state *st = p->sbx_state;
    struct wasm_worker w = {-1, -1, 0};
    char ws[4200] = "";
    int dirfd = -1;
    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    res->status = SBX_SANDBOX_ERROR;
    if (!st) return gate_err(err, GATE_E_SANDBOX, "wasm: policy was not prepared");
    if (st->workspace && (dirfd = make_workspace(ws, sizeof(ws), err)) < 0) return -1;
    if (wasm_pool_take(st, &w, err) < 0) {
        remove_workspace(&dirfd, ws);
        return -1;
    }
    int reusable = exchange(&w, p, call, dirfd, res);
    if (reusable == -3) { /* an idle worker had died; the call never started: use a new one */
        wasm_worker_kill(&w);
        if (wasm_worker_spawn(st, &w, err) < 0) {
            wasm_pool_put(st, &w, false);
            remove_workspace(&dirfd, ws);
            return -1;
        }
        reusable = exchange(&w, p, call, dirfd, res);
        if (reusable == -3) {
            res->status = SBX_SANDBOX_ERROR;
            snprintf(res->detail, sizeof(res->detail), "wasm worker unreachable");
            reusable = 0;
        }
    }
    wasm_pool_put(st, &w, reusable == 1);
    pthread_mutex_lock(&st->lock);
    st->calls++;
    st->traps += res->status == SBX_TRAPPED;
    pthread_mutex_unlock(&st->lock);
    __atomic_add_fetch(&metric_calls, 1, __ATOMIC_RELAXED);
    if (res->status == SBX_TRAPPED) __atomic_add_fetch(&metric_traps, 1, __ATOMIC_RELAXED);
    if (res->status == SBX_RESOURCE_LIMIT)
        __atomic_add_fetch(&metric_fuel_exhausted, 1, __ATOMIC_RELAXED);
    remove_workspace(&dirfd, ws);
    return 0;
}

static void wasm_metrics(struct gate_buf *out)
{
    static const char *const help[][3] = {
        {"gatehouse_wasm_calls_total", "counter", "Calls run in the wasm tier."},
        {"gatehouse_wasm_traps_total", "counter", "wasm calls that ended in a trap."},
        {"gatehouse_wasm_fuel_exhausted_total", "counter", "wasm calls that ran out of fuel."},
        {"gatehouse_wasm_pool_size", "gauge", "Most wasm workers a tool's pool keeps."},
        {"gatehouse_wasm_pool_idle", "gauge", "wasm workers waiting for a call."},
        {"gatehouse_wasm_pool_busy", "gauge", "wasm workers running a call."},
        {"gatehouse_wasm_pool_hits_total", "counter", "Calls that found an idle wasm worker."},
        {"gatehouse_wasm_pool_misses_total", "counter",
         "Calls that had to start their own wasm worker."},
        {"gatehouse_wasm_workers_spawned_total", "counter", "wasm workers started."},
    };
    const uint64_t totals[3] = {__atomic_load_n(&metric_calls, __ATOMIC_RELAXED),
                                __atomic_load_n(&metric_traps, __ATOMIC_RELAXED),
                                __atomic_load_n(&metric_fuel_exhausted, __ATOMIC_RELAXED)};
    for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++) {
        gate_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", help[i][0], help[i][2], help[i][0],
                        help[i][1]);
        if (i < 3) {
            gate_buf_printf(out, "%s %llu\n", help[i][0], (unsigned long long)totals[i]);
            continue;
        }
        pthread_mutex_lock(&live_lock);
        for (struct wasm_state *st = live; st; st = st->next) {
            pthread_mutex_lock(&st->lock);
            const uint64_t v[] = {st->size, st->nidle,  st->nbusy,
                                  st->hits, st->misses, st->spawned};
            pthread_mutex_unlock(&st->lock);
            gate_buf_printf(out, "%s{tool=\"%s\"} %llu\n", help[i][0], st->name,
                            (unsigned long long)v[i - 3]);
        }
        pthread_mutex_unlock(&live_lock);
    }
}

const struct sbx_ops sbx_wasm_ops = {
    .name = "wasm",
    .isolation = ISOLATION_WASM,
    .init = wasm_init,
    .prepare = wasm_prepare,
    .run = wasm_run,
    .metrics = wasm_metrics,
};
