/* audit_anchor_verify.c: checking a log against the heads its gateway anchored elsewhere.
 *
 * The hash chain binds every record to the ones before it, so a log that still holds an
 * anchored head (same seq, same hash) also holds everything up to it unchanged. What the
 * chain alone cannot show, the anchors do: a log that ends before an anchored seq lost its
 * tail; a log whose record at an anchored seq has another hash was rewritten from some point
 * after the last anchor that still matches. A node without any anchor is refused too: a log
 * replaced wholesale under a new node id must not pass as anchored.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_anchor.h"

struct anchor {
    uint64_t seq;
    uint32_t segment;
    char hash[65];
    char ts[40];
};

struct anchor_check {
    struct anchor *v;
    size_t n, cap;
    size_t next;               /* the first anchor not yet compared (v sorted by seq) */
    const struct anchor *bad;  /* the first anchor whose seq holds another hash */
    const struct anchor *good; /* the last anchor that matched before it */
    char node[65];             /* the node named by the newest record walked */
    size_t skipped;            /* lines of the anchor file that are not anchors */
};

static int add_anchor(struct anchor_check *c, uint64_t seq, uint32_t segment, const char *hash,
                      const char *ts, struct gate_error *err)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        struct anchor *v = realloc(c->v, cap * sizeof(*v));
        if (!v) return gate_err(err, GATE_E_NOMEM, "audit verify: out of memory");
        c->v = v;
        c->cap = cap;
    }
    struct anchor *a = &c->v[c->n++];
    a->seq = seq;
    a->segment = segment;
    snprintf(a->hash, sizeof(a->hash), "%s", hash);
    snprintf(a->ts, sizeof(a->ts), "%s", ts);
    return 0;
}

/* One JSON line per anchor; a last line without its newline is an append that a crash cut
 * short, never acknowledged: skipped. */
static int load_file(const char *path, const char *node, struct anchor_check *c,
                     struct gate_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f) return gate_err_errno(err, GATE_E_IO, errno, "open anchor file %s", path);
    autofree char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') break;
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        const char *n = json_string_value(json_object_get(j, "node"));
        const char *h = json_string_value(json_object_get(j, "hash"));
        const char *ts = json_string_value(json_object_get(j, "ts"));
        json_int_t seq = json_integer_value(json_object_get(j, "seq"));
        json_int_t seg = json_integer_value(json_object_get(j, "segment"));
        if (!n || !h || strlen(h) != 64 || seq < 1)
            c->skipped++; /* a torn append, ended by the next start (audit_anchor.c) */
        else if (strcmp(n, node) == 0)
            rc = add_anchor(c, (uint64_t)seq, (uint32_t)seg, h, ts ? ts : "", err);
        json_decref(j);
    }
    fclose(f);
    return rc;
}

static int load_db(const struct audit_anchor_target *t, const char *node, struct anchor_check *c,
                   struct gate_error *err)
{
    char why[600];
    PGconn *conn = anchor_db_connect(t, why, sizeof(why));
    if (!conn) return gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "anchors: %s", why);
    const char *vals[] = {node};
    PGresult *res = PQexecParams(conn,
                                 "SELECT seq, segment, hash, anchored_at::text FROM audit_anchors"
                                 " WHERE node = $1 ORDER BY seq",
                                 1, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
        why[strcspn(why, "\n")] = '\0';
        rc = gate_err(err, GATE_E_IO, "anchors: read audit_anchors: %s", why);
    }
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
        rc = add_anchor(c, strtoull(PQgetvalue(res, i, 0), NULL, 10),
                        (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10), PQgetvalue(res, i, 2),
                        PQgetvalue(res, i, 3), err);
    PQclear(res);
    PQfinish(conn);
    return rc;
}

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct anchor *)a)->seq, y = ((const struct anchor *)b)->seq;
    return x < y ? -1 : x > y;
}

static void note_node(void *ctx, const struct record_info *info, uint32_t segment)
{
    (void)segment;
    struct anchor_check *c = ctx;
    if (info->node[0]) memcpy(c->node, info->node, sizeof(c->node));
}

static void compare(void *ctx, const struct record_info *info, uint32_t segment)
{
    (void)segment;
    struct anchor_check *c = ctx;
    for (; c->next < c->n && c->v[c->next].seq <= info->seq; c->next++) {
        const struct anchor *a = &c->v[c->next];
        if (a->seq != info->seq || c->bad) continue;
        if (memcmp(a->hash, info->hash, 64) == 0)
            c->good = a;
        else
            c->bad = a;
    }
}

static int mismatch(struct audit_verify_report *rep, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int mismatch(struct audit_verify_report *rep, uint64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
    va_end(ap);
    rep->first_bad = seq;
    return AUDIT_VERIFY_ANCHOR_MISMATCH;
}

/* The verdict once the walk compared every record it could. */
static int judge(const struct anchor_check *c, const char *source, int rc,
                 struct audit_verify_report *rep)
{
    rep->anchors = c->n;
    uint64_t last = rep->records; /* seqs are contiguous from 1 in a chain that verified */
    if (c->n == 0)
        return mismatch(rep, 0,
                        "no anchor of node %s in %s: the log was never anchored there, or it was "
                        "replaced (a log that names another node)",
                        c->node, source);
    if (c->bad) {
        const struct anchor *b = c->bad;
        return mismatch(rep, b->seq,
                        "seq %llu does not hold the head anchored at %s (segment %u, hash "
                        "%.16s...): the log was rewritten after seq %llu%s",
                        (unsigned long long)b->seq, b->ts, b->segment, b->hash,
                        (unsigned long long)(c->good ? c->good->seq : 0),
                        c->good ? " (the last anchored head that matches)" : "");
    }
    const struct anchor *top = &c->v[c->n - 1];
    if (top->seq > last)
        return mismatch(rep, last + 1,
                        "the log ends at seq %llu, but seq %llu was anchored at %s (segment %u): "
                        "records %llu to %llu, at least, were cut off",
                        (unsigned long long)last, (unsigned long long)top->seq, top->ts,
                        top->segment, (unsigned long long)(last + 1), (unsigned long long)top->seq);
    return rc;
}

int audit_verify_anchored(const char *dir, const struct audit_anchor_target *target,
                          const char *node, struct audit_verify_report *report,
                          struct gate_error *err)
{
    struct anchor_check c = {0};
    int rc = 0;
    if (node) {
        snprintf(c.node, sizeof(c.node), "%s", node);
    } else {
        rc = audit_verify_walk(dir, note_node, &c, report, err);
        if (rc < 0 || rc == AUDIT_VERIFY_TAMPERED) return rc;
        if (!c.node[0])
            return mismatch(report, 0,
                            "no record names a node (a log written before anchoring existed): "
                            "give --node");
    }
    const char *source = target->database ? "the database" : target->file;
    rc = target->database ? load_db(target, c.node, &c, err)
                          : load_file(target->file, c.node, &c, err);
    if (rc == 0) {
        if (c.n) qsort(c.v, c.n, sizeof(*c.v), by_seq);
        rc = audit_verify_walk(dir, compare, &c, report, err);
        if (rc >= 0 && rc != AUDIT_VERIFY_TAMPERED) rc = judge(&c, source, rc, report);
        if (c.skipped && (rc == AUDIT_VERIFY_INTACT || rc == AUDIT_VERIFY_WARNINGS)) {
            report->n_warnings++;
            if (report->n_msgs < AUDIT_VERIFY_MAX_MSGS) {
                struct audit_verify_msg *m = &report->msgs[report->n_msgs++];
                m->warning = true;
                snprintf(m->text, sizeof(m->text),
                         "%s: %zu line(s) that are not anchors (a torn append after a crash, or "
                         "damage), skipped",
                         source, c.skipped);
                snprintf(report->reason, sizeof(report->reason), "%.*s",
                         (int)sizeof(report->reason) - 1, m->text);
            } else {
                report->n_dropped++;
            }
            rc = AUDIT_VERIFY_WARNINGS;
        }
    }
    snprintf(report->node, sizeof(report->node), "%s", c.node);
    free(c.v);
    return rc;
}
