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
    {"policy", cmd_policy, "policy check|lint|diff|explain|schema: validate and review policies"},
    {"audit", cmd_audit, "audit verify DIR: check the audit log's hash chain"},
    {"call", cmd_call, "call TOOL [ARGUMENTS-JSON] [--wait S]: call a tool on a running gateway"},
    {"approvals", cmd_approvals, "approvals list|show|approve|deny: decide held calls"},
    {"agents", cmd_agents, "agents add NAME: make an agent's token (printed once)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse COMMAND [ARGS]   (gatehouse COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "--version", "print the version");
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
