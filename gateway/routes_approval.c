/* routes_approval.c: GET /v1/approvals and POST /v1/approvals/{call_id}.
 *
 * Thin handlers: the front door authenticated the caller; binding checks, decision tokens and
 * state changes all live in the approval module.
 */
#include <stdlib.h>

#include "gateway.h"

static bool approver_may(const void *ctx, const char *tool)
{
    return agents_approver_may(ctx, tool);
}

static struct approval_auth auth_of(const struct http_req *req)
{
    if (req->who.kind == PRINCIPAL_APPROVER)
        return (struct approval_auth){
            .approver = req->who.name, .may = approver_may, .may_ctx = req->who.approver};
    return (struct approval_auth){.bearer = req->authorization};
}

void route_approvals_list(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *out = NULL;
    struct approval *a = call_engine_approval(gw->engine);
    struct approval_auth auth = auth_of(req);
    const char *limit = http_query(req, "limit");
    char *end = NULL;
    struct approval_query q = {.status = http_query(req, "status"),
                               .call_id = http_query(req, "call_id"),
                               .limit = limit ? strtoul(limit, &end, 10) : 0,
                               .cursor = http_query(req, "cursor")};
    if (limit && (!*limit || *end || q.limit == 0 || limit[0] == '-'))
        http_error(resp, GATE_E_BAD_REQUEST, "limit must be a number from 1 to 1000");
    else if (!a)
        http_error(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
    else if (approval_list(a, &auth, &q, &out, &err) < 0)
        http_error_from(resp, &err);
    else
        http_json(resp, 200, out);
}

void route_approval_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *body = NULL, *out = NULL;
    struct approval *a = call_engine_approval(gw->engine);
    struct approval_auth auth = auth_of(req);
    if (!a)
        http_error(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
    else if (http_parse_body(req, &body, &err) < 0 ||
             approval_decide(a, req->params[0], &auth, body, &out, &err) < 0)
        http_error_from(resp, &err);
    else
        http_json(resp, 200, out);
    json_decref(body);
}
