/* netpolicy.c: per-call network policy with libbpf (see netpolicy.h and bpf/netpolicy.bpf.c). */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "netpolicy.skel.h"
#include "netpolicy_internal.h"

/* Upper bounds of the per-call cost histogram, in microseconds. */
#define NET_COST_BUCKETS 8
/* Event slots for calls known by cgroup (container, gvisor), after the uid slots: at most
 * this many such calls at once (a call beyond fails to start, never runs unrecorded). */
#define NET_CG_SLOTS 128
static const unsigned cost_bounds_us[NET_COST_BUCKETS] = {5, 10, 20, 50, 100, 200, 500, 1000};

/* One set of map entries under a policy id of its own (netpolicy_internal.h). */
struct net_gen {
    uint32_t policy_id;
    unsigned refs; /* under net.lock: one while it is its policy's current, one per call on it */
    struct netpol_key4 *keys4;
    size_t n4;
    struct netpol_key6 *keys6;
    size_t n6;
};

/* What one slot (a tool uid, or a cgroup call) has seen of its current call. */
struct slot_events {
    bool busy; /* a cgroup slot: taken by a call */
    uint64_t cookie;
    uint64_t begin_ns; /* time spent putting the call under its policy */
    struct netpol_event ev[NETPOL_EVENTS_MAX];
    unsigned n;
    struct netpol_exec *execs; /* NETPOL_EVENTS_MAX of them, allocated at a slot's first exec */
    unsigned nexec;
    struct net_gen *gen; /* the entries the call runs under, held until its end */
};

static struct {
    pthread_mutex_t lock; /* ids, the ring buffer and slots */
    bool checking;        /* policy check: validate only */
    bool ready;
    char why[1024]; /* why BPF is not in use, when !ready && !checking */
    struct netpolicy_bpf *skel;
    struct bpf_link *links[7];
    struct ring_buffer *rb;
    char cgroup[4400];     /* our directory */
    char home_procs[4400]; /* cgroup.procs of the directory we came from */
    uid_t uid_base;
    unsigned uid_count;
    struct slot_events *slots;
    uint64_t next_cookie;
    uint32_t next_policy_id;
    uint64_t denied_total;
    /* Time the gateway spends per call on network policy (begin + end), for /metrics. */
    uint64_t cost_buckets[NET_COST_BUCKETS + 1]; /* the last: above every bound */
    uint64_t cost_sum_ns, cost_count;
} net = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_policy_id = NETPOL_OPEN_ID + 1};

/* The cgroup v2 mount: the controller-less hierarchy of a hybrid host, or a pure v2 host's. */
static const char *cgroup2_mount(void)
{
    static const char *const candidates[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    for (size_t i = 0; i < 2; i++) {
        struct statfs sf;
        if (statfs(candidates[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
            return candidates[i];
    }
    return NULL;
}

/* Our cgroup v2 path ("/..." under the mount), from the "0::" line of /proc/self/cgroup. */
static int own_cgroup(char *out, size_t size)
{
    autofclose FILE *f = fopen("/proc/self/cgroup", "re");
    char line[4096];
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, size, "%s", line + 3);
            return 0;
        }
    return -1;
}

static int write_pid(const char *procs, struct gate_error *err)
{
    autoclose int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "open %s", procs);
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d", (int)getpid());
    if (write(fd, buf, (size_t)len) != len)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "write %s", procs);
    return 0;
}

/* Remove the cgroup directory dir and every directory below it, deepest first (a cgroup's own
 * files go with it). A directory that still holds a process stays, and so do its parents. */
static void remove_tree(const char *dir, int depth)
{
    DIR *d = depth < 8 ? opendir(dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_type == DT_DIR && strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            char sub[4400 + 256];
            if (snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) < (int)sizeof(sub))
                remove_tree(sub, depth + 1);
        }
    if (d) closedir(d);
    rmdir(dir);
}

/* Directories of gateways that died without cleaning up: remove them with what the tiers made
 * below them (a killed gateway leaves its container and microVM parents there). */
static void sweep_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "gatehouse-net-", 14) == 0) {
            /* Another gateway on this host that is starting has made its directory and not yet
             * moved in (so it is empty): only a dead gateway's directory is stale. */
            pid_t owner = (pid_t)atoi(de->d_name + 14);
            if (owner > 0 && (kill(owner, 0) == 0 || errno == EPERM)) continue;
            char sub[4400 + 256];
            snprintf(sub, sizeof(sub), "%s/%s", parent, de->d_name);
            remove_tree(sub, 0);
        }
    closedir(d);
}

static int ring_event(void *ctx, void *data, size_t size)
{
    (void)ctx;
    const struct netpol_event *e = data;
    if (size < sizeof(*e) || e->slot >= net.uid_count + NET_CG_SLOTS) return 0;
    struct slot_events *s = &net.slots[e->slot];
    if (s->cookie != e->cookie) return 0;
    if (e->op == NETPOL_OP_EXEC) {
        if (size < sizeof(struct netpol_exec) || s->nexec >= NETPOL_EVENTS_MAX) return 0;
        if (!s->execs && !(s->execs = malloc(NETPOL_EVENTS_MAX * sizeof(*s->execs)))) return 0;
        struct netpol_exec *x = &s->execs[s->nexec++];
        memcpy(x, data, sizeof(*x));
        x->path[NETPOL_PATH_MAX - 1] = '\0';
        if (x->argc > NETPOL_ARGS) x->argc = NETPOL_ARGS;
        for (unsigned i = 0; i < x->argc; i++)
            x->argv[i][NETPOL_ARG_MAX] = '\0';
    } else if (s->n < NETPOL_EVENTS_MAX) {
        s->ev[s->n++] = *e;
    }
    return 0;
}

static int set_call(uid_t uid, uint32_t policy_id, uint64_t cookie, struct gate_error *err)
{
    struct netpol_call c = {
        .policy_id = policy_id, .slot = (uint32_t)(uid - net.uid_base), .cookie = cookie};
    uint32_t key = (uint32_t)uid;
    if (bpf_map_update_elem(bpf_map__fd(net.skel->maps.calls), &key, &c, BPF_ANY) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "network policy: update the call map");
    return 0;
}

/* Attach every program to our directory. BPF_F_ALLOW_MULTI through bpf_link: programs others
 * attached above or below us keep running. */
static int attach_all(int cg, struct gate_error *err)
{
    struct bpf_program *progs[] = {
        net.skel->progs.netpol_connect4,    net.skel->progs.netpol_connect6,
        net.skel->progs.netpol_sendmsg4,    net.skel->progs.netpol_sendmsg6,
        net.skel->progs.netpol_sock_create, net.skel->progs.netpol_egress};
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
        net.links[i] = bpf_program__attach_cgroup(progs[i], cg);
        if (!net.links[i]) {
            int e = errno;
            net.links[i] = NULL;
            return gate_err_errno(err, GATE_E_SANDBOX, e, "attach %s to %s",
                                  bpf_program__name(progs[i]), net.cgroup);
        }
    }
    return 0;
}

static int add_deny(const struct policy_endpoint *g);
static void gen_unref(struct net_gen *g);

static int init_bpf(const struct sbx_config *cfg, struct gate_error *err)
{
    const char *mnt = cgroup2_mount();
    if (!mnt) return gate_err(err, GATE_E_SANDBOX, "no cgroup v2 hierarchy is mounted");
    char self[4096];
    if (own_cgroup(self, sizeof(self)) < 0)
        return gate_err(err, GATE_E_SANDBOX, "no cgroup v2 line in /proc/self/cgroup");
    const char *sep = strcmp(self, "/") == 0 ? "" : self;
    char parent[4200];
    snprintf(parent, sizeof(parent), "%s%s", mnt, sep);
    snprintf(net.home_procs, sizeof(net.home_procs), "%s/cgroup.procs", parent);
    snprintf(net.cgroup, sizeof(net.cgroup), "%s/gatehouse-net-%d", parent, (int)getpid());
    sweep_stale(parent);

    libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
    net.skel = netpolicy_bpf__open();
    if (!net.skel) return gate_err_errno(err, GATE_E_SANDBOX, errno, "open the BPF programs");
    if (bpf_map__set_max_entries(net.skel->maps.calls, cfg->call_uid_count) < 0 ||
        netpolicy_bpf__load(net.skel) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "load the BPF programs");
    for (unsigned i = 0; i < cfg->call_uid_count; i++)
        if (set_call(cfg->call_uid_base + i, NETPOL_NONE_ID, 0, err) < 0) return -1;
    if (add_deny(cfg->gateway) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "deny the gateway's own address");
    net.rb = ring_buffer__new(bpf_map__fd(net.skel->maps.events), ring_event, NULL, NULL);
    if (!net.rb) return gate_err_errno(err, GATE_E_SANDBOX, errno, "open the BPF ring buffer");

    /* Made by root, 0755: a tool can neither move itself out nor add programs. */
    if (mkdir(net.cgroup, 0755) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "mkdir %s", net.cgroup);
    autoclose int cg = open(net.cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "open %s", net.cgroup);
    if (attach_all(cg, err) < 0) return -1;
    /* Not a cgroup program: it sees every exec on the host and reports only the tool uids'. */
    net.links[6] = bpf_program__attach(net.skel->progs.netpol_exec);
    if (!net.links[6]) {
        int e = errno;
        return gate_err_errno(err, GATE_E_SANDBOX, e, "attach the sched_process_exec tracepoint");
    }
    /* Programs first, then the move: from the moment the gateway (and so every tool it will
     * start) is in the directory, the filter is in force. The whole gateway moves, once: a
     * child born here costs nothing, where moving each tool would cost milliseconds. */
    char procs[4400 + 16];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", net.cgroup);
    return write_pid(procs, err);
}

int sbx_net_init(const struct sbx_config *cfg, struct gate_error *err)
{
    if (!cfg->gateway) {
        net.checking = true;
        return 0;
    }
    net.uid_base = cfg->call_uid_base;
    net.uid_count = cfg->call_uid_count;
    net.slots = calloc(cfg->call_uid_count + NET_CG_SLOTS, sizeof(*net.slots));
    if (!net.slots) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (init_bpf(cfg, err) < 0) {
        snprintf(net.why, sizeof(net.why), "%s", err->msg);
        sbx_net_shutdown();
        return -1;
    }
    if (net_dns_start(cfg->gateway, err) < 0) {
        snprintf(net.why, sizeof(net.why), "%s", err->msg);
        sbx_net_shutdown();
        return -1;
    }
    net.ready = true;
    return 0;
}

/* Once the gateway has left the filtered directory: kill whatever still runs below it (a call
 * past the grace period, a VM, a helper that outlived its tier) and wait, at most 2 s, until it
 * is gone, so that nothing of a tool runs on once the programs are detached. */
static void kill_filtered(void)
{
    char path[sizeof(net.cgroup) + 32];
    snprintf(path, sizeof(path), "%s/cgroup.kill", net.cgroup);
    autoclose int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1", 1) != 1) {
        gate_log("error", "network.shutdown", "cannot kill what runs in %s: %s", net.cgroup,
                 strerror(errno));
        return;
    }
    snprintf(path, sizeof(path), "%s/cgroup.events", net.cgroup);
    for (int i = 0; i < 200; i++) {
        char *ev = NULL;
        size_t len = 0;
        struct gate_error err = {0};
        bool empty = gate_read_file(path, 4096, &ev, &len, &err) == 0 && strstr(ev, "populated 0");
        free(ev);
        if (empty) return;
        usleep(10000);
    }
    gate_log("error", "network.shutdown", "%s still holds processes after cgroup.kill", net.cgroup);
}

void sbx_net_shutdown(void)
{
    net_dns_stop();
    if (net.ready || net.skel) {
        struct gate_error err = {0};
        struct stat st;
        /* Back home first: the kill below must not take the gateway, and the directory can
         * only go once it is empty. */
        if (stat(net.cgroup, &st) == 0 && write_pid(net.home_procs, &err) == 0) {
            kill_filtered();
            rmdir(net.cgroup);
        }
    }
    for (size_t i = 0; i < sizeof(net.links) / sizeof(net.links[0]); i++) {
        bpf_link__destroy(net.links[i]);
        net.links[i] = NULL;
    }
    ring_buffer__free(net.rb);
    net.rb = NULL;
    netpolicy_bpf__destroy(net.skel);
    net.skel = NULL;
    net.ready = false;
    for (size_t i = 0; net.slots && i < net.uid_count + NET_CG_SLOTS; i++) {
        free(net.slots[i].execs);
        gen_unref(net.slots[i].gen);
    }
    free(net.slots);
    net.slots = NULL;
}

/* ---- policies as map entries ----------------------------------------------------------- */
static void key4(struct netpol_key4 *k, uint32_t policy_id, uint16_t port, const uint8_t *addr,
                 unsigned prefix)
{
    memset(k, 0, sizeof(*k));
    uint16_t port_be = htons(port);
    k->prefixlen = NETPOL_KEY_FIXED_BITS + prefix;
    memcpy(&k->data[0], &policy_id, 4);
    memcpy(&k->data[4], &port_be, 2);
    memcpy(&k->data[6], addr, 4);
}

static void key6(struct netpol_key6 *k, uint32_t policy_id, uint16_t port, const uint8_t *addr,
                 unsigned prefix)
{
    memset(k, 0, sizeof(*k));
    uint16_t port_be = htons(port);
    k->prefixlen = NETPOL_KEY_FIXED_BITS + prefix;
    memcpy(&k->data[0], &policy_id, 4);
    memcpy(&k->data[4], &port_be, 2);
    memcpy(&k->data[6], addr, 16);
}

static int put4(const struct netpol_key4 *k)
{
    uint8_t one = 1;
    return bpf_map_update_elem(bpf_map__fd(net.skel->maps.allow4), k, &one, BPF_ANY);
}

static int put6(const struct netpol_key6 *k)
{
    uint8_t one = 1;
    return bpf_map_update_elem(bpf_map__fd(net.skel->maps.allow6), k, &one, BPF_ANY);
}

/* The gateway's API: its listen address, plus 0.0.0.0 / :: ("this host"); everything on its
 * port when it listens on a wildcard address. */
static int add_deny(const struct policy_endpoint *g)
{
    static const uint8_t zero[16];
    struct netpol_key4 k4;
    struct netpol_key6 k6;
    if (g->family == AF_INET) {
        bool any = memcmp(g->addr, zero, 4) == 0;
        key4(&k4, NETPOL_DENY_ID, g->port, g->addr, any ? 0 : 32);
        if (put4(&k4) < 0) return -1;
        key4(&k4, NETPOL_DENY_ID, g->port, zero, 32);
        return put4(&k4);
    }
    bool any = memcmp(g->addr, zero, 16) == 0;
    key6(&k6, NETPOL_DENY_ID, g->port, g->addr, any ? 0 : 128);
    if (put6(&k6) < 0) return -1;
    key6(&k6, NETPOL_DENY_ID, g->port, zero, 128);
    if (put6(&k6) < 0) return -1;
    /* A dual-stack wildcard listener also answers IPv4. */
    key4(&k4, NETPOL_DENY_ID, g->port, zero, any ? 0 : 32);
    return put4(&k4);
}

/* A growable list of egress entries. */
struct egress_vec {
    struct policy_egress *v;
    size_t n;
};

static int push(struct egress_vec *vec, const struct policy_egress *e)
{
    struct policy_egress *grown = realloc(vec->v, (vec->n + 1) * sizeof(*grown));
    if (!grown) return -1;
    vec->v = grown;
    grown[vec->n++] = *e;
    return 0;
}

static int gen_add(struct net_gen *g, const struct policy_egress *e)
{
    if (e->family == AF_INET) {
        struct netpol_key4 *grown = realloc(g->keys4, (g->n4 + 1) * sizeof(*grown));
        if (!grown) return -1;
        g->keys4 = grown;
        key4(&grown[g->n4++], g->policy_id, e->port, e->addr, e->prefix);
        return 0;
    }
    struct netpol_key6 *grown = realloc(g->keys6, (g->n6 + 1) * sizeof(*grown));
    if (!grown) return -1;
    g->keys6 = grown;
    key6(&grown[g->n6++], g->policy_id, e->port, e->addr, e->prefix);
    return 0;
}

/* Remove g's entries and free it. */
static void gen_free(struct net_gen *g)
{
    if (!g) return;
    for (size_t i = 0; net.skel && i < g->n4; i++)
        bpf_map_delete_elem(bpf_map__fd(net.skel->maps.allow4), &g->keys4[i]);
    for (size_t i = 0; net.skel && i < g->n6; i++)
        bpf_map_delete_elem(bpf_map__fd(net.skel->maps.allow6), &g->keys6[i]);
    free(g->keys4);
    free(g->keys6);
    free(g);
}

/* Under net.lock. */
static void gen_unref(struct net_gen *g)
{
    if (g && --g->refs == 0) gen_free(g);
}

/* A new generation of n's entries, in the maps under a new policy id (owned, one ref). */
static struct net_gen *gen_build(const struct sbx_net *n, struct gate_error *err)
{
    struct net_gen *g = calloc(1, sizeof(*g));
    if (!g) return gate_err(err, GATE_E_NOMEM, "out of memory"), NULL;
    g->refs = 1;
    pthread_mutex_lock(&net.lock);
    g->policy_id = net.next_policy_id++;
    pthread_mutex_unlock(&net.lock);
    int rc = 0;
    for (size_t i = 0; i < n->n_fixed && rc == 0; i++)
        rc = gen_add(g, &n->fixed[i]);
    for (size_t i = 0; i < n->n_names && rc == 0; i++)
        for (size_t j = 0; j < n->names[i].n && rc == 0; j++)
            rc = gen_add(g, &n->names[i].addrs[j]);
    if (rc < 0) gate_err(err, GATE_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < g->n4; i++)
        if (put4(&g->keys4[i]) < 0)
            rc = gate_err_errno(err, GATE_E_POLICY, errno, "network policy: add an entry");
    for (size_t i = 0; rc == 0 && i < g->n6; i++)
        if (put6(&g->keys6[i]) < 0)
            rc = gate_err_errno(err, GATE_E_POLICY, errno, "network policy: add an entry");
    if (rc == 0) return g;
    gen_free(g);
    return NULL;
}

int net_install(struct sbx_net *n, struct gate_error *err)
{
    struct net_gen *g = gen_build(n, err);
    if (!g) return -1;
    pthread_mutex_lock(&net.lock);
    struct net_gen *old = n->cur;
    n->cur = g;
    gen_unref(old);
    pthread_mutex_unlock(&net.lock);
    return 0;
}

/* Every `nameserver` line of /etc/resolv.conf, read when a policy loads: fn(ctx, family,
 * address, text) for each; stops at fn's first nonzero answer and returns it. */
static int each_resolver(int (*fn)(void *, int, const uint8_t *, const char *), void *ctx,
                         struct gate_error *err)
{
    autofclose FILE *f = fopen("/etc/resolv.conf", "re");
    if (!f) return gate_err_errno(err, GATE_E_POLICY, errno, "network.dns: /etc/resolv.conf");
    char line[512], addr[256];
    while (fgets(line, sizeof(line), f)) {
        uint8_t a[16] = {0};
        if (sscanf(line, " nameserver %255s", addr) != 1) continue;
        int family = strchr(addr, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(family, addr, a) != 1) continue;
        int rc = fn(ctx, family, a, addr);
        if (rc) return rc < 0 ? gate_err(err, GATE_E_NOMEM, "out of memory") : rc;
    }
    return 0;
}

/* dns: true: port 53 of every name server of /etc/resolv.conf. */
static int add_resolver(void *ctx, int family, const uint8_t *a, const char *text)
{
    (void)text;
    struct policy_egress e = {.family = family, .prefix = family == AF_INET ? 32 : 128, .port = 53};
    memcpy(e.addr, a, family == AF_INET ? 4 : 16);
    return push(ctx, &e);
}

static int print_resolver(void *ctx, int family, const uint8_t *a, const char *text)
{
    (void)family, (void)a;
    return gate_buf_printf(ctx, "nameserver %s\n", text) < 0 ? -1 : 0;
}

char *sbx_net_resolv_conf(const struct policy *p, struct gate_error *err)
{
    struct gate_buf b = {0};
    bool dns = p->network == NETWORK_EGRESS && p->net.dns;
    int rc = gate_buf_printf(&b, dns ? "# the host's name servers (network.dns)\n"
                                     : "# no resolver: this tool's policy does not allow DNS\n");
    if (rc == 0 && dns) rc = each_resolver(print_resolver, &b, err);
    if (rc == 0) return b.data;
    gate_buf_free(&b);
    if (!err->msg[0]) gate_err(err, GATE_E_NOMEM, "out of memory");
    return NULL;
}

void sbx_net_free(struct sbx_net *n)
{
    if (!n) return;
    if (n->n_names) net_dns_forget(n);
    pthread_mutex_lock(&net.lock);
    gen_unref(n->cur); /* the entries go now, or when the last call on them ends */
    pthread_mutex_unlock(&net.lock);
    for (size_t i = 0; i < n->n_names; i++) {
        free(n->names[i].host);
        free(n->names[i].addrs);
    }
    free(n->names);
    free(n->fixed);
    free(n);
}

int sbx_net_prepare_open(struct sbx_net **out, struct gate_error *err)
{
    *out = NULL;
    if (!net.ready) return 0; /* the namespace is the fence; nothing to record with */
    struct sbx_net *n = calloc(1, sizeof(*n));
    struct net_gen *g = calloc(1, sizeof(*g));
    if (!n || !g) {
        free(n), free(g);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    *g = (struct net_gen){.policy_id = NETPOL_OPEN_ID, .refs = 1};
    n->cur = g;
    *out = n;
    return 0;
}

/* n's names and the addresses each resolved to at load (p's entries with that name). */
static int copy_names(const struct policy *p, struct sbx_net *n)
{
    if (!p->net.n_names) return 0;
    if (!(n->names = calloc(p->net.n_names, sizeof(*n->names)))) return -1;
    for (size_t i = 0; i < p->net.n_names; i++) {
        const struct policy_egress_name *pn = &p->net.names[i];
        struct net_name *nn = &n->names[n->n_names++];
        *nn = (struct net_name){.port = pn->port,
                                .ttl_s = pn->ttl_s,
                                .due_ns = gate_monotonic_ns() + pn->ttl_s * 1000000000ull};
        if (!(nn->host = strdup(pn->host))) return -1;
        struct egress_vec addrs = {0};
        for (size_t j = 0; j < p->net.n_egress; j++)
            if (p->net.egress[j].name == i + 1 && push(&addrs, &p->net.egress[j]) < 0) {
                free(addrs.v);
                return -1;
            }
        nn->addrs = addrs.v;
        nn->n = addrs.n;
    }
    return 0;
}

int sbx_net_prepare(const struct policy *p, struct sbx_net **out, struct gate_error *err)
{
    *out = NULL;
    if (net.checking) return 0;
    if (!net.ready)
        return gate_err(err, GATE_E_POLICY,
                        "the network cannot be filtered on this host (%s): a tool would have "
                        "the host's whole network",
                        net.why[0] ? net.why : "not initialised");
    struct sbx_net *n = calloc(1, sizeof(*n));
    if (!n) return gate_err(err, GATE_E_NOMEM, "out of memory");
    struct egress_vec fixed = {0};
    int rc = 0;
    if (p->network == NETWORK_EGRESS) {
        for (size_t i = 0; i < p->net.n_egress && rc == 0; i++)
            if (!p->net.egress[i].name && push(&fixed, &p->net.egress[i]) < 0)
                rc = gate_err(err, GATE_E_NOMEM, "out of memory");
        if (rc == 0 && p->net.dns) rc = each_resolver(add_resolver, &fixed, err);
        if (rc == 0 && copy_names(p, n) < 0) rc = gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    n->fixed = fixed.v;
    n->n_fixed = fixed.n;
    if (rc == 0) rc = net_install(n, err);
    if (rc < 0) {
        sbx_net_free(n);
        return -1;
    }
    if (n->n_names) net_dns_watch(n);
    *out = n;
    return 0;
}

/* ---- calls ----------------------------------------------------------------------------- */
int sbx_net_begin(const struct sbx_net *n, uid_t uid, struct gate_error *err)
{
    if (!n) return 0;
    uint64_t t0 = gate_monotonic_ns();
    if (uid < net.uid_base || uid - net.uid_base >= net.uid_count)
        return gate_err(err, GATE_E_SANDBOX, "network policy: uid %u is not a tool uid",
                        (unsigned)uid);
    pthread_mutex_lock(&net.lock);
    uint64_t cookie = ++net.next_cookie;
    struct slot_events *s = &net.slots[uid - net.uid_base];
    s->cookie = cookie;
    s->n = 0;
    s->nexec = 0;
    gen_unref(s->gen); /* a call that never reached sbx_net_end */
    s->gen = n->cur;
    s->gen->refs++;
    uint32_t policy_id = s->gen->policy_id;
    pthread_mutex_unlock(&net.lock);
    int rc = set_call(uid, policy_id, cookie, err);
    s->begin_ns = gate_monotonic_ns() - t0; /* the slot is this call's until sbx_net_end */
    return rc;
}

static void count_cost(uint64_t ns)
{
    size_t b = 0;
    while (b < NET_COST_BUCKETS && ns > (uint64_t)cost_bounds_us[b] * 1000)
        b++;
    net.cost_buckets[b]++;
    net.cost_sum_ns += ns;
    net.cost_count++;
}

/* What the call in slot did (its map entry c, already taken off it), as sbx_net_end says;
 * frees the slot's events. t0: when the gateway started ending the call. */
static json_t *collect(size_t slot, const struct netpol_call *c, uint64_t t0)
{
    json_t *allowed = json_array(), *denied = json_array(), *execs = json_array();
    pthread_mutex_lock(&net.lock);
    /* Every event of this call is in the ring by now: its processes are gone. */
    ring_buffer__consume(net.rb);
    struct slot_events *s = &net.slots[slot];
    for (unsigned i = 0; i < s->n; i++)
        json_array_append_new(s->ev[i].allowed ? allowed : denied, net_event_json(&s->ev[i]));
    for (unsigned i = 0; i < s->nexec; i++)
        json_array_append_new(execs, net_exec_json(&s->execs[i]));
    s->cookie = 0;
    s->n = 0;
    s->nexec = 0;
    s->busy = false;
    gen_unref(s->gen);
    s->gen = NULL;
    net.denied_total += c->denied;
    count_cost(s->begin_ns + (gate_monotonic_ns() - t0));
    pthread_mutex_unlock(&net.lock);
    return json_pack("{s:{s:o,s:o,s:I,s:I},s:o,s:I}", "network", "allowed", allowed, "denied",
                     denied, "allowed_total", (json_int_t)c->allowed, "denied_total",
                     (json_int_t)c->denied, "execs", execs, "execs_total", (json_int_t)c->execs);
}

json_t *sbx_net_end(uid_t uid)
{
    if (!net.ready || uid < net.uid_base || uid - net.uid_base >= net.uid_count) return NULL;
    uint64_t t0 = gate_monotonic_ns();
    struct netpol_call c = {0};
    uint32_t key = (uint32_t)uid;
    int fd = bpf_map__fd(net.skel->maps.calls);
    bpf_map_lookup_elem(fd, &key, &c);
    struct gate_error err = {0};
    /* Deny-all again before anything else: the uid is free for the next call. */
    set_call(uid, NETPOL_NONE_ID, 0, &err);
    return collect(uid - net.uid_base, &c, t0);
}

/* ---- calls known by their cgroup (container, gvisor) ------------------------------------- */
bool sbx_net_enforced(void)
{
    return net.ready;
}

const char *sbx_net_unavailable(void)
{
    return net.checking ? NULL : net.why[0] ? net.why : "not initialised";
}

const char *sbx_net_cgroup_dir(void)
{
    return net.ready ? net.cgroup : NULL;
}

uint64_t sbx_net_cgroup_id(const char *dir)
{
    /* A cgroup v2 directory's inode number is its kernfs id, which is what
     * bpf_get_current_cgroup_id() and bpf_skb_cgroup_id() return. */
    struct stat st;
    return dir && stat(dir, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static int set_cgcall(uint64_t cgid, const struct netpol_call *c, struct gate_error *err)
{
    if (bpf_map_update_elem(bpf_map__fd(net.skel->maps.cgcalls), &cgid, c, BPF_ANY) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno,
                              "network policy: update the cgroup call map");
    return 0;
}

int sbx_net_hold_cgroup(uint64_t cgid, struct gate_error *err)
{
    if (!net.ready) return 0;
    struct netpol_call c = {.policy_id = NETPOL_NONE_ID, .slot = UINT32_MAX};
    return set_cgcall(cgid, &c, err);
}

void sbx_net_forget_cgroup(uint64_t cgid)
{
    if (net.ready && cgid) bpf_map_delete_elem(bpf_map__fd(net.skel->maps.cgcalls), &cgid);
}

int sbx_net_begin_cgroup(const struct sbx_net *n, uint64_t cgid, struct gate_error *err)
{
    if (!n) return 0;
    uint64_t t0 = gate_monotonic_ns();
    if (!cgid) return gate_err(err, GATE_E_SANDBOX, "network policy: no cgroup v2 directory");
    pthread_mutex_lock(&net.lock);
    size_t slot = net.uid_count;
    while (slot < net.uid_count + NET_CG_SLOTS && net.slots[slot].busy)
        slot++;
    if (slot == net.uid_count + NET_CG_SLOTS) {
        pthread_mutex_unlock(&net.lock);
        return gate_err(err, GATE_E_SANDBOX, "network policy: more than %d sandboxed calls at once",
                        NET_CG_SLOTS);
    }
    struct slot_events *s = &net.slots[slot];
    struct netpol_call c = {
        .policy_id = n->cur->policy_id, .slot = (uint32_t)slot, .cookie = ++net.next_cookie};
    *s = (struct slot_events){.busy = true, .cookie = c.cookie, .execs = s->execs, .gen = n->cur};
    s->gen->refs++;
    pthread_mutex_unlock(&net.lock);
    int rc = set_cgcall(cgid, &c, err);
    pthread_mutex_lock(&net.lock);
    if (rc < 0) {
        s->busy = false;
        gen_unref(s->gen);
        s->gen = NULL;
    } else
        s->begin_ns = gate_monotonic_ns() - t0;
    pthread_mutex_unlock(&net.lock);
    return rc;
}

json_t *sbx_net_end_cgroup(uint64_t cgid)
{
    if (!net.ready || !cgid) return NULL;
    uint64_t t0 = gate_monotonic_ns();
    struct netpol_call c = {0};
    int fd = bpf_map__fd(net.skel->maps.cgcalls);
    if (bpf_map_lookup_elem(fd, &cgid, &c) < 0 || c.slot >= net.uid_count + NET_CG_SLOTS)
        return NULL;
    struct gate_error err = {0};
    /* The directory goes back to deny-all: a pool slot's for whatever it holds between calls,
     * a call's own until it is removed (its owner forgets the entry then): a directory with no
     * entry is not filtered at all. */
    sbx_net_hold_cgroup(cgid, &err);
    return collect(c.slot, &c, t0);
}

json_t *sbx_net_end_cgroup_unseen(uint64_t cgid, const char *kernel)
{
    json_t *net = sbx_net_end_cgroup(cgid);
    if (!net) return NULL;
    json_object_del(net, "execs");
    json_object_del(net, "execs_total");
    json_object_set_new(
        net, "execs_unseen",
        json_sprintf("the tool runs on %s: its execs are not host execve calls", kernel));
    return net;
}

void sbx_net_metrics(struct gate_buf *out)
{
    pthread_mutex_lock(&net.lock);
    gate_buf_printf(out,
                    "# HELP gatehouse_network_denied_total Connections and datagrams tools "
                    "tried that their network policy refused.\n"
                    "# TYPE gatehouse_network_denied_total counter\n"
                    "gatehouse_network_denied_total %llu\n"
                    "# HELP gatehouse_network_policy_call_seconds Time the gateway spends per "
                    "call putting it under its network policy and collecting what it did.\n"
                    "# TYPE gatehouse_network_policy_call_seconds histogram\n",
                    (unsigned long long)net.denied_total);
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= NET_COST_BUCKETS; b++) {
        cumulative += net.cost_buckets[b];
        if (b < NET_COST_BUCKETS)
            gate_buf_printf(out, "gatehouse_network_policy_call_seconds_bucket{le=\"%g\"} %llu\n",
                            cost_bounds_us[b] / 1e6, (unsigned long long)cumulative);
        else
            gate_buf_printf(out, "gatehouse_network_policy_call_seconds_bucket{le=\"+Inf\"} %llu\n",
                            (unsigned long long)cumulative);
    }
    gate_buf_printf(out,
                    "gatehouse_network_policy_call_seconds_sum %.9f\n"
                    "gatehouse_network_policy_call_seconds_count %llu\n",
                    net.cost_sum_ns / 1e9, (unsigned long long)net.cost_count);
    pthread_mutex_unlock(&net.lock);
}
