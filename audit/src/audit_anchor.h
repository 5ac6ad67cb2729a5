/* audit_anchor.h: what publishing anchors and verifying against them share (private). */
#ifndef GATE_AUDIT_ANCHOR_H
#define GATE_AUDIT_ANCHOR_H

#include <libpq-fe.h>

#include "audit_internal.h"

/* A connection to t->database, or NULL with why filled (one line). */
PGconn *anchor_db_connect(const struct audit_anchor_target *t, char *why, size_t why_len);

#endif
