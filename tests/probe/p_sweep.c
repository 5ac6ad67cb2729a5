/* p_sweep.c: P19, the syscall sweep.
 *
 * Calls every x86-64 syscall number from 0 to SWEEP_MAX with all six arguments
 * set to -1: invalid fds (EBADF), invalid pointers (EFAULT), out-of-range
 * flags and sizes (EINVAL). A call that returns anything but EPERM or ENOSYS
 * got past the filter and reached the kernel ("reachable"). Numbers whose
 * effect does not depend on their arguments, or that could hurt with any
 * arguments (exit, kill, reboot, fork, execve, memory-map changes, alarm,
 * setsid, vhangup, pause, ...), are never called. The sweep runs in a child
 * that reports each number before and after the call: a child killed (SIGSYS)
 * or stuck on a number is replaced and the sweep resumes after it.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

#define SWEEP_MAX 470

static const long never_call[] = {
    9,  10,  11,  12,  15,  25,  28,  34,  37,  56,  57,  58,  59,  60,  62,  68,
    95, 112, 129, 153, 169, 200, 218, 231, 234, 246, 297, 320, 322, 424, 435, 462,
};

/* Reaching any of these is an escape hatch whatever the policy says. */
static const long dangerous[] = {
    101, 103, 155, 161, 163, 164, 165, 166, 167, 168, 172, 173, 175, 176, 179,
    212, 227, 248, 249, 250, 272, 298, 303, 304, 305, 308, 310, 311, 312, 313,
    321, 323, 425, 426, 427, 428, 429, 430, 431, 432, 433, 438, 442,
};

static bool in_list(const long *list, size_t n, long nr)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == nr) return true;
    return false;
}

struct rec {
    int nr;
    int done; /* 0: about to call, 1: returned */
    long rc;
    int err;
};

static void sweep_child(int fd, int start)
{
    for (int nr = start; nr <= SWEEP_MAX; nr++) {
        if (in_list(never_call, sizeof(never_call) / sizeof(never_call[0]), nr)) continue;
        struct rec r = {nr, 0, 0, 0};
        if (write(fd, &r, sizeof(r)) != sizeof(r)) _exit(1);
        errno = 0;
        r.rc = syscall(nr, -1L, -1L, -1L, -1L, -1L, -1L);
        r.err = r.rc < 0 ? errno : 0;
        r.done = 1;
        if (write(fd, &r, sizeof(r)) != sizeof(r)) _exit(1);
    }
    _exit(0);
}

enum nr_state { NR_UNTRIED, NR_SKIPPED, NR_BLOCKED, NR_REACHABLE, NR_KILLED, NR_HUNG };

/* Run one child from `start`; fill state; return the number to resume at, or -1 when done. */
static int sweep_from(int start, unsigned char *state)
{
    int p[2];
    if (pipe(p) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        alarm(0);
        sweep_child(p[1], start);
    }
    close(p[1]);
    int current = -1, resume = -1;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int r = poll(&pfd, 1, 2000);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) { /* stuck inside `current` */
            if (current >= 0) state[current] = NR_HUNG;
            resume = current + 1;
            break;
        }
        struct rec rec;
        ssize_t n = read(p[0], &rec, sizeof(rec));
        if (n != sizeof(rec)) { /* exited or died */
            if (current >= 0) {
                state[current] = NR_KILLED;
                resume = current + 1;
            }
            break;
        }
        if (rec.nr < 0 || rec.nr > SWEEP_MAX) break;
        if (!rec.done) {
            current = rec.nr;
            continue;
        }
        state[rec.nr] =
            rec.rc >= 0 || (rec.err != EPERM && rec.err != ENOSYS) ? NR_REACHABLE : NR_BLOCKED;
        current = -1;
    }
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return resume > SWEEP_MAX ? -1 : resume;
}

void p19_sweep(void)
{
    if (!g_args.destructive) {
        emit("P19", "skipped", 0, "syscall sweep disarmed (destructive=false)");
        return;
    }
    unsigned char state[SWEEP_MAX + 1];
    memset(state, NR_UNTRIED, sizeof(state));
    for (size_t i = 0; i < sizeof(never_call) / sizeof(never_call[0]); i++)
        state[never_call[i]] = NR_SKIPPED;
    int start = 0, rounds = 0;
    while (start >= 0 && rounds++ < 100)
        start = sweep_from(start, state);
    struct verdict v = {0};
    int counts[6] = {0};
    for (int nr = 0; nr <= SWEEP_MAX; nr++)
        counts[state[nr]]++;
    v_note(&v, "blocked=%d reachable=%d killed=%d hung=%d skipped=%d untried=%d",
           counts[NR_BLOCKED], counts[NR_REACHABLE], counts[NR_KILLED], counts[NR_HUNG],
           counts[NR_SKIPPED], counts[NR_UNTRIED]);
    bool use_allow = g_args.n_allowed > 0;
    v_note(&v, "; %s:", use_allow ? "reachable and not allowed" : "reachable and dangerous");
    for (int nr = 0; nr <= SWEEP_MAX; nr++) {
        if (state[nr] != NR_REACHABLE) continue;
        bool bad = use_allow ? !in_list(g_args.allowed, g_args.n_allowed, nr)
                             : in_list(dangerous, sizeof(dangerous) / sizeof(dangerous[0]), nr);
        if (bad) {
            v.exposed = true;
            v_note(&v, " %d", nr);
        }
    }
    v_note(&v, "; killed:");
    for (int nr = 0; nr <= SWEEP_MAX; nr++)
        if (state[nr] == NR_KILLED || state[nr] == NR_HUNG)
            v_note(&v, " %d%s", nr, state[nr] == NR_HUNG ? "(hung)" : "");
    v_note(&v, "; reachable:");
    for (int nr = 0; nr <= SWEEP_MAX; nr++)
        if (state[nr] == NR_REACHABLE) v_note(&v, " %d", nr);
    v_emit(&v, "P19");
}
