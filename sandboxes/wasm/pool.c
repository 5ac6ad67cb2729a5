/* pool.c: wasm workers, started ahead of demand and reused.
 *
 * Each wasm policy owns a pool of at most `size` workers (pool.size, default the gateway's
 * --max-concurrent, so every call that may run at once can have one). A refill thread keeps
 * WASM_POOL_HEADROOM workers idle while the pool is below its size: the first ones start when
 * the policy loads, and under load the pool grows ahead of the calls until each concurrent
 * call finds a worker waiting. A call takes an idle worker (a hit) or, with none idle, starts
 * one itself (a miss); afterwards the worker goes back to the pool, unless it trapped, served
 * WASM_WORKER_MAX_CALLS calls, or the pool is full, in which case it is killed and the thread
 * starts a replacement in the background.
 *
 * A worker is gatehouse-wasm-worker, exec'd as the tool identity: never a plain fork of the
 * gateway, which would hold a copy of the gateway's memory (see backend.c's init).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sbx_internal.h"
#include "wasm_tier.h"

/* After a failed start, wait before the next so a broken setup does not spin: 100 ms, doubling
 * up to 10 s while starts keep failing. */
#define RETRY_DELAY_MS 100
#define RETRY_DELAY_MAX_MS 10000

struct child_args {
    const struct wasm_state *st;
    int sock, status, module;
};

/* The child, which shares the gateway's memory (CLONE_VM|CLONE_VFORK) until execve: only
 * system calls, nothing that allocates or takes a lock, and the identity changes through the
 * raw syscalls (glibc's wrappers would try to change every thread of the gateway). Failures
 * are reported on the status pipe (fd 4 once moved there) with the step's name and errno. */
static int worker_child(void *arg)
{
    const struct child_args *a = arg;
    const struct wasm_state *st = a->st;
    /* Move the three descriptors above the target numbers first, so no dup2 overwrites one
     * still needed, then onto 3, 4, 5 without CLOEXEC; everything else is closed. */
    int fds[3] = {fcntl(a->sock, F_DUPFD, 10), fcntl(a->status, F_DUPFD, 10),
                  fcntl(a->module, F_DUPFD, 10)};
    if (fds[1] < 0) _exit(127);
    if (fds[0] < 0 || fds[2] < 0) sbx_child_fail(fds[1], "move descriptors", errno);
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], WASM_FD_SOCK + i) < 0) sbx_child_fail(fds[1], "dup2", errno);
    sbx_close_fds_from(WASM_FD_MODULE + 1);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0) sbx_child_fail(WASM_FD_STATUS, "open /dev/null", errno);
    for (int i = 0; i < 3; i++)
        if (dup2(devnull, i) < 0) sbx_child_fail(WASM_FD_STATUS, "dup2 /dev/null", errno);
    if (devnull > 2) close(devnull);
    /* Signals arrive blocked (see wasm_worker_spawn): default every handler before unblocking,
     * so none of the gateway's runs here. No PR_SET_PDEATHSIG: it follows the forking
     * *thread*; the worker notices the gateway's death when its socket reads EOF, and ignores
     * the job-control signals a terminal or a supervisor sends the whole group. */
    struct sigaction dfl = {.sa_handler = SIG_DFL}, ign = {.sa_handler = SIG_IGN};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, sig == SIGHUP || sig == SIGINT || sig == SIGTERM ? &ign : &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Drop to the tool identity before exec: the worker must never run with the gateway's
     * privileges, and its seccomp filter forbids setuid afterwards. Groups, then gid, then
     * uid: once uid is unprivileged the process can no longer change its groups. */
    if (st->drop_identity) {
        if (syscall(SYS_setgroups, 0, NULL) < 0) sbx_child_fail(WASM_FD_STATUS, "setgroups", errno);
        if (syscall(SYS_setresgid, st->gid, st->gid, st->gid) < 0)
            sbx_child_fail(WASM_FD_STATUS, "setresgid", errno);
        if (syscall(SYS_setresuid, st->uid, st->uid, st->uid) < 0)
            sbx_child_fail(WASM_FD_STATUS, "setresuid", errno);
    }
    /* no_new_privs first, so the worker can never gain privileges through its file mode. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sbx_child_fail(WASM_FD_STATUS, "prctl(PR_SET_NO_NEW_PRIVS)", errno);
    /* A fresh image with an empty environment: nothing of the gateway's memory (tokens, other
     * policies) is there for an interpreter bug to read and print. */
    char *argv[] = {"gatehouse-wasm-worker", NULL}, *envp[] = {NULL};
    execve(st->helper, argv, envp);
    sbx_child_fail(WASM_FD_STATUS, "execve gatehouse-wasm-worker", errno);
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

static uint64_t strv_bytes(char *const *v)
{
    uint64_t n = 0;
    for (size_t i = 0; v && v[i]; i++)
        n += strlen(v[i]) + 1;
    return n;
}

static int send_strv(int sock, char *const *v)
{
    for (size_t i = 0; v && v[i]; i++)
        if (send_all(sock, v[i], strlen(v[i]) + 1) < 0) return -1;
    return 0;
}

/* The worker's settings: caps, the tool's name, environment and read-only directories. */
static int send_init(int sock, const struct wasm_state *st)
{
    struct wasm_init init = {.magic = WASM_INIT_MAGIC,
                             .max_mem_pages = st->max_mem_pages,
                             .output_cap = st->output_cap,
                             .name_len = strlen(st->name),
                             .env_len = strv_bytes(st->env),
                             .ro_len = strv_bytes(st->ro_dirs)};
    if (send_all(sock, &init, sizeof(init)) < 0 || send_all(sock, st->name, init.name_len) < 0 ||
        send_strv(sock, st->env) < 0 || send_strv(sock, st->ro_dirs) < 0)
        return -1;
    return 0;
}

int wasm_worker_spawn(struct wasm_state *st, struct wasm_worker *w, struct gate_error *err)
{
    int sv[2], status[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm worker: socketpair");
    if (pipe2(status, O_CLOEXEC) < 0) {
        close(sv[0]);
        close(sv[1]);
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "wasm worker: pipe");
    }
    autoclose int status_rd = status[0];
    enum { STACK_SIZE = 64 * 1024 };
    autofree char *stack = malloc(STACK_SIZE);
    struct child_args args = {st, sv[1], status[1], st->module_fd};
    /* CLONE_VM|CLONE_VFORK (what posix_spawn does): no copy of the gateway's page tables,
     * whose copying would stall every other thread of the gateway for the length of a fork,
     * and this thread waits until the child has exec'd or failed. All signals stay blocked
     * across the clone, so no gateway handler can run in the child on shared memory. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    autokill_pid pid_t pid =
        stack ? clone(worker_child, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &args)
              : -1;
    int fork_errno = stack ? errno : ENOMEM;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    close(status[1]);
    if (pid < 0) {
        close(sv[0]);
        return gate_err_errno(err, GATE_E_SANDBOX, fork_errno, "wasm worker: clone");
    }
    /* A worker that failed before reading its settings says why on the status pipe. */
    bool sent = send_init(sv[0], st) == 0;
    if (sbx_child_status(status_rd, err) < 0 ||
        (!sent && gate_err(err, GATE_E_SANDBOX, "did not accept its settings") < 0)) {
        close(sv[0]);
        return gate_err_wrap(err, "wasm worker");
    }
    w->pid = pid;
    pid = -1; /* handed over: the cleanup no longer kills it */
    w->sock = sv[0];
    w->calls = 0;
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

/* ---- the pool ------------------------------------------------------------------------- */
static void wait_ms(struct wasm_state *st, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&st->cond, &st->lock, &ts);
}

static bool wants_worker(const struct wasm_state *st)
{
    return !st->stopping && st->nidle + st->nbusy + st->nspawning < st->size &&
           st->nidle + st->nspawning < WASM_POOL_HEADROOM;
}

static void *refill_main(void *arg)
{
    struct wasm_state *st = arg;
    uint64_t delay_ms = RETRY_DELAY_MS;
    pthread_mutex_lock(&st->lock);
    while (!st->stopping) {
        if (!wants_worker(st)) {
            pthread_cond_wait(&st->cond, &st->lock);
            continue;
        }
        st->nspawning++;
        pthread_mutex_unlock(&st->lock);
        struct wasm_worker w = {-1, -1, 0};
        struct gate_error err = {0};
        int rc = wasm_worker_spawn(st, &w, &err);
        pthread_mutex_lock(&st->lock);
        st->nspawning--;
        if (rc < 0) {
            st->spawn_failures++;
            gate_log("warn", "wasm.pool_refill_failed", "tool %s: %s", st->name, err.msg);
            wait_ms(st, delay_ms);
            delay_ms = delay_ms * 2 > RETRY_DELAY_MAX_MS ? RETRY_DELAY_MAX_MS : delay_ms * 2;
            continue;
        }
        delay_ms = RETRY_DELAY_MS;
        st->spawned++;
        if (st->stopping || st->nidle >= st->size) {
            pthread_mutex_unlock(&st->lock);
            wasm_worker_kill(&w);
            pthread_mutex_lock(&st->lock);
            continue;
        }
        st->idle[st->nidle++] = w;
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int wasm_pool_start(struct wasm_state *st, struct gate_error *err)
{
    st->idle = calloc(st->size ? st->size : 1, sizeof(*st->idle));
    if (!st->idle) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (st->size == 0) return 0;
    int e = pthread_create(&st->thread, NULL, refill_main, st);
    if (e != 0) return gate_err_errno(err, GATE_E_INTERNAL, e, "wasm: start the pool thread");
    st->thread_started = true;
    return 0;
}

void wasm_pool_stop(struct wasm_state *st)
{
    pthread_mutex_lock(&st->lock);
    st->stopping = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    if (st->thread_started) pthread_join(st->thread, NULL);
    st->thread_started = false;
    for (unsigned i = 0; i < st->nidle; i++)
        wasm_worker_kill(&st->idle[i]);
    st->nidle = 0;
}

int wasm_pool_take(struct wasm_state *st, struct wasm_worker *w, struct gate_error *err)
{
    pthread_mutex_lock(&st->lock);
    st->nbusy++;
    if (st->nidle > 0) {
        /* Most recently used first: its pages are the warmest. */
        *w = st->idle[--st->nidle];
        st->hits++;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    st->misses++;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    int rc = wasm_worker_spawn(st, w, err);
    pthread_mutex_lock(&st->lock);
    if (rc < 0)
        st->nbusy--;
    else
        st->spawned++;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void wasm_pool_put(struct wasm_state *st, struct wasm_worker *w, bool reusable)
{
    pthread_mutex_lock(&st->lock);
    st->nbusy--;
    bool keep = reusable && w->pid > 0 && w->calls < WASM_WORKER_MAX_CALLS && !st->stopping &&
                st->nidle + st->nbusy + st->nspawning < st->size;
    if (keep) st->idle[st->nidle++] = *w;
    pthread_cond_signal(&st->cond); /* a retired worker is replaced in the background */
    pthread_mutex_unlock(&st->lock);
    if (!keep) wasm_worker_kill(w);
}
