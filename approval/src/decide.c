/* decide.c: authenticated decisions, bound to exactly what the approver was shown.
 *
 * Credentials: an approver's bearer token from the config (every configured token is
 * compared, in constant time, so neither which approver matched nor how much of a token
 * was right leaks through timing), or the single-use decision token from the webhook,
 * of which the store keeps only the SHA-256. The decision is refused unless it names the
 * same args_sha256 (and, when given, tool and policy_sha256) as the held call.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "approval_internal.h"

#define MAX_REASON 2048
#define MAX_APPROVER 128

struct credential {
    const char *approver; /* approver name for an approver token; NULL for a decision token */
    char token_call[40];  /* the call a decision token belongs to */
};

static const char *bearer(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

/* 0: *c filled; -1: err (401 or a store error). */
static int authenticate(struct approval *a, const struct approval_auth *auth,
                        bool allow_decision_token, struct credential *c, struct gate_error *err)
{
    memset(c, 0, sizeof(*c));
    if (auth->approver) {
        c->approver = auth->approver;
        return 0;
    }
    const char *token = bearer(auth->bearer);
    if (!allow_decision_token)
        return gate_err(err, GATE_E_UNAUTHORIZED, "an approver's bearer token is required");
    if (!token || strncmp(token, "gdt_", 4) != 0)
        return gate_err(err, GATE_E_UNAUTHORIZED,
                        "an approver's bearer token or a decision token is required");
    /* Looking the token up by its hash leaks nothing useful: the hash is a random 256-bit
     * value's, and only an exact match is accepted. */
    char sha[65];
    gate_sha256_hex(token, strlen(token), sha);
    int found = a->ops->find_by_token(a->store, sha, c->token_call, err);
    if (found < 0) return -1;
    if (found == 0) return gate_err(err, GATE_E_UNAUTHORIZED, "unknown decision token");
    return 0;
}

static bool may_see(const struct approval_auth *auth, const char *tool)
{
    return !auth->approver || !auth->may || auth->may(auth->may_ctx, tool);
}

struct decision {
    bool approve;
    const char *approver, *reason, *args_sha256, *tool, *policy_sha256;
};

static int opt_string(const json_t *body, const char *key, size_t max, const char **out,
                      struct gate_error *err)
{
    const json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || json_string_length(v) > max)
        return gate_err(err, GATE_E_BAD_REQUEST, "'%s' must be a string of at most %zu bytes", key,
                        max);
    *out = json_string_value(v);
    return 0;
}

static int parse_decision(const json_t *body, struct decision *d, struct gate_error *err)
{
    const char *decision = NULL;
    if (opt_string(body, "decision", 16, &decision, err) < 0 ||
        opt_string(body, "approver", MAX_APPROVER, &d->approver, err) < 0 ||
        opt_string(body, "reason", MAX_REASON, &d->reason, err) < 0 ||
        opt_string(body, "args_sha256", 64, &d->args_sha256, err) < 0 ||
        opt_string(body, "tool", 256, &d->tool, err) < 0 ||
        opt_string(body, "policy_sha256", 64, &d->policy_sha256, err) < 0)
        return -1;
    if (!decision || (strcmp(decision, "approve") != 0 && strcmp(decision, "deny") != 0))
        return gate_err(err, GATE_E_BAD_REQUEST, "'decision' must be \"approve\" or \"deny\"");
    d->approve = strcmp(decision, "approve") == 0;
    if (!d->args_sha256)
        return gate_err(err, GATE_E_BAD_REQUEST,
                        "'args_sha256' (of the arguments you were "
                        "shown) is required");
    static const char *known[] = {"decision",    "approver", "reason",
                                  "args_sha256", "tool",     "policy_sha256"};
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) return gate_err(err, GATE_E_BAD_REQUEST, "unknown field '%s'", key);
    }
    return 0;
}

/* Who decides: the approver token's name (a different name in the body is refused), or for
 * a decision token "decision token", with the name typed in the body if one was given. */
static int decider(const struct credential *c, const struct decision *d, const char *call_id,
                   char *who, size_t who_len, struct gate_error *err)
{
    if (c->approver) {
        if (d->approver && strcmp(d->approver, c->approver) != 0)
            return gate_err(err, GATE_E_UNAUTHORIZED, "the token does not belong to approver '%s'",
                            d->approver);
        snprintf(who, who_len, "%s", c->approver);
        return 0;
    }
    if (strcmp(c->token_call, call_id) != 0)
        return gate_err(err, GATE_E_DECISION_MISMATCH,
                        "the decision token belongs to another call");
    if (d->approver && *d->approver)
        snprintf(who, who_len, "%s (decision token)", d->approver);
    else
        snprintf(who, who_len, "decision token");
    return 0;
}

static int expire_now(struct approval *a, const struct approval_row *r, struct gate_error *err)
{
    char at[32];
    gate_rfc3339((uint64_t)r->expires_ms, at);
    json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "call_id", r->call_id, "tool", r->tool,
                          "args_sha256", r->args_sha256, "expired_at", at);
    int rc =
        approval_transition(a, r->call_id, ST_PENDING, ST_EXPIRED, NULL, "call.expired", f, err);
    json_decref(f);
    if (rc < 0) return -1;
    return gate_err(err, GATE_E_APPROVAL_EXPIRED, "the approval window closed at %s", at);
}

/* Refuse anything but a pending call, still in its window, shown with these hashes. */
static int check_decidable(struct approval *a, const struct approval_row *r,
                           const struct decision *d, struct gate_error *err)
{
    if (strcmp(r->state, ST_EXPIRED) == 0)
        return gate_err(err, GATE_E_APPROVAL_EXPIRED, "call %s has expired", r->call_id);
    if (strcmp(r->state, ST_PENDING) != 0)
        return gate_err(err, GATE_E_ALREADY_DECIDED, "call %s is already %s", r->call_id, r->state);
    if ((int64_t)gate_realtime_ms() >= r->expires_ms) return expire_now(a, r, err);
    if (strcmp(d->args_sha256, r->args_sha256) != 0)
        return gate_err(err, GATE_E_DECISION_MISMATCH,
                        "args_sha256 %s is not that of the held "
                        "arguments (%s)",
                        d->args_sha256, r->args_sha256);
    if (d->tool && strcmp(d->tool, r->tool) != 0)
        return gate_err(err, GATE_E_DECISION_MISMATCH, "the held call is for tool '%s'", r->tool);
    if (d->policy_sha256 && strcmp(d->policy_sha256, r->policy_sha256) != 0)
        return gate_err(err, GATE_E_DECISION_MISMATCH,
                        "policy_sha256 is not that of the "
                        "held call's policy (%s)",
                        r->policy_sha256);
    return 0;
}

static int commit_decision(struct approval *a, const struct approval_row *r,
                           const struct decision *d, const char *who, const char *auth,
                           struct gate_error *err)
{
    const char *to = d->approve ? ST_APPROVED : ST_DENIED;
    struct store_update up = {.decided_by = who,
                              .decision_auth = auth,
                              .reason = d->reason,
                              .decided_ms = (int64_t)gate_realtime_ms()};
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s,s:s}", "call_id", r->call_id, "tool", r->tool,
                          "approver", who, "auth", auth, "reason", d->reason, "args_sha256",
                          r->args_sha256, "policy_sha256", r->policy_sha256);
    int rc = approval_transition(a, r->call_id, ST_PENDING, to, &up,
                                 d->approve ? "call.approved" : "call.denied", f, err);
    json_decref(f);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    /* Lost the race: someone else decided (or the timer expired it) in between. */
    struct approval_row now = {0};
    int found = a->ops->get(a->store, r->call_id, &now, err);
    bool expired = found == 1 && strcmp(now.state, ST_EXPIRED) == 0;
    approval_row_clear(&now);
    if (found < 0) return -1;
    return expired
               ? gate_err(err, GATE_E_APPROVAL_EXPIRED, "call %s has expired", r->call_id)
               : gate_err(err, GATE_E_ALREADY_DECIDED, "call %s was already decided", r->call_id);
}

int approval_decide(struct approval *a, const char *call_id, const struct approval_auth *auth,
                    const json_t *body, json_t **response, struct gate_error *err)
{
    struct credential c;
    struct decision d = {0};
    char who[MAX_APPROVER + 32];
    *response = NULL;
    if (authenticate(a, auth, true, &c, err) < 0 || parse_decision(body, &d, err) < 0 ||
        decider(&c, &d, call_id, who, sizeof(who), err) < 0)
        return -1;
    struct approval_row r = {0};
    int found = a->ops->get(a->store, call_id, &r, err);
    if (found == 1 && !may_see(auth, r.tool)) found = 0; /* as if it did not exist */
    if (found == 0) gate_err(err, GATE_E_CALL_NOT_FOUND, "no held call %s", call_id);
    int rc = found == 1 ? check_decidable(a, &r, &d, err) : -1;
    if (rc == 0)
        rc = commit_decision(a, &r, &d, who, c.approver ? "approver_token" : "decision_token", err);
    if (rc == 0 && d.approve && approval_start_run(a, call_id, err) < 0)
        gate_log("error", "approval.run", "call %s: %s (it runs at the next start)", call_id,
                 err->msg);
    if (rc == 0) {
        struct approval_row after = {0};
        struct gate_error gerr = {0};
        if (a->ops->get(a->store, call_id, &after, &gerr) == 1)
            *response = approval_row_json(&after, false);
        approval_row_clear(&after);
        if (!*response)
            *response = json_pack("{s:s,s:s}", "call_id", call_id, "status",
                                  d.approve ? ST_APPROVED : ST_DENIED);
        /* The decision itself is what was asked: say it even if the run already moved on. */
        json_object_set_new(*response, "decision", json_string(d.approve ? "approve" : "deny"));
    }
    approval_row_clear(&r);
    return rc;
}

int approval_view(struct approval *a, const char *call_id, const struct approval_auth *auth,
                  json_t **out, struct gate_error *err)
{
    struct credential c;
    *out = NULL;
    if (authenticate(a, auth, true, &c, err) < 0) return -1;
    if (!c.approver && strcmp(c.token_call, call_id) != 0)
        return gate_err(err, GATE_E_DECISION_MISMATCH,
                        "the decision token belongs to another call");
    struct approval_row r = {0};
    int found = a->ops->get(a->store, call_id, &r, err);
    if (found == 1 && !may_see(auth, r.tool)) found = 0; /* as if it did not exist */
    if (found == 1) *out = approval_row_json(&r, true);
    approval_row_clear(&r);
    if (found == 0) return gate_err(err, GATE_E_CALL_NOT_FOUND, "no held call %s", call_id);
    if (found < 0) return -1;
    return *out ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

static int state_filter(const char *status, const char **state, struct gate_error *err)
{
    static const char *states[] = {ST_PENDING,   ST_APPROVED, ST_DENIED,   ST_EXPIRED,
                                   ST_WITHDRAWN, ST_STARTED,  ST_FINISHED, ST_INTERRUPTED};
    if (!status || strcmp(status, "pending") == 0) {
        *state = ST_PENDING;
        return 0;
    }
    if (strcmp(status, "all") == 0) {
        *state = NULL;
        return 0;
    }
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(status, states[i]) == 0) {
            *state = states[i];
            return 0;
        }
    return gate_err(err, GATE_E_BAD_REQUEST,
                    "status must be pending, all, or a state name "
                    "(approved, denied, expired, started, finished, interrupted)");
}

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

/* A cursor is "<created_ms>.<call_id>" of the last row of the previous page. */
static int parse_cursor(const char *cursor, struct store_page *page, char *id, size_t id_len,
                        struct gate_error *err)
{
    if (!cursor) return 0;
    char *end = NULL;
    long long ms = strtoll(cursor, &end, 10);
    if (end == cursor || *end != '.' || strlen(end + 1) >= id_len || strlen(end + 1) == 0)
        return gate_err(err, GATE_E_BAD_REQUEST, "cursor must be a next_cursor value");
    page->after_created_ms = ms;
    snprintf(id, id_len, "%s", end + 1);
    page->after_call_id = id;
    return 0;
}

int approval_list(struct approval *a, const struct approval_auth *auth,
                  const struct approval_query *q, json_t **out, struct gate_error *err)
{
    struct credential c;
    const char *state = NULL;
    if (authenticate(a, auth, false, &c, err) < 0) return -1;
    if (q->call_id) {
        struct approval_row r = {0};
        int found = a->ops->get(a->store, q->call_id, &r, err);
        if (found == 1 && !may_see(auth, r.tool)) found = 0;
        if (found == 1) *out = json_pack("{s:[o]}", "approvals", approval_row_json(&r, true));
        approval_row_clear(&r);
        if (found == 0) return gate_err(err, GATE_E_CALL_NOT_FOUND, "no held call %s", q->call_id);
        return found < 0 ? -1 : 0;
    }
    if (state_filter(q->status, &state, err) < 0) return -1;
    if (q->limit > PAGE_MAX)
        return gate_err(err, GATE_E_BAD_REQUEST, "limit must be 1 to %d", PAGE_MAX);
    struct store_page page = {.after_created_ms = INT64_MIN,
                              .limit = q->limit ? q->limit : PAGE_DEFAULT};
    char after_id[64];
    if (parse_cursor(q->cursor, &page, after_id, sizeof(after_id), err) < 0) return -1;
    struct approval_row *rows = NULL;
    size_t n = 0;
    if (a->ops->list_by_state(a->store, state, 0, &page, &rows, &n, err) < 0) return -1;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        if (may_see(auth, rows[i].tool))
            json_array_append_new(arr, approval_row_json(&rows[i], true));
    *out = json_pack("{s:o}", "approvals", arr);
    if (*out && n == page.limit) /* a full page: there may be more */
        json_object_set_new(
            *out, "next_cursor",
            json_sprintf("%lld.%s", (long long)rows[n - 1].created_ms, rows[n - 1].call_id));
    approval_rows_free(rows, n);
    return *out ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}
