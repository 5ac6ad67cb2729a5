/* routes_approval.c: GET /v1/approvals and POST /v1/approvals/{call_id}.
 *
 * Thin handlers: authentication, binding checks and state changes all live in the
 * approval module; these only carry the header, query and body across.
 */
#include "gateway.h"

void route_approvals_list(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *out = NULL;
    struct approval *a = call_engine_approval(gw->engine);
    if (!a) {
        http_error(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
        return;
    }
    if (approval_list(a, req->authorization, http_query(req, "status"), http_query(req, "call_id"),
                      &out, &err) < 0)
        http_error_from(resp, &err);
    else
        http_json(resp, 200, out);
}

void route_approval_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    json_t *body = NULL, *out = NULL;
    struct approval *a = call_engine_approval(gw->engine);
    if (!a) {
        http_error(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
        return;
    }
    if (http_parse_body(req, &body, &err) < 0 ||
        approval_decide(a, req->params[0], req->authorization, body, &out, &err) < 0)
        http_error_from(resp, &err);
    else
        http_json(resp, 200, out);
    json_decref(body);
}
