/* mcp.c: the Model Context Protocol server, streamable HTTP transport (POST, GET and DELETE
 * /mcp), protocol versions 2025-06-18 and 2025-03-26.
 *
 * A thin door like the JSON API: the front door has authenticated the agent (route row
 * AUTH_AGENT); this file checks the Origin (DNS rebinding), keeps the sessions (a random
 * Mcp-Session-Id bound to the agent that initialized it), and maps JSON-RPC onto the call
 * engine. A call held for approval is answered by a Server-Sent Events stream (http_stream):
 * notifications/progress while it waits (the call id in the first), then the result; the
 * handler runs again on every change of the call, holding no thread in between. If the client
 * goes away the hold stays, readable at GET /v1/calls/{id}; notifications/cancelled of the
 * request withdraws it (approval_withdraw, audited).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"

#define LATEST_VERSION "2025-06-18"
#define MAX_SESSIONS 4096
#define MAX_SESSIONS_PER_AGENT 256
#define SESSION_IDLE_NS (24ull * 3600 * 1000000000ull) /* an idle session is forgotten after */
#define HEARTBEAT_NS (10ull * 1000000000ull)           /* progress while a call waits */
#define UNREAD_RETRY_NS (1000000000ull)                /* store unreadable: look again */
#define MAX_HELD 256                                   /* held calls remembered per session */

/* JSON-RPC error codes. */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602

static const char *const versions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

/* A held call of a session, by the JSON-RPC id of the tools/call that made it. */
struct held {
    char *rpc_id; /* the id, as compact JSON */
    char call_id[40];
};

struct session {
    char id[80];
    char *agent;
    uint64_t used_ns;
    struct held held[MAX_HELD];
    size_t nheld;
    struct session *next;
};

static struct {
    pthread_mutex_t lock;
    struct session *list;
    size_t n;
} sessions = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void session_free(struct session *se)
{
    for (size_t i = 0; i < se->nheld; i++)
        free(se->held[i].rpc_id);
    free(se->agent);
    free(se);
}

/* With sessions.lock held: the session id of agent, or NULL. Bumps its use time. */
static struct session *find_locked(const char *id, const char *agent)
{
    for (struct session *se = sessions.list; se; se = se->next)
        if (gate_consttime_eq(se->id, strlen(se->id), id, strlen(id))) {
            if (strcmp(se->agent, agent) != 0) return NULL; /* another agent's: unknown */
            se->used_ns = gate_monotonic_ns();
            return se;
        }
    return NULL;
}

/* Before agent opens a session: forget idle sessions, then agent's least recently used one if
 * it has MAX_SESSIONS_PER_AGENT (so one agent cannot push the others' sessions out), else the
 * least recently used of all if the table is full. */
static void evict_locked(const char *agent)
{
    uint64_t now = gate_monotonic_ns();
    struct session **oldest = NULL, **own_oldest = NULL;
    size_t own = 0;
    for (struct session **pp = &sessions.list; *pp;) {
        struct session *se = *pp;
        if (now - se->used_ns > SESSION_IDLE_NS) {
            *pp = se->next;
            session_free(se);
            sessions.n--;
            continue;
        }
        if (!oldest || se->used_ns < (*oldest)->used_ns) oldest = pp;
        if (strcmp(se->agent, agent) == 0 && ++own &&
            (!own_oldest || se->used_ns < (*own_oldest)->used_ns))
            own_oldest = pp;
        pp = &se->next;
    }
    struct session **victim = own >= MAX_SESSIONS_PER_AGENT ? own_oldest
                              : sessions.n >= MAX_SESSIONS  ? oldest
                                                            : NULL;
    if (victim) {
        struct session *se = *victim;
        *victim = se->next;
        session_free(se);
        sessions.n--;
    }
}

static int session_new(const char *agent, char id[80], struct gate_error *err)
{
    struct session *se = calloc(1, sizeof(*se));
    if (!se || !(se->agent = strdup(agent))) {
        free(se);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    /* 256 random bits: a session id is a capability only together with the agent's token,
     * but it must still not be guessable. */
    memcpy(se->id, "mcp_", 4);
    if (gate_random_hex(se->id + 4, 32) < 0) {
        session_free(se);
        return gate_err(err, GATE_E_INTERNAL, "no randomness for a session id");
    }
    se->used_ns = gate_monotonic_ns();
    pthread_mutex_lock(&sessions.lock);
    evict_locked(agent);
    se->next = sessions.list;
    sessions.list = se;
    sessions.n++;
    pthread_mutex_unlock(&sessions.lock);
    memcpy(id, se->id, sizeof(se->id));
    return 0;
}

static bool session_delete(const char *id, const char *agent)
{
    pthread_mutex_lock(&sessions.lock);
    for (struct session **pp = &sessions.list; *pp; pp = &(*pp)->next) {
        struct session *se = *pp;
        if (strcmp(se->id, id) == 0 && strcmp(se->agent, agent) == 0) {
            *pp = se->next;
            session_free(se);
            sessions.n--;
            pthread_mutex_unlock(&sessions.lock);
            return true;
        }
    }
    pthread_mutex_unlock(&sessions.lock);
    return false;
}

static bool session_exists(const char *id, const char *agent)
{
    pthread_mutex_lock(&sessions.lock);
    bool ok = find_locked(id, agent) != NULL;
    pthread_mutex_unlock(&sessions.lock);
    return ok;
}

/* Remember (call_id set) or forget (NULL) the held call of request rpc_id. */
static void session_held(const char *id, const char *agent, const char *rpc_id, const char *call_id)
{
    pthread_mutex_lock(&sessions.lock);
    struct session *se = find_locked(id, agent);
    for (size_t i = 0; se && i < se->nheld; i++)
        if (strcmp(se->held[i].rpc_id, rpc_id) == 0) {
            free(se->held[i].rpc_id);
            se->held[i] = se->held[--se->nheld];
            break;
        }
    if (se && call_id) {
        if (se->nheld == MAX_HELD) { /* the oldest is still retrievable by GET /v1/calls */
            free(se->held[0].rpc_id);
            memmove(&se->held[0], &se->held[1], (MAX_HELD - 1) * sizeof(se->held[0]));
            se->nheld--;
        }
        se->held[se->nheld].rpc_id = strdup(rpc_id);
        snprintf(se->held[se->nheld].call_id, sizeof(se->held[0].call_id), "%s", call_id);
        if (se->held[se->nheld].rpc_id) se->nheld++;
    }
    pthread_mutex_unlock(&sessions.lock);
}

static bool session_held_call(const char *id, const char *agent, const char *rpc_id,
                              char call_id[40])
{
    bool found = false;
    pthread_mutex_lock(&sessions.lock);
    struct session *se = find_locked(id, agent);
    for (size_t i = 0; se && i < se->nheld && !found; i++)
        if (strcmp(se->held[i].rpc_id, rpc_id) == 0) {
            memcpy(call_id, se->held[i].call_id, 40);
            found = true;
        }
    pthread_mutex_unlock(&sessions.lock);
    return found;
}

/* ---- HTTP level checks ---------------------------------------------------------------------- */

/* DNS rebinding: a web page whose host name resolves to this gateway must not drive it from a
 * browser. Browsers always send Origin; accept none (a non-browser client), a loopback origin,
 * or the gateway's own public URL. */
static bool origin_allowed(struct gw *gw, const char *origin)
{
    if (!origin) return true;
    const char *host = strstr(origin, "://");
    if (!host) return false;
    host += 3;
    size_t n = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
    static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (strlen(loopback[i]) == n && strncasecmp(host, loopback[i], n) == 0) return true;
    /* The gateway's own address (approval.public_url, else http://--listen): an Origin is a
     * scheme and authority, so a path or trailing slash of the URL is not compared. */
    const char *u = gw->public_url, *ua = u ? strstr(u, "://") : NULL;
    size_t ul = ua ? (size_t)(ua + 3 - u) + strcspn(ua + 3, "/?#") : 0;
    return ul && strncasecmp(origin, u, ul) == 0 && origin[ul] == '\0';
}

static bool accepts(const struct http_req *req, const char *type)
{
    const char *a = http_header(req, "Accept");
    return a && strcasestr(a, type) != NULL;
}

static bool version_supported(const char *v)
{
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
        if (strcmp(v, versions[i]) == 0) return true;
    return false;
}

/* A JSON-RPC error as the whole HTTP response. */
static void rpc_error(struct http_resp *resp, int status, const json_t *id, int code,
                      const char *message)
{
    http_json(resp, status,
              json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                        "error", "code", code, "message", message));
}

static void rpc_result(struct http_resp *resp, const json_t *id, json_t *result)
{
    http_json(resp, 200, json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result", result));
}

/* The session of a request after initialize: 0, or -1 with the HTTP error set. */
static int check_session(const struct http_req *req, struct http_resp *resp, const json_t *id,
                         const char **sid)
{
    *sid = http_header(req, "Mcp-Session-Id");
    const char *v = http_header(req, "MCP-Protocol-Version");
    if (v && !version_supported(v)) {
        rpc_error(resp, 400, id, RPC_INVALID_REQUEST, "unsupported MCP-Protocol-Version");
        return -1;
    }
    if (!*sid) {
        rpc_error(resp, 400, id, RPC_INVALID_REQUEST,
                  "Mcp-Session-Id header required (send initialize first)");
        return -1;
    }
    if (!session_exists(*sid, req->who.name)) {
        rpc_error(resp, 404, id, RPC_INVALID_REQUEST, gate_code_message(GATE_E_SESSION_NOT_FOUND));
        return -1;
    }
    return 0;
}

/* ---- methods ----------------------------------------------------------------------------------
 */
static void do_initialize(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                          const json_t *id, const json_t *params)
{
    (void)gw;
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    const char *version = asked && version_supported(asked) ? asked : LATEST_VERSION;
    struct gate_error err = {0};
    char sid[80];
    if (session_new(req->who.name, sid, &err) < 0) {
        rpc_error(resp, 500, id, -32603, err.msg);
        return;
    }
    json_t *result = json_pack(
        "{s:s,s:{s:{s:b}},s:{s:s,s:s,s:s},s:s}", "protocolVersion", version, "capabilities",
        "tools", "listChanged", 0, "serverInfo", "name", "gatehouse", "title", "gatehouse",
        "version", GATE_VERSION, "instructions",
        "Tools run in sandboxes under policy. A tool marked as needing approval waits for a "
        "human decision; its call id comes in the first progress notification.");
    rpc_result(resp, id, result);
    http_add_header(resp, "Mcp-Session-Id", sid);
}

static void do_tools_list(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                          const json_t *id)
{
    struct policy_set *set = call_engine_policies(gw->engine);
    json_t *tools = json_array();
    for (size_t i = 0; set && i < set->n; i++)
        if (agents_tool_granted(&req->who, set->items[i]->name))
            json_array_append_new(tools, mcp_tool_json(set->items[i]));
    policy_set_unref(set);
    rpc_result(resp, id, json_pack("{s:o}", "tools", tools));
}

/* A tools/call waiting for its held call's decision, across runs of the handler. */
struct wait_ctx {
    json_t *id;             /* the request's JSON-RPC id */
    json_t *progress_token; /* may be NULL: no progress notifications were asked for */
    char call_id[40];
    char session[80];
    char *rpc_id; /* id as compact JSON, the key for notifications/cancelled */
    unsigned progress;
    uint64_t next_beat_ns;
    bool streaming;
};

static void wait_ctx_free(void *p)
{
    struct wait_ctx *w = p;
    json_decref(w->id);
    json_decref(w->progress_token);
    free(w->rpc_id);
    free(w);
}

/* Append one SSE event carrying a JSON-RPC message (takes msg). */
static void sse_event(struct http_resp *resp, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text) gate_buf_printf(&resp->text, "event: message\ndata: %s\n\n", text);
    free(text);
    json_decref(msg);
}

static void progress(struct http_resp *resp, struct wait_ctx *w, const char *message)
{
    /* Without a stream the answer is one JSON body: a notification has nowhere to go (text in
     * resp would be sent at once as the whole response). */
    if (!w->progress_token || !w->streaming) return;
    w->progress++;
    sse_event(resp, json_pack("{s:s,s:s,s:{s:O,s:i,s:s,s:{s:s}}}", "jsonrpc", "2.0", "method",
                              "notifications/progress", "params", "progressToken",
                              w->progress_token, "progress", w->progress, "message", message,
                              "_meta", "gatehouse/call_id", w->call_id));
}

/* Answer the tools/call (takes result): as the stream's last event, or as the JSON body. */
static void answer(struct http_resp *resp, struct wait_ctx *w, json_t *result)
{
    json_t *msg = json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", w->id, "result", result);
    if (w->streaming)
        sse_event(resp, msg);
    else
        http_json(resp, 200, msg);
}

/* One run of a tools/call whose call is held: answer if it is decided, else wait again. */
static void held_run(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                     struct wait_ctx *w)
{
    bool final = false;
    struct gate_error err = {0};
    json_t *rec = call_get(gw->engine, w->call_id, req->who.name, &final, &err);
    uint64_t now = gate_monotonic_ns();
    /* The store unreadable (a shared database down) is not the call gone: wait on, as for an
     * undecided call, and look again at the next change or heartbeat. */
    bool unread = !rec && err.code;
    if (rec && final) {
        session_held(w->session, req->who.name, w->rpc_id, NULL);
        answer(resp, w, mcp_call_result(rec));
    } else if ((!rec && !unread) || atomic_load(&gw->stopping)) {
        struct gate_error why = {0};
        gate_err(&why, rec || unread ? GATE_E_SHUTTING_DOWN : GATE_E_CALL_NOT_FOUND,
                 "call %s is still held; its result will be at GET /v1/calls/%s", w->call_id,
                 w->call_id);
        answer(resp, w, mcp_error_result(&why));
    } else {
        if (resp->run == 0) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "call %s is held for approval (GET /v1/calls/%s); waiting for a decision",
                     w->call_id, w->call_id);
            progress(resp, w, msg);
        } else if (now >= w->next_beat_ns) {
            progress(resp, w, "still waiting for a decision");
        }
        if (now >= w->next_beat_ns) w->next_beat_ns = now + HEARTBEAT_NS;
        /* Without a stream there is nothing to send until the end: wait for the change only
         * (or, while the store is unreadable, look again in a second: a change made meanwhile
         * elsewhere may never be announced here). */
        uint64_t next = w->streaming ? w->next_beat_ns : UINT64_MAX;
        if (unread && next > now + UNREAD_RETRY_NS) next = now + UNREAD_RETRY_NS;
        http_wait(resp, w->call_id, next);
    }
    json_decref(rec);
}

static void start_held(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                       const json_t *id, const json_t *params, const char *sid,
                       const json_t *record)
{
    struct wait_ctx *w = calloc(1, sizeof(*w));
    if (!w) {
        rpc_error(resp, 500, id, -32603, "out of memory");
        return;
    }
    w->id = json_incref((json_t *)id);
    w->progress_token =
        json_incref(json_object_get(json_object_get(params, "_meta"), "progressToken"));
    w->rpc_id = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(w->call_id, sizeof(w->call_id), "%s",
             json_string_value(json_object_get(record, "call_id")));
    snprintf(w->session, sizeof(w->session), "%s", sid);
    w->streaming = accepts(req, "text/event-stream");
    resp->ctx = w;
    resp->ctx_free = wait_ctx_free;
    if (w->rpc_id) session_held(sid, req->who.name, w->rpc_id, w->call_id);
    if (w->streaming) http_stream(resp, 200, "text/event-stream");
    held_run(gw, req, resp, w);
}

static void do_tools_call(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                          const json_t *id, const json_t *params, const char *sid)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    const json_t *args = json_object_get(params, "arguments");
    if (!name || (args && !json_is_object(args))) {
        rpc_error(resp, 200, id, RPC_INVALID_PARAMS,
                  "tools/call needs params.name (a string) and params.arguments (an object)");
        return;
    }
    struct gate_error err = {0};
    struct call_outcome out = {0};
    struct call_request creq = {
        .tool = name, .arguments = args, .agent = req->who.name, .session = sid};
    if (gw_call_grant(gw, req, &creq, &err) == 0 &&
        gw_call_submit(gw, req, &creq, &out, &err) == 0) {
        if (out.held)
            start_held(gw, req, resp, id, params, sid, out.record);
        else
            rpc_result(resp, id, mcp_call_result(out.record));
    } else if (err.code == GATE_E_TOOL_NOT_FOUND) {
        rpc_error(resp, 200, id, RPC_INVALID_PARAMS, err.msg); /* as the specification says */
    } else {
        /* A refusal the model can read and act on: invalid arguments (naming the path),
         * too many calls, a sandbox that failed... */
        rpc_result(resp, id, out.record ? mcp_call_result(out.record) : mcp_error_result(&err));
    }
    json_decref(out.record);
}

static void do_notification(struct gw *gw, const struct http_req *req, struct http_resp *resp,
                            const char *method, const json_t *params, const char *sid)
{
    if (strcmp(method, "notifications/cancelled") == 0) {
        char call_id[40];
        autofree char *rpc_id =
            json_dumps(json_object_get(params, "requestId"), JSON_COMPACT | JSON_ENCODE_ANY);
        struct approval *a = call_engine_approval(gw->engine);
        struct gate_error err = {0};
        if (rpc_id && a && session_held_call(sid, req->who.name, rpc_id, call_id)) {
            if (approval_withdraw(a, call_id, req->who.name, &err) < 0)
                gate_log("info", "mcp.cancel", "call %s: %s", call_id, err.msg);
            session_held(sid, req->who.name, rpc_id, NULL);
        }
    }
    resp->status = 202; /* notifications get no answer */
}

void route_mcp_post(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    if (resp->ctx) { /* a held tools/call, run again: its call changed or a beat is due */
        held_run(gw, req, resp, resp->ctx);
        return;
    }
    if (!origin_allowed(gw, http_header(req, "Origin"))) {
        http_error(resp, GATE_E_ORIGIN_NOT_ALLOWED, NULL);
        return;
    }
    struct gate_error err = {0};
    json_t *msg = NULL;
    if (http_parse_body(req, &msg, &err) < 0) {
        rpc_error(resp, 400, NULL,
                  err.code == GATE_E_BAD_REQUEST ? RPC_INVALID_REQUEST : RPC_PARSE_ERROR,
                  err.code == GATE_E_BAD_REQUEST
                      ? "a JSON-RPC message must be one object (batches are not supported)"
                      : err.msg);
        return;
    }
    const json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    const json_t *params = json_object_get(msg, "params");
    const char *sid = NULL;
    if (!json_is_string(json_object_get(msg, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") != 0 ||
        (id && !json_is_string(id) && !json_is_integer(id)))
        rpc_error(resp, 400, id, RPC_INVALID_REQUEST, "not a JSON-RPC 2.0 message");
    else if (method && id && strcmp(method, "initialize") == 0)
        do_initialize(gw, req, resp, id, params);
    else if (check_session(req, resp, id, &sid) < 0)
        ; /* answered */
    else if (!method)
        resp->status = 202; /* a response from the client: we send no requests */
    else if (!id)
        do_notification(gw, req, resp, method, params, sid);
    else if (strcmp(method, "ping") == 0)
        rpc_result(resp, id, json_object());
    else if (strcmp(method, "tools/list") == 0)
        do_tools_list(gw, req, resp, id);
    else if (strcmp(method, "tools/call") == 0)
        do_tools_call(gw, req, resp, id, params, sid);
    else
        rpc_error(resp, 200, id, RPC_METHOD_NOT_FOUND, "method not found");
    json_decref(msg);
}

/* GET /mcp: the server-to-client stream. This server sends no requests or notifications of
 * its own outside a tools/call, so the stream carries only keep-alive comments; it ends with
 * the session. */
void route_mcp_get(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    const char *sid = NULL;
    if (resp->run == 0) {
        if (!origin_allowed(gw, http_header(req, "Origin"))) {
            http_error(resp, GATE_E_ORIGIN_NOT_ALLOWED, NULL);
            return;
        }
        if (!accepts(req, "text/event-stream")) {
            http_error(resp, GATE_E_METHOD_NOT_ALLOWED,
                       "GET /mcp is the server's event stream: Accept: text/event-stream");
            return;
        }
        if (check_session(req, resp, NULL, &sid) < 0) return;
        if (!(resp->ctx = calloc(1, sizeof(uint64_t)))) {
            http_error(resp, GATE_E_NOMEM, NULL);
            return;
        }
        resp->ctx_free = free;
        http_stream(resp, 200, "text/event-stream");
    }
    sid = http_header(req, "Mcp-Session-Id");
    if (!sid || !session_exists(sid, req->who.name) || atomic_load(&gw->stopping)) return;
    /* A run may come early (any call's change wakes a parked run once): beat on time only. */
    uint64_t *next_beat = resp->ctx, now = gate_monotonic_ns();
    if (now >= *next_beat) {
        gate_buf_printf(&resp->text, ": keep-alive\n\n");
        *next_beat = now + 3 * HEARTBEAT_NS;
    }
    http_wait(resp, "mcp-keepalive", *next_beat);
}

void route_mcp_delete(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    const char *sid = NULL;
    if (!origin_allowed(gw, http_header(req, "Origin")))
        http_error(resp, GATE_E_ORIGIN_NOT_ALLOWED, NULL);
    else if (check_session(req, resp, NULL, &sid) == 0 && session_delete(sid, req->who.name))
        resp->status = 204;
}
