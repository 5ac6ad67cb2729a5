/* p_net.c: network probes: loopback self-approval, egress, special sockets
 * and DNS. Reachability of non-loopback addresses is tested with a UDP
 * connect(), which only consults the routing table and sends no packet; only
 * loopback ever receives a packet (P30's TCP handshake, P33's query to a
 * loopback resolver), so nothing leaves the machine even in the bare tier.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* TCP connect with a 1 s timeout; 0 on success, -1 with errno. */
static int tcp_connect(const char *ip, int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int rc = connect(s, (struct sockaddr *)&a, sizeof(a));
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {s, POLLOUT, 0};
        if (poll(&p, 1, 1000) <= 0) {
            close(s);
            errno = ETIMEDOUT;
            return -1;
        }
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &l);
        rc = soerr ? -1 : 0;
        errno = soerr;
    }
    int e = errno;
    close(s);
    errno = e;
    return rc;
}

/* Route lookup only: connect() on a UDP socket sends nothing. */
static int udp_route(const char *ip, int port)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int rc = connect(s, (struct sockaddr *)&a, sizeof(a));
    int e = errno;
    close(s);
    errno = e;
    return rc;
}

void p30_loopback(void)
{
    if (!g_args.gateway_port && !g_args.webhook_port) {
        emit("P30", "skipped", 0, "no gateway_port or webhook_port given");
        return;
    }
    struct verdict v = {0};
    char what[64];
    if (g_args.gateway_port) {
        snprintf(what, sizeof(what), "connect(127.0.0.1:%d gateway)", g_args.gateway_port);
        int rc = tcp_connect("127.0.0.1", g_args.gateway_port);
        v_attempt(&v, what, rc, errno, rc == 0);
    }
    if (g_args.webhook_port) {
        snprintf(what, sizeof(what), " connect(127.0.0.1:%d webhook)", g_args.webhook_port);
        int rc = tcp_connect("127.0.0.1", g_args.webhook_port);
        v_attempt(&v, what, rc, errno, rc == 0);
    }
    v_emit(&v, "P30");
}

void p31_egress(void)
{
    static const char *const targets[] = {"169.254.169.254", "10.0.0.1", "192.0.2.1", "1.1.1.1"};
    struct verdict v = {0};
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "route(%s:80)", targets[i]);
        int rc = udp_route(targets[i], 80);
        v_attempt(&v, what, rc, errno, rc == 0);
    }
    v_note(&v, " (UDP connect only: no packet sent)");
    v_emit(&v, "P31");
}

static void try_socket(struct verdict *v, const char *what, int domain, int type, int proto)
{
    int s = socket(domain, type | SOCK_CLOEXEC, proto);
    int e = errno;
    if (s >= 0) close(s);
    v_attempt(v, what, s, e, s >= 0);
}

/* Ask rtnetlink to delete an address from an interface that cannot exist: refused with EPERM
 * without CAP_NET_ADMIN, ENODEV-ish with it. Nothing is ever changed. */
static void try_netlink_change(struct verdict *v)
{
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) {
        v_attempt(v, " netlink(route)", -1, errno, false);
        return;
    }
    struct {
        struct nlmsghdr nh;
        struct ifaddrmsg ifa;
    } req;
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = sizeof(req);
    req.nh.nlmsg_type = RTM_DELADDR;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.nh.nlmsg_seq = 1;
    req.ifa.ifa_family = AF_INET;
    req.ifa.ifa_prefixlen = 32;
    req.ifa.ifa_index = 0x7ffffff0;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(s, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        v_attempt(v, " netlink(RTM_DELADDR)", -1, errno, errno != EPERM);
        close(s);
        return;
    }
    char buf[4096];
    struct pollfd p = {s, POLLIN, 0};
    long n = poll(&p, 1, 1000) > 0 ? recv(s, buf, sizeof(buf), 0) : -1;
    close(s);
    if (n < (long)(sizeof(struct nlmsghdr) + sizeof(struct nlmsgerr))) {
        v_note(v, " netlink(RTM_DELADDR)=no-answer");
        return;
    }
    struct nlmsgerr *ne = NLMSG_DATA((struct nlmsghdr *)buf);
    int e = -ne->error;
    v_attempt(v, " netlink(RTM_DELADDR)", e ? -1 : 0, e,
              e != EPERM && e != EACCES && e != EOPNOTSUPP);
}

void p32_sockets(void)
{
    struct verdict v = {0};
    try_socket(&v, "AF_PACKET", AF_PACKET, SOCK_RAW, 0);
    try_socket(&v, " SOCK_RAW(icmp)", AF_INET, SOCK_RAW, IPPROTO_ICMP);
    try_netlink_change(&v);
    try_socket(&v, " AF_ALG", AF_ALG, SOCK_SEQPACKET, 0);
    try_socket(&v, " AF_VSOCK", AF_VSOCK, SOCK_STREAM, 0);
    v_emit(&v, "P32");
}

/* A query for x.invalid, type A. */
static size_t dns_query(unsigned char *q)
{
    static const unsigned char hdr[] = {0x47, 0x48, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    static const unsigned char name[] = {1,   'x', 7, 'i', 'n', 'v', 'a', 'l',
                                         'i', 'd', 0, 0,   1,   0,   1};
    memcpy(q, hdr, sizeof(hdr));
    memcpy(q + sizeof(hdr), name, sizeof(name));
    return sizeof(hdr) + sizeof(name);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void try_resolver(struct verdict *v, const char *ns)
{
    struct in_addr ia;
    if (inet_pton(AF_INET, ns, &ia) != 1) {
        v_note(v, " %s=not-ipv4", ns);
        return;
    }
    char what[80];
    snprintf(what, sizeof(what), " resolver(%s)", ns);
    bool loopback = (ntohl(ia.s_addr) >> 24) == 127;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53), .sin_addr = ia};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        v_attempt(v, what, -1, errno, false);
        if (s >= 0) close(s);
        return;
    }
    if (!loopback) {
        v_note(v, "%s=route-exists(no query sent)", what);
        v->exposed = true;
        close(s);
        return;
    }
    unsigned char q[64], ans[512];
    size_t ql = dns_query(q);
    uint64_t t0 = mono_ms();
    long n = send(s, q, ql, 0);
    struct pollfd p = {s, POLLIN, 0};
    if (n >= 0 && poll(&p, 1, 1000) > 0)
        n = recv(s, ans, sizeof(ans), 0);
    else if (n >= 0) {
        n = -1;
        errno = ETIMEDOUT;
    }
    int e = errno;
    close(s);
    v_attempt(v, what, n >= 0 ? 0 : -1, e, n >= 0);
    v_note(v, "(%llums)", (unsigned long long)(mono_ms() - t0));
}

void p33_dns(void)
{
    struct verdict v = {0};
    char conf[4096];
    if (read_small("/etc/resolv.conf", conf, sizeof(conf)) < 0) {
        v_note(&v, "no /etc/resolv.conf (%s)", errname(errno));
        v_emit(&v, "P33");
        return;
    }
    int found = 0;
    for (char *line = conf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char ns[64];
        if (sscanf(line, " nameserver %63s", ns) == 1) {
            found++;
            try_resolver(&v, ns);
        }
        line = next;
    }
    if (!found) v_note(&v, "no nameserver configured");
    v_emit(&v, "P33");
}
