/* compile_mem.c: memory, table and reference instructions, and the 0xFC prefix. */
#include "compile.h"

struct memop {
    uint16_t wop;
    uint8_t align; /* log2 of the natural alignment */
    uint8_t type;
    bool store;
};

static const struct memop memops[] = {
    [0x28 - 0x28] = {WOP_LD32, 2, WASM_I32, false},
    [0x29 - 0x28] = {WOP_LD64, 3, WASM_I64, false},
    [0x2a - 0x28] = {WOP_LD32, 2, WASM_F32, false},
    [0x2b - 0x28] = {WOP_LD64, 3, WASM_F64, false},
    [0x2c - 0x28] = {WOP_LD8S32, 0, WASM_I32, false},
    [0x2d - 0x28] = {WOP_LD8U, 0, WASM_I32, false},
    [0x2e - 0x28] = {WOP_LD16S32, 1, WASM_I32, false},
    [0x2f - 0x28] = {WOP_LD16U, 1, WASM_I32, false},
    [0x30 - 0x28] = {WOP_LD8S64, 0, WASM_I64, false},
    [0x31 - 0x28] = {WOP_LD8U, 0, WASM_I64, false},
    [0x32 - 0x28] = {WOP_LD16S64, 1, WASM_I64, false},
    [0x33 - 0x28] = {WOP_LD16U, 1, WASM_I64, false},
    [0x34 - 0x28] = {WOP_LD32S64, 2, WASM_I64, false},
    [0x35 - 0x28] = {WOP_LD32, 2, WASM_I64, false},
    [0x36 - 0x28] = {WOP_ST32, 2, WASM_I32, true},
    [0x37 - 0x28] = {WOP_ST64, 3, WASM_I64, true},
    [0x38 - 0x28] = {WOP_ST32, 2, WASM_F32, true},
    [0x39 - 0x28] = {WOP_ST64, 3, WASM_F64, true},
    [0x3a - 0x28] = {WOP_ST8, 0, WASM_I32, true},
    [0x3b - 0x28] = {WOP_ST16, 1, WASM_I32, true},
    [0x3c - 0x28] = {WOP_ST8, 0, WASM_I64, true},
    [0x3d - 0x28] = {WOP_ST16, 1, WASM_I64, true},
    [0x3e - 0x28] = {WOP_ST32, 2, WASM_I64, true},
};

static int need_memory(struct comp *c)
{
    return c->m->nmems ? 0 : cfail(c, "unknown memory 0");
}

static int zero_byte(struct comp *c)
{
    uint8_t b = 0;
    if (wr_u8(&c->r, &b) < 0) return -1;
    return b ? wr_fail(&c->r, "decode: zero byte expected") : 0;
}

/* The fused form of an i32.load followed by a load of kind wop from the loaded address. */
static enum wop chain_op(uint16_t wop)
{
    return wop == WOP_LD32   ? WOP_LD32_LD32
           : wop == WOP_LD8U ? WOP_LD32_LD8U
           : wop == WOP_LD64 ? WOP_LD32_LD64
                             : WOP__COUNT;
}

/* An i32.load from a lookup table indexed by a bit field, ((x & m) << k) + imm (AND_SHL_ADD,
 * or AND_SHL for imm 0) emitted just before: rewrite it into LD32_IDX
 * [dst|x][m|k][imm|offset]. Returns its index + 1, 0 if nothing was fused, -1. */
static int64_t fuse_table_load(struct comp *c, uint32_t pa, uint32_t offset)
{
    int64_t at = cproducer(c, pa, WOP_AND_SHL_ADD);
    if (at < 0 && (at = cproducer(c, pa, WOP_AND_SHL)) >= 0 && cappend_cell(c) < 0) return -1;
    if (at < 0) return 0;
    c->code[at].h = c->handlers[WOP_LD32_IDX];
    c->code[at + 3].s.b = offset;
    return at + 1;
}

/* A store of a value a load of the same width just read (a struct field or a Lua value
 * copied): the load [tmp|a][o1] becomes MOV<n> [a|b][o1|o2], the value never lands in a
 * slot. Returns 1 if fused, 0 if not. */
static int fuse_move(struct comp *c, const struct memop *op, uint32_t pa, uint32_t pv,
                     uint32_t offset)
{
    static const uint16_t moves[][3] = {{WOP_ST32, WOP_LD32, WOP_MOV32},
                                        {WOP_ST64, WOP_LD64, WOP_MOV64},
                                        {WOP_ST8, WOP_LD8U, WOP_MOV8}};
    uint32_t k = 0, sb = 0;
    while (k < 3 && moves[k][0] != op->wop)
        k++;
    int64_t ld = k < 3 ? cproducer(c, pv, moves[k][1]) : -1;
    if (ld < 0 || c->st[pa].kind == CE_CONST) return 0;
    (void)csrc(c, pa, &sb); /* a local's or a stack entry's slot: emits nothing, cannot fail */
    c->code[ld].h = c->handlers[moves[k][2]];
    c->code[ld + 2].s.a = (uint32_t)c->code[ld + 2].u;
    c->code[ld + 2].s.b = offset;
    c->code[ld + 1].s.a = c->code[ld + 1].s.b;
    c->code[ld + 1].s.b = sb;
    c->last_prod = -1;
    return 1;
}

static int compile_memop(struct comp *c, const struct memop *op)
{
    uint32_t align, offset, pa, pv = 0, sa, sv = 0, at = 0;
    if (wr_u32(&c->r, &align) < 0 || wr_u32(&c->r, &offset) < 0 || need_memory(c) < 0) return -1;
    if (align > op->align) return cfail(c, "alignment must not be larger than natural");
    if (op->store && cpop(c, op->type, &pv, NULL) < 0) return -1;
    if (cpop(c, WASM_I32, &pa, NULL) < 0) return -1;
    if (!cdead(c) && op->store && c->st[pv].kind == CE_CONST) { /* [addr][offset][value] */
        enum wop imm = op->wop == WOP_ST32   ? WOP_ST32_I
                       : op->wop == WOP_ST64 ? WOP_ST64_I
                       : op->wop == WOP_ST8  ? WOP_ST8_I
                                             : WOP_ST16_I;
        if (csrc(c, pa, &sa) < 0 || cemit(c, imm, 4, &at) < 0) return -1;
        c->code[at + 1].s.a = sa;
        c->code[at + 2].u = offset;
        c->code[at + 3].u = c->st[pv].cval;
        return 0;
    }
    int64_t idx = cdead(c) || op->wop != WOP_LD32 ? 0 : fuse_table_load(c, pa, offset);
    if (idx != 0) return idx < 0 ? -1 : cpush_result(c, op->type, (uint32_t)idx - 1);
    if (!cdead(c) && op->store && fuse_move(c, op, pa, pv, offset)) return 0;
    int64_t add = cdead(c) ? -1 : cproducer(c, pa, WOP_I32_ADD_I);
    if (add >= 0 && (!op->store || c->st[pv].kind == CE_LOCAL)) {
        /* The address is an i32.add with a constant emitted just before: fold it into the
         * access ([dst|x][imm] -> [dst|x][imm|offset], or [x|val][imm|offset]). */
        enum wop fused =
            op->store ? WOP_ST32_A + (op->wop - WOP_ST32) : WOP_LD32_A + (op->wop - WOP_LD32);
        c->code[add].h = c->handlers[fused];
        c->code[add + 2].s.a = (uint32_t)c->code[add + 2].u;
        c->code[add + 2].s.b = offset;
        if (!op->store) return cpush_result(c, op->type, (uint32_t)add);
        if (csrc(c, pv, &sv) < 0) return -1;
        c->code[add + 1].s.a = c->code[add + 1].s.b;
        c->code[add + 1].s.b = sv;
        c->last_prod = -1;
        return 0;
    }
    if (!cdead(c)) {
        if (csrc(c, pa, &sa) < 0 || (op->store && csrc(c, pv, &sv) < 0)) return -1;
        int64_t ld = c->last_at;
        if (!op->store && ld >= 0 && ld + 3 == c->n && c->code[ld].h == c->handlers[WOP_LD32] &&
            c->code[ld + 1].s.a == sa && chain_op(op->wop) != WOP__COUNT) {
            /* A load from the address the previous load (an i32.load) just read, a pointer
             * chase: [d1|a][o1] -> [d2|a][o1|o2][d1], still writing d1 (it may be a local). */
            if (cappend_cell(c) < 0) return -1;
            c->code[ld].h = c->handlers[chain_op(op->wop)];
            c->code[ld + 3].s.a = c->code[ld + 1].s.a;
            c->code[ld + 2].s.a = (uint32_t)c->code[ld + 2].u;
            c->code[ld + 2].s.b = offset;
            return cpush_result(c, op->type, (uint32_t)ld);
        }
        if (cemit(c, op->wop, 3, &at) < 0) return -1;
        if (op->store)
            c->code[at + 1].s.a = sa, c->code[at + 1].s.b = sv;
        else
            c->code[at + 1].s.b = sa;
        c->code[at + 2].u = offset;
    }
    return op->store ? 0 : cpush_result(c, op->type, at);
}

int cpop_srcs(struct comp *c, const uint8_t *types, uint32_t n, uint32_t *slots)
{
    uint32_t pos[4];
    for (uint32_t i = n; i-- > 0;)
        if (cpop(c, types[i], &pos[i], NULL) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        slots[i] = 0;
        if (!cdead(c) && csrc(c, pos[i], &slots[i]) < 0) return -1;
    }
    return 0;
}

static int read_table(struct comp *c, uint32_t *x)
{
    if (wr_u32(&c->r, x) < 0) return -1;
    return *x < c->m->ntables ? 0 : cfail(c, "unknown table");
}

static int emit3(struct comp *c, enum wop op, uint32_t a, uint32_t b, uint32_t d, uint32_t e,
                 uint32_t *at)
{
    *at = 0;
    if (cdead(c)) return 0;
    if (cemit(c, op, 3, at) < 0) return -1;
    c->code[*at + 1].s.a = a, c->code[*at + 1].s.b = b;
    c->code[*at + 2].s.a = d, c->code[*at + 2].s.b = e;
    return 0;
}

static int compile_table_get_set(struct comp *c, bool set)
{
    uint32_t x, s[2], at;
    if (read_table(c, &x) < 0) return -1;
    uint8_t et = c->m->tables[x].elem_type;
    uint8_t types[2] = {WASM_I32, et};
    if (cpop_srcs(c, types, set ? 2 : 1, s) < 0) return -1;
    if (set) return emit3(c, WOP_TABLE_SET, s[0], s[1], x, 0, &at);
    if (emit3(c, WOP_TABLE_GET, 0, s[0], x, 0, &at) < 0) return -1;
    return cpush_result(c, et, at);
}

int ccompile_misc(struct comp *c, uint8_t op)
{
    uint32_t s[3], at = 0, p;
    static const uint8_t i32[] = {WASM_I32, WASM_I32, WASM_I32};
    if (op >= 0x28 && op <= 0x3e) return compile_memop(c, &memops[op - 0x28]);
    switch (op) {
    case 0x3f:
        if (zero_byte(c) < 0 || need_memory(c) < 0 || emit3(c, WOP_MEM_SIZE, 0, 0, 0, 0, &at) < 0)
            return -1;
        return cpush_result(c, WASM_I32, at);
    case 0x40:
        if (zero_byte(c) < 0 || need_memory(c) < 0 || cpop_srcs(c, i32, 1, s) < 0 ||
            emit3(c, WOP_MEM_GROW, 0, s[0], 0, 0, &at) < 0)
            return -1;
        return cpush_result(c, WASM_I32, at);
    case 0x25:
        return compile_table_get_set(c, false);
    case 0x26:
        return compile_table_get_set(c, true);
    case 0xd0: {
        uint8_t t = 0;
        if (wr_u8(&c->r, &t) < 0) return -1;
        if (t != WASM_FUNCREF && t != WASM_EXTERNREF)
            return wr_fail(&c->r, "decode: malformed reference type");
        if (cpush(c, t) < 0) return -1;
        cset_const(c, 0);
        return 0;
    }
    case 0xd1: {
        uint8_t t = 0;
        if (cpop(c, 0, &p, &t) < 0) return -1;
        if (t && t != WASM_FUNCREF && t != WASM_EXTERNREF)
            return cfail(c, "type mismatch (ref.is_null needs a reference)");
        if (!cdead(c)) {
            if (csrc(c, p, &s[0]) < 0 || emit3(c, WOP_REF_IS_NULL, 0, s[0], 0, 0, &at) < 0)
                return -1;
        }
        return cpush_result(c, WASM_I32, at);
    }
    case 0xd2: {
        uint32_t x = 0;
        if (wr_u32(&c->r, &x) < 0) return -1;
        if (x >= c->m->nfuncs) return cfail(c, "unknown function");
        if (!c->m->func_declared[x]) return cfail(c, "undeclared function reference");
        if (emit3(c, WOP_REF_FUNC, 0, x, 0, 0, &at) < 0) return -1;
        return cpush_result(c, WASM_FUNCREF, at);
    }
    default: {
        char msg[64];
        snprintf(msg, sizeof(msg), "illegal opcode 0x%02x", op);
        return wr_fail(&c->r, "decode: %s", msg);
    }
    }
}

static int need_datacount(struct comp *c, uint32_t x)
{
    if (!c->m->has_datacount) return wr_fail(&c->r, "decode: data count section required");
    return x < c->m->datacount ? 0 : cfail(c, "unknown data segment");
}

static int compile_table_ops(struct comp *c, uint32_t sub)
{
    uint32_t x, y, s[3], at = 0;
    uint8_t t3[3] = {WASM_I32, 0, WASM_I32};
    static const uint8_t i32[] = {WASM_I32, WASM_I32, WASM_I32};
    switch (sub) {
    case 12: /* table.init elem table */
        if (wr_u32(&c->r, &y) < 0 || read_table(c, &x) < 0) return -1;
        if (y >= c->m->nelems) return cfail(c, "unknown elem segment");
        if (c->m->elems[y].type != c->m->tables[x].elem_type)
            return cfail(c, "type mismatch (table.init)");
        if (cpop_srcs(c, i32, 3, s) < 0 || emit3(c, WOP_TABLE_INIT, s[0], s[1], s[2], x, &at) < 0)
            return -1;
        if (!cdead(c) && cemit(c, WOP_UNREACHABLE, 1, &at) < 0) /* operand cell: the segment */
            return -1;
        if (!cdead(c)) c->code[at].u = y;
        return 0;
    case 13:
        if (wr_u32(&c->r, &y) < 0) return -1;
        if (y >= c->m->nelems) return cfail(c, "unknown elem segment");
        return emit3(c, WOP_ELEM_DROP, y, 0, 0, 0, &at);
    case 14: /* table.copy dst src */
        if (read_table(c, &x) < 0 || read_table(c, &y) < 0) return -1;
        if (c->m->tables[x].elem_type != c->m->tables[y].elem_type)
            return cfail(c, "type mismatch (table.copy)");
        if (cpop_srcs(c, i32, 3, s) < 0 || emit3(c, WOP_TABLE_COPY, s[0], s[1], s[2], x, &at) < 0)
            return -1;
        if (!cdead(c) && cemit(c, WOP_UNREACHABLE, 1, &at) < 0) return -1;
        if (!cdead(c)) c->code[at].u = y;
        return 0;
    case 15: /* table.grow: init n -> old size */
        if (read_table(c, &x) < 0) return -1;
        t3[0] = c->m->tables[x].elem_type;
        t3[1] = WASM_I32;
        if (cpop_srcs(c, t3, 2, s) < 0 || emit3(c, WOP_TABLE_GROW, 0, s[0], s[1], x, &at) < 0)
            return -1;
        return cpush_result(c, WASM_I32, at);
    case 16:
        if (read_table(c, &x) < 0 || emit3(c, WOP_TABLE_SIZE, 0, x, 0, 0, &at) < 0) return -1;
        return cpush_result(c, WASM_I32, at);
    case 17: /* table.fill: i val n */
        if (read_table(c, &x) < 0) return -1;
        t3[1] = c->m->tables[x].elem_type;
        if (cpop_srcs(c, t3, 3, s) < 0) return -1;
        if (emit3(c, WOP_TABLE_FILL, s[0], s[1], s[2], x, &at) < 0) return -1;
        return 0;
    default:
        return wr_fail(&c->r, "decode: illegal opcode 0xfc %u", sub);
    }
}

int ccompile_fc(struct comp *c)
{
    uint32_t sub, x, s[3], at = 0;
    static const uint8_t i32[] = {WASM_I32, WASM_I32, WASM_I32};
    if (wr_u32(&c->r, &sub) < 0) return -1;
    if (sub <= 7) return ccompile_trunc_sat(c, sub);
    switch (sub) {
    case 8: /* memory.init data 0x00: d s n */
        if (wr_u32(&c->r, &x) < 0 || zero_byte(c) < 0 || need_memory(c) < 0 ||
            need_datacount(c, x) < 0 || cpop_srcs(c, i32, 3, s) < 0)
            return -1;
        return emit3(c, WOP_MEM_INIT, s[0], s[1], s[2], x, &at);
    case 9:
        if (wr_u32(&c->r, &x) < 0 || need_datacount(c, x) < 0) return -1;
        return emit3(c, WOP_DATA_DROP, x, 0, 0, 0, &at);
    case 10:
        if (zero_byte(c) < 0 || zero_byte(c) < 0 || need_memory(c) < 0 ||
            cpop_srcs(c, i32, 3, s) < 0)
            return -1;
        return emit3(c, WOP_MEM_COPY, s[0], s[1], s[2], 0, &at);
    case 11:
        if (zero_byte(c) < 0 || need_memory(c) < 0 || cpop_srcs(c, i32, 3, s) < 0) return -1;
        return emit3(c, WOP_MEM_FILL, s[0], s[1], s[2], 0, &at);
    default:
        return compile_table_ops(c, sub);
    }
}
