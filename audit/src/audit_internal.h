/* audit_internal.h: what the audit module's files share and nobody else sees.
 *
 * audit_record.c knows the byte layout of one record line (check_record);
 * audit_segment.c knows segment names, listing and tail recovery. audit.c is the
 * writer (group commit) and audit_verify.c the reader.
 */
#ifndef GATE_AUDIT_INTERNAL_H
#define GATE_AUDIT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "gate.h"

/* A record line (without its '\n') may not exceed this: appends that would are refused, and
 * recovery and verification treat longer lines as damage. It also bounds the backwards scan
 * that recovery does over a torn tail. */
#define AUDIT_MAX_LINE (4u * 1024u * 1024u)
#define AUDIT_DEFAULT_SEGMENT_LIMIT (64ull * 1024 * 1024)
#define AUDIT_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Byte layout of the end of a line: ,"prev":"<64 hex>","hash":"<64 hex>"} */
#define AUDIT_HASH_SUFFIX_LEN 75 /* ,"hash":"  + 64 + "}  */
#define AUDIT_PREV_SUFFIX_LEN 74 /* ,"prev":"  + 64 + "   */

struct record_info {
    uint64_t seq;
    char prev[65];
    char hash[65];
    char event[64]; /* the record's event name, cut short if longer */
    char node[65];  /* the writer's node id ("" if the record names none) */
};

enum record_status {
    RECORD_OK = 0,       /* layout, JSON and own hash are all good */
    RECORD_MALFORMED,    /* not a record line at all; info is not filled */
    RECORD_HASH_MISMATCH /* a well-formed record whose hash does not recompute; info filled */
};

/* Check one line (len bytes, no trailing newline). why (may be NULL) says what is wrong. */
enum record_status check_record(const char *line, size_t len, struct record_info *info, char *why,
                                size_t why_len);

/* ---- segments ------------------------------------------------------------------ */
/* Segment numbers present in the directory dirfd, sorted ascending. *nums is owned by the
 * caller (free). other (may be NULL) is called with the name of every other entry but "." and
 * "..", in directory order; it returns 0, or -1 to stop the listing with err filled.
 * Returns 0 or -1 with err filled. */
int list_segments(int dirfd, const char *dir, uint32_t **nums, size_t *count,
                  int (*other)(void *ctx, const char *name, struct gate_error *err), void *ctx,
                  struct gate_error *err);
/* "audit-000042.jsonl"; buf holds at least 32 bytes. */
void segment_name(uint32_t num, char *buf, size_t len);
/* Whether name is a side file recovery wrote (audit-NNNNNN.jsonl.torn-<offset>-<ms>): the
 * bytes it cut from segment *num at *offset. */
bool parse_torn_name(const char *name, uint32_t *num, uint64_t *offset);

/* Find the last good record of the open segment fd (size bytes). When truncate_torn is set,
 * anything after it (a torn or corrupt tail) is saved beside the segment and cut off with
 * the segment fsync'd; otherwise a bad tail is an error. *found says whether there was a good
 * record (an empty segment has none). */
int recover_tail(int dirfd, const char *dir, uint32_t num, int fd, bool truncate_torn,
                 struct record_info *last, bool *found, uint64_t *new_size, struct gate_error *err);

/* audit_verify, calling on_record(ctx, info, segment) for every record that verified, in
 * order (the walk stops at the first bad one). */
int audit_verify_walk(const char *dir,
                      void (*on_record)(void *ctx, const struct record_info *info,
                                        uint32_t segment),
                      void *ctx, struct audit_verify_report *report, struct gate_error *err);

/* ---- the writer, for the anchor publisher -------------------------------------------- */
struct audit_log;
/* Wait until the durable head is past after_seq, timeout_ms pass, or *stop is set (and
 * audit_wake called). */
void audit_wait_head(struct audit_log *log, uint64_t after_seq, unsigned timeout_ms,
                     const atomic_bool *stop);
/* Wake every audit_wait_head. */
void audit_wake(struct audit_log *log);

#endif
