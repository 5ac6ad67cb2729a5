/* calls.c: the call path, and the table of recent call records.
 *
 * request -> call.started (durable) -> sandbox -> call.finished (durable) -> response.
 * No tool runs before its call.started record is on disk, and no result is
 * returned before its call.finished record is.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* Recent records kept for GET /v1/calls/{id}; held calls live in the approval store. Bounded
 * by count and by bytes: a chatty tool must not grow the gateway without end. */
#define CALLS_KEPT 16384
#define CALLS_MAX_BYTES (256u << 20)

struct call_slot {
    char id[40];
    json_t *record;
    size_t bytes;
};

struct gw_calls {
    pthread_mutex_t lock;
    struct call_slot ring[CALLS_KEPT];
    size_t head;  /* oldest record */
    size_t count; /* records kept */
    size_t bytes; /* their approximate size */
};

struct gw_calls *gw_calls_new(void)
{
    struct gw_calls *c = calloc(1, sizeof(*c));
    if (c) pthread_mutex_init(&c->lock, NULL);
    return c;
}

void gw_calls_free(struct gw_calls *c)
{
    if (!c) return;
    for (size_t i = 0; i < CALLS_KEPT; i++)
        json_decref(c->ring[i].record);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void evict_oldest(struct gw_calls *c)
{
    struct call_slot *s = &c->ring[c->head];
    json_decref(s->record);
    s->record = NULL;
    c->bytes -= s->bytes;
    c->head = (c->head + 1) % CALLS_KEPT;
    c->count--;
}

void gw_calls_put(struct gw_calls *c, const char *call_id, json_t *record, size_t bytes)
{
    if (bytes > CALLS_MAX_BYTES) return; /* larger than the whole budget: answered once, not kept */
    pthread_mutex_lock(&c->lock);
    while (c->count && (c->count == CALLS_KEPT || c->bytes + bytes > CALLS_MAX_BYTES))
        evict_oldest(c);
    struct call_slot *s = &c->ring[(c->head + c->count) % CALLS_KEPT];
    snprintf(s->id, sizeof(s->id), "%s", call_id);
    s->record = json_incref(record);
    s->bytes = bytes;
    c->bytes += bytes;
    c->count++;
    pthread_mutex_unlock(&c->lock);
}

json_t *gw_calls_get(struct gw_calls *c, const char *call_id)
{
    json_t *found = NULL;
    pthread_mutex_lock(&c->lock);
    /* Newest first: a linear scan of a bounded ring is a few microseconds. */
    for (size_t k = c->count; k-- > 0 && !found;) {
        struct call_slot *s = &c->ring[(c->head + k) % CALLS_KEPT];
        if (strcmp(s->id, call_id) == 0) found = json_incref(s->record);
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Output as a JSON string. Invalid UTF-8 is never dropped: each invalid byte appears as the
 * text \xNN in the string, and the exact bytes are added as <name>_base64. */
static void put_output(json_t *obj, const char *name, const struct gate_buf *b)
{
    const unsigned char *s = (const unsigned char *)(b->data ? b->data : "");
    size_t len = b->len;
    json_t *str = json_stringn((const char *)s, len);
    if (str) {
        json_object_set_new(obj, name, str);
        return;
    }
    struct gate_buf text = {0};
    for (size_t i = 0; i < len;) {
        size_t n = 0;
        unsigned char c = s[i];
        if (c < 0x80)
            n = 1;
        else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
            n = 2;
        else if ((c & 0xf0) == 0xe0)
            n = 3;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
            n = 4;
        bool ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = (s[i + k] & 0xc0) == 0x80;
        if (ok && n > 1) {
            json_t *probe = json_stringn((const char *)s + i, n); /* overlong, surrogates */
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok && c == 0) ok = false; /* keep NUL visible as \x00 too */
        if (ok) {
            gate_buf_append(&text, s + i, n);
            i += n;
        } else {
            gate_buf_printf(&text, "\\x%02x", c);
            i++;
        }
    }
    json_object_set_new(obj, name, json_stringn(text.data ? text.data : "", text.len));
    gate_buf_free(&text);
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct gate_buf enc = {0};
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < len ? s[i + 2] : 0);
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], i + 1 < len ? b64[(v >> 6) & 63] : '=',
                     i + 2 < len ? b64[v & 63] : '='};
        gate_buf_append(&enc, q, 4);
    }
    char key[64];
    snprintf(key, sizeof(key), "%s_base64", name);
    json_object_set_new(obj, key, json_stringn(enc.data ? enc.data : "", enc.len));
    gate_buf_free(&enc);
}

static json_t *result_record(const struct policy *p, const char *call_id, const char *agent,
                             const char *session, const struct sbx_result *res, uint64_t dur_ms,
                             uint64_t started_seq, uint64_t finished_seq)
{
    json_t *r = json_object();
    json_object_set_new(r, "call_id", json_string(call_id));
    json_object_set_new(r, "tool", json_string(p->name));
    json_object_set_new(r, "status", json_string(sbx_status_str(res->status)));
    json_object_set_new(r, "exit_code",
                        res->exit_code >= 0 ? json_integer(res->exit_code) : json_null());
    if (res->term_signal) json_object_set_new(r, "signal", json_integer(res->term_signal));
    put_output(r, "stdout", &res->out);
    put_output(r, "stderr", &res->err);
    json_object_set_new(r, "output_truncated", json_boolean(res->output_truncated));
    if (res->pids_limit_hit) json_object_set_new(r, "pids_limit_hit", json_true());
    if (res->detail[0]) json_object_set_new(r, "detail", json_string(res->detail));
    json_object_set_new(r, "duration_ms", json_integer((json_int_t)dur_ms));
    json_object_set_new(r, "isolation", json_string(policy_isolation_name(p->isolation)));
    if (agent) json_object_set_new(r, "agent", json_string(agent));
    if (session) json_object_set_new(r, "session", json_string(session));
    json_object_set_new(r, "audit_seq", json_integer((json_int_t)finished_seq));
    json_object_set_new(r, "audit_seq_started", json_integer((json_int_t)started_seq));
    return r;
}

int gw_execute(struct gw *gw, const struct policy *p, const char *call_id, const char *args_json,
               const char *args_sha256, const char *agent, const char *session, json_t **result,
               struct gate_error *err)
{
    const char *iso = policy_isolation_name(p->isolation);
    json_t *started = json_pack("{s:s,s:s,s:s*,s:s*,s:s,s:s,s:s}", "call_id", call_id, "tool",
                                p->name, "agent", agent, "session", session, "args_sha256",
                                args_sha256, "policy_sha256", p->sha256, "isolation", iso);
    uint64_t started_seq = 0;
    int rc = audit_append(gw->audit, "call.started", started, &started_seq, err);
    json_decref(started);
    if (rc < 0) return -1; /* nothing ran: no tool runs without its record */

    struct sbx_call call = {.call_id = call_id, .input = args_json, .input_len = strlen(args_json)};
    struct sbx_result res;
    struct gate_error serr = {0};
    uint64_t t0 = gate_monotonic_ns();
    int run_rc = sbx_run(p, &call, &res, &serr);
    uint64_t dur_us = (gate_monotonic_ns() - t0) / 1000;

    char out_sha[65], err_sha[65];
    gate_sha256_hex(res.out.data ? res.out.data : "", res.out.len, out_sha);
    gate_sha256_hex(res.err.data ? res.err.data : "", res.err.len, err_sha);
    json_t *fin =
        json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:s,s:I,s:s,s:b}", "call_id", call_id, "tool", p->name,
                  "status", sbx_status_str(res.status), "exit_code",
                  res.exit_code >= 0 ? json_integer(res.exit_code) : json_null(), "duration_ms",
                  (json_int_t)(dur_us / 1000), "stdout_bytes", (json_int_t)res.out.len,
                  "stdout_sha256", out_sha, "stderr_bytes", (json_int_t)res.err.len,
                  "stderr_sha256", err_sha, "output_truncated", res.output_truncated);
    if (res.detail[0]) json_object_set_new(fin, "detail", json_string(res.detail));
    uint64_t finished_seq = 0;
    rc = audit_append(gw->audit, "call.finished", fin, &finished_seq, err);
    json_decref(fin);
    gw_metrics_call(gw->metrics, p->name, sbx_status_str(res.status), iso, dur_us);
    if (rc < 0) {
        /* The result cannot be acknowledged without its record, but the tool did start: say
         * what happened to whoever keeps state (the approval store), never "did not run". */
        *result = result_record(p, call_id, agent, session, &res, dur_us / 1000, started_seq, 0);
        json_object_set_new(*result, "audit_error", json_string(err->msg));
        sbx_result_free(&res);
        return -1;
    }
    if (run_rc < 0) {
        *err = serr;
        sbx_result_free(&res);
        json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "call_id", call_id, "tool", p->name,
                                "status", "sandbox_error", "detail", serr.msg, "isolation", iso,
                                "audit_seq", (json_int_t)finished_seq);
        gw_calls_put(gw->calls, call_id, rec, 512);
        *result = rec;
        return -1;
    }
    *result =
        result_record(p, call_id, agent, session, &res, dur_us / 1000, started_seq, finished_seq);
    /* Text plus, for invalid UTF-8, escapes and base64: at most ~6 bytes per output byte. */
    gw_calls_put(gw->calls, call_id, *result, 1024 + 6 * (res.out.len + res.err.len));
    sbx_result_free(&res);
    return 0;
}
