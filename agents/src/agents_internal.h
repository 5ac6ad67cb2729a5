/* agents_internal.h: the identity module's data (private to agents/). */
#ifndef GATE_AGENTS_INTERNAL_H
#define GATE_AGENTS_INTERNAL_H

#include <pthread.h>

#include "agents.h"

struct quotas {
    unsigned max_concurrent; /* running calls; 0 = unlimited */
    unsigned rate_per_min;   /* calls per minute; 0 = unlimited */
    unsigned max_pending;    /* held calls awaiting approval; 0 = unlimited */
};
/* Take every quota q does not set from d. */
void quotas_fill(struct quotas *q, const struct quotas *d);

struct grant {
    char *glob;
    struct policy_schema *schema;
};

struct agent {
    char *name;
    unsigned char token_sha[32];
    char **tools; /* NULL-terminated globs; NULL = none */
    struct grant *grants;
    size_t ngrants;
    struct quotas quotas;
    /* counters, under lock */
    pthread_mutex_t lock;
    unsigned running;
    double bucket;       /* rate tokens available */
    uint64_t refill_ns;  /* when bucket was last refilled */
    bool bucket_started; /* the bucket starts full */
    unsigned shared;     /* running calls counted by a->shared (released through it) */
};

struct approver {
    char *name;
    unsigned char token_sha[32];
    char **tools; /* NULL = every tool */
};

enum { AUTH_MISSING, AUTH_INVALID, AUTH__COUNT };

struct agents {
    struct agent *agents;
    size_t nagents;
    struct approver *approvers;
    size_t napprovers;
    struct quotas defaults;
    bool metrics_public;
    struct agent anonymous; /* every caller when no agent is configured */
    pthread_mutex_t lock;
    uint64_t auth_failures[AUTH__COUNT];
    struct agents_shared_quota shared; /* begin NULL: quotas are this gateway's own */
};

#endif
