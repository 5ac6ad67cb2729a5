/* worker.c: the process that executes WebAssembly calls.
 *
 * Forked from the gateway with the policy's decoded module already in memory (copy-on-write,
 * so instantiation per call is cheap). Before serving, the worker drops to the unprivileged
 * tool identity and installs a seccomp filter that allows only reading and writing its
 * socket, memory management, clocks, random bytes, exit, and openat2/getdents64/fstat/lseek/
 * close for files beneath a preopened workspace the gateway hands over per call. An
 * interpreter bug therefore cannot open files, make sockets or reach the gateway's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* Instantiate and run _start. Fills resp; returns the trap (WASM_TRAP_NONE on success). */
static enum wasm_trap execute(const struct wasm_state *st, const struct wasm_req *req,
                              struct wasi_ctx *w, struct wasm_resp *resp)
{
    struct wasm_limits_cfg lim;
    struct gate_error err = {0};
    wasm_limits_default(&lim);
    lim.fuel = req->fuel;
    lim.deadline_ns = req->deadline_ns;
    lim.max_mem_pages = st->max_mem_pages;
    lim.max_table_elems = 1u << 20;
    struct wasm_store *s = wasm_store_new(&lim);
    uint32_t n = wasm_module_nimports(st->mod);
    struct wasm_extern *imports = calloc(n ? n : 1, sizeof(*imports));
    struct wasm_instance *inst = NULL;
    enum wasm_trap trap = WASM_TRAP_NONE;
    struct wasm_extern start;
    resp->outcome = WASM_OUT_ERROR;
    if (!s || !imports) {
        snprintf(resp->detail, sizeof(resp->detail), "out of memory");
        goto out;
    }
    wasm_store_set_host_ctx(s, w);
    if (wasi_link(s, st->mod, w, imports, &err) < 0 ||
        (wasm_instantiate(s, st->mod, imports, n, &inst, &trap, &err) < 0 && !trap)) {
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
    resp->trap = trap;
    if (trap == WASM_TRAP_NONE || trap == WASM_TRAP_EXIT) {
        resp->outcome = WASM_OUT_EXITED;
        resp->exit_code = trap == WASM_TRAP_EXIT ? w->exit_code : 0;
    } else if (w->truncated) {
        resp->outcome = WASM_OUT_TRUNCATED;
    } else {
        resp->outcome = WASM_OUT_TRAPPED;
        snprintf(resp->detail, sizeof(resp->detail), "%s", wasm_trap_name(trap));
    }
out:
    free(imports);
    wasm_store_free(s);
    return trap;
}

int wasm_worker_serve(const struct wasm_state *st, int sock)
{
    struct wasm_req req;
    int dirfd = -1;
    if (recv_req(sock, &req, &dirfd) < 0) return 1;
    uint8_t *input = malloc(req.input_len ? req.input_len : 1);
    if (!input || req.input_len > (64u << 20) || wasm_read_full(sock, input, req.input_len) < 0) {
        free(input);
        return 1;
    }
    char *argv[] = {st->name, NULL};
    /* The policy's environment plus GATEHOUSE_TOOL and GATEHOUSE_CALL_ID, as other tiers give. */
    size_t nenv = 0;
    while (st->env && st->env[nenv])
        nenv++;
    char **env = calloc(nenv + 3, sizeof(char *));
    char tool_var[4200], call_var[80];
    req.call_id[sizeof(req.call_id) - 1] = 0;
    snprintf(tool_var, sizeof(tool_var), "GATEHOUSE_TOOL=%.4000s", st->name);
    snprintf(call_var, sizeof(call_var), "GATEHOUSE_CALL_ID=%s", req.call_id);
    if (!env) {
        free(input);
        return 1;
    }
    for (size_t i = 0; i < nenv; i++)
        env[i] = st->env[i];
    env[nenv] = tool_var;
    env[nenv + 1] = call_var;
    struct wasi_ctx w;
    wasi_ctx_init(&w, argv, env, input, req.input_len, st->output_cap, req.has_dir ? dirfd : -1);
    struct wasm_resp resp = {.magic = WASM_RESP_MAGIC};
    enum wasm_trap trap = execute(st, &req, &w, &resp);
    resp.out_len = w.out.len;
    resp.err_len = w.err.len;
    int rc = gate_write_all(sock, &resp, sizeof(resp)) < 0 ||
             (w.out.len && gate_write_all(sock, w.out.data, w.out.len) < 0) ||
             (w.err.len && gate_write_all(sock, w.err.data, w.err.len) < 0);
    wasi_ctx_free(&w);
    free(env);
    if (dirfd >= 0) close(dirfd);
    free(input);
    /* After a trap the instance's memory may hold anything; start from a fresh process. */
    return rc || (trap != WASM_TRAP_NONE && trap != WASM_TRAP_EXIT) ? 1 : 0;
}

static int install_filter(void)
{
    static const int allowed[] = {
        SCMP_SYS(read),       SCMP_SYS(write),
        SCMP_SYS(recvmsg),    SCMP_SYS(mmap),
        SCMP_SYS(munmap),     SCMP_SYS(mremap),
        SCMP_SYS(mprotect),   SCMP_SYS(brk),
        SCMP_SYS(madvise),    SCMP_SYS(exit),
        SCMP_SYS(exit_group), SCMP_SYS(clock_gettime),
        SCMP_SYS(getrandom),  SCMP_SYS(rt_sigreturn),
        SCMP_SYS(futex),      SCMP_SYS(close),
        SCMP_SYS(openat2),    SCMP_SYS(getdents64),
        SCMP_SYS(fstat),      SCMP_SYS(newfstatat),
        SCMP_SYS(lseek),      SCMP_SYS(clock_nanosleep),
    };
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) return -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    /* seccomp_load sets no_new_privs first, which also lets an unprivileged process load it. */
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
}

void wasm_worker_loop(const struct wasm_state *st, int fd)
{
    if (install_filter() < 0) _exit(122);
    for (unsigned calls = 0; calls < WASM_WORKER_MAX_CALLS; calls++)
        if (wasm_worker_serve(st, fd)) break;
    _exit(0);
}

/* The child side of spawn: isolate, then exec the helper or serve until told to stop.
 * Exit statuses: 120 dup2, 121 identity, 122 seccomp, 123 exec (see backend.c). */
__attribute__((noreturn)) static void worker_main(struct wasm_state *st, const char *helper,
                                                  int sock, uid_t uid, gid_t gid,
                                                  bool drop_identity)
{
    /* No PR_SET_PDEATHSIG: it follows the forking *thread*, which may be a short-lived request
     * thread. The worker notices the gateway's death instead when its socket reads EOF, and
     * ignores the job-control signals a terminal or supervisor sends the whole group. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(sock, 3) < 0) _exit(120);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        close(devnull);
    }
    /* Drop to the tool identity before the filter: the filter forbids setuid afterwards, and a
     * worker running as root could otherwise use any fd it was handed with root's rights. */
    if (drop_identity && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)) _exit(121);
    if (helper) {
        /* A fresh image: the worker must not carry a copy of the gateway's memory (tokens,
         * other policies) that an interpreter bug could read and print. no_new_privs first,
         * so the helper can never gain privileges through its file mode. */
        char *argv[] = {"gatehouse-wasm-worker", NULL}, *envp[] = {NULL};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(121);
        execve(helper, argv, envp);
        _exit(123);
    }
    wasm_worker_loop(st, 3);
}

static int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Hand an exec'd worker what it needs: module bytes, name, environment, caps. */
static int send_init(int sock, const struct wasm_state *st)
{
    struct wasm_init init = {.magic = WASM_INIT_MAGIC,
                             .max_mem_pages = st->max_mem_pages,
                             .output_cap = st->output_cap,
                             .module_len = st->len,
                             .name_len = strlen(st->name)};
    for (size_t i = 0; st->env && st->env[i]; i++)
        init.env_len += strlen(st->env[i]) + 1;
    if (send_all(sock, &init, sizeof(init)) < 0 || send_all(sock, st->bytes, st->len) < 0 ||
        send_all(sock, st->name, init.name_len) < 0)
        return -1;
    for (size_t i = 0; st->env && st->env[i]; i++)
        if (send_all(sock, st->env[i], strlen(st->env[i]) + 1) < 0) return -1;
    return 0;
}

int wasm_worker_spawn(struct wasm_state *st, const char *helper, uid_t uid, gid_t gid,
                      bool drop_identity, struct wasm_worker *w, struct gate_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm worker: socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm worker: fork");
    }
    if (pid == 0) {
        close(sv[0]);
        worker_main(st, helper, sv[1], uid, gid, drop_identity);
    }
    close(sv[1]);
    w->pid = pid;
    w->sock = sv[0];
    w->calls = 0;
    if (helper && send_init(w->sock, st) < 0) {
        wasm_worker_kill(w);
        return gate_err(err, GATE_E_SANDBOX, "wasm worker: %s did not start", helper);
    }
    return 0;
}

void wasm_worker_kill(struct wasm_worker *w)
{
    if (w->sock >= 0) close(w->sock);
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    w->sock = -1;
    w->pid = -1;
}
