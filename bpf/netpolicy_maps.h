/* netpolicy_maps.h: the layout of the network policy's BPF maps and events, shared by the BPF
 * programs (netpolicy.bpf.c) and the gateway (sandboxes/common/netpolicy.c).
 *
 * A call is known to the programs by the host uid it runs under (the process tier gives each
 * running call a uid of its own), or else by the cgroup v2 directory it runs in (the container
 * and gvisor tiers: their sandboxes share one host uid, but each is born in a directory of its
 * own). `calls` maps every uid of the gateway's tool range to the policy in force for it: the
 * deny-all policy between calls; `cgcalls` maps those cgroup ids (a pool slot's between calls:
 * deny-all). A policy is a set of LPM-trie
 * entries keyed (policy id, port, address prefix); policy id 0 holds the destinations no tool
 * may ever reach (the gateway's own API), checked first.
 */
#ifndef GATE_NETPOLICY_MAPS_H
#define GATE_NETPOLICY_MAPS_H

#include <linux/types.h>

#define NETPOL_DENY_ID 0u /* entries that are refused whatever the policy */
#define NETPOL_NONE_ID 1u /* the policy with no entries: nothing is reachable */
/* Everything passes, and is reported: only for a sandbox in a network namespace of its own
 * with nothing but lo (the container tier's `network: none`), where the namespace is the
 * fence and the programs only record what the call did. */
#define NETPOL_OPEN_ID 2u
#define NETPOL_EVENTS_MAX 64u /* events reported per call; the rest are only counted */

struct netpol_call {
    __u32 policy_id;
    __u32 slot;    /* where the gateway collects this call's events; events carry it */
    __u64 cookie;  /* which call holds the uid now; events carry it */
    __u64 allowed; /* attempts, counted atomically by the programs */
    __u64 denied;
    __u64 emitted; /* network events offered to the ring buffer */
    __u64 execs;   /* execve calls seen */
};

/* LPM trie keys: prefixlen counts bits of data, which is the policy id and the port (always
 * matched exactly: 48 bits) followed by the address prefix. */
struct netpol_key4 {
    __u32 prefixlen;
    __u8 data[10]; /* policy id (4, host order), port (2, network order), IPv4 address */
} __attribute__((packed));
struct netpol_key6 {
    __u32 prefixlen;
    __u8 data[22]; /* policy id, port, IPv6 address */
} __attribute__((packed));
#define NETPOL_KEY_FIXED_BITS 48u

enum netpol_op {
    NETPOL_OP_CONNECT = 1,
    NETPOL_OP_SENDMSG = 2,
    NETPOL_OP_SOCKET = 3,
    NETPOL_OP_EXEC = 4 /* a struct netpol_exec */
};

struct netpol_event {
    __u64 cookie;
    __u32 slot;
    __u8 op;      /* enum netpol_op */
    __u8 allowed; /* 1 allowed, 0 denied */
    __u8 family;  /* AF_INET, AF_INET6 */
    __u8 proto;   /* IPPROTO_TCP, IPPROTO_UDP, or the refused socket's protocol */
    __u16 port;   /* host order */
    __u16 type;   /* socket type (SOCK_STREAM, SOCK_DGRAM, SOCK_RAW) */
    __u8 addr[16];
};

/* An execve by a process of the call (sched_process_exec); op at the same offset as above.
 * With the path, the first NETPOL_ARGS words of its argv (argv[0] included), each cut to its
 * first NETPOL_ARG_MAX bytes. */
#define NETPOL_PATH_MAX 128
#define NETPOL_ARGS 4
#define NETPOL_ARG_MAX 64
struct netpol_exec {
    __u64 cookie;
    __u32 slot;
    __u8 op;        /* NETPOL_OP_EXEC */
    __u8 argc;      /* words read into argv, at most NETPOL_ARGS */
    __u8 truncated; /* bit i: word i was longer than NETPOL_ARG_MAX bytes and is cut */
    __u8 more;      /* 1: argv had more than NETPOL_ARGS words (or the rest could not be read) */
    char path[NETPOL_PATH_MAX];
    char argv[NETPOL_ARGS][NETPOL_ARG_MAX + 1]; /* NUL-terminated */
};

#endif
