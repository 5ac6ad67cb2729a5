/* store_sqlite.c: the embedded approval store, STATE/approval.db.
 *
 * One connection guarded by one mutex: transitions are serialised, which is what a
 * compare-and-set needs anyway, and a held-call queue is far from SQLite's limits.
 * WAL with synchronous=FULL: a COMMIT returns only once the WAL frame is fsynced, so a
 * committed transition survives a crash or power loss.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "approval_store.h"

struct sq {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS calls ("
    " call_id TEXT PRIMARY KEY, tool TEXT NOT NULL, policy_sha256 TEXT NOT NULL,"
    " args_json TEXT NOT NULL, args_sha256 TEXT NOT NULL, agent TEXT, session TEXT,"
    " blast_radius TEXT, webhook_url TEXT, state TEXT NOT NULL, token_sha256 TEXT,"
    " decided_by TEXT, decision_auth TEXT, reason TEXT, result_json TEXT,"
    " created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, decided_ms INTEGER,"
    " started_ms INTEGER, finished_ms INTEGER,"
    " webhook_delivered INTEGER NOT NULL DEFAULT 0, webhook_attempts INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS calls_state ON calls(state, expires_ms);"
    "CREATE INDEX IF NOT EXISTS calls_token ON calls(token_sha256);"
    "CREATE TABLE IF NOT EXISTS decision_tokens ("
    " token_sha256 TEXT PRIMARY KEY, call_id TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS webhook_attempts ("
    " call_id TEXT NOT NULL, attempt INTEGER NOT NULL, ts_ms INTEGER NOT NULL,"
    " http_status INTEGER NOT NULL, error TEXT, PRIMARY KEY (call_id, attempt));";

#define COLUMNS                                                                                    \
    "call_id, tool, policy_sha256, args_json, args_sha256, agent, session, blast_radius,"          \
    " webhook_url, state, token_sha256, decided_by, decision_auth, reason, result_json,"           \
    " created_ms, expires_ms, decided_ms, started_ms, finished_ms, webhook_delivered,"             \
    " webhook_attempts"

void approval_row_clear(struct approval_row *r)
{
    char **strs[] = {&r->call_id,       &r->tool,   &r->policy_sha256, &r->args_json,
                     &r->args_sha256,   &r->agent,  &r->session,       &r->blast_radius,
                     &r->webhook_url,   &r->state,  &r->token_sha256,  &r->decided_by,
                     &r->decision_auth, &r->reason, &r->result_json};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    memset(r, 0, sizeof(*r));
}

void approval_rows_free(struct approval_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        approval_row_clear(&rows[i]);
    free(rows);
}

static int sq_fail(struct sq *s, struct gate_error *err, const char *what)
{
    return gate_err(err, GATE_E_IO, "approval store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int sq_open(const char *state_dir, const struct approval_config *cfg, void **handle,
                   struct gate_error *err)
{
    (void)cfg;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/approval.db", state_dir) >= (int)sizeof(path))
        return gate_err(err, GATE_E_CONFIG, "state directory path too long");
    mkdir(state_dir, 0700);
    /* The file holds call arguments and token hashes: 0600 from the start, and so are the -wal
     * and -shm files SQLite creates next to it (it gives them the database file's mode). */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s", path);
    fchmod(fd, 0600);
    close(fd);
    for (const char *suffix = "-wal"; suffix; suffix = strcmp(suffix, "-wal") ? NULL : "-shm") {
        char side[4200];
        snprintf(side, sizeof(side), "%s%s", path, suffix);
        chmod(side, 0600); /* left by an earlier version with a wider mode */
    }
    struct sq *s = calloc(1, sizeof(*s));
    if (!s) return gate_err(err, GATE_E_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        gate_err(err, GATE_E_IO, "open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        free(s);
        return -1;
    }
    /* Another process (a second gateway on the same state dir) waits rather than failing. */
    sqlite3_busy_timeout(s->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(s->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        gate_err(err, GATE_E_IO, "%s: schema: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(s->db);
        free(s);
        return -1;
    }
    *handle = s;
    return 0;
}

static void sq_close(void *h)
{
    struct sq *s = h;
    if (!s) return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int exec_simple(struct sq *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Finish a transaction whose body returned rc (1 changed, 0 unchanged, -1 error). */
static int finish_txn(struct sq *s, int rc, struct gate_error *err)
{
    if (rc == 1 && exec_simple(s, "COMMIT") < 0) {
        rc = sq_fail(s, err, "commit");
        exec_simple(s, "ROLLBACK");
    } else if (rc != 1) {
        exec_simple(s, "ROLLBACK");
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Begin a write transaction under the lock (IMMEDIATE: take the write lock now, so the
 * compare and the set cannot interleave with another writer). */
static int begin_txn(struct sq *s, struct gate_error *err)
{
    pthread_mutex_lock(&s->lock);
    if (exec_simple(s, "BEGIN IMMEDIATE") < 0) {
        sq_fail(s, err, "begin");
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    return 0;
}

/* Step a prepared write; returns the number of rows changed or -1. */
static int step_write(struct sq *s, sqlite3_stmt *st, struct gate_error *err, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sq_fail(s, err, what);
    return sqlite3_changes(s->db);
}

/* Inside a transaction: remember one more valid decision token of call_id. */
static int insert_token(struct sq *s, const char *call_id, const char *token_sha256,
                        struct gate_error *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO decision_tokens (token_sha256, call_id) VALUES (?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return sq_fail(s, err, "prepare token");
    bind_text(st, 1, token_sha256);
    bind_text(st, 2, call_id);
    return step_write(s, st, err, "insert token") == 1 ? 0 : -1;
}

/* Inside a write transaction: 0 if fewer than max calls of agent are pending, else -1 with
 * TOO_MANY_CALLS (or another error). */
static int check_pending(struct sq *s, const char *agent, unsigned max, struct gate_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    size_t n = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT count(*) FROM calls WHERE state='" ST_PENDING "' AND agent IS ?",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sq_fail(s, err, "prepare count");
    } else {
        bind_text(st, 1, agent);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = (size_t)sqlite3_column_int64(st, 0);
        else
            rc = sq_fail(s, err, "count");
    }
    sqlite3_finalize(st);
    if (rc == 0 && n >= max)
        rc = gate_err(err, GATE_E_TOO_MANY_CALLS, PENDING_FULL_FMT, agent ? agent : "", n);
    return rc;
}

static int sq_insert_held(void *h, const struct approval_row *r, unsigned max_pending,
                          store_hook hook, void *ctx, struct gate_error *err)
{
    struct sq *s = h;
    if (begin_txn(s, err) < 0) return -1;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    /* BEGIN IMMEDIATE holds the write lock: no other hold can count or insert meanwhile. */
    if (max_pending && check_pending(s, r->agent, max_pending, err) < 0)
        return finish_txn(s, -1, err);
    if (sqlite3_prepare_v2(
            s->db,
            "INSERT INTO calls (call_id, tool, policy_sha256, args_json, args_sha256,"
            " agent, session, blast_radius, webhook_url, state, token_sha256,"
            " created_ms, expires_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            -1, &st, NULL) != SQLITE_OK) {
        rc = sq_fail(s, err, "prepare insert");
        return finish_txn(s, rc, err);
    }
    const char *texts[] = {r->call_id,     r->tool,    r->policy_sha256, r->args_json,
                           r->args_sha256, r->agent,   r->session,       r->blast_radius,
                           r->webhook_url, ST_PENDING, r->token_sha256};
    for (int i = 0; i < 11; i++)
        bind_text(st, i + 1, texts[i]);
    sqlite3_bind_int64(st, 12, r->created_ms);
    sqlite3_bind_int64(st, 13, r->expires_ms);
    rc = step_write(s, st, err, "insert");
    if (rc == 1 && r->token_sha256 && insert_token(s, r->call_id, r->token_sha256, err) < 0)
        rc = -1;
    if (rc == 1 && hook && hook(ctx, err) < 0)
        rc = -1;
    else if (rc == 0)
        rc = gate_err(err, GATE_E_INTERNAL, "approval store: insert changed nothing");
    return finish_txn(s, rc, err);
}

static int sq_cas_state(void *h, const char *call_id, const char *from, const char *to,
                        const struct store_update *u, store_hook hook, void *ctx,
                        struct gate_error *err)
{
    static const struct store_update none = {0};
    struct sq *s = h;
    if (!u) u = &none;
    if (begin_txn(s, err) < 0) return -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE calls SET state=?1,"
                           " decided_by=COALESCE(?2, decided_by),"
                           " decision_auth=COALESCE(?3, decision_auth),"
                           " reason=COALESCE(?4, reason),"
                           " result_json=COALESCE(?5, result_json),"
                           " decided_ms=COALESCE(?6, decided_ms),"
                           " started_ms=COALESCE(?7, started_ms),"
                           " finished_ms=COALESCE(?8, finished_ms)"
                           " WHERE call_id=?9 AND state=?10"
                           /* A decision commits only inside the window it was made for. */
                           " AND (state<>'pending_approval' OR ?1='expired'"
                           "      OR ?6 IS NULL OR expires_ms > ?6)",
                           -1, &st, NULL) != SQLITE_OK)
        return finish_txn(s, sq_fail(s, err, "prepare update"), err);
    bind_text(st, 1, to);
    bind_text(st, 2, u->decided_by);
    bind_text(st, 3, u->decision_auth);
    bind_text(st, 4, u->reason);
    bind_text(st, 5, u->result_json);
    const int64_t times[] = {u->decided_ms, u->started_ms, u->finished_ms};
    for (int i = 0; i < 3; i++) {
        if (times[i])
            sqlite3_bind_int64(st, 6 + i, times[i]);
        else
            sqlite3_bind_null(st, 6 + i);
    }
    bind_text(st, 9, call_id);
    bind_text(st, 10, from);
    int rc = step_write(s, st, err, "update");
    if (rc == 1 && hook && hook(ctx, err) < 0) rc = -1;
    return finish_txn(s, rc, err);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? strdup((const char *)v) : NULL;
}

static void read_row(sqlite3_stmt *st, struct approval_row *r)
{
    char **strs[] = {&r->call_id,       &r->tool,   &r->policy_sha256, &r->args_json,
                     &r->args_sha256,   &r->agent,  &r->session,       &r->blast_radius,
                     &r->webhook_url,   &r->state,  &r->token_sha256,  &r->decided_by,
                     &r->decision_auth, &r->reason, &r->result_json};
    int i = 0;
    for (; i < (int)(sizeof(strs) / sizeof(strs[0])); i++)
        *strs[i] = col_dup(st, i);
    int64_t *ints[] = {&r->created_ms, &r->expires_ms, &r->decided_ms, &r->started_ms,
                       &r->finished_ms};
    for (int k = 0; k < 5; k++, i++)
        *ints[k] = sqlite3_column_int64(st, i);
    r->webhook_delivered = sqlite3_column_int(st, i++);
    r->webhook_attempts = sqlite3_column_int(st, i++);
}

static int sq_get(void *h, const char *call_id, struct approval_row *out, struct gate_error *err)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM calls WHERE call_id=?", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = sq_fail(s, err, "prepare get");
        goto out;
    }
    bind_text(st, 1, call_id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        read_row(st, out);
        rc = 1;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sq_fail(s, err, "get");
    }
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_list_by_state(void *h, const char *state, int64_t expires_before,
                            const struct store_page *page, struct approval_row **rows, size_t *n,
                            struct gate_error *err)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    struct approval_row *v = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    *rows = NULL;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " COLUMNS " FROM calls WHERE (?1 IS NULL OR state=?1)"
                           " AND (?2 = 0 OR expires_ms <= ?2)"
                           " AND (created_ms > ?3 OR (created_ms = ?3 AND call_id > ?4))"
                           " ORDER BY created_ms, call_id LIMIT ?5",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sq_fail(s, err, "prepare list");
        goto out;
    }
    bind_text(st, 1, state);
    sqlite3_bind_int64(st, 2, expires_before);
    sqlite3_bind_int64(st, 3, page ? page->after_created_ms : INT64_MIN);
    bind_text(st, 4, page && page->after_call_id ? page->after_call_id : "");
    sqlite3_bind_int64(st, 5, page && page->limit ? (int64_t)page->limit : -1);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct approval_row *nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                rc = gate_err(err, GATE_E_NOMEM, "out of memory");
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        memset(&v[count], 0, sizeof(v[count]));
        read_row(st, &v[count++]);
    }
    if (step != SQLITE_DONE) rc = sq_fail(s, err, "list");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        approval_rows_free(v, count);
        return -1;
    }
    *rows = v;
    *n = count;
    return 0;
}

static int sq_find_by_token(void *h, const char *token_sha256, char call_id[40],
                            struct gate_error *err)
{
    struct sq *s = h;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db, "SELECT call_id FROM decision_tokens WHERE token_sha256=?", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = sq_fail(s, err, "prepare token lookup");
    } else {
        bind_text(st, 1, token_sha256);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            const unsigned char *id = sqlite3_column_text(st, 0);
            snprintf(call_id, 40, "%s", id ? (const char *)id : "");
            rc = 1;
        } else if (step != SQLITE_DONE) {
            rc = sq_fail(s, err, "token lookup");
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int sq_add_token(void *h, const char *call_id, const char *token_sha256,
                        struct gate_error *err)
{
    struct sq *s = h;
    if (begin_txn(s, err) < 0) return -1;
    int rc = insert_token(s, call_id, token_sha256, err) < 0 ? -1 : 1;
    sqlite3_stmt *st = NULL;
    if (rc == 1 && sqlite3_prepare_v2(s->db, "UPDATE calls SET token_sha256=? WHERE call_id=?", -1,
                                      &st, NULL) == SQLITE_OK) {
        bind_text(st, 1, token_sha256);
        bind_text(st, 2, call_id);
        rc = step_write(s, st, err, "latest token") < 0 ? -1 : 1;
    } else if (rc == 1) {
        rc = sq_fail(s, err, "prepare latest token");
    }
    return finish_txn(s, rc, err) < 0 ? -1 : 0;
}

static int sq_record_attempt(void *h, const char *call_id, int attempt, int64_t ts_ms,
                             int http_status, const char *error, struct gate_error *err)
{
    struct sq *s = h;
    if (begin_txn(s, err) < 0) return -1;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO webhook_attempts (call_id, attempt, ts_ms,"
                           " http_status, error) VALUES (?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return finish_txn(s, sq_fail(s, err, "prepare attempt"), err);
    bind_text(st, 1, call_id);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_int64(st, 3, ts_ms);
    sqlite3_bind_int(st, 4, http_status);
    bind_text(st, 5, error);
    rc = step_write(s, st, err, "insert attempt");
    if (rc == 1) {
        st = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE calls SET webhook_attempts=MAX(webhook_attempts, ?)"
                               " WHERE call_id=?",
                               -1, &st, NULL) != SQLITE_OK)
            return finish_txn(s, sq_fail(s, err, "prepare attempt count"), err);
        sqlite3_bind_int(st, 1, attempt);
        bind_text(st, 2, call_id);
        rc = step_write(s, st, err, "attempt count") < 0 ? -1 : 1;
    }
    rc = finish_txn(s, rc, err);
    return rc < 0 ? -1 : 0;
}

static int sq_mark_delivered(void *h, const char *call_id, store_hook hook, void *ctx,
                             struct gate_error *err)
{
    struct sq *s = h;
    if (begin_txn(s, err) < 0) return -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE calls SET webhook_delivered=1 WHERE call_id=?"
                           " AND webhook_delivered=0",
                           -1, &st, NULL) != SQLITE_OK)
        return finish_txn(s, sq_fail(s, err, "prepare delivered"), err);
    bind_text(st, 1, call_id);
    int rc = step_write(s, st, err, "delivered");
    if (rc == 1 && hook && hook(ctx, err) < 0) rc = -1;
    return finish_txn(s, rc, err);
}

const struct approval_store_ops approval_store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .insert_held = sq_insert_held,
    .cas_state = sq_cas_state,
    .get = sq_get,
    .list_by_state = sq_list_by_state,
    .find_by_token = sq_find_by_token,
    .add_token = sq_add_token,
    .record_attempt = sq_record_attempt,
    .mark_delivered = sq_mark_delivered,
};
