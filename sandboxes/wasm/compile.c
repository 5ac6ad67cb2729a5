/* compile.c: validate one function body and compile it to internal code, in one pass.
 *
 * Validation follows the algorithm of the specification's appendix (an operand stack of types
 * and a stack of control frames). Compilation rides on it: every operand-stack entry has a
 * fixed frame slot (locals first, then stack position i at slot nlocals+i), so instructions
 * name their operand slots directly and no run-time stack pointer exists. local.get and
 * constants are kept lazy (the entry refers to the local or carries the value) until an
 * instruction consumes them, and a local.set right after the instruction producing its value
 * retargets that instruction's destination. At every control boundary all entries are
 * materialised into their slots, so branch targets see one layout. Branch targets are
 * resolved to relative cell offsets when their block ends.
 */
#include <stdlib.h>

#include "compile.h"

static int grow(struct comp *c, void **arr, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap) return 0;
    uint32_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * size);
    if (!p) return gate_err(c->err, GATE_E_NOMEM, "compile: out of memory");
    *arr = p;
    *cap = ncap;
    return 0;
}

int cfail(struct comp *c, const char *what)
{
    return gate_err(c->err, GATE_E_WASM_INVALID, "validate: func %u: %s at offset 0x%zx",
                    c->func_index, what, wr_off(&c->r));
}

/* ---- emission ---------------------------------------------------------------------- */
bool cdead(const struct comp *c)
{
    return c->cs[c->ch - 1].unreachable || c->cs[c->ch - 1].dead;
}

/* Start an instruction of ncells cells (handler included). Returns its index. */
int cemit(struct comp *c, enum wop op, uint32_t ncells, uint32_t *at)
{
    if (grow(c, (void **)&c->code, &c->cap, c->n + ncells, sizeof(union wcell)) < 0) return -1;
    *at = c->n;
    memset(&c->code[c->n], 0, ncells * sizeof(union wcell));
    c->code[c->n].h = c->handlers[op];
    c->n += ncells;
    c->last_prod = -1;
    c->copy_at = -1;
    c->prev_at = c->last_at;
    c->last_at = *at;
    return 0;
}

uint32_t cbase_slot(const struct comp *c, uint32_t pos)
{
    return pos == 0 ? c->nlocal_slots : c->st[pos - 1].slot + tslots(c->st[pos - 1].type);
}

int cemit_copy(struct comp *c, uint32_t dst, uint32_t src, uint8_t t)
{
    uint32_t at = 0;
    if (t != WASM_V128 && c->copy_at >= 0 && c->copy_at + 2 == c->n) { /* COPY COPY -> COPY2 */
        at = (uint32_t)c->copy_at;
        if (cappend_cell(c) < 0) return -1;
        c->code[at].h = c->handlers[WOP_COPY2];
        c->code[at + 2].s.a = dst;
        c->code[at + 2].s.b = src;
        c->copy_at = -1;
        return 0;
    }
    if (cemit(c, t == WASM_V128 ? WOP_COPY128 : WOP_COPY, 2, &at) < 0) return -1;
    c->code[at + 1].s.a = dst;
    c->code[at + 1].s.b = src;
    if (t != WASM_V128) c->copy_at = at;
    return 0;
}

/* Bring entry pos into its own slot. */
int cmaterialize(struct comp *c, uint32_t pos)
{
    struct centry *e = &c->st[pos];
    uint32_t at = 0;
    if (e->kind == CE_STACK) return 0;
    if (e->kind == CE_LOCAL) c->lrefs[e->local]--;
    if (!cdead(c)) {
        if (e->kind == CE_LOCAL) {
            if (cemit_copy(c, canon(c, pos), clocal(c, e->local), e->type) < 0) return -1;
        } else {
            if (cemit(c, WOP_CONST, 3, &at) < 0) return -1;
            c->code[at + 1].s.a = canon(c, pos);
            c->code[at + 2].u = e->cval;
        }
    }
    e->kind = CE_STACK;
    return 0;
}

/* Before a control instruction: bring the n entries below the top `skip` ones into their
 * slots (the values it carries to a label or a callee), and, with locals, every entry that
 * still refers to a local (a block may change the local on one path only). Lazy constants
 * below stay lazy: no path can change them, and every path after a merge reads them as the
 * same constant. Only entries from lazy_lo up can be lazy, so repeated control instructions
 * over a deep stack cost nothing beyond the entries that changed. */
int cmaterialize_top(struct comp *c, uint32_t n, uint32_t skip, bool locals)
{
    uint32_t hi = c->sh >= skip ? c->sh - skip : 0, lo = hi >= n ? hi - n : 0, lazy = c->sh;
    uint32_t floor = c->cs[c->ch - 1].height;
    if (lo < floor) lo = floor; /* unreachable code: the rest is the polymorphic stack */
    for (uint32_t i = c->lazy_lo; i < c->sh; i++) {
        bool need = (i >= lo && i < hi) || (locals && c->st[i].kind == CE_LOCAL);
        if (need && cmaterialize(c, i) < 0) return -1;
        if (c->st[i].kind != CE_STACK && i < lazy) lazy = i;
    }
    c->lazy_lo = lazy;
    return 0;
}

void cset_local(struct comp *c, uint32_t x)
{
    uint32_t pos = c->sh - 1;
    if (cdead(c)) return;
    c->st[pos].kind = CE_LOCAL;
    c->st[pos].local = x;
    c->lrefs[x]++;
    if (pos < c->lazy_lo) c->lazy_lo = pos;
}

void cset_const(struct comp *c, uint64_t v)
{
    uint32_t pos = c->sh - 1;
    c->st[pos].kind = CE_CONST;
    c->st[pos].cval = v;
    if (pos < c->lazy_lo) c->lazy_lo = pos;
}

/* The slot an instruction reads entry `pos` from (pos may just have been popped). */
int csrc(struct comp *c, uint32_t pos, uint32_t *slot)
{
    if (c->st[pos].kind == CE_CONST && cmaterialize(c, pos) < 0) return -1;
    *slot = c->st[pos].kind == CE_LOCAL ? clocal(c, c->st[pos].local) : canon(c, pos);
    return 0;
}

/* ---- operand stack ------------------------------------------------------------------- */
/* Put a new entry of the given type at position sh (not counted in sh yet). */
static int new_entry(struct comp *c, uint8_t type)
{
    if (grow(c, (void **)&c->st, &c->scap, c->sh + 1, sizeof(*c->st)) < 0) return -1;
    uint32_t slot = cbase_slot(c, c->sh);
    if (slot + 2 > WASM_MAX_LOCALS * 4) return cfail(c, "operand stack too deep");
    c->st[c->sh] = (struct centry){.type = type, .kind = CE_STACK, .slot = slot};
    if (slot + tslots(type) > c->max_slot) c->max_slot = slot + tslots(type);
    return 0;
}

int cpush(struct comp *c, uint8_t type)
{
    if (new_entry(c, type) < 0) return -1;
    c->sh++;
    return 0;
}

/* Push a value produced by the instruction at `at` (dst in cells[at+1].s.a). */
int cpush_result(struct comp *c, uint8_t type, uint32_t at)
{
    if (cpush(c, type) < 0) return -1;
    if (!cdead(c)) {
        c->code[at + 1].s.a = canon(c, c->sh - 1);
        c->last_prod = (int64_t)at;
        c->last_pos = c->sh - 1;
    }
    return 0;
}

/* Pop one operand, checking its type (want 0 = any). Sets *pos to its stack position and
 * *type to its type (0 = unknown, from the polymorphic stack of unreachable code). */
int cpop(struct comp *c, uint8_t want, uint32_t *pos, uint8_t *type)
{
    struct cframe *f = &c->cs[c->ch - 1];
    if (c->sh == f->height) {
        if (!f->unreachable) return cfail(c, "type mismatch (operand stack underflow)");
        *pos = c->sh; /* a slot that exists; unreachable code emits nothing anyway */
        if (type) *type = want;
        return new_entry(c, want);
    }
    uint8_t t = c->st[c->sh - 1].type;
    if (want && t && t != want) return cfail(c, "type mismatch");
    c->sh--;
    if (c->st[c->sh].kind == CE_LOCAL) c->lrefs[c->st[c->sh].local]--;
    *pos = c->sh;
    if (type) *type = t ? t : want;
    return 0;
}

/* Check that the top of the stack holds types[0..n) without popping. */
int cpeek_types(struct comp *c, const uint8_t *types, uint32_t n)
{
    struct cframe *f = &c->cs[c->ch - 1];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t depth = n - i; /* 1 = top */
        if (c->sh < f->height + depth) {
            if (!f->unreachable) return cfail(c, "type mismatch (operand stack underflow)");
            continue;
        }
        uint8_t t = c->st[c->sh - depth].type;
        if (t && t != types[i]) return cfail(c, "type mismatch");
    }
    return 0;
}

int cpop_types(struct comp *c, const uint8_t *types, uint32_t n)
{
    for (uint32_t i = n; i-- > 0;) {
        uint32_t pos = 0;
        if (cpop(c, types[i], &pos, NULL) < 0) return -1;
    }
    return 0;
}

/* ---- control frames ------------------------------------------------------------------ */
int cpush_frame(struct comp *c, uint8_t op, const struct cblocktype *bt)
{
    if (grow(c, (void **)&c->cs, &c->ccap, c->ch + 1, sizeof(*c->cs)) < 0) return -1;
    struct cframe *f = &c->cs[c->ch];
    memset(f, 0, sizeof(*f));
    f->op = op;
    f->bt = *bt;
    f->height = c->sh; /* the caller pushes the block's params after this */
    f->dead = c->ch > 0 && cdead(c);
    f->start = c->n;
    int64_t last_at = c->last_at, prev_at = c->prev_at;
    ctarget(c);
    if (op != 0x03) /* only a loop's start is a branch target: adjacent code may still fuse */
        c->last_at = last_at, c->prev_at = prev_at;
    c->ch++;
    /* A block's code may run again (loops) or be entered from elsewhere: nothing before its
     * start may be retargeted or fused with what follows. */
    c->last_prod = -1;
    return 0;
}

/* Link a forward branch's offset cell into frame f's patch chain. */
void cadd_patch(struct comp *c, struct cframe *f, uint32_t cell)
{
    c->code[cell].u = f->patch; /* previous chain head (cell index + 1), 0 = end */
    f->patch = cell + 1;
}

void cresolve(struct comp *c, uint32_t chain, uint32_t target)
{
    while (chain) {
        uint32_t cell = chain - 1;
        chain = (uint32_t)c->code[cell].u;
        c->code[cell].i = (int64_t)target - (int64_t)cell;
    }
}

const uint8_t *clabel_types(const struct cframe *f, uint32_t *n)
{
    if (f->op == 0x03) {
        *n = f->bt.nparams;
        return f->bt.params;
    }
    *n = f->bt.nresults;
    return f->bt.results;
}

/* Copy the top n (materialised) entries to the label's slots. */
static int branch_copies(struct comp *c, const struct cframe *f, uint32_t n)
{
    if (c->sh < n) return 0;
    uint32_t from = c->sh - n, to = cbase_slot(c, f->height);
    if (from == f->height) return 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t t = c->st[from + i].type;
        if (cemit_copy(c, to * 8u, canon(c, from + i), t) < 0) return -1;
        to += tslots(t);
    }
    return 0;
}

bool cneeds_copies(const struct comp *c, const struct cframe *f)
{
    uint32_t n = 0;
    clabel_types(f, &n);
    return n > 0 && c->sh >= n && c->sh - n != f->height;
}

/* Emit the return sequence: results to slots 0.., then RET. Stack must be materialised. */
int cemit_return(struct comp *c)
{
    const struct wasm_functype *t = c->ftype;
    uint32_t n = t->nresults, at, to = 0;
    if (c->sh >= n) {
        uint32_t from = c->sh - n;
        for (uint32_t i = 0; i < n; i++) {
            uint8_t ty = t->types[t->nparams + i];
            if (canon(c, from + i) != to * 8u && cemit_copy(c, to * 8u, canon(c, from + i), ty) < 0)
                return -1;
            to += tslots(ty);
        }
    }
    if (cfuse_copy(c, WOP_RET_COPY, WOP_RET_COPY2) >= 0) return 0;
    return cemit(c, WOP_RET, 1, &at);
}

int64_t cfuse_copy(struct comp *c, enum wop after_copy, enum wop after_copy2)
{
    int64_t at = c->last_at;
    if (at < 0) return -1;
    if (c->code[at].h == c->handlers[WOP_COPY] && at + 2 == c->n)
        c->code[at].h = c->handlers[after_copy];
    else if (c->code[at].h == c->handlers[WOP_COPY2] && at + 3 == c->n)
        c->code[at].h = c->handlers[after_copy2];
    else
        return -1;
    c->copy_at = -1;
    c->last_prod = -1;
    return at;
}

/* A VM's instruction fetch before the back-edge to its switch: i = mem32[a + off] (LD32),
 * ra = b + ((x >> k) & m) (ADD_BFX), both just emitted, become FETCH_LD
 * [d1|a][off|d2][b|x][k|m][br off], which then runs the switch. Returns the offset cell. */
static int64_t fuse_fetch(struct comp *c)
{
    int64_t ld = c->prev_at;
    union wcell *k = c->code;
    if (ld < 0 || c->last_at != ld + 3 || ld + 7 != c->n || k[ld].h != c->handlers[WOP_LD32] ||
        k[ld + 3].h != c->handlers[WOP_ADD_BFX])
        return 0;
    uint32_t off = (uint32_t)k[ld + 2].u, d2 = k[ld + 4].s.a, b = k[ld + 4].s.b;
    uint32_t x = k[ld + 5].s.a, sh = k[ld + 5].s.b, m = k[ld + 6].s.a;
    k[ld].h = c->handlers[WOP_FETCH_LD];
    k[ld + 2].u = 0, k[ld + 3].u = 0, k[ld + 4].u = 0, k[ld + 5].u = 0;
    k[ld + 2].s.a = off, k[ld + 2].s.b = d2;
    k[ld + 3].s.a = b, k[ld + 3].s.b = x;
    k[ld + 4].s.a = sh, k[ld + 4].s.b = m;
    c->n = (uint32_t)ld + 6;
    c->last_at = ld, c->prev_at = -1;
    return ld + 5;
}

int64_t cemit_jump(struct comp *c, bool to_switch)
{
    uint32_t at = 0;
    int64_t add = c->last_at;
    if (to_switch) {
        int64_t cell = fuse_fetch(c);
        if (cell != 0) return cell;
    } else if (add >= 0 && add + 3 == c->n && c->code[add].h == c->handlers[WOP_I32_ADD_I]) {
        int64_t cp = c->prev_at;
        c->last_prod = -1;
        c->copy_at = -1;
        if (cp >= 0 && cp + 3 == add && c->code[cp].h == c->handlers[WOP_COPY2]) {
            /* [d|s][d2|s2] + [dst|a][imm] -> [d|s][d2|s2][dst|a][imm][off] */
            c->code[cp].h = c->handlers[WOP_COPY2_ADD_I_BR];
            c->code[add] = c->code[add + 1];
            c->code[add + 1] = c->code[add + 2];
            c->code[add + 2].u = 0;
            c->last_at = cp, c->prev_at = -1;
            return add + 2;
        }
        if (cappend_cell(c) < 0) return -1; /* [dst|a][imm] -> [dst|a][imm][off] */
        c->code[add].h = c->handlers[WOP_ADD_I_BR];
        return add + 3;
    }
    if (cemit(c, to_switch ? WOP_BR_LD : WOP_BR, 2, &at) < 0) return -1;
    return at + 1;
}

/* Unconditional branch to frame depth l, stack materialised and types checked. */
int cemit_branch(struct comp *c, uint32_t l)
{
    struct cframe *f = &c->cs[c->ch - 1 - l];
    uint32_t n = 0;
    clabel_types(f, &n);
    if (l == c->ch - 1) return cemit_return(c);
    /* A back-edge to a loop that starts with a lookup-table switch (a VM's dispatch) runs
     * that switch itself: one dispatch less per iteration. */
    bool to_switch =
        f->op == 0x03 && f->start < c->n && c->code[f->start].h == c->handlers[WOP_BR_TABLE_LD];
    if (branch_copies(c, f, n) < 0) return -1;
    int64_t cell = cemit_jump(c, to_switch);
    if (cell < 0) return -1;
    if (f->op == 0x03)
        c->code[cell].i = (int64_t)f->start - cell;
    else
        cadd_patch(c, f, (uint32_t)cell);
    return 0;
}

void cset_unreachable(struct comp *c)
{
    struct cframe *f = &c->cs[c->ch - 1];
    for (uint32_t i = f->height; i < c->sh; i++) /* entries dropped here stop referring */
        if (c->st[i].kind == CE_LOCAL) c->lrefs[c->st[i].local]--, c->st[i].kind = CE_STACK;
    c->sh = f->height;
    f->unreachable = true;
}

/* ---- block types and locals ---------------------------------------------------------- */
static const uint8_t one_type[256] = {
    [WASM_I32] = WASM_I32,
    [WASM_I64] = WASM_I64,
    [WASM_F32] = WASM_F32,
    [WASM_F64] = WASM_F64,
    [WASM_V128] = WASM_V128,
    [WASM_FUNCREF] = WASM_FUNCREF,
    [WASM_EXTERNREF] = WASM_EXTERNREF,
};

int cread_blocktype(struct comp *c, struct cblocktype *bt)
{
    memset(bt, 0, sizeof(*bt));
    if (c->r.p >= c->r.end) return wr_fail(&c->r, "decode: unexpected end");
    uint8_t b = *c->r.p;
    if (b == 0x40) {
        c->r.p++;
        return 0;
    }
    if (one_type[b]) {
        c->r.p++;
        bt->results = &one_type[b];
        bt->nresults = 1;
        return 0;
    }
    int64_t idx = 0;
    if (wr_s33(&c->r, &idx) < 0) return -1;
    if (idx < 0 || (uint64_t)idx >= c->m->ntypes) return cfail(c, "unknown type (block type)");
    const struct wasm_functype *t = &c->m->types[idx];
    bt->params = t->types;
    bt->nparams = t->nparams;
    bt->results = t->types + t->nparams;
    bt->nresults = t->nresults;
    return 0;
}

static int read_locals(struct comp *c, const struct wasm_functype *t)
{
    uint32_t ngroups = 0;
    uint64_t total = t->nparams;
    if (wr_u32(&c->r, &ngroups) < 0) return -1;
    const uint8_t *save = c->r.p;
    for (int pass = 0; pass < 2; pass++) {
        c->r.p = save;
        uint64_t k = t->nparams;
        for (uint32_t g = 0; g < ngroups; g++) {
            uint32_t cnt = 0;
            uint8_t vt = 0;
            if (wr_u32(&c->r, &cnt) < 0 || wr_u8(&c->r, &vt) < 0) return -1;
            if (pass == 0) {
                total += cnt;
                if (total > WASM_MAX_LOCALS) return wr_fail(&c->r, "decode: too many locals");
                if (!one_type[vt]) return wr_fail(&c->r, "decode: malformed value type");
                continue;
            }
            memset(c->ltypes + k, vt, cnt);
            k += cnt;
        }
        if (pass == 0) {
            c->ltypes = malloc(total ? total : 1);
            if (!c->ltypes) return gate_err(c->err, GATE_E_NOMEM, "compile: out of memory");
            memcpy(c->ltypes, t->types, t->nparams);
        }
    }
    c->nlocals_all = (uint32_t)total;
    c->lrefs = calloc(total ? total : 1, sizeof(uint32_t));
    c->loff = malloc((total + 1) * sizeof(uint32_t));
    if (!c->lrefs || !c->loff) return gate_err(c->err, GATE_E_NOMEM, "compile: out of memory");
    uint32_t slot = 0;
    for (uint32_t x = 0; x < total; x++) {
        c->loff[x] = slot;
        slot += tslots(c->ltypes[x]);
        if (x + 1 == t->nparams) c->nparam_slots = slot;
    }
    c->nlocal_slots = slot;
    return 0;
}

/* ---- the function -------------------------------------------------------------------- */
static void comp_free(struct comp *c)
{
    free(c->code);
    free(c->st);
    free(c->cs);
    free(c->ltypes);
    free(c->lrefs);
    free(c->loff);
}

int wasm_compile_func(struct wasm_module *m, uint32_t i, struct gate_error *err)
{
    struct wfunc_def *fd = &m->funcs[i];
    struct comp c = {.m = m,
                     .err = err,
                     .func_index = m->nfunc_imports + i,
                     .last_prod = -1,
                     .copy_at = -1,
                     .last_at = -1,
                     .prev_at = -1};
    c.r = (struct wreader){m->bytes, fd->body, fd->body + fd->body_len, err};
    c.ftype = &m->types[fd->type_idx];
    c.handlers = wasm_interp_handlers();
    if (read_locals(&c, c.ftype) < 0) goto fail;
    struct cblocktype bt = {.results = c.ftype->types + c.ftype->nparams,
                            .nresults = c.ftype->nresults};
    if (cpush_frame(&c, 0, &bt) < 0) goto fail;
    while (c.ch > 0) {
        if (c.r.p >= c.r.end) {
            wr_fail(&c.r, "decode: unexpected end of function body (END opcode expected)");
            goto fail;
        }
        if (ccompile_instr(&c) < 0) goto fail;
    }
    if (c.r.p != c.r.end) {
        wr_fail(&c.r, "decode: section size mismatch (operators after the function's end)");
        goto fail;
    }
    fd->code.cells = c.code;
    fd->code.ncells = c.n;
    fd->code.nparams = c.nparam_slots;
    fd->code.nlocals = c.nlocal_slots - c.nparam_slots;
    fd->code.frame_slots = (c.max_slot > c.nlocal_slots ? c.max_slot : c.nlocal_slots) + 2;
    fd->local_types = c.ltypes;
    c.code = NULL;
    c.ltypes = NULL;
    comp_free(&c);
    return 0;
fail:
    comp_free(&c);
    return -1;
}

/* The instruction that produced entry pos, if it was the last one emitted and is op: its
 * index (the entry is its only reader, so it may be rewritten into a fused instruction),
 * else -1. */
int64_t cproducer(const struct comp *c, uint32_t pos, enum wop op)
{
    if (c->last_prod < 0 || c->last_pos != pos || c->st[pos].kind != CE_STACK) return -1;
    return c->code[c->last_prod].h == c->handlers[op] ? c->last_prod : -1;
}

/* ---- fused compare-and-branch ---------------------------------------------------------- */
struct fuse {
    uint16_t cmp, brif, brif_neg;
};
static const struct fuse fuses[] = {
#define FUSE_ROW(name, neg, t, expr) {WOP_##name, WOP_BRIF_##name, WOP_BRIF_##neg},
    WASM_BRCMP(FUSE_ROW)
#undef FUSE_ROW
};

int cappend_cell(struct comp *c)
{
    if (grow(c, (void **)&c->code, &c->cap, c->n + 1, sizeof(union wcell)) < 0) return -1;
    c->code[c->n++].u = 0;
    return 0;
}

/* If the entry at pos is the result of the comparison emitted last, rewrite that comparison
 * into a conditional branch taken when it holds (or fails, if negate). Returns the index of
 * the branch's offset cell, 0 if there was nothing to fuse, -1 on allocation failure. */
int64_t cfuse_branch(struct comp *c, uint32_t pos, bool negate)
{
    if (c->last_prod < 0 || c->last_pos != pos) return 0;
    uint32_t at = (uint32_t)c->last_prod;
    int64_t h = c->code[at].h;
    uint32_t a = c->code[at + 1].s.b;
    c->last_prod = -1;
    for (size_t i = 0; i < sizeof(fuses) / sizeof(fuses[0]); i++) {
        enum wop br = negate ? fuses[i].brif_neg : fuses[i].brif;
        if (h == c->handlers[fuses[i].cmp]) { /* [dst|a][b] -> [a|b][off] */
            c->code[at].h = c->handlers[br];
            c->code[at + 1].s.b = c->code[at + 2].s.a;
            c->code[at + 1].s.a = a;
            c->code[at + 2].u = 0;
            return at + 2;
        }
        if (h == c->handlers[fuses[i].cmp + 1]) { /* [dst|a][imm] -> [a][imm][off] */
            if (cappend_cell(c) < 0) return -1;
            c->code[at].h = c->handlers[br + 1];
            c->code[at + 1].s.a = a;
            c->code[at + 1].s.b = 0;
            return at + 3;
        }
    }
    if (h == c->handlers[WOP_I32_AND_I] || h == c->handlers[WOP_TESTZ_I]) {
        /* [dst|a][imm] -> [a][imm][off]: branch on (a & imm) != 0 or == 0 */
        bool zero = (h == c->handlers[WOP_TESTZ_I]) != negate;
        if (cappend_cell(c) < 0) return -1;
        c->code[at].h = c->handlers[zero ? WOP_BR_IF_TESTZ_I : WOP_BR_IF_TEST_I];
        c->code[at + 1].s.a = a;
        c->code[at + 1].s.b = 0;
        return at + 3;
    }
    enum wop br;
    int64_t k = c->prev_at;
    if (h == c->handlers[WOP_I32_EQZ] && !negate && k >= 0 && k + 3 == at &&
        c->code[k].h == c->handlers[WOP_CONST]) {
        /* [dst][value] + [dst2|a] -> [dst|a][value][off]: a constant stored just before */
        c->code[k].h = c->handlers[WOP_CONST_BR_IF_EQZ];
        c->code[k + 1].s.b = a;
        c->code[k + 3].u = 0;
        c->n = (uint32_t)k + 4; /* the EQZ was the last instruction: nothing refers to it */
        c->last_at = -1;
        return k + 3;
    }
    if (h == c->handlers[WOP_I32_EQZ])
        br = negate ? WOP_BR_IF : WOP_BR_IF_EQZ;
    else if (h == c->handlers[WOP_I64_EQZ])
        br = negate ? WOP_BR_IF_NEZ64 : WOP_BR_IF_EQZ64;
    else
        return 0;
    if (cappend_cell(c) < 0) /* [dst|a] -> [a][off] */
        return -1;
    c->code[at].h = c->handlers[br];
    c->code[at + 1].s.a = a;
    c->code[at + 1].s.b = 0;
    return at + 2;
}
