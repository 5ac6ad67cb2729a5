/* fuzz_schema.c: libFuzzer target for the pattern translator (ECMA-262 to PCRE2) and the
 * matcher behind `pattern`: the input is a pattern, a NUL byte, then a subject string. The
 * pattern goes to the compiler as the YAML reader would hand it over (a scalar node), and when
 * it compiles, the subject is checked against it. Any input must compile or be refused with a
 * message, and match or not, within the per-call budgets. Seeds: tests/fuzz/corpus/schema/. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t plen = nul ? (size_t)(nul - (const char *)data) : size;
    char *pattern = strndup((const char *)data, plen);
    json_t *subject = nul ? json_stringn(nul + 1, size - plen - 1) : json_string("");
    if (!pattern || !subject) { /* not UTF-8, or out of memory */
        free(pattern);
        json_decref(subject);
        return 0;
    }
    struct ynode value = {.kind = YNODE_SCALAR, .loc = {1, 10}, .scalar = pattern, .quoted = true};
    struct ynode *items[] = {&value};
    char *keys[] = {"pattern"};
    struct policy_loc key_locs[] = {{1, 1}};
    struct ynode map = {.kind = YNODE_MAP,
                        .loc = {1, 1},
                        .keys = keys,
                        .key_locs = key_locs,
                        .items = items,
                        .n = 1};
    struct policy_diags diags = {0};
    struct policy_schema *s = policy_schema_compile("fuzz.yaml", &map, 0, &diags);
    if (s) {
        struct gate_error err = {0};
        policy_schema_check(s, subject, &err);
        policy_schema_free(s);
    }
    policy_diags_free(&diags);
    json_decref(subject);
    free(pattern);
    return 0;
}
