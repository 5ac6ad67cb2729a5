/* approval_store.h: the durable store of held calls, behind a table of operations.
 *
 * The approval engine only talks to a store through struct approval_store_ops, so a
 * shared PostgreSQL store can serve several gateways later by adding one file and one
 * row; the embedded default is SQLite (store_sqlite.c). Every state change is a
 * compare-and-set ("UPDATE ... WHERE state = from") run inside a transaction together
 * with a hook: the engine's hook appends the audit record, and the transaction commits
 * only if the hook succeeded. So a transition is durable in both places, or in neither
 * (a crash between the audit fsync and the commit leaves the audit one record ahead,
 * never the store ahead of the audit).
 */
#ifndef GATE_APPROVAL_STORE_H
#define GATE_APPROVAL_STORE_H

#include <stdint.h>

#include "approval.h"
#include "gate.h"

/* States of a held call. Final: denied, expired, finished, interrupted. */
#define ST_PENDING "pending_approval"
#define ST_APPROVED "approved"
#define ST_DENIED "denied"
#define ST_EXPIRED "expired"
#define ST_WITHDRAWN "withdrawn" /* the caller cancelled the held call (MCP) */
#define ST_STARTED "started"
#define ST_FINISHED "finished"
#define ST_INTERRUPTED "interrupted"

/* One held call as stored. Strings are owned (approval_row_clear frees them). */
struct approval_row {
    char *call_id;
    char *tool;
    char *policy_sha256;
    char *args_json; /* the exact bytes the tool will read */
    char *args_sha256;
    char *agent;        /* may be NULL */
    char *session;      /* may be NULL */
    char *blast_radius; /* "low" ... "critical" */
    char *webhook_url;  /* may be NULL: no webhook for this call */
    char *state;
    char *token_sha256; /* SHA-256 hex of the latest decision token, may be NULL */
    char *decided_by;
    char *decision_auth; /* "approver_token" | "decision_token" */
    char *reason;
    char *result_json; /* the run's call record once finished */
    int64_t created_ms, expires_ms, decided_ms, started_ms, finished_ms;
    int webhook_delivered;
    int webhook_attempts;
};
void approval_row_clear(struct approval_row *r);

/* Fields written together with a state change; NULL / 0 leaves a column unchanged. */
struct store_update {
    const char *decided_by;
    const char *decision_auth;
    const char *reason;
    const char *result_json;
    int64_t decided_ms, started_ms, finished_ms;
    /* Shared stores: a chat follow-up of this decision is due; this gateway holds its lease
     * (renewed with the run leases) until followup_done, else another gateway adopts it. */
    bool followup;
};

/* A page of a listing: rows after (after_created_ms, after_call_id), at most limit of them. */
struct store_page {
    int64_t after_created_ms;
    const char *after_call_id; /* "" or NULL: from the start */
    size_t limit;
};

/* The refusal of a hold over max_pending (agent, pending count). */
#define PENDING_FULL_FMT "quota max_pending: agent '%s' has %zu held calls awaiting approval"

/* Run inside the transaction after the row changed; -1 (err filled) rolls it back. */
typedef int (*store_hook)(void *ctx, struct gate_error *err);

struct approval_store_ops {
    const char *name;
    /* Open (creating or migrating) the store: under state_dir (embedded) or in cfg->database
     * (shared). *handle is owned by the caller (close). */
    int (*open)(const char *state_dir, const struct approval_config *cfg, void **handle,
                struct gate_error *err);
    void (*close)(void *handle);
    /* Insert a new row in state pending_approval; then hook; commit. max_pending > 0: only if
     * fewer than max_pending calls of row->agent are pending, counted in the same transaction
     * and serialised with every other such insert for the agent (all gateways); else -1 with
     * TOO_MANY_CALLS. */
    int (*insert_held)(void *h, const struct approval_row *row, unsigned max_pending,
                       store_hook hook, void *ctx, struct gate_error *err);
    /* Compare-and-set: 1 if the row was in `from` and is now in `to` (hook ran and the
     * transaction committed), 0 if it was not in `from` (nothing changed), -1 on error. */
    int (*cas_state)(void *h, const char *call_id, const char *from, const char *to,
                     const struct store_update *upd, store_hook hook, void *ctx,
                     struct gate_error *err);
    /* 1 and *out filled (caller clears it) if found, 0 if not, -1 on error. */
    int (*get)(void *h, const char *call_id, struct approval_row *out, struct gate_error *err);
    /* Rows in state (NULL = any), oldest first (created_ms, call_id); only those with
     * expires_ms <= expires_before when expires_before > 0; with page, only those after the
     * page's position and at most page->limit. *rows owned by the caller (approval_rows_free). */
    int (*list_by_state)(void *h, const char *state, int64_t expires_before,
                         const struct store_page *page, struct approval_row **rows, size_t *n,
                         struct gate_error *err);
    /* Shared stores only (NULL for an embedded one, where every call found `started` when the
     * store opens is an orphan): calls in `approved` or `started` whose gateway stopped
     * renewing its lease. Rows as list_by_state. A CAS started -> interrupted succeeds only
     * on such a call. */
    int (*list_orphans)(void *h, struct approval_row **rows, size_t *n, struct gate_error *err);
    /* Shared stores only: whether the database answered the last heartbeat (why if not). */
    bool (*healthy)(void *h, char *why, size_t len);
    /* Shared stores only: changed(ctx, call_id) for each call any gateway changed since the
     * last call (never blocks), so long polls here wake for transitions made elsewhere;
     * changed(ctx, NULL) when changes may have been missed (any call may have changed). */
    int (*drain_changes)(void *h, void (*changed)(void *ctx, const char *call_id), void *ctx,
                         struct gate_error *err);
    /* Shared stores only: pending calls whose webhook is undelivered and whose delivering
     * gateway stopped renewing its lease (followup: decided calls whose due chat follow-up's
     * gateway did), at most 100. */
    int (*list_webhook_orphans)(void *h, bool followup, struct approval_row **rows, size_t *n,
                                struct gate_error *err);
    /* Shared stores only: take (or keep) the lease on delivering call_id's webhook (followup:
     * its due follow-up). 1 if this gateway holds it now, 0 if another live gateway does (or
     * the follow-up is done), -1 on error. */
    int (*claim_webhook)(void *h, const char *call_id, bool followup, struct gate_error *err);
    /* Shared stores only: call_id's follow-up is over (sent or given up): nobody adopts it. */
    int (*followup_done)(void *h, const char *call_id, struct gate_error *err);
    /* The call one of whose decision tokens hashes to token_sha256: 1 + call_id (40 bytes). */
    int (*find_by_token)(void *h, const char *token_sha256, char call_id[40],
                         struct gate_error *err);
    /* Add a decision token (its hash) for a new delivery of call_id's webhook. Earlier tokens
     * stay valid: a receiver may have got a delivery whose 2xx we never recorded. Every
     * token dies with the pending state (a decision is a CAS from pending_approval). */
    int (*add_token)(void *h, const char *call_id, const char *token_sha256,
                     struct gate_error *err);
    /* Record one webhook delivery attempt (http_status 0 = no answer; error may be NULL). */
    int (*record_attempt)(void *h, const char *call_id, int attempt, int64_t ts_ms, int http_status,
                          const char *error, struct gate_error *err);
    /* Mark the webhook delivered (once): 1 if it was not yet (hook ran), 0 if it was. */
    int (*mark_delivered)(void *h, const char *call_id, store_hook hook, void *ctx,
                          struct gate_error *err);
};

extern const struct approval_store_ops approval_store_sqlite;
extern const struct approval_store_ops approval_store_pg;

void approval_rows_free(struct approval_row *rows, size_t n);

#endif
