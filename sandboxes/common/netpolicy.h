/* netpolicy.h: per-call network policy in the kernel (private to sandboxes/).
 *
 * The BPF programs of bpf/netpolicy.bpf.c are attached once, at gateway start, to a cgroup v2
 * directory of the gateway's own that the gateway moves itself into (one migration, at start:
 * moving costs milliseconds on this kernel; every tool is then born there for free). A call is
 * recognised by its per-call host uid; a policy is a set of map entries written when it loads
 * and removed with it, so a call switches policy with one map update. Between calls every tool
 * uid is held to the deny-all policy: nothing a tool left behind could reach the network.
 */
#ifndef GATE_NETPOLICY_H
#define GATE_NETPOLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "sandbox.h"

struct sbx_net;

/* At gateway start: load the programs, make the cgroup, move the gateway in, attach, and hold
 * every uid of cfg's call range to the deny-all policy. Without cfg->gateway (policy check)
 * nothing is loaded and policies are only validated. Returns -1 with err if BPF cannot be
 * used; process-tier policies then fail to load with that reason. */
int sbx_net_init(const struct sbx_config *cfg, struct gate_error *err);
/* Compile p's network policy into map entries. *out is owned by the caller (sbx_net_free);
 * NULL when only checking. */
int sbx_net_prepare(const struct policy *p, struct sbx_net **out, struct gate_error *err);
void sbx_net_free(struct sbx_net *n);
/* Put uid under n's policy for a call (before the tool starts). */
int sbx_net_begin(const struct sbx_net *n, uid_t uid, struct gate_error *err);
/* After every process of the call is gone: back to deny-all, and what the call did as
 * {"network": {"allowed": [...], "denied": [...], "allowed_total": N, "denied_total": N},
 *  "execs": [{"path": P, "argv": [...]}...], "execs_total": N} (owned; the first 64 of each,
 *  counts of all; exec_json in netpolicy.c says what an exec entry may carry), or NULL
 * when nothing is enforced. */
json_t *sbx_net_end(uid_t uid);

/* Calls known by the cgroup v2 directory their sandbox is born in (container, gvisor), where
 * every sandbox of the tier runs under one host uid. */
bool sbx_net_enforced(void); /* the programs are attached (else: sbx_net_unavailable says why) */
const char *sbx_net_unavailable(void);
/* The gateway's filtered directory (tiers make a sandbox's own directory below it), or NULL
 * when BPF is not in use. */
const char *sbx_net_cgroup_dir(void);
/* The id the programs know dir by (its inode number), or 0 if it cannot be read. */
uint64_t sbx_net_cgroup_id(const char *dir);
/* For a sandbox in a network namespace of its own (`network: none`): nothing is filtered,
 * everything is recorded. *out NULL when BPF is not in use (owned; sbx_net_free). */
int sbx_net_prepare_open(struct sbx_net **out, struct gate_error *err);
/* The text of a sandbox's /etc/resolv.conf for p: the host's name servers with network.dns,
 * else none (owned; NULL with err). */
char *sbx_net_resolv_conf(const struct policy *p, struct gate_error *err);
/* Hold a pool slot's directory to deny-all between calls. */
int sbx_net_hold_cgroup(uint64_t cgid, struct gate_error *err);
/* Before a directory that was held or under a policy is removed: its map entry goes. */
void sbx_net_forget_cgroup(uint64_t cgid);
/* Put the directory cgid under n's policy, before anything of the call runs in it. */
int sbx_net_begin_cgroup(const struct sbx_net *n, uint64_t cgid, struct gate_error *err);
/* After every process of the call is gone: what it did (as sbx_net_end), and the directory
 * back to deny-all (hold: a pool slot's) or out of the map (a call's own, removed next). */
json_t *sbx_net_end_cgroup(uint64_t cgid);
/* The same for a sandbox whose tool runs on a kernel of its own (gVisor's, a guest's), named
 * by `kernel`: its execs are not host execve calls, so the record has none (only the runtime's
 * own) and says so (`execs_unseen`) instead. */
json_t *sbx_net_end_cgroup_unseen(uint64_t cgid, const char *kernel);
void sbx_net_metrics(struct gate_buf *out);
/* Detach, move the gateway back to its cgroup and remove the directory. */
void sbx_net_shutdown(void);

#endif
