/* pool.c: warm gVisor sandboxes, booted ahead of demand.
 *
 * Each gvisor policy with pool.size > 0 owns a refill thread that keeps
 * pool.size sandboxes booted, their launchers waiting for a call header. A call
 * takes one (a hit) and the sandbox serves exactly that call and is destroyed;
 * the thread boots a replacement in the background. An empty pool is a miss and
 * the call boots its own sandbox (a cold start). Booting is serial per policy:
 * on two shared cores, parallel boots only slow each other down.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "gvisor_internal.h"

/* After a failed boot, wait before the next attempt so a broken runsc does not spin: 1 s,
 * doubling up to 30 s while boots keep failing. */
#define RETRY_DELAY_MS 1000
#define RETRY_DELAY_MAX_MS 30000

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gv_policy *live; /* every prepared gvisor policy not yet released */

static void wait_until(struct gv_policy *gp, uint64_t delay_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(delay_ms / 1000);
    ts.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&gp->cond, &gp->lock, &ts);
}

static void *refill_main(void *arg)
{
    struct gv_policy *gp = arg;
    uint64_t delay_ms = RETRY_DELAY_MS;
    pthread_mutex_lock(&gp->lock);
    while (!gp->stopping) {
        if (gp->n_ready >= gp->pool_size) {
            pthread_cond_wait(&gp->cond, &gp->lock);
            continue;
        }
        gp->spawning++;
        pthread_mutex_unlock(&gp->lock);
        struct gv_box *box = NULL;
        struct gate_error err = {0};
        int rc = gv_box_spawn(gp, GV_BOOT_TIMEOUT_MS, &box, &err);
        pthread_mutex_lock(&gp->lock);
        gp->spawning--;
        if (rc < 0) {
            gp->spawn_failures++;
            gate_log("warn", "gvisor.pool_refill_failed", "tool %s: %s", gp->name, err.msg);
            wait_until(gp, delay_ms);
            delay_ms = delay_ms * 2 > RETRY_DELAY_MAX_MS ? RETRY_DELAY_MAX_MS : delay_ms * 2;
            continue;
        }
        delay_ms = RETRY_DELAY_MS;
        if (gp->stopping || gp->n_ready >= gp->pool_size) {
            pthread_mutex_unlock(&gp->lock);
            gv_box_destroy(box);
            pthread_mutex_lock(&gp->lock);
            continue;
        }
        gp->ready[gp->n_ready++] = box;
    }
    pthread_mutex_unlock(&gp->lock);
    return NULL;
}

int gv_pool_start(struct gv_policy *gp, struct gate_error *err)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&gp->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&gp->lock, NULL);
    if (gp->pool_size == 0) return 0;
    gp->ready = calloc(gp->pool_size, sizeof(*gp->ready));
    if (!gp->ready) return gate_err(err, GATE_E_NOMEM, "out of memory");
    int e = pthread_create(&gp->thread, NULL, refill_main, gp);
    if (e != 0) return gate_err_errno(err, GATE_E_INTERNAL, e, "gvisor: start the pool thread");
    gp->thread_started = true;
    return 0;
}

struct gv_box *gv_pool_take(struct gv_policy *gp)
{
    for (;;) {
        pthread_mutex_lock(&gp->lock);
        struct gv_box *box = NULL;
        if (gp->n_ready > 0 && !gp->stopping) {
            /* Oldest first: every pooled sandbox gets used, none idles for ever. */
            box = gp->ready[0];
            memmove(gp->ready, gp->ready + 1, (gp->n_ready - 1) * sizeof(*gp->ready));
            gp->n_ready--;
            pthread_cond_signal(&gp->cond);
        }
        pthread_mutex_unlock(&gp->lock);
        /* A sandbox that died while it waited (its keeper exited) cannot serve the call. */
        int st = 0;
        if (box && waitpid(box->keeper, &st, WNOHANG) == box->keeper) {
            gate_log("warn", "gvisor.pool_sandbox_died", "tool %s: %s died while idle", gp->name,
                     box->id);
            box->keeper = -1;
            gv_box_destroy(box);
            continue;
        }
        pthread_mutex_lock(&gp->lock);
        if (box)
            gp->hits++;
        else
            gp->misses++;
        pthread_mutex_unlock(&gp->lock);
        return box;
    }
}

void gv_pool_stop(struct gv_policy *gp)
{
    pthread_mutex_lock(&gp->lock);
    gp->stopping = true;
    pthread_cond_broadcast(&gp->cond);
    bool join = gp->thread_started;
    gp->thread_started = false;
    pthread_mutex_unlock(&gp->lock);
    if (join) pthread_join(gp->thread, NULL);
    pthread_mutex_lock(&gp->lock);
    uint32_t n = gp->n_ready;
    struct gv_box *boxes[16 + 1];
    for (uint32_t i = 0; i < n && i < 17; i++)
        boxes[i] = gp->ready[i];
    gp->n_ready = 0;
    pthread_mutex_unlock(&gp->lock);
    for (uint32_t i = 0; i < n && i < 17; i++)
        gv_box_destroy(boxes[i]);
}

void gv_pool_register(struct gv_policy *gp)
{
    pthread_mutex_lock(&list_lock);
    gp->next = live;
    live = gp;
    pthread_mutex_unlock(&list_lock);
}

void gv_pool_unregister(struct gv_policy *gp)
{
    pthread_mutex_lock(&list_lock);
    for (struct gv_policy **pp = &live; *pp; pp = &(*pp)->next)
        if (*pp == gp) {
            *pp = gp->next;
            break;
        }
    pthread_mutex_unlock(&list_lock);
}

void gv_pool_stop_all(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct gv_policy *gp = live; gp; gp = gp->next)
        gv_pool_stop(gp);
    pthread_mutex_unlock(&list_lock);
}

/* Prometheus label values escape backslash, double quote and newline. */
static void label(struct gate_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            gate_buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            gate_buf_printf(out, "\\n");
        else
            gate_buf_append(out, s, 1);
    }
}

static void metric(struct gate_buf *out, const char *name, const char *tool, uint64_t v)
{
    gate_buf_printf(out, "%s{tool=\"", name);
    label(out, tool);
    gate_buf_printf(out, "\"} %llu\n", (unsigned long long)v);
}

/* During a reload the old and the new policy of a tool are both live for a moment; report only
 * the newest (the list's head is the most recent), so no series appears twice. */
static bool shadowed(const struct gv_policy *gp)
{
    for (const struct gv_policy *q = live; q != gp; q = q->next)
        if (strcmp(q->name, gp->name) == 0) return true;
    return false;
}

void gv_pool_metrics(struct gate_buf *out)
{
    static const char *const families[][3] = {
        {"gatehouse_gvisor_pool_size", "gauge", "Warm gVisor sandboxes ready for a call."},
        {"gatehouse_gvisor_pool_hits_total", "counter", "gVisor calls served by a warm sandbox."},
        {"gatehouse_gvisor_pool_misses_total", "counter",
         "gVisor calls that booted their own sandbox (empty pool)."},
        {"gatehouse_gvisor_pool_boot_failures_total", "counter",
         "Warm gVisor sandboxes that failed to boot."},
    };
    pthread_mutex_lock(&list_lock);
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        /* Prometheus wants each family's samples together, after its HELP and TYPE. */
        gate_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f][0], families[f][2],
                        families[f][0], families[f][1]);
        for (struct gv_policy *gp = live; gp; gp = gp->next) {
            if (shadowed(gp)) continue;
            pthread_mutex_lock(&gp->lock);
            uint64_t v = f == 0   ? gp->n_ready
                         : f == 1 ? gp->hits
                         : f == 2 ? gp->misses
                                  : gp->spawn_failures;
            pthread_mutex_unlock(&gp->lock);
            metric(out, families[f][0], gp->name, v);
        }
    }
    pthread_mutex_unlock(&list_lock);
}
