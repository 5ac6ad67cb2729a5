/* metrics.c: /metrics in the Prometheus text format. The gateway counts refused requests; the
 * call engine, the audit log and the sandbox tiers render their own counters. */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

struct code_counter {
    char code[32];
    uint64_t count;
};

struct gw_metrics {
    pthread_mutex_t lock;
    struct code_counter rejected[GATE_E__COUNT];
    size_t nrejected;
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
    pthread_mutex_destroy(&m->lock);
    free(m);
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
    gate_buf_printf(out,
                    "# HELP gatehouse_requests_rejected_total Refused requests by error code.\n"
                    "# TYPE gatehouse_requests_rejected_total counter\n");
    for (size_t i = 0; i < m->nrejected; i++)
        gate_buf_printf(out, "gatehouse_requests_rejected_total{code=\"%s\"} %llu\n",
                        m->rejected[i].code, (unsigned long long)m->rejected[i].count);
    pthread_mutex_unlock(&m->lock);
    call_engine_metrics(gw->engine, out);
    agents_metrics(gw->agents, out);
    gate_buf_printf(out,
                    "# HELP gatehouse_audit_write_failures_total Audit appends refused because the "
                    "log could not be written.\n"
                    "# TYPE gatehouse_audit_write_failures_total counter\n"
                    "gatehouse_audit_write_failures_total %llu\n"
                    "# HELP gatehouse_audit_last_seq Sequence number of the last audit record.\n"
                    "# TYPE gatehouse_audit_last_seq gauge\n"
                    "gatehouse_audit_last_seq %llu\n",
                    (unsigned long long)audit_write_failures(gw->audit),
                    (unsigned long long)audit_last_seq(gw->audit));
    audit_anchor_metrics(gw->anchorer, out);
    sbx_metrics(out);
}
