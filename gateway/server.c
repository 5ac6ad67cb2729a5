/* server.c: the HTTP front end (libmicrohttpd) and the route table.
 *
 * Bodies are capped at 1 MiB: a declared Content-Length over the cap is refused
 * with 413 before a byte of the body is read, and a chunked body is refused as
 * soon as it passes the cap. Every error is a JSON body from the one error table.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static const struct route routes[] = {
    {"GET", "/healthz", route_healthz},
    {"GET", "/metrics", route_metrics},
    {"GET", "/v1/tools", route_tools_list},
    {"POST", "/v1/tools/*/calls", route_call_create},
    {"GET", "/v1/calls/*", route_call_get},
    {"GET", "/v1/approvals", route_approvals_list},
    {"POST", "/v1/approvals/*", route_approval_decide},
};

static struct MHD_Daemon *daemon_handle;

/* A chunked body has no declared length: past the cap it is read and discarded (so the
 * client gets its 413) up to this much, and then the connection is dropped. */
#define DISCARD_LIMIT (16u << 20)

/* Per-request state kept by libmicrohttpd between calls of the access handler. */
struct conn_state {
    struct gate_buf body;
    bool too_large;
    size_t discarded;
};

/* Match path against a pattern where '*' stands for one non-empty segment. Captured
 * segments are written NUL-terminated into store and pointed to by params. */
static bool match(const char *pattern, const char *path, const char *params[2], char *store,
                  size_t store_len)
{
    size_t used = 0;
    int np = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || np == 2 || used + n + 1 > store_len) return false;
            memcpy(store + used, path, n);
            store[used + n] = '\0';
            params[np++] = store + used;
            used += n + 1;
            path += n;
            pattern++;
            continue;
        }
        if (*pattern != *path) return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

const char *http_query(const struct http_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

void http_json(struct http_resp *resp, int status, json_t *body)
{
    if (resp->json) json_decref(resp->json);
    resp->status = status;
    resp->json = body;
}

void http_error(struct http_resp *resp, enum gate_code code, const char *message)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", gate_code_str(code), "message",
                             message && *message ? message : gate_code_message(code));
    if (!body) /* a message that is not valid UTF-8: keep the code, use the table's message */
        body = json_pack("{s:{s:s,s:s}}", "error", "code", gate_code_str(code), "message",
                         gate_code_message(code));
    http_json(resp, gate_code_http(code), body);
}

void http_error_from(struct http_resp *resp, const struct gate_error *err)
{
    http_error(resp, err->code, err->msg);
}

/* JSON nesting depth outside strings; jansson's own limit is far above ours. */
static int json_depth(const char *s, size_t len)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

int http_parse_body(const struct http_req *req, json_t **out, struct gate_error *err)
{
    if (json_depth(req->body, req->body_len) > GW_MAX_JSON_DEPTH)
        return gate_err(err, GATE_E_JSON_TOO_DEEP, "request body nests deeper than %d levels",
                        GW_MAX_JSON_DEPTH);
    json_error_t jerr;
    json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return gate_err(err, GATE_E_DUPLICATE_KEY, "duplicate key at line %d column %d: %s",
                            jerr.line, jerr.column, jerr.text);
        if (json_error_code(&jerr) == json_error_null_character ||
            json_error_code(&jerr) == json_error_null_byte_in_key)
            return gate_err(err, GATE_E_BAD_REQUEST, "NUL character at line %d column %d",
                            jerr.line, jerr.column);
        return gate_err(err, GATE_E_MALFORMED_JSON, "malformed JSON at line %d column %d: %s",
                        jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return gate_err(err, GATE_E_BAD_REQUEST, "request body must be a JSON object");
    }
    *out = v;
    return 0;
}

static bool json_content_type(const char *ct)
{
    if (!ct) return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, struct http_resp *resp)
{
    char *text = NULL;
    size_t len = 0;
    const char *ctype = resp->content_type;
    if (resp->json) {
        text = json_dumps(resp->json, JSON_COMPACT);
        len = text ? strlen(text) : 0;
        ctype = "application/json";
    } else if (resp->text.data) {
        text = steal_pointer(&resp->text.data);
        len = resp->text.len;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, text ? text : (void *)"", MHD_RESPMEM_MUST_COPY);
    free(text);
    if (!r) return MHD_NO;
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    if (resp->retry_after) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", resp->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool valid_utf8(const char *s)
{
    json_t *probe = json_string(s);
    bool ok = probe != NULL;
    json_decref(probe);
    return ok;
}

static void dispatch(struct gw *gw, struct http_req *req, struct http_resp *resp)
{
    char store[512];
    if (!valid_utf8(req->path)) {
        http_error(resp, GATE_E_BAD_REQUEST, "the request path is not valid UTF-8");
        return;
    }
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *params[2] = {NULL, NULL};
        if (!match(routes[i].pattern, req->path, params, store, sizeof(store))) continue;
        path_known = true;
        if (strcmp(routes[i].method, req->method) != 0) continue;
        req->params[0] = params[0];
        req->params[1] = params[1];
        if (strcmp(req->method, "POST") == 0 && !json_content_type(req->content_type)) {
            http_error(resp, GATE_E_UNSUPPORTED_MEDIA_TYPE, NULL);
            return;
        }
        routes[i].handler(gw, req, resp);
        return;
    }
    if (path_known)
        http_error(resp, GATE_E_METHOD_NOT_ALLOWED, NULL);
    else
        http_error(resp, GATE_E_NOT_FOUND, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct gw *gw = cls;
    struct conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof(*cs));
        if (!cs) return MHD_NO;
        *con_cls = cs;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > GW_MAX_BODY)
            cs->too_large = true; /* answer 413 without reading the body */
        else
            return MHD_YES;
    }
    if (*upload_data_size) {
        if (!cs->too_large && cs->body.len + *upload_data_size > GW_MAX_BODY) {
            cs->too_large = true;
            gate_buf_free(&cs->body);
        }
        if (cs->too_large) {
            /* libmicrohttpd cannot answer in the middle of an upload: drain, answer at the end. */
            cs->discarded += *upload_data_size;
            *upload_data_size = 0;
            return cs->discarded > DISCARD_LIMIT ? MHD_NO : MHD_YES;
        }
        if (gate_buf_append(&cs->body, upload_data, *upload_data_size) < 0) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct http_resp resp = {.status = 500};
    if (cs->too_large) {
        http_error(&resp, GATE_E_BODY_TOO_LARGE, NULL);
    } else {
        struct http_req req = {
            .method = method,
            .path = url,
            .body = cs->body.data ? cs->body.data : "",
            .body_len = cs->body.len,
            .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
            .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
            .conn = conn,
        };
        dispatch(gw, &req, &resp);
    }
    enum MHD_Result ret = send_resp(conn, &resp);
    json_decref(resp.json);
    gate_buf_free(&resp.text);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    struct conn_state *cs = *con_cls;
    if (cs) {
        gate_buf_free(&cs->body);
        free(cs);
        *con_cls = NULL;
    }
}

static int parse_listen(const char *listen, struct sockaddr_in *sa, struct gate_error *err)
{
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return gate_err(err, GATE_E_CONFIG, "--listen %s: expected HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (*end || port == 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return gate_err(err, GATE_E_CONFIG, "--listen %s: expected IPv4-ADDRESS:PORT", listen);
    return 0;
}

int gw_http_start(struct gw *gw, struct gate_error *err)
{
    struct sockaddr_in sa;
    if (parse_listen(gw->opt.listen, &sa, err) < 0) return -1;
    /* One thread per connection: a slow tool or a long poll occupies only its own
     * connection's thread; --max-concurrent bounds how many calls run at once. */
    daemon_handle = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
            MHD_ALLOW_SUSPEND_RESUME,
        0, NULL, NULL, on_request, gw, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!daemon_handle) return gate_err(err, GATE_E_CONFIG, "cannot listen on %s", gw->opt.listen);
    return 0;
}

void gw_http_stop_accepting(struct gw *gw)
{
    (void)gw;
    if (daemon_handle) {
        MHD_socket s = MHD_quiesce_daemon(daemon_handle);
        if (s != MHD_INVALID_SOCKET) close(s);
    }
}

void gw_http_stop(struct gw *gw)
{
    (void)gw;
    if (daemon_handle) {
        MHD_stop_daemon(daemon_handle);
        daemon_handle = NULL;
    }
}
