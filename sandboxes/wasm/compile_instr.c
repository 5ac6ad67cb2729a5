/* compile_instr.c: one case per control, variable and numeric instruction (see compile.c for
 * the operand-stack model). Memory, table and reference instructions are in compile_mem.c. */
#include <stdlib.h>

#include "compile.h"

#define VT_I WASM_I32
#define VT_L WASM_I64
#define VT_F WASM_F32
#define VT_D WASM_F64

enum shape { SH_NONE, SH_UN, SH_BIN, SH_BINI, SH_TUN, SH_TBIN, SH_FREE };

struct numop {
    uint16_t wop;
    uint8_t shape, ta, tr;
};

#define NUM_INDEX(code) ((code) < 0x100 ? (code) : 0x100 + ((code)&0xff))
static const struct numop numops[0x108] = {
#define NUM_ROW(code, name, sh, a, r, expr)                                                        \
    [NUM_INDEX(code)] = {WOP_##name, SH_##sh, VT_##a, VT_##r},
    WASM_NUMOPS(NUM_ROW)
#undef NUM_ROW
};

/* Super-instructions for the pairs that dominate interpreters compiled to wasm (a Lua VM
 * decoding its instructions): the i32.shr_u+i32.and of a bit field (BFX), and an i32.add of
 * a bit field or a shifted value (ADD_BFX, ADD_SHL). The producer of an operand, emitted just
 * before, is rewritten in place. Returns its index + 1, 0 if nothing was fused, -1. */
static int64_t fuse_numeric(struct comp *c, uint16_t wop, uint32_t pa, uint32_t pb)
{
    union wcell *code = c->code;
    int64_t at;
    uint32_t sa;
    if (wop == WOP_I32_AND && c->st[pb].kind == CE_CONST &&
        (at = cproducer(c, pa, WOP_I32_SHR_U_I)) >= 0) { /* [dst|x][k] -> [dst|x][k|m] */
        code[at].h = c->handlers[WOP_BFX];
        code[at + 2].s.a = (uint32_t)code[at + 2].u;
        code[at + 2].s.b = (uint32_t)c->st[pb].cval;
        return at + 1;
    }
    if (wop == WOP_I32_SHL && c->st[pb].kind == CE_CONST &&
        (at = cproducer(c, pa, WOP_I32_AND_I)) >= 0) { /* [dst|x][m] -> [dst|x][m|k] */
        code[at].h = c->handlers[WOP_AND_SHL];
        code[at + 2].s.a = (uint32_t)code[at + 2].u;
        code[at + 2].s.b = (uint32_t)c->st[pb].cval & 31;
        return at + 1;
    }
    if (wop != WOP_I32_ADD) return 0;
    if (c->st[pb].kind == CE_CONST) { /* [dst|x][m|k] -> [dst|x][m|k][imm], likewise LD32_IDX */
        bool ld = (at = cproducer(c, pa, WOP_AND_SHL)) < 0;
        if (ld && (at = cproducer(c, pa, WOP_LD32_IDX)) < 0) return 0;
        if (cappend_cell(c) < 0) return -1;
        c->code[at].h = c->handlers[ld ? WOP_LD32_IDX_ADD : WOP_AND_SHL_ADD];
        c->code[c->n - 1].s.a = (uint32_t)c->st[pb].cval;
        return at + 1;
    }
    uint32_t prod = pb, other = pa; /* the add commutes: either operand may be the producer */
    if (c->last_pos == pa && c->st[pb].kind == CE_LOCAL) prod = pa, other = pb;
    if (c->st[other].kind == CE_CONST) return 0;
    if ((at = cproducer(c, prod, WOP_BFX)) >= 0) { /* [dst|x][k|m] -> [dst|a][x|k][m] */
        if (csrc(c, other, &sa) < 0 || cappend_cell(c) < 0) return -1;
        code = c->code;
        code[at].h = c->handlers[WOP_ADD_BFX];
        code[at + 3].s.a = code[at + 2].s.b;
        code[at + 2].s.b = code[at + 2].s.a;
        code[at + 2].s.a = code[at + 1].s.b;
        code[at + 1].s.b = sa;
        return at + 1;
    }
    if ((at = cproducer(c, prod, WOP_I32_SHL_I)) >= 0) { /* [dst|x][k] -> [dst|a][x|k] */
        if (csrc(c, other, &sa) < 0) return -1;
        code[at].h = c->handlers[WOP_ADD_SHL];
        code[at + 2].s.b = (uint32_t)code[at + 2].u;
        code[at + 2].s.a = code[at + 1].s.b;
        code[at + 1].s.b = sa;
        return at + 1;
    }
    return 0;
}

static int compile_numeric(struct comp *c, const struct numop *op)
{
    uint32_t pa, pb, sa, sb, at = 0;
    if (op->shape == SH_FREE) {
        if (cpop(c, op->ta, &pa, NULL) < 0) return -1;
        c->st[pa].type = op->tr; /* same bits, new type: nothing to execute */
        c->sh++;
        if (c->st[pa].kind == CE_LOCAL) c->lrefs[c->st[pa].local]++;
        return 0;
    }
    if (op->shape == SH_UN || op->shape == SH_TUN) {
        if (cpop(c, op->ta, &pa, NULL) < 0) return -1;
        int64_t and = op->wop == WOP_I32_EQZ && !cdead(c) ? cproducer(c, pa, WOP_I32_AND_I) : -1;
        if (and >= 0) { /* (i32.eqz (i32.and a imm)) -> TESTZ_I [dst|a][imm] */
            c->code[and].h = c->handlers[WOP_TESTZ_I];
            return cpush_result(c, op->tr, (uint32_t) and);
        }
        if (!cdead(c)) {
            if (csrc(c, pa, &sa) < 0 || cemit(c, op->wop, 2, &at) < 0) return -1;
            c->code[at + 1].s.b = sa;
        }
        return cpush_result(c, op->tr, at);
    }
    if (cpop(c, op->ta, &pb, NULL) < 0 || cpop(c, op->ta, &pa, NULL) < 0) return -1;
    if (!cdead(c)) {
        int64_t fused = fuse_numeric(c, op->wop, pa, pb);
        if (fused < 0) return -1;
        if (fused > 0) return cpush_result(c, op->tr, (uint32_t)fused - 1);
        if (op->shape == SH_BINI && c->st[pb].kind == CE_CONST) {
            if (csrc(c, pa, &sa) < 0 || cemit(c, op->wop + 1, 3, &at) < 0) return -1;
            c->code[at + 1].s.b = sa;
            c->code[at + 2].u = c->st[pb].cval;
        } else {
            if (csrc(c, pa, &sa) < 0 || csrc(c, pb, &sb) < 0 || cemit(c, op->wop, 3, &at) < 0)
                return -1;
            c->code[at + 1].s.b = sa;
            c->code[at + 2].s.a = sb;
        }
    }
    return cpush_result(c, op->tr, at);
}

static int compile_const(struct comp *c, uint8_t op)
{
    uint64_t v = 0;
    uint8_t type = 0;
    if (op == 0x41) {
        int32_t x = 0;
        if (wr_s32(&c->r, &x) < 0) return -1;
        v = (uint32_t)x, type = WASM_I32;
    } else if (op == 0x42) {
        int64_t x = 0;
        if (wr_s64(&c->r, &x) < 0) return -1;
        v = (uint64_t)x, type = WASM_I64;
    } else {
        const uint8_t *b = NULL;
        size_t n = op == 0x43 ? 4 : 8;
        if (wr_bytes(&c->r, n, &b) < 0) return -1;
        memcpy(&v, b, n);
        type = op == 0x43 ? WASM_F32 : WASM_F64;
    }
    if (cpush(c, type) < 0) return -1;
    cset_const(c, v);
    return 0;
}

/* ---- locals and globals -------------------------------------------------------------- */
static int read_local(struct comp *c, uint32_t *x)
{
    if (wr_u32(&c->r, x) < 0) return -1;
    if (*x >= c->nlocals_all) return cfail(c, "unknown local");
    return 0;
}

/* Two i32.adds of constants in a row, the second one's result just stored in a local (so no
 * later instruction fuses with it): ADD_I2 [d1|a1][imm1|imm2][d2|a2], run in order. */
static void fuse_add_pair(struct comp *c)
{
    union wcell *k = c->code;
    int64_t a1 = c->prev_at, a2 = c->last_at;
    if (a1 < 0 || a1 + 3 != a2 || a2 + 3 != c->n || k[a1].h != c->handlers[WOP_I32_ADD_I] ||
        k[a2].h != c->handlers[WOP_I32_ADD_I])
        return;
    uint32_t imm1 = (uint32_t)k[a1 + 2].u, imm2 = (uint32_t)k[a2 + 2].u;
    k[a1].h = c->handlers[WOP_ADD_I2];
    k[a1 + 2].s.a = imm1, k[a1 + 2].s.b = imm2;
    k[a1 + 3] = k[a2 + 1];
    c->n = (uint32_t)a1 + 4;
    c->last_at = a1, c->prev_at = -1;
    c->copy_at = -1;
}

static int compile_local_set(struct comp *c, bool tee)
{
    uint32_t x = 0, p = 0, at = 0;
    if (read_local(c, &x) < 0 || cpop(c, c->ltypes[x], &p, NULL) < 0) return -1;
    if (!cdead(c)) {
        struct centry e = c->st[p];
        bool refs = c->lrefs[x] > 0; /* other entries still read local x */
        if (e.kind == CE_STACK && !refs && c->last_prod >= 0 && c->last_pos == p) {
            c->code[c->last_prod + 1].s.a = clocal(c, x); /* the producer writes the local */
            c->last_prod = -1;
            fuse_add_pair(c);
        } else {
            for (uint32_t i = c->lazy_lo; refs && i < p; i++)
                if (c->st[i].kind == CE_LOCAL && c->st[i].local == x && cmaterialize(c, i) < 0)
                    return -1;
            if (e.kind == CE_CONST) {
                if (cemit(c, WOP_CONST, 3, &at) < 0) return -1;
                c->code[at + 1].s.a = clocal(c, x);
                c->code[at + 2].u = e.cval;
            } else if (!(e.kind == CE_LOCAL && e.local == x)) {
                uint32_t src = e.kind == CE_LOCAL ? clocal(c, e.local) : canon(c, p);
                if (cemit_copy(c, clocal(c, x), src, c->ltypes[x]) < 0) return -1;
            }
        }
    }
    if (tee) {
        if (cpush(c, c->ltypes[x]) < 0) return -1;
        cset_local(c, x);
    }
    return 0;
}

/* global.set x of the value in slot s, which an i32.add or i32.sub of a constant just wrote
 * (a C function's stack pointer going up at its return): GSET_ADD_I [dst|a][imm][x], still
 * writing dst. If a global.get x just produced the add's operand (the stack pointer going
 * down in its prologue), that too: GADD_I [d1|d2][imm][x]. Returns whether it fused. */
static bool fuse_global_add(struct comp *c, uint32_t x, uint32_t s)
{
    union wcell *k = c->code;
    int64_t at = c->last_at, gg = c->prev_at;
    bool sub = at >= 0 && k[at].h == c->handlers[WOP_I32_SUB_I];
    if (at < 0 || at + 3 != c->n || k[at + 1].s.a != s ||
        !(sub || k[at].h == c->handlers[WOP_I32_ADD_I]))
        return false;
    uint32_t imm = sub ? 0u - (uint32_t)k[at + 2].u : (uint32_t)k[at + 2].u;
    c->last_prod = -1;
    c->copy_at = -1;
    if (gg >= 0 && gg + 2 == at && k[gg].h == c->handlers[WOP_GLOBAL_GET] && k[gg + 1].s.b == x &&
        k[gg + 1].s.a == k[at + 1].s.b) { /* [d1|x] + [d2|d1][imm] -> [d1|d2][imm][x] */
        k[gg].h = c->handlers[WOP_GADD_I];
        k[gg + 1].s.b = s;
        k[gg + 2].u = imm;
        k[gg + 3].u = x;
        c->n = (uint32_t)gg + 4;
        c->last_at = gg, c->prev_at = -1;
        return true;
    }
    if (cappend_cell(c) < 0) return false; /* [dst|a][imm] -> [dst|a][imm][x] */
    k = c->code;
    k[at].h = c->handlers[WOP_GSET_ADD_I];
    k[at + 2].u = imm;
    k[at + 3].u = x;
    return true;
}

static int compile_global(struct comp *c, bool set)
{
    uint32_t x, p, s, at = 0;
    if (wr_u32(&c->r, &x) < 0) return -1;
    if (x >= c->m->nglobals) return cfail(c, "unknown global");
    const struct wglobal_def *g = &c->m->globals[x];
    bool wide = g->type == WASM_V128;
    if (!set) {
        if (!cdead(c)) {
            if (cemit(c, wide ? WOP_GLOBAL_GET128 : WOP_GLOBAL_GET, 2, &at) < 0) return -1;
            c->code[at + 1].s.b = x;
        }
        return cpush_result(c, g->type, at);
    }
    if (!g->mut) return cfail(c, "global is immutable");
    if (cpop(c, g->type, &p, NULL) < 0) return -1;
    if (cdead(c)) return 0;
    if (csrc(c, p, &s) < 0) return -1;
    if (g->type == WASM_I32 && fuse_global_add(c, x, s)) return 0;
    if (cemit(c, wide ? WOP_GLOBAL_SET128 : WOP_GLOBAL_SET, 2, &at) < 0) return -1;
    c->code[at + 1].s.a = s;
    c->code[at + 1].s.b = x;
    return 0;
}

static int compile_select(struct comp *c, bool typed)
{
    uint32_t pc, p1, p2, s1, s2, sc, at = 0;
    uint8_t t1, t2, want = 0;
    if (typed) {
        uint32_t n = 0;
        if (wr_u32(&c->r, &n) < 0) return -1;
        if (n != 1) return cfail(c, "invalid result arity (typed select)");
        if (wr_u8(&c->r, &want) < 0) return -1;
        if (want != WASM_I32 && want != WASM_I64 && want != WASM_F32 && want != WASM_F64 &&
            want != WASM_V128 && want != WASM_FUNCREF && want != WASM_EXTERNREF)
            return wr_fail(&c->r, "decode: malformed value type");
    }
    if (cpop(c, WASM_I32, &pc, NULL) < 0 || cpop(c, want, &p2, &t2) < 0 ||
        cpop(c, want, &p1, &t1) < 0)
        return -1;
    uint8_t t = t1 ? t1 : t2;
    if (t1 && t2 && t1 != t2) return cfail(c, "type mismatch (select operands)");
    if (!typed && (t == WASM_FUNCREF || t == WASM_EXTERNREF))
        return cfail(c, "type mismatch (select of references needs a type)");
    if (!cdead(c)) {
        if (csrc(c, p1, &s1) < 0 || csrc(c, p2, &s2) < 0 || csrc(c, pc, &sc) < 0 ||
            cemit(c, t == WASM_V128 ? WOP_SELECT128 : WOP_SELECT, 3, &at) < 0)
            return -1;
        c->code[at + 1].s.b = s1;
        c->code[at + 2].s.a = s2;
        c->code[at + 2].s.b = sc;
    }
    return cpush_result(c, t, at);
}

/* ---- calls ----------------------------------------------------------------------------- */
static int push_types(struct comp *c, const uint8_t *types, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (cpush(c, types[i]) < 0) return -1;
    return 0;
}

static int compile_call(struct comp *c, bool indirect)
{
    uint32_t x, table = 0, at, pe = 0;
    if (wr_u32(&c->r, &x) < 0) return -1;
    const struct wasm_functype *t;
    if (indirect) {
        if (wr_u32(&c->r, &table) < 0) return -1;
        if (x >= c->m->ntypes) return cfail(c, "unknown type");
        if (table >= c->m->ntables) return cfail(c, "unknown table");
        if (c->m->tables[table].elem_type != WASM_FUNCREF)
            return cfail(c, "type mismatch (call_indirect needs a funcref table)");
        t = &c->m->types[x];
    } else {
        if (x >= c->m->nfuncs) return cfail(c, "unknown function");
        t = &c->m->types[c->m->func_types[x]];
    }
    /* The callee cannot change this frame: only the arguments (and the table index, read
     * from its slot) must be in their slots. */
    if (cmaterialize_top(c, t->nparams + indirect, 0, false) < 0) return -1;
    if (indirect && cpop(c, WASM_I32, &pe, NULL) < 0) return -1;
    if (cpop_types(c, t->types, t->nparams) < 0) return -1;
    if (!cdead(c)) {
        uint32_t argbase = cbase_slot(c, c->sh) * 8u;
        int64_t cp = indirect ? -1 : cfuse_copy(c, WOP_COPY_CALL, WOP_COPY2_CALL);
        if (cp >= 0) { /* [dst|src]... then [func|argbase] */
            if (cappend_cell(c) < 0) return -1;
            c->code[c->n - 1].s.a = x;
            c->code[c->n - 1].s.b = argbase;
        } else if (cemit(c, indirect ? WOP_CALL_INDIRECT : WOP_CALL, indirect ? 3 : 2, &at) < 0) {
            return -1;
        } else if (indirect) {
            c->code[at + 1].s.a = table;
            /* the canonical index: a function's type is its canonical one, so the check at
             * run time is a pointer compare unless the function comes from another module */
            c->code[at + 1].s.b = c->m->type_canon[x];
            c->code[at + 2].s.a = canon(c, pe);
            c->code[at + 2].s.b = argbase;
        } else {
            c->code[at + 1].s.a = x;
            c->code[at + 1].s.b = argbase;
        }
    }
    return push_types(c, t->types + t->nparams, t->nresults);
}

/* ---- blocks and branches ------------------------------------------------------------- */
static int compile_block(struct comp *c, uint8_t op)
{
    struct cblocktype bt;
    uint32_t pcond = 0, scond = 0, at;
    if (cread_blocktype(c, &bt) < 0 || cmaterialize_top(c, bt.nparams, op == 0x04, true) < 0)
        return -1;
    if (op == 0x04 && (cpop(c, WASM_I32, &pcond, NULL) < 0 || csrc(c, pcond, &scond) < 0))
        return -1;
    if (cpop_types(c, bt.params, bt.nparams) < 0) return -1;
    uint32_t else_cell = 0;
    if (op == 0x04 && !cdead(c)) {
        int64_t fused = cfuse_branch(c, pcond, true); /* jump to else when the test fails */
        if (fused < 0) return -1;
        if (fused > 0) {
            else_cell = (uint32_t)fused + 1;
        } else {
            if (cemit(c, WOP_BR_UNLESS, 3, &at) < 0) return -1;
            c->code[at + 1].s.a = scond;
            else_cell = at + 2 + 1;
        }
    }
    if (cpush_frame(c, op, &bt) < 0) return -1;
    c->cs[c->ch - 1].else_patch = else_cell;
    return push_types(c, bt.params, bt.nparams);
}

static int check_frame_end(struct comp *c, struct cframe *f)
{
    if (cmaterialize_top(c, f->bt.nresults, 0, false) < 0 ||
        cpeek_types(c, f->bt.results, f->bt.nresults) < 0)
        return -1;
    if (c->sh != f->height + f->bt.nresults &&
        !(f->unreachable && c->sh < f->height + f->bt.nresults))
        return cfail(c, "type mismatch (values remaining on the stack at the end of a block)");
    return 0;
}

static int compile_else(struct comp *c)
{
    struct cframe *f = &c->cs[c->ch - 1];
    if (f->op != 0x04) return cfail(c, "else without if");
    if (check_frame_end(c, f) < 0) return -1;
    if (!cdead(c)) {
        int64_t cell = cemit_jump(c, false);
        if (cell < 0) return -1;
        cadd_patch(c, f, (uint32_t)cell);
    }
    if (f->else_patch) {
        c->code[f->else_patch - 1].i = (int64_t)c->n - (int64_t)(f->else_patch - 1);
        f->else_patch = 0;
        ctarget(c);
    }
    f->op = 0x05;
    f->unreachable = false;
    c->last_prod = -1;
    c->sh = f->height;
    return push_types(c, f->bt.params, f->bt.nparams);
}

static int compile_end(struct comp *c)
{
    struct cframe *f = &c->cs[c->ch - 1];
    if (check_frame_end(c, f) < 0) return -1;
    if (f->op == 0x04) {
        if (f->bt.nparams != f->bt.nresults ||
            (f->bt.nparams && memcmp(f->bt.params, f->bt.results, f->bt.nparams) != 0))
            return cfail(c, "type mismatch (if without else must not change the stack type)");
    }
    if (c->ch == 1) {
        if (!cdead(c) && cemit_return(c) < 0) return -1;
        c->ch = 0;
        return 0;
    }
    if (f->else_patch) c->code[f->else_patch - 1].i = (int64_t)c->n - (int64_t)(f->else_patch - 1);
    ctarget(c);
    if (f->cost_cell) {
        uint32_t cost = (c->n - f->start) / 4;
        c->code[f->cost_cell - 1].u = cost ? cost : 1;
    }
    cresolve(c, f->patch, c->n);
    struct cblocktype bt = f->bt;
    c->sh = f->height;
    c->ch--;
    c->last_prod = -1;
    return push_types(c, bt.results, bt.nresults);
}

static int read_label(struct comp *c, uint32_t *l)
{
    if (wr_u32(&c->r, l) < 0) return -1;
    if (*l >= c->ch) return cfail(c, "unknown label");
    return 0;
}

static int compile_br(struct comp *c)
{
    uint32_t l = 0, n = 0;
    if (read_label(c, &l) < 0) return -1;
    const uint8_t *types = clabel_types(&c->cs[c->ch - 1 - l], &n);
    if (cmaterialize_top(c, n, 0, false) < 0) return -1;
    if (cpeek_types(c, types, n) < 0) return -1;
    if (!cdead(c) && cemit_branch(c, l) < 0) return -1;
    cset_unreachable(c);
    return 0;
}

static int compile_br_if(struct comp *c)
{
    uint32_t l = 0, n = 0, p = 0, s = 0, at = 0;
    if (read_label(c, &l) < 0) return -1;
    struct cframe *f = &c->cs[c->ch - 1 - l];
    const uint8_t *types = clabel_types(f, &n);
    if (cmaterialize_top(c, n, 1, false) < 0 || cpop(c, WASM_I32, &p, NULL) < 0 ||
        csrc(c, p, &s) < 0)
        return -1;
    /* br_if pops the label's values and pushes them back with the label's types */
    if (cpop_types(c, types, n) < 0 || push_types(c, types, n) < 0) return -1;
    if (cdead(c)) return 0;
    if (l == c->ch - 1 || cneeds_copies(c, f)) {
        if (cemit(c, WOP_BR_UNLESS, 3, &at) < 0) return -1;
        c->code[at + 1].s.a = s;
        if (cemit_branch(c, l) < 0) return -1;
        c->code[at + 2].i = (int64_t)c->n - (int64_t)(at + 2);
        ctarget(c);
        return 0;
    }
    int64_t cell = cfuse_branch(c, p, false);
    if (cell < 0) return -1;
    if (cell == 0) {
        if (cemit(c, WOP_BR_IF, 3, &at) < 0) return -1;
        c->code[at + 1].s.a = s;
        cell = at + 2;
    }
    if (f->op == 0x03)
        c->code[cell].i = (int64_t)f->start - cell;
    else
        cadd_patch(c, f, (uint32_t)cell);
    return 0;
}

/* The form of br_table on the entry at p (slot s), and its cells before the offsets:
 * on x + imm (a switch on a biased value: BR_TABLE_A [x|n][imm]), on a byte just loaded plus
 * imm (a type tag: BR_TABLE_L8 [a|n][off|imm][d], still writing the byte's slot d), on a
 * lookup-table load (BR_TABLE_LD [x|n][m|k][imm|off][imm2]), or plain (BR_TABLE [s|n]). The
 * instructions folded in are the last ones emitted, so nothing refers to them: dropped. */
static enum wop br_table_form(struct comp *c, uint32_t p, uint32_t s, union wcell head[4],
                              uint32_t *nhead)
{
    int64_t add = cproducer(c, p, WOP_I32_ADD_I), l8 = c->prev_at, ld;
    memset(head, 0, 4 * sizeof(head[0]));
    if (add >= 0 && l8 >= 0 && l8 + 3 == add && c->code[l8].h == c->handlers[WOP_LD8U] &&
        c->code[l8 + 1].s.a == c->code[add + 1].s.b) {
        head[0].s.a = c->code[l8 + 1].s.b;
        head[1].s.a = (uint32_t)c->code[l8 + 2].u;
        head[1].s.b = (uint32_t)c->code[add + 2].u;
        head[2].s.a = c->code[l8 + 1].s.a;
        c->n = (uint32_t)l8;
        *nhead = 3;
        return WOP_BR_TABLE_L8;
    }
    if (add >= 0) {
        head[0].s.a = c->code[add + 1].s.b;
        head[1].s.a = (uint32_t)c->code[add + 2].u;
        c->n = (uint32_t)add;
        *nhead = 2;
        return WOP_BR_TABLE_A;
    }
    if ((ld = cproducer(c, p, WOP_LD32_IDX_ADD)) >= 0) {
        head[0].s.a = c->code[ld + 1].s.b;
        memcpy(&head[1], &c->code[ld + 2], 3 * sizeof(head[0]));
        c->n = (uint32_t)ld;
        *nhead = 4;
        return WOP_BR_TABLE_LD;
    }
    head[0].s.a = s;
    *nhead = 1;
    return WOP_BR_TABLE;
}

static int compile_br_table(struct comp *c)
{
    uint32_t n = 0, p = 0, s = 0, at = 0, dn = 0;
    if (wr_u32(&c->r, &n) < 0) return -1;
    if (n > WASM_MAX_BRTABLE || (size_t)(c->r.end - c->r.p) < n)
        return wr_fail(&c->r, "decode: br_table too large");
    autofree uint32_t *labels = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (!labels) return gate_err(c->err, GATE_E_NOMEM, "compile: out of memory");
    for (uint32_t i = 0; i <= n; i++)
        if (read_label(c, &labels[i]) < 0) return -1;
    const uint8_t *dtypes = clabel_types(&c->cs[c->ch - 1 - labels[n]], &dn);
    if (cmaterialize_top(c, dn, 1, false) < 0 || cpop(c, WASM_I32, &p, NULL) < 0 ||
        csrc(c, p, &s) < 0)
        return -1;
    for (uint32_t i = 0; i <= n; i++) {
        uint32_t k = 0;
        const uint8_t *types = clabel_types(&c->cs[c->ch - 1 - labels[i]], &k);
        if (k != dn) return cfail(c, "type mismatch (br_table labels differ in arity)");
        if (cpeek_types(c, types, k) < 0) return -1;
        (void)dtypes;
    }
    if (!cdead(c)) {
        union wcell head[4];
        uint32_t nhead = 0;
        enum wop wop = br_table_form(c, p, s, head, &nhead);
        uint32_t base = nhead + 1;
        if (cemit(c, wop, base + n + 1, &at) < 0) return -1;
        memcpy(&c->code[at + 1], head, nhead * sizeof(head[0]));
        c->code[at + 1].s.b = n;
        for (uint32_t i = 0; i <= n; i++) {
            struct cframe *f = &c->cs[c->ch - 1 - labels[i]];
            uint32_t cell = at + base + i;
            if (labels[i] == c->ch - 1 || cneeds_copies(c, f))
                c->code[cell].u = UINT64_MAX; /* stub below */
            else if (f->op == 0x03)
                c->code[cell].i = (int64_t)f->start - (int64_t)cell;
            else
                cadd_patch(c, f, cell);
        }
        for (uint32_t i = 0; i <= n; i++) {
            uint32_t cell = at + base + i;
            if (c->code[cell].u != UINT64_MAX) continue;
            c->code[cell].i = (int64_t)c->n - (int64_t)cell;
            ctarget(c);
            if (cemit_branch(c, labels[i]) < 0) return -1;
        }
    }
    cset_unreachable(c);
    return 0;
}

static int compile_return(struct comp *c)
{
    if (cmaterialize_top(c, c->ftype->nresults, 0, false) < 0 ||
        cpeek_types(c, c->ftype->types + c->ftype->nparams, c->ftype->nresults) < 0)
        return -1;
    if (!cdead(c) && cemit_return(c) < 0) return -1;
    cset_unreachable(c);
    return 0;
}

int ccompile_instr(struct comp *c)
{
    uint8_t op = 0;
    uint32_t p = 0, at = 0;
    if (wr_u8(&c->r, &op) < 0) return -1;
    switch (op) {
    case 0x00:
        if (!cdead(c) && cemit(c, WOP_UNREACHABLE, 1, &at) < 0) return -1;
        cset_unreachable(c);
        return 0;
    case 0x01:
        return 0;
    case 0x02:
    case 0x03:
    case 0x04:
        return compile_block(c, op);
    case 0x05:
        return compile_else(c);
    case 0x0b:
        return compile_end(c);
    case 0x0c:
        return compile_br(c);
    case 0x0d:
        return compile_br_if(c);
    case 0x0e:
        return compile_br_table(c);
    case 0x0f:
        return compile_return(c);
    case 0x10:
        return compile_call(c, false);
    case 0x11:
        return compile_call(c, true);
    case 0x1a:
        c->last_prod = -1; /* a value pushed later may reuse the dropped slot */
        return cpop(c, 0, &p, NULL);
    case 0x1b:
        return compile_select(c, false);
    case 0x1c:
        return compile_select(c, true);
    case 0x20: {
        uint32_t x = 0;
        if (read_local(c, &x) < 0 || cpush(c, c->ltypes[x]) < 0) return -1;
        cset_local(c, x);
        return 0;
    }
    case 0x21:
        return compile_local_set(c, false);
    case 0x22:
        return compile_local_set(c, true);
    case 0x23:
        return compile_global(c, false);
    case 0x24:
        return compile_global(c, true);
    case 0x41:
    case 0x42:
    case 0x43:
    case 0x44:
        return compile_const(c, op);
    case 0xfc:
        return ccompile_fc(c);
    case 0xfd:
        return ccompile_simd(c);
    default:
        if (numops[op].shape != SH_NONE) return compile_numeric(c, &numops[op]);
        return ccompile_misc(c, op);
    }
}

int ccompile_trunc_sat(struct comp *c, uint32_t sub)
{
    return compile_numeric(c, &numops[0x100 + sub]);
}
