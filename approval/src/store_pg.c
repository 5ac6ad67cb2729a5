/* store_pg.c: the approval store shared by several gateways, in PostgreSQL (libpq).
 *
 * The same operations as store_sqlite.c, with the same meaning: every state change is a
 * compare-and-set ("UPDATE ... WHERE state = from") in a transaction together with the
 * engine's hook (the audit record), committed only if the hook succeeded. Under READ
 * COMMITTED, two gateways racing on one row serialise on its row lock, and the second
 * re-checks `state = from` against the committed row: it changes nothing and runs no hook.
 * So a call is approved, expired, started or interrupted exactly once, by one gateway,
 * however many gateways share the database.
 */
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"

#define COLUMNS                                                                                    \
    "call_id, tool, policy_sha256, args_json, args_sha256, agent, session, blast_radius,"          \
    " webhook_url, state, token_sha256, decided_by, decision_auth, reason, result_json,"           \
    " created_ms, expires_ms, decided_ms, started_ms, finished_ms, webhook_delivered,"             \
    " webhook_attempts"

/* Decimal text of v into buf (24 bytes), or NULL (SQL NULL) when v is 0 and zero_null. */
static const char *num(char buf[24], int64_t v, bool zero_null)
{
    if (zero_null && v == 0) return NULL;
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

/* Give c back to its pool. */
static void give(struct pg *c)
{
    struct pg *p = c->owner;
    pthread_mutex_lock(&p->lock);
    p->free[p->nfree++] = c;
    pthread_cond_signal(&p->pool_free);
    pthread_mutex_unlock(&p->lock);
}

/* A free connection of the pool for one statement or transaction (waiting for one), as a view
 * whose conn is that connection; give it back with give. NULL with err filled if it cannot be
 * made usable. */
static struct pg *take(struct pg *p, struct gate_error *err)
{
    pthread_mutex_lock(&p->lock);
    while (p->nfree == 0)
        pthread_cond_wait(&p->pool_free, &p->lock);
    struct pg *c = p->free[--p->nfree];
    pthread_mutex_unlock(&p->lock);
    if (pg_ready(c, err) == 0) return c;
    give(c);
    return NULL;
}

/* A statement that failed because the connection was lost (the server restarted since we
 * last used it) is retried once on a new connection: only for BEGIN and for reads, which
 * have changed nothing. */
static bool reconnected(struct pg *c, const struct gate_error *err)
{
    if (err->code != GATE_E_DATABASE_UNAVAILABLE) return false;
    PQreset(c->conn);
    return PQstatus(c->conn) == CONNECTION_OK;
}

static struct pg *begin_txn(struct pg *p, struct gate_error *err)
{
    struct pg *c = take(p, err);
    if (!c) return NULL;
    if (pg_simple(c, "BEGIN", err) < 0 &&
        (!reconnected(c, err) || pg_simple(c, "BEGIN", err) < 0)) {
        give(c);
        return NULL;
    }
    return c;
}

/* Finish c's transaction whose body returned rc (1 changed, 0 unchanged, -1 error). */
static int finish_txn(struct pg *c, int rc, struct gate_error *err)
{
    if (rc == 1 && pg_simple(c, "COMMIT", err) < 0) rc = -1;
    if (rc != 1) pg_simple(c, "ROLLBACK", NULL);
    give(c);
    return rc;
}

/* A write in the open transaction: rows changed, or -1. */
static int write_rows(struct pg *p, const char *sql, int n, const char *const *vals,
                      struct gate_error *err, const char *what)
{
    PGresult *res = pg_exec(p, sql, n, vals, err, what);
    if (!res) return -1;
    int rows = atoi(PQcmdTuples(res));
    PQclear(res);
    return rows;
}

/* A write that tells every gateway's listener which call it changed, in the same statement (one
 * round trip): the notification is delivered on commit only, so a long poll elsewhere wakes to
 * the committed state. write_rows counts the rows the write changed. */
#define NOTIFYING(write, ...)                                                                      \
    "WITH w AS (" write " RETURNING call_id)" __VA_ARGS__ " SELECT pg_notify('" PG_CHANNEL         \
    "', call_id) FROM w"

/* In tx's transaction: 0 if fewer than max calls of agent are pending, else -1 (TOO_MANY_CALLS
 * or another error). The transaction lock on the agent's holds (released at commit or
 * rollback) serialises this count and the insert after it with every other gateway's for the
 * same agent, so two holds racing on two gateways cannot both take the last place. The count is
 * its own statement: under READ COMMITTED it then sees every hold committed before the lock was
 * granted (a statement's snapshot is taken when it starts). */
static int check_pending(struct pg *tx, const char *agent, unsigned max, struct gate_error *err)
{
    const char *vals[] = {agent};
    PGresult *res = pg_exec(tx,
                            "SELECT pg_advisory_xact_lock(hashtextextended("
                            "'gatehouse.pending:' || COALESCE($1, ''), 0))",
                            1, vals, err, "lock the agent's holds");
    if (!res) return -1;
    PQclear(res);
    res = pg_exec(tx,
                  "SELECT count(*) FROM calls WHERE state='" ST_PENDING "'"
                  " AND agent IS NOT DISTINCT FROM $1",
                  1, vals, err, "count held calls");
    if (!res) return -1;
    size_t n = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n < max ? 0
                   : gate_err(err, GATE_E_TOO_MANY_CALLS, PENDING_FULL_FMT, agent ? agent : "", n);
}

static int pg_insert_held(void *h, const struct approval_row *r, unsigned max_pending,
                          store_hook hook, void *ctx, struct gate_error *err)
{
    struct pg *p = h;
    char c[24], e[24];
    const char *vals[] = {r->call_id,
                          r->tool,
                          r->policy_sha256,
                          r->args_json,
                          r->args_sha256,
                          r->agent,
                          r->session,
                          r->blast_radius,
                          r->webhook_url,
                          r->token_sha256,
                          num(c, r->created_ms, false),
                          num(e, r->expires_ms, false),
                          p->node};
    struct pg *tx = begin_txn(p, err);
    if (!tx) return -1;
    if (max_pending && check_pending(tx, r->agent, max_pending, err) < 0)
        return finish_txn(tx, -1, err);
    /* The row, its first decision token and the notification: one statement. */
    int rc = write_rows(tx,
                        NOTIFYING("INSERT INTO calls (call_id, tool, policy_sha256, args_json,"
                                  " args_sha256, agent, session, blast_radius, webhook_url, state,"
                                  " token_sha256, created_ms, expires_ms, webhook_node,"
                                  " webhook_lease_ms)"
                                  " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'" ST_PENDING
                                  "',$10,$11::bigint, $12::bigint, $13, " PG_NOW_MS
                                  " + " PG_LEASE_MS_STR ")",
                                  ", t AS (INSERT INTO decision_tokens (token_sha256, call_id)"
                                  " SELECT $10, call_id FROM w WHERE $10::text IS NOT NULL)"),
                        13, vals, err, "insert");
    if (rc == 1 && hook && hook(ctx, err) < 0)
        rc = -1;
    else if (rc == 0)
        rc = gate_err(err, GATE_E_INTERNAL, "approval store: insert changed nothing");
    return finish_txn(tx, rc, err);
}

static int pg_cas_state(void *h, const char *call_id, const char *from, const char *to,
                        const struct store_update *u, store_hook hook, void *ctx,
                        struct gate_error *err)
{
    static const struct store_update none = {0};
    struct pg *p = h;
    if (!u) u = &none;
    char d[24], s[24], f[24];
    const char *vals[] = {to,
                          u->decided_by,
                          u->decision_auth,
                          u->reason,
                          u->result_json,
                          num(d, u->decided_ms, true),
                          num(s, u->started_ms, true),
                          num(f, u->finished_ms, true),
                          call_id,
                          from,
                          p->node,
                          u->followup ? "t" : "f"};
    struct pg *tx = begin_txn(p, err);
    if (!tx) return -1;
    int rc = write_rows(
        tx,
        NOTIFYING(
            "UPDATE calls SET state=$1::text,"
            " decided_by=COALESCE($2, decided_by), decision_auth=COALESCE($3, decision_auth),"
            " reason=COALESCE($4, reason), result_json=COALESCE($5, result_json),"
            " decided_ms=COALESCE($6::bigint, decided_ms), started_ms=COALESCE($7::bigint, "
            "started_ms),"
            " finished_ms=COALESCE($8::bigint, finished_ms),"
            /* The gateway that approves or starts a call holds its run lease (renewed by its
             * heartbeat): if it dies, another starts the approved call, or interrupts the started.
             */
            " run_node=CASE WHEN $1::text IN ('" ST_APPROVED "', '" ST_STARTED "') THEN $11"
            "  ELSE run_node END,"
            " run_lease_ms=CASE WHEN $1::text IN ('" ST_APPROVED "', '" ST_STARTED
            "') THEN " PG_NOW_MS " + " PG_LEASE_MS_STR " ELSE run_lease_ms END,"
            /* The deciding gateway owes the chat follow-up: due from this commit on. */
            " followup_node=CASE WHEN $12::boolean THEN $11 ELSE followup_node END,"
            " followup_lease_ms=CASE WHEN $12::boolean THEN " PG_NOW_MS " + " PG_LEASE_MS_STR
            "  ELSE followup_lease_ms END"
            " WHERE call_id=$9 AND state=$10::text"
            /* A decision commits only inside the window it was made for. */
            " AND (state<>'" ST_PENDING "' OR $1::text='" ST_EXPIRED "'"
            "      OR $6::bigint IS NULL OR expires_ms > $6::bigint)"
            /* Only a dead run is interrupted: its lease must have run out (checked again here,
             * under the row lock, in case its gateway renewed it since it was listed). */
            " AND NOT ($1::text='" ST_INTERRUPTED "' AND run_lease_ms >= " PG_NOW_MS ")"),
        12, vals, err, "update");
    if (rc == 1 && hook && hook(ctx, err) < 0) rc = -1;
    return finish_txn(tx, rc, err);
}

static char *col_dup(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

static void read_row(PGresult *res, int row, struct approval_row *r)
{
    char **strs[] = {&r->call_id,       &r->tool,   &r->policy_sha256, &r->args_json,
                     &r->args_sha256,   &r->agent,  &r->session,       &r->blast_radius,
                     &r->webhook_url,   &r->state,  &r->token_sha256,  &r->decided_by,
                     &r->decision_auth, &r->reason, &r->result_json};
    memset(r, 0, sizeof(*r));
    int i = 0;
    for (; i < (int)(sizeof(strs) / sizeof(strs[0])); i++)
        *strs[i] = col_dup(res, row, i);
    int64_t *ints[] = {&r->created_ms, &r->expires_ms, &r->decided_ms, &r->started_ms,
                       &r->finished_ms};
    for (int k = 0; k < 5; k++, i++)
        *ints[k] = strtoll(PQgetvalue(res, row, i), NULL, 10); /* "" for NULL: 0 */
    r->webhook_delivered = atoi(PQgetvalue(res, row, i++));
    r->webhook_attempts = atoi(PQgetvalue(res, row, i++));
}

/* One query outside a transaction: the result (caller PQclears) or NULL. */
static PGresult *query(struct pg *p, const char *sql, int n, const char *const *vals,
                       struct gate_error *err, const char *what)
{
    struct pg *c = take(p, err);
    if (!c) return NULL;
    PGresult *res = pg_exec(c, sql, n, vals, err, what);
    if (!res && reconnected(c, err)) res = pg_exec(c, sql, n, vals, err, what);
    give(c);
    return res;
}

static int pg_get(void *h, const char *call_id, struct approval_row *out, struct gate_error *err)
{
    const char *vals[] = {call_id};
    PGresult *res = query(h, "SELECT " COLUMNS " FROM calls WHERE call_id=$1", 1, vals, err, "get");
    if (!res) return -1;
    int found = PQntuples(res) > 0;
    if (found) read_row(res, 0, out);
    PQclear(res);
    return found;
}

static int rows_of(PGresult *res, struct approval_row **rows, size_t *n, struct gate_error *err)
{
    size_t count = (size_t)PQntuples(res);
    *rows = NULL;
    *n = 0;
    if (count == 0) {
        PQclear(res);
        return 0;
    }
    struct approval_row *v = calloc(count, sizeof(*v));
    if (!v) {
        PQclear(res);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        read_row(res, (int)i, &v[i]);
    PQclear(res);
    *rows = v;
    *n = count;
    return 0;
}

static int pg_list_by_state(void *h, const char *state, int64_t expires_before,
                            const struct store_page *page, struct approval_row **rows, size_t *n,
                            struct gate_error *err)
{
    char e[24], a[24], l[24];
    const char *vals[] = {state, num(e, expires_before, false),
                          num(a, page ? page->after_created_ms : INT64_MIN, false),
                          page && page->after_call_id ? page->after_call_id : "",
                          page && page->limit ? num(l, (int64_t)page->limit, false) : NULL};
    *rows = NULL;
    *n = 0;
    PGresult *res = query(h,
                          "SELECT " COLUMNS " FROM calls WHERE ($1::text IS NULL OR state=$1)"
                          " AND ($2::bigint = 0 OR expires_ms <= $2::bigint)"
                          " AND (created_ms > $3::bigint OR (created_ms = $3::bigint"
                          "      AND call_id > $4))"
                          " ORDER BY created_ms, call_id LIMIT $5::bigint",
                          5, vals, err, "list");
    return res ? rows_of(res, rows, n, err) : -1;
}

static int pg_list_orphans(void *h, struct approval_row **rows, size_t *n, struct gate_error *err)
{
    *rows = NULL;
    *n = 0;
    PGresult *res =
        query(h,
              "SELECT " COLUMNS " FROM calls WHERE state IN ('" ST_APPROVED "', '" ST_STARTED
              "') AND run_lease_ms < " PG_NOW_MS " ORDER BY created_ms, call_id",
              0, NULL, err, "list dead runs");
    return res ? rows_of(res, rows, n, err) : -1;
}

static int pg_list_webhook_orphans(void *h, bool followup, struct approval_row **rows, size_t *n,
                                   struct gate_error *err)
{
    char max[24];
    const char *vals[] = {num(max, WEBHOOK_MAX_ATTEMPTS, false)};
    *rows = NULL;
    *n = 0;
    PGresult *res =
        followup
            ? query(h,
                    "SELECT " COLUMNS " FROM calls WHERE followup_node IS NOT NULL"
                    " AND followup_lease_ms < " PG_NOW_MS " ORDER BY created_ms, call_id LIMIT 100",
                    0, NULL, err, "list dead follow-ups")
            : query(h,
                    "SELECT " COLUMNS " FROM calls WHERE state='" ST_PENDING "'"
                    " AND webhook_delivered = 0 AND webhook_url IS NOT NULL"
                    " AND webhook_attempts < $1::int AND webhook_lease_ms < " PG_NOW_MS
                    " ORDER BY created_ms, call_id LIMIT 100",
                    1, vals, err, "list dead deliveries");
    return res ? rows_of(res, rows, n, err) : -1;
}

static int pg_claim_webhook(void *h, const char *call_id, bool followup, struct gate_error *err)
{
    struct pg *p = h;
    const char *vals[] = {call_id, p->node};
    PGresult *res = followup
                        ? query(h,
                                "UPDATE calls SET followup_node=$2, followup_lease_ms=" PG_NOW_MS
                                " + " PG_LEASE_MS_STR " WHERE call_id=$1 AND (followup_node=$2"
                                " OR followup_lease_ms < " PG_NOW_MS ")",
                                2, vals, err, "claim a follow-up")
                        : query(h,
                                "UPDATE calls SET webhook_node=$2, webhook_lease_ms=" PG_NOW_MS
                                " + " PG_LEASE_MS_STR " WHERE call_id=$1 AND (webhook_node IS NULL"
                                " OR webhook_node=$2 OR webhook_lease_ms < " PG_NOW_MS ")",
                                2, vals, err, "claim a delivery");
    if (!res) return -1;
    int claimed = atoi(PQcmdTuples(res)) == 1;
    PQclear(res);
    return claimed;
}

static int pg_followup_done(void *h, const char *call_id, struct gate_error *err)
{
    struct pg *p = h;
    const char *vals[] = {call_id, p->node};
    PGresult *res = query(h,
                          "UPDATE calls SET followup_node=NULL, followup_lease_ms=NULL"
                          " WHERE call_id=$1 AND followup_node=$2",
                          2, vals, err, "follow-up done");
    if (!res) return -1;
    PQclear(res);
    return 0;
}

static int pg_find_by_token(void *h, const char *token_sha256, char call_id[40],
                            struct gate_error *err)
{
    const char *vals[] = {token_sha256};
    PGresult *res = query(h, "SELECT call_id FROM decision_tokens WHERE token_sha256=$1", 1, vals,
                          err, "token lookup");
    if (!res) return -1;
    int found = PQntuples(res) > 0;
    if (found) snprintf(call_id, 40, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return found;
}

static int pg_add_token(void *h, const char *call_id, const char *token_sha256,
                        struct gate_error *err)
{
    struct pg *p = h;
    const char *vals[] = {token_sha256, call_id};
    struct pg *tx = begin_txn(p, err);
    if (!tx) return -1;
    int rc = write_rows(tx, "INSERT INTO decision_tokens (token_sha256, call_id) VALUES ($1,$2)", 2,
                        vals, err, "insert token") == 1
                 ? 1
                 : -1;
    if (rc == 1 && write_rows(tx, "UPDATE calls SET token_sha256=$1 WHERE call_id=$2", 2, vals, err,
                              "latest token") < 0)
        rc = -1;
    return finish_txn(tx, rc, err) < 0 ? -1 : 0;
}

static int pg_record_attempt(void *h, const char *call_id, int attempt, int64_t ts_ms,
                             int http_status, const char *error, struct gate_error *err)
{
    struct pg *p = h;
    char a[24], t[24], s[24];
    const char *vals[] = {call_id, num(a, attempt, false), num(t, ts_ms, false),
                          num(s, http_status, false), error};
    struct pg *tx = begin_txn(p, err);
    if (!tx) return -1;
    int rc = write_rows(tx,
                        "INSERT INTO webhook_attempts (call_id, attempt, ts_ms, http_status, error)"
                        " VALUES ($1,$2::int,$3::bigint,$4::int,$5) ON CONFLICT (call_id, attempt)"
                        " DO UPDATE SET ts_ms=EXCLUDED.ts_ms, http_status=EXCLUDED.http_status,"
                        " error=EXCLUDED.error",
                        5, vals, err, "insert attempt") == 1
                 ? 1
                 : -1;
    if (rc == 1 && write_rows(tx,
                              "UPDATE calls SET webhook_attempts=GREATEST(webhook_attempts,"
                              " $2::int) WHERE call_id=$1",
                              2, vals, err, "attempt count") < 0)
        rc = -1;
    return finish_txn(tx, rc, err) < 0 ? -1 : 0;
}

static int pg_mark_delivered(void *h, const char *call_id, store_hook hook, void *ctx,
                             struct gate_error *err)
{
    struct pg *p = h;
    const char *vals[] = {call_id};
    struct pg *tx = begin_txn(p, err);
    if (!tx) return -1;
    int rc = write_rows(tx,
                        "UPDATE calls SET webhook_delivered=1 WHERE call_id=$1"
                        " AND webhook_delivered=0",
                        1, vals, err, "delivered");
    if (rc == 1 && hook && hook(ctx, err) < 0) rc = -1;
    return finish_txn(tx, rc, err);
}

const struct approval_store_ops approval_store_pg = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .insert_held = pg_insert_held,
    .cas_state = pg_cas_state,
    .get = pg_get,
    .list_by_state = pg_list_by_state,
    .list_orphans = pg_list_orphans,
    .drain_changes = pg_drain_changes,
    .healthy = pg_healthy,
    .list_webhook_orphans = pg_list_webhook_orphans,
    .claim_webhook = pg_claim_webhook,
    .followup_done = pg_followup_done,
    .find_by_token = pg_find_by_token,
    .add_token = pg_add_token,
    .record_attempt = pg_record_attempt,
    .mark_delivered = pg_mark_delivered,
};
