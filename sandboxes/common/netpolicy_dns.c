/* netpolicy_dns.c: host names of network.egress asked again when their DNS answer expires.
 *
 * A policy's names that DNS answered at load (not those of /etc/hosts, which have no TTL) are
 * watched by one thread of the gateway's. When a name's TTL (clamped to 5 s .. 1 h at load and
 * here) runs out, the thread asks DNS again; if the addresses changed, the policy gets a new
 * generation of map entries (net_install): the next calls get the new addresses, a call in
 * flight keeps those it started with, exactly as with a reload. A failed re-resolution keeps
 * the last addresses, is logged, and is tried again after the same TTL (at least 30 s). A new
 * answer may only name the kinds of address the name had at load (addr_class).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netpolicy_internal.h"

#define RETRY_FAILED_S 30

static struct {
    pthread_mutex_t lock; /* the list and its names; released while DNS is asked */
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

/* The kinds of address a refreshed answer may move between: only those the name had at load.
 * A name's DNS is not the policy's author: a public name must not turn into loopback or a
 * private address later (DNS rebinding), and no answer ever names a link-local (the cloud
 * metadata service), unspecified or multicast address. */
enum { NET_CLASS_PUBLIC = 1, NET_CLASS_PRIVATE = 2, NET_CLASS_LOOPBACK = 4, NET_CLASS_NEVER = 8 };

static unsigned v4_class(const uint8_t *a)
{
    if (a[0] == 127) return NET_CLASS_LOOPBACK;
    if (a[0] == 0 || a[0] >= 224 || (a[0] == 169 && a[1] == 254)) return NET_CLASS_NEVER;
    if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
        (a[0] == 100 && (a[1] & 0xc0) == 64))
        return NET_CLASS_PRIVATE;
    return NET_CLASS_PUBLIC;
}

static unsigned addr_class(const struct policy_egress *e)
{
    static const uint8_t zero[16], loop6[16] = {[15] = 1}, mapped[12] = {[10] = 0xff, [11] = 0xff};
    const uint8_t *a = e->addr;
    if (e->family == AF_INET) return v4_class(a);
    if (memcmp(a, mapped, 12) == 0) return v4_class(a + 12);
    if (memcmp(a, loop6, 16) == 0) return NET_CLASS_LOOPBACK;
    if (memcmp(a, zero, 16) == 0 || a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
        return NET_CLASS_NEVER;
    if ((a[0] & 0xfe) == 0xfc) return NET_CLASS_PRIVATE;
    return NET_CLASS_PUBLIC;
}

/* Under dns.lock: take one answer for nn (n < 0: failed; addrs owned); true if its addresses
 * changed. */
static bool apply_answer(struct net_name *nn, int n, struct policy_egress *addrs, uint32_t ttl,
                         const char *why, uint64_t now)
{
    if (!nn->classes)
        for (size_t i = 0; i < nn->n; i++)
            nn->classes |= addr_class(&nn->addrs[i]);
    size_t kept = 0;
    for (int i = 0; i < n; i++) { /* never the gateway's own API (the filter refuses it anyway) */
        unsigned c = addr_class(&addrs[i]);
        if (!(c & nn->classes & ~(unsigned)NET_CLASS_NEVER) ||
            policy_egress_covers(&addrs[i], &dns.gateway)) {
            char text[INET6_ADDRSTRLEN];
            inet_ntop(addrs[i].family, addrs[i].addr, text, sizeof(text));
            gate_log("warn", "network.resolve_refused",
                     "network.egress: %s now also names %s, a kind of address it did not name "
                     "at load (or the gateway's own): left out",
                     nn->host, text);
            continue;
        }
        addrs[kept++] = addrs[i];
    }
    if (n < 0 || kept == 0) {
        uint32_t retry = nn->ttl_s > RETRY_FAILED_S ? nn->ttl_s : RETRY_FAILED_S;
        nn->due_ns = now + retry * 1000000000ull;
        gate_log("warn", "network.resolve_failed",
                 "network.egress: re-resolving %s failed (%s): its %zu last addresses are kept, "
                 "next try in %u s",
                 nn->host, n < 0 ? why : "no address it may name", nn->n, retry);
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

/* Under dns.lock: the first name due by now (*which), else the earliest time one is due. */
static uint64_t first_due(uint64_t now, struct sbx_net **which, size_t *index)
{
    uint64_t next = UINT64_MAX;
    *which = NULL;
    for (struct sbx_net *n = dns.list; n; n = n->next)
        for (size_t i = 0; i < n->n_names; i++) {
            if (n->names[i].due_ns <= now) {
                *which = n, *index = i;
                return now;
            }
            if (n->names[i].due_ns < next) next = n->names[i].due_ns;
        }
    return next;
}

/* Ask DNS again for one due name, with dns.lock released while asking (a resolver that does
 * not answer must hold up nobody: policies are freed on calls' threads), and take the answer
 * only if its policy is still watched. */
static void refresh_one(struct sbx_net *n, size_t i, uint64_t now)
{
    uint64_t id = n->watch_id;
    char *host = strdup(n->names[i].host);
    uint16_t port = n->names[i].port;
    if (!host) {
        n->names[i].due_ns = now + RETRY_FAILED_S * 1000000000ull;
        return;
    }
    pthread_mutex_unlock(&dns.lock);
    struct policy_egress *addrs = NULL;
    uint32_t ttl = 0;
    char why[256];
    int got = policy_egress_resolve(host, port, &addrs, &ttl, why, sizeof(why));
    free(host);
    pthread_mutex_lock(&dns.lock);
    struct sbx_net *still = dns.list;
    while (still && still->watch_id != id)
        still = still->next;
    if (!still) { /* forgotten (and perhaps freed) meanwhile */
        free(addrs);
        return;
    }
    struct gate_error err = {0};
    if (apply_answer(&still->names[i], got, addrs, ttl, why, now) && net_install(still, &err) < 0)
        gate_log("warn", "network.resolve_failed",
                 "network.egress: the new addresses could not be installed (%s): the last "
                 "ones stay",
                 err.msg);
}

static void *dns_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&dns.lock);
    while (!dns.stop) {
        struct sbx_net *due = NULL;
        size_t index = 0;
        uint64_t now = gate_monotonic_ns(), next = first_due(now, &due, &index);
        if (due) {
            refresh_one(due, index, now);
            continue;
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&dns.wake, &dns.lock);
            continue;
        }
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
    static uint64_t next_id;
    pthread_mutex_lock(&dns.lock);
    n->watch_id = ++next_id;
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
