/* schema_diff_driver.c: the gateway's schema validator as a filter, for the differential test
 * against ajv (tests/schema_diff/diff.js).
 *
 * Each input line is {"schema": S, "instances": [I...]}. S is handed to the real loader the way
 * a policy file is (as YAML text: JSON is YAML flow syntax) and compiled with
 * policy_schema_compile; each instance is checked with policy_schema_check. Each output line
 * is {"published": P, "valid": [bool...], "errors": [msg...]} or {"compile_errors": [msg...]},
 * P being the schema as GET /v1/tools would publish it: that is what ajv is given. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* S as YAML flow text. YAML 1.1 reads a raw NEL, LS or PS inside a quoted scalar as a line
 * break (folded away), so those are written as escapes, as a policy author would have to. */
static char *yaml_text(const json_t *schema)
{
    char *json = json_dumps(schema, JSON_ENCODE_ANY);
    struct gate_buf out = {0};
    for (const char *p = json; p && *p; p++) {
        const unsigned char *u = (const unsigned char *)p;
        if (u[0] == 0xc2 && u[1] == 0x85) {
            gate_buf_append(&out, "\\u0085", 6);
            p++;
        } else if (u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) {
            gate_buf_append(&out, u[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            p += 2;
        } else {
            gate_buf_append(&out, p, 1);
        }
    }
    free(json);
    return out.data;
}

static json_t *judge(const json_t *line)
{
    json_t *schema = json_object_get(line, "schema"),
           *instances = json_object_get(line, "instances");
    if (!schema || !json_is_array(instances))
        return json_pack("{s:[s]}", "compile_errors", "bad input line");
    char *text = yaml_text(schema);
    struct ynode *root = NULL;
    struct gate_error err = {0};
    int rc = text ? ynode_load_buf("schema.json", text, strlen(text), &root, &err) : -1;
    free(text);
    if (rc < 0) return json_pack("{s:[s]}", "compile_errors", err.msg);
    struct policy_diags diags = {0};
    struct policy_schema *s = policy_schema_compile("schema.json", root, 0, &diags);
    ynode_free(root);
    if (!s) {
        json_t *msgs = json_array();
        for (size_t i = 0; i < diags.n; i++)
            json_array_append_new(msgs, json_string(diags.msgs[i]));
        policy_diags_free(&diags);
        return json_pack("{s:o}", "compile_errors", msgs);
    }
    json_t *valid = json_array(), *errors = json_array();
    size_t i;
    json_t *inst;
    json_array_foreach(instances, i, inst)
    {
        struct gate_error e = {0};
        bool ok = policy_schema_check(s, inst, &e) == 0;
        json_array_append_new(valid, json_boolean(ok));
        json_array_append_new(errors, json_string(ok ? "" : e.msg));
    }
    json_t *out = json_pack("{s:O,s:o,s:o}", "published", policy_schema_json(s), "valid", valid,
                            "errors", errors);
    policy_schema_free(s);
    return out;
}

int main(void)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) return 1;
    while (fgets(buf, (int)cap, stdin)) {
        json_error_t jerr;
        json_t *line = json_loads(buf, JSON_ALLOW_NUL, &jerr);
        json_t *out = line ? judge(line) : json_pack("{s:[s]}", "compile_errors", jerr.text);
        char *text = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        puts(text ? text : "{\"compile_errors\":[\"out of memory\"]}");
        fflush(stdout);
        free(text);
        json_decref(out);
        json_decref(line);
    }
    free(buf);
    return 0;
}
