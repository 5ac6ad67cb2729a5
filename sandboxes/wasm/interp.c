/* interp.c: the interpreter loop.
 *
 * Direct-threaded: every instruction starts with its handler's address (gcc's labels as
 * values), so dispatch is one indirect jump. Operands are byte offsets of 8-byte value slots
 * relative to the frame pointer fp (params, locals, then the operand stack of compile.c).
 * Calls stay in this loop (no C recursion): a frame record saves pc, fp and the instance, and
 * both the frame array and the value stack are checked before a call ("call stack
 * exhausted"). Fuel is charged at loop headers and calls from a local budget refilled in
 * slices; each refill also checks the wall-clock deadline. The memory base and size are
 * cached in locals and reloaded after calls, returns and memory.grow.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "wasm_float.h"
#include "wasm_internal.h"
#include "wasm_simd.h"

#define FUEL_SLICE 20000

#define CT_I uint32_t
#define CT_L uint64_t
#define CT_F float
#define CT_D double
#define SLOTP(T, o) ((T *)((char *)fp + (o)))
#define RD(t, o) (*SLOTP(CT_##t, o))
#define WR_I(o, v) (*SLOTP(uint64_t, o) = (uint32_t)(v))
#define WR_L(o, v) (*SLOTP(uint64_t, o) = (uint64_t)(v))
#define WR_F(o, v) (*SLOTP(float, o) = (float)(v))
#define WR_D(o, v) (*SLOTP(double, o) = (double)(v))
#define SLOT(o) (*SLOTP(uint64_t, o))
#ifdef WASM_PAIR_PROFILE
/* A development build (cmake -DCMAKE_C_FLAGS=-DWASM_PAIR_PROFILE) counts executed pairs of
 * handlers and writes them at exit ("count first second" lines, to $WASM_PAIR_PROFILE_OUT or
 * stderr; a process that ends in _exit writes nothing): where a super-instruction would pay. */
#define PROF_N (1u << 16)
static struct {
    int64_t a, b;
    uint64_t n;
} prof_tab[PROF_N];
static int64_t prof_prev;
static void prof_pair(int64_t h)
{
    uint64_t k = ((uint64_t)prof_prev * 0x9e3779b97f4a7c15u) ^ (uint64_t)h * 0xff51afd7ed558ccdu;
    for (uint32_t i = (uint32_t)(k >> 40) & (PROF_N - 1);; i = (i + 1) & (PROF_N - 1)) {
        if (prof_tab[i].n == 0) prof_tab[i].a = prof_prev, prof_tab[i].b = h;
        if (prof_tab[i].a == prof_prev && prof_tab[i].b == h) {
            prof_tab[i].n++;
            break;
        }
    }
    prof_prev = h;
}
#define NEXT()                                                                                     \
    do {                                                                                           \
        prof_pair(pc->h);                                                                          \
        goto *(&&L_UNREACHABLE + pc->h);                                                           \
    } while (0)
#else
/* Handler cells hold the handler's offset from L_UNREACHABLE, not its address: compiled code
 * holds no absolute address, so it can be shared between processes (wasm_module_share). */
#define NEXT() goto *(&&L_UNREACHABLE + pc->h)
#endif
#define TRAP(t)                                                                                    \
    do {                                                                                           \
        trap = WASM_TRAP_##t;                                                                      \
        goto out;                                                                                  \
    } while (0)
/* Trap unless the n bytes at ea lie inside the memory. An explicit compare, not guard pages
 * (a 4 GiB + guard reservation and a SIGSEGV handler): a build with these checks removed was
 * no faster on the Lua benchmarks (bench/wasm, 1.01-1.08x its time, within noise), the branch
 * being predicted and off the critical path, so the simpler, ASan-friendly check stays. */
#define MEMCHK(ea, n)                                                                              \
    do {                                                                                           \
        if (__builtin_expect((ea) + (n) > memsize, 0)) TRAP(MEM_OOB);                              \
    } while (0)
#define LOAD_MEM()                                                                                 \
    do {                                                                                           \
        mem = inst->mem ? inst->mem->data : NULL;                                                  \
        memsize = inst->mem ? inst->mem->size : 0;                                                 \
    } while (0)
/* Charge fuel; refill the local budget from the store, checking fuel and deadline. */
#define CHARGE(cost)                                                                               \
    do {                                                                                           \
        budget -= (int64_t)(cost);                                                                 \
        if (__builtin_expect(budget < 0, 0)) {                                                     \
            enum wasm_trap t_ = refill(s, &budget);                                                \
            if (t_) {                                                                              \
                trap = t_;                                                                         \
                goto out;                                                                          \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static enum wasm_trap refill(struct wasm_store *s, int64_t *budget)
{
    while (*budget < 0) {
        if (s->fuel == 0) return WASM_TRAP_FUEL;
        uint64_t take = s->fuel < FUEL_SLICE ? s->fuel : FUEL_SLICE;
        s->fuel -= take;
        *budget += (int64_t)take;
    }
    if (s->lim.deadline_ns && gate_monotonic_ns() > s->lim.deadline_ns) return WASM_TRAP_DEADLINE;
    return WASM_TRAP_NONE;
}

/* Take the branch whose offset cell is base[k]: offsets are relative to that cell. A negative
 * offset is a loop's back-edge: charge fuel for the loop body it repeats (its length in cells
 * over four, about one per instruction). */
#define JUMP(k)                                                                                    \
    do {                                                                                           \
        int64_t o_ = pc[k].i;                                                                      \
        pc += (k) + o_;                                                                            \
        if (o_ < 0) CHARGE(1 + ((uint64_t)-o_ >> 2));                                              \
    } while (0)

/* Handlers generated from WASM_NUMOPS, by shape. */
#define GEN_UN(name, ta, tr, expr)                                                                 \
    L_##name:                                                                                      \
    {                                                                                              \
        CT_##ta a = RD(ta, pc[1].s.b);                                                             \
        WR_##tr(pc[1].s.a, expr);                                                                  \
        pc += 2;                                                                                   \
        NEXT();                                                                                    \
    }                                                                                              \
    L_##name##_I : goto bad;
#define GEN_BIN(name, ta, tr, expr)                                                                \
    L_##name:                                                                                      \
    {                                                                                              \
        CT_##ta a = RD(ta, pc[1].s.b);                                                             \
        CT_##ta b = RD(ta, pc[2].s.a);                                                             \
        WR_##tr(pc[1].s.a, expr);                                                                  \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }
#define GEN_BINI(name, ta, tr, expr)                                                               \
    GEN_BIN(name, ta, tr, expr)                                                                    \
    L_##name##_I:                                                                                  \
    {                                                                                              \
        CT_##ta a = RD(ta, pc[1].s.b);                                                             \
        CT_##ta b = (CT_##ta)pc[2].u;                                                              \
        WR_##tr(pc[1].s.a, expr);                                                                  \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }
#define GEN_BIN_ONLY(name, ta, tr, expr) GEN_BIN(name, ta, tr, expr) L_##name##_I : goto bad;
#define GEN_TUN(name, ta, tr, expr) L_##name##_I : goto bad;
#define GEN_TBIN(name, ta, tr, expr) L_##name##_I : goto bad;
#define GEN_FREE(name, ta, tr, expr) L_##name : L_##name##_I : goto bad;
#define GEN_SHAPE_UN GEN_UN
#define GEN_SHAPE_BIN GEN_BIN_ONLY
#define GEN_SHAPE_BINI GEN_BINI
#define GEN_SHAPE_TUN GEN_TUN
#define GEN_SHAPE_TBIN GEN_TBIN
#define GEN_SHAPE_FREE GEN_FREE
#define GEN_NUM(code, name, shape, ta, tr, expr) GEN_SHAPE_##shape(name, ta, tr, expr)

/* Trapping float-to-int truncation: NaN is an invalid conversion, out of range overflows. */
#define GEN_TRUNC(name, ta, tr, ctype, lo, hi)                                                     \
    L_##name:                                                                                      \
    {                                                                                              \
        CT_##ta a = RD(ta, pc[1].s.b);                                                             \
        if (a != a) TRAP(INVALID_CONV);                                                            \
        if (!(a > (CT_##ta)(lo) && a < (CT_##ta)(hi))) TRAP(INT_OVERFLOW);                         \
        WR_##tr(pc[1].s.a, (ctype)a);                                                              \
        pc += 2;                                                                                   \
        NEXT();                                                                                    \
    }

#define GEN_DIV(name, t, st, minval, op, is_rem, is_signed)                                        \
    L_##name:                                                                                      \
    {                                                                                              \
        CT_##t a = RD(t, pc[1].s.b);                                                               \
        CT_##t b = RD(t, pc[2].s.a);                                                               \
        if (b == 0) TRAP(DIV_ZERO);                                                                \
        if (is_signed) {                                                                           \
            if ((st)b == -1) {                                                                     \
                if (!(is_rem) && (st)a == (minval)) TRAP(INT_OVERFLOW);                            \
                WR_##t(pc[1].s.a, (is_rem) ? 0 : (CT_##t)(0 - a));                                 \
            } else {                                                                               \
                WR_##t(pc[1].s.a, (CT_##t)((st)a op(st) b));                                       \
            }                                                                                      \
        } else {                                                                                   \
            WR_##t(pc[1].s.a, a op b);                                                             \
        }                                                                                          \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }

/* Loads and stores: [dst|addr][offset] and [addr|val][offset]; the _A forms take the address
 * as addr + imm (wrapping at 32 bits, as the i32.add they replace): [dst|addr][imm|offset]. */
#define LOAD_OP(name, n, ctype, conv)                                                              \
    L_##name:                                                                                      \
    {                                                                                              \
        uint64_t ea = (uint64_t)RD(I, pc[1].s.b) + pc[2].u;                                        \
        MEMCHK(ea, n);                                                                             \
        ctype v;                                                                                   \
        memcpy(&v, mem + ea, n);                                                                   \
        SLOT(pc[1].s.a) = conv;                                                                    \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }                                                                                              \
    L_##name##_A:                                                                                  \
    {                                                                                              \
        uint64_t ea = (uint64_t)(uint32_t)(RD(I, pc[1].s.b) + pc[2].s.a) + pc[2].s.b;              \
        MEMCHK(ea, n);                                                                             \
        ctype v;                                                                                   \
        memcpy(&v, mem + ea, n);                                                                   \
        SLOT(pc[1].s.a) = conv;                                                                    \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }
#define STORE_OP(name, n, ctype)                                                                   \
    L_##name:                                                                                      \
    {                                                                                              \
        uint64_t ea = (uint64_t)RD(I, pc[1].s.a) + pc[2].u;                                        \
        MEMCHK(ea, n);                                                                             \
        ctype v = (ctype)SLOT(pc[1].s.b);                                                          \
        memcpy(mem + ea, &v, n);                                                                   \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }                                                                                              \
    L_##name##_A:                                                                                  \
    {                                                                                              \
        uint64_t ea = (uint64_t)(uint32_t)(RD(I, pc[1].s.a) + pc[2].s.a) + pc[2].s.b;              \
        MEMCHK(ea, n);                                                                             \
        ctype v = (ctype)SLOT(pc[1].s.b);                                                          \
        memcpy(mem + ea, &v, n);                                                                   \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }

/* An i32.load, then a load from the address it read: [d2|a][o1|o2][d1]. */
#define LOAD_CHAIN_OP(name, n, ctype)                                                              \
    L_LD32_##name:                                                                                 \
    {                                                                                              \
        uint64_t ea = (uint64_t)RD(I, pc[1].s.b) + pc[2].s.a;                                      \
        MEMCHK(ea, 4);                                                                             \
        uint32_t p;                                                                                \
        memcpy(&p, mem + ea, 4);                                                                   \
        SLOT(pc[3].s.a) = p;                                                                       \
        ea = (uint64_t)p + pc[2].s.b;                                                              \
        MEMCHK(ea, n);                                                                             \
        ctype v;                                                                                   \
        memcpy(&v, mem + ea, n);                                                                   \
        SLOT(pc[1].s.a) = v;                                                                       \
        pc += 4;                                                                                   \
        NEXT();                                                                                    \
    }

/* A load, then a store of the value it read: [a|b][o1|o2], mem[b + o2] = mem[a + o1]. */
#define MOVE_OP(name, n, ctype)                                                                    \
    L_##name:                                                                                      \
    {                                                                                              \
        uint64_t ea = (uint64_t)RD(I, pc[1].s.a) + pc[2].s.a;                                      \
        MEMCHK(ea, n);                                                                             \
        ctype v;                                                                                   \
        memcpy(&v, mem + ea, n);                                                                   \
        ea = (uint64_t)RD(I, pc[1].s.b) + pc[2].s.b;                                               \
        MEMCHK(ea, n);                                                                             \
        memcpy(mem + ea, &v, n);                                                                   \
        pc += 3;                                                                                   \
        NEXT();                                                                                    \
    }

/* Store of a constant: [addr][offset][value]. */
#define STORE_IMM_OP(name, n, ctype)                                                               \
    L_##name:                                                                                      \
    {                                                                                              \
        uint64_t ea = (uint64_t)RD(I, pc[1].s.a) + pc[2].u;                                        \
        MEMCHK(ea, n);                                                                             \
        ctype v = (ctype)pc[3].u;                                                                  \
        memcpy(mem + ea, &v, n);                                                                   \
        pc += 4;                                                                                   \
        NEXT();                                                                                    \
    }

/* Fused compare-and-branch: [a|b][off] and [a][imm][off]. */
#define GEN_BRC(name, neg, t, expr)                                                                \
    L_BRIF_##name:                                                                                 \
    {                                                                                              \
        CT_##t a = RD(t, pc[1].s.a), b = RD(t, pc[1].s.b);                                         \
        if (expr)                                                                                  \
            JUMP(2);                                                                               \
        else                                                                                       \
            pc += 3;                                                                               \
        NEXT();                                                                                    \
    }                                                                                              \
    L_BRIF_##name##_I:                                                                             \
    {                                                                                              \
        CT_##t a = RD(t, pc[1].s.a), b = (CT_##t)pc[2].u;                                          \
        if (expr)                                                                                  \
            JUMP(3);                                                                               \
        else                                                                                       \
            pc += 4;                                                                               \
        NEXT();                                                                                    \
    }

#define LBL(name) [WOP_##name] = &&L_##name - &&L_UNREACHABLE
static enum wasm_trap run(struct wasm_store *s, struct wasm_func *entry,
                          const int32_t **handlers_out)
{
    static const int32_t labels[WOP__COUNT] = {
#define LBL_NUM(code, name, shape, ta, tr, expr) LBL(name), LBL(name##_I),
        WASM_NUMOPS(LBL_NUM)
#undef LBL_NUM
#define LBL_BRC(name, neg, t, expr) LBL(BRIF_##name), LBL(BRIF_##name##_I),
            WASM_BRCMP(LBL_BRC)
#undef LBL_BRC
#define LBL_CTL(name) LBL(name),
                WASM_CTLOPS(LBL_CTL)
#undef LBL_CTL
    };
    if (handlers_out) {
        *handlers_out = labels;
        return WASM_TRAP_NONE;
    }
    enum wasm_trap trap = WASM_TRAP_NONE;
    struct wframe *const frame_base = s->frames;
    struct wframe *const frame_end = s->frames + s->lim.max_call_depth;
    struct wframe *frame = frame_base;
    uint64_t *const stack_end = s->stack + s->lim.max_stack_slots;
    uint64_t *fp = s->stack;
    struct wasm_instance *inst = entry->inst;
    const struct wcode *code = entry->code;
    const union wcell *pc;
    uint8_t *mem;
    uint64_t memsize;
    int64_t budget = 0;
    struct wasm_func *f;
    uint64_t *nfp;

    if (fp + code->frame_slots > stack_end) TRAP(STACK_EXHAUSTED);
    memset(fp + code->nparams, 0, code->nlocals * sizeof(uint64_t));
    LOAD_MEM();
    pc = code->cells;
    CHARGE(1);
    NEXT();

    WASM_NUMOPS(GEN_NUM)
    WASM_BRCMP(GEN_BRC)

    GEN_DIV(I32_DIV_S, I, int32_t, INT32_MIN, /, 0, 1)
    GEN_DIV(I32_DIV_U, I, int32_t, INT32_MIN, /, 0, 0)
    GEN_DIV(I32_REM_S, I, int32_t, INT32_MIN, %, 1, 1)
    GEN_DIV(I32_REM_U, I, int32_t, INT32_MIN, %, 1, 0)
    GEN_DIV(I64_DIV_S, L, int64_t, INT64_MIN, /, 0, 1)
    GEN_DIV(I64_DIV_U, L, int64_t, INT64_MIN, /, 0, 0)
    GEN_DIV(I64_REM_S, L, int64_t, INT64_MIN, %, 1, 1)
    GEN_DIV(I64_REM_U, L, int64_t, INT64_MIN, %, 1, 0)
    GEN_TRUNC(I32_TRUNC_F32_S, F, I, int32_t, -2147483904.0, 2147483648.0)
    GEN_TRUNC(I32_TRUNC_F32_U, F, I, uint32_t, -1.0, 4294967296.0)
    GEN_TRUNC(I32_TRUNC_F64_S, D, I, int32_t, -2147483649.0, 2147483648.0)
    GEN_TRUNC(I32_TRUNC_F64_U, D, I, uint32_t, -1.0, 4294967296.0)
    GEN_TRUNC(I64_TRUNC_F32_S, F, L, int64_t, -9223373136366403584.0, 9223372036854775808.0)
    GEN_TRUNC(I64_TRUNC_F32_U, F, L, uint64_t, -1.0, 18446744073709551616.0)
    GEN_TRUNC(I64_TRUNC_F64_S, D, L, int64_t, -9223372036854777856.0, 9223372036854775808.0)
    GEN_TRUNC(I64_TRUNC_F64_U, D, L, uint64_t, -1.0, 18446744073709551616.0)

    LOAD_OP(LD32, 4, uint32_t, v)
    LOAD_OP(LD64, 8, uint64_t, v)
    LOAD_OP(LD8S32, 1, int8_t, (uint32_t)(int32_t)v)
    LOAD_OP(LD8U, 1, uint8_t, v)
    LOAD_OP(LD16S32, 2, int16_t, (uint32_t)(int32_t)v)
    LOAD_OP(LD16U, 2, uint16_t, v)
    LOAD_OP(LD8S64, 1, int8_t, (uint64_t)(int64_t)v)
    LOAD_OP(LD16S64, 2, int16_t, (uint64_t)(int64_t)v)
    LOAD_OP(LD32S64, 4, int32_t, (uint64_t)(int64_t)v)
    LOAD_CHAIN_OP(LD32, 4, uint32_t)
    LOAD_CHAIN_OP(LD8U, 1, uint8_t)
    LOAD_CHAIN_OP(LD64, 8, uint64_t)
    STORE_OP(ST32, 4, uint32_t)
    STORE_OP(ST64, 8, uint64_t)
    STORE_OP(ST8, 1, uint8_t)
    STORE_OP(ST16, 2, uint16_t)
    MOVE_OP(MOV32, 4, uint32_t)
    MOVE_OP(MOV64, 8, uint64_t)
    MOVE_OP(MOV8, 1, uint8_t)
    STORE_IMM_OP(ST32_I, 4, uint32_t)
    STORE_IMM_OP(ST64_I, 8, uint64_t)
    STORE_IMM_OP(ST8_I, 1, uint8_t)
    STORE_IMM_OP(ST16_I, 2, uint16_t)

L_UNREACHABLE:
    TRAP(UNREACHABLE);
L_BR: /* [off] */
    JUMP(1);
    NEXT();
L_ADD_I2: /* [d1|a1][imm1|imm2][d2|a2]: two I32_ADD_I in a row */
    WR_I(pc[1].s.a, RD(I, pc[1].s.b) + pc[2].s.a);
    WR_I(pc[3].s.a, RD(I, pc[3].s.b) + pc[2].s.b);
    pc += 4;
    NEXT();
L_ADD_I_BR: /* [dst|a][imm][off]: an I32_ADD_I, then a BR */
    WR_I(pc[1].s.a, RD(I, pc[1].s.b) + (uint32_t)pc[2].u);
    JUMP(3);
    NEXT();
L_COPY2_ADD_I_BR: /* [d|s][d2|s2][dst|a][imm][off]: a COPY2, then an ADD_I_BR */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    SLOT(pc[2].s.a) = SLOT(pc[2].s.b);
    WR_I(pc[3].s.a, RD(I, pc[3].s.b) + (uint32_t)pc[4].u);
    JUMP(5);
    NEXT();
L_BR_IF: /* [cond][off] */
    if (RD(I, pc[1].s.a))
        JUMP(2);
    else
        pc += 3;
    NEXT();
L_BR_UNLESS: /* [cond][off], only ever forward */
    pc = RD(I, pc[1].s.a) ? pc + 3 : pc + 2 + pc[2].i;
    NEXT();
L_BR_IF_EQZ: /* [cond][off] */
    if (!RD(I, pc[1].s.a))
        JUMP(2);
    else
        pc += 3;
    NEXT();
L_CONST_BR_IF_EQZ: /* [dst|cond][value][off]: a CONST, then a BR_IF_EQZ */
    SLOT(pc[1].s.a) = pc[2].u;
    if (!RD(I, pc[1].s.b))
        JUMP(3);
    else
        pc += 4;
    NEXT();
L_BR_IF_NEZ64:
    if (RD(L, pc[1].s.a))
        JUMP(2);
    else
        pc += 3;
    NEXT();
L_BR_IF_EQZ64:
    if (!RD(L, pc[1].s.a))
        JUMP(2);
    else
        pc += 3;
    NEXT();
L_BR_TABLE : { /* [idx|n][off 0]..[off n] */
    uint32_t i = RD(I, pc[1].s.a), n = pc[1].s.b;
    if (i > n) i = n;
    JUMP(2 + i);
    NEXT();
}
L_LOOP: /* [fuel cost] (not emitted: back-edges charge fuel in JUMP) */
    CHARGE(pc[1].u);
    pc += 2;
    NEXT();
L_COPY2: /* [dst|src][dst2|src2]: two copies in a row */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    SLOT(pc[2].s.a) = SLOT(pc[2].s.b);
    pc += 3;
    NEXT();
L_BFX: /* [dst|a][shift|mask]: (a >> shift) & mask, i32 */
    WR_I(pc[1].s.a, (RD(I, pc[1].s.b) >> (pc[2].s.a & 31)) & pc[2].s.b);
    pc += 3;
    NEXT();
L_ADD_BFX: /* [dst|a][b|shift][mask]: a + ((b >> shift) & mask), i32 */
    WR_I(pc[1].s.a, RD(I, pc[1].s.b) + ((RD(I, pc[2].s.a) >> (pc[2].s.b & 31)) & pc[3].s.a));
    pc += 4;
    NEXT();
L_ADD_SHL: /* [dst|a][b|shift]: a + (b << shift), i32 */
    WR_I(pc[1].s.a, RD(I, pc[1].s.b) + (RD(I, pc[2].s.a) << (pc[2].s.b & 31)));
    pc += 3;
    NEXT();
L_BR_TABLE_A : { /* [idx|n][imm][off 0]..[off n]: br_table on idx + imm */
    uint32_t i = RD(I, pc[1].s.a) + pc[2].s.a, n = pc[1].s.b;
    if (i > n) i = n;
    JUMP(3 + i);
    NEXT();
}
L_BR_TABLE_L8 : { /* [a|n][off|imm][d][off 0]..[off n]: br_table on mem8[a + off] + imm */
    uint64_t ea = (uint64_t)RD(I, pc[1].s.a) + pc[2].s.a;
    MEMCHK(ea, 1);
    uint32_t v = mem[ea], i = v + pc[2].s.b, n = pc[1].s.b;
    WR_I(pc[3].s.a, v); /* the loaded byte's slot, as the load left it */
    if (i > n) i = n;
    JUMP(4 + i);
    NEXT();
}
L_TESTZ_I: /* [dst|a][imm]: (a & imm) == 0 */
    WR_I(pc[1].s.a, (RD(I, pc[1].s.b) & pc[2].s.a) == 0);
    pc += 3;
    NEXT();
L_BR_IF_TEST_I: /* [a][imm][off]: branch if (a & imm) != 0 */
    if (RD(I, pc[1].s.a) & pc[2].s.a)
        JUMP(3);
    else
        pc += 4;
    NEXT();
L_BR_IF_TESTZ_I: /* [a][imm][off]: branch if (a & imm) == 0 */
    if (!(RD(I, pc[1].s.a) & pc[2].s.a))
        JUMP(3);
    else
        pc += 4;
    NEXT();
/* A switch compiled through a lookup table, as clang emits a Lua VM's opcode dispatch:
 * br_table on mem32[((a & m) << k) + imm + off] + imm2. AND_SHL, AND_SHL_ADD, LD32_IDX and
 * LD32_IDX_ADD are the steps towards BR_TABLE_LD, each the previous one with one more
 * instruction folded in (compile_instr.c, compile_mem.c). */
#define IDX_ADDR() (((RD(I, pc[1].s.b) & pc[2].s.a) << (pc[2].s.b & 31)) + pc[3].s.a)
L_AND_SHL: /* [dst|a][m|k] */
    WR_I(pc[1].s.a, (RD(I, pc[1].s.b) & pc[2].s.a) << (pc[2].s.b & 31));
    pc += 3;
    NEXT();
L_AND_SHL_ADD: /* [dst|a][m|k][imm] */
    WR_I(pc[1].s.a, IDX_ADDR());
    pc += 4;
    NEXT();
L_LD32_IDX : { /* [dst|a][m|k][imm|off] */
    uint64_t ea = (uint64_t)(uint32_t)(IDX_ADDR()) + pc[3].s.b;
    MEMCHK(ea, 4);
    uint32_t v;
    memcpy(&v, mem + ea, 4);
    SLOT(pc[1].s.a) = v;
    pc += 4;
    NEXT();
}
L_LD32_IDX_ADD : { /* [dst|a][m|k][imm|off][imm2] */
    uint64_t ea = (uint64_t)(uint32_t)(IDX_ADDR()) + pc[3].s.b;
    MEMCHK(ea, 4);
    uint32_t v;
    memcpy(&v, mem + ea, 4);
    WR_I(pc[1].s.a, v + pc[4].s.a);
    pc += 5;
    NEXT();
}
L_FETCH_LD : { /* [d1|a][off|d2][b|x][k|m][br off]: LD32 [d1|a][off], ADD_BFX, BR_LD */
    uint64_t ea = (uint64_t)RD(I, pc[1].s.b) + pc[2].s.a;
    MEMCHK(ea, 4);
    uint32_t v;
    memcpy(&v, mem + ea, 4);
    SLOT(pc[1].s.a) = v;
    WR_I(pc[2].s.b, RD(I, pc[3].s.a) + ((RD(I, pc[3].s.b) >> (pc[4].s.a & 31)) & pc[4].s.b));
    JUMP(5);
    goto br_table_ld;
}
L_BR_LD: /* [off]: a br to a BR_TABLE_LD, which follows here without a dispatch */
    JUMP(1);
br_table_ld:
L_BR_TABLE_LD : { /* [a|n][m|k][imm|off][imm2][off 0]..[off n] */
    uint64_t ea =
        (uint64_t)(uint32_t)(((RD(I, pc[1].s.a) & pc[2].s.a) << (pc[2].s.b & 31)) + pc[3].s.a) +
        pc[3].s.b;
    MEMCHK(ea, 4);
    uint32_t i, n = pc[1].s.b;
    memcpy(&i, mem + ea, 4);
    i += pc[4].s.a;
    if (i > n) i = n;
    JUMP(5 + i);
    NEXT();
}
L_COPY: /* [dst|src] */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    pc += 2;
    NEXT();
L_CONST: /* [dst][value] */
    SLOT(pc[1].s.a) = pc[2].u;
    pc += 3;
    NEXT();
L_SELECT: /* [dst|a][b|cond] */
    SLOT(pc[1].s.a) = RD(I, pc[2].s.b) ? SLOT(pc[1].s.b) : SLOT(pc[2].s.a);
    pc += 3;
    NEXT();
L_COPY128: /* [dst|src] */
    memmove(SLOTP(uint8_t, pc[1].s.a), SLOTP(uint8_t, pc[1].s.b), 16);
    pc += 2;
    NEXT();
L_SELECT128: /* [dst|a][b|cond] */
    memmove(SLOTP(uint8_t, pc[1].s.a), SLOTP(uint8_t, RD(I, pc[2].s.b) ? pc[1].s.b : pc[2].s.a),
            16);
    pc += 3;
    NEXT();
L_GLOBAL_GET128: /* [dst|idx] */
    memcpy(SLOTP(uint8_t, pc[1].s.a), inst->globals[pc[1].s.b]->v128, 16);
    pc += 2;
    NEXT();
L_GLOBAL_SET128: /* [src|idx] */
    memcpy(inst->globals[pc[1].s.b]->v128, SLOTP(uint8_t, pc[1].s.a), 16);
    pc += 2;
    NEXT();
L_SIMD : { /* [dst|a][op|b]..., see wasm_simd.h */
    uint32_t n = wasm_simd_fns[pc[2].s.a]((uint8_t *)fp, pc, mem, memsize);
    if (__builtin_expect(!n, 0)) TRAP(MEM_OOB);
    pc += n;
    NEXT();
}
L_GLOBAL_GET: /* [dst|idx] */
    SLOT(pc[1].s.a) = inst->globals[pc[1].s.b]->val;
    pc += 2;
    NEXT();
L_GLOBAL_SET: /* [src|idx] */
    inst->globals[pc[1].s.b]->val = SLOT(pc[1].s.a);
    pc += 2;
    NEXT();
L_GSET_ADD_I: /* [dst|a][imm][x]: an I32_ADD_I, then a GLOBAL_SET of its result */
    WR_I(pc[1].s.a, RD(I, pc[1].s.b) + (uint32_t)pc[2].u);
    inst->globals[pc[3].u]->val = SLOT(pc[1].s.a);
    pc += 4;
    NEXT();
L_GADD_I: /* [d1|d2][imm][x]: a GLOBAL_GET to d1, an I32_ADD_I d1 + imm to d2, a GLOBAL_SET */
    SLOT(pc[1].s.a) = inst->globals[pc[3].u]->val;
    WR_I(pc[1].s.b, RD(I, pc[1].s.a) + (uint32_t)pc[2].u);
    inst->globals[pc[3].u]->val = SLOT(pc[1].s.b);
    pc += 4;
    NEXT();
L_CALL: /* [func|argbase] */
    f = inst->funcs[pc[1].s.a];
    nfp = SLOTP(uint64_t, pc[1].s.b);
    pc += 2;
    goto do_call;
L_COPY_CALL: /* [dst|src][func|argbase]: a COPY, then a CALL */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    f = inst->funcs[pc[2].s.a];
    nfp = SLOTP(uint64_t, pc[2].s.b);
    pc += 3;
    goto do_call;
L_COPY2_CALL: /* [dst|src][dst2|src2][func|argbase]: a COPY2, then a CALL */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    SLOT(pc[2].s.a) = SLOT(pc[2].s.b);
    f = inst->funcs[pc[3].s.a];
    nfp = SLOTP(uint64_t, pc[3].s.b);
    pc += 4;
    goto do_call;
L_CALL_INDIRECT : { /* [table|type][elem|argbase] */
    const struct wasm_table *t = inst->tables[pc[1].s.a];
    uint32_t i = RD(I, pc[2].s.a);
    if (i >= t->size) TRAP(UNDEF_ELEM);
    f = (struct wasm_func *)(uintptr_t)t->elems[i];
    if (!f) TRAP(UNINIT_ELEM);
    const struct wasm_functype *want = &inst->mod->types[pc[1].s.b];
    if (f->type != want && !wasm_functype_eq(f->type, want)) TRAP(INDIRECT_MISMATCH);
    nfp = SLOTP(uint64_t, pc[2].s.b);
    pc += 3;
    goto do_call;
}
do_call:
    if (f->host) {
        trap = f->host(s, inst->mem, f->host_ctx, nfp);
        if (trap) goto out;
        LOAD_MEM();
        NEXT();
    }
    code = f->code;
    if (__builtin_expect(frame + 1 >= frame_end || nfp + code->frame_slots > stack_end, 0))
        TRAP(STACK_EXHAUSTED);
    CHARGE(1);
    frame->pc = pc;
    frame->fp = fp;
    frame->inst = inst;
    frame++;
    fp = nfp;
    memset(fp + code->nparams, 0, code->nlocals * sizeof(uint64_t));
    if (f->inst != inst) {
        inst = f->inst;
        LOAD_MEM();
    }
    pc = code->cells;
    NEXT();
L_RET_COPY2: /* [dst|src][dst2|src2]: a COPY2, then a RET */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
    SLOT(pc[2].s.a) = SLOT(pc[2].s.b);
    goto L_RET;
L_RET_COPY: /* [dst|src]: a COPY, then a RET */
    SLOT(pc[1].s.a) = SLOT(pc[1].s.b);
L_RET:
    if (frame == frame_base) goto out;
    frame--;
    pc = frame->pc;
    fp = frame->fp;
    /* mem/memsize are this instance's unless the callee ran in another one (a callee of the
     * same instance that grew the memory reloaded them itself) */
    if (frame->inst != inst) {
        inst = frame->inst;
        LOAD_MEM();
    }
    NEXT();
L_MEM_SIZE: /* [dst] */
    WR_I(pc[1].s.a, inst->mem->pages);
    pc += 3;
    NEXT();
L_MEM_GROW: /* [dst|delta] */
    WR_I(pc[1].s.a, (uint32_t)wasm_memory_grow(s, inst->mem, RD(I, pc[1].s.b)));
    LOAD_MEM();
    pc += 3;
    NEXT();
L_MEM_FILL : { /* [d|val][n] */
    uint64_t d = RD(I, pc[1].s.a), n = RD(I, pc[2].s.a);
    if (d + n > memsize) TRAP(MEM_OOB);
    memset(mem + d, (int)(RD(I, pc[1].s.b) & 0xff), n);
    pc += 3;
    NEXT();
}
L_MEM_COPY : { /* [d|s][n] */
    uint64_t d = RD(I, pc[1].s.a), src = RD(I, pc[1].s.b), n = RD(I, pc[2].s.a);
    if (d + n > memsize || src + n > memsize) TRAP(MEM_OOB);
    memmove(mem + d, mem + src, n);
    pc += 3;
    NEXT();
}
L_MEM_INIT: /* [d|s][n|seg] */
    trap = wasm_memory_init(inst, pc[2].s.b, RD(I, pc[1].s.a), RD(I, pc[1].s.b), RD(I, pc[2].s.a));
    if (trap) goto out;
    pc += 3;
    NEXT();
L_DATA_DROP: /* [seg] */
    inst->data_dropped[pc[1].s.a] = 1;
    pc += 3;
    NEXT();
L_ELEM_DROP:
    inst->elem_dropped[pc[1].s.a] = 1;
    pc += 3;
    NEXT();
L_TABLE_GET : { /* [dst|idx][table] */
    const struct wasm_table *t = inst->tables[pc[2].s.a];
    uint32_t i = RD(I, pc[1].s.b);
    if (i >= t->size) TRAP(TABLE_OOB);
    SLOT(pc[1].s.a) = t->elems[i];
    pc += 3;
    NEXT();
}
L_TABLE_SET : { /* [idx|val][table] */
    struct wasm_table *t = inst->tables[pc[2].s.a];
    uint32_t i = RD(I, pc[1].s.a);
    if (i >= t->size) TRAP(TABLE_OOB);
    t->elems[i] = SLOT(pc[1].s.b);
    pc += 3;
    NEXT();
}
L_TABLE_SIZE: /* [dst|table] */
    WR_I(pc[1].s.a, inst->tables[pc[1].s.b]->size);
    pc += 3;
    NEXT();
L_TABLE_GROW: /* [dst|init][n|table] */
    WR_I(pc[1].s.a,
         (uint32_t)wasm_table_grow(s, inst->tables[pc[2].s.b], RD(I, pc[2].s.a), SLOT(pc[1].s.b)));
    pc += 3;
    NEXT();
L_TABLE_FILL : { /* [i|val][n|table] */
    struct wasm_table *t = inst->tables[pc[2].s.b];
    uint64_t i = RD(I, pc[1].s.a), n = RD(I, pc[2].s.a), v = SLOT(pc[1].s.b);
    if (i + n > t->size) TRAP(TABLE_OOB);
    for (uint64_t k = 0; k < n; k++)
        t->elems[i + k] = v;
    pc += 3;
    NEXT();
}
L_TABLE_COPY : { /* [d|s][n|dst table][src table] */
    struct wasm_table *td = inst->tables[pc[2].s.b], *ts = inst->tables[pc[3].s.a];
    uint64_t d = RD(I, pc[1].s.a), src = RD(I, pc[1].s.b), n = RD(I, pc[2].s.a);
    if (d + n > td->size || src + n > ts->size) TRAP(TABLE_OOB);
    memmove(td->elems + d, ts->elems + src, n * sizeof(uint64_t));
    pc += 4;
    NEXT();
}
L_TABLE_INIT: /* [d|s][n|table][seg] */
    trap = wasm_table_init(inst, pc[2].s.b, (uint32_t)pc[3].u, RD(I, pc[1].s.a), RD(I, pc[1].s.b),
                           RD(I, pc[2].s.a));
    if (trap) goto out;
    pc += 4;
    NEXT();
L_REF_IS_NULL: /* [dst|a] */
    WR_I(pc[1].s.a, SLOT(pc[1].s.b) == 0);
    pc += 3;
    NEXT();
L_REF_FUNC: /* [dst|func] */
    SLOT(pc[1].s.a) = (uint64_t)(uintptr_t)inst->funcs[pc[1].s.b];
    pc += 3;
    NEXT();
bad:
    trap = WASM_TRAP_HOST;
out:
    if (budget > 0) s->fuel += (uint64_t)budget;
    return trap;
}

#ifdef WASM_PAIR_PROFILE
static const char *const prof_names[WOP__COUNT] = {
#define PN_NUM(code, name, shape, ta, tr, expr) [WOP_##name] = #name, [WOP_##name##_I] = #name "_I",
    WASM_NUMOPS(PN_NUM)
#undef PN_NUM
#define PN_BRC(name, neg, t, expr)                                                                 \
    [WOP_BRIF_##name] = "BRIF_" #name, [WOP_BRIF_##name##_I] = "BRIF_" #name "_I",
        WASM_BRCMP(PN_BRC)
#undef PN_BRC
#define PN_CTL(name) [WOP_##name] = #name,
            WASM_CTLOPS(PN_CTL)
#undef PN_CTL
};
static const char *prof_name(const int32_t *h, int64_t off)
{
    for (int i = 0; i < WOP__COUNT; i++)
        if (h[i] == off) return prof_names[i];
    return "?";
}
__attribute__((destructor)) static void prof_dump(void)
{
    const int32_t *h = wasm_interp_handlers();
    const char *out = getenv("WASM_PAIR_PROFILE_OUT"); /* default: stderr */
    FILE *f = fopen(out ? out : "/dev/stderr", "w");
    if (!f) return;
    for (uint32_t i = 0; i < PROF_N; i++)
        if (prof_tab[i].n)
            fprintf(f, "%lu %s %s\n", (unsigned long)prof_tab[i].n, prof_name(h, prof_tab[i].a),
                    prof_name(h, prof_tab[i].b));
    fclose(f);
}
#endif

const int32_t *wasm_interp_handlers(void)
{
    const int32_t *h = NULL;
    run(NULL, NULL, &h);
    return h;
}

enum wasm_trap wasm_interp_run(struct wasm_store *s, struct wasm_func *f, uint64_t *args)
{
    const struct wasm_functype *t = f->type;
    if (f->host) return f->host(s, NULL, f->host_ctx, args);
    uint32_t np = 0, nr = 0;
    wasm_functype_slots(t, &np, &nr);
    if ((np > nr ? np : nr) > s->lim.max_stack_slots) return WASM_TRAP_STACK_EXHAUSTED;
    memcpy(s->stack, args, np * sizeof(uint64_t));
    enum wasm_trap trap = run(s, f, NULL);
    if (!trap) memcpy(args, s->stack, nr * sizeof(uint64_t));
    return trap;
}
