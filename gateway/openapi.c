/* openapi.c: GET /v1/openapi.json: the OpenAPI 3.1 document of the HTTP API.
 *
 * The document is docs/openapi.json, checked into the repository and embedded at build time
 * (gateway/CMakeLists.txt turns it into openapi_doc[]), so the served document is always the
 * one the tests validate.
 */
#include <string.h>

#include "gateway.h"

extern const unsigned char openapi_doc[];
extern const size_t openapi_doc_len;

void route_openapi(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)gw, (void)req;
    resp->status = 200;
    resp->content_type = "application/json";
    gate_buf_append(&resp->text, openapi_doc, openapi_doc_len);
}
