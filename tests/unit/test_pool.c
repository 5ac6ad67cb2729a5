/* test_pool.c: the warm pool shared by the tiers (sandboxes/common/pool.c), with fake items.
 *
 * - the refill thread fills the pool to its size, a take is a hit, an empty pool a miss;
 * - an item that died while idle is destroyed, never handed out;
 * - a failed spawn is counted and retried; stop destroys every idle item;
 * - stop cancels a spawn in progress (the spawn sees *cancel turn true);
 * - the metrics name every family once, with the tool label escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../sandboxes/common/sbx_internal.h"

struct fake {
    int made, destroyed, claimed;
    int fail_next; /* spawns to fail before succeeding */
    bool block;    /* spawn waits for *cancel */
    bool dead;     /* items made from now on report themselves dead */
    pthread_mutex_t lock;
};

struct item {
    struct fake *f;
    bool dead;
};

static void *spawn(void *ctx, const bool *cancel, struct gate_error *err)
{
    struct fake *f = ctx;
    while (f->block && !__atomic_load_n(cancel, __ATOMIC_RELAXED)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (f->block) return NULL;
    pthread_mutex_lock(&f->lock);
    bool fail = f->fail_next > 0;
    if (fail) f->fail_next--;
    pthread_mutex_unlock(&f->lock);
    if (fail) {
        gate_err(err, GATE_E_SANDBOX, "fake failure");
        return NULL;
    }
    struct item *it = calloc(1, sizeof(*it));
    it->f = f;
    it->dead = __atomic_load_n(&f->dead, __ATOMIC_RELAXED);
    __atomic_add_fetch(&f->made, 1, __ATOMIC_RELAXED);
    return it;
}

static void destroy(void *item)
{
    struct item *it = item;
    __atomic_add_fetch(&it->f->destroyed, 1, __ATOMIC_RELAXED);
    free(it);
}

static bool dead(void *item)
{
    return ((struct item *)item)->dead;
}

static void claimed(void *item)
{
    __atomic_add_fetch(&((struct item *)item)->f->claimed, 1, __ATOMIC_RELAXED);
}

static const struct sbx_pool_kind kind = {
    .spawn = spawn,
    .destroy = destroy,
    .dead = dead,
    .claimed = claimed,
    .family = "test_pool",
    .failures_suffix = "spawn_failures_total",
    .help_size = "size",
    .help_hits = "hits",
    .help_misses = "misses",
    .help_failures = "failures",
    .refill_failed_event = "test.refill_failed",
    .died_event = "test.died",
};

static uint32_t ready(struct sbx_pool *p)
{
    pthread_mutex_lock(&p->lock);
    uint32_t n = p->n_ready;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Poll the pool's state with a deadline: the refill thread works on its own time. */
static void wait_ready(struct sbx_pool *p, uint32_t n)
{
    for (int i = 0; i < 20000 && ready(p) != n; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(ready(p), n);
}

static void test_fills_hits_and_misses(void **state)
{
    (void)state;
    struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct sbx_pool p;
    assert_int_equal(sbx_pool_start(&p, &kind, &f, "t", 2, NULL), 0);
    wait_ready(&p, 2);
    void *a = sbx_pool_take(&p);
    assert_non_null(a);
    assert_int_equal(f.claimed, 1);
    wait_ready(&p, 2); /* refilled */
    destroy(a);
    sbx_pool_stop(&p);
    assert_int_equal(f.made, f.destroyed); /* the idle ones went with the pool */
    struct sbx_pool empty;
    assert_int_equal(sbx_pool_start(&empty, &kind, &f, "t", 0, NULL), 0);
    assert_null(sbx_pool_take(&empty));
    assert_int_equal(empty.misses, 1);
    sbx_pool_stop(&empty);
    sbx_pool_stop(&empty); /* idempotent */
}

static void test_dead_items_are_never_handed_out(void **state)
{
    (void)state;
    struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER, .dead = true};
    struct sbx_pool p;
    assert_int_equal(sbx_pool_start(&p, &kind, &f, "t", 1, NULL), 0);
    wait_ready(&p, 1); /* a dead one */
    __atomic_store_n(&f.dead, false, __ATOMIC_RELAXED);
    struct item *it = sbx_pool_take(&p); /* a live replacement (a hit), or none yet (a miss) */
    assert_true(it == NULL || !it->dead);
    assert_true(f.destroyed >= 1);
    if (it) destroy(it);
    sbx_pool_stop(&p);
    assert_int_equal(f.made, f.destroyed);
}

static void test_failed_spawns_are_counted_and_retried(void **state)
{
    (void)state;
    struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER, .fail_next = 1};
    struct sbx_pool p;
    assert_int_equal(sbx_pool_start(&p, &kind, &f, "t", 1, NULL), 0);
    wait_ready(&p, 1); /* after the retry delay */
    assert_int_equal(p.failures, 1);
    sbx_pool_stop(&p);
    assert_int_equal(f.made, f.destroyed);
}

static void test_stop_cancels_a_spawn_in_progress(void **state)
{
    (void)state;
    struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER, .block = true};
    struct sbx_pool p;
    assert_int_equal(sbx_pool_start(&p, &kind, &f, "t", 1, NULL), 0);
    sbx_pool_stop(&p); /* returns only once the thread is gone: the spawn saw the cancel */
    assert_int_equal(f.made, 0);
    assert_int_equal(p.failures, 0);
}

static void test_metrics(void **state)
{
    (void)state;
    struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct sbx_pool a, b;
    assert_int_equal(sbx_pool_start(&a, &kind, &f, "to\"ol", 0, NULL), 0);
    assert_int_equal(sbx_pool_start(&b, &kind, &f, "to\"ol", 0, NULL), 0); /* a reload */
    sbx_pool_take(&b);
    struct gate_buf out = {0};
    sbx_pool_metrics(&out, &kind);
    assert_non_null(strstr(out.data, "# TYPE test_pool_size gauge\n"));
    assert_non_null(strstr(out.data, "test_pool_misses_total{tool=\"to\\\"ol\"} 1\n"));
    /* The newest pool of a tool only: one series per family. */
    assert_null(strstr(out.data, "test_pool_misses_total{tool=\"to\\\"ol\"} 0\n"));
    assert_non_null(strstr(out.data, "test_pool_spawn_failures_total{tool=\"to\\\"ol\"} 0\n"));
    gate_buf_free(&out);
    sbx_pool_stop(&a);
    sbx_pool_stop(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fills_hits_and_misses),
        cmocka_unit_test(test_dead_items_are_never_handed_out),
        cmocka_unit_test(test_failed_spawns_are_counted_and_retried),
        cmocka_unit_test(test_stop_cancels_a_spawn_in_progress),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
