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
    {"mcp", cmd_mcp, "mcp [--url URL] [--token-env VAR]: MCP over stdio, to a running gateway"},
    {"db", cmd_db, "db migrate [--check]: the shared PostgreSQL schema (several gateways)"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse COMMAND [ARGS]   (gatehouse COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "help", "help [COMMAND|errors|exit-status]: more on a topic");
    fprintf(f, "  %-10s %s\n", "--version", "print the version");
    fprintf(f, "\nThe manual: man gatehouse (installed by cmake --install).\n");
}

/* gatehouse help [TOPIC]: a command's own --help, or a table the code is made of (the error
 * table is GATE_ERROR_MAP itself, so this page cannot drift from what the API answers). */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            char *args[] = {argv[1], "--help", NULL};
            return commands[i].run(2, args);
        }
    if (!strcmp(argv[1], "errors")) {
        printf("Every refused request is answered with this status and a body\n"
               "  {\"error\": {\"code\": CODE, \"message\": TEXT}}\n\n%-6s %-28s %s\n",
               "STATUS", "CODE", "MEANING");
        for (int c = GATE_E_OK + 1; c < GATE_E__COUNT; c++)
            printf("%-6d %-28s %s\n", gate_code_http(c), gate_code_str(c), gate_code_message(c));
        return 0;
    }
    if (!strcmp(argv[1], "exit-status")) {
        printf("0   success (call: the tool's status is succeeded)\n"
               "1   a check failed (policy check, audit verify: tampered) or, for call, the tool\n"
               "    ran and did not succeed\n"
               "2   usage error, or the command could not do its work (unreachable gateway)\n"
               "3   call: the call is still held for approval (--wait expired); audit verify:\n"
               "    intact with warnings\n"
               "70  serve: a shutdown that did not finish in time (the watchdog)\n");
        return 0;
    }
    fprintf(stderr, "gatehouse help: no topic '%s' (try: gatehouse help)\n", argv[1]);
    return 2;
}

int cmd_audit(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--help")) {
        printf("usage: gatehouse audit verify DIR\n\nCheck the audit log in DIR (STATE/audit): "
               "the hash chain, the start record, segment numbering. Exit 0 intact, 1 tampered, "
               "2 unreadable.\n");
        return 0;
    }
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
    for (size_t i = 0; i < rep.n_msgs; i++)
        printf("%s: %s\n", rep.msgs[i].warning ? "WARNING" : "note", rep.msgs[i].text);
    if (rep.n_dropped) printf("... and %zu more not shown\n", rep.n_dropped);
    if (rc == AUDIT_VERIFY_TAMPERED) {
        printf("TAMPERED: first bad record seq %llu: %s (%llu records verified before it)\n",
               (unsigned long long)rep.first_bad, rep.reason, (unsigned long long)rep.records);
        return 1;
    }
    if (rc == AUDIT_VERIFY_WARNINGS) {
        printf("INTACT WITH WARNINGS: %llu records, hash chain intact; %zu warning(s) above\n",
               (unsigned long long)rep.records, rep.n_warnings);
        return 3;
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
    if (!strcmp(argv[1], "help")) return cmd_help(argc - 1, argv + 1);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gatehouse: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
