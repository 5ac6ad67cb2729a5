/* mcp_tools.c: a policy as a tool in each format agents use (MCP, OpenAI, Anthropic), and a
 * call record as an MCP tool result.
 *
 * Only what the policy says is published: the argument schema exactly as policy->arguments
 * (the enforced schema), the description, and the isolation tier and approval requirement in
 * the description and in `_meta`, so that a model reading the tool list knows a call may wait
 * for a human.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* The description with what the gateway adds: tier and approval. Owned by the caller. */
static json_t *description(const struct policy *p)
{
    return json_sprintf("%s (gatehouse: runs in the %s tier%s%s)", p->description,
                        policy_isolation_name(p->isolation), p->reversible ? "" : "; irreversible",
                        p->approval.required ? "; each call waits for a human approval" : "");
}

json_t *mcp_tool_json(const struct policy *p)
{
    /* destructiveHint is what `reversible: false` means. readOnlyHint and openWorldHint are
     * derived, not new policy keys: no tool is known read-only (the default, false), and only
     * a tool with network access (the gvisor netstack) can reach the open world. */
    json_t *annotations =
        json_pack("{s:s,s:b,s:b,s:b}", "title", p->name, "readOnlyHint", 0, "destructiveHint",
                  !p->reversible, "openWorldHint", p->network != NETWORK_NONE);
    json_t *meta =
        json_pack("{s:s,s:b,s:s,s:b}", "gatehouse/isolation", policy_isolation_name(p->isolation),
                  "gatehouse/approval_required", p->approval.required, "gatehouse/blast_radius",
                  policy_blast_name(p->blast_radius), "gatehouse/reversible", p->reversible);
    return json_pack("{s:s,s:s,s:o,s:O,s:o,s:o}", "name", p->name, "title", p->name, "description",
                     description(p), "inputSchema", p->arguments, "annotations", annotations,
                     "_meta", meta);
}

/* OpenAI's strict mode needs, in every object schema, every property required and
 * additionalProperties: false. */
static bool strict_ok(const json_t *schema)
{
    if (json_is_array(schema)) {
        size_t i;
        json_t *v;
        json_array_foreach(schema, i, v) if (!strict_ok(v)) return false;
        return true;
    }
    if (!json_is_object(schema)) return true;
    const json_t *type = json_object_get(schema, "type");
    const json_t *props = json_object_get(schema, "properties");
    bool is_object =
        (json_is_string(type) && strcmp(json_string_value(type), "object") == 0) || props != NULL;
    if (is_object) {
        if (!json_is_false(json_object_get(schema, "additionalProperties"))) return false;
        const json_t *req = json_object_get(schema, "required");
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)props, key, v)
        {
            bool found = false;
            size_t i;
            json_t *r;
            json_array_foreach(req, i, r) found =
                found || (json_is_string(r) && !strcmp(json_string_value(r), key));
            if (!found) return false;
        }
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)schema, key, v)
    {
        if ((json_is_object(v) || json_is_array(v)) && !strict_ok(v)) return false;
    }
    return true;
}

static json_t *openai_tool(const struct policy *p)
{
    json_t *fn = json_pack("{s:s,s:o,s:O}", "name", p->name, "description", description(p),
                           "parameters", p->arguments);
    if (strict_ok(p->arguments)) json_object_set_new(fn, "strict", json_true());
    return json_pack("{s:s,s:o}", "type", "function", "function", fn);
}

static json_t *anthropic_tool(const struct policy *p)
{
    return json_pack("{s:s,s:o,s:O}", "name", p->name, "description", description(p),
                     "input_schema", p->arguments);
}

int mcp_tools_format(const struct policy_set *set, const struct principal *who, const char *format,
                     json_t **out, struct gate_error *err)
{
    json_t *(*one)(const struct policy *) = !strcmp(format, "openai")      ? openai_tool
                                            : !strcmp(format, "anthropic") ? anthropic_tool
                                            : !strcmp(format, "mcp")       ? mcp_tool_json
                                                                           : NULL;
    if (!one)
        return gate_err(err, GATE_E_BAD_REQUEST,
                        "format must be one of openai, anthropic, mcp (or absent)");
    json_t *tools = json_array();
    for (size_t i = 0; set && i < set->n; i++)
        if (agents_tool_granted(who, set->items[i]->name))
            json_array_append_new(tools, one(set->items[i]));
    *out = json_pack("{s:s,s:o}", "format", format, "tools", tools);
    return 0;
}

/* Whether a record's `name` output was valid UTF-8: the record escapes every invalid byte as
 * 4 characters ("\xNN"), so the text is exactly as long as the raw bytes only if none was. */
static bool output_is_text(const json_t *rec, const char *name)
{
    char key[32];
    snprintf(key, sizeof(key), "%s_base64", name);
    const char *b64 = json_string_value(json_object_get(rec, key));
    size_t len = json_string_length(json_object_get(rec, name));
    if (!b64) return true;
    size_t n = strlen(b64), raw = n / 4 * 3;
    if (n >= 1 && b64[n - 1] == '=') raw--;
    if (n >= 2 && b64[n - 2] == '=') raw--;
    return raw == len;
}

static void add_output(json_t *content, const json_t *rec, const char *name)
{
    const char *text = json_string_value(json_object_get(rec, name));
    if (!text || !*text) return;
    if (output_is_text(rec, name)) {
        json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", text));
        return;
    }
    char key[32];
    snprintf(key, sizeof(key), "%s_base64", name);
    json_t *uri = json_sprintf("gatehouse://calls/%s/%s",
                               json_string_value(json_object_get(rec, "call_id")), name);
    json_array_append_new(content,
                          json_pack("{s:s,s:{s:o,s:s,s:O}}", "type", "resource", "resource", "uri",
                                    uri, "mimeType", "application/octet-stream", "blob",
                                    json_object_get(rec, key)));
}

json_t *mcp_call_result(const json_t *rec)
{
    const char *status = json_string_value(json_object_get(rec, "status"));
    bool ok = status && strcmp(status, "succeeded") == 0;
    json_t *content = json_array();
    if (!ok) {
        /* The detail a model needs to see why: status, exit code, the gateway's detail or
         * the refusal, and the approval's reason. */
        struct gate_buf b = {0};
        gate_buf_printf(&b, "call %s %s",
                        json_string_value(json_object_get(rec, "call_id")) ?: "(none)",
                        status ?: "failed");
        const json_t *code = json_object_get(rec, "exit_code");
        if (json_is_integer(code))
            gate_buf_printf(&b, " (exit code %lld)", json_integer_value(code));
        const char *detail = json_string_value(json_object_get(rec, "detail"));
        if (detail) gate_buf_printf(&b, ": %s", detail);
        const json_t *e = json_object_get(rec, "error");
        if (json_is_object(e))
            gate_buf_printf(&b, ": %s: %s", json_string_value(json_object_get(e, "code")) ?: "",
                            json_string_value(json_object_get(e, "message")) ?: "");
        const char *reason =
            json_string_value(json_object_get(json_object_get(rec, "approval"), "reason"));
        if (reason) gate_buf_printf(&b, ": %s", reason);
        json_array_append_new(
            content, json_pack("{s:s,s:s%}", "type", "text", "text", b.data ? b.data : "", b.len));
        gate_buf_free(&b);
    }
    add_output(content, rec, "stdout");
    if (!ok) add_output(content, rec, "stderr");
    json_t *meta =
        json_pack("{s:O?,s:O?,s:O?}", "gatehouse/call_id", json_object_get(rec, "call_id"),
                  "gatehouse/status", json_object_get(rec, "status"), "gatehouse/exit_code",
                  json_object_get(rec, "exit_code"));
    return json_pack("{s:o,s:b,s:o}", "content", content, "isError", !ok, "_meta", meta);
}

json_t *mcp_error_result(const struct gate_error *err)
{
    return json_pack("{s:[{s:s,s:s++}],s:b}", "content", "type", "text", "text",
                     gate_code_str(err->code), ": ",
                     err->msg[0] ? err->msg : gate_code_message(err->code), "isError", 1);
}
