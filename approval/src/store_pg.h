/* store_pg.h: what the PostgreSQL store's two files share (private to approval/). */
#ifndef GATE_STORE_PG_H
#define GATE_STORE_PG_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>

#include "approval_internal.h"

/* A run's lease: renewed every PG_BEAT_MS by its gateway; another gateway that finds it
 * PG_LEASE_MS old takes the gateway for dead and marks the call interrupted. The margin is
 * wide because the machines are shared: a heartbeat late by seconds must not kill a run. */
#define PG_BEAT_MS 1000
#define PG_LEASE_MS_STR "10000"
/* The database server's clock, in ms: every gateway compares leases on the same clock. */
/* The channel on which every committed transition names its call (NOTIFY/LISTEN). */
#define PG_CHANNEL "gatehouse_calls"
#define PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

/* Connections of a store's pool: statements and transactions of different calls run at once
 * (a hold's transaction includes its audit append, so one connection would also serialise the
 * audit's group commit). */
#define PG_POOL 4

/* The store (owner NULL), or a view of one pool connection (conn; owner the store). */
struct pg {
    PGconn *conn; /* a view's connection: libpq connections are not shared by threads, so a
                   * view is used by one thread between take and give (store_pg.c) */
    struct pg *owner;
    struct pg *views; /* the store's PG_POOL views */
    struct pg *free[PG_POOL];
    int nfree;
    pthread_cond_t pool_free;
    PGconn *listen;       /* LISTENs on PG_CHANNEL; used by the expiry timer's thread only */
    PGconn *beat_conn;    /* the lease heartbeat's own */
    pthread_mutex_t lock; /* guards free and nfree (and a quota's conn, store_pg_quota.c) */
    char node[17];        /* this gateway's random id, in run_node */
    pthread_t beat;
    pthread_mutex_t beat_lock;
    pthread_cond_t beat_wake;
    bool stopping, beat_started;
    char health[1024]; /* the last heartbeat's error, "" if it reached the database */
};

/* Fill err from res (or the connection), PQclear(res), return -1. */
int pg_fail(struct pg *p, PGresult *res, struct gate_error *err, const char *what);
/* One statement with text parameters; the result (caller PQclears) or NULL with err filled. */
PGresult *pg_exec(struct pg *p, const char *sql, int n, const char *const *vals,
                  struct gate_error *err, const char *what);
int pg_simple(struct pg *p, const char *sql, struct gate_error *err);
/* p->conn usable (reconnecting once), or -1; by its only user. */
int pg_ready(struct pg *p, struct gate_error *err);
/* A new connection to uri (password NULL: libpq's own), or NULL with err filled. */
PGconn *pg_connect(const char *uri, const char *password, struct gate_error *err);
int pg_open(const char *state_dir, const struct approval_config *cfg, void **handle,
            struct gate_error *err);
void pg_close(void *h);
bool pg_healthy(void *h, char *why, size_t len);
int pg_drain_changes(void *h, void (*changed)(void *ctx, const char *call_id), void *ctx,
                     struct gate_error *err);

#endif
