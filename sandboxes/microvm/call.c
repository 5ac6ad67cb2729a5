/* call.c: one call's exchange with the guest agent, from the CALL frame to the result.
 *
 * The host side of proto.h. The wall-clock deadline runs from the moment the call is
 * handed to a guest that answered (READY or PONG); when it passes, the VM is killed.
 * Whatever the guest sends is bounded here too: frame lengths are checked before
 * anything is read into memory, output beyond the cap ends the call, and a guest
 * that speaks out of turn ends it as failed. The VM serves this one call and is
 * stopped with it, whatever the outcome (and reaped in the background).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "microvm.h"

static int put_strings(struct gate_buf *b, char *const *v, uint32_t *count)
{
    *count = 0;
    for (size_t i = 0; v && v[i]; i++, (*count)++)
        if (gate_buf_append(b, v[i], strlen(v[i]) + 1) < 0) return -1;
    return 0;
}

int mvm_call_frame(const struct policy *p, const struct mvm_policy *mp, const struct sbx_call *call,
                   uint32_t type, struct gate_buf *out, struct gate_error *err)
{
    memset(out, 0, sizeof(*out));
    const struct policy_limits *l = &p->limits;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct mvm_call c = {
        .realtime_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec,
        .output_bytes = l->output_bytes,
        .file_size_bytes = l->file_size_mb << 20,
        .cpu_time_s = (l->cpu_time_ms + 999) / 1000,
        .uid = (uint32_t)mvm.uid,
        .gid = (uint32_t)mvm.gid,
        .pids = (uint32_t)l->pids,
        .disk_mb = (uint32_t)l->disk_mb,
        .workspace_mb = p->filesystem.workspace ? (uint32_t)p->filesystem.workspace_mb : 0,
        .flags = p->filesystem.exec_workspace ? MVM_CALL_EXEC_SCRATCH : 0,
        .seccomp_len = (uint32_t)(mp->seccomp.len * sizeof(struct sock_filter)),
        .input_len = (uint32_t)call->input_len,
    };
    if (getrandom(c.seed, sizeof(c.seed), 0) != (ssize_t)sizeof(c.seed))
        return gate_err_errno(err, GATE_E_INTERNAL, errno, "microvm: getrandom");
    char **env = sbx_tool_env(p, call->call_id);
    if (!env) return gate_err(err, GATE_E_NOMEM, "out of memory");
    struct gate_buf body = {0};
    int rc = -1;
    if (gate_buf_append(&body, &c, sizeof(c)) < 0 ||
        gate_buf_append(&body, mp->seccomp.filter, c.seccomp_len) < 0 ||
        put_strings(&body, p->command, &c.argc) < 0 || put_strings(&body, env, &c.envc) < 0 ||
        gate_buf_append(&body, call->input, call->input_len) < 0) {
        gate_err(err, GATE_E_NOMEM, "out of memory");
        goto out;
    }
    if (body.len > MVM_CALL_MAX) {
        gate_err(err, GATE_E_SANDBOX, "microvm: the call is larger than %u bytes", MVM_CALL_MAX);
        goto out;
    }
    memcpy(body.data, &c, sizeof(c)); /* with argc and envc counted */
    struct mvm_hdr h = {type, (uint32_t)body.len};
    if (gate_buf_append(out, &h, sizeof(h)) < 0 || gate_buf_append(out, body.data, body.len) < 0) {
        gate_buf_free(out);
        gate_err(err, GATE_E_NOMEM, "out of memory");
        goto out;
    }
    rc = 0;
out:
    gate_buf_free(&body);
    sbx_free_strv(env);
    return rc;
}

/* ---- the exchange ------------------------------------------------------------------------ */

enum ending { RUNNING, ENDED_EXIT, ENDED_FAIL, ENDED_GONE, ENDED_TIMEOUT, ENDED_CAP, ENDED_PROTO };

struct exchange {
    struct mvm_vm *vm;
    const struct gate_buf *frame;
    size_t sent;
    struct mvm_hdr h;
    size_t hgot;
    char payload[MVM_DATA_MAX];
    size_t pgot;
    uint64_t cap;
    enum ending ending;
    struct mvm_exit exit;
    char text[MVM_FAIL_MAX + 1]; /* FAIL text or what broke the protocol */
    struct sbx_result *res;
};

static uint64_t output_len(const struct exchange *x)
{
    return x->res->out.len + x->res->err.len;
}

/* A complete frame from the guest. */
static void dispatch(struct exchange *x)
{
    switch (x->h.type) {
    case MVM_OUT:
    case MVM_ERR: {
        struct gate_buf *b = x->h.type == MVM_OUT ? &x->res->out : &x->res->err;
        size_t keep = x->pgot;
        if (output_len(x) + keep > x->cap) { /* the agent caps too; trust neither side alone */
            keep = (size_t)(x->cap - output_len(x));
            x->ending = ENDED_CAP;
        }
        if (keep && gate_buf_append(b, x->payload, keep) < 0) {
            snprintf(x->text, sizeof(x->text), "out of memory");
            x->ending = ENDED_PROTO;
        }
        return;
    }
    case MVM_EXIT:
        memcpy(&x->exit, x->payload, sizeof(x->exit));
        x->ending = ENDED_EXIT;
        return;
    case MVM_FAIL:
        memcpy(x->text, x->payload, x->pgot);
        x->text[x->pgot] = '\0';
        x->ending = ENDED_FAIL;
        return;
    default:
        snprintf(x->text, sizeof(x->text), "unexpected frame type %u", x->h.type);
        x->ending = ENDED_PROTO;
    }
}

static bool length_ok(const struct mvm_hdr *h)
{
    switch (h->type) {
    case MVM_OUT:
    case MVM_ERR:
        return h->len <= MVM_DATA_MAX;
    case MVM_EXIT:
        return h->len == sizeof(struct mvm_exit);
    case MVM_FAIL:
        return h->len <= MVM_FAIL_MAX;
    default:
        return h->len == 0;
    }
}

/* Parse what the guest sent: headers, then payloads, frame by frame. */
static void feed(struct exchange *x, const char *data, size_t n)
{
    while (n > 0 && x->ending == RUNNING) {
        if (x->hgot < sizeof(x->h)) {
            size_t take = sizeof(x->h) - x->hgot < n ? sizeof(x->h) - x->hgot : n;
            memcpy((char *)&x->h + x->hgot, data, take);
            x->hgot += take, data += take, n -= take;
            if (x->hgot < sizeof(x->h)) return;
            if (!length_ok(&x->h)) {
                snprintf(x->text, sizeof(x->text), "frame type %u with length %u", x->h.type,
                         x->h.len);
                x->ending = ENDED_PROTO;
                return;
            }
            x->pgot = 0;
        }
        size_t take = x->h.len - x->pgot < n ? x->h.len - x->pgot : n;
        memcpy(x->payload + x->pgot, data, take);
        x->pgot += take, data += take, n -= take;
        if (x->pgot == x->h.len) {
            dispatch(x);
            x->hgot = 0;
        }
    }
}

static void pump(struct exchange *x, uint64_t deadline)
{
    struct mvm_vm *vm = x->vm;
    uint64_t gone_by = 0; /* QEMU exited: the channel must reach EOF by then */
    char buf[65536];
    while (x->ending == RUNNING) {
        uint64_t now = gate_monotonic_ns();
        if (now >= deadline) {
            x->ending = ENDED_TIMEOUT;
            return;
        }
        if (gone_by && now >= gone_by) {
            x->ending = ENDED_GONE;
            return;
        }
        uint64_t until = gone_by && gone_by < deadline ? gone_by : deadline;
        int wait_ms =
            (int)((until - now + 999999) / 1000000 > 1000 ? 1000
                                                          : (until - now + 999999) / 1000000);
        bool sending = x->sent < x->frame->len;
        struct pollfd p[4] = {{vm->out_r, POLLIN, 0},
                              {vm->err_r, POLLIN, 0},
                              {gone_by ? -1 : vm->pidfd, POLLIN, 0},
                              {sending ? vm->in_w : -1, POLLOUT, 0}};
        if (poll(p, 4, wait_ms) < 0 && errno != EINTR) {
            snprintf(x->text, sizeof(x->text), "poll: %s", strerror(errno));
            x->ending = ENDED_PROTO;
            return;
        }
        if (p[3].revents) {
            ssize_t w = write(vm->in_w, x->frame->data + x->sent, x->frame->len - x->sent);
            if (w > 0) x->sent += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                gone_by = gate_monotonic_ns() + 2000000000ULL;
        }
        if (p[1].revents) mvm_console_drain(vm);
        if (p[2].revents) gone_by = gate_monotonic_ns() + 2000000000ULL;
        if (p[0].revents) {
            ssize_t n = read(vm->out_r, buf, sizeof(buf));
            if (n > 0) feed(x, buf, (size_t)n);
            if (n == 0) x->ending = ENDED_GONE;
        }
    }
}

/* The tool's own end, as the agent reported it (the container tier's rules). */
static void tool_ending(const struct policy *p, const struct mvm_exit *e, struct sbx_result *res)
{
    sbx_result_from_wait(res, e->wait_status);
    if (e->flags & MVM_EXIT_PIDS) {
        res->pids_limit_hit = true;
        if (res->status == SBX_FAILED || res->status == SBX_KILLED) {
            res->status = SBX_RESOURCE_LIMIT;
            snprintf(res->detail, sizeof(res->detail), "pids limit reached");
        }
    }
    if (e->flags & MVM_EXIT_OOM) {
        res->status = SBX_OOM;
        snprintf(res->detail, sizeof(res->detail),
                 "memory limit reached: OOM kill in the guest (memory_mb %llu)",
                 (unsigned long long)p->limits.memory_mb);
    }
    if (e->flags & MVM_EXIT_TRUNCATED) {
        res->status = SBX_OUTPUT_TRUNCATED;
        res->output_truncated = true;
    }
}

/* The VM went away before the tool's end was reported: say why as well as we can tell. */
static void vm_ending(struct mvm_vm *vm, struct sbx_result *res)
{
    char line[200];
    res->status = SBX_FAILED;
    for (int i = 0; i < 50 && mvm_console_drain(vm); i++) {
        struct pollfd c = {vm->err_r, POLLIN, 0};
        poll(&c, 1, 20);
    }
    if (mvm_console_panic(vm, line, sizeof(line))) {
        snprintf(res->detail, sizeof(res->detail), "the guest kernel crashed: %s", line);
    } else if (ct_jail_oom(&mvm.jail, &vm->proc)) {
        snprintf(res->detail, sizeof(res->detail),
                 "the VMM (QEMU) was killed at its own memory cap");
    } else {
        mvm_console_last(vm, line, sizeof(line));
        snprintf(res->detail, sizeof(res->detail), "the VM stopped before the tool ended%s%s",
                 line[0] ? ": " : "", line);
    }
    /* The whole console tail goes to the gateway's log for whoever investigates. */
    char tail[1024];
    size_t start = vm->console_len > sizeof(tail) - 1 ? vm->console_len - (sizeof(tail) - 1) : 0;
    size_t n = 0;
    for (size_t i = start; i < vm->console_len; i++)
        tail[n++] =
            (unsigned char)vm->console[i] >= 0x20 && vm->console[i] != 0x7f ? vm->console[i] : '|';
    tail[n] = '\0';
    gate_log("warn", "microvm.guest_stopped", "%s; console: %s", res->detail, tail);
}

int mvm_call_run(const struct policy *p, struct mvm_vm *vm, const struct gate_buf *frame,
                 struct sbx_result *res, struct gate_error *err)
{
    struct exchange *x = calloc(1, sizeof(*x));
    if (!x) {
        ct_jail_kill(&mvm.jail, &vm->proc);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    x->vm = vm;
    x->frame = frame;
    x->cap = p->limits.output_bytes;
    x->res = res;
    pump(x, gate_monotonic_ns() + p->limits.wall_timeout_ms * 1000000ULL);
    /* The VM is done either way: stop it before anything else (a timed-out tool keeps
     * burning a core otherwise). */
    if (x->ending != ENDED_GONE) ct_jail_kill(&mvm.jail, &vm->proc);
    int rc = 0;
    switch (x->ending) {
    case ENDED_EXIT:
        tool_ending(p, &x->exit, res);
        break;
    case ENDED_CAP:
        res->status = SBX_OUTPUT_TRUNCATED;
        res->output_truncated = true;
        break;
    case ENDED_TIMEOUT:
        res->status = SBX_TIMED_OUT;
        snprintf(res->detail, sizeof(res->detail), "wall_timeout reached; the VM was killed");
        break;
    case ENDED_FAIL:
        rc = gate_err(err, GATE_E_SANDBOX, "microvm: in the guest: %s", x->text);
        break;
    case ENDED_GONE:
        vm_ending(vm, res);
        break;
    default:
        res->status = SBX_FAILED;
        snprintf(res->detail, sizeof(res->detail), "the guest broke the protocol: %.200s", x->text);
        break;
    }
    free(x);
    return rc;
}
