/* test_approval.c: the approval module: webhook signatures, config parsing, the store's
 * compare-and-set transitions, decisions, and what a restart does to each state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "approval.h"
/* White-box: the store interface and URL parsing are internal to the module. */
#include "../../approval/src/approval_internal.h"

#define TOKEN "3f9c0c6b5e2d4a71aa"
#define AUTH "Bearer " TOKEN

/* ---- signatures ------------------------------------------------------------------------ */

/* The vector was computed once, independently of this code, with Python:
 *   key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
 *   base64.b64encode(hmac.new(key, b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}',
 *                             hashlib.sha256).digest())
 * (it is also the example in the Standard Webhooks specification). */
static void test_signature_known_vector(void **state)
{
    (void)state;
    char sig[80];
    const char *body = "{\"test\": 2432232314}";
    struct gate_error err = {0};
    assert_int_equal(approval_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                           "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body,
                                           strlen(body), sig, sizeof(sig), &err),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* One changed byte of the body changes the signature. */
    assert_int_equal(approval_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                           "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                           "{\"test\": 2432232315}", strlen(body), sig, sizeof(sig),
                                           &err),
                     0);
    assert_string_not_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void test_signature_rejects_bad_secret(void **state)
{
    (void)state;
    char sig[80];
    struct gate_error err = {0};
    static const char *bad[] = {"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not*base64",
                                "whsec_abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(approval_webhook_sign(bad[i], "id", "1", "x", 1, sig, sizeof(sig), &err),
                         -1);
}

static void test_url_parse_refuses_what_could_inject(void **state)
{
    (void)state;
    struct approval_url u;
    assert_int_equal(approval_url_parse("http://127.0.0.1:9000/hook?x=1", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "9000");
    assert_string_equal(u.path, "/hook?x=1");
    assert_false(u.tls);
    assert_int_equal(approval_url_parse("http://example.org", &u), 0);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.path, "/");
    assert_int_equal(approval_url_parse("https://approvals.example.org", &u), 0);
    assert_string_equal(u.host, "approvals.example.org");
    assert_string_equal(u.port, "443");
    assert_string_equal(u.path, "/");
    assert_true(u.tls);
    assert_int_equal(approval_url_parse("https://10.0.0.7:8443/h", &u), 0);
    assert_string_equal(u.port, "8443");
    static const char *bad[] = {
        "https://",
        "https://x:0/",
        "httpS://x/",
        "ftp://x/",
        "http://",
        "http://:80/",
        "http://x:0/",
        "http://x:65536/",
        "http://x:8a/",
        "http://x/a b",
        "http://x/a\r\nX-Evil: 1",
        "http://x/#frag",
        "http://x\r\nA: b/",
        "http://[::1]:80/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (approval_url_parse(bad[i], &u) == 0) fail_msg("accepted %s", bad[i]);
}

/* ---- config ------------------------------------------------------------------------------ */

static int parse_cfg(const char *yaml, struct approval_config *cfg, struct gate_error *err)
{
    struct ynode *root = NULL;
    if (ynode_load_buf("cfg.yaml", yaml, strlen(yaml), &root, err) < 0) return -2;
    int rc = approval_config_parse(ynode_get(root, "approval"), cfg, err);
    ynode_free(root);
    return rc;
}

static void test_config_parses_every_key(void **state)
{
    (void)state;
    struct approval_config cfg;
    struct gate_error err = {0};
    setenv("TEST_APPROVAL_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    /* approvers are identities (agents.h): skipped here. */
    assert_int_equal(parse_cfg("approval:\n"
                               "  webhook_url: https://approvals.example.org/hook\n"
                               "  webhook_secret_env: TEST_APPROVAL_SECRET\n"
                               "  webhook_format: slack\n"
                               "  public_url: https://gate.example.org/\n"
                               "  approvers:\n"
                               "    alice: " TOKEN "\n"
                               "    bob: 0123456789abcdef0123\n",
                               &cfg, &err),
                     0);
    assert_string_equal(cfg.webhook_url, "https://approvals.example.org/hook");
    assert_string_equal(cfg.webhook_secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_int_equal(cfg.webhook_format, APPROVAL_FORMAT_SLACK);
    assert_string_equal(cfg.public_url, "https://gate.example.org"); /* no trailing slash */
    approval_config_free(&cfg);
    assert_int_equal(approval_config_parse(NULL, &cfg, &err), 0); /* no section: defaults */
    assert_null(cfg.webhook_url);
    approval_config_free(&cfg);
}

static void test_config_errors_name_line_and_column(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"approval:\n  webhook_ur: http://x/\n", "2:3: unknown key 'approval.webhook_ur'"},
        {"approval:\n  webhook_ca_file: /nonexistent/ca.pem\n",
         "2:20: 'approval.webhook_ca_file': TLS: cannot load CA file /nonexistent/ca.pem"},
        {"approval:\n  webhook_url: ftp://x/h\n",
         "2:16: 'approval.webhook_url' must be an https:// or http://"},
        {"approval:\n  webhook_url: http://x/h\n", "needs a signing secret"},
        {"approval:\n  public_url: ftp://gate/\n",
         "2:15: 'approval.public_url' must be an https:// or http://host[:port] URL"},
        {"approval:\n  webhook_format: teams\n",
         "2:19: 'approval.webhook_format' must be standard, slack or discord"},
        {"approval:\n  webhook_secret: sekrit\n", "2:19: 'approval.webhook_secret' must be"},
        {"approval:\n  webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
         "  webhook_secret_env: X\n",
         "3:23: give either"},
        {"approval:\n  webhook_secret_env: TEST_APPROVAL_UNSET_VAR\n", "is not set"},
        {"approval: 3\n", "1:11: 'approval' must be a mapping"},
    };
    unsetenv("TEST_APPROVAL_UNSET_VAR");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct approval_config cfg;
        struct gate_error err = {0};
        assert_int_equal(parse_cfg(cases[i].yaml, &cfg, &err), -1);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err.msg, cases[i].want);
        assert_int_equal(err.code, GATE_E_CONFIG);
    }
}

/* ---- helpers for store and engine tests ---------------------------------------------------- */

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/test-approval-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* How many audit records with this event are in dir/audit. */
static int count_events(const char *dir, const char *event)
{
    char path[512], needle[128];
    snprintf(path, sizeof(path), "%s/audit", dir);
    snprintf(needle, sizeof(needle), "\"event\":\"%s\"", event);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".jsonl")) continue;
        char file[1024];
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        char *text = NULL;
        size_t len = 0;
        if (gate_read_file(file, 64 << 20, &text, &len, NULL) < 0) continue;
        for (char *p = text; (p = strstr(p, needle)); p++)
            n++;
        free(text);
    }
    closedir(d);
    return n;
}

static void fill_row(struct approval_row *r, const char *id, const char *token_sha)
{
    memset(r, 0, sizeof(*r));
    r->call_id = (char *)id;
    r->tool = "ledger";
    r->policy_sha256 = "p0";
    r->args_json = "{\"amount\":1}";
    r->args_sha256 = "a0";
    r->blast_radius = "high";
    r->state = ST_PENDING;
    r->token_sha256 = (char *)token_sha;
    r->created_ms = (int64_t)gate_realtime_ms();
    r->expires_ms = r->created_ms + 3600000;
}

static int failing_hook(void *ctx, struct gate_error *err)
{
    (void)ctx;
    return gate_err(err, GATE_E_AUDIT_UNAVAILABLE, "audit down");
}

static int counting_hook(void *ctx, struct gate_error *err)
{
    (void)err;
    (*(int *)ctx)++;
    return 0;
}

/* ---- the store ----------------------------------------------------------------------------- */

static void test_store_cas_transitions(void **state)
{
    (void)state;
    char *dir = temp_dir();
    const struct approval_store_ops *ops = &approval_store_sqlite;
    void *h = NULL;
    struct gate_error err = {0};
    struct approval_row r, got;
    int hooks = 0;
    assert_int_equal(ops->open(dir, NULL, &h, &err), 0);
    fill_row(&r, "c_1", "t1");
    assert_int_equal(ops->insert_held(h, &r, 0, counting_hook, &hooks, &err), 1);
    assert_int_equal(ops->insert_held(h, &r, 0, NULL, NULL, &err), -1); /* same id twice */
    /* A failing hook rolls the transition back. */
    assert_int_equal(
        ops->cas_state(h, "c_1", ST_PENDING, ST_APPROVED, NULL, failing_hook, NULL, &err), -1);
    assert_int_equal(ops->get(h, "c_1", &got, &err), 1);
    assert_string_equal(got.state, ST_PENDING);
    approval_row_clear(&got);
    /* Exactly one of two identical compare-and-sets wins. */
    struct store_update up = {.decided_by = "alice", .decided_ms = 5};
    assert_int_equal(
        ops->cas_state(h, "c_1", ST_PENDING, ST_APPROVED, &up, counting_hook, &hooks, &err), 1);
    assert_int_equal(
        ops->cas_state(h, "c_1", ST_PENDING, ST_DENIED, &up, counting_hook, &hooks, &err), 0);
    assert_int_equal(hooks, 2); /* insert + the winning CAS; the loser ran no hook */
    assert_int_equal(ops->get(h, "c_1", &got, &err), 1);
    assert_string_equal(got.state, ST_APPROVED);
    assert_string_equal(got.decided_by, "alice");
    assert_int_equal(got.decided_ms, 5);
    approval_row_clear(&got);
    assert_int_equal(ops->get(h, "c_nope", &got, &err), 0);
    /* Token lookup, attempts, delivered-once. */
    char id[40];
    assert_int_equal(ops->find_by_token(h, "t1", id, &err), 1);
    assert_string_equal(id, "c_1");
    assert_int_equal(ops->find_by_token(h, "t2", id, &err), 0);
    assert_int_equal(ops->record_attempt(h, "c_1", 1, 10, 503, "HTTP 503", &err), 0);
    assert_int_equal(ops->record_attempt(h, "c_1", 2, 20, 200, NULL, &err), 0);
    assert_int_equal(ops->mark_delivered(h, "c_1", NULL, NULL, &err), 1);
    assert_int_equal(ops->mark_delivered(h, "c_1", NULL, NULL, &err), 0);
    assert_int_equal(ops->get(h, "c_1", &got, &err), 1);
    assert_int_equal(got.webhook_attempts, 2);
    assert_int_equal(got.webhook_delivered, 1);
    approval_row_clear(&got);
    /* Listing by state, and by expiry. */
    fill_row(&r, "c_2", NULL);
    r.expires_ms = 1000;
    assert_int_equal(ops->insert_held(h, &r, 0, NULL, NULL, &err), 1);
    struct approval_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(ops->list_by_state(h, ST_PENDING, 0, NULL, &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].call_id, "c_2");
    approval_rows_free(rows, n);
    assert_int_equal(ops->list_by_state(h, NULL, 2000, NULL, &rows, &n, &err), 0);
    assert_int_equal(n, 1); /* only c_2 expires before 2000 */
    approval_rows_free(rows, n);
    ops->close(h);
    /* Durable: a new connection sees the same state. */
    assert_int_equal(ops->open(dir, NULL, &h, &err), 0);
    assert_int_equal(ops->get(h, "c_1", &got, &err), 1);
    assert_string_equal(got.state, ST_APPROVED);
    approval_row_clear(&got);
    ops->close(h);
    remove_tree(dir);
    free(dir);
}

/* ---- the engine ------------------------------------------------------------------------------ */

static atomic_int runs;

static int fake_run(void *ctx, const struct approval_call *c, json_t **result,
                    struct gate_error *err)
{
    (void)ctx, (void)err;
    atomic_fetch_add(&runs, 1);
    *result = json_pack("{s:s,s:s,s:s,s:i}", "call_id", c->call_id, "tool", c->tool, "status",
                        "succeeded", "exit_code", 0);
    return 0;
}

/* The on_change hook: wakes status_of's waits. */
static pthread_mutex_t change_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static void fake_changed(void *ctx, const char *call_id)
{
    (void)ctx, (void)call_id;
    pthread_mutex_lock(&change_lock);
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&change_lock);
}

struct env {
    char *webhook_url; /* NULL: none */
    char *dir;
    struct audit_log *audit;
    struct approval *a;
    struct policy p;
};

static void env_open(struct env *e)
{
    char audit_dir[512];
    struct gate_error err = {0};
    struct approval_config cfg = {0};
    cfg.webhook_url = e->webhook_url;
    cfg.webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    snprintf(audit_dir, sizeof(audit_dir), "%s/audit", e->dir);
    assert_int_equal(audit_open(audit_dir, &e->audit, &err), 0);
    /* As the gateway does on every start: a log starts with its start record. */
    assert_int_equal(audit_append(e->audit, AUDIT_FIRST_EVENT, NULL, NULL, &err), 0);
    struct approval_hooks hooks = {.run = fake_run, .on_change = fake_changed};
    if (approval_open(e->dir, &cfg, e->audit, "http://127.0.0.1:1", &hooks, &e->a, &err) < 0)
        fail_msg("approval_open: %s", err.msg);
    if (approval_resume(e->a, &err) < 0) fail_msg("approval_resume: %s", err.msg);
}

static void env_close(struct env *e)
{
    approval_close(e->a);
    audit_close(e->audit);
    e->a = NULL;
    e->audit = NULL;
}

static void env_init_hook(struct env *e, char *webhook_url)
{
    memset(e, 0, sizeof(*e));
    e->webhook_url = webhook_url;
    e->dir = temp_dir();
    e->p.name = "ledger";
    snprintf(e->p.sha256, sizeof(e->p.sha256), "%064d", 7);
    e->p.blast_radius = BLAST_HIGH;
    e->p.reversible = false;
    e->p.approval.required = true;
    e->p.approval.timeout_ms = 3600000;
    atomic_store(&runs, 0);
    env_open(e);
}

static void env_init(struct env *e)
{
    env_init_hook(e, NULL);
}

static void env_free(struct env *e)
{
    env_close(e);
    remove_tree(e->dir);
    free(e->dir);
}

static void hold(struct env *e, const char *id)
{
    json_t *resp = NULL;
    struct gate_error err = {0};
    struct approval_call c = {id,   e->p.name, e->p.sha256, "{\"amount\":1}",
                              "a0", "agent-1", NULL,        0};
    assert_int_equal(approval_hold(e->a, &e->p, &c, &resp, &err), 0);
    assert_string_equal(json_string_value(json_object_get(resp, "status")), "pending_approval");
    json_decref(resp);
}

/* What the gateway passes for an Authorization header: AUTH is approver alice's token (the
 * gateway authenticates approvers); anything else is handed on as a possible decision token. */
static struct approval_auth auth_of(const char *authorization)
{
    if (authorization && strcmp(authorization, AUTH) == 0)
        return (struct approval_auth){.approver = "alice"};
    return (struct approval_auth){.bearer = authorization};
}

static int decide(struct env *e, const char *id, const char *authorization, const char *decision,
                  const char *args_sha)
{
    struct approval_auth auth = auth_of(authorization);
    json_t *body = json_pack("{s:s,s:s,s:s}", "decision", decision, "approver", "alice",
                             "args_sha256", args_sha);
    json_t *resp = NULL;
    struct gate_error err = {0};
    int rc = approval_decide(e->a, id, &auth, body, &resp, &err);
    json_decref(body);
    json_decref(resp);
    return rc < 0 ? gate_code_http(err.code) : 200;
}

/* The call's status once final, or when wait_ms has passed. */
static const char *status_of(struct env *e, const char *id, uint64_t wait_ms, char *buf)
{
    uint64_t deadline = gate_monotonic_ns() + wait_ms * 1000000ull;
    bool final = false;
    json_t *rec = NULL;
    pthread_mutex_lock(&change_lock);
    for (;;) {
        struct gate_error err = {0};
        rec = approval_call_record(e->a, id, NULL, &final, &err);
        if (!rec || final || gate_monotonic_ns() >= deadline) break;
        json_decref(rec);
        /* Woken by every transition; the timeout only bounds a missed wake-up. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&changed, &change_lock, &ts);
    }
    pthread_mutex_unlock(&change_lock);
    if (!rec) return NULL;
    snprintf(buf, 64, "%s", json_string_value(json_object_get(rec, "status")));
    json_decref(rec);
    return buf;
}

static void test_decisions_refused_with_their_codes(void **state)
{
    (void)state;
    struct env e;
    char buf[64];
    env_init(&e);
    hold(&e, "c_a");
    assert_int_equal(decide(&e, "c_a", NULL, "approve", "a0"), 401);
    assert_int_equal(decide(&e, "c_a", "Bearer wrong-token-0000000", "approve", "a0"), 401);
    assert_int_equal(decide(&e, "c_a", "Bearer gdt_0000", "approve", "a0"), 401);
    assert_int_equal(decide(&e, "c_zz", AUTH, "approve", "a0"), 404);
    assert_int_equal(decide(&e, "c_a", AUTH, "approve", "a1"), 403); /* changed arguments */
    assert_int_equal(decide(&e, "c_a", AUTH, "maybe", "a0"), 400);
    assert_int_equal(decide(&e, "c_a", AUTH, "deny", "a0"), 200);
    assert_int_equal(decide(&e, "c_a", AUTH, "approve", "a0"), 409);
    assert_string_equal(status_of(&e, "c_a", 0, buf), "denied");
    assert_int_equal(atomic_load(&runs), 0);
    /* Expiry: a decision after the window is 410 and the call becomes expired. */
    e.p.approval.timeout_ms = 1;
    hold(&e, "c_b");
    usleep(5000);
    assert_int_equal(decide(&e, "c_b", AUTH, "approve", "a0"), 410);
    assert_string_equal(status_of(&e, "c_b", 0, buf), "expired");
    assert_int_equal(decide(&e, "c_b", AUTH, "approve", "a0"), 410);
    assert_int_equal(atomic_load(&runs), 0);
    assert_int_equal(count_events(e.dir, "call.expired"), 1);
    assert_int_equal(count_events(e.dir, "call.denied"), 1);
    assert_int_equal(count_events(e.dir, "call.held"), 2);
    env_free(&e);
}

struct racer {
    struct env *e;
    const char *decision;
    int status;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    r->status = decide(r->e, "c_r", AUTH, r->decision, "a0");
    return NULL;
}

static void test_concurrent_decisions_one_transition_one_run(void **state)
{
    (void)state;
    struct env e;
    char buf[64];
    env_init(&e);
    hold(&e, "c_r");
    enum { N = 16 };
    pthread_t t[N];
    struct racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){&e, i % 4 == 3 ? "deny" : "approve", 0};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int ok = 0, conflict = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += r[i].status == 200;
        conflict += r[i].status == 409;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, N - 1);
    const char *st = status_of(&e, "c_r", 5000, buf);
    assert_true(strcmp(st, "succeeded") == 0 || strcmp(st, "denied") == 0);
    assert_int_equal(atomic_load(&runs), strcmp(st, "succeeded") == 0 ? 1 : 0);
    assert_int_equal(count_events(e.dir, "call.approved") + count_events(e.dir, "call.denied"), 1);
    env_free(&e);
}

/* Put a held call into `state` directly in the store (what a crash would leave behind). */
static void force_state(struct env *e, const char *id, const char *to)
{
    const struct approval_store_ops *ops = &approval_store_sqlite;
    void *h = NULL;
    struct gate_error err = {0};
    assert_int_equal(ops->open(e->dir, NULL, &h, &err), 0);
    assert_int_equal(ops->cas_state(h, id, ST_PENDING, ST_APPROVED, NULL, NULL, NULL, &err), 1);
    if (strcmp(to, ST_STARTED) == 0)
        assert_int_equal(ops->cas_state(h, id, ST_APPROVED, ST_STARTED, NULL, NULL, NULL, &err), 1);
    ops->close(h);
}

static void test_restart_interrupts_started_resumes_the_rest(void **state)
{
    (void)state;
    struct env e;
    char buf[64];
    env_init(&e);
    hold(&e, "c_pending");
    hold(&e, "c_started");
    hold(&e, "c_approved");
    env_close(&e);
    force_state(&e, "c_started", ST_STARTED);
    force_state(&e, "c_approved", ST_APPROVED);
    env_open(&e);
    /* started before the "crash": interrupted, audited, never run again. */
    assert_string_equal(status_of(&e, "c_started", 0, buf), "interrupted");
    assert_int_equal(count_events(e.dir, "call.interrupted"), 1);
    /* approved but not started: started once now. */
    assert_string_equal(status_of(&e, "c_approved", 5000, buf), "succeeded");
    assert_int_equal(atomic_load(&runs), 1);
    /* pending: still pending, and a decision after the restart is honoured. */
    assert_string_equal(status_of(&e, "c_pending", 0, buf), "pending_approval");
    assert_int_equal(decide(&e, "c_pending", AUTH, "approve", "a0"), 200);
    assert_string_equal(status_of(&e, "c_pending", 5000, buf), "succeeded");
    assert_int_equal(atomic_load(&runs), 2);
    /* A second restart changes nothing more. */
    env_close(&e);
    env_open(&e);
    assert_string_equal(status_of(&e, "c_started", 0, buf), "interrupted");
    assert_int_equal(count_events(e.dir, "call.interrupted"), 1);
    assert_int_equal(atomic_load(&runs), 2);
    env_close(&e);
    struct audit_verify_report rep = {0};
    char audit_dir[512];
    snprintf(audit_dir, sizeof(audit_dir), "%s/audit", e.dir);
    assert_int_equal(audit_verify(audit_dir, &rep, NULL), 0);
    env_open(&e);
    env_free(&e);
}

static void test_list_requires_an_approver_token(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    hold(&e, "c_l");
    json_t *out = NULL;
    struct gate_error err = {0};
    struct approval_auth none = auth_of(NULL), alice = auth_of(AUTH);
    struct approval_query pending = {.status = "pending"}, bogus = {.status = "bogus"},
                          missing = {.call_id = "c_none"};
    assert_int_equal(approval_list(e.a, &none, &pending, &out, &err), -1);
    assert_int_equal(err.code, GATE_E_UNAUTHORIZED);
    assert_int_equal(approval_list(e.a, &alice, &pending, &out, &err), 0);
    assert_int_equal(json_array_size(json_object_get(out, "approvals")), 1);
    json_decref(out);
    assert_int_equal(approval_list(e.a, &alice, &bogus, &out, &err), -1);
    assert_int_equal(err.code, GATE_E_BAD_REQUEST);
    assert_int_equal(approval_list(e.a, &alice, &missing, &out, &err), -1);
    assert_int_equal(err.code, GATE_E_CALL_NOT_FOUND);
    env_free(&e);
}

/* ---- webhook delivery against a loopback endpoint answering a script of statuses ---------- */

struct endpoint {
    int fd;
    int port;
    int answers[4];
    int n;
    char request[16384]; /* the last request, NUL-terminated */
};

static void *serve_script(void *arg)
{
    struct endpoint *ep = arg;
    for (int i = 0; i < ep->n; i++) {
        int c = accept(ep->fd, NULL, NULL);
        if (c < 0) return NULL;
        struct timeval tv = {.tv_sec = 60};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        size_t len = 0;
        ssize_t r;
        char *end = NULL;
        /* Read the head, then as much body as Content-Length says. */
        while (len < sizeof(ep->request) - 1 &&
               (r = read(c, ep->request + len, sizeof(ep->request) - 1 - len)) > 0) {
            len += (size_t)r;
            ep->request[len] = '\0';
            end = strstr(ep->request, "\r\n\r\n");
            const char *cl = strcasestr(ep->request, "content-length:");
            if (end && cl && len >= (size_t)(end + 4 - ep->request) + strtoul(cl + 15, NULL, 10))
                break;
        }
        char resp[128];
        int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d Scripted\r\nContent-Length: 0\r\n\r\n",
                         ep->answers[i]);
        assert_int_equal(write(c, resp, (size_t)n), n);
        close(c);
    }
    return NULL;
}

static const char *header(const char *req, const char *name, char *out, size_t cap)
{
    const char *h = strcasestr(req, name);
    assert_non_null(h);
    h += strlen(name);
    while (*h == ' ')
        h++;
    size_t n = strcspn(h, "\r");
    assert_true(n < cap);
    memcpy(out, h, n);
    out[n] = '\0';
    return out;
}

static void test_webhook_retried_until_2xx_and_signed(void **state)
{
    (void)state;
    struct endpoint ep = {.answers = {500, 503, 204}, .n = 3};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ep.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(ep.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ep.fd, 8), 0);
    struct timeval tv = {.tv_sec = 60}; /* accept and read give up rather than hang the test */
    setsockopt(ep.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(getsockname(ep.fd, (struct sockaddr *)&sa, &sl), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve_script, &ep), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", ntohs(sa.sin_port));
    struct env e;
    env_init_hook(&e, url);
    hold(&e, "c_w");
    pthread_join(t, NULL); /* all three answers given */
    /* The 2xx is recorded together with its audit record right after the answer. */
    json_t *out = NULL;
    struct gate_error err = {0};
    for (int i = 0; i < 600; i++) {
        struct approval_auth alice = auth_of(AUTH);
        struct approval_query q = {.call_id = "c_w"};
        assert_int_equal(approval_list(e.a, &alice, &q, &out, &err), 0);
        json_t *wh =
            json_object_get(json_array_get(json_object_get(out, "approvals"), 0), "webhook");
        bool delivered = json_is_true(json_object_get(wh, "delivered"));
        json_int_t attempts = json_integer_value(json_object_get(wh, "attempts"));
        json_decref(out);
        if (delivered) {
            assert_int_equal(attempts, 3);
            break;
        }
        assert_true(i < 599);
        usleep(50000);
    }
    assert_int_equal(count_events(e.dir, "webhook.sent"), 1);
    /* The last request carries a valid signature over exactly the body sent. */
    char id[64], ts[32], sig[128], want[80];
    header(ep.request, "webhook-id:", id, sizeof(id));
    header(ep.request, "webhook-timestamp:", ts, sizeof(ts));
    header(ep.request, "webhook-signature:", sig, sizeof(sig));
    const char *body = strstr(ep.request, "\r\n\r\n") + 4;
    assert_int_equal(approval_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, ts, body,
                                           strlen(body), want, sizeof(want), &err),
                     0);
    assert_string_equal(sig, want);
    json_t *payload = json_loads(body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(payload, "call_id")), "c_w");
    assert_string_equal(json_string_value(json_object_get(payload, "args_sha256")), "a0");
    const char *token = json_string_value(json_object_get(payload, "decision_token"));
    assert_non_null(token);
    /* Its decision token decides this call, once. */
    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    assert_int_equal(decide(&e, "c_w", auth, "deny", "a0"), 200);
    assert_int_equal(decide(&e, "c_w", auth, "approve", "a0"), 409);
    json_decref(payload);
    close(ep.fd);
    env_free(&e);
}

/* ---- https:// ------------------------------------------------------------------------------ */

/* A test PKI made with the openssl command: a CA the client is given, a CA it is not, and
 * server certificates for localhost/127.0.0.1 (from each CA) and for another name. */
static const char *const pki_script =
    "set -e; cd \"$1\"\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
    "for ca in ca rogue-ca; do\n"
    "  openssl req -x509 $ec -keyout $ca.key -out $ca.pem -days 2 -subj \"/CN=gatehouse test $ca\" "
    "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null\n"
    "done\n"
    "leaf() { printf 'subjectAltName=%s\\nextendedKeyUsage=serverAuth\\n' \"$3\" > $1.ext\n"
    "  openssl req $ec -keyout $1.key -out $1.csr -subj \"/CN=$1\" 2>/dev/null\n"
    "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -days 2 "
    "-extfile $1.ext -out $1.pem 2>/dev/null; }\n"
    "leaf localhost ca DNS:localhost,IP:127.0.0.1\n"
    "leaf wrong-name ca DNS:wrong.example\n"
    "leaf rogue rogue-ca DNS:localhost,IP:127.0.0.1\n";

struct tls_endpoint {
    int fd;
    SSL_CTX *ctx;
    bool silent;        /* accept, then say nothing (the client's deadline ends it) */
    bool handshake_ok;  /* set by the server thread */
    char sni[64];       /* the name the client asked for ("" if none) */
    char request[4096]; /* what came through the tunnel */
};

/* One connection: TLS handshake, read the request, answer 204. */
static void *serve_tls_once(void *arg)
{
    struct tls_endpoint *ep = arg;
    int c = accept(ep->fd, NULL, NULL);
    if (c < 0) return NULL;
    struct timeval tv = {.tv_sec = 60};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (ep->silent) {
        char b;
        while (read(c, &b, 1) > 0)
            ;
        close(c);
        return NULL;
    }
    SSL *ssl = SSL_new(ep->ctx);
    SSL_set_fd(ssl, c);
    if (SSL_accept(ssl) == 1) {
        ep->handshake_ok = true;
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        snprintf(ep->sni, sizeof(ep->sni), "%s", sni ? sni : "");
        size_t len = 0, n = 0;
        while (len < sizeof(ep->request) - 1 &&
               SSL_read_ex(ssl, ep->request + len, sizeof(ep->request) - 1 - len, &n) == 1) {
            len += n;
            ep->request[len] = '\0';
            const char *end = strstr(ep->request, "\r\n\r\n");
            const char *cl = strcasestr(ep->request, "content-length:");
            if (end && cl && len >= (size_t)(end + 4 - ep->request) + strtoul(cl + 15, NULL, 10))
                break;
        }
        static const char resp[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        SSL_write_ex(ssl, resp, sizeof(resp) - 1, &n);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(c);
    return NULL;
}

/* POST to https://host:PORT/hook served with certificate `cert` of dir. Returns the client's
 * result; *ep tells what the server saw. */
static int post_tls(const char *dir, const char *cert, const char *host, const char *ca_file,
                    bool silent, struct tls_endpoint *ep, int *status, char *why, size_t why_len)
{
    memset(ep, 0, sizeof(*ep));
    ep->silent = silent;
    char crt[512], key[512];
    snprintf(crt, sizeof(crt), "%s/%s.pem", dir, cert);
    snprintf(key, sizeof(key), "%s/%s.key", dir, cert);
    ep->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate_file(ep->ctx, crt, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ep->ctx, key, SSL_FILETYPE_PEM), 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ep->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(ep->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ep->fd, 4), 0);
    assert_int_equal(getsockname(ep->fd, (struct sockaddr *)&sa, &sl), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, serve_tls_once, ep), 0);
    char url[128];
    snprintf(url, sizeof(url), "https://%s:%d/hook", host, ntohs(sa.sin_port));
    struct ssl_ctx_st *tls = NULL;
    assert_int_equal(approval_tls_new(ca_file, &tls, why, why_len), 0);
    int rc =
        approval_http_post(url, tls, "webhook-id: msg_1\r\n", "{\"x\":1}", status, why, why_len);
    approval_tls_free(tls);
    pthread_join(t, NULL);
    close(ep->fd);
    SSL_CTX_free(ep->ctx);
    fprintf(stderr, "POST %s (server certificate %s, CA file %s): rc %d, HTTP %d, %s\n", url, cert,
            ca_file ? "given" : "none", rc, *status, rc < 0 ? why : "ok");
    return rc;
}

static void test_https_webhook_verifies_the_receiver(void **state)
{
    (void)state;
    if (system("command -v openssl >/dev/null") != 0) {
        fprintf(stderr, "no openssl command to make a test CA with\n");
        skip();
    }
    char *dir = temp_dir();
    char script[512], cmd[1200];
    snprintf(script, sizeof(script), "%s/make-pki.sh", dir);
    FILE *f = fopen(script, "we");
    assert_non_null(f);
    fputs(pki_script, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", script, dir);
    assert_int_equal(system(cmd), 0);
    char ca[512];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    /* The config key names it; the file is loaded once when the config is read. */
    char yaml[700];
    snprintf(yaml, sizeof(yaml), "approval:\n  webhook_ca_file: %s\n", ca);
    struct approval_config cfg;
    struct gate_error err = {0};
    assert_int_equal(parse_cfg(yaml, &cfg, &err), 0);
    assert_string_equal(cfg.webhook_ca_file, ca);
    approval_config_free(&cfg);
    /* Only the system store, which must not name the test CA. */
    unsetenv("SSL_CERT_FILE");
    unsetenv("SSL_CERT_DIR");
    struct tls_endpoint ep;
    int status = 0;
    char why[256];
    /* Trusted through the CA file; the name checked and sent as SNI. */
    assert_int_equal(
        post_tls(dir, "localhost", "localhost", ca, false, &ep, &status, why, sizeof(why)), 0);
    assert_int_equal(status, 204);
    assert_string_equal(ep.sni, "localhost");
    assert_true(strncmp(ep.request, "POST /hook HTTP/1.1\r\n", 21) == 0);
    assert_non_null(strstr(ep.request, "webhook-id: msg_1\r\n"));
    assert_non_null(strstr(ep.request, "\r\n\r\n{\"x\":1}"));
    /* An address is checked against the certificate's IP SANs, and is not sent as SNI. */
    assert_int_equal(
        post_tls(dir, "localhost", "127.0.0.1", ca, false, &ep, &status, why, sizeof(why)), 0);
    assert_int_equal(status, 204);
    assert_string_equal(ep.sni, "");
    /* Refused: nothing is sent unless the receiver proved who it is. */
    static const struct {
        const char *cert, *host;
        bool with_ca;
        const char *why;
    } refused[] = {
        {"wrong-name", "localhost", true, "certificate not accepted: hostname mismatch"},
        {"wrong-name", "127.0.0.1", true, "certificate not accepted: IP address mismatch"},
        {"rogue", "localhost", true, "certificate not accepted: unable to get local issuer"},
        {"localhost", "localhost", false, "certificate not accepted: unable to get local issuer"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(post_tls(dir, refused[i].cert, refused[i].host,
                                  refused[i].with_ca ? ca : NULL, false, &ep, &status, why,
                                  sizeof(why)),
                         -1);
        assert_int_equal(status, 0);
        if (!strstr(why, refused[i].why)) fail_msg("case %zu: '%s'", i, why);
        assert_true(strncmp(why, "TLS handshake with ", 19) == 0);
        assert_false(ep.handshake_ok);
        assert_string_equal(ep.request, "");
    }
    /* A receiver that never answers the handshake costs one I/O timeout, not a hung thread. */
    assert_int_equal(
        post_tls(dir, "localhost", "localhost", ca, true, &ep, &status, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "no answer before the timeout"));
    /* A CA file that cannot be loaded is an error that names it. */
    struct ssl_ctx_st *tls = NULL;
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no-such-ca.pem", dir);
    assert_int_equal(approval_tls_new(missing, &tls, why, sizeof(why)), -1);
    assert_null(tls);
    assert_non_null(strstr(why, missing));
    remove_tree(dir);
    free(dir);
}

int main(void)
{
    /* The https test talks to its own server from this thread: a server that hangs up must fail
     * the write, not kill the test (the gateway's delivery threads block SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_known_vector),
        cmocka_unit_test(test_signature_rejects_bad_secret),
        cmocka_unit_test(test_url_parse_refuses_what_could_inject),
        cmocka_unit_test(test_config_parses_every_key),
        cmocka_unit_test(test_config_errors_name_line_and_column),
        cmocka_unit_test(test_store_cas_transitions),
        cmocka_unit_test(test_decisions_refused_with_their_codes),
        cmocka_unit_test(test_concurrent_decisions_one_transition_one_run),
        cmocka_unit_test(test_restart_interrupts_started_resumes_the_rest),
        cmocka_unit_test(test_list_requires_an_approver_token),
        cmocka_unit_test(test_webhook_retried_until_2xx_and_signed),
        cmocka_unit_test(test_https_webhook_verifies_the_receiver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
