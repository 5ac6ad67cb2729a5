/* jscan.h: a small JSON scanner for the WebAssembly example tools (no allocation).
 *
 * Values are located as byte spans inside the input; nothing is copied or decoded except
 * when a string is explicitly unescaped. Enough to pick fields out of the arguments JSON.
 */
#ifndef GATE_TOOLS_JSCAN_H
#define GATE_TOOLS_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct jspan {
    const char *p;
    size_t n;
};

static inline const char *js_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* End of the value starting at p (after whitespace), or NULL if malformed. depth bounds
 * nesting so hostile input cannot exhaust the stack. */
static inline const char *js_skip(const char *p, const char *end, int depth)
{
    p = js_ws(p, end);
    if (p >= end || depth > 64) return NULL;
    if (*p == '"') {
        for (p++; p < end; p++) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                return p + 1;
        }
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = js_ws(p + 1, end);
        if (p < end && *p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = js_skip(p, end, depth + 1); /* key */
                if (!p || (p = js_ws(p, end)) >= end || *p != ':') return NULL;
                p++;
            }
            p = js_skip(p, end, depth + 1);
            if (!p || (p = js_ws(p, end)) >= end) return NULL;
            if (*p == close) return p + 1;
            if (*p != ',') return NULL;
            p++;
        }
    }
    const char *s = p;
    while (p < end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
        p++;
    return p > s ? p : NULL;
}

/* In the object at v, find member `key` (length klen, compared raw). */
static inline bool js_member(struct jspan v, const char *key, size_t klen, struct jspan *out)
{
    const char *p = js_ws(v.p, v.p + v.n), *end = v.p + v.n;
    if (p >= end || *p != '{') return false;
    p = js_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *k = p + 1, *kend = js_skip(p, end, 0);
        if (!kend) return false;
        bool match = (size_t)(kend - 1 - k) == klen && !memcmp(k, key, klen);
        p = js_ws(kend, end);
        if (p >= end || *p != ':') return false;
        const char *vs = js_ws(p + 1, end), *ve = js_skip(vs, end, 0);
        if (!ve) return false;
        if (match) {
            *out = (struct jspan){vs, (size_t)(ve - vs)};
            return true;
        }
        p = js_ws(ve, end);
        if (p < end && *p == ',') p = js_ws(p + 1, end);
    }
    return false;
}

/* Element i of the array at v. */
static inline bool js_index(struct jspan v, size_t i, struct jspan *out)
{
    const char *p = js_ws(v.p, v.p + v.n), *end = v.p + v.n;
    if (p >= end || *p != '[') return false;
    p = js_ws(p + 1, end);
    for (size_t k = 0; p < end && *p != ']'; k++) {
        const char *ve = js_skip(p, end, 0);
        if (!ve) return false;
        if (k == i) {
            *out = (struct jspan){p, (size_t)(ve - p)};
            return true;
        }
        p = js_ws(ve, end);
        if (p < end && *p == ',') p = js_ws(p + 1, end);
    }
    return false;
}

/* Unescape the JSON string at v into out (cap bytes, NUL-terminated). \uXXXX becomes UTF-8
 * (surrogate pairs joined). Returns the length or -1. */
static inline long js_string(struct jspan v, char *out, size_t cap)
{
    const char *p = v.p, *end = v.p + v.n;
    size_t n = 0;
    if (v.n < 2 || *p != '"') return -1;
    for (p++; p < end - 1 && n + 4 < cap; p++) {
        unsigned c = (unsigned char)*p;
        if (c == '\\') {
            c = (unsigned char)*++p;
            if (c == 'u' && end - p > 4) {
                unsigned cp = 0;
                for (int i = 1; i <= 4; i++) {
                    char h = p[i];
                    cp = cp * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
                }
                p += 4;
                if (cp >= 0xd800 && cp < 0xdc00 && end - p > 6 && p[1] == '\\' && p[2] == 'u') {
                    unsigned lo = 0;
                    for (int i = 3; i <= 6; i++) {
                        char h = p[i];
                        lo = lo * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
                if (cp < 0x80) {
                    out[n++] = (char)cp;
                } else if (cp < 0x800) {
                    out[n++] = (char)(0xc0 | cp >> 6);
                    out[n++] = (char)(0x80 | (cp & 0x3f));
                } else if (cp < 0x10000) {
                    out[n++] = (char)(0xe0 | cp >> 12);
                    out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    out[n++] = (char)(0x80 | (cp & 0x3f));
                } else {
                    out[n++] = (char)(0xf0 | cp >> 18);
                    out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    out[n++] = (char)(0x80 | (cp & 0x3f));
                }
                continue;
            }
            c = c == 'n'   ? '\n'
                : c == 't' ? '\t'
                : c == 'r' ? '\r'
                : c == 'b' ? '\b'
                : c == 'f' ? '\f'
                           : c;
        }
        out[n++] = (char)c;
    }
    out[n] = 0;
    return (long)n;
}

#endif
