/* netpolicy.bpf.c: per-call network policy, enforced in the kernel (see netpolicy_maps.h).
 *
 * Attached to the gateway's own cgroup v2 directory, so every tool it starts is under it. A
 * call is found by its process's uid (process tier) or, failing that, by its cgroup v2 id
 * (container and gvisor tiers: their sandboxes are born in directories below ours). A process
 * that is neither (the gateway itself, its helpers outside a call's cgroup) passes untouched; a
 * tool's connect() and unconnected sendmsg() succeed only to a destination its call's policy lists,
 * and it may create only TCP and UDP sockets. Every decision is reported on the ring buffer (the
 * first NETPOL_EVENTS_MAX per call) and counted.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "netpolicy_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, struct netpol_call);
} calls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, struct netpol_call);
} cgcalls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 16384);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct netpol_key4);
    __type(value, __u8);
} allow4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 16384);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct netpol_key6);
    __type(value, __u8);
} allow6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

static __always_inline int in4(__u32 policy_id, __u32 port_be, __u32 addr_be)
{
    struct netpol_key4 k = {.prefixlen = NETPOL_KEY_FIXED_BITS + 32};
    __u16 port = (__u16)port_be;
    __builtin_memcpy(&k.data[0], &policy_id, 4);
    __builtin_memcpy(&k.data[4], &port, 2);
    __builtin_memcpy(&k.data[6], &addr_be, 4);
    return bpf_map_lookup_elem(&allow4, &k) != 0;
}

static __always_inline int in6(__u32 policy_id, __u32 port_be, const __u32 *addr)
{
    struct netpol_key6 k = {.prefixlen = NETPOL_KEY_FIXED_BITS + 128};
    __u16 port = (__u16)port_be;
    __builtin_memcpy(&k.data[0], &policy_id, 4);
    __builtin_memcpy(&k.data[4], &port, 2);
    __builtin_memcpy(&k.data[6], addr, 16);
    return bpf_map_lookup_elem(&allow6, &k) != 0;
}

static __always_inline int allowed4(__u32 policy_id, __u32 port_be, __u32 addr_be)
{
    if (policy_id == NETPOL_OPEN_ID) return 1;
    if (in4(NETPOL_DENY_ID, port_be, addr_be)) return 0;
    return in4(policy_id, port_be, addr_be);
}

static __always_inline int allowed6(__u32 policy_id, __u32 port_be, const __u32 *addr)
{
    if (policy_id == NETPOL_OPEN_ID) return 1;
    return !in6(NETPOL_DENY_ID, port_be, addr) && in6(policy_id, port_be, addr);
}

static __always_inline void report(struct netpol_call *c, __u8 op, int ok, __u8 family, __u8 proto,
                                   __u16 type, __u32 port_be, const void *addr)
{
    if (ok)
        __sync_fetch_and_add(&c->allowed, 1);
    else
        __sync_fetch_and_add(&c->denied, 1);
    if (__sync_fetch_and_add(&c->emitted, 1) >= NETPOL_EVENTS_MAX) return;
    struct netpol_event e = {.cookie = c->cookie,
                             .slot = c->slot,
                             .op = op,
                             .allowed = ok ? 1 : 0,
                             .family = family,
                             .proto = proto,
                             .port = bpf_ntohs((__u16)port_be),
                             .type = type};
    if (family == AF_INET)
        __builtin_memcpy(e.addr, addr, 4);
    else if (family == AF_INET6)
        __builtin_memcpy(e.addr, addr, 16);
    bpf_ringbuf_output(&events, &e, sizeof(e), 0);
}

static __always_inline struct netpol_call *current_call(void)
{
    __u32 uid = (__u32)bpf_get_current_uid_gid();
    struct netpol_call *c = bpf_map_lookup_elem(&calls, &uid);
    if (c) return c;
    __u64 cgid = bpf_get_current_cgroup_id();
    return bpf_map_lookup_elem(&cgcalls, &cgid);
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u8 op)
{
    struct netpol_call *c = current_call();
    if (!c) return 1;
    __u32 addr = ctx->user_ip4, port = ctx->user_port;
    int ok = allowed4(c->policy_id, port, addr);
    report(c, op, ok, AF_INET, (__u8)ctx->protocol, (__u16)ctx->type, port, &addr);
    return ok;
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u8 op)
{
    struct netpol_call *c = current_call();
    if (!c) return 1;
    __u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    __u32 port = ctx->user_port;
    int ok;
    /* ::ffff:a.b.c.d reaches the IPv4 address: judge it by the IPv4 rules. */
    if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
        ok = allowed4(c->policy_id, port, a[3]);
        report(c, op, ok, AF_INET, (__u8)ctx->protocol, (__u16)ctx->type, port, &a[3]);
        return ok;
    }
    ok = allowed6(c->policy_id, port, a);
    report(c, op, ok, AF_INET6, (__u8)ctx->protocol, (__u16)ctx->type, port, a);
    return ok;
}

SEC("cgroup/connect4")
int netpol_connect4(struct bpf_sock_addr *ctx)
{
    return check4(ctx, NETPOL_OP_CONNECT);
}

SEC("cgroup/connect6")
int netpol_connect6(struct bpf_sock_addr *ctx)
{
    return check6(ctx, NETPOL_OP_CONNECT);
}

SEC("cgroup/sendmsg4")
int netpol_sendmsg4(struct bpf_sock_addr *ctx)
{
    return check4(ctx, NETPOL_OP_SENDMSG);
}

SEC("cgroup/sendmsg6")
int netpol_sendmsg6(struct bpf_sock_addr *ctx)
{
    return check6(ctx, NETPOL_OP_SENDMSG);
}

/* Only TCP and UDP: raw, ICMP ("ping") and other IP sockets would carry traffic the address
 * hooks above never see. */
SEC("cgroup/sock_create")
int netpol_sock_create(struct bpf_sock *sk)
{
    struct netpol_call *c = current_call();
    if (!c) return 1;
    int ok = c->policy_id == NETPOL_OPEN_ID ||
             (sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP) ||
             (sk->type == SOCK_DGRAM && sk->protocol == IPPROTO_UDP);
    if (!ok) {
        __u8 none[16] = {};
        report(c, NETPOL_OP_SOCKET, 0, (__u8)sk->family, (__u8)sk->protocol, (__u16)sk->type, 0,
               none);
    }
    return ok;
}

/* The backstop: every packet a tool's socket sends must go to a destination its policy lists,
 * whatever path produced it (a connect the hooks above did not see would still end here). The
 * socket's owner uid names the call, as the caller's uid does above, or else the cgroup the
 * socket was made in. Packets of other sockets
 * (the gateway's own) pass. Dropped packets are not reported: the hooks above report the
 * attempt; here a drop means a path they missed, and the sender gets EPERM. */
SEC("cgroup_skb/egress")
int netpol_egress(struct __sk_buff *skb)
{
    __u32 uid = bpf_get_socket_uid(skb);
    struct netpol_call *c = bpf_map_lookup_elem(&calls, &uid);
    if (!c) {
        __u64 cgid = bpf_skb_cgroup_id(skb); /* the socket's: where its creator ran */
        c = bpf_map_lookup_elem(&cgcalls, &cgid);
    }
    if (!c || c->policy_id == NETPOL_OPEN_ID) return 1;
    __u8 proto = 0;
    __u16 port = 0;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        __u8 vihl = 0;
        __u32 daddr = 0;
        if (bpf_skb_load_bytes(skb, 0, &vihl, 1) < 0 || bpf_skb_load_bytes(skb, 9, &proto, 1) < 0 ||
            bpf_skb_load_bytes(skb, 16, &daddr, 4) < 0)
            return 0;
        if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return 0;
        if (bpf_skb_load_bytes(skb, (vihl & 0xf) * 4 + 2, &port, 2) < 0) return 0;
        return allowed4(c->policy_id, port, daddr);
    }
    if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        __u32 daddr[4];
        /* No extension headers: a tool's TCP and UDP packets carry none. */
        if (bpf_skb_load_bytes(skb, 6, &proto, 1) < 0 || bpf_skb_load_bytes(skb, 24, daddr, 16) < 0)
            return 0;
        if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return 0;
        if (bpf_skb_load_bytes(skb, 40 + 2, &port, 2) < 0) return 0;
        if (daddr[0] == 0 && daddr[1] == 0 && daddr[2] == bpf_htonl(0xffff))
            return allowed4(c->policy_id, port, daddr[3]);
        return allowed6(c->policy_id, port, daddr);
    }
    return 0;
}

/* The sched_process_exec tracepoint's record (see its format file): the common header, then
 * the file name as a __data_loc (offset in the low 16 bits, length in the high 16). */
struct exec_record {
    __u64 common;
    __u32 filename_loc;
    int pid;
    int old_pid;
};

/* The two kernel structures the exec record reads, reduced to the fields used. CO-RE: libbpf
 * finds each field's offset in the running kernel's BTF when it loads the programs, so no
 * layout of one kernel version is compiled in. */
struct mm_struct {
    unsigned long arg_start, arg_end;
} __attribute__((preserve_access_index));
struct task_struct {
    struct mm_struct *mm;
} __attribute__((preserve_access_index));

/* Finding the end of a word longer than NETPOL_ARG_MAX, by bpf_loop, a chunk at a time. */
#define SKIP_CHUNK 256
#define SKIP_LOOPS 600 /* a word is at most MAX_ARG_STRLEN (128 KiB): 515 chunks */
struct word_skip {
    __u64 p;   /* where the search is; at the end, the start of the next word */
    __u64 end; /* arg_end */
    int found;
};

static long skip_chunk(__u64 i, void *ctx)
{
    struct word_skip *w = ctx;
    char buf[SKIP_CHUNK];
    (void)i;
    long n = bpf_probe_read_user_str(buf, sizeof(buf), (const void *)w->p);
    if (n <= 0) return 1;
    if (n < SKIP_CHUNK) {
        w->p += n;
        w->found = 1;
        return 1;
    }
    w->p += SKIP_CHUNK - 1;
    return w->p >= w->end;
}

/* The first NETPOL_ARGS words of the new program's argv: at this tracepoint the exec is done,
 * current->mm is the new one and its arg_start..arg_end hold argv, NUL-separated, in pages
 * the kernel has just written (so they are present: the read does not need to fault). */
static __always_inline void read_argv(struct netpol_exec *e)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    __u64 p = BPF_CORE_READ(task, mm, arg_start), end = BPF_CORE_READ(task, mm, arg_end);
    for (int i = 0; i < NETPOL_ARGS; i++) {
        if (p >= end) return;
        long n = bpf_probe_read_user_str(e->argv[i], NETPOL_ARG_MAX + 1, (const void *)p);
        if (n <= 0) break;
        e->argc = (__u8)(i + 1);
        if (n <= NETPOL_ARG_MAX) { /* the whole word and its NUL */
            p += n;
            continue;
        }
        /* NETPOL_ARG_MAX bytes were kept: the word is exactly that long, or longer. */
        struct word_skip w = {.p = p + NETPOL_ARG_MAX, .end = end};
        bpf_loop(SKIP_LOOPS, skip_chunk, &w, 0);
        if (!w.found) {
            e->truncated |= (__u8)(1u << i);
            break;
        }
        if (w.p > p + NETPOL_ARG_MAX + 1) e->truncated |= (__u8)(1u << i);
        p = w.p;
    }
    e->more = p < end;
}

/* Every program a tool's processes execute, with its first argv words, for the call's record.
 * Not a filter: it only reports (the first NETPOL_EVENTS_MAX per call; all are counted). */
SEC("tracepoint/sched/sched_process_exec")
int netpol_exec(struct exec_record *ctx)
{
    struct netpol_call *c = current_call();
    if (!c) return 0;
    if (__sync_fetch_and_add(&c->execs, 1) >= NETPOL_EVENTS_MAX) return 0;
    struct netpol_exec *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) return 0;
    e->cookie = c->cookie;
    e->slot = c->slot;
    e->op = NETPOL_OP_EXEC;
    e->argc = e->truncated = e->more = 0;
    bpf_probe_read_kernel_str(e->path, sizeof(e->path), (char *)ctx + (ctx->filename_loc & 0xffff));
    read_argv(e);
    bpf_ringbuf_submit(e, 0);
    return 0;
}
