/* approve_page.c: the approval page, for people (issue 18).
 *
 *   GET  /approve/{call_id}?t=TOKEN  one held call, from the link in a webhook (a decision token)
 *                                    or for a signed-in approver (session cookie)
 *   POST /approve/{call_id}          the decision form: decision, reason, name, args_sha256, csrf,
 *                                    and t (the decision token) unless signed in
 *   GET  /approvals                  the sign-in form, or the signed-in approver's queue
 *   POST /approvals/signin           token -> a server-side session in a cookie
 *   POST /approvals/signout
 *   GET  /approve.css
 *
 * Plain HTML forms, no script. Every value is HTML-escaped; the CSP allows only our stylesheet
 * and forms to ourselves; no Referer leaves the page (the token is in its URL); nothing here
 * logs a token. A decision is approval_decide's compare-and-set, as through the API, bound to
 * the args_sha256 the page showed. The CSRF token is an HMAC, under a key made at start, of the
 * decision token or of the session it belongs to, so a form forged elsewhere cannot carry it.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "approve_page.h"
#include "gateway.h"

#define SESSION_COOKIE "gh_session"
#define SESSION_TTL_MS (8ull * 3600 * 1000)
#define MAX_SESSIONS 256
#define PAGE_SIZE 20

/* ---- sessions and CSRF tokens -----------------------------------------------------------------
 */
struct session {
    char id_sha[65]; /* SHA-256 of the cookie value: a dump of memory shows no live session */
    char name[128];
    const struct approver *approver;
    uint64_t expires_ms;
};

static struct {
    pthread_once_t once;
    unsigned char key[32]; /* CSRF HMAC key, made once per run */
    bool key_ok;
    pthread_mutex_t lock;
    struct session sessions[MAX_SESSIONS];
} pg = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static void make_key(void)
{
    pg.key_ok = gate_random_bytes(pg.key, sizeof(pg.key)) == 0;
}

/* hex(HMAC-SHA256(key, kind "|" a "|" b)) into out[65]; false if no key could be made. */
static bool csrf_token(const char *kind, const char *a, const char *b, char out[65])
{
    pthread_once(&pg.once, make_key);
    if (!pg.key_ok) return false;
    struct gate_buf msg = {0};
    unsigned char mac[32];
    unsigned len = 0;
    bool ok = gate_buf_printf(&msg, "%s|%s|%s", kind, a, b ? b : "") == 0 &&
              HMAC(EVP_sha256(), pg.key, sizeof(pg.key), (unsigned char *)msg.data, msg.len, mac,
                   &len) != NULL;
    gate_buf_free(&msg);
    for (unsigned i = 0; ok && i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return ok;
}

static bool csrf_ok(const char *given, const char *kind, const char *a, const char *b)
{
    char want[65];
    return given && csrf_token(kind, a, b, want) && strlen(given) == 64 &&
           CRYPTO_memcmp(given, want, 64) == 0;
}

/* The signed-in approver of this request's cookie, copied into *out; false if none. */
static bool session_find(const struct http_req *req, struct session *out, char sid[65])
{
    const char *cookie = http_header(req, "Cookie");
    const char *p = cookie;
    while (p && (p = strstr(p, SESSION_COOKIE "="))) {
        if (p == cookie || p[-1] == ' ' || p[-1] == ';') break;
        p++;
    }
    if (!p) return false;
    p += strlen(SESSION_COOKIE "=");
    size_t n = strcspn(p, "; ");
    if (n != 64) return false;
    memcpy(sid, p, 64);
    sid[64] = '\0';
    char sha[65];
    gate_sha256_hex(sid, 64, sha);
    uint64_t now = gate_realtime_ms();
    bool found = false;
    pthread_mutex_lock(&pg.lock);
    for (size_t i = 0; i < MAX_SESSIONS && !found; i++) {
        struct session *s = &pg.sessions[i];
        if (s->expires_ms > now && CRYPTO_memcmp(s->id_sha, sha, 64) == 0) {
            *out = *s;
            found = true;
        }
    }
    pthread_mutex_unlock(&pg.lock);
    return found;
}

/* A new session for an approver: its cookie value in sid (64 hex), or false if the table is full
 * of live sessions. */
static bool session_new(const struct principal *who, char sid[65])
{
    unsigned char raw[32];
    if (gate_random_bytes(raw, sizeof(raw)) < 0) return false;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(sid + 2 * i, 3, "%02x", raw[i]);
    uint64_t now = gate_realtime_ms();
    bool ok = false;
    pthread_mutex_lock(&pg.lock);
    for (size_t i = 0; i < MAX_SESSIONS && !ok; i++) {
        struct session *s = &pg.sessions[i];
        if (s->expires_ms > now) continue;
        gate_sha256_hex(sid, 64, s->id_sha);
        snprintf(s->name, sizeof(s->name), "%s", who->name);
        s->approver = who->approver;
        s->expires_ms = now + SESSION_TTL_MS;
        ok = true;
    }
    pthread_mutex_unlock(&pg.lock);
    return ok;
}

static void session_end(const char *sid)
{
    char sha[65];
    gate_sha256_hex(sid, 64, sha);
    pthread_mutex_lock(&pg.lock);
    for (size_t i = 0; i < MAX_SESSIONS; i++)
        if (CRYPTO_memcmp(pg.sessions[i].id_sha, sha, 64) == 0)
            memset(&pg.sessions[i], 0, sizeof(pg.sessions[i]));
    pthread_mutex_unlock(&pg.lock);
}

static void set_cookie(struct gw *gw, struct http_resp *resp, const char *sid, bool clear)
{
    char v[256];
    /* Secure everywhere but a loopback gateway browsed over plain http; a loopback gateway
     * behind a TLS proxy (approval.public_url https://...) gets it too. */
    bool plain = gw_listen_loopback(gw->opt.listen) &&
                 !(gw->public_url && !strncasecmp(gw->public_url, "https://", 8));
    snprintf(v, sizeof(v), "%s=%s; Path=/; Max-Age=%llu; HttpOnly; SameSite=Strict%s",
             SESSION_COOKIE, clear ? "" : sid, clear ? 0ull : SESSION_TTL_MS / 1000,
             plain ? "" : "; Secure");
    http_add_header(resp, "Set-Cookie", v);
}

/* ---- forms ------------------------------------------------------------------------------------
 */
static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The decoded value of key in an application/x-www-form-urlencoded body (malloc'd), or NULL. */
static char *form_get(const struct http_req *req, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = req->body; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
        const char *v = p + klen + 1;
        size_t n = strcspn(v, "&");
        char *out = malloc(n + 1), *o = out;
        if (!out) return NULL;
        for (size_t i = 0; i < n; i++) {
            if (v[i] == '+') {
                *o++ = ' ';
            } else if (v[i] == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
                *o++ = (char)(hexval(v[i + 1]) * 16 + hexval(v[i + 2]));
                i += 2;
            } else {
                *o++ = v[i];
            }
        }
        *o = '\0';
        if (strlen(out) != (size_t)(o - out)) { /* a NUL byte: no field of ours holds one */
            free(out);
            return NULL;
        }
        return out;
    }
    return NULL;
}

static bool form_post(const struct http_req *req)
{
    const char *ct = req->content_type;
    const char *want = "application/x-www-form-urlencoded";
    return ct && strncasecmp(ct, want, strlen(want)) == 0 &&
           (ct[strlen(want)] == '\0' || ct[strlen(want)] == ';');
}

/* ---- responses --------------------------------------------------------------------------------
 */
static void page_headers(struct http_resp *resp)
{
    http_add_header(resp, "Content-Security-Policy",
                    "default-src 'none'; style-src 'self'; form-action 'self'; "
                    "frame-ancestors 'none'; base-uri 'none'");
    http_add_header(resp, "Referrer-Policy", "no-referrer");
    http_add_header(resp, "X-Frame-Options", "DENY");
    http_add_header(resp, "X-Content-Type-Options", "nosniff");
}

static void page_send(struct http_resp *resp, int status, struct gate_buf *html)
{
    page_headers(resp);
    http_add_header(resp, "Cache-Control", "no-store"); /* it may show a token */
    resp->status = status;
    resp->content_type = "text/html; charset=utf-8";
    gate_buf_free(&resp->text);
    resp->text = *html;
    memset(html, 0, sizeof(*html));
}

static void page_error(struct http_resp *resp, const struct gate_error *err)
{
    struct gate_buf b = {0};
    page_begin(&b, "Cannot show this approval");
    page_error_body(&b, gate_code_str(err->code), err->msg);
    page_end(&b);
    page_send(resp, gate_code_http(err->code), &b);
}

static void page_fail(struct http_resp *resp, enum gate_code code, const char *msg)
{
    struct gate_error err = {0};
    gate_err(&err, code, "%s", msg);
    page_error(resp, &err);
}

void route_page_css(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    (void)gw, (void)req;
    page_headers(resp);
    resp->status = 200;
    resp->content_type = "text/css; charset=utf-8";
    gate_buf_append(&resp->text, page_css, strlen(page_css));
    http_add_header(resp, "Cache-Control", "max-age=3600");
}

/* ---- one call ---------------------------------------------------------------------------------
 */
struct who {
    bool signed_in;
    struct session s;
    char sid[65];
    char bearer[128]; /* "Bearer gdt_..." for a decision token */
};

static bool approver_may(const void *ctx, const char *tool)
{
    return agents_approver_may(ctx, tool);
}

static struct approval_auth auth_of(const struct who *w)
{
    if (w->signed_in)
        return (struct approval_auth){
            .approver = w->s.name, .may = approver_may, .may_ctx = w->s.approver};
    return (struct approval_auth){.bearer = w->bearer};
}

/* Who is asking: a session, else the decision token t (from the query or the form). */
static int who_of(const struct http_req *req, const char *token, struct who *w,
                  struct gate_error *err)
{
    memset(w, 0, sizeof(*w));
    if (token && *token) {
        if (strlen(token) > 100 || strncmp(token, "gdt_", 4) != 0)
            return gate_err(err, GATE_E_UNAUTHORIZED, "this link's decision token is not valid");
        snprintf(w->bearer, sizeof(w->bearer), "Bearer %s", token);
        return 0;
    }
    w->signed_in = session_find(req, &w->s, w->sid);
    if (!w->signed_in)
        return gate_err(err, GATE_E_UNAUTHORIZED,
                        "open the link from the approval message, or sign in at /approvals");
    return 0;
}

/* The policy facts the page shows beside the call (the current policy of the tool). */
static void policy_facts(struct gw *gw, const char *tool, struct page_policy *pp)
{
    struct policy_set *set = call_engine_policies(gw->engine);
    const struct policy *p = set ? policy_set_find(set, tool) : NULL;
    memset(pp, 0, sizeof(*pp));
    if (p) {
        snprintf(pp->description, sizeof(pp->description), "%s",
                 p->description ? p->description : "");
        pp->isolation = policy_isolation_name(p->isolation);
        pp->reversible = p->reversible ? "yes" : "no";
        pp->known = true;
    }
    if (set) policy_set_unref(set);
}

static void show_call(struct gw *gw, struct http_resp *resp, const char *call_id,
                      const struct who *w, const char *token, const char *notice, int status)
{
    struct gate_error err = {0};
    struct approval *a = call_engine_approval(gw->engine);
    struct approval_auth auth = auth_of(w);
    json_t *rec = NULL;
    if (!a) {
        page_fail(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
        return;
    }
    if (approval_view(a, call_id, &auth, &rec, &err) < 0) {
        page_error(resp, &err);
        return;
    }
    struct page_policy pp;
    policy_facts(gw, json_string_value(json_object_get(rec, "tool")), &pp);
    struct page_form form = {.token = token};
    if (!csrf_token(token ? "t" : "s", token ? call_id : w->sid, token ? token : NULL, form.csrf)) {
        json_decref(rec);
        page_fail(resp, GATE_E_INTERNAL, "no CSRF key");
        return;
    }
    form.signed_in_as = w->signed_in ? w->s.name : NULL;
    struct gate_buf b = {0};
    page_begin(&b, "Approve a tool call");
    page_call(&b, rec, &pp, &form, notice);
    page_end(&b);
    json_decref(rec);
    page_send(resp, status, &b);
}

void route_page_call(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    struct who w;
    const char *t = http_query(req, "t");
    if (who_of(req, t, &w, &err) < 0)
        page_error(resp, &err);
    else
        show_call(gw, resp, req->params[0], &w, t, NULL, 200);
}

/* The JSON body approval_decide takes, from the form. */
static json_t *decision_body(const struct http_req *req, bool with_name)
{
    autofree char *decision = form_get(req, "decision");
    autofree char *reason = form_get(req, "reason");
    autofree char *name = with_name ? form_get(req, "name") : NULL;
    autofree char *args = form_get(req, "args_sha256");
    json_t *body = json_object();
    if (decision) json_object_set_new(body, "decision", json_string(decision));
    if (args) json_object_set_new(body, "args_sha256", json_string(args));
    if (reason && *reason) json_object_set_new(body, "reason", json_string(reason));
    if (name && *name) json_object_set_new(body, "approver", json_string(name));
    return body;
}

void route_page_decide(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    struct approval *a = call_engine_approval(gw->engine);
    const char *call_id = req->params[0];
    if (!form_post(req)) {
        page_fail(resp, GATE_E_UNSUPPORTED_MEDIA_TYPE, "the decision is an HTML form post");
        return;
    }
    autofree char *t = form_get(req, "t");
    autofree char *csrf = form_get(req, "csrf");
    struct who w;
    if (who_of(req, t, &w, &err) < 0) {
        page_error(resp, &err);
        return;
    }
    if (!(t ? csrf_ok(csrf, "t", call_id, t) : csrf_ok(csrf, "s", w.sid, NULL))) {
        page_fail(resp, GATE_E_FORBIDDEN,
                  "this form did not come from the approval page (no valid CSRF token)");
        return;
    }
    if (!a) {
        page_fail(resp, GATE_E_UNAVAILABLE, "the approval queue is not open");
        return;
    }
    json_t *body = decision_body(req, !w.signed_in), *out = NULL;
    struct approval_auth auth = auth_of(&w);
    int rc = approval_decide(a, call_id, &auth, body, &out, &err);
    json_decref(body);
    json_decref(out);
    if (rc < 0 && err.code != GATE_E_ALREADY_DECIDED && err.code != GATE_E_APPROVAL_EXPIRED &&
        err.code != GATE_E_DECISION_MISMATCH) {
        page_error(resp, &err);
        return;
    }
    /* Decided now, or earlier by someone else: either way the page shows the outcome. */
    show_call(gw, resp, call_id, &w, t, rc < 0 ? err.msg : NULL,
              rc < 0 ? gate_code_http(err.code) : 200);
}

/* ---- the queue ------------------------------------------------------------------------------- */
void route_page_queue(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct who w = {0};
    struct gate_buf b = {0};
    w.signed_in = session_find(req, &w.s, w.sid);
    if (!w.signed_in) {
        page_begin(&b, "Sign in");
        page_signin(&b, NULL);
        page_end(&b);
        page_send(resp, 200, &b);
        return;
    }
    struct gate_error err = {0};
    struct approval *a = call_engine_approval(gw->engine);
    struct approval_auth auth = auth_of(&w);
    const char *status = http_query(req, "status");
    struct approval_query q = {.status = status && *status ? status : "pending",
                               .limit = PAGE_SIZE,
                               .cursor = http_query(req, "cursor")};
    json_t *out = NULL;
    if (!a || approval_list(a, &auth, &q, &out, &err) < 0) {
        if (!a) gate_err(&err, GATE_E_UNAVAILABLE, "the approval queue is not open");
        page_error(resp, &err);
        return;
    }
    struct page_form form = {.signed_in_as = w.s.name};
    if (!csrf_token("s", w.sid, NULL, form.csrf)) {
        json_decref(out);
        page_fail(resp, GATE_E_INTERNAL, "no CSRF key");
        return;
    }
    page_begin(&b, "Approvals");
    page_queue(&b, out, q.status, &form);
    page_end(&b);
    json_decref(out);
    page_send(resp, 200, &b);
}

void route_page_signin(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct gate_error err = {0};
    struct principal who = {0};
    autofree char *token = form_post(req) ? form_get(req, "token") : NULL;
    char bearer[600], sid[65];
    snprintf(bearer, sizeof(bearer), "Bearer %s", token ? token : "");
    int rc = token && strlen(token) < 512 ? agents_authenticate(gw->agents, bearer, &who, &err)
                                          : gate_err(&err, GATE_E_UNAUTHORIZED, NULL);
    explicit_bzero(bearer, sizeof(bearer));
    if (token) explicit_bzero(token, strlen(token));
    struct gate_buf b = {0};
    if (rc < 0 || who.kind != PRINCIPAL_APPROVER) {
        page_begin(&b, "Sign in");
        page_signin(&b, "That is not an approver's token.");
        page_end(&b);
        page_send(resp, 401, &b);
        return;
    }
    if (!session_new(&who, sid)) {
        page_fail(resp, GATE_E_UNAVAILABLE, "too many approvers are signed in; try later");
        return;
    }
    gate_log("info", "approver.signed_in", "approver %s signed in to the approval page", who.name);
    set_cookie(gw, resp, sid, false);
    page_headers(resp);
    resp->status = 303; /* see the queue with a GET, so a reload does not post the token again */
    http_add_header(resp, "Location", "/approvals");
}

void route_page_signout(struct gw *gw, const struct http_req *req, struct http_resp *resp)
{
    struct who w = {0};
    autofree char *csrf = form_post(req) ? form_get(req, "csrf") : NULL;
    w.signed_in = session_find(req, &w.s, w.sid);
    if (w.signed_in && csrf_ok(csrf, "s", w.sid, NULL)) session_end(w.sid);
    set_cookie(gw, resp, "", true);
    page_headers(resp);
    resp->status = 303;
    http_add_header(resp, "Location", "/approvals");
}
