/* audit_segment.c: segment files: names, listing, and recovery of a torn tail.
 *
 * Recovery reads only the end of the last segment, backwards, so opening a large log costs
 * O(tail), not O(log). Bytes cut off a torn tail are first copied to a side file
 * (audit-NNNNNN.jsonl.torn-<offset>-<ms>) so that nothing, not even a damaged record, is
 * destroyed silently; verification ignores those files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit_internal.h"

void segment_name(uint32_t num, char *buf, size_t len)
{
    snprintf(buf, len, "audit-%06u.jsonl", (unsigned)num);
}

/* Accept only the canonical spelling, so "audit-1.jsonl" and "audit-000001.jsonl" cannot both
 * claim segment 1. */
static bool parse_segment_name(const char *name, uint32_t *num)
{
    if (strncmp(name, "audit-", 6) != 0) return false;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(name + 6, &end, 10);
    if (errno || end == name + 6 || strcmp(end, ".jsonl") != 0 || v == 0 || v > UINT32_MAX)
        return false;
    char canon[40];
    segment_name((uint32_t)v, canon, sizeof(canon));
    if (strcmp(canon, name) != 0) return false;
    *num = (uint32_t)v;
    return true;
}

/* A decimal number of at most 20 digits, no sign, no leading zero unless it is "0". */
static bool parse_u64(const char *s, const char **end, uint64_t *v)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0')) return false;
    char *e = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || e != s + n) return false;
    *v = x;
    *end = e;
    return true;
}

bool parse_torn_name(const char *name, uint32_t *num, uint64_t *offset)
{
    const char *dot = strstr(name, ".jsonl.torn-");
    if (!dot) return false;
    char seg[40];
    size_t seg_len = (size_t)(dot - name) + strlen(".jsonl");
    if (seg_len >= sizeof(seg)) return false;
    memcpy(seg, name, seg_len);
    seg[seg_len] = '\0';
    const char *p = dot + strlen(".jsonl.torn-");
    uint64_t ms = 0;
    if (!parse_segment_name(seg, num) || !parse_u64(p, &p, offset) || *p++ != '-' ||
        !parse_u64(p, &p, &ms) || *p != '\0')
        return false;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int list_segments(int dirfd, const char *dir, uint32_t **nums, size_t *count,
                  int (*other)(void *ctx, const char *name, struct gate_error *err), void *ctx,
                  struct gate_error *err)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "list %s", dir);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return gate_err_errno(err, GATE_E_IO, errno, "list %s", dir);
    }
    rewinddir(d); /* the dup shares its offset with dirfd */
    uint32_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        uint32_t num;
        if (!parse_segment_name(de->d_name, &num)) {
            if (other && strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                other(ctx, de->d_name, err) < 0) {
                free(v);
                closedir(d);
                return -1;
            }
            errno = 0;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint32_t *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return gate_err(err, GATE_E_NOMEM, "list %s: out of memory", dir);
            }
            v = nv;
        }
        v[n++] = num;
        errno = 0;
    }
    int rerr = errno;
    closedir(d);
    if (rerr) {
        free(v);
        return gate_err_errno(err, GATE_E_IO, rerr, "list %s", dir);
    }
    if (n > 1) qsort(v, n, sizeof(*v), cmp_u32);
    *nums = v;
    *count = n;
    return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = EIO; /* the file shrank under us */
            return -1;
        }
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return 0;
}

/* Offset just after the last byte in [from, end) that equals c (or, with differs, that does
 * not), or from if there is none. Returns 0, 1 once more than max_scan bytes were read
 * without finding one, or -1 with err filled. */
static int scan_back(int fd, uint64_t from, uint64_t end, char c, bool differs, uint64_t max_scan,
                     uint64_t *after, const char *seg, struct gate_error *err)
{
    char buf[65536];
    for (uint64_t pos = end; pos > from;) {
        if (end - pos > max_scan) return 1;
        size_t n = pos - from < sizeof(buf) ? (size_t)(pos - from) : sizeof(buf);
        if (pread_full(fd, buf, n, pos - n) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "read %s", seg);
        for (size_t i = n; i > 0; i--)
            if ((buf[i - 1] == c) != differs) {
                *after = pos - n + i;
                return 0;
            }
        pos -= n;
    }
    *after = from;
    return 0;
}

/* Offset just after the last '\n' before end (0 if none), scanning at most max_scan bytes. */
static int find_line_start(int fd, uint64_t end, uint64_t max_scan, uint64_t *start,
                           const char *seg, struct gate_error *err)
{
    int rc = scan_back(fd, 0, end, '\n', false, max_scan, start, seg, err);
    if (rc == 1)
        return gate_err(err, GATE_E_AUDIT_UNAVAILABLE,
                        "%s: line ending at offset %llu is longer than %llu bytes", seg,
                        (unsigned long long)end, (unsigned long long)max_scan);
    return rc;
}

/* Copy [from, to) of the segment to a new side file and make it durable. */
static int save_torn(int dirfd, const char *seg, int fd, uint64_t from, uint64_t to,
                     struct gate_error *err)
{
    char name[128];
    snprintf(name, sizeof(name), "%s.torn-%llu-%llu", seg, (unsigned long long)from,
             (unsigned long long)gate_realtime_ms());
    autoclose int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) return gate_err_errno(err, GATE_E_IO, errno, "create %s", name);
    char buf[65536];
    for (uint64_t off = from; off < to;) {
        size_t n = to - off < sizeof(buf) ? (size_t)(to - off) : sizeof(buf);
        if (pread_full(fd, buf, n, off) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "read %s", seg);
        if (gate_write_all(out, buf, n) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "write %s", name);
        off += n;
    }
    if (fsync(out) < 0 || fsync(dirfd) < 0)
        return gate_err_errno(err, GATE_E_IO, errno, "sync %s", name);
    return 0;
}

/* Offset of the first NUL byte in [0, size), or size if there is none. */
static int find_first_nul(int fd, uint64_t size, uint64_t *at, const char *seg,
                          struct gate_error *err)
{
    char buf[65536];
    for (uint64_t off = 0; off < size;) {
        size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
        if (pread_full(fd, buf, n, off) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "read %s", seg);
        const char *z = memchr(buf, '\0', n);
        if (z) {
            *at = off + (uint64_t)(z - buf);
            return 0;
        }
        off += n;
    }
    *at = size;
    return 0;
}

/* The live segment is preallocated with zeros after its records (audit.c), so after a crash
 * it ends in zeros. Acknowledged records were written in order and hold no NUL byte, so
 * everything from the line holding the first NUL onwards was never acknowledged: cut it
 * there. Zeros are dropped silently; any other bytes in the cut (a batch whose write was
 * torn, blocks out of order) are saved beside the segment first. Reads the whole segment,
 * but only after a crash: a segment closed cleanly was cut to size and ends in '\n'. */
static int cut_zero_tail(int dirfd, const char *dir, const char *seg, int fd, uint64_t *size,
                         struct gate_error *err)
{
    uint64_t nul = 0, cut = 0, data_end = 0;
    if (find_first_nul(fd, *size, &nul, seg, err) < 0 ||
        find_line_start(fd, nul, AUDIT_MAX_LINE, &cut, seg, err) < 0 ||
        scan_back(fd, cut, *size, '\0', true, UINT64_MAX, &data_end, seg, err) < 0)
        return -1;
    if (data_end > cut) {
        if (save_torn(dirfd, seg, fd, cut, data_end, err) < 0) return -1;
        gate_log("warn", "audit_tail_truncated", "%s/%s: cut %llu torn bytes at offset %llu", dir,
                 seg, (unsigned long long)(data_end - cut), (unsigned long long)cut);
    }
    if (ftruncate(fd, (off_t)cut) < 0 || fsync(fd) < 0)
        return gate_err_errno(err, GATE_E_IO, errno, "truncate %s/%s", dir, seg);
    *size = cut;
    return 0;
}

/* Walk back from pos (which is 0 or just after a '\n') to the last line that checks. */
static int last_good_line(int fd, const char *seg, bool truncate_torn, uint64_t *pos,
                          struct record_info *last, bool *found, struct gate_error *err)
{
    while (*pos > 0) {
        uint64_t start = 0;
        if (find_line_start(fd, *pos - 1, AUDIT_MAX_LINE, &start, seg, err) < 0) return -1;
        size_t len = (size_t)(*pos - 1 - start);
        autofree char *line = malloc(len + 1);
        if (!line) return gate_err(err, GATE_E_NOMEM, "recover %s: out of memory", seg);
        if (pread_full(fd, line, len, start) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "read %s", seg);
        char why[160];
        if (check_record(line, len, last, why, sizeof(why)) == RECORD_OK) {
            *found = true;
            return 0;
        }
        /* A crash before fdatasync leaves zero-filled pages, so a torn line holds NUL bytes.
         * A complete line without any that fails its hash was acknowledged once and has been
         * altered: refuse to continue the chain over it (fail closed) instead of cutting it
         * and reusing its seq. */
        if (!truncate_torn || !memchr(line, '\0', len))
            return gate_err(err, GATE_E_AUDIT_UNAVAILABLE,
                            "%s: record at offset %llu is damaged (%s); run `gatehouse audit "
                            "verify` and repair the log by hand",
                            seg, (unsigned long long)start, why);
        *pos = start;
    }
    return 0;
}

int recover_tail(int dirfd, const char *dir, uint32_t num, int fd, bool truncate_torn,
                 struct record_info *last, bool *found, uint64_t *new_size, struct gate_error *err)
{
    char seg[40];
    segment_name(num, seg, sizeof(seg));
    *found = false;
    struct stat st;
    if (fstat(fd, &st) < 0) return gate_err_errno(err, GATE_E_IO, errno, "stat %s/%s", dir, seg);
    uint64_t size = (uint64_t)st.st_size, pos = size;
    if (size > 0) {
        char lastc;
        if (pread_full(fd, &lastc, 1, size - 1) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "read %s/%s", dir, seg);
        if (lastc == '\0') {
            /* Only the live segment is ever preallocated; a closed one was cut to size. */
            if (!truncate_torn)
                return gate_err(err, GATE_E_AUDIT_UNAVAILABLE, "%s/%s ends with NUL bytes", dir,
                                seg);
            if (cut_zero_tail(dirfd, dir, seg, fd, &size, err) < 0)
                return gate_err_wrap(err, "recover %s", dir);
            pos = size;
            if (size > 0 && pread_full(fd, &lastc, 1, size - 1) < 0)
                return gate_err_errno(err, GATE_E_IO, errno, "read %s/%s", dir, seg);
        }
        /* A crash mid-write leaves a line without its '\n': it was never acknowledged. */
        if (lastc != '\n' && find_line_start(fd, size, UINT64_MAX, &pos, seg, err) < 0) return -1;
    }
    if (!truncate_torn && pos != size)
        return gate_err(err, GATE_E_AUDIT_UNAVAILABLE, "%s/%s ends with an incomplete line", dir,
                        seg);
    if (last_good_line(fd, seg, truncate_torn, &pos, last, found, err) < 0)
        return gate_err_wrap(err, "recover %s", dir);
    if (pos < size) {
        if (save_torn(dirfd, seg, fd, pos, size, err) < 0)
            return gate_err_wrap(err, "recover %s", dir);
        /* Cut only bytes that were never acknowledged or that fail their own hash; they are
         * preserved in the side file just written. */
        if (ftruncate(fd, (off_t)pos) < 0 || fsync(fd) < 0)
            return gate_err_errno(err, GATE_E_IO, errno, "truncate %s/%s", dir, seg);
        gate_log("warn", "audit_tail_truncated", "%s/%s: cut %llu torn bytes at offset %llu", dir,
                 seg, (unsigned long long)(size - pos), (unsigned long long)pos);
    }
    *new_size = pos;
    return 0;
}
