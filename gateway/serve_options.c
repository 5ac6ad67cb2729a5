/* serve_options.c: the options of `gatehouse serve`, one row each: name, argument, default,
 * meaning, and where the value goes. --help prints the same table. */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"

enum opt_kind { OPT_STRING, OPT_COUNT, OPT_SECONDS };

struct serve_option {
    const char *name;
    const char *arg;
    enum opt_kind kind;
    size_t offset; /* in struct gw_options */
    const char *help;
};

#define OFF(field) offsetof(struct gw_options, field)

static const struct serve_option options[] = {
    {"listen", "ADDR:PORT", OPT_STRING, OFF(listen),
     "address to serve the API on; IPv4 or [IPv6]. Default 127.0.0.1:8080"},
    {"policies", "DIR", OPT_STRING, OFF(policies),
     "directory of tool policies (*.yaml), reloaded on SIGHUP. Default policies"},
    {"state-dir", "DIR", OPT_STRING, OFF(state_dir),
     "audit log and approval queue; created 0700. Default var"},
    {"config", "FILE", OPT_STRING, OFF(config),
     "gateway configuration (approvers, webhooks). Default: none"},
    {"max-concurrent", "N", OPT_COUNT, OFF(max_concurrent),
     "calls running at once; more get 429 too_many_calls. Default 16 x cores"},
    {"max-connections", "N", OPT_COUNT, OFF(max_connections),
     "client connections open at once; more get 503. Default 4096 (fewer if the open-file "
     "limit is low)"},
    {"max-connections-per-ip", "N", OPT_COUNT, OFF(max_connections_per_ip),
     "client connections open at once from one address; more get 429 too_many_connections. "
     "Default 256"},
    {"request-timeout", "SECONDS", OPT_SECONDS, OFF(request_timeout_ms),
     "a request's head must arrive within this from its first byte, and its body within 3x "
     "this (slow or stalled clients get 408). Default 10"},
    {"run-as", "USER", OPT_STRING, OFF(run_as),
     "identity for container/gVisor tools (a name or uid, never root). Default nobody"},
    {"tool-uids", "BASE:COUNT", OPT_STRING, OFF(tool_uids),
     "host uids handed out one per running process-tier call; give each gateway on one host its "
     "own range. Default 1900000000:1024"},
    {"grace", "SECONDS", OPT_SECONDS, OFF(grace_ms),
     "on SIGTERM, how long running calls may finish before they are killed. Default 10"},
    {"anchor-file", "PATH", OPT_STRING, OFF(anchor_file),
     "append the audit chain head to PATH (a second storage) at every group commit; "
     "config audit.anchor_file. Default: none (with database:, heads go to PostgreSQL)"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse serve [OPTION]...\n\n"
               "Run the gateway: serve the HTTP API, run calls in the sandboxes their policies\n"
               "demand, hold irreversible calls for approval, write the audit log.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++)
        fprintf(f, "  --%s %s\n      %s\n", options[i].name, options[i].arg, options[i].help);
    fprintf(f, "  --help\n      print this and exit\n\n"
               "Signals: SIGHUP reloads the policy directory (all or nothing); SIGTERM stops\n"
               "accepting, lets running calls finish within --grace, and exits 0.\n");
}

static void defaults(struct gw_options *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (struct gw_options){.listen = "127.0.0.1:8080",
                             .policies = "policies",
                             .state_dir = "var",
                             .run_as = "nobody",
                             .tool_uids = "1900000000:1024",
                             .max_concurrent = (unsigned)(16 * (ncpu > 0 ? ncpu : 1)),
                             .max_connections = 4096,
                             .max_connections_per_ip = 256,
                             .request_timeout_ms = 10000,
                             .grace_ms = 10000};
}

static int set_value(const struct serve_option *opt, const char *value, struct gw_options *o)
{
    void *field = (char *)o + opt->offset;
    if (opt->kind == OPT_STRING) {
        *(const char **)field = value;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno || !*value || *end || value[0] == '-' || v == 0 || v > 1000000) {
        fprintf(stderr, "gatehouse serve: --%s %s: expected a number from 1 to 1000000\n",
                opt->name, value);
        return -1;
    }
    *(unsigned *)field = (unsigned)(opt->kind == OPT_SECONDS ? v * 1000 : v);
    return 0;
}

int gw_parse_serve_args(int argc, char **argv, struct gw_options *o)
{
    struct option long_opts[NOPTIONS + 2];
    for (size_t i = 0; i < NOPTIONS; i++)
        long_opts[i] = (struct option){options[i].name, required_argument, 0, (int)i};
    long_opts[NOPTIONS] = (struct option){"help", no_argument, 0, 'h'};
    long_opts[NOPTIONS + 1] = (struct option){0, 0, 0, 0};
    defaults(o);
    optind = 1;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c < 0 || (size_t)c >= NOPTIONS) {
            usage(stderr);
            return -1;
        }
        if (set_value(&options[c], optarg, o) < 0) return -1;
    }
    if (optind != argc) {
        fprintf(stderr, "gatehouse serve: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}
