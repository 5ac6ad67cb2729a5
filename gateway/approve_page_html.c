/* approve_page_html.c: the approval page's HTML and stylesheet. Every value that did not come
 * from this file goes through page_escape; nothing here runs script. */
#include <stdlib.h>
#include <string.h>

#include "approve_page.h"

#define FOLD_AT 240 /* longer argument values are folded behind a <details> */

const char page_css[] =
    "*{box-sizing:border-box}"
    "body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}"
    "main{max-width:52rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.35rem;margin:.5rem 0 1rem}"
    ".card{background:#fff;border:1px solid #d8dbe2;border-radius:.5rem;padding:1rem;"
    "margin:0 0 1rem}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}"
    "dt{color:#5a6275}dd{margin:0;overflow-wrap:anywhere}"
    "pre{background:#f0f1f4;padding:.5rem;border-radius:.25rem;white-space:pre-wrap;"
    "overflow-wrap:anywhere;margin:.25rem 0}"
    "code{overflow-wrap:anywhere}"
    "textarea,input[type=text],input[type=password]{width:100%;font:inherit;padding:.5rem;"
    "border:1px solid #b9bfcc;border-radius:.25rem}"
    ".buttons{display:flex;gap:.75rem;margin-top:.75rem;flex-wrap:wrap}"
    "button{font:inherit;padding:.6rem 1.4rem;border-radius:.35rem;border:0;cursor:pointer}"
    ".approve{background:#1f7a3a;color:#fff}.deny{background:#b42318;color:#fff}"
    ".plain{background:#e3e6ec;color:#1d2330}"
    ".outcome{font-weight:600}.notice{background:#fff4d6;border-color:#e8c76a}"
    ".error{background:#fde8e6;border-color:#f1a9a0}"
    "nav{display:flex;justify-content:space-between;align-items:center;gap:1rem;flex-wrap:wrap}"
    "@media (max-width:40rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}"
    ".buttons button{flex:1}}";

void page_escape(struct gate_buf *b, const char *text)
{
    for (const char *p = text ? text : ""; *p; p++) {
        switch (*p) {
        case '&':
            gate_buf_append(b, "&amp;", 5);
            break;
        case '<':
            gate_buf_append(b, "&lt;", 4);
            break;
        case '>':
            gate_buf_append(b, "&gt;", 4);
            break;
        case '"':
            gate_buf_append(b, "&quot;", 6);
            break;
        case '\'':
            gate_buf_append(b, "&#39;", 5);
            break;
        default:
            gate_buf_append(b, p, 1);
        }
    }
}

static void put(struct gate_buf *b, const char *html)
{
    gate_buf_append(b, html, strlen(html));
}

void page_begin(struct gate_buf *b, const char *title)
{
    put(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
           "<meta name=\"referrer\" content=\"no-referrer\">"
           "<link rel=\"stylesheet\" href=\"/approve.css\"><title>");
    page_escape(b, title);
    put(b, " - gatehouse</title></head><body><main><h1>");
    page_escape(b, title);
    put(b, "</h1>");
}

void page_end(struct gate_buf *b)
{
    put(b, "</main></body></html>\n");
}

void page_error_body(struct gate_buf *b, const char *code, const char *message)
{
    put(b, "<div class=\"card error\"><p class=\"outcome\">");
    page_escape(b, message);
    put(b, "</p><p><code>");
    page_escape(b, code);
    put(b, "</code></p></div>");
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void row(struct gate_buf *b, const char *label, const char *value)
{
    if (!value) return;
    put(b, "<dt>");
    page_escape(b, label);
    put(b, "</dt><dd>");
    page_escape(b, value);
    put(b, "</dd>");
}

static void code_row(struct gate_buf *b, const char *label, const char *value)
{
    if (!value) return;
    put(b, "<dt>");
    page_escape(b, label);
    put(b, "</dt><dd><code>");
    page_escape(b, value);
    put(b, "</code></dd>");
}

/* One value, pretty-printed; folded behind <details> when long. */
static void value_block(struct gate_buf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    if (n > FOLD_AT) {
        char head[FOLD_AT / 3 + 1];
        snprintf(head, sizeof(head), "%.*s", (int)(sizeof(head) - 1), text);
        put(b, "<details><summary><code>");
        page_escape(b, head);
        gate_buf_printf(b, "</code>&hellip; (%zu characters)</summary>", n);
    }
    put(b, "<pre>");
    page_escape(b, text ? text : "(not printable)");
    put(b, "</pre>");
    if (n > FOLD_AT) put(b, "</details>");
    free(text);
}

static void arguments(struct gate_buf *b, const json_t *args)
{
    put(b, "<dl>");
    if (json_is_object(args)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)args, k, v)
        {
            put(b, "<dt><code>");
            page_escape(b, k);
            put(b, "</code></dt><dd>");
            value_block(b, v);
            put(b, "</dd>");
        }
    } else {
        put(b, "<dt>arguments</dt><dd>");
        value_block(b, args);
        put(b, "</dd>");
    }
    put(b, "</dl>");
}

static void hidden(struct gate_buf *b, const char *name, const char *value)
{
    gate_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    page_escape(b, value);
    put(b, "\">");
}

/* The decision form for one call, posting to /approve/{call_id}. */
static void decision_form(struct gate_buf *b, const json_t *rec, const struct page_form *form,
                          bool compact)
{
    const json_t *ap = json_object_get(rec, "approval");
    put(b, "<form method=\"post\" action=\"/approve/");
    page_escape(b, str(rec, "call_id"));
    put(b, "\">");
    hidden(b, "csrf", form->csrf);
    hidden(b, "args_sha256", str(ap, "args_sha256"));
    if (form->token) {
        hidden(b, "t", form->token);
        put(b, "<p><label>Your name (recorded with the decision)<br>"
               "<input type=\"text\" name=\"name\" maxlength=\"100\" autocomplete=\"name\">"
               "</label></p>");
    }
    put(b, compact ? "<p><label>Reason<br><input type=\"text\" name=\"reason\" maxlength=\"2000\">"
                     "</label></p>"
                   : "<p><label>Reason<br><textarea name=\"reason\" rows=\"3\" "
                     "maxlength=\"2000\"></textarea></label></p>");
    put(b, "<div class=\"buttons\"><button class=\"approve\" name=\"decision\" value=\"approve\">"
           "Approve</button><button class=\"deny\" name=\"decision\" value=\"deny\">Deny</button>"
           "</div></form>");
}

static void outcome(struct gate_buf *b, const json_t *rec, const struct page_form *form)
{
    const json_t *ap = json_object_get(rec, "approval");
    const char *state = str(rec, "state"), *status = str(rec, "status");
    put(b, "<div class=\"card\"><p class=\"outcome\">");
    if (state && strcmp(state, "expired") == 0) {
        put(b, "Expired: nobody decided before ");
        page_escape(b, str(rec, "expires_at"));
        put(b, ". The call did not run.");
    } else if (state && strcmp(state, "denied") == 0) {
        put(b, "Denied. The call did not run.");
    } else if (state && strcmp(state, "withdrawn") == 0) {
        put(b, "Withdrawn by its caller. The call did not run.");
    } else if (state && strcmp(state, "interrupted") == 0) {
        put(b, "Approved, but the gateway stopped while it ran.");
    } else {
        put(b, "Approved; the call ");
        page_escape(b, strcmp(state ? state : "", "finished") == 0 ? "ran" : "is running");
        put(b, " (status: ");
        page_escape(b, status);
        put(b, ").");
    }
    put(b, "</p><dl>");
    if (str(ap, "decided_by")) {
        row(b, "Decided by", str(ap, "decided_by"));
        row(b, "Decided at", str(ap, "decided_at"));
        row(b, "Reason", str(ap, "reason"));
    }
    json_t *ec = json_object_get(rec, "exit_code");
    if (json_is_integer(ec))
        gate_buf_printf(b, "<dt>Exit code</dt><dd>%lld</dd>", (long long)json_integer_value(ec));
    put(b, "</dl><p><a href=\"/approve/");
    page_escape(b, str(rec, "call_id"));
    if (form->token) {
        put(b, "?t=");
        page_escape(b, form->token);
    }
    put(b, "\">Reload</a></p></div>");
}

void page_call(struct gate_buf *b, const json_t *rec, const struct page_policy *pp,
               const struct page_form *form, const char *notice)
{
    const json_t *ap = json_object_get(rec, "approval");
    if (form->signed_in_as) {
        put(b, "<nav><span>Signed in as <b>");
        page_escape(b, form->signed_in_as);
        put(b, "</b></span><a href=\"/approvals\">All pending calls</a></nav>");
    }
    if (notice) {
        put(b, "<div class=\"card notice\"><p class=\"outcome\">Your decision was not taken: ");
        page_escape(b, notice);
        put(b, "</p></div>");
    }
    put(b, "<div class=\"card\"><dl>");
    code_row(b, "Tool", str(rec, "tool"));
    if (pp->known) {
        row(b, "Description", pp->description);
        row(b, "Isolation", pp->isolation);
        row(b, "Reversible", pp->reversible);
    }
    row(b, "Blast radius", str(ap, "blast_radius"));
    row(b, "Agent", str(rec, "agent"));
    row(b, "Session", str(rec, "session"));
    code_row(b, "Call", str(rec, "call_id"));
    row(b, "Held at", str(ap, "held_at"));
    row(b, "Expires at", str(rec, "expires_at"));
    code_row(b, "Policy SHA-256", str(ap, "policy_sha256"));
    code_row(b, "Arguments SHA-256", str(ap, "args_sha256"));
    put(b, "</dl></div><div class=\"card\"><h2>Arguments</h2>");
    arguments(b, json_object_get(rec, "arguments"));
    put(b, "</div>");
    const char *state = str(rec, "state");
    if (state && strcmp(state, "pending_approval") == 0) {
        put(b, "<div class=\"card\">");
        decision_form(b, rec, form, false);
        put(b, "</div>");
    } else {
        outcome(b, rec, form);
    }
}

void page_queue(struct gate_buf *b, const json_t *list, const char *status,
                const struct page_form *form)
{
    static const char *const states[] = {"pending", "approved", "denied",
                                         "expired", "finished", "all"};
    put(b, "<nav><span>Signed in as <b>");
    page_escape(b, form->signed_in_as);
    put(b, "</b></span><form method=\"post\" action=\"/approvals/signout\">");
    hidden(b, "csrf", form->csrf);
    put(b, "<button class=\"plain\">Sign out</button></form></nav>"
           "<form method=\"get\" action=\"/approvals\"><p><label>Show "
           "<select name=\"status\">");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        gate_buf_printf(b, "<option%s>%s</option>",
                        strcmp(status, states[i]) == 0 ? " selected" : "", states[i]);
    put(b, "</select></label> <button class=\"plain\">Filter</button></p></form>");
    const json_t *arr = json_object_get(list, "approvals");
    if (json_array_size(arr) == 0) put(b, "<div class=\"card\"><p>Nothing here.</p></div>");
    size_t i;
    const json_t *rec;
    json_array_foreach(arr, i, rec)
    {
        const json_t *ap = json_object_get(rec, "approval");
        put(b, "<div class=\"card\"><p><a href=\"/approve/");
        page_escape(b, str(rec, "call_id"));
        put(b, "\"><code>");
        page_escape(b, str(rec, "tool"));
        put(b, "</code></a> &middot; ");
        page_escape(b, str(rec, "status"));
        put(b, "</p><dl>");
        row(b, "Agent", str(rec, "agent"));
        row(b, "Held at", str(ap, "held_at"));
        row(b, "Expires at", str(rec, "expires_at"));
        row(b, "Decided by", str(ap, "decided_by"));
        put(b, "</dl>");
        arguments(b, json_object_get(rec, "arguments"));
        if (strcmp(str(rec, "state") ? str(rec, "state") : "", "pending_approval") == 0)
            decision_form(b, rec, form, true);
        put(b, "</div>");
    }
    const char *next = str(list, "next_cursor");
    if (next) {
        put(b, "<p><a href=\"/approvals?status=");
        page_escape(b, status);
        put(b, "&amp;cursor=");
        page_escape(b, next);
        put(b, "\">Next page</a></p>");
    }
}

void page_signin(struct gate_buf *b, const char *problem)
{
    if (problem) {
        put(b, "<div class=\"card error\"><p>");
        page_escape(b, problem);
        put(b, "</p></div>");
    }
    put(b, "<div class=\"card\"><form method=\"post\" action=\"/approvals/signin\">"
           "<p><label>Approver token<br><input type=\"password\" name=\"token\" "
           "autocomplete=\"current-password\" required></label></p>"
           "<div class=\"buttons\"><button class=\"approve\">Sign in</button></div></form>"
           "<p>The token is exchanged for a session; it is not kept in your browser.</p></div>");
}
