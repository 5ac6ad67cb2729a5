/* jail.h: the container tier's sandbox around a program the gateway itself runs.
 *
 * The microVM tier's VMM (QEMU) runs jailed the way Firecracker's jailer runs
 * Firecracker: in new user, PID, mount, network, IPC and UTS namespaces, in a
 * cgroup of its own, as the unprivileged tool uid with no capabilities, under the
 * container allowlist (plus its own -sandbox filter), in a fresh read-only root
 * that holds only the read-only paths it is given. A VMM escape lands there, not
 * on the host. This reuses the container tier's plan, child setup and cgroups
 * unchanged (plan.c, image.c, rootfs.c, cgroup.c); only the last step differs:
 * the jailed program is exec'd directly with the fds the caller passes, instead
 * of under the container init with a tool's stdio.
 */
#ifndef GATE_CONTAINER_JAIL_H
#define GATE_CONTAINER_JAIL_H

#include "container.h"

/* Tier-wide: the cgroup parent and the identity of every jailed program. */
struct ct_jail {
    struct ct_cg_config cg;
    struct ct_ids ids;
    bool ready;
};

/* One program's prepared jail (its root and filter), built once. */
struct ct_jail_plan {
    struct ct_state *st;
    bool dev_kvm; /* bind the host's /dev/kvm into the jail's /dev */
};

/* How a jailed program reaches the network: not at all (a namespace of its own), or through
 * the host's namespace with every connect and datagram decided by the BPF programs on the
 * jail's cgroup, which is held to deny-all from its creation (netpolicy.h). */
struct ct_jail_net {
    bool host;
    const char *resolv; /* the jail's /etc/resolv.conf (host only; NULL: none) */
};

/* One running jailed program. */
struct ct_jail_proc {
    pid_t pid; /* our child, PID 1 of its namespace: killing it ends the whole jail */
    struct ct_cgroup cg;
    bool have_cg;
    uint64_t cgid; /* host network: the cgroup v2 directory's id in the BPF maps, else 0 */
};

#define CT_JAIL_MAX_FDS 5

/* Set up the cgroup parent `name` ("<prefix><pid>") below the gateway's cgroup, removing the ones
 * of dead gateways with the same prefix. Call from the main thread as root. */
int ct_jail_init(struct ct_jail *j, const char *name, uid_t uid, gid_t gid, struct gate_error *err);
/* Remove the cgroup parent (every jail must be gone). */
void ct_jail_teardown(struct ct_jail *j);

/* Prepare a jail for `program` (absolute path) whose root holds the read_only paths (absolute,
 * NULL-terminated; the program's own directory and the loader cache are added), whose filter
 * is the container allowlist plus `allow` (syscall names, NULL-terminated, may be NULL), and
 * whose network is net (NULL: none). */
int ct_jail_plan(const char *program, char *const *read_only, char *const *allow,
                 const struct ct_jail_net *net, struct ct_jail_plan *plan, struct gate_error *err);
void ct_jail_plan_free(struct ct_jail_plan *plan);

/* Start argv (argv[0] is the planned program, environment empty) in a fresh jail, in a new
 * cgroup with limits l (memory_mb, pids, cpu_millis), with fds[i] as its fd i for i < nfds
 * (nfds <= CT_JAIL_MAX_FDS; the caller keeps and closes its copies). Returns once the program
 * has exec'd; a setup failure is reported in err with the step that failed. */
int ct_jail_spawn(struct ct_jail *j, const struct ct_jail_plan *plan, char *const *argv,
                  const int *fds, int nfds, const struct policy_limits *l, struct ct_jail_proc *p,
                  struct gate_error *err);
/* SIGKILL the jail (and anything left in its cgroup). Safe to call more than once, before reap. */
void ct_jail_kill(struct ct_jail *j, struct ct_jail_proc *p);
/* Wait for the jail's PID 1 (if not reaped yet: pass reaped=true when the caller already has),
 * then remove its cgroup (and then its network map entry: a directory left behind stays held to
 * deny-all). Returns -1 if the cgroup could not be removed (leaked). */
int ct_jail_reap(struct ct_jail *j, struct ct_jail_proc *p, bool reaped);
/* Weigh the jail's CPU share against its siblings': background work (a pool's guest being
 * restored) low, so that it never slows a call down; back to normal when it serves one. */
void ct_jail_cpu_background(struct ct_jail *j, const struct ct_jail_proc *p, bool background);
/* The jail's cgroup OOM-killed something (the VMM itself hit its memory cap). */
bool ct_jail_oom(struct ct_jail *j, const struct ct_jail_proc *p);

#endif
