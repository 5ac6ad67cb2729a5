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
    struct policy_set *set = call_engine_policies(gw->engine);
    json_t *body = json_pack("{s:s,s:b,s:I,s:I}", "status", audit_ok ? "ok" : "failed", "audit_ok",
                             audit_ok, "policies", (json_int_t)(set ? set->n : 0), "inflight",
                             (json_int_t)call_engine_running(gw->engine));
    policy_set_unref(set);
    if (!audit_ok) json_object_set_new(body, "reason", json_sprintf("audit log: %s", why));
    /* A shared database down: held calls cannot be held or decided (503 database_unavailable),
     * but calls that need no approval go on, so the gateway is degraded, not failed. */
    struct approval *ap = call_engine_approval(gw->engine);
    char db_why[1024] = "";
    bool db_ok = approval_store_healthy(ap, db_why, sizeof(db_why));
    if (approval_store_name(ap))
        json_object_set_new(body, "approval_store", json_string(approval_store_name(ap)));
    if (!db_ok) {
        /* Public route: the database's own error (host, user, why) goes to the log only. */
        json_object_set_new(body, "database", json_string("unavailable (see the gateway's log)"));
        gate_log("warn", "database.unavailable", "%s", db_why);
        if (audit_ok) json_object_set_new(body, "status", json_string("degraded"));
    }
    if (atomic_load(&gw->stopping)) json_object_set_new(body, "status", json_string("stopping"));
    http_json(resp, audit_ok && !atomic_load(&gw->stopping) ? 200 : 503, body);
}

void route_metrics(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)req;
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    gw_metrics_render(gw, &resp->text);
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
    struct policy_set *set = call_engine_policies(gw->engine);
    const char *format = http_query(req, "format");
    if (format) { /* a provider's tool format (mcp_tools.c) */
        struct gate_error err = {0};
        json_t *out = NULL;
        if (mcp_tools_format(set, &req->who, format, &out, &err) < 0)
            http_error_from(resp, &err);
        else
            http_json(resp, 200, out);
        policy_set_unref(set);
        return;
    }
    json_t *tools = json_array();
    for (size_t i = 0; set && i < set->n; i++)
        if (agents_tool_granted(&req->who, set->items[i]->name))
            json_array_append_new(tools, tool_json(set->items[i]));
    policy_set_unref(set);
    http_json(resp, 200, json_pack("{s:o}", "tools", tools));
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

/* The request body of POST /v1/tools/{name}/calls as a call request by who (borrowing from
 * body): the body's `agent`, if given, must name the authenticated agent. */
static int call_request_from(json_t *body, const char *tool, const struct principal *who,
                             struct call_request *req, struct gate_error *err)
{
    const char *key, *agent = NULL;
    json_t *v;
    *req = (struct call_request){.tool = tool, .agent = who->name};
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "arguments") && strcmp(key, "agent") && strcmp(key, "session"))
            return gate_err(err, GATE_E_BAD_REQUEST, "unknown field '%s'", key);
    }
    if (optional_label(body, "agent", &agent, err) < 0 ||
        optional_label(body, "session", &req->session, err) < 0)
        return -1;
    if (agent && strcmp(agent, who->name) != 0)
        return gate_err(err, GATE_E_AGENT_MISMATCH,
                        "'agent' is \"%.64s\" but the caller is agent '%s'", agent, who->name);
    req->arguments = json_object_get(body, "arguments");
    return 0;
}

/* The caller's grant on the tool. An ungranted tool is answered exactly like an unknown one
 * (404 tool_not_found), so that an agent cannot learn which tools exist; the audit log records
 * tool_not_granted. */
int gw_call_grant(struct gw *gw, const struct http_req *req, struct call_request *creq,
                  struct gate_error *err)
{
    struct policy_set *set = call_engine_policies(gw->engine);
    bool exists = set && policy_set_find(set, creq->tool);
    policy_set_unref(set);
    if (!exists || agents_tool_granted(&req->who, creq->tool)) {
        /* An unknown tool goes on to the engine, which refuses it as tool_not_found. */
        creq->grant = agents_grant_schema(&req->who, creq->tool);
        creq->max_pending = agents_max_pending(&req->who);
        return 0;
    }
    gate_err(err, GATE_E_TOOL_NOT_GRANTED, "agent '%s' may not call '%s'", req->who.name,
             creq->tool);
    call_reject(gw->engine, creq->tool, req->who.name, err);
    return gate_err(err, GATE_E_TOOL_NOT_FOUND, "no tool named '%s'", creq->tool);
}

int gw_call_submit(struct gw *gw, const struct http_req *req, const struct call_request *creq,
                   struct call_outcome *out, struct gate_error *err)
{
    if (agents_call_begin(gw->agents, &req->who, &out->retry_after, err) < 0)
        return call_reject(gw->engine, creq->tool, creq->agent, err);
    int rc = call_submit(gw->engine, creq, out, err);
    agents_call_end(gw->agents, &req->who);
    return rc;
}

void route_call_create(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *body = NULL;
    struct call_request creq;
    struct call_outcome out = {0};
    if (http_parse_body(req, &body, &err) < 0 ||
        call_request_from(body, req->params[0], &req->who, &creq, &err) < 0) {
        call_reject(gw->engine, req->params[0], req->who.name, &err);
        http_error_from(resp, &err);
    } else if (gw_call_grant(gw, req, &creq, &err) < 0) {
        http_error_from(resp, &err);
    } else if (gw_call_submit(gw, req, &creq, &out, &err) < 0) {
        http_error_from(resp, &err);
        resp->retry_after = out.retry_after;
        const char *id = json_string_value(json_object_get(out.record, "call_id"));
        if (id && resp->json)
            json_object_set_new(json_object_get(resp->json, "error"), "call_id", json_string(id));
        json_decref(out.record);
    } else {
        http_json(resp, out.held ? 202 : 200, out.record);
    }
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
    bool final = true;
    /* An agent reads only its own calls; another's answer as if they did not exist. */
    const char *owner = req->who.kind == PRINCIPAL_APPROVER ? NULL : req->who.name;
    struct gate_error err = {0};
    json_t *rec = call_get(gw->engine, id, owner, &final, &err);
    uint64_t deadline = req->received_ns + wait_ms * 1000000ull;
    if (!rec && err.code)
        /* The store is unreadable, not the call unknown: a 404 would tell the agent its held
         * call is gone. The store's own message (host, user) went to the log. */
        http_error(resp, err.code, NULL);
    else if (!rec)
        http_error(resp, GATE_E_CALL_NOT_FOUND, NULL);
    else if (final || atomic_load(&gw->stopping) || gate_monotonic_ns() >= deadline)
        http_json(resp, 200, steal_pointer(&rec));
    else
        http_wait(resp, id, deadline); /* called again when the call changes or at the deadline */
    json_decref(rec);
}
