/* pool.c: warm pools, sandboxes made ready ahead of demand (sbx_internal.h).
 *
 * A pool belongs to one prepared policy of one tier. Its refill thread keeps `size`
 * items ready (booted, restored, whatever the tier's spawn makes). A call takes one
 * (a hit) and the item serves exactly that call; the thread makes a replacement in
 * the background. An empty pool is a miss: the call makes its own. Refills are serial
 * per pool: on two shared cores, parallel ones only slow each other down. Every live
 * pool is on one list, for metrics and for stopping them all at shutdown.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbx_internal.h"

/* After a failed spawn, wait before the next one so a broken setup does not spin: 1 s,
 * doubling up to 30 s while spawns keep failing. */
#define RETRY_DELAY_MS 1000
#define RETRY_DELAY_MAX_MS 30000

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sbx_pool *live; /* every started pool not yet stopped, newest first */

static void wait_ms(struct sbx_pool *p, uint64_t delay_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(delay_ms / 1000);
    ts.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

static void *refill_main(void *arg)
{
    struct sbx_pool *p = arg;
    uint64_t delay_ms = RETRY_DELAY_MS;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        if (p->n_ready >= p->size) {
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        struct gate_error err = {0};
        void *item = p->kind->spawn(p->ctx, &p->stopping, &err);
        pthread_mutex_lock(&p->lock);
        if (!item && p->stopping) break;
        if (!item) {
            p->failures++;
            gate_log("warn", p->kind->refill_failed_event, "tool %s: %s", p->name, err.msg);
            wait_ms(p, delay_ms);
            delay_ms = delay_ms * 2 > RETRY_DELAY_MAX_MS ? RETRY_DELAY_MAX_MS : delay_ms * 2;
            continue;
        }
        delay_ms = RETRY_DELAY_MS;
        if (p->stopping || p->n_ready >= p->size) {
            pthread_mutex_unlock(&p->lock);
            p->kind->destroy(item);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        p->ready[p->n_ready++] = item;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sbx_pool_start(struct sbx_pool *p, const struct sbx_pool_kind *kind, void *ctx,
                   const char *name, uint32_t size, struct gate_error *err)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->ctx = ctx;
    p->size = size > SBX_POOL_MAX ? SBX_POOL_MAX : size;
    if (!(p->name = strdup(name))) return gate_err(err, GATE_E_NOMEM, "out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->lock, NULL);
    p->initialised = true;
    if (p->size > 0) {
        int e = pthread_create(&p->thread, NULL, refill_main, p);
        if (e != 0) return gate_err_errno(err, GATE_E_INTERNAL, e, "start the pool thread");
        p->thread_started = true;
    }
    pthread_mutex_lock(&list_lock);
    p->next = live;
    live = p;
    p->listed = true;
    pthread_mutex_unlock(&list_lock);
    return 0;
}

void *sbx_pool_take(struct sbx_pool *p)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        void *item = NULL;
        if (p->n_ready > 0 && !p->stopping) {
            /* Oldest first: every pooled item gets used, none idles for ever. */
            item = p->ready[0];
            memmove(p->ready, p->ready + 1, (p->n_ready - 1) * sizeof(*p->ready));
            p->n_ready--;
            pthread_cond_signal(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        /* An item that died while it waited cannot serve the call. */
        if (item && p->kind->dead(item)) {
            gate_log("warn", p->kind->died_event, "tool %s: a pooled sandbox died while idle",
                     p->name);
            p->kind->destroy(item);
            continue;
        }
        if (item && p->kind->claimed) p->kind->claimed(item);
        pthread_mutex_lock(&p->lock);
        if (item)
            p->hits++;
        else
            p->misses++;
        pthread_mutex_unlock(&p->lock);
        return item;
    }
}

/* Stop the thread and destroy the idle items; the pool stays listed (and initialised). */
static void drain(struct sbx_pool *p)
{
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->stopping, true, __ATOMIC_RELAXED); /* spawn reads it unlocked */
    pthread_cond_broadcast(&p->cond);
    bool join = p->thread_started;
    p->thread_started = false;
    pthread_mutex_unlock(&p->lock);
    if (join) pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->lock);
    void *items[SBX_POOL_MAX];
    uint32_t n = p->n_ready;
    memcpy(items, p->ready, n * sizeof(*items));
    p->n_ready = 0;
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < n; i++)
        p->kind->destroy(items[i]);
}

void sbx_pool_stop(struct sbx_pool *p)
{
    if (!p->initialised) return;
    pthread_mutex_lock(&list_lock);
    for (struct sbx_pool **pp = &live; p->listed && *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->listed = false;
    pthread_mutex_unlock(&list_lock);
    drain(p);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->name);
    p->initialised = false;
}

void sbx_pool_stop_all(const struct sbx_pool_kind *kind)
{
    pthread_mutex_lock(&list_lock);
    for (struct sbx_pool *p = live; p; p = p->next)
        if (p->kind == kind) drain(p);
    pthread_mutex_unlock(&list_lock);
}

/* Prometheus label values escape backslash, double quote and newline. */
static void sample(struct gate_buf *out, const char *family, const char *suffix, const char *tool,
                   uint64_t v)
{
    gate_buf_printf(out, "%s_%s{tool=\"", family, suffix);
    for (const char *s = tool; *s; s++) {
        if (*s == '\\' || *s == '"')
            gate_buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            gate_buf_printf(out, "\\n");
        else
            gate_buf_append(out, s, 1);
    }
    gate_buf_printf(out, "\"} %llu\n", (unsigned long long)v);
}

/* During a reload the old and the new policy of a tool are both live for a moment: report only
 * the newest (the list's head is the most recent), so no series appears twice. */
static bool shadowed(const struct sbx_pool *p)
{
    for (const struct sbx_pool *q = live; q != p; q = q->next)
        if (q->kind == p->kind && strcmp(q->name, p->name) == 0) return true;
    return false;
}

void sbx_pool_metrics(struct gate_buf *out, const struct sbx_pool_kind *kind)
{
    const char *suffix[] = {"size", "hits_total", "misses_total", kind->failures_suffix};
    const char *type[] = {"gauge", "counter", "counter", "counter"};
    const char *help[] = {kind->help_size, kind->help_hits, kind->help_misses, kind->help_failures};
    pthread_mutex_lock(&list_lock);
    for (size_t f = 0; f < 4; f++) {
        /* Prometheus wants each family's samples together, after its HELP and TYPE. */
        gate_buf_printf(out, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", kind->family, suffix[f], help[f],
                        kind->family, suffix[f], type[f]);
        for (struct sbx_pool *p = live; p; p = p->next) {
            if (p->kind != kind || shadowed(p)) continue;
            pthread_mutex_lock(&p->lock);
            uint64_t v = f == 0 ? p->n_ready : f == 1 ? p->hits : f == 2 ? p->misses : p->failures;
            pthread_mutex_unlock(&p->lock);
            sample(out, kind->family, suffix[f], p->name, v);
        }
    }
    pthread_mutex_unlock(&list_lock);
}
