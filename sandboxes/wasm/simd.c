/* simd.c: the fixed-width SIMD instructions, one function per row of WASM_SIMD_OPS.
 *
 * The interpreter's SIMD handler calls wasm_simd_fns[op] with the frame, so these functions
 * stay out of the scalar dispatch loop (whose register allocation they would otherwise
 * disturb). Values are 16 bytes in two consecutive 8-byte frame slots (8-byte aligned, so
 * they are loaded and stored with memcpy). Lanes are computed with GCC's vector extensions,
 * which the compiler maps to the host's SIMD unit (SSE2 on x86-64) or to scalar code
 * elsewhere; a few operations that SSE2 has as one instruction but vector extensions cannot
 * express (saturating arithmetic, averages, packs, the i16 dot product, bitmasks) use
 * intrinsics on x86-64, with a lane loop as the portable fallback. Float lanes follow the
 * scalar rules of wasm_float.h.
 */
#include <math.h>
#include <string.h>

#include "wasm_float.h"
#include "wasm_internal.h"
#include "wasm_simd.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef int8_t i8x16 __attribute__((vector_size(16)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef int16_t i16x8 __attribute__((vector_size(16)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef uint32_t u32x4 __attribute__((vector_size(16)));
typedef int64_t i64x2 __attribute__((vector_size(16)));
typedef uint64_t u64x2 __attribute__((vector_size(16)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef double f64x2 __attribute__((vector_size(16)));

#define FN(name)                                                                                   \
    static uint32_t s_##name(uint8_t *fp, const union wcell *pc, uint8_t *mem, uint64_t msize)
#define UNUSED_MEM() ((void)mem, (void)msize)
#define LD(T, off)                                                                                 \
    __extension__({                                                                                \
        T v_;                                                                                      \
        memcpy(&v_, fp + (off), 16);                                                               \
        v_;                                                                                        \
    })
#define ST(off, v)                                                                                 \
    do {                                                                                           \
        __typeof__(v) s_ = (v);                                                                    \
        memcpy(fp + (off), &s_, 16);                                                               \
    } while (0)
#define DST pc[1].s.a
#define OPA pc[1].s.b
#define OPB pc[2].s.b
#define OPC pc[3].s.a
#define LANE pc[3].s.b
#define SCALAR(T, off)                                                                             \
    __extension__({                                                                                \
        T x_;                                                                                      \
        memcpy(&x_, fp + (off), sizeof(T));                                                        \
        x_;                                                                                        \
    })
#define WR64(off, v)                                                                               \
    do {                                                                                           \
        uint64_t w_ = (v);                                                                         \
        memcpy(fp + (off), &w_, 8);                                                                \
    } while (0)

/* r = expr over vectors a (and b) of type T. */
#define VUN(name, T, expr)                                                                         \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        ST(DST, (expr));                                                                           \
        return 3;                                                                                  \
    }
#define VBIN(name, T, expr)                                                                        \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA), b = LD(T, OPB);                                                          \
        ST(DST, (expr));                                                                           \
        return 3;                                                                                  \
    }
/* r[i] = expr for each of the n lanes of r (type R); a, b of type T. */
#define LUN(name, T, R, n, expr)                                                                   \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        R r = {0};                                                                                 \
        for (int i = 0; i < (n); i++)                                                              \
            r[i] = (expr);                                                                         \
        ST(DST, r);                                                                                \
        return 3;                                                                                  \
    }
#define LBIN(name, T, R, n, expr)                                                                  \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA), b = LD(T, OPB);                                                          \
        R r = {0};                                                                                 \
        for (int i = 0; i < (n); i++)                                                              \
            r[i] = (expr);                                                                         \
        ST(DST, r);                                                                                \
        return 3;                                                                                  \
    }

/* ---- memory --------------------------------------------------------------------------- */
/* Effective address of the access at pc, or 0 (with *ok false) when n bytes do not fit. */
static inline uint8_t *ea(uint8_t *fp, const union wcell *pc, uint8_t *mem, uint64_t msize,
                          uint32_t n)
{
    uint32_t addr;
    memcpy(&addr, fp + OPA, 4);
    uint64_t e = (uint64_t)addr + pc[3].u;
    return e + n > msize ? NULL : mem + e;
}

FN(V128_LOAD)
{
    uint8_t *p = ea(fp, pc, mem, msize, 16);
    if (!p) return 0;
    memcpy(fp + DST, p, 16);
    return 4;
}
FN(V128_STORE)
{
    uint8_t *p = ea(fp, pc, mem, msize, 16);
    if (!p) return 0;
    memcpy(p, fp + OPB, 16);
    return 4;
}

/* Load n lanes of type S and widen them to the lanes of R. */
#define LOAD_EXT(name, S, R, n)                                                                    \
    FN(name)                                                                                       \
    {                                                                                              \
        uint8_t *p = ea(fp, pc, mem, msize, 8);                                                    \
        if (!p) return 0;                                                                          \
        S s[n];                                                                                    \
        memcpy(s, p, 8);                                                                           \
        R r = {0};                                                                                 \
        for (int i = 0; i < (n); i++)                                                              \
            r[i] = s[i];                                                                           \
        ST(DST, r);                                                                                \
        return 4;                                                                                  \
    }
LOAD_EXT(V128_LOAD8X8_S, int8_t, i16x8, 8)
LOAD_EXT(V128_LOAD8X8_U, uint8_t, u16x8, 8)
LOAD_EXT(V128_LOAD16X4_S, int16_t, i32x4, 4)
LOAD_EXT(V128_LOAD16X4_U, uint16_t, u32x4, 4)
LOAD_EXT(V128_LOAD32X2_S, int32_t, i64x2, 2)
LOAD_EXT(V128_LOAD32X2_U, uint32_t, u64x2, 2)

/* Load one S into every lane (splat) or into lane 0 with the others zero. */
#define LOAD_ONE(name, S, R, splat)                                                                \
    FN(name)                                                                                       \
    {                                                                                              \
        uint8_t *p = ea(fp, pc, mem, msize, sizeof(S));                                            \
        if (!p) return 0;                                                                          \
        S s;                                                                                       \
        memcpy(&s, p, sizeof(S));                                                                  \
        R r = {0};                                                                                 \
        for (unsigned i = 0; i < (splat ? 16 / sizeof(S) : 1); i++)                                \
            r[i] = s;                                                                              \
        ST(DST, r);                                                                                \
        return 4;                                                                                  \
    }
LOAD_ONE(V128_LOAD8_SPLAT, uint8_t, u8x16, 1)
LOAD_ONE(V128_LOAD16_SPLAT, uint16_t, u16x8, 1)
LOAD_ONE(V128_LOAD32_SPLAT, uint32_t, u32x4, 1)
LOAD_ONE(V128_LOAD64_SPLAT, uint64_t, u64x2, 1)
LOAD_ONE(V128_LOAD32_ZERO, uint32_t, u32x4, 0)
LOAD_ONE(V128_LOAD64_ZERO, uint64_t, u64x2, 0)

#define LOAD_LANE(name, S, R)                                                                      \
    FN(name)                                                                                       \
    {                                                                                              \
        uint8_t *p = ea(fp, pc, mem, msize, sizeof(S));                                            \
        if (!p) return 0;                                                                          \
        S s;                                                                                       \
        memcpy(&s, p, sizeof(S));                                                                  \
        R r = LD(R, OPB);                                                                          \
        r[pc[4].u] = s;                                                                            \
        ST(DST, r);                                                                                \
        return 5;                                                                                  \
    }
#define STORE_LANE(name, S, R)                                                                     \
    FN(name)                                                                                       \
    {                                                                                              \
        uint8_t *p = ea(fp, pc, mem, msize, sizeof(S));                                            \
        if (!p) return 0;                                                                          \
        R v = LD(R, OPB);                                                                          \
        S s = v[pc[4].u];                                                                          \
        memcpy(p, &s, sizeof(S));                                                                  \
        return 5;                                                                                  \
    }
LOAD_LANE(V128_LOAD8_LANE, uint8_t, u8x16)
LOAD_LANE(V128_LOAD16_LANE, uint16_t, u16x8)
LOAD_LANE(V128_LOAD32_LANE, uint32_t, u32x4)
LOAD_LANE(V128_LOAD64_LANE, uint64_t, u64x2)
STORE_LANE(V128_STORE8_LANE, uint8_t, u8x16)
STORE_LANE(V128_STORE16_LANE, uint16_t, u16x8)
STORE_LANE(V128_STORE32_LANE, uint32_t, u32x4)
STORE_LANE(V128_STORE64_LANE, uint64_t, u64x2)

/* ---- constants, shuffles, lanes -------------------------------------------------------- */
FN(V128_CONST)
{
    UNUSED_MEM();
    memcpy(fp + DST, &pc[3], 16);
    return 5;
}
FN(I8X16_SHUFFLE)
{
    UNUSED_MEM();
    uint8_t ab[32], idx[16];
    u8x16 r;
    memcpy(ab, fp + OPA, 16);
    memcpy(ab + 16, fp + OPB, 16);
    memcpy(idx, &pc[3], 16);
    for (int i = 0; i < 16; i++)
        r[i] = ab[idx[i] & 31];
    ST(DST, r);
    return 5;
}
LBIN(I8X16_SWIZZLE, u8x16, u8x16, 16, b[i] < 16 ? a[b[i]] : 0)

/* Integer lanes only: r + s would change a float's bits. */
#define SPLAT(name, S, R)                                                                          \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        S s = SCALAR(S, OPA);                                                                      \
        R r = {0};                                                                                 \
        r += s;                                                                                    \
        ST(DST, r);                                                                                \
        return 3;                                                                                  \
    }
SPLAT(I8X16_SPLAT, uint8_t, u8x16)
SPLAT(I16X8_SPLAT, uint16_t, u16x8)
SPLAT(I32X4_SPLAT, uint32_t, u32x4)
SPLAT(I64X2_SPLAT, uint64_t, u64x2)
SPLAT(F32X4_SPLAT, uint32_t, u32x4) /* the bits: arithmetic would quiet a NaN, drop a -0 */
SPLAT(F64X2_SPLAT, uint64_t, u64x2)

/* Extract lane LANE of a vector of type T as the 64-bit slot value conv(x). */
#define EXTRACT(name, T, conv)                                                                     \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        __typeof__(a[0]) x = a[LANE];                                                              \
        WR64(DST, conv);                                                                           \
        return 4;                                                                                  \
    }
static inline uint64_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}
static inline uint64_t f64_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}
EXTRACT(I8X16_EXTRACT_LANE_S, i8x16, (uint32_t)(int32_t)x)
EXTRACT(I8X16_EXTRACT_LANE_U, u8x16, x)
EXTRACT(I16X8_EXTRACT_LANE_S, i16x8, (uint32_t)(int32_t)x)
EXTRACT(I16X8_EXTRACT_LANE_U, u16x8, x)
EXTRACT(I32X4_EXTRACT_LANE, u32x4, x)
EXTRACT(I64X2_EXTRACT_LANE, u64x2, x)
EXTRACT(F32X4_EXTRACT_LANE, f32x4, f32_bits(x))
EXTRACT(F64X2_EXTRACT_LANE, f64x2, f64_bits(x))

#define REPLACE(name, T, S)                                                                        \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        a[LANE] = SCALAR(S, OPB);                                                                  \
        ST(DST, a);                                                                                \
        return 4;                                                                                  \
    }
REPLACE(I8X16_REPLACE_LANE, u8x16, uint8_t)
REPLACE(I16X8_REPLACE_LANE, u16x8, uint16_t)
REPLACE(I32X4_REPLACE_LANE, u32x4, uint32_t)
REPLACE(I64X2_REPLACE_LANE, u64x2, uint64_t)
REPLACE(F32X4_REPLACE_LANE, f32x4, float)
REPLACE(F64X2_REPLACE_LANE, f64x2, double)

/* ---- comparisons (lanes of all ones or zeros) ------------------------------------------ */
#define CMP(name, T, op) VBIN(name, T, (u64x2)(a op b))
CMP(I8X16_EQ, i8x16, ==)
CMP(I8X16_NE, i8x16, !=)
CMP(I8X16_LT_S, i8x16, <)
CMP(I8X16_LT_U, u8x16, <)
CMP(I8X16_GT_S, i8x16, >)
CMP(I8X16_GT_U, u8x16, >)
CMP(I8X16_LE_S, i8x16, <=)
CMP(I8X16_LE_U, u8x16, <=)
CMP(I8X16_GE_S, i8x16, >=)
CMP(I8X16_GE_U, u8x16, >=)
CMP(I16X8_EQ, i16x8, ==)
CMP(I16X8_NE, i16x8, !=)
CMP(I16X8_LT_S, i16x8, <)
CMP(I16X8_LT_U, u16x8, <)
CMP(I16X8_GT_S, i16x8, >)
CMP(I16X8_GT_U, u16x8, >)
CMP(I16X8_LE_S, i16x8, <=)
CMP(I16X8_LE_U, u16x8, <=)
CMP(I16X8_GE_S, i16x8, >=)
CMP(I16X8_GE_U, u16x8, >=)
CMP(I32X4_EQ, i32x4, ==)
CMP(I32X4_NE, i32x4, !=)
CMP(I32X4_LT_S, i32x4, <)
CMP(I32X4_LT_U, u32x4, <)
CMP(I32X4_GT_S, i32x4, >)
CMP(I32X4_GT_U, u32x4, >)
CMP(I32X4_LE_S, i32x4, <=)
CMP(I32X4_LE_U, u32x4, <=)
CMP(I32X4_GE_S, i32x4, >=)
CMP(I32X4_GE_U, u32x4, >=)
CMP(I64X2_EQ, i64x2, ==)
CMP(I64X2_NE, i64x2, !=)
CMP(I64X2_LT_S, i64x2, <)
CMP(I64X2_GT_S, i64x2, >)
CMP(I64X2_LE_S, i64x2, <=)
CMP(I64X2_GE_S, i64x2, >=)
CMP(F32X4_EQ, f32x4, ==)
CMP(F32X4_NE, f32x4, !=)
CMP(F32X4_LT, f32x4, <)
CMP(F32X4_GT, f32x4, >)
CMP(F32X4_LE, f32x4, <=)
CMP(F32X4_GE, f32x4, >=)
CMP(F64X2_EQ, f64x2, ==)
CMP(F64X2_NE, f64x2, !=)
CMP(F64X2_LT, f64x2, <)
CMP(F64X2_GT, f64x2, >)
CMP(F64X2_LE, f64x2, <=)
CMP(F64X2_GE, f64x2, >=)

/* ---- bitwise ---------------------------------------------------------------------------- */
VUN(V128_NOT, u64x2, ~a)
VBIN(V128_AND, u64x2, a &b)
VBIN(V128_ANDNOT, u64x2, a & ~b)
VBIN(V128_OR, u64x2, a | b)
VBIN(V128_XOR, u64x2, a ^ b)
FN(V128_BITSELECT)
{
    UNUSED_MEM();
    u64x2 a = LD(u64x2, OPA), b = LD(u64x2, OPB), m = LD(u64x2, OPC);
    ST(DST, (a & m) | (b & ~m));
    return 4;
}

/* ---- v128 -> i32 tests -------------------------------------------------------------------- */
#define TEST(name, T, n, init, step)                                                               \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        uint32_t r = (init);                                                                       \
        for (int i = 0; i < (n); i++)                                                              \
            step;                                                                                  \
        WR64(DST, r);                                                                              \
        return 3;                                                                                  \
    }
TEST(V128_ANY_TRUE, u64x2, 2, 0, r |= a[i] != 0)
TEST(I8X16_ALL_TRUE, u8x16, 16, 1, r &= a[i] != 0)
TEST(I16X8_ALL_TRUE, u16x8, 8, 1, r &= a[i] != 0)
TEST(I32X4_ALL_TRUE, u32x4, 4, 1, r &= a[i] != 0)
TEST(I64X2_ALL_TRUE, u64x2, 2, 1, r &= a[i] != 0)
#ifdef __SSE2__
FN(I8X16_BITMASK)
{
    UNUSED_MEM();
    __m128i a;
    memcpy(&a, fp + OPA, 16);
    WR64(DST, (uint32_t)_mm_movemask_epi8(a));
    return 3;
}
#else
TEST(I8X16_BITMASK, u8x16, 16, 0, r |= (uint32_t)(a[i] >> 7) << i)
#endif
TEST(I16X8_BITMASK, u16x8, 8, 0, r |= (uint32_t)(a[i] >> 15) << i)
TEST(I32X4_BITMASK, u32x4, 4, 0, r |= (uint32_t)(a[i] >> 31) << i)
TEST(I64X2_BITMASK, u64x2, 2, 0, r |= (uint32_t)(a[i] >> 63) << i)

/* ---- integer arithmetic ------------------------------------------------------------------ */
/* Two's complement wrap-around: computed on unsigned lanes. */
VBIN(I8X16_ADD, u8x16, a + b)
VBIN(I8X16_SUB, u8x16, a - b)
VBIN(I16X8_ADD, u16x8, a + b)
VBIN(I16X8_SUB, u16x8, a - b)
VBIN(I16X8_MUL, u16x8, a *b)
VBIN(I32X4_ADD, u32x4, a + b)
VBIN(I32X4_SUB, u32x4, a - b)
VBIN(I32X4_MUL, u32x4, a *b)
VBIN(I64X2_ADD, u64x2, a + b)
VBIN(I64X2_SUB, u64x2, a - b)
VBIN(I64X2_MUL, u64x2, a *b)
VUN(I8X16_NEG, u8x16, -a)
VUN(I16X8_NEG, u16x8, -a)
VUN(I32X4_NEG, u32x4, -a)
VUN(I64X2_NEG, u64x2, -a)
/* |x| as x ^ s - s with s the sign mask (the most negative value stays itself). */
VUN(I8X16_ABS, i8x16, (i8x16)(((u8x16)a ^ (u8x16)(a >> 7)) - (u8x16)(a >> 7)))
VUN(I16X8_ABS, i16x8, (i16x8)(((u16x8)a ^ (u16x8)(a >> 15)) - (u16x8)(a >> 15)))
VUN(I32X4_ABS, i32x4, (i32x4)(((u32x4)a ^ (u32x4)(a >> 31)) - (u32x4)(a >> 31)))
VUN(I64X2_ABS, i64x2, (i64x2)(((u64x2)a ^ (u64x2)(a >> 63)) - (u64x2)(a >> 63)))
LUN(I8X16_POPCNT, u8x16, u8x16, 16, (uint8_t)__builtin_popcount(a[i]))

/* Lane-wise minimum and maximum: select by the comparison mask. */
#define MINMAX(name, T, op)                                                                        \
    VBIN(name, T, (T)(((a op b) & (__typeof__(a op b))a) | (~(a op b) & (__typeof__(a op b))b)))
MINMAX(I8X16_MIN_S, i8x16, <)
MINMAX(I8X16_MIN_U, u8x16, <)
MINMAX(I8X16_MAX_S, i8x16, >)
MINMAX(I8X16_MAX_U, u8x16, >)
MINMAX(I16X8_MIN_S, i16x8, <)
MINMAX(I16X8_MIN_U, u16x8, <)
MINMAX(I16X8_MAX_S, i16x8, >)
MINMAX(I16X8_MAX_U, u16x8, >)
MINMAX(I32X4_MIN_S, i32x4, <)
MINMAX(I32X4_MIN_U, u32x4, <)
MINMAX(I32X4_MAX_S, i32x4, >)
MINMAX(I32X4_MAX_U, u32x4, >)

static inline int32_t clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}
#ifdef __SSE2__
#define SSE_BIN(name, intrin)                                                                      \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        __m128i a, b;                                                                              \
        memcpy(&a, fp + OPA, 16);                                                                  \
        memcpy(&b, fp + OPB, 16);                                                                  \
        a = intrin(a, b);                                                                          \
        memcpy(fp + DST, &a, 16);                                                                  \
        return 3;                                                                                  \
    }
SSE_BIN(I8X16_ADD_SAT_S, _mm_adds_epi8)
SSE_BIN(I8X16_ADD_SAT_U, _mm_adds_epu8)
SSE_BIN(I8X16_SUB_SAT_S, _mm_subs_epi8)
SSE_BIN(I8X16_SUB_SAT_U, _mm_subs_epu8)
SSE_BIN(I16X8_ADD_SAT_S, _mm_adds_epi16)
SSE_BIN(I16X8_ADD_SAT_U, _mm_adds_epu16)
SSE_BIN(I16X8_SUB_SAT_S, _mm_subs_epi16)
SSE_BIN(I16X8_SUB_SAT_U, _mm_subs_epu16)
SSE_BIN(I8X16_AVGR_U, _mm_avg_epu8)
SSE_BIN(I16X8_AVGR_U, _mm_avg_epu16)
SSE_BIN(I8X16_NARROW_I16X8_S, _mm_packs_epi16)
SSE_BIN(I8X16_NARROW_I16X8_U, _mm_packus_epi16)
SSE_BIN(I16X8_NARROW_I32X4_S, _mm_packs_epi32)
SSE_BIN(I32X4_DOT_I16X8_S, _mm_madd_epi16)
#else
LBIN(I8X16_ADD_SAT_S, i8x16, i8x16, 16, clamp(a[i] + b[i], INT8_MIN, INT8_MAX))
LBIN(I8X16_ADD_SAT_U, u8x16, u8x16, 16, clamp(a[i] + b[i], 0, UINT8_MAX))
LBIN(I8X16_SUB_SAT_S, i8x16, i8x16, 16, clamp(a[i] - b[i], INT8_MIN, INT8_MAX))
LBIN(I8X16_SUB_SAT_U, u8x16, u8x16, 16, clamp(a[i] - b[i], 0, UINT8_MAX))
LBIN(I16X8_ADD_SAT_S, i16x8, i16x8, 8, clamp(a[i] + b[i], INT16_MIN, INT16_MAX))
LBIN(I16X8_ADD_SAT_U, u16x8, u16x8, 8, clamp(a[i] + b[i], 0, UINT16_MAX))
LBIN(I16X8_SUB_SAT_S, i16x8, i16x8, 8, clamp(a[i] - b[i], INT16_MIN, INT16_MAX))
LBIN(I16X8_SUB_SAT_U, u16x8, u16x8, 8, clamp(a[i] - b[i], 0, UINT16_MAX))
LBIN(I8X16_AVGR_U, u8x16, u8x16, 16, (a[i] + b[i] + 1) >> 1)
LBIN(I16X8_AVGR_U, u16x8, u16x8, 8, (a[i] + b[i] + 1) >> 1)
LBIN(I8X16_NARROW_I16X8_S, i16x8, i8x16, 16, clamp(i < 8 ? a[i] : b[i - 8], INT8_MIN, INT8_MAX))
LBIN(I8X16_NARROW_I16X8_U, i16x8, u8x16, 16, clamp(i < 8 ? a[i] : b[i - 8], 0, UINT8_MAX))
LBIN(I16X8_NARROW_I32X4_S, i32x4, i16x8, 8, clamp(i < 4 ? a[i] : b[i - 4], INT16_MIN, INT16_MAX))
LBIN(I32X4_DOT_I16X8_S, i16x8, u32x4, 4,
     (uint32_t)(a[2 * i] * b[2 * i]) + (uint32_t)(a[2 * i + 1] * b[2 * i + 1]))
#endif
/* SSE2 has no unsigned 32-to-16 pack. */
LBIN(I16X8_NARROW_I32X4_U, i32x4, u16x8, 8, clamp(i < 4 ? a[i] : b[i - 4], 0, UINT16_MAX))
LBIN(I16X8_Q15MULR_SAT_S, i16x8, i16x8, 8,
     clamp((a[i] * b[i] + 0x4000) >> 15, INT16_MIN, INT16_MAX))

/* Shifts take the count modulo the lane width. */
#define SHIFT(name, T, bits, op)                                                                   \
    FN(name)                                                                                       \
    {                                                                                              \
        UNUSED_MEM();                                                                              \
        T a = LD(T, OPA);                                                                          \
        uint32_t n = SCALAR(uint32_t, OPB) & ((bits)-1);                                           \
        ST(DST, a op n);                                                                           \
        return 3;                                                                                  \
    }
SHIFT(I8X16_SHL, u8x16, 8, <<)
SHIFT(I8X16_SHR_S, i8x16, 8, >>)
SHIFT(I8X16_SHR_U, u8x16, 8, >>)
SHIFT(I16X8_SHL, u16x8, 16, <<)
SHIFT(I16X8_SHR_S, i16x8, 16, >>)
SHIFT(I16X8_SHR_U, u16x8, 16, >>)
SHIFT(I32X4_SHL, u32x4, 32, <<)
SHIFT(I32X4_SHR_S, i32x4, 32, >>)
SHIFT(I32X4_SHR_U, u32x4, 32, >>)
SHIFT(I64X2_SHL, u64x2, 64, <<)
SHIFT(I64X2_SHR_S, i64x2, 64, >>)
SHIFT(I64X2_SHR_U, u64x2, 64, >>)

/* ---- widening ------------------------------------------------------------------------------ */
/* Lanes lo..lo+n of a (type T) widened into the n lanes of R. */
#define EXTEND(name, T, R, n, lo) LUN(name, T, R, n, a[(lo) + i])
EXTEND(I16X8_EXTEND_LOW_I8X16_S, i8x16, i16x8, 8, 0)
EXTEND(I16X8_EXTEND_HIGH_I8X16_S, i8x16, i16x8, 8, 8)
EXTEND(I16X8_EXTEND_LOW_I8X16_U, u8x16, u16x8, 8, 0)
EXTEND(I16X8_EXTEND_HIGH_I8X16_U, u8x16, u16x8, 8, 8)
EXTEND(I32X4_EXTEND_LOW_I16X8_S, i16x8, i32x4, 4, 0)
EXTEND(I32X4_EXTEND_HIGH_I16X8_S, i16x8, i32x4, 4, 4)
EXTEND(I32X4_EXTEND_LOW_I16X8_U, u16x8, u32x4, 4, 0)
EXTEND(I32X4_EXTEND_HIGH_I16X8_U, u16x8, u32x4, 4, 4)
EXTEND(I64X2_EXTEND_LOW_I32X4_S, i32x4, i64x2, 2, 0)
EXTEND(I64X2_EXTEND_HIGH_I32X4_S, i32x4, i64x2, 2, 2)
EXTEND(I64X2_EXTEND_LOW_I32X4_U, u32x4, u64x2, 2, 0)
EXTEND(I64X2_EXTEND_HIGH_I32X4_U, u32x4, u64x2, 2, 2)
LUN(I16X8_EXTADD_PAIRWISE_I8X16_S, i8x16, i16x8, 8, a[2 * i] + a[2 * i + 1])
LUN(I16X8_EXTADD_PAIRWISE_I8X16_U, u8x16, u16x8, 8, a[2 * i] + a[2 * i + 1])
LUN(I32X4_EXTADD_PAIRWISE_I16X8_S, i16x8, i32x4, 4, a[2 * i] + a[2 * i + 1])
LUN(I32X4_EXTADD_PAIRWISE_I16X8_U, u16x8, u32x4, 4, a[2 * i] + a[2 * i + 1])
/* Products of lanes lo..lo+n in the wider type W (exact: they cannot overflow it). */
#define EXTMUL(name, T, R, W, n, lo) LBIN(name, T, R, n, (W)a[(lo) + i] * (W)b[(lo) + i])
EXTMUL(I16X8_EXTMUL_LOW_I8X16_S, i8x16, i16x8, int32_t, 8, 0)
EXTMUL(I16X8_EXTMUL_HIGH_I8X16_S, i8x16, i16x8, int32_t, 8, 8)
EXTMUL(I16X8_EXTMUL_LOW_I8X16_U, u8x16, u16x8, uint32_t, 8, 0)
EXTMUL(I16X8_EXTMUL_HIGH_I8X16_U, u8x16, u16x8, uint32_t, 8, 8)
EXTMUL(I32X4_EXTMUL_LOW_I16X8_S, i16x8, i32x4, int32_t, 4, 0)
EXTMUL(I32X4_EXTMUL_HIGH_I16X8_S, i16x8, i32x4, int32_t, 4, 4)
EXTMUL(I32X4_EXTMUL_LOW_I16X8_U, u16x8, u32x4, uint32_t, 4, 0)
EXTMUL(I32X4_EXTMUL_HIGH_I16X8_U, u16x8, u32x4, uint32_t, 4, 4)
EXTMUL(I64X2_EXTMUL_LOW_I32X4_S, i32x4, i64x2, int64_t, 2, 0)
EXTMUL(I64X2_EXTMUL_HIGH_I32X4_S, i32x4, i64x2, int64_t, 2, 2)
EXTMUL(I64X2_EXTMUL_LOW_I32X4_U, u32x4, u64x2, uint64_t, 2, 0)
EXTMUL(I64X2_EXTMUL_HIGH_I32X4_U, u32x4, u64x2, uint64_t, 2, 2)

/* ---- floating point ------------------------------------------------------------------------ */
VBIN(F32X4_ADD, f32x4, a + b)
VBIN(F32X4_SUB, f32x4, a - b)
VBIN(F32X4_MUL, f32x4, a *b)
VBIN(F32X4_DIV, f32x4, a / b)
VBIN(F64X2_ADD, f64x2, a + b)
VBIN(F64X2_SUB, f64x2, a - b)
VBIN(F64X2_MUL, f64x2, a *b)
VBIN(F64X2_DIV, f64x2, a / b)
/* abs and neg only touch the sign bit (a NaN keeps its payload). */
VUN(F32X4_ABS, u32x4, a & 0x7fffffffu)
VUN(F32X4_NEG, u32x4, a ^ 0x80000000u)
VUN(F64X2_ABS, u64x2, a & 0x7fffffffffffffffull)
VUN(F64X2_NEG, u64x2, a ^ 0x8000000000000000ull)
LUN(F32X4_SQRT, f32x4, f32x4, 4, sqrtf(a[i]))
LUN(F64X2_SQRT, f64x2, f64x2, 2, sqrt(a[i]))
LBIN(F32X4_MIN, f32x4, f32x4, 4, wf32_min(a[i], b[i]))
LBIN(F32X4_MAX, f32x4, f32x4, 4, wf32_max(a[i], b[i]))
LBIN(F64X2_MIN, f64x2, f64x2, 2, wf64_min(a[i], b[i]))
LBIN(F64X2_MAX, f64x2, f64x2, 2, wf64_max(a[i], b[i]))
/* Pseudo-minimum and -maximum: b < a ? b : a and a < b ? b : a, lane by lane. */
LBIN(F32X4_PMIN, f32x4, f32x4, 4, b[i] < a[i] ? b[i] : a[i])
LBIN(F32X4_PMAX, f32x4, f32x4, 4, a[i] < b[i] ? b[i] : a[i])
LBIN(F64X2_PMIN, f64x2, f64x2, 2, b[i] < a[i] ? b[i] : a[i])
LBIN(F64X2_PMAX, f64x2, f64x2, 2, a[i] < b[i] ? b[i] : a[i])
LUN(F32X4_CEIL, f32x4, f32x4, 4, WQUIET(ceilf(a[i])))
LUN(F32X4_FLOOR, f32x4, f32x4, 4, WQUIET(floorf(a[i])))
LUN(F32X4_TRUNC, f32x4, f32x4, 4, WQUIET(truncf(a[i])))
LUN(F32X4_NEAREST, f32x4, f32x4, 4, WQUIET(nearbyintf(a[i])))
LUN(F64X2_CEIL, f64x2, f64x2, 2, WQUIET(ceil(a[i])))
LUN(F64X2_FLOOR, f64x2, f64x2, 2, WQUIET(floor(a[i])))
LUN(F64X2_TRUNC, f64x2, f64x2, 2, WQUIET(trunc(a[i])))
LUN(F64X2_NEAREST, f64x2, f64x2, 2, WQUIET(nearbyint(a[i])))
LUN(F32X4_DEMOTE_F64X2_ZERO, f64x2, f32x4, 2, (float)a[i])
LUN(F64X2_PROMOTE_LOW_F32X4, f32x4, f64x2, 2, (double)a[i])
LUN(F32X4_CONVERT_I32X4_S, i32x4, f32x4, 4, (float)a[i])
LUN(F32X4_CONVERT_I32X4_U, u32x4, f32x4, 4, (float)a[i])
LUN(F64X2_CONVERT_LOW_I32X4_S, i32x4, f64x2, 2, (double)a[i])
LUN(F64X2_CONVERT_LOW_I32X4_U, u32x4, f64x2, 2, (double)a[i])
LUN(I32X4_TRUNC_SAT_F32X4_S, f32x4, i32x4, 4, wsat_s32(a[i]))
LUN(I32X4_TRUNC_SAT_F32X4_U, f32x4, u32x4, 4, wsat_u32(a[i]))
LUN(I32X4_TRUNC_SAT_F64X2_S_ZERO, f64x2, i32x4, 2, wsat_s32(a[i]))
LUN(I32X4_TRUNC_SAT_F64X2_U_ZERO, f64x2, u32x4, 2, wsat_u32(a[i]))

const wasm_simd_fn wasm_simd_fns[256] = {
#define SIMD_ROW(code, name, kind, align, lanes, scalar) [code] = s_##name,
    WASM_SIMD_OPS(SIMD_ROW)
#undef SIMD_ROW
};
