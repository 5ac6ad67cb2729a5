/* chat.c: approval messages in the shapes chat services' incoming webhooks accept unmodified.
 *
 * slack: "text" (the notification's fallback) plus Block Kit "blocks" (header, section fields,
 * the arguments in a code block, a link button to the approval page).
 * discord: "content" plus one embed (title linking to the approval page, the arguments in a
 * code block, fields), with "allowed_mentions" empty so no value can ping anyone.
 * Only documented fields and their documented length limits are used. An incoming webhook
 * cannot edit a message it posted (Slack needs a bot token and chat.update), so the outcome is
 * a second, follow-up message.
 */
#include <stdlib.h>
#include <string.h>

#include "approval_internal.h"

#define HEADER_MAX 150   /* plain_text in a header block */
#define SECTION_MAX 3000 /* text of a section block */

#define EMBED_TITLE_MAX 256  /* discord embed title */
#define EMBED_DESC_MAX 4096  /* discord embed description */
#define EMBED_FIELD_MAX 1024 /* discord embed field value */

/* Slack's mrkdwn treats & < > as control characters: they must be sent as entities. Discord's
 * markdown is escaped with backslashes. A backquote never reaches the text (it could close a
 * code block). At most max bytes of s, then "...". */
static void chat_escape(struct gate_buf *b, const char *s, size_t max, enum approval_format f)
{
    size_t start = b->len;
    for (const char *p = s ? s : ""; *p; p++) {
        /* Cut only at the start of a character (never inside a UTF-8 sequence: the message
         * would not be valid JSON text and could never be sent). */
        if (b->len - start >= max && ((unsigned char)*p & 0xC0) != 0x80) {
            gate_buf_append(b, "...", 3);
            break;
        }
        if (f == APPROVAL_FORMAT_DISCORD && *p != '`' && strchr("\\*_~|>#[]()-:<", *p)) {
            gate_buf_append(b, "\\", 1);
            gate_buf_append(b, p, 1);
        } else if (f == APPROVAL_FORMAT_DISCORD) {
            gate_buf_append(b, *p == '`' ? "'" : p, 1);
        } else if (*p == '&')
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
    chat_escape(&b, value ? value : "-", max, APPROVAL_FORMAT_SLACK);
    json_t *o = json_pack("{s:s,s:s}", "type", "mrkdwn", "text", b.data ? b.data : "");
    gate_buf_free(&b);
    return o;
}

/* The arguments, pretty-printed, in a code block, then their hash. */
static void args_block(struct gate_buf *b, const struct approval_row *r, size_t max,
                       enum approval_format f)
{
    json_t *args = json_loads(r->args_json, 0, NULL);
    char *pretty = args ? json_dumps(args, JSON_INDENT(2)) : NULL;
    json_decref(args);
    gate_buf_append(b, "```\n", 4);
    /* Inside a code block only the backquote matters (and, for Slack, & < >). */
    chat_escape(b, pretty ? pretty : r->args_json, max,
                f == APPROVAL_FORMAT_DISCORD ? APPROVAL_FORMAT_STANDARD : f);
    gate_buf_printf(b, "\n```\nargs_sha256 `%s`", r->args_sha256);
    free(pretty);
}

static json_t *discord_field(const char *name, const char *value, bool inline_)
{
    struct gate_buf b = {0};
    chat_escape(&b, value ? value : "-", EMBED_FIELD_MAX - 8, APPROVAL_FORMAT_DISCORD);
    json_t *o =
        json_pack("{s:s,s:s,s:b}", "name", name, "value", b.data ? b.data : "-", "inline", inline_);
    gate_buf_free(&b);
    return o;
}

static json_t *discord_message(const struct approval_row *r, const char *approve_url)
{
    char title[EMBED_TITLE_MAX], expires[32];
    snprintf(title, sizeof(title), "Approval needed: %s", r->tool);
    gate_rfc3339((uint64_t)r->expires_ms, expires);
    struct gate_buf desc = {0}, content = {0};
    args_block(&desc, r, EMBED_DESC_MAX - 200, APPROVAL_FORMAT_DISCORD);
    gate_buf_append(&content, "Approval needed: ", 17);
    chat_escape(&content, r->tool, 200, APPROVAL_FORMAT_DISCORD);
    gate_buf_printf(&content, " (call %s), until %s", r->call_id, expires);
    json_t *msg = json_pack(
        "{s:s,s:{s:[]},s:[{s:s,s:s,s:s,s:[o,o,o,o]}]}", "content", content.data ? content.data : "",
        "allowed_mentions", "parse", "embeds", "title", title, "url", approve_url, "description",
        desc.data ? desc.data : "", "fields", discord_field("Agent", r->agent, true),
        discord_field("Blast radius", r->blast_radius, true),
        discord_field("Expires", expires, true), discord_field("Call", r->call_id, true));
    gate_buf_free(&desc);
    gate_buf_free(&content);
    return msg;
}

static json_t *slack_message(const struct approval_row *r, const char *approve_url)
{
    char header[HEADER_MAX], expires[32];
    snprintf(header, sizeof(header), "Approval needed: %s", r->tool);
    gate_rfc3339((uint64_t)r->expires_ms, expires);
    struct gate_buf code = {0};
    gate_buf_append(&code, "*Arguments*\n", 12);
    args_block(&code, r, SECTION_MAX - 200, APPROVAL_FORMAT_SLACK);
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

json_t *approval_chat_message(enum approval_format f, const struct approval_row *r,
                              const char *approve_url)
{
    return f == APPROVAL_FORMAT_DISCORD ? discord_message(r, approve_url)
                                        : slack_message(r, approve_url);
}

json_t *approval_chat_followup(enum approval_format f, const struct approval_row *r)
{
    struct gate_buf b = {0};
    if (strcmp(r->state, ST_EXPIRED) == 0)
        gate_buf_printf(&b, "Expired: %s (call %s) was not decided in time and did not run.",
                        r->tool, r->call_id);
    else if (strcmp(r->state, ST_WITHDRAWN) == 0)
        gate_buf_printf(&b, "Withdrawn: %s (call %s) was cancelled by its caller and did not run.",
                        r->tool, r->call_id);
    else if (strcmp(r->state, ST_DENIED) == 0)
        gate_buf_printf(&b, "Denied: %s (call %s) by ", r->tool, r->call_id);
    else
        gate_buf_printf(&b, "Approved: %s (call %s) by ", r->tool, r->call_id);
    if (strcmp(r->state, ST_EXPIRED) != 0 && strcmp(r->state, ST_WITHDRAWN) != 0) {
        chat_escape(&b, r->decided_by, 200, f);
        if (r->reason && *r->reason) {
            gate_buf_append(&b, ": ", 2);
            chat_escape(&b, r->reason, 1000, f);
        }
    }
    json_t *msg = f == APPROVAL_FORMAT_DISCORD
                      ? json_pack("{s:s,s:{s:[]}}", "content", b.data ? b.data : "",
                                  "allowed_mentions", "parse")
                      : json_pack("{s:s}", "text", b.data ? b.data : "");
    gate_buf_free(&b);
    return msg;
}
