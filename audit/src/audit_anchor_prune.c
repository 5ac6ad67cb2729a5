/* audit_anchor_prune.c: the retention of audit_anchors, for operators (gatehouse db
 * prune-anchors); gateways only ever insert anchors.
 *
 * What a verify needs: the hash chain binds each record to all before it, so a log that holds
 * the newest anchor of its node unchanged holds everything before it unchanged too; older
 * anchors add no detection, only precision (where a rewrite starts: "rewritten after seq P"
 * names the last older anchor that still matches). So an anchor older than the kept window
 * goes, except the newest of its node (without it a cut tail would pass, and "no anchor of
 * the node" would no longer mean a log replaced) and the newest of each of its segments
 * (a rewrite is still placed within a segment, and a copy of the log that ends at a segment's
 * end, shipped elsewhere, still has an anchor at its tail). The table then grows by one row
 * per 64 MiB segment and per node, plus the window.
 */
#include <stdlib.h>
#include <string.h>

#include "audit_anchor.h"

int audit_anchor_prune(const struct audit_anchor_target *target, unsigned keep_days,
                       uint64_t *deleted, struct gate_error *err)
{
    *deleted = 0;
    char why[600], days[16];
    PGconn *conn = anchor_db_connect(target, why, sizeof(why));
    if (!conn) return gate_err(err, GATE_E_DATABASE_UNAVAILABLE, "anchors: %s", why);
    snprintf(days, sizeof(days), "%u", keep_days);
    const char *vals[] = {days};
    /* The newest anchor of a node is the newest of its segment too: seq < seg_top keeps both. */
    PGresult *res = PQexecParams(conn,
                                 "DELETE FROM audit_anchors a USING (SELECT node, seq, max(seq)"
                                 " OVER (PARTITION BY node, segment) AS seg_top"
                                 " FROM audit_anchors) k"
                                 " WHERE a.node = k.node AND a.seq = k.seq AND k.seq < k.seg_top"
                                 " AND a.anchored_at < now() - make_interval(days => $1::int)",
                                 1, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
        why[strcspn(why, "\n")] = '\0';
        rc = gate_err(err, GATE_E_IO, "anchors: prune audit_anchors: %s", why);
    } else {
        *deleted = strtoull(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}
