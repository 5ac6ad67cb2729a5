/* execute.c: running one validated call in its policy's sandbox.
 *
 * call.started (durable) -> sandbox -> call.finished (durable) -> record. No tool runs before
 * its call.started record is on disk, and no result is returned before its call.finished
 * record is.
 */
#include <stdlib.h>
#include <string.h>

#include "calls_internal.h"

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
    struct gate_buf enc = {0};
    char key[64];
    snprintf(key, sizeof(key), "%s_base64", name);
    if (gate_base64(s, len, &enc) == 0)
        json_object_set_new(obj, key, json_stringn(enc.data, enc.len));
    gate_buf_free(&enc);
}

/* What every record of a call says, whatever its state. */
static json_t *record_base(const struct policy *p, const struct approval_call *c,
                           const char *status)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s*,s:s*,s:s,s:s}", "call_id", c->call_id, "tool", p->name,
                     "status", status, "isolation", policy_isolation_name(p->isolation), "agent",
                     c->agent, "session", c->session, "args_sha256", c->args_sha256,
                     "policy_sha256", p->sha256);
}

static json_t *result_record(const struct policy *p, const struct approval_call *c,
                             const struct sbx_result *res, uint64_t dur_ms, uint64_t started_seq,
                             uint64_t finished_seq)
{
    json_t *r = record_base(p, c, sbx_status_str(res->status));
    json_object_set_new(r, "exit_code",
                        res->exit_code >= 0 ? json_integer(res->exit_code) : json_null());
    if (res->term_signal) json_object_set_new(r, "signal", json_integer(res->term_signal));
    put_output(r, "stdout", &res->out);
    put_output(r, "stderr", &res->err);
    json_object_set_new(r, "output_truncated", json_boolean(res->output_truncated));
    if (res->pids_limit_hit) json_object_set_new(r, "pids_limit_hit", json_true());
    if (res->detail[0]) json_object_set_new(r, "detail", json_string(res->detail));
    if (res->activity) json_object_update(r, res->activity);
    json_object_set_new(r, "duration_ms", json_integer((json_int_t)dur_ms));
    json_object_set_new(r, "audit_seq_started", json_integer((json_int_t)started_seq));
    if (finished_seq) json_object_set_new(r, "audit_seq", json_integer((json_int_t)finished_seq));
    return r;
}

static int audit_started(struct call_engine *e, const struct policy *p,
                         const struct approval_call *c, uint64_t *seq, struct gate_error *err)
{
    json_t *f =
        json_pack("{s:s,s:s,s:s*,s:s*,s:s,s:s,s:s}", "call_id", c->call_id, "tool", p->name,
                  "agent", c->agent, "session", c->session, "args_sha256", c->args_sha256,
                  "policy_sha256", p->sha256, "isolation", policy_isolation_name(p->isolation));
    int rc = audit_append(e->cfg.audit, "call.started", f, seq, err);
    json_decref(f);
    return rc;
}

static int audit_finished(struct call_engine *e, const struct policy *p,
                          const struct approval_call *c, const struct sbx_result *res,
                          uint64_t dur_us, uint64_t *seq, struct gate_error *err)
{
    char out_sha[65], err_sha[65];
    gate_sha256_hex(res->out.data ? res->out.data : "", res->out.len, out_sha);
    gate_sha256_hex(res->err.data ? res->err.data : "", res->err.len, err_sha);
    json_t *f =
        json_pack("{s:s,s:s,s:s*,s:s,s:o,s:I,s:I,s:s,s:I,s:s,s:b}", "call_id", c->call_id, "tool",
                  p->name, "agent", c->agent, "status", sbx_status_str(res->status), "exit_code",
                  res->exit_code >= 0 ? json_integer(res->exit_code) : json_null(), "duration_ms",
                  (json_int_t)(dur_us / 1000), "stdout_bytes", (json_int_t)res->out.len,
                  "stdout_sha256", out_sha, "stderr_bytes", (json_int_t)res->err.len,
                  "stderr_sha256", err_sha, "output_truncated", res->output_truncated);
    if (res->detail[0]) json_object_set_new(f, "detail", json_string(res->detail));
    if (res->activity) json_object_update(f, res->activity);
    int rc = audit_append(e->cfg.audit, "call.finished", f, seq, err);
    json_decref(f);
    return rc;
}

int call_execute(struct call_engine *e, const struct policy *p, const struct approval_call *c,
                 bool keep, json_t **record, struct gate_error *err)
{
    *record = NULL;
    uint64_t started_seq = 0, finished_seq = 0;
    if (audit_started(e, p, c, &started_seq, err) < 0)
        return -1; /* nothing ran: no tool runs without its record */
    if (keep) {
        json_t *running = record_base(p, c, "running");
        json_object_set_new(running, "audit_seq_started", json_integer((json_int_t)started_seq));
        call_records_put(e->records, c->call_id, c->agent, running, 512);
        json_decref(running);
        call_changed(e, c->call_id);
    }

    struct sbx_call call = {
        .call_id = c->call_id, .input = c->args_json, .input_len = strlen(c->args_json)};
    struct sbx_result res;
    struct gate_error serr = {0};
    uint64_t t0 = gate_monotonic_ns();
    int run_rc = sbx_run(p, &call, &res, &serr);
    uint64_t dur_us = (gate_monotonic_ns() - t0) / 1000;

    int rc = audit_finished(e, p, c, &res, dur_us, &finished_seq, err);
    call_metrics_call(e->metrics, p->name, sbx_status_str(res.status),
                      policy_isolation_name(p->isolation), c->agent, dur_us);
    *record = result_record(p, c, &res, dur_us / 1000, started_seq, finished_seq);
    if (rc < 0) {
        /* The result cannot be acknowledged without its record, but the tool did start: say
         * what happened to whoever keeps state, never "did not run". */
        json_object_set_new(*record, "audit_error", json_string(err->msg));
    } else if (run_rc < 0) {
        *err = serr; /* the sandbox could not be set up: res says sandbox_error and why */
        rc = -1;
    }
    if (keep) {
        /* Text plus, for invalid UTF-8, escapes and base64: at most ~6 bytes per output byte. */
        call_records_put(e->records, c->call_id, c->agent, *record,
                         1024 + 6 * (res.out.len + res.err.len));
        call_changed(e, c->call_id);
    }
    sbx_result_free(&res);
    return rc;
}
