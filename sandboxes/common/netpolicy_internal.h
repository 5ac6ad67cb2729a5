/* netpolicy_internal.h: what the network policy's files share (private to netpolicy*.c).
 *
 * netpolicy.c owns the BPF programs, their maps and the calls; a policy's map entries are a
 * generation (struct net_gen) under a policy id of its own, which each call holds from its
 * begin to its end, so replacing a policy's entries (a host name re-resolved) changes the next
 * calls only. netpolicy_dns.c asks DNS again for a policy's host names when their TTL runs out
 * and installs the new entries. netpolicy_record.c turns the programs' events into JSON.
 */
#ifndef GATE_NETPOLICY_INTERNAL_H
#define GATE_NETPOLICY_INTERNAL_H

#include "netpolicy.h"
#include "netpolicy_maps.h"

struct net_gen;

/* A host name of the policy that DNS answers, with the addresses it has now. */
struct net_name {
    char *host; /* owned */
    uint16_t port;
    uint32_t ttl_s;
    uint64_t due_ns;             /* when to ask again (monotonic) */
    struct policy_egress *addrs; /* owned */
    size_t n;
    unsigned classes; /* NET_CLASS_* of the addresses it had at load (netpolicy_dns.c) */
};

struct sbx_net {
    struct net_gen *cur; /* the entries new calls get; under the calls' lock (netpolicy.c) */
    /* What every generation is built from: the entries that do not come from a DNS name (with
     * the resolvers of network.dns), then every name's current addresses. */
    struct policy_egress *fixed; /* owned */
    size_t n_fixed;
    struct net_name *names; /* owned */
    size_t n_names;
    struct sbx_net *next; /* in netpolicy_dns.c's list */
    uint64_t watch_id;    /* netpolicy_dns.c's own name for it, never reused */
};

/* netpolicy.c: build a generation from n's entries now and make it the one new calls get (the
 * one it replaces goes when its last call ends). */
int net_install(struct sbx_net *n, struct gate_error *err);

/* netpolicy_dns.c: the thread that re-resolves names, from gateway start to shutdown (gateway:
 * the endpoint no address may reach; an answer naming it is left out). */
int net_dns_start(const struct policy_endpoint *gateway, struct gate_error *err);
void net_dns_stop(void);
/* Re-resolve n's names from now on (n has names), until net_dns_forget (which never waits for
 * a DNS answer: the thread asks with no lock held, and drops an answer for a forgotten n). */
void net_dns_watch(struct sbx_net *n);
void net_dns_forget(struct sbx_net *n);

/* netpolicy_record.c */
json_t *net_event_json(const struct netpol_event *e);
/* {"path": P, "argv": [up to NETPOL_ARGS words]}, with "argv_truncated": [indexes of words cut
 * to NETPOL_ARG_MAX bytes] and "argv_more": true when there were more words; "path_base64" /
 * "argv_base64" (every word) when a path or word was not valid UTF-8. Owned. */
json_t *net_exec_json(const struct netpol_exec *x);

#endif
