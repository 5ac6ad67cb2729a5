/* schema_check.c: checking a JSON value against a compiled schema, on the call path.
 *
 * The first problem found is the answer, naming its JSON path ("$.tags[1]: longer than
 * maxLength 3"); names taken from the value are cut to 64 bytes with control characters,
 * quotes and backslashes replaced. Everything an outsider controls is bounded per call: a
 * step budget (each schema applied to each value is a step, each comparison of uniqueItems
 * too), a pattern-matching budget (time, as a backtracking pattern under `items` could cost
 * the per-match limit once per element) and the nesting depth. Running out of any of them
 * refuses the call; such a refusal is never undone by anyOf, oneOf or not.
 */
#include <stdlib.h>
#include <string.h>

#include "schema_internal.h"

#define PATTERN_BUDGET_NS (100ull * 1000000ull)
#define STEP_BUDGET 5000000u
#define MAX_DEPTH 512
#define PATH_MAX_LEN 256

/* A step of the path to the value being checked: a property name or an array index. */
struct seg {
    const char *key; /* NULL: idx */
    size_t idx;
};

struct vctx {
    struct seg segs[MAX_DEPTH]; /* the JSON path, formatted only for a message */
    int nsegs;
    struct gate_error *err;
    uint64_t match_deadline_ns; /* CLOCK_MONOTONIC; past it no more patterns are evaluated */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    uint64_t steps;
    int depth;
    bool quiet; /* inside an alternative whose message nobody reads: only the verdict counts */
    bool hard;  /* a budget or limit was hit: fail whatever the combinators say */
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

/* "$.a[2].b", at most PATH_MAX_LEN bytes; a path too deep to name ends in "...". */
static void format_path(const struct vctx *v, char *out, size_t outlen)
{
    size_t len = 1;
    strcpy(out, "$");
    for (int i = 0; i < v->nsegs; i++) {
        char seg[80], safe[72];
        if (v->segs[i].key) {
            safe_name(v->segs[i].key, safe, sizeof(safe));
            snprintf(seg, sizeof(seg), ".%s", safe);
        } else {
            snprintf(seg, sizeof(seg), "[%zu]", v->segs[i].idx);
        }
        size_t seglen = strlen(seg);
        if (len + seglen >= PATH_MAX_LEN || len + seglen >= outlen) {
            snprintf(out + len, outlen - len, "...");
            return;
        }
        memcpy(out + len, seg, seglen + 1);
        len += seglen;
    }
}

static bool path_push(struct vctx *v, const char *key, size_t idx)
{
    if (v->nsegs >= MAX_DEPTH) return false;
    v->segs[v->nsegs++] = (struct seg){key, idx};
    return true;
}

/* "PATH: message" into v->err. */
static int report(struct vctx *v, const char *fmt, va_list ap)
{
    char msg[768], path[PATH_MAX_LEN + 8];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    format_path(v, path, sizeof(path));
    return gate_err(v->err, GATE_E_INVALID_ARGUMENTS, "%s: %s", path, msg);
}

__attribute__((format(printf, 2, 3))) static int verr(struct vctx *v, const char *fmt, ...)
{
    if (v->quiet) return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = report(v, fmt, ap);
    va_end(ap);
    return rc;
}

/* A limit was reached: the call is refused, and no combinator may turn that into a pass. */
__attribute__((format(printf, 2, 3))) static int hard_err(struct vctx *v, const char *fmt, ...)
{
    v->hard = true;
    va_list ap;
    va_start(ap, fmt);
    int rc = report(v, fmt, ap);
    va_end(ap);
    return rc;
}

const char *schema_json_type_name(const json_t *j)
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
        return schema_num_is_integral(j) ? "integer" : "number";
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
        return schema_num_is_integral(j) ? T_INTEGER | T_NUMBER : T_NUMBER; /* 1.0 too */
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
    for (int i = 0; i < SCHEMA_N_TYPES; i++)
        if (s->types & (1u << i)) {
            if (want[0]) strncat(want, " or ", sizeof(want) - strlen(want) - 1);
            strncat(want, schema_type_names[i], sizeof(want) - strlen(want) - 1);
        }
    return verr(v, "expected %s, got %s", want, schema_json_type_name(j));
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
    if (s->format && !schema_format_check(s->format, str, bytes))
        return verr(v, "not a valid %s (format)", schema_format_names[s->format]);
    if (!s->re) return 0;
    if (gate_monotonic_ns() > v->match_deadline_ns)
        return hard_err(v, "not checked: the call's pattern matching budget is spent");
    if (!v->md && !(v->md = pcre2_match_data_create(1, NULL)))
        return gate_err(v->err, GATE_E_NOMEM, "out of memory");
    int rc = pcre2_match(s->re, (PCRE2_SPTR)str, bytes, 0, 0, v->md, v->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return verr(v, "does not match pattern '%.200s'", s->pattern);
    if (rc < 0) return hard_err(v, "could not be matched against pattern (matching limit reached)");
    return 0;
}

static int check_number(struct vctx *v, const struct schema *s, const json_t *j)
{
    struct {
        const json_t *bound;
        int bad_when; /* schema_num_cmp(value, bound) result that fails */
        bool or_equal;
        const char *what;
    } rules[] = {
        {s->minimum, -1, false, "less than minimum"},
        {s->maximum, 1, false, "greater than maximum"},
        {s->excl_minimum, -1, true, "not greater than exclusiveMinimum"},
        {s->excl_maximum, 1, true, "not less than exclusiveMaximum"},
    };
    char num[40];
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (!rules[i].bound) continue;
        int c = schema_num_cmp(j, rules[i].bound);
        if (c == rules[i].bad_when || (rules[i].or_equal && c == 0)) {
            schema_num_str(rules[i].bound, num, sizeof(num));
            return verr(v, "%s %s", rules[i].what, num);
        }
    }
    if (s->multiple_of && !schema_num_multiple_of(j, s->multiple_of)) {
        schema_num_str(s->multiple_of, num, sizeof(num));
        return verr(v, "not a multiple of %s (multipleOf)", num);
    }
    return 0;
}

static int check_value(struct vctx *v, const struct schema *s, const json_t *j);

static int check_at_index(struct vctx *v, const struct schema *s, const json_t *arr, size_t i)
{
    if (!path_push(v, NULL, i)) return hard_err(v, "not checked: nested too deeply");
    int rc = check_value(v, s, json_array_get(arr, i));
    v->nsegs--;
    return rc;
}

static int cmp_items(const void *a, const void *b, void *steps)
{
    return schema_json_cmp(*(json_t *const *)a, *(json_t *const *)b, steps);
}

/* uniqueItems by sorting, O(n log n) comparisons, never n^2. */
static int check_unique(struct vctx *v, const json_t *j)
{
    size_t n = json_array_size(j);
    if (n < 2) return 0;
    json_t **sorted = malloc(n * sizeof(*sorted));
    if (!sorted) return gate_err(v->err, GATE_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        sorted[i] = json_array_get(j, i);
    qsort_r(sorted, n, sizeof(*sorted), cmp_items, &v->steps);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = schema_json_cmp(sorted[i - 1], sorted[i], &v->steps) == 0;
    free(sorted);
    if (v->steps > STEP_BUDGET)
        return hard_err(v, "not checked: the call's validation budget is spent");
    return dup ? verr(v, "has equal items (uniqueItems)") : 0;
}

static int check_array(struct vctx *v, const struct schema *s, const json_t *j)
{
    size_t n = json_array_size(j);
    if (s->max_items >= 0 && n > (size_t)s->max_items)
        return verr(v, "more than maxItems %lld items", (long long)s->max_items);
    if (s->min_items >= 0 && n < (size_t)s->min_items)
        return verr(v, "fewer than minItems %lld items", (long long)s->min_items);
    if (s->unique_items && check_unique(v, j) < 0) return -1;
    for (size_t i = 0; i < n && i < s->nprefix; i++)
        if (s->prefix[i] && check_at_index(v, s->prefix[i], j, i) < 0) return -1;
    for (size_t i = s->nprefix; s->items && i < n; i++)
        if (check_at_index(v, s->items, j, i) < 0) return -1;
    return 0;
}

static const struct schema *find_prop(const struct schema *s, const char *name)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (strcmp(s->prop_names[i], name) == 0) return s->props[i];
    return NULL;
}

static bool is_false(const struct schema *s)
{
    return s && s->is_bool && !s->bool_value;
}

static int check_object(struct vctx *v, const struct schema *s, const json_t *j)
{
    char safe[72];
    size_t n = json_object_size(j);
    if (s->max_props >= 0 && n > (size_t)s->max_props)
        return verr(v, "more than maxProperties %lld properties", (long long)s->max_props);
    if (s->min_props >= 0 && n < (size_t)s->min_props)
        return verr(v, "fewer than minProperties %lld properties", (long long)s->min_props);
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
        if (!p && is_false(s->additional)) {
            safe_name(key, safe, sizeof(safe));
            return verr(v, "unknown property '%s'", safe);
        }
        if (!p) p = s->additional;
        if (!p) continue;
        if (!path_push(v, key, 0)) return hard_err(v, "not checked: nested too deeply");
        int rc = check_value(v, p, val);
        v->nsegs--;
        if (rc < 0) return -1;
    }
    return 0;
}

/* Whether j passes one alternative, quietly: its message is not formatted, because nobody
 * reads it unless every alternative fails (then `explain` asks again). A hard error (a budget
 * or limit) is the answer whatever the caller: it lands in v->err and v->hard stays set. */
static bool passes(struct vctx *v, const struct schema *s, const json_t *j)
{
    bool quiet = v->quiet;
    v->quiet = true;
    int rc = check_value(v, s, j);
    v->quiet = quiet;
    return rc == 0;
}

/* After every alternative failed: the first one's error, as the reason. */
static int explain(struct vctx *v, const struct schema *first, const json_t *j, const char *what,
                   size_t n)
{
    if (v->quiet) return -1;
    struct gate_error *outer = v->err, inner;
    inner.msg[0] = '\0';
    v->err = &inner;
    int rc = check_value(v, first, j);
    v->err = outer;
    if (v->hard) return gate_err(outer, inner.code, "%s", inner.msg);
    if (rc == 0) return verr(v, "matches none of the %zu %s schemas", n, what); /* cannot be */
    return verr(v, "matches none of the %zu %s schemas (the first: %.300s)", n, what, inner.msg);
}

static int check_combinators(struct vctx *v, const struct schema *s, const json_t *j)
{
    for (size_t i = 0; i < s->n_all; i++)
        if (check_value(v, s->all_of[i], j) < 0) return -1;
    if (s->n_any) {
        bool ok = false;
        for (size_t i = 0; i < s->n_any && !ok && !v->hard; i++)
            ok = passes(v, s->any_of[i], j);
        if (v->hard) return -1;
        if (!ok) return explain(v, s->any_of[0], j, "anyOf", s->n_any);
    }
    if (s->n_one) {
        size_t matched = 0, which[2] = {0, 0};
        for (size_t i = 0; i < s->n_one && matched < 2 && !v->hard; i++)
            if (passes(v, s->one_of[i], j)) which[matched++] = i;
        if (v->hard) return -1;
        if (matched == 0) return explain(v, s->one_of[0], j, "oneOf", s->n_one);
        if (matched > 1)
            return verr(v, "matches more than one oneOf schema (%zu and %zu)", which[0], which[1]);
    }
    if (s->not_schema) {
        bool ok = passes(v, s->not_schema, j);
        if (v->hard) return -1;
        if (ok) return verr(v, "matches the schema under 'not'");
    }
    return 0;
}

static int check_value(struct vctx *v, const struct schema *s, const json_t *j)
{
    if (v->hard) return -1;
    if (++v->steps > STEP_BUDGET)
        return hard_err(v, "not checked: the call's validation budget is spent");
    if (s->is_bool) return s->bool_value ? 0 : verr(v, "no value is allowed here (schema false)");
    if (v->depth >= MAX_DEPTH) return hard_err(v, "not checked: nested too deeply");
    v->depth++;
    int rc = -1;
    if (s->ref && check_value(v, s->ref, j) < 0) goto out;
    if (check_type(v, s, j) < 0) goto out;
    if (s->const_val && !schema_json_equal(s->const_val, j)) {
        verr(v, "value is not the one allowed (const)");
        goto out;
    }
    if (s->enum_vals) {
        bool found = false;
        for (size_t i = 0; i < json_array_size(s->enum_vals) && !found; i++)
            found = schema_json_equal(json_array_get(s->enum_vals, i), j);
        if (!found) {
            verr(v, "value is not one of the allowed values (enum)");
            goto out;
        }
    }
    if (json_is_string(j))
        rc = check_string(v, s, j);
    else if (json_is_number(j))
        rc = check_number(v, s, j);
    else if (json_is_array(j))
        rc = check_array(v, s, j);
    else if (json_is_object(j))
        rc = check_object(v, s, j);
    else
        rc = 0;
    if (rc == 0) rc = check_combinators(v, s, j);
out:
    v->depth--;
    return rc;
}

int policy_schema_check(const struct policy_schema *d, const json_t *value, struct gate_error *err)
{
    if (!d || !d->root) return gate_err(err, GATE_E_INTERNAL, "no compiled schema");
    if (!value) return gate_err(err, GATE_E_INVALID_ARGUMENTS, "$: the value is missing");
    struct vctx *v = malloc(sizeof(*v)); /* the path stack is 8 KiB: not on a worker's stack */
    if (!v) return gate_err(err, GATE_E_NOMEM, "out of memory");
    *v = (struct vctx){
        .err = err, .mctx = d->mctx, .match_deadline_ns = gate_monotonic_ns() + PATTERN_BUDGET_NS};
    int rc = check_value(v, d->root, value);
    pcre2_match_data_free(v->md);
    free(v);
    return rc;
}

int policy_check_args(const struct policy *p, const json_t *args, struct gate_error *err)
{
    if (!p || !p->schema)
        return gate_err(err, GATE_E_INTERNAL, "policy has no compiled argument schema");
    if (!args) return gate_err(err, GATE_E_INVALID_ARGUMENTS, "$: arguments are missing");
    return policy_schema_check(p->schema, args, err);
}
