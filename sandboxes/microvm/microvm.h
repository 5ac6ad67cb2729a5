/* microvm.h: internals of the microVM tier (private to sandboxes/microvm/).
 *
 * microvm.c  the sbx_ops row: find QEMU, the guest kernel and agent; per policy, the
 *            guest image, the snapshot and the pool; turning an exchange into a result
 * image.c    the guest's initramfs: the agent, a minimal /etc and the tool's files
 * vm.c       one jailed QEMU: boot cold, restore from the snapshot, make the snapshot
 * call.c     one call's exchange with the guest agent (proto.h), under the deadline
 * guest/     the kernel config, its build script and the agent (init.c)
 */
#ifndef GATE_MICROVM_H
#define GATE_MICROVM_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/netpolicy.h"
#include "../container/jail.h"
#include "proto.h"
#include "sbx_internal.h"

#define MVM_MAX_VCPUS 8 /* the guest kernel's NR_CPUS */
#define MVM_MIN_MEMORY_MB 32
/* Readiness of a booting or restored guest. TCG on two shared cores boots in ~1 s; this
 * only catches a guest that will never answer. */
#define MVM_BOOT_TIMEOUT_MS 60000
/* QEMU's own memory on top of the guest's RAM, for the jail's cgroup (TCG's code cache is
 * capped at MVM_TB_MB of it). */
#define MVM_TB_MB 64
#define MVM_VMM_OVERHEAD_MB (MVM_TB_MB + 96)
#define MVM_VMM_PIDS 64
/* The guest console kept for a call's diagnostics (kernel panic, agent errors). */
#define MVM_CONSOLE_MAX 4096

/* Tier-wide state, set by init. */
struct mvm_tier {
    char qemu[PATH_MAX];
    char kernel[PATH_MAX]; /* the cached vmlinux */
    char kernel_dir[PATH_MAX];
    char agent[PATH_MAX]; /* gatehouse-microvm-init, static */
    char dir[PATH_MAX];   /* STATE/microvm */
    bool has_kvm;         /* /dev/kvm opens and answers KVM_GET_API_VERSION */
    char kvm_reason[160]; /* why not, for a policy that demands kvm */
    uid_t uid;            /* the tool's uid in the guest, and the jailed QEMU's on the host */
    gid_t gid;
    struct ct_jail jail;
    unsigned long long calls, cold_boots, restores, boot_failures, leaks; /* atomic */
};
extern struct mvm_tier mvm;

/* A guest configuration: image, kernel command line, memory, vCPUs, accelerator. Policies whose
 * guests are identical share one (and its snapshot), found by the hash of all of it. */
struct mvm_guest {
    char key[65];
    int refs; /* under the registry lock */
    char dir[PATH_MAX];
    char initrd[PATH_MAX];
    char snapshot[PATH_MAX];
    bool kvm;
    struct ct_jail_plan plan;
    char **argv; /* QEMU's command line without the per-start tail (see vm.c) */
    struct policy_limits vmm_limits;
    struct mvm_guest *next;
};

/* One running, jailed QEMU. */
struct mvm_vm {
    struct ct_jail_proc proc;
    int in_w;  /* the agent's channel, host -> guest; owned */
    int out_r; /* guest -> host; owned */
    int err_r; /* QEMU's stderr and the guest console; owned */
    int pidfd; /* readable once QEMU exited; owned */
    bool reaped;
    struct mvm_vm *next_retired;   /* in the reaper's queue */
    char console[MVM_CONSOLE_MAX]; /* the console's last bytes */
    size_t console_len;
};

/* A policy's compiled state (p->sbx_state). */
struct mvm_policy {
    struct mvm_guest *guest;
    struct sock_fprog seccomp; /* the tool's filter in the guest; owned */
    struct gate_buf rehearsal; /* the PING a restored guest rehearses the call with (proto.h) */
    struct sbx_pool pool;      /* guests restored from the snapshot (sbx_internal.h) */
    struct sbx_net *net;       /* network.egress: the policy's map entries, else NULL */
};

/* image.c */
/* The guest's initramfs for p, as an uncompressed newc cpio in out (owned by the caller). */
int mvm_image_build(const struct policy *p, struct gate_buf *out, struct gate_error *err);

/* vm.c */
enum mvm_boot { MVM_COLD, MVM_RESTORE };
/* Start a jailed QEMU for g and wait until its agent answers: READY after a cold boot; after a
 * restore, PONG to ping (a rehearsal frame, or NULL for a bare PING). Gives up early once
 * *cancel (may be NULL) turns true. The caller owns *out (mvm_vm_destroy). */
int mvm_vm_start(struct mvm_guest *g, enum mvm_boot how, const struct gate_buf *ping,
                 const bool *cancel, struct mvm_vm **out, struct gate_error *err);
/* Kill, reap, remove the cgroup, close. Frees vm. */
void mvm_vm_destroy(struct mvm_vm *vm);
/* Kill vm now and leave the rest of mvm_vm_destroy to the reaper thread (off the call's path),
 * or do it here when the reaper is not running. Frees vm eventually. */
void mvm_vm_retire(struct mvm_vm *vm);
int mvm_reaper_start(struct gate_error *err);
/* Destroy what is queued and stop the thread. */
void mvm_reaper_stop(void);
/* Whether vm's QEMU has exited (reaped then). */
bool mvm_vm_dead(struct mvm_vm *vm);
/* Boot g cold and save it, booted and idle, to g->snapshot (QMP migrate to a file). */
int mvm_snapshot(struct mvm_guest *g, struct gate_error *err);
/* Read what the console pipe holds into vm->console. Returns false at EOF. */
bool mvm_console_drain(struct mvm_vm *vm);
/* The guest's kernel panic line, if the console shows one (into buf); else false. */
bool mvm_console_panic(const struct mvm_vm *vm, char *buf, size_t len);
/* The console's last line, for diagnostics. */
void mvm_console_last(const struct mvm_vm *vm, char *buf, size_t len);

/* call.c */
/* Build the frame for one call: type MVM_CALL, or MVM_PING for a rehearsal of it. */
int mvm_call_frame(const struct policy *p, const struct mvm_policy *mp, const struct sbx_call *call,
                   uint32_t type, struct gate_buf *out, struct gate_error *err);
/* Send frame to vm's agent and run the call to its end (EXIT, FAIL, VM gone, deadline or output
 * cap); the VM is killed, and the caller retires it. Fills res like every tier. */
int mvm_call_run(const struct policy *p, struct mvm_vm *vm, const struct gate_buf *frame,
                 struct sbx_result *res, struct gate_error *err);

#endif
