/* calls_internal.h: what the call engine's files share (private to calls/). */
#ifndef GATE_CALLS_INTERNAL_H
#define GATE_CALLS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "calls.h"
#include "sandbox.h"

/* ---- recent records of direct calls (records.c) ---------------------------------------- */
struct call_records;
struct call_records *call_records_new(void);
void call_records_free(struct call_records *r);
/* Keep (or replace) call_id's record of about `bytes`, made by agent (takes a reference). The
 * oldest records go first when the count or byte budget is reached. */
void call_records_put(struct call_records *r, const char *call_id, const char *agent,
                      json_t *record, size_t bytes);
/* A new reference to call_id's record, or NULL (also when agent is not NULL and differs). */
json_t *call_records_get(struct call_records *r, const char *call_id, const char *agent);

/* ---- counters (metrics.c) ----------------------------------------------------------------- */
struct call_metrics;
struct call_metrics *call_metrics_new(void);
void call_metrics_free(struct call_metrics *m);
void call_metrics_call(struct call_metrics *m, const char *tool, const char *status,
                       const char *isolation, const char *agent, uint64_t duration_us);
void call_metrics_reload_failed(struct call_metrics *m);
void call_metrics_render(struct call_metrics *m, struct gate_buf *out);

/* ---- the engine (engine.c) ---------------------------------------------------------------- */
struct call_engine {
    struct call_engine_config cfg; /* policy_dir is our own copy */
    pthread_mutex_t policy_lock;
    struct policy_set *policies; /* current set; swapped under policy_lock */
    struct approval *approval;
    struct call_records *records;
    struct call_metrics *metrics;
    atomic_uint inflight; /* calls running now: direct and approved */
    atomic_bool stopping;
};
void call_changed(struct call_engine *e, const char *call_id);

/* ---- running a call (execute.c) ------------------------------------------------------------ */
/* Run a validated call now in p's sandbox: call.started (durable) -> run -> call.finished
 * (durable) -> *record (owned by the caller). With keep, the record is kept for call_get (a held
 * call's record lives in the approval store instead). Returns -1 if the audit log refused a
 * record or the sandbox could not be set up; *record is then still set whenever the sandbox
 * was started, saying what happened. */
int call_execute(struct call_engine *e, const struct policy *p, const struct approval_call *c,
                 bool keep, json_t **record, struct gate_error *err);

#endif
