/* server.c: libmicrohttpd behind the front door's guard, the route table, the worker pool that
 * runs handlers, and long-poll waits that hold no thread.
 *
 * libmicrohttpd runs in epoll mode with its own small thread pool and never runs a handler:
 * once a request is complete its connection is suspended and the request (copied) goes to a
 * worker. A handler that must wait for a call (GET /v1/calls/{id}?wait=) says so with
 * http_wait and returns; the connection stays suspended, parked under the call's id, until the
 * call engine reports a change or the deadline passes, and then the handler runs again. So
 * thousands of long polls cost memory, not threads.
 *
 * Streamed responses (http_stream, for MCP's Server-Sent Events) use the same parking: each
 * run of the handler appends bytes to a struct stream that libmicrohttpd's content reader
 * drains; with nothing to send, the reader suspends the connection and returns 0, and the
 * next append resumes it.
 */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway.h"

static const struct route routes[] = {
    {"GET", "/healthz", AUTH_PUBLIC, route_healthz},
    {"GET", "/metrics", AUTH_METRICS, route_metrics},
    {"GET", "/v1/tools", AUTH_AGENT, route_tools_list},
    {"POST", "/v1/tools/*/calls", AUTH_AGENT, route_call_create},
    {"GET", "/v1/calls/*", AUTH_READER, route_call_get},
    {"GET", "/v1/approvals", AUTH_APPROVER, route_approvals_list},
    {"POST", "/v1/approvals/*", AUTH_DECISION, route_approval_decide},
    {"GET", "/v1/openapi.json", AUTH_PUBLIC, route_openapi},
    {"POST", "/mcp", AUTH_AGENT, route_mcp_post},
    {"GET", "/mcp", AUTH_AGENT, route_mcp_get},
    {"DELETE", "/mcp", AUTH_AGENT, route_mcp_delete},
    {"GET", "/approve/*", AUTH_PAGE, route_page_call},
    {"POST", "/approve/*", AUTH_PAGE, route_page_decide},
    {"GET", "/approvals", AUTH_PAGE, route_page_queue},
    {"POST", "/approvals/signin", AUTH_PAGE, route_page_signin},
    {"POST", "/approvals/signout", AUTH_PAGE, route_page_signout},
    {"GET", "/approve.css", AUTH_PAGE, route_page_css},
};

#define IDLE_TIMEOUT_S 60 /* an idle keep-alive connection is closed after this */
#define WORKERS_MIN 4
#define WORKERS_IDLE_EXIT_MS 10000
#define WAIT_BUCKETS 1024

/* One request, from its first byte to its completion; owned by libmicrohttpd's con_cls. */
struct conn_state {
    struct MHD_Connection *conn;
    char *method, *path;
    struct http_field *headers, *query;
    size_t nheaders, nquery;
    struct gate_buf body;
    bool too_large;
    uint64_t received_ns;
    struct http_resp resp;
    bool resp_ready;
    uint64_t change_seen;    /* the change counter when the handler last looked */
    struct conn_state *next; /* in the work queue, or a wait bucket */
    /* Under s.lock: queued or running (busy), in a wait bucket (parked), or the connection
     * ended while it was either (gone: whoever holds it frees it). Only a streamed request
     * can end while busy or parked; any other is suspended until its response is ready. */
    bool busy, parked, gone;
    struct stream *stream; /* set once a streamed response started */
};

/* The bytes of a streamed response between the handler's runs and libmicrohttpd's reader. */
struct stream {
    pthread_mutex_t lock;
    struct MHD_Connection *conn; /* NULL once the connection ended */
    struct gate_buf buf;         /* appended by runs */
    size_t sent;                 /* bytes of buf handed to libmicrohttpd */
    bool ended, suspended;
    int refs; /* the request and the libmicrohttpd response */
    int status;
    const char *content_type; /* a string constant */
    struct gate_buf headers;  /* the handler's extra header lines (http_add_header) */
};

static struct {
    struct gw *gw;
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock; /* the work queue, the workers and the waits */
    pthread_cond_t work, timer;
    struct conn_state *queue_head, *queue_tail;
    unsigned workers, idle, max_workers;
    unsigned queued; /* requests in the queue */
    bool stopping;
    pthread_t timer_thread;
    bool timer_started;
    struct conn_state *waits[WAIT_BUCKETS];
    size_t nwaits;
    atomic_uint_fast64_t changes; /* bumped by every call change */
    atomic_uint nstreams;         /* streamed requests not yet ended */
    atomic_uint nrequests;        /* requests from their head to their completion */
} s;

/* ---- small helpers for handlers ------------------------------------------------------- */
static const char *lookup(const struct http_field *f, size_t n, const char *key, bool nocase)
{
    for (size_t i = 0; i < n; i++)
        if ((nocase ? strcasecmp(f[i].name, key) : strcmp(f[i].name, key)) == 0) return f[i].value;
    return NULL;
}

const char *http_query(const struct http_req *req, const char *key)
{
    return lookup(req->query, req->nquery, key, false);
}

const char *http_header(const struct http_req *req, const char *name)
{
    return lookup(req->headers, req->nheaders, name, true);
}

void http_add_header(struct http_resp *resp, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return; /* no header injection */
    gate_buf_printf(&resp->headers, "%s: %s\n", name, value);
}

/* Hand the lines http_add_header collected ("Name: value\n" each) to libmicrohttpd. */
static void add_headers(struct MHD_Response *r, const struct gate_buf *h)
{
    for (const char *line = h->data, *nl; line && (nl = strchr(line, '\n')); line = nl + 1) {
        const char *colon = memchr(line, ':', (size_t)(nl - line));
        if (!colon || colon + 2 > nl) continue;
        char name[128], value[2048];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - line), line);
        snprintf(value, sizeof(value), "%.*s", (int)(nl - colon - 2), colon + 2);
        MHD_add_response_header(r, name, value);
    }
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

void http_wait(struct http_resp *resp, const char *call_id, uint64_t deadline_ns)
{
    snprintf(resp->wait_call, sizeof(resp->wait_call), "%s", call_id);
    resp->wait_deadline_ns = deadline_ns;
}

/* JSON nesting depth outside strings; jansson's own limit is far above ours. */
static int json_depth(const char *str, size_t len)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = str[i];
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

/* ---- routing --------------------------------------------------------------------------- */
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

static bool json_content_type(const char *ct)
{
    if (!ct) return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static bool valid_utf8(const char *str)
{
    json_t *probe = json_string(str);
    bool ok = probe != NULL;
    json_decref(probe);
    return ok;
}

/* Authenticate the caller and check that its kind may use the route. A refused call is
 * audited (call.rejected) like any other refusal. */
static int authorize(struct gw *gw, const struct route *r, struct http_req *req,
                     struct http_resp *resp)
{
    struct gate_error err = {0};
    if (r->auth == AUTH_PUBLIC || r->auth == AUTH_PAGE ||
        (r->auth == AUTH_METRICS &&
         (agents_metrics_public(gw->agents) || !agents_configured(gw->agents))))
        return 0;
    int rc = agents_authenticate(gw->agents, req->authorization, &req->who, &err);
    enum principal_kind k = req->who.kind;
    if (rc == 0 && r->auth == AUTH_AGENT && k == PRINCIPAL_APPROVER)
        rc = gate_err(&err, GATE_E_FORBIDDEN, "an approver's token cannot call tools");
    else if (rc == 0 && r->auth == AUTH_APPROVER && k != PRINCIPAL_APPROVER)
        rc = gate_err(&err, k == PRINCIPAL_ANONYMOUS ? GATE_E_UNAUTHORIZED : GATE_E_FORBIDDEN,
                      "an approver's token is required");
    else if (rc == 0 && r->auth == AUTH_DECISION && k == PRINCIPAL_AGENT)
        rc = gate_err(&err, GATE_E_FORBIDDEN, "an agent's token cannot decide held calls");
    if (rc == 0) return 0;
    if (r->handler == route_call_create)
        call_reject(gw->engine, req->params[0],
                    err.code == GATE_E_UNAUTHORIZED ? NULL : req->who.name, &err);
    http_error_from(resp, &err);
    return -1;
}

static void dispatch(struct gw *gw, struct http_req *req, struct http_resp *resp)
{
    char store[HTTP_MAX_TARGET + 8];
    if (!valid_utf8(req->path)) {
        http_error(resp, GATE_E_BAD_REQUEST, "the request path is not valid UTF-8");
        return;
    }
    /* HEAD is GET without the body (libmicrohttpd leaves the body out of HEAD responses). */
    const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *params[2] = {NULL, NULL};
        if (!match(routes[i].pattern, req->path, params, store, sizeof(store))) continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0) continue;
        req->params[0] = params[0];
        req->params[1] = params[1];
        if (authorize(gw, &routes[i], req, resp) < 0) return;
        if (strcmp(method, "POST") == 0 && routes[i].auth != AUTH_PAGE &&
            !json_content_type(req->content_type)) {
            http_error(resp, GATE_E_UNSUPPORTED_MEDIA_TYPE, NULL);
            return;
        }
        routes[i].handler(gw, req, resp);
        return;
    }
    http_error(resp, path_known ? GATE_E_METHOD_NOT_ALLOWED : GATE_E_NOT_FOUND, NULL);
}

/* ---- long-poll waits ---------------------------------------------------------------------- */
static unsigned bucket_of(const char *call_id)
{
    unsigned h = 2166136261u;
    for (const char *p = call_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % WAIT_BUCKETS;
}

static void *worker_main(void *arg);

/* Queue a request for a worker, and start one more worker (up to max_workers) unless an idle
 * one is left for it. Idle workers already woken for earlier requests still count as idle
 * until they run, so the test is queued > idle, not idle == 0: otherwise a request could wait
 * behind a long call that a single woken worker took first. */
static void enqueue_locked(struct conn_state *cs)
{
    cs->next = NULL;
    cs->busy = true;
    cs->parked = false;
    if (s.queue_tail)
        s.queue_tail->next = cs;
    else
        s.queue_head = cs;
    s.queue_tail = cs;
    s.queued++;
    if (s.queued > s.idle && s.workers < s.max_workers) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        if (pthread_create(&t, &attr, worker_main, NULL) == 0) s.workers++;
        pthread_attr_destroy(&attr);
    }
    pthread_cond_signal(&s.work);
}

/* Move the waits selected by pick (all when call_id is NULL and now is 0) to the work queue. */
static void release_waits_locked(const char *call_id, uint64_t now)
{
    for (unsigned b = call_id ? bucket_of(call_id) : 0; b < WAIT_BUCKETS; b++) {
        struct conn_state **pp = &s.waits[b];
        while (*pp) {
            struct conn_state *cs = *pp;
            bool go = call_id ? strcmp(cs->resp.wait_call, call_id) == 0
                              : (!now || cs->resp.wait_deadline_ns <= now);
            if (!go) {
                pp = &cs->next;
                continue;
            }
            *pp = cs->next;
            s.nwaits--;
            cs->parked = false;
            enqueue_locked(cs);
        }
        if (call_id) break;
    }
}

void gw_http_call_changed(const char *call_id)
{
    atomic_fetch_add(&s.changes, 1);
    pthread_mutex_lock(&s.lock);
    if (s.nwaits) release_waits_locked(call_id, 0);
    pthread_mutex_unlock(&s.lock);
}

/* Park a suspended request until its call changes or its deadline passes. If a change came
 * after the handler looked, run it again at once instead: that change may be the one it
 * waits for. */
static void park_locked(struct conn_state *cs)
{
    if (s.stopping || atomic_load(&s.changes) != cs->change_seen) {
        enqueue_locked(cs);
    } else {
        unsigned b = bucket_of(cs->resp.wait_call);
        cs->next = s.waits[b];
        s.waits[b] = cs;
        s.nwaits++;
        cs->busy = false;
        cs->parked = true;
        pthread_cond_signal(&s.timer);
    }
}

/* Take a parked request out of its wait bucket. */
static void unpark_locked(struct conn_state *cs)
{
    for (struct conn_state **pp = &s.waits[bucket_of(cs->resp.wait_call)]; *pp; pp = &(*pp)->next)
        if (*pp == cs) {
            *pp = cs->next;
            s.nwaits--;
            cs->parked = false;
            return;
        }
}

/* Wake waits whose deadline passed. The earliest deadline is found by a scan: a few
 * thousand waits cost microseconds, and the thread only wakes at deadlines and new waits. */
static void *timer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&s.lock);
    while (!s.stopping) {
        uint64_t now = gate_monotonic_ns(), next = 0;
        release_waits_locked(NULL, now);
        for (unsigned b = 0; b < WAIT_BUCKETS; b++)
            for (struct conn_state *cs = s.waits[b]; cs; cs = cs->next)
                if (!next || cs->resp.wait_deadline_ns < next) next = cs->resp.wait_deadline_ns;
        if (!next) {
            pthread_cond_wait(&s.timer, &s.lock);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            pthread_cond_timedwait(&s.timer, &s.lock, &ts);
        }
    }
    pthread_mutex_unlock(&s.lock);
    return NULL;
}

/* ---- streamed responses -------------------------------------------------------------------- */
void http_stream(struct http_resp *resp, int status, const char *content_type)
{
    resp->stream = true;
    resp->status = status;
    resp->content_type = content_type;
}

static void stream_unref(struct stream *st)
{
    pthread_mutex_lock(&st->lock);
    bool last = --st->refs == 0;
    pthread_mutex_unlock(&st->lock);
    if (!last) return;
    gate_buf_free(&st->buf);
    gate_buf_free(&st->headers);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* libmicrohttpd's content reader (its own thread). Returning 0 without suspending would make
 * it call again at once (a busy loop), so it suspends first; stream_push resumes. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&st->lock);
    if (st->sent < st->buf.len) {
        size_t left = st->buf.len - st->sent;
        n = (ssize_t)(left < max ? left : max);
        memcpy(buf, st->buf.data + st->sent, (size_t)n);
        st->sent += (size_t)n;
        if (st->sent == st->buf.len) st->buf.len = st->sent = 0; /* reuse the buffer */
    } else if (st->ended) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (st->conn) {
        st->suspended = true;
        MHD_suspend_connection(st->conn);
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void stream_response_free(void *cls)
{
    struct stream *st = cls;
    pthread_mutex_lock(&st->lock);
    st->conn = NULL;
    pthread_mutex_unlock(&st->lock);
    stream_unref(st);
}

/* Hand a run's bytes to the reader (and the end, if this was the last run). */
static void stream_push(struct stream *st, struct gate_buf *bytes, bool end)
{
    pthread_mutex_lock(&st->lock);
    if (bytes->len) gate_buf_append(&st->buf, bytes->data, bytes->len);
    st->ended = st->ended || end;
    if (st->suspended && st->conn) {
        st->suspended = false;
        MHD_resume_connection(st->conn);
    }
    pthread_mutex_unlock(&st->lock);
}

static struct stream *stream_new(const struct http_resp *resp, struct MHD_Connection *conn)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    pthread_mutex_init(&st->lock, NULL);
    st->conn = conn;
    st->refs = 1;
    st->status = resp->status;
    st->content_type = resp->content_type;
    if (resp->headers.len &&
        gate_buf_append(&st->headers, resp->headers.data, resp->headers.len) < 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        return NULL;
    }
    return st;
}

static void free_state(struct conn_state *cs);

/* After a run of a streamed handler: send its bytes, then park it or end the stream. */
static void stream_run_done(struct conn_state *cs)
{
    bool first = !cs->stream, wait = cs->resp.wait_call[0] != '\0';
    if (first && (cs->stream = stream_new(&cs->resp, cs->conn))) atomic_fetch_add(&s.nstreams, 1);
    if (first && !cs->stream) {
        http_error(&cs->resp, GATE_E_NOMEM, NULL); /* sent as an ordinary response */
        cs->resp.stream = wait = false;
    }
    if (cs->stream) stream_push(cs->stream, &cs->resp.text, !wait);
    gate_buf_free(&cs->resp.text);
    pthread_mutex_lock(&s.lock);
    if (cs->gone) {
        pthread_mutex_unlock(&s.lock);
        free_state(cs);
        return;
    }
    if (wait)
        park_locked(cs);
    else
        cs->busy = false;
    pthread_mutex_unlock(&s.lock);
    if (first) {
        cs->resp_ready = true;
        MHD_resume_connection(cs->conn); /* on_request sends the head and starts the reader */
    }
}

/* ---- workers ------------------------------------------------------------------------------ */
static void run_handler(struct conn_state *cs)
{
    struct http_req req = {
        .method = cs->method,
        .path = cs->path,
        .body = cs->body.data ? cs->body.data : "",
        .body_len = cs->body.len,
        .headers = cs->headers,
        .nheaders = cs->nheaders,
        .query = cs->query,
        .nquery = cs->nquery,
        .received_ns = cs->received_ns,
    };
    req.content_type = http_header(&req, "Content-Type");
    req.authorization = http_header(&req, "Authorization");
    json_decref(cs->resp.json);
    gate_buf_free(&cs->resp.text);
    struct http_resp kept = cs->resp;
    gate_buf_free(&cs->resp.headers);
    memset(&cs->resp, 0, sizeof(cs->resp));
    cs->resp.status = 500;
    cs->resp.ctx = kept.ctx;
    cs->resp.ctx_free = kept.ctx_free;
    cs->resp.run = kept.run;
    cs->resp.stream = kept.stream;
    cs->change_seen = atomic_load(&s.changes);
    if (cs->too_large)
        http_error(&cs->resp, GATE_E_BODY_TOO_LARGE, NULL);
    else
        dispatch(s.gw, &req, &cs->resp);
    cs->resp.run++;
    if (cs->resp.stream) {
        stream_run_done(cs);
        return;
    }
    pthread_mutex_lock(&s.lock);
    if (cs->resp.wait_call[0] && !cs->resp.json && !cs->resp.text.data) {
        park_locked(cs);
        pthread_mutex_unlock(&s.lock);
        return;
    }
    cs->busy = false;
    pthread_mutex_unlock(&s.lock);
    cs->resp_ready = true;
    MHD_resume_connection(cs->conn); /* libmicrohttpd calls on_request again to send it */
}

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&s.lock);
    for (;;) {
        while (!s.queue_head && !s.stopping) {
            s.idle++;
            uint64_t until = gate_monotonic_ns() + WORKERS_IDLE_EXIT_MS * 1000000ull;
            struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ull),
                                  .tv_nsec = (long)(until % 1000000000ull)};
            int rc = pthread_cond_timedwait(&s.work, &s.lock, &ts);
            s.idle--;
            if (rc != 0 && !s.queue_head && s.workers > WORKERS_MIN) goto out;
        }
        if (!s.queue_head) break; /* stopping and nothing left */
        struct conn_state *cs = s.queue_head;
        s.queue_head = cs->next;
        if (!s.queue_head) s.queue_tail = NULL;
        s.queued--;
        pthread_mutex_unlock(&s.lock);
        run_handler(cs);
        pthread_mutex_lock(&s.lock);
    }
out:
    s.workers--;
    pthread_mutex_unlock(&s.lock);
    return NULL;
}

static void submit(struct conn_state *cs)
{
    pthread_mutex_lock(&s.lock);
    enqueue_locked(cs);
    pthread_mutex_unlock(&s.lock);
}

/* ---- libmicrohttpd callbacks ---------------------------------------------------------------- */
struct collect {
    struct http_field *f;
    size_t n;
};

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct collect *c = cls;
    struct http_field *grown = realloc(c->f, (c->n + 1) * sizeof(*grown));
    if (!grown) return MHD_NO;
    c->f = grown;
    c->f[c->n].name = strdup(key);
    c->f[c->n].value = strdup(value ? value : "");
    if (c->f[c->n].name && c->f[c->n].value) c->n++;
    return MHD_YES;
}

static struct conn_state *new_state(struct MHD_Connection *conn, const char *url,
                                    const char *method)
{
    struct conn_state *cs = calloc(1, sizeof(*cs));
    if (!cs) return NULL;
    atomic_fetch_add(&s.nrequests, 1);
    cs->conn = conn;
    cs->method = strdup(method);
    cs->path = strdup(url);
    cs->received_ns = gate_monotonic_ns();
    struct collect h = {0}, q = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, &h);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, &q);
    cs->headers = h.f;
    cs->nheaders = h.n;
    cs->query = q.f;
    cs->nquery = q.n;
    return cs;
}

static void free_fields(struct http_field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        free(f[i].value);
    }
    free(f);
}

static void free_state(struct conn_state *cs)
{
    free(cs->method);
    free(cs->path);
    free_fields(cs->headers, cs->nheaders);
    free_fields(cs->query, cs->nquery);
    gate_buf_free(&cs->body);
    json_decref(cs->resp.json);
    gate_buf_free(&cs->resp.text);
    if (cs->resp.ctx_free) cs->resp.ctx_free(cs->resp.ctx);
    if (cs->stream) {
        stream_unref(cs->stream);
        atomic_fetch_sub(&s.nstreams, 1);
    }
    gate_buf_free(&cs->resp.headers);
    free(cs);
    atomic_fetch_sub(&s.nrequests, 1);
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
        text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    add_headers(r, &resp->headers);
    if (resp->retry_after) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", resp->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    if (resp->status >= 400 && resp->json) {
        const char *code =
            json_string_value(json_object_get(json_object_get(resp->json, "error"), "code"));
        if (code) gw_metrics_rejected(s.gw->metrics, code);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The head of a streamed response; the body comes from stream_read. */
static enum MHD_Result send_stream(struct MHD_Connection *conn, struct conn_state *cs)
{
    struct stream *st = cs->stream;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read,
                                                               st, stream_response_free);
    if (!r) return MHD_NO;
    pthread_mutex_lock(&st->lock);
    st->refs++; /* the response's, dropped by stream_response_free */
    pthread_mutex_unlock(&st->lock);
    MHD_add_response_header(r, "Content-Type", st->content_type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    add_headers(r, &st->headers);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)st->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)version;
    struct conn_state *cs = *con_cls;
    if (!cs) {
        *con_cls = cs = new_state(conn, url, method);
        return cs ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size) {
        /* The guard refuses bodies over the cap; this only keeps us safe without it. */
        if (cs->too_large || cs->body.len + *upload_data_size > GW_MAX_BODY) {
            cs->too_large = true;
            gate_buf_free(&cs->body);
        } else if (gate_buf_append(&cs->body, upload_data, *upload_data_size) < 0) {
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (cs->resp_ready && cs->stream) return send_stream(conn, cs);
    if (cs->resp_ready) return send_resp(conn, &cs->resp);
    /* Suspend before handing over: the worker resumes the connection when its response is
     * ready, and libmicrohttpd calls us again. */
    MHD_suspend_connection(conn);
    submit(cs);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)toe;
    struct conn_state *cs = *con_cls;
    *con_cls = NULL;
    if (cs && cs->stream) {
        /* A streamed request may be queued, running or parked right now (see conn_state). */
        pthread_mutex_lock(&cs->stream->lock);
        cs->stream->conn = NULL;
        pthread_mutex_unlock(&cs->stream->lock);
        pthread_mutex_lock(&s.lock);
        if (cs->parked) unpark_locked(cs);
        bool busy = cs->busy;
        cs->gone = busy;
        pthread_mutex_unlock(&s.lock);
        if (busy) cs = NULL; /* the worker frees it */
    }
    if (cs) free_state(cs);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci) http_guard_request_done((uint64_t)(uintptr_t)ci->socket_context);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = ci ? (void *)(uintptr_t)http_guard_token(ci->connect_fd) : NULL;
}

int gw_http_add_connection(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    return MHD_add_connection(s.daemon, fd, addr, addrlen) == MHD_YES ? 0 : -1;
}

/* ---- start and stop ------------------------------------------------------------------------- */
int gw_http_start(struct gw *gw, struct gate_error *err)
{
    s.gw = gw;
    s.max_workers = gw->opt.max_concurrent + 64; /* calls, plus room for everything else */
    pthread_mutex_init(&s.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines from gate_monotonic_ns */
    pthread_cond_init(&s.work, &ca);
    pthread_cond_init(&s.timer, &ca);
    pthread_condattr_destroy(&ca);
    s.daemon = MHD_start_daemon(
        MHD_USE_NO_LISTEN_SOCKET | MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
            MHD_ALLOW_SUSPEND_RESUME,
        0, NULL, NULL, on_request, gw, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT,
        gw->opt.max_connections + 64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(2 * HTTP_MAX_HEAD + 65536),
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    if (!s.daemon) return gate_err(err, GATE_E_INTERNAL, "libmicrohttpd did not start");
    int rc = pthread_create(&s.timer_thread, NULL, timer_main, NULL);
    if (rc != 0) return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the long-poll timer");
    s.timer_started = true;
    struct http_guard_config gc = {.listen = gw->opt.listen,
                                   .max_connections = gw->opt.max_connections,
                                   .max_per_ip = gw->opt.max_connections_per_ip,
                                   .head_timeout_ms = gw->opt.request_timeout_ms,
                                   .body_timeout_ms = 3 * gw->opt.request_timeout_ms,
                                   .metrics = gw->metrics};
    return http_guard_start(&gc, err);
}

void gw_http_stop_accepting(struct gw *gw)
{
    (void)gw;
    http_guard_stop_accepting();
    /* Parked long polls answer now, with the call's state as it is. */
    pthread_mutex_lock(&s.lock);
    release_waits_locked(NULL, 0);
    s.stopping = true; /* a handler that asks to wait again is run again at once */
    pthread_cond_broadcast(&s.timer);
    pthread_mutex_unlock(&s.lock);
}

void gw_http_stop(struct gw *gw)
{
    gw_http_stop_accepting(gw);
    /* Streams got their last run at stop_accepting (their handlers see gw->stopping), and a
     * call that finished in the grace period may still be answering (the engine counts it
     * done before its response is written): let their last bytes leave, for at most 2 s,
     * before the guard closes every connection. */
    for (int i = 0; i < 400 && (atomic_load(&s.nstreams) || atomic_load(&s.nrequests)); i++)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    http_guard_stop();
    if (s.timer_started) pthread_join(s.timer_thread, NULL);
    s.timer_started = false;
    if (s.daemon) MHD_stop_daemon(s.daemon);
    s.daemon = NULL;
}
