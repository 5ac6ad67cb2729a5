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

struct approval_approver {
    char *name;
    char *token; /* bearer token */
};

struct approval_config {
    char *webhook_url;    /* default endpoint; NULL = none configured */
    char *webhook_secret; /* "whsec_..." (from the file or from webhook_secret_env) */
    struct approval_approver *approvers;
    size_t n_approvers;
};

/* Parse the `approval:` section of the gateway config (node may be NULL: defaults). */
int approval_config_parse(const struct ynode *node, struct approval_config *cfg,
                          struct gate_error *err);
void approval_config_free(struct approval_config *cfg);

/* A held call's identity: what was held, and what an approved call runs with. */
struct approval_call {
    const char *call_id;
    const char *tool;
    const char *policy_sha256;
    const char *args_json; /* the exact bytes the tool reads */
    const char *args_sha256;
    const char *agent;   /* who asked; may be NULL */
    const char *session; /* may be NULL */
};

/* What the approval module calls back into (the call engine). */
struct approval_hooks {
    /* Run an approved call now, under the policy it was shown: refuse (-1, DECISION_MISMATCH or
     * TOOL_NOT_FOUND) if the tool's current policy hash is not call->policy_sha256. *result is
     * the call record, set (owned by the caller) even when -1 is returned, whenever the tool
     * was started. */
    int (*run)(void *ctx, const struct approval_call *call, json_t **result,
               struct gate_error *err);
    /* A held call changed state (held, decided, started, finished, expired, interrupted).
     * Called without any approval lock held; must not block. May be NULL. */
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
 * caller). */
int approval_hold(struct approval *a, const struct policy *p, const struct approval_call *call,
                  json_t **response, struct gate_error *err);

/* The record of a held call (new reference), or NULL if no call with that id was held (or, when
 * agent is not NULL, if another agent made it). *final (may be NULL): whether it is in a final
 * state. Never blocks. */
json_t *approval_call_record(struct approval *a, const char *call_id, const char *agent,
                             bool *final);

/* ---- additions (approval engineer) ---------------------------------------------------- */

/* Decide a held call. authorization is the request's Authorization header (may be NULL):
 * "Bearer <approver token>" or "Bearer <decision token from the webhook>". body is the
 * parsed JSON object {"decision":"approve"|"deny","approver","reason","args_sha256",
 * "tool"?,"policy_sha256"?}. Errors: UNAUTHORIZED, BAD_REQUEST, CALL_NOT_FOUND,
 * DECISION_MISMATCH, ALREADY_DECIDED, APPROVAL_EXPIRED. On success *response is the call's
 * record after the decision (owned by the caller); an approved call then runs once on a
 * worker thread. */
int approval_decide(struct approval *a, const char *call_id, const char *authorization,
                    const json_t *body, json_t **response, struct gate_error *err);

/* {"approvals":[...]} of held calls with their arguments, for an approver token only.
 * status: NULL or "pending" (pending_approval), "all", or a state name. call_id (may be
 * NULL): just that call (CALL_NOT_FOUND if it was never held). *out owned by the caller. */
int approval_list(struct approval *a, const char *authorization, const char *status,
                  const char *call_id, json_t **out, struct gate_error *err);

/* Begin stopping (idempotent; approval_close does it too): no more webhooks are sent, no more
 * calls expire and no more approved calls start; approved calls already running go on. */
void approval_shutdown(struct approval *a);
/* Approved calls running now on the module's worker threads (for the shutdown grace period:
 * a call still running at exit is found `started` at the next start and marked interrupted). */
unsigned approval_running(struct approval *a);

/* Standard Webhooks signature of one message: out = "v1,<base64(HMAC-SHA256(key,
 * msg_id.timestamp.body))>" where key is the base64 part of secret ("whsec_..."), decoded.
 * out must hold at least 64 bytes. */
int approval_webhook_sign(const char *secret, const char *msg_id, const char *timestamp,
                          const char *body, size_t body_len, char *out, size_t out_len,
                          struct gate_error *err);

#endif
