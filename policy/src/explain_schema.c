/* explain_schema.c: the JSON Schema (2020-12) of policy files, generated from the key table.
 *
 * policy/policy.schema.json is this function's output (`gatehouse policy schema`), checked in
 * for editors (yaml-language-server) and CI; a unit test fails when the two differ, and the
 * integration test has an independent validator (ajv) and the loader judge the example
 * policies and a corpus of invalid ones the same way. Each key's shape comes from its row's
 * type, range, names and default (or the row's own fragment); the rows of
 * policy_cross_rules[] become if/then clauses. What JSON Schema cannot say (duration ranges,
 * host paths that must exist, syscall names libseccomp knows, URL syntax beyond the scheme,
 * `required` names listed in `properties`) is left to the loader, which stays authoritative.
 */
#include <stdlib.h>
#include <string.h>

#include "policy_keys.h"

/* The argument-schema keywords the loader accepts (schema.c), with the shape of each value;
 * a value that is a schema may be a boolean or a mapping (#/$defs/schema). ROOT_ONLY is accepted
 * at the root of `arguments` only. A keyword added to schema.c needs its row here: test_lint
 * checks every JSON Schema 2020-12 keyword against both and fails on a difference. */
#define SUBSCHEMA "{\"$ref\":\"#/$defs/schema\"}"
#define SUBSCHEMA_LIST "{\"type\":\"array\",\"minItems\":1,\"items\":" SUBSCHEMA "}"
#define SUBSCHEMA_MAP "{\"type\":\"object\",\"additionalProperties\":" SUBSCHEMA "}"
#define COUNT "{\"$ref\":\"#/$defs/count\"}"
#define NUMBER "{\"type\":\"number\"}"
#define TEXT "{\"type\":[\"string\",\"number\",\"boolean\",\"null\"]}"
#define ROOT_ONLY "$schema"
static const struct {
    const char *name;
    const char *schema;
} argument_keywords[] = {
    {"$schema", "{\"enum\":[\"https://json-schema.org/draft/2020-12/schema\","
                "\"https://json-schema.org/draft/2020-12/schema#\"]}"},
    {"type", "{\"anyOf\":[{\"$ref\":\"#/$defs/type_name\"},{\"type\":\"array\",\"minItems\":1,"
             "\"uniqueItems\":true,\"items\":{\"$ref\":\"#/$defs/type_name\"}}]}"},
    {"enum", "{\"type\":\"array\",\"minItems\":1}"},
    {"const", "{}"},
    {"minimum", NUMBER},
    {"maximum", NUMBER},
    {"exclusiveMinimum", NUMBER},
    {"exclusiveMaximum", NUMBER},
    {"multipleOf", "{\"type\":\"number\",\"exclusiveMinimum\":0}"},
    {"minLength", COUNT},
    {"maxLength", COUNT},
    {"pattern", "{\"type\":[\"string\",\"number\",\"boolean\"]}"},
    {"format", "{\"enum\":[\"date-time\",\"date\",\"email\",\"uri\",\"uuid\",\"ipv4\",\"ipv6\"]}"},
    {"items", SUBSCHEMA},
    {"prefixItems", SUBSCHEMA_LIST},
    {"minItems", COUNT},
    {"maxItems", COUNT},
    {"uniqueItems", "{\"type\":\"boolean\"}"},
    {"properties", SUBSCHEMA_MAP},
    {"required", "{\"type\":\"array\",\"uniqueItems\":true,"
                 "\"items\":{\"type\":[\"string\",\"number\",\"boolean\"]}}"},
    {"additionalProperties", SUBSCHEMA},
    {"minProperties", COUNT},
    {"maxProperties", COUNT},
    {"allOf", SUBSCHEMA_LIST},
    {"anyOf", SUBSCHEMA_LIST},
    {"oneOf", SUBSCHEMA_LIST},
    {"not", SUBSCHEMA},
    {"$defs", SUBSCHEMA_MAP},
    {"$ref", "{\"type\":\"string\",\"pattern\":\"^#\"}"},
    {"description", TEXT},
    {"title", TEXT},
    {"$comment", TEXT},
    {"default", "{}"},
    {"examples", "{\"type\":\"array\"}"},
};

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) gate_log("error", "policy.schema", "bad built-in fragment %s: %s", text, jerr.text);
    return j;
}

/* The row's default as a typed JSON value, or NULL. */
static json_t *default_json(const struct policy_key *k)
{
    if (!k->def) return NULL;
    if (k->type == PKEY_BOOL || k->type == PKEY_SECTION)
        return json_boolean(!strcmp(k->def, "true"));
    if (k->type == PKEY_UINT) return json_integer(strtoll(k->def, NULL, 10));
    if (k->type == PKEY_CPU) return json_real(strtod(k->def, NULL));
    return json_string(k->def);
}

static json_t *type_fragment(const struct policy_key *k)
{
    switch (k->type) {
    case PKEY_STRING:
        return json_pack("{s:[sss]}", "type", "string", "number", "boolean");
    case PKEY_BOOL:
        return json_pack("{s:s}", "type", "boolean");
    case PKEY_UINT: {
        json_t *j = json_pack("{s:s, s:I}", "type", "integer", "minimum", (json_int_t)k->min);
        if (j && k->max <= INT64_MAX)
            json_object_set_new(j, "maximum", json_integer((json_int_t)k->max));
        return j;
    }
    case PKEY_DURATION: /* a bare integer is seconds; the range is the loader's */
        return json_pack("{s:[ss], s:i, s:s}", "type", "string", "integer", "minimum", 0, "pattern",
                         "^[0-9]+(ms|s|m|h|d)?$");
    case PKEY_ENUM: {
        json_t *names = json_array();
        for (size_t i = 0; names && k->names[i]; i++)
            json_array_append_new(names, json_string(k->names[i]));
        return json_pack("{s:o}", "enum", names);
    }
    case PKEY_STRING_LIST:
        return json_pack("{s:s, s:{s:[sss]}}", "type", "array", "items", "type", "string", "number",
                         "boolean");
    default:
        return json_object();
    }
}

static json_t *section_schema(const struct policy_key *parent);

static json_t *key_schema(const struct policy_key *k)
{
    json_t *s = NULL;
    if (k->schema)
        s = parse(k->schema);
    else if (k->type == PKEY_SECTION)
        s = section_schema(k);
    else
        s = type_fragment(k);
    if (!s) return NULL;
    if (k->type == PKEY_SECTION && (k->flags & PKEY_OR_BOOL)) {
        json_t *either = json_pack("{s:[{s:s}, o]}", "anyOf", "type", "boolean", s);
        s = either;
    }
    if (!s) return NULL;
    json_object_set_new(s, "description", json_string(k->doc ? k->doc : k->path));
    json_t *def = default_json(k);
    if (def) json_object_set_new(s, "default", def);
    return s;
}

/* The object schema of one mapping (parent NULL: the policy itself). */
static json_t *section_schema(const struct policy_key *parent)
{
    json_t *props = json_object(), *required = json_array();
    for (size_t i = 0; props && required && i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (policy_key_parent(k) != parent) continue;
        json_object_set_new(props, policy_key_leaf(k), key_schema(k));
        if (k->flags & PKEY_REQUIRED) json_array_append_new(required, json_string(k->path));
    }
    json_t *s = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                          "additionalProperties", 0);
    if (s && json_array_size(required)) json_object_set(s, "required", required);
    json_decref(required);
    return s;
}

/* {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": inner}}}}
 * for path "a.b"; with `require`, each level also lists its key as required. Steals inner. */
static json_t *nest(const char *path, json_t *inner, bool require)
{
    const char *dot = strrchr(path, '.');
    const char *leaf = dot ? dot + 1 : path;
    json_t *level = json_pack("{s:s, s:{s:o}}", "type", "object", "properties", leaf, inner);
    if (level && require) json_object_set_new(level, "required", json_pack("[s]", leaf));
    if (!dot || !level) return level;
    autofree char *parent = strndup(path, (size_t)(dot - path));
    return parent ? nest(parent, level, require) : NULL;
}

static json_t *typed_value(const struct policy_key *k, const char *value)
{
    if (k->type == PKEY_BOOL) return json_boolean(!strcmp(value, "true"));
    return json_string(value);
}

static json_t *cross_rule_schema(const struct policy_cross_rule *r)
{
    const struct policy_key *ik = policy_key_find(r->if_key), *tk = policy_key_find(r->then_key);
    if (!ik || !tk) return NULL;
    json_t *cond = json_pack("{s:o}", "const", typed_value(ik, r->if_value));
    if (r->op == PCROSS_IF_IS_NOT) cond = json_pack("{s:o}", "not", cond);
    /* A rule about a key's value holds for its default too: only a written key can differ. */
    /* The loader skips a rule whose if_key is absent without a default, and an absent key
     * with a default is tested by its default: the `if` requires the key unless its default
     * already meets the condition. */
    bool default_meets = ik->def && (!strcmp(ik->def, r->if_value) == (r->op == PCROSS_IF_IS));
    json_t *if_ = nest(r->if_key, cond, !default_meets);
    json_t *then = NULL;
    bool then_default_matches = tk->def && r->then_value && !strcmp(tk->def, r->then_value);
    switch (r->then) {
    case PCROSS_PRESENT:
        then = nest(r->then_key, json_object(), true);
        break;
    case PCROSS_ABSENT: {
        const char *dot = strrchr(r->then_key, '.');
        json_t *absent = json_pack("{s:s, s:{s:s, s:[s]}}", "type", "object", "not", "type",
                                   "object", "required", dot ? dot + 1 : r->then_key);
        if (!dot) {
            then = absent;
        } else {
            autofree char *parent = strndup(r->then_key, (size_t)(dot - r->then_key));
            then = parent ? nest(parent, absent, false) : NULL;
        }
        break;
    }
    case PCROSS_IS:
        then = nest(r->then_key, json_pack("{s:o}", "const", typed_value(tk, r->then_value)),
                    !then_default_matches);
        break;
    case PCROSS_IS_NOT:
        then = nest(r->then_key,
                    json_pack("{s:{s:o}}", "not", "const", typed_value(tk, r->then_value)),
                    then_default_matches);
        break;
    }
    return json_pack("{s:o, s:o, s:s}", "if", if_, "then", then, "description", r->msg);
}

/* The keywords as the properties of a schema mapping: at the root of `arguments` (root) or
 * below it. */
static json_t *keyword_properties(bool root)
{
    json_t *props = json_object();
    for (size_t i = 0; props && i < sizeof(argument_keywords) / sizeof(argument_keywords[0]); i++)
        if (root || strcmp(argument_keywords[i].name, ROOT_ONLY) != 0)
            json_object_set_new(props, argument_keywords[i].name,
                                parse(argument_keywords[i].schema));
    return props;
}

static json_t *argument_defs(void)
{
    json_t *props = keyword_properties(false), *root_props = keyword_properties(true);
    json_t *defs = json_object();
    if (!defs || !props || !root_props) {
        json_decref(defs);
        json_decref(props);
        json_decref(root_props);
        return NULL;
    }
    json_object_set_new(defs, "argument_schema",
                        json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                                  "additionalProperties", 0));
    /* In JSON Schema 2020-12 a boolean is a schema too (true: anything, false: nothing). */
    json_object_set_new(defs, "schema",
                        json_pack("{s:[{s:s}, {s:s}]}", "anyOf", "type", "boolean", "$ref",
                                  "#/$defs/argument_schema"));
    json_object_set_new(defs, "type_name",
                        json_pack("{s:[sssssss]}", "enum", "string", "integer", "number", "boolean",
                                  "array", "object", "null"));
    json_object_set_new(
        defs, "count",
        json_pack("{s:s, s:i, s:i}", "type", "integer", "minimum", 0, "maximum", 2147483647));
    /* The root must be an object: `type: object` or `type: [object]`; $schema only here. */
    json_object_set_new(
        root_props, "type",
        json_pack("{s:[{s:s}, {s:[s]}]}", "anyOf", "const", "object", "const", "object"));
    json_object_set_new(defs, "arguments",
                        json_pack("{s:s, s:s, s:o, s:[s], s:b}", "description",
                                  "an argument schema; its root is an object", "type", "object",
                                  "properties", root_props, "required", "type",
                                  "additionalProperties", 0));
    return defs;
}

json_t *policy_file_schema(void)
{
    json_t *root = json_pack(
        "{s:s, s:s, s:s}", "$schema", "https://json-schema.org/draft/2020-12/schema", "title",
        "gatehouse tool policy", "description",
        "One tool's policy (policies/*.yaml). Generated from the key table in "
        "policy/src/policy.c by `gatehouse policy schema`; do not edit. The loader is "
        "authoritative: it also checks duration ranges, host paths, syscall names and URLs.");
    json_t *body = section_schema(NULL), *rules = json_array(), *defs = argument_defs();
    for (size_t i = 0; rules && i < policy_ncross_rules; i++)
        json_array_append_new(rules, cross_rule_schema(&policy_cross_rules[i]));
    if (!root || !body || !rules || !defs || json_object_update(root, body) < 0) {
        json_decref(root);
        root = NULL;
    }
    if (root) {
        json_object_set(root, "allOf", rules);
        json_object_set(root, "$defs", defs);
    }
    json_decref(body);
    json_decref(rules);
    json_decref(defs);
    return root;
}
