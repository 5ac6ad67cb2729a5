/* diff_schema.c: how an argument schema changed: widened (weakens), narrowed (strengthens),
 * or changed in a way that cannot be ordered (neutral).
 *
 * The comparison walks both schemas (JSON, as GET /v1/tools publishes them) keyword by
 * keyword: a property added, a bound removed or loosened, an enum value added, a type added,
 * additionalProperties opened (absent means false in gatehouse), a required name dropped, an
 * anyOf branch added or an allOf branch removed widens; the opposite narrows. Two different
 * patterns, formats or constants cannot be ordered and are neutral, except that losing the
 * ^...$ anchors widens. Documentation keywords are ignored.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"

#define MAX_DEPTH 32

struct spath {
    const char *seg[MAX_DEPTH * 2 + 2];
    size_t n;
};

struct sctx {
    struct diff_tool *t;
    const struct ynode *head_args;
    struct spath path;
};

static void path_text(const struct sctx *c, const char *kw, struct gate_buf *out)
{
    out->len = 0;
    gate_buf_printf(out, "arguments");
    for (size_t i = 0; i < c->path.n; i++)
        gate_buf_printf(out, ".%s", c->path.seg[i]);
    if (kw) gate_buf_printf(out, ".%s", kw);
}

/* Where the schema at the current path (and keyword) is written in HEAD. */
static struct policy_loc path_loc(const struct sctx *c, const char *kw)
{
    const struct ynode *n = c->head_args;
    struct policy_loc loc = n ? n->loc : (struct policy_loc){1, 1};
    for (size_t i = 0; n && i <= c->path.n; i++) {
        const char *seg = i < c->path.n ? c->path.seg[i] : kw;
        if (!seg) break;
        if (n->kind == YNODE_MAP && ynode_get(n, seg)) {
            loc = ynode_key_loc(n, seg);
            n = ynode_get(n, seg);
        } else if (n->kind == YNODE_SEQ && (size_t)atoi(seg) < n->n) {
            n = n->items[atoi(seg)];
            loc = n->loc;
        } else {
            break;
        }
    }
    return loc;
}

static char *dump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("");
}

__attribute__((format(printf, 6, 7))) static void change(struct sctx *c, enum diff_class cls,
                                                         const char *kw, const json_t *before,
                                                         const json_t *after, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    struct gate_buf key = {0};
    path_text(c, kw, &key);
    autofree char *b = dump(before);
    autofree char *a = dump(after);
    diff_add(c->t, cls, key.data, b, a, path_loc(c, kw), "%s", reason);
    gate_buf_free(&key);
}

static void push(struct sctx *c, const char *a, const char *b)
{
    if (c->path.n + 2 <= sizeof(c->path.seg) / sizeof(c->path.seg[0])) {
        c->path.seg[c->path.n++] = a;
        if (b) c->path.seg[c->path.n++] = b;
    }
}

static void compare(struct sctx *c, const json_t *a, const json_t *b, int depth);

/* ---- keyword families --------------------------------------------------------------------- */

static unsigned type_bits(const json_t *s)
{
    static const char *const names[] = {"string", "integer", "number", "boolean",
                                        "array",  "object",  "null"};
    const json_t *t = json_object_get(s, "type");
    if (!t) return 0x7f;
    unsigned bits = 0;
    for (size_t i = 0; i < 7; i++) {
        bool has = json_is_string(t) && !strcmp(json_string_value(t), names[i]);
        size_t k;
        json_t *v;
        json_array_foreach(t, k, v) has |=
            json_is_string(v) && !strcmp(json_string_value(v), names[i]);
        if (has) bits |= 1u << i;
    }
    /* An integer is a number: adding "number" to "integer" widens, the reverse narrows. */
    if (bits & 4) bits |= 2;
    return bits;
}

static void compare_types(struct sctx *c, const json_t *a, const json_t *b)
{
    unsigned x = type_bits(a), y = type_bits(b);
    if (x == y) return;
    const json_t *ta = json_object_get(a, "type"), *tb = json_object_get(b, "type");
    if (y & ~x) change(c, DIFF_WEAKENS, "type", ta, tb, "accepts more types of value");
    if (x & ~y) change(c, DIFF_STRENGTHENS, "type", ta, tb, "accepts fewer types of value");
}

static const char *const upper_bounds[] = {"maxLength",        "maxItems",      "maximum",
                                           "exclusiveMaximum", "maxProperties", NULL};
static const char *const lower_bounds[] = {"minLength",        "minItems",      "minimum",
                                           "exclusiveMinimum", "minProperties", NULL};

static void compare_bounds(struct sctx *c, const json_t *a, const json_t *b)
{
    for (int upper = 1; upper >= 0; upper--)
        for (const char *const *kw = upper ? upper_bounds : lower_bounds; *kw; kw++) {
            const json_t *x = json_object_get(a, *kw), *y = json_object_get(b, *kw);
            if (!x && !y) continue;
            double dx = x ? json_number_value(x) : (upper ? INFINITY : -INFINITY);
            double dy = y ? json_number_value(y) : (upper ? INFINITY : -INFINITY);
            if (dx == dy) continue;
            bool looser = upper ? dy > dx : dy < dx;
            change(c, looser ? DIFF_WEAKENS : DIFF_STRENGTHENS, *kw, x, y, "%s %s", *kw,
                   !y       ? "removed"
                   : !x     ? "added"
                   : looser ? "loosened"
                            : "tightened");
        }
}

static bool anchored(const json_t *pattern)
{
    const char *s = json_string_value(pattern);
    size_t n = s ? strlen(s) : 0;
    return n >= 2 && s[0] == '^' && s[n - 1] == '$';
}

/* pattern, format, const: a constraint present or not; two different ones cannot be ordered. */
static void compare_constraints(struct sctx *c, const json_t *a, const json_t *b)
{
    static const char *const kws[] = {"pattern", "format", "const", "multipleOf", NULL};
    for (const char *const *kw = kws; *kw; kw++) {
        const json_t *x = json_object_get(a, *kw), *y = json_object_get(b, *kw);
        if (json_equal((json_t *)x, (json_t *)y) || (!x && !y)) continue;
        if (!y)
            change(c, DIFF_WEAKENS, *kw, x, y, "%s removed", *kw);
        else if (!x)
            change(c, DIFF_STRENGTHENS, *kw, x, y, "%s added", *kw);
        else if (!strcmp(*kw, "pattern") && anchored(x) && !anchored(y))
            change(c, DIFF_WEAKENS, *kw, x, y, "the pattern lost its ^...$ anchors");
        else
            change(c, DIFF_NEUTRAL, *kw, x, y, "%s changed: the two cannot be compared, review it",
                   *kw);
    }
}

static bool contains(const json_t *arr, const json_t *v)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) if (json_equal(x, (json_t *)v)) return true;
    return false;
}

/* enum (values) and the branches of anyOf / oneOf (more widens) and allOf (more narrows). */
static void compare_sets(struct sctx *c, const json_t *a, const json_t *b)
{
    static const struct {
        const char *kw;
        bool more_widens;
    } sets[] = {{"enum", true}, {"anyOf", true}, {"oneOf", true}, {"allOf", false}};
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        const char *kw = sets[s].kw;
        const json_t *x = json_object_get(a, kw), *y = json_object_get(b, kw);
        if (json_equal((json_t *)x, (json_t *)y) || (!x && !y)) continue;
        enum diff_class wider = sets[s].more_widens ? DIFF_WEAKENS : DIFF_STRENGTHENS;
        enum diff_class narrower = sets[s].more_widens ? DIFF_STRENGTHENS : DIFF_WEAKENS;
        if (!x || !y) {
            /* No enum / anyOf at all accepts anything; no allOf adds nothing. */
            bool widened = sets[s].more_widens ? !y : !x;
            change(c, widened ? DIFF_WEAKENS : DIFF_STRENGTHENS, kw, x, y, "%s %s", kw,
                   y ? "added" : "removed");
            continue;
        }
        size_t i;
        json_t *v;
        json_array_foreach(y, i, v) if (!contains(x, v))
            change(c, wider, kw, NULL, v, "%s: %s added", kw,
                   !strcmp(kw, "enum") ? "a value" : "a branch");
        json_array_foreach(x, i, v) if (!contains(y, v))
            change(c, narrower, kw, v, NULL, "%s: %s removed", kw,
                   !strcmp(kw, "enum") ? "a value" : "a branch");
    }
}

static void compare_required(struct sctx *c, const json_t *a, const json_t *b)
{
    const json_t *x = json_object_get(a, "required"), *y = json_object_get(b, "required");
    size_t i;
    json_t *v;
    json_array_foreach(x, i, v) if (!y || !contains(y, v))
        change(c, DIFF_WEAKENS, "required", v, NULL, "'%s' is no longer required",
               json_string_value(v) ? json_string_value(v) : "?");
    json_array_foreach(y, i, v) if (!x || !contains(x, v))
        change(c, DIFF_STRENGTHENS, "required", NULL, v, "'%s' is now required",
               json_string_value(v) ? json_string_value(v) : "?");
}

/* additionalProperties: false (gatehouse's default) < a schema < true. */
static int openness(const json_t *ap)
{
    return !ap || json_is_false(ap) ? 0 : json_is_true(ap) ? 2 : 1;
}

static void compare_additional(struct sctx *c, const json_t *a, const json_t *b, int depth)
{
    const json_t *x = json_object_get(a, "additionalProperties");
    const json_t *y = json_object_get(b, "additionalProperties");
    int ox = openness(x), oy = openness(y);
    if (ox == 1 && oy == 1) {
        size_t mark = c->path.n;
        push(c, "additionalProperties", NULL);
        compare(c, x, y, depth + 1);
        c->path.n = mark;
    } else if (ox != oy) {
        change(c, oy > ox ? DIFF_WEAKENS : DIFF_STRENGTHENS, "additionalProperties", x, y,
               oy > ox ? "accepts arguments the schema does not name"
                       : "accepts fewer unnamed arguments");
    }
}

/* properties, $defs (maps of schemas), items and prefixItems (nested schemas). */
static void compare_nested(struct sctx *c, const json_t *a, const json_t *b, int depth)
{
    static const char *const maps[] = {"properties", "$defs", NULL};
    for (const char *const *kw = maps; *kw; kw++) {
        const json_t *x = json_object_get(a, *kw), *y = json_object_get(b, *kw);
        const char *name;
        json_t *v;
        bool props = !strcmp(*kw, "properties");
        json_object_foreach((json_t *)y, name, v)
        {
            const json_t *old = json_object_get(x, name);
            size_t mark = c->path.n;
            push(c, *kw, name);
            if (old)
                compare(c, old, v, depth + 1);
            else if (props)
                change(c, DIFF_WEAKENS, NULL, NULL, v, "a new argument '%s'", name);
            c->path.n = mark;
        }
        json_object_foreach((json_t *)x, name, v) if (props && !json_object_get(y, name))
        {
            size_t mark = c->path.n;
            push(c, *kw, name);
            change(c, DIFF_STRENGTHENS, NULL, v, NULL, "argument '%s' removed", name);
            c->path.n = mark;
        }
    }
    const json_t *x = json_object_get(a, "items"), *y = json_object_get(b, "items");
    size_t mark = c->path.n;
    if (x && y && json_is_object(x) && json_is_object(y)) {
        push(c, "items", NULL);
        compare(c, x, y, depth + 1);
    } else if (!json_equal((json_t *)x, (json_t *)y) && (x || y)) {
        change(c,
               !y   ? DIFF_WEAKENS
               : !x ? DIFF_STRENGTHENS
                    : DIFF_NEUTRAL,
               "items", x, y, "items %s",
               !y   ? "unconstrained"
               : !x ? "constrained"
                    : "changed");
    }
    c->path.n = mark;
    x = json_object_get(a, "prefixItems");
    y = json_object_get(b, "prefixItems");
    if (!json_equal((json_t *)x, (json_t *)y) && (x || y))
        change(c, DIFF_NEUTRAL, "prefixItems", x, y, "prefixItems changed: review it");
}

/* Every other keyword that is not documentation: a change is reported as neutral. */
static void compare_rest(struct sctx *c, const json_t *a, const json_t *b)
{
    static const char *const handled[] = {"type",
                                          "maxLength",
                                          "maxItems",
                                          "maximum",
                                          "exclusiveMaximum",
                                          "maxProperties",
                                          "minLength",
                                          "minItems",
                                          "minimum",
                                          "exclusiveMinimum",
                                          "minProperties",
                                          "pattern",
                                          "format",
                                          "const",
                                          "multipleOf",
                                          "enum",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "required",
                                          "additionalProperties",
                                          "properties",
                                          "$defs",
                                          "items",
                                          "prefixItems",
                                          "description",
                                          "title",
                                          "default",
                                          "examples",
                                          "$comment",
                                          "deprecated",
                                          "readOnly",
                                          "writeOnly",
                                          NULL};
    for (int side = 0; side < 2; side++) {
        const char *kw;
        json_t *v;
        json_object_foreach((json_t *)(side ? b : a), kw, v)
        {
            bool skip = false;
            for (size_t i = 0; handled[i] && !skip; i++)
                skip = !strcmp(handled[i], kw);
            const json_t *other = json_object_get(side ? a : b, kw);
            if (skip || (side && other)) continue; /* both present: reported once, side 0 */
            if (json_equal(v, (json_t *)other)) continue;
            change(c, DIFF_NEUTRAL, kw, side ? other : v, side ? v : other, "%s changed: review it",
                   kw);
        }
    }
}

static void compare(struct sctx *c, const json_t *a, const json_t *b, int depth)
{
    if (depth > MAX_DEPTH || json_equal((json_t *)a, (json_t *)b)) return;
    if (!json_is_object(a) || !json_is_object(b)) {
        change(c, DIFF_NEUTRAL, NULL, a, b, "the schema changed: review it");
        return;
    }
    compare_types(c, a, b);
    compare_bounds(c, a, b);
    compare_constraints(c, a, b);
    compare_sets(c, a, b);
    compare_required(c, a, b);
    compare_additional(c, a, b, depth);
    compare_nested(c, a, b, depth);
    compare_rest(c, a, b);
}

void diff_arguments(struct diff_tool *t, const json_t *base, const json_t *head,
                    const struct ynode *head_args)
{
    struct sctx c = {.t = t, .head_args = head_args};
    compare(&c, base, head, 0);
}
