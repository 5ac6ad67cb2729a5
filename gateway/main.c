/* main.c: the `gatehouse` command line: a table of subcommands, each a small handler. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "gateway.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "run the gateway"},
    {"policy", cmd_policy, "policy check DIR: validate every policy, print every error"},
    {"audit", cmd_audit, "audit verify DIR: check the audit log's hash chain"},
    {"call", cmd_call, "call TOOL [ARGUMENTS-JSON] [--wait S]: call a tool on a running gateway"},
    {"approvals", cmd_approvals, "approvals list|show|approve|deny: decide held calls"},
    {"agents", cmd_agents, "agents add NAME: make an agent's token (printed once)"},
    {"db", cmd_db, "db migrate [--check]: the shared PostgreSQL schema (several gateways)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse COMMAND [ARGS]   (gatehouse COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "--version", "print the version");
}

int cmd_policy(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "usage: gatehouse policy check DIR\n");
        return 2;
    }
    /* The same load and per-tier preparation as `serve`, so what passes here loads there. */
    char tmp[] = "/tmp/gatehouse-check-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    struct sbx_config sc = {.state_dir = tmp,
                            .tool_uid = 65534,
                            .tool_gid = 65534,
                            .call_uid_base = 1900000000,
                            .call_uid_count = 1};
    sbx_init(&sc);
    struct policy_diags diags = {0};
    struct policy_set *set = NULL;
    int bad = 0;
    if (policy_set_load(argv[2], &set, &diags) == 0) {
        for (size_t i = 0; i < set->n; i++) {
            struct policy *p = set->items[i];
            const char *why = sbx_unavailable_reason(p->isolation);
            /* A tier this host cannot run is checked where it can; one this build lacks is
             * an error everywhere. */
            if (*why && !strstr(why, "not built")) {
                printf("%s: note: isolation '%s' not checked on this host: %s\n", p->path,
                       policy_isolation_name(p->isolation), why);
                continue;
            }
            struct gate_error err = {0};
            if (sbx_prepare(p, &err) < 0) policy_diags_add(&diags, "%s", err.msg);
        }
    }
    for (size_t i = 0; i < diags.n; i++)
        fprintf(stderr, "%s\n", diags.msgs[i]);
    bad = diags.n > 0;
    if (!bad)
        printf("%zu policies OK in %s\n", set ? set->n : 0, argv[2]);
    else
        fprintf(stderr, "%zu error(s)\n", diags.n);
    policy_diags_free(&diags);
    policy_set_unref(set);
    sbx_shutdown();
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", tmp);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return bad ? 1 : 0;
}

int cmd_audit(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "usage: gatehouse audit verify DIR\n");
        return 2;
    }
    struct audit_verify_report rep = {0};
    struct gate_error err = {0};
    int rc = audit_verify(argv[2], &rep, &err);
    if (rc < 0) {
        fprintf(stderr, "audit verify: %s\n", err.msg);
        return 2;
    }
    if (rc > 0) {
        printf("TAMPERED: first bad record seq %llu: %s (%llu records verified before it)\n",
               (unsigned long long)rep.first_bad, rep.reason, (unsigned long long)rep.records);
        return 1;
    }
    printf("OK: %llu records, hash chain intact\n", (unsigned long long)rep.records);
    return 0;
}

int main(int argc, char **argv)
{
    /* Make sure fds 0-2 are open, so that no file we open later (an audit segment) can become
     * "stdout" and receive stray writes. */
    for (int fd = open("/dev/null", O_RDWR); fd >= 0 && fd <= 2; fd = open("/dev/null", O_RDWR))
        ;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("gatehouse %s\n", GATE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gatehouse: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
