/* schema_regex.c: JSON Schema patterns are ECMA-262 regular expressions; PCRE2 runs them.
 *
 * The two dialects agree on most syntax and disagree on meaning in a few places that matter
 * for validation. A pattern is therefore translated, never passed through:
 *   - `$` matches only at the very end (PCRE2_DOLLAR_ENDONLY: PCRE2's `$` also matches before a
 *     final newline, so ^[a-z]+$ accepted "acme\n"); `^` only at the start (no multiline);
 *   - `.` excludes exactly ECMA's line terminators (\n, \r, U+2028, U+2029);
 *   - `\s` / `\S` are ECMA's Unicode white space, `\d` / `\w` ASCII as in ECMA-262 without
 *     the i flag, all spelled out as ranges; `\b` is ASCII too (PCRE2_NEVER_UCP);
 *   - matching is by code point (PCRE2_UTF), as ECMA-262 with the u flag (ajv's default);
 *   - every character of a class is re-emitted as \x{...}, so PCRE2-only class syntax
 *     ([:alpha:], a `[` or `]` taken literally) cannot change its meaning; `[]` and `[^]` mean
 *     "nothing" and "anything" as in ECMA-262; \uXXXX, \u{...} and surrogate pairs become code
 *     points, \v and \0 the characters they name.
 * What ECMA-262 (Unicode mode) refuses, or what PCRE2 would read differently, is refused at
 * load with the reason: PCRE2-only syntax ((?i), (?>...), possessive quantifiers, \A, \z, \h,
 * \Q, (*VERB), a lone { } or ]), quantified assertions, property escapes other than
 * General_Category, and backreferences (whose capture-reset rules differ). PCRE2 10.42 itself
 * refuses lookbehinds of variable length, which ECMA-262 allows.
 */
#include <stdio.h>
#include <string.h>

#include "schema_internal.h"

/* ECMA-262 WhiteSpace and LineTerminator, as class content. */
#define ECMA_SPACE                                                                                 \
    "\\x{9}-\\x{d}\\x{20}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}"  \
    "\\x{3000}\\x{feff}"
/* \d and \w (ASCII, as in ECMA-262 without the i flag) and their complements, as class content.
 * Spelled out because PCRE2 10.42, in UTF mode without UCP, gets a negated class that mixes \D
 * or \W with a property wrong: [^\D\p{L}] matches U+1680, which \D contains (found by the
 * differential test). */
#define ASCII_DIGIT "\\x{30}-\\x{39}"
#define NOT_DIGIT "\\x{0}-\\x{2f}\\x{3a}-\\x{10ffff}"
#define ASCII_WORD "\\x{30}-\\x{39}\\x{41}-\\x{5a}\\x{5f}\\x{61}-\\x{7a}"
#define NOT_WORD "\\x{0}-\\x{2f}\\x{3a}-\\x{40}\\x{5b}-\\x{5e}\\x{60}\\x{7b}-\\x{10ffff}"
#define MAX_GROUP_DEPTH 200

enum last { L_NONE, L_ATOM, L_ASSERT, L_QUANT };

struct rx {
    const char *s;
    size_t i, n;
    struct gate_buf out;
    char *why;
    size_t whylen;
    bool failed;
    enum last last;
    bool class_nonspace; /* the class being read contains \S */
    bool lookaround[MAX_GROUP_DEPTH];
    int depth;
};

__attribute__((format(printf, 2, 3))) static void fail(struct rx *r, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int used = snprintf(r->why, r->whylen, "at offset %zu: ", r->i);
    if (used >= 0 && (size_t)used < r->whylen) vsnprintf(r->why + used, r->whylen - used, fmt, ap);
    va_end(ap);
}

static void emit(struct rx *r, const char *s)
{
    if (!r->failed && gate_buf_append(&r->out, s, strlen(s)) < 0) fail(r, "out of memory");
}

static void emit_cp(struct rx *r, uint32_t cp)
{
    char buf[16];
    snprintf(buf, sizeof(buf), "\\x{%x}", cp);
    emit(r, buf);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One UTF-8 character at r->i (the pattern came through the YAML reader: valid UTF-8). */
static uint32_t next_utf8(struct rx *r)
{
    const unsigned char *p = (const unsigned char *)r->s + r->i;
    int len = p[0] < 0x80 ? 1 : p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
    uint32_t cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (int k = 1; k < len; k++) {
        if (r->i + (size_t)k >= r->n || (p[k] & 0xc0) != 0x80) {
            fail(r, "invalid UTF-8");
            return 0;
        }
        cp = cp << 6 | (p[k] & 0x3f);
    }
    r->i += (size_t)len;
    return cp;
}

/* n hex digits at r->i, or -1. */
static long hex_digits(struct rx *r, int n)
{
    long v = 0;
    for (int k = 0; k < n; k++) {
        int h = r->i + (size_t)k < r->n ? hexval(r->s[r->i + (size_t)k]) : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    r->i += (size_t)n;
    return v;
}

/* After "\u": XXXX (a surrogate pair \uD83D\uDE00 is one code point) or {X...}. */
static uint32_t unicode_escape(struct rx *r)
{
    long cp = -1;
    if (r->i < r->n && r->s[r->i] == '{') {
        size_t start = ++r->i;
        cp = 0;
        while (r->i < r->n && hexval(r->s[r->i]) >= 0 && cp <= 0x10ffff)
            cp = cp * 16 + hexval(r->s[r->i++]);
        if (r->i == start || r->i >= r->n || r->s[r->i] != '}' || cp > 0x10ffff) cp = -1;
        r->i++;
    } else if ((cp = hex_digits(r, 4)) >= 0xd800 && cp <= 0xdbff && r->i + 1 < r->n &&
               r->s[r->i] == '\\' && r->s[r->i + 1] == 'u') {
        size_t back = r->i;
        r->i += 2;
        long lo = hex_digits(r, 4);
        if (lo >= 0xdc00 && lo <= 0xdfff)
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        else
            r->i = back;
    }
    if (cp < 0)
        fail(r, "bad \\u escape");
    else if (cp >= 0xd800 && cp <= 0xdfff)
        fail(r, "a lone surrogate cannot match UTF-8 text");
    return cp < 0 ? 0 : (uint32_t)cp;
}

/* After "\p" or "\P": {Name}, a General_Category value (\p{L}, \p{gc=Lu}). */
static void property_escape(struct rx *r, char p)
{
    static const char *const categories[] = {
        "L",  "Lu", "Ll", "Lt", "Lm", "Lo", "M",  "Mn", "Mc", "Me", "N",  "Nd", "Nl",
        "No", "P",  "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S",  "Sm", "Sc", "Sk",
        "So", "Z",  "Zs", "Zl", "Zp", "C",  "Cc", "Cf", "Co", "Cn", NULL};
    const char *close = r->i < r->n && r->s[r->i] == '{' ? strchr(r->s + r->i, '}') : NULL;
    if (!close) {
        fail(r, "\\%c needs {Name}", p);
        return;
    }
    char name[64];
    size_t len = (size_t)(close - (r->s + r->i + 1));
    snprintf(name, sizeof(name), "%.*s", (int)(len < 63 ? len : 63), r->s + r->i + 1);
    const char *value = name;
    if (strncmp(name, "gc=", 3) == 0) value = name + 3;
    if (strncmp(name, "General_Category=", 17) == 0) value = name + 17;
    for (size_t k = 0; categories[k]; k++)
        if (strcmp(value, categories[k]) == 0) {
            char buf[96];
            snprintf(buf, sizeof(buf), "\\%c{%s}", p, value);
            emit(r, buf);
            r->i = (size_t)(close - r->s) + 1;
            return;
        }
    fail(r, "\\%c{%s}: only General_Category values (L, Lu, Nd, ...) are supported", p, name);
}

static bool syntax_char(char c)
{
    return c && strchr("^$\\.*+?()[]{}|/", c);
}

/* One item of a class: a character (*cp) or a set written to r->out (returns false). */
static bool class_atom(struct rx *r, uint32_t *cp, bool emit_set)
{
    if (r->s[r->i] != '\\') {
        *cp = next_utf8(r);
        return true;
    }
    if (r->i + 1 >= r->n) {
        fail(r, "'\\' at the end of the pattern");
        return true;
    }
    char c = r->s[r->i + 1];
    r->i += 2;
    const char *set = NULL;
    switch (c) {
    case 'd':
        set = ASCII_DIGIT;
        break;
    case 'D':
        set = NOT_DIGIT;
        break;
    case 'w':
        set = ASCII_WORD;
        break;
    case 'W':
        set = NOT_WORD;
        break;
    case 's':
        set = ECMA_SPACE;
        break;
    case 'p':
    case 'P':
        if (emit_set)
            property_escape(r, c);
        else
            fail(r, "a class escape cannot be the end of a range");
        return false;
    case 'b':
        *cp = 0x08;
        return true;
    case '-':
        *cp = '-';
        return true;
    case 'n':
        *cp = '\n';
        return true;
    case 'r':
        *cp = '\r';
        return true;
    case 't':
        *cp = '\t';
        return true;
    case 'f':
        *cp = '\f';
        return true;
    case 'v':
        *cp = 0x0b;
        return true;
    case 'u':
        *cp = unicode_escape(r);
        return true;
    case 'x': {
        long v = hex_digits(r, 2);
        if (v < 0) fail(r, "\\x needs two hex digits");
        *cp = v < 0 ? 0 : (uint32_t)v;
        return true;
    }
    case 'c':
        if (r->i < r->n && ((r->s[r->i] | 0x20) >= 'a' && (r->s[r->i] | 0x20) <= 'z')) {
            *cp = (uint32_t)(r->s[r->i++] % 32);
            return true;
        }
        fail(r, "\\c needs a letter");
        return true;
    case '0':
        if (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
            fail(r, "octal escapes are not ECMA-262 (Unicode mode)");
        *cp = 0;
        return true;
    case 'S': /* no PCRE2 class item is "not ECMA space": char_class rewrites the class */
        if (emit_set)
            r->class_nonspace = true;
        else
            fail(r, "a class escape cannot be the end of a range");
        return false;
    default:
        if (syntax_char(c)) {
            *cp = (uint32_t)c;
            return true;
        }
        fail(r, "'\\%c' is not an ECMA-262 escape", c);
        return true;
    }
    if (emit_set)
        emit(r, set);
    else
        fail(r, "a class escape cannot be the end of a range");
    return false;
}

/* A class with \S in it, whose other items were emitted after "[" or "[^" at mark:
 * [items\S] is (?:[items]|[^SPACE]), [^items\S] is (?:(?![items])[SPACE]). */
static void nonspace_class(struct rx *r, size_t mark, bool neg)
{
    size_t start = mark + (neg ? 2 : 1);
    char *items = strndup(r->out.data + start, r->out.len - start);
    if (!items) {
        fail(r, "out of memory");
        return;
    }
    r->out.len = mark;
    emit(r, "(?:");
    if (items[0]) {
        emit(r, neg ? "(?![" : "[");
        emit(r, items);
        emit(r, neg ? "])" : "]|");
    }
    emit(r, neg ? "[" ECMA_SPACE "])" : "[^" ECMA_SPACE "])");
    free(items);
}

static void char_class(struct rx *r)
{
    r->i++; /* '[' */
    bool neg = r->i < r->n && r->s[r->i] == '^';
    if (neg) r->i++;
    size_t mark = r->out.len;
    emit(r, neg ? "[^" : "[");
    bool empty = true;
    r->class_nonspace = false;
    while (!r->failed && r->i < r->n && r->s[r->i] != ']') {
        empty = false;
        uint32_t lo = 0, hi = 0;
        if (!class_atom(r, &lo, true)) {
            if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']')
                fail(r, "a class escape cannot start a range");
            continue;
        }
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            class_atom(r, &hi, false);
            if (!r->failed && hi < lo) fail(r, "range out of order in character class");
            emit_cp(r, lo);
            emit(r, "-");
            emit_cp(r, hi);
        } else {
            emit_cp(r, lo);
        }
    }
    if (r->failed) return;
    if (r->i >= r->n) {
        fail(r, "missing ']'");
        return;
    }
    r->i++;
    if (empty) { /* ECMA-262: [] matches nothing, [^] any character */
        r->out.len = mark;
        emit(r, neg ? "[\\x{0}-\\x{10ffff}]" : "[^\\x{0}-\\x{10ffff}]");
    } else if (r->class_nonspace) {
        nonspace_class(r, mark, neg);
    } else {
        emit(r, "]");
    }
    r->last = L_ATOM;
}

static void escape(struct rx *r)
{
    if (r->i + 1 >= r->n) {
        fail(r, "'\\' at the end of the pattern");
        return;
    }
    char c = r->s[r->i + 1];
    r->last = L_ATOM;
    if (c == 'b' || c == 'B') {
        emit(r, c == 'b' ? "\\b" : "\\B");
        r->i += 2;
        r->last = L_ASSERT;
    } else if (c == 's' || c == 'S' || c == 'd' || c == 'D' || c == 'w' || c == 'W') {
        const char *set = c == 's' || c == 'S'   ? ECMA_SPACE
                          : c == 'd' || c == 'D' ? ASCII_DIGIT
                                                 : ASCII_WORD;
        emit(r, c >= 'a' ? "[" : "[^");
        emit(r, set);
        emit(r, "]");
        r->i += 2;
    } else if ((c >= '1' && c <= '9') || c == 'k') {
        fail(r, "backreferences are not supported");
    } else if (c == 'p' || c == 'P') {
        r->i += 2;
        property_escape(r, c);
    } else {
        uint32_t cp = 0;
        class_atom(r, &cp, true);
        if (cp == '-') fail(r, "'\\-' is only an escape inside a character class");
        emit_cp(r, cp);
    }
}

static void group_open(struct rx *r)
{
    const char *p = r->s + r->i;
    bool look = false;
    if (r->depth >= MAX_GROUP_DEPTH) {
        fail(r, "groups nested deeper than %d", MAX_GROUP_DEPTH);
        return;
    }
    if (p[1] == '*') {
        fail(r, "'(*' is not ECMA-262 syntax");
        return;
    }
    if (p[1] != '?') {
        emit(r, "(");
        r->i++;
    } else if (p[2] == ':' || p[2] == '=' || p[2] == '!') {
        look = p[2] != ':';
        emit(r, p[2] == ':' ? "(?:" : p[2] == '=' ? "(?=" : "(?!");
        r->i += 3;
    } else if (p[2] == '<' && (p[3] == '=' || p[3] == '!')) {
        look = true;
        emit(r, p[3] == '=' ? "(?<=" : "(?<!");
        r->i += 4;
    } else if (p[2] == '<') {
        size_t len =
            strspn(p + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789");
        if (len == 0 || len > 32 || p[3 + len] != '>' || (p[3] >= '0' && p[3] <= '9')) {
            fail(r, "group names must be [A-Za-z_][A-Za-z0-9_]*, at most 32 characters");
            return;
        }
        char buf[48];
        snprintf(buf, sizeof(buf), "(?<%.*s>", (int)len, p + 3);
        emit(r, buf);
        r->i += 4 + len;
    } else {
        fail(r, "'(?%c' is not ECMA-262 syntax", p[2] ? p[2] : ' ');
        return;
    }
    r->lookaround[r->depth++] = look;
    r->last = L_NONE;
}

/* {n}, {n,} or {n,m} at r->i: its length, or 0 if it is not one. */
static size_t braces_len(const struct rx *r)
{
    const char *p = r->s + r->i + 1;
    size_t a = strspn(p, "0123456789");
    if (a == 0) return 0;
    if (p[a] == '}') return a + 2;
    if (p[a] != ',') return 0;
    size_t b = strspn(p + a + 1, "0123456789");
    return p[a + 1 + b] == '}' ? a + b + 3 : 0;
}

static void quantifier(struct rx *r, size_t len)
{
    if (r->last == L_ASSERT) {
        fail(r, "an assertion cannot be repeated");
        return;
    }
    if (r->last != L_ATOM) {
        fail(r, "nothing to repeat");
        return;
    }
    char buf[64];
    if (len >= sizeof(buf)) {
        fail(r, "quantifier too large");
        return;
    }
    memcpy(buf, r->s + r->i, len);
    buf[len] = '\0';
    emit(r, buf);
    r->i += len;
    if (r->i < r->n && r->s[r->i] == '?') { /* lazy: the same strings match */
        emit(r, "?");
        r->i++;
    }
    r->last = L_QUANT;
}

static void step(struct rx *r)
{
    char c = r->s[r->i];
    switch (c) {
    case '\\':
        escape(r);
        return;
    case '.':
        emit(r, "[^\\n\\r\\x{2028}\\x{2029}]");
        r->i++;
        r->last = L_ATOM;
        return;
    case '[':
        char_class(r);
        return;
    case '(':
        group_open(r);
        return;
    case ')':
        if (r->depth == 0) {
            fail(r, "unmatched ')'");
            return;
        }
        emit(r, ")");
        r->i++;
        r->last = r->lookaround[--r->depth] ? L_ASSERT : L_ATOM;
        return;
    case '*':
    case '+':
    case '?':
        quantifier(r, 1);
        return;
    case '{': {
        size_t len = braces_len(r);
        if (len)
            quantifier(r, len);
        else
            fail(r, "a lone '{' is not ECMA-262 (Unicode mode): write \\{");
        return;
    }
    case '}':
    case ']':
        fail(r, "a lone '%c' is not ECMA-262 (Unicode mode): write \\%c", c, c);
        return;
    case '^':
    case '$':
        emit(r, c == '^' ? "^" : "$");
        r->i++;
        r->last = L_ASSERT;
        return;
    case '|':
        emit(r, "|");
        r->i++;
        r->last = L_NONE;
        return;
    default: {
        size_t start = r->i;
        next_utf8(r);
        if (!r->failed && gate_buf_append(&r->out, r->s + start, r->i - start) < 0)
            fail(r, "out of memory");
        r->last = L_ATOM;
    }
    }
}

char *schema_regex_translate(const char *ecma, char *why, size_t whylen)
{
    struct rx r = {.s = ecma, .n = strlen(ecma), .why = why, .whylen = whylen};
    while (!r.failed && r.i < r.n)
        step(&r);
    if (!r.failed && r.depth > 0) fail(&r, "missing ')'");
    if (!r.failed && gate_buf_append(&r.out, "", 0) < 0) fail(&r, "out of memory");
    if (r.failed) {
        gate_buf_free(&r.out);
        return NULL;
    }
    return r.out.data;
}
