/* store_pg_quota.c: per-agent quotas counted in PostgreSQL, once for all gateways.
 *
 * Running calls (max_concurrent): a call holds one of the agent's max_concurrent slots, a
 * session advisory lock (hashtext(agent), slot) taken by gatehouse_take_slot (migration 4) on
 * this gateway's quota connection and released when the call ends. The server drops a dead
 * gateway's locks with its connection, so a crash never leaks a slot. Slots are
 * interchangeable: this side remembers which ones it holds per agent and releases any.
 * A restart of the database drops every session lock while the calls holding them run on. A
 * thread checks the connection every PG_BEAT_MS while slots are held, and whenever it has to
 * reconnect (there or in begin), the slots held are re-taken before anything else; new slots
 * are handed out only once the server has been up a few seconds (migration 5), so those
 * re-takes come first. A slot another gateway took meanwhile (the database was up again before
 * this gateway noticed, past that grace) is replaced by a free one if any; if none is free the
 * agent runs more calls than its quota until enough of them end (logged as quota.slot_lost).
 * Rate: a token bucket row per agent (burst = one minute's rate), taken from in one statement
 * that refills and takes only if a token is there. Each begin is one or two round trips on
 * one connection; a database that cannot answer makes begin fail with DATABASE_UNAVAILABLE
 * and the caller counts on this gateway alone meanwhile (agents/src/quota.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_pg.h"

#define NOW_MS "(extract(epoch from now()) * 1000)::bigint"
/* The bucket refilled to now, capped at one minute's rate ($2). */
#define REFILLED "LEAST($2::float8, r.tokens + (" NOW_MS " - r.refill_ms) * $2::float8 / 60000.0)"

struct held_slot {
    struct held_slot *next;
    int slot;     /* -1: lost at a reconnect and none free to replace it */
    unsigned max; /* the agent's max_concurrent when it was taken */
    char agent[];
};

struct quota {
    struct pg pg; /* conn and lock used; one statement at a time */
    struct held_slot *held;
    pthread_t check;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    bool stopping, check_started;
};

static int take_slot(struct quota *q, const char *agent, unsigned max, int *slot,
                     struct gate_error *err);

/* With the lock held, on a new connection: take again the slots this gateway held, the same
 * ones where they are still free. */
static void retake(struct quota *q)
{
    for (struct held_slot *s = q->held; s; s = s->next) {
        char n[16];
        snprintf(n, sizeof(n), "%d", s->slot);
        const char *vals[] = {s->agent, n};
        struct gate_error err = {0};
        PGresult *res = s->slot < 0
                            ? NULL
                            : pg_exec(&q->pg, "SELECT pg_try_advisory_lock(hashtext($1), $2::int)",
                                      2, vals, &err, "re-take a running-call slot");
        bool same = res && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (same) continue;
        if (err.code == GATE_E_DATABASE_UNAVAILABLE) return; /* lost again: the next check */
        /* take_slot skips the slots held here, this one included: mark it lost first. */
        s->slot = -1;
        if (take_slot(q, s->agent, s->max, &s->slot, &err) != 1) {
            s->slot = -1;
            gate_log("warn", "quota.slot_lost",
                     "agent '%s': a running call's slot was taken while the database restarted "
                     "and none is free: the agent runs more than %u calls until some end%s%s",
                     s->agent, s->max, err.msg[0] ? ": " : "", err.msg);
        }
    }
}

/* With the lock held: a new connection, and this gateway's slots on it again. */
static int reconnect(struct quota *q, struct gate_error *err)
{
    PQreset(q->pg.conn);
    if (PQstatus(q->pg.conn) != CONNECTION_OK) return pg_fail(&q->pg, NULL, err, "reconnect");
    gate_log("info", "quota.reconnected", "quota connection back; re-taking running calls' slots");
    retake(q);
    return 0;
}

/* Every PG_BEAT_MS while slots are held: a connection lost to a database restart is noticed
 * only when used, and the slots must be re-taken before other gateways hand them out. */
static void *check_main(void *arg)
{
    struct quota *q = arg;
    pthread_mutex_lock(&q->pg.lock);
    while (!q->stopping) {
        if (q->held) {
            struct gate_error err = {0};
            PGresult *res = pg_exec(&q->pg, "SELECT 1", 0, NULL, &err, "check");
            if (res)
                PQclear(res);
            else if (err.code == GATE_E_DATABASE_UNAVAILABLE)
                reconnect(q, &err);
        }
        uint64_t ns = gate_monotonic_ns() + PG_BEAT_MS * 1000000ull;
        struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                              .tv_nsec = (long)(ns % 1000000000ull)};
        pthread_cond_timedwait(&q->wake, &q->pg.lock, &ts);
    }
    pthread_mutex_unlock(&q->pg.lock);
    return NULL;
}

int approval_quota_open(const struct approval_config *cfg, void **q, struct gate_error *err)
{
    *q = NULL;
    struct quota *qt = calloc(1, sizeof(*qt));
    if (!qt) return gate_err(err, GATE_E_NOMEM, "out of memory");
    pthread_mutex_init(&qt->pg.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&qt->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (!(qt->pg.conn = pg_connect(cfg->database, cfg->database_password, err))) {
        approval_quota_close(qt);
        return -1;
    }
    int rc = pthread_create(&qt->check, NULL, check_main, qt);
    if (rc != 0) {
        approval_quota_close(qt);
        return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the quota connection's check");
    }
    qt->check_started = true;
    *q = qt;
    return 0;
}

void approval_quota_close(void *h)
{
    struct quota *q = h;
    if (!q) return;
    pthread_mutex_lock(&q->pg.lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->pg.lock);
    if (q->check_started) pthread_join(q->check, NULL);
    PQfinish(q->pg.conn); /* releases every slot still held */
    while (q->held) {
        struct held_slot *s = q->held;
        q->held = s->next;
        free(s);
    }
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->pg.lock);
    free(q);
}

/* With the lock held: a slot of agent's, 1 taken (*slot), 0 all busy, -1 error. */
static int take_slot(struct quota *q, const char *agent, unsigned max, int *slot,
                     struct gate_error *err)
{
    char n[16];
    snprintf(n, sizeof(n), "%u", max);
    struct gate_buf mine = {0};
    int rc = gate_buf_printf(&mine, "{");
    for (struct held_slot *s = q->held; s && rc >= 0; s = s->next)
        if (strcmp(s->agent, agent) == 0)
            rc = gate_buf_printf(&mine, "%s%d", mine.len > 1 ? "," : "", s->slot);
    if (rc < 0 || gate_buf_printf(&mine, "}") < 0) {
        gate_buf_free(&mine);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    const char *vals[] = {agent, n, mine.data};
    PGresult *res = pg_exec(&q->pg, "SELECT gatehouse_take_slot($1, $2::int, $3::int[])", 3, vals,
                            err, "take a running-call slot");
    gate_buf_free(&mine);
    if (!res) return -1;
    *slot = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return *slot >= 0;
}

static void give_slot(struct quota *q, const char *agent, int slot)
{
    char n[16];
    snprintf(n, sizeof(n), "%d", slot);
    const char *vals[] = {agent, n};
    struct gate_error err = {0};
    PQclear(pg_exec(&q->pg, "SELECT pg_advisory_unlock(hashtext($1), $2::int)", 2, vals, &err,
                    "release a running-call slot"));
}

/* With the lock held: 1 a token taken, 0 none left (*retry_after set), -1 error. */
static int take_token(struct quota *q, const char *agent, unsigned rate, unsigned *retry_after,
                      struct gate_error *err)
{
    char n[16];
    snprintf(n, sizeof(n), "%u", rate);
    const char *vals[] = {agent, n};
    PGresult *res = pg_exec(
        &q->pg,
        "INSERT INTO agent_rate AS r (agent, tokens, refill_ms) VALUES ($1, $2::float8 - 1, " NOW_MS
        ") ON CONFLICT (agent) DO UPDATE SET tokens = " REFILLED " - 1, refill_ms = " NOW_MS
        " WHERE " REFILLED " >= 1 RETURNING 1",
        2, vals, err, "take a rate token");
    if (!res) return -1;
    int taken = PQntuples(res);
    PQclear(res);
    if (taken) return 1;
    res = pg_exec(&q->pg, "SELECT " REFILLED " FROM agent_rate r WHERE agent = $1", 2, vals, err,
                  "read the rate bucket");
    if (!res) return -1;
    double tokens = PQntuples(res) ? strtod(PQgetvalue(res, 0, 0), NULL) : 0;
    PQclear(res);
    *retry_after = (unsigned)ceil((1.0 - tokens) * 60.0 / rate);
    if (*retry_after == 0) *retry_after = 1;
    return 0;
}

int approval_quota_begin(void *h, const char *agent, unsigned max_concurrent, unsigned rate_per_min,
                         unsigned *retry_after, struct gate_error *err)
{
    struct quota *q = h;
    *retry_after = 0;
    struct held_slot *s = NULL;
    if (max_concurrent && !(s = calloc(1, sizeof(*s) + strlen(agent) + 1)))
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    pthread_mutex_lock(&q->pg.lock);
    int rc = PQstatus(q->pg.conn) == CONNECTION_OK || reconnect(q, err) == 0 ? 1 : -1;
    if (rc == 1 && s) {
        rc = take_slot(q, agent, max_concurrent, &s->slot, err);
        /* The server restarted since this connection was last used: reconnect (re-taking the
         * slots held) and ask again. */
        if (rc < 0 && err->code == GATE_E_DATABASE_UNAVAILABLE && reconnect(q, err) == 0)
            rc = take_slot(q, agent, max_concurrent, &s->slot, err);
        if (rc == 0) {
            *retry_after = 1;
            gate_err(err, GATE_E_TOO_MANY_CALLS,
                     "quota max_concurrent: agent '%s' already runs %u calls (all gateways)", agent,
                     max_concurrent);
        }
    }
    if (rc == 1 && rate_per_min) {
        rc = take_token(q, agent, rate_per_min, retry_after, err);
        if (rc < 0 && !s && err->code == GATE_E_DATABASE_UNAVAILABLE && reconnect(q, err) == 0)
            rc = take_token(q, agent, rate_per_min, retry_after, err);
        if (rc == 0)
            gate_err(err, GATE_E_TOO_MANY_CALLS,
                     "quota rate: agent '%s' may make %u calls a minute (all gateways)", agent,
                     rate_per_min);
        if (rc != 1 && s) give_slot(q, agent, s->slot);
    }
    if (rc == 1 && s) {
        s->max = max_concurrent;
        strcpy(s->agent, agent);
        s->next = q->held;
        q->held = s;
        s = NULL;
    }
    pthread_mutex_unlock(&q->pg.lock);
    free(s);
    return rc == 1 ? 0 : -1;
}

void approval_quota_end(void *h, const char *agent)
{
    struct quota *q = h;
    pthread_mutex_lock(&q->pg.lock);
    for (struct held_slot **pp = &q->held; *pp; pp = &(*pp)->next) {
        struct held_slot *s = *pp;
        if (strcmp(s->agent, agent) != 0) continue;
        *pp = s->next;
        /* A lost connection has dropped the lock already; nothing to release then. */
        if (PQstatus(q->pg.conn) == CONNECTION_OK && s->slot >= 0) give_slot(q, agent, s->slot);
        free(s);
        break;
    }
    pthread_mutex_unlock(&q->pg.lock);
}
