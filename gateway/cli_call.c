/* cli_call.c: `gatehouse call`: call a tool on a running gateway, from a shell or a script.
 *
 *   gatehouse call TOOL [ARGUMENTS-JSON] [--url URL] [--token-env VAR] [--session S]
 *                  [--wait SECONDS]
 *
 * Exit status: 0 when the call's status is succeeded; 1 when it ran and did not succeed, was
 * refused, denied or expired; 3 when it is still held for approval (or running) after --wait;
 * 2 on a usage or connection error. The token comes from an environment variable (never
 * argv, which every user of the host can read in ps).
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "gateway.h"

#define WAIT_STEP_S 120 /* the gateway's longest single long poll */

struct call_opts {
    const char *tool, *args, *url, *token_env, *session;
    unsigned wait_s;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse call TOOL [ARGUMENTS-JSON] [OPTION]...\n\n"
               "Call TOOL on a running gateway and print the call's record (JSON).\n\n"
               "  --url URL          the gateway (default $GATEHOUSE_URL, else "
               "http://127.0.0.1:8080)\n"
               "  --token-env VAR    read the agent's bearer token from $VAR (default "
               "GATEHOUSE_TOKEN; none: anonymous)\n"
               "  --session S        a free label recorded with the call\n"
               "  --wait SECONDS     if the call is held for approval, wait up to this long for "
               "its result\n\n"
               "Exit status: 0 succeeded; 1 did not succeed (failed, refused, denied, expired, "
               "...);\n3 still held or running after --wait; 2 usage or connection error.\n");
}

static int parse(int argc, char **argv, struct call_opts *o)
{
    *o = (struct call_opts){.token_env = "GATEHOUSE_TOKEN"};
    o->url = getenv("GATEHOUSE_URL") ? getenv("GATEHOUSE_URL") : "http://127.0.0.1:8080";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        const char **slot = strcmp(a, "--url") == 0         ? &o->url
                            : strcmp(a, "--token-env") == 0 ? &o->token_env
                            : strcmp(a, "--session") == 0   ? &o->session
                                                            : NULL;
        if (slot || strcmp(a, "--wait") == 0) {
            if (i + 1 >= argc) return -1;
            if (slot) {
                *slot = argv[++i];
                continue;
            }
            char *end = NULL;
            unsigned long w = strtoul(argv[++i], &end, 10);
            if (*end || w > 86400) return -1;
            o->wait_s = (unsigned)w;
        } else if (a[0] == '-') {
            return -1;
        } else if (!o->tool) {
            o->tool = a;
        } else if (!o->args) {
            o->args = a;
        } else {
            return -1;
        }
    }
    if (!o->args) o->args = "{}";
    return o->tool ? 0 : -1;
}

static json_t *request(const struct call_opts *o, const char *auth, const char *method,
                       const char *path, const char *body, int *status)
{
    struct gate_buf resp = {0};
    struct gate_error err = {0};
    if (gw_client_request(o->url, method, path, auth, body, status, &resp, &err) < 0) {
        fprintf(stderr, "gatehouse call: %s\n", err.msg);
        return NULL;
    }
    json_t *j = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
    if (!j) fprintf(stderr, "gatehouse call: the gateway answered %d: %s\n", *status, resp.data);
    gate_buf_free(&resp);
    return j;
}

static bool final(const json_t *rec)
{
    const char *st = json_string_value(json_object_get(rec, "status"));
    return st && strcmp(st, "pending_approval") && strcmp(st, "approved") &&
           strcmp(st, "running") && strcmp(st, "started");
}

int cmd_call(int argc, char **argv)
{
    struct call_opts o;
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    json_error_t jerr;
    json_t *a = json_loads(o.args, JSON_REJECT_DUPLICATES, &jerr);
    if (!a) {
        fprintf(stderr, "gatehouse call: arguments are not JSON: %s\n", jerr.text);
        return 2;
    }
    json_t *body = json_pack("{s:o,s:s*}", "arguments", a, "session", o.session);
    autofree char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    const char *token = getenv(o.token_env);
    autofree char *auth = NULL;
    if (token && *token && asprintf(&auth, "Bearer %s", token) < 0) return 2;
    char path[512];
    snprintf(path, sizeof(path), "/v1/tools/%s/calls", o.tool);
    int status = 0;
    json_t *rec = request(&o, auth, "POST", path, text, &status);
    uint64_t deadline = gate_monotonic_ns() + (uint64_t)o.wait_s * 1000000000ull;
    while (rec && status == 202 && o.wait_s && !final(rec)) {
        uint64_t now = gate_monotonic_ns();
        if (now >= deadline) break;
        unsigned left = (unsigned)((deadline - now) / 1000000000ull) + 1;
        snprintf(path, sizeof(path), "/v1/calls/%s?wait=%us",
                 json_string_value(json_object_get(rec, "call_id")),
                 left < WAIT_STEP_S ? left : WAIT_STEP_S);
        json_decref(rec);
        int s2 = 0;
        rec = request(&o, auth, "GET", path, NULL, &s2);
        if (s2 != 200) status = s2;
    }
    if (!rec) return 2;
    autofree char *out = json_dumps(rec, JSON_INDENT(2));
    printf("%s\n", out ? out : "");
    const char *st = json_string_value(json_object_get(rec, "status"));
    int rc = status >= 400 ? 1 : !final(rec) ? 3 : (st && strcmp(st, "succeeded") == 0) ? 0 : 1;
    json_decref(rec);
    return rc;
}
