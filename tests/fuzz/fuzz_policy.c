/* fuzz_policy.c: libFuzzer target for the policy loader: safe YAML, every policy key and
 * the argument-schema compiler, then one validation of a fixed argument object against
 * whatever schema compiled. Any input must give a clean error or a policy, never a crash,
 * a leak or unbounded work. Seeds: tests/fuzz/corpus/policy/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ynode *root = NULL;
    struct gate_error err = {0};
    if (ynode_load_buf("fuzz.yaml", (const char *)data, size, &root, &err) == 0) ynode_free(root);

    struct policy *p = NULL;
    struct policy_diags diags = {0};
    if (policy_load_buf("fuzz.yaml", (const char *)data, size, &p, &diags) == 0) {
        json_t *args = json_pack("{s:s, s:i, s:[s, i], s:{s:n}}", "text", "h\xc3\xa9llo", "n", 3,
                                 "list", "a", 1, "obj", "k");
        if (args) policy_check_args(p, args, &err);
        json_decref(args);
        policy_free(p);
    }
    policy_diags_free(&diags);
    return 0;
}
