/* audit.c: the writer side of the audit log (open, recovery, group-committed appends).
 *
 * Record format: STATE/audit/audit-NNNNNN.jsonl, one record per line, keys in this order:
 *   {"seq":N,"ts":"2026-11-23T12:00:00.123Z","mono_ns":N,"event":"call.start",<fields>,
 *   "prev":"<64 hex>","hash":"<64 hex>"}\n      (all one line; <fields> = caller's, in order)
 * seq starts at 1 and is contiguous across segments; prev is the previous record's hash
 * (64 zeros for seq 1); hash is the SHA-256 of the line's exact bytes up to, not including,
 * its final ,"hash": member, so checking a line needs no JSON canonicalisation. By hand:
 *   line=$(sed -n 5p audit-000001.jsonl); printf '%s' "${line%,\"hash\":*}" | sha256sum
 * prints the line's hash, and the line's prev is the hash of the line before it.
 * Segments roll over at 64 MiB; audit_verify (the CLI's audit verify) checks the whole chain.
 *
 * Durability: audit_append returns only after write + fdatasync of its record. Appenders
 * queue records under one mutex; whoever finds no write in progress becomes the leader and
 * writes everything queued with one write() and one fdatasync(), then wakes the others
 * (group commit). A failed or short write, or a failed sync, puts the log in a permanent
 * failed state (fail closed) until it is reopened, which runs tail recovery again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "audit_internal.h"

struct audit_log {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    char *dir;
    int dirfd; /* holds the flock that keeps a second writer out */

    /* Chain state of the newest queued record; guarded by mu. */
    uint64_t next_seq;
    char prev[65];
    struct gate_buf pending;  /* queued lines not yet handed to a leader */
    struct gate_buf inflight; /* lines the current leader is writing */
    uint64_t durable_seq;     /* every seq <= this is on disk */
    bool writing;             /* a leader owns fd, seg_* and inflight */

    bool failed;
    char why[256];
    uint64_t failures; /* appends refused or lost because the log could not be written */
    uint64_t syncs;
    int fault; /* test hook: enum audit_fault to inject into the next batch */

    /* Owned by the leader while writing is set (or by open/close). */
    int fd;
    uint32_t seg_no;
    uint64_t seg_size;
    uint64_t seg_limit;
};

/* ---- opening -------------------------------------------------------------------- */

static int create_segment(struct audit_log *log, uint32_t num, int *fd_out, struct gate_error *err)
{
    char name[40];
    segment_name(num, name, sizeof(name));
    /* O_EXCL: a segment is never shared with another writer or reused. */
    int fd = openat(log->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "create %s/%s", log->dir, name);
    /* The new name must survive a crash before any record in it is acknowledged. */
    if (fsync(log->dirfd) < 0) {
        int e = errno;
        close(fd);
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, e, "sync directory %s", log->dir);
    }
    *fd_out = fd;
    return 0;
}

/* The last segment is empty: the chain continues from the newest earlier segment with a
 * record. Those were closed after a successful sync, so each must end with a good record. */
static int chain_from_previous(struct audit_log *log, const uint32_t *nums, size_t count,
                               struct record_info *last, bool *found, struct gate_error *err)
{
    for (size_t i = count; i-- > 0 && !*found;) {
        char name[40];
        segment_name(nums[i], name, sizeof(name));
        autoclose int fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s/%s", log->dir, name);
        uint64_t size = 0;
        if (recover_tail(log->dirfd, log->dir, nums[i], fd, false, last, found, &size, err) < 0)
            return -1;
    }
    return 0;
}

static int recover(struct audit_log *log, struct gate_error *err)
{
    autofree uint32_t *nums = NULL;
    size_t count = 0;
    if (list_segments(log->dirfd, log->dir, &nums, &count, err) < 0) return -1;
    if (count == 0) {
        log->seg_no = 1;
        log->seg_size = 0;
        log->next_seq = 1;
        memcpy(log->prev, AUDIT_ZERO_HASH, 65);
        return create_segment(log, 1, &log->fd, err);
    }
    log->seg_no = nums[count - 1];
    char name[40];
    segment_name(log->seg_no, name, sizeof(name));
    log->fd = openat(log->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
    if (log->fd < 0)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "open %s/%s", log->dir, name);
    struct record_info last = {0};
    bool found = false;
    if (recover_tail(log->dirfd, log->dir, log->seg_no, log->fd, true, &last, &found,
                     &log->seg_size, err) < 0)
        return -1;
    if (!found && chain_from_previous(log, nums, count - 1, &last, &found, err) < 0) return -1;
    log->next_seq = found ? last.seq + 1 : 1;
    memcpy(log->prev, found ? last.hash : AUDIT_ZERO_HASH, 65);
    return 0;
}

/* A directory just created must itself survive a crash before records in it are durable. */
static int sync_parent(const char *dir, struct gate_error *err)
{
    autofree char *parent = strdup(dir);
    if (!parent) return gate_err(err, GATE_E_NOMEM, "open audit log: out of memory");
    char *slash = strrchr(parent, '/');
    if (!slash)
        strcpy(parent, ".");
    else if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    autoclose int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "sync directory %s", parent);
    return 0;
}

int audit_open(const char *dir, struct audit_log **out, struct gate_error *err)
{
    *out = NULL;
    /* 0700: the log names agents, tools and argument digests; only the gateway reads it. */
    if (mkdir(dir, 0700) == 0) {
        if (sync_parent(dir, err) < 0) return -1;
    } else if (errno != EEXIST) {
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "create %s", dir);
    }
    struct audit_log *log = calloc(1, sizeof(*log));
    if (!log) return gate_err(err, GATE_E_NOMEM, "open audit log: out of memory");
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cond, NULL);
    log->fd = -1;
    log->seg_limit = AUDIT_DEFAULT_SEGMENT_LIMIT;
    log->dir = strdup(dir);
    log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!log->dir || log->dirfd < 0) {
        gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, log->dir ? errno : ENOMEM, "open %s", dir);
        goto fail;
    }
    /* Two writers on one directory would fork the chain; the lock dies with the process. */
    if (flock(log->dirfd, LOCK_EX | LOCK_NB) < 0) {
        gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "%s is in use by another audit writer",
                       dir);
        goto fail;
    }
    if (recover(log, err) < 0) goto fail;
    log->durable_seq = log->next_seq - 1;
    *out = log;
    return 0;
fail:
    audit_close(log);
    return -1;
}

void audit_close(struct audit_log *log)
{
    if (!log) return;
    /* Every acknowledged record is already durable; wait out a leader still writing. */
    pthread_mutex_lock(&log->mu);
    while (log->writing)
        pthread_cond_wait(&log->cond, &log->mu);
    pthread_mutex_unlock(&log->mu);
    if (log->fd >= 0) close(log->fd);
    if (log->dirfd >= 0) close(log->dirfd);
    gate_buf_free(&log->pending);
    gate_buf_free(&log->inflight);
    pthread_cond_destroy(&log->cond);
    pthread_mutex_destroy(&log->mu);
    free(log->dir);
    free(log);
}

/* ---- the leader's write --------------------------------------------------------- */

static int rotate(struct audit_log *log, char *why, size_t why_len)
{
    struct gate_error e = {0};
    int fd = -1;
    if (create_segment(log, log->seg_no + 1, &fd, &e) < 0) {
        snprintf(why, why_len, "%.200s", e.msg); /* why is 256 bytes; messages are shorter */
        return -1;
    }
    close(log->fd); /* its records were fdatasync'd by the batch that wrote them */
    log->fd = fd;
    log->seg_no++;
    log->seg_size = 0;
    return 0;
}

/* Write one batch and make it durable. Called without the mutex by the one leader. */
static int write_batch(struct audit_log *log, const struct gate_buf *b, int fault, uint64_t limit,
                       char *why, size_t why_len)
{
    if (log->seg_size >= limit && rotate(log, why, why_len) < 0) return -1;
    /* O_APPEND and one leader: a short write (ENOSPC, EFBIG) is retried once for the rest so
     * that the failure carries its errno; any failure leaves the batch unacknowledged. */
    size_t done = 0;
    while (done < b->len) {
        ssize_t w;
        if (fault == AUDIT_FAULT_WRITE || (fault == AUDIT_FAULT_SHORT_WRITE && done > 0)) {
            w = -1;
            errno = fault == AUDIT_FAULT_WRITE ? EIO : ENOSPC;
        } else {
            size_t len = fault == AUDIT_FAULT_SHORT_WRITE ? (b->len - done) / 2 : b->len - done;
            w = write(log->fd, b->data + done, len);
        }
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w < 0)
                snprintf(why, why_len, "write segment %u: %s (after %zu of %zu bytes)", log->seg_no,
                         strerror(errno), done, b->len);
            else
                snprintf(why, why_len, "write segment %u: short write (%zu of %zu bytes)",
                         log->seg_no, done, b->len);
            /* Best effort: do not leave half a record for recovery to cut off. */
            if (done > 0 && ftruncate(log->fd, (off_t)log->seg_size) < 0)
                gate_log("error", "audit_truncate_failed", "segment %u: %s", log->seg_no,
                         strerror(errno));
            return -1;
        }
        done += (size_t)w;
    }
    int rc = fault == AUDIT_FAULT_SYNC ? (errno = EIO, -1) : fdatasync(log->fd);
    if (rc < 0) {
        snprintf(why, why_len, "fdatasync segment %u: %s", log->seg_no, strerror(errno));
        return -1;
    }
    log->seg_size += b->len;
    return 0;
}

/* Called with mu held and writing clear; returns with mu held. */
static void lead_one_batch(struct audit_log *log)
{
    struct gate_buf t = log->inflight;
    log->inflight = log->pending;
    log->pending = t;
    uint64_t batch_last = log->next_seq - 1;
    int fault = log->fault;
    uint64_t limit = log->seg_limit;
    log->fault = AUDIT_FAULT_NONE;
    log->writing = true;
    pthread_mutex_unlock(&log->mu);

    char why[256] = "";
    int rc = write_batch(log, &log->inflight, fault, limit, why, sizeof(why));

    pthread_mutex_lock(&log->mu);
    log->writing = false;
    log->inflight.len = 0;
    log->syncs++;
    if (rc == 0) {
        log->durable_seq = batch_last;
    } else if (!log->failed) {
        log->failed = true;
        snprintf(log->why, sizeof(log->why), "%s", why);
        gate_log("error", "audit_unavailable", "%s: %s", log->dir, why);
    }
    pthread_cond_broadcast(&log->cond);
}

/* ---- appending ------------------------------------------------------------------ */

static const char *const reserved_keys[] = {"seq", "ts", "mono_ns", "event", "prev", "hash"};

/* Compact JSON of fields without its braces ("" for none). *out is owned by the caller. */
static int serialize_fields(const json_t *fields, char **out, size_t *len, struct gate_error *err)
{
    *out = NULL;
    *len = 0;
    if (!fields) return 0;
    if (!json_is_object(fields))
        return gate_err(err, GATE_E_INTERNAL, "audit fields must be a JSON object");
    for (size_t i = 0; i < sizeof(reserved_keys) / sizeof(reserved_keys[0]); i++) {
        if (json_object_get(fields, reserved_keys[i]))
            return gate_err(err, GATE_E_INTERNAL, "audit field name '%s' is reserved",
                            reserved_keys[i]);
    }
    /* jansson keeps insertion order, so the caller's order is the line's order. */
    char *s = json_dumps(fields, JSON_COMPACT);
    if (!s) return gate_err(err, GATE_E_INTERNAL, "audit fields cannot be serialised");
    size_t n = strlen(s);
    memmove(s, s + 1, n - 2); /* drop { and } */
    s[n - 2] = '\0';
    *out = s;
    *len = n - 2;
    return 0;
}

static char *serialize_event(const char *event)
{
    json_t *e = json_string(event); /* NULL if not valid UTF-8 */
    if (!e) return NULL;
    char *s = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(e);
    return s;
}

/* Build the record for the next seq into pending. Called with mu held. */
static int enqueue_locked(struct audit_log *log, const char *event_json, const char *fields,
                          size_t fields_len, uint64_t *seq)
{
    struct gate_buf *b = &log->pending;
    size_t start = b->len;
    char ts[32];
    gate_rfc3339(gate_realtime_ms(), ts);
    int rc = gate_buf_printf(b, "{\"seq\":%llu,\"ts\":\"%s\",\"mono_ns\":%llu,\"event\":%s",
                             (unsigned long long)log->next_seq, ts,
                             (unsigned long long)gate_monotonic_ns(), event_json);
    if (rc >= 0 && fields_len)
        rc = gate_buf_append(b, ",", 1) < 0 ? -1 : gate_buf_append(b, fields, fields_len);
    if (rc >= 0) rc = gate_buf_printf(b, ",\"prev\":\"%s\"", log->prev);
    char hash[65];
    if (rc >= 0) {
        gate_sha256_hex(b->data + start, b->len - start, hash);
        rc = gate_buf_printf(b, ",\"hash\":\"%s\"}\n", hash);
    }
    if (rc < 0) {
        b->len = start; /* drop the half-built record; the chain did not advance */
        if (b->data) b->data[start] = '\0';
        return -1;
    }
    *seq = log->next_seq++;
    memcpy(log->prev, hash, 65);
    return 0;
}

int audit_append(struct audit_log *log, const char *event, const json_t *fields, uint64_t *seq_out,
                 struct gate_error *err)
{
    if (!log || !event || !*event)
        return gate_err(err, GATE_E_INTERNAL, "audit_append: no log or event");
    autofree char *fields_json = NULL;
    size_t fields_len = 0;
    if (serialize_fields(fields, &fields_json, &fields_len, err) < 0) return -1;
    autofree char *event_json = serialize_event(event);
    if (!event_json) return gate_err(err, GATE_E_INTERNAL, "audit event name is not valid UTF-8");
    if (fields_len + strlen(event_json) + 320 > AUDIT_MAX_LINE)
        return gate_err(err, GATE_E_INTERNAL, "audit record exceeds %u bytes", AUDIT_MAX_LINE);

    pthread_mutex_lock(&log->mu);
    uint64_t seq = 0;
    int rc = -1;
    bool unavailable = true;
    if (log->failed) {
        gate_err(err, GATE_E_AUDIT_UNAVAILABLE, "audit log unavailable: %s", log->why);
    } else if (enqueue_locked(log, event_json, fields_json ? fields_json : "", fields_len, &seq) <
               0) {
        unavailable = false;
        gate_err(err, GATE_E_NOMEM, "audit_append: out of memory");
    } else {
        while (log->durable_seq < seq && !log->failed) {
            if (!log->writing)
                lead_one_batch(log);
            else
                pthread_cond_wait(&log->cond, &log->mu);
        }
        if (log->durable_seq >= seq)
            rc = 0;
        else
            gate_err(err, GATE_E_AUDIT_UNAVAILABLE, "audit log unavailable: %s", log->why);
    }
    if (rc < 0 && unavailable) log->failures++;
    pthread_mutex_unlock(&log->mu);
    if (rc == 0 && seq_out) *seq_out = seq;
    return rc;
}

/* ---- state ---------------------------------------------------------------------- */

bool audit_healthy(struct audit_log *log, char *why, size_t why_len)
{
    pthread_mutex_lock(&log->mu);
    bool ok = !log->failed;
    if (why && why_len) snprintf(why, why_len, "%s", ok ? "" : log->why);
    pthread_mutex_unlock(&log->mu);
    return ok;
}

uint64_t audit_write_failures(struct audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    uint64_t v = log->failures;
    pthread_mutex_unlock(&log->mu);
    return v;
}

uint64_t audit_last_seq(struct audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    uint64_t v = log->durable_seq;
    pthread_mutex_unlock(&log->mu);
    return v;
}

uint64_t audit_syncs(struct audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    uint64_t v = log->syncs;
    pthread_mutex_unlock(&log->mu);
    return v;
}

void audit_set_segment_limit(struct audit_log *log, uint64_t bytes)
{
    pthread_mutex_lock(&log->mu);
    log->seg_limit = bytes ? bytes : 1;
    pthread_mutex_unlock(&log->mu);
}

void audit_test_fail_next(struct audit_log *log, enum audit_fault fault)
{
    pthread_mutex_lock(&log->mu);
    log->fault = fault;
    pthread_mutex_unlock(&log->mu);
}
