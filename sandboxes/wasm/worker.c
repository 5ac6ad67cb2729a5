/* worker.c: the serving loop of gatehouse-wasm-worker, the process that executes WebAssembly
 * calls (worker_exec.c sets it up).
 *
 * The worker runs as the unprivileged tool identity under a seccomp filter (worker_filter.c)
 * that kills it on any system call outside a short list: reading and writing its socket,
 * memory management, clocks, random bytes, exit, and the file calls WASI needs on descriptors
 * beneath the directories it was given (openat2 resolves every path, see wasi_path.c). It
 * cannot open a socket, start a process or signal one, so an interpreter bug stays inside this
 * process, which holds nothing of the gateway's memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "wasm_tier.h"

int wasm_read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t k = read(fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Receive a request header and, if attached, the workspace directory fd. */
static int recv_req(int sock, struct wasm_req *req, int *dirfd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {req, sizeof(*req)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    *dirfd = -1;
    ssize_t k;
    do
        k = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (k < 0 && errno == EINTR);
    if (k <= 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(dirfd, CMSG_DATA(c), sizeof(int));
    if ((size_t)k < sizeof(*req) &&
        wasm_read_full(sock, (uint8_t *)req + k, sizeof(*req) - (size_t)k) < 0)
        return -1;
    return req->magic == WASM_REQ_MAGIC ? 0 : -1;
}

/* How a finished run is reported. */
static void classify(enum wasm_trap trap, const struct wasi_ctx *w, struct wasm_resp *resp)
{
    resp->trap = trap;
    if (trap == WASM_TRAP_NONE || trap == WASM_TRAP_EXIT) {
        resp->outcome = WASM_OUT_EXITED;
        resp->exit_code = trap == WASM_TRAP_EXIT ? w->exit_code : 0;
    } else if (w->truncated) {
        resp->outcome = WASM_OUT_TRUNCATED;
    } else if (w->raised) {
        resp->outcome = WASM_OUT_TRAPPED;
        snprintf(resp->detail, sizeof(resp->detail), "proc_raise: signal %d (%s)", w->raised,
                 sigabbrev_np(w->raised) ? sigabbrev_np(w->raised) : "?");
    } else {
        resp->outcome = WASM_OUT_TRAPPED;
        snprintf(resp->detail, sizeof(resp->detail), "%s", wasm_trap_name(trap));
    }
}

/* Instantiate and run _start. Fills resp; returns the trap (WASM_TRAP_NONE on success). */
static enum wasm_trap execute(const struct wasm_worker_cfg *cfg, const struct wasm_req *req,
                              struct wasi_ctx *w, struct wasm_resp *resp)
{
    struct wasm_limits_cfg lim;
    struct gate_error err = {0};
    wasm_limits_default(&lim);
    lim.fuel = req->fuel;
    lim.deadline_ns = req->deadline_ns;
    lim.max_mem_pages = cfg->max_mem_pages;
    lim.max_table_elems = 1u << 20;
    struct wasm_store *s = wasm_store_new(&lim);
    uint32_t n = wasm_module_nimports(cfg->mod);
    autofree struct wasm_extern *imports = calloc(n ? n : 1, sizeof(*imports));
    struct wasm_instance *inst = NULL;
    enum wasm_trap trap = WASM_TRAP_NONE;
    struct wasm_extern start;
    resp->outcome = WASM_OUT_ERROR;
    if (!s || !imports) {
        snprintf(resp->detail, sizeof(resp->detail), "out of memory");
        goto out;
    }
    wasm_store_set_host_ctx(s, w);
    if (wasi_link(s, cfg->mod, w, imports, &err) < 0 ||
        (wasm_instantiate(s, cfg->mod, imports, n, &inst, &trap, &err) < 0 && !trap)) {
        snprintf(resp->detail, sizeof(resp->detail), "%.199s", err.msg);
        goto out;
    }
    if (!trap) {
        if (wasm_instance_export(inst, "_start", &start) < 0 || start.kind != WASM_EXT_FUNC ||
            wasm_func_type(start.u.func)->nparams || wasm_func_type(start.u.func)->nresults) {
            snprintf(resp->detail, sizeof(resp->detail), "module exports no _start function");
            goto out;
        }
        uint64_t slots[1] = {0};
        trap = wasm_call(s, start.u.func, slots);
    }
    classify(trap, w, resp);
out:
    wasm_store_free(s);
    return trap;
}

/* The tool's environment: the policy's, plus GATEHOUSE_TOOL and GATEHOUSE_CALL_ID as the other
 * tiers give. The strings are borrowed; the caller frees the vector. */
static char **tool_env(const struct wasm_worker_cfg *cfg, char *tool_var, char *call_var)
{
    size_t nenv = 0;
    while (cfg->env && cfg->env[nenv])
        nenv++;
    char **env = calloc(nenv + 3, sizeof(char *));
    if (!env) return NULL;
    for (size_t i = 0; i < nenv; i++)
        env[i] = cfg->env[i];
    env[nenv] = tool_var;
    env[nenv + 1] = call_var;
    return env;
}

/* The response header and both streams, in one writev when the socket takes it all. */
static int send_resp(int sock, const struct wasm_resp *resp, const struct gate_buf *out,
                     const struct gate_buf *err)
{
    struct iovec iov[3] = {
        {(void *)resp, sizeof(*resp)}, {out->data, out->len}, {err->data, err->len}};
    size_t total = sizeof(*resp) + out->len + err->len, done = 0;
    while (done < total) {
        ssize_t k = writev(sock, iov, 3);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        done += (size_t)k;
        for (int i = 0; i < 3 && k > 0; i++) { /* skip what was written */
            size_t take = (size_t)k < iov[i].iov_len ? (size_t)k : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            k -= (ssize_t)take;
        }
    }
    return 0;
}

/* Run one call. Returns 1 if the worker must exit. */
static int serve(const struct wasm_worker_cfg *cfg, int sock)
{
    struct wasm_req req;
    int dirfd = -1;
    if (recv_req(sock, &req, &dirfd) < 0) return 1;
    autoclose int dir = dirfd;
    if (req.input_len > (64u << 20)) return 1;
    autofree uint8_t *input = malloc(req.input_len ? req.input_len : 1);
    if (!input || wasm_read_full(sock, input, req.input_len) < 0) return 1;
    char *argv[] = {cfg->name, NULL};
    char tool_var[4200], call_var[80];
    req.call_id[sizeof(req.call_id) - 1] = 0;
    snprintf(tool_var, sizeof(tool_var), "GATEHOUSE_TOOL=%.4000s", cfg->name);
    snprintf(call_var, sizeof(call_var), "GATEHOUSE_CALL_ID=%s", req.call_id);
    autofree char **env = tool_env(cfg, tool_var, call_var);
    if (!env) return 1;
    struct wasi_ctx w;
    wasi_ctx_init(&w, argv, env, input, req.input_len, cfg->output_cap, req.has_dir ? dir : -1);
    w.deadline_ns = req.deadline_ns;
    for (size_t i = 0; cfg->ro_dirs && cfg->ro_dirs[i]; i++)
        wasi_ctx_add_preopen(&w, cfg->ro_fds[i], cfg->ro_dirs[i], true);
    struct wasm_resp resp = {.magic = WASM_RESP_MAGIC};
    enum wasm_trap trap = execute(cfg, &req, &w, &resp);
    resp.out_len = w.out.len;
    resp.err_len = w.err.len;
    int rc = send_resp(sock, &resp, &w.out, &w.err);
    wasi_ctx_free(&w);
    /* After a trap the instance's memory may hold anything; start from a fresh process. */
    return rc || (trap != WASM_TRAP_NONE && trap != WASM_TRAP_EXIT) ? 1 : 0;
}

void wasm_worker_loop(const struct wasm_worker_cfg *cfg, int fd)
{
    for (unsigned calls = 0; calls < WASM_WORKER_MAX_CALLS; calls++)
        if (serve(cfg, fd)) break;
    _exit(0);
}
