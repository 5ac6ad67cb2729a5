/* metrics.c: counters for /metrics in the Prometheus text format. */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* Latency histogram bucket bounds, microseconds. */
static const uint64_t buckets_us[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                      100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define NBUCKETS (sizeof(buckets_us) / sizeof(buckets_us[0]))

struct call_counter {
    char tool[64];
    char status[24];
    char isolation[16];
    uint64_t count;
};

struct latency {
    char isolation[16];
    uint64_t bucket[NBUCKETS];
    uint64_t count;
    uint64_t sum_us;
};

struct code_counter {
    char code[32];
    uint64_t count;
};

struct gw_metrics {
    pthread_mutex_t lock;
    struct call_counter *calls;
    size_t ncalls;
    struct latency lat[ISOLATION__COUNT];
    size_t nlat;
    struct code_counter rejected[GATE_E__COUNT];
    size_t nrejected;
    uint64_t reload_failures;
    uint64_t reloads;
};

struct gw_metrics *gw_metrics_new(void)
{
    struct gw_metrics *m = calloc(1, sizeof(*m));
    if (m) pthread_mutex_init(&m->lock, NULL);
    return m;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (!m) return;
    free(m->calls);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void gw_metrics_call(struct gw_metrics *m, const char *tool, const char *status,
                     const char *isolation, uint64_t duration_us)
{
    pthread_mutex_lock(&m->lock);
    struct call_counter *c = NULL;
    for (size_t i = 0; i < m->ncalls && !c; i++)
        if (!strcmp(m->calls[i].tool, tool) && !strcmp(m->calls[i].status, status) &&
            !strcmp(m->calls[i].isolation, isolation))
            c = &m->calls[i];
    if (!c) {
        struct call_counter *grown = realloc(m->calls, (m->ncalls + 1) * sizeof(*grown));
        if (grown) {
            m->calls = grown;
            c = &m->calls[m->ncalls++];
            memset(c, 0, sizeof(*c));
            snprintf(c->tool, sizeof(c->tool), "%s", tool);
            snprintf(c->status, sizeof(c->status), "%s", status);
            snprintf(c->isolation, sizeof(c->isolation), "%s", isolation);
        }
    }
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

void gw_metrics_reload_failed(struct gw_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->reload_failures++;
    pthread_mutex_unlock(&m->lock);
}

void gw_metrics_rejected(struct gw_metrics *m, const char *code)
{
    pthread_mutex_lock(&m->lock);
    struct code_counter *c = NULL;
    for (size_t i = 0; i < m->nrejected && !c; i++)
        if (!strcmp(m->rejected[i].code, code)) c = &m->rejected[i];
    if (!c && m->nrejected < GATE_E__COUNT) {
        c = &m->rejected[m->nrejected++];
        snprintf(c->code, sizeof(c->code), "%s", code);
    }
    if (c) c->count++;
    pthread_mutex_unlock(&m->lock);
}

void gw_metrics_render(struct gw *gw, struct gate_buf *out)
{
    struct gw_metrics *m = gw->metrics;
    pthread_mutex_lock(&m->lock);
    gate_buf_printf(out, "# HELP gatehouse_calls_total Finished tool calls.\n"
                         "# TYPE gatehouse_calls_total counter\n");
    for (size_t i = 0; i < m->ncalls; i++)
        gate_buf_printf(out,
                        "gatehouse_calls_total{tool=\"%s\",status=\"%s\",isolation=\"%s\"} %llu\n",
                        m->calls[i].tool, m->calls[i].status, m->calls[i].isolation,
                        (unsigned long long)m->calls[i].count);
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
                    "# HELP gatehouse_requests_rejected_total Refused requests by error code.\n"
                    "# TYPE gatehouse_requests_rejected_total counter\n");
    for (size_t i = 0; i < m->nrejected; i++)
        gate_buf_printf(out, "gatehouse_requests_rejected_total{code=\"%s\"} %llu\n",
                        m->rejected[i].code, (unsigned long long)m->rejected[i].count);
    gate_buf_printf(out,
                    "# HELP gatehouse_policy_reload_failures_total Policy reloads refused.\n"
                    "# TYPE gatehouse_policy_reload_failures_total counter\n"
                    "gatehouse_policy_reload_failures_total %llu\n",
                    (unsigned long long)m->reload_failures);
    pthread_mutex_unlock(&m->lock);
    gate_buf_printf(out,
                    "# HELP gatehouse_audit_write_failures_total Audit appends refused because the "
                    "log could not be written.\n"
                    "# TYPE gatehouse_audit_write_failures_total counter\n"
                    "gatehouse_audit_write_failures_total %llu\n"
                    "# HELP gatehouse_audit_last_seq Sequence number of the last audit record.\n"
                    "# TYPE gatehouse_audit_last_seq gauge\n"
                    "gatehouse_audit_last_seq %llu\n"
                    "# HELP gatehouse_calls_inflight Calls running now.\n"
                    "# TYPE gatehouse_calls_inflight gauge\n"
                    "gatehouse_calls_inflight %u\n",
                    (unsigned long long)audit_write_failures(gw->audit),
                    (unsigned long long)audit_last_seq(gw->audit), atomic_load(&gw->inflight));
}
