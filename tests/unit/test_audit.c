/* test_audit.c: the audit log: layout, chaining, recovery, tamper detection, rotation,
 * concurrency (group commit) and fail-closed behaviour. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"

/* ---- fixture: a fresh temporary directory per test ------------------------------- */

struct fx {
    char root[64];
    char dir[96]; /* root/audit, created by audit_open */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/test_audit.XXXXXX");
    if (!f || !mkdtemp(f->root)) return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/audit", f->root);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void seg_path(const struct fx *f, uint32_t num, char *buf, size_t len)
{
    snprintf(buf, len, "%s/audit-%06u.jsonl", f->dir, num);
}

/* What the writer puts at seq: a log starts with the gateway's start record. */
static const char *event_for(uint64_t seq)
{
    return seq == 1 ? AUDIT_FIRST_EVENT : "call.start";
}

static json_t *fields_for(int i)
{
    return json_pack("{s:s, s:s, s:i}", "call_id", "c_test", "tool", "echo", "n", i);
}

/* Open, append n records (seq must continue from first_seq), close. */
static void write_records(const char *dir, int n, uint64_t first_seq, uint64_t seg_limit)
{
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(dir, &log, &err), 0);
    if (seg_limit) audit_set_segment_limit(log, seg_limit);
    for (int i = 0; i < n; i++) {
        json_t *fl = fields_for(i);
        uint64_t seq = 0;
        assert_int_equal(audit_append(log, event_for(first_seq + (uint64_t)i), fl, &seq, &err), 0);
        assert_int_equal(seq, first_seq + (uint64_t)i);
        json_decref(fl);
    }
    assert_int_equal(audit_last_seq(log), first_seq + (uint64_t)n - 1);
    audit_close(log);
}

static void expect_intact(const char *dir, uint64_t records)
{
    struct audit_verify_report rep;
    struct gate_error err = {0};
    int rc = audit_verify(dir, &rep, &err);
    if (rc != 0)
        fprintf(stderr, "verify: rc %d first_bad %llu: %s %s\n", rc,
                (unsigned long long)rep.first_bad, rep.reason, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(rep.records, records);
    assert_int_equal(rep.first_bad, 0);
}

/* noinline: gcc 12 at -O2 otherwise mistakes pointers into the result for pointers to the
 * local that held it (-Wdangling-pointer false positive). */
__attribute__((noinline)) static char *slurp(const char *path, size_t *len)
{
    char *s = NULL;
    struct gate_error err = {0};
    assert_int_equal(gate_read_file(path, 1u << 30, &s, len, &err), 0);
    return s;
}

static void spit(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(gate_write_all(fd, data, len), 0);
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- layout ---------------------------------------------------------------------- */

static void test_audit_record_layout_and_hash_rule(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 2, 1, 0);
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    char *nl = strchr(s, '\n');
    assert_non_null(nl);
    *nl = '\0';
    /* Keys in order, caller fields in the caller's order, first prev all zeros. */
    assert_true(strncmp(s, "{\"seq\":1,\"ts\":\"", 15) == 0);
    char *mono = strstr(s, "Z\",\"mono_ns\":");
    assert_non_null(mono);
    assert_non_null(
        strstr(mono, ",\"event\":\"gateway.started\",\"call_id\":\"c_test\",\"tool\":\"echo\","
                     "\"n\":0,\"prev\":\"0000000000000000000000000000000000000000000000"
                     "000000000000000000\",\"hash\":\""));
    /* hash = sha256 of the bytes before the final ,"hash": member. */
    char *h = strstr(s, ",\"hash\":\"");
    char computed[65];
    gate_sha256_hex(s, (size_t)(h - s), computed);
    assert_memory_equal(h + 9, computed, 64);
    assert_string_equal(h + 9 + 64, "\"}");
    /* The second record's prev is the first record's hash. */
    char *second = nl + 1;
    char *p2 = strstr(second, ",\"prev\":\"");
    assert_non_null(p2);
    assert_memory_equal(p2 + 9, computed, 64);
    assert_true(strncmp(second, "{\"seq\":2,", 9) == 0);
    /* The file and its directory are private. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_audit_write_n_records_verifies(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 100, 1, 0);
    expect_intact(f->dir, 100);
}

static void test_audit_no_fields_and_nested_fields(void **state)
{
    struct fx *f = *state;
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(f->dir, &log, &err), 0);
    assert_int_equal(audit_append(log, AUDIT_FIRST_EVENT, NULL, NULL, &err), 0);
    json_t *empty = json_object();
    assert_int_equal(audit_append(log, "x", empty, NULL, &err), 0);
    json_decref(empty);
    /* A nested "hash" member and quotes/newlines in values do not confuse the layout. */
    json_t *nested =
        json_pack("{s:{s:s}, s:s}", "obj", "hash", "x\",\"hash\":\"", "msg", "line1\nline2 \"q\"");
    assert_int_equal(audit_append(log, "ev\"ent\n", nested, NULL, &err), 0);
    json_decref(nested);
    audit_close(log);
    expect_intact(f->dir, 3);
}

/* ---- reopen and recovery ----------------------------------------------------------- */

static void test_audit_reopen_continues_chain(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 5, 1, 0);
    write_records(f->dir, 5, 6, 0);
    write_records(f->dir, 1, 11, 0);
    expect_intact(f->dir, 11);
}

static void test_audit_second_writer_refused(void **state)
{
    struct fx *f = *state;
    struct audit_log *a = NULL, *b = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(f->dir, &a, &err), 0);
    assert_int_equal(audit_open(f->dir, &b, &err), -1);
    assert_int_equal(err.code, GATE_E_AUDIT_UNAVAILABLE);
    assert_null(b);
    audit_close(a);
}

/* Whether recovery kept cut bytes beside a segment. */
static bool torn_file_exists(const struct fx *f)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q 'jsonl.torn-'", f->dir);
    return system(cmd) == 0;
}

/* Start again from no log at all. */
static void remove_log(const struct fx *f)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
}

/* What a crash (or damage) leaves after the last good record of the last segment. */
enum torn_kind { TORN_PARTIAL_LINE, TORN_ZEROED_LINE, TORN_HALF_RECORD };
static const struct torn_case {
    const char *name;
    enum torn_kind kind;
} torn_cases[] = {
    {"partial line without newline", TORN_PARTIAL_LINE},
    {"line with zero-filled pages of an unsynced write", TORN_ZEROED_LINE},
    {"last record cut in half", TORN_HALF_RECORD},
};

static char *last_line(char *s, size_t len)
{
    char *last = s + len - 1;
    while (last > s && last[-1] != '\n')
        last--;
    return last;
}

static void test_audit_torn_tail_truncated_on_open(void **state)
{
    struct fx *f = *state;
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    for (size_t i = 0; i < sizeof(torn_cases) / sizeof(torn_cases[0]); i++) {
        const struct torn_case *tc = &torn_cases[i];
        remove_log(f);
        write_records(f->dir, 4, 1, 0);
        size_t len = 0;
        autofree char *s = slurp(path, &len);
        size_t good = len;     /* bytes that must survive */
        uint64_t next_seq = 5; /* seq the first append after recovery gets */
        FILE *fp = fopen(path, "ae");
        assert_non_null(fp);
        if (tc->kind == TORN_PARTIAL_LINE) {
            fputs("{\"seq\":5,\"ts\":\"2026-", fp);
        } else if (tc->kind == TORN_ZEROED_LINE) {
            static const char zeroed[] = "{\"seq\":5,\"ts\":\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\n";
            fwrite(zeroed, 1, sizeof(zeroed) - 1, fp);
        }
        fclose(fp);
        if (tc->kind == TORN_HALF_RECORD) {
            good = (size_t)(last_line(s, len) - s);
            assert_int_equal(truncate(path, (off_t)good + 40), 0);
            next_seq = 4;
        }
        write_records(f->dir, 1, next_seq, 0);
        fprintf(stderr, "torn case '%s' recovered\n", tc->name);
        expect_intact(f->dir, next_seq);
        /* Recovery kept the good prefix byte for byte and appended right after it. */
        size_t len2 = 0;
        autofree char *s2 = slurp(path, &len2);
        assert_true(len2 > good);
        assert_memory_equal(s2, s, good);
        assert_true(strncmp(s2 + good, "{\"seq\":", 7) == 0);
        /* The cut bytes were kept beside the segment, not destroyed. */
        assert_true(torn_file_exists(f));
    }
}

/* ---- preallocation: the live segment ends in zeros -------------------------------- */

/* Append n records in a child that exits without audit_close, as a crash would. */
static void crash_after_records(const char *dir, int n, uint64_t first_seq, bool buffered)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* no cmocka asserts in the child: exit codes instead */
        struct audit_log *log = NULL;
        struct gate_error err = {0};
        if (audit_open(dir, &log, &err) < 0) _exit(10);
        if (buffered && audit_test_buffered_io(log) < 0) _exit(12);
        for (int i = 0; i < n; i++) {
            uint64_t seq = 0;
            if (audit_append(log, event_for(first_seq + (uint64_t)i), NULL, &seq, &err) < 0 ||
                seq != first_seq + (uint64_t)i)
                _exit(11);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* The records, then only zeros up to the end of the file; returns the records' length. */
static size_t records_then_zeros(const char *path)
{
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    size_t used = strlen(s);
    assert_true(used > 0 && s[used - 1] == '\n');
    for (size_t i = used; i < len; i++)
        assert_int_equal(s[i], 0);
    return used;
}

static void test_audit_live_segment_preallocated_and_cut_on_close(void **state)
{
    struct fx *f = *state;
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    for (int buffered = 0; buffered < 2; buffered++) {
        remove_log(f);
        struct audit_log *log = NULL;
        struct gate_error err = {0};
        assert_int_equal(audit_open(f->dir, &log, &err), 0);
        if (buffered) assert_int_equal(audit_test_buffered_io(log), 0);
        for (int i = 0; i < 3; i++)
            assert_int_equal(audit_append(log, event_for((uint64_t)i + 1), NULL, NULL, &err), 0);
        /* While the log is open, zeros follow the records, and a reader stops at them. */
        size_t used = records_then_zeros(path);
        assert_true((size_t)file_size(path) > used);
        expect_intact(f->dir, 3);
        audit_close(log);
        /* Closed: exactly the records. */
        assert_int_equal(file_size(path), (off_t)used);
        expect_intact(f->dir, 3);
    }
}

static void test_audit_crash_leaves_zeros_that_open_cuts(void **state)
{
    struct fx *f = *state;
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    for (int buffered = 0; buffered < 2; buffered++) {
        remove_log(f);
        crash_after_records(f->dir, 5, 1, buffered);
        size_t used = records_then_zeros(path);
        assert_true((size_t)file_size(path) > used);
        expect_intact(f->dir, 5); /* verify reads a crashed log as it is */
        write_records(f->dir, 2, 6, 0);
        expect_intact(f->dir, 7);
        assert_int_equal(file_size(path), (off_t)records_then_zeros(path));
        assert_false(torn_file_exists(f)); /* plain zeros are not worth keeping */
    }
}

/* A batch whose write was torn can reach the disk out of order: a later block written, an
 * earlier one still zeros. The record after the hole was never acknowledged, however good
 * it looks: recovery cuts at the first zero and keeps the rest beside the segment. */
static void test_audit_torn_write_after_zeros_is_cut_at_the_hole(void **state)
{
    struct fx *f = *state;
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    write_records(f->dir, 4, 1, 0);
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    char *last = last_line(s, len);
    size_t last_len = len - (size_t)(last - s);
    size_t img_len = len + 8192 + last_len + 4096;
    autofree char *img = calloc(1, img_len);
    memcpy(img, s, len);
    memcpy(img + len + 8192, last, last_len);
    spit(path, img, img_len);
    write_records(f->dir, 1, 5, 0);
    expect_intact(f->dir, 5);
    size_t len2 = 0;
    autofree char *s2 = slurp(path, &len2);
    assert_memory_equal(s2, s, len);
    assert_true(strncmp(s2 + len, "{\"seq\":5,", 9) == 0);
    assert_true(torn_file_exists(f));
}

/* A complete line that fails its hash and holds no zero-filled bytes was altered after it was
 * acknowledged: opening refuses to continue the chain over it rather than cutting it. */
static void test_audit_open_refuses_altered_last_record(void **state)
{
    struct fx *f = *state;
    static const char *const lines[] = {"not json at all\n", NULL};
    for (int k = 0; k < 2; k++) {
        remove_log(f);
        write_records(f->dir, 4, 1, 0);
        char path[160];
        seg_path(f, 1, path, sizeof(path));
        size_t len = 0;
        autofree char *s = slurp(path, &len);
        FILE *fp = fopen(path, "ae");
        assert_non_null(fp);
        if (lines[k]) {
            fputs(lines[k], fp);
        } else { /* the last record again, one byte changed: well formed, hash fails */
            char *copy = strdup(last_line(s, len));
            strstr(copy, "\"tool\":\"echo\"")[9] = 'E';
            fputs(copy, fp);
            free(copy);
        }
        fclose(fp);
        struct audit_log *log = NULL;
        struct gate_error err = {0};
        assert_int_equal(audit_open(f->dir, &log, &err), -1);
        assert_int_equal(err.code, GATE_E_AUDIT_UNAVAILABLE);
        assert_non_null(strstr(err.msg, "damaged"));
        size_t len2 = 0;
        autofree char *s2 = slurp(path, &len2);
        assert_true(len2 > len); /* nothing was cut */
    }
}

static void test_audit_empty_last_segment_chains_from_previous(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 3, 1, 0);
    /* A crash right after rotation created the next segment. */
    char path[160];
    seg_path(f, 2, path, sizeof(path));
    spit(path, "", 0);
    write_records(f->dir, 2, 4, 0);
    assert_true(file_size(path) > 0);
    expect_intact(f->dir, 5);
}

/* Open reads only the tail: damage earlier in the last segment does not stop the gateway
 * from starting (audit_verify is what finds it), and the chain continues from the tail. */
static void test_audit_open_reads_only_the_tail(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 6, 1, 0);
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    char *second = strchr(s, '\n') + 1;
    strstr(second, "\"tool\":\"echo\"")[9] = 'E'; /* edit seq 2 */
    spit(path, s, len);
    write_records(f->dir, 1, 7, 0);
    struct audit_verify_report rep;
    struct gate_error err = {0};
    assert_int_equal(audit_verify(f->dir, &rep, &err), 1);
    assert_int_equal(rep.first_bad, 2);
}

/* ---- tampering ------------------------------------------------------------------- */

/* The whole log as lines tagged with their segment, for mutation and write-back. */
#define MAX_SEGS 64
struct image {
    const struct fx *f;
    char **lines; /* with their '\n' (a truncated last one may lack it) */
    uint32_t *seg;
    size_t n, cap;
    uint32_t nseg;
    bool deleted[MAX_SEGS + 1];
};

static void image_push(struct image *im, size_t at, uint32_t seg, char *line)
{
    if (im->n == im->cap) {
        im->cap = im->cap ? 2 * im->cap : 64;
        im->lines = realloc(im->lines, im->cap * sizeof(*im->lines));
        im->seg = realloc(im->seg, im->cap * sizeof(*im->seg));
    }
    memmove(im->lines + at + 1, im->lines + at, (im->n - at) * sizeof(*im->lines));
    memmove(im->seg + at + 1, im->seg + at, (im->n - at) * sizeof(*im->seg));
    im->lines[at] = line;
    im->seg[at] = seg;
    im->n++;
}

static void image_remove(struct image *im, size_t at)
{
    free(im->lines[at]);
    memmove(im->lines + at, im->lines + at + 1, (im->n - at - 1) * sizeof(*im->lines));
    memmove(im->seg + at, im->seg + at + 1, (im->n - at - 1) * sizeof(*im->seg));
    im->n--;
}

static void image_load(struct image *im, const struct fx *f)
{
    memset(im, 0, sizeof(*im));
    im->f = f;
    for (uint32_t s = 1; s <= MAX_SEGS; s++) {
        char path[160];
        seg_path(f, s, path, sizeof(path));
        FILE *fp = fopen(path, "re");
        if (!fp) break;
        im->nseg = s;
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, fp) > 0)
            image_push(im, im->n, s, strdup(line));
        free(line);
        fclose(fp);
    }
}

static void image_save_free(struct image *im)
{
    for (uint32_t s = 1; s <= im->nseg; s++) {
        char path[160];
        seg_path(im->f, s, path, sizeof(path));
        if (im->deleted[s]) {
            assert_int_equal(unlink(path), 0);
            continue;
        }
        struct gate_buf b = {0};
        gate_buf_append(&b, "", 0);
        for (size_t i = 0; i < im->n; i++)
            if (im->seg[i] == s) gate_buf_append(&b, im->lines[i], strlen(im->lines[i]));
        spit(path, b.data, b.len);
        gate_buf_free(&b);
    }
    for (size_t i = 0; i < im->n; i++)
        free(im->lines[i]);
    free(im->lines);
    free(im->seg);
}

/* Index of the line with this seq (lines are in order before mutation). */
static size_t idx(const struct image *im, uint64_t seq)
{
    char key[40];
    int k = snprintf(key, sizeof(key), "{\"seq\":%llu,", (unsigned long long)seq);
    for (size_t i = 0; i < im->n; i++)
        if (strncmp(im->lines[i], key, (size_t)k) == 0) return i;
    fail_msg("seq %llu not found", (unsigned long long)seq);
    return 0;
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    assert_non_null(p);
    size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), sl = strlen(s);
    char *r = malloc(sl - fl + tl + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, tl);
    memcpy(r + a + tl, p + fl, sl - a - fl + 1);
    return r;
}

/* Recompute a line's hash the way a forger would (the chain has no key). */
static char *rehash(const char *line)
{
    size_t len = strlen(line) - 1; /* without '\n' */
    size_t hashed = len - 75;
    char hex[65];
    gate_sha256_hex(line, hashed, hex);
    char *r = malloc(len + 2);
    memcpy(r, line, hashed);
    snprintf(r + hashed, len + 2 - hashed, ",\"hash\":\"%s\"}\n", hex);
    return r;
}

static char *line_hash(const char *line)
{
    return strndup(strstr(line, ",\"hash\":\"") + 9, 64);
}

static uint64_t tamper_edit_field(struct image *im)
{
    size_t i = idx(im, 6);
    char *e = replace(im->lines[i], "\"tool\":\"echo\"", "\"tool\":\"rm\"");
    free(im->lines[i]);
    im->lines[i] = e;
    return 6;
}

static uint64_t tamper_edit_and_rehash(struct image *im)
{
    size_t i = idx(im, 6);
    char *e = replace(im->lines[i], "\"tool\":\"echo\"", "\"tool\":\"rm\"");
    free(im->lines[i]);
    im->lines[i] = rehash(e);
    free(e);
    return 7; /* seq 6 now checks by itself; seq 7's prev no longer matches */
}

static uint64_t tamper_delete_record(struct image *im)
{
    image_remove(im, idx(im, 6));
    return 7;
}

static uint64_t tamper_swap_records(struct image *im)
{
    size_t a = idx(im, 6), b = idx(im, 7);
    char *t = im->lines[a];
    im->lines[a] = im->lines[b];
    im->lines[b] = t;
    return 7;
}

static uint64_t tamper_insert_forged_chained(struct image *im)
{
    /* A well-chained forgery claiming seq 6, placed before the real seq 6. */
    size_t i = idx(im, 6);
    char *e = replace(im->lines[i], "\"tool\":\"echo\"", "\"tool\":\"rm\"");
    image_push(im, i, im->seg[i], rehash(e));
    free(e);
    return 6; /* the real seq 6 is then out of place */
}

static uint64_t tamper_insert_forged_unchained(struct image *im)
{
    size_t i = idx(im, 6);
    char *hash5 = line_hash(im->lines[idx(im, 4)]); /* wrong prev on purpose */
    char *prev6 = strndup(strstr(im->lines[i], ",\"prev\":\"") + 9, 64);
    char *e = replace(im->lines[i], prev6, hash5);
    image_push(im, i, im->seg[i], rehash(e));
    free(e);
    free(hash5);
    free(prev6);
    return 6;
}

static uint64_t tamper_truncate_middle_segment(struct image *im)
{
    /* Cut segment 2 in the middle of its second line. */
    size_t first = 0;
    while (im->seg[first] != 2)
        first++;
    size_t i = first + 1;
    assert_int_equal(im->seg[i], 2);
    uint64_t seq = strtoull(im->lines[i] + 7, NULL, 10);
    im->lines[i][strlen(im->lines[i]) / 2] = '\0';
    while (i + 1 < im->n && im->seg[i + 1] == 2)
        image_remove(im, i + 1);
    return seq;
}

static uint64_t tamper_cut_bytes_mid_segment(struct image *im)
{
    /* Remove a byte range spanning the end of seq 6 and the start of seq 7. */
    size_t a = idx(im, 6), b = idx(im, 7);
    char *x = im->lines[a], *y = im->lines[b];
    size_t xl = strlen(x) / 2, yo = strlen(y) / 2;
    char *j = malloc(xl + strlen(y + yo) + 1);
    memcpy(j, x, xl);
    strcpy(j + xl, y + yo);
    free(im->lines[a]);
    im->lines[a] = j;
    image_remove(im, b);
    return 6;
}

static uint64_t tamper_delete_middle_segment(struct image *im)
{
    im->deleted[2] = true;
    size_t i = 0;
    while (im->seg[i] != 3)
        i++;
    return strtoull(im->lines[i] + 7, NULL, 10);
}

static uint64_t tamper_edit_prev(struct image *im)
{
    size_t i = idx(im, 9);
    char *p = strstr(im->lines[i], ",\"prev\":\"") + 9;
    p[0] = p[0] == 'a' ? 'b' : 'a';
    return 9;
}

static uint64_t tamper_renumber_seq(struct image *im)
{
    size_t i = idx(im, 8);
    char *e = replace(im->lines[i], "{\"seq\":8,", "{\"seq\":80,");
    free(im->lines[i]);
    im->lines[i] = e;
    return 8; /* an edited line is reported at its position */
}

static const struct tamper_case {
    const char *name;
    uint64_t (*mutate)(struct image *im); /* returns the expected first bad seq */
} tamper_cases[] = {
    {"edit a field", tamper_edit_field},
    {"edit a field and recompute its hash", tamper_edit_and_rehash},
    {"delete a record", tamper_delete_record},
    {"swap two records", tamper_swap_records},
    {"insert a forged, chained record", tamper_insert_forged_chained},
    {"insert a forged, unchained record", tamper_insert_forged_unchained},
    {"truncate the middle of a segment", tamper_truncate_middle_segment},
    {"cut bytes out of a segment", tamper_cut_bytes_mid_segment},
    {"delete a whole middle segment", tamper_delete_middle_segment},
    {"edit prev", tamper_edit_prev},
    {"renumber a seq", tamper_renumber_seq},
};

static void test_audit_tampering_detected_with_first_bad_seq(void **state)
{
    struct fx *f = *state;
    for (size_t c = 0; c < sizeof(tamper_cases) / sizeof(tamper_cases[0]); c++) {
        const struct tamper_case *tc = &tamper_cases[c];
        remove_log(f);
        /* ~4 records per segment: 24 records give 6 segments. */
        write_records(f->dir, 24, 1, 900);
        expect_intact(f->dir, 24);
        struct image im;
        image_load(&im, f);
        assert_true(im.nseg >= 4);
        uint64_t want = tc->mutate(&im);
        image_save_free(&im);
        struct audit_verify_report rep;
        struct gate_error err = {0};
        int rc = audit_verify(f->dir, &rep, &err);
        fprintf(stderr, "tamper '%s': rc %d first_bad %llu (want %llu): %s\n", tc->name, rc,
                (unsigned long long)rep.first_bad, (unsigned long long)want, rep.reason);
        assert_int_equal(rc, 1);
        assert_int_equal(rep.first_bad, want);
        assert_true(rep.records <= want); /* a chained forgery itself verifies */
        assert_true(rep.reason[0] != '\0');
    }
}

/* ---- what verify calls intact (each case below was "OK" before) ------------------- */

static int verify_dir(const char *dir, struct audit_verify_report *rep)
{
    struct gate_error err = {0};
    int rc = audit_verify(dir, rep, &err);
    fprintf(stderr, "verify: rc %d, %llu records, first_bad %llu: %s%s\n", rc,
            (unsigned long long)rep->records, (unsigned long long)rep->first_bad, rep->reason,
            err.msg);
    for (size_t i = 0; i < rep->n_msgs; i++)
        fprintf(stderr, "  %s: %s\n", rep->msgs[i].warning ? "warning" : "note", rep->msgs[i].text);
    return rc;
}

/* Whether a message of that kind contains needle. */
static bool has_msg(const struct audit_verify_report *rep, bool warning, const char *needle)
{
    for (size_t i = 0; i < rep->n_msgs; i++)
        if (rep->msgs[i].warning == warning && strstr(rep->msgs[i].text, needle)) return true;
    return false;
}

static void expect_tampered(const char *dir, uint64_t first_bad, const char *needle)
{
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(dir, &rep), AUDIT_VERIFY_TAMPERED);
    assert_int_equal(rep.first_bad, first_bad);
    if (!strstr(rep.reason, needle)) fail_msg("reason '%s' lacks '%s'", rep.reason, needle);
}

/* The highest segment number present. */
static uint32_t last_segment(const struct fx *f)
{
    char path[160];
    uint32_t s = 0;
    do
        seg_path(f, ++s, path, sizeof(path));
    while (file_size(path) >= 0);
    return s - 1;
}

/* The seq of a segment's first line. */
static uint64_t first_seq_of(const struct fx *f, uint32_t seg)
{
    char path[160];
    seg_path(f, seg, path, sizeof(path));
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    assert_true(strncmp(s, "{\"seq\":", 7) == 0);
    return strtoull(s + 7, NULL, 10);
}

/* One record per event, in a new log. */
static void write_events(const char *dir, const char *const *events, size_t n)
{
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(dir, &log, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(audit_append(log, events[i], NULL, NULL, &err), 0);
    audit_close(log);
}

static void test_audit_verify_empty_or_deleted_log_is_tampered(void **state)
{
    struct fx *f = *state;
    struct gate_error err = {0};
    struct audit_verify_report rep;
    /* No directory at all: nothing to verify (an I/O error, not a verdict). */
    assert_int_equal(audit_verify(f->dir, &rep, &err), -1);
    assert_int_equal(err.code, GATE_E_IO);
    /* A directory without segments: the log was deleted. */
    assert_int_equal(mkdir(f->dir, 0700), 0);
    expect_tampered(f->dir, 1, "no records in 0 segment");
    /* The only segment emptied. */
    write_records(f->dir, 5, 1, 0);
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    assert_int_equal(truncate(path, 0), 0);
    expect_tampered(f->dir, 1, "no records in 1 segment");
    /* Every segment emptied. */
    remove_log(f);
    write_records(f->dir, 24, 1, 900);
    uint32_t last = last_segment(f);
    assert_true(last >= 4);
    for (uint32_t s = 1; s <= last; s++) {
        seg_path(f, s, path, sizeof(path));
        assert_int_equal(truncate(path, 0), 0);
    }
    expect_tampered(f->dir, 1, "no records");
    /* The first segment deleted: the log starts at segment 2. */
    remove_log(f);
    write_records(f->dir, 24, 1, 900);
    uint64_t second = first_seq_of(f, 2);
    seg_path(f, 1, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    char want[128];
    snprintf(want, sizeof(want),
             "audit-000001.jsonl is missing; audit-000002.jsonl line 1: seq %llu",
             (unsigned long long)second);
    expect_tampered(f->dir, second, want);
}

static void test_audit_verify_log_starts_with_gateway_started(void **state)
{
    struct fx *f = *state;
    static const char *const calls_only[] = {"call.started", "call.finished"};
    write_events(f->dir, calls_only, 2);
    expect_tampered(f->dir, 1,
                    "line 1: seq 1 is 'call.started': a log starts with gateway.started");
    /* What the gateway once wrote before gateway.started is no start either. */
    static const char *const policies_first[] = {"policy.loaded", "gateway.started"};
    remove_log(f);
    write_events(f->dir, policies_first, 2);
    expect_tampered(f->dir, 1, "seq 1 is 'policy.loaded': a log starts with gateway.started");
    /* gateway.started later in the log is every restart's record, not a new log. */
    static const char *const restarts[] = {"gateway.started", "call.started", "gateway.stopped",
                                           "gateway.started"};
    remove_log(f);
    write_events(f->dir, restarts, 4);
    expect_intact(f->dir, 4);
}

static void test_audit_verify_segment_numbers_contiguous(void **state)
{
    struct fx *f = *state;
    char from[160], to[160], want[160];
    /* ~4 records per segment: 24 records give 6 segments. Renaming the newest segment leaves
     * the chain whole: only the numbering shows it. */
    write_records(f->dir, 24, 1, 900);
    uint32_t last = last_segment(f);
    uint64_t first = first_seq_of(f, last);
    seg_path(f, last, from, sizeof(from));
    seg_path(f, last + 1, to, sizeof(to));
    assert_int_equal(rename(from, to), 0);
    snprintf(want, sizeof(want),
             "audit-%06u.jsonl is missing; audit-%06u.jsonl line 1: seq %llu follows on, but "
             "segment numbers must not skip",
             last, last + 1, (unsigned long long)first);
    expect_tampered(f->dir, first, want);
    /* Two missing segments in the middle. */
    remove_log(f);
    write_records(f->dir, 24, 1, 900);
    for (uint32_t s = 3; s <= 4; s++) {
        seg_path(f, s, from, sizeof(from));
        assert_int_equal(unlink(from), 0);
    }
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_TAMPERED);
    assert_non_null(strstr(rep.reason, "audit-000003.jsonl to audit-000004.jsonl are missing"));
    /* A gap before the newest segment, which is empty: nothing follows the gap. */
    remove_log(f);
    write_records(f->dir, 24, 1, 900);
    last = last_segment(f);
    seg_path(f, last + 3, to, sizeof(to));
    spit(to, "", 0);
    snprintf(want, sizeof(want), "audit-%06u.jsonl to audit-%06u.jsonl are missing; no record",
             last + 1, last + 2);
    expect_tampered(f->dir, 25, want);
}

/* An empty segment that the writer would not leave: the chain decides whether records went. */
static void test_audit_verify_warns_about_empty_segments(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 24, 1, 900);
    uint32_t last = last_segment(f);
    char empty[160], moved[160], want[128];
    seg_path(f, last, empty, sizeof(empty));
    seg_path(f, last + 1, moved, sizeof(moved));
    assert_int_equal(rename(empty, moved), 0);
    spit(empty, "", 0);
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_WARNINGS);
    assert_int_equal(rep.records, 24);
    snprintf(want, sizeof(want), "audit-%06u.jsonl holds no records, but later segments", last);
    assert_true(has_msg(&rep, true, want));
    assert_non_null(strstr(rep.reason, want));
    /* The newest segment emptied: records cut off the end, which the chain cannot show. */
    assert_int_equal(truncate(moved, 0), 0);
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_WARNINGS);
    snprintf(want, sizeof(want), "audit-%06u.jsonl holds no records (the newest segment", last + 1);
    assert_true(has_msg(&rep, true, want));
}

/* Bytes of the .torn- side file recovery wrote (0 if none). */
static off_t torn_file_size(const struct fx *f)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    off_t size = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".jsonl.torn-")) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", f->dir, de->d_name);
            size = file_size(path);
        }
    closedir(d);
    return size;
}

/* What a crash can leave after seq 3, and how many bytes of it recovery cuts and keeps. */
static const struct tail_case {
    const char *name;
    const char *bytes;
    size_t len;
    uint64_t torn; /* what verify reports and the .torn- file then holds */
} tail_cases[] = {
#define BYTES(s) s, sizeof(s) - 1
    {"partial line", BYTES("{\"seq\":4,\"ts\":"), 14},
    {"line of an unsynced write", BYTES("{\"seq\":4,\"ts\":\0\0\0\0\0\0\0\0\n"), 23},
    {"two such lines and a partial one", BYTES("{\"s\0\0\n\0\0\0\n{\"seq\":"), 17},
    {"preallocated zeros", BYTES("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), 0},
    {"a torn write: a zero-filled hole, then bytes, then zeros",
     BYTES("\0\0\0\0{\"seq\":5,\"ts\":\"2026\"}\n\0\0\0\0\0\0"), 26},
    {"a partial line, then zeros", BYTES("{\"seq\":4\0\0\0\0\0\0\0\0"), 8},
#undef BYTES
};

/* A torn tail is a warning with its size, never "intact"; the size is exactly what the next
 * audit_open cuts off and keeps. */
static void test_audit_verify_reports_torn_tail(void **state)
{
    struct fx *f = *state;
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    for (size_t i = 0; i < sizeof(tail_cases) / sizeof(tail_cases[0]); i++) {
        const struct tail_case *tc = &tail_cases[i];
        fprintf(stderr, "tail case '%s'\n", tc->name);
        remove_log(f);
        write_records(f->dir, 3, 1, 0);
        FILE *fp = fopen(path, "ae");
        assert_non_null(fp);
        assert_int_equal(fwrite(tc->bytes, 1, tc->len, fp), tc->len);
        fclose(fp);
        struct audit_verify_report rep;
        int rc = verify_dir(f->dir, &rep);
        assert_int_equal(rep.records, 3);
        assert_int_equal(rep.torn_bytes, tc->torn);
        if (tc->torn == 0) {
            assert_int_equal(rc, AUDIT_VERIFY_INTACT);
        } else {
            assert_int_equal(rc, AUDIT_VERIFY_WARNINGS);
            char want[80];
            snprintf(want, sizeof(want), "audit-000001.jsonl: torn tail: %llu bytes",
                     (unsigned long long)tc->torn);
            assert_true(has_msg(&rep, true, want));
        }
        write_records(f->dir, 1, 4, 0);
        assert_int_equal(torn_file_size(f), (off_t)tc->torn);
        assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_INTACT);
        assert_int_equal(rep.records, 4);
        assert_int_equal(rep.n_msgs, tc->torn ? 1 : 0); /* the side file, as a note */
        if (tc->torn) assert_true(has_msg(&rep, false, "that crash recovery cut off"));
    }
    /* A line with NUL bytes before complete records is damage, not a torn write. */
    remove_log(f);
    write_records(f->dir, 4, 1, 0);
    size_t len = 0;
    autofree char *s = slurp(path, &len);
    char *fourth = last_line(s, len);
    fourth[-2] = '\0'; /* inside seq 3's line, which keeps its '\n' */
    spit(path, s, len);
    expect_tampered(f->dir, 3, "NUL bytes in a line before complete records");
    /* In a closed segment, a partial last line is damage too. */
    remove_log(f);
    write_records(f->dir, 24, 1, 900);
    seg_path(f, 2, path, sizeof(path));
    assert_int_equal(truncate(path, file_size(path) - 1), 0);
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_TAMPERED);
    assert_non_null(strstr(rep.reason, "incomplete line in a closed segment"));
}

/* A crash after records leaves preallocated zeros: no warning. */
static void test_audit_verify_live_segment_zeros_are_not_torn(void **state)
{
    struct fx *f = *state;
    crash_after_records(f->dir, 3, 1, false);
    char path[160];
    seg_path(f, 1, path, sizeof(path));
    assert_true((size_t)file_size(path) > records_then_zeros(path));
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_INTACT);
    assert_int_equal(rep.records, 3);
    assert_int_equal(rep.n_msgs, 0);
}

static void test_audit_verify_names_unknown_files(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 5, 1, 0);
    static const char *const names[] = {"notes.txt", "audit-1.jsonl", "audit-000001.jsonl.bak",
                                        "audit-000002.jsonl.torn-0-1700000000000", "evil\nname"};
    char path[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
        spit(path, "x", 1);
    }
    snprintf(path, sizeof(path), "%s/old", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    struct audit_verify_report rep;
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_WARNINGS);
    assert_int_equal(rep.records, 5);
    assert_int_equal(rep.n_warnings, 6);
    assert_true(has_msg(&rep, true, "notes.txt is not an audit segment (unknown file"));
    assert_true(has_msg(&rep, true, "audit-1.jsonl is not an audit segment"));
    assert_true(has_msg(&rep, true, "audit-000001.jsonl.bak is not an audit segment"));
    assert_true(has_msg(&rep, true, "old is not an audit segment (unknown entry"));
    assert_true(has_msg(&rep, true, "evil\\x0aname is not an audit segment"));
    assert_true(has_msg(&rep, true, "names audit-000002.jsonl, which is not there"));
    assert_true(rep.reason[0] != '\0');
    /* More than fit in the report: all counted. */
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof(path), "%s/junk-%02d", f->dir, i);
        spit(path, "x", 1);
    }
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_WARNINGS);
    assert_int_equal(rep.n_warnings, 26);
    assert_int_equal(rep.n_msgs, AUDIT_VERIFY_MAX_MSGS);
    assert_int_equal(rep.n_dropped, 26 - AUDIT_VERIFY_MAX_MSGS);
    /* Unknown files do not hide tampering. */
    seg_path(f, 1, path, sizeof(path));
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(verify_dir(f->dir, &rep), AUDIT_VERIFY_TAMPERED);
}

/* ---- rotation -------------------------------------------------------------------- */

static void test_audit_rotation_segments_verify(void **state)
{
    struct fx *f = *state;
    write_records(f->dir, 60, 1, 2000);
    write_records(f->dir, 20, 61, 2000); /* reopen continues in the last segment */
    char path[160];
    seg_path(f, 10, path, sizeof(path));
    assert_true(file_size(path) > 0);
    seg_path(f, 1, path, sizeof(path));
    assert_true(file_size(path) >= 2000);
    assert_true(file_size(path) < 4000);
    expect_intact(f->dir, 80);
}

/* ---- concurrency ------------------------------------------------------------------ */

#define THREADS 8
#define PER_THREAD 250

struct worker {
    struct audit_log *log;
    uint64_t seqs[PER_THREAD];
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    json_t *fl = fields_for(0);
    for (int i = 0; i < PER_THREAD; i++) {
        struct gate_error err = {0};
        if (audit_append(w->log, "call.start", fl, &w->seqs[i], &err) < 0) w->failures++;
    }
    json_decref(fl);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_audit_concurrent_appends_unique_contiguous(void **state)
{
    struct fx *f = *state;
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(f->dir, &log, &err), 0);
    audit_set_segment_limit(log, 64 * 1024); /* rotate under load too */
    assert_int_equal(audit_append(log, AUDIT_FIRST_EVENT, NULL, NULL, &err), 0);
    static struct worker w[THREADS];
    pthread_t t[THREADS];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.log = log};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    uint64_t syncs = audit_syncs(log);
    audit_close(log);

    static uint64_t all[THREADS * PER_THREAD];
    size_t n = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].failures, 0);
        for (int j = 0; j < PER_THREAD; j++)
            all[n++] = w[i].seqs[j];
    }
    qsort(all, n, sizeof(all[0]), cmp_u64);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(all[i], i + 2); /* after the start record */
    expect_intact(f->dir, n + 1);
    /* Informational only (no wall-clock thresholds in tests). */
    fprintf(stderr,
            "group commit: %zu durable appends from %d threads in %.3f s = %.0f appends/s, "
            "%llu fdatasyncs (%.1f records per sync)\n",
            n, THREADS, secs, (double)n / secs, (unsigned long long)syncs,
            (double)n / (double)(syncs ? syncs : 1));
}

/* ---- fail closed ----------------------------------------------------------------- */

static const struct fault_case {
    const char *name;
    enum audit_fault fault;
} fault_cases[] = {
    {"write fails", AUDIT_FAULT_WRITE},
    {"short write", AUDIT_FAULT_SHORT_WRITE},
    {"fdatasync fails", AUDIT_FAULT_SYNC},
};

static void test_audit_fails_closed_on_write_or_sync_error(void **state)
{
    struct fx *f = *state;
    uint64_t next = 1;
    size_t ncases = sizeof(fault_cases) / sizeof(fault_cases[0]);
    for (size_t k = 0; k < 2 * ncases; k++) { /* direct I/O, then through the page cache */
        size_t c = k % ncases;
        struct audit_log *log = NULL;
        struct gate_error err = {0};
        assert_int_equal(audit_open(f->dir, &log, &err), 0);
        if (k >= ncases) assert_int_equal(audit_test_buffered_io(log), 0);
        char why[256];
        assert_true(audit_healthy(log, why, sizeof(why)));
        assert_int_equal(audit_append(log, event_for(next), NULL, NULL, &err), 0);
        next++;
        audit_test_fail_next(log, fault_cases[c].fault);
        uint64_t seq = 0;
        assert_int_equal(audit_append(log, "lost", NULL, &seq, &err), -1);
        assert_int_equal(err.code, GATE_E_AUDIT_UNAVAILABLE);
        assert_false(audit_healthy(log, why, sizeof(why)));
        fprintf(stderr, "fault '%s' (%s): %s\n", fault_cases[c].name,
                k >= ncases ? "buffered" : "direct", why);
        assert_true(why[0] != '\0');
        /* Stays failed: later appends are refused too, and counted. */
        err = (struct gate_error){0};
        assert_int_equal(audit_append(log, "after", NULL, NULL, &err), -1);
        assert_int_equal(err.code, GATE_E_AUDIT_UNAVAILABLE);
        assert_int_equal(audit_write_failures(log), 2);
        assert_int_equal(audit_last_seq(log), next - 1);
        audit_close(log);
        /* A failed sync may still have put the record in the file, and a short write part
         * of it (a torn tail, which the next open cuts): the chain stays valid. */
        struct audit_verify_report rep;
        int rc = audit_verify(f->dir, &rep, &err);
        fprintf(stderr, "  verify after the fault: rc %d, %llu records, torn tail %llu bytes\n", rc,
                (unsigned long long)rep.records, (unsigned long long)rep.torn_bytes);
        assert_true(rc == AUDIT_VERIFY_INTACT ||
                    (rc == AUDIT_VERIFY_WARNINGS && rep.torn_bytes > 0 && rep.n_warnings == 1));
        next = rep.records + 1;
    }
    write_records(f->dir, 1, next, 0);
    expect_intact(f->dir, next);
}

/* A file system (or device alignment) that refuses an O_DIRECT write is not a failure: the
 * batch is written through the page cache instead, and so is everything after it. */
static void test_audit_direct_io_refused_falls_back_to_page_cache(void **state)
{
    struct fx *f = *state;
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(f->dir, &log, &err), 0);
    assert_int_equal(audit_append(log, AUDIT_FIRST_EVENT, NULL, NULL, &err), 0);
    audit_test_fail_next(log, AUDIT_FAULT_DIRECT_REFUSED);
    uint64_t seq = 0;
    assert_int_equal(audit_append(log, "refused", NULL, &seq, &err), 0);
    assert_int_equal(seq, 2);
    assert_true(audit_healthy(log, NULL, 0));
    audit_test_fail_next(log, AUDIT_FAULT_DIRECT_REFUSED); /* buffered now: no effect */
    assert_int_equal(audit_append(log, "after", NULL, NULL, &err), 0);
    assert_int_equal(audit_write_failures(log), 0);
    audit_close(log);
    expect_intact(f->dir, 3);
}

/* A real ENOSPC from a tiny tmpfs, in a child with its own mount namespace. */
static int enospc_child(const char *root)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 77;
    if (mount("tmpfs", root, "tmpfs", 0, "size=64k,mode=0700") < 0) return 77;
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/audit", root);
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    if (audit_open(dir, &log, &err) < 0 ||
        audit_append(log, AUDIT_FIRST_EVENT, NULL, NULL, &err) < 0)
        return 10;
    json_t *big = json_pack("{s:s}", "pad", "");
    char pad[4000];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    json_object_set_new(big, "pad", json_string(pad));
    int i = 0, rc = 0;
    for (; i < 100 && (rc = audit_append(log, "fill", big, NULL, &err)) == 0; i++)
        ;
    json_decref(big);
    char why[256];
    int status = 0;
    if (rc == 0 || err.code != GATE_E_AUDIT_UNAVAILABLE)
        status = 11;
    else if (audit_healthy(log, why, sizeof(why)) || !strstr(why, "No space"))
        status = 12;
    else if (audit_append(log, "after", NULL, NULL, &err) == 0)
        status = 13;
    audit_close(log);
    struct audit_verify_report rep;
    if (status == 0 && audit_verify(dir, &rep, &err) != AUDIT_VERIFY_INTACT) status = 14;
    if (status == 0 && rep.records != (uint64_t)i + 1) status = 15;
    umount2(root, MNT_DETACH);
    return status;
}

static void test_audit_fails_closed_on_enospc(void **state)
{
    struct fx *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(enospc_child(f->root));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) skip(); /* no CAP_SYS_ADMIN for a private tmpfs here */
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- refused input ------------------------------------------------------------------ */

static void test_audit_reserved_field_names_refused(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = {"seq", "ts", "mono_ns", "event", "prev", "hash"};
    struct audit_log *log = NULL;
    struct gate_error err = {0};
    assert_int_equal(audit_open(f->dir, &log, &err), 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        json_t *fl = json_pack("{s:s, s:i}", "tool", "echo", names[i], 1);
        err = (struct gate_error){0};
        assert_int_equal(audit_append(log, "x", fl, NULL, &err), -1);
        assert_non_null(strstr(err.msg, names[i]));
        json_decref(fl);
    }
    json_t *arr = json_array();
    assert_int_equal(audit_append(log, "x", arr, NULL, &err), -1);
    json_decref(arr);
    assert_int_equal(audit_append(log, "", NULL, NULL, &err), -1);
    assert_int_equal(audit_last_seq(log), 0);
    assert_true(audit_healthy(log, NULL, 0));
    assert_int_equal(audit_write_failures(log), 0);
    assert_int_equal(audit_append(log, AUDIT_FIRST_EVENT, NULL, NULL, &err), 0);
    assert_int_equal(audit_last_seq(log), 1);
    audit_close(log);
    expect_intact(f->dir, 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_audit_record_layout_and_hash_rule),
        T(test_audit_write_n_records_verifies),
        T(test_audit_no_fields_and_nested_fields),
        T(test_audit_reopen_continues_chain),
        T(test_audit_second_writer_refused),
        T(test_audit_torn_tail_truncated_on_open),
        T(test_audit_live_segment_preallocated_and_cut_on_close),
        T(test_audit_crash_leaves_zeros_that_open_cuts),
        T(test_audit_torn_write_after_zeros_is_cut_at_the_hole),
        T(test_audit_open_refuses_altered_last_record),
        T(test_audit_empty_last_segment_chains_from_previous),
        T(test_audit_open_reads_only_the_tail),
        T(test_audit_tampering_detected_with_first_bad_seq),
        T(test_audit_verify_empty_or_deleted_log_is_tampered),
        T(test_audit_verify_log_starts_with_gateway_started),
        T(test_audit_verify_segment_numbers_contiguous),
        T(test_audit_verify_warns_about_empty_segments),
        T(test_audit_verify_reports_torn_tail),
        T(test_audit_verify_live_segment_zeros_are_not_torn),
        T(test_audit_verify_names_unknown_files),
        T(test_audit_rotation_segments_verify),
        T(test_audit_concurrent_appends_unique_contiguous),
        T(test_audit_fails_closed_on_write_or_sync_error),
        T(test_audit_direct_io_refused_falls_back_to_page_cache),
        T(test_audit_fails_closed_on_enospc),
        T(test_audit_reserved_field_names_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
