/* policy_values.c: typed readers for policy YAML values, each reporting "FILE:LINE:COL: msg".
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

#include "policy_internal.h"

#define POLICY_MAX_DIAGS 500

void policy_diags_add(struct policy_diags *d, const char *fmt, ...)
{
    if (!d) return;
    if (d->n > POLICY_MAX_DIAGS) return;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0) return;
    if (d->n == POLICY_MAX_DIAGS) {
        free(msg);
        msg = strdup("too many errors; stopping here");
        if (!msg) return;
    }
    char **msgs = realloc(d->msgs, (d->n + 1) * sizeof(*msgs));
    if (!msgs) {
        free(msg);
        return;
    }
    d->msgs = msgs;
    d->msgs[d->n++] = msg;
}

void policy_diags_free(struct policy_diags *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = 0;
}

void pctx_err(struct pctx *c, struct policy_loc loc, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->errors++;
    policy_diags_add(c->diags, "%s:%d:%d: %s", c->path, loc.line, loc.col, msg);
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

static void format_ms(uint64_t ms, char *buf, size_t len)
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
        format_ms(min_ms, lo, sizeof(lo));
        format_ms(max_ms, hi, sizeof(hi));
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
