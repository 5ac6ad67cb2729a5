/* vm.c: one guest: a jailed QEMU booted cold, restored from a snapshot, or saved to one.
 *
 * QEMU runs in the container jail (../container/jail.h) as the unprivileged tool uid,
 * with the guest's channel on its stdin/stdout (a virtio-serial port on a stdio
 * chardev), its own messages (stderr) and the guest console (the one 8250 UART, a
 * socket chardev on fd 3) on one socket, and, depending on how it starts, the
 * snapshot to restore on fd 4 (-incoming fd:4) or a QMP socket on fd 4 (the
 * snapshot is made through it). Nothing else of the
 * host is reachable from it: no files but its binary, libraries, firmware, the
 * kernel and this guest's image, read-only; no network namespace but an empty one, or, with
 * network.egress, the host's, every connect and datagram of QEMU decided by the BPF filter.
 * QEMU's own -sandbox filter (obsolete, elevateprivileges, spawn, resourcecontrol
 * denied) stacks on the jail's.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "microvm.h"

static uint64_t deadline_in(uint64_t ms)
{
    return gate_monotonic_ns() + ms * 1000000ULL;
}

static int ms_left(uint64_t deadline)
{
    uint64_t now = gate_monotonic_ns();
    if (now >= deadline) return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > 1000 ? 1000 : (int)ms;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

bool mvm_console_drain(struct mvm_vm *vm)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(vm->err_r, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return true; /* EAGAIN: nothing more for now */
        if (n == 0) return false;
        /* Keep the last MVM_CONSOLE_MAX bytes. */
        size_t keep = (size_t)n;
        if (vm->console_len + keep > sizeof(vm->console)) {
            size_t drop = vm->console_len + keep - sizeof(vm->console);
            if (drop > vm->console_len) drop = vm->console_len;
            memmove(vm->console, vm->console + drop, vm->console_len - drop);
            vm->console_len -= drop;
        }
        if (keep > sizeof(vm->console)) keep = sizeof(vm->console);
        memcpy(vm->console + vm->console_len, buf + (size_t)n - keep, keep);
        vm->console_len += keep;
    }
}

/* The line of text around position at in the console, into buf (control bytes dropped). */
static void console_line(const struct mvm_vm *vm, size_t at, char *buf, size_t len)
{
    size_t start = at, end = at;
    while (start > 0 && vm->console[start - 1] != '\n')
        start--;
    while (end < vm->console_len && vm->console[end] != '\n' && vm->console[end] != '\r')
        end++;
    size_t o = 0;
    for (size_t i = start; i < end && o + 1 < len; i++)
        if ((unsigned char)vm->console[i] >= 0x20 && (unsigned char)vm->console[i] < 0x7f)
            buf[o++] = vm->console[i];
    buf[o] = '\0';
}

bool mvm_console_panic(const struct mvm_vm *vm, char *buf, size_t len)
{
    static const char needle[] = "Kernel panic";
    for (size_t i = 0; i + sizeof(needle) - 1 <= vm->console_len; i++)
        if (memcmp(vm->console + i, needle, sizeof(needle) - 1) == 0) {
            console_line(vm, i, buf, len);
            return true;
        }
    return false;
}

void mvm_console_last(const struct mvm_vm *vm, char *buf, size_t len)
{
    size_t end = vm->console_len;
    while (end > 0 && (vm->console[end - 1] == '\n' || vm->console[end - 1] == '\r'))
        end--;
    buf[0] = '\0';
    if (end > 0) console_line(vm, end - 1, buf, len);
}

bool mvm_vm_dead(struct mvm_vm *vm)
{
    if (vm->reaped) return true;
    int st;
    if (waitpid(vm->proc.pid, &st, WNOHANG) == vm->proc.pid) vm->reaped = true;
    return vm->reaped;
}

void mvm_vm_destroy(struct mvm_vm *vm)
{
    if (!vm) return;
    if (!vm->reaped) ct_jail_kill(&mvm.jail, &vm->proc);
    if (ct_jail_reap(&mvm.jail, &vm->proc, vm->reaped) < 0)
        __atomic_add_fetch(&mvm.leaks, 1, __ATOMIC_RELAXED);
    close_fd(&vm->in_w);
    close_fd(&vm->out_r);
    close_fd(&vm->err_r);
    close_fd(&vm->pidfd);
    free(vm);
}

/* ---- the reaper: teardown after the call has its result ----------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct mvm_vm *queue;
    bool running, stopping;
    pthread_t thread;
} reaper = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&reaper.lock);
    for (;;) {
        struct mvm_vm *vm = reaper.queue;
        if (!vm && reaper.stopping) break;
        if (!vm) {
            pthread_cond_wait(&reaper.cond, &reaper.lock);
            continue;
        }
        reaper.queue = vm->next_retired;
        pthread_mutex_unlock(&reaper.lock);
        mvm_vm_destroy(vm);
        pthread_mutex_lock(&reaper.lock);
    }
    pthread_mutex_unlock(&reaper.lock);
    return NULL;
}

int mvm_reaper_start(struct gate_error *err)
{
    pthread_mutex_lock(&reaper.lock);
    reaper.stopping = false;
    int e = reaper.running ? 0 : pthread_create(&reaper.thread, NULL, reaper_main, NULL);
    if (e == 0) reaper.running = true;
    pthread_mutex_unlock(&reaper.lock);
    return e ? gate_err_errno(err, GATE_E_INTERNAL, e, "microvm: start the reaper") : 0;
}

void mvm_reaper_stop(void)
{
    pthread_mutex_lock(&reaper.lock);
    bool join = reaper.running;
    reaper.stopping = true;
    reaper.running = false;
    pthread_cond_signal(&reaper.cond);
    pthread_mutex_unlock(&reaper.lock);
    if (join) pthread_join(reaper.thread, NULL);
}

void mvm_vm_retire(struct mvm_vm *vm)
{
    /* Stopped now: a finished guest costs no more CPU. Reaping QEMU and removing its cgroup
     * (a few ms) need not delay the call's answer. */
    if (!vm->reaped) ct_jail_kill(&mvm.jail, &vm->proc);
    pthread_mutex_lock(&reaper.lock);
    bool queued = reaper.running;
    if (queued) {
        vm->next_retired = reaper.queue;
        reaper.queue = vm;
        pthread_cond_signal(&reaper.cond);
    }
    pthread_mutex_unlock(&reaper.lock);
    if (!queued) mvm_vm_destroy(vm);
}

/* Why the guest stopped answering, from the console: a panic line, else the last line. */
static int guest_gone(struct mvm_vm *vm, const char *while_, struct gate_error *err)
{
    char line[200];
    /* QEMU closed the channel or exited: give it a moment to finish, then read everything it
     * wrote to the console (EOF once it is gone). */
    struct pollfd p = {vm->pidfd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) ct_jail_kill(&mvm.jail, &vm->proc);
    if (!vm->reaped && waitpid(vm->proc.pid, NULL, 0) == vm->proc.pid) vm->reaped = true;
    for (int i = 0; i < 50 && mvm_console_drain(vm); i++) {
        struct pollfd c = {vm->err_r, POLLIN, 0};
        poll(&c, 1, 20);
    }
    if (mvm_console_panic(vm, line, sizeof(line)))
        return gate_err(err, GATE_E_SANDBOX, "microvm: guest kernel panic %s: %s", while_, line);
    mvm_console_last(vm, line, sizeof(line));
    return gate_err(err, GATE_E_SANDBOX, "microvm: the VM exited %s%s%s", while_,
                    line[0] ? ": " : "", line);
}

/* Wait for one frame of `type` with no payload (READY, PONG). */
static int wait_frame(struct mvm_vm *vm, uint32_t type, uint64_t deadline, const bool *cancel,
                      const char *what, struct gate_error *err)
{
    struct mvm_hdr h;
    size_t got = 0;
    while (got < sizeof(h)) {
        struct pollfd p[3] = {
            {vm->out_r, POLLIN, 0}, {vm->err_r, POLLIN, 0}, {vm->pidfd, POLLIN, 0}};
        int left = ms_left(deadline);
        if (left == 0)
            return gate_err(err, GATE_E_SANDBOX, "microvm: no answer from the guest %s", what);
        if (cancel && __atomic_load_n(cancel, __ATOMIC_RELAXED))
            return gate_err(err, GATE_E_SHUTTING_DOWN, "microvm: cancelled %s", what);
        if (poll(p, 3, cancel && left > 50 ? 50 : left) < 0 && errno != EINTR)
            return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: poll");
        if (p[1].revents) mvm_console_drain(vm);
        if (p[0].revents) {
            ssize_t n = read(vm->out_r, (char *)&h + got, sizeof(h) - got);
            if (n > 0) got += (size_t)n;
            if (n == 0) return guest_gone(vm, what, err);
        }
        if (p[2].revents && !p[0].revents) return guest_gone(vm, what, err);
    }
    if (h.type != type || h.len != 0)
        return gate_err(err, GATE_E_SANDBOX, "microvm: unexpected frame %u from the guest %s",
                        h.type, what);
    return 0;
}

/* Write all of buf to the guest (a rehearsal frame can exceed the pipe's buffer while the
 * restore is still loading). */
static int write_deadline(struct mvm_vm *vm, const void *buf, size_t len, uint64_t deadline)
{
    const char *p = buf;
    while (len > 0) {
        struct pollfd w = {vm->in_w, POLLOUT, 0};
        if (ms_left(deadline) == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (poll(&w, 1, ms_left(deadline)) <= 0) continue;
        ssize_t n = write(vm->in_w, p, len);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
        if (n > 0) p += n, len -= (size_t)n;
    }
    return 0;
}

/* Start QEMU for g: fds 0 and 1 the agent's channel, 2 and 3 its stderr and the console (one
 * socket), 4 extra_fd if >= 0. */
static int launch(struct mvm_guest *g, char *const *tail, int extra_fd, struct mvm_vm **out,
                  struct gate_error *err)
{
    struct mvm_vm *vm = calloc(1, sizeof(*vm));
    if (!vm) return gate_err(err, GATE_E_NOMEM, "out of memory");
    vm->in_w = vm->out_r = vm->err_r = vm->pidfd = -1;
    vm->proc.pid = -1;
    vm->reaped = true; /* nothing to reap until the jail exists */
    char *argv[128];
    size_t n = 0;
    for (size_t i = 0; g->argv[i] && n < 120; i++)
        argv[n++] = g->argv[i];
    for (size_t i = 0; tail && tail[i] && n < 126; i++)
        argv[n++] = tail[i];
    argv[n] = NULL;
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
    int rc = -1;
    /* QEMU's stderr and the console share a socket: a jailed QEMU could not reopen a pipe of
     * ours by path, but a socket chardev takes an fd. */
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(o, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e) < 0) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: pipe2");
        goto out;
    }
    int fds[5] = {in[0], o[1], e[1], e[1], extra_fd};
    if (ct_jail_spawn(&mvm.jail, &g->plan, argv, fds, extra_fd >= 0 ? 5 : 4, &g->vmm_limits,
                      &vm->proc, err) < 0) {
        gate_err_wrap(err, "microvm: jail for QEMU");
        goto out;
    }
    vm->reaped = false;
    vm->in_w = steal_fd(&in[1]);
    vm->out_r = steal_fd(&o[0]);
    vm->err_r = steal_fd(&e[0]);
    fcntl(vm->out_r, F_SETFL, O_NONBLOCK);
    fcntl(vm->err_r, F_SETFL, O_NONBLOCK);
    fcntl(vm->in_w, F_SETFL, O_NONBLOCK);
    vm->pidfd = (int)syscall(SYS_pidfd_open, vm->proc.pid, 0);
    if (vm->pidfd < 0) { /* without it a dead VMM would look alive until the deadline */
        gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: pidfd_open");
        goto out;
    }
    *out = vm;
    vm = NULL;
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&o[i]);
        close_fd(&e[i]);
    }
    mvm_vm_destroy(vm);
    return rc;
}

int mvm_vm_start(struct mvm_guest *g, enum mvm_boot how, const struct gate_buf *ping,
                 const bool *cancel, struct mvm_vm **out, struct gate_error *err)
{
    static char *const restore_tail[] = {"-incoming", "fd:4", NULL};
    autoclose int snap = -1;
    if (how == MVM_RESTORE && (snap = open(g->snapshot, O_RDONLY | O_CLOEXEC)) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: snapshot %s", g->snapshot);
    struct mvm_vm *vm = NULL;
    if (launch(g, how == MVM_RESTORE ? restore_tail : NULL, snap, &vm, err) < 0) goto fail;
    close_fd(&snap);
    /* A restore fills the pool in the background: it must not take CPU from a call. */
    if (how == MVM_RESTORE) ct_jail_cpu_background(&mvm.jail, &vm->proc, true);
    uint64_t deadline = deadline_in(MVM_BOOT_TIMEOUT_MS);
    if (how == MVM_RESTORE) {
        /* A restored agent sits in read(): a PING proves the restore finished and it runs. */
        struct mvm_hdr bare = {MVM_PING, 0};
        const void *msg = ping ? (const void *)ping->data : &bare;
        size_t len = ping ? ping->len : sizeof(bare);
        if (write_deadline(vm, msg, len, deadline) < 0) {
            gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: write to the guest");
            goto fail;
        }
        if (wait_frame(vm, MVM_PONG, deadline, cancel, "after the restore", err) < 0) goto fail;
        __atomic_add_fetch(&mvm.restores, 1, __ATOMIC_RELAXED);
    } else {
        if (wait_frame(vm, MVM_READY, deadline, cancel, "while it booted", err) < 0) goto fail;
        __atomic_add_fetch(&mvm.cold_boots, 1, __ATOMIC_RELAXED);
    }
    *out = vm;
    return 0;
fail:
    __atomic_add_fetch(&mvm.boot_failures, 1, __ATOMIC_RELAXED);
    mvm_vm_destroy(vm);
    return -1;
}

/* ---- the snapshot: QMP stop + migrate to a file ---------------------------------------- */

struct qmp {
    int fd;
    char buf[16384];
    size_t len;
    uint64_t deadline;
};

/* The next JSON line from QEMU (events included). */
static json_t *qmp_line(struct qmp *q, struct gate_error *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            *nl = '\0';
            json_t *j = json_loads(q->buf, 0, NULL);
            size_t used = (size_t)(nl - q->buf) + 1;
            memmove(q->buf, q->buf + used, q->len - used);
            q->len -= used;
            if (j) return j;
            continue;
        }
        if (q->len == sizeof(q->buf)) {
            gate_err(err, GATE_E_SANDBOX, "microvm: QMP line too long");
            return NULL;
        }
        struct pollfd p = {q->fd, POLLIN, 0};
        int left = ms_left(q->deadline);
        if (left == 0 || poll(&p, 1, left) <= 0) {
            if (ms_left(q->deadline) == 0) {
                gate_err(err, GATE_E_SANDBOX, "microvm: QMP did not answer");
                return NULL;
            }
            continue;
        }
        ssize_t n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
        if (n <= 0) {
            gate_err(err, GATE_E_SANDBOX, "microvm: QMP connection closed");
            return NULL;
        }
        q->len += (size_t)n;
    }
}

/* Send one command (with pass_fd as SCM_RIGHTS if >= 0) and return its "return" value. */
static json_t *qmp_exec(struct qmp *q, const char *cmd, int pass_fd, struct gate_error *err)
{
    size_t len = strlen(cmd);
    struct iovec iov = {(void *)cmd, len};
    char ctl[CMSG_SPACE(sizeof(int))];
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        memset(ctl, 0, sizeof(ctl));
        msg.msg_control = ctl;
        msg.msg_controllen = sizeof(ctl);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    if (sendmsg(q->fd, &msg, MSG_NOSIGNAL) != (ssize_t)len) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: QMP send");
        return NULL;
    }
    for (;;) {
        json_t *j = qmp_line(q, err);
        if (!j) return NULL;
        json_t *ret = json_object_get(j, "return");
        json_t *e = json_object_get(j, "error");
        if (ret) {
            json_incref(ret);
            json_decref(j);
            return ret;
        }
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            gate_err(err, GATE_E_SANDBOX, "microvm: QMP %.60s: %s", cmd, desc ? desc : "error");
            json_decref(j);
            return NULL;
        }
        json_decref(j); /* an event */
    }
}

static int qmp_do(struct qmp *q, const char *cmd, int pass_fd, struct gate_error *err)
{
    json_t *r = qmp_exec(q, cmd, pass_fd, err);
    json_decref(r);
    return r ? 0 : -1;
}

/* Poll query-migrate until the migration completed (or failed). */
static int qmp_migrated(struct qmp *q, struct gate_error *err)
{
    for (;;) {
        json_t *r = qmp_exec(q, "{\"execute\":\"query-migrate\"}\n", -1, err);
        if (!r) return -1;
        const char *st = json_string_value(json_object_get(r, "status"));
        bool done = st && strcmp(st, "completed") == 0;
        bool failed = !st || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0;
        json_decref(r);
        if (done) return 0;
        if (failed) return gate_err(err, GATE_E_SANDBOX, "microvm: saving the snapshot failed");
        if (ms_left(q->deadline) == 0)
            return gate_err(err, GATE_E_SANDBOX, "microvm: saving the snapshot timed out");
        poll(NULL, 0, 2); /* QEMU writes ~20 MB: a few ms between questions */
    }
}

int mvm_snapshot(struct mvm_guest *g, struct gate_error *err)
{
    /* Without the run state in the stream, a restore starts the guest at once (QEMU would
     * otherwise keep it stopped, as it was when saved). */
    static char *const qmp_tail[] = {"-chardev", "socket,id=qmp,fd=4",
                                     "-mon",     "chardev=qmp,mode=control",
                                     "-global",  "migration.store-global-state=off",
                                     NULL};
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", g->snapshot);
    autoclose int file = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (file < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: create %s", tmp);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: socketpair");
    struct qmp q = {.fd = sv[0], .deadline = deadline_in(MVM_BOOT_TIMEOUT_MS)};
    struct mvm_vm *vm = NULL;
    int rc = launch(g, qmp_tail, sv[1], &vm, err);
    close(sv[1]);
    if (rc == 0 &&
        (rc = wait_frame(vm, MVM_READY, q.deadline, NULL, "while it booted", err)) == 0) {
        /* Booted and idle in read(): stop the vCPUs and write the whole state out once. */
        json_t *greeting = qmp_line(&q, err);
        json_decref(greeting);
        rc = greeting ? 0 : -1;
        if (rc == 0) rc = qmp_do(&q, "{\"execute\":\"qmp_capabilities\"}\n", -1, err);
        if (rc == 0) rc = qmp_do(&q, "{\"execute\":\"stop\"}\n", -1, err);
        if (rc == 0)
            rc = qmp_do(&q, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"snapshot\"}}\n",
                        file, err);
        if (rc == 0)
            rc = qmp_do(&q, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:snapshot\"}}\n",
                        -1, err);
        if (rc == 0) rc = qmp_migrated(&q, err);
    }
    close(sv[0]);
    if (rc < 0 && vm && !mvm_vm_dead(vm)) mvm_console_drain(vm);
    mvm_vm_destroy(vm);
    if (rc == 0 && (fsync(file) < 0 || rename(tmp, g->snapshot) < 0))
        rc = gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: save %s", g->snapshot);
    if (rc < 0) unlink(tmp);
    return rc;
}
