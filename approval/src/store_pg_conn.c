/* store_pg_conn.c: the PostgreSQL store's connection, its versioned migrations and its run
 * lease heartbeat (the operations are in store_pg.c).
 *
 * Several gateways share one database. The schema is created and migrated by whichever
 * gateway starts first: migrations run under a session advisory lock, so two gateways
 * starting together apply each migration once, the second one waiting and then finding
 * nothing left to do. Each opened store is a node with a random id; the calls it runs carry
 * that id and a lease that a heartbeat thread renews, so the other nodes can tell a run
 * whose gateway died (lease expired: interrupted, never re-run) from one still going.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_pg.h"

/* Each migration is applied once, in order, in its own transaction together with its row in
 * schema_migrations. Never edit a shipped migration: append a new one. */
static const char *const MIGRATIONS[] = {
    /* 1: held calls, decision tokens, webhook attempts, run leases. */
    "CREATE TABLE calls ("
    " call_id TEXT PRIMARY KEY, tool TEXT NOT NULL, policy_sha256 TEXT NOT NULL,"
    " args_json TEXT NOT NULL, args_sha256 TEXT NOT NULL, agent TEXT, session TEXT,"
    " blast_radius TEXT, webhook_url TEXT, state TEXT NOT NULL, token_sha256 TEXT,"
    " decided_by TEXT, decision_auth TEXT, reason TEXT, result_json TEXT,"
    " created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, decided_ms BIGINT,"
    " started_ms BIGINT, finished_ms BIGINT,"
    " webhook_delivered INTEGER NOT NULL DEFAULT 0,"
    " webhook_attempts INTEGER NOT NULL DEFAULT 0,"
    " run_node TEXT, run_lease_ms BIGINT);"
    "CREATE INDEX calls_state ON calls(state, expires_ms);"
    "CREATE INDEX calls_agent_pending ON calls(agent) WHERE state = 'pending_approval';"
    "CREATE TABLE decision_tokens (token_sha256 TEXT PRIMARY KEY,"
    " call_id TEXT NOT NULL REFERENCES calls(call_id));"
    "CREATE TABLE webhook_attempts ("
    " call_id TEXT NOT NULL REFERENCES calls(call_id), attempt INTEGER NOT NULL,"
    " ts_ms BIGINT NOT NULL, http_status INTEGER NOT NULL, error TEXT,"
    " PRIMARY KEY (call_id, attempt));",
    /* 2: webhook delivery leases: one gateway at a time delivers a call's webhook. */
    "ALTER TABLE calls ADD COLUMN webhook_node TEXT, ADD COLUMN webhook_lease_ms BIGINT;"
    "CREATE INDEX calls_webhook_due ON calls(webhook_lease_ms)"
    " WHERE state = 'pending_approval' AND webhook_delivered = 0 AND webhook_url IS NOT NULL;",
    /* 3: audit anchors: each gateway's published chain heads (audit/src/audit_anchor.c).
     * Append-only by use: the first anchor of a (node, seq) stays. */
    "CREATE TABLE audit_anchors (node TEXT NOT NULL, seq BIGINT NOT NULL,"
    " segment INTEGER NOT NULL, hash TEXT NOT NULL,"
    " anchored_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (node, seq));",
    /* 4: per-agent quotas across gateways (store_pg_quota.c): the rate's token bucket, and
     * running calls as session advisory locks (key: hashtext(agent), slot), which the server
     * drops with the connection of a gateway that dies. */
    "CREATE TABLE agent_rate (agent TEXT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL,"
    " refill_ms BIGINT NOT NULL);"
    /* Advisory locks nest within a session: mine, the slots this session holds already, are
     * skipped, or a second call through the same gateway would take the same slot again. */
    "CREATE FUNCTION gatehouse_take_slot(agent TEXT, slots INTEGER, mine INTEGER[])"
    " RETURNS INTEGER LANGUAGE plpgsql AS $$ BEGIN"
    "  FOR k IN 0 .. slots - 1 LOOP"
    "   IF NOT (k = ANY(mine)) AND pg_try_advisory_lock(hashtext(agent), k) THEN RETURN k;"
    "   END IF;"
    "  END LOOP; RETURN -1; END $$;",
    /* 5: slots after a database restart (store_pg_quota.c). The restart dropped every session
     * lock, but the calls that held them still run; each gateway re-takes its slots as soon as
     * it has reconnected (its quota connection is checked every PG_BEAT_MS), with
     * pg_try_advisory_lock directly. New slots wait until the server has been up for 5 seconds
     * (room for a loaded machine), so those re-takes come first. */
    "CREATE OR REPLACE FUNCTION gatehouse_take_slot(agent TEXT, slots INTEGER, mine INTEGER[])"
    " RETURNS INTEGER LANGUAGE plpgsql AS $$"
    " DECLARE wait DOUBLE PRECISION := 5 - extract(epoch FROM clock_timestamp()"
    "  - pg_postmaster_start_time());"
    " BEGIN"
    "  IF wait > 0 THEN PERFORM pg_sleep(wait); END IF;"
    "  FOR k IN 0 .. slots - 1 LOOP"
    "   IF NOT (k = ANY(mine)) AND pg_try_advisory_lock(hashtext(agent), k) THEN RETURN k;"
    "   END IF;"
    "  END LOOP; RETURN -1; END $$;",
    /* 6: chat follow-ups as an outbox: due (followup_node set) from the decision's commit until
     * sent, under a lease like webhook deliveries, so another gateway sends one whose deciding
     * gateway died (delivery.c). */
    "ALTER TABLE calls ADD COLUMN followup_node TEXT, ADD COLUMN followup_lease_ms BIGINT;"
    "CREATE INDEX calls_followup_due ON calls(followup_lease_ms) WHERE followup_node IS NOT NULL;",
};
#define N_MIGRATIONS ((int)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

/* The advisory lock key of migrations: any fixed 64-bit number, ours ("gatehous"). */
#define MIGRATE_LOCK_KEY "7450656869637573"

int pg_fail(struct pg *p, PGresult *res, struct gate_error *err, const char *what)
{
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(p->conn);
    char one_line[512];
    snprintf(one_line, sizeof(one_line), "%s", msg && *msg ? msg : "unknown error");
    one_line[strcspn(one_line, "\n")] = '\0';
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* A lost connection (no SQLSTATE: the error is libpq's own), a connection exception (08)
     * or a server shutting down (57P) is the database being unavailable (503), not a bug. */
    bool lost = PQstatus(p->conn) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
                strncmp(state, "57P", 3) == 0;
    PQclear(res);
    enum gate_code code = lost ? GATE_E_DATABASE_UNAVAILABLE : GATE_E_IO;
    return gate_err(err, code, "approval store (postgresql): %s: %s", what, one_line);
}

PGresult *pg_exec(struct pg *p, const char *sql, int n, const char *const *vals,
                  struct gate_error *err, const char *what)
{
    PGresult *res = PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
    pg_fail(p, res, err, what);
    return NULL;
}

int pg_simple(struct pg *p, const char *sql, struct gate_error *err)
{
    PGresult *res = pg_exec(p, sql, 0, NULL, err, sql);
    int rc = res ? 0 : -1;
    PQclear(res);
    return rc;
}

/* A usable connection, reconnecting once if the server went away. */
int pg_ready(struct pg *p, struct gate_error *err)
{
    if (PQstatus(p->conn) == CONNECTION_OK) return 0;
    PQreset(p->conn);
    if (PQstatus(p->conn) == CONNECTION_OK) {
        gate_log("info", "approval.db", "reconnected to the database");
        return 0;
    }
    return pg_fail(p, NULL, err, "connect");
}

PGconn *pg_connect(const char *uri, const char *password, struct gate_error *err)
{
    /* expand_dbname: the URI's fields fill the other keywords; a password from password_env
     * overrides one from PGPASSWORD or .pgpass, which libpq reads by itself. */
    const char *keys[] = {"dbname", "application_name", "connect_timeout", "password", NULL};
    const char *vals[] = {uri, "gatehouse", "5", password, NULL};
    if (!password) keys[3] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        gate_err(err, GATE_E_NOMEM, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "connect to the database: %s", msg);
        return NULL;
    }
    return c;
}

/* The highest applied migration, 0 for an empty database (create: make the table of
 * migrations if there is none; otherwise change nothing). */
static int schema_version(struct pg *p, bool create, int *version, struct gate_error *err)
{
    *version = 0;
    if (!create) {
        PGresult *res = pg_exec(p, "SELECT to_regclass('schema_migrations') IS NULL", 0, NULL, err,
                                "look for the schema");
        if (!res) return -1;
        bool empty = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (empty) return 0;
    } else if (pg_simple(
                   p,
                   "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                   " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                   err) < 0)
        return -1;
    PGresult *res = pg_exec(p, "SELECT COALESCE(max(version), 0) FROM schema_migrations", 0, NULL,
                            err, "read the schema version");
    if (!res) return -1;
    *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int apply_migrations(struct pg *p, int *applied, struct gate_error *err)
{
    int version = 0;
    *applied = 0;
    if (schema_version(p, true, &version, err) < 0) return -1;
    if (version > N_MIGRATIONS)
        return gate_err(err, GATE_E_CONFIG,
                        "the database schema is version %d, newer than this gateway's %d: "
                        "upgrade the gateway",
                        version, N_MIGRATIONS);
    for (int v = version + 1; v <= N_MIGRATIONS; v++) {
        char num[16];
        snprintf(num, sizeof(num), "%d", v);
        const char *vals[] = {num};
        if (pg_simple(p, "BEGIN", err) < 0) return -1;
        /* PQexec: a migration is several statements, which PQexecParams refuses. */
        PGresult *res = PQexec(p->conn, MIGRATIONS[v - 1]);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            pg_fail(p, res, err, "migrate");
        else
            PQclear(res);
        if (ok) {
            res = pg_exec(p, "INSERT INTO schema_migrations (version) VALUES ($1::int)", 1, vals,
                          err, "record the migration");
            ok = res != NULL;
            PQclear(res);
        }
        if (!ok || pg_simple(p, "COMMIT", err) < 0) {
            pg_simple(p, "ROLLBACK", NULL);
            return gate_err_wrap(err, "migration %d", v);
        }
        (*applied)++;
    }
    return 0;
}

int approval_db_migrate(const struct approval_config *cfg, bool check_only, int *version,
                        int *latest, struct gate_error *err)
{
    struct pg tmp = {0};
    *latest = N_MIGRATIONS;
    *version = 0;
    if (!cfg->database) return gate_err(err, GATE_E_CONFIG, "no database: configured");
    if (!(tmp.conn = pg_connect(cfg->database, cfg->database_password, err))) return -1;
    int rc = 0, applied = 0;
    if (check_only) {
        rc = schema_version(&tmp, false, version, err);
    } else {
        /* Session lock: held across the migrations' own transactions, released below (or by
         * the server if we die), so a gateway starting at the same time waits here. */
        rc = pg_simple(&tmp, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err);
        if (rc == 0) {
            rc = apply_migrations(&tmp, &applied, err);
            pg_simple(&tmp, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", NULL);
        }
        *version = N_MIGRATIONS;
        if (rc == 0 && applied > 0)
            gate_log("info", "approval.db_migrated", "applied %d migration(s); schema version %d",
                     applied, N_MIGRATIONS);
    }
    PQfinish(tmp.conn);
    return rc;
}

/* ---- the run lease heartbeat ----------------------------------------------------------- */
static void *beat_main(void *arg)
{
    struct pg *p = arg;
    pthread_mutex_lock(&p->beat_lock);
    while (!p->stopping) {
        pthread_mutex_unlock(&p->beat_lock);
        const char *vals[] = {p->node};
        struct gate_error err = {0};
        /* Its own connection: behind the store's one, a burst of transitions (each with an
         * audit fsync) could delay the renewal past the lease and get live runs interrupted. */
        struct pg beat = {.conn = p->beat_conn};
        PGresult *res =
            pg_ready(&beat, &err) < 0
                ? NULL
                : pg_exec(&beat,
                          "UPDATE calls SET"
                          " run_lease_ms = CASE WHEN run_node = $1 AND state IN ('" ST_APPROVED
                          "', '" ST_STARTED "') THEN " PG_NOW_MS " + " PG_LEASE_MS_STR
                          " ELSE run_lease_ms END,"
                          " webhook_lease_ms = CASE WHEN webhook_node = $1 AND state = '" ST_PENDING
                          "' AND webhook_delivered = 0 THEN " PG_NOW_MS " + " PG_LEASE_MS_STR
                          " ELSE webhook_lease_ms END,"
                          " followup_lease_ms = CASE WHEN followup_node = $1 THEN " PG_NOW_MS
                          " + " PG_LEASE_MS_STR " ELSE followup_lease_ms END"
                          " WHERE (run_node = $1 AND state IN ('" ST_APPROVED "', '" ST_STARTED
                          "')) OR (webhook_node = $1 AND state = '" ST_PENDING
                          "' AND webhook_delivered = 0) OR followup_node = $1",
                          1, vals, &err, "renew leases");
        if (!res) gate_log("warn", "approval.db", "%s", err.msg);
        PQclear(res);
        pthread_mutex_lock(&p->beat_lock);
        snprintf(p->health, sizeof(p->health), "%s", res ? "" : err.msg);
        if (p->stopping) break;
        uint64_t ns = gate_monotonic_ns() + PG_BEAT_MS * 1000000ull;
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_nsec = (long)(ns % 1000000000ull)};
        pthread_cond_timedwait(&p->beat_wake, &p->beat_lock, &ts);
    }
    pthread_mutex_unlock(&p->beat_lock);
    return NULL;
}

static int listen_changes(struct pg *p, struct gate_error *err)
{
    PGresult *res = PQexec(p->listen, "LISTEN " PG_CHANNEL);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? 0
              : gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "LISTEN: %s", PQerrorMessage(p->listen));
}

/* Calls changed by any gateway (this one too) since the last call: changed(ctx, call_id) for
 * each, without blocking. A lost listener reconnects; changes made meanwhile are not named, so
 * then changed(ctx, NULL): every waiter looks again (an MCP client waiting without a stream
 * has no timeout, and would otherwise wait on for a decision made while no one listened). */
int pg_drain_changes(void *h, void (*changed)(void *ctx, const char *call_id), void *ctx,
                     struct gate_error *err)
{
    struct pg *p = h;
    if (PQstatus(p->listen) != CONNECTION_OK) {
        PQreset(p->listen);
        if (PQstatus(p->listen) != CONNECTION_OK || listen_changes(p, err) < 0)
            return gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "listen for changes: %s",
                            PQerrorMessage(p->listen));
        changed(ctx, NULL);
    }
    if (!PQconsumeInput(p->listen))
        return gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "listen for changes: %s",
                        PQerrorMessage(p->listen));
    PGnotify *n;
    while ((n = PQnotifies(p->listen))) {
        changed(ctx, n->extra);
        PQfreemem(n);
    }
    return 0;
}

bool pg_healthy(void *h, char *why, size_t len)
{
    struct pg *p = h;
    pthread_mutex_lock(&p->beat_lock);
    bool ok = p->health[0] == '\0';
    if (!ok) snprintf(why, len, "%s", p->health);
    pthread_mutex_unlock(&p->beat_lock);
    return ok;
}

int pg_open(const char *state_dir, const struct approval_config *cfg, void **handle,
            struct gate_error *err)
{
    (void)state_dir; /* everything shared lives in the database */
    int version = 0, latest = 0;
    if (approval_db_migrate(cfg, false, &version, &latest, err) < 0) return -1;
    struct pg *p = calloc(1, sizeof(*p));
    if (!p) return gate_err(err, GATE_E_NOMEM, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->pool_free, NULL);
    pthread_mutex_init(&p->beat_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->beat_wake, &ca);
    pthread_condattr_destroy(&ca);
    if (gate_random_hex(p->node, 8) < 0) {
        pg_close(p);
        return gate_err(err, GATE_E_INTERNAL, "no randomness for the node id");
    }
    if (!(p->views = calloc(PG_POOL, sizeof(*p->views)))) {
        pg_close(p);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < PG_POOL; i++) {
        struct pg *c = &p->views[i];
        c->owner = p;
        memcpy(c->node, p->node, sizeof(c->node));
        if (!(c->conn = pg_connect(cfg->database, cfg->database_password, err))) {
            pg_close(p);
            return -1;
        }
        p->free[p->nfree++] = c;
    }
    if (!(p->listen = pg_connect(cfg->database, cfg->database_password, err)) ||
        !(p->beat_conn = pg_connect(cfg->database, cfg->database_password, err)) ||
        listen_changes(p, err) < 0) {
        pg_close(p);
        return -1;
    }
    int rc = pthread_create(&p->beat, NULL, beat_main, p);
    if (rc != 0) {
        pg_close(p);
        return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the lease heartbeat");
    }
    p->beat_started = true;
    gate_log("info", "approval.db", "shared approval store in postgresql, node %s", p->node);
    *handle = p;
    return 0;
}

void pg_close(void *h)
{
    struct pg *p = h;
    if (!p) return;
    pthread_mutex_lock(&p->beat_lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->beat_wake);
    pthread_mutex_unlock(&p->beat_lock);
    if (p->beat_started) pthread_join(p->beat, NULL);
    for (int i = 0; p->views && i < PG_POOL; i++)
        PQfinish(p->views[i].conn);
    free(p->views);
    PQfinish(p->listen);
    PQfinish(p->beat_conn);
    pthread_cond_destroy(&p->beat_wake);
    pthread_mutex_destroy(&p->beat_lock);
    pthread_cond_destroy(&p->pool_free);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
