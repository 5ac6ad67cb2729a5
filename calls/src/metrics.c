/* metrics.c: the engine's counters for /metrics, in the Prometheus text format. */
#include <stdlib.h>
#include <string.h>

#include "calls_internal.h"

/* Latency histogram bucket bounds, microseconds. */
static const uint64_t buckets_us[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                      100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define NBUCKETS (sizeof(buckets_us) / sizeof(buckets_us[0]))

/* Label values are tool names, status and tier names (fixed alphabets) and agent names, which
 * the gateway config restricts to [A-Za-z0-9_.-]: none needs escaping. */
struct call_counter {
    char tool[65];
    char status[24];
    char isolation[16];
    char agent[65];
    uint64_t count;
};

struct latency {
    char isolation[16];
    uint64_t bucket[NBUCKETS];
    uint64_t count;
    uint64_t sum_us;
};

struct call_metrics {
    pthread_mutex_t lock;
    struct call_counter *calls;
    size_t ncalls;
    struct latency lat[ISOLATION__COUNT];
    size_t nlat;
    uint64_t reload_failures;
};

struct call_metrics *call_metrics_new(void)
{
    struct call_metrics *m = calloc(1, sizeof(*m));
    if (m) pthread_mutex_init(&m->lock, NULL);
    return m;
}

void call_metrics_free(struct call_metrics *m)
{
    if (!m) return;
    free(m->calls);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct call_counter *counter(struct call_metrics *m, const char *tool, const char *status,
                                    const char *isolation, const char *agent)
{
    for (size_t i = 0; i < m->ncalls; i++) {
        struct call_counter *c = &m->calls[i];
        if (!strcmp(c->tool, tool) && !strcmp(c->status, status) &&
            !strcmp(c->isolation, isolation) && !strcmp(c->agent, agent))
            return c;
    }
    struct call_counter *grown = realloc(m->calls, (m->ncalls + 1) * sizeof(*grown));
    if (!grown) return NULL;
    m->calls = grown;
    struct call_counter *c = &m->calls[m->ncalls++];
    memset(c, 0, sizeof(*c));
    snprintf(c->tool, sizeof(c->tool), "%s", tool);
    snprintf(c->status, sizeof(c->status), "%s", status);
    snprintf(c->isolation, sizeof(c->isolation), "%s", isolation);
    snprintf(c->agent, sizeof(c->agent), "%s", agent);
    return c;
}

void call_metrics_call(struct call_metrics *m, const char *tool, const char *status,
                       const char *isolation, const char *agent, uint64_t duration_us)
{
    pthread_mutex_lock(&m->lock);
    struct call_counter *c = counter(m, tool, status, isolation, agent ? agent : "");
    if (c) c->count++;
    struct latency *l = NULL;
    for (size_t i = 0; i < m->nlat && !l; i++)
        if (!strcmp(m->lat[i].isolation, isolation)) l = &m->lat[i];
    if (!l && m->nlat < ISOLATION__COUNT) {
        l = &m->lat[m->nlat++];
        snprintf(l->isolation, sizeof(l->isolation), "%s", isolation);
    }
    if (l) {
        for (size_t b = 0; b < NBUCKETS; b++)
            if (duration_us <= buckets_us[b]) l->bucket[b]++;
        l->count++;
        l->sum_us += duration_us;
    }
    pthread_mutex_unlock(&m->lock);
}

void call_metrics_reload_failed(struct call_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->reload_failures++;
    pthread_mutex_unlock(&m->lock);
}

void call_metrics_render(struct call_metrics *m, struct gate_buf *out)
{
    pthread_mutex_lock(&m->lock);
    gate_buf_printf(out, "# HELP gatehouse_calls_total Finished tool calls.\n"
                         "# TYPE gatehouse_calls_total counter\n");
    for (size_t i = 0; i < m->ncalls; i++) {
        const struct call_counter *c = &m->calls[i];
        gate_buf_printf(
            out,
            "gatehouse_calls_total{tool=\"%s\",status=\"%s\",isolation=\"%s\",agent=\"%s\"} %llu\n",
            c->tool, c->status, c->isolation, c->agent, (unsigned long long)c->count);
    }
    gate_buf_printf(out, "# HELP gatehouse_call_duration_seconds Time in the sandbox per call.\n"
                         "# TYPE gatehouse_call_duration_seconds histogram\n");
    for (size_t i = 0; i < m->nlat; i++) {
        const struct latency *l = &m->lat[i];
        for (size_t b = 0; b < NBUCKETS; b++)
            gate_buf_printf(
                out, "gatehouse_call_duration_seconds_bucket{isolation=\"%s\",le=\"%g\"} %llu\n",
                l->isolation, (double)buckets_us[b] / 1e6, (unsigned long long)l->bucket[b]);
        gate_buf_printf(
            out,
            "gatehouse_call_duration_seconds_bucket{isolation=\"%s\",le=\"+Inf\"} %llu\n"
            "gatehouse_call_duration_seconds_sum{isolation=\"%s\"} %.6f\n"
            "gatehouse_call_duration_seconds_count{isolation=\"%s\"} %llu\n",
            l->isolation, (unsigned long long)l->count, l->isolation, (double)l->sum_us / 1e6,
            l->isolation, (unsigned long long)l->count);
    }
    gate_buf_printf(out,
                    "# HELP gatehouse_policy_reload_failures_total Policy reloads refused.\n"
                    "# TYPE gatehouse_policy_reload_failures_total counter\n"
                    "gatehouse_policy_reload_failures_total %llu\n",
                    (unsigned long long)m->reload_failures);
    pthread_mutex_unlock(&m->lock);
}
