/* schema_value.c: JSON values as JSON Schema sees them.
 *
 * jansson keeps integers (json_int_t) and reals (double) apart; JSON Schema does not: 1, 1.0
 * and 1e0 are the same number, and an integer. Comparisons here are exact, including an
 * integer beyond 2^53 against a real, and multipleOf works in decimal, so that 19.99 is a
 * multiple of 0.01 although 19.99 / 0.01 is 1998.9999999999998 in binary floating point.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_internal.h"

bool schema_num_is_integral(const json_t *j)
{
    if (json_is_integer(j)) return true;
    double d = json_real_value(j);
    return json_is_real(j) && isfinite(d) && d == trunc(d);
}

/* An integer against a real, exactly: <0, 0, >0 as x is below, at or above d. */
static int cmp_int_real(json_int_t x, double d)
{
    if (d >= 9223372036854775808.0) return -1; /* 2^63: above every json_int_t */
    if (d < -9223372036854775808.0) return 1;
    double fl = floor(d);
    json_int_t fi = (json_int_t)fl;
    if (x < fi) return -1;
    if (x > fi) return 1;
    return fl == d ? 0 : -1; /* x == floor(d) <= d */
}

int schema_num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_integer(a)) return cmp_int_real(json_integer_value(a), json_real_value(b));
    if (json_is_integer(b)) return -cmp_int_real(json_integer_value(b), json_real_value(a));
    double x = json_real_value(a), y = json_real_value(b);
    return x < y ? -1 : x > y;
}

/* The shortest decimal digits D and exponent E with |d| = D * 10^E that read back as d. */
static void shortest_decimal(double d, uint64_t *digits, int *exp10)
{
    char buf[40];
    d = fabs(d);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf is "D.DDDDe[+-]XX": collect the digits, then the exponent. */
    uint64_t v = 0;
    int ndigits = 0;
    char *p = buf;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p - '0');
            ndigits++;
        }
    int e = atoi(p + 1) - (ndigits - 1);
    while (v && v % 10 == 0) {
        v /= 10;
        e++;
    }
    *digits = v;
    *exp10 = e;
}

static void decimal_of(const json_t *j, uint64_t *digits, int *exp10)
{
    if (json_is_integer(j)) {
        json_int_t i = json_integer_value(j);
        uint64_t v = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        int e = 0;
        while (v && v % 10 == 0) {
            v /= 10;
            e++;
        }
        *digits = v;
        *exp10 = e;
        return;
    }
    shortest_decimal(json_real_value(j), digits, exp10);
}

static uint64_t pow10_mod(int k, uint64_t m)
{
    unsigned __int128 result = 1 % m, base = 10 % m;
    for (; k > 0; k >>= 1) {
        if (k & 1) result = result * base % m;
        base = base * base % m;
    }
    return (uint64_t)result;
}

bool schema_num_multiple_of(const json_t *x, const json_t *m)
{
    if (json_is_integer(x) && json_is_integer(m))
        return json_integer_value(x) % json_integer_value(m) == 0;
    if (json_is_real(x) && !isfinite(json_real_value(x))) return false;
    uint64_t dx = 0, dm = 0;
    int ex = 0, em = 0;
    decimal_of(x, &dx, &ex);
    decimal_of(m, &dm, &em);
    if (dx == 0) return true;
    if (dm == 0) return false;
    /* x / m = (dx / dm) * 10^(ex - em): an integer when dm divides dx * 10^(ex - em). */
    int k = ex - em;
    if (k >= 0) {
        unsigned __int128 r = (unsigned __int128)(dx % dm) * pow10_mod(k, dm) % dm;
        return r == 0;
    }
    if (-k > 19) return false; /* dm * 10^-k > 10^19 > dx */
    unsigned __int128 div = dm;
    for (int i = 0; i < -k; i++)
        div *= 10;
    return dx % div == 0;
}

void schema_num_str(const json_t *j, char *buf, size_t len)
{
    if (json_is_integer(j)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(j));
        return;
    }
    double d = json_real_value(j);
    if (d == trunc(d) && fabs(d) < 1e17) {
        snprintf(buf, len, "%.0f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

static int type_rank(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        return 0;
    case JSON_FALSE:
        return 1;
    case JSON_TRUE:
        return 2;
    case JSON_INTEGER:
    case JSON_REAL:
        return 3;
    case JSON_STRING:
        return 4;
    case JSON_ARRAY:
        return 5;
    default:
        return 6;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of an object, sorted (so that key order never matters). NULL when out of memory. */
static const char **sorted_keys(const json_t *o)
{
    size_t n = json_object_size(o);
    const char **keys = malloc((n ? n : 1) * sizeof(*keys));
    if (!keys) return NULL;
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), cmp_str);
    return keys;
}

static int cmp_objects(const json_t *a, const json_t *b, uint64_t *steps)
{
    size_t na = json_object_size(a), nb = json_object_size(b);
    if (na != nb) return na < nb ? -1 : 1;
    const char **ka = sorted_keys(a), **kb = sorted_keys(b);
    int c = 0;
    if (!ka || !kb) c = ka ? 1 : -1; /* out of memory: any consistent answer but "equal" */
    for (size_t i = 0; c == 0 && i < na; i++)
        c = strcmp(ka[i], kb[i]);
    for (size_t i = 0; c == 0 && i < na; i++)
        c = schema_json_cmp(json_object_get(a, ka[i]), json_object_get(b, kb[i]), steps);
    free(ka);
    free(kb);
    return c;
}

int schema_json_cmp(const json_t *a, const json_t *b, uint64_t *steps)
{
    if (steps) (*steps)++;
    int ra = type_rank(a), rb = type_rank(b);
    if (ra != rb) return ra < rb ? -1 : 1;
    switch (json_typeof(a)) {
    case JSON_INTEGER:
    case JSON_REAL:
        return schema_num_cmp(a, b);
    case JSON_STRING: {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        return c ? c : (la < lb ? -1 : la > lb);
    }
    case JSON_ARRAY: {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            int c = schema_json_cmp(json_array_get(a, i), json_array_get(b, i), steps);
            if (c) return c;
        }
        return na < nb ? -1 : na > nb;
    }
    case JSON_OBJECT:
        return cmp_objects(a, b, steps);
    default:
        return 0; /* null, true, false: the rank said it all */
    }
}

bool schema_json_equal(const json_t *a, const json_t *b)
{
    return schema_json_cmp(a, b, NULL) == 0;
}
