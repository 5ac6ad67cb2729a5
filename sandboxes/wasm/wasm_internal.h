/* wasm_internal.h: the engine's data structures, shared by its source files only.
 *
 * - the decoded module (struct wasm_module) and the byte reader with bounds-checked LEB128;
 * - the compiled code: an array of 8-byte cells, each instruction a handler (offset) followed
 *   by operand cells holding frame-relative byte offsets of value slots and immediates;
 * - the runtime objects (instances, memories, tables, globals, functions, the store).
 */
#ifndef GATE_WASM_INTERNAL_H
#define GATE_WASM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "wasm_ops.h"
#include "wasmrt.h"

/* Caps on what a module may declare (the binary is outside input). */
#define WASM_MAX_TYPES 100000u
#define WASM_MAX_FUNCS 1000000u
#define WASM_MAX_IMPORTS 100000u
#define WASM_MAX_EXPORTS 100000u
#define WASM_MAX_GLOBALS 100000u
#define WASM_MAX_TABLES 100000u
#define WASM_MAX_SEGMENTS 100000u
#define WASM_MAX_PARAMS 1000u
#define WASM_MAX_LOCALS 50000u
#define WASM_MAX_BRTABLE 100000u
#define WASM_MAX_PAGES 65536u
#define WASM_MAX_TABLE_ELEMS 10000000u
#define WASM_PAGE 65536u

/* ---- byte reader ------------------------------------------------------------------------- */
struct wreader {
    const uint8_t *base; /* start of the module (for offsets in messages) */
    const uint8_t *p, *end;
    struct gate_error *err;
};
int wr_fail(struct wreader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int wr_u8(struct wreader *r, uint8_t *v);
int wr_u32(struct wreader *r, uint32_t *v);
int wr_s32(struct wreader *r, int32_t *v);
int wr_s33(struct wreader *r, int64_t *v);
int wr_s64(struct wreader *r, int64_t *v);
int wr_bytes(struct wreader *r, size_t n, const uint8_t **out);
static inline size_t wr_off(const struct wreader *r)
{
    return (size_t)(r->p - r->base);
}

/* ---- module -------------------------------------------------------------------------- */
struct wlimits {
    uint32_t min, max;
    bool has_max;
};

enum wconst_op { WC_I32, WC_I64, WC_F32, WC_F64, WC_V128, WC_REF_NULL, WC_REF_FUNC, WC_GLOBAL_GET };
struct wconst {
    uint8_t op; /* enum wconst_op */
    uint8_t type;
    uint32_t idx;
    uint64_t val;
    uint64_t hi; /* v128: the upper 64 bits */
};

struct wimport {
    char *module, *name;
    uint8_t kind;
    uint32_t type_idx;  /* func */
    uint8_t elem_type;  /* table */
    struct wlimits lim; /* table, memory */
    uint8_t gtype;      /* global */
    bool gmut;
};

struct wexport {
    char *name;
    uint8_t kind;
    uint32_t idx;
};

struct wtable_def {
    uint8_t elem_type;
    struct wlimits lim;
};

struct wglobal_def {
    uint8_t type;
    bool mut;
    struct wconst init;
};

enum wseg_mode { WSEG_ACTIVE, WSEG_PASSIVE, WSEG_DECLARATIVE };
struct welem {
    uint8_t mode, type;
    uint32_t table;
    struct wconst offset;
    uint32_t n;
    struct wconst *items;
};

struct wdata {
    uint8_t mode;
    uint32_t mem;
    struct wconst offset;
    const uint8_t *bytes; /* points into the module's copy of the binary */
    uint32_t len;
};

/* One compiled code cell. */
union wcell {
    int64_t h; /* an instruction's first cell: its handler (wasm_interp_handlers) */
    uint64_t u;
    int64_t i;
    struct {
        uint32_t a, b;
    } s;
};

struct wcode {
    union wcell *cells;
    uint32_t ncells;
    uint32_t nparams;
    uint32_t nlocals;     /* declared locals, not counting params */
    uint32_t frame_slots; /* params + locals + maximum operand stack */
};

struct wfunc_def {
    uint32_t type_idx;
    const uint8_t *body; /* locals + expression, in the module's copy */
    uint32_t body_len;
    uint32_t body_off;
    uint8_t *local_types; /* nparams + nlocals entries */
    struct wcode code;
};

struct wasm_module {
    uint8_t *bytes; /* owned copy of the binary */
    size_t len;
    struct wasm_functype *types;
    uint32_t ntypes;
    uint32_t *type_canon; /* index of the first structurally equal type */
    struct wimport *imports;
    uint32_t nimports;
    uint32_t nfunc_imports, ntable_imports, nmem_imports, nglobal_imports;
    uint32_t *func_types; /* type index of every function, imports first */
    uint32_t nfuncs;
    struct wfunc_def *funcs; /* defined functions */
    uint32_t ndefined;
    struct wtable_def *tables; /* all tables, imports first */
    uint32_t ntables;
    struct wlimits *mems;
    uint32_t nmems;
    struct wglobal_def *globals; /* all globals, imports first (init unused for imports) */
    uint32_t nglobals;
    struct wexport *exports;
    uint32_t nexports;
    bool has_start;
    uint32_t start;
    struct welem *elems;
    uint32_t nelems;
    struct wdata *datas;
    uint32_t ndatas;
    bool has_datacount;
    uint32_t datacount;
    uint8_t *func_declared; /* per function: referenced outside function bodies (C.refs) */
    /* A module mapped from a shared image (share.c): the mapping, and the image's fd with the
     * offset and length of its initial memory contents (image_fd -1: none). */
    void *image;
    size_t image_size;
    int image_fd;
    uint64_t image_mem_off, image_mem_len;
};

int wasm_decode(const uint8_t *bytes, size_t len, struct wasm_module *m, struct gate_error *err);
/* Validate and compile defined function i (index among defined functions). */
int wasm_compile_func(struct wasm_module *m, uint32_t i, struct gate_error *err);
bool wasm_functype_eq(const struct wasm_functype *a, const struct wasm_functype *b);

/* ---- runtime objects ------------------------------------------------------------------ */
struct wasm_memory {
    uint8_t *data;     /* reserved for max_pages, committed up to size */
    uint64_t size;     /* bytes */
    uint64_t reserved; /* bytes reserved */
    uint32_t pages, max_pages;
    bool has_max;
};

struct wasm_table {
    uint64_t *elems; /* funcref: struct wasm_func *; externref: host value; 0 = null */
    uint32_t size, max;
    bool has_max;
    uint8_t type;
};

struct wasm_global {
    union {
        uint64_t val;
        uint64_t v128[2]; /* v128 globals: low half first (v128[0] is val) */
    };
    uint8_t type;
    bool mut;
};

struct wasm_func {
    const struct wasm_functype *type;
    struct wasm_instance *inst; /* NULL for host functions */
    const struct wcode *code;
    wasm_host_fn host;
    void *host_ctx;
};

struct wasm_instance {
    const struct wasm_module *mod;
    struct wasm_func **funcs;
    struct wasm_table **tables;
    struct wasm_memory *mem; /* memory 0 or NULL */
    struct wasm_global **globals;
    uint8_t *elem_dropped;
    uint8_t *data_dropped;
};

struct wframe {
    const union wcell *pc;
    uint64_t *fp;
    struct wasm_instance *inst;
};

struct wasm_store {
    struct wasm_limits_cfg lim;
    uint64_t fuel;
    uint64_t *stack; /* value stack, lim.max_stack_slots */
    struct wframe *frames;
    void **objs; /* everything allocated in this store */
    size_t nobjs, capobjs;
    struct wasm_memory **mems; /* memories to unmap */
    size_t nmems, capmems;
    struct wasm_table **tables; /* tables whose element arrays to free */
    size_t ntables, captables;
    void *host_ctx;
    int exit_code;
    uint32_t deadline_tick;
};
void *wstore_alloc(struct wasm_store *s, size_t size);
/* Grow m by delta pages; returns the old page count or -1. */
int64_t wasm_memory_grow(struct wasm_store *s, struct wasm_memory *m, uint32_t delta);
int64_t wasm_table_grow(struct wasm_store *s, struct wasm_table *t, uint32_t delta, uint64_t init);
/* Handler offsets of the interpreter (what a handler cell holds), indexed by enum wop. */
const int32_t *wasm_interp_handlers(void);
enum wasm_trap wasm_interp_run(struct wasm_store *s, struct wasm_func *f, uint64_t *args);
/* Bulk operations shared by the interpreter and instantiation. */
enum wasm_trap wasm_table_init(struct wasm_instance *inst, uint32_t table, uint32_t elem,
                               uint32_t d, uint32_t src, uint32_t n);
enum wasm_trap wasm_memory_init(struct wasm_instance *inst, uint32_t data, uint64_t d, uint64_t src,
                                uint64_t n);
uint64_t wasm_eval_const(const struct wasm_instance *inst, const struct wconst *c);
/* Give a new instance its memory's initial contents by mapping the module image's copy
 * copy-on-write, marking the active data segments applied. False when the module has no such
 * image: the segments are then copied one by one. */
bool wasm_memory_image_apply(struct wasm_instance *inst);
/* Set a defined global to its initial value (any type, v128 included). */
void wasm_global_init(struct wasm_global *g, const struct wasm_instance *inst,
                      const struct wconst *c);

#endif
