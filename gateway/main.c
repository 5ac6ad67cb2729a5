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
    {"call", cmd_call, "call TOOL [ARGUMENTS-JSON] [--url URL]: call a tool on a running gateway"},
    {"approvals", cmd_approvals, "approvals list|show|approve|deny: decide held calls"},
};

static void usage(void)
{
    fprintf(stderr, "usage: gatehouse COMMAND [ARGS]\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(stderr, "  %-10s %s\n", commands[i].name, commands[i].summary);
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

int cmd_call(int argc, char **argv)
{
    const char *url = getenv("GATEHOUSE_URL") ? getenv("GATEHOUSE_URL") : "http://127.0.0.1:8080";
    const char *tool = NULL, *args = "{}", *agent = "cli";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc)
            agent = argv[++i];
        else if (!tool)
            tool = argv[i];
        else
            args = argv[i];
    }
    if (!tool) {
        fprintf(stderr, "usage: gatehouse call TOOL [ARGUMENTS-JSON] [--url URL] [--agent NAME]\n");
        return 2;
    }
    json_error_t jerr;
    json_t *a = json_loads(args, JSON_REJECT_DUPLICATES, &jerr);
    if (!a) {
        fprintf(stderr, "gatehouse call: arguments are not JSON: %s\n", jerr.text);
        return 2;
    }
    json_t *body = json_pack("{s:o,s:s}", "arguments", a, "agent", agent);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[512];
    snprintf(path, sizeof(path), "/v1/tools/%s/calls", tool);
    int status = 0;
    struct gate_buf resp = {0};
    struct gate_error err = {0};
    int rc = gw_client_request(url, "POST", path, NULL, text, &status, &resp, &err);
    free(text);
    if (rc < 0) {
        fprintf(stderr, "gatehouse call: %s\n", err.msg);
        return 2;
    }
    printf("%s\n", resp.data ? resp.data : "");
    gate_buf_free(&resp);
    return status >= 200 && status < 300 ? 0 : 1;
}

int main(int argc, char **argv)
{
    /* Make sure fds 0-2 are open, so that no file we open later (an audit segment) can become
     * "stdout" and receive stray writes. */
    for (int fd = open("/dev/null", O_RDWR); fd >= 0 && fd <= 2; fd = open("/dev/null", O_RDWR))
        ;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gatehouse: unknown command '%s'\n", argv[1]);
    usage();
    return 2;
}
