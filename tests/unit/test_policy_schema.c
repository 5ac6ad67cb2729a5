/* test_policy_schema.c: the policy module's argument schemas (JSON Schema 2020-12): every
 * keyword, the published (normalised) schema, ECMA-262 pattern semantics on PCRE2, formats,
 * $ref, and the per-call bounds. Tables: one row per case, the expected message verbatim. The
 * differential test against ajv (tests/schema_diff/) covers the same ground with generated
 * cases; this file pins the cases that matter by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* The minimal valid head of a policy: 4 lines, so YAML appended starts at line 5. */
#define HEAD "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"

static void print_diags(const struct policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("diag: %s\n", d->msgs[i]);
}

/* Compile a schema written in YAML through the public API (flags 0: any root). */
static struct policy_schema *compile(const char *yaml, struct policy_diags *d)
{
    struct ynode *root = NULL;
    struct gate_error err = {0};
    if (ynode_load_buf("s.yaml", yaml, strlen(yaml), &root, &err) < 0) {
        policy_diags_add(d, "%s", err.msg);
        return NULL;
    }
    struct policy_schema *s = policy_schema_compile("s.yaml", root, 0, d);
    ynode_free(root);
    return s;
}

static struct policy_schema *compile_ok(const char *yaml)
{
    struct policy_diags d = {0};
    struct policy_schema *s = compile(yaml, &d);
    if (!s) print_message("schema: %s\n", yaml);
    print_diags(&d);
    assert_non_null(s);
    assert_int_equal(d.n, 0);
    return s;
}

/* NULL if value (JSON text, NUL allowed) passes, else the message. Static buffer. */
static const char *verdict(const struct policy_schema *s, const char *json, size_t len)
{
    static struct gate_error err;
    json_error_t jerr;
    json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) print_message("bad test JSON %s: %s\n", json, jerr.text);
    assert_non_null(v);
    memset(&err, 0, sizeof(err));
    int rc = policy_schema_check(s, v, &err);
    json_decref(v);
    if (rc == 0) return NULL;
    assert_int_equal(err.code, GATE_E_INVALID_ARGUMENTS);
    return err.msg;
}

struct case_ {
    const char *schema; /* YAML */
    const char *json;   /* the value */
    const char *msg;    /* NULL = valid */
};

static void run_cases(const struct case_ *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct policy_schema *s = compile_ok(cases[i].schema);
        const char *got = verdict(s, cases[i].json, strlen(cases[i].json));
        if ((got == NULL) != (cases[i].msg == NULL) || (got && strcmp(got, cases[i].msg) != 0))
            print_message("case %zu: schema %s value %s: got '%s', want '%s'\n", i, cases[i].schema,
                          cases[i].json, got ? got : "(valid)",
                          cases[i].msg ? cases[i].msg : "(valid)");
        if (cases[i].msg)
            assert_string_equal(got, cases[i].msg);
        else
            assert_null(got);
        policy_schema_free(s);
    }
}

/* ---- a policy's arguments ---------------------------------------------------------------- */

static const char schema_policy[] =
    HEAD "arguments:\n"
         "  type: object\n"
         "  properties:\n"
         "    text: {type: string, minLength: 2, maxLength: 4}\n"
         "    word: {type: string, pattern: \"^[a-zé]+$\"}\n"
         "    part: {type: string, pattern: \"ab\"}\n"
         "    n: {type: integer, minimum: 1, maximum: 10}\n"
         "    x: {type: number, minimum: -1.5, maximum: 2.5}\n"
         "    big: {type: number, maximum: 1e3}\n"
         "    mode: {enum: [fast, slow, 3]}\n"
         "    tags: {type: array, items: {type: string, maxLength: 3}, minItems: 1, maxItems: 2}\n"
         "    flag: {type: boolean}\n"
         "    opt: {type: [string, \"null\"]}\n"
         "    nested:\n"
         "      type: object\n"
         "      properties: {a: {type: integer}}\n"
         "      required: [a]\n"
         "      additionalProperties: true\n"
         "  required: [text]\n";

#define EURO10                                                                                     \
    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82" \
    "\xac\xe2\x82\xac\xe2\x82\xac"

struct args_case {
    const char *json;
    const char *msg; /* NULL = valid */
};

static const struct args_case args_cases[] = {
    {"{\"text\":\"ab\"}", NULL},
    {"{\"text\":\"abcd\",\"n\":10,\"x\":-1.5,\"mode\":3,\"tags\":[\"a\",\"bcd\"],\"flag\":false,"
     "\"opt\":null,\"nested\":{\"a\":1,\"extra\":true}}",
     NULL},
    {"{}", "$: missing required property 'text'"},
    {"[]", "$: expected object, got array"},
    {"{\"text\":\"ab\",\"zz\":1}", "$: unknown property 'zz'"},
    {"{\"text\":\"abcde\"}", "$.text: longer than maxLength 4"},
    {"{\"text\":\"a\"}", "$.text: shorter than minLength 2"},
    /* Lengths count code points: 4 two-byte and 4 three-byte characters are fine, 5 are not. */
    {"{\"text\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", NULL},
    {"{\"text\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}", NULL},
    {"{\"text\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}",
     "$.text: longer than maxLength 4"},
    {"{\"text\":\"ab\",\"word\":\"caf\xc3\xa9\"}", NULL},
    {"{\"text\":\"ab\",\"word\":\"Cafe\"}", "$.word: does not match pattern '^[a-z\xc3\xa9]+$'"},
    {"{\"text\":\"ab\",\"word\":\"cafe\\n\"}", "$.word: does not match pattern '^[a-z\xc3\xa9]+$'"},
    {"{\"text\":\"ab\",\"part\":\"xxabxx\"}", NULL}, /* unanchored */
    {"{\"text\":\"ab\",\"part\":\"xxbaxx\"}", "$.part: does not match pattern 'ab'"},
    {"{\"text\":\"ab\",\"n\":\"5\"}", "$.n: expected integer, got string"},
    /* 5.0 and 5e0 are integers (JSON Schema counts by value, not by spelling); 5.5 is not. */
    {"{\"text\":\"ab\",\"n\":5.0}", NULL},
    {"{\"text\":\"ab\",\"n\":5e0}", NULL},
    {"{\"text\":\"ab\",\"n\":5.5}", "$.n: expected integer, got number"},
    {"{\"text\":\"ab\",\"n\":0}", "$.n: less than minimum 1"},
    {"{\"text\":\"ab\",\"n\":11}", "$.n: greater than maximum 10"},
    {"{\"text\":\"ab\",\"n\":11.0}", "$.n: greater than maximum 10"},
    {"{\"text\":\"ab\",\"x\":2}", NULL}, /* an integer is a number */
    {"{\"text\":\"ab\",\"x\":2.6}", "$.x: greater than maximum 2.5"},
    {"{\"text\":\"ab\",\"x\":-2}", "$.x: less than minimum -1.5"},
    {"{\"text\":\"ab\",\"mode\":\"slow\"}", NULL},
    {"{\"text\":\"ab\",\"mode\":3.0}", NULL},
    {"{\"text\":\"ab\",\"big\":1000}", NULL},
    {"{\"text\":\"ab\",\"big\":1000.5}", "$.big: greater than maximum 1000"},
    {"{\"text\":\"ab\",\"mode\":\"3\"}", "$.mode: value is not one of the allowed values (enum)"},
    {"{\"text\":\"ab\",\"tags\":[]}", "$.tags: fewer than minItems 1 items"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",\"b\",\"c\"]}", "$.tags: more than maxItems 2 items"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",\"long\"]}", "$.tags[1]: longer than maxLength 3"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",7]}", "$.tags[1]: expected string, got integer"},
    {"{\"text\":\"ab\",\"flag\":\"true\"}", "$.flag: expected boolean, got string"},
    {"{\"text\":\"ab\",\"opt\":1}", "$.opt: expected string or null, got integer"},
    {"{\"text\":\"ab\",\"nested\":{}}", "$.nested: missing required property 'a'"},
    {"{\"text\":\"ab\",\"nested\":{\"a\":true}}", "$.nested.a: expected integer, got boolean"},
    {"{\"text\":\"ab\",\"bad\\nname\":1}", "$: unknown property 'bad?name'"},
    /* Outsider-supplied names are cut at 64 bytes on a character boundary. */
    {"{\"text\":\"ab\",\"" EURO10 EURO10 EURO10 "\":1}",
     "$: unknown property '" EURO10 EURO10 "\xe2\x82\xac'"},
};

static struct policy *load_policy(const char *yaml)
{
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int rc = policy_load_buf("schema.yaml", yaml, strlen(yaml), &p, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    policy_diags_free(&d);
    return p;
}

static void test_policy_check_args_table(void **state)
{
    (void)state;
    struct policy *p = load_policy(schema_policy);
    for (size_t i = 0; i < sizeof(args_cases) / sizeof(args_cases[0]); i++) {
        json_error_t jerr;
        json_t *args = json_loads(args_cases[i].json, 0, &jerr);
        assert_non_null(args);
        struct gate_error err = {0};
        int rc = policy_check_args(p, args, &err);
        if ((rc == 0) != (args_cases[i].msg == NULL) ||
            (args_cases[i].msg && strcmp(err.msg, args_cases[i].msg) != 0))
            print_message("case %zu %s: got rc %d '%s'\n", i, args_cases[i].json, rc, err.msg);
        if (args_cases[i].msg) {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, GATE_E_INVALID_ARGUMENTS);
            assert_string_equal(err.msg, args_cases[i].msg);
        } else {
            assert_int_equal(rc, 0);
        }
        json_decref(args);
    }
    policy_free(p);
}

static void test_policy_arguments_yaml_to_json_types(void **state)
{
    (void)state;
    struct policy *p =
        load_policy(HEAD "arguments:\n  type: object\n  properties:\n"
                         "    v: {enum: [\"1\", 1, -2, 1.5, 2e3, true, null, ~, yes, "
                         "!!str false, '']}\n");
    json_t *e =
        json_object_get(json_object_get(json_object_get(p->arguments, "properties"), "v"), "enum");
    char *js = json_dumps(e, JSON_COMPACT);
    assert_string_equal(js, "[\"1\",1,-2,1.5,2000.0,true,null,null,\"yes\",\"false\",\"\"]");
    free(js);
    /* Enum membership follows JSON types: the string "1" and the integer 1 differ. */
    struct gate_error err = {0};
    json_t *args = json_pack("{s:s}", "v", "yes");
    assert_int_equal(policy_check_args(p, args, &err), 0);
    json_decref(args);
    args = json_pack("{s:b}", "v", 0);
    assert_int_equal(policy_check_args(p, args, &err), -1);
    json_decref(args);
    args = json_pack("{s:i}", "v", 1);
    assert_int_equal(policy_check_args(p, args, &err), 0);
    json_decref(args);
    policy_free(p);
}

/* ---- every keyword ------------------------------------------------------------------------- */

static const struct case_ keyword_cases[] = {
    /* const and enum compare by JSON Schema equality: numbers by value, objects by content. */
    {"{const: 1}", "1.0", NULL},
    {"{const: 1}", "\"1\"", "$: value is not the one allowed (const)"},
    {"{const: null}", "null", NULL},
    {"{const: null}", "false", "$: value is not the one allowed (const)"},
    {"{const: {a: [1, x]}}", "{\"a\": [1e0, \"x\"]}", NULL},
    {"{const: {a: 1, b: 2}}", "{\"b\": 2, \"a\": 1}", NULL},
    {"{const: {a: 1}}", "{\"a\": 1, \"b\": 2}", "$: value is not the one allowed (const)"},
    {"{enum: [[1, 2], x]}", "[1, 2.0]", NULL},
    {"{enum: [[1, 2], x]}", "[2, 1]", "$: value is not one of the allowed values (enum)"},
    /* default and examples are documentation: never checked, never filled in. */
    {"{type: string, default: 5, examples: [a, 1]}", "\"z\"", NULL},
    /* exclusive bounds and multipleOf; integers and reals compare exactly */
    {"{exclusiveMinimum: 1}", "1", "$: not greater than exclusiveMinimum 1"},
    {"{exclusiveMinimum: 1}", "1.0000001", NULL},
    {"{exclusiveMaximum: 2.5}", "2.5", "$: not less than exclusiveMaximum 2.5"},
    {"{exclusiveMaximum: 2.5}", "2", NULL},
    {"{maximum: 9007199254740992}", "9007199254740993", "$: greater than maximum 9007199254740992"},
    {"{maximum: 9007199254740992.0}", "9007199254740993",
     "$: greater than maximum 9007199254740992"},
    {"{minimum: -0.5}", "-1", "$: less than minimum -0.5"},
    {"{multipleOf: 3}", "9", NULL},
    {"{multipleOf: 3}", "10", "$: not a multiple of 3 (multipleOf)"},
    {"{multipleOf: 0.01}", "19.99", NULL}, /* decimal, not binary: 19.99 / 0.01 is 1998.99... */
    {"{multipleOf: 0.1}", "0.3", NULL},
    {"{multipleOf: 0.1}", "0.35", "$: not a multiple of 0.1 (multipleOf)"},
    {"{multipleOf: 1.5}", "9007199254740991", "$: not a multiple of 1.5 (multipleOf)"},
    {"{multipleOf: 2.5}", "1e21", NULL},
    {"{multipleOf: 0.5}", "3", NULL},
    {"{type: integer, multipleOf: 1e-3}", "7", NULL},
    /* arrays: prefixItems, items after them, uniqueItems by value */
    {"{prefixItems: [{type: string}, {type: integer}], items: false}", "[\"a\", 1]", NULL},
    {"{prefixItems: [{type: string}, {type: integer}], items: false}", "[\"a\", 1, 2]",
     "$[2]: no value is allowed here (schema false)"},
    {"{prefixItems: [{type: string}], items: {type: boolean}}", "[\"a\", true, 3]",
     "$[2]: expected boolean, got integer"},
    {"{prefixItems: [{type: string}, {type: integer}]}", "[\"a\"]", NULL},
    {"{uniqueItems: true}", "[1, \"1\", [1], {\"a\": 1}, null, false, 0]", NULL},
    {"{uniqueItems: true}", "[1, 2, 1.0]", "$: has equal items (uniqueItems)"},
    {"{uniqueItems: true}", "[{\"a\": 1, \"b\": [2]}, {\"b\": [2.0], \"a\": 1}]",
     "$: has equal items (uniqueItems)"},
    {"{uniqueItems: false}", "[1, 1]", NULL},
    /* objects: additionalProperties as a schema, min/maxProperties */
    {"{type: object, additionalProperties: {type: integer}}", "{\"a\": 1, \"b\": 2}", NULL},
    {"{type: object, additionalProperties: {type: integer}}", "{\"a\": \"x\"}",
     "$.a: expected integer, got string"},
    {"{type: object, properties: {a: {}}, additionalProperties: false}", "{\"b\": 1}",
     "$: unknown property 'b'"},
    {"{type: object, additionalProperties: true, minProperties: 2}", "{\"a\": 1}",
     "$: fewer than minProperties 2 properties"},
    {"{type: object, additionalProperties: true, maxProperties: 1}", "{\"a\": 1, \"b\": 2}",
     "$: more than maxProperties 1 properties"},
    /* the strict default: a schema describing objects refuses what it does not name ... */
    {"{properties: {a: {}}}", "{\"a\": 1, \"b\": 2}", "$: unknown property 'b'"},
    {"{type: [object, 'null']}", "{\"a\": 1}", "$: unknown property 'a'"},
    /* ... one that does not describe objects says nothing about them */
    {"{minProperties: 1}", "{\"a\": 1}", NULL},
    {"{}", "{\"a\": 1}", NULL},
    {"{required: [a]}", "{\"a\": 1, \"b\": 2}", NULL},
    {"{required: [a]}", "{\"b\": 2}", "$: missing required property 'a'"},
    /* combinators */
    {"{anyOf: [{type: string}, {type: integer}]}", "2", NULL},
    {"{anyOf: [{type: string}, {type: integer}]}", "2.5",
     "$: matches none of the 2 anyOf schemas (the first: $: expected string, got number)"},
    {"{oneOf: [{type: integer}, {type: number}]}", "2.5", NULL},
    {"{oneOf: [{type: integer}, {type: number}]}", "2",
     "$: matches more than one oneOf schema (0 and 1)"},
    {"{oneOf: [{type: integer}, {type: string}]}", "null",
     "$: matches none of the 2 oneOf schemas (the first: $: expected integer, got null)"},
    {"{allOf: [{minimum: 1}, {maximum: 2}]}", "3", "$: greater than maximum 2"},
    {"{not: {type: string}}", "\"a\"", "$: matches the schema under 'not'"},
    {"{not: {type: string}}", "1", NULL},
    {"{type: object, properties: {v: {anyOf: [{const: a}, {type: integer, minimum: 5}]}}}",
     "{\"v\": 4}",
     "$.v: matches none of the 2 anyOf schemas (the first: $.v: value is not the "
     "one allowed (const))"},
    /* boolean schemas */
    {"true", "{\"anything\": [1]}", NULL},
    {"false", "1", "$: no value is allowed here (schema false)"},
    {"{type: object, properties: {a: false}}", "{\"a\": 1}",
     "$.a: no value is allowed here (schema false)"},
    /* $defs and local $ref, recursion through the value included */
    {"{$defs: {pos: {type: integer, minimum: 1}}, type: array, items: {$ref: '#/$defs/pos'}}",
     "[1, 2, 0]", "$[2]: less than minimum 1"},
    {"{$defs: {'a/b': {const: 1}, 'c~d': {const: 2}, 'e f': {const: 3}},"
     " anyOf: [{$ref: '#/$defs/a~1b'}, {$ref: '#/$defs/c~0d'}, {$ref: '#/$defs/e%20f'}]}",
     "3", NULL},
    {"{type: object, properties: {v: {type: integer}, kids: {type: array, items: {$ref: '#'}}},"
     " required: [v]}",
     "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": []}, {\"v\": 3, \"kids\": [{\"kids\": []}]}]}",
     "$.kids[1].kids[0]: missing required property 'v'"},
    {"{$ref: '#/$defs/s', $defs: {s: {type: string}}, maxLength: 2}", "\"abc\"",
     "$: longer than maxLength 2"},
    {"{prefixItems: [{type: integer}, {$ref: '#/prefixItems/0'}]}", "[1, \"x\"]",
     "$[1]: expected integer, got string"},
};

static void test_schema_keywords(void **state)
{
    (void)state;
    run_cases(keyword_cases, sizeof(keyword_cases) / sizeof(keyword_cases[0]));
}

/* ---- what the compiler refuses, and where ------------------------------------------------ */

struct refusal {
    const char *schema;
    const char *where; /* "LINE:COL" */
    const char *msg;   /* substring */
};

static const struct refusal refusals[] = {
    {"{typo: 1}", "1:2", "unknown schema keyword 'typo'"},
    {"{type: [string, string]}", "1:17", "type 'string' is listed twice"},
    {"{type: []}", "1:8", "non-empty list"},
    {"{items: [{type: string}]}", "1:9", "a list of schemas is 'prefixItems'"},
    {"{prefixItems: []}", "1:15", "'prefixItems' must be a non-empty list of schemas"},
    {"{anyOf: {type: string}}", "1:9", "'anyOf' must be a non-empty list of schemas"},
    {"{multipleOf: 0}", "1:14", "'multipleOf' must be greater than 0"},
    {"{multipleOf: '2'}", "1:14", "'multipleOf' must be a number"},
    {"{minLength: 1.5}", "1:13", "'minLength' must be an integer between 0"},
    {"{maxItems: -1}", "1:12", "'maxItems' must be an integer between 0"},
    {"{format: hostname}", "1:10", "'format' must be one of date-time, date, email"},
    {"{uniqueItems: yes}", "1:15", "use true or false"},
    {"{additionalProperties: 'false'}", "1:24", "a boolean schema' must be an unquoted true"},
    {"{not: maybe}", "1:7", "a schema must be a mapping (or true / false), got a scalar"},
    {"{examples: 1}", "1:12", "'examples' must be a list"},
    {"{description: [a]}", "1:15", "annotations (description, title, $comment) must be strings"},
    {"{$schema: 'http://json-schema.org/draft-07/schema#'}", "1:11", "must be https://json-"},
    {"{properties: {a: {$schema: 'https://json-schema.org/draft/2020-12/schema'}}}", "1:28",
     "'$schema' is only allowed at the root"},
    {"{$ref: 'other.json#/x'}", "1:8", "must be a local reference"},
    {"{$ref: '#/$defs/nope', $defs: {}}", "1:8", "'$ref' '#/$defs/nope' points at nothing"},
    {"{$ref: '#/$defs', $defs: {a: {}}}", "1:8", "'$ref' must point at a schema"},
    {"{$ref: '#'}", "1:1", "loop back"},
    {"{$defs: {a: {$ref: '#/$defs/b'}, b: {anyOf: [{$ref: '#/$defs/a'}]}}}", "1:13", "loop back"},
    {"{type: object, required: [a]}", "1:27",
     "required property 'a' is not listed in properties (and additionalProperties is false)"},
    {"{required: [a, a]}", "1:16", "'a' is listed twice in required"},
    {"{pattern: '(?i)abc'}", "1:11", "bad pattern: at offset 0: '(?i' is not ECMA-262 syntax"},
};

static void test_schema_refusals_have_locations(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        struct policy_diags d = {0};
        struct policy_schema *s = compile(refusals[i].schema, &d);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "s.yaml:%s: ", refusals[i].where);
        bool found = false;
        for (size_t k = 0; k < d.n; k++)
            found |= strncmp(d.msgs[k], prefix, strlen(prefix)) == 0 &&
                     strstr(d.msgs[k], refusals[i].msg) != NULL;
        if (s || !found) {
            print_message("case %zu %s: want '%s...%s'\n", i, refusals[i].schema, prefix,
                          refusals[i].msg);
            print_diags(&d);
        }
        assert_null(s);
        assert_true(found);
        policy_diags_free(&d);
    }
}

/* A chain of $ref longer than 64 (no loop) is refused too: validation recursion stays bounded
 * by the value's own depth. */
static void test_schema_refuses_long_ref_chains(void **state)
{
    (void)state;
    char *yaml = malloc(16384);
    assert_non_null(yaml);
    strcpy(yaml, "{$ref: '#/$defs/d0', $defs: {");
    for (int i = 0; i < 70; i++) {
        char one[64];
        snprintf(one, sizeof(one), "d%d: {$ref: '#/$defs/d%d'}, ", i, i + 1);
        strcat(yaml, one);
    }
    strcat(yaml, "d70: {type: integer}}}");
    struct policy_diags d = {0};
    assert_null(compile(yaml, &d));
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "chain more than 64 deep"));
    policy_diags_free(&d);
    free(yaml);
}

/* ---- the published schema is the enforced one ----------------------------------------------- */

static void test_schema_publishes_what_it_enforces(void **state)
{
    (void)state;
    struct policy *p =
        load_policy(HEAD "arguments:\n"
                         "  type: object\n"
                         "  description: 42\n"
                         "  properties:\n"
                         "    a: {type: string, minLength: 2.0, maxLength: 1e1, default: x}\n"
                         "    b: {properties: {c: {}}, required: [c]}\n"
                         "    m: {type: object, additionalProperties: {type: integer}}\n"
                         "    t: {type: object, additionalProperties: true}\n"
                         "    n: {anyOf: [{type: object, properties: {x: {}}}, {type: string}]}\n"
                         "    any: {}\n"
                         "    p: {type: string, pattern: 123}\n"
                         "    q: {properties: {'1': {}}, required: [1]}\n");
    char *js = json_dumps(p->arguments, JSON_COMPACT);
    assert_string_equal(
        js, "{\"type\":\"object\",\"description\":\"42\",\"properties\":{"
            "\"a\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":10,\"default\":\"x\"},"
            "\"b\":{\"properties\":{\"c\":{}},\"required\":[\"c\"],"
            "\"additionalProperties\":false},"
            "\"m\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}},"
            "\"t\":{\"type\":\"object\",\"additionalProperties\":true},"
            "\"n\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"x\":{}},"
            "\"additionalProperties\":false},{\"type\":\"string\"}]},"
            "\"any\":{},\"p\":{\"type\":\"string\",\"pattern\":\"123\"},"
            "\"q\":{\"properties\":{\"1\":{}},\"required\":[\"1\"],"
            "\"additionalProperties\":false}},\"additionalProperties\":false}");
    free(js);
    /* The policy's `arguments` is the compiled schema's JSON, not a second copy. */
    assert_ptr_equal(p->arguments, policy_schema_json(p->schema));
    policy_free(p);
}

/* ---- patterns mean what ECMA-262 says ---------------------------------------------------------
 */

struct rx_case {
    const char *pattern; /* as in YAML, single-quoted */
    const char *subject;
    size_t len; /* 0: strlen */
    bool match;
};

static const struct rx_case rx_cases[] = {
    /* $ is the very end: PCRE2's default also matched before a final newline (issue 10.4) */
    {"^[A-Za-z0-9_-]{1,64}$", "acme", 0, true},
    {"^[A-Za-z0-9_-]{1,64}$", "acme\n", 0, false},
    {"^a$", "a\n", 0, false},
    {"a$", "ba", 0, true},
    {"^b", "a\nb", 0, false}, /* ^ is the start, never after a newline */
    /* . is anything but ECMA's four line terminators */
    {"^.$", "\n", 0, false},
    {"^.$", "\r", 0, false},
    {"^.$", "\xe2\x80\xa8", 0, false},    /* U+2028 */
    {"^.$", "\xe2\x80\xa9", 0, false},    /* U+2029 */
    {"^.$", "\x0b", 0, true},             /* VT is not a line terminator in ECMA-262 */
    {"^.$", "\xc2\x85", 0, true},         /* nor is NEL */
    {"^.$", "\xf0\x9f\x98\x80", 0, true}, /* one code point (an astral one) */
    {"^..$", "\xf0\x9f\x98\x80", 0, false},
    {"^.$", "\0", 1, true},
    /* \d, \w, \b are ASCII */
    {"^\\d$", "7", 0, true},
    {"^\\d$", "\xd9\xa3", 0, false},              /* ARABIC-INDIC DIGIT THREE */
    {"^\\d$", "\xc2\xb2", 0, false},              /* SUPERSCRIPT TWO */
    {"^[^\\D\\p{L}]$", "\xe1\x9a\x80", 0, false}, /* U+1680: PCRE2's own [^\\D\\p{L}] matched */
    {"^[^\\W\\p{L}]$", "\xd9\xa3", 0, false},
    {"^[^\\D\\p{L}]$", "7", 0, true},
    {"^\\w+$", "a_Z9", 0, true},
    {"^\\w$", "\xc3\xa9", 0, false},
    {"\\bcaf\\b", "caf\xc3\xa9", 0, true}, /* é is not a word character: a boundary before it */
    /* \s is ECMA's Unicode white space and line terminators */
    {"^\\s$", "\xc2\xa0", 0, true},     /* NO-BREAK SPACE */
    {"^\\s$", "\xef\xbb\xbf", 0, true}, /* BOM */
    {"^\\s$", "\xe3\x80\x80", 0, true}, /* IDEOGRAPHIC SPACE */
    {"^\\s$", "\xe2\x80\xa8", 0, true},
    {"^\\s$", "\x0b", 0, true},
    {"^\\s$", "\xc2\x85", 0, false}, /* NEL is not white space in ECMA-262 */
    {"^\\S$", "\xc2\xa0", 0, false},
    {"^[^\\s]$", "\xe2\x80\x83", 0, false}, /* EM SPACE */
    {"^[a\\s]+$",
     "a\xe2\x80\x83"
     "a",
     0, true},
    /* escapes */
    {"^\\u00e9$", "\xc3\xa9", 0, true},
    {"^\\u{1F600}$", "\xf0\x9f\x98\x80", 0, true},
    {"^\\uD83D\\uDE00$", "\xf0\x9f\x98\x80", 0, true}, /* a surrogate pair is one code point */
    {"^[\\uD83D\\uDE00-\\uD83D\\uDE4F]$", "\xf0\x9f\x98\x81", 0, true},
    {"^\\x41\\cJ\\0$", "A\n\0", 3, true},
    {"^\\v$", "\x0b", 0, true},
    {"^[\\b]$", "\b", 0, true},
    {"^\\/\\.\\$$", "/.$", 0, true},
    /* classes: every character is literal inside, [] is nothing, [^] anything */
    {"^[[:a]+$", ":[a", 0, true}, /* '[' and ':' are literal: no POSIX class */
    {"^[[:a]+$", "b", 0, false},
    {"^[]$", "a", 0, false},
    {"^[^]$", "\n", 0, true},
    {"^[\\-a]+$", "-a-", 0, true},
    {"^[\\]\\[]+$", "][", 0, true},
    {"^[\\p{Lu}]+$",
     "\xc3\x89"
     "A",
     0, true},
    {"^\\p{L}+$", "\xe4\xb8\xad\xc3\xa9", 0, true},
    {"^\\P{L}$", "1", 0, true},
    {"^\\p{gc=Nd}$", "\xd9\xa3", 0, true},
    /* groups, lookaround, quantifiers */
    {"^(?:ab)+$", "abab", 0, true},
    {"^(?<w>[a-z]+)-\\d$", "ab-1", 0, true},
    {"(?<!b)c", "bc", 0, false},
    {"(?<=a)b", "ab", 0, true},
    {"^a{2,3}?$", "aaa", 0, true},
    {"", "anything", 0, true},
};

static void test_schema_patterns_are_ecma262(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rx_cases) / sizeof(rx_cases[0]); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml), "{type: string, pattern: '%s'}", rx_cases[i].pattern);
        struct policy_schema *s = compile_ok(yaml);
        size_t len = rx_cases[i].len ? rx_cases[i].len : strlen(rx_cases[i].subject);
        json_t *v = json_stringn(rx_cases[i].subject, len);
        assert_non_null(v);
        struct gate_error err = {0};
        bool matched = policy_schema_check(s, v, &err) == 0;
        if (matched != rx_cases[i].match)
            print_message("case %zu: /%s/ on the %zu bytes of subject: got %d\n", i,
                          rx_cases[i].pattern, len, matched);
        assert_int_equal(matched, rx_cases[i].match);
        json_decref(v);
        policy_schema_free(s);
    }
}

/* What PCRE2 would accept but read differently from ECMA-262 (or not ECMA-262 at all). */
static const char *const rx_refused[] = {
    "(?i)a",  "(?>a)",   "a++",      "a*+",           "\\Aa",        "a\\z",
    "a\\Z",   "\\h",     "\\Qa\\E",  "(*UTF)a",       "a{",          "a}",
    "]",      "\\1(a)",  "(a)\\1",   "\\k<n>(?<n>a)", "\\e",         "\\a",
    "\\-",    "[a-\\S]", "[\\d-z]",  "\\p{Greek}",    "\\uD800",     "^*",
    "(?=a)*", "\\b+",    "(?P<n>a)", "[z-a]",         "(a",          "a)",
    "\\",     "\\c1",    "\\01",     "\\x4",          "\\u{110000}", "[[:alpha:]]",
};

static void test_schema_patterns_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rx_refused) / sizeof(rx_refused[0]); i++) {
        char yaml[256];
        snprintf(yaml, sizeof(yaml), "{type: string, pattern: '%s'}", rx_refused[i]);
        struct policy_diags d = {0};
        struct policy_schema *s = compile(yaml, &d);
        if (s || d.n != 1 || !strstr(d.msgs[0], "bad pattern")) {
            print_message("pattern /%s/ should be refused\n", rx_refused[i]);
            print_diags(&d);
        }
        assert_null(s);
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.msgs[0], "s.yaml:1:25: bad pattern"));
        policy_diags_free(&d);
    }
}

/* ---- formats ------------------------------------------------------------------------------------
 */

struct fmt_case {
    const char *format;
    const char *value;
    bool valid;
};

static const struct fmt_case fmt_cases[] = {
    {"date-time", "2026-12-02T10:20:30Z", true},
    {"date-time", "2026-12-02t10:20:30.5z", true},
    {"date-time", "2026-12-02T10:20:30+05:30", true},
    {"date-time", "1998-12-31T23:59:60Z", true},          /* a leap second, in UTC */
    {"date-time", "1998-12-31T15:59:60.123-08:00", true}, /* the same, 8 hours west */
    {"date-time", "1998-12-31T22:59:60Z", false},
    {"date-time", "2024-02-29T00:00:00Z", true},
    {"date-time", "2023-02-29T00:00:00Z", false},
    {"date-time", "2026-12-02T24:00:00Z", false},
    {"date-time", "2026-12-02T10:20:30", false}, /* the offset is required */
    {"date-time", "2026-12-02T10:20:30.Z", false},
    /* stricter than ajv-formats, as RFC 3339 is: */
    {"date-time", "2026-12-02 10:20:30Z", false},
    {"date-time", "2026-12-02\n10:20:30Z", false},
    {"date-time", "2026-12-02T10:20:30+0530", false},
    {"date-time", "2026-12-02T10:20:30+05", false},
    {"date-time", "2026-12-02T25:59:60+02:00", false},
    {"date", "2024-02-29", true},
    {"date", "2100-02-29", false},
    {"date", "2026-04-31", false},
    {"date", "2026-4-30", false},
    {"email", "joe.bloggs+x@mail.example.com", true},
    {"email", "a@b", false},
    {"email", "a..b@c.d", false},
    {"email", "a@-b.c", false},
    {"email", "\"a\"@b.c", false},
    {"email", "a@[1.2.3.4]", false},
    {"uri", "https://u:p@h.example:8080/a/b?q=1#f", true},
    {"uri", "urn:isbn:0451450523", true},
    {"uri", "http://[::1]:80/", true},
    {"uri", "http://[v7.x:y]/", true},
    {"uri", "file:///etc/passwd", true},
    {"uri", "/relative/path", false},
    {"uri", "http://h/a b", false},
    {"uri", "http://h/%zz", false},
    {"uri", "http://h/\xc3\xa9", false},
    {"uri", "mailto:", false},
    /* stricter than ajv-formats, as RFC 3986 is: */
    {"uri", "http://h:port/", false},
    {"uri", "http://a@b@c/", false},
    {"uri", "a:/[::1]", false},
    {"uri", "http://[::01.2.3.4]/", false},
    {"uuid", "123e4567-e89b-12d3-a456-426614174000", true},
    {"uuid", "123E4567-E89B-12D3-A456-426614174000", true},
    {"uuid", "123e4567e89b12d3a456426614174000", false},
    {"uuid", "urn:uuid:123e4567-e89b-12d3-a456-426614174000", false}, /* ajv-formats: valid */
    {"ipv4", "192.168.0.1", true},
    {"ipv4", "192.168.0.01", false},
    {"ipv4", "256.1.1.1", false},
    {"ipv4", "1.2.3.4\n", false},
    {"ipv6", "::", true},
    {"ipv6", "1:2:3:4:5:6:7:8", true},
    {"ipv6", "1:2:3:4:5:6:7::", true},
    {"ipv6", "::ffff:192.0.2.1", true},
    {"ipv6", "1::2::3", false},
    {"ipv6", "1:2:3:4:5:6:7:8:9", false},
    {"ipv6", "fe80::1%eth0", false},
    {"ipv6", "::ffff:192.0.2.01", false},
};

static void test_schema_formats(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(fmt_cases) / sizeof(fmt_cases[0]); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "{format: %s}", fmt_cases[i].format);
        struct policy_schema *s = compile_ok(yaml);
        json_t *v = json_string(fmt_cases[i].value);
        struct gate_error err = {0};
        bool ok = policy_schema_check(s, v, &err) == 0;
        if (ok != fmt_cases[i].valid)
            print_message("case %zu: %s '%s': got %d (%s)\n", i, fmt_cases[i].format,
                          fmt_cases[i].value, ok, err.msg);
        assert_int_equal(ok, fmt_cases[i].valid);
        if (!ok) {
            char want[64];
            snprintf(want, sizeof(want), "$: not a valid %s (format)", fmt_cases[i].format);
            assert_string_equal(err.msg, want);
        }
        json_decref(v);
        json_decref(v = json_integer(5)); /* format says nothing about non-strings */
        policy_schema_free(s);
    }
}

/* ---- bounds on the work one call can cause -------------------------------------------------- */

/* A backtracking pattern under `items` must not cost items x the per-match bound: the whole
 * call has one pattern budget, and running out of it refuses the call. */
static void test_policy_pattern_budget_is_per_call(void **state)
{
    (void)state;
    struct policy *p = load_policy(HEAD "arguments:\n  type: object\n  properties:\n"
                                        "    v: {type: array, items: {type: string, pattern: "
                                        "\"^(a+)+b$\"}}\n");
    json_t *items = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(items, json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaac"));
    json_t *args = json_pack("{s:o}", "v", items);
    struct gate_error err = {0};
    assert_int_equal(policy_check_args(p, args, &err), -1);
    assert_int_equal(err.code, GATE_E_INVALID_ARGUMENTS);
    assert_non_null(strstr(err.msg, "$.v["));
    json_decref(args);
    policy_free(p);
}

/* Nested anyOf over a recursive schema costs 2^depth applications unless something stops it:
 * the step budget refuses the call, and `not` cannot turn that refusal into a pass. */
static void test_schema_step_budget_is_not_undone(void **state)
{
    (void)state;
    static const char *const schemas[] = {
        "{$defs: {t: {type: array, items: {anyOf: [{$ref: '#/$defs/t'}, {$ref: '#/$defs/t'},"
        " {const: 0}]}}}, $ref: '#/$defs/t'}",
        "{$defs: {t: {type: array, items: {anyOf: [{$ref: '#/$defs/t'}, {$ref: '#/$defs/t'},"
        " {const: 0}]}}}, not: {$ref: '#/$defs/t'}}",
    };
    /* [[[...[1]...]]]: 40 levels, each failing both recursive branches before the last one */
    char json[128] = "";
    for (int i = 0; i < 40; i++)
        strcat(json, "[");
    strcat(json, "1");
    for (int i = 0; i < 40; i++)
        strcat(json, "]");
    for (size_t i = 0; i < 2; i++) {
        struct policy_schema *s = compile_ok(schemas[i]);
        const char *got = verdict(s, json, strlen(json));
        assert_non_null(got);
        assert_non_null(strstr(got, "not checked: the call's validation budget is spent"));
        policy_schema_free(s);
    }
}

/* uniqueItems sorts instead of comparing every pair: 200,000 distinct items pass, and one
 * repeated item is found wherever it is. */
static void test_schema_unique_items_scales(void **state)
{
    (void)state;
    struct policy_schema *s = compile_ok("{type: array, uniqueItems: true}");
    json_t *a = json_array();
    for (int i = 0; i < 200000; i++)
        json_array_append_new(a, i % 2 ? json_integer(i) : json_sprintf("s%d", i));
    struct gate_error err = {0};
    assert_int_equal(policy_schema_check(s, a, &err), 0);
    json_array_append_new(a, json_real(199999.0));
    assert_int_equal(policy_schema_check(s, a, &err), -1);
    assert_string_equal(err.msg, "$: has equal items (uniqueItems)");
    json_decref(a);
    policy_schema_free(s);
}

/* ---- the same language for other schemas (an agent's argument grants, issue 12) ---------- */

static void test_schema_api_compiles_any_yaml_schema(void **state)
{
    (void)state;
    const char *grant = "grants:\n  ledger:\n    properties:\n      account: {const: acme}\n"
                        "      amount: {type: integer, maximum: 100}\n";
    struct ynode *root = NULL;
    struct gate_error err = {0};
    assert_int_equal(ynode_load_buf("gatehouse.yaml", grant, strlen(grant), &root, &err), 0);
    const struct ynode *n = ynode_get(ynode_get(root, "grants"), "ledger");
    struct policy_diags d = {0};
    /* Without POLICY_SCHEMA_OBJECT_ROOT the root need not say type: object ... */
    struct policy_schema *s = policy_schema_compile("gatehouse.yaml", n, 0, &d);
    assert_non_null(s);
    json_t *v = json_pack("{s:s,s:i}", "account", "acme", "amount", 101);
    assert_int_equal(policy_schema_check(s, v, &err), -1);
    assert_string_equal(err.msg, "$.amount: greater than maximum 100");
    json_decref(v);
    policy_schema_free(s);
    /* ... with it, it must; errors name the file the schema came from. */
    assert_null(policy_schema_compile("gatehouse.yaml", n, POLICY_SCHEMA_OBJECT_ROOT, &d));
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0],
                        "gatehouse.yaml:3:5: the arguments schema must have type: object");
    policy_diags_free(&d);
    ynode_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_check_args_table),
        cmocka_unit_test(test_policy_arguments_yaml_to_json_types),
        cmocka_unit_test(test_schema_keywords),
        cmocka_unit_test(test_schema_refusals_have_locations),
        cmocka_unit_test(test_schema_refuses_long_ref_chains),
        cmocka_unit_test(test_schema_publishes_what_it_enforces),
        cmocka_unit_test(test_schema_patterns_are_ecma262),
        cmocka_unit_test(test_schema_patterns_refused),
        cmocka_unit_test(test_schema_formats),
        cmocka_unit_test(test_policy_pattern_budget_is_per_call),
        cmocka_unit_test(test_schema_step_budget_is_not_undone),
        cmocka_unit_test(test_schema_unique_items_scales),
        cmocka_unit_test(test_schema_api_compiles_any_yaml_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
