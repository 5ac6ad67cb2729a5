/* audit_verify.c: checking a whole audit directory, segment by segment, line by line.
 *
 * Each line must be a well-formed record, carry the next seq (contiguous from 1 across
 * segments), name the previous record's hash as prev, and its own hash must recompute.
 * The first failure ends the walk. first_bad is the seq the bad line carries if the line is
 * a genuine record (its own hash recomputes: a record that is out of place, e.g. the one
 * after a deleted record or a swapped one), otherwise the seq expected at that position (an
 * edited or unparsable line). A last segment that ends without '\n' is an append in
 * progress or a crash that audit_open will cut off: that partial line is not counted and is
 * not an error. Like any unkeyed hash chain this cannot see records cut off the end, or a
 * suffix rewritten wholesale; anchor the last hash elsewhere for that.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "audit_internal.h"

struct walk {
    uint64_t expected; /* next seq */
    char prev[65];     /* hash of the last good record */
    struct audit_verify_report *rep;
};

static int tampered(struct walk *w, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tampered(struct walk *w, uint64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->rep->reason, sizeof(w->rep->reason), fmt, ap);
    va_end(ap);
    w->rep->first_bad = seq;
    return 1;
}

/* 0 good, 1 tampered (report filled). */
static int check_line(struct walk *w, const char *line, size_t len, const char *seg, size_t lineno)
{
    struct record_info info;
    char why[160];
    enum record_status st = check_record(line, len, &info, why, sizeof(why));
    if (st == RECORD_MALFORMED)
        return tampered(w, w->expected, "%s line %zu: %s", seg, lineno, why);
    if (info.seq != w->expected)
        return tampered(w, st == RECORD_OK ? info.seq : w->expected,
                        "%s line %zu: seq %llu where %llu was expected%s", seg, lineno,
                        (unsigned long long)info.seq, (unsigned long long)w->expected,
                        st == RECORD_OK ? "" : " (and its hash does not match)");
    if (st == RECORD_HASH_MISMATCH)
        return tampered(w, info.seq, "%s line %zu: seq %llu: %s", seg, lineno,
                        (unsigned long long)info.seq, why);
    if (memcmp(info.prev, w->prev, 64) != 0)
        return tampered(w, info.seq, "%s line %zu: seq %llu: prev is not the hash of seq %llu", seg,
                        lineno, (unsigned long long)info.seq, (unsigned long long)(info.seq - 1));
    memcpy(w->prev, info.hash, 65);
    w->expected++;
    w->rep->records++;
    return 0;
}

/* Stream one segment with getline, never holding more than one line. */
static int verify_segment(int dirfd, const char *dir, uint32_t num, bool is_last, struct walk *w,
                          struct gate_error *err)
{
    char seg[40];
    segment_name(num, seg, sizeof(seg));
    int fd = openat(dirfd, seg, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s/%s", dir, seg);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return gate_err_errno(err, GATE_E_IO, errno, "open %s/%s", dir, seg);
    }
    autofree char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) {
            if (ferror(f))
                rc = gate_err_errno(err, GATE_E_IO, errno ? errno : EIO, "read %s/%s", dir, seg);
            break;
        }
        lineno++;
        if (line[n - 1] != '\n') {
            if (!is_last)
                rc = tampered(w, w->expected, "%s line %zu: incomplete line in a closed segment",
                              seg, lineno);
            break; /* last segment: an append in progress, or a tail open() will cut */
        }
        rc = check_line(w, line, (size_t)n - 1, seg, lineno);
        if (rc != 0) break;
    }
    fclose(f);
    return rc;
}

int audit_verify(const char *dir, struct audit_verify_report *report, struct gate_error *err)
{
    memset(report, 0, sizeof(*report));
    autoclose int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s", dir);
    autofree uint32_t *nums = NULL;
    size_t count = 0;
    if (list_segments(dirfd, dir, &nums, &count, err) < 0) return -1;
    struct walk w = {.expected = 1, .rep = report};
    memcpy(w.prev, AUDIT_ZERO_HASH, 65);
    for (size_t i = 0; i < count; i++) {
        int rc = verify_segment(dirfd, dir, nums[i], i + 1 == count, &w, err);
        if (rc != 0) return rc;
    }
    return 0;
}
