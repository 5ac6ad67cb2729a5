/* fuzz_policy.c: libFuzzer target for the policy loader: safe YAML, every policy key and
 * the argument-schema compiler (patterns translated from ECMA-262, $ref graphs), then the
 * validation of a few fixed argument objects against whatever schema compiled, and of the
 * published schema against itself. Any input must give a clean error or a policy, never a
 * crash, a leak or unbounded work. Seeds: tests/fuzz/corpus/policy/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const instances[] = {
    "{\"text\": \"h\\u00e9llo\", \"n\": 3, \"list\": [\"a\", 1], \"obj\": {\"k\": null}}",
    "{\"text\": \"acme\\n\", \"n\": 3.0, \"list\": [[1, 1.0], {\"b\": 2, \"a\": 1}], \"x\": 1e300}",
    "{\"a\": {\"a\": {\"a\": [{\"a\": [0.1, -0, \"2026-12-02T10:20:30Z\", \"::1\"]}]}}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ynode *root = NULL;
    struct gate_error err = {0};
    if (ynode_load_buf("fuzz.yaml", (const char *)data, size, &root, &err) == 0) ynode_free(root);

    struct policy *p = NULL;
    struct policy_diags diags = {0};
    if (policy_load_buf("fuzz.yaml", (const char *)data, size, &p, &diags) == 0) {
        for (size_t i = 0; i < sizeof(instances) / sizeof(instances[0]); i++) {
            json_t *args = json_loads(instances[i], 0, NULL);
            if (args) policy_check_args(p, args, &err);
            json_decref(args);
        }
        policy_check_args(p, p->arguments, &err); /* a schema is a value too */
        policy_free(p);
    }
    policy_diags_free(&diags);
    return 0;
}
