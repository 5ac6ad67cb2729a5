/* audit.h: the tamper-evident, durable audit log.
 *
 * Append-only JSON Lines segments under STATE/audit/ (audit-000001.jsonl, ...).
 * Every record carries seq, ts (RFC 3339 UTC), mono_ns, event, the caller's
 * fields, prev (the previous record's hash) and hash: SHA-256 over the exact
 * bytes of the record line before its ,"hash" member. audit_append returns only
 * once the record is on stable storage; concurrent appenders share one write and
 * one sync (group commit). A failed write or sync puts the log in a failed,
 * fail-closed state: every later append fails with GATE_E_AUDIT_UNAVAILABLE.
 * The live segment carries preallocated zeros after its records (records never
 * contain a NUL byte); it is cut to size when closed. On open, such zeros and a torn
 * last line are cut off and the chain continues from the last good record. audit_verify checks a
 * whole directory, names the first bad seq, and warns about what is there besides a clean
 * chain (a torn tail, with its size; files that are not segments).
 */
#ifndef GATE_AUDIT_H
#define GATE_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gate.h"

struct audit_log;

/* Open (creating if needed) the log in dir. The caller owns *out (audit_close). */
int audit_open(const char *dir, struct audit_log **out, struct gate_error *err);
void audit_close(struct audit_log *log);

/* Append one record and wait until it is durable. fields is a JSON object of event fields
 * (call_id, tool, agent, args_sha256, policy_sha256, status, ...); it is not consumed. Keys
 * seq, ts, mono_ns, event, prev and hash are the log's own and are refused in fields.
 * On success *seq_out (may be NULL) is the record's seq. */
int audit_append(struct audit_log *log, const char *event, const json_t *fields, uint64_t *seq_out,
                 struct gate_error *err);

/* false once a write or sync has failed; why says what failed. */
bool audit_healthy(struct audit_log *log, char *why, size_t why_len);
/* Counters for /metrics. */
uint64_t audit_write_failures(struct audit_log *log);
uint64_t audit_last_seq(struct audit_log *log);

/* The writer's first record: a log starts with it at seq 1. */
#define AUDIT_FIRST_EVENT "gateway.started"

#define AUDIT_VERIFY_MAX_MSGS 16
struct audit_verify_msg {
    bool warning;   /* true: something needs a look (AUDIT_VERIFY_WARNINGS); false: a note */
    char text[320]; /* one line, names the file; bytes that are not printable appear as \xNN */
};

struct audit_verify_report {
    uint64_t records;    /* records that verified */
    uint64_t first_bad;  /* seq of the first bad record (0 if all good) */
    char reason[256];    /* what is wrong with it; with AUDIT_VERIFY_WARNINGS, the first warning */
    uint64_t anchors;    /* anchors checked (audit_verify_anchored) */
    char node[65];       /* the node whose anchors were checked */
    uint64_t torn_bytes; /* bytes after the newest segment's last complete record that the next
                          * audit_open cuts off and keeps in a .torn- file (0: none) */
    size_t n_warnings;   /* warnings found, including any that did not fit in msgs */
    size_t n_msgs;       /* warnings and notes in msgs, in the order found */
    size_t n_dropped;    /* messages that did not fit */
    struct audit_verify_msg msgs[AUDIT_VERIFY_MAX_MSGS];
};

enum audit_verify_result {
    AUDIT_VERIFY_INTACT = 0,   /* the chain verifies from gateway.started at seq 1; nothing else
                                * but segments (and notes on recovery's .torn- files) */
    AUDIT_VERIFY_TAMPERED = 1, /* first_bad and reason say where the chain breaks */
    AUDIT_VERIFY_WARNINGS = 2, /* the chain verifies, but: a torn tail, an empty segment, a file
                                * that is not a segment, a .torn- file of a missing segment */
    AUDIT_VERIFY_ANCHOR_MISMATCH = 3 /* the chain verifies, but not against its anchors
                                      * (audit_verify_anchored): a cut or rewritten tail */
};

/* Verify the whole log in dir: a contiguous run of segments audit-000001.jsonl.., a chain
 * that starts with AUDIT_FIRST_EVENT at seq 1 (an empty or deleted log is TAMPERED), and
 * every record's seq, prev and hash. Returns an enum audit_verify_result (report filled), or
 * -1 on I/O error (err filled). report needs no cleanup. */
int audit_verify(const char *dir, struct audit_verify_report *report, struct gate_error *err);

/* ---- additions (audit engineer) --------------------------------------------------- */
/* Number of durable write batches so far (group commit: appends / syncs = batch size). */
uint64_t audit_syncs(struct audit_log *log);
/* Roll over to a new segment once the current one reaches bytes (default 64 MiB). For tests. */
void audit_set_segment_limit(struct audit_log *log, uint64_t bytes);

/* ---- anchoring (issue 15) ----------------------------------------------------------
 * A hash chain cannot show that records were cut off its end or that a tail was rewritten
 * wholesale. So every record names the gateway's node id, and an anchorer thread publishes the
 * chain head (node, segment, seq, hash, time) to a second storage after every group commit
 * (coalesced: the newest head when it gets to it) and retries each second while that storage
 * fails. It never blocks or fails an append: the local log stays the source of truth.
 * audit_verify_anchored then checks that the log still holds every anchored head. */

/* A node id: 1 to 64 of A-Z a-z 0-9 . _ - */
bool audit_node_valid(const char *node);
/* The node id: configured if not NULL (checked), else the one kept in state_dir/node,
 * generated (16 hex digits) and stored there the first time. */
int audit_node_id(const char *state_dir, const char *configured, char node[65],
                  struct gate_error *err);
/* Name node in every record appended from now on (member "node" after "event"). */
int audit_set_node(struct audit_log *log, const char *node, struct gate_error *err);

struct audit_head {
    uint32_t segment;
    uint64_t seq; /* 0: the log has no durable record yet */
    char hash[65];
};
/* The newest durable record. */
void audit_head(struct audit_log *log, struct audit_head *out);

/* Where anchors go (and are read back from): a PostgreSQL database (its audit_anchors table,
 * created by the approval store's migrations) or an append-only file of JSON lines. */
struct audit_anchor_target {
    const char *database;          /* postgresql://... or NULL */
    const char *database_password; /* NULL: libpq's PGPASSWORD / .pgpass */
    const char *file;              /* PATH or NULL */
};

struct audit_anchorer;
/* Start publishing log's head for node to target (database and/or file). *out is owned by the
 * caller (audit_anchor_stop, before audit_close). Fails only on what cannot be retried (no
 * memory, no thread); an unreachable database or unwritable file is logged and retried. */
int audit_anchor_start(struct audit_log *log, const char *node,
                       const struct audit_anchor_target *target, struct audit_anchorer **out,
                       struct gate_error *err);
/* Publish the last head once more (best effort), stop the thread, free a. NULL is a no-op. */
void audit_anchor_stop(struct audit_anchorer *a);
/* Prometheus lines: heads published, failed attempts, last anchored seq. NULL: nothing. */
void audit_anchor_metrics(struct audit_anchorer *a, struct gate_buf *out);

/* audit_verify, then: every anchor of node (NULL: the node the log's newest record names) in
 * target must be a record of the log with the same hash. Returns an enum audit_verify_result,
 * AUDIT_VERIFY_ANCHOR_MISMATCH (reason says which anchor: a cut tail, a rewritten record, or
 * no anchor at all for the node), or -1 (err: the log or the anchors cannot be read). */
int audit_verify_anchored(const char *dir, const struct audit_anchor_target *target,
                          const char *node, struct audit_verify_report *report,
                          struct gate_error *err);

/* For operators (the gateways' database role may be insert-only): delete target->database's
 * anchors older than keep_days days, except, per node, the newest one and the newest of each
 * segment, which keep verify sound (audit_anchor_prune.c says why). *deleted: rows removed. */
int audit_anchor_prune(const struct audit_anchor_target *target, unsigned keep_days,
                       uint64_t *deleted, struct gate_error *err);

/* TEST HOOK ONLY: make the next batch's write fail (EIO), write only half of it (short
 * write), or fail its sync (EIO), to exercise the fail-closed path; or refuse its O_DIRECT
 * write (EINVAL), which the log survives by writing through the page cache. Never call it in
 * the gateway. */
enum audit_fault {
    AUDIT_FAULT_NONE = 0,
    AUDIT_FAULT_WRITE,
    AUDIT_FAULT_SHORT_WRITE,
    AUDIT_FAULT_SYNC,
    AUDIT_FAULT_DIRECT_REFUSED
};
void audit_test_fail_next(struct audit_log *log, enum audit_fault fault);
/* TEST HOOK ONLY: write through the page cache (pwrite + fdatasync) from now on, as on a
 * file system that refuses O_DIRECT. Returns 0, or -1 if the segment cannot be reopened. */
int audit_test_buffered_io(struct audit_log *log);

#endif
