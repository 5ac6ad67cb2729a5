/* audit_verify.c: checking a whole audit directory, segment by segment, line by line.
 *
 * An intact log is a run of segments audit-000001.jsonl, audit-000002.jsonl, ... without a
 * gap, whose lines are well-formed records carrying the next seq (contiguous from 1 across
 * segments), naming the previous record's hash as prev, with a hash that recomputes, and whose
 * seq 1 is gateway.started. So a log that was emptied or deleted (no records at all) is not
 * intact. The first failure ends the walk. first_bad is the seq the bad line carries if the line
 * is a genuine record (its own hash recomputes: a record that is out of place, e.g. the one after
 * a deleted record or segment, or a swapped one), otherwise the seq expected at that position
 * (an edited or unparsable line).
 *
 * The newest segment may end in what audit_open cuts off (recover_tail in audit_segment.c):
 * zeros, the live segment's preallocation, are silent; a torn tail (a last line without '\n',
 * trailing lines with NUL bytes from an unsynced write, or everything from the line where a
 * zero-filled hole starts) is a warning with its size: an append in progress, a crash that the
 * next start cuts off, or damage. So are empty segments and directory entries that are not
 * segments; side files recovery wrote (.torn-) are notes. Like any unkeyed hash chain this
 * cannot see records cut off the end, or a suffix rewritten wholesale; anchor the last hash
 * elsewhere for that.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "audit_internal.h"

struct walk {
    uint64_t expected;    /* next seq */
    char prev[65];        /* hash of the last good record */
    char gap[96];         /* which segments are missing, until a line after the gap is checked */
    uint64_t seg_records; /* records of the segment being walked */
    struct audit_verify_report *rep;
    void (*on_record)(void *ctx, const struct record_info *info, uint32_t segment);
    void *ctx;
    uint32_t segment; /* the one being walked */
};

/* name with bytes that could garble a terminal line shown as \xNN. */
static void printable(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)name; *c && o + 5 < cap; c++) {
        if (*c < 0x20 || *c >= 0x7f || *c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *c);
        else
            out[o++] = (char)*c;
    }
    out[o] = '\0';
}

static void add_msg(struct audit_verify_report *rep, bool warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_msg(struct audit_verify_report *rep, bool warning, const char *fmt, ...)
{
    if (warning) rep->n_warnings++;
    if (rep->n_msgs == AUDIT_VERIFY_MAX_MSGS) {
        rep->n_dropped++;
        return;
    }
    struct audit_verify_msg *m = &rep->msgs[rep->n_msgs++];
    m->warning = warning;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->text, sizeof(m->text), fmt, ap);
    va_end(ap);
}

static int tampered(struct walk *w, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tampered(struct walk *w, uint64_t seq, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (snprintf(w->rep->reason, sizeof(w->rep->reason), "%s%s%s", w->gap, w->gap[0] ? "; " : "",
                 what) >= (int)sizeof(w->rep->reason))
        memcpy(w->rep->reason + sizeof(w->rep->reason) - 4, "...", 4);
    w->rep->first_bad = seq;
    return 1;
}

/* Where the chain starts: seq 1 is the writer's first record. 0 good, 1 tampered. */
static int check_start(struct walk *w, const struct record_info *info, const char *where)
{
    if (info->seq != 1 || strcmp(info->event, AUDIT_FIRST_EVENT) == 0) return 0;
    char event[sizeof(info->event) * 4];
    printable(info->event, event, sizeof(event));
    return tampered(w, info->seq, "%s: seq %llu is '%s': a log starts with %s", where,
                    (unsigned long long)info->seq, event, AUDIT_FIRST_EVENT);
}

/* 0 good, 1 tampered (report filled). */
static int check_line(struct walk *w, const char *line, size_t len, const char *seg, size_t lineno)
{
    struct record_info info;
    char why[160], where[64];
    snprintf(where, sizeof(where), "%s line %zu", seg, lineno);
    enum record_status st = check_record(line, len, &info, why, sizeof(why));
    if (st == RECORD_MALFORMED) return tampered(w, w->expected, "%s: %s", where, why);
    if (info.seq != w->expected)
        return tampered(w, st == RECORD_OK ? info.seq : w->expected,
                        "%s: seq %llu where %llu was expected%s", where,
                        (unsigned long long)info.seq, (unsigned long long)w->expected,
                        st == RECORD_OK ? "" : " (and its hash does not match)");
    if (st == RECORD_HASH_MISMATCH)
        return tampered(w, info.seq, "%s: seq %llu: %s", where, (unsigned long long)info.seq, why);
    if (memcmp(info.prev, w->prev, 64) != 0)
        return tampered(w, info.seq, "%s: seq %llu: prev is not the hash of seq %llu", where,
                        (unsigned long long)info.seq, (unsigned long long)(info.seq - 1));
    if (check_start(w, &info, where) != 0) return 1;
    /* The chain is whole across the gap, so records were not lost: the segment was renamed. */
    if (w->gap[0])
        return tampered(w, info.seq, "%s: seq %llu follows on, but segment numbers must not skip",
                        where, (unsigned long long)info.seq);
    memcpy(w->prev, info.hash, 65);
    if (w->on_record) w->on_record(w->ctx, &info, w->segment);
    w->expected++;
    w->seg_records++;
    w->rep->records++;
    return 0;
}

/* The part of the newest segment that audit_open would cut off, as found while streaming it:
 * everything from the first line that holds a NUL byte or lacks its '\n'. */
struct tail {
    bool ends_in_nul; /* the segment's last byte is NUL: recovery cuts at the first NUL's line */
    bool started;
    uint64_t start;    /* offset of the tail's first line */
    uint64_t data_end; /* offset after its last byte that is not NUL */
    size_t lineno;     /* its first line */
};

enum tail_take {
    TAIL_NO,    /* an ordinary line, to be checked as a record */
    TAIL_TAKEN, /* part of the tail */
    TAIL_BROKEN /* shows that the tail is damage, not a torn write (tampered, report filled) */
};

/* Line [off, off + n) of the newest segment, which belongs to the tail if one started or if it
 * is torn itself. */
static enum tail_take take_tail_line(struct walk *w, struct tail *t, const char *line, size_t n,
                                     uint64_t off, const char *seg, size_t lineno)
{
    bool complete = line[n - 1] == '\n';
    bool has_nul = memchr(line, '\0', complete ? n - 1 : n) != NULL;
    if (!t->started && complete && !has_nul) return TAIL_NO;
    if (t->started && complete && !has_nul && !t->ends_in_nul) {
        /* Recovery keeps this record and stops there, leaving the NUL line before it in the
         * chain: that line is damage, not a torn tail. */
        tampered(w, w->expected, "%s line %zu: NUL bytes in a line before complete records", seg,
                 t->lineno);
        return TAIL_BROKEN;
    }
    if (!t->started) {
        t->started = true;
        t->start = t->data_end = off;
        t->lineno = lineno;
    }
    for (size_t i = n; i > 0; i--)
        if (line[i - 1] != '\0') {
            if (off + i > t->data_end) t->data_end = off + i;
            break;
        }
    return TAIL_TAKEN;
}

static void report_tail(struct walk *w, const struct tail *t, uint64_t size, const char *seg)
{
    if (!t->started) return;
    /* Zeros after the records are the live segment's preallocation; recovery drops them. */
    uint64_t torn = t->ends_in_nul ? t->data_end - t->start : size - t->start;
    if (torn == 0) return;
    w->rep->torn_bytes = torn;
    add_msg(w->rep, true,
            "%s: torn tail: %llu bytes at offset %llu (line %zu), after seq %llu: an append in "
            "progress, a crash (the next start cuts them off into a .torn- file), or damage",
            seg, (unsigned long long)torn, (unsigned long long)t->start, t->lineno,
            (unsigned long long)(w->expected - 1));
}

static int open_segment(int dirfd, const char *dir, const char *seg, FILE **f, uint64_t *size,
                        struct gate_error *err)
{
    int fd = openat(dirfd, seg, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !(*f = fdopen(fd, "r"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        return gate_err_errno(err, GATE_E_IO, e, "open %s/%s", dir, seg);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Stream one segment with getline, never holding more than one line. */
static int verify_segment(int dirfd, const char *dir, uint32_t num, bool is_last, struct walk *w,
                          struct gate_error *err)
{
    char seg[40];
    segment_name(num, seg, sizeof(seg));
    FILE *f = NULL;
    uint64_t size = 0;
    if (open_segment(dirfd, dir, seg, &f, &size, err) < 0) return -1;
    struct tail t = {0};
    if (is_last && size > 0) {
        char c = 1;
        t.ends_in_nul = pread(fileno(f), &c, 1, (off_t)(size - 1)) == 1 && c == '\0';
    }
    autofree char *line = NULL;
    size_t cap = 0, lineno = 0;
    uint64_t off = 0; /* of the next line; only the newest segment's tail needs it */
    int rc = 0;
    w->seg_records = 0;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (ferror(f))
                rc = gate_err_errno(err, GATE_E_IO, errno ? errno : EIO, "read %s/%s", dir, seg);
            break;
        }
        lineno++;
        if (is_last) {
            enum tail_take tk = take_tail_line(w, &t, line, (size_t)n, off, seg, lineno);
            if (tk == TAIL_BROKEN) {
                rc = 1;
                break;
            }
            off += (uint64_t)n;
            if (tk == TAIL_TAKEN) continue;
        } else if (line[n - 1] != '\n') {
            rc = tampered(w, w->expected, "%s line %zu: incomplete line in a closed segment", seg,
                          lineno);
            break;
        }
        rc = check_line(w, line, (size_t)n - 1, seg, lineno);
        if (rc != 0) break;
    }
    fclose(f);
    if (rc == 0) report_tail(w, &t, size, seg);
    return rc;
}

/* ---- the directory ---------------------------------------------------------------- */

/* Names in the directory that are not segments, kept until the segments are known. */
struct others {
    char **names;
    size_t n, cap;
};

static int keep_other(void *ctx, const char *name, struct gate_error *err)
{
    struct others *o = ctx;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        char **v = realloc(o->names, cap * sizeof(*v));
        if (!v) return gate_err(err, GATE_E_NOMEM, "audit verify: out of memory");
        o->names = v;
        o->cap = cap;
    }
    if (!(o->names[o->n] = strdup(name)))
        return gate_err(err, GATE_E_NOMEM, "audit verify: out of memory");
    o->n++;
    return 0;
}

static void others_free(struct others *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->names[i]);
    free(o->names);
}

static bool has_segment(const uint32_t *nums, size_t count, uint32_t num)
{
    for (size_t i = 0; i < count; i++)
        if (nums[i] == num) return true;
    return false;
}

/* A note for each side file recovery wrote; a warning for everything else. */
static void report_others(int dirfd, const struct others *o, const uint32_t *nums, size_t count,
                          struct audit_verify_report *rep)
{
    for (size_t i = 0; i < o->n; i++) {
        char name[256 * 4 + 1];
        printable(o->names[i], name, sizeof(name));
        struct stat st;
        bool is_file =
            fstatat(dirfd, o->names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
        uint32_t num = 0;
        uint64_t offset = 0;
        if (is_file && parse_torn_name(o->names[i], &num, &offset) && has_segment(nums, count, num))
            add_msg(rep, false,
                    "%s: %llu bytes that crash recovery cut off audit-%06u.jsonl at offset %llu "
                    "(never acknowledged)",
                    name, (unsigned long long)st.st_size, (unsigned)num,
                    (unsigned long long)offset);
        else if (is_file && parse_torn_name(o->names[i], &num, &offset))
            add_msg(rep, true,
                    "%s names audit-%06u.jsonl, which is not there (a segment moved out of the "
                    "chain?)",
                    name, (unsigned)num);
        else
            add_msg(rep, true, "%s is not an audit segment (unknown %s in the audit directory)",
                    name, is_file ? "file" : "entry");
    }
}

/* Walk the segments in order; a gap in their numbers is named by the next check. */
static int walk_segments(int dirfd, const char *dir, const uint32_t *nums, size_t count,
                         struct walk *w, struct gate_error *err)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t want = i == 0 ? 1 : nums[i - 1] + 1;
        if (nums[i] != want && nums[i] == want + 1)
            snprintf(w->gap, sizeof(w->gap), "audit-%06u.jsonl is missing", (unsigned)want);
        else if (nums[i] != want)
            snprintf(w->gap, sizeof(w->gap), "audit-%06u.jsonl to audit-%06u.jsonl are missing",
                     (unsigned)want, (unsigned)(nums[i] - 1));
        bool last = i + 1 == count;
        w->segment = nums[i];
        int rc = verify_segment(dirfd, dir, nums[i], last, w, err);
        if (rc != 0) return rc;
        /* The writer creates a segment and fills it before the next: an empty one before
         * another is not its work; an empty newest one is a rotation or start in progress. */
        if (w->seg_records == 0 && (!last || w->rep->records > 0))
            add_msg(w->rep, true, "audit-%06u.jsonl holds no records%s", (unsigned)nums[i],
                    last ? " (the newest segment: a rotation in progress, or records cut off)"
                         : ", but later segments exist");
    }
    if (w->gap[0]) return tampered(w, w->expected, "no record follows");
    if (w->rep->records == 0)
        return tampered(w, 1,
                        "no records in %zu segment file(s): an audit log starts with %s at seq 1 "
                        "(an emptied or deleted log)",
                        count, AUDIT_FIRST_EVENT);
    return 0;
}

int audit_verify_walk(const char *dir,
                      void (*on_record)(void *ctx, const struct record_info *info,
                                        uint32_t segment),
                      void *ctx, struct audit_verify_report *report, struct gate_error *err)
{
    memset(report, 0, sizeof(*report));
    autoclose int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s", dir);
    autofree uint32_t *nums = NULL;
    size_t count = 0;
    struct others others = {0};
    if (list_segments(dirfd, dir, &nums, &count, keep_other, &others, err) < 0) {
        others_free(&others);
        return -1;
    }
    struct walk w = {.expected = 1, .rep = report, .on_record = on_record, .ctx = ctx};
    memcpy(w.prev, AUDIT_ZERO_HASH, 65);
    int rc = walk_segments(dirfd, dir, nums, count, &w, err);
    if (rc >= 0) report_others(dirfd, &others, nums, count, report);
    others_free(&others);
    if (rc != 0) return rc < 0 ? -1 : AUDIT_VERIFY_TAMPERED;
    if (report->n_warnings == 0) return AUDIT_VERIFY_INTACT;
    for (size_t i = 0; i < report->n_msgs; i++)
        if (report->msgs[i].warning) {
            snprintf(report->reason, sizeof(report->reason), "%.*s",
                     (int)sizeof(report->reason) - 1, report->msgs[i].text);
            break;
        }
    return AUDIT_VERIFY_WARNINGS;
}

int audit_verify(const char *dir, struct audit_verify_report *report, struct gate_error *err)
{
    return audit_verify_walk(dir, NULL, NULL, report, err);
}
