/* serve.c: `gatehouse serve`: start-up, policy reloads, signals and shutdown. */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway.h"

struct policy_set *gw_policies(struct gw *gw)
{
    pthread_mutex_lock(&gw->policy_lock);
    struct policy_set *s = gw->policies ? policy_set_ref(gw->policies) : NULL;
    pthread_mutex_unlock(&gw->policy_lock);
    return s;
}

static void log_diags(struct gw *gw, const struct policy_diags *d)
{
    json_t *errors = json_array();
    for (size_t i = 0; i < d->n; i++) {
        gate_log("error", "policy.rejected", "%s", d->msgs[i]);
        json_array_append_new(errors, json_string(d->msgs[i]));
    }
    json_t *f = json_pack("{s:s,s:o}", "dir", gw->opt.policies, "errors", errors);
    audit_append(gw->audit, "policy.rejected", f, NULL, NULL);
    json_decref(f);
}

/* Load a set and prepare every policy in its tier; all or nothing. */
static int load_set(const char *dir, struct policy_set **out, struct policy_diags *diags)
{
    struct policy_set *set = NULL;
    if (policy_set_load(dir, &set, diags) < 0) return -1;
    int bad = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct gate_error err = {0};
        if (sbx_prepare(set->items[i], &err) < 0) {
            policy_diags_add(diags, "%s", err.msg);
            bad++;
        }
    }
    if (bad) {
        policy_set_unref(set);
        return -1;
    }
    *out = set;
    return 0;
}

int gw_reload(struct gw *gw)
{
    struct policy_diags diags = {0};
    struct policy_set *set = NULL;
    if (load_set(gw->opt.policies, &set, &diags) < 0) {
        log_diags(gw, &diags);
        policy_diags_free(&diags);
        gw_metrics_reload_failed(gw->metrics);
        gate_log("error", "policy.reload_failed", "the previous policy set stays in force");
        return -1;
    }
    policy_diags_free(&diags);
    json_t *list = json_array();
    for (size_t i = 0; i < set->n; i++)
        json_array_append_new(list, json_pack("{s:s,s:s}", "name", set->items[i]->name, "sha256",
                                              set->items[i]->sha256));
    json_t *f = json_pack("{s:s,s:o}", "dir", gw->opt.policies, "policies", list);
    audit_append(gw->audit, "policy.loaded", f, NULL, NULL);
    json_decref(f);
    pthread_mutex_lock(&gw->policy_lock);
    struct policy_set *old = gw->policies;
    gw->policies = set;
    pthread_mutex_unlock(&gw->policy_lock);
    if (old) policy_set_unref(old); /* freed when the last call using it finishes */
    gate_log("info", "policy.loaded", "%zu policies from %s", set->n, gw->opt.policies);
    return 0;
}

/* The approval module's run callback: run an approved call under the policy it was shown. */
static int run_approved(void *ctx, const char *tool, const char *policy_sha256, const char *call_id,
                        const char *args_json, const char *args_sha256, const char *agent,
                        const char *session, json_t **result, struct gate_error *err)
{
    struct gw *gw = ctx;
    struct policy_set *set = gw_policies(gw);
    const struct policy *p = set ? policy_set_find(set, tool) : NULL;
    int rc;
    if (!p)
        rc = gate_err(err, GATE_E_TOOL_NOT_FOUND, "tool '%s' is no longer loaded", tool);
    else if (strcmp(p->sha256, policy_sha256) != 0)
        rc = gate_err(err, GATE_E_DECISION_MISMATCH,
                      "the policy of '%s' changed after approval; not run", tool);
    else {
        /* Counted like any call, so that SIGTERM's grace period waits for it too. */
        atomic_fetch_add(&gw->inflight, 1);
        rc = gw_execute(gw, p, call_id, args_json, args_sha256, agent, session, result, err);
        atomic_fetch_sub(&gw->inflight, 1);
    }
    policy_set_unref(set);
    return rc;
}

/* A decimal id in 1..2^32-2: (uid_t)-1 would mean "unchanged" to setresuid, and 0 is root. */
static int parse_id(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!*s || *s < '0' || *s > '9') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > max) return -1;
    *out = v;
    return 0;
}

static int resolve_user(const char *name, uid_t *uid, gid_t *gid)
{
    unsigned long long n;
    if (parse_id(name, (uid_t)-2, &n) == 0) {
        *uid = (uid_t)n;
        *gid = (gid_t)n;
        return 0;
    }
    struct passwd *pw = getpwnam(name);
    if (!pw || pw->pw_uid == 0 || pw->pw_gid == 0) return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* "BASE:COUNT", e.g. 1900000000:1024. */
static int parse_uid_range(const char *s, uid_t *base, unsigned *count)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *colon = strchr(buf, ':');
    unsigned long long b, c;
    if (!colon) return -1;
    *colon = '\0';
    if (parse_id(buf, (uid_t)-2, &b) < 0 || parse_id(colon + 1, 1u << 20, &c) < 0 ||
        b + c >= (uid_t)-1)
        return -1;
    *base = (uid_t)b;
    *count = (unsigned)c;
    return 0;
}

static int open_approval(struct gw *gw, struct gate_error *err)
{
    struct approval_config cfg = {0};
    struct ynode *root = NULL;
    if (gw->opt.config) {
        if (ynode_load_file(gw->opt.config, &root, err) < 0) return -1;
        if (root->kind != YNODE_MAP) {
            ynode_free(root);
            return gate_err(err, GATE_E_CONFIG, "%s: the config must be a mapping", gw->opt.config);
        }
        for (size_t i = 0; i < root->n; i++)
            if (strcmp(root->keys[i], "approval") != 0) {
                gate_err(err, GATE_E_CONFIG, "%s:%d:%d: unknown key '%s'", gw->opt.config,
                         root->items[i]->loc.line, root->items[i]->loc.col, root->keys[i]);
                ynode_free(root);
                return -1;
            }
    }
    int rc = approval_config_parse(root ? ynode_get(root, "approval") : NULL, &cfg, err);
    ynode_free(root);
    if (rc < 0) return gate_err_wrap(err, "%s", gw->opt.config);
    rc = approval_open(gw->opt.state_dir, &cfg, gw->audit, gw->public_url, run_approved, gw,
                       &gw->approval, err);
    approval_config_free(&cfg);
    return rc;
}

/* Calls running now: direct calls, and approved ones (run_approved counts those in inflight
 * too, but a run thread may not have reached it yet: better counted twice than missed). */
static unsigned running(struct gw *gw)
{
    return atomic_load(&gw->inflight) + (gw->approval ? approval_running(gw->approval) : 0);
}

static void wait_for_calls(struct gw *gw, unsigned ms)
{
    uint64_t deadline = gate_monotonic_ns() + (uint64_t)ms * 1000000ull;
    while (running(gw) > 0 && gate_monotonic_ns() < deadline)
        usleep(10000);
}

static void *teardown_watchdog(void *arg)
{
    (void)arg;
    sleep(5);
    gate_log("warn", "gateway.stopped", "teardown did not finish in 5 s; exiting");
    _exit(0);
}

static int serve_loop(struct gw *gw)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            gate_log("info", "policy.reload", "SIGHUP: reloading %s", gw->opt.policies);
            gw_reload(gw);
            continue;
        }
        gate_log("info", "gateway.stopping", "signal %d: no new calls; %u running", sig,
                 atomic_load(&gw->inflight));
        atomic_store(&gw->stopping, true);
        approval_shutdown(gw->approval); /* wake long polls, stop webhooks and expiry */
        gw_http_stop_accepting(gw);
        wait_for_calls(gw, gw->opt.grace_ms);
        unsigned left = running(gw);
        if (left) {
            sbx_shutdown();           /* kill what remains: every tier kills its running calls */
            wait_for_calls(gw, 2000); /* so their call.finished records come before ours */
        }
        json_t *f = json_pack("{s:i,s:I}", "signal", sig, "calls_killed", (json_int_t)left);
        audit_append(gw->audit, "gateway.stopped", f, NULL, NULL);
        json_decref(f);
        gate_log("info", "gateway.stopped", "%u calls still running were killed", left);
        /* Every record is already durable; a teardown stuck behind a long poll or a killed
         * call's thread must not keep the process alive. */
        pthread_t wd;
        if (pthread_create(&wd, NULL, teardown_watchdog, NULL) == 0) pthread_detach(wd);
        return 0;
    }
}

static void usage_serve(void)
{
    fprintf(stderr,
            "usage: gatehouse serve [--listen ADDR:PORT] [--policies DIR] [--state-dir DIR]\n"
            "                       [--config FILE] [--max-concurrent N] [--run-as USER]\n"
            "                       [--grace SECONDS] [--tool-uids BASE:COUNT]\n");
}

static int parse_serve_args(int argc, char **argv, struct gw_options *o)
{
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"policies", required_argument, 0, 'p'},
                                         {"state-dir", required_argument, 0, 's'},
                                         {"config", required_argument, 0, 'c'},
                                         {"max-concurrent", required_argument, 0, 'm'},
                                         {"run-as", required_argument, 0, 'u'},
                                         {"grace", required_argument, 0, 'g'},
                                         {"tool-uids", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (struct gw_options){.listen = "127.0.0.1:8080",
                             .policies = "policies",
                             .state_dir = "var",
                             .run_as = "nobody",
                             .tool_uids = "1900000000:1024",
                             .max_concurrent = (unsigned)(16 * (ncpu > 0 ? ncpu : 1)),
                             .grace_ms = 10000};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'p':
            o->policies = optarg;
            break;
        case 's':
            o->state_dir = optarg;
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'u':
            o->run_as = optarg;
            break;
        case 'm':
            o->max_concurrent = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'g':
            o->grace_ms = (unsigned)strtoul(optarg, NULL, 10) * 1000;
            break;
        case 't':
            o->tool_uids = optarg;
            break;
        default:
            usage_serve();
            return -1;
        }
    }
    if (optind != argc || o->max_concurrent == 0) {
        usage_serve();
        return -1;
    }
    return 0;
}

static int start(struct gw *gw, struct gate_error *err)
{
    if (mkdir(gw->opt.state_dir, 0700) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_CONFIG, errno, "mkdir %s", gw->opt.state_dir);
    char audit_dir[4096];
    snprintf(audit_dir, sizeof(audit_dir), "%s/audit", gw->opt.state_dir);
    if (audit_open(audit_dir, &gw->audit, err) < 0) return -1;
    struct sbx_config sc = {.state_dir = gw->opt.state_dir,
                            .max_concurrent = gw->opt.max_concurrent};
    if (resolve_user(gw->opt.run_as, &sc.tool_uid, &sc.tool_gid) < 0)
        return gate_err(err, GATE_E_CONFIG, "--run-as %s: no such user, or root", gw->opt.run_as);
    if (parse_uid_range(gw->opt.tool_uids, &sc.call_uid_base, &sc.call_uid_count) < 0)
        return gate_err(err, GATE_E_CONFIG, "--tool-uids %s: expected BASE:COUNT, both > 0",
                        gw->opt.tool_uids);
    if (sc.call_uid_count < gw->opt.max_concurrent)
        return gate_err(err, GATE_E_CONFIG,
                        "--tool-uids gives %u uids, fewer than --max-concurrent %u",
                        sc.call_uid_count, gw->opt.max_concurrent);
    if (sbx_init(&sc) < 0)
        return gate_err(err, GATE_E_SANDBOX, "no isolation tier works on this host");
    if (gw_reload(gw) < 0)
        return gate_err(err, GATE_E_POLICY, "policies in %s failed to load (see above)",
                        gw->opt.policies);
    if (open_approval(gw, err) < 0) return -1;
    if (gw_http_start(gw, err) < 0) return -1;
    return approval_resume(gw->approval, err);
}

int cmd_serve(int argc, char **argv)
{
    static struct gw gw; /* lives for the whole process; threads reference it */
    if (parse_serve_args(argc, argv, &gw.opt) < 0) return 2;
    /* Handle signals in one thread with sigwait; every thread inherits this mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Not dumpable: no process of the same uid may ptrace us or read /proc/<pid>/mem or
     * environ, which hold approver tokens and webhook secrets. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    pthread_mutex_init(&gw.policy_lock, NULL);
    gw.metrics = gw_metrics_new();
    gw.calls = gw_calls_new();
    if (asprintf(&gw.public_url, "http://%s", gw.opt.listen) < 0 || !gw.metrics || !gw.calls)
        return 1;
    struct gate_error err = {0};
    if (start(&gw, &err) < 0) {
        gate_log("error", "gateway.start_failed", "%s", err.msg);
        approval_close(gw.approval); /* waits for any run it started */
        sbx_shutdown();              /* pools and cgroups the tiers made at start */
        return 1;
    }
    json_t *f = json_pack("{s:s,s:s}", "listen", gw.opt.listen, "policies", gw.opt.policies);
    audit_append(gw.audit, "gateway.started", f, NULL, NULL);
    json_decref(f);
    gate_log("info", "gateway.listening", "listening on http://%s", gw.opt.listen);
    int rc = serve_loop(&gw);
    gw_http_stop(&gw);
    approval_close(gw.approval);
    sbx_shutdown();
    policy_set_unref(gw.policies);
    audit_close(gw.audit);
    gw_calls_free(gw.calls);
    gw_metrics_free(gw.metrics);
    free(gw.public_url);
    return rc;
}
