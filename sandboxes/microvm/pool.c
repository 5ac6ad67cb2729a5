/* pool.c: guests restored from the policy's snapshot ahead of demand.
 *
 * Each microvm policy with pool.size > 0 owns a refill thread that keeps pool.size
 * guests restored and answering (PONG), parked in their jails with the agent idle in
 * read(). A call takes one (a hit); the guest serves exactly that call and is
 * destroyed, and the thread restores a replacement in the background. An empty pool
 * is a miss: the call boots its own guest cold. Restores are serial per policy: on two
 * shared cores, parallel restores only slow each other down.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "microvm.h"

/* After a failed restore, wait before the next one so a broken setup does not spin: 1 s,
 * doubling up to 30 s while restores keep failing. */
#define RETRY_DELAY_MS 1000
#define RETRY_DELAY_MAX_MS 30000

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mvm_policy *live; /* every prepared microvm policy not yet released */

static void wait_ms(struct mvm_policy *mp, uint64_t delay_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(delay_ms / 1000);
    ts.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&mp->cond, &mp->lock, &ts);
}

static void *refill_main(void *arg)
{
    struct mvm_policy *mp = arg;
    uint64_t delay_ms = RETRY_DELAY_MS;
    pthread_mutex_lock(&mp->lock);
    while (!mp->stopping) {
        if (mp->n_ready >= mp->pool_size) {
            pthread_cond_wait(&mp->cond, &mp->lock);
            continue;
        }
        pthread_mutex_unlock(&mp->lock);
        struct mvm_vm *vm = NULL;
        struct gate_error err = {0};
        int rc = mvm_vm_start(mp->guest, MVM_RESTORE, &mp->rehearsal, &mp->stopping, &vm, &err);
        pthread_mutex_lock(&mp->lock);
        if (rc < 0 && mp->stopping) break;
        if (rc < 0) {
            mp->failures++;
            gate_log("warn", "microvm.pool_refill_failed", "tool %s: %s", mp->name, err.msg);
            wait_ms(mp, delay_ms);
            delay_ms = delay_ms * 2 > RETRY_DELAY_MAX_MS ? RETRY_DELAY_MAX_MS : delay_ms * 2;
            continue;
        }
        delay_ms = RETRY_DELAY_MS;
        if (mp->stopping || mp->n_ready >= mp->pool_size) {
            pthread_mutex_unlock(&mp->lock);
            mvm_vm_destroy(vm);
            pthread_mutex_lock(&mp->lock);
            continue;
        }
        mp->ready[mp->n_ready++] = vm;
    }
    pthread_mutex_unlock(&mp->lock);
    return NULL;
}

int mvm_pool_start(struct mvm_policy *mp, struct gate_error *err)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mp->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&mp->lock, NULL);
    if (mp->pool_size == 0) return 0;
    int e = pthread_create(&mp->thread, NULL, refill_main, mp);
    if (e != 0) return gate_err_errno(err, GATE_E_INTERNAL, e, "microvm: start the pool thread");
    mp->thread_started = true;
    return 0;
}

struct mvm_vm *mvm_pool_take(struct mvm_policy *mp)
{
    for (;;) {
        pthread_mutex_lock(&mp->lock);
        struct mvm_vm *vm = NULL;
        if (mp->n_ready > 0 && !mp->stopping) {
            /* Oldest first: every parked guest gets used, none idles for ever. */
            vm = mp->ready[0];
            memmove(mp->ready, mp->ready + 1, (mp->n_ready - 1) * sizeof(*mp->ready));
            mp->n_ready--;
            pthread_cond_signal(&mp->cond);
        }
        pthread_mutex_unlock(&mp->lock);
        /* A guest that died while parked (its QEMU exited) cannot serve the call. */
        if (vm && mvm_vm_dead(vm)) {
            gate_log("warn", "microvm.pool_guest_died", "tool %s: a parked guest died", mp->name);
            mvm_vm_destroy(vm);
            continue;
        }
        if (vm) ct_jail_cpu_background(&mvm.jail, &vm->proc, false); /* it serves a call now */
        pthread_mutex_lock(&mp->lock);
        if (vm)
            mp->hits++;
        else
            mp->misses++;
        pthread_mutex_unlock(&mp->lock);
        return vm;
    }
}

void mvm_pool_stop(struct mvm_policy *mp)
{
    pthread_mutex_lock(&mp->lock);
    __atomic_store_n(&mp->stopping, true, __ATOMIC_RELAXED); /* read unlocked by a restore */
    pthread_cond_broadcast(&mp->cond);
    bool join = mp->thread_started;
    mp->thread_started = false;
    pthread_mutex_unlock(&mp->lock);
    if (join) pthread_join(mp->thread, NULL);
    pthread_mutex_lock(&mp->lock);
    struct mvm_vm *vms[MVM_POOL_MAX];
    uint32_t n = mp->n_ready;
    memcpy(vms, mp->ready, n * sizeof(*vms));
    mp->n_ready = 0;
    pthread_mutex_unlock(&mp->lock);
    for (uint32_t i = 0; i < n; i++)
        mvm_vm_destroy(vms[i]);
}

void mvm_pool_register(struct mvm_policy *mp)
{
    pthread_mutex_lock(&list_lock);
    mp->next = live;
    live = mp;
    pthread_mutex_unlock(&list_lock);
}

void mvm_pool_unregister(struct mvm_policy *mp)
{
    pthread_mutex_lock(&list_lock);
    for (struct mvm_policy **pp = &live; *pp; pp = &(*pp)->next)
        if (*pp == mp) {
            *pp = mp->next;
            break;
        }
    pthread_mutex_unlock(&list_lock);
}

void mvm_pool_stop_all(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct mvm_policy *mp = live; mp; mp = mp->next)
        mvm_pool_stop(mp);
    pthread_mutex_unlock(&list_lock);
}

/* Prometheus label values escape backslash, double quote and newline. */
static void metric(struct gate_buf *out, const char *name, const char *tool, uint64_t v)
{
    gate_buf_printf(out, "%s{tool=\"", name);
    for (const char *s = tool; *s; s++)
        gate_buf_printf(out, *s == '\\' || *s == '"' ? "\\%c" : *s == '\n' ? "\\n" : "%c", *s);
    gate_buf_printf(out, "\"} %llu\n", (unsigned long long)v);
}

/* During a reload the old and the new policy of a tool are both live for a moment: report
 * only the newest (the list's head is the most recent), so no series appears twice. */
static bool shadowed(const struct mvm_policy *mp)
{
    for (const struct mvm_policy *q = live; q != mp; q = q->next)
        if (strcmp(q->name, mp->name) == 0) return true;
    return false;
}

void mvm_pool_metrics(struct gate_buf *out)
{
    static const char *const families[][3] = {
        {"gatehouse_microvm_pool_size", "gauge", "Restored microVM guests ready for a call."},
        {"gatehouse_microvm_pool_hits_total", "counter", "microVM calls served by a pooled guest."},
        {"gatehouse_microvm_pool_misses_total", "counter",
         "microVM calls that booted their own guest cold (empty pool)."},
        {"gatehouse_microvm_pool_restore_failures_total", "counter",
         "Pooled microVM guests that failed to restore."},
    };
    pthread_mutex_lock(&list_lock);
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        gate_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f][0], families[f][2],
                        families[f][0], families[f][1]);
        for (struct mvm_policy *mp = live; mp; mp = mp->next) {
            if (shadowed(mp)) continue;
            pthread_mutex_lock(&mp->lock);
            uint64_t v = f == 0   ? mp->n_ready
                         : f == 1 ? mp->hits
                         : f == 2 ? mp->misses
                                  : mp->failures;
            pthread_mutex_unlock(&mp->lock);
            metric(out, families[f][0], mp->name, v);
        }
    }
    pthread_mutex_unlock(&list_lock);
}
