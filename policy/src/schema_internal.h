/* schema_internal.h: what the argument-schema files share (schema.c compiles, schema_check.c
 * validates, schema_value.c compares JSON values, schema_format.c checks formats,
 * schema_regex.c translates ECMA-262 patterns for PCRE2). */
#ifndef GATE_SCHEMA_INTERNAL_H
#define GATE_SCHEMA_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "policy_internal.h"

enum {
    T_STRING = 1 << 0,
    T_INTEGER = 1 << 1,
    T_NUMBER = 1 << 2,
    T_BOOLEAN = 1 << 3,
    T_ARRAY = 1 << 4,
    T_OBJECT = 1 << 5,
    T_NULL = 1 << 6,
};
#define SCHEMA_N_TYPES 7
extern const char *const schema_type_names[SCHEMA_N_TYPES];

enum schema_format {
    FMT_NONE,
    FMT_DATE_TIME,
    FMT_DATE,
    FMT_EMAIL,
    FMT_URI,
    FMT_UUID,
    FMT_IPV4,
    FMT_IPV6,
    FMT__COUNT
};
extern const char *const schema_format_names[FMT__COUNT];

/* One compiled schema: a mapping of keywords, or a boolean schema (true accepts everything,
 * false nothing). Subschemas are borrowed: every node belongs to its policy_schema, which
 * frees them all, so that $ref may point anywhere (cycles included). */
struct schema {
    unsigned id;           /* index in policy_schema.nodes */
    struct policy_loc loc; /* where it is written, for load-time errors */
    bool is_bool;
    bool bool_value;
    unsigned types; /* 0 = any */
    json_t *enum_vals;
    json_t *const_val; /* NULL = no const (a JSON null const is json_null()) */
    json_t *minimum, *maximum, *excl_minimum, *excl_maximum, *multiple_of; /* NULL = unset */
    int64_t min_len, max_len, min_items, max_items, min_props, max_props;  /* -1 = unset */
    enum schema_format format;
    char *pattern; /* as written (ECMA-262), for messages */
    pcre2_code *re;
    bool unique_items;
    struct schema **prefix; /* prefixItems */
    size_t nprefix;
    struct schema *items; /* items after prefixItems; NULL = anything */
    size_t nprops;
    char **prop_names;
    struct schema **props;
    char **required;           /* NULL-terminated */
    struct schema *additional; /* properties not in `properties`; NULL = anything */
    struct schema **all_of, **any_of, **one_of;
    size_t n_all, n_any, n_one;
    struct schema *not_schema;
    struct schema *ref;
};

struct policy_schema {
    struct schema *root;
    struct schema **nodes; /* every node, for freeing */
    size_t n, cap;
    json_t *published;
    pcre2_match_context *mctx;
};

/* ---- schema_value.c ------------------------------------------------------------------------ */
/* Numbers compare by value, exactly (an integer beyond 2^53 against a real included). */
int schema_num_cmp(const json_t *a, const json_t *b);
/* Whether a JSON number is an integer by value (1.0 and 1e0 are). */
bool schema_num_is_integral(const json_t *j);
/* Whether x is a whole multiple of m (> 0), in decimal: 0.3 is a multiple of 0.1. */
bool schema_num_multiple_of(const json_t *x, const json_t *m);
/* The shortest decimal that reads back as the number, for messages. */
void schema_num_str(const json_t *j, char *buf, size_t len);
/* JSON Schema equality: numbers by value, objects regardless of key order. */
bool schema_json_equal(const json_t *a, const json_t *b);
/* A total order consistent with schema_json_equal (for uniqueItems); *steps counts work. */
int schema_json_cmp(const json_t *a, const json_t *b, uint64_t *steps);

/* ---- schema_format.c ----------------------------------------------------------------------- */
bool schema_format_check(enum schema_format f, const char *s, size_t len);

/* ---- schema_regex.c ------------------------------------------------------------------------ */
/* The PCRE2 options under which a translated pattern means what ECMA-262 says. */
#define SCHEMA_PCRE2_OPTIONS                                                                       \
    (PCRE2_UTF | PCRE2_NEVER_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C)
/* Translate an ECMA-262 pattern (JSON Schema's dialect: Unicode mode, no flags) into a PCRE2
 * pattern that matches exactly the same strings under SCHEMA_PCRE2_OPTIONS. Returns the owned
 * pattern, or NULL with the reason in why. */
char *schema_regex_translate(const char *ecma, char *why, size_t whylen);

/* ---- schema_check.c ------------------------------------------------------------------------ */
const char *schema_json_type_name(const json_t *j);

#endif
