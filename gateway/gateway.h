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
#include <sys/socket.h>

#include "agents.h"
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
    unsigned max_connections;        /* open at once, in all */
    unsigned max_connections_per_ip; /* open at once from one client address */
    unsigned request_timeout_ms;     /* a request head's deadline; its body gets 3x */
    unsigned grace_ms;               /* SIGTERM grace period for running calls */
    const char *anchor_file;         /* --anchor-file: audit chain heads appended here */
};

struct gw_metrics; /* metrics.c */

struct gw {
    struct gw_options opt;
    char *public_url; /* "http://127.0.0.1:8080", for links in responses and webhooks */
    struct audit_log *audit;
    struct call_engine *engine;
    struct agents *agents; /* identities from the config (none: anonymous, loopback only) */
    struct gw_metrics *metrics;
    atomic_bool stopping;
    char *node;                      /* config node: (NULL: the id kept in --state-dir) */
    char *anchor_file;               /* config audit.anchor_file (--anchor-file wins) */
    struct audit_anchorer *anchorer; /* NULL when the chain head is anchored nowhere */
    void *quota;                     /* quotas counted in the database (approval_quota_open) */
};

/* ---- HTTP ------------------------------------------------------------------ */
#define HTTP_MAX_HEAD 16384  /* request line + header fields */
#define HTTP_MAX_TARGET 8192 /* the request target (path and query) */
#define HTTP_MAX_FIELDS 100  /* header fields per request */
#define HTTP_MAX_BODY GW_MAX_BODY

struct http_field {
    char *name;
    char *value;
};

/* A request as a handler sees it: copies, so a handler may run on any thread. */
struct http_req {
    const char *method; /* "GET", "POST", ... ("HEAD" is dispatched as "GET") */
    const char *path;
    const char *body; /* NUL-terminated copy of the body, may be "" */
    size_t body_len;
    const struct http_field *headers, *query;
    size_t nheaders, nquery;
    const char *content_type;  /* may be NULL */
    const char *authorization; /* may be NULL */
    const char *params[2];     /* the path segments matched by '*' in the route */
    uint64_t received_ns;      /* when the request arrived (gate_monotonic_ns) */
    struct principal who;      /* the authenticated caller (see the route's auth) */
};
/* Value of a query argument / header (case-insensitive name), or NULL. */
const char *http_query(const struct http_req *req, const char *key);
const char *http_header(const struct http_req *req, const char *name);

struct http_resp {
    int status;
    json_t *json;         /* body as JSON (owned), or */
    struct gate_buf text; /* a text body (owned) */
    const char *content_type;
    unsigned retry_after;    /* seconds, adds Retry-After when non-zero */
    struct gate_buf headers; /* more header lines, "Name: value\n" each (owned; http_add_header) */
    /* Instead of a response: wait (without holding a thread) until call wait_call changes or
     * wait_deadline_ns passes, then run the handler again. See http_wait. */
    char wait_call[40];
    uint64_t wait_deadline_ns;
    /* Kept across the runs of one request (waits and streams); everything above is reset
     * before each run. ctx is the handler's own state, freed by ctx_free when the request
     * ends; run counts earlier runs; streaming see http_stream. */
    void *ctx;
    void (*ctx_free)(void *ctx);
    unsigned run;
    bool stream;
};
/* Ask to be called again once call_id changes or at deadline_ns (gate_monotonic_ns). */
void http_wait(struct http_resp *resp, const char *call_id, uint64_t deadline_ns);
/* Streamed responses (Server-Sent Events): the first run calls http_stream, which sends the
 * status and content type at once; every run (the first included) appends bytes to resp->text,
 * which are sent as soon as the run returns, and asks with http_wait to run again when a call
 * changes or a deadline passes. The stream ends after the first run that does not wait. No
 * thread is held between runs: the connection is suspended (libmicrohttpd's content reader
 * returns 0 only after suspending it). If the client goes away, the request ends at the next
 * write and its ctx is freed; the handler is not told. */
void http_stream(struct http_resp *resp, int status, const char *content_type);
/* Set an error response from the one error table: {"error":{"code","message"}}. */
void http_error(struct http_resp *resp, enum gate_code code, const char *message);
void http_error_from(struct http_resp *resp, const struct gate_error *err);
/* Add a response header (name and value without CR or LF). */
void http_add_header(struct http_resp *resp, const char *name, const char *value);
/* Set a JSON response (takes ownership of body). */
void http_json(struct http_resp *resp, int status, json_t *body);

/* Parse a request body as a JSON object: rejects malformed JSON, duplicate keys, nesting
 * deeper than GW_MAX_JSON_DEPTH and NUL bytes in object keys, with the error table's codes. */
int http_parse_body(const struct http_req *req, json_t **out, struct gate_error *err);

/* A handler runs on a worker thread (never on libmicrohttpd's), so it may block on a tool run or
 * a disk sync; long polls use http_wait instead of blocking. */
typedef void (*route_fn)(struct gw *gw, const struct http_req *req, struct http_resp *resp);
/* Who may use a route. The check runs before the handler, which finds the caller in req->who. */
enum route_auth {
    AUTH_PUBLIC,   /* anyone (GET /healthz) */
    AUTH_METRICS,  /* any identity, unless metrics.public (or no agent is configured) */
    AUTH_AGENT,    /* an agent (anonymous when none is configured) */
    AUTH_READER,   /* an agent, or an approver (reading call records) */
    AUTH_APPROVER, /* an approver */
    AUTH_DECISION, /* an approver, or a decision token that the handler checks */
    AUTH_PAGE,     /* the approval page: its handler checks a decision token or a session
                    * cookie, and takes HTML form posts instead of JSON */
};
struct route {
    const char *method;  /* "GET", "POST" */
    const char *pattern; /* "/v1/tools/ * /calls" without spaces: '*' matches one segment */
    enum route_auth auth;
    route_fn handler;
};

/* ---- routes (one small handler per row, see routes.c) -------------------------- */
void route_healthz(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_metrics(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_tools_list(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_call_create(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_call_get(struct gw *gw, const struct http_req *req, struct http_resp *resp);
/* GET /v1/tools?format=openai|anthropic|mcp (mcp_tools.c, called by route_tools_list) */
int mcp_tools_format(const struct policy_set *set, const struct principal *who, const char *format,
                     json_t **out, struct gate_error *err);
/* An MCP tool (tools/list), and a call record or a refusal as an MCP tool result. */
json_t *mcp_tool_json(const struct policy *p);
json_t *mcp_call_result(const json_t *record);
json_t *mcp_error_result(const struct gate_error *err);
/* routes.c: the steps of POST /v1/tools/{name}/calls that every door shares: the caller's grant
 * on creq->tool (an ungranted tool answers as unknown, audited), then its quota and the call. */
int gw_call_grant(struct gw *gw, const struct http_req *req, struct call_request *creq,
                  struct gate_error *err);
int gw_call_submit(struct gw *gw, const struct http_req *req, const struct call_request *creq,
                   struct call_outcome *out, struct gate_error *err);
/* mcp.c: the MCP server (streamable HTTP transport) */
void route_mcp_post(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_mcp_get(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_mcp_delete(struct gw *gw, const struct http_req *req, struct http_resp *resp);
/* openapi.c: GET /v1/openapi.json (docs/openapi.json, embedded at build time) */
void route_openapi(struct gw *gw, const struct http_req *req, struct http_resp *resp);
/* routes_approval.c */
void route_approvals_list(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_approval_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp);

/* approve_page.c: the approval page (HTML forms; see the file's comment). */
void route_page_call(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_page_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_page_queue(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_page_signin(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_page_signout(struct gw *gw, const struct http_req *req, struct http_resp *resp);
void route_page_css(struct gw *gw, const struct http_req *req, struct http_resp *resp);

/* server.c: libmicrohttpd behind the guard, the worker pool and long-poll waits. */
int gw_http_start(struct gw *gw, struct gate_error *err);
void gw_http_stop_accepting(struct gw *gw);
void gw_http_stop(struct gw *gw);
/* A call changed: wake the requests waiting for it (http_wait); call_id NULL: every waiting
 * request. Any thread; never blocks long. */
void gw_http_call_changed(const char *call_id);
/* Hand a connected socket (one end of the guard's socketpair) to libmicrohttpd. Takes fd. */
int gw_http_add_connection(int fd, const struct sockaddr *addr, socklen_t addrlen);

/* ---- the front door's framing guard (http_framing.c, http_guard.c) --------------------- */
enum http_body { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };
struct http_head_info {
    size_t head_len; /* bytes of the head, up to and including the empty line */
    enum http_body body;
    uint64_t content_length;
    bool http10;
};
/* Check a request head at the start of buf: 0 = incomplete (read more), 1 = complete and
 * unambiguous (info filled), -1 = refused (err: BAD_FRAMING, URI_TOO_LONG, HEADERS_TOO_LARGE,
 * HTTP_VERSION or BODY_TOO_LARGE). */
int http_head_check(const char *buf, size_t len, struct http_head_info *info,
                    struct gate_error *err);
/* Incremental parser of a chunked body (zero-initialise before the body). */
struct http_chunks {
    int state;
    unsigned digits;
    uint64_t remaining, total;
    size_t line, trailer;
    bool cr;
};
/* Feed len bytes; *used = bytes that belong to the body (forward them). 1 = the body ended
 * (trailers included), 0 = more to come, -1 = refused (err). */
int http_chunks_feed(struct http_chunks *c, const char *buf, size_t len, size_t *used,
                     struct gate_error *err);

struct http_guard_config {
    const char *listen;         /* "ADDR:PORT", IPv4 or [IPv6] */
    unsigned max_connections;   /* at once, in all */
    unsigned max_per_ip;        /* at once, from one client address */
    unsigned head_timeout_ms;   /* from a request's first byte to its complete head */
    unsigned body_timeout_ms;   /* from the head to the end of the body */
    struct gw_metrics *metrics; /* refusals are counted here (may be NULL) */
};
int http_guard_start(const struct http_guard_config *cfg, struct gate_error *err);
/* --listen HOST:PORT ([V6]:PORT) as a socket address. */
int gw_parse_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *len,
                    struct gate_error *err);
void http_guard_stop_accepting(void);
void http_guard_stop(void);
/* The token of the guard connection whose socketpair end (given to libmicrohttpd) is fd; stored
 * as the connection's socket context when libmicrohttpd starts it. */
uint64_t http_guard_token(int fd);
/* libmicrohttpd finished a request on the connection with this token (any thread). */
void http_guard_request_done(uint64_t token);

/* ---- metrics (metrics.c) ----------------------------------------------------------- */
struct gw_metrics *gw_metrics_new(void);
void gw_metrics_free(struct gw_metrics *m);
/* Count a refused request (any response with an error code). */
void gw_metrics_rejected(struct gw_metrics *m, const char *code);
/* The whole /metrics text: requests, the call engine, the audit log and the sandbox tiers. */
void gw_metrics_render(struct gw *gw, struct gate_buf *out);

/* config.c: read --config (agents into gw->agents, the approval section into *approval, owned by
 * the caller), and apply its rules (a readable file with a secret, no agents off loopback). */
int gw_config_load(struct gw *gw, struct approval_config *approval, struct gate_error *err);
/* Whether a --listen address ("ADDR:PORT") is a loopback one. */
bool gw_listen_loopback(const char *listen);
/* Create the state directory 0700, or tighten an existing one. */
int gw_state_dir(const char *dir, struct gate_error *err);

/* serve_options.c: 0 parsed, 1 --help printed (exit 0), -1 error printed (exit 2). */
int gw_parse_serve_args(int argc, char **argv, struct gw_options *o);

/* ---- command line ---------------------------------------------------------------- */
int cmd_serve(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_call(int argc, char **argv);
int cmd_approvals(int argc, char **argv); /* cli_approvals.c */
int cmd_agents(int argc, char **argv);    /* cli_agents.c */
int cmd_mcp(int argc, char **argv);       /* cli_mcp.c */
int cmd_db(int argc, char **argv);        /* cli_db.c */
/* Whether a command's arguments (argv[1..]) ask for its usage: --help or -h anywhere but as
 * the value of one of the options in valued (NULL-terminated; may be NULL), which is data
 * (`approvals deny ID --reason -h` denies, it does not print usage and exit 0). */
bool cli_wants_help(int argc, char **argv, const char *const *valued); /* main.c */

#endif
