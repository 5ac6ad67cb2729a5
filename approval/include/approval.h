/* approval.h: human approval for irreversible and high-stakes tools.
 *
 * A call whose policy requires approval is held: stored durably (SQLite, WAL,
 * synchronous=FULL, in STATE/approval.db), announced to the approver endpoint
 * by a signed webhook (Standard Webhooks: HMAC-SHA256 over "id.timestamp.body"),
 * and run exactly once, through the run hook (the call engine), only after an
 * authenticated decision bound to the call id, tool, args_sha256 and policy
 * hash. Every transition is a compare-and-set in the store plus an audit record,
 * both durable before anything is acknowledged.
 */
#ifndef GATE_APPROVAL_H
#define GATE_APPROVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "gate.h"
#include "policy.h"

struct approval;

/* The body sent to an endpoint: Standard Webhooks JSON, or a Slack incoming-webhook message. */
enum approval_format { APPROVAL_FORMAT_STANDARD, APPROVAL_FORMAT_SLACK, APPROVAL_FORMAT_DISCORD };

struct approval_config {
    char *webhook_url;     /* default endpoint; NULL = none configured */
    char *webhook_secret;  /* "whsec_..." (from the file or from webhook_secret_env) */
    char *webhook_ca_file; /* CA certificates (PEM) trusted for https:// besides the system's */
    enum approval_format webhook_format; /* of webhook_url (a policy's own endpoint: standard) */
    char *public_url; /* base of the links approvers get ("https://gate.example.org"); NULL:
                       * the gateway's listen address */
    /* The top-level `database:` key: a libpq URI (postgresql://...) of a store shared by
     * several gateways, or NULL: the embedded SQLite store in the state directory. */
    char *database;
    char *database_password; /* from database.password_env; NULL: libpq's PGPASSWORD/.pgpass */
};

/* Parse the `approval:` section of the gateway config (node may be NULL: defaults). Its
 * `approvers` are identities, read by the identity module (agents.h), and skipped here. */
int approval_config_parse(const struct ynode *node, struct approval_config *cfg,
                          struct gate_error *err);
void approval_config_free(struct approval_config *cfg);
/* Parse the gateway config's top-level `database:` (node may be NULL: none) into cfg:
 * either a URI, or {url: URI, password_env: VAR}. */
int approval_database_parse(const struct ynode *node, struct approval_config *cfg,
                            struct gate_error *err);
/* Bring cfg->database's schema to this gateway's version (check_only: only read it), under an
 * advisory lock so that gateways starting together migrate once. *version is the schema's
 * version afterwards, *latest this gateway's. */
int approval_db_migrate(const struct approval_config *cfg, bool check_only, int *version,
                        int *latest, struct gate_error *err);

/* Per-agent quotas counted in cfg->database, so that several gateways give an agent its quota
 * once (store_pg_quota.c). *q is owned by the caller (approval_quota_close). begin: 0 admitted
 * (match with one end), -1 with TOO_MANY_CALLS (quota named, *retry_after set) when refused,
 * -1 with another code when the database cannot count (the caller counts locally then). */
int approval_quota_open(const struct approval_config *cfg, void **q, struct gate_error *err);
void approval_quota_close(void *q);
int approval_quota_begin(void *q, const char *agent, unsigned max_concurrent, unsigned rate_per_min,
                         unsigned *retry_after, struct gate_error *err);
void approval_quota_end(void *q, const char *agent);

/* A held call's identity: what was held, and what an approved call runs with. */
struct approval_call {
    const char *call_id;
    const char *tool;
    const char *policy_sha256;
    const char *args_json; /* the exact bytes the tool reads */
    const char *args_sha256;
    const char *agent;   /* who asked; may be NULL */
    const char *session; /* may be NULL */
    /* Held calls of agent awaiting approval allowed at once (max_pending); 0 = no limit. The
     * hold counts and inserts in one transaction of the store (a shared store under a lock of
     * the agent's), so however many gateways hold at once, no more than this are held. */
    unsigned max_pending;
};

/* What the approval module calls back into (the call engine). */
struct approval_hooks {
    /* Run an approved call now, under the policy it was shown: refuse (-1, DECISION_MISMATCH or
     * TOOL_NOT_FOUND) if the tool's current policy hash is not call->policy_sha256. *result is
     * the call record, set (owned by the caller) even when -1 is returned, whenever the tool
     * was started. */
    int (*run)(void *ctx, const struct approval_call *call, json_t **result,
               struct gate_error *err);
    /* A held call changed state (held, decided, started, finished, expired, interrupted);
     * call_id NULL: any may have (changes made elsewhere were missed). Called without any
     * approval lock held; must not block. May be NULL. */
    void (*on_change)(void *ctx, const char *call_id);
    void *ctx;
};

int approval_open(const char *state_dir, const struct approval_config *cfg, struct audit_log *audit,
                  const char *public_url, const struct approval_hooks *hooks, struct approval **out,
                  struct gate_error *err);
void approval_close(struct approval *a);
/* Start approved calls that had not started and re-send undelivered webhooks. Called once the
 * gateway is up (after its HTTP server started), so that a failed start never strands a run. */
int approval_resume(struct approval *a, struct gate_error *err);

/* Hold a validated call of policy p. On success *response is the 202 body (owned by the
 * caller). TOO_MANY_CALLS if call->max_pending calls of its agent are held already. */
int approval_hold(struct approval *a, const struct policy *p, const struct approval_call *call,
                  json_t **response, struct gate_error *err);

/* The record of a held call (new reference), or NULL if no call with that id was held (or, when
 * agent is not NULL, if another agent made it) with err untouched, or NULL with err set when
 * the store could not be read (a shared database down: the call may well exist). *final (may
 * be NULL): whether it is in a final state. */
json_t *approval_call_record(struct approval *a, const char *call_id, const char *agent,
                             bool *final, struct gate_error *err);

/* ---- additions (approval engineer) ---------------------------------------------------- */

/* Who decides or lists. The gateway authenticates approvers (agents.h); a bare decision token
 * (from a webhook) is checked here, against the hashes the store keeps. */
struct approval_auth {
    const char *approver; /* an authenticated approver's name, or NULL */
    const char *bearer;   /* otherwise the Authorization header value (a decision token) */
    bool (*may)(const void *ctx, const char *tool); /* the approver's tools; NULL: every tool */
    const void *may_ctx;
};

/* Decide a held call. body is the parsed JSON object {"decision":"approve"|"deny",
 * "approver"?,"reason"?,"args_sha256","tool"?,"policy_sha256"?}; with a decision token,
 * "approver" is the name the person typed (optional; the record then says "decision token").
 * Errors: UNAUTHORIZED, BAD_REQUEST, CALL_NOT_FOUND (also for a tool the approver may not see),
 * DECISION_MISMATCH, ALREADY_DECIDED, APPROVAL_EXPIRED. On success *response is the call's
 * record after the decision (owned by the caller); an approved call then runs once on a worker
 * thread. */
int approval_decide(struct approval *a, const char *call_id, const struct approval_auth *auth,
                    const json_t *body, json_t **response, struct gate_error *err);

/* One held call with its arguments and decision (the record approval_list gives), for whoever
 * may decide it: an approver who may see its tool, or the call's own decision token (also after
 * the decision, so a page can say who decided). Errors: UNAUTHORIZED, DECISION_MISMATCH (another
 * call's token), CALL_NOT_FOUND. *out owned by the caller. */
int approval_view(struct approval *a, const char *call_id, const struct approval_auth *auth,
                  json_t **out, struct gate_error *err);

struct approval_query {
    const char *status;  /* NULL or "pending" (pending_approval), "all", or a state name */
    const char *call_id; /* just that call (CALL_NOT_FOUND if it was never held), or NULL */
    size_t limit;        /* 0: 100; at most 1000 */
    const char *cursor;  /* next_cursor of the previous page, or NULL */
};
/* {"approvals":[...],"next_cursor"?} of held calls with their arguments, oldest first, for an
 * approver only. *out owned by the caller. */
int approval_list(struct approval *a, const struct approval_auth *auth,
                  const struct approval_query *q, json_t **out, struct gate_error *err);

/* "sqlite" or "postgresql" (NULL without a queue), and whether a shared store's database
 * answered its last heartbeat (why, if not; always true for the embedded store). */
const char *approval_store_name(struct approval *a);
bool approval_store_healthy(struct approval *a, char *why, size_t len);

/* Begin stopping (idempotent; approval_close does it too): no more webhooks are sent, no more
 * calls expire and no more approved calls start; approved calls already running go on. */
void approval_shutdown(struct approval *a);
/* Approved calls running now on the module's worker threads (for the shutdown grace period:
 * a call still running at exit is found `started` at the next start and marked interrupted). */
unsigned approval_running(struct approval *a);

/* Withdraw a held call at its caller's request (MCP notifications/cancelled): compare-and-set
 * pending_approval -> withdrawn (final) with a call.withdrawn audit record. agent (NULL: any)
 * must be the agent that made the call. Errors: CALL_NOT_FOUND, ALREADY_DECIDED (no longer
 * pending: a decision or expiry came first). */
int approval_withdraw(struct approval *a, const char *call_id, const char *agent,
                      struct gate_error *err);

/* Standard Webhooks signature of one message: out = "v1,<base64(HMAC-SHA256(key,
 * msg_id.timestamp.body))>" where key is the base64 part of secret ("whsec_..."), decoded.
 * out must hold at least 64 bytes. */
int approval_webhook_sign(const char *secret, const char *msg_id, const char *timestamp,
                          const char *body, size_t body_len, char *out, size_t out_len,
                          struct gate_error *err);

#endif
