/* approval.h: human approval for irreversible and high-stakes tools.
 *
 * A call whose policy requires approval is held: stored durably (SQLite, WAL,
 * synchronous=FULL, in STATE/approval.db), announced to the approver endpoint
 * by a signed webhook (Standard Webhooks: HMAC-SHA256 over "id.timestamp.body"),
 * and run exactly once, through the gateway's run callback, only after an
 * authenticated decision bound to the call id, tool, args_sha256 and policy
 * hash. Every transition is a compare-and-set in the store plus an audit record,
 * both durable before anything is acknowledged.
 */
#ifndef GATE_APPROVAL_H
#define GATE_APPROVAL_H

#include <jansson.h>
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

/* Runs an approved call in its sandbox (the gateway's gw_execute behind it). Resolves the tool's
 * current policy and refuses (-1) if its hash is not policy_sha256. *result: the call record;
 * set, even when -1 is returned, whenever the tool was started. */
typedef int (*approval_run_fn)(void *ctx, const char *tool, const char *policy_sha256,
                               const char *call_id, const char *args_json, const char *args_sha256,
                               const char *agent, const char *session, json_t **result,
                               struct gate_error *err);

int approval_open(const char *state_dir, const struct approval_config *cfg, struct audit_log *audit,
                  const char *public_url, approval_run_fn run, void *run_ctx, struct approval **out,
                  struct gate_error *err);
void approval_close(struct approval *a);
/* Start approved calls that had not started and re-send undelivered webhooks. Called once the
 * gateway is up (after its HTTP server started), so that a failed start never strands a run. */
int approval_resume(struct approval *a, struct gate_error *err);

/* Hold a validated call. On success *response is the 202 body (owned by the caller). */
int approval_hold(struct approval *a, const struct policy *p, const char *call_id,
                  const char *args_json, const char *args_sha256, const char *agent,
                  const char *session, json_t **response, struct gate_error *err);

/* The record of a held call (new reference), or NULL if no call with that id was held.
 * wait_ms > 0 blocks until the call reaches a final state or wait_ms elapses. */
json_t *approval_call_record(struct approval *a, const char *call_id, uint64_t wait_ms);

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

/* Begin stopping (idempotent; approval_close does it too): long polls return at once, no
 * more webhooks are sent and no more calls expire; approved calls already running go on.
 * Call it before stopping the HTTP server, so no handler stays blocked in a long poll. */
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
