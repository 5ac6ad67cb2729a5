/* compile_simd.c: validation and compilation of the 0xFD (SIMD) instructions.
 *
 * Every SIMD instruction compiles to the interpreter's SIMD handler followed by its operand
 * cells (layouts in wasm_simd.h, by kind); the handler calls wasm_simd_fns[opcode]. The
 * destination always sits in cell 1's first half, like every other producing instruction, so
 * a following local.set can retarget it.
 */
#include "compile.h"
#include "wasm_simd.h"

#define VT_0 0
#define VT_I WASM_I32
#define VT_L WASM_I64
#define VT_F WASM_F32
#define VT_D WASM_F64

struct simdop {
    uint8_t kind; /* enum wsimd_kind */
    uint8_t align;
    uint8_t lanes;
    uint8_t scalar;
};

static const struct simdop simdops[256] = {
#define SIMD_ROW(code, name, kind, al, ln, sc) [code] = {WSK_##kind, al, ln, VT_##sc},
    WASM_SIMD_OPS(SIMD_ROW)
#undef SIMD_ROW
};

static const uint8_t v1[] = {WASM_V128}, v2[] = {WASM_V128, WASM_V128},
                     v3[] = {WASM_V128, WASM_V128, WASM_V128}, iv[] = {WASM_I32, WASM_V128};

static int read_lane(struct comp *c, const struct simdop *op, uint8_t *lane)
{
    if (wr_u8(&c->r, lane) < 0) return -1;
    return *lane < op->lanes ? 0 : cfail(c, "invalid lane index");
}

static int read_memarg(struct comp *c, const struct simdop *op, uint32_t *offset)
{
    uint32_t align = 0;
    if (wr_u32(&c->r, &align) < 0 || wr_u32(&c->r, offset) < 0) return -1;
    if (!c->m->nmems) return cfail(c, "unknown memory 0");
    if (align > op->align) return cfail(c, "alignment must not be larger than natural");
    return 0;
}

/* Emit the SIMD handler with ncells cells: [h][dst|a][fn|b]... */
static int emit(struct comp *c, uint32_t code, uint32_t ncells, uint32_t a, uint32_t b,
                uint32_t *at)
{
    *at = 0;
    if (cdead(c)) return 0;
    if (cemit(c, WOP_SIMD, ncells, at) < 0) return -1;
    c->code[*at + 1].s.b = a;
    c->code[*at + 2].s.a = code;
    c->code[*at + 2].s.b = b;
    return 0;
}

static int compile_memory(struct comp *c, uint32_t code, const struct simdop *op)
{
    uint32_t offset = 0, s[2], at;
    uint8_t lane = 0;
    bool lanes = op->kind == WSK_LOAD_LANE || op->kind == WSK_STORE_LANE;
    if (read_memarg(c, op, &offset) < 0 || (lanes && read_lane(c, op, &lane) < 0)) return -1;
    bool store = op->kind == WSK_STORE || op->kind == WSK_STORE_LANE;
    if (cpop_srcs(c, iv, op->kind == WSK_LOAD ? 1 : 2, s) < 0) return -1;
    if (emit(c, code, lanes ? 5 : 4, s[0], op->kind == WSK_LOAD ? 0 : s[1], &at) < 0) return -1;
    if (!cdead(c)) {
        c->code[at + 3].u = offset;
        if (lanes) c->code[at + 4].u = lane;
    }
    return store ? 0 : cpush_result(c, WASM_V128, at);
}

/* v128.const and i8x16.shuffle: 16 immediate bytes into cells 3 and 4. */
static int compile_imm16(struct comp *c, uint32_t code, const struct simdop *op)
{
    const uint8_t *b = NULL;
    uint32_t s[2] = {0, 0}, at;
    if (wr_bytes(&c->r, 16, &b) < 0) return -1;
    if (op->kind == WSK_SHUFFLE) {
        for (int i = 0; i < 16; i++)
            if (b[i] >= 32) return cfail(c, "invalid lane index");
        if (cpop_srcs(c, v2, 2, s) < 0) return -1;
    }
    if (emit(c, code, 5, s[0], s[1], &at) < 0) return -1;
    if (!cdead(c)) memcpy(&c->code[at + 3], b, 16);
    return cpush_result(c, WASM_V128, at);
}

int ccompile_simd(struct comp *c)
{
    uint32_t code = 0, s[3] = {0, 0, 0}, at = 0;
    uint8_t lane = 0, types[2];
    if (wr_u32(&c->r, &code) < 0) return -1;
    const struct simdop *op = code < 256 ? &simdops[code] : NULL;
    if (!op || op->kind == WSK_NONE) return wr_fail(&c->r, "decode: illegal opcode 0xfd %u", code);
    switch (op->kind) {
    case WSK_LOAD:
    case WSK_STORE:
    case WSK_LOAD_LANE:
    case WSK_STORE_LANE:
        return compile_memory(c, code, op);
    case WSK_CONST:
    case WSK_SHUFFLE:
        return compile_imm16(c, code, op);
    case WSK_SPLAT:
        if (cpop_srcs(c, &op->scalar, 1, s) < 0 || emit(c, code, 3, s[0], 0, &at) < 0) return -1;
        return cpush_result(c, WASM_V128, at);
    case WSK_EXTRACT:
    case WSK_REPLACE:
        types[0] = WASM_V128, types[1] = op->scalar;
        if (read_lane(c, op, &lane) < 0) return -1;
        if (cpop_srcs(c, types, op->kind == WSK_REPLACE ? 2 : 1, s) < 0 ||
            emit(c, code, 4, s[0], s[1], &at) < 0)
            return -1;
        if (!cdead(c)) c->code[at + 3].s.b = lane;
        return cpush_result(c, op->kind == WSK_REPLACE ? WASM_V128 : op->scalar, at);
    case WSK_UN:
    case WSK_TEST:
        if (cpop_srcs(c, v1, 1, s) < 0 || emit(c, code, 3, s[0], 0, &at) < 0) return -1;
        return cpush_result(c, op->kind == WSK_TEST ? WASM_I32 : WASM_V128, at);
    case WSK_BIN:
    case WSK_SHIFT:
        types[0] = WASM_V128, types[1] = op->kind == WSK_SHIFT ? WASM_I32 : WASM_V128;
        if (cpop_srcs(c, types, 2, s) < 0 || emit(c, code, 3, s[0], s[1], &at) < 0) return -1;
        return cpush_result(c, WASM_V128, at);
    default: /* WSK_TERN */
        if (cpop_srcs(c, v3, 3, s) < 0 || emit(c, code, 4, s[0], s[1], &at) < 0) return -1;
        if (!cdead(c)) c->code[at + 3].s.a = s[2];
        return cpush_result(c, WASM_V128, at);
    }
}
