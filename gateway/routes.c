/* routes.c: the handlers of the route table (server.c), one small function each. */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define MAX_LABEL 256 /* agent and session names */
#define MAX_WAIT_MS (120 * 1000)

void route_healthz(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)req;
    char why[256] = "";
    bool audit_ok = audit_healthy(gw->audit, why, sizeof(why));
    struct policy_set *set = gw_policies(gw);
    json_t *body = json_pack("{s:s,s:b,s:I,s:I}", "status", audit_ok ? "ok" : "failed", "audit_ok",
                             audit_ok, "policies", (json_int_t)(set ? set->n : 0), "inflight",
                             (json_int_t)atomic_load(&gw->inflight));
    policy_set_unref(set);
    if (!audit_ok) json_object_set_new(body, "reason", json_sprintf("audit log: %s", why));
    if (atomic_load(&gw->stopping)) json_object_set_new(body, "status", json_string("stopping"));
    http_json(resp, audit_ok && !atomic_load(&gw->stopping) ? 200 : 503, body);
}

void route_metrics(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)req;
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    gw_metrics_render(gw, &resp->text);
    sbx_metrics(&resp->text);
}

static json_t *tool_json(const struct policy *p)
{
    return json_pack("{s:s,s:s,s:O,s:s,s:s,s:b,s:b}", "name", p->name, "description",
                     p->description, "input_schema", p->arguments, "isolation",
                     policy_isolation_name(p->isolation), "blast_radius",
                     policy_blast_name(p->blast_radius), "reversible", p->reversible,
                     "approval_required", p->approval.required);
}

void route_tools_list(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)req;
    struct policy_set *set = gw_policies(gw);
    json_t *tools = json_array();
    for (size_t i = 0; set && i < set->n; i++)
        json_array_append_new(tools, tool_json(set->items[i]));
    policy_set_unref(set);
    http_json(resp, 200, json_pack("{s:o}", "tools", tools));
}

/* Record a refused call in the audit log, then answer with the error. */
static void reject(struct gw *gw, struct http_resp *resp, const char *tool, const char *agent,
                   const struct gate_error *why)
{
    gw_metrics_rejected(gw->metrics, gate_code_str(why->code));
    json_t *f = json_pack("{s:s,s:s*,s:s,s:s}", "tool", tool, "agent", agent, "code",
                          gate_code_str(why->code), "message", why->msg);
    struct gate_error aerr = {0};
    int rc = audit_append(gw->audit, "call.rejected", f, NULL, &aerr);
    json_decref(f);
    http_error_from(resp, rc < 0 ? &aerr : why);
}

static int optional_label(json_t *body, const char *key, const char **out, struct gate_error *err)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || json_string_length(v) > MAX_LABEL)
        return gate_err(err, GATE_E_BAD_REQUEST, "'%s' must be a string of at most %d bytes", key,
                        MAX_LABEL);
    *out = json_string_value(v);
    return 0;
}

/* Everything that must hold before a call may run or be held. */
static int check_call(json_t *body, const struct policy *p, json_t **args, const char **agent,
                      const char **session, struct gate_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "arguments") && strcmp(key, "agent") && strcmp(key, "session"))
            return gate_err(err, GATE_E_BAD_REQUEST, "unknown field '%s'", key);
    }
    if (optional_label(body, "agent", agent, err) < 0 ||
        optional_label(body, "session", session, err) < 0)
        return -1;
    *args = json_object_get(body, "arguments");
    if (!*args)
        *args = json_object();
    else if (!json_is_object(*args))
        return gate_err(err, GATE_E_INVALID_ARGUMENTS, "$: 'arguments' must be a JSON object");
    else
        json_incref(*args);
    if (policy_check_args(p, *args, err) < 0) {
        json_decref(*args);
        *args = NULL;
        return -1;
    }
    return 0;
}

static void call_with_policy(struct gw *gw, const struct policy *p, json_t *body,
                             struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *args = NULL;
    const char *agent = NULL, *session = NULL;
    if (check_call(body, p, &args, &agent, &session, &err) < 0) {
        reject(gw, resp, p->name, agent, &err);
        return;
    }
    /* The tool reads exactly these bytes, and approvers are shown their hash. */
    char *args_json = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(args);
    if (!args_json) {
        http_error(resp, GATE_E_NOMEM, NULL);
        return;
    }
    char args_sha[65], call_id[40];
    gate_sha256_hex(args_json, strlen(args_json), args_sha);
    gate_new_call_id(call_id);
    json_t *result = NULL;
    if (p->approval.required) {
        if (approval_hold(gw->approval, p, call_id, args_json, args_sha, agent, session, &result,
                          &err) < 0)
            http_error_from(resp, &err);
        else
            http_json(resp, 202, result);
    } else if (gw_execute(gw, p, call_id, args_json, args_sha, agent, session, &result, &err) < 0) {
        json_decref(result);
        http_error_from(resp, &err);
        if (resp->json)
            json_object_set_new(json_object_get(resp->json, "error"), "call_id",
                                json_string(call_id));
    } else {
        http_json(resp, 200, result);
    }
    free(args_json);
}

void route_call_create(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *body = NULL;
    if (http_parse_body(req, &body, &err) < 0) {
        gw_metrics_rejected(gw->metrics, gate_code_str(err.code));
        http_error_from(resp, &err);
        return;
    }
    if (atomic_load(&gw->stopping)) {
        http_error(resp, GATE_E_SHUTTING_DOWN, NULL);
        json_decref(body);
        return;
    }
    struct policy_set *set = gw_policies(gw);
    const struct policy *p = set ? policy_set_find(set, req->params[0]) : NULL;
    if (!p) {
        gate_err(&err, GATE_E_TOOL_NOT_FOUND, "no tool named '%s'", req->params[0]);
        reject(gw, resp, req->params[0], NULL, &err);
    } else if (atomic_fetch_add(&gw->inflight, 1) >= gw->opt.max_concurrent) {
        atomic_fetch_sub(&gw->inflight, 1);
        gate_err(&err, GATE_E_TOO_MANY_CALLS, "%u calls are already running",
                 gw->opt.max_concurrent);
        reject(gw, resp, p->name, NULL, &err);
        resp->retry_after = 1;
    } else {
        call_with_policy(gw, p, body, resp);
        atomic_fetch_sub(&gw->inflight, 1);
    }
    policy_set_unref(set);
    json_decref(body);
}

void route_call_get(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    const char *id = req->params[0];
    uint64_t wait_ms = 0;
    const char *wait = http_query(req, "wait");
    if (wait && (gate_parse_duration_ms(wait, &wait_ms) < 0 || wait_ms > MAX_WAIT_MS)) {
        http_error(resp, GATE_E_BAD_REQUEST, "wait must be a duration of at most 120s, e.g. 30s");
        return;
    }
    json_t *rec = gw_calls_get(gw->calls, id);
    if (!rec && gw->approval) rec = approval_call_record(gw->approval, id, wait_ms);
    if (!rec) {
        http_error(resp, GATE_E_CALL_NOT_FOUND, NULL);
        return;
    }
    http_json(resp, 200, rec);
}
