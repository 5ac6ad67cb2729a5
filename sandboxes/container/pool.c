/* pool.c: sandboxes started inside their cgroup, and set up before their call.
 *
 * Moving a process into a cgroup takes the kernel's global cgroup_threadgroup_rwsem for
 * writing, which waits for an RCU grace period: 5-12 ms on this host, more than a whole
 * call should cost. So each slot of the pool is a cgroup with a small resident helper,
 * gatehouse-ct-helper (helper.c), started once and moved in once; the children it clones
 * start inside it. They are cloned with CLONE_PARENT, so they are the gateway's (waitable,
 * and their parent-death signal follows the gateway's main thread).
 *
 * Ahead of each call the helper clones a child (all namespaces, mapped, inside the cgroup),
 * primes it with the image of the slot's previous call (its whole sandbox set up, filter
 * installed) and announces it with its socket ('N'). A call for the same tool then goes
 * straight to that child with its fds and id; a blank child takes a whole job; any other
 * call is a job the helper gives to a child made for it ('J'). Each sandbox serves exactly
 * one call: priming prepares the next one, it reuses nothing. While the call runs the
 * gateway holds its mount namespace, so init's exit never waits for the namespace's
 * teardown; when the call has ended the helper is told ('U') and given that namespace, drops
 * it (the call's tmpfs pages leave the slot's memory cgroup) and only then makes the slot's
 * next child.
 *
 * Limits are rewritten per call when they change; the OOM and pids counters are read as
 * deltas. The helper counts against pids.max, which is raised to match, and is spared by
 * the kills, which only take processes in the call's PID namespace; the sandbox's
 * oom_score_adj of 1000 makes the OOM killer take it first. A helper that dies (or a cgroup
 * that cannot be emptied) retires its slot; calls then take the direct path in container.c,
 * which is slower but equally strict.
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

#include "../common/netpolicy.h"
#include "container.h"

#define POOL_MAX 32

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
    bool owes_end;                    /* the helper waits for the end of the current call */
    int taken_mntns;                  /* the mount namespace of the call's child, or -1 */
    const struct gate_buf *taken_img; /* the image the child was given, when it was blank */
    bool have_base;                   /* oom_base/pids_base were read when the last call ended */
    bool clean;                       /* the call's kill found none of its processes left */
    pid_t warm_pid;                   /* 0: none */
    int warm_sock;                    /* our end of its socket, or -1 */
    bool warm_primed;
    uint64_t cgid; /* the cgroup v2 id of the slot's directory (network policy), or 0 */
};

static struct ct_slot slots[POOL_MAX];
static int nslots;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t pool_clock; /* under pool_mu */
static bool pool_down;      /* under pool_mu: shut down, no more calls */
static const struct ct_cg_config *pool_cfg;
static int helper_exe = -1; /* gatehouse-ct-helper, opened at init (O_PATH) */
/* Which way calls went, and how long calls waited for their slot's next child to be ready
 * (the pool's refill): atomics, read by ct_pool_metrics. */
static struct {
    unsigned long long primed, blank, job, stale, refill_ns;
} stats;

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
    /* Deny-all from the start: nothing in the slot's directory reaches the network between
     * calls; a call puts it under its own policy (sbx_net_begin_cgroup) and back. */
    s->cgid = sbx_net_cgroup_id(ct_cg_v2_dir(pool_cfg, &s->cg));
    if (s->cgid && sbx_net_hold_cgroup(s->cgid, &err) < 0) goto fail;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) goto fail;
    /* Forked from the main thread at start (the children's parent-death signal follows it),
     * then gatehouse-ct-helper is exec'd: a program of its own, with its socket on fd 3, an
     * environment of one variable and nothing else. */
    char env0[96];
    snprintf(env0, sizeof(env0), "%s=%u:%u:%d", CT_HELPER_ENV, (unsigned)ids->uid,
             (unsigned)ids->gid, ids->cap_last);
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
        if (fd == 3) execveat(helper_exe, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    close(sv[1]);
    s->sock = sv[0];
    s->helper = pid;
    struct timeval tv = {5, 0}; /* a helper that does not answer is retired, not waited on */
    setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* The helper waits for this byte before it starts any child (helper.c). */
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
    if (ct_cg_destroy(pool_cfg, &s->cg) == 0) sbx_net_forget_cgroup(s->cgid); /* else deny-all */
    return -1;
}

int ct_pool_init(const struct ct_cg_config *cfg, const struct ct_ids *ids, const char *helper,
                 int n)
{
    pool_cfg = cfg;
    if (n <= 0) return 0;
    /* Opened once: the slots exec this very file, whatever the path names later. */
    if ((helper_exe = open(helper, O_PATH | O_CLOEXEC)) < 0) {
        gate_log("warn", "container.pool", "%s: %s", helper, strerror(errno));
        return 0;
    }
    if (n > POOL_MAX) n = POOL_MAX;
    for (int i = 0; i < n; i++)
        if (make_slot(&slots[nslots], i, ids) == 0) nslots++;
    return nslots;
}

uint64_t ct_pool_cgroup_id(const struct ct_slot *s)
{
    return s->cgid;
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
    int n = ct_msg_recv(s->sock, (char *)note, sizeof(*note), &fd, 1, &nfds);
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

/* Hold the mount namespace of the call's child from now on, so that init's exit does not wait
 * for the namespace's teardown; the helper drops it when the call has ended. img: the image a
 * blank child was given (the helper primes the next child with it). */
static void hold_mount_ns(struct ct_slot *s, pid_t pid, const struct gate_buf *img)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
    s->taken_mntns = open(path, O_RDONLY | O_CLOEXEC);
    s->taken_img = img;
}

/* Tell the helper the slot's call has ended (with the image, if its child was blank), handing
 * it the call's mount namespace to drop: the helper then makes the next child. Sent when the
 * call has ended, so that work does not compete with the call itself. */
static void notify_end(struct ct_slot *s)
{
    char hdr[CT_MSG_HDR] = {'U'};
    const struct gate_buf *img = s->taken_img;
    struct iovec iov[2] = {{hdr, CT_MSG_HDR}, {img ? img->data : NULL, img ? img->len : 0}};
    if (ct_msg_send(s->sock, iov, img ? 2 : 1, &s->taken_mntns, s->taken_mntns >= 0 ? 1 : 0) < 0)
        s->retired = true;
    if (s->taken_mntns >= 0) close(s->taken_mntns);
    s->taken_mntns = -1, s->taken_img = NULL, s->owes_end = false;
}

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

/* Give the call to the announced warm child directly. Returns its pid, or 0 when it cannot
 * take the call (then it is killed and reaped: nothing of the call ran in it). */
static pid_t take_warm(struct ct_slot *s, const struct ct_state *st, char id[CT_CALL_ID_MAX],
                       const int fds[6])
{
    const struct gate_buf *img = &st->image;
    pid_t pid = s->warm_pid;
    int ws = s->warm_sock;
    s->warm_pid = 0, s->warm_sock = -1;
    bool same = s->warm_primed && s->last_id == st->image_id;
    bool ok = false;
    struct ct_ready ready;
    if (!s->warm_primed && !st->host_net) { /* blank: it takes the whole job, sets up now */
        struct iovec iov[2] = {{id, CT_CALL_ID_MAX}, {img->data, img->len}};
        ok = ct_msg_send(ws, iov, 2, fds, 6) == 0;
    } else if (same) {
        /* Primed for this image, ready (a child whose setup failed has exited: EOF), and
         * what it bound is still what the policy's paths name. Waiting here for its setup
         * to finish is part of the pool's refill. */
        uint64_t t0 = gate_monotonic_ns();
        bool ready_ok = read(ws, &ready, sizeof(ready)) == (ssize_t)sizeof(ready);
        __atomic_add_fetch(&stats.refill_ns, gate_monotonic_ns() - t0, __ATOMIC_RELAXED);
        struct iovec iov = {id, CT_CALL_ID_MAX};
        ok = ready_ok && binds_current(st, &ready) && ct_msg_send(ws, &iov, 1, fds, 6) == 0;
    }
    close(ws);
    if (!ok) {
        __atomic_add_fetch(&stats.stale, 1, __ATOMIC_RELAXED);
        kill(pid, SIGKILL);
        reap(pid);
        return 0;
    }
    __atomic_add_fetch(s->warm_primed ? &stats.primed : &stats.blank, 1, __ATOMIC_RELAXED);
    hold_mount_ns(s, pid, s->warm_primed ? NULL : img);
    return pid;
}

pid_t ct_pool_spawn(struct ct_slot *s, const struct ct_state *st, const char *call_id,
                    const int fds[6], bool fresh, bool *sent, struct gate_error *err)
{
    const struct gate_buf *img = &st->image;
    char id[CT_CALL_ID_MAX] = {0};
    snprintf(id, sizeof(id), "%s", call_id);
    *sent = false;
    struct ct_pool_note note;
    uint64_t t0 = gate_monotonic_ns();
    char tag = s->have_note ? 'N' : read_note(s, &note);
    __atomic_add_fetch(&stats.refill_ns, gate_monotonic_ns() - t0, __ATOMIC_RELAXED);
    if (tag != 'N') {
        s->retired = true; /* dead or stuck helper: nothing was started */
        return gate_err(err, GATE_E_SANDBOX, "pool helper: no warm child announced");
    }
    s->have_note = false;
    s->owes_end = true; /* the helper now waits for this call's end ('U') */
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
    /* No usable warm child: the helper makes one for this job. A child that died while
     * priming may have moved the counters: take the base afresh. */
    ct_cg_counters(pool_cfg, &s->cg, &s->oom_base, &s->pids_base);
    char hdr[CT_MSG_HDR] = {'J'};
    struct iovec iov[3] = {{hdr, CT_MSG_HDR}, {id, CT_CALL_ID_MAX}, {img->data, img->len}};
    errno = 0;
    if (ct_msg_send(s->sock, iov, 3, fds, 6) < 0) {
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
    __atomic_add_fetch(&stats.job, 1, __ATOMIC_RELAXED);
    hold_mount_ns(s, note.pid, NULL);
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
    if (ct_cg_destroy(pool_cfg, &s->cg) == 0) sbx_net_forget_cgroup(s->cgid); /* else deny-all */
}

void ct_pool_release(struct ct_slot *s)
{
    /* The next call's counter base: now, before the helper prepares the next child. */
    if (s->owes_end && !s->retired) {
        ct_cg_counters(pool_cfg, &s->cg, &s->oom_base, &s->pids_base);
        s->have_base = true;
    }
    if (s->owes_end) notify_end(s);
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
#define LOAD(x) (double)__atomic_load_n(&(x), __ATOMIC_RELAXED)
    ct_metric(out, "gatehouse_container_pool_slots", "gauge", "Container pool slots.", n);
    ct_metric(out, "gatehouse_container_pool_busy", "gauge", "Container pool slots in use.", busy);
    ct_metric(out, "gatehouse_container_pool_retired", "gauge",
              "Container pool slots retired (helper died, cgroup not emptied).", retired);
    ct_metric(out, "gatehouse_container_pool_primed_total", "counter",
              "Calls given to a sandbox set up ahead for their tool.", LOAD(stats.primed));
    ct_metric(out, "gatehouse_container_pool_blank_total", "counter",
              "Calls given to a waiting blank sandbox, set up for them.", LOAD(stats.blank));
    ct_metric(out, "gatehouse_container_pool_job_total", "counter",
              "Calls given to a sandbox the slot's helper made for them.", LOAD(stats.job));
    ct_metric(out, "gatehouse_container_pool_stale_total", "counter",
              "Sandboxes set up ahead that were discarded (other tool, changed binds, failed).",
              LOAD(stats.stale));
    ct_metric(out, "gatehouse_container_pool_refill_wait_seconds_total", "counter",
              "Time calls waited for their slot's next sandbox to be made and set up.",
              LOAD(stats.refill_ns) / 1e9);
#undef LOAD
}
