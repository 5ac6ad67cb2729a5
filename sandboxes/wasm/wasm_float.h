/* wasm_float.h: WebAssembly's floating-point corner cases (NaN quieting, min/max with signed
 * zeros and NaN propagation, saturating float-to-int conversion), shared by the scalar
 * interpreter (interp.c) and the SIMD instructions (simd.c). */
#ifndef GATE_WASM_FLOAT_H
#define GATE_WASM_FLOAT_H

#include <math.h>
#include <stdint.h>

/* libm returns a signalling NaN operand unchanged; WebAssembly wants it quieted. */
#define WQUIET(x)                                                                                  \
    __extension__({                                                                                \
        __typeof__(x) q_ = (x);                                                                    \
        q_ != q_ ? q_ + q_ : q_;                                                                   \
    })

static inline float wf32_min(float a, float b)
{
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? a : b;
    return a < b ? a : b;
}
static inline float wf32_max(float a, float b)
{
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}
static inline double wf64_min(double a, double b)
{
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? a : b;
    return a < b ? a : b;
}
static inline double wf64_max(double a, double b)
{
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}
static inline int32_t wsat_s32(double x)
{
    if (x != x) return 0;
    if (x <= -2147483648.0) return INT32_MIN;
    if (x >= 2147483648.0) return INT32_MAX;
    return (int32_t)x;
}
static inline uint32_t wsat_u32(double x)
{
    if (!(x > -1.0)) return 0;
    if (x >= 4294967296.0) return UINT32_MAX;
    return (uint32_t)x;
}
static inline int64_t wsat_s64(double x)
{
    if (x != x) return 0;
    if (x <= -9223372036854775808.0) return INT64_MIN;
    if (x >= 9223372036854775808.0) return INT64_MAX;
    return (int64_t)x;
}
static inline uint64_t wsat_u64(double x)
{
    if (!(x > -1.0)) return 0;
    if (x >= 18446744073709551616.0) return UINT64_MAX;
    return (uint64_t)x;
}

#endif
