/* schema_api.c: argument schemas compiled outside a policy file (agents' grants), with the
 * same compiler and validator as a policy's `arguments`. */
#include <stdlib.h>

#include "policy_internal.h"

struct policy_schema {
    struct policy holder; /* the validator reads the compiled schema from a policy */
};

struct policy_schema *policy_schema_load(const struct ynode *n, const char *file,
                                         struct policy_diags *diags)
{
    struct policy_schema *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    struct pctx c = {.path = file, .p = &s->holder, .diags = diags};
    s->holder.schema = policy_schema_compile(&c, n);
    if (c.errors || !s->holder.schema) {
        if (!c.errors) policy_diags_add(diags, "%s: out of memory", file);
        policy_schema_destroy(s);
        return NULL;
    }
    return s;
}

int policy_schema_check(const struct policy_schema *s, const json_t *args, struct gate_error *err)
{
    return policy_check_args(&s->holder, args, err);
}

void policy_schema_destroy(struct policy_schema *s)
{
    if (!s) return;
    policy_schema_free(s->holder.schema);
    free(s);
}
