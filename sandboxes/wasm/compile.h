/* compile.h: state of the one-pass validator/compiler, shared by compile.c (stacks, frames,
 * emission) and compile_instr.c (one case per WebAssembly instruction). */
#ifndef GATE_WASM_COMPILE_H
#define GATE_WASM_COMPILE_H

#include "wasm_internal.h"

enum centry_kind { CE_STACK, CE_LOCAL, CE_CONST };

struct centry {
    uint8_t type;  /* 0 = unknown (polymorphic stack) */
    uint8_t kind;  /* enum centry_kind */
    uint32_t slot; /* the entry's own frame slot (a v128 takes this one and the next) */
    uint32_t local;
    uint64_t cval;
};

/* Frame slots a value of type t takes. */
static inline uint32_t tslots(uint8_t t)
{
    return t == WASM_V128 ? 2u : 1u;
}

struct cblocktype {
    const uint8_t *params, *results;
    uint32_t nparams, nresults;
};

struct cframe {
    uint8_t op; /* 0 function, 0x02 block, 0x03 loop, 0x04 if, 0x05 else */
    struct cblocktype bt;
    uint32_t height;
    bool unreachable;    /* validation: the rest of the frame is unreachable (polymorphic stack) */
    bool dead;           /* the frame starts in unreachable code: emit nothing */
    uint32_t start;      /* cell index where the frame's code starts (loop target) */
    uint32_t patch;      /* chain of forward-branch offset cells (index + 1) */
    uint32_t else_patch; /* if: offset cell of the BR_UNLESS to the else part (index + 1) */
    uint32_t cost_cell;  /* loop: cell holding the LOOP op's fuel cost (index + 1) */
};

struct comp {
    struct wasm_module *m;
    struct wreader r;
    struct gate_error *err;
    uint32_t func_index;
    const struct wasm_functype *ftype;
    const int32_t *handlers;
    union wcell *code;
    uint32_t n, cap;
    struct centry *st;
    uint32_t sh, scap;
    uint32_t max_slot; /* one past the highest operand-stack slot used */
    struct cframe *cs;
    uint32_t ch, ccap;
    uint8_t *ltypes;
    uint32_t nlocals_all; /* params + locals */
    uint32_t *loff;       /* per local: its frame slot */
    uint32_t nlocal_slots, nparam_slots;
    uint32_t *lrefs;   /* per local: stack entries referring to it (CE_LOCAL) */
    uint32_t lazy_lo;  /* no entry below this position is CE_LOCAL or CE_CONST */
    int64_t last_prod; /* instruction whose dst may be retargeted, -1 none */
    int64_t copy_at;   /* a COPY that is the last instruction and no branch target, -1 */
    int64_t last_at;   /* the last instruction, -1 if what follows is a branch target */
    int64_t prev_at;   /* the one before it, -1 likewise */
    uint32_t last_pos;
};

int cfail(struct comp *c, const char *what);
bool cdead(const struct comp *c);
int cemit(struct comp *c, enum wop op, uint32_t ncells, uint32_t *at);
int cmaterialize(struct comp *c, uint32_t pos);
/* Byte offsets in the frame: of local x, of stack entry pos, of the slot an entry pushed at
 * position pos would get. */
static inline uint32_t clocal(const struct comp *c, uint32_t x)
{
    return c->loff[x] * 8u;
}
static inline uint32_t canon(const struct comp *c, uint32_t pos)
{
    return c->st[pos].slot * 8u;
}
uint32_t cbase_slot(const struct comp *c, uint32_t pos);
/* Copy a value of type t between two frame offsets (COPY, or COPY128 for a v128). */
int cemit_copy(struct comp *c, uint32_t dst, uint32_t src, uint8_t t);
/* The code emitted next is a branch target: nothing before may be fused with it. */
static inline void ctarget(struct comp *c)
{
    c->copy_at = -1;
    c->last_prod = -1;
    c->last_at = -1;
    c->prev_at = -1;
}
int cmaterialize_top(struct comp *c, uint32_t n, uint32_t skip, bool locals);
int csrc(struct comp *c, uint32_t pos, uint32_t *slot);
int cpush(struct comp *c, uint8_t type);
/* Turn the entry on top into a reference to local x, or into the constant v. */
void cset_local(struct comp *c, uint32_t x);
void cset_const(struct comp *c, uint64_t v);
int cpush_result(struct comp *c, uint8_t type, uint32_t at);
int cpop(struct comp *c, uint8_t want, uint32_t *pos, uint8_t *type);
int cpeek_types(struct comp *c, const uint8_t *types, uint32_t n);
int cpop_types(struct comp *c, const uint8_t *types, uint32_t n);
/* Pop n (at most 4) operands of the given types (the last on top) and return the frame
 * offsets to read them from. */
int cpop_srcs(struct comp *c, const uint8_t *types, uint32_t n, uint32_t *slots);
int cpush_frame(struct comp *c, uint8_t op, const struct cblocktype *bt);
void cadd_patch(struct comp *c, struct cframe *f, uint32_t cell);
void cresolve(struct comp *c, uint32_t chain, uint32_t target);
const uint8_t *clabel_types(const struct cframe *f, uint32_t *n);
bool cneeds_copies(const struct comp *c, const struct cframe *f);
int cemit_return(struct comp *c);
/* If the last instruction is a COPY or COPY2 (no branch target since), turn it into the given
 * fused form, whose handler does the copies and then that instruction's own work. Returns
 * its index, or -1 if there was no copy. */
int64_t cfuse_copy(struct comp *c, enum wop after_copy, enum wop after_copy2);
/* An unconditional jump (BR, or BR_LD to a loop starting with a BR_TABLE_LD when to_switch),
 * fused with the instructions before it where it can: an i32.add of a constant (ADD_I_BR, or
 * COPY2_ADD_I_BR after a COPY2: a Lua VM's instruction tail), a VM's instruction fetch
 * (FETCH_LD). Returns the cell to write its offset into, or -1. */
int64_t cemit_jump(struct comp *c, bool to_switch);
int cemit_branch(struct comp *c, uint32_t l);
void cset_unreachable(struct comp *c);
int cread_blocktype(struct comp *c, struct cblocktype *bt);
int64_t cfuse_branch(struct comp *c, uint32_t pos, bool negate);
int64_t cproducer(const struct comp *c, uint32_t pos, enum wop op);
int cappend_cell(struct comp *c); /* one more (zero) cell for the last instruction */
int ccompile_instr(struct comp *c);
int ccompile_misc(struct comp *c, uint8_t op); /* memory, table, reference instructions */
int ccompile_fc(struct comp *c);               /* the 0xFC prefix */
int ccompile_trunc_sat(struct comp *c, uint32_t sub);
int ccompile_simd(struct comp *c); /* the 0xFD prefix (compile_simd.c) */

#endif
