/* withdraw.c: the caller takes back its own held call (MCP notifications/cancelled).
 *
 *   pending_approval -> withdrawn        (final; audited as call.withdrawn)
 *
 * A compare-and-set like every other transition, so a withdrawal racing a decision loses
 * cleanly: once approved, a call runs; once withdrawn, no decision can start it.
 */
#include <string.h>

#include "approval_internal.h"

int approval_withdraw(struct approval *a, const char *call_id, const char *agent,
                      struct gate_error *err)
{
    struct approval_row r = {0};
    int found = a->ops->get(a->store, call_id, &r, err);
    if (found < 0) return -1;
    /* Another agent's call answers as if it did not exist, as GET /v1/calls/{id} does. */
    if (found == 0 || (agent && (!r.agent || strcmp(r.agent, agent) != 0))) {
        approval_row_clear(&r);
        return gate_err(err, GATE_E_CALL_NOT_FOUND, "no held call %s", call_id);
    }
    json_t *f = json_pack("{s:s,s:s,s:s?,s:s}", "call_id", r.call_id, "tool", r.tool, "agent",
                          r.agent, "args_sha256", r.args_sha256);
    /* No decided_by: the record's approval.decision describes approvers' decisions only. */
    struct store_update up = {.reason = "withdrawn by the caller",
                              .decided_ms = (int64_t)gate_realtime_ms()};
    int rc =
        approval_transition(a, call_id, ST_PENDING, ST_WITHDRAWN, &up, "call.withdrawn", f, err);
    json_decref(f);
    approval_row_clear(&r);
    if (rc < 0) return -1;
    if (rc == 0)
        return gate_err(err, GATE_E_ALREADY_DECIDED, "call %s is no longer pending", call_id);
    return 0;
}
