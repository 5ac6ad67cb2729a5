/* gateway.h: the gateway's own wiring (private to gateway/).
 *
 * gateway/ is the thin front end: it owns the HTTP server (libmicrohttpd), the
 * route table, the request-level metrics, signal handling and the command line.
 * Every call goes through the call engine (calls.h); the engine modules never
 * call back into the gateway, except through the change callback that wakes
 * long polls.
 */
#ifndef GATE_GATEWAY_H
#define GATE_GATEWAY_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "approval.h"
#include "audit.h"
#include "calls.h"
#include "gate.h"
#include "policy.h"
#include "sandbox.h"

#define GW_MAX_BODY (1024 * 1024)
#define GW_MAX_JSON_DEPTH 64

struct gw_options {
    const char *listen;    /* "127.0.0.1:8080" */
    const char *policies;  /* policy directory */
    const char *state_dir; /* "./var" */
    const char *config;    /* optional YAML config file */
    const char *run_as;    /* user name or uid for tools, default "nobody" */
    const char *tool_uids; /* "BASE:COUNT": one host uid per running process-tier call */
    unsigned max_concurrent;
    unsigned grace_ms; /* SIGTERM grace period for running calls */
};

struct gw_metrics; /* metrics.c */

struct gw {
    struct gw_options opt;
    char *public_url; /* "http://127.0.0.1:8080", for links in responses and webhooks */
    struct audit_log *audit;
    struct call_engine *engine;
    struct gw_metrics *metrics;
    atomic_bool stopping;
    /* Long polls wait for any call to change (see routes.c). */
    pthread_mutex_t change_lock;
    pthread_cond_t changed;
    uint64_t change_version;
};

/* ---- HTTP ------------------------------------------------------------------ */
struct http_req {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated copy of the body, may be "" */
    size_t body_len;
    const char *content_type;  /* may be NULL */
    const char *authorization; /* may be NULL */
    const char *params[2];     /* the path segments matched by '*' in the route */
    void *conn;                /* struct MHD_Connection *, for query arguments */
};
/* Value of a query argument, or NULL. */
const char *http_query(const struct http_req *req, const char *key);

struct http_resp {
    int status;
    json_t *json;         /* body as JSON (owned), or */
    struct gate_buf text; /* a text body (owned) */
    const char *content_type;
    unsigned retry_after; /* seconds, adds Retry-After when non-zero */
};
/* Set an error response from the one error table: {"error":{"code","message"}}. */
void http_error(struct http_resp *resp, enum gate_code code, const char *message);
void http_error_from(struct http_resp *resp, const struct gate_error *err);
/* Set a JSON response (takes ownership of body). */
void http_json(struct http_resp *resp, int status, json_t *body);

/* Parse a request body as a JSON object: rejects malformed JSON, duplicate keys, nesting
 * deeper than GW_MAX_JSON_DEPTH and NUL bytes in object keys, with the error table's codes. */
int http_parse_body(const struct http_req *req, json_t **out, struct gate_error *err);

typedef void (*route_fn)(struct gw *gw, const struct http_req *req, struct http_resp *resp);
struct route {
    const char *method;  /* "GET", "POST" */
    const char *pattern; /* "/v1/tools/ * /calls" without spaces: '*' matches one segment */
    route_fn handler;
};

/* ---- routes (one small handler per row, see routes.c) -------------------------- */
void route_healthz(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_metrics(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_tools_list(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_call_create(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_call_get(struct gw *gw, const struct http_req *req, struct http_resp *resp);
/* routes_approval.c */
void route_approvals_list(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_approval_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp);

int gw_http_start(struct gw *gw, struct gate_error *err);
void gw_http_stop_accepting(struct gw *gw);
void gw_http_stop(struct gw *gw);

/* ---- metrics (metrics.c) ----------------------------------------------------------- */
struct gw_metrics *gw_metrics_new(void);
void gw_metrics_free(struct gw_metrics *m);
/* Count a refused request (any response with an error code). */
void gw_metrics_rejected(struct gw_metrics *m, const char *code);
/* The whole /metrics text: requests, the call engine, the audit log and the sandbox tiers. */
void gw_metrics_render(struct gw *gw, struct gate_buf *out);

/* ---- command line ---------------------------------------------------------------- */
int cmd_serve(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_call(int argc, char **argv);
int cmd_approvals(int argc, char **argv); /* cli_approvals.c */

#endif
