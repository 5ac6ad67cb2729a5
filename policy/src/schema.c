/* schema.c: argument schemas, JSON Schema 2020-12, compiled once at load.
 *
 * Keywords: type (string, integer, number, boolean, array, object, null, or a list of them),
 * enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength,
 * maxLength (code points), pattern (ECMA-262, see schema_regex.c), format (date-time, date,
 * email, uri, uuid, ipv4, ipv6: asserted, see schema_format.c), items, prefixItems, minItems,
 * maxItems, uniqueItems, properties, required, additionalProperties (a boolean or a schema),
 * minProperties, maxProperties, allOf, anyOf, oneOf, not, $defs and local $ref ("#/..."), and
 * the annotations description, title, default, examples, $comment, $schema (2020-12 only, at
 * the root). A boolean is a schema (true: anything, false: nothing). Any other keyword is an
 * error, so a typo cannot silently loosen a schema.
 *
 * One rule is ours: a schema that describes objects (its type includes object, or it has
 * properties) refuses properties it does not name unless it says otherwise. The published
 * schema (GET /v1/tools) states that default as additionalProperties: false, so what agents
 * read is exactly what is enforced; counts written as 2.0 are published as 2. Numbers follow
 * JSON Schema, not jansson: 1.0 and 1e0 are integers (schema_value.c).
 *
 * A schema compiles in three passes: every node of the YAML tree (recursion bounded by the
 * YAML depth cap), then $ref targets (which must be schema nodes of the same document), then a
 * check that no chain of in-place applicators ($ref, allOf, anyOf, oneOf, not) loops or runs
 * longer than 64, so validation always descends into the instance.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schema_internal.h"

#define PATTERN_MATCH_LIMIT 100000
#define PATTERN_DEPTH_LIMIT 10000
#define MAX_INPLACE_CHAIN 64
#define SCHEMA_DIALECT "https://json-schema.org/draft/2020-12/schema"

const char *const schema_type_names[SCHEMA_N_TYPES] = {"string", "integer", "number", "boolean",
                                                       "array",  "object",  "null"};

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
    if (n->kind == YNODE_SCALAR) return scalar_to_json(c, n);
    json_t *j = n->kind == YNODE_MAP ? json_object() : json_array();
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

/* ---- compile context ---------------------------------------------------------------------- */

struct node_src {
    const struct ynode *src;
    struct schema *node;
};

struct ref_fix {
    struct schema *from;
    const struct ynode *target;
    struct policy_loc loc;
};

struct cctx {
    struct pctx *c;
    const struct ynode *root;
    struct policy_schema *doc;
    struct node_src *srcs; /* which YAML node each schema came from, for $ref */
    size_t nsrcs;
    struct ref_fix *refs;
    size_t nrefs;
    struct schema *false_node; /* additionalProperties' default */
    const struct ynode *cur;   /* the mapping being compiled */
};

static bool grow(void *arrp, size_t n, size_t elem)
{
    /* Capacity doubles at powers of two: grow when n is 0 or a power of two. */
    if (n & (n - 1)) return true;
    void **arr = arrp;
    void *p = realloc(*arr, (n ? n * 2 : 4) * elem);
    if (!p) return false;
    *arr = p;
    return true;
}

static struct schema *node_new(struct cctx *x, const struct ynode *src)
{
    struct policy_schema *d = x->doc;
    struct schema *s = calloc(1, sizeof(*s));
    if (!s || !grow(&d->nodes, d->n, sizeof(*d->nodes)) ||
        (src && !grow(&x->srcs, x->nsrcs, sizeof(*x->srcs)))) {
        free(s);
        if (x->c) pctx_err(x->c, src ? src->loc : (struct policy_loc){1, 1}, "out of memory");
        return NULL;
    }
    s->min_len = s->max_len = s->min_items = s->max_items = s->min_props = s->max_props = -1;
    s->id = (unsigned)d->n;
    s->loc = src ? src->loc : (struct policy_loc){1, 1};
    d->nodes[d->n++] = s;
    if (src) x->srcs[x->nsrcs++] = (struct node_src){src, s};
    return s;
}

static struct schema *compile_node(struct cctx *x, const struct ynode *n, json_t **pub);

/* A list of schemas (anyOf, ...): the nodes and their published array. */
static struct schema **compile_list(struct cctx *x, const struct ynode *v, const char *what,
                                    size_t *count, json_t **pub)
{
    if (v->kind != YNODE_SEQ || v->n == 0) {
        pctx_err(x->c, v->loc, "'%s' must be a non-empty list of schemas", what);
        return NULL;
    }
    struct schema **list = calloc(v->n, sizeof(*list));
    *pub = json_array();
    if (!list || !*pub) {
        free(list);
        pctx_err(x->c, v->loc, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < v->n; i++) {
        json_t *child = NULL;
        list[i] = compile_node(x, v->items[i], &child);
        if (child) json_array_append_new(*pub, child);
    }
    *count = v->n;
    return list;
}

/* A mapping of schemas (properties, $defs). */
static void compile_map(struct cctx *x, const struct ynode *v, const char *what, char ***names,
                        struct schema ***nodes, size_t *count, json_t **pub)
{
    if (v->kind != YNODE_MAP) {
        pctx_err(x->c, v->loc, "'%s' must be a mapping, got %s", what, ynode_kind_name(v));
        return;
    }
    *pub = json_object();
    char **nm = calloc(v->n ? v->n : 1, sizeof(*nm));
    struct schema **nd = calloc(v->n ? v->n : 1, sizeof(*nd));
    if (!*pub || !nm || !nd) {
        free(nm);
        free(nd);
        pctx_err(x->c, v->loc, "out of memory");
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        json_t *child = NULL;
        nd[i] = compile_node(x, v->items[i], &child);
        if (child) json_object_set_new(*pub, v->keys[i], child);
        if (!(nm[i] = strdup(v->keys[i]))) pctx_err(x->c, v->loc, "out of memory");
    }
    if (names) {
        *names = nm;
        *nodes = nd;
        *count = v->n;
        return;
    }
    for (size_t i = 0; i < v->n; i++)
        free(nm[i]);
    free(nm);
    free(nd); /* $defs: the nodes live on in the document, reachable through $ref */
}

/* ---- keywords ----------------------------------------------------------------------------- */

static void kw_type(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)pub;
    size_t n = v->kind == YNODE_SEQ ? v->n : 1;
    if (v->kind == YNODE_MAP || n == 0) {
        pctx_err(x->c, v->loc, "'type' must be a type name or a non-empty list of them");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct ynode *t = v->kind == YNODE_SEQ ? v->items[i] : v;
        int bit = -1;
        for (int k = 0; t->kind == YNODE_SCALAR && k < SCHEMA_N_TYPES; k++)
            if (strcmp(t->scalar, schema_type_names[k]) == 0) bit = k;
        if (bit < 0)
            pctx_err(x->c, t->loc,
                     "'type' must be one of string, integer, number, boolean, array, "
                     "object, null (or a list of them)");
        else if (s->types & (1u << bit))
            pctx_err(x->c, t->loc, "type '%s' is listed twice", schema_type_names[bit]);
        else
            s->types |= 1u << bit;
    }
}

static void kw_enum(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    if (v->kind != YNODE_SEQ || v->n == 0) {
        pctx_err(x->c, v->loc, "'enum' must be a non-empty list");
        return;
    }
    s->enum_vals = policy_ynode_to_json(x->c, v);
    *pub = json_incref(s->enum_vals);
}

static void kw_const(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    s->const_val = policy_ynode_to_json(x->c, v);
    *pub = json_incref(s->const_val);
}

static void kw_examples(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)s, (void)pub;
    if (v->kind != YNODE_SEQ) pctx_err(x->c, v->loc, "'examples' must be a list");
}

/* description, title, $comment: published as strings whatever their YAML spelling. */
static void kw_text(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)s;
    if (v->kind != YNODE_SCALAR) {
        pctx_err(x->c, v->loc, "annotations (description, title, $comment) must be strings");
        return;
    }
    *pub = string_to_json(x->c, v);
}

static void kw_dialect(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)s, (void)pub;
    if (x->cur != x->root)
        pctx_err(x->c, v->loc, "'$schema' is only allowed at the root");
    else if (v->kind != YNODE_SCALAR ||
             (strcmp(v->scalar, SCHEMA_DIALECT) != 0 && strcmp(v->scalar, SCHEMA_DIALECT "#") != 0))
        pctx_err(x->c, v->loc, "'$schema' must be %s (other drafts mean other things)",
                 SCHEMA_DIALECT);
}

/* minimum, maximum, exclusive*, multipleOf: an unquoted number. */
static json_t *number(struct cctx *x, const struct ynode *v, const char *what)
{
    if (v->kind != YNODE_SCALAR || v->quoted || !scalar_number_kind(v->scalar)) {
        pctx_err(x->c, v->loc, "'%s' must be a number", what);
        return NULL;
    }
    return scalar_to_json(x->c, v);
}

#define NUMBER_KEYWORD(fn, field, name)                                                            \
    static void fn(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)          \
    {                                                                                              \
        s->field = number(x, v, name);                                                             \
        *pub = json_incref(s->field);                                                              \
    }
NUMBER_KEYWORD(kw_minimum, minimum, "minimum")
NUMBER_KEYWORD(kw_maximum, maximum, "maximum")
NUMBER_KEYWORD(kw_excl_minimum, excl_minimum, "exclusiveMinimum")
NUMBER_KEYWORD(kw_excl_maximum, excl_maximum, "exclusiveMaximum")

static void kw_multiple_of(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    s->multiple_of = number(x, v, "multipleOf");
    if (s->multiple_of && json_number_value(s->multiple_of) <= 0)
        pctx_err(x->c, v->loc, "'multipleOf' must be greater than 0");
    *pub = json_incref(s->multiple_of);
}

/* A count: a non-negative integer by value (2 and 2.0 alike), published as an integer. */
static void count(struct cctx *x, const struct ynode *v, const char *what, int64_t *out,
                  json_t **pub)
{
    json_t *j = v->kind == YNODE_SCALAR && !v->quoted && scalar_number_kind(v->scalar)
                    ? scalar_to_json(x->c, v)
                    : NULL;
    double d = j ? json_number_value(j) : -1;
    bool integral = j && schema_num_is_integral(j);
    json_decref(j);
    if (!integral || d < 0 || d > INT32_MAX) {
        pctx_err(x->c, v->loc, "'%s' must be an integer between 0 and %d", what, INT32_MAX);
        return;
    }
    *out = (int64_t)d;
    *pub = json_integer(*out);
}

#define COUNT_KEYWORD(fn, field, name)                                                             \
    static void fn(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)          \
    {                                                                                              \
        count(x, v, name, &s->field, pub);                                                         \
    }
COUNT_KEYWORD(kw_min_len, min_len, "minLength")
COUNT_KEYWORD(kw_max_len, max_len, "maxLength")
COUNT_KEYWORD(kw_min_items, min_items, "minItems")
COUNT_KEYWORD(kw_max_items, max_items, "maxItems")
COUNT_KEYWORD(kw_min_props, min_props, "minProperties")
COUNT_KEYWORD(kw_max_props, max_props, "maxProperties")

static void kw_pattern(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    if (pctx_string(x->c, v, "pattern", &s->pattern) < 0) return;
    *pub = json_string(s->pattern); /* a string even if the YAML wrote `pattern: 123` */
    char why[256];
    autofree char *pcre = schema_regex_translate(s->pattern, why, sizeof(why));
    if (!pcre) {
        pctx_err(x->c, v->loc, "bad pattern: %s", why);
        return;
    }
    int code = 0;
    PCRE2_SIZE offset = 0;
    s->re = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED, SCHEMA_PCRE2_OPTIONS, &code,
                          &offset, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        pctx_err(x->c, v->loc, "bad pattern: %s", (const char *)msg);
    }
}

static void kw_format(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)pub;
    for (int f = 1; v->kind == YNODE_SCALAR && f < FMT__COUNT; f++)
        if (strcmp(v->scalar, schema_format_names[f]) == 0) {
            s->format = (enum schema_format)f;
            return;
        }
    pctx_err(x->c, v->loc,
             "'format' must be one of date-time, date, email, uri, uuid, ipv4, ipv6 "
             "(each is checked)");
}

static void kw_bool(struct cctx *x, const struct ynode *v, const char *what, bool *out)
{
    pctx_bool(x->c, v, what, out);
}

static void kw_unique(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)pub;
    kw_bool(x, v, "uniqueItems", &s->unique_items);
}

static void kw_items(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    if (v->kind == YNODE_SEQ) {
        pctx_err(x->c, v->loc,
                 "'items' takes one schema; a list of schemas is 'prefixItems' in JSON Schema "
                 "2020-12");
        return;
    }
    s->items = compile_node(x, v, pub);
}

static void kw_prefix(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    s->prefix = compile_list(x, v, "prefixItems", &s->nprefix, pub);
}

static void kw_properties(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    compile_map(x, v, "properties", &s->prop_names, &s->props, &s->nprops, pub);
}

static void kw_defs(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    (void)s;
    compile_map(x, v, "$defs", NULL, NULL, NULL, pub);
}

static void kw_required(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    if (pctx_string_list(x->c, v, "required", &s->required) < 0) return;
    *pub = json_array(); /* names, as strings even where the YAML wrote `required: [1]` */
    for (size_t i = 0; s->required[i]; i++) {
        json_array_append_new(*pub, json_string(s->required[i]));
        for (size_t k = 0; k < i; k++)
            if (strcmp(s->required[i], s->required[k]) == 0)
                pctx_err(x->c, v->items[i]->loc, "'%s' is listed twice in required",
                         s->required[i]);
    }
}

static void kw_additional(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    s->additional = compile_node(x, v, pub);
}

#define LIST_KEYWORD(fn, field, n_field, name)                                                     \
    static void fn(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)          \
    {                                                                                              \
        s->field = compile_list(x, v, name, &s->n_field, pub);                                     \
    }
LIST_KEYWORD(kw_all_of, all_of, n_all, "allOf")
LIST_KEYWORD(kw_any_of, any_of, n_any, "anyOf")
LIST_KEYWORD(kw_one_of, one_of, n_one, "oneOf")

static void kw_not(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    s->not_schema = compile_node(x, v, pub);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode one JSON-pointer token of a URI fragment: %XX first, then ~1 -> '/', ~0 -> '~'
 * (RFC 6901 section 6). */
static bool pointer_token(const char *p, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (ch == '%') {
            if (i + 2 >= len || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0) return false;
            ch = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
            i += 2;
        }
        if (ch == '\0' || n + 1 >= outlen) return false;
        out[n++] = ch;
    }
    out[n] = '\0';
    char *w = out;
    for (const char *r = out; *r; r++) {
        if (*r == '~' && (r[1] == '0' || r[1] == '1')) {
            *w++ = r[1] == '1' ? '/' : '~';
            r++;
        } else if (*r == '~') {
            return false;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}

static const struct ynode *resolve_pointer(const struct ynode *root, const char *frag)
{
    const struct ynode *n = root;
    for (const char *p = frag; n && *p;) {
        if (*p != '/') return NULL;
        p++;
        size_t len = strcspn(p, "/");
        char tok[256];
        if (!pointer_token(p, len, tok, sizeof(tok))) return NULL;
        if (n->kind == YNODE_MAP) {
            n = ynode_get(n, tok);
        } else if (n->kind == YNODE_SEQ && tok[0] && strspn(tok, "0123456789") == strlen(tok) &&
                   (tok[0] != '0' || !tok[1]) && strlen(tok) < 10) {
            size_t i = strtoul(tok, NULL, 10);
            n = i < n->n ? n->items[i] : NULL;
        } else {
            n = NULL;
        }
        p += len;
    }
    return n;
}

static void kw_ref(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub)
{
    if (v->kind != YNODE_SCALAR || v->scalar[0] != '#') {
        pctx_err(x->c, v->loc, "'$ref' must be a local reference: \"#\" or \"#/$defs/NAME\"");
        return;
    }
    const struct ynode *target = resolve_pointer(x->root, v->scalar + 1);
    if (!target) {
        pctx_err(x->c, v->loc, "'$ref' '%s' points at nothing in this schema", v->scalar);
        return;
    }
    if (!grow(&x->refs, x->nrefs, sizeof(*x->refs))) {
        pctx_err(x->c, v->loc, "out of memory");
        return;
    }
    x->refs[x->nrefs++] = (struct ref_fix){s, target, v->loc};
    *pub = json_string(v->scalar);
}

static const struct keyword {
    const char *name;
    void (*compile)(struct cctx *x, struct schema *s, const struct ynode *v, json_t **pub);
} keywords[] = {
    {"type", kw_type},
    {"enum", kw_enum},
    {"const", kw_const},
    {"default", NULL}, /* documentation only: the gateway never fills it in */
    {"examples", kw_examples},
    {"description", kw_text},
    {"title", kw_text},
    {"$comment", kw_text},
    {"$schema", kw_dialect},
    {"minimum", kw_minimum},
    {"maximum", kw_maximum},
    {"exclusiveMinimum", kw_excl_minimum},
    {"exclusiveMaximum", kw_excl_maximum},
    {"multipleOf", kw_multiple_of},
    {"minLength", kw_min_len},
    {"maxLength", kw_max_len},
    {"pattern", kw_pattern},
    {"format", kw_format},
    {"items", kw_items},
    {"prefixItems", kw_prefix},
    {"minItems", kw_min_items},
    {"maxItems", kw_max_items},
    {"uniqueItems", kw_unique},
    {"properties", kw_properties},
    {"required", kw_required},
    {"additionalProperties", kw_additional},
    {"minProperties", kw_min_props},
    {"maxProperties", kw_max_props},
    {"allOf", kw_all_of},
    {"anyOf", kw_any_of},
    {"oneOf", kw_one_of},
    {"not", kw_not},
    {"$defs", kw_defs},
    {"$ref", kw_ref},
};
#define N_KEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

static bool has_prop(const struct schema *s, const char *name)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (s->prop_names[i] && strcmp(s->prop_names[i], name) == 0) return true;
    return false;
}

/* The rules that tie keywords of one schema together, once all of them are read. */
static void finish_node(struct cctx *x, struct schema *s, const struct ynode *n, json_t *pub)
{
    bool describes_objects = (s->types & T_OBJECT) || ynode_get(n, "properties");
    if (describes_objects && !ynode_get(n, "additionalProperties")) {
        s->additional = x->false_node;
        json_object_set_new(pub, "additionalProperties", json_false());
    }
    const struct ynode *req = ynode_get(n, "required");
    bool closed = s->additional && s->additional->is_bool && !s->additional->bool_value;
    for (size_t i = 0; closed && s->required && s->required[i]; i++)
        if (!has_prop(s, s->required[i]))
            pctx_err(x->c, req->items[i]->loc,
                     "required property '%s' is not listed in properties (and "
                     "additionalProperties is false)",
                     s->required[i]);
}

static struct schema *compile_map_node(struct cctx *x, const struct ynode *n, json_t **pub)
{
    struct schema *s = node_new(x, n);
    json_t *obj = json_object();
    if (!s || !obj) {
        json_decref(obj);
        if (s) pctx_err(x->c, n->loc, "out of memory");
        return s;
    }
    const struct ynode *outer = x->cur;
    x->cur = n;
    for (size_t i = 0; i < n->n; i++) {
        const struct keyword *kw = NULL;
        for (size_t k = 0; k < N_KEYWORDS && !kw; k++)
            if (strcmp(keywords[k].name, n->keys[i]) == 0) kw = &keywords[k];
        if (!kw) {
            pctx_err(x->c, n->key_locs[i], "unknown schema keyword '%s'", n->keys[i]);
            continue;
        }
        json_t *value = NULL;
        if (kw->compile) kw->compile(x, s, n->items[i], &value);
        if (!value) value = policy_ynode_to_json(x->c, n->items[i]);
        if (value) json_object_set_new(obj, n->keys[i], value);
    }
    x->cur = outer;
    finish_node(x, s, n, obj);
    *pub = obj;
    return s;
}

/* Compile one schema: a mapping, or an unquoted true / false. Errors are reported through
 * x->c; *pub receives the published JSON of the node. */
static struct schema *compile_node(struct cctx *x, const struct ynode *n, json_t **pub)
{
    if (n->kind == YNODE_MAP) return compile_map_node(x, n, pub);
    if (n->kind == YNODE_SCALAR && !n->quoted &&
        (strcmp(n->scalar, "true") == 0 || strcmp(n->scalar, "false") == 0)) {
        struct schema *s = node_new(x, n);
        if (!s) return NULL;
        s->is_bool = true;
        s->bool_value = n->scalar[0] == 't';
        *pub = json_boolean(s->bool_value);
        return s;
    }
    static const char *const boolish[] = {"yes", "no", "on", "off", "y", "n", "true", "false"};
    for (size_t i = 0; n->kind == YNODE_SCALAR && i < sizeof(boolish) / sizeof(boolish[0]); i++)
        if (strcasecmp(n->scalar, boolish[i]) == 0) {
            bool ignored;
            pctx_bool(x->c, n, "a boolean schema", &ignored); /* says what is wrong with it */
            return NULL;
        }
    pctx_err(x->c, n->loc, "a schema must be a mapping (or true / false), got %s",
             ynode_kind_name(n));
    return NULL;
}

/* ---- $ref targets and in-place chains ----------------------------------------------------- */

static int cmp_src(const void *a, const void *b)
{
    const struct node_src *x = a, *y = b;
    return x->src < y->src ? -1 : x->src > y->src;
}

static void resolve_refs(struct cctx *x)
{
    if (x->nsrcs) qsort(x->srcs, x->nsrcs, sizeof(*x->srcs), cmp_src);
    for (size_t i = 0; i < x->nrefs; i++) {
        struct node_src key = {.src = x->refs[i].target};
        struct node_src *hit =
            x->nsrcs ? bsearch(&key, x->srcs, x->nsrcs, sizeof(*x->srcs), cmp_src) : NULL;
        if (!hit)
            pctx_err(x->c, x->refs[i].loc, "'$ref' must point at a schema");
        else
            x->refs[i].from->ref = hit->node;
    }
}

/* The longest chain of in-place applicators ($ref, allOf, anyOf, oneOf, not) from s, in
 * edges, depth first; state: 0 new, 1 on the current path, 2 done (chain[] holds the result).
 * -1 when a chain loops or is longer than MAX_INPLACE_CHAIN, which also bounds the recursion. */
static int chain_from(const struct schema *s, unsigned char *state, int *chain, int depth)
{
    if (state[s->id] == 2) return chain[s->id];
    if (state[s->id] == 1 || depth > MAX_INPLACE_CHAIN) return -1;
    state[s->id] = 1;
    struct schema *const *lists[] = {s->all_of, s->any_of, s->one_of, &s->not_schema, &s->ref};
    size_t counts[] = {s->n_all, s->n_any, s->n_one, 1, 1};
    int best = 0;
    for (size_t l = 0; l < 5 && best >= 0; l++)
        for (size_t i = 0; lists[l] && i < counts[l] && best >= 0; i++) {
            if (!lists[l][i]) continue;
            int c = chain_from(lists[l][i], state, chain, depth + 1);
            best = c < 0 || c + 1 > MAX_INPLACE_CHAIN ? -1 : (c + 1 > best ? c + 1 : best);
        }
    state[s->id] = 2;
    chain[s->id] = best;
    return best;
}

static void check_chains(struct cctx *x)
{
    struct policy_schema *d = x->doc;
    unsigned char *state = calloc(d->n ? d->n : 1, 1);
    int *chain = calloc(d->n ? d->n : 1, sizeof(*chain));
    if (!state || !chain) {
        pctx_err(x->c, x->root->loc, "out of memory");
    } else {
        for (size_t i = 0; i < d->n; i++)
            if (state[i] == 0 && chain_from(d->nodes[i], state, chain, 0) < 0) {
                pctx_err(x->c, d->nodes[i]->loc,
                         "$ref/allOf/anyOf/oneOf/not loop back (or chain more than %d deep) "
                         "without descending into the value",
                         MAX_INPLACE_CHAIN);
                break;
            }
    }
    free(state);
    free(chain);
}

/* ---- the compiled document ---------------------------------------------------------------- */

static void node_free(struct schema *s)
{
    json_decref(s->enum_vals);
    json_decref(s->const_val);
    json_t *nums[] = {s->minimum, s->maximum, s->excl_minimum, s->excl_maximum, s->multiple_of};
    for (size_t i = 0; i < 5; i++)
        json_decref(nums[i]);
    free(s->pattern);
    pcre2_code_free(s->re);
    free(s->prefix);
    for (size_t i = 0; i < s->nprops; i++)
        free(s->prop_names[i]);
    free(s->prop_names);
    free(s->props);
    strv_free(s->required);
    free(s->all_of);
    free(s->any_of);
    free(s->one_of);
    free(s);
}

void policy_schema_free(struct policy_schema *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        node_free(d->nodes[i]);
    free(d->nodes);
    json_decref(d->published);
    pcre2_match_context_free(d->mctx);
    free(d);
}

const json_t *policy_schema_json(const struct policy_schema *d)
{
    return d ? d->published : NULL;
}

/* The schema of a policy without `arguments`: an object with no properties at all. */
static struct policy_schema *strict_empty(void)
{
    struct policy_schema *d = calloc(1, sizeof(*d));
    struct cctx x = {.doc = d};
    if (!d || !(d->root = node_new(&x, NULL)) || !(x.false_node = node_new(&x, NULL))) {
        policy_schema_free(d);
        return NULL;
    }
    x.false_node->is_bool = true;
    d->root->types = T_OBJECT;
    d->root->additional = x.false_node;
    d->published =
        json_pack("{s:s, s:{}, s:b}", "type", "object", "properties", "additionalProperties", 0);
    if (!d->published) {
        policy_schema_free(d);
        return NULL;
    }
    return d;
}

struct policy_schema *policy_schema_compile_in(struct pctx *c, const struct ynode *n,
                                               unsigned flags)
{
    if (!n) return strict_empty();
    struct policy_schema *d = calloc(1, sizeof(*d));
    if (!d || !(d->mctx = pcre2_match_context_create(NULL))) {
        free(d);
        pctx_err(c, n->loc, "out of memory");
        return NULL;
    }
    pcre2_set_match_limit(d->mctx, PATTERN_MATCH_LIMIT);
    pcre2_set_depth_limit(d->mctx, PATTERN_DEPTH_LIMIT);
    int errors = c->errors;
    struct cctx x = {.c = c, .root = n, .doc = d, .cur = n};
    if ((x.false_node = node_new(&x, NULL))) {
        x.false_node->is_bool = true;
        d->root = compile_node(&x, n, &d->published);
    }
    resolve_refs(&x);
    if (c->errors == errors) check_chains(&x);
    free(x.srcs);
    free(x.refs);
    const struct schema *root = d->root;
    if ((flags & POLICY_SCHEMA_OBJECT_ROOT) && root && (root->is_bool || root->types != T_OBJECT))
        pctx_err(c, ynode_get(n, "type") ? ynode_get(n, "type")->loc : n->loc,
                 "the arguments schema must have type: object");
    if (c->errors != errors || !d->root || !d->published) {
        policy_schema_free(d);
        return NULL;
    }
    return d;
}

struct policy_schema *policy_schema_compile(const char *file, const struct ynode *n, unsigned flags,
                                            struct policy_diags *diags)
{
    struct pctx c = {.path = file, .diags = diags};
    if (!n) return strict_empty();
    return policy_schema_compile_in(&c, n, flags);
}
