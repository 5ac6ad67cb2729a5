/* pool.c: sandboxes started inside their cgroup, and set up before their call.
 *
 * Moving a process into a cgroup takes the kernel's global cgroup_threadgroup_rwsem for
 * writing, which waits for an RCU grace period: 5-12 ms on this host, more than a whole
 * call should cost. So each slot of the pool is a cgroup with a small resident helper,
 * forked once at start and moved in once; the children it clone()s start inside it. They
 * are cloned with CLONE_PARENT, so they are the gateway's (waitable, and their
 * parent-death signal follows the gateway's main thread).
 *
 * A helper is the gateway binary re-executed (/proc/self/exe) and caught by a constructor
 * before main: a fresh, small address space that never held the gateway's memory, so the
 * sandboxes it starts hold no copy of the gateway's secrets, and cloning and tearing them
 * down is cheap. Ahead of each call the helper clones a warm child (all namespaces, mapped,
 * inside the cgroup), primes it with the image of the slot's previous call (its whole
 * sandbox set up, filter installed) and hands its socket to the gateway ('N'). A call for
 * the same tool then goes straight to that child with its fds and id; any other call is a
 * job the helper gives to a fresh child ('J'). Each sandbox serves exactly one call:
 * priming prepares the next one, it reuses nothing. Once the call has ended, the helper
 * is told ('U'), takes over the call's mount namespace (so init's exit never waits for its
 * teardown) and prepares the next child.
 *
 * Limits are rewritten per call when they change; the OOM and pids counters are read as
 * deltas. The helper (and, while a job runs, the next warm child) count against pids.max,
 * which is raised to match, and are spared by the kills, which only take processes in the
 * call's PID namespace; the sandbox's oom_score_adj of 1000 makes the OOM killer take it
 * first. A helper that dies (or a cgroup that cannot be emptied) retires its slot; calls
 * then take the direct path in container.c, which is slower but equally strict.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container.h"

#define POOL_MAX 32
#define HELPER_ENV "GATEHOUSE_CT_HELPER"
#define CALL_ID_MAX 64
#define NS_FLAGS                                                                                   \
    (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

struct ct_slot {
    struct ct_cgroup cg;
    pid_t helper;
    int sock;
    bool busy;
    bool retired;
    ino_t pidns; /* the current call's PID namespace */
    uint64_t oom_base, pids_base;
    struct policy_limits last; /* limits last written, to skip rewriting the same values */
    bool have_last;
    uint64_t last_id; /* image_id of the slot's last call (what its helper primes); 0 = none */
    uint64_t last_used;
    bool have_note;                   /* an 'N' was read: warm_* describe the announced child */
    pid_t taken_pid;                  /* the announced child running the current call, or 0 */
    int taken_mntns;                  /* its mount namespace, or -1 */
    const struct gate_buf *taken_img; /* the image it was given, when it was blank */
    bool have_base;                   /* oom_base/pids_base were read when the last call ended */
    bool clean;                       /* the call's kill found none of its processes left */
    pid_t warm_pid;                   /* 0: none */
    int warm_sock;                    /* our end of its socket, or -1 */
    bool warm_primed;
};

/* Messages on a slot's socket. Gateway to helper: an 8-byte header (tag, pid) then either
 * 'J', a job (call id + image, with the child's 6 fds) the helper gives to a fresh child, or
 * 'U', "the child you announced (pid) was taken", followed by the image it was given when
 * it was blank. Helper to gateway: struct ct_pool_note, 'R' answering a job or 'N'
 * announcing the next warm child, whose socket comes with it: the gateway talks to that
 * child directly, so a call never waits on the helper. */
struct ct_pool_note {
    char tag;
    int pid;      /* R: the child running the job, or -errno; N: the warm child, 0 if none */
    int primed;   /* N: set up ahead for the image of the slot's last call */
    int stale[2]; /* children the helper discarded: the gateway's (CLONE_PARENT) to reap */
};
#define HDR 8 /* tag + pid; keeps the image 8-aligned behind it */

/* A primed child's "ready": device and inode of what each of its binds holds. */
struct ct_ready {
    char tag; /* 'r' */
    uint32_t n;
    uint64_t id[CT_MAX_BINDS][2];
};

static struct ct_slot slots[POOL_MAX];
static int nslots;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t pool_clock; /* under pool_mu */
static bool pool_down;      /* under pool_mu: shut down, no more calls */
static const struct ct_cg_config *pool_cfg;

/* ---- the helper process ---------------------------------------------------------------- */

/* The helper's own buffers; a warm child works on its copy of them. */
static char job[CALL_ID_MAX + CT_IMAGE_MAX] __attribute__((aligned(16)));
static char primed[CT_IMAGE_MAX] __attribute__((aligned(16))); /* image the next child primes */
static size_t primed_len;
static struct ct_spec job_spec;
static struct ct_child_args job_args;
static const struct ct_ids *helper_ids;
static struct ct_ids helper_own_ids;
static int warm_sock = -1; /* in a warm child: its end of the helper's socketpair */

/* Mount namespaces of finished calls, held open by the helper: tearing one down waits for
 * an RCU grace period, which init's exit would otherwise make the call wait for. */
#define HELD_MAX 8
static int held[HELD_MAX];
static int nheld;

/* Receive one message into buf and up to max fds (*nfds of them). Returns the length, 0 for
 * a malformed message (its fds closed), -1 when the peer is gone. */
static int recv_fds(int sock, char *buf, size_t cap, int *fds, int max, int *nfds)
{
    char cbuf[CMSG_SPACE(6 * sizeof(int))];
    struct iovec iov = {buf, cap};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    *nfds = 0;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    size_t got = c && c->cmsg_type == SCM_RIGHTS ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
    if ((int)got > max || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        for (size_t i = 0; i < got; i++)
            close(((int *)CMSG_DATA(c))[i]);
        return 0;
    }
    if (got) memcpy(fds, CMSG_DATA(c), got * sizeof(int));
    *nfds = (int)got;
    return (int)n;
}

/* A job or call for a warm child: exactly 6 fds. */
static int recv_msg(int sock, int fds[6])
{
    int nfds = 0;
    int n = recv_fds(sock, job, sizeof(job), fds, 6, &nfds);
    if (n > 0 && nfds != 6) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        fds[0] = -1;
        return 0;
    }
    return n;
}

static int send_iov(int sock, struct iovec *iov, int n, const int *fds, int nfds);

static int send_fds(int sock, const char *buf, size_t len, const int fds[6])
{
    struct iovec iov = {(void *)(uintptr_t)buf, len};
    return send_iov(sock, &iov, 1, fds, 6);
}

/* Send iov[0..n) with nfds fds. */
static int send_iov(int sock, struct iovec *iov, int n, const int *fds, int nfds)
{
    char cbuf[CMSG_SPACE(6 * sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (nfds) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void take_call_fds(struct ct_child_args *a, const int fds[6])
{
    a->in = fds[0], a->out = fds[1], a->errfd = fds[2];
    a->report = fds[3], a->status = fds[4];
    if (fds[5] >= 0) close(fds[5]); /* the direct path's sync pipe: the helper mapped us already */
}

/* A warm child: already in every namespace and the cgroup, and mapped once the helper's
 * byte arrives. Primed (primed_len > 0 in its copy of memory), it sets up its sandbox for
 * that image before its call; then the call brings its fds and id, and the tool starts.
 * Otherwise it waits for a whole job and sets up after. */
static int warm_main(void *arg)
{
    (void)arg;
    /* Die with the gateway (our parent, through CLONE_PARENT), and hold nothing but our own
     * end: the helper's end of this socketpair must not be kept open here, or the helper's
     * death would never reach us as EOF. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int keep[] = {warm_sock};
    ct_close_all_but(keep, 1);
    char mapped;
    if (read(warm_sock, &mapped, 1) != 1) _exit(0);
    int fds[6] = {-1, -1, -1, -1, -1, -1};
    job_args = (struct ct_child_args){
        .spec = &job_spec,
        .in = -1,
        .out = -1,
        .errfd = -1,
        .report = -1,
        .status = -1,
        .sync = -1,
        .extra_fd = warm_sock,
        .uid = helper_ids->uid,
        .gid = helper_ids->gid,
        .cap_last = helper_ids->cap_last,
        .arg_start = helper_ids->arg_start,
        .arg_end = helper_ids->arg_end,
        .env_start = helper_ids->env_start,
        .env_end = helper_ids->env_end,
    };
    if (primed_len) {
        if (ct_image_decode(primed, primed_len, "", &job_spec) < 0) _exit(0);
        ct_child_setup(&job_args); /* a failure here exits; the call goes to a fresh child */
        /* Ready, with what each bind holds: the gateway compares it with the host paths now
         * and discards this child if one was replaced or removed since. */
        struct ct_ready ready = {'r', (uint32_t)job_spec.nbinds, {{0, 0}}};
        for (size_t i = 0; i < job_spec.nbinds; i++) {
            struct stat sb;
            if (stat(job_spec.bind_dst[i], &sb) == 0)
                ready.id[i][0] = sb.st_dev, ready.id[i][1] = sb.st_ino;
        }
        if (write(warm_sock, &ready, sizeof(ready)) != (ssize_t)sizeof(ready)) _exit(0);
        int n = recv_msg(warm_sock, fds);
        if (n != CALL_ID_MAX || fds[0] < 0) _exit(0);
        job[CALL_ID_MAX - 1] = '\0';
        size_t len = strlen(job);
        if (len > sizeof(job_spec.call_env) - 20) _exit(0);
        memcpy(job_spec.call_env + 18, job, len + 1); /* after "GATEHOUSE_CALL_ID=" */
        take_call_fds(&job_args, fds);
        ct_child_recheck(&job_args);
        ct_child_start(&job_args);
    }
    int n = recv_msg(warm_sock, fds);
    job[CALL_ID_MAX - 1] = '\0';
    if (n <= CALL_ID_MAX || fds[0] < 0 ||
        ct_image_decode(job + CALL_ID_MAX, (size_t)n - CALL_ID_MAX, job, &job_spec) < 0)
        _exit(0);
    take_call_fds(&job_args, fds);
    ct_child_setup(&job_args);
    ct_child_start(&job_args);
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    return w == (ssize_t)strlen(text) ? 0 : -1;
}

struct warm {
    pid_t pid;
    int sock;
    size_t primed_len; /* 0: blank */
};

/* Clone the next warm child (primed for primed[] when primed_len) and map its ids: the
 * helper is root in the host namespaces. Returns 0, or -1 with w->pid 0 or a pid to reap. */
static int spawn_warm(struct warm *w)
{
    int sv[2];
    *w = (struct warm){0, -1, 0};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -1;
    warm_sock = sv[1];
    /* CLONE_PARENT: the child is the gateway's, not ours (the gateway waits for it, and its
     * parent-death signal follows the gateway); it inherits our cgroups. */
    pid_t pid = ct_fork_into(CLONE_PARENT | NS_FLAGS);
    if (pid == 0) {
        warm_main(NULL);
        _exit(0);
    }
    close(sv[1]);
    warm_sock = -1;
    char map[64], gmap[64];
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)helper_ids->uid, (unsigned)helper_ids->uid);
    snprintf(gmap, sizeof(gmap), "%u %u 1\n", (unsigned)helper_ids->gid, (unsigned)helper_ids->gid);
    /* The same identity as the direct path (container.c map_ids): only the tool's own
     * unprivileged ids are mapped, setgroups denied, and the OOM killer's first choice. */
    if (pid < 0 || write_proc(pid, "oom_score_adj", "1000") < 0 ||
        write_proc(pid, "setgroups", "deny") < 0 || write_proc(pid, "uid_map", map) < 0 ||
        write_proc(pid, "gid_map", gmap) < 0 || send(sv[0], "m", 1, MSG_NOSIGNAL) != 1) {
        if (pid > 0) kill(pid, SIGKILL); /* the gateway reaps it (CLONE_PARENT), told as "stale" */
        close(sv[0]);
        w->pid = pid > 0 ? pid : 0;
        return -1;
    }
    *w = (struct warm){pid, sv[0], primed_len};
    return 0;
}

static void release_held(void)
{
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    nheld = 0;
}

/* Under steady load, each call lets go of the oldest held namespace, so the helper never
 * stalls on many teardowns at once. Takes fd. */
static void hold_fd(int fd)
{
    if (fd < 0) return;
    if (nheld == HELD_MAX) {
        close(held[0]);
        memmove(held, held + 1, (HELD_MAX - 1) * sizeof(held[0]));
        nheld--;
    }
    held[nheld++] = fd;
}

static void hold_mount_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
    hold_fd(open(path, O_RDONLY | O_CLOEXEC));
}

/* Hand the job in job[0..n) to a warm child: the primed one if it was primed for this very
 * image and is still there, else a blank one made now. Fills the reply. */
/* Remember the image the next child is primed with (none if its policy cannot be primed). */
static void set_primed(const char *img, size_t len)
{
    struct ct_spec probe;
    primed_len = 0;
    if (len && len <= sizeof(primed) && ct_image_decode(img, len, "", &probe) == 0 &&
        probe.primable) {
        memcpy(primed, img, len);
        primed_len = len;
    }
}

/* Hand the next warm child to the gateway: its pid, whether it is primed, and its socket. */
static int announce(int sock, struct warm *w, pid_t stale)
{
    struct ct_pool_note note = {'N', w->pid > 0 ? w->pid : 0, w->primed_len > 0, {stale, 0}};
    struct iovec iov = {&note, sizeof(note)};
    int rc = send_iov(sock, &iov, 1, &w->sock, w->pid > 0 ? 1 : 0);
    if (w->sock >= 0) close(w->sock);
    *w = (struct warm){0, -1, 0};
    return rc;
}

/* A job the gateway could not give to a warm child: a fresh, blank child takes it. */
static void run_job(int sock, int n, const int fds[6])
{
    struct ct_pool_note reply = {'R', -EAGAIN, 0, {0, 0}};
    struct warm w;
    size_t keep = primed_len;
    primed_len = 0;
    if (spawn_warm(&w) < 0) {
        reply.stale[0] = w.pid;
    } else {
        reply.pid = send_fds(w.sock, job + HDR, (size_t)n - HDR, fds) == 0 ? w.pid : -EPIPE;
        if (reply.pid < 0) {
            kill(w.pid, SIGKILL);
            reply.stale[0] = w.pid;
        }
        close(w.sock);
    }
    primed_len = keep;
    struct iovec iov = {&reply, sizeof(reply)};
    if (send_iov(sock, &iov, 1, NULL, 0) < 0) _exit(0);
    if (reply.pid > 0) hold_mount_ns(reply.pid);
}

__attribute__((noreturn)) static void helper_main(int sock, const struct ct_ids *ids)
{
    int keep[] = {sock};
    ct_close_all_but(keep, 1);
    helper_ids = ids;
    /* No child before the gateway has moved us into the slot's cgroup: children inherit it,
     * and a sandbox must never start outside its limits. */
    char attached = 0;
    if (recv(sock, &attached, 1, 0) != 1 || attached != 'a') _exit(0);
    for (;;) {
        struct warm w;
        pid_t stale = spawn_warm(&w) < 0 ? w.pid : 0;
        if (announce(sock, &w, stale) < 0) _exit(0);
        for (;;) { /* until the announced child is taken or a job needs a fresh one */
            /* Idle: let go of the mount namespaces held for finished calls. */
            struct pollfd pfd = {sock, POLLIN, 0};
            if (nheld && poll(&pfd, 1, 50) == 0) {
                release_held();
                continue;
            }
            int fds[6] = {-1, -1, -1, -1, -1, -1};
            int nfds = 0;
            int n = recv_fds(sock, job, sizeof(job), fds, 6, &nfds);
            if (n < 0) _exit(0); /* the gateway closed its end: it is shutting down or gone */
            if (n > HDR + CALL_ID_MAX && job[0] == 'J' && nfds == 6) {
                run_job(sock, n, fds);
                set_primed(job + HDR + CALL_ID_MAX, (size_t)n - HDR - CALL_ID_MAX);
            } else if (n >= HDR && job[0] == 'U') {
                /* The finished call's mount namespace comes along: held, torn down later. */
                if (nfds == 1) hold_fd(fds[0]), fds[0] = -1;
                if (n > HDR) set_primed(job + HDR, (size_t)n - HDR);
            }
            for (int i = 0; i < nfds; i++)
                if (fds[i] >= 0) close(fds[i]);
            if (n >= HDR && (job[0] == 'J' || job[0] == 'U'))
                break; /* the slot needs its next warm child */
        }
    }
}

/* Runs before main in every process that links the sandbox library; does nothing unless this
 * process is a helper started by make_slot: the variable is set and fd 3 is a seqpacket
 * socket. Then it serves its slot and never returns to main. */
__attribute__((constructor)) static void helper_entry(void)
{
    const char *v = getenv(HELPER_ENV);
    int type = 0;
    socklen_t len = sizeof(type);
    if (!v || getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) return;
    /* Die with the gateway, even if its end of the socket were held open elsewhere. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(0);
    unsigned uid = 0, gid = 0;
    int cap_last = 0;
    if (sscanf(v, "%u:%u:%d", &uid, &gid, &cap_last) != 3 || uid == 0 || gid == 0) _exit(127);
    helper_own_ids = (struct ct_ids){.uid = uid, .gid = gid, .cap_last = cap_last};
    ct_own_strings(&helper_own_ids);
    helper_main(3, &helper_own_ids);
}

/* ---- the gateway's side ------------------------------------------------------------------ */

static int make_slot(struct ct_slot *s, int index, const struct ct_ids *ids)
{
    struct gate_error err = {0};
    struct policy_limits l = {.memory_mb = 64, .pids = 64, .cpu_millis = 1000};
    char name[32];
    snprintf(name, sizeof(name), "pool%d", index);
    memset(s, 0, sizeof(*s));
    s->sock = -1;
    s->warm_sock = -1;
    s->taken_mntns = -1;
    if (ct_cg_create(pool_cfg, name, &l, &s->cg, &err) < 0) {
        gate_log("warn", "container.pool", "slot %d: %s", index, err.msg);
        return -1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) goto fail;
    /* Forked from the main thread at start (the warm children's parent-death signal follows
     * it), then re-executed: the helper starts from a clean image with its socket on fd 3, an
     * environment of one variable and nothing else. */
    char env0[96];
    snprintf(env0, sizeof(env0), "%s=%u:%u:%d", HELPER_ENV, (unsigned)ids->uid, (unsigned)ids->gid,
             ids->cap_last);
    char *const argv[] = {"gatehouse-ct-helper", NULL};
    char *const envp[] = {env0, NULL};
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        goto fail;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until execve. fd 3 without CLOEXEC is the socket;
         * every other fd closes on exec (the gateway opens all of its fds CLOEXEC). */
        int fd = sv[1] == 3 ? (fcntl(3, F_SETFD, 0) == 0 ? 3 : -1) : dup2(sv[1], 3);
        if (fd == 3) execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    close(sv[1]);
    s->sock = sv[0];
    s->helper = pid;
    struct timeval tv = {5, 0}; /* a helper that does not answer is retired, not waited on */
    setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* The helper waits for this byte before it starts any child (see helper_main). */
    if (ct_cg_attach(pool_cfg, &s->cg, pid, &err) < 0 || send(s->sock, "a", 1, MSG_NOSIGNAL) != 1) {
        gate_log("warn", "container.pool", "slot %d: %s", index,
                 err.msg[0] ? err.msg : "cannot reach its helper");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(s->sock);
        s->sock = -1;
        goto fail;
    }
    return 0;
fail:
    ct_cg_destroy(pool_cfg, &s->cg);
    return -1;
}

int ct_pool_init(const struct ct_cg_config *cfg, const struct ct_ids *ids, int n)
{
    pool_cfg = cfg;
    if (n > POOL_MAX) n = POOL_MAX;
    for (int i = 0; i < n; i++)
        if (make_slot(&slots[nslots], i, ids) == 0) nslots++;
    return nslots;
}

struct ct_slot *ct_pool_acquire(uint64_t image_id)
{
    struct ct_slot *s = NULL;
    pthread_mutex_lock(&pool_mu);
    /* Prefer a slot whose helper primed a child for this very image (its last call was this
     * tool), then the one idle longest: its next child has had the most time to get ready. */
    for (int i = 0; i < nslots; i++) {
        struct ct_slot *c = &slots[i];
        if (c->busy || c->retired) continue;
        bool same = c->last_id == image_id;
        bool s_same = s && s->last_id == image_id;
        if (!s || (same && !s_same) || (same == s_same && c->last_used < s->last_used)) s = c;
    }
    if (s) {
        s->busy = true;
        s->last_used = ++pool_clock;
    }
    pthread_mutex_unlock(&pool_mu);
    return s;
}

static bool same_limits(const struct policy_limits *a, const struct policy_limits *b)
{
    return a->memory_mb == b->memory_mb && a->pids == b->pids && a->cpu_millis == b->cpu_millis;
}

int ct_pool_limits(struct ct_slot *s, const struct policy_limits *l, struct gate_error *err)
{
    if (!s->have_last || !same_limits(&s->last, l)) {
        s->have_last = false;
        s->have_base = false;
        /* +1: the helper lives in the cgroup (the next warm child is made after the call) */
        if (ct_cg_set_limits(pool_cfg, &s->cg, l, 1, err) < 0) return -1;
        s->last = *l;
        s->have_last = true;
    }
    /* The counters' base for this call: taken when the slot's last call ended (see
     * ct_pool_release), unless the limits changed since or there is none. */
    if (!s->have_base) ct_cg_counters(pool_cfg, &s->cg, &s->oom_base, &s->pids_base);
    s->have_base = false;
    return 0;
}

static void reap(pid_t pid)
{
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

/* Read the helper's next note. Returns its tag, 0 if the helper is gone or stuck. */
static char read_note(struct ct_slot *s, struct ct_pool_note *note)
{
    int fd = -1, nfds = 0;
    memset(note, 0, sizeof(*note));
    int n = recv_fds(s->sock, (char *)note, sizeof(*note), &fd, 1, &nfds);
    if (nfds == 0) fd = -1;
    for (int i = 0; i < 2; i++) /* discarded children are ours (CLONE_PARENT): reap them */
        if (n == (int)sizeof(*note)) reap(note->stale[i]);
    if (n != (int)sizeof(*note)) {
        if (fd >= 0) close(fd);
        return 0;
    }
    if (note->tag == 'N') {
        s->have_note = true;
        s->warm_pid = note->pid > 0 && fd >= 0 ? note->pid : 0;
        s->warm_sock = fd;
        s->warm_primed = note->primed != 0;
        struct timeval tv = {5, 0}; /* a child that never gets ready is discarded */
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    } else if (fd >= 0) {
        close(fd);
    }
    return note->tag;
}

/* Tell the helper its announced child was taken (with the image, if it was blank), handing
 * it the call's mount namespace to hold: the helper then prepares the next child. Sent when
 * the call has ended, so that work does not compete with the call itself. */
static void notify_taken(struct ct_slot *s)
{
    char hdr[HDR] = {'U'};
    memcpy(hdr + 4, &s->taken_pid, sizeof(s->taken_pid));
    const struct gate_buf *img = s->taken_img;
    struct iovec iov[2] = {{hdr, HDR}, {img ? img->data : NULL, img ? img->len : 0}};
    if (send_iov(s->sock, iov, img ? 2 : 1, &s->taken_mntns, s->taken_mntns >= 0 ? 1 : 0) < 0)
        s->retired = true;
    if (s->taken_mntns >= 0) close(s->taken_mntns);
    s->taken_mntns = -1, s->taken_pid = 0, s->taken_img = NULL;
}

/* Give the call to the announced warm child directly. Returns its pid, or 0 when it cannot
 * take the call (then it is killed and reaped: nothing of the call ran in it). */
/* Do the binds of a primed child still hold what the host paths name now? */
static bool binds_current(const struct ct_state *st, const struct ct_ready *r)
{
    if (r->tag != 'r' || r->n != st->nbinds) return false;
    for (size_t i = 0; i < st->nbinds; i++) {
        struct stat sb;
        if (stat(st->binds[i].src, &sb) < 0 || (uint64_t)sb.st_dev != r->id[i][0] ||
            (uint64_t)sb.st_ino != r->id[i][1])
            return false;
    }
    return true;
}

static pid_t take_warm(struct ct_slot *s, const struct ct_state *st, char id[CALL_ID_MAX],
                       const int fds[6])
{
    const struct gate_buf *img = &st->image;
    pid_t pid = s->warm_pid;
    int ws = s->warm_sock;
    s->warm_pid = 0, s->warm_sock = -1;
    bool same = s->warm_primed && s->last_id == st->image_id;
    bool ok = false;
    struct ct_ready ready;
    if (!s->warm_primed) { /* blank: it takes the whole job and sets up now */
        struct iovec iov[2] = {{id, CALL_ID_MAX}, {img->data, img->len}};
        ok = send_iov(ws, iov, 2, fds, 6) == 0;
    } else if (same && read(ws, &ready, sizeof(ready)) == (ssize_t)sizeof(ready) &&
               binds_current(st, &ready)) {
        /* Primed for this image, ready (a child whose setup failed has exited: EOF), and
         * what it bound is still what the policy's paths name. */
        struct iovec iov = {id, CALL_ID_MAX};
        ok = send_iov(ws, &iov, 1, fds, 6) == 0;
    }
    close(ws);
    if (!ok) {
        kill(pid, SIGKILL);
        reap(pid);
        return 0;
    }
    /* Hold its mount namespace from now on, so that init's exit does not wait for the
     * namespace's teardown; the helper takes it over when the call has ended. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
    s->taken_mntns = open(path, O_RDONLY | O_CLOEXEC);
    s->taken_pid = pid;
    s->taken_img = s->warm_primed ? NULL : img;
    return pid;
}

pid_t ct_pool_spawn(struct ct_slot *s, const struct ct_state *st, const char *call_id,
                    const int fds[6], bool fresh, bool *sent, struct gate_error *err)
{
    const struct gate_buf *img = &st->image;
    char id[CALL_ID_MAX] = {0};
    snprintf(id, sizeof(id), "%s", call_id);
    *sent = false;
    struct ct_pool_note note;
    if (!s->have_note && read_note(s, &note) != 'N') {
        s->retired = true; /* dead or stuck helper: nothing was started */
        return gate_err(err, GATE_E_SANDBOX, "pool helper: no warm child announced");
    }
    s->have_note = false;
    uint64_t prev_id = s->last_id;
    s->last_id = st->image_id;      /* what the helper primes next */
    if (s->warm_pid > 0 && fresh) { /* set up anew: discard the warm child */
        close(s->warm_sock);
        kill(s->warm_pid, SIGKILL);
        reap(s->warm_pid);
        s->warm_pid = 0, s->warm_sock = -1;
    }
    if (s->warm_pid > 0) {
        s->last_id = prev_id; /* take_warm compares with this */
        pid_t pid = take_warm(s, st, id, fds);
        s->last_id = st->image_id;
        if (pid > 0) return pid;
    }
    /* No usable warm child: the helper starts a fresh one for this job. A child that died
     * while priming may have moved the counters: take the base afresh. */
    ct_cg_counters(pool_cfg, &s->cg, &s->oom_base, &s->pids_base);
    /* The helper makes the slot's next warm child while this job runs: one more in pids. */
    if (s->have_last && ct_cg_set_limits(pool_cfg, &s->cg, &s->last, 2, err) < 0) return -1;
    s->have_last = false; /* the next call writes its own limits again */
    char hdr[HDR] = {'J'};
    struct iovec iov[3] = {{hdr, HDR}, {id, CALL_ID_MAX}, {img->data, img->len}};
    errno = 0;
    if (send_iov(s->sock, iov, 3, fds, 6) < 0) {
        s->retired = true;
        return gate_err_errno(err, GATE_E_SANDBOX, errno ? errno : EPIPE, "pool helper");
    }
    if (read_note(s, &note) != 'R') {
        /* The job may have started: never start it a second time elsewhere. */
        *sent = true;
        s->retired = true;
        return gate_err_errno(err, GATE_E_SANDBOX, errno ? errno : EPIPE, "pool helper reply");
    }
    if (note.pid < 0) /* no child took the job */
        return gate_err_errno(err, GATE_E_SANDBOX, -note.pid, "pool child");
    return note.pid;
}

void ct_pool_started(struct ct_slot *s, pid_t pid)
{
    char path[64];
    struct stat sb;
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
    /* pid is our unreaped child, so this names its namespace. Without it nothing in the
     * cgroup can be told apart from the helper: retire the slot after this call. */
    if (stat(path, &sb) == 0) {
        s->pidns = sb.st_ino;
    } else {
        s->pidns = 0;
        s->retired = true;
    }
}

void ct_pool_kill(struct ct_slot *s)
{
    if (s->pidns) {
        s->clean = ct_cg_members(pool_cfg, &s->cg, s->pidns) == 0;
        if (!s->clean) ct_cg_kill(pool_cfg, &s->cg, s->pidns);
    }
}

void ct_pool_outcome(struct ct_slot *s, bool *oom, bool *pids_hit)
{
    uint64_t oom_now = 0, pids_now = 0;
    ct_cg_counters(pool_cfg, &s->cg, &oom_now, &pids_now);
    *oom = oom_now > s->oom_base;
    *pids_hit = pids_now > s->pids_base;
}

/* Tear a slot down for good: its helper, warm child and cgroup. The slot is not in use. */
static void teardown_slot(struct ct_slot *s)
{
    if (s->taken_mntns >= 0) {
        close(s->taken_mntns);
        s->taken_mntns = -1;
    }
    if (s->warm_sock >= 0) {
        close(s->warm_sock); /* an unused warm child sees EOF and exits */
        s->warm_sock = -1;
    }
    if (s->sock >= 0) {
        close(s->sock); /* the helper sees EOF and exits */
        s->sock = -1;
    }
    /* The helper and its warm child are ours to reap (the warm child via CLONE_PARENT): a
     * zombie would keep the cgroup from being removed. */
    pid_t pids[16];
    size_t n = ct_cg_list(pool_cfg, &s->cg, pids, sizeof(pids) / sizeof(pids[0]));
    ct_cg_kill(pool_cfg, &s->cg, 0);
    for (size_t k = 0; k < n; k++)
        while (waitpid(pids[k], NULL, 0) < 0 && errno == EINTR)
            ;
    if (s->helper > 0) {
        kill(s->helper, SIGKILL);
        waitpid(s->helper, NULL, 0);
        s->helper = 0;
    }
    ct_cg_destroy(pool_cfg, &s->cg);
}

void ct_pool_release(struct ct_slot *s)
{
    /* The next call's counter base: now, before the helper prepares the next child. */
    if (s->taken_pid && !s->retired) {
        ct_cg_counters(pool_cfg, &s->cg, &s->oom_base, &s->pids_base);
        s->have_base = true;
    }
    if (s->taken_pid) notify_taken(s);
    /* Every process of the call is gone before the slot serves another call (the common
     * case: the kill after init's exit found none, since leaving PID 1 ends the namespace). */
    for (int i = 0;
         s->pidns && !s->clean && i < 2000 && ct_cg_members(pool_cfg, &s->cg, s->pidns) > 0; i++) {
        ct_cg_kill(pool_cfg, &s->cg, s->pidns);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    bool alive = s->helper > 0 && waitpid(s->helper, NULL, WNOHANG) == 0;
    if (!alive || (s->pidns && !s->clean && ct_cg_members(pool_cfg, &s->cg, s->pidns) > 0))
        s->retired = true;
    if (s->retired && s->helper > 0) {
        /* Whatever is left in a retired slot is killed: its helper, a warm or half-started
         * child. Those that are ours (the helper; children via CLONE_PARENT) are reaped. */
        gate_log("warn", "container.pool", "retiring slot %s", s->cg.path[0]);
        pid_t pids[16];
        size_t n = ct_cg_list(pool_cfg, &s->cg, pids, sizeof(pids) / sizeof(pids[0]));
        ct_cg_kill(pool_cfg, &s->cg, 0);
        bool helper_reaped = !alive; /* by the WNOHANG check */
        for (size_t k = 0; k < n; k++) {
            while (waitpid(pids[k], NULL, 0) < 0 && errno == EINTR)
                ;
            helper_reaped |= pids[k] == s->helper;
        }
        if (!helper_reaped) { /* not in the cgroup's list: kill and reap it by its pid now */
            kill(s->helper, SIGKILL);
            waitpid(s->helper, NULL, 0);
        }
        /* Reaped: its pid may be reused at once, so it must never be signalled again. */
        s->helper = 0;
        if (s->sock >= 0) {
            close(s->sock);
            s->sock = -1;
        }
    }
    pthread_mutex_lock(&pool_mu);
    bool down = pool_down;
    s->busy = false;
    s->pidns = 0;
    s->clean = false;
    pthread_mutex_unlock(&pool_mu);
    if (down) { /* the shutdown left this slot to its call */
        teardown_slot(s);
        ct_cg_teardown(pool_cfg);
    }
}

void ct_pool_shutdown(void)
{
    bool busy[POOL_MAX];
    pthread_mutex_lock(&pool_mu);
    pool_down = true;
    for (int i = 0; i < nslots; i++) {
        busy[i] = slots[i].busy;
        slots[i].retired = true;
    }
    pthread_mutex_unlock(&pool_mu);
    for (int i = 0; i < nslots; i++) {
        struct ct_slot *s = &slots[i];
        if (!busy[i])
            teardown_slot(s);
        else if (s->pidns)
            ct_cg_kill(pool_cfg, &s->cg, s->pidns); /* end the running call; it cleans up */
    }
}

void ct_pool_metrics(struct gate_buf *out)
{
    int busy = 0, retired = 0;
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < nslots; i++) {
        busy += slots[i].busy;
        retired += slots[i].retired;
    }
    int n = nslots;
    pthread_mutex_unlock(&pool_mu);
    gate_buf_printf(out,
                    "gatehouse_container_pool_slots %d\n"
                    "gatehouse_container_pool_busy %d\n"
                    "gatehouse_container_pool_retired %d\n",
                    n, busy, retired);
}
