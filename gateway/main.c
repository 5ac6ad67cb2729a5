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
    {"audit", cmd_audit,
     "audit verify DIR [--anchors URI|--anchor-file PATH]: check the audit log"},
    {"call", cmd_call, "call TOOL [ARGUMENTS-JSON] [--wait S]: call a tool on a running gateway"},
    {"approvals", cmd_approvals, "approvals list|show|approve|deny: decide held calls"},
    {"agents", cmd_agents, "agents add NAME: make an agent's token (printed once)"},
    {"mcp", cmd_mcp, "mcp [--url URL] [--token-env VAR]: MCP over stdio, to a running gateway"},
    {"db", cmd_db,
     "db migrate [--check] | prune-anchors: the shared PostgreSQL (several gateways)"},
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
               "1   a check failed (policy check, policy lint: errors, audit verify: tampered)\n"
               "    or, for call, the tool ran and did not succeed\n"
               "2   usage error, or the command could not do its work (unreachable gateway);\n"
               "    policy lint: a finding at or above --fail-on\n"
               "3   call: the call is still held for approval (--wait expired); audit verify:\n"
               "    intact with warnings; policy diff: a change weakens security\n"
               "4   audit verify --anchors/--anchor-file: the chain is intact but the log lacks\n"
               "    an anchored head (a cut tail), holds another record at an anchored seq (a\n"
               "    rewritten tail), or its node has no anchor there\n"
               "64  policy ...: a command line it cannot understand\n"
               "70  serve: a shutdown that did not finish in time (the watchdog)\n");
        return 0;
    }
    fprintf(stderr, "gatehouse help: no topic '%s' (try: gatehouse help)\n", argv[1]);
    return 2;
}

static const char audit_usage[] =
    "usage: gatehouse audit verify DIR [--anchors postgresql://... | --anchor-file PATH] "
    "[--node ID]\n";

/* verify's options after DIR: 0, or 2 (usage) after saying why. */
static int audit_args(int argc, char **argv, struct audit_anchor_target *t, const char **node)
{
    for (int i = 3; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(argv[i], "--anchors") && !t->database)
            t->database = v;
        else if (v && !strcmp(argv[i], "--anchor-file") && !t->file)
            t->file = v;
        else if (v && !strcmp(argv[i], "--node") && !*node)
            *node = v;
        else
            return fprintf(stderr, "%s", audit_usage), 2;
    }
    if ((t->database && t->file) || (*node && !t->database && !t->file)) {
        fprintf(stderr,
                "audit verify: give one of --anchors and --anchor-file (--node needs one)\n");
        return 2;
    }
    if (t->database && strncmp(t->database, "postgresql://", 13) != 0 &&
        strncmp(t->database, "postgres://", 11) != 0) {
        fprintf(stderr, "audit verify: --anchors takes a postgresql://... URI (password: "
                        "PGPASSWORD or ~/.pgpass)\n");
        return 2;
    }
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    static const char *const valued[] = {"--anchors", "--anchor-file", "--node", NULL};
    if (cli_wants_help(argc, argv, valued)) {
        printf("%s\nCheck the audit log in DIR (STATE/audit): the hash chain, the start record, "
               "segment numbering. With --anchors (the gateways' database) or --anchor-file, also "
               "that the log still holds every chain head its gateway anchored there (node ID, "
               "default: the node the log's records name): a cut or rewritten tail. Exit 0 "
               "intact, 1 tampered, 2 unreadable, 3 intact with warnings, 4 not what was "
               "anchored.\n",
               audit_usage);
        return 0;
    }
    if (argc < 3 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "%s", audit_usage);
        return 2;
    }
    struct audit_anchor_target target = {0};
    const char *node = NULL;
    if (audit_args(argc, argv, &target, &node) != 0) return 2;
    struct audit_verify_report rep = {0};
    struct gate_error err = {0};
    bool anchored = target.database || target.file;
    int rc = anchored ? audit_verify_anchored(argv[2], &target, node, &rep, &err)
                      : audit_verify(argv[2], &rep, &err);
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
    if (rc == AUDIT_VERIFY_ANCHOR_MISMATCH) {
        printf("NOT AS ANCHORED: node %s: %s (hash chain intact: %llu records)\n", rep.node,
               rep.reason, (unsigned long long)rep.records);
        return 4;
    }
    char anchors[160] = "";
    if (anchored)
        snprintf(anchors, sizeof(anchors), "; all %llu anchored heads of node %s present",
                 (unsigned long long)rep.anchors, rep.node);
    if (rc == AUDIT_VERIFY_WARNINGS) {
        printf("INTACT WITH WARNINGS: %llu records, hash chain intact%s; %zu warning(s) above\n",
               (unsigned long long)rep.records, anchors, rep.n_warnings);
        return 3;
    }
    printf("OK: %llu records, hash chain intact%s\n", (unsigned long long)rep.records, anchors);
    return 0;
}

bool cli_wants_help(int argc, char **argv, const char *const *valued)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return true;
        for (size_t k = 0; valued && valued[k]; k++)
            if (!strcmp(argv[i], valued[k])) {
                i++; /* its value, whatever it says */
                break;
            }
    }
    return false;
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
