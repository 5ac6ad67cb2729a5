/* sandbox.c: the tier table and the dispatch of sandbox.h. */
#include "sandbox.h"

#include <stdlib.h>
#include <string.h>

#include "netpolicy.h"
#include "sbx_internal.h"

/* The tiers compiled into this gateway, one row each (crun's static_handlers[]). CMake defines
 * GATE_TIER_<NAME> for every tier directory it builds (see sandboxes/CMakeLists.txt); a tier left
 * out is reported unavailable, and a policy naming it fails to load: never silently weakened. */
static const struct sbx_ops *const builtin[] = {
    &sbx_process_ops,
#ifdef GATE_TIER_CONTAINER
    &sbx_container_ops,
#endif
#ifdef GATE_TIER_GVISOR
    &sbx_gvisor_ops,
#endif
#ifdef GATE_TIER_MICROVM
    &sbx_microvm_ops,
#endif
#ifdef GATE_TIER_WASM
    &sbx_wasm_ops,
#endif
};

static const struct sbx_ops *tiers[ISOLATION__COUNT];
static char unavailable[ISOLATION__COUNT][512];

static const char *const status_names[] = {
#define SBX_X_STR(name, str) str,
    SBX_STATUS_MAP(SBX_X_STR)
#undef SBX_X_STR
};

const char *sbx_status_str(enum sbx_status s)
{
    return (unsigned)s < SBX__COUNT ? status_names[s] : "unknown";
}

void sbx_result_free(struct sbx_result *r)
{
    gate_buf_free(&r->out);
    gate_buf_free(&r->err);
    json_decref(r->activity);
    r->activity = NULL;
}

int sbx_init(const struct sbx_config *cfg)
{
    int available = 0;
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        const struct sbx_ops *ops = builtin[i];
        struct gate_error err = {0};
        if (ops->init && ops->init(cfg, &err) < 0) {
            snprintf(unavailable[ops->isolation], sizeof(unavailable[0]), "%.500s", err.msg);
            gate_log("warn", "sandbox.unavailable", "isolation %s: %s", ops->name, err.msg);
            continue;
        }
        tiers[ops->isolation] = ops;
        available++;
    }
    for (int i = 0; i < ISOLATION__COUNT; i++)
        if (!tiers[i] && !unavailable[i][0])
            snprintf(unavailable[i], sizeof(unavailable[0]), "not built into this gateway");
    return available > 0 ? 0 : -1;
}

const char *sbx_unavailable_reason(enum isolation iso)
{
    return (unsigned)iso < ISOLATION__COUNT ? unavailable[iso] : "unknown isolation";
}

int sbx_prepare(struct policy *p, struct gate_error *err)
{
    const struct sbx_ops *ops =
        (unsigned)p->isolation < ISOLATION__COUNT ? tiers[p->isolation] : NULL;
    if (!ops)
        return gate_err(err, GATE_E_POLICY, "%s:%d:%d: isolation '%s' is not available: %s",
                        p->path, p->isolation_loc.line, p->isolation_loc.col,
                        policy_isolation_name(p->isolation), sbx_unavailable_reason(p->isolation));
    /* Every policy error has FILE:LINE:COL: the entry the tier refused, else `isolation:`. */
    struct policy_loc at = p->isolation_loc;
    p->sbx_error_loc = (struct policy_loc){0, 0};
    if (ops->prepare && ops->prepare(p, err) < 0) {
        if (p->sbx_error_loc.line) at = p->sbx_error_loc;
        return gate_err_wrap(err, "%s:%d:%d", p->path, at.line, at.col);
    }
    return 0;
}

int sbx_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
            struct gate_error *err)
{
    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    const struct sbx_ops *ops =
        (unsigned)p->isolation < ISOLATION__COUNT ? tiers[p->isolation] : NULL;
    if (!ops) {
        res->status = SBX_SANDBOX_ERROR;
        return gate_err(err, GATE_E_SANDBOX, "isolation '%s' is not available",
                        policy_isolation_name(p->isolation));
    }
    int rc = ops->run(p, call, res, err);
    if (rc < 0) {
        res->status = SBX_SANDBOX_ERROR;
        snprintf(res->detail, sizeof(res->detail), "%.250s", err ? err->msg : "sandbox error");
    }
    return rc;
}

void sbx_shutdown(void)
{
    for (int i = 0; i < ISOLATION__COUNT; i++)
        if (tiers[i] && tiers[i]->shutdown) tiers[i]->shutdown();
    /* Last: the tiers' own helpers (pools, launchers) were born in the filtered cgroup too, and
     * it can only be removed once they are gone. */
    sbx_net_shutdown();
}

void sbx_metrics(struct gate_buf *out)
{
    for (int i = 0; i < ISOLATION__COUNT; i++)
        if (tiers[i] && tiers[i]->metrics) tiers[i]->metrics(out);
}
