/* engine.c: the call engine: policies, validation, hold or run, records, life cycle. */
#include <stdlib.h>
#include <string.h>

#include "calls_internal.h"

void call_changed(struct call_engine *e, const char *call_id)
{
    if (e->cfg.on_change) e->cfg.on_change(e->cfg.on_change_ctx, call_id);
}

/* ---- policies ------------------------------------------------------------------------- */
struct policy_set *call_engine_policies(struct call_engine *e)
{
    pthread_mutex_lock(&e->policy_lock);
    struct policy_set *s = e->policies ? policy_set_ref(e->policies) : NULL;
    pthread_mutex_unlock(&e->policy_lock);
    return s;
}

/* Load a set and prepare every policy in its tier; all or nothing. */
static int load_set(const char *dir, struct policy_set **out, struct policy_diags *diags)
{
    struct policy_set *set = NULL;
    if (policy_set_load(dir, &set, diags) < 0) return -1;
    int bad = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct gate_error err = {0};
        if (sbx_prepare(set->items[i], &err) < 0) {
            policy_diags_add(diags, "%s", err.msg);
            bad++;
        }
    }
    if (bad) {
        policy_set_unref(set);
        return -1;
    }
    *out = set;
    return 0;
}

static void audit_rejected_set(struct call_engine *e, const struct policy_diags *d)
{
    json_t *errors = json_array();
    for (size_t i = 0; i < d->n; i++) {
        gate_log("error", "policy.rejected", "%s", d->msgs[i]);
        json_array_append_new(errors, json_string(d->msgs[i]));
    }
    json_t *f = json_pack("{s:s,s:o}", "dir", e->cfg.policy_dir, "errors", errors);
    audit_append(e->cfg.audit, "policy.rejected", f, NULL, NULL);
    json_decref(f);
}

int call_engine_reload(struct call_engine *e, struct policy_diags *diags)
{
    struct policy_set *set = NULL;
    if (load_set(e->cfg.policy_dir, &set, diags) < 0) {
        audit_rejected_set(e, diags);
        call_metrics_reload_failed(e->metrics);
        gate_log("error", "policy.reload_failed", "the previous policy set stays in force");
        return -1;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < set->n; i++)
        json_array_append_new(list, json_pack("{s:s,s:s}", "name", set->items[i]->name, "sha256",
                                              set->items[i]->sha256));
    json_t *f = json_pack("{s:s,s:o}", "dir", e->cfg.policy_dir, "policies", list);
    audit_append(e->cfg.audit, "policy.loaded", f, NULL, NULL);
    json_decref(f);
    pthread_mutex_lock(&e->policy_lock);
    struct policy_set *old = e->policies;
    e->policies = set;
    pthread_mutex_unlock(&e->policy_lock);
    policy_set_unref(old); /* freed when the last call using it finishes */
    gate_log("info", "policy.loaded", "%zu policies from %s", set->n, e->cfg.policy_dir);
    return 0;
}

/* ---- approved calls ------------------------------------------------------------------------ */
/* The approval module's run hook: run an approved call under the policy it was shown. */
static int run_approved(void *ctx, const struct approval_call *c, json_t **result,
                        struct gate_error *err)
{
    struct call_engine *e = ctx;
    struct policy_set *set = call_engine_policies(e);
    const struct policy *p = set ? policy_set_find(set, c->tool) : NULL;
    int rc;
    if (!p)
        rc = gate_err(err, GATE_E_TOOL_NOT_FOUND, "tool '%s' is no longer loaded", c->tool);
    else if (strcmp(p->sha256, c->policy_sha256) != 0)
        rc = gate_err(err, GATE_E_DECISION_MISMATCH,
                      "the policy of '%s' changed after approval; not run", c->tool);
    else {
        /* Counted, not capped: an approved call must run. SIGTERM's grace waits for it. */
        atomic_fetch_add(&e->inflight, 1);
        rc = call_execute(e, p, c, false, result, err);
        atomic_fetch_sub(&e->inflight, 1);
    }
    policy_set_unref(set);
    return rc;
}

static void approval_changed(void *ctx, const char *call_id)
{
    call_changed(ctx, call_id);
}

int call_engine_open_approval(struct call_engine *e, const char *state_dir,
                              const struct approval_config *cfg, const char *public_url,
                              struct gate_error *err)
{
    struct approval_hooks hooks = {.run = run_approved, .on_change = approval_changed, .ctx = e};
    return approval_open(state_dir, cfg, e->cfg.audit, public_url, &hooks, &e->approval, err);
}

struct approval *call_engine_approval(struct call_engine *e)
{
    return e->approval;
}

int call_engine_resume(struct call_engine *e, struct gate_error *err)
{
    return e->approval ? approval_resume(e->approval, err) : 0;
}

/* ---- one call ---------------------------------------------------------------------------- */
int call_reject(struct call_engine *e, const char *tool, const char *agent, struct gate_error *err)
{
    json_t *f = json_pack("{s:s,s:s*,s:s,s:s}", "tool", tool ? tool : "", "agent", agent, "code",
                          gate_code_str(err->code), "message", err->msg);
    struct gate_error aerr = {0};
    if (audit_append(e->cfg.audit, "call.rejected", f, NULL, &aerr) < 0) *err = aerr;
    json_decref(f);
    return -1;
}

static int validate(struct call_engine *e, const struct call_request *req,
                    const struct policy_set *set, const struct policy **p, struct gate_error *err)
{
    if (atomic_load(&e->stopping)) return gate_err(err, GATE_E_SHUTTING_DOWN, NULL);
    *p = set ? policy_set_find(set, req->tool) : NULL;
    if (!*p) return gate_err(err, GATE_E_TOOL_NOT_FOUND, "no tool named '%s'", req->tool);
    if (req->arguments && !json_is_object(req->arguments))
        return gate_err(err, GATE_E_INVALID_ARGUMENTS, "$: 'arguments' must be a JSON object");
    json_t *empty = req->arguments ? NULL : json_object();
    const json_t *args = req->arguments ? req->arguments : empty;
    int rc = policy_check_args(*p, args, err);
    if (rc == 0 && req->grant && policy_schema_check(req->grant, args, err) < 0)
        rc = gate_err_wrap(err, "the grant of agent '%s' on '%s'", req->agent, req->tool);
    json_decref(empty);
    return rc;
}

/* The max_pending quota (c->max_pending) is counted by the store in the hold's own transaction
 * (held calls survive restarts and may be held through other gateways). */
static int hold(struct call_engine *e, const struct policy *p, const struct approval_call *c,
                struct call_outcome *out, struct gate_error *err)
{
    int rc = approval_hold(e->approval, p, c, &out->record, err);
    if (rc < 0 && err->code == GATE_E_TOO_MANY_CALLS) out->retry_after = 60;
    return rc;
}

/* Hold or run a validated call; the concurrency slot is taken by the caller. */
static int dispatch(struct call_engine *e, const struct call_request *req, const struct policy *p,
                    struct call_outcome *out, struct gate_error *err)
{
    /* The tool reads exactly these bytes, and approvers are shown their hash. */
    json_t *empty = req->arguments ? NULL : json_object();
    autofree char *args_json =
        json_dumps(req->arguments ? req->arguments : empty, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(empty);
    if (!args_json) return gate_err(err, GATE_E_NOMEM, NULL);
    char args_sha[65], call_id[40];
    gate_sha256_hex(args_json, strlen(args_json), args_sha);
    gate_new_call_id(call_id);
    struct approval_call c = {call_id,  p->name,    p->sha256,    args_json,
                              args_sha, req->agent, req->session, req->max_pending};
    if (!p->approval.required) return call_execute(e, p, &c, true, &out->record, err);
    if (!e->approval) return gate_err(err, GATE_E_UNAVAILABLE, "the approval queue is not open");
    out->held = true;
    return hold(e, p, &c, out, err);
}

int call_submit(struct call_engine *e, const struct call_request *req, struct call_outcome *out,
                struct gate_error *err)
{
    memset(out, 0, sizeof(*out));
    struct policy_set *set = call_engine_policies(e);
    const struct policy *p = NULL;
    int rc = validate(e, req, set, &p, err);
    if (rc == 0 && atomic_fetch_add(&e->inflight, 1) >= e->cfg.max_concurrent) {
        atomic_fetch_sub(&e->inflight, 1);
        out->retry_after = 1;
        rc = gate_err(err, GATE_E_TOO_MANY_CALLS, "%u calls are already running",
                      e->cfg.max_concurrent);
    } else if (rc == 0) {
        rc = dispatch(e, req, p, out, err);
        atomic_fetch_sub(&e->inflight, 1);
        if (rc < 0) out->held = false;
    }
    policy_set_unref(set);
    /* Refused before anything ran (no record: nothing started, nothing held): say why. */
    return rc < 0 && !out->record ? call_reject(e, req->tool, req->agent, err) : rc;
}

json_t *call_get(struct call_engine *e, const char *call_id, const char *agent, bool *final,
                 struct gate_error *err)
{
    json_t *rec = call_records_get(e->records, call_id, agent);
    if (rec) {
        if (final)
            *final = strcmp(json_string_value(json_object_get(rec, "status")), "running") != 0;
        return rec;
    }
    return e->approval ? approval_call_record(e->approval, call_id, agent, final, err) : NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */
int call_engine_open(const struct call_engine_config *cfg, struct call_engine **out,
                     struct policy_diags *diags, struct gate_error *err)
{
    struct call_engine *e = calloc(1, sizeof(*e));
    if (!e) return gate_err(err, GATE_E_NOMEM, NULL);
    e->cfg = *cfg;
    e->cfg.policy_dir = strdup(cfg->policy_dir);
    e->records = call_records_new();
    e->metrics = call_metrics_new();
    pthread_mutex_init(&e->policy_lock, NULL);
    if (!e->cfg.policy_dir || !e->records || !e->metrics) {
        call_engine_close(e);
        return gate_err(err, GATE_E_NOMEM, NULL);
    }
    if (call_engine_reload(e, diags) < 0) {
        call_engine_close(e);
        return gate_err(err, GATE_E_POLICY, "policies in %s failed to load", cfg->policy_dir);
    }
    *out = e;
    return 0;
}

void call_engine_shutdown(struct call_engine *e)
{
    if (!e) return;
    atomic_store(&e->stopping, true);
    approval_shutdown(e->approval);
}

unsigned call_engine_running(struct call_engine *e)
{
    /* Approved runs count in inflight too, but a run thread may not have reached it yet:
     * better counted twice than missed. */
    return atomic_load(&e->inflight) + (e->approval ? approval_running(e->approval) : 0);
}

void call_engine_close(struct call_engine *e)
{
    if (!e) return;
    approval_close(e->approval); /* waits for approved runs */
    policy_set_unref(e->policies);
    call_records_free(e->records);
    call_metrics_free(e->metrics);
    pthread_mutex_destroy(&e->policy_lock);
    free((char *)e->cfg.policy_dir);
    free(e);
}

void call_engine_metrics(struct call_engine *e, struct gate_buf *out)
{
    call_metrics_render(e->metrics, out);
    gate_buf_printf(out,
                    "# HELP gatehouse_calls_inflight Calls running now.\n"
                    "# TYPE gatehouse_calls_inflight gauge\n"
                    "gatehouse_calls_inflight %u\n",
                    atomic_load(&e->inflight));
}
