/* policy_values.c: typed readers for policy YAML values, each reporting "FILE:LINE:COL: msg",
 * and the generic reader, printer and accessors of the key table's types (policy_keys.h).
 *
 * The rules are deliberately narrower than YAML's: booleans are exactly unquoted true or
 * false (the YAML 1.1 spellings yes/no/on/off/y/n are refused, not guessed), integers are
 * unsigned decimal and range-checked, durations go through gate_parse_duration_ms.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <seccomp.h>
#include <strings.h>

#include "policy_keys.h"

#define POLICY_MAX_DIAGS 500

static void diags_vadd(struct policy_diags *d, const char *rule, const char *fmt, va_list ap)
{
    if (!d) return;
    if (d->n > POLICY_MAX_DIAGS) return;
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) return;
    if (d->n == POLICY_MAX_DIAGS) {
        free(msg);
        msg = strdup("too many errors; stopping here");
        rule = NULL;
        if (!msg) return;
    }
    char **msgs = realloc(d->msgs, (d->n + 1) * sizeof(*msgs));
    if (!msgs) {
        free(msg);
        return;
    }
    d->msgs = msgs;
    const char **rules = realloc(d->rules, (d->n + 1) * sizeof(*rules));
    if (!rules) {
        free(msg);
        return;
    }
    d->rules = rules;
    d->rules[d->n] = rule;
    d->msgs[d->n++] = msg;
}

void policy_diags_add(struct policy_diags *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diags_vadd(d, NULL, fmt, ap);
    va_end(ap);
}

void policy_diags_free(struct policy_diags *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    free(d->rules);
    d->msgs = NULL;
    d->rules = NULL;
    d->n = 0;
}

__attribute__((format(printf, 3, 4))) static void
diags_add_rule(struct policy_diags *d, const char *rule, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diags_vadd(d, rule, fmt, ap);
    va_end(ap);
}

static void pctx_verr(struct pctx *c, const char *rule, struct policy_loc loc, const char *fmt,
                      va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    c->errors++;
    diags_add_rule(c->diags, rule, "%s:%d:%d: %s", c->path, loc.line, loc.col, msg);
}

void pctx_err(struct pctx *c, struct policy_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pctx_verr(c, NULL, loc, fmt, ap);
    va_end(ap);
}

void pctx_err_rule(struct pctx *c, const char *rule, struct policy_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pctx_verr(c, rule, loc, fmt, ap);
    va_end(ap);
}

const char *ynode_kind_name(const struct ynode *n)
{
    switch (n->kind) {
    case YNODE_MAP:
        return "a mapping";
    case YNODE_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

struct policy_loc ynode_key_loc(const struct ynode *map, const char *key)
{
    for (size_t i = 0; map && map->kind == YNODE_MAP && i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->key_locs[i];
    return map ? map->loc : (struct policy_loc){1, 1};
}

int pctx_expect_map(struct pctx *c, const struct ynode *n, const char *what,
                    const char *const *allowed)
{
    if (n->kind != YNODE_MAP) {
        pctx_err(c, n->loc, "'%s' must be a mapping, got %s", what, ynode_kind_name(n));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n->n; i++) {
        bool known = false;
        for (size_t k = 0; allowed[k] && !known; k++)
            known = strcmp(allowed[k], n->keys[i]) == 0;
        if (!known) {
            pctx_err(c, n->key_locs[i], "unknown key '%s' in %s", n->keys[i], what);
            rc = -1;
        }
    }
    return rc;
}

static int expect_scalar(struct pctx *c, const struct ynode *n, const char *what, const char *want)
{
    if (n->kind == YNODE_SCALAR) return 0;
    pctx_err(c, n->loc, "'%s' must be %s, got %s", what, want, ynode_kind_name(n));
    return -1;
}

int pctx_string(struct pctx *c, const struct ynode *n, const char *what, char **out)
{
    if (expect_scalar(c, n, what, "a string") < 0) return -1;
    if (!n->quoted &&
        (n->scalar[0] == '\0' || strcmp(n->scalar, "~") == 0 || strcmp(n->scalar, "null") == 0)) {
        pctx_err(c, n->loc, "'%s' must be a string, got null", what);
        return -1;
    }
    char *s = strdup(n->scalar);
    if (!s) {
        pctx_err(c, n->loc, "out of memory");
        return -1;
    }
    free(*out);
    *out = s;
    return 0;
}

static bool is_yaml11_bool(const char *s)
{
    static const char *const words[] = {"yes", "no", "on", "off", "y", "n", NULL};
    for (size_t i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0; /* True, FALSE, ... */
}

int pctx_bool(struct pctx *c, const struct ynode *n, const char *what, bool *out)
{
    if (expect_scalar(c, n, what, "true or false") < 0) return -1;
    if (!n->quoted && strcmp(n->scalar, "true") == 0) {
        *out = true;
        return 0;
    }
    if (!n->quoted && strcmp(n->scalar, "false") == 0) {
        *out = false;
        return 0;
    }
    if (!n->quoted && is_yaml11_bool(n->scalar))
        pctx_err(c, n->loc, "'%s': '%s' is not a boolean here: use true or false", what, n->scalar);
    else
        pctx_err(c, n->loc, "'%s' must be an unquoted true or false", what);
    return -1;
}

int pctx_uint(struct pctx *c, const struct ynode *n, const char *what, uint64_t min, uint64_t max,
              uint64_t *out)
{
    if (expect_scalar(c, n, what, "an integer") < 0) return -1;
    const char *s = n->scalar;
    bool digits = !n->quoted && *s != '\0';
    for (const char *q = s; *q && digits; q++)
        digits = *q >= '0' && *q <= '9';
    if (!digits) {
        pctx_err(c, n->loc, "'%s' must be a decimal integer, got '%s'", what, s);
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v < min || v > max) {
        pctx_err(c, n->loc, "'%s' must be between %llu and %llu", what, (unsigned long long)min,
                 (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

void policy_format_ms(uint64_t ms, char *buf, size_t len)
{
    if (ms % 3600000 == 0)
        snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
}

int pctx_duration(struct pctx *c, const struct ynode *n, const char *what, uint64_t min_ms,
                  uint64_t max_ms, uint64_t *out)
{
    if (expect_scalar(c, n, what, "a duration") < 0) return -1;
    uint64_t ms = 0;
    if (gate_parse_duration_ms(n->scalar, &ms) < 0) {
        pctx_err(c, n->loc, "'%s': bad duration '%s' (use e.g. 250ms, 5s, 2m, 1h)", what,
                 n->scalar);
        return -1;
    }
    if (ms < min_ms || ms > max_ms) {
        char lo[32], hi[32];
        policy_format_ms(min_ms, lo, sizeof(lo));
        policy_format_ms(max_ms, hi, sizeof(hi));
        pctx_err(c, n->loc, "'%s' must be between %s and %s", what, lo, hi);
        return -1;
    }
    *out = ms;
    return 0;
}

void strv_free(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int pctx_string_list(struct pctx *c, const struct ynode *n, const char *what, char ***out)
{
    if (n->kind != YNODE_SEQ) {
        pctx_err(c, n->loc, "'%s' must be a list, got %s", what, ynode_kind_name(n));
        return -1;
    }
    char **v = calloc(n->n + 1, sizeof(*v));
    if (!v) {
        pctx_err(c, n->loc, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n->n; i++) {
        char item[64];
        snprintf(item, sizeof(item), "%s[%zu]", what, i);
        if (pctx_string(c, n->items[i], item, &v[i]) < 0) {
            rc = -1;
            /* Keep the list dense so strv_free stops at the right place. */
            v[i] = strdup("");
            if (!v[i]) break;
        }
    }
    if (rc < 0) {
        strv_free(v);
        return -1;
    }
    strv_free(*out);
    *out = v;
    return 0;
}

int policy_check_syscalls(struct pctx *c, const struct ynode *n, const char *what, char ***out)
{
    char **names = NULL;
    if (pctx_string_list(c, n, what, &names) < 0) return -1;
    int rc = 0;
    for (size_t i = 0; names[i]; i++)
        if (seccomp_syscall_resolve_name(names[i]) == __NR_SCMP_ERROR) {
            pctx_err(c, n->items[i]->loc, "'%s': unknown syscall '%s'", what, names[i]);
            rc = -1;
        }
    strv_free(*out);
    *out = names;
    return rc;
}

/* ---- the key table's types ---------------------------------------------------------------- */

void *pkey_field(const struct policy_key *k, const struct policy *p)
{
    return (char *)p + k->offset;
}

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names[n])
        n++;
    return n;
}

static int pick_enum(struct pctx *c, const struct ynode *n, const char *what,
                     const char *const *names, int *out)
{
    if (n->kind != YNODE_SCALAR) {
        pctx_err(c, n->loc, "'%s' must be a scalar, got %s", what, ynode_kind_name(n));
        return -1;
    }
    size_t count = count_names(names);
    for (size_t i = 0; i < count; i++)
        if (strcmp(n->scalar, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    char list[256] = "";
    for (size_t i = 0; i < count; i++) {
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
        if (i + 1 < count) strncat(list, ", ", sizeof(list) - strlen(list) - 1);
    }
    pctx_err(c, n->loc, "'%s' must be one of %s; got '%s'", what, list, n->scalar);
    return -1;
}

/* "0.5" -> 500 thousandths of a core; at most three decimals, no exponent, no sign. */
static void read_cpu(struct pctx *c, const struct policy_key *k, const struct ynode *n)
{
    if (n->kind != YNODE_SCALAR || n->quoted) {
        pctx_err(c, n->loc, "'%s' must be a number of cores like 0.5", k->path);
        return;
    }
    const char *s = n->scalar;
    uint64_t whole = 0, frac = 0;
    int ndigits = 0, nfrac = 0;
    for (; *s >= '0' && *s <= '9' && ndigits < 6; s++, ndigits++)
        whole = whole * 10 + (uint64_t)(*s - '0');
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9' && nfrac < 4; s++, nfrac++)
            frac = frac * 10 + (uint64_t)(*s - '0');
    if (ndigits == 0 || *s != '\0' || nfrac > 3 || (n->scalar[ndigits] == '.' && nfrac == 0)) {
        pctx_err(c, n->loc,
                 "'%s' must be a number of cores like 0.5 (at most 3 decimals); got '%s'", k->path,
                 n->scalar);
        return;
    }
    for (int i = nfrac; i < 3; i++)
        frac *= 10;
    uint64_t millis = whole * 1000 + frac;
    if (millis < k->min || millis > k->max) {
        pctx_err(c, n->loc, "'%s' must be between 0.01 and 64", k->path);
        return;
    }
    *(uint32_t *)pkey_field(k, c->p) = (uint32_t)millis;
}

void pkey_read(struct pctx *c, const struct policy_key *k, const struct ynode *v)
{
    void *f = pkey_field(k, c->p);
    uint64_t u = 0;
    int idx = 0;
    switch (k->type) {
    case PKEY_STRING:
        pctx_string(c, v, k->path, (char **)f);
        break;
    case PKEY_BOOL:
        pctx_bool(c, v, k->path, (bool *)f);
        break;
    case PKEY_SECTION: /* only reached for a section that may be a bool, written as one */
        if (k->flags & PKEY_OR_BOOL) pctx_bool(c, v, k->path, (bool *)f);
        break;
    case PKEY_UINT:
        if (pctx_uint(c, v, k->path, k->min, k->max, &u) < 0) break;
        if (k->size == sizeof(uint32_t))
            *(uint32_t *)f = (uint32_t)u;
        else
            *(uint64_t *)f = u;
        break;
    case PKEY_DURATION:
        pctx_duration(c, v, k->path, k->min, k->max, (uint64_t *)f);
        break;
    case PKEY_ENUM:
        if (pick_enum(c, v, k->path, k->names, &idx) < 0) break;
        if (k->flags & PKEY_AS_STRING) {
            char *s = strdup(k->names[idx]);
            if (!s) {
                pctx_err(c, v->loc, "out of memory");
                break;
            }
            free(*(char **)f);
            *(char **)f = s;
        } else {
            *(int *)f = idx;
        }
        break;
    case PKEY_CPU:
        read_cpu(c, k, v);
        break;
    case PKEY_STRING_LIST:
        pctx_string_list(c, v, k->path, (char ***)f);
        break;
    case PKEY_STRING_MAP:
    case PKEY_SCHEMA: /* these types always have a reader hook */
        pctx_err(c, v->loc, "'%s' has no reader", k->path);
        break;
    }
}

uint64_t pkey_number(const struct policy_key *k, const struct policy *p)
{
    const void *f = pkey_field(k, p);
    switch (k->type) {
    case PKEY_BOOL:
        return *(const bool *)f;
    case PKEY_SECTION:
        return (k->flags & PKEY_OR_BOOL) ? *(const bool *)f : 0;
    case PKEY_UINT:
        return k->size == sizeof(uint32_t) ? *(const uint32_t *)f : *(const uint64_t *)f;
    case PKEY_DURATION:
        return *(const uint64_t *)f;
    case PKEY_CPU:
        return *(const uint32_t *)f;
    case PKEY_ENUM:
        if (!(k->flags & PKEY_AS_STRING)) return (uint64_t) * (const int *)f;
        for (size_t i = 0; k->names[i]; i++)
            if (*(char *const *)f && strcmp(*(char *const *)f, k->names[i]) == 0) return i;
        return 0;
    default:
        return 0;
    }
}

/* A plain YAML scalar cannot start with an indicator, contain ": " or " #" (nor, inside a
 * flow collection, ",[]{}"), have edge spaces, or read as another type: such strings are
 * printed JSON-quoted (valid YAML). */
static bool needs_quotes(const char *s, bool flow)
{
    if (!*s || isspace((unsigned char)s[0]) || isspace((unsigned char)s[strlen(s) - 1]))
        return true;
    if (strchr("-?:,[]{}#&*!|>'\"%@`~", s[0])) return true;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || (q[0] == ':' && (q[1] == ' ' || !q[1])) ||
            (q[0] == ' ' && q[1] == '#') ||
            (flow && (*q == ',' || *q == '[' || *q == ']' || *q == '{' || *q == '}')))
            return true;
    static const char *const words[] = {"true", "false", "null", "yes", "no",
                                        "on",   "off",   "y",    "n"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return strspn(s, "0123456789.+-eE") == strlen(s);
}

static void yaml_scalar(struct gate_buf *out, const char *s, bool flow)
{
    if (!needs_quotes(s, flow)) {
        gate_buf_append(out, s, strlen(s));
        return;
    }
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (text) gate_buf_append(out, text, strlen(text));
    free(text);
    json_decref(j);
}

void pkey_format(const struct policy_key *k, const struct policy *p, struct gate_buf *out)
{
    out->len = 0;
    gate_buf_append(out, "", 0);
    const void *f = pkey_field(k, p);
    char num[32];
    uint64_t v = pkey_number(k, p);
    switch (k->type) {
    case PKEY_STRING:
        if (*(char *const *)f) yaml_scalar(out, *(char *const *)f, false);
        break;
    case PKEY_BOOL:
        gate_buf_printf(out, "%s", v ? "true" : "false");
        break;
    case PKEY_SECTION:
        if (k->flags & PKEY_OR_BOOL) gate_buf_printf(out, "%s", v ? "true" : "false");
        break;
    case PKEY_UINT:
        gate_buf_printf(out, "%llu", (unsigned long long)v);
        break;
    case PKEY_DURATION:
        policy_format_ms(v, num, sizeof(num));
        gate_buf_printf(out, "%s", num);
        break;
    case PKEY_ENUM:
        gate_buf_printf(out, "%s", k->names[v]);
        break;
    case PKEY_CPU:
        snprintf(num, sizeof(num), "%llu.%03llu", (unsigned long long)(v / 1000),
                 (unsigned long long)(v % 1000));
        for (size_t n = strlen(num); num[n - 1] == '0'; n--)
            num[n - 1] = '\0';
        if (num[strlen(num) - 1] == '.') num[strlen(num) - 1] = '\0';
        gate_buf_printf(out, "%s", num);
        break;
    case PKEY_STRING_LIST:
    case PKEY_STRING_MAP: {
        char *const *list = *(char **const *)f;
        if (!list) break;
        bool map = k->type == PKEY_STRING_MAP;
        gate_buf_append(out, map ? "{" : "[", 1);
        for (size_t i = 0; list[i]; i++) {
            if (i) gate_buf_append(out, ", ", 2);
            const char *eq = map ? strchr(list[i], '=') : NULL;
            if (eq) {
                autofree char *name = strndup(list[i], (size_t)(eq - list[i]));
                yaml_scalar(out, name ? name : "", true);
                gate_buf_append(out, ": ", 2);
                yaml_scalar(out, eq + 1, true);
            } else {
                yaml_scalar(out, list[i], true);
            }
        }
        gate_buf_append(out, map ? "}" : "]", 1);
        break;
    }
    case PKEY_SCHEMA: {
        char *text = json_dumps(*(json_t *const *)f, JSON_COMPACT | JSON_SORT_KEYS);
        if (text) gate_buf_append(out, text, strlen(text));
        free(text);
        break;
    }
    }
}

json_t *pkey_json(const struct policy_key *k, const struct policy *p)
{
    const void *f = pkey_field(k, p);
    uint64_t v = pkey_number(k, p);
    switch (k->type) {
    case PKEY_STRING:
        return *(char *const *)f ? json_string(*(char *const *)f) : json_null();
    case PKEY_BOOL:
        return json_boolean(v);
    case PKEY_SECTION:
        return (k->flags & PKEY_OR_BOOL) ? json_boolean(v) : json_null();
    case PKEY_UINT:
        return v > INT64_MAX ? json_real((double)v) : json_integer((json_int_t)v);
    case PKEY_CPU:
        return v % 1000 ? json_real((double)v / 1000.0) : json_integer((json_int_t)(v / 1000));
    case PKEY_SCHEMA:
        return json_incref(*(json_t *const *)f);
    case PKEY_STRING_LIST:
    case PKEY_STRING_MAP: {
        char *const *list = *(char **const *)f;
        if (!list) return json_null();
        json_t *j = k->type == PKEY_STRING_MAP ? json_object() : json_array();
        for (size_t i = 0; j && list[i]; i++) {
            const char *eq = strchr(list[i], '=');
            if (k->type == PKEY_STRING_LIST) {
                json_array_append_new(j, json_string(list[i]));
            } else if (eq) {
                autofree char *name = strndup(list[i], (size_t)(eq - list[i]));
                if (name) json_object_set_new(j, name, json_string(eq + 1));
            }
        }
        return j;
    }
    default: {
        struct gate_buf b = {0};
        pkey_format(k, p, &b);
        json_t *j = json_string(b.data ? b.data : "");
        gate_buf_free(&b);
        return j;
    }
    }
}
