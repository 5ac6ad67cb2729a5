/* schema.c: the argument schema, a strict subset of JSON Schema, compiled once at load.
 *
 * Keywords: type (string|integer|number|boolean|array|object|null, or a list of them),
 * enum, minimum, maximum, minLength, maxLength (Unicode code points), pattern (PCRE2,
 * UTF, unanchored as JSON Schema says), items, minItems, maxItems, properties, required
 * (names must appear in properties), additionalProperties (a boolean, DEFAULT FALSE: an
 * argument the schema does not name is refused), description and title (ignored). Any
 * other keyword is an error, so a typo cannot silently loosen a schema. The root must be
 * `type: object`. "integer" and "number" follow jansson's types: 1.0 is a number, not an
 * integer. Validation errors name the JSON path: "$.text: longer than maxLength 64".
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

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
static const char *const type_names[] = {"string", "integer", "number", "boolean",
                                         "array",  "object",  "null"};
#define N_TYPES 7

/* Pattern matching is bounded so a pathological pattern cannot pin a worker: per match, and
 * per call (an array of many strings multiplies the per-match bound). */
#define PATTERN_MATCH_LIMIT 100000
#define PATTERN_BUDGET_NS (100ull * 1000000ull)
#define PATTERN_DEPTH_LIMIT 10000
#define PATH_MAX_LEN 256

struct bound {
    bool set;
    bool is_int;
    json_int_t i;
    double d;
};

struct schema {
    unsigned types; /* 0 = any */
    json_t *enum_vals;
    struct bound minimum, maximum;
    int64_t min_len, max_len, min_items, max_items; /* -1 = unset */
    char *pattern;
    pcre2_code *re;
    pcre2_match_context *mctx;
    struct schema *items;
    size_t nprops;
    char **prop_names;
    struct schema **props;
    char **required; /* NULL-terminated */
    bool additional;
};

void policy_schema_free(void *ptr)
{
    struct schema *s = ptr;
    if (!s) return;
    json_decref(s->enum_vals);
    free(s->pattern);
    pcre2_code_free(s->re);
    pcre2_match_context_free(s->mctx);
    policy_schema_free(s->items);
    for (size_t i = 0; i < s->nprops; i++) {
        free(s->prop_names[i]);
        policy_schema_free(s->props[i]);
    }
    free(s->prop_names);
    free(s->props);
    strv_free(s->required);
    free(s);
}

/* ---- YAML -> JSON ------------------------------------------------------------------------- */

static bool all_digits(const char *s)
{
    if (*s < '0' || *s > '9') return false;
    while (*s >= '0' && *s <= '9')
        s++;
    return *s == '\0';
}

/* -?[0-9]+ is an integer (1); -?[0-9]+ with a fraction .[0-9]+, an exponent [eE][+-]?[0-9]+
 * or both is a real (2); anything else is not a number (0). */
static int scalar_number_kind(const char *s)
{
    if (*s == '-') s++;
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s) return 0;
    if (*p == '\0') return 1;
    if (*p == '.') {
        const char *frac = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == frac) return 0;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        return all_digits(p) ? 2 : 0;
    }
    return *p == '\0' ? 2 : 0;
}

static json_t *string_to_json(struct pctx *c, const struct ynode *n)
{
    json_t *j = json_string(n->scalar);
    if (!j) pctx_err(c, n->loc, "'%s' cannot be converted to a JSON string", n->scalar);
    return j;
}

static json_t *scalar_to_json(struct pctx *c, const struct ynode *n)
{
    const char *s = n->scalar;
    if (n->quoted) return string_to_json(c, n);
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) return json_boolean(s[0] == 't');
    if (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0) return json_null();
    int kind = scalar_number_kind(s);
    if (kind == 1) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno) {
            pctx_err(c, n->loc, "integer '%s' is out of range", s);
            return NULL;
        }
        return json_integer(v);
    }
    if (kind == 2) {
        errno = 0;
        double d = strtod(s, NULL);
        if (errno || !isfinite(d)) {
            pctx_err(c, n->loc, "number '%s' is out of range", s);
            return NULL;
        }
        return json_real(d);
    }
    return string_to_json(c, n);
}

json_t *policy_ynode_to_json(struct pctx *c, const struct ynode *n)
{
    json_t *j = NULL;
    if (n->kind == YNODE_SCALAR) {
        return scalar_to_json(c, n);
    }
    j = n->kind == YNODE_MAP ? json_object() : json_array();
    if (!j) {
        pctx_err(c, n->loc, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n->n; i++) {
        json_t *child = policy_ynode_to_json(c, n->items[i]);
        if (!child) {
            json_decref(j);
            return NULL;
        }
        int rc = n->kind == YNODE_MAP ? json_object_set_new(j, n->keys[i], child)
                                      : json_array_append_new(j, child);
        if (rc < 0) {
            pctx_err(c, n->loc, "cannot convert to JSON");
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* ---- compile ------------------------------------------------------------------------------ */

static struct schema *compile_node(struct pctx *c, const struct ynode *n);

static struct schema *schema_new(void)
{
    struct schema *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->min_len = s->max_len = s->min_items = s->max_items = -1;
    return s;
}

static int type_bit(struct pctx *c, const struct ynode *n, unsigned *bits)
{
    if (n->kind == YNODE_SCALAR)
        for (int i = 0; i < N_TYPES; i++)
            if (strcmp(n->scalar, type_names[i]) == 0) {
                *bits |= 1u << i;
                return 0;
            }
    pctx_err(c, n->loc,
             "'type' must be one of string, integer, number, boolean, array, "
             "object, null (or a list of them)");
    return -1;
}

static void kw_type(struct pctx *c, struct schema *s, const struct ynode *v)
{
    if (v->kind != YNODE_SEQ) {
        type_bit(c, v, &s->types);
        return;
    }
    if (v->n == 0) pctx_err(c, v->loc, "'type' list must not be empty");
    for (size_t i = 0; i < v->n; i++)
        type_bit(c, v->items[i], &s->types);
}

static void kw_enum(struct pctx *c, struct schema *s, const struct ynode *v)
{
    if (v->kind != YNODE_SEQ || v->n == 0) {
        pctx_err(c, v->loc, "'enum' must be a non-empty list");
        return;
    }
    json_t *j = policy_ynode_to_json(c, v);
    if (j) {
        json_decref(s->enum_vals);
        s->enum_vals = j;
    }
}

static void kw_bound(struct pctx *c, struct bound *b, const struct ynode *v, const char *what)
{
    int kind = v->kind == YNODE_SCALAR && !v->quoted ? scalar_number_kind(v->scalar) : 0;
    if (kind == 0) {
        pctx_err(c, v->loc, "'%s' must be a number", what);
        return;
    }
    json_t *j = scalar_to_json(c, v);
    if (!j) return;
    b->set = true;
    b->is_int = json_is_integer(j);
    b->i = b->is_int ? json_integer_value(j) : 0;
    b->d = json_number_value(j);
    json_decref(j);
}

static void kw_count(struct pctx *c, int64_t *out, const struct ynode *v, const char *what)
{
    uint64_t u = 0;
    if (pctx_uint(c, v, what, 0, INT32_MAX, &u) == 0) *out = (int64_t)u;
}

static void kw_pattern(struct pctx *c, struct schema *s, const struct ynode *v)
{
    if (pctx_string(c, v, "pattern", &s->pattern) < 0) return;
    int code = 0;
    PCRE2_SIZE offset = 0;
    /* \C could split a UTF-8 character and is refused; UTF mode validates the pattern. */
    s->re = pcre2_compile((PCRE2_SPTR)s->pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C, &code, &offset, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        pctx_err(c, v->loc, "bad pattern: %s at offset %zu", (const char *)msg, (size_t)offset);
        return;
    }
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->mctx) {
        pctx_err(c, v->loc, "out of memory");
        return;
    }
    pcre2_set_match_limit(s->mctx, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, PATTERN_DEPTH_LIMIT);
}

static void kw_items(struct pctx *c, struct schema *s, const struct ynode *v)
{
    struct schema *items = compile_node(c, v);
    if (items) {
        policy_schema_free(s->items);
        s->items = items;
    }
}

static void kw_properties(struct pctx *c, struct schema *s, const struct ynode *v)
{
    if (v->kind != YNODE_MAP) {
        pctx_err(c, v->loc, "'properties' must be a mapping, got %s", ynode_kind_name(v));
        return;
    }
    s->prop_names = calloc(v->n ? v->n : 1, sizeof(*s->prop_names));
    s->props = calloc(v->n ? v->n : 1, sizeof(*s->props));
    if (!s->prop_names || !s->props) {
        pctx_err(c, v->loc, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        struct schema *p = compile_node(c, v->items[i]);
        if (!p) continue;
        s->prop_names[s->nprops] = strdup(v->keys[i]);
        if (!s->prop_names[s->nprops]) {
            policy_schema_free(p);
            pctx_err(c, v->loc, "out of memory");
            return;
        }
        s->props[s->nprops++] = p;
    }
}

static void kw_required(struct pctx *c, struct schema *s, const struct ynode *v,
                        const struct ynode *props)
{
    if (pctx_string_list(c, v, "required", &s->required) < 0) return;
    for (size_t i = 0; s->required[i]; i++)
        if (!ynode_get(props, s->required[i]))
            pctx_err(c, v->items[i]->loc, "required property '%s' is not listed in properties",
                     s->required[i]);
}

static const char *const keywords[] = {
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "additionalProperties",
    "description",
    "title",
    NULL,
};

static void compile_keywords(struct pctx *c, struct schema *s, const struct ynode *n)
{
    const struct ynode *v;
    if ((v = ynode_get(n, "type"))) kw_type(c, s, v);
    if ((v = ynode_get(n, "enum"))) kw_enum(c, s, v);
    if ((v = ynode_get(n, "minimum"))) kw_bound(c, &s->minimum, v, "minimum");
    if ((v = ynode_get(n, "maximum"))) kw_bound(c, &s->maximum, v, "maximum");
    if ((v = ynode_get(n, "minLength"))) kw_count(c, &s->min_len, v, "minLength");
    if ((v = ynode_get(n, "maxLength"))) kw_count(c, &s->max_len, v, "maxLength");
    if ((v = ynode_get(n, "minItems"))) kw_count(c, &s->min_items, v, "minItems");
    if ((v = ynode_get(n, "maxItems"))) kw_count(c, &s->max_items, v, "maxItems");
    if ((v = ynode_get(n, "pattern"))) kw_pattern(c, s, v);
    if ((v = ynode_get(n, "items"))) kw_items(c, s, v);
    if ((v = ynode_get(n, "properties"))) kw_properties(c, s, v);
    if ((v = ynode_get(n, "required"))) kw_required(c, s, v, ynode_get(n, "properties"));
    if ((v = ynode_get(n, "additionalProperties")))
        pctx_bool(c, v, "additionalProperties", &s->additional);
    for (const char *const *k = (const char *const[]){"description", "title", NULL}; *k; k++)
        if ((v = ynode_get(n, *k)) && v->kind != YNODE_SCALAR)
            pctx_err(c, v->loc, "'%s' must be a string", *k);
}

/* Compile one schema mapping. Errors are reported through c; the (possibly partial) schema
 * is returned so the caller's error count, not NULL, decides whether the policy loads. */
static struct schema *compile_node(struct pctx *c, const struct ynode *n)
{
    if (n->kind != YNODE_MAP) {
        pctx_err(c, n->loc, "a schema must be a mapping, got %s", ynode_kind_name(n));
        return NULL;
    }
    for (size_t i = 0; i < n->n; i++) {
        bool known = false;
        for (size_t k = 0; keywords[k] && !known; k++)
            known = strcmp(keywords[k], n->keys[i]) == 0;
        if (!known) pctx_err(c, n->key_locs[i], "unknown schema keyword '%s'", n->keys[i]);
    }
    struct schema *s = schema_new();
    if (!s) {
        pctx_err(c, n->loc, "out of memory");
        return NULL;
    }
    compile_keywords(c, s, n);
    return s;
}

void *policy_schema_compile(struct pctx *c, const struct ynode *n)
{
    if (!n) {
        struct schema *s = schema_new();
        if (s) s->types = T_OBJECT;
        return s;
    }
    struct schema *s = compile_node(c, n);
    if (s && s->types != T_OBJECT)
        pctx_err(c, ynode_get(n, "type") ? ynode_get(n, "type")->loc : n->loc,
                 "the arguments schema must have type: object");
    return s;
}

/* ---- validate ----------------------------------------------------------------------------- */

struct vctx {
    char path[PATH_MAX_LEN + 8];
    size_t len;
    struct gate_error *err;
    uint64_t match_deadline_ns; /* CLOCK_MONOTONIC; past it no more patterns are evaluated */
};

/* Copy an outsider-supplied name into a message: at most 64 bytes, cut at a UTF-8
 * character boundary, control characters, quotes and backslashes replaced by '?'. */
static void safe_name(const char *s, char *out, size_t outlen)
{
    size_t n = 0, max = outlen - 1 < 64 ? outlen - 1 : 64;
    for (; s[n] && n < max; n++) {
        unsigned char ch = (unsigned char)s[n];
        out[n] =
            (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    /* Cut inside a character (the next byte continues it): drop that character's start. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    out[n] = '\0';
}

static size_t path_push(struct vctx *v, const char *fmt, const char *name, size_t idx)
{
    size_t old = v->len;
    char seg[80];
    if (name) {
        char safe[72];
        safe_name(name, safe, sizeof(safe));
        snprintf(seg, sizeof(seg), fmt, safe);
    } else {
        snprintf(seg, sizeof(seg), fmt, idx);
    }
    size_t seglen = strlen(seg);
    if (v->len + seglen >= PATH_MAX_LEN) {
        /* Too deep to name: mark the cut; the buffer has room for a few marks. */
        if (v->len + 4 <= sizeof(v->path)) {
            memcpy(v->path + v->len, "...", 4);
            v->len += 3;
        }
        return old;
    }
    memcpy(v->path + v->len, seg, seglen + 1);
    v->len += seglen;
    return old;
}

static void path_pop(struct vctx *v, size_t old)
{
    v->len = old;
    v->path[old] = '\0';
}

__attribute__((format(printf, 2, 3))) static int verr(struct vctx *v, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return gate_err(v->err, GATE_E_INVALID_ARGUMENTS, "%s: %s", v->path, msg);
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

static unsigned json_type_bits(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return T_OBJECT;
    case JSON_ARRAY:
        return T_ARRAY;
    case JSON_STRING:
        return T_STRING;
    case JSON_INTEGER:
        return T_INTEGER | T_NUMBER; /* every integer is also a number */
    case JSON_REAL:
        return T_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOLEAN;
    default:
        return T_NULL;
    }
}

static int check_type(struct vctx *v, const struct schema *s, const json_t *j)
{
    if (!s->types || (s->types & json_type_bits(j))) return 0;
    char want[96] = "";
    for (int i = 0; i < N_TYPES; i++)
        if (s->types & (1u << i)) {
            if (want[0]) strncat(want, " or ", sizeof(want) - strlen(want) - 1);
            strncat(want, type_names[i], sizeof(want) - strlen(want) - 1);
        }
    return verr(v, "expected %s, got %s", want, json_type_name(j));
}

static size_t utf8_codepoints(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) n++;
    return n;
}

static int check_string(struct vctx *v, const struct schema *s, const json_t *j)
{
    const char *str = json_string_value(j);
    size_t bytes = json_string_length(j);
    size_t cps = utf8_codepoints(str, bytes);
    if (s->max_len >= 0 && cps > (size_t)s->max_len)
        return verr(v, "longer than maxLength %lld", (long long)s->max_len);
    if (s->min_len >= 0 && cps < (size_t)s->min_len)
        return verr(v, "shorter than minLength %lld", (long long)s->min_len);
    if (!s->re) return 0;
    if (gate_monotonic_ns() > v->match_deadline_ns)
        return verr(v, "not checked: the call's pattern matching budget is spent");
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->re, NULL);
    if (!md) return gate_err(v->err, GATE_E_NOMEM, "out of memory");
    int rc = pcre2_match(s->re, (PCRE2_SPTR)str, bytes, 0, 0, md, s->mctx);
    pcre2_match_data_free(md);
    if (rc == PCRE2_ERROR_NOMATCH) return verr(v, "does not match pattern '%.200s'", s->pattern);
    if (rc < 0) return verr(v, "could not be matched against pattern (matching limit reached)");
    return 0;
}

/* <0 if value < bound, 0 if equal, >0 if greater; integers compare exactly. */
static int cmp_bound(const json_t *j, const struct bound *b)
{
    if (json_is_integer(j) && b->is_int) {
        json_int_t x = json_integer_value(j);
        return x < b->i ? -1 : x > b->i;
    }
    double x = json_number_value(j);
    return x < b->d ? -1 : x > b->d;
}

static void bound_str(const struct bound *b, char *buf, size_t len)
{
    if (b->is_int)
        snprintf(buf, len, "%lld", (long long)b->i);
    else
        snprintf(buf, len, "%g", b->d);
}

static int check_number(struct vctx *v, const struct schema *s, const json_t *j)
{
    char num[64];
    if (s->minimum.set && cmp_bound(j, &s->minimum) < 0) {
        bound_str(&s->minimum, num, sizeof(num));
        return verr(v, "less than minimum %s", num);
    }
    if (s->maximum.set && cmp_bound(j, &s->maximum) > 0) {
        bound_str(&s->maximum, num, sizeof(num));
        return verr(v, "greater than maximum %s", num);
    }
    return 0;
}

static int check_value(struct vctx *v, const struct schema *s, const json_t *j);

static int check_array(struct vctx *v, const struct schema *s, const json_t *j)
{
    size_t n = json_array_size(j);
    if (s->max_items >= 0 && n > (size_t)s->max_items)
        return verr(v, "more than maxItems %lld items", (long long)s->max_items);
    if (s->min_items >= 0 && n < (size_t)s->min_items)
        return verr(v, "fewer than minItems %lld items", (long long)s->min_items);
    if (!s->items) return 0;
    for (size_t i = 0; i < n; i++) {
        size_t old = path_push(v, "[%zu]", NULL, i);
        int rc = check_value(v, s->items, json_array_get(j, i));
        path_pop(v, old);
        if (rc < 0) return -1;
    }
    return 0;
}

static const struct schema *find_prop(const struct schema *s, const char *name)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (strcmp(s->prop_names[i], name) == 0) return s->props[i];
    return NULL;
}

static int check_object(struct vctx *v, const struct schema *s, const json_t *j)
{
    char safe[72];
    for (size_t i = 0; s->required && s->required[i]; i++)
        if (!json_object_get(j, s->required[i])) {
            safe_name(s->required[i], safe, sizeof(safe));
            return verr(v, "missing required property '%s'", safe);
        }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val)
    {
        const struct schema *p = find_prop(s, key);
        if (!p) {
            if (s->additional) continue;
            safe_name(key, safe, sizeof(safe));
            return verr(v, "unknown property '%s'", safe);
        }
        size_t old = path_push(v, ".%s", key, 0);
        int rc = check_value(v, p, val);
        path_pop(v, old);
        if (rc < 0) return -1;
    }
    return 0;
}

static int check_value(struct vctx *v, const struct schema *s, const json_t *j)
{
    if (check_type(v, s, j) < 0) return -1;
    if (s->enum_vals) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(s->enum_vals) && !found; i++)
            found = json_equal(json_array_get(s->enum_vals, i), (json_t *)j);
        if (!found) return verr(v, "value is not one of the allowed values (enum)");
    }
    if (json_is_string(j)) return check_string(v, s, j);
    if (json_is_number(j)) return check_number(v, s, j);
    if (json_is_array(j)) return check_array(v, s, j);
    if (json_is_object(j)) return check_object(v, s, j);
    return 0;
}

int policy_check_args(const struct policy *p, const json_t *args, struct gate_error *err)
{
    if (!p || !p->schema)
        return gate_err(err, GATE_E_INTERNAL, "policy has no compiled argument schema");
    if (!args) return gate_err(err, GATE_E_INVALID_ARGUMENTS, "$: arguments are missing");
    struct vctx v = {.path = "$",
                     .len = 1,
                     .err = err,
                     .match_deadline_ns = gate_monotonic_ns() + PATTERN_BUDGET_NS};
    return check_value(&v, p->schema, args);
}
