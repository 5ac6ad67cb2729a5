/* wasm_simd.h: the fixed-width SIMD instructions (the 0xFD prefix), one row per instruction.
 *
 * X(opcode, NAME, kind, align, lanes, scalar): kind says what the instruction reads and writes
 * (and so how compile_simd.c validates it and lays out its operands); align is the log2 of the
 * natural alignment of a memory access; lanes the lane count of a lane index immediate; scalar
 * the type letter (I, L, F, D) of a scalar operand or result. simd.c implements each row as
 * one function, wasm_simd_fns[opcode].
 */
#ifndef GATE_WASM_SIMD_H
#define GATE_WASM_SIMD_H

#include <stdint.h>

/* clang-format does not keep one row per line here. */
// clang-format off
#define WASM_SIMD_OPS(X) \
    X(0x00, V128_LOAD, LOAD, 4, 0, 0)                   \
    X(0x01, V128_LOAD8X8_S, LOAD, 3, 0, 0)              \
    X(0x02, V128_LOAD8X8_U, LOAD, 3, 0, 0)              \
    X(0x03, V128_LOAD16X4_S, LOAD, 3, 0, 0)             \
    X(0x04, V128_LOAD16X4_U, LOAD, 3, 0, 0)             \
    X(0x05, V128_LOAD32X2_S, LOAD, 3, 0, 0)             \
    X(0x06, V128_LOAD32X2_U, LOAD, 3, 0, 0)             \
    X(0x07, V128_LOAD8_SPLAT, LOAD, 0, 0, 0)            \
    X(0x08, V128_LOAD16_SPLAT, LOAD, 1, 0, 0)           \
    X(0x09, V128_LOAD32_SPLAT, LOAD, 2, 0, 0)           \
    X(0x0a, V128_LOAD64_SPLAT, LOAD, 3, 0, 0)           \
    X(0x0b, V128_STORE, STORE, 4, 0, 0)                 \
    X(0x0c, V128_CONST, CONST, 0, 0, 0)                 \
    X(0x0d, I8X16_SHUFFLE, SHUFFLE, 0, 0, 0)            \
    X(0x0e, I8X16_SWIZZLE, BIN, 0, 0, 0)                \
    X(0x0f, I8X16_SPLAT, SPLAT, 0, 16, I)               \
    X(0x10, I16X8_SPLAT, SPLAT, 0, 8, I)                \
    X(0x11, I32X4_SPLAT, SPLAT, 0, 4, I)                \
    X(0x12, I64X2_SPLAT, SPLAT, 0, 2, L)                \
    X(0x13, F32X4_SPLAT, SPLAT, 0, 4, F)                \
    X(0x14, F64X2_SPLAT, SPLAT, 0, 2, D)                \
    X(0x15, I8X16_EXTRACT_LANE_S, EXTRACT, 0, 16, I)    \
    X(0x16, I8X16_EXTRACT_LANE_U, EXTRACT, 0, 16, I)    \
    X(0x17, I8X16_REPLACE_LANE, REPLACE, 0, 16, I)      \
    X(0x18, I16X8_EXTRACT_LANE_S, EXTRACT, 0, 8, I)     \
    X(0x19, I16X8_EXTRACT_LANE_U, EXTRACT, 0, 8, I)     \
    X(0x1a, I16X8_REPLACE_LANE, REPLACE, 0, 8, I)       \
    X(0x1b, I32X4_EXTRACT_LANE, EXTRACT, 0, 4, I)       \
    X(0x1c, I32X4_REPLACE_LANE, REPLACE, 0, 4, I)       \
    X(0x1d, I64X2_EXTRACT_LANE, EXTRACT, 0, 2, L)       \
    X(0x1e, I64X2_REPLACE_LANE, REPLACE, 0, 2, L)       \
    X(0x1f, F32X4_EXTRACT_LANE, EXTRACT, 0, 4, F)       \
    X(0x20, F32X4_REPLACE_LANE, REPLACE, 0, 4, F)       \
    X(0x21, F64X2_EXTRACT_LANE, EXTRACT, 0, 2, D)       \
    X(0x22, F64X2_REPLACE_LANE, REPLACE, 0, 2, D)       \
    X(0x23, I8X16_EQ, BIN, 0, 0, 0)                     \
    X(0x24, I8X16_NE, BIN, 0, 0, 0)                     \
    X(0x25, I8X16_LT_S, BIN, 0, 0, 0)                   \
    X(0x26, I8X16_LT_U, BIN, 0, 0, 0)                   \
    X(0x27, I8X16_GT_S, BIN, 0, 0, 0)                   \
    X(0x28, I8X16_GT_U, BIN, 0, 0, 0)                   \
    X(0x29, I8X16_LE_S, BIN, 0, 0, 0)                   \
    X(0x2a, I8X16_LE_U, BIN, 0, 0, 0)                   \
    X(0x2b, I8X16_GE_S, BIN, 0, 0, 0)                   \
    X(0x2c, I8X16_GE_U, BIN, 0, 0, 0)                   \
    X(0x2d, I16X8_EQ, BIN, 0, 0, 0)                     \
    X(0x2e, I16X8_NE, BIN, 0, 0, 0)                     \
    X(0x2f, I16X8_LT_S, BIN, 0, 0, 0)                   \
    X(0x30, I16X8_LT_U, BIN, 0, 0, 0)                   \
    X(0x31, I16X8_GT_S, BIN, 0, 0, 0)                   \
    X(0x32, I16X8_GT_U, BIN, 0, 0, 0)                   \
    X(0x33, I16X8_LE_S, BIN, 0, 0, 0)                   \
    X(0x34, I16X8_LE_U, BIN, 0, 0, 0)                   \
    X(0x35, I16X8_GE_S, BIN, 0, 0, 0)                   \
    X(0x36, I16X8_GE_U, BIN, 0, 0, 0)                   \
    X(0x37, I32X4_EQ, BIN, 0, 0, 0)                     \
    X(0x38, I32X4_NE, BIN, 0, 0, 0)                     \
    X(0x39, I32X4_LT_S, BIN, 0, 0, 0)                   \
    X(0x3a, I32X4_LT_U, BIN, 0, 0, 0)                   \
    X(0x3b, I32X4_GT_S, BIN, 0, 0, 0)                   \
    X(0x3c, I32X4_GT_U, BIN, 0, 0, 0)                   \
    X(0x3d, I32X4_LE_S, BIN, 0, 0, 0)                   \
    X(0x3e, I32X4_LE_U, BIN, 0, 0, 0)                   \
    X(0x3f, I32X4_GE_S, BIN, 0, 0, 0)                   \
    X(0x40, I32X4_GE_U, BIN, 0, 0, 0)                   \
    X(0x41, F32X4_EQ, BIN, 0, 0, 0)                     \
    X(0x42, F32X4_NE, BIN, 0, 0, 0)                     \
    X(0x43, F32X4_LT, BIN, 0, 0, 0)                     \
    X(0x44, F32X4_GT, BIN, 0, 0, 0)                     \
    X(0x45, F32X4_LE, BIN, 0, 0, 0)                     \
    X(0x46, F32X4_GE, BIN, 0, 0, 0)                     \
    X(0x47, F64X2_EQ, BIN, 0, 0, 0)                     \
    X(0x48, F64X2_NE, BIN, 0, 0, 0)                     \
    X(0x49, F64X2_LT, BIN, 0, 0, 0)                     \
    X(0x4a, F64X2_GT, BIN, 0, 0, 0)                     \
    X(0x4b, F64X2_LE, BIN, 0, 0, 0)                     \
    X(0x4c, F64X2_GE, BIN, 0, 0, 0)                     \
    X(0x4d, V128_NOT, UN, 0, 0, 0)                      \
    X(0x4e, V128_AND, BIN, 0, 0, 0)                     \
    X(0x4f, V128_ANDNOT, BIN, 0, 0, 0)                  \
    X(0x50, V128_OR, BIN, 0, 0, 0)                      \
    X(0x51, V128_XOR, BIN, 0, 0, 0)                     \
    X(0x52, V128_BITSELECT, TERN, 0, 0, 0)              \
    X(0x53, V128_ANY_TRUE, TEST, 0, 0, 0)               \
    X(0x54, V128_LOAD8_LANE, LOAD_LANE, 0, 16, 0)       \
    X(0x55, V128_LOAD16_LANE, LOAD_LANE, 1, 8, 0)       \
    X(0x56, V128_LOAD32_LANE, LOAD_LANE, 2, 4, 0)       \
    X(0x57, V128_LOAD64_LANE, LOAD_LANE, 3, 2, 0)       \
    X(0x58, V128_STORE8_LANE, STORE_LANE, 0, 16, 0)     \
    X(0x59, V128_STORE16_LANE, STORE_LANE, 1, 8, 0)     \
    X(0x5a, V128_STORE32_LANE, STORE_LANE, 2, 4, 0)     \
    X(0x5b, V128_STORE64_LANE, STORE_LANE, 3, 2, 0)     \
    X(0x5c, V128_LOAD32_ZERO, LOAD, 2, 0, 0)            \
    X(0x5d, V128_LOAD64_ZERO, LOAD, 3, 0, 0)            \
    X(0x5e, F32X4_DEMOTE_F64X2_ZERO, UN, 0, 0, 0)       \
    X(0x5f, F64X2_PROMOTE_LOW_F32X4, UN, 0, 0, 0)       \
    X(0x60, I8X16_ABS, UN, 0, 0, 0)                     \
    X(0x61, I8X16_NEG, UN, 0, 0, 0)                     \
    X(0x62, I8X16_POPCNT, UN, 0, 0, 0)                  \
    X(0x63, I8X16_ALL_TRUE, TEST, 0, 0, 0)              \
    X(0x64, I8X16_BITMASK, TEST, 0, 0, 0)               \
    X(0x65, I8X16_NARROW_I16X8_S, BIN, 0, 0, 0)         \
    X(0x66, I8X16_NARROW_I16X8_U, BIN, 0, 0, 0)         \
    X(0x67, F32X4_CEIL, UN, 0, 0, 0)                    \
    X(0x68, F32X4_FLOOR, UN, 0, 0, 0)                   \
    X(0x69, F32X4_TRUNC, UN, 0, 0, 0)                   \
    X(0x6a, F32X4_NEAREST, UN, 0, 0, 0)                 \
    X(0x6b, I8X16_SHL, SHIFT, 0, 0, 0)                  \
    X(0x6c, I8X16_SHR_S, SHIFT, 0, 0, 0)                \
    X(0x6d, I8X16_SHR_U, SHIFT, 0, 0, 0)                \
    X(0x6e, I8X16_ADD, BIN, 0, 0, 0)                    \
    X(0x6f, I8X16_ADD_SAT_S, BIN, 0, 0, 0)              \
    X(0x70, I8X16_ADD_SAT_U, BIN, 0, 0, 0)              \
    X(0x71, I8X16_SUB, BIN, 0, 0, 0)                    \
    X(0x72, I8X16_SUB_SAT_S, BIN, 0, 0, 0)              \
    X(0x73, I8X16_SUB_SAT_U, BIN, 0, 0, 0)              \
    X(0x74, F64X2_CEIL, UN, 0, 0, 0)                    \
    X(0x75, F64X2_FLOOR, UN, 0, 0, 0)                   \
    X(0x76, I8X16_MIN_S, BIN, 0, 0, 0)                  \
    X(0x77, I8X16_MIN_U, BIN, 0, 0, 0)                  \
    X(0x78, I8X16_MAX_S, BIN, 0, 0, 0)                  \
    X(0x79, I8X16_MAX_U, BIN, 0, 0, 0)                  \
    X(0x7a, F64X2_TRUNC, UN, 0, 0, 0)                   \
    X(0x7b, I8X16_AVGR_U, BIN, 0, 0, 0)                 \
    X(0x7c, I16X8_EXTADD_PAIRWISE_I8X16_S, UN, 0, 0, 0) \
    X(0x7d, I16X8_EXTADD_PAIRWISE_I8X16_U, UN, 0, 0, 0) \
    X(0x7e, I32X4_EXTADD_PAIRWISE_I16X8_S, UN, 0, 0, 0) \
    X(0x7f, I32X4_EXTADD_PAIRWISE_I16X8_U, UN, 0, 0, 0) \
    X(0x80, I16X8_ABS, UN, 0, 0, 0)                     \
    X(0x81, I16X8_NEG, UN, 0, 0, 0)                     \
    X(0x82, I16X8_Q15MULR_SAT_S, BIN, 0, 0, 0)          \
    X(0x83, I16X8_ALL_TRUE, TEST, 0, 0, 0)              \
    X(0x84, I16X8_BITMASK, TEST, 0, 0, 0)               \
    X(0x85, I16X8_NARROW_I32X4_S, BIN, 0, 0, 0)         \
    X(0x86, I16X8_NARROW_I32X4_U, BIN, 0, 0, 0)         \
    X(0x87, I16X8_EXTEND_LOW_I8X16_S, UN, 0, 0, 0)      \
    X(0x88, I16X8_EXTEND_HIGH_I8X16_S, UN, 0, 0, 0)     \
    X(0x89, I16X8_EXTEND_LOW_I8X16_U, UN, 0, 0, 0)      \
    X(0x8a, I16X8_EXTEND_HIGH_I8X16_U, UN, 0, 0, 0)     \
    X(0x8b, I16X8_SHL, SHIFT, 0, 0, 0)                  \
    X(0x8c, I16X8_SHR_S, SHIFT, 0, 0, 0)                \
    X(0x8d, I16X8_SHR_U, SHIFT, 0, 0, 0)                \
    X(0x8e, I16X8_ADD, BIN, 0, 0, 0)                    \
    X(0x8f, I16X8_ADD_SAT_S, BIN, 0, 0, 0)              \
    X(0x90, I16X8_ADD_SAT_U, BIN, 0, 0, 0)              \
    X(0x91, I16X8_SUB, BIN, 0, 0, 0)                    \
    X(0x92, I16X8_SUB_SAT_S, BIN, 0, 0, 0)              \
    X(0x93, I16X8_SUB_SAT_U, BIN, 0, 0, 0)              \
    X(0x94, F64X2_NEAREST, UN, 0, 0, 0)                 \
    X(0x95, I16X8_MUL, BIN, 0, 0, 0)                    \
    X(0x96, I16X8_MIN_S, BIN, 0, 0, 0)                  \
    X(0x97, I16X8_MIN_U, BIN, 0, 0, 0)                  \
    X(0x98, I16X8_MAX_S, BIN, 0, 0, 0)                  \
    X(0x99, I16X8_MAX_U, BIN, 0, 0, 0)                  \
    X(0x9b, I16X8_AVGR_U, BIN, 0, 0, 0)                 \
    X(0x9c, I16X8_EXTMUL_LOW_I8X16_S, BIN, 0, 0, 0)     \
    X(0x9d, I16X8_EXTMUL_HIGH_I8X16_S, BIN, 0, 0, 0)    \
    X(0x9e, I16X8_EXTMUL_LOW_I8X16_U, BIN, 0, 0, 0)     \
    X(0x9f, I16X8_EXTMUL_HIGH_I8X16_U, BIN, 0, 0, 0)    \
    X(0xa0, I32X4_ABS, UN, 0, 0, 0)                     \
    X(0xa1, I32X4_NEG, UN, 0, 0, 0)                     \
    X(0xa3, I32X4_ALL_TRUE, TEST, 0, 0, 0)              \
    X(0xa4, I32X4_BITMASK, TEST, 0, 0, 0)               \
    X(0xa7, I32X4_EXTEND_LOW_I16X8_S, UN, 0, 0, 0)      \
    X(0xa8, I32X4_EXTEND_HIGH_I16X8_S, UN, 0, 0, 0)     \
    X(0xa9, I32X4_EXTEND_LOW_I16X8_U, UN, 0, 0, 0)      \
    X(0xaa, I32X4_EXTEND_HIGH_I16X8_U, UN, 0, 0, 0)     \
    X(0xab, I32X4_SHL, SHIFT, 0, 0, 0)                  \
    X(0xac, I32X4_SHR_S, SHIFT, 0, 0, 0)                \
    X(0xad, I32X4_SHR_U, SHIFT, 0, 0, 0)                \
    X(0xae, I32X4_ADD, BIN, 0, 0, 0)                    \
    X(0xb1, I32X4_SUB, BIN, 0, 0, 0)                    \
    X(0xb5, I32X4_MUL, BIN, 0, 0, 0)                    \
    X(0xb6, I32X4_MIN_S, BIN, 0, 0, 0)                  \
    X(0xb7, I32X4_MIN_U, BIN, 0, 0, 0)                  \
    X(0xb8, I32X4_MAX_S, BIN, 0, 0, 0)                  \
    X(0xb9, I32X4_MAX_U, BIN, 0, 0, 0)                  \
    X(0xba, I32X4_DOT_I16X8_S, BIN, 0, 0, 0)            \
    X(0xbc, I32X4_EXTMUL_LOW_I16X8_S, BIN, 0, 0, 0)     \
    X(0xbd, I32X4_EXTMUL_HIGH_I16X8_S, BIN, 0, 0, 0)    \
    X(0xbe, I32X4_EXTMUL_LOW_I16X8_U, BIN, 0, 0, 0)     \
    X(0xbf, I32X4_EXTMUL_HIGH_I16X8_U, BIN, 0, 0, 0)    \
    X(0xc0, I64X2_ABS, UN, 0, 0, 0)                     \
    X(0xc1, I64X2_NEG, UN, 0, 0, 0)                     \
    X(0xc3, I64X2_ALL_TRUE, TEST, 0, 0, 0)              \
    X(0xc4, I64X2_BITMASK, TEST, 0, 0, 0)               \
    X(0xc7, I64X2_EXTEND_LOW_I32X4_S, UN, 0, 0, 0)      \
    X(0xc8, I64X2_EXTEND_HIGH_I32X4_S, UN, 0, 0, 0)     \
    X(0xc9, I64X2_EXTEND_LOW_I32X4_U, UN, 0, 0, 0)      \
    X(0xca, I64X2_EXTEND_HIGH_I32X4_U, UN, 0, 0, 0)     \
    X(0xcb, I64X2_SHL, SHIFT, 0, 0, 0)                  \
    X(0xcc, I64X2_SHR_S, SHIFT, 0, 0, 0)                \
    X(0xcd, I64X2_SHR_U, SHIFT, 0, 0, 0)                \
    X(0xce, I64X2_ADD, BIN, 0, 0, 0)                    \
    X(0xd1, I64X2_SUB, BIN, 0, 0, 0)                    \
    X(0xd5, I64X2_MUL, BIN, 0, 0, 0)                    \
    X(0xd6, I64X2_EQ, BIN, 0, 0, 0)                     \
    X(0xd7, I64X2_NE, BIN, 0, 0, 0)                     \
    X(0xd8, I64X2_LT_S, BIN, 0, 0, 0)                   \
    X(0xd9, I64X2_GT_S, BIN, 0, 0, 0)                   \
    X(0xda, I64X2_LE_S, BIN, 0, 0, 0)                   \
    X(0xdb, I64X2_GE_S, BIN, 0, 0, 0)                   \
    X(0xdc, I64X2_EXTMUL_LOW_I32X4_S, BIN, 0, 0, 0)     \
    X(0xdd, I64X2_EXTMUL_HIGH_I32X4_S, BIN, 0, 0, 0)    \
    X(0xde, I64X2_EXTMUL_LOW_I32X4_U, BIN, 0, 0, 0)     \
    X(0xdf, I64X2_EXTMUL_HIGH_I32X4_U, BIN, 0, 0, 0)    \
    X(0xe0, F32X4_ABS, UN, 0, 0, 0)                     \
    X(0xe1, F32X4_NEG, UN, 0, 0, 0)                     \
    X(0xe3, F32X4_SQRT, UN, 0, 0, 0)                    \
    X(0xe4, F32X4_ADD, BIN, 0, 0, 0)                    \
    X(0xe5, F32X4_SUB, BIN, 0, 0, 0)                    \
    X(0xe6, F32X4_MUL, BIN, 0, 0, 0)                    \
    X(0xe7, F32X4_DIV, BIN, 0, 0, 0)                    \
    X(0xe8, F32X4_MIN, BIN, 0, 0, 0)                    \
    X(0xe9, F32X4_MAX, BIN, 0, 0, 0)                    \
    X(0xea, F32X4_PMIN, BIN, 0, 0, 0)                   \
    X(0xeb, F32X4_PMAX, BIN, 0, 0, 0)                   \
    X(0xec, F64X2_ABS, UN, 0, 0, 0)                     \
    X(0xed, F64X2_NEG, UN, 0, 0, 0)                     \
    X(0xef, F64X2_SQRT, UN, 0, 0, 0)                    \
    X(0xf0, F64X2_ADD, BIN, 0, 0, 0)                    \
    X(0xf1, F64X2_SUB, BIN, 0, 0, 0)                    \
    X(0xf2, F64X2_MUL, BIN, 0, 0, 0)                    \
    X(0xf3, F64X2_DIV, BIN, 0, 0, 0)                    \
    X(0xf4, F64X2_MIN, BIN, 0, 0, 0)                    \
    X(0xf5, F64X2_MAX, BIN, 0, 0, 0)                    \
    X(0xf6, F64X2_PMIN, BIN, 0, 0, 0)                   \
    X(0xf7, F64X2_PMAX, BIN, 0, 0, 0)                   \
    X(0xf8, I32X4_TRUNC_SAT_F32X4_S, UN, 0, 0, 0)       \
    X(0xf9, I32X4_TRUNC_SAT_F32X4_U, UN, 0, 0, 0)       \
    X(0xfa, F32X4_CONVERT_I32X4_S, UN, 0, 0, 0)         \
    X(0xfb, F32X4_CONVERT_I32X4_U, UN, 0, 0, 0)         \
    X(0xfc, I32X4_TRUNC_SAT_F64X2_S_ZERO, UN, 0, 0, 0)  \
    X(0xfd, I32X4_TRUNC_SAT_F64X2_U_ZERO, UN, 0, 0, 0)  \
    X(0xfe, F64X2_CONVERT_LOW_I32X4_S, UN, 0, 0, 0)     \
    X(0xff, F64X2_CONVERT_LOW_I32X4_U, UN, 0, 0, 0)
// clang-format on

enum wsimd_kind {
    WSK_NONE,
    WSK_LOAD,       /* [dst|addr][fn|-][offset]: i32 -> v128 */
    WSK_STORE,      /* [-|addr][fn|val][offset]: i32 v128 -> */
    WSK_LOAD_LANE,  /* [dst|addr][fn|vec][offset][lane]: i32 v128 -> v128 */
    WSK_STORE_LANE, /* [-|addr][fn|vec][offset][lane]: i32 v128 -> */
    WSK_CONST,      /* [dst|-][fn|-][low][high]: -> v128 */
    WSK_SHUFFLE,    /* [dst|a][fn|b][lanes 0-7][lanes 8-15]: v128 v128 -> v128 */
    WSK_SPLAT,      /* [dst|a][fn|-]: scalar -> v128 */
    WSK_EXTRACT,    /* [dst|a][fn|-][-|lane]: v128 -> scalar */
    WSK_REPLACE,    /* [dst|a][fn|b][-|lane]: v128 scalar -> v128 */
    WSK_UN,         /* [dst|a][fn|-]: v128 -> v128 */
    WSK_BIN,        /* [dst|a][fn|b]: v128 v128 -> v128 */
    WSK_TERN,       /* [dst|a][fn|b][c|-]: v128 v128 v128 -> v128 */
    WSK_TEST,       /* [dst|a][fn|-]: v128 -> i32 */
    WSK_SHIFT,      /* [dst|a][fn|b]: v128 i32 -> v128 */
};

union wcell;
/* Execute the instruction at pc (frame fp, linear memory mem of msize bytes). Returns the
 * number of cells to advance, or 0 for an out-of-bounds memory access. */
typedef uint32_t (*wasm_simd_fn)(uint8_t *fp, const union wcell *pc, uint8_t *mem, uint64_t msize);
extern const wasm_simd_fn wasm_simd_fns[256];

#endif
