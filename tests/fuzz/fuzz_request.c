/* fuzz_request: the gateway's handling of a call's body: parse it as the HTTP layer does
 * (depth cap, duplicate keys, NUL in names) and validate the arguments against a compiled
 * schema that uses every keyword, as POST /v1/tools/{name}/calls does before anything runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"

static const char policy_yaml[] =
    "name: fuzz\n"
    "description: fuzz target\n"
    "command: [\"/bin/true\"]\n"
    "isolation: process\n"
    "arguments:\n"
    "  type: object\n"
    "  properties:\n"
    "    text: {type: string, minLength: 1, maxLength: 64, pattern: \"^[a-z]+( [a-z]+)*$\"}\n"
    "    n: {type: integer, minimum: -5, maximum: 5}\n"
    "    x: {type: number, maximum: 1.5}\n"
    "    mode: {enum: [\"a\", \"b\", 3, null]}\n"
    "    tags: {type: array, maxItems: 4, items: {type: string, maxLength: 8}}\n"
    "    opt: {type: [boolean, \"null\"]}\n"
    "    nested:\n"
    "      type: object\n"
    "      properties: {k: {type: string}}\n"
    "      required: [k]\n"
    "      additionalProperties: true\n"
    "  required: [text]\n";

static struct policy *policy;

static void load_policy(void)
{
    struct policy_diags diags = {0};
    if (policy_load_buf("fuzz.yaml", policy_yaml, sizeof(policy_yaml) - 1, &policy, &diags) < 0) {
        for (size_t i = 0; i < diags.n; i++)
            fprintf(stderr, "%s\n", diags.msgs[i]);
        abort();
    }
    policy_diags_free(&diags);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!policy) load_policy();
    if (size > GW_MAX_BODY) return 0;
    char *body = malloc(size + 1);
    if (!body) return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    struct http_req req = {.method = "POST",
                           .path = "/v1/tools/fuzz/calls",
                           .body = body,
                           .body_len = size,
                           .content_type = "application/json"};
    json_t *v = NULL;
    struct gate_error err = {0};
    if (http_parse_body(&req, &v, &err) == 0) {
        json_t *args = json_object_get(v, "arguments");
        if (args && policy_check_args(policy, args, &err) < 0 &&
            err.code != GATE_E_INVALID_ARGUMENTS)
            abort(); /* validation failures must use the one code */
        json_decref(v);
    } else if (gate_code_http(err.code) != 400) {
        abort(); /* every malformed body is a 400 */
    }
    free(body);
    return 0;
}
