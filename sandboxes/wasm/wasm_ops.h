/* wasm_ops.h: the internal instruction set, generated from two tables.
 *
 * WASM_NUMOPS lists the numeric instructions whose semantics is one C expression of the
 * operands a (and b) or, for shapes TUN/TBIN, a hand-written handler that may trap. The
 * compiler maps the WebAssembly opcode to the internal op; the interpreter expands the
 * expression into its handler. Shapes: UN (a -> r), BIN (a b -> r), BINI (BIN plus a variant
 * NAME_I whose b is an immediate), TUN/TBIN (may trap), FREE (no code: the bits in the slot
 * already are the result, e.g. reinterpretations). Type letters: I i32, L i64, F f32, D f64.
 */
#ifndef GATE_WASM_OPS_H
#define GATE_WASM_OPS_H

#define WASM_NUMOPS(X)                                                                             \
    X(0x45, I32_EQZ, UN, I, I, (a == 0))                                                           \
    X(0x46, I32_EQ, BINI, I, I, (a == b))                                                          \
    X(0x47, I32_NE, BINI, I, I, (a != b))                                                          \
    X(0x48, I32_LT_S, BINI, I, I, ((int32_t)a < (int32_t)b))                                       \
    X(0x49, I32_LT_U, BINI, I, I, (a < b))                                                         \
    X(0x4a, I32_GT_S, BINI, I, I, ((int32_t)a > (int32_t)b))                                       \
    X(0x4b, I32_GT_U, BINI, I, I, (a > b))                                                         \
    X(0x4c, I32_LE_S, BINI, I, I, ((int32_t)a <= (int32_t)b))                                      \
    X(0x4d, I32_LE_U, BINI, I, I, (a <= b))                                                        \
    X(0x4e, I32_GE_S, BINI, I, I, ((int32_t)a >= (int32_t)b))                                      \
    X(0x4f, I32_GE_U, BINI, I, I, (a >= b))                                                        \
    X(0x50, I64_EQZ, UN, L, I, (a == 0))                                                           \
    X(0x51, I64_EQ, BINI, L, I, (a == b))                                                          \
    X(0x52, I64_NE, BINI, L, I, (a != b))                                                          \
    X(0x53, I64_LT_S, BINI, L, I, ((int64_t)a < (int64_t)b))                                       \
    X(0x54, I64_LT_U, BINI, L, I, (a < b))                                                         \
    X(0x55, I64_GT_S, BINI, L, I, ((int64_t)a > (int64_t)b))                                       \
    X(0x56, I64_GT_U, BINI, L, I, (a > b))                                                         \
    X(0x57, I64_LE_S, BINI, L, I, ((int64_t)a <= (int64_t)b))                                      \
    X(0x58, I64_LE_U, BINI, L, I, (a <= b))                                                        \
    X(0x59, I64_GE_S, BINI, L, I, ((int64_t)a >= (int64_t)b))                                      \
    X(0x5a, I64_GE_U, BINI, L, I, (a >= b))                                                        \
    X(0x5b, F32_EQ, BIN, F, I, (a == b))                                                           \
    X(0x5c, F32_NE, BIN, F, I, (a != b))                                                           \
    X(0x5d, F32_LT, BIN, F, I, (a < b))                                                            \
    X(0x5e, F32_GT, BIN, F, I, (a > b))                                                            \
    X(0x5f, F32_LE, BIN, F, I, (a <= b))                                                           \
    X(0x60, F32_GE, BIN, F, I, (a >= b))                                                           \
    X(0x61, F64_EQ, BIN, D, I, (a == b))                                                           \
    X(0x62, F64_NE, BIN, D, I, (a != b))                                                           \
    X(0x63, F64_LT, BIN, D, I, (a < b))                                                            \
    X(0x64, F64_GT, BIN, D, I, (a > b))                                                            \
    X(0x65, F64_LE, BIN, D, I, (a <= b))                                                           \
    X(0x66, F64_GE, BIN, D, I, (a >= b))                                                           \
    X(0x67, I32_CLZ, UN, I, I, (a ? (uint32_t)__builtin_clz(a) : 32u))                             \
    X(0x68, I32_CTZ, UN, I, I, (a ? (uint32_t)__builtin_ctz(a) : 32u))                             \
    X(0x69, I32_POPCNT, UN, I, I, ((uint32_t)__builtin_popcount(a)))                               \
    X(0x6a, I32_ADD, BINI, I, I, (a + b))                                                          \
    X(0x6b, I32_SUB, BINI, I, I, (a - b))                                                          \
    X(0x6c, I32_MUL, BINI, I, I, (a * b))                                                          \
    X(0x6d, I32_DIV_S, TBIN, I, I, 0)                                                              \
    X(0x6e, I32_DIV_U, TBIN, I, I, 0)                                                              \
    X(0x6f, I32_REM_S, TBIN, I, I, 0)                                                              \
    X(0x70, I32_REM_U, TBIN, I, I, 0)                                                              \
    X(0x71, I32_AND, BINI, I, I, (a & b))                                                          \
    X(0x72, I32_OR, BINI, I, I, (a | b))                                                           \
    X(0x73, I32_XOR, BINI, I, I, (a ^ b))                                                          \
    X(0x74, I32_SHL, BINI, I, I, (a << (b & 31)))                                                  \
    X(0x75, I32_SHR_S, BINI, I, I, ((uint32_t)((int32_t)a >> (b & 31))))                           \
    X(0x76, I32_SHR_U, BINI, I, I, (a >> (b & 31)))                                                \
    X(0x77, I32_ROTL, BINI, I, I, ((a << (b & 31)) | (a >> ((32 - b) & 31))))                      \
    X(0x78, I32_ROTR, BINI, I, I, ((a >> (b & 31)) | (a << ((32 - b) & 31))))                      \
    X(0x79, I64_CLZ, UN, L, L, (a ? (uint64_t)__builtin_clzll(a) : 64u))                           \
    X(0x7a, I64_CTZ, UN, L, L, (a ? (uint64_t)__builtin_ctzll(a) : 64u))                           \
    X(0x7b, I64_POPCNT, UN, L, L, ((uint64_t)__builtin_popcountll(a)))                             \
    X(0x7c, I64_ADD, BINI, L, L, (a + b))                                                          \
    X(0x7d, I64_SUB, BINI, L, L, (a - b))                                                          \
    X(0x7e, I64_MUL, BINI, L, L, (a * b))                                                          \
    X(0x7f, I64_DIV_S, TBIN, L, L, 0)                                                              \
    X(0x80, I64_DIV_U, TBIN, L, L, 0)                                                              \
    X(0x81, I64_REM_S, TBIN, L, L, 0)                                                              \
    X(0x82, I64_REM_U, TBIN, L, L, 0)                                                              \
    X(0x83, I64_AND, BINI, L, L, (a & b))                                                          \
    X(0x84, I64_OR, BINI, L, L, (a | b))                                                           \
    X(0x85, I64_XOR, BINI, L, L, (a ^ b))                                                          \
    X(0x86, I64_SHL, BINI, L, L, (a << (b & 63)))                                                  \
    X(0x87, I64_SHR_S, BINI, L, L, ((uint64_t)((int64_t)a >> (b & 63))))                           \
    X(0x88, I64_SHR_U, BINI, L, L, (a >> (b & 63)))                                                \
    X(0x89, I64_ROTL, BINI, L, L, ((a << (b & 63)) | (a >> ((64 - b) & 63))))                      \
    X(0x8a, I64_ROTR, BINI, L, L, ((a >> (b & 63)) | (a << ((64 - b) & 63))))                      \
    X(0x8b, F32_ABS, UN, F, F, (fabsf(a)))                                                         \
    X(0x8c, F32_NEG, UN, F, F, (-a))                                                               \
    X(0x8d, F32_CEIL, UN, F, F, (WQUIET(ceilf(a))))                                                \
    X(0x8e, F32_FLOOR, UN, F, F, (WQUIET(floorf(a))))                                              \
    X(0x8f, F32_TRUNC, UN, F, F, (WQUIET(truncf(a))))                                              \
    X(0x90, F32_NEAREST, UN, F, F, (WQUIET(nearbyintf(a))))                                        \
    X(0x91, F32_SQRT, UN, F, F, (sqrtf(a)))                                                        \
    X(0x92, F32_ADD, BIN, F, F, (a + b))                                                           \
    X(0x93, F32_SUB, BIN, F, F, (a - b))                                                           \
    X(0x94, F32_MUL, BIN, F, F, (a * b))                                                           \
    X(0x95, F32_DIV, BIN, F, F, (a / b))                                                           \
    X(0x96, F32_MIN, BIN, F, F, (wf32_min(a, b)))                                                  \
    X(0x97, F32_MAX, BIN, F, F, (wf32_max(a, b)))                                                  \
    X(0x98, F32_COPYSIGN, BIN, F, F, (copysignf(a, b)))                                            \
    X(0x99, F64_ABS, UN, D, D, (fabs(a)))                                                          \
    X(0x9a, F64_NEG, UN, D, D, (-a))                                                               \
    X(0x9b, F64_CEIL, UN, D, D, (WQUIET(ceil(a))))                                                 \
    X(0x9c, F64_FLOOR, UN, D, D, (WQUIET(floor(a))))                                               \
    X(0x9d, F64_TRUNC, UN, D, D, (WQUIET(trunc(a))))                                               \
    X(0x9e, F64_NEAREST, UN, D, D, (WQUIET(nearbyint(a))))                                         \
    X(0x9f, F64_SQRT, UN, D, D, (sqrt(a)))                                                         \
    X(0xa0, F64_ADD, BIN, D, D, (a + b))                                                           \
    X(0xa1, F64_SUB, BIN, D, D, (a - b))                                                           \
    X(0xa2, F64_MUL, BIN, D, D, (a * b))                                                           \
    X(0xa3, F64_DIV, BIN, D, D, (a / b))                                                           \
    X(0xa4, F64_MIN, BIN, D, D, (wf64_min(a, b)))                                                  \
    X(0xa5, F64_MAX, BIN, D, D, (wf64_max(a, b)))                                                  \
    X(0xa6, F64_COPYSIGN, BIN, D, D, (copysign(a, b)))                                             \
    X(0xa7, I32_WRAP_I64, FREE, L, I, 0)                                                           \
    X(0xa8, I32_TRUNC_F32_S, TUN, F, I, 0)                                                         \
    X(0xa9, I32_TRUNC_F32_U, TUN, F, I, 0)                                                         \
    X(0xaa, I32_TRUNC_F64_S, TUN, D, I, 0)                                                         \
    X(0xab, I32_TRUNC_F64_U, TUN, D, I, 0)                                                         \
    X(0xac, I64_EXTEND_I32_S, UN, I, L, ((uint64_t)(int64_t)(int32_t)a))                           \
    X(0xad, I64_EXTEND_I32_U, UN, I, L, ((uint64_t)a))                                             \
    X(0xae, I64_TRUNC_F32_S, TUN, F, L, 0)                                                         \
    X(0xaf, I64_TRUNC_F32_U, TUN, F, L, 0)                                                         \
    X(0xb0, I64_TRUNC_F64_S, TUN, D, L, 0)                                                         \
    X(0xb1, I64_TRUNC_F64_U, TUN, D, L, 0)                                                         \
    X(0xb2, F32_CONVERT_I32_S, UN, I, F, ((float)(int32_t)a))                                      \
    X(0xb3, F32_CONVERT_I32_U, UN, I, F, ((float)a))                                               \
    X(0xb4, F32_CONVERT_I64_S, UN, L, F, ((float)(int64_t)a))                                      \
    X(0xb5, F32_CONVERT_I64_U, UN, L, F, ((float)a))                                               \
    X(0xb6, F32_DEMOTE_F64, UN, D, F, ((float)a))                                                  \
    X(0xb7, F64_CONVERT_I32_S, UN, I, D, ((double)(int32_t)a))                                     \
    X(0xb8, F64_CONVERT_I32_U, UN, I, D, ((double)a))                                              \
    X(0xb9, F64_CONVERT_I64_S, UN, L, D, ((double)(int64_t)a))                                     \
    X(0xba, F64_CONVERT_I64_U, UN, L, D, ((double)a))                                              \
    X(0xbb, F64_PROMOTE_F32, UN, F, D, ((double)a))                                                \
    X(0xbc, I32_REINTERPRET_F32, FREE, F, I, 0)                                                    \
    X(0xbd, I64_REINTERPRET_F64, FREE, D, L, 0)                                                    \
    X(0xbe, F32_REINTERPRET_I32, FREE, I, F, 0)                                                    \
    X(0xbf, F64_REINTERPRET_I64, FREE, L, D, 0)                                                    \
    X(0xc0, I32_EXTEND8_S, UN, I, I, ((uint32_t)(int32_t)(int8_t)a))                               \
    X(0xc1, I32_EXTEND16_S, UN, I, I, ((uint32_t)(int32_t)(int16_t)a))                             \
    X(0xc2, I64_EXTEND8_S, UN, L, L, ((uint64_t)(int64_t)(int8_t)a))                               \
    X(0xc3, I64_EXTEND16_S, UN, L, L, ((uint64_t)(int64_t)(int16_t)a))                             \
    X(0xc4, I64_EXTEND32_S, UN, L, L, ((uint64_t)(int64_t)(int32_t)a))                             \
    X(0xfc00, I32_TRUNC_SAT_F32_S, UN, F, I, ((uint32_t)wsat_s32(a)))                              \
    X(0xfc01, I32_TRUNC_SAT_F32_U, UN, F, I, (wsat_u32(a)))                                        \
    X(0xfc02, I32_TRUNC_SAT_F64_S, UN, D, I, ((uint32_t)wsat_s32(a)))                              \
    X(0xfc03, I32_TRUNC_SAT_F64_U, UN, D, I, (wsat_u32(a)))                                        \
    X(0xfc04, I64_TRUNC_SAT_F32_S, UN, F, L, ((uint64_t)wsat_s64(a)))                              \
    X(0xfc05, I64_TRUNC_SAT_F32_U, UN, F, L, (wsat_u64(a)))                                        \
    X(0xfc06, I64_TRUNC_SAT_F64_S, UN, D, L, ((uint64_t)wsat_s64(a)))                              \
    X(0xfc07, I64_TRUNC_SAT_F64_U, UN, D, L, (wsat_u64(a)))

/* Fused compare-and-branch: BRIF_<cmp> [a|b][off] and BRIF_<cmp>_I [a][imm][off], emitted
 * when an integer comparison feeds br_if or if directly. X(name, negated, type, expression). */
#define WASM_BRCMP(X)                                                                              \
    X(I32_EQ, I32_NE, I, (a == b))                                                                 \
    X(I32_NE, I32_EQ, I, (a != b))                                                                 \
    X(I32_LT_S, I32_GE_S, I, ((int32_t)a < (int32_t)b))                                            \
    X(I32_LT_U, I32_GE_U, I, (a < b))                                                              \
    X(I32_GT_S, I32_LE_S, I, ((int32_t)a > (int32_t)b))                                            \
    X(I32_GT_U, I32_LE_U, I, (a > b))                                                              \
    X(I32_LE_S, I32_GT_S, I, ((int32_t)a <= (int32_t)b))                                           \
    X(I32_LE_U, I32_GT_U, I, (a <= b))                                                             \
    X(I32_GE_S, I32_LT_S, I, ((int32_t)a >= (int32_t)b))                                           \
    X(I32_GE_U, I32_LT_U, I, (a >= b))                                                             \
    X(I64_EQ, I64_NE, L, (a == b))                                                                 \
    X(I64_NE, I64_EQ, L, (a != b))                                                                 \
    X(I64_LT_S, I64_GE_S, L, ((int64_t)a < (int64_t)b))                                            \
    X(I64_LT_U, I64_GE_U, L, (a < b))                                                              \
    X(I64_GT_S, I64_LE_S, L, ((int64_t)a > (int64_t)b))                                            \
    X(I64_GT_U, I64_LE_U, L, (a > b))                                                              \
    X(I64_LE_S, I64_GT_S, L, ((int64_t)a <= (int64_t)b))                                           \
    X(I64_LE_U, I64_GT_U, L, (a <= b))                                                             \
    X(I64_GE_S, I64_LT_S, L, ((int64_t)a >= (int64_t)b))                                           \
    X(I64_GE_U, I64_LT_U, L, (a >= b))

/* Everything else. Operand layouts are documented in interp.c next to each handler. */
/* clang-format does not settle on one layout for this list. */
// clang-format off
#define WASM_CTLOPS(X)                                                                              \
    X(UNREACHABLE) X(BR) X(BR_IF) X(BR_UNLESS) X(BR_TABLE) X(LOOP) X(CALL) X(CALL_INDIRECT)         \
    X(RET) X(COPY) X(CONST) X(SELECT) X(GLOBAL_GET) X(GLOBAL_SET) X(LD32) X(LD64) X(LD8S32)         \
    X(LD8U) X(LD16S32) X(LD16U) X(LD8S64) X(LD16S64) X(LD32S64) X(ST32) X(ST64) X(ST8) X(ST16)      \
    X(ST32_I) X(ST64_I) X(ST8_I) X(ST16_I) X(MEM_SIZE) X(MEM_GROW) X(MEM_FILL) X(MEM_COPY)          \
    X(MEM_INIT) X(DATA_DROP) X(TABLE_GET) X(TABLE_SET) X(TABLE_SIZE) X(TABLE_GROW)                  \
    X(TABLE_FILL) X(TABLE_COPY) X(TABLE_INIT) X(ELEM_DROP) X(REF_IS_NULL) X(REF_FUNC)               \
    X(BR_IF_EQZ) X(BR_IF_NEZ64) X(BR_IF_EQZ64) X(COPY128) X(SELECT128) X(GLOBAL_GET128)          \
    X(GLOBAL_SET128) X(SIMD) X(LD32_A) X(LD64_A) X(LD8S32_A) X(LD8U_A) X(LD16S32_A) X(LD16U_A)      \
    X(LD8S64_A) X(LD16S64_A) X(LD32S64_A) X(ST32_A) X(ST64_A) X(ST8_A) X(ST16_A) X(COPY2) X(BFX)     \
    X(ADD_BFX) X(ADD_SHL) X(BR_TABLE_A) X(TESTZ_I) X(BR_IF_TEST_I) X(BR_IF_TESTZ_I)         \
    X(AND_SHL) X(AND_SHL_ADD) X(LD32_IDX) X(LD32_IDX_ADD) X(BR_TABLE_LD) X(BR_LD)                \
    X(LD32_LD32) X(LD32_LD8U) X(LD32_LD64) X(BR_TABLE_L8) X(RET_COPY) X(RET_COPY2)       \
    X(COPY_CALL) X(COPY2_CALL) X(CONST_BR_IF_EQZ) X(ADD_I_BR) X(FETCH_LD) X(COPY2_ADD_I_BR)     \
    X(MOV32) X(MOV64) X(MOV8) X(GSET_ADD_I) X(GADD_I) X(ADD_I2)
// clang-format on

enum wop {
#define WOP_NUM(code, name, shape, ta, tr, expr) WOP_##name, WOP_##name##_I,
    WASM_NUMOPS(WOP_NUM)
#undef WOP_NUM
#define WOP_BRC(name, neg, t, expr) WOP_BRIF_##name, WOP_BRIF_##name##_I,
        WASM_BRCMP(WOP_BRC)
#undef WOP_BRC
#define WOP_CTL(name) WOP_##name,
            WASM_CTLOPS(WOP_CTL)
#undef WOP_CTL
                WOP__COUNT
};

#endif
