/* serve.c: `gatehouse serve`: start-up, policy reloads, signals and shutdown. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway.h"

/* The engine's change callback: wake long polls on that call (they look again). */
static void on_change(void *ctx, const char *call_id)
{
    (void)ctx;
    gw_http_call_changed(call_id);
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

static int open_approval(struct gw *gw, const struct approval_config *cfg, struct gate_error *err)
{
    /* approval.public_url, when set, is the gateway's address for everything that names it:
     * links in webhooks, the MCP Origin check, the approval page's cookie (Secure for https). */
    if (cfg->public_url) {
        char *url = strdup(cfg->public_url);
        if (!url) return gate_err(err, GATE_E_NOMEM, NULL);
        free(gw->public_url);
        gw->public_url = url;
    }
    return call_engine_open_approval(gw->engine, gw->opt.state_dir, cfg, gw->public_url, err);
}

static void wait_for_calls(struct gw *gw, unsigned ms)
{
    uint64_t deadline = gate_monotonic_ns() + (uint64_t)ms * 1000000ull;
    while (call_engine_running(gw->engine) > 0 && gate_monotonic_ns() < deadline)
        usleep(10000);
}

static void *teardown_watchdog(void *arg)
{
    (void)arg;
    sleep(5);
    /* Every record is durable, but a hung teardown is a bug: exit non-zero so that tests and
     * supervisors see it (and LeakSanitizer's silence is not mistaken for a clean stop). */
    gate_log("error", "gateway.stopped", "teardown did not finish in 5 s; exiting with status 70");
    _exit(70);
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
            struct policy_diags diags = {0};
            call_engine_reload(gw->engine, &diags);
            policy_diags_free(&diags);
            continue;
        }
        gate_log("info", "gateway.stopping", "signal %d: no new calls; %u running", sig,
                 call_engine_running(gw->engine));
        atomic_store(&gw->stopping, true);
        call_engine_shutdown(gw->engine); /* refuse new calls, stop webhooks and expiry */
        gw_http_stop_accepting(gw);       /* and long polls answer now */
        wait_for_calls(gw, gw->opt.grace_ms);
        unsigned left = call_engine_running(gw->engine);
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

/* Each client connection holds three descriptors: its socket and both ends of the pair to
 * libmicrohttpd. Raise the soft open-file limit to the hard one, and take fewer connections
 * than asked if even that is not enough (leaving room for audit, sandboxes and pipes). */
static void fit_connections(struct gw_options *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t fit = rl.rlim_cur > 1024 ? (rl.rlim_cur - 512) / 3 : 128;
    if (o->max_connections > fit) {
        gate_log("warn", "gateway.connections",
                 "--max-connections %u needs %u open files; the limit is %llu: taking %llu",
                 o->max_connections, 3 * o->max_connections + 512, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)fit);
        o->max_connections = (unsigned)fit;
    }
    if (o->max_connections_per_ip > o->max_connections)
        o->max_connections_per_ip = o->max_connections;
}

static int start_engine(struct gw *gw, struct sbx_config *sc,
                        const struct approval_config *approval, struct gate_error *err);

/* The API endpoint no tool may reach: refused in policies at load, and by the network filter. */
static int gateway_endpoint(const char *listen, struct policy_endpoint *ep, struct gate_error *err)
{
    struct sockaddr_storage sa;
    socklen_t len = 0;
    if (gw_parse_listen(listen, &sa, &len, err) < 0) return -1;
    *ep = (struct policy_endpoint){.family = sa.ss_family};
    if (sa.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&sa;
        memcpy(ep->addr, &s4->sin_addr, 4);
        ep->port = ntohs(s4->sin_port);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa;
        memcpy(ep->addr, &s6->sin6_addr, 16);
        ep->port = ntohs(s6->sin6_port);
    }
    policy_network_reserve(ep);
    return 0;
}

static int start(struct gw *gw, struct gate_error *err)
{
    static struct policy_endpoint endpoint;
    struct sbx_config sc = {.state_dir = gw->opt.state_dir,
                            .max_concurrent = gw->opt.max_concurrent,
                            .gateway = &endpoint};
    if (gateway_endpoint(gw->opt.listen, &endpoint, err) < 0) return -1;
    if (resolve_user(gw->opt.run_as, &sc.tool_uid, &sc.tool_gid) < 0)
        return gate_err(err, GATE_E_CONFIG, "--run-as %s: no such user, or root", gw->opt.run_as);
    if (parse_uid_range(gw->opt.tool_uids, &sc.call_uid_base, &sc.call_uid_count) < 0)
        return gate_err(err, GATE_E_CONFIG, "--tool-uids %s: expected BASE:COUNT, both > 0",
                        gw->opt.tool_uids);
    if (sc.call_uid_count < gw->opt.max_concurrent)
        return gate_err(err, GATE_E_CONFIG,
                        "--tool-uids gives %u uids, fewer than --max-concurrent %u",
                        sc.call_uid_count, gw->opt.max_concurrent);
    /* The network filter knows a process-tier call by its uid before anything else: the
     * sandboxes' own uid (--run-as: containers, QEMU) inside the range would be judged by
     * whichever call holds that uid. */
    if (sc.tool_uid >= sc.call_uid_base && sc.tool_uid - sc.call_uid_base < sc.call_uid_count)
        return gate_err(err, GATE_E_CONFIG, "--run-as %s (uid %u) lies inside --tool-uids %s",
                        gw->opt.run_as, (unsigned)sc.tool_uid, gw->opt.tool_uids);
    struct approval_config approval;
    if (gw_config_load(gw, &approval, err) < 0) return -1;
    int rc = start_engine(gw, &sc, &approval, err);
    approval_config_free(&approval);
    return rc;
}

static int start_engine(struct gw *gw, struct sbx_config *sc,
                        const struct approval_config *approval, struct gate_error *err)
{
    if (gw_state_dir(gw->opt.state_dir, err) < 0) return -1;
    char audit_dir[4096], node[65];
    snprintf(audit_dir, sizeof(audit_dir), "%s/audit", gw->opt.state_dir);
    if (audit_node_id(gw->opt.state_dir, gw->node, node, err) < 0) return -1;
    if (audit_open(audit_dir, &gw->audit, err) < 0) return -1;
    if (audit_set_node(gw->audit, node, err) < 0) return -1;
    /* The first record of every run, so a log always begins with it (audit verify checks). */
    json_t *f = json_pack("{s:s,s:s,s:s}", "listen", gw->opt.listen, "policies", gw->opt.policies,
                          "version", GATE_VERSION);
    int rc = audit_append(gw->audit, "gateway.started", f, NULL, err);
    json_decref(f);
    if (rc < 0) return -1;
    if (sbx_init(sc) < 0)
        return gate_err(err, GATE_E_SANDBOX, "no isolation tier works on this host");
    struct call_engine_config ec = {.policy_dir = gw->opt.policies,
                                    .max_concurrent = gw->opt.max_concurrent,
                                    .audit = gw->audit,
                                    .on_change = on_change,
                                    .on_change_ctx = gw};
    struct policy_diags diags = {0};
    rc = call_engine_open(&ec, &gw->engine, &diags, err);
    policy_diags_free(&diags);
    if (rc < 0) return gate_err_wrap(err, "start");
    if (open_approval(gw, approval, err) < 0) return -1;
    /* After open_approval: its migrations create the audit_anchors table. */
    struct audit_anchor_target anchors = {.database = approval->database,
                                          .database_password = approval->database_password,
                                          .file = gw->opt.anchor_file ? gw->opt.anchor_file
                                                                      : gw->anchor_file};
    if (audit_anchor_start(gw->audit, node, &anchors, &gw->anchorer, err) < 0) return -1;
    if (approval->database) { /* one quota per agent across every gateway on the database */
        if (approval_quota_open(approval, &gw->quota, err) < 0) return -1;
        agents_share_quotas(gw->agents, &(struct agents_shared_quota){
                                            approval_quota_begin, approval_quota_end, gw->quota});
    }
    fit_connections(&gw->opt);
    if (gw_http_start(gw, err) < 0) return -1;
    return call_engine_resume(gw->engine, err);
}

int cmd_serve(int argc, char **argv)
{
    static struct gw gw; /* lives for the whole process; threads reference it */
    int parsed = gw_parse_serve_args(argc, argv, &gw.opt);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
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
    gw.metrics = gw_metrics_new();
    if (asprintf(&gw.public_url, "http://%s", gw.opt.listen) < 0 || !gw.metrics) return 1;
    struct gate_error err = {0};
    if (start(&gw, &err) < 0) {
        gate_log("error", "gateway.start_failed", "%s", err.msg);
        if (gw.audit) {
            json_t *f = json_pack("{s:s,s:s}", "reason", "start failed", "error", err.msg);
            audit_append(gw.audit, "gateway.stopped", f, NULL, NULL);
            json_decref(f);
        }
        call_engine_close(gw.engine); /* waits for any approved run it started */
        sbx_shutdown();               /* pools and cgroups the tiers made at start */
        audit_anchor_stop(gw.anchorer);
        audit_close(gw.audit);
        return 1;
    }
    gate_log("info", "gateway.listening", "listening on http://%s", gw.opt.listen);
    int rc = serve_loop(&gw);
    gw_http_stop(&gw);
    call_engine_close(gw.engine);
    sbx_shutdown();
    audit_anchor_stop(gw.anchorer); /* anchors the last records (gateway.stopped) too */
    audit_close(gw.audit);
    approval_quota_close(gw.quota); /* after every call ended: they release their slots */
    agents_free(gw.agents);
    free(gw.node);
    free(gw.anchor_file);
    gw_metrics_free(gw.metrics);
    free(gw.public_url);
    return rc;
}
