/* network.c: the `network` key: where a tool may connect.
 *
 *   network: none                       # the default: nothing
 *   network:
 *     egress: ["api.example.com:443", "10.20.0.0/16:5432", "[2001:db8::1]:8443"]
 *     dns: true                         # port 53 to the name servers of /etc/resolv.conf
 *
 * Every entry names a port; there is no wildcard host. CIDRs are parsed strictly (no host bits
 * set, no leading zeros in the length). Host names are resolved here, when the policy set loads
 * (and so again at every SIGHUP): the sandbox filters addresses, never names. A name that is
 * not in /etc/hosts is asked of DNS directly (libresolv), which gives the answer's TTL: the
 * sandbox asks again when it runs out (policy_egress_resolve). An entry that covers the
 * gateway's own API endpoint is refused: a tool must never reach the gateway.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy_internal.h"

#define EGRESS_MAX 256 /* entries after resolution: the sandbox's map is sized for policies */

static struct policy_endpoint reserved;

void policy_network_reserve(const struct policy_endpoint *gateway)
{
    reserved = gateway ? *gateway : (struct policy_endpoint){0};
}

void policy_network_free(struct policy_network *n)
{
    free(n->egress);
    n->egress = NULL;
    n->n_egress = 0;
    for (size_t i = 0; i < n->n_names; i++)
        free(n->names[i].host);
    free(n->names);
    n->names = NULL;
    n->n_names = 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0) return false;
    if (!rest) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static bool all_zero(const uint8_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i]) return false;
    return true;
}

bool policy_egress_covers(const struct policy_egress *e, const struct policy_endpoint *g)
{
    if (!g->family || e->port != g->port) return false;
    size_t alen = g->family == AF_INET ? 4 : 16;
    /* A wildcard listener answers on every local address, and 0.0.0.0 / :: mean "this host". */
    if (all_zero(g->addr, alen)) return true;
    if (e->family != g->family) return false;
    return prefix_match(e->addr, g->addr, e->prefix) || all_zero(e->addr, alen);
}

/* A decimal number in [min, max] written without sign, spaces or leading zeros. */
static int strict_uint(const char *s, size_t len, unsigned min, unsigned max, unsigned *out)
{
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0')) return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

static bool host_name_ok(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > 253 || h[0] == '.' || h[0] == '-') return false;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

struct egress_list {
    struct pctx *c;
    struct policy_network *net;
};

static int add_entry(struct egress_list *l, struct policy_loc loc, int family, const void *addr,
                     unsigned prefix, unsigned port, const char *text)
{
    struct policy_network *net = l->net;
    if (net->n_egress >= EGRESS_MAX) {
        pctx_err(l->c, loc, "network.egress: more than %d destinations", EGRESS_MAX);
        return -1;
    }
    struct policy_egress *grown = realloc(net->egress, (net->n_egress + 1) * sizeof(*grown));
    if (!grown) {
        pctx_err(l->c, loc, "out of memory");
        return -1;
    }
    net->egress = grown;
    struct policy_egress *e = &grown[net->n_egress];
    *e = (struct policy_egress){
        .family = family, .prefix = (uint8_t)prefix, .port = (uint16_t)port, .loc = loc};
    memcpy(e->addr, addr, family == AF_INET ? 4 : 16);
    if (policy_egress_covers(e, &reserved)) {
        pctx_err(l->c, loc,
                 "network.egress: '%s' reaches the gateway's own API (port %u); a tool may "
                 "never connect to the gateway",
                 text, port);
        return -1;
    }
    net->n_egress++;
    return 0;
}

/* ADDR or ADDR/LEN of the given family; the address must have no bits set past LEN. */
static int parse_cidr(const char *s, int family, uint8_t addr[16], unsigned *prefix)
{
    unsigned max = family == AF_INET ? 32 : 128;
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= sizeof(buf)) return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(family, buf, addr) != 1) return -1;
    *prefix = max;
    if (slash && strict_uint(slash + 1, strlen(slash + 1), 0, max, prefix) < 0) return -1;
    uint8_t masked[16];
    memcpy(masked, addr, 16);
    for (unsigned bit = *prefix; bit < max; bit++)
        masked[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
    return memcmp(masked, addr, 16) == 0 ? 0 : -2;
}

/* The A (or AAAA) records of one DNS answer into *out; *ttl lowered to the smallest TTL of the
 * answer section (a CNAME's too: the chain is only as fresh as its shortest link). */
static int query(res_state st, const char *host, int type, uint16_t port,
                 struct policy_egress **out, size_t *n, uint32_t *ttl)
{
    unsigned char answer[4096];
    int len = res_nsearch(st, host, ns_c_in, type, answer, sizeof(answer));
    ns_msg msg;
    if (len < 0 || ns_initparse(answer, len, &msg) < 0) return -1;
    size_t alen = type == ns_t_a ? 4 : 16;
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return -1;
        if (ns_rr_ttl(rr) < *ttl) *ttl = ns_rr_ttl(rr);
        if ((int)ns_rr_type(rr) != type || ns_rr_rdlen(rr) != alen) continue;
        if (*n >= EGRESS_MAX) break;
        struct policy_egress *grown = realloc(*out, (*n + 1) * sizeof(*grown));
        if (!grown) return -1;
        *out = grown;
        grown[*n] = (struct policy_egress){.family = type == ns_t_a ? AF_INET : AF_INET6,
                                           .prefix = (uint8_t)(alen * 8),
                                           .port = port};
        memcpy(grown[(*n)++].addr, ns_rr_rdata(rr), alen);
    }
    return 0;
}

int policy_egress_resolve(const char *host, uint16_t port, struct policy_egress **out,
                          uint32_t *ttl_s, char *why, size_t why_len)
{
    *out = NULL;
    struct __res_state st;
    memset(&st, 0, sizeof(st));
    if (res_ninit(&st) < 0) {
        snprintf(why, why_len, "cannot read the resolver configuration");
        return -1;
    }
    /* Bounded: this runs at load and on the sandbox's refresh thread, never on a call. */
    if (st.retrans > 2) st.retrans = 2;
    if (st.retry > 2) st.retry = 2;
    size_t n = 0;
    uint32_t ttl = UINT32_MAX;
    int a = query(&st, host, ns_t_a, port, out, &n, &ttl);
    int herr = st.res_h_errno;
    int aaaa = query(&st, host, ns_t_aaaa, port, out, &n, &ttl);
    if (a < 0 && aaaa < 0) herr = st.res_h_errno ? st.res_h_errno : herr;
    res_nclose(&st);
    if (n == 0) {
        snprintf(why, why_len, "%s", herr ? hstrerror(herr) : "no address in the answer");
        free(*out);
        *out = NULL;
        return -1;
    }
    *ttl_s = ttl < POLICY_TTL_MIN_S   ? POLICY_TTL_MIN_S
             : ttl > POLICY_TTL_MAX_S ? POLICY_TTL_MAX_S
                                      : ttl;
    return (int)n;
}

/* Is host named in /etc/hosts? Such names have no TTL and keep what they resolved to at load. */
static bool in_etc_hosts(const char *host)
{
    autofclose FILE *f = fopen("/etc/hosts", "re");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "#\n")] = '\0';
        char *save = NULL, *tok = strtok_r(line, " \t", &save); /* the address */
        while (tok && (tok = strtok_r(NULL, " \t", &save)))
            if (strcasecmp(tok, host) == 0) return true;
    }
    return false;
}

/* A name DNS answers: its addresses, and the name kept for re-resolution at TTL expiry. */
static int resolve_dns(struct egress_list *l, const struct ynode *n, const char *host,
                       unsigned port)
{
    struct policy_egress *addrs = NULL;
    uint32_t ttl = 0;
    char why[256];
    int count = policy_egress_resolve(host, (uint16_t)port, &addrs, &ttl, why, sizeof(why));
    if (count < 0) return 1; /* not from DNS: getaddrinfo says what it can */
    struct policy_network *net = l->net;
    struct policy_egress_name *grown = realloc(net->names, (net->n_names + 1) * sizeof(*grown));
    char *copy = strdup(host);
    if (grown) net->names = grown;
    if (!grown || !copy) {
        free(copy);
        free(addrs);
        pctx_err(l->c, n->loc, "out of memory");
        return -1;
    }
    net->names[net->n_names++] = (struct policy_egress_name){copy, (uint16_t)port, ttl};
    int out = 0;
    for (int i = 0; i < count && out == 0; i++) {
        out =
            add_entry(l, n->loc, addrs[i].family, addrs[i].addr, addrs[i].prefix, port, n->scalar);
        if (out == 0) net->egress[net->n_egress - 1].name = (uint16_t)net->n_names;
    }
    free(addrs);
    return out;
}

static int resolve(struct egress_list *l, const struct ynode *n, const char *host, unsigned port)
{
    if (!in_etc_hosts(host)) {
        int rc = resolve_dns(l, n, host, port);
        if (rc <= 0) return rc;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        pctx_err(l->c, n->loc, "network.egress: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    int out = 0;
    for (struct addrinfo *a = res; a && out == 0; a = a->ai_next) {
        if (a->ai_family == AF_INET)
            out = add_entry(l, n->loc, AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, 32,
                            port, n->scalar);
        else if (a->ai_family == AF_INET6)
            out = add_entry(l, n->loc, AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr,
                            128, port, n->scalar);
    }
    freeaddrinfo(res);
    return out;
}

/* One `egress` item: HOST:PORT, IPV4[/LEN]:PORT or [IPV6[/LEN]]:PORT. */
static void read_egress_item(struct egress_list *l, const struct ynode *n)
{
    struct pctx *c = l->c;
    if (n->kind != YNODE_SCALAR) {
        pctx_err(c, n->loc, "network.egress items must be strings, got %s", ynode_kind_name(n));
        return;
    }
    const char *s = n->scalar;
    char host[256];
    const char *port_s = NULL;
    int family = AF_INET;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) {
            pctx_err(c, n->loc, "network.egress: '%s': expected [IPV6]:PORT", s);
            return;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port_s = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon) {
            pctx_err(c, n->loc,
                     "network.egress: '%s': a port is required (HOST:PORT, CIDR:PORT or "
                     "[IPV6]:PORT)",
                     s);
            return;
        }
        if ((size_t)(colon - s) >= sizeof(host)) {
            pctx_err(c, n->loc, "network.egress: '%s': host too long", s);
            return;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port_s = colon + 1;
    }
    unsigned port = 0;
    if (strict_uint(port_s, strlen(port_s), 1, 65535, &port) < 0) {
        pctx_err(c, n->loc, "network.egress: '%s': the port must be a number from 1 to 65535", s);
        return;
    }
    if (strchr(host, '*') || host[0] == '\0') {
        pctx_err(c, n->loc, "network.egress: '%s': wildcard or empty hosts are not allowed", s);
        return;
    }
    uint8_t addr[16];
    unsigned prefix = 0;
    bool numeric =
        family == AF_INET6 || strchr(host, '/') || strspn(host, "0123456789.") == strlen(host);
    if (!numeric) {
        if (!host_name_ok(host))
            pctx_err(c, n->loc, "network.egress: '%s': not a host name", s);
        else
            resolve(l, n, host, port);
        return;
    }
    int rc = parse_cidr(host, family, addr, &prefix);
    if (rc == -2)
        pctx_err(c, n->loc, "network.egress: '%s': the address has bits set past /%u", s, prefix);
    else if (rc < 0)
        pctx_err(c, n->loc, "network.egress: '%s': not a valid %s address or CIDR", s,
                 family == AF_INET ? "IPv4" : "IPv6");
    else
        add_entry(l, n->loc, family, addr, prefix, port, s);
}

void policy_network_read(struct pctx *c, const struct ynode *v)
{
    static const char *const keys[] = {"egress", "dns", NULL};
    if (pctx_expect_map(c, v, "network", keys) < 0 && v->kind != YNODE_MAP) return;
    struct policy_network *net = &c->p->net;
    c->p->network = NETWORK_EGRESS;
    const struct ynode *n = ynode_get(v, "egress");
    if (n && n->kind != YNODE_SEQ) {
        pctx_err(c, n->loc, "network.egress must be a list, got %s", ynode_kind_name(n));
        return;
    }
    struct egress_list l = {c, net};
    for (size_t i = 0; n && i < n->n; i++)
        read_egress_item(&l, n->items[i]);
    if ((n = ynode_get(v, "dns"))) pctx_bool(c, n, "network.dns", &net->dns);
}
