/* schema_format.c: the `format` values the argument schema asserts.
 *
 * Each follows its RFC, and agrees with ajv-formats' "full" mode (the validator agents are
 * most likely to use) except where ajv-formats accepts what the RFC does not; those cases are
 * refused here and listed in the README: a date-time whose separator is a space (or any other
 * whitespace) instead of T, an offset without its colon or minutes (+0530, +05), a uuid with
 * a urn:uuid: prefix, and a uri whose host follows a single slash ("a:/[::1]") or whose IPv4
 * part has leading zeros ("[::01.2.3.4]"). Like ajv-formats, a uri needs a non-empty part after
 * the scheme ("mailto:" is refused) and email takes the dot-atom form only (no quoted local
 * part, no address literal).
 */
#include <string.h>

#include "schema_internal.h"

const char *const schema_format_names[FMT__COUNT] = {
    "", "date-time", "date", "email", "uri", "uuid", "ipv4", "ipv6",
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* n digits at s as a number, or -1. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* ---- RFC 3339 ----------------------------------------------------------------------------- */

static bool full_date(const char *s, size_t len)
{
    static const int days[] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (len != 10 || s[4] != '-' || s[7] != '-') return false;
    int y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
    if (y < 0 || m < 1 || m > 12 || d < 1) return false;
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return d <= (m == 2 && leap ? 29 : days[m]);
}

/* HH:MM:SS[.frac](Z|+HH:MM|-HH:MM); second 60 only where UTC is 23:59 (a leap second). */
static bool full_time(const char *s, size_t len)
{
    if (len < 9 || s[2] != ':' || s[5] != ':') return false;
    int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);
    if (h < 0 || m < 0 || sec < 0 || h > 23 || m > 59 || sec > 60) return false;
    size_t i = 8;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == start) return false;
    }
    int off = 0;
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        off = 0;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59) return false;
        off = (s[i] == '-' ? -1 : 1) * (oh * 60 + om);
    } else {
        return false;
    }
    if (sec < 60) return true;
    int utc = ((h * 60 + m - off) % 1440 + 1440) % 1440;
    return utc == 23 * 60 + 59;
}

static bool date_time(const char *s, size_t len)
{
    return len > 11 && (s[10] == 'T' || s[10] == 't') && full_date(s, 10) &&
           full_time(s + 11, len - 11);
}

/* ---- addresses ---------------------------------------------------------------------------- */

/* A dotted-quad with no leading zeros, each part 0..255. */
static bool ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.') return false;
            i++;
        }
        size_t start = i;
        int v = 0;
        while (i < len && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (s[i++] - '0');
        size_t n = i - start;
        if (n == 0 || v > 255 || (n > 1 && s[start] == '0')) return false;
    }
    return i == len;
}

/* RFC 4291 text form: eight groups of 1-4 hex digits, one "::" for a run of zero groups, and
 * a dotted-quad for the last two groups. No zone index. */
static bool ipv6(const char *s, size_t len)
{
    int groups = 0;
    bool gap = false;
    size_t i = 0;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        gap = true;
        i = 2;
    } else if (len >= 1 && s[0] == ':') {
        return false;
    }
    while (i < len) {
        size_t start = i;
        while (i < len && is_hex(s[i]) && i - start < 5)
            i++;
        if (i < len && s[i] == '.') { /* the dotted-quad ends the address */
            if (!ipv4(s + start, len - start)) return false;
            groups += 2;
            i = len;
            break;
        }
        if (i == start || i - start > 4) return false;
        groups++;
        if (i == len) break;
        if (s[i] != ':') return false;
        i++;
        if (i < len && s[i] == ':') {
            if (gap) return false;
            gap = true;
            i++;
        } else if (i == len) {
            return false; /* a single trailing ':' */
        }
    }
    return gap ? groups <= 7 : groups == 8;
}

static bool uuid(const char *s, size_t len)
{
    if (len != 36) return false;
    for (size_t i = 0; i < len; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !is_hex(s[i])) return false;
    return true;
}

/* ---- email: dot-atom "@" a domain of two or more labels ----------------------------------- */

static bool atext(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

static bool email(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at || at == s) return false;
    size_t local = (size_t)(at - s), i;
    bool prev_dot = true;
    for (i = 0; i < local; i++) {
        if (s[i] == '.') {
            if (prev_dot) return false;
            prev_dot = true;
        } else if (atext(s[i])) {
            prev_dot = false;
        } else {
            return false;
        }
    }
    if (prev_dot) return false;
    int labels = 0;
    for (i = local + 1; i <= len;) {
        size_t start = i;
        while (i < len && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '-'))
            i++;
        if (i == start || s[start] == '-' || s[i - 1] == '-') return false;
        labels++;
        if (i == len) break;
        if (s[i] != '.') return false;
        i++;
    }
    return labels >= 2;
}

/* ---- uri: RFC 3986 URI (absolute, with a scheme) ------------------------------------------ */

static bool unreserved_or_sub(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-._~!$&'()*+,;=", c));
}

/* Characters of a component: unreserved, sub-delims, pct-encoded and the extra ones given. */
static bool component(const char *s, size_t len, const char *extra)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
            i += 2;
        } else if (!unreserved_or_sub(s[i]) && !(s[i] && strchr(extra, s[i]))) {
            return false;
        }
    }
    return true;
}

static bool ip_literal(const char *s, size_t len)
{
    if (len > 0 && (s[0] == 'v' || s[0] == 'V')) {
        size_t i = 1;
        while (i < len && is_hex(s[i]))
            i++;
        if (i == 1 || i >= len || s[i] != '.' || i + 1 == len) return false;
        for (i++; i < len; i++)
            if (!unreserved_or_sub(s[i]) && s[i] != ':') return false;
        return true;
    }
    return ipv6(s, len);
}

static bool authority(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (at) {
        if (!component(s, (size_t)(at - s), ":")) return false;
        len -= (size_t)(at - s) + 1;
        s = at + 1;
    }
    size_t host_end;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || !ip_literal(s + 1, (size_t)(close - s) - 1)) return false;
        host_end = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        host_end = colon ? (size_t)(colon - s) : len;
        if (!component(s, host_end, "")) return false; /* reg-name (an IPv4 address is one) */
    }
    if (host_end == len) return true;
    if (s[host_end] != ':') return false;
    for (size_t i = host_end + 1; i < len; i++)
        if (!is_digit(s[i])) return false;
    return true;
}

static bool uri(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !is_alpha(s[0])) return false;
    while (i < len &&
           (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i == len || s[i] != ':') return false;
    i++;
    size_t end = i;
    while (end < len && s[end] != '?' && s[end] != '#')
        end++;
    const char *hier = s + i;
    size_t hlen = end - i;
    if (hlen == 0) return false; /* "mailto:": refused, as ajv-formats does */
    if (hlen >= 2 && hier[0] == '/' && hier[1] == '/') {
        const char *slash = memchr(hier + 2, '/', hlen - 2);
        size_t alen = slash ? (size_t)(slash - hier) - 2 : hlen - 2;
        if (!authority(hier + 2, alen)) return false;
        hier += 2 + alen;
        hlen -= 2 + alen;
    }
    /* What remains is a path: segments of pchar separated by '/'. path-rootless needs a first
     * segment, and "//" cannot start a path without an authority (handled above). */
    if (!component(hier, hlen, ":@/")) return false;
    if (end < len && s[end] == '?') {
        size_t q = ++end;
        while (end < len && s[end] != '#')
            end++;
        if (!component(s + q, end - q, ":@/?")) return false;
    }
    if (end < len && s[end] == '#' && !component(s + end + 1, len - end - 1, ":@/?")) return false;
    return true;
}

bool schema_format_check(enum schema_format f, const char *s, size_t len)
{
    switch (f) {
    case FMT_DATE_TIME:
        return date_time(s, len);
    case FMT_DATE:
        return full_date(s, len);
    case FMT_EMAIL:
        return email(s, len);
    case FMT_URI:
        return uri(s, len);
    case FMT_UUID:
        return uuid(s, len);
    case FMT_IPV4:
        return ipv4(s, len);
    case FMT_IPV6:
        return ipv6(s, len);
    default:
        return true;
    }
}
