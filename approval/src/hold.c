/* hold.c: holding a call, and what the agent and approvers see of it. */
#include <stdlib.h>
#include <string.h>

#include "approval_internal.h"

static void set_time(json_t *o, const char *key, int64_t ms)
{
    if (ms <= 0) return;
    char buf[32];
    gate_rfc3339((uint64_t)ms, buf);
    json_object_set_new(o, key, json_string(buf));
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v) json_object_set_new(o, key, json_string(v));
}

/* The agent-visible status: the run's own status once finished, else the state. */
static const char *status_of(const struct approval_row *r, const json_t *result)
{
    const char *s = result ? json_string_value(json_object_get(result, "status")) : NULL;
    if (s) return s;
    if (strcmp(r->state, ST_STARTED) == 0) return "running";
    return r->state;
}

json_t *approval_row_json(const struct approval_row *r, bool with_arguments)
{
    json_t *result = r->result_json ? json_loads(r->result_json, 0, NULL) : NULL;
    json_t *o = json_is_object(result) ? json_incref(result) : json_object();
    if (!o) {
        json_decref(result);
        return NULL;
    }
    set_str(o, "call_id", r->call_id);
    set_str(o, "tool", r->tool);
    set_str(o, "status", status_of(r, result));
    set_str(o, "state", r->state);
    json_t *ap = json_object();
    set_str(ap, "args_sha256", r->args_sha256);
    set_str(ap, "policy_sha256", r->policy_sha256);
    set_str(ap, "blast_radius", r->blast_radius);
    set_time(ap, "held_at", r->created_ms);
    set_time(ap, "expires_at", r->expires_ms);
    if (r->decided_by) {
        set_str(ap, "decision", strcmp(r->state, ST_DENIED) == 0 ? "deny" : "approve");
        set_str(ap, "decided_by", r->decided_by);
        set_str(ap, "auth", r->decision_auth);
        set_str(ap, "reason", r->reason);
        set_time(ap, "decided_at", r->decided_ms);
    }
    set_time(ap, "started_at", r->started_ms);
    set_time(ap, "finished_at", r->finished_ms);
    json_object_set_new(o, "approval", ap);
    set_time(o, "expires_at", r->expires_ms);
    if (with_arguments) {
        json_t *args = json_loads(r->args_json, 0, NULL);
        json_object_set_new(o, "arguments", args ? args : json_null());
        set_str(o, "agent", r->agent);
        set_str(o, "session", r->session);
        json_t *wh = json_pack("{s:s?,s:b,s:i}", "url", r->webhook_url, "delivered",
                               r->webhook_delivered, "attempts", r->webhook_attempts);
        json_object_set_new(o, "webhook", wh);
    } else {
        set_str(o, "agent", json_object_get(o, "agent") ? NULL : r->agent);
        set_str(o, "session", json_object_get(o, "session") ? NULL : r->session);
    }
    char poll[96];
    snprintf(poll, sizeof(poll), "/v1/calls/%s", r->call_id);
    json_object_set_new(o, "poll", json_string(poll));
    json_decref(result);
    return o;
}

static json_t *hold_response(struct approval *a, const struct approval_row *r)
{
    json_t *o = approval_row_json(r, false);
    if (!o) return NULL;
    char url[2048];
    snprintf(url, sizeof(url), "%s/v1/calls/%s", a->public_url, r->call_id);
    json_object_set_new(o, "poll_url", json_string(url));
    json_object_set_new(o, "args_sha256", json_string(r->args_sha256));
    json_object_set_new(o, "policy_sha256", json_string(r->policy_sha256));
    return o;
}

int approval_hold(struct approval *a, const struct policy *p, const struct approval_call *c,
                  json_t **response, struct gate_error *err)
{
    const char *url = p->approval.webhook ? p->approval.webhook : a->cfg.webhook_url;
    int64_t now = (int64_t)gate_realtime_ms();
    struct delivery d = {.due_ms = gate_monotonic_ns() / 1000000ull};
    char token_sha[65] = "";
    snprintf(d.call_id, sizeof(d.call_id), "%s", c->call_id);
    memcpy(d.msg_id, "msg_", 4);
    if (url &&
        (approval_new_token(d.token, token_sha) < 0 || gate_random_hex(d.msg_id + 4, 16) < 0))
        return gate_err(err, GATE_E_INTERNAL, "getrandom failed");
    struct approval_row r = {
        .call_id = (char *)c->call_id,
        .tool = (char *)c->tool,
        .policy_sha256 = (char *)c->policy_sha256,
        .args_json = (char *)c->args_json,
        .args_sha256 = (char *)c->args_sha256,
        .agent = (char *)c->agent,
        .session = (char *)c->session,
        .blast_radius = (char *)policy_blast_name(p->blast_radius),
        .webhook_url = (char *)url,
        .state = ST_PENDING,
        .token_sha256 = url ? token_sha : NULL,
        .created_ms = now,
        .expires_ms = now + (int64_t)p->approval.timeout_ms,
    };
    char expires[32];
    gate_rfc3339((uint64_t)r.expires_ms, expires);
    json_t *f =
        json_pack("{s:s,s:s,s:s?,s:s?,s:s,s:s,s:s,s:s,s:b,s:s?}", "call_id", c->call_id, "tool",
                  c->tool, "agent", c->agent, "session", c->session, "args_sha256", c->args_sha256,
                  "policy_sha256", c->policy_sha256, "blast_radius", r.blast_radius, "expires_at",
                  expires, "reversible", p->reversible, "webhook", url);
    struct audit_hook_ctx hc = {a->audit, "call.held", f};
    int rc = a->ops->insert_held(a->store, &r, c->max_pending, approval_audit_hook, &hc, err);
    json_decref(f);
    if (rc < 0) return -1;
    if (url) {
        pthread_mutex_lock(&a->lock);
        if (approval_delivery_push_locked(a, &d) < 0)
            gate_log("error", "webhook.queue",
                     "call %s: out of memory; the webhook is sent "
                     "after the next restart",
                     c->call_id);
        pthread_mutex_unlock(&a->lock);
    }
    explicit_bzero(d.token, sizeof(d.token));
    approval_notify(a, c->call_id);
    *response = hold_response(a, &r);
    return *response ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

json_t *approval_call_record(struct approval *a, const char *call_id, const char *agent,
                             bool *final, struct gate_error *err)
{
    struct approval_row r = {0};
    /* err only when get fails: a store may leave an error behind from a read it retried and
     * that then answered (PostgreSQL after a reconnect), which is no failure. */
    struct gate_error e = {0};
    json_t *out = NULL;
    int found = a->ops->get(a->store, call_id, &r, &e);
    if (found == 1 && (!agent || (r.agent && strcmp(r.agent, agent) == 0))) {
        if (!(out = approval_row_json(&r, false))) gate_err(err, GATE_E_NOMEM, "out of memory");
        if (final) *final = approval_state_final(r.state);
    } else if (found < 0) {
        if (!e.code) gate_err(&e, GATE_E_INTERNAL, "approval store: get failed");
        gate_log("error", "approval.store", "call %s: %s", call_id, e.msg);
        *err = e;
    }
    approval_row_clear(&r);
    return out;
}
