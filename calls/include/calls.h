/* calls.h: the call engine: one place that owns a tool call from its request to its record.
 *
 * Every door (the HTTP API, MCP, the CLI through HTTP, and the approval module resuming an
 * approved call) hands the engine one struct call_request. The engine validates it against the
 * tool's policy, then either holds it for approval (approval module) or runs it now:
 * call.started (durable) -> sandbox -> call.finished (durable) -> record. It owns the current
 * policy set (loaded, prepared per tier and swapped atomically on reload), the concurrency
 * limit, the per-call records that GET /v1/calls/{id} reads, and the call counters of
 * /metrics. It never calls back up into the gateway except through the change callback the
 * gateway hands it (to wake long polls).
 */
#ifndef GATE_CALLS_H
#define GATE_CALLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "approval.h"
#include "audit.h"
#include "gate.h"
#include "policy.h"

struct call_engine;

struct call_engine_config {
    const char *policy_dir;
    unsigned max_concurrent; /* calls running at once, direct and approved; beyond: 429 */
    struct audit_log *audit; /* borrowed; outlives the engine */
    /* A call's state changed (started, finished, held, decided, expired...). Called from any
     * thread, with no engine lock held; it must not block. May be NULL. */
    void (*on_change)(void *ctx, const char *call_id);
    void *on_change_ctx;
};

/* Open the engine and load the policy set (every error is added to diags; on failure nothing
 * is opened). The approval queue is opened separately with call_engine_open_approval, once the
 * gateway knows its public URL. *out is owned by the caller (call_engine_close). */
int call_engine_open(const struct call_engine_config *cfg, struct call_engine **out,
                     struct policy_diags *diags, struct gate_error *err);
/* Open the approval queue under state_dir (see approval_open) with the engine as its runner. */
int call_engine_open_approval(struct call_engine *e, const char *state_dir,
                              const struct approval_config *cfg, const char *public_url,
                              struct gate_error *err);
/* Start approved calls left over from a previous run and resend undelivered webhooks. */
int call_engine_resume(struct call_engine *e, struct gate_error *err);
/* Stop accepting calls (submit answers SHUTTING_DOWN) and wake long polls in the approval
 * queue. Idempotent. */
void call_engine_shutdown(struct call_engine *e);
/* Calls running now (direct and approved). */
unsigned call_engine_running(struct call_engine *e);
/* Waits for approved runs to finish and frees everything. */
void call_engine_close(struct call_engine *e);

/* Load, validate and prepare the whole policy directory; on success swap it in, audited as
 * policy.loaded. On failure the old set stays, each error is in diags, logged, audited as
 * policy.rejected and counted. */
int call_engine_reload(struct call_engine *e, struct policy_diags *diags);
/* The current policy set with one reference taken (policy_set_unref when done). */
struct policy_set *call_engine_policies(struct call_engine *e);
/* The approval queue (NULL until opened). Borrowed. */
struct approval *call_engine_approval(struct call_engine *e);

/* One call, from any door. Strings are borrowed for the duration of call_submit. */
struct call_request {
    const char *tool;
    const json_t *arguments; /* a JSON object; NULL means {} */
    const char *agent;       /* who calls: the authenticated agent ("anonymous" when none) */
    const char *session;     /* a free label chosen by the caller; may be NULL */
    /* The caller's grant: an extra schema its arguments must satisfy as well (NULL: none),
     * and its quota of held calls awaiting approval (0: none). */
    const struct policy_schema *grant;
    unsigned max_pending;
};

struct call_outcome {
    json_t *record;       /* the call's record (owned by the caller); NULL when refused */
    bool held;            /* held for approval: record is the 202 body */
    unsigned retry_after; /* seconds, for TOO_MANY_CALLS */
};

/* Validate and run or hold a call. Returns 0 with out->record set (the call ran, whatever its
 * status, or it is held), or -1 with err set: refused before anything ran (audited as
 * call.rejected; tool_not_found, invalid_arguments, too_many_calls, shutting_down...), or the
 * sandbox or the audit log failed (out->record then says what happened, with call_id). */
int call_submit(struct call_engine *e, const struct call_request *req, struct call_outcome *out,
                struct gate_error *err);

/* Audit a call refused at a door before it reached call_submit (unauthorized, tool not granted,
 * a quota): call.rejected with tool (may be NULL), agent (may be NULL), err's code and message.
 * Returns -1; err keeps the refusal unless the audit log failed too. */
int call_reject(struct call_engine *e, const char *tool, const char *agent, struct gate_error *err);

/* The record of a call (new reference), or NULL if there is none visible to agent (NULL: any
 * agent), or NULL with err set when the approval store could not be read (a held call's
 * record is there). *final (may be NULL) says whether the call has reached a final state. */
json_t *call_get(struct call_engine *e, const char *call_id, const char *agent, bool *final,
                 struct gate_error *err);

/* Prometheus text for the engine's counters (calls by tool/status/isolation, durations by
 * isolation, inflight, reload failures). */
void call_engine_metrics(struct call_engine *e, struct gate_buf *out);

#endif
