/* agents.h: who is calling. Identities, what each may do, and how much.
 *
 * The gateway config names agents (which call tools) and approvers (which decide held calls),
 * each with a bearer token that the config never needs to hold: only its SHA-256
 * (token_sha256) or the name of an environment variable (token_env) is written there; a
 * literal `token:` is accepted with a warning. Tokens are compared in constant time, as hashes.
 * Per agent: the tools it may list and call (globs), an extra argument schema per tool glob
 * that a call must satisfy in addition to the policy's own, and quotas (running calls, calls
 * per minute, held calls awaiting approval). With no agent configured every caller is the
 * agent "anonymous", allowed every tool; the gateway then serves loopback only.
 *
 * This module owns the parsed identities and the quota counters; it knows nothing of HTTP.
 */
#ifndef GATE_AGENTS_H
#define GATE_AGENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "gate.h"
#include "policy.h"

struct agents;   /* the configured identities and their counters */
struct agent;    /* one agent */
struct approver; /* one approver */

enum principal_kind {
    PRINCIPAL_ANONYMOUS, /* no agents configured: every caller */
    PRINCIPAL_AGENT,
    PRINCIPAL_APPROVER,
};

/* Who a request comes from, after authentication. Borrowed from the agents set. */
struct principal {
    enum principal_kind kind;
    const char *name; /* "anonymous", the agent's or the approver's name */
    const struct agent *agent;
    const struct approver *approver;
};

/* Read the `agents:`, `defaults:` and `approval.approvers` sections of the config (root may be
 * NULL: no agents, no approvers). file names the config in messages ("FILE:LINE:COL: ..."). On
 * success *out is owned by the caller (agents_free); *literal_secret says whether the file
 * holds a literal token (the caller refuses a group/world-readable file then). */
int agents_load(const struct ynode *root, const char *file, struct agents **out,
                bool *literal_secret, struct gate_error *err);
void agents_free(struct agents *a);
/* Whether any agent is configured (authentication required on /v1/ and /metrics). */
bool agents_configured(const struct agents *a);
size_t agents_count(const struct agents *a);
/* metrics.public: /metrics answers without a token. */
bool agents_metrics_public(const struct agents *a);

/* Authenticate an Authorization header value ("Bearer <token>", may be NULL). With no agents
 * configured, a missing header is the anonymous agent; an approver token is an approver in
 * either case. Fails with UNAUTHORIZED (and counts the failure by reason). */
int agents_authenticate(struct agents *a, const char *authorization, struct principal *p,
                        struct gate_error *err);

/* Whether p may list and call tool (anonymous: every tool; approvers: none). */
bool agents_tool_granted(const struct principal *p, const char *tool);
/* The extra argument schema p's grant puts on tool, or NULL. */
const struct policy_schema *agents_grant_schema(const struct principal *p, const char *tool);
/* Whether an approver may see and decide calls of tool (approvers.NAME.tools, default all). */
bool agents_approver_may(const struct approver *ap, const char *tool);

/* Quotas. agents_call_begin takes a running-call slot and a rate token for p, or fails with
 * TOO_MANY_CALLS naming the quota (max_concurrent or rate) and sets *retry_after (seconds).
 * Every successful begin is matched by one agents_call_end. */
int agents_call_begin(struct agents *a, const struct principal *p, unsigned *retry_after,
                      struct gate_error *err);
void agents_call_end(struct agents *a, const struct principal *p);
/* Counting max_concurrent and rate for several gateways at once (a shared database): begin
 * returns 0 (admitted; end follows), -1 with TOO_MANY_CALLS (refused, *retry_after set), or -1
 * with another code when it cannot count; the agents set then counts on this gateway alone
 * for that call (and logs it). ctx is borrowed and must outlive a. */
struct agents_shared_quota {
    int (*begin)(void *ctx, const char *agent, unsigned max_concurrent, unsigned rate_per_min,
                 unsigned *retry_after, struct gate_error *err);
    void (*end)(void *ctx, const char *agent);
    void *ctx;
};
void agents_share_quotas(struct agents *a, const struct agents_shared_quota *q);

/* The agent's max_pending quota (held calls awaiting approval); 0 = no limit. */
unsigned agents_max_pending(const struct principal *p);

/* Prometheus text: gatehouse_auth_failures_total{reason}. */
void agents_metrics(struct agents *a, struct gate_buf *out);

/* A fresh token ("gh_" + 43 base64url characters, 256 random bits) and its SHA-256 hex. */
int agents_new_token(char token[64], char sha256_hex[65]);

#endif
