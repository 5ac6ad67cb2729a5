/* quota.c: per-agent running calls and call rate (a token bucket). Held calls awaiting approval
 * are counted by the approval store (they survive restarts); this only knows the limit. */
#include <math.h>

#include "agents_internal.h"

void quotas_fill(struct quotas *q, const struct quotas *d)
{
    if (!q->max_concurrent) q->max_concurrent = d->max_concurrent;
    if (!q->rate_per_min) q->rate_per_min = d->rate_per_min;
    if (!q->max_pending) q->max_pending = d->max_pending;
}

/* The mutable counters of p (the principal's agent; approvers call no tools). */
static struct agent *counters(const struct principal *p)
{
    return p->kind == PRINCIPAL_APPROVER ? NULL : (struct agent *)p->agent;
}

/* Refill the bucket for the time passed; burst = one minute's rate. Called with ag->lock. */
static void refill(struct agent *ag, uint64_t now)
{
    double cap = ag->quotas.rate_per_min;
    if (!ag->bucket_started) {
        ag->bucket = cap;
        ag->bucket_started = true;
    } else {
        ag->bucket += (double)(now - ag->refill_ns) / 1e9 * cap / 60.0;
        if (ag->bucket > cap) ag->bucket = cap;
    }
    ag->refill_ns = now;
}

void agents_share_quotas(struct agents *a, const struct agents_shared_quota *q)
{
    a->shared = *q;
}

/* 1 admitted by the shared counters, 0 to be counted here, -1 refused (err filled). */
static int shared_begin(struct agents *a, struct agent *ag, unsigned *retry_after,
                        struct gate_error *err)
{
    if (!a->shared.begin || (!ag->quotas.max_concurrent && !ag->quotas.rate_per_min)) return 0;
    if (a->shared.begin(a->shared.ctx, ag->name, ag->quotas.max_concurrent, ag->quotas.rate_per_min,
                        retry_after, err) == 0)
        return 1;
    if (err->code == GATE_E_TOO_MANY_CALLS) return -1;
    /* The shared count is unavailable (database down): this gateway's own count meanwhile,
     * so an agent gets at most its quota per gateway, as without a database. */
    gate_log("warn", "quota.shared_unavailable", "agent '%s': %s; counting on this gateway",
             ag->name, err->msg);
    *retry_after = 0;
    *err = (struct gate_error){0};
    return 0;
}

int agents_call_begin(struct agents *a, const struct principal *p, unsigned *retry_after,
                      struct gate_error *err)
{
    struct agent *ag = counters(p);
    *retry_after = 0;
    if (!ag) return 0;
    int shared = shared_begin(a, ag, retry_after, err);
    if (shared < 0) return -1;
    pthread_mutex_lock(&ag->lock);
    int rc = 0;
    if (shared) {
        ag->shared++;
    } else if (ag->quotas.max_concurrent && ag->running >= ag->quotas.max_concurrent) {
        *retry_after = 1;
        rc = gate_err(err, GATE_E_TOO_MANY_CALLS,
                      "quota max_concurrent: agent '%s' already runs %u calls", ag->name,
                      ag->running);
    } else if (ag->quotas.rate_per_min) {
        refill(ag, gate_monotonic_ns());
        if (ag->bucket < 1.0) {
            double wait_s = (1.0 - ag->bucket) * 60.0 / ag->quotas.rate_per_min;
            *retry_after = (unsigned)ceil(wait_s);
            rc = gate_err(err, GATE_E_TOO_MANY_CALLS,
                          "quota rate: agent '%s' may make %u calls a minute", ag->name,
                          ag->quotas.rate_per_min);
        } else {
            ag->bucket -= 1.0;
        }
    }
    if (rc == 0) ag->running++;
    pthread_mutex_unlock(&ag->lock);
    return rc;
}

void agents_call_end(struct agents *a, const struct principal *p)
{
    struct agent *ag = counters(p);
    if (!ag) return;
    pthread_mutex_lock(&ag->lock);
    if (ag->running) ag->running--;
    /* Shared slots are interchangeable: ending any call of the agent releases one. */
    bool shared = ag->shared > 0 && ag->running < ag->shared;
    if (shared) ag->shared--;
    pthread_mutex_unlock(&ag->lock);
    if (shared) a->shared.end(a->shared.ctx, ag->name);
}

unsigned agents_max_pending(const struct principal *p)
{
    return p->kind == PRINCIPAL_APPROVER ? 0 : p->agent->quotas.max_pending;
}
