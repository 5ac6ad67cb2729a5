/* supervise.c: drive one started child to its end.
 *
 * Feeds the arguments to stdin, drains stdout and stderr with poll() up to the
 * output cap (so a flooding tool can never deadlock on a full pipe or grow the
 * gateway's memory past the cap), and enforces the wall-clock deadline on
 * CLOCK_MONOTONIC. The child's exit is observed through a pidfd so that
 * kill_all runs while the child is still a zombie: its pid, which is also the
 * process group id, cannot be reused before everything in the group is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sbx_internal.h"

/* After the child has exited (or was killed) stragglers outside its kill scope could keep a
 * pipe open; stop waiting for EOF after this long. */
#define DRAIN_AFTER_EXIT_MS 1000

static int pidfd_open_compat(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

struct sv_state {
    struct supervise *s;
    struct sbx_result *res;
    uint64_t total;
    bool killed;
    bool timed_out;
    size_t written;
};

static void kill_once(struct sv_state *st)
{
    if (!st->killed && st->s->kill_all) {
        st->s->kill_all(st->s->ctx);
        st->killed = true;
    }
}

/* Read what is available on fd into buf, keeping at most the remaining cap. */
static void drain(struct sv_state *st, int *fd, struct gate_buf *buf)
{
    char chunk[65536];
    ssize_t n = read(*fd, chunk, sizeof(chunk));
    if (n < 0) {
        if (errno != EINTR && errno != EAGAIN) close_fd(fd);
        return;
    }
    if (n == 0) {
        close_fd(fd);
        return;
    }
    uint64_t cap = st->s->output_bytes;
    size_t keep = (size_t)n;
    if (st->total + keep > cap) {
        keep = st->total >= cap ? 0 : (size_t)(cap - st->total);
        st->res->output_truncated = true;
        kill_once(st);
    }
    if (keep && gate_buf_append(buf, chunk, keep) < 0) {
        st->res->output_truncated = true; /* out of memory: treat as the cap */
        kill_once(st);
    }
    st->total += keep;
}

static void feed_stdin(struct sv_state *st)
{
    struct supervise *s = st->s;
    ssize_t w = write(s->stdin_fd, s->input + st->written, s->input_len - st->written);
    if (w < 0) {
        if (errno != EINTR && errno != EAGAIN)
            close_fd(&s->stdin_fd); /* EPIPE: the tool does not read its input */
        return;
    }
    st->written += (size_t)w;
    if (st->written >= s->input_len) close_fd(&s->stdin_fd);
}

void sbx_result_from_wait(struct sbx_result *res, int status)
{
    if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
        res->term_signal = 0;
        res->status = res->exit_code == 0 ? SBX_SUCCEEDED : SBX_FAILED;
    } else if (WIFSIGNALED(status)) {
        res->exit_code = -1;
        res->term_signal = WTERMSIG(status);
        res->status = SBX_KILLED;
        if (res->term_signal == SIGXCPU || res->term_signal == SIGXFSZ) {
            res->status = SBX_RESOURCE_LIMIT;
            snprintf(res->detail, sizeof(res->detail), "%s",
                     res->term_signal == SIGXCPU ? "cpu_time limit reached"
                                                 : "file_size limit reached");
        }
    }
}

static void classify(struct sv_state *st, int status)
{
    struct sbx_result *res = st->res;
    sbx_result_from_wait(res, status);
    if (st->timed_out || res->output_truncated) {
        res->status = st->timed_out ? SBX_TIMED_OUT : SBX_OUTPUT_TRUNCATED;
        res->detail[0] = '\0'; /* the deadline or the cap ended it, whatever the signal */
    }
}

int sbx_supervise(struct supervise *s, struct sbx_result *res, int *wait_status,
                  struct gate_error *err)
{
    struct sv_state st = {.s = s, .res = res};
    int rc = 0;
    int status = 0;
    bool exited = false;
    int pidfd = pidfd_open_compat(s->pid);
    if (pidfd < 0) {
        rc = gate_err_errno(err, GATE_E_INTERNAL, errno, "pidfd_open");
        kill_once(&st);
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
            ;
        exited = true;
    }
    if (s->input_len == 0)
        close_fd(&s->stdin_fd);
    else
        fcntl(s->stdin_fd, F_SETFL, fcntl(s->stdin_fd, F_GETFL) | O_NONBLOCK);
    uint64_t deadline = s->start_ns + s->wall_timeout_ms * 1000000ull;
    uint64_t drain_deadline = 0;

    while (!exited || s->stdout_fd >= 0 || s->stderr_fd >= 0) {
        uint64_t now = gate_monotonic_ns();
        if (!exited && !st.timed_out && now >= deadline) {
            st.timed_out = true;
            kill_once(&st);
        }
        if (exited && !drain_deadline) drain_deadline = now + DRAIN_AFTER_EXIT_MS * 1000000ull;
        if (drain_deadline && now >= drain_deadline) break;
        uint64_t until =
            drain_deadline ? drain_deadline : (st.timed_out ? now + 100000000ull : deadline);
        int timeout_ms = until > now ? (int)((until - now + 999999) / 1000000) : 0;

        struct pollfd pfd[4];
        int n = 0, i_out = -1, i_err = -1, i_in = -1, i_pid = -1;
        if (s->stdout_fd >= 0)
            pfd[i_out = n++] = (struct pollfd){.fd = s->stdout_fd, .events = POLLIN};
        if (s->stderr_fd >= 0)
            pfd[i_err = n++] = (struct pollfd){.fd = s->stderr_fd, .events = POLLIN};
        if (s->stdin_fd >= 0)
            pfd[i_in = n++] = (struct pollfd){.fd = s->stdin_fd, .events = POLLOUT};
        if (!exited) pfd[i_pid = n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        int r = poll(pfd, (nfds_t)n, timeout_ms);
        if (r < 0 && errno != EINTR) {
            rc = gate_err_errno(err, GATE_E_INTERNAL, errno, "poll");
            kill_once(&st);
            break;
        }
        if (r <= 0) continue;
        if (i_out >= 0 && pfd[i_out].revents) drain(&st, &s->stdout_fd, &res->out);
        if (i_err >= 0 && pfd[i_err].revents) drain(&st, &s->stderr_fd, &res->err);
        if (i_in >= 0 && pfd[i_in].revents) feed_stdin(&st);
        if (i_pid >= 0 && pfd[i_pid].revents) {
            /* Kill the rest of the call while the child is a zombie, then reap it. */
            if (s->kill_all) s->kill_all(s->ctx);
            while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
                ;
            exited = true;
            close_fd(&s->stdin_fd);
        }
    }
    if (!exited) { /* only on an internal error */
        kill_once(&st);
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&s->stdin_fd);
    close_fd(&s->stdout_fd);
    close_fd(&s->stderr_fd);
    if (pidfd >= 0) close(pidfd);
    classify(&st, status);
    if (wait_status) *wait_status = status;
    return rc;
}
