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

int agents_call_begin(struct agents *a, const struct principal *p, unsigned *retry_after,
                      struct gate_error *err)
{
    (void)a;
    struct agent *ag = counters(p);
    *retry_after = 0;
    if (!ag) return 0;
    pthread_mutex_lock(&ag->lock);
    int rc = 0;
    if (ag->quotas.max_concurrent && ag->running >= ag->quotas.max_concurrent) {
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
    (void)a;
    struct agent *ag = counters(p);
    if (!ag) return;
    pthread_mutex_lock(&ag->lock);
    if (ag->running) ag->running--;
    pthread_mutex_unlock(&ag->lock);
}

unsigned agents_max_pending(const struct principal *p)
{
    return p->kind == PRINCIPAL_APPROVER ? 0 : p->agent->quotas.max_pending;
}
