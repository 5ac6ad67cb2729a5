/* slack.c: approval messages in the shape a Slack incoming webhook accepts unmodified
 * (approval.webhook_format: slack): "text" (the notification's fallback) plus Block Kit
 * "blocks" (header, section fields, the arguments in a code block, a link button to the
 * approval page). Only documented block types and their documented length limits are used.
 * An incoming webhook cannot update a message it posted (that needs a bot token and
 * chat.update), so the outcome is a second, follow-up message.
 */
#include <stdlib.h>
#include <string.h>

#include "approval_internal.h"

#define HEADER_MAX 150   /* plain_text in a header block */
#define SECTION_MAX 3000 /* text of a section block */

/* Slack's mrkdwn treats & < > as control characters: they must be sent as entities. */
static void mrkdwn_escape(struct gate_buf *b, const char *s, size_t max)
{
    size_t start = b->len;
    for (const char *p = s ? s : ""; *p; p++) {
        if (b->len - start >= max) {
            gate_buf_append(b, "...", 3);
            break;
        }
        if (*p == '&')
            gate_buf_append(b, "&amp;", 5);
        else if (*p == '<')
            gate_buf_append(b, "&lt;", 4);
        else if (*p == '>')
            gate_buf_append(b, "&gt;", 4);
        else if (*p == '`')
            gate_buf_append(b, "'", 1); /* cannot close our code block */
        else
            gate_buf_append(b, p, 1);
    }
}

static json_t *mrkdwn(const char *label, const char *value, size_t max)
{
    struct gate_buf b = {0};
    gate_buf_printf(&b, "*%s*\n", label);
    mrkdwn_escape(&b, value ? value : "-", max);
    json_t *o = json_pack("{s:s,s:s}", "type", "mrkdwn", "text", b.data ? b.data : "");
    gate_buf_free(&b);
    return o;
}

json_t *approval_slack_message(const struct approval_row *r, const char *approve_url)
{
    char header[HEADER_MAX], expires[32];
    snprintf(header, sizeof(header), "Approval needed: %s", r->tool);
    gate_rfc3339((uint64_t)r->expires_ms, expires);
    json_t *args = json_loads(r->args_json, 0, NULL);
    char *pretty = args ? json_dumps(args, JSON_INDENT(2)) : NULL;
    json_decref(args);
    struct gate_buf code = {0};
    gate_buf_append(&code, "*Arguments*\n```", 15);
    mrkdwn_escape(&code, pretty ? pretty : r->args_json, SECTION_MAX - 200);
    gate_buf_printf(&code, "```\nargs_sha256 `%s`", r->args_sha256);
    free(pretty);
    struct gate_buf text = {0};
    gate_buf_printf(&text, "Approval needed: %s (call %s) until %s", r->tool, r->call_id, expires);
    json_t *msg = json_pack(
        "{s:s,s:[{s:s,s:{s:s,s:s}},{s:s,s:[o,o,o,o]},{s:s,s:{s:s,s:s}},{s:s,s:[{s:s,s:{s:s,s:s},"
        "s:s,s:s,s:s}]}]}",
        "text", text.data ? text.data : "", "blocks", "type", "header", "text", "type",
        "plain_text", "text", header, "type", "section", "fields", mrkdwn("Agent", r->agent, 200),
        mrkdwn("Blast radius", r->blast_radius, 50), mrkdwn("Call", r->call_id, 60),
        mrkdwn("Expires", expires, 40), "type", "section", "text", "type", "mrkdwn", "text",
        code.data ? code.data : "", "type", "actions", "elements", "type", "button", "text", "type",
        "plain_text", "text", "Review and decide", "url", approve_url, "style", "primary",
        "action_id", "gatehouse_review");
    gate_buf_free(&code);
    gate_buf_free(&text);
    return msg;
}

json_t *approval_slack_followup(const struct approval_row *r)
{
    struct gate_buf b = {0};
    if (strcmp(r->state, ST_EXPIRED) == 0)
        gate_buf_printf(&b, "Expired: %s (call %s) was not decided in time and did not run.",
                        r->tool, r->call_id);
    else if (strcmp(r->state, ST_DENIED) == 0)
        gate_buf_printf(&b, "Denied: %s (call %s) by ", r->tool, r->call_id);
    else
        gate_buf_printf(&b, "Approved: %s (call %s) by ", r->tool, r->call_id);
    if (strcmp(r->state, ST_EXPIRED) != 0) {
        mrkdwn_escape(&b, r->decided_by, 200);
        if (r->reason && *r->reason) {
            gate_buf_append(&b, ": ", 2);
            mrkdwn_escape(&b, r->reason, 1000);
        }
    }
    json_t *msg = json_pack("{s:s}", "text", b.data ? b.data : "");
    gate_buf_free(&b);
    return msg;
}
