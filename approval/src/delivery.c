/* delivery.c: webhook delivery on background threads.
 *
 * A small queue of due deliveries served by DELIVERY_THREADS threads, so a slow or dead
 * endpoint delays other webhooks at most by its timeouts and never blocks a call: holding
 * a call only pushes onto the queue. Failed attempts are retried with exponential backoff
 * and full jitter until the call leaves pending_approval, expires, or WEBHOOK_MAX_ATTEMPTS
 * is reached. Every attempt and its HTTP status go into the store; the first 2xx marks the
 * webhook delivered together with its webhook.sent audit record.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "approval_internal.h"

static uint64_t mono_ms(void)
{
    return gate_monotonic_ns() / 1000000ull;
}

int approval_new_token(char token[72], char sha[65])
{
    memcpy(token, "gdt_", 4);
    if (gate_random_hex(token + 4, 32) < 0) return -1;
    gate_sha256_hex(token, strlen(token), sha);
    return 0;
}

int approval_delivery_push_locked(struct approval *a, const struct delivery *d)
{
    /* Stopping: the queue is (being) freed. Not delivered, so the next start sends it. */
    if (a->stopping) return 0;
    if (a->nq == a->capq) {
        size_t ncap = a->capq ? a->capq * 2 : 16;
        struct delivery *nq = realloc(a->queue, ncap * sizeof(*nq));
        if (!nq) return -1;
        a->queue = nq;
        a->capq = ncap;
    }
    a->queue[a->nq++] = *d;
    pthread_cond_broadcast(&a->wake);
    return 0;
}

int approval_delivery_enqueue(struct approval *a, const char *call_id, int attempt,
                              struct gate_error *err)
{
    struct delivery d = {.attempt = attempt, .due_ms = mono_ms()};
    char sha[65];
    snprintf(d.call_id, sizeof(d.call_id), "%s", call_id);
    memcpy(d.msg_id, "msg_", 4);
    if (approval_new_token(d.token, sha) < 0 || gate_random_hex(d.msg_id + 4, 16) < 0)
        return gate_err(err, GATE_E_INTERNAL, "getrandom failed");
    if (a->ops->add_token(a->store, call_id, sha, err) < 0) return -1;
    pthread_mutex_lock(&a->lock);
    int rc = approval_delivery_push_locked(a, &d);
    pthread_mutex_unlock(&a->lock);
    return rc < 0 ? gate_err(err, GATE_E_NOMEM, "out of memory") : 0;
}

void approval_followup_enqueue(struct approval *a, const char *call_id)
{
    struct delivery d = {.due_ms = mono_ms(), .followup = true};
    snprintf(d.call_id, sizeof(d.call_id), "%s", call_id);
    memcpy(d.msg_id, "msg_", 4);
    if (gate_random_hex(d.msg_id + 4, 16) < 0) return;
    pthread_mutex_lock(&a->lock);
    approval_delivery_push_locked(a, &d);
    pthread_mutex_unlock(&a->lock);
}

/* The format of the endpoint r is sent to: the configured one for the default endpoint. */
static enum approval_format format_for(const struct approval *a, const struct approval_row *r)
{
    bool default_endpoint =
        a->cfg.webhook_url && r->webhook_url && strcmp(a->cfg.webhook_url, r->webhook_url) == 0;
    return default_endpoint ? a->cfg.webhook_format : APPROVAL_FORMAT_STANDARD;
}

static json_t *webhook_body(struct approval *a, const struct approval_row *r,
                            const struct delivery *d)
{
    char expires[32], url[2048], page[2048];
    gate_rfc3339((uint64_t)r->expires_ms, expires);
    snprintf(url, sizeof(url), "%s/v1/approvals/%s", a->public_url, r->call_id);
    /* The approval page's link carries the token: the page sends no Referer and never logs it. */
    snprintf(page, sizeof(page), "%s/approve/%s?t=%s", a->public_url, r->call_id, d->token);
    enum approval_format f = format_for(a, r);
    if (d->followup) return f == APPROVAL_FORMAT_STANDARD ? NULL : approval_chat_followup(f, r);
    if (f != APPROVAL_FORMAT_STANDARD) return approval_chat_message(f, r, page);
    json_t *args = json_loads(r->args_json, 0, NULL);
    return json_pack("{s:s,s:s,s:o,s:s?,s:s?,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "call_id", r->call_id,
                     "tool", r->tool, "arguments", args ? args : json_null(), "agent", r->agent,
                     "session", r->session, "blast_radius", r->blast_radius, "policy_sha256",
                     r->policy_sha256, "args_sha256", r->args_sha256, "expires_at", expires,
                     "decide_url", url, "approve_url", page, "decision_token", d->token);
}

/* The TLS client context, made at the first https:// delivery: loading the system's CA store
 * takes milliseconds that a gateway without https webhooks need not spend. NULL with why
 * filled if it cannot be made (the attempt fails and is retried like any other). */
static struct ssl_ctx_st *tls_context(struct approval *a, char *why, size_t why_len)
{
    pthread_mutex_lock(&a->lock);
    struct ssl_ctx_st *ctx = a->tls;
    pthread_mutex_unlock(&a->lock);
    if (ctx || approval_tls_new(a->cfg.webhook_ca_file, &ctx, why, why_len) < 0) return ctx;
    pthread_mutex_lock(&a->lock);
    if (a->tls) { /* another sender made one meanwhile */
        approval_tls_free(ctx);
        ctx = a->tls;
    } else {
        a->tls = ctx;
    }
    pthread_mutex_unlock(&a->lock);
    return ctx;
}

/* POST body to r's endpoint, signed (Standard Webhooks headers, whatever the format: a chat
 * service ignores them, a relay in between can check them). 0 with *status, or -1 with why. */
static int post_signed(struct approval *a, const struct approval_row *r, const struct delivery *d,
                       int *status, char *why, size_t why_len)
{
    json_t *body = webhook_body(a, r, d);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return -1;
    char ts[24], sig[80], headers[512];
    snprintf(ts, sizeof(ts), "%lld", (long long)(gate_realtime_ms() / 1000));
    int rc = approval_sign_raw(a->secret, a->secret_len, d->msg_id, ts, text, strlen(text), sig,
                               sizeof(sig));
    struct approval_url u;
    struct ssl_ctx_st *tls = NULL;
    if (rc == 0 && approval_url_parse(r->webhook_url, &u) == 0 && u.tls &&
        !(tls = tls_context(a, why, why_len)))
        rc = -1;
    if (rc == 0) {
        snprintf(headers, sizeof(headers),
                 "webhook-id: %s\r\nwebhook-timestamp: %s\r\nwebhook-signature: %s\r\n", d->msg_id,
                 ts, sig);
        rc = approval_http_post(r->webhook_url, tls, headers, text, status, why, why_len);
    }
    free(text);
    return rc;
}

/* The outcome message, once. Returns 1 to retry later. */
static int followup_once(struct approval *a, const struct approval_row *r, struct delivery *d)
{
    int status = 0;
    char why[256] = "";
    if (a->secret_len <= 0 || format_for(a, r) == APPROVAL_FORMAT_STANDARD) return 0;
    int rc = post_signed(a, r, d, &status, why, sizeof(why));
    d->attempt++;
    if (rc == 0 && status >= 200 && status < 300) return 0;
    if (!why[0]) snprintf(why, sizeof(why), "HTTP %d", status);
    gate_log("warn", "webhook.followup_failed", "call %s attempt %d to %s: %s", r->call_id,
             d->attempt, r->webhook_url, why);
    return 1;
}

/* One attempt. Returns 1 to retry later, 0 when this delivery is over. */
static int attempt_once(struct approval *a, const struct approval_row *r, struct delivery *d)
{
    if (a->secret_len <= 0) {
        gate_log("error", "webhook.unsigned",
                 "call %s: no webhook_secret configured; "
                 "not sending an unsigned webhook to %s",
                 r->call_id, r->webhook_url);
        a->ops->record_attempt(a->store, r->call_id, ++d->attempt, (int64_t)gate_realtime_ms(), 0,
                               "no webhook_secret configured", NULL);
        return 0;
    }
    char why[256] = "";
    int status = 0, rc = post_signed(a, r, d, &status, why, sizeof(why));
    d->attempt++;
    bool ok = rc == 0 && status >= 200 && status < 300;
    if (!ok && !why[0]) snprintf(why, sizeof(why), "HTTP %d", status);
    struct gate_error err = {0};
    if (a->ops->record_attempt(a->store, r->call_id, d->attempt, (int64_t)gate_realtime_ms(),
                               status, ok ? NULL : why, &err) < 0)
        gate_log("error", "webhook.record", "call %s: %s", r->call_id, err.msg);
    if (!ok) {
        gate_log("warn", "webhook.failed", "call %s attempt %d to %s: %s", r->call_id, d->attempt,
                 r->webhook_url, why);
        return approval_url_parse(r->webhook_url, &(struct approval_url){0}) < 0 ? 0 : 1;
    }
    json_t *fields = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i}", "call_id", r->call_id, "tool", r->tool,
                               "url", r->webhook_url, "webhook_id", d->msg_id, "attempt",
                               d->attempt, "http_status", status);
    struct audit_hook_ctx hc = {a->audit, "webhook.sent", fields};
    if (a->ops->mark_delivered(a->store, r->call_id, approval_audit_hook, &hc, &err) < 0)
        gate_log("error", "webhook.record", "call %s: %s", r->call_id, err.msg);
    json_decref(fields);
    return 0;
}

/* Deliver d once; 1 if it should be retried. */
static int deliver(struct approval *a, struct delivery *d)
{
    struct approval_row r = {0};
    struct gate_error err = {0};
    int found = a->ops->get(a->store, d->call_id, &r, &err);
    /* A shared store: deliver only under this gateway's lease (0: another live one has it, or
     * the follow-up is done). A follow-up has a lease of its own, taken by the decision: the
     * gateway that held the call may still hold the webhook's. */
    if (found == 1 && a->ops->claim_webhook) {
        int mine = a->ops->claim_webhook(a->store, d->call_id, d->followup, &err);
        found = mine < 0 ? -1 : mine;
    }
    int retry = 0;
    if (found < 0)
        retry = 1; /* the store is unhappy; try again later */
    else if (d->followup && found == 1 && strcmp(r.state, ST_PENDING) != 0 && r.webhook_url)
        retry = followup_once(a, &r, d);
    else if (!d->followup && found == 1 && strcmp(r.state, ST_PENDING) == 0 && r.webhook_url &&
             !r.webhook_delivered && (int64_t)gate_realtime_ms() < r.expires_ms)
        retry = attempt_once(a, &r, d);
    if (retry && d->attempt >= WEBHOOK_MAX_ATTEMPTS) {
        gate_log("error", "webhook.gave_up", "call %s: no 2xx after %d attempts", d->call_id,
                 d->attempt);
        retry = 0;
    }
    /* The follow-up is over (sent, given up, or nothing to send): no gateway adopts it now. */
    if (d->followup && found == 1 && !retry && a->ops->followup_done &&
        a->ops->followup_done(a->store, d->call_id, &err) < 0)
        gate_log("error", "webhook.record", "call %s: %s", d->call_id, err.msg);
    approval_row_clear(&r);
    return retry;
}

/* Adopt the webhooks (followup: the chat follow-ups) whose gateway died. */
static int adopt(struct approval *a, bool followup, struct gate_error *err)
{
    struct approval_row *rows = NULL;
    size_t n = 0;
    if (a->ops->list_webhook_orphans(a->store, followup, &rows, &n, err) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int mine = a->ops->claim_webhook(a->store, rows[i].call_id, followup, err);
        if (mine == 1) {
            gate_log("info", followup ? "webhook.followup_adopted" : "webhook.adopted",
                     "call %s: its delivering gateway is gone", rows[i].call_id);
            if (followup)
                approval_followup_enqueue(a, rows[i].call_id);
            else
                rc = approval_delivery_enqueue(a, rows[i].call_id, rows[i].webhook_attempts, err);
        } else if (mine < 0) {
            rc = -1;
        }
    }
    approval_rows_free(rows, n);
    return rc;
}

int approval_delivery_adopt(struct approval *a, struct gate_error *err)
{
    return adopt(a, false, err) < 0 || adopt(a, true, err) < 0 ? -1 : 0;
}

static uint64_t backoff_ms(int attempt)
{
    uint64_t d = WEBHOOK_BACKOFF_BASE_MS;
    for (int i = 1; i < attempt && d < WEBHOOK_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > WEBHOOK_BACKOFF_MAX_MS) d = WEBHOOK_BACKOFF_MAX_MS;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint32_t)gate_monotonic_ns();
    return d / 2 + rnd % (d / 2 + 1); /* jitter: spread retries of many calls apart */
}

static void timed_wait(struct approval *a, uint64_t until_mono_ms)
{
    struct timespec ts;
    uint64_t ns = until_mono_ms * 1000000ull;
    ts.tv_sec = (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_cond_timedwait(&a->wake, &a->lock, &ts); /* a->wake uses CLOCK_MONOTONIC */
}

static void *sender_main(void *arg)
{
    struct approval *a = arg;
    /* OpenSSL writes to the socket with write(): a receiver that hangs up mid-request must not
     * kill the gateway with SIGPIPE. Blocked here, such a signal stays pending on this thread
     * and is never delivered; the write fails with EPIPE instead. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        size_t best = a->nq;
        for (size_t i = 0; i < a->nq; i++)
            if (best == a->nq || a->queue[i].due_ms < a->queue[best].due_ms) best = i;
        if (best == a->nq) {
            pthread_cond_wait(&a->wake, &a->lock);
            continue;
        }
        uint64_t now = mono_ms();
        if (a->queue[best].due_ms > now) {
            timed_wait(a, a->queue[best].due_ms);
            continue;
        }
        struct delivery d = a->queue[best];
        a->queue[best] = a->queue[--a->nq];
        pthread_mutex_unlock(&a->lock);
        int retry = deliver(a, &d);
        pthread_mutex_lock(&a->lock);
        if (retry && !a->stopping) {
            d.due_ms = mono_ms() + backoff_ms(d.attempt);
            approval_delivery_push_locked(a, &d);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int approval_delivery_start(struct approval *a, struct gate_error *err)
{
    for (int i = 0; i < DELIVERY_THREADS; i++) {
        int rc = pthread_create(&a->senders[i], NULL, sender_main, a);
        if (rc != 0) {
            for (int k = 0; k < i; k++) {
                pthread_mutex_lock(&a->lock);
                a->stopping = true;
                pthread_cond_broadcast(&a->wake);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->senders[k], NULL);
            }
            return gate_err_errno(err, GATE_E_INTERNAL, rc, "start webhook threads");
        }
    }
    return 0;
}

void approval_delivery_stop(struct approval *a)
{
    for (int i = 0; i < DELIVERY_THREADS; i++)
        pthread_join(a->senders[i], NULL);
    /* Tokens of deliveries not made die with the queue; a restart issues new ones. */
    if (a->queue) explicit_bzero(a->queue, a->capq * sizeof(*a->queue));
    free(a->queue);
    a->queue = NULL;
    a->nq = a->capq = 0;
    approval_tls_free(a->tls);
    a->tls = NULL;
}
