/* proto.h: the wire between the gateway and the guest agent (guest/init.c).
 *
 * One byte stream each way over a virtio-serial port (QEMU's stdin and stdout on
 * the host side). Every message is a frame: a header of two little-endian u32
 * (type, payload length) and the payload. The guest says READY once it has booted;
 * the host may PING (answered by PONG: a guest restored from a snapshot proves it
 * runs) and then sends exactly one CALL. The guest streams OUT and ERR frames and
 * ends with EXIT, or FAIL when the tool could not be started; the host then stops the
 * VM (the guest powers itself off only if the host closes the channel instead: a
 * frame the guest has written may still be queued inside QEMU).
 * A PING may carry a CALL's payload: a rehearsal. The agent walks that call's path
 * (mounts, cgroup, a confined child that runs only the command's ELF interpreter in
 * --list mode, no code of the tool), discards what it prints, undoes it, and then
 * answers PONG: under TCG a restored guest's code cache starts empty, and this fills
 * it before a real call has to wait on it.
 * The host trusts nothing it reads: lengths are capped before anything is
 * allocated, and the output cap is enforced on both sides.
 */
#ifndef GATE_MICROVM_PROTO_H
#define GATE_MICROVM_PROTO_H

#include <stdint.h>

enum mvm_frame_type {
    MVM_READY = 1, /* guest -> host: booted, waiting for a call */
    MVM_PING = 2,  /* host -> guest; empty, or a rehearsal (a CALL's payload) */
    MVM_PONG = 3,  /* guest -> host */
    MVM_CALL = 4,  /* host -> guest: struct mvm_call + its variable part */
    MVM_OUT = 5,   /* guest -> host: tool stdout bytes */
    MVM_ERR = 6,   /* guest -> host: tool stderr bytes */
    MVM_EXIT = 7,  /* guest -> host: struct mvm_exit */
    MVM_FAIL = 8,  /* guest -> host: the tool could not start; text "step: ERRNO" */
};

struct mvm_hdr {
    uint32_t type;
    uint32_t len;
};

/* OUT and ERR frames carry at most this much. */
#define MVM_DATA_MAX 65536u
/* A CALL frame (arguments JSON included) is at most this large. */
#define MVM_CALL_MAX (64u << 20)
/* FAIL text. */
#define MVM_FAIL_MAX 512u

#define MVM_CALL_EXEC_SCRATCH 1u /* /tmp and /workspace allow exec */

/* The fixed part of a CALL. Followed by seccomp_len bytes of BPF (struct sock_filter[]),
 * argc NUL-terminated argv strings, envc NUL-terminated "K=V" strings and input_len bytes
 * for the tool's stdin. */
struct mvm_call {
    uint64_t realtime_ns;     /* the host's CLOCK_REALTIME: a restored guest's clock is stale */
    uint64_t output_bytes;    /* stdout+stderr cap */
    uint64_t file_size_bytes; /* RLIMIT_FSIZE */
    uint64_t cpu_time_s;      /* RLIMIT_CPU */
    uint32_t uid, gid;        /* the tool's identity in the guest */
    uint32_t pids;            /* pids.max of the tool's cgroup */
    uint32_t disk_mb;         /* /tmp and /dev/shm tmpfs size */
    uint32_t workspace_mb;    /* /workspace tmpfs size; 0: no workspace */
    uint32_t flags;           /* MVM_CALL_* */
    uint32_t argc, envc;
    uint32_t seccomp_len;
    uint32_t input_len;
    uint8_t seed[64]; /* fresh entropy: every guest restored from one snapshot has the same pool */
};

#define MVM_EXIT_OOM 1u       /* the tool's cgroup had an OOM kill */
#define MVM_EXIT_PIDS 2u      /* pids.max refused a fork */
#define MVM_EXIT_TRUNCATED 4u /* output cap reached; the tool was killed */

struct mvm_exit {
    int32_t wait_status; /* the tool's raw wait status */
    uint32_t flags;      /* MVM_EXIT_* */
};

#endif
