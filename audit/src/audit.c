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
 * Durability: audit_append returns only after its record is on stable storage. Appenders
 * queue records under one mutex; whoever finds no write in progress becomes the leader and
 * writes everything queued as one batch, then wakes the others (group commit). A failed or
 * short write, or a failed sync, puts the log in a permanent failed state (fail closed) until
 * it is reopened, which runs tail recovery again.
 *
 * How a batch reaches the disk. An append that grows a file also changes its size, so its
 * sync must write the inode as well as the data, and on a loaded machine the buffered path
 * (page cache, writeback, fdatasync) adds wake-ups on top: about 0.65 ms a batch measured
 * here under load. So the live segment is preallocated: zeros are written (not fallocated,
 * which would leave unwritten extents to convert) PREALLOC_CHUNK at a time, and batches
 * overwrite them through an O_DIRECT|O_DSYNC descriptor, so a batch is one device write and
 * one cache flush, done when pwrite returns (about 0.27 ms under the same load). O_DIRECT
 * needs aligned blocks, so each batch rewrites the segment's partial last block (kept in
 * memory) with identical bytes for the records already there. Where the file system refuses
 * O_DIRECT the same layout is written through the page cache with pwrite + fdatasync.
 * Records never contain a NUL byte, so the zeros mark the end: a segment is cut to its exact
 * size when it is closed or rotated, and after a crash recovery cuts the zeros (see
 * audit_segment.c). Readers of a live segment stop at the first NUL.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "audit_internal.h"

#define DIO_ALIGN 4096u               /* covers 512- and 4096-byte logical blocks */
#define PREALLOC_CHUNK (1024u * 1024) /* zeros written ahead of the records at a time */

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
    char durable_hash[65];    /* the hash of record durable_seq (the chain head) */
    uint32_t durable_seg;     /* the segment that holds it */
    char node[65];            /* written into every record after "event" ("" = none) */
    bool writing;             /* a leader owns fd, seg_* and inflight */

    bool failed;
    char why[256];
    uint64_t failures; /* appends refused or lost because the log could not be written */
    uint64_t syncs;
    int fault;          /* test hook: enum audit_fault to inject into the next batch */
    bool buffered_only; /* never O_DIRECT again: refused once, or the test hook */

    /* Owned by the leader while writing is set (or by open/close). */
    int fd;
    bool direct; /* fd is O_DIRECT|O_DSYNC: a write is durable when pwrite returns */
    uint32_t seg_no;
    uint64_t seg_size;   /* bytes of records in the live segment */
    uint64_t zeroed_end; /* [seg_size, zeroed_end) holds zeros already on disk */
    uint64_t seg_limit;
    char *stage; /* DIO_ALIGN-aligned; starts with the segment's partial last block */
    size_t stage_cap;
    char *zeros; /* PREALLOC_CHUNK of zeros (an untouched anonymous mapping) */
};

static uint64_t align_up(uint64_t v)
{
    return (v + DIO_ALIGN - 1) & ~(uint64_t)(DIO_ALIGN - 1);
}

/* Write all of buf at off; a short write is retried for the rest so that a failure carries
 * its errno (ENOSPC, EFBIG). */
static int pwrite_full(int fd, const char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        buf += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- opening -------------------------------------------------------------------- */

/* Make log->fd the descriptor batches go through: an O_DIRECT|O_DSYNC one on the same file
 * where the file system allows it (buffered_fd is then closed), else buffered_fd itself.
 * Takes ownership of buffered_fd. */
static int use_for_writes(struct audit_log *log, const char *name, int buffered_fd,
                          struct gate_error *err)
{
    int fd =
        log->buffered_only ? -1 : openat(log->dirfd, name, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
    if (fd >= 0) {
        close(buffered_fd);
        log->fd = fd;
        log->direct = true;
        return 0;
    }
    if (!log->buffered_only && errno != EINVAL) {
        int e = errno;
        close(buffered_fd);
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, e, "open %s/%s", log->dir, name);
    }
    log->fd = buffered_fd;
    log->direct = false;
    return 0;
}

/* Room for len bytes in the staging buffer, keeping the partial last block it starts with. */
static int stage_reserve(struct audit_log *log, size_t len)
{
    if (len <= log->stage_cap) return 0;
    size_t cap = log->stage_cap ? log->stage_cap : 64 * 1024;
    while (cap < len)
        cap *= 2;
    void *p = NULL;
    if (posix_memalign(&p, DIO_ALIGN, cap) != 0) return -1;
    if (log->stage) memcpy(p, log->stage, (size_t)(log->seg_size % DIO_ALIGN));
    free(log->stage);
    log->stage = p;
    log->stage_cap = cap;
    return 0;
}

static int create_segment(struct audit_log *log, uint32_t num, struct gate_error *err)
{
    char name[40];
    segment_name(num, name, sizeof(name));
    /* O_EXCL: a segment is never shared with another writer or reused. */
    int fd = openat(log->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "create %s/%s", log->dir, name);
    /* The new name must survive a crash before any record in it is acknowledged. */
    if (fsync(log->dirfd) < 0) {
        int e = errno;
        close(fd);
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, e, "sync directory %s", log->dir);
    }
    if (use_for_writes(log, name, fd, err) < 0) return -1;
    log->seg_no = num;
    log->seg_size = 0;
    log->zeroed_end = 0;
    return 0;
}

/* Cut the live segment to its records (dropping the preallocated zeros), durably. */
static int finish_segment(struct audit_log *log)
{
    if (ftruncate(log->fd, (off_t)log->seg_size) < 0 || fdatasync(log->fd) < 0) return -1;
    log->zeroed_end = log->seg_size;
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
    if (list_segments(log->dirfd, log->dir, &nums, &count, NULL, NULL, err) < 0) return -1;
    if (count == 0) {
        log->next_seq = 1;
        memcpy(log->prev, AUDIT_ZERO_HASH, 65);
        return create_segment(log, 1, err);
    }
    log->seg_no = nums[count - 1];
    char name[40];
    segment_name(log->seg_no, name, sizeof(name));
    /* Recovery reads at arbitrary offsets: a buffered descriptor. */
    autoclose int fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "open %s/%s", log->dir, name);
    struct record_info last = {0};
    bool found = false;
    if (recover_tail(log->dirfd, log->dir, log->seg_no, fd, true, &last, &found, &log->seg_size,
                     err) < 0)
        return -1;
    log->zeroed_end = log->seg_size;
    if (!found && chain_from_previous(log, nums, count - 1, &last, &found, err) < 0) return -1;
    log->next_seq = found ? last.seq + 1 : 1;
    memcpy(log->prev, found ? last.hash : AUDIT_ZERO_HASH, 65);
    /* The partial last block, which every direct write rewrites. */
    size_t head = (size_t)(log->seg_size % DIO_ALIGN);
    if (stage_reserve(log, DIO_ALIGN) < 0)
        return gate_err(err, GATE_E_NOMEM, "open audit log: out of memory");
    if (head && pread(fd, log->stage, head, (off_t)(log->seg_size - head)) != (ssize_t)head)
        return gate_err_errno(err, GATE_E_AUDIT_UNAVAILABLE, errno, "read %s/%s", log->dir, name);
    return use_for_writes(log, name, steal_fd(&fd), err);
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
    /* Never written to, so its pages stay the shared zero page: no memory is used. */
    log->zeros = mmap(NULL, PREALLOC_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (log->zeros == MAP_FAILED) {
        log->zeros = NULL;
        gate_err(err, GATE_E_NOMEM, "open audit log: out of memory");
        goto fail;
    }
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
    memcpy(log->durable_hash, log->prev, 65);
    log->durable_seg = log->seg_no;
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
    /* A failed log is left as it is: reopening recovers it. */
    if (log->fd >= 0 && !log->failed && finish_segment(log) < 0)
        gate_log("error", "audit_close_failed", "%s segment %u: %s", log->dir, log->seg_no,
                 strerror(errno));
    if (log->fd >= 0) close(log->fd);
    if (log->dirfd >= 0) close(log->dirfd);
    if (log->zeros) munmap(log->zeros, PREALLOC_CHUNK);
    free(log->stage);
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
    if (finish_segment(log) < 0) {
        snprintf(why, why_len, "close segment %u: %s", log->seg_no, strerror(errno));
        return -1;
    }
    int old = log->fd; /* create_segment replaces log->fd only when it succeeds */
    struct gate_error e = {0};
    if (create_segment(log, log->seg_no + 1, &e) < 0) {
        snprintf(why, why_len, "%.200s", e.msg); /* why is 256 bytes; messages are shorter */
        return -1;
    }
    close(old);
    return 0;
}

/* Make [seg_size, need) zeros on disk, a chunk ahead so that most batches change no
 * metadata. Near a full disk, fall back to exactly what this batch needs. Returns 0, or
 * -errno with why filled. */
static int preallocate(struct audit_log *log, uint64_t need, char *why, size_t why_len)
{
    uint64_t from = align_up(log->zeroed_end > log->seg_size ? log->zeroed_end : log->seg_size);
    uint64_t targets[2] = {align_up(need) + PREALLOC_CHUNK, align_up(need)};
    int e = 0;
    for (int t = 0; t < 2; t++) {
        int rc = 0;
        for (uint64_t off = from; rc == 0 && off < targets[t]; off += PREALLOC_CHUNK) {
            uint64_t n = targets[t] - off < PREALLOC_CHUNK ? targets[t] - off : PREALLOC_CHUNK;
            rc = pwrite_full(log->fd, log->zeros, (size_t)n, off);
        }
        if (rc == 0 && !log->direct) rc = fdatasync(log->fd);
        if (rc == 0) {
            log->zeroed_end = targets[t];
            return 0;
        }
        e = errno;
        if (e != ENOSPC && e != EFBIG && e != EDQUOT) break;
    }
    snprintf(why, why_len, "preallocate segment %u: %s", log->seg_no, strerror(e));
    return -e;
}

/* From now on, write through the page cache (pwrite + fdatasync). */
static int use_page_cache(struct audit_log *log)
{
    log->buffered_only = true;
    if (!log->direct) return 0;
    char name[40];
    segment_name(log->seg_no, name, sizeof(name));
    int fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    close(log->fd);
    log->fd = fd;
    log->direct = false;
    return 0;
}

/* Write b after the records and make it durable. Returns 0, or -errno with why filled.
 * fault is a test hook (enum audit_fault). */
static int write_records(struct audit_log *log, const struct gate_buf *b, int fault, char *why,
                         size_t why_len)
{
    uint64_t end = log->seg_size + b->len;
    if (end > log->zeroed_end) {
        int rc = preallocate(log, end, why, why_len);
        if (rc < 0) return rc;
    }
    const char *data = b->data;
    size_t len = b->len;
    uint64_t off = log->seg_size;
    if (log->direct) {
        /* The partial last block is rewritten with the same bytes, then the new records. */
        size_t head = (size_t)(off % DIO_ALIGN);
        off -= head;
        len = (size_t)align_up(head + b->len);
        if (stage_reserve(log, len) < 0) {
            snprintf(why, why_len, "write segment %u: out of memory", log->seg_no);
            return -ENOMEM;
        }
        memcpy(log->stage + head, b->data, b->len);
        memset(log->stage + head + b->len, 0, len - head - b->len);
        data = log->stage;
    }
    int rc;
    if (fault == AUDIT_FAULT_WRITE || (fault == AUDIT_FAULT_DIRECT_REFUSED && log->direct)) {
        rc = -1, errno = fault == AUDIT_FAULT_WRITE ? EIO : EINVAL;
    } else if (fault == AUDIT_FAULT_SHORT_WRITE) {
        size_t half = log->direct ? len / 2 / DIO_ALIGN * DIO_ALIGN : len / 2;
        rc = pwrite_full(log->fd, data, half, off) < 0 ? -1 : (errno = ENOSPC, -1);
    } else {
        rc = pwrite_full(log->fd, data, len, off);
    }
    if (rc < 0) {
        int e = errno;
        snprintf(why, why_len, "write segment %u: %s (%zu bytes at offset %llu)", log->seg_no,
                 strerror(e), len, (unsigned long long)off);
        return -e;
    }
    rc = fault == AUDIT_FAULT_SYNC ? (errno = EIO, -1) : log->direct ? 0 : fdatasync(log->fd);
    if (rc < 0) {
        int e = errno;
        snprintf(why, why_len, "sync segment %u: %s", log->seg_no, strerror(e));
        return -e;
    }
    log->seg_size = end;
    if (log->direct) /* keep the new partial last block at the start of the stage */
        memmove(log->stage, log->stage + (end - off) / DIO_ALIGN * DIO_ALIGN, end % DIO_ALIGN);
    return 0;
}

/* Write one batch durably at the end of the records. Called without the mutex by the one
 * leader. */
static int write_batch(struct audit_log *log, const struct gate_buf *b, int fault, uint64_t limit,
                       char *why, size_t why_len)
{
    if (log->seg_size >= limit && rotate(log, why, why_len) < 0) return -1;
    int rc = write_records(log, b, fault, why, why_len);
    if (rc == -EINVAL && log->direct) {
        /* The device wants a coarser alignment than DIO_ALIGN, or the file system took
         * O_DIRECT at open but not for a write. Retry through the page cache: whatever part
         * was written holds the same bytes, and is written again. */
        gate_log("warn", "audit_direct_io_refused", "%s: %s; writing through the page cache",
                 log->dir, why);
        if (use_page_cache(log) < 0) {
            snprintf(why, why_len, "reopen segment %u: %s", log->seg_no, strerror(errno));
            return -1;
        }
        rc = write_records(log, b, fault, why, why_len);
    }
    return rc < 0 ? -1 : 0;
}

/* Called with mu held and writing clear; returns with mu held. */
static void lead_one_batch(struct audit_log *log)
{
    struct gate_buf t = log->inflight;
    log->inflight = log->pending;
    log->pending = t;
    uint64_t batch_last = log->next_seq - 1;
    char batch_hash[65];
    memcpy(batch_hash, log->prev, 65);
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
        memcpy(log->durable_hash, batch_hash, 65);
        log->durable_seg = log->seg_no;
    } else if (!log->failed) {
        log->failed = true;
        snprintf(log->why, sizeof(log->why), "%s", why);
        gate_log("error", "audit_unavailable", "%s: %s", log->dir, why);
    }
    pthread_cond_broadcast(&log->cond);
}

/* ---- appending ------------------------------------------------------------------ */

static const char *const reserved_keys[] = {"seq",  "ts",   "mono_ns", "event",
                                            "node", "prev", "hash"};

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
    if (rc >= 0 && log->node[0]) rc = gate_buf_printf(b, ",\"node\":\"%s\"", log->node);
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

void audit_head(struct audit_log *log, struct audit_head *out)
{
    pthread_mutex_lock(&log->mu);
    out->seq = log->durable_seq;
    out->segment = log->durable_seg;
    memcpy(out->hash, log->durable_hash, 65);
    pthread_mutex_unlock(&log->mu);
}

void audit_wait_head(struct audit_log *log, uint64_t after_seq, unsigned timeout_ms,
                     const atomic_bool *stop)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* log->cond uses the default (realtime) clock */
    uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)timeout_ms * 1000000ull;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&log->mu);
    int rc = 0;
    while (log->durable_seq == after_seq && !atomic_load(stop) && rc == 0)
        rc = pthread_cond_timedwait(&log->cond, &log->mu, &ts);
    pthread_mutex_unlock(&log->mu);
}

void audit_wake(struct audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    pthread_cond_broadcast(&log->cond);
    pthread_mutex_unlock(&log->mu);
}

int audit_set_node(struct audit_log *log, const char *node, struct gate_error *err)
{
    if (!audit_node_valid(node))
        return gate_err(err, GATE_E_CONFIG,
                        "node id '%.80s': 1 to 64 of A-Z a-z 0-9 . _ - expected", node);
    pthread_mutex_lock(&log->mu);
    snprintf(log->node, sizeof(log->node), "%s", node);
    pthread_mutex_unlock(&log->mu);
    return 0;
}

void audit_test_fail_next(struct audit_log *log, enum audit_fault fault)
{
    pthread_mutex_lock(&log->mu);
    log->fault = fault;
    pthread_mutex_unlock(&log->mu);
}

int audit_test_buffered_io(struct audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    while (log->writing)
        pthread_cond_wait(&log->cond, &log->mu);
    int rc = use_page_cache(log);
    pthread_mutex_unlock(&log->mu);
    return rc;
}
