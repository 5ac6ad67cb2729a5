/* cli_approvals.c: `gatehouse approvals`: look at and decide held calls on a running gateway.
 *
 *   gatehouse approvals list [--status pending|all|STATE] [--json]
 *   gatehouse approvals show ID
 *   gatehouse approvals approve ID [--reason TEXT] [--as NAME]
 *   gatehouse approvals deny ID [--reason TEXT] [--as NAME]
 *   common options: --url URL, --token-env VAR (default GATEHOUSE_APPROVER_TOKEN)
 *
 * The decision is recorded under the approver the token belongs to; --as, if given, must be
 * that name (the gateway checks). The token is read from the environment, never from the
 * command line, where other users could read it in /proc.
 *
 * approve/deny first fetch the held call and send back the args_sha256, tool and policy
 * hash it shows, so what is approved is exactly what was displayed.
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "gateway.h"

struct cli_opts {
    const char *verb, *id, *url, *token, *as, *reason, *status;
    bool json;
};

static void usage(FILE *f)
{
    fprintf(
        f, "usage: gatehouse approvals list [--status pending|all|STATE] [--json]\n"
           "       gatehouse approvals show ID\n"
           "       gatehouse approvals approve ID [--reason TEXT] [--as NAME]\n"
           "       gatehouse approvals deny ID [--reason TEXT] [--as NAME]\n\n"
           "  --url URL          the gateway (default $GATEHOUSE_URL, else http://127.0.0.1:8080)\n"
           "  --token-env VAR    read the approver's token from $VAR (default "
           "GATEHOUSE_APPROVER_TOKEN)\n"
           "  --as NAME          check that the token is NAME's (the decision is recorded under "
           "the token's approver)\n");
}

static int parse_opts(int argc, char **argv, struct cli_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->url = getenv("GATEHOUSE_URL") ? getenv("GATEHOUSE_URL") : "http://127.0.0.1:8080";
    const char *token_env = "GATEHOUSE_APPROVER_TOKEN";
    if (argc < 2) return -1;
    o->verb = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--url") == 0         ? &o->url
                            : strcmp(a, "--token-env") == 0 ? &token_env
                            : strcmp(a, "--as") == 0        ? &o->as
                            : strcmp(a, "--reason") == 0    ? &o->reason
                            : strcmp(a, "--status") == 0    ? &o->status
                                                            : NULL;
        if (slot) {
            if (i + 1 >= argc) return -1;
            *slot = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (a[0] != '-' && !o->id) {
            o->id = a;
        } else {
            return -1;
        }
    }
    o->token = getenv(token_env);
    bool needs_id = strcmp(o->verb, "list") != 0;
    if (needs_id != (o->id != NULL)) return -1;
    return 0;
}

/* Send one request; on a non-2xx answer print the error and return -1. *out: parsed body. */
static int request(const struct cli_opts *o, const char *method, const char *path, const char *body,
                   json_t **out)
{
    struct gate_error err = {0};
    struct gate_buf resp = {0};
    char auth[1024];
    int status = 0;
    if (!o->token || !*o->token) {
        fprintf(stderr, "gatehouse approvals: no token (set GATEHOUSE_APPROVER_TOKEN, or name "
                        "another variable with --token-env)\n");
        return -1;
    }
    snprintf(auth, sizeof(auth), "Bearer %s", o->token);
    if (gw_client_request(o->url, method, path, auth, body, &status, &resp, &err) < 0) {
        fprintf(stderr, "gatehouse approvals: %s\n", err.msg);
        return -1;
    }
    json_t *j = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
    gate_buf_free(&resp);
    if (status < 200 || status > 299) {
        json_t *e = json_object_get(j, "error");
        fprintf(stderr, "gatehouse approvals: HTTP %d %s: %s\n", status,
                json_string_value(json_object_get(e, "code")) ?: "",
                json_string_value(json_object_get(e, "message")) ?: "");
        json_decref(j);
        return -1;
    }
    if (!j) {
        fprintf(stderr, "gatehouse approvals: the gateway's answer is not JSON\n");
        return -1;
    }
    *out = j;
    return 0;
}

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) printf("%s\n", s);
    free(s);
}

/* A field for the terminal: agents choose some of these strings, so control characters
 * (escape sequences that could redraw the approver's screen) are shown as '?'. Up to eight
 * results may be used in one printf. */
static const char *str(const json_t *o, const char *k)
{
    static char bufs[8][512];
    static unsigned next;
    const char *v = json_string_value(json_object_get(o, k));
    if (!v) return "-";
    char *b = bufs[next++ % 8];
    size_t i = 0;
    for (; v[i] && i < sizeof(bufs[0]) - 1; i++) {
        unsigned char ch = (unsigned char)v[i];
        bool c1 = ch == 0xc2 && ((unsigned char)v[i + 1] & 0xe0) == 0x80; /* U+0080..U+009F */
        b[i] = ch < 0x20 || ch == 0x7f || c1 ? '?' : (char)ch;
        if (c1) b[++i] = '?';
    }
    b[i < sizeof(bufs[0]) ? i : sizeof(bufs[0]) - 1] = '\0';
    return b;
}

static int do_list(const struct cli_opts *o)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/approvals?status=%s", o->status ? o->status : "pending");
    json_t *j = NULL;
    if (request(o, "GET", path, NULL, &j) < 0) return 1;
    if (o->json) {
        print_json(j);
    } else {
        size_t i;
        json_t *c;
        printf("%-36s %-16s %-18s %-12s %-24s %s\n", "CALL", "TOOL", "STATUS", "AGENT", "EXPIRES",
               "ARGUMENTS");
        json_array_foreach(json_object_get(j, "approvals"), i, c)
        {
            char *args =
                json_dumps(json_object_get(c, "arguments"), JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%-36s %-16s %-18s %-12s %-24s %.80s\n", str(c, "call_id"), str(c, "tool"),
                   str(c, "status"), str(c, "agent"), str(c, "expires_at"), args ? args : "-");
            free(args);
        }
    }
    json_decref(j);
    return 0;
}

static json_t *fetch(const struct cli_opts *o)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/approvals?call_id=%s", o->id);
    json_t *j = NULL;
    if (strspn(o->id, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(o->id)) {
        fprintf(stderr, "gatehouse approvals: '%s' is not a call id\n", o->id);
        return NULL;
    }
    if (request(o, "GET", path, NULL, &j) < 0) return NULL;
    json_t *call = json_incref(json_array_get(json_object_get(j, "approvals"), 0));
    json_decref(j);
    return call;
}

static int do_decide(const struct cli_opts *o, const char *decision)
{
    json_t *call = fetch(o);
    if (!call) return 1;
    const json_t *ap = json_object_get(call, "approval");
    char *args = json_dumps(json_object_get(call, "arguments"), JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(stderr, "%s call %s: tool %s, arguments %s (args_sha256 %s)\n", decision, o->id,
            str(call, "tool"), args ? args : "-", str(ap, "args_sha256"));
    free(args);
    json_t *body = json_pack("{s:s,s:s?,s:s,s:s,s:s,s:s?}", "decision", decision, "approver", o->as,
                             "args_sha256", str(ap, "args_sha256"), "tool", str(call, "tool"),
                             "policy_sha256", str(ap, "policy_sha256"), "reason", o->reason);
    json_decref(call);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char path[256];
    snprintf(path, sizeof(path), "/v1/approvals/%s", o->id);
    json_t *j = NULL;
    int rc = text && request(o, "POST", path, text, &j) == 0 ? 0 : 1;
    free(text);
    if (rc == 0) print_json(j);
    json_decref(j);
    return rc;
}

int cmd_approvals(int argc, char **argv)
{
    struct cli_opts o;
    static const char *const valued[] = {"--url",    "--token-env", "--as",
                                         "--reason", "--status",    NULL};
    if (cli_wants_help(argc, argv, valued)) {
        usage(stdout);
        return 0;
    }
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(o.verb, "list") == 0) return do_list(&o);
    if (strcmp(o.verb, "show") == 0) {
        json_t *call = fetch(&o);
        if (!call) return 1;
        print_json(call);
        json_decref(call);
        return 0;
    }
    if (strcmp(o.verb, "approve") == 0) return do_decide(&o, "approve");
    if (strcmp(o.verb, "deny") == 0) return do_decide(&o, "deny");
    usage(stderr);
    return 2;
}
