/* approval.c: the hold queue's life cycle: open (with crash recovery), hold, transitions,
 * running approved calls exactly once, expiry, long polls, close.
 *
 *   pending_approval -> approved -> started -> finished
 *                    -> denied | expired        started (found at startup) -> interrupted
 *
 * A call runs only after the compare-and-set approved -> started has committed, and a
 * call found in `started` at startup is never run again: an irreversible call runs at
 * most once, even across a crash.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "approval_internal.h"

int approval_audit_hook(void *ctx, struct gate_error *err)
{
    const struct audit_hook_ctx *c = ctx;
    if (!c->log) return 0;
    json_t *empty = c->fields ? NULL : json_object();
    int rc = audit_append(c->log, c->event, c->fields ? c->fields : empty, NULL, err);
    json_decref(empty);
    return rc;
}

bool approval_state_final(const char *state)
{
    return strcmp(state, ST_PENDING) != 0 && strcmp(state, ST_APPROVED) != 0 &&
           strcmp(state, ST_STARTED) != 0;
}

void approval_notify(struct approval *a, const char *call_id)
{
    if (a->hooks.on_change) a->hooks.on_change(a->hooks.ctx, call_id);
}

int approval_transition(struct approval *a, const char *call_id, const char *from, const char *to,
                        const struct store_update *upd, const char *event, json_t *fields,
                        struct gate_error *err)
{
    struct audit_hook_ctx hc = {a->audit, event, fields};
    struct store_update u = upd ? *upd : (struct store_update){0};
    /* Decided or expired: a chat channel that was asked hears the outcome. Due in the store with
     * the decision (a shared store: another gateway sends it if this one dies first). */
    u.followup = strcmp(from, ST_PENDING) == 0 && a->cfg.webhook_format != APPROVAL_FORMAT_STANDARD;
    int rc = a->ops->cas_state(a->store, call_id, from, to, &u, event ? approval_audit_hook : NULL,
                               &hc, err);
    if (rc == 1) approval_notify(a, call_id);
    if (rc == 1 && u.followup) approval_followup_enqueue(a, call_id);
    return rc;
}

/* ---- running approved calls ------------------------------------------------------------- */
struct run_job {
    struct approval *a;
    char call_id[40];
};

static char *error_result(const struct approval_row *r, const struct gate_error *e)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "call_id", r->call_id, "tool", r->tool, "status",
                  "not_run", "error", "code", gate_code_str(e->code), "message", e->msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static void run_row(struct approval *a, const struct approval_row *r)
{
    struct gate_error err = {0};
    struct store_update up = {.started_ms = (int64_t)gate_realtime_ms()};
    /* The CAS commits before the tool can start: if we crash after it, the restart finds
     * `started` and marks the call interrupted instead of running it again. */
    if (approval_transition(a, r->call_id, ST_APPROVED, ST_STARTED, &up, NULL, NULL, &err) != 1)
        return;
    json_t *result = NULL;
    struct gate_error rerr = {0};
    struct approval_call call = {r->call_id,     r->tool,  r->policy_sha256, r->args_json,
                                 r->args_sha256, r->agent, r->session,       0};
    int rc = a->hooks.run(a->hooks.ctx, &call, &result, &rerr);
    char *text = NULL;
    json_t *fields = NULL;
    if (result) {
        /* The tool ran (rc < 0: its call.finished record could not be written): store what
         * happened, never "not_run", so nobody submits an irreversible call again. */
        text = json_dumps(result, JSON_COMPACT);
        if (rc < 0)
            gate_log("error", "approval.run_failed", "call %s ran: %s", r->call_id, rerr.msg);
    } else {
        text = error_result(r, &rerr);
        gate_log("error", "approval.run_failed", "call %s: %s", r->call_id, rerr.msg);
        /* These two are refused before call.started: say in the audit log why nothing ran. */
        if (rerr.code == GATE_E_DECISION_MISMATCH || rerr.code == GATE_E_TOOL_NOT_FOUND)
            fields = json_pack("{s:s,s:s,s:s,s:s}", "call_id", r->call_id, "tool", r->tool, "code",
                               gate_code_str(rerr.code), "message", rerr.msg);
    }
    json_decref(result);
    struct store_update fin = {.result_json = text, .finished_ms = (int64_t)gate_realtime_ms()};
    if (approval_transition(a, r->call_id, ST_STARTED, ST_FINISHED, &fin,
                            fields ? "call.not_run" : NULL, fields, &err) < 0)
        gate_log("error", "approval.store", "call %s: %s", r->call_id, err.msg);
    json_decref(fields);
    free(text);
}

static void *run_main(void *arg)
{
    struct run_job *job = arg;
    struct approval *a = job->a;
    struct approval_row r = {0};
    struct gate_error err = {0};
    if (a->ops->get(a->store, job->call_id, &r, &err) == 1 && strcmp(r.state, ST_APPROVED) == 0)
        run_row(a, &r);
    approval_row_clear(&r);
    free(job);
    pthread_mutex_lock(&a->lock);
    a->runs--;
    pthread_cond_broadcast(&a->runs_done);
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int approval_start_run(struct approval *a, const char *call_id, struct gate_error *err)
{
    struct run_job *job = calloc(1, sizeof(*job));
    if (!job) return gate_err(err, GATE_E_NOMEM, "out of memory");
    job->a = a;
    snprintf(job->call_id, sizeof(job->call_id), "%s", call_id);
    pthread_mutex_lock(&a->lock);
    bool stopping = a->stopping;
    if (!stopping) a->runs++;
    pthread_mutex_unlock(&a->lock);
    if (stopping) {
        /* Still approved in the store: the next start of the gateway runs it, once. */
        gate_log("info", "approval.deferred",
                 "call %s approved while stopping; it runs at the next start", call_id);
        free(job);
        return 0;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, run_main, job);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(job);
        pthread_mutex_lock(&a->lock);
        a->runs--;
        pthread_mutex_unlock(&a->lock);
        /* Still approved in the store: the next start of the gateway runs it. */
        return gate_err_errno(err, GATE_E_INTERNAL, rc, "start a run thread");
    }
    return 0;
}

/* ---- expiry ------------------------------------------------------------------------------ */
static void expire_due(struct approval *a)
{
    struct approval_row *rows = NULL;
    size_t n = 0;
    struct gate_error err = {0};
    if (a->ops->list_by_state(a->store, ST_PENDING, (int64_t)gate_realtime_ms(), NULL, &rows, &n,
                              &err) < 0) {
        gate_log("error", "approval.store", "expiry scan: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char at[32];
        gate_rfc3339((uint64_t)rows[i].expires_ms, at);
        json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "call_id", rows[i].call_id, "tool", rows[i].tool,
                              "args_sha256", rows[i].args_sha256, "expired_at", at);
        if (approval_transition(a, rows[i].call_id, ST_PENDING, ST_EXPIRED, NULL, "call.expired", f,
                                &err) < 0)
            gate_log("error", "approval.expire", "call %s: %s", rows[i].call_id, err.msg);
        json_decref(f);
    }
    approval_rows_free(rows, n);
}

static int interrupt_started(struct approval *a, struct gate_error *err);

static void notify_change(void *ctx, const char *call_id)
{
    approval_notify(ctx, call_id);
}

static void *timer_main(void *arg)
{
    struct approval *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        pthread_mutex_unlock(&a->lock);
        expire_due(a);
        struct gate_error err = {0};
        if (a->ops->list_orphans && interrupt_started(a, &err) < 0)
            gate_log("error", "approval.store", "dead runs: %s", err.msg);
        if (a->ops->list_webhook_orphans && approval_delivery_adopt(a, &err) < 0)
            gate_log("error", "approval.store", "dead deliveries: %s", err.msg);
        if (a->ops->drain_changes && a->ops->drain_changes(a->store, notify_change, a, &err) < 0)
            gate_log("warn", "approval.store", "changes made elsewhere: %s", err.msg);
        pthread_mutex_lock(&a->lock);
        if (a->stopping) break;
        uint64_t ns = gate_monotonic_ns() + EXPIRY_TICK_MS * 1000000ull;
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_nsec = (long)(ns % 1000000000ull)};
        pthread_cond_timedwait(&a->wake, &a->lock, &ts);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ---- open, recover, close ----------------------------------------------------------------- */
static int copy_config(struct approval *a, const struct approval_config *cfg,
                       struct gate_error *err)
{
    if ((cfg->webhook_url && !(a->cfg.webhook_url = strdup(cfg->webhook_url))) ||
        (cfg->webhook_ca_file && !(a->cfg.webhook_ca_file = strdup(cfg->webhook_ca_file))))
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    a->cfg.webhook_format = cfg->webhook_format;
    if (cfg->webhook_secret) {
        a->secret_len = approval_secret_decode(cfg->webhook_secret, a->secret, sizeof(a->secret));
        if (a->secret_len <= 0)
            return gate_err(err, GATE_E_CONFIG, "webhook secret must be \"whsec_\" + base64");
    }
    return 0;
}

/* Calls that were running when their gateway died: their outcome is unknown, and running
 * them again could repeat an irreversible effect. Mark them interrupted, never re-run. An
 * embedded store finds them at open; a shared one by their expired lease, at every tick. */
static int interrupt_started(struct approval *a, struct gate_error *err)
{
    struct approval_row *rows = NULL;
    size_t n = 0;
    if ((a->ops->list_orphans
             ? a->ops->list_orphans(a->store, &rows, &n, err)
             : a->ops->list_by_state(a->store, ST_STARTED, 0, NULL, &rows, &n, err)) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct approval_row *r = &rows[i];
        if (strcmp(r->state, ST_APPROVED) == 0) {
            /* Approved by a gateway that died before starting it: run it here (the CAS
             * approved -> started still lets only one gateway run it). */
            rc = approval_start_run(a, r->call_id, err);
            continue;
        }
        json_t *res = json_pack("{s:s,s:s,s:s,s:s}", "call_id", r->call_id, "tool", r->tool,
                                "status", "interrupted", "detail",
                                "the gateway stopped while the call was running; its outcome is "
                                "unknown and it was not run again");
        char *text = json_dumps(res, JSON_COMPACT);
        json_decref(res);
        json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "call_id", r->call_id, "tool", r->tool,
                              "args_sha256", r->args_sha256, "policy_sha256", r->policy_sha256);
        struct store_update up = {.result_json = text, .finished_ms = (int64_t)gate_realtime_ms()};
        rc = approval_transition(a, r->call_id, ST_STARTED, ST_INTERRUPTED, &up, "call.interrupted",
                                 f, err) < 0
                 ? -1
                 : 0;
        json_decref(f);
        free(text);
    }
    approval_rows_free(rows, n);
    return rc;
}

/* Approved calls not yet started are started; pending ones wait again, and their webhook is
 * sent again (with a new decision token) if it was not delivered. */
int approval_resume(struct approval *a, struct gate_error *err)
{
    struct approval_row *rows = NULL;
    size_t n = 0;
    if (a->ops->list_by_state(a->store, NULL, 0, NULL, &rows, &n, err) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct approval_row *r = &rows[i];
        if (strcmp(r->state, ST_APPROVED) == 0)
            rc = approval_start_run(a, r->call_id, err);
        else if (strcmp(r->state, ST_PENDING) == 0 && r->webhook_url && !r->webhook_delivered &&
                 r->webhook_attempts < WEBHOOK_MAX_ATTEMPTS)
            rc = approval_delivery_enqueue(a, r->call_id, r->webhook_attempts, err);
    }
    approval_rows_free(rows, n);
    return rc;
}

static int start_threads(struct approval *a, struct gate_error *err)
{
    if (approval_delivery_start(a, err) < 0) return -1;
    int rc = pthread_create(&a->timer, NULL, timer_main, a);
    if (rc != 0) {
        pthread_mutex_lock(&a->lock);
        a->stopping = true;
        pthread_cond_broadcast(&a->wake);
        pthread_mutex_unlock(&a->lock);
        approval_delivery_stop(a);
        return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the expiry thread");
    }
    a->threads_started = true;
    return 0;
}

static struct approval *alloc_approval(void)
{
    struct approval *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines from gate_monotonic_ns */
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, &ca);
    pthread_cond_init(&a->runs_done, &ca);
    pthread_condattr_destroy(&ca);
    return a;
}

int approval_open(const char *state_dir, const struct approval_config *cfg, struct audit_log *audit,
                  const char *public_url, const struct approval_hooks *hooks, struct approval **out,
                  struct gate_error *err)
{
    static const struct approval_config none = {0};
    struct approval *a = alloc_approval();
    if (!a) return gate_err(err, GATE_E_NOMEM, "out of memory");
    a->ops = cfg && cfg->database ? &approval_store_pg : &approval_store_sqlite;
    a->audit = audit;
    a->hooks = *hooks;
    a->public_url = strdup(public_url ? public_url : "");
    if (!a->public_url || copy_config(a, cfg ? cfg : &none, err) < 0 ||
        a->ops->open(state_dir, cfg ? cfg : &none, &a->store, err) < 0 ||
        interrupt_started(a, err) < 0 || start_threads(a, err) < 0) {
        approval_close(a);
        return gate_err_wrap(err, "approval");
    }
    *out = a;
    return 0;
}

void approval_shutdown(struct approval *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->wake);
    bool join = a->threads_started;
    a->threads_started = false;
    pthread_mutex_unlock(&a->lock);
    if (join) {
        pthread_join(a->timer, NULL);
        approval_delivery_stop(a);
    }
}

unsigned approval_running(struct approval *a)
{
    if (!a) return 0;
    pthread_mutex_lock(&a->lock);
    unsigned n = a->runs;
    pthread_mutex_unlock(&a->lock);
    return n;
}

void approval_close(struct approval *a)
{
    if (!a) return;
    approval_shutdown(a);
    pthread_mutex_lock(&a->lock);
    /* Running calls finish (bounded by their policy's wall timeout) and record their result. */
    while (a->runs > 0)
        pthread_cond_wait(&a->runs_done, &a->lock);
    pthread_mutex_unlock(&a->lock);
    if (a->store) a->ops->close(a->store);
    approval_config_free(&a->cfg);
    explicit_bzero(a->secret, sizeof(a->secret));
    free(a->public_url);
    pthread_cond_destroy(&a->wake);
    pthread_cond_destroy(&a->runs_done);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

const char *approval_store_name(struct approval *a)
{
    return a ? a->ops->name : NULL;
}

bool approval_store_healthy(struct approval *a, char *why, size_t len)
{
    return !a || !a->ops->healthy || a->ops->healthy(a->store, why, len);
}
