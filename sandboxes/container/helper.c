/* helper.c: gatehouse-ct-helper, the resident process of one container pool slot.
 *
 * The gateway (pool.c) starts one per slot, moves it into the slot's cgroups and from then
 * on asks it for the slot's sandbox children. Each child is cloned straight into all of a
 * call's namespaces, inside the cgroups (no call pays for moving a process between cgroups),
 * with CLONE_PARENT, so it is the gateway's child; the helper maps its ids and then it is
 * either primed (set up ahead for the image of the slot's last call, filter installed,
 * waiting for its call), blank (it is sent a whole job when the call comes), or made for a
 * job ('J') the gateway could not give to the announced child. Each child serves one call.
 *
 * A small static program, never the gateway re-executed: the children hold no copy of the
 * gateway's memory, and there is little address space behind them. They share the helper's
 * memory (CLONE_VM): on this kind of host a copy of an address space costs 1.5-2.5 ms of CPU
 * to make and tear down (page tables; a shared one 0.03 ms), and its teardown would run when
 * init exits, while the call waits for that exit. Each child runs on an arena of its own
 * (stacks, spec, image), reused only once its pidfd says it is dead. The shared memory is
 * also a shared errno: the helper does nothing while a child sets up (it waits for the child
 * to close its setup pipe), and what may overlap a setup (a tool starting, init's loop) makes
 * raw system calls that leave errno alone (rootfs.c). The tool itself execs into a memory of
 * its own; init, which keeps the helper's, runs as the tool's uid, not dumpable, without
 * capabilities and under the filter.
 *
 * One child per slot at a time: the next is made when the slot's call has ended ('U'), after
 * the call's mount namespace, which the gateway held so init's exit would not wait for its
 * teardown, is dropped here. So a call's /tmp and /dev/shm pages leave the slot's memory
 * cgroup before another call can run in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "container.h"

#define SOCK 3 /* the helper's socket to the gateway */
#define GUARD 4096
#define INIT_STACK (64 * 1024)
#define TOOL_STACK (32 * 1024)
#define MAX_ARENAS 4 /* live children: the call's, and one being discarded */

/* What a child works from; the helper fills it before the clone. */
struct arena_data {
    struct ct_spec spec;
    struct ct_child_args args;
    int sock;          /* a warm child's end of its socket to the gateway, or -1 (job) */
    bool job;          /* made for a job: msg holds it, args its fds */
    size_t len;        /* job: length of msg; primed: length of the image behind the id */
    struct stat bound; /* scratch for the ready message */
    char msg[CT_CALL_ID_MAX + CT_IMAGE_MAX] __attribute__((aligned(16))); /* call id, image */
};

/* guard | init stack | guard | tool stack | struct arena_data */
struct arena {
    char *base;
    int pidfd; /* of the child on it, or -1: free */
};

static struct arena arenas[MAX_ARENAS];
static size_t arena_size;
static struct ct_ids ids;
static char primed[CT_IMAGE_MAX] __attribute__((aligned(16))); /* the next child's image */
static size_t primed_len;
static unsigned long primed_ns; /* the namespaces of a child primed for it (ct_ns_flags) */
static struct ct_spec probe;    /* scratch: an image decoded to read its settings */
static char job[CT_MSG_HDR + CT_CALL_ID_MAX + CT_IMAGE_MAX] __attribute__((aligned(16)));

static struct arena_data *data_of(const struct arena *a)
{
    return (struct arena_data *)(a->base + GUARD + INIT_STACK + GUARD + TOOL_STACK);
}

/* A free arena: never used, or its child is dead. NULL when all are in use. */
static struct arena *get_arena(void)
{
    for (int i = 0; i < MAX_ARENAS; i++) {
        struct arena *a = &arenas[i];
        if (a->base && a->pidfd >= 0) {
            struct pollfd p = {a->pidfd, POLLIN, 0};
            if (poll(&p, 1, 0) != 1) continue; /* its child still runs on it */
            close(a->pidfd);
            a->pidfd = -1;
        }
        if (!a->base) {
            char *m =
                mmap(NULL, arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) return NULL;
            /* A stack that overflows faults instead of writing over the next thing. */
            if (mprotect(m, GUARD, PROT_NONE) < 0 ||
                mprotect(m + GUARD + INIT_STACK, GUARD, PROT_NONE) < 0) {
                munmap(m, arena_size);
                return NULL;
            }
            a->base = m;
            a->pidfd = -1;
        }
        return a;
    }
    return NULL;
}

static void take_call_fds(struct ct_child_args *a, const int fds[6])
{
    a->in = fds[0], a->out = fds[1], a->errfd = fds[2];
    a->report = fds[3], a->status = fds[4];
    if (fds[5] >= 0) close(fds[5]); /* the direct path's sync pipe: we were mapped already */
}

/* Setup is over (or failed: then exit closes it): the helper may go on. */
static void end_setup(struct ct_child_args *a)
{
    close(a->setup_fd);
    a->setup_fd = -1;
}

/* A child, on its arena: PID 1 of the call's namespaces, in the slot's cgroups. */
static int child_main(void *arg)
{
    struct arena_data *d = arg;
    struct ct_child_args *a = &d->args;
    /* Die with the gateway, our parent through CLONE_PARENT. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fds[6] = {-1, -1, -1, -1, -1, -1};
    if (d->job) {
        d->msg[CT_CALL_ID_MAX - 1] = '\0';
        if (ct_image_decode(d->msg + CT_CALL_ID_MAX, d->len - CT_CALL_ID_MAX, d->msg, &d->spec) < 0)
            sbx_child_fail(a->report, "pool: bad policy image", EINVAL);
        ct_child_setup(a);
        end_setup(a);
        ct_child_start(a);
    }
    if (d->len) { /* primed: set up now, for the image of the slot's last call */
        if (ct_image_decode(d->msg + CT_CALL_ID_MAX, d->len, "", &d->spec) < 0) _exit(0);
        ct_child_setup(a); /* a failure here exits; the call goes to a child made for it */
        /* Ready, with what each bind holds: the gateway compares it with the host paths now
         * and discards this child if one was replaced or removed since. */
        struct ct_ready ready = {'r', (uint32_t)d->spec.nbinds, {{0, 0}}};
        for (size_t i = 0; i < d->spec.nbinds; i++)
            if (stat(d->spec.bind_dst[i], &d->bound) == 0)
                ready.id[i][0] = d->bound.st_dev, ready.id[i][1] = d->bound.st_ino;
        if (write(d->sock, &ready, sizeof(ready)) != (ssize_t)sizeof(ready)) _exit(0);
        end_setup(a);
        int nfds = 0;
        int n = ct_msg_recv(d->sock, d->msg, CT_CALL_ID_MAX, fds, 6, &nfds);
        if (n != CT_CALL_ID_MAX || nfds != 6) _exit(0);
        d->msg[CT_CALL_ID_MAX - 1] = '\0';
        size_t len = strlen(d->msg);
        if (len > sizeof(d->spec.call_env) - 20) _exit(0);
        memcpy(d->spec.call_env + 18, d->msg, len + 1); /* after "GATEHOUSE_CALL_ID=" */
        take_call_fds(a, fds);
        ct_child_recheck(a);
        ct_child_start(a);
    }
    /* Blank: the call brings its id, image and fds. */
    int nfds = 0;
    int n = ct_msg_recv(d->sock, d->msg, sizeof(d->msg), fds, 6, &nfds);
    if (n <= CT_CALL_ID_MAX || nfds != 6) _exit(0);
    d->msg[CT_CALL_ID_MAX - 1] = '\0';
    take_call_fds(a, fds);
    if (ct_image_decode(d->msg + CT_CALL_ID_MAX, (size_t)n - CT_CALL_ID_MAX, d->msg, &d->spec) < 0)
        sbx_child_fail(a->report, "pool: bad policy image", EINVAL);
    ct_child_setup(a);
    end_setup(a);
    ct_child_start(a);
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) close(p[i]), p[i] = -1;
}

/* Make a child. With jobmsg (call id + image, len bytes) and its 6 fds: a child for that
 * job; otherwise a warm child, primed when primed_len, and *gw_sock is the gateway's end of
 * its socket. *setup_rd reads EOF once the child's setup has ended. Returns its pid; 0 when
 * none was made; -pid for one that was killed (the gateway reaps it). */
static pid_t spawn_child(const char *jobmsg, size_t len, const int *jobfds, int *gw_sock,
                         int *setup_rd)
{
    *gw_sock = *setup_rd = -1;
    struct arena *ar = get_arena();
    if (!ar) return 0;
    struct arena_data *d = data_of(ar);
    int sv[2] = {-1, -1}, setup[2] = {-1, -1}, sync[2] = {-1, -1};
    if ((!jobmsg && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) ||
        pipe2(setup, O_CLOEXEC) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        close_pair(sv), close_pair(setup), close_pair(sync);
        return 0;
    }
    d->job = jobmsg != NULL;
    d->sock = sv[1];
    d->len = jobmsg ? len : primed_len;
    if (jobmsg)
        memcpy(d->msg, jobmsg, len);
    else if (primed_len)
        memcpy(d->msg + CT_CALL_ID_MAX, primed, primed_len);
    /* A blank child gets every namespace: it can only take a call whose policy has its own
     * network namespace (pool.c gives the others a job). */
    unsigned long ns = ct_ns_flags(&(struct ct_spec){.host_net = false});
    if (jobmsg)
        ns = len > CT_CALL_ID_MAX &&
                     ct_image_decode(jobmsg + CT_CALL_ID_MAX, len - CT_CALL_ID_MAX, "", &probe) == 0
                 ? ct_ns_flags(&probe)
                 : ns;
    else if (primed_len)
        ns = primed_ns;
    char *tool_stack = ar->base + GUARD + INIT_STACK + GUARD;
    d->args = (struct ct_child_args){
        .spec = &d->spec,
        .in = jobfds ? jobfds[0] : -1,
        .out = jobfds ? jobfds[1] : -1,
        .errfd = jobfds ? jobfds[2] : -1,
        .report = jobfds ? jobfds[3] : -1,
        .status = jobfds ? jobfds[4] : -1,
        .sync = sync[0],
        .extra_fd = sv[1],
        .setup_fd = setup[1],
        .tool_stack = tool_stack,
        .tool_stack_size = TOOL_STACK,
        .uid = ids.uid,
        .gid = ids.gid,
        .cap_last = ids.cap_last,
        .arg_start = ids.arg_start,
        .arg_end = ids.arg_end,
        .env_start = ids.env_start,
        .env_end = ids.env_end,
    };
    /* CLONE_PARENT: the gateway's child (it waits for it, and its parent-death signal
     * follows the gateway); it starts in our cgroups. Not CLONE_FILES: it gets a copy of our
     * fds, the job's among them, and closes what it does not need. */
    pid_t pid = clone(child_main, ar->base + GUARD + INIT_STACK, CLONE_VM | CLONE_PARENT | ns, d);
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    close(sv[1]), close(setup[1]), close(sync[0]);
    if (pid > 0 && pidfd < 0) { /* no way to tell when it has left the arena: give it up */
        ar->base = NULL;
        kill(pid, SIGKILL);
        close(sv[0]), close(setup[0]), close(sync[1]);
        return -pid;
    }
    ar->pidfd = pidfd;
    const char *step = NULL; /* the helper has no log: the call fails as a dead child */
    if (pid < 0 || ct_map_ids(pid, ids.uid, ids.gid, &step) < 0 || write(sync[1], "g", 1) != 1) {
        if (pid > 0) kill(pid, SIGKILL);
        close(sv[0]), close(setup[0]), close(sync[1]);
        return pid > 0 ? -pid : 0;
    }
    close(sync[1]);
    *gw_sock = sv[0];
    *setup_rd = setup[0];
    return pid;
}

/* Wait until the child's setup has ended (it closed the pipe, or died). */
static void wait_setup(int fd)
{
    char c;
    ssize_t r;
    if (fd < 0) return;
    do
        r = read(fd, &c, 1);
    while (r > 0 || (r < 0 && errno == EINTR));
    close(fd);
}

/* Remember the image the next child is primed with (none if its policy cannot be primed). */
static void set_primed(const char *img, size_t len)
{
    primed_len = 0;
    if (len && len <= sizeof(primed) && ct_image_decode(img, len, "", &probe) == 0 &&
        probe.primable) {
        memcpy(primed, img, len);
        primed_len = len;
        primed_ns = ct_ns_flags(&probe);
    }
}

static int send_note(const struct ct_pool_note *note, int fd)
{
    struct iovec iov = {(void *)note, sizeof(*note)};
    return ct_msg_send(SOCK, &iov, 1, &fd, fd >= 0 ? 1 : 0);
}

/* A job the gateway could not give to the announced child: a child made for it takes it. */
static void run_job(int n, int fds[6])
{
    struct ct_pool_note reply = {'R', -EAGAIN, 0, {0, 0}};
    int gw = -1, setup_rd = -1;
    pid_t pid = spawn_child(job + CT_MSG_HDR, (size_t)n - CT_MSG_HDR, fds, &gw, &setup_rd);
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    if (pid > 0)
        reply.pid = pid;
    else
        reply.stale[0] = -pid;
    if (send_note(&reply, -1) < 0) _exit(0);
    wait_setup(setup_rd);
}

int main(void)
{
    const char *v = getenv(CT_HELPER_ENV);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (!v || getsockopt(SOCK, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_SEQPACKET) {
        fprintf(stderr, "gatehouse-ct-helper: started by the gateway's container tier only\n");
        return 2;
    }
    /* Die with the gateway, even if its end of the socket were held open elsewhere. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 0;
    unsigned uid = 0, gid = 0;
    int cap_last = 0;
    if (sscanf(v, "%u:%u:%d", &uid, &gid, &cap_last) != 3 || uid == 0 || gid == 0) return 127;
    ids = (struct ct_ids){.uid = uid, .gid = gid, .cap_last = cap_last};
    ct_own_strings(&ids);
    int keep[] = {SOCK};
    ct_close_all_but(keep, 1);
    arena_size = GUARD + INIT_STACK + GUARD + TOOL_STACK +
                 ((sizeof(struct arena_data) + 4095) & ~(size_t)4095);
    /* No child before the gateway has moved us into the slot's cgroups: children inherit
     * them, and a sandbox must never start outside its limits. */
    char attached = 0;
    if (recv(SOCK, &attached, 1, 0) != 1 || attached != 'a') return 0;
    for (;;) {
        int gw = -1, setup_rd = -1;
        pid_t pid = spawn_child(NULL, 0, NULL, &gw, &setup_rd);
        struct ct_pool_note note = {
            'N', pid > 0 ? pid : 0, pid > 0 && primed_len > 0, {pid < 0 ? -pid : 0, 0}};
        int rc = send_note(&note, gw);
        if (gw >= 0) close(gw);
        if (rc < 0) return 0;
        wait_setup(setup_rd);
        for (bool next = false; !next;) { /* until the slot's call has ended */
            int fds[6] = {-1, -1, -1, -1, -1, -1};
            int nfds = 0;
            int n = ct_msg_recv(SOCK, job, sizeof(job), fds, 6, &nfds);
            if (n < 0) return 0; /* the gateway closed its end: it is shutting down or gone */
            if (n > CT_MSG_HDR + CT_CALL_ID_MAX && job[0] == 'J' && nfds == 6) {
                run_job(n, fds);
                set_primed(job + CT_MSG_HDR + CT_CALL_ID_MAX,
                           (size_t)n - CT_MSG_HDR - CT_CALL_ID_MAX);
                nfds = 0;
            } else if (n >= CT_MSG_HDR && job[0] == 'U') {
                /* Dropping the call's mount namespace unmounts its tmpfs mounts: their pages
                 * are uncharged before the slot's next child exists. */
                if (n > CT_MSG_HDR) set_primed(job + CT_MSG_HDR, (size_t)n - CT_MSG_HDR);
                next = true;
            }
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
        }
    }
}
