/* audit_anchor.c: the node id, and publishing the chain head to a second storage.
 *
 * A thread per gateway waits for the log's durable head to move (every group commit wakes
 * it; it publishes the newest head it finds, so under load heads are coalesced) and writes
 * (node, segment, seq, hash, time) to each target: a row in PostgreSQL's audit_anchors, and/or
 * a JSON line appended and fsync'd to an anchor file. A target that fails is retried every
 * second; appends never wait for it, so a database that is down costs the log nothing but
 * the freshness of its anchors (counted in /metrics, logged when it fails and recovers).
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_anchor.h"

bool audit_node_valid(const char *node)
{
    size_t n = node ? strlen(node) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = node[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int audit_node_id(const char *state_dir, const char *configured, char node[65],
                  struct gate_error *err)
{
    if (configured) {
        if (!audit_node_valid(configured))
            return gate_err(err, GATE_E_CONFIG,
                            "node: '%.80s': 1 to 64 of A-Z a-z 0-9 . _ - expected", configured);
        snprintf(node, 65, "%s", configured);
        return 0;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/node", state_dir);
    autoclose int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        ssize_t n = read(fd, node, 64);
        node[n > 0 ? n : 0] = '\0';
        node[strcspn(node, "\n")] = '\0';
        if (!audit_node_valid(node))
            return gate_err(err, GATE_E_CONFIG, "%s does not hold a node id", path);
        return 0;
    }
    if (errno != ENOENT) return gate_err_errno(err, GATE_E_CONFIG, errno, "open %s", path);
    if (gate_random_hex(node, 8) < 0)
        return gate_err(err, GATE_E_INTERNAL, "no randomness for the node id");
    /* Written once, durably, before any record names it: a gateway keeps its id across
     * restarts, so its anchors form one series. */
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    autoclose int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    char line[80];
    int len = snprintf(line, sizeof(line), "%s\n", node);
    if (out < 0 || write(out, line, (size_t)len) != len || fsync(out) < 0 || rename(tmp, path) < 0)
        return gate_err_errno(err, GATE_E_CONFIG, errno, "write %s", path);
    autoclose int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd);
    return 0;
}

/* ---- targets ----------------------------------------------------------------------- */

PGconn *anchor_db_connect(const struct audit_anchor_target *t, char *why, size_t why_len)
{
    /* A short connect timeout and TCP user timeout: this thread must notice a dead database
     * within seconds, and the gateway's shutdown waits for it. */
    const char *keys[] = {"dbname",           "application_name", "connect_timeout",
                          "tcp_user_timeout", "password",         NULL};
    const char *vals[] = {t->database, "gatehouse-anchor", "2", "5000", t->database_password, NULL};
    if (!t->database_password) keys[4] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c && PQstatus(c) == CONNECTION_OK) return c;
    snprintf(why, why_len, "connect: %s", c ? PQerrorMessage(c) : "out of memory");
    why[strcspn(why, "\n")] = '\0';
    PQfinish(c);
    return NULL;
}

struct target_state {
    const char *what; /* "database" | "file" */
    uint64_t published_seq;
    uint64_t published, failures;
    bool failing;
};

struct audit_anchorer {
    struct audit_log *log;
    char node[65];
    char *database, *password, *file;
    PGconn *conn;
    int fd;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu; /* guards the targets' counters, and the retry wait */
    pthread_cond_t cond;
    struct target_state db, fl;
};

static int publish_db(struct audit_anchorer *a, const struct audit_head *h, char *why, size_t len)
{
    if (a->conn && PQstatus(a->conn) != CONNECTION_OK) {
        PQfinish(a->conn);
        a->conn = NULL;
    }
    struct audit_anchor_target t = {.database = a->database, .database_password = a->password};
    if (!a->conn && !(a->conn = anchor_db_connect(&t, why, len))) return -1;
    char seg[16], seq[24];
    snprintf(seg, sizeof(seg), "%u", h->segment);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)h->seq);
    const char *vals[] = {a->node, seg, seq, h->hash};
    /* First anchor wins: a log that was cut and grew again must not overwrite what was
     * anchored for a seq (audit verify --anchors then finds the difference). */
    PGresult *res = PQexecParams(a->conn,
                                 "INSERT INTO audit_anchors (node, segment, seq, hash)"
                                 " VALUES ($1, $2::int, $3::bigint, $4)"
                                 " ON CONFLICT (node, seq) DO NOTHING",
                                 4, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(why, len, "insert: %s", PQresultErrorMessage(res));
        why[strcspn(why, "\n")] = '\0';
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

static int publish_file(struct audit_anchorer *a, const struct audit_head *h, char *why, size_t len)
{
    /* O_APPEND: every line goes to the end whoever else appends; the file is never rewritten. */
    if (a->fd < 0) {
        a->fd = open(a->file, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (a->fd < 0) {
            snprintf(why, len, "open %s: %s", a->file, strerror(errno));
            return -1;
        }
        /* A crash mid-append leaves a line without its newline: end it, so that the next
         * anchor starts a line of its own (verify skips the torn one with a warning). */
        struct stat st;
        char last = '\n';
        if (fstat(a->fd, &st) == 0 && st.st_size > 0 &&
            pread(a->fd, &last, 1, st.st_size - 1) == 1 && last != '\n' &&
            write(a->fd, "\n", 1) != 1) {
            snprintf(why, len, "append to %s: %s", a->file, strerror(errno));
            close(a->fd);
            a->fd = -1;
            return -1;
        }
    }
    char ts[32], line[320];
    gate_rfc3339(gate_realtime_ms(), ts);
    int n =
        snprintf(line, sizeof(line),
                 "{\"node\":\"%s\",\"segment\":%u,\"seq\":%llu,\"hash\":\"%s\",\"ts\":\"%s\"}\n",
                 a->node, h->segment, (unsigned long long)h->seq, h->hash, ts);
    if (write(a->fd, line, (size_t)n) != n || fsync(a->fd) < 0) {
        snprintf(why, len, "append to %s: %s", a->file, strerror(errno ? errno : EIO));
        close(a->fd); /* reopened on the next try */
        a->fd = -1;
        return -1;
    }
    return 0;
}

/* Publish h to one target unless it has it already; 0 ok, -1 failed (logged on a change). */
static int publish(struct audit_anchorer *a, struct target_state *t, const struct audit_head *h)
{
    if (t->published_seq == h->seq) return 0;
    char why[600] = "";
    errno = 0;
    int rc =
        t == &a->db ? publish_db(a, h, why, sizeof(why)) : publish_file(a, h, why, sizeof(why));
    pthread_mutex_lock(&a->mu);
    bool was_failing = t->failing;
    t->failing = rc < 0;
    if (rc == 0) {
        t->published_seq = h->seq;
        t->published++;
    } else {
        t->failures++;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc < 0 && !was_failing)
        gate_log("warn", "audit.anchor_failed", "anchor to the %s: %s; retrying every second",
                 t->what, why);
    else if (rc == 0 && was_failing)
        gate_log("info", "audit.anchor_recovered", "anchoring to the %s again (seq %llu)", t->what,
                 (unsigned long long)h->seq);
    return rc;
}

/* To every target (only_healthy: not to one whose last attempt failed). */
static int publish_all(struct audit_anchorer *a, const struct audit_head *h, bool only_healthy)
{
    int rc = 0;
    if (a->database && !(only_healthy && a->db.failing) && publish(a, &a->db, h) < 0) rc = -1;
    if (a->file && !(only_healthy && a->fl.failing) && publish(a, &a->fl, h) < 0) rc = -1;
    return rc;
}

static void *anchor_main(void *arg)
{
    struct audit_anchorer *a = arg;
    while (!atomic_load(&a->stop)) {
        struct audit_head h;
        audit_head(a->log, &h);
        if (h.seq > 0 && publish_all(a, &h, false) < 0) {
            /* Retry in a second, not at every commit: a dead database is not hammered. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_mutex_lock(&a->mu);
            if (!atomic_load(&a->stop)) pthread_cond_timedwait(&a->cond, &a->mu, &ts);
            pthread_mutex_unlock(&a->mu);
            continue;
        }
        audit_wait_head(a->log, h.seq, 1000, &a->stop);
    }
    return NULL;
}

static void anchorer_free(struct audit_anchorer *a)
{
    if (a->conn) PQfinish(a->conn);
    if (a->fd >= 0) close(a->fd);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->mu);
    free(a->database);
    free(a->password);
    free(a->file);
    free(a);
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *oom = true;
    return d;
}

int audit_anchor_start(struct audit_log *log, const char *node,
                       const struct audit_anchor_target *target, struct audit_anchorer **out,
                       struct gate_error *err)
{
    *out = NULL;
    if (!target->database && !target->file) return 0;
    struct audit_anchorer *a = calloc(1, sizeof(*a));
    if (!a) return gate_err(err, GATE_E_NOMEM, "audit anchor: out of memory");
    a->log = log;
    a->fd = -1;
    a->db.what = "database";
    a->fl.what = "file";
    snprintf(a->node, sizeof(a->node), "%s", node);
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cond, &ca);
    pthread_condattr_destroy(&ca);
    bool oom = false;
    a->database = dup_or_null(target->database, &oom);
    a->password = dup_or_null(target->database_password, &oom);
    a->file = dup_or_null(target->file, &oom);
    if (oom) {
        anchorer_free(a);
        return gate_err(err, GATE_E_NOMEM, "audit anchor: out of memory");
    }
    int rc = pthread_create(&a->thread, NULL, anchor_main, a);
    if (rc != 0) {
        anchorer_free(a);
        return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the audit anchor thread");
    }
    gate_log("info", "audit.anchoring", "node %s: anchoring the audit chain head to%s%s%s%s",
             a->node, a->database ? " the database" : "", a->database && a->file ? " and" : "",
             a->file ? " " : "", a->file ? a->file : "");
    *out = a;
    return 0;
}

void audit_anchor_stop(struct audit_anchorer *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    atomic_store(&a->stop, true);
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
    audit_wake(a->log);
    pthread_join(a->thread, NULL);
    /* The last records (gateway.stopped) are anchored too, by the targets that work: one that
     * is failing is not waited for (connect timeouts) on the way out. */
    struct audit_head h;
    audit_head(a->log, &h);
    if (h.seq > 0) publish_all(a, &h, true);
    anchorer_free(a);
}

void audit_anchor_metrics(struct audit_anchorer *a, struct gate_buf *out)
{
    if (!a) return;
    gate_buf_printf(out,
                    "# HELP gatehouse_audit_anchors_published_total Chain heads published.\n"
                    "# TYPE gatehouse_audit_anchors_published_total counter\n"
                    "# HELP gatehouse_audit_anchor_failures_total Failed attempts to publish a "
                    "chain head (retried every second).\n"
                    "# TYPE gatehouse_audit_anchor_failures_total counter\n"
                    "# HELP gatehouse_audit_anchored_seq Seq of the newest published head.\n"
                    "# TYPE gatehouse_audit_anchored_seq gauge\n");
    pthread_mutex_lock(&a->mu);
    const struct target_state *ts[] = {a->database ? &a->db : NULL, a->file ? &a->fl : NULL};
    for (int i = 0; i < 2; i++) {
        if (!ts[i]) continue;
        gate_buf_printf(out,
                        "gatehouse_audit_anchors_published_total{target=\"%s\"} %llu\n"
                        "gatehouse_audit_anchor_failures_total{target=\"%s\"} %llu\n"
                        "gatehouse_audit_anchored_seq{target=\"%s\"} %llu\n",
                        ts[i]->what, (unsigned long long)ts[i]->published, ts[i]->what,
                        (unsigned long long)ts[i]->failures, ts[i]->what,
                        (unsigned long long)ts[i]->published_seq);
    }
    pthread_mutex_unlock(&a->mu);
}
