/* netpolicy_dns.c: host names of network.egress asked again when their DNS answer expires.
 *
 * A policy's names that DNS answered at load (not those of /etc/hosts, which have no TTL) are
 * watched by one thread of the gateway's. When a name's TTL (clamped to 5 s .. 1 h at load and
 * here) runs out, the thread asks DNS again; if the addresses changed, the policy gets a new
 * generation of map entries (net_install): the next calls get the new addresses, a call in
 * flight keeps those it started with, exactly as with a reload. A failed re-resolution keeps
 * the last addresses, is logged, and is tried again after the same TTL (at least 30 s).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netpolicy_internal.h"

#define RETRY_FAILED_S 30

static struct {
    pthread_mutex_t lock; /* the list; held while one of its policies is re-resolved */
    pthread_cond_t wake;  /* a policy was added, or stop */
    pthread_t thread;
    bool running, stop;
    struct sbx_net *list;
    struct policy_endpoint gateway;
} dns = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool same_addrs(const struct policy_egress *a, size_t na, const struct policy_egress *b,
                       size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = a[i].family == b[j].family && a[i].prefix == b[j].prefix &&
                    memcmp(a[i].addr, b[j].addr, 16) == 0;
        if (!found) return false;
    }
    return true;
}

static void describe(const struct policy_egress *v, size_t n, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(v[i].family, v[i].addr, text, sizeof(text));
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? " " : "", text);
    }
}

/* Ask again for one name; true if its addresses changed. */
static bool refresh_name(struct net_name *nn, uint64_t now)
{
    struct policy_egress *addrs = NULL;
    uint32_t ttl = 0;
    char why[256];
    int n = policy_egress_resolve(nn->host, nn->port, &addrs, &ttl, why, sizeof(why));
    size_t kept = 0;
    for (int i = 0; i < n; i++) /* never the gateway's own API (the filter refuses it anyway) */
        if (!policy_egress_covers(&addrs[i], &dns.gateway)) addrs[kept++] = addrs[i];
    if (n < 0 || kept == 0) {
        uint32_t retry = nn->ttl_s > RETRY_FAILED_S ? nn->ttl_s : RETRY_FAILED_S;
        nn->due_ns = now + retry * 1000000000ull;
        gate_log("warn", "network.resolve_failed",
                 "network.egress: re-resolving %s failed (%s): its %zu last addresses are kept, "
                 "next try in %u s",
                 nn->host, n < 0 ? why : "only the gateway's own address", nn->n, retry);
        free(addrs);
        return false;
    }
    nn->ttl_s = ttl;
    nn->due_ns = now + ttl * 1000000000ull;
    if (same_addrs(addrs, kept, nn->addrs, nn->n)) {
        free(addrs);
        return false;
    }
    char text[512];
    describe(addrs, kept, text, sizeof(text));
    gate_log("info", "network.resolved", "network.egress: %s now resolves to %s (TTL %u s)",
             nn->host, text, ttl);
    free(nn->addrs);
    nn->addrs = addrs;
    nn->n = kept;
    return true;
}

/* Under dns.lock: re-resolve n's due names; install new entries if any changed. Returns the
 * earliest time one of its names is due next. */
static uint64_t refresh(struct sbx_net *n, uint64_t now)
{
    bool changed = false;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < n->n_names; i++) {
        struct net_name *nn = &n->names[i];
        if (nn->due_ns <= now && refresh_name(nn, now)) changed = true;
        if (nn->due_ns < next) next = nn->due_ns;
    }
    struct gate_error err = {0};
    if (changed && net_install(n, &err) < 0)
        gate_log("warn", "network.resolve_failed",
                 "network.egress: the new addresses could not be installed (%s): the last "
                 "ones stay",
                 err.msg);
    return next;
}

static void *dns_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&dns.lock);
    while (!dns.stop) {
        uint64_t now = gate_monotonic_ns(), next = UINT64_MAX;
        for (struct sbx_net *n = dns.list; n && !dns.stop; n = n->next) {
            uint64_t due = refresh(n, now);
            if (due < next) next = due;
        }
        if (dns.stop) break;
        if (next == UINT64_MAX) {
            pthread_cond_wait(&dns.wake, &dns.lock);
            continue;
        }
        now = gate_monotonic_ns();
        if (next <= now) continue;
        struct timespec until = {.tv_sec = (time_t)(next / 1000000000ull),
                                 .tv_nsec = (long)(next % 1000000000ull)};
        pthread_cond_timedwait(&dns.wake, &dns.lock, &until);
    }
    pthread_mutex_unlock(&dns.lock);
    return NULL;
}

int net_dns_start(const struct policy_endpoint *gateway, struct gate_error *err)
{
    dns.gateway = gateway ? *gateway : (struct policy_endpoint){0};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    /* The deadlines are gate_monotonic_ns() values. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&dns.wake, &attr);
    pthread_condattr_destroy(&attr);
    dns.stop = false;
    int rc = pthread_create(&dns.thread, NULL, dns_main, NULL);
    if (rc != 0) return gate_err_errno(err, GATE_E_SANDBOX, rc, "network policy: DNS thread");
    dns.running = true;
    return 0;
}

void net_dns_stop(void)
{
    if (!dns.running) return;
    pthread_mutex_lock(&dns.lock);
    dns.stop = true;
    pthread_cond_signal(&dns.wake);
    pthread_mutex_unlock(&dns.lock);
    pthread_join(dns.thread, NULL);
    pthread_cond_destroy(&dns.wake);
    dns.running = false;
}

void net_dns_watch(struct sbx_net *n)
{
    pthread_mutex_lock(&dns.lock);
    n->next = dns.list;
    dns.list = n;
    if (dns.running) pthread_cond_signal(&dns.wake);
    pthread_mutex_unlock(&dns.lock);
}

void net_dns_forget(struct sbx_net *n)
{
    pthread_mutex_lock(&dns.lock);
    for (struct sbx_net **p = &dns.list; *p; p = &(*p)->next)
        if (*p == n) {
            *p = n->next;
            break;
        }
    pthread_mutex_unlock(&dns.lock);
}
