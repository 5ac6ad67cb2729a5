/* wasmrt.h: gatehouse's WebAssembly engine (decoder, validator, compiler, interpreter).
 *
 * A module is decoded, fully validated and compiled once (wasm_module_load); the result is
 * immutable and may be shared. Everything created while running code lives in a store
 * (wasm_store_new): instances, memories, tables, globals, host functions and the execution
 * stacks; freeing the store frees them all. Calls report traps by name and never crash the
 * host: every memory access is bounds-checked, fuel is charged at loop back-edges and calls,
 * and call depth, value stack, memory and table sizes are capped by the store's limits.
 */
#ifndef GATE_WASMRT_H
#define GATE_WASMRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate.h"

enum wasm_valtype {
    WASM_I32 = 0x7f,
    WASM_I64 = 0x7e,
    WASM_F32 = 0x7d,
    WASM_F64 = 0x7c,
    WASM_V128 = 0x7b,
    WASM_FUNCREF = 0x70,
    WASM_EXTERNREF = 0x6f,
};

enum wasm_extern_kind {
    WASM_EXT_FUNC = 0,
    WASM_EXT_TABLE = 1,
    WASM_EXT_MEMORY = 2,
    WASM_EXT_GLOBAL = 3
};

/* X(enum suffix, name reported to callers) */
#define WASM_TRAP_MAP(X)                                                                           \
    X(NONE, "none")                                                                                \
    X(UNREACHABLE, "unreachable")                                                                  \
    X(MEM_OOB, "out of bounds memory access")                                                      \
    X(TABLE_OOB, "out of bounds table access")                                                     \
    X(DIV_ZERO, "integer divide by zero")                                                          \
    X(INT_OVERFLOW, "integer overflow")                                                            \
    X(INVALID_CONV, "invalid conversion to integer")                                               \
    X(INDIRECT_MISMATCH, "indirect call type mismatch")                                            \
    X(UNDEF_ELEM, "undefined element")                                                             \
    X(UNINIT_ELEM, "uninitialized element")                                                        \
    X(STACK_EXHAUSTED, "call stack exhausted")                                                     \
    X(FUEL, "fuel exhausted")                                                                      \
    X(DEADLINE, "deadline exceeded")                                                               \
    X(EXIT, "exit")                                                                                \
    X(HOST, "host error")

enum wasm_trap {
#define WASM_X_TRAP(n, s) WASM_TRAP_##n,
    WASM_TRAP_MAP(WASM_X_TRAP)
#undef WASM_X_TRAP
        WASM_TRAP__COUNT
};
const char *wasm_trap_name(enum wasm_trap t);

struct wasm_module;
struct wasm_store;
struct wasm_instance;
struct wasm_func;
struct wasm_memory;
struct wasm_table;
struct wasm_global;

struct wasm_functype {
    uint32_t nparams, nresults;
    uint8_t *types; /* nparams parameter types, then nresults result types */
};

struct wasm_extern {
    enum wasm_extern_kind kind;
    union {
        struct wasm_func *func;
        struct wasm_table *table;
        struct wasm_memory *memory;
        struct wasm_global *global;
    } u;
};

struct wasm_import_desc {
    const char *module, *name;
    enum wasm_extern_kind kind;
    const struct wasm_functype *functype; /* WASM_EXT_FUNC */
};

/* ---- modules --------------------------------------------------------------------------- */
/* Decode, validate and compile bytes[0..len). On failure err (GATE_E_WASM_INVALID) reads
 * like "validate: func 3: type mismatch at offset 0x1a2". The caller owns *out. */
int wasm_module_load(const uint8_t *bytes, size_t len, struct wasm_module **out,
                     struct gate_error *err);
void wasm_module_free(struct wasm_module *m);
uint32_t wasm_module_nimports(const struct wasm_module *m);
void wasm_module_import(const struct wasm_module *m, uint32_t i, struct wasm_import_desc *d);

/* ---- sharing a compiled module between processes ------------------------------------- */
/* The compiled form holds no absolute addresses (instruction handlers are offsets inside the
 * interpreter), so one copy can be mapped read-only by every worker process: the gateway
 * compiles a module once at policy load, shares it, and each worker maps it instead of
 * decoding, validating and compiling it again.
 *
 * wasm_module_share writes m's compiled form (code, types, imports, exports, segments and the
 * initial memory image) into a new memfd sealed against every change (F_SEAL_WRITE,
 * F_SEAL_GROW, F_SEAL_SHRINK, F_SEAL_SEAL). Returns the fd (O_CLOEXEC; the caller owns it and
 * hands it to workers as it sees fit), or -1 with err. */
int wasm_module_share(const struct wasm_module *m, struct gate_error *err);
/* Map a module made by wasm_module_share. The fd must carry all four seals (so no process can
 * change the code under a running worker); the image's header is checked (magic, the engine
 * build it was compiled by, every offset inside the mapping). The code, data segments and the
 * initial memory image stay in the read-only shared mapping; *out owns the mapping, so fd may
 * be closed afterwards. The caller owns *out (wasm_module_free). -1 with GATE_E_WASM_INVALID
 * if the fd does not hold such an image from this build. */
int wasm_module_map(int fd, struct wasm_module **out, struct gate_error *err);
/* The descriptor a module mapped by wasm_module_map keeps for its initial memory image: each
 * instantiation maps it MAP_PRIVATE|MAP_FIXED, PROT_READ|PROT_WRITE over the new memory.
 * -1 when the module has no image (loaded, or segments that do not allow one), so a caller
 * that filters system calls can allow exactly that mapping. */
int wasm_module_image_fd(const struct wasm_module *m);

/* ---- stores ---------------------------------------------------------------------------- */
struct wasm_limits_cfg {
    uint64_t fuel;            /* instruction budget (approximate), 0 = unlimited */
    uint64_t deadline_ns;     /* gate_monotonic_ns() deadline, 0 = none */
    uint32_t max_mem_pages;   /* linear-memory cap in 64 KiB pages (memory.grow past: -1) */
    uint32_t max_table_elems; /* table size cap */
    uint32_t max_call_depth;
    uint32_t max_stack_slots; /* value stack, 8-byte slots */
};
void wasm_limits_default(struct wasm_limits_cfg *l);
/* Returns NULL on allocation failure. */
struct wasm_store *wasm_store_new(const struct wasm_limits_cfg *lim);
void wasm_store_free(struct wasm_store *s);
void wasm_store_set_fuel(struct wasm_store *s, uint64_t fuel, uint64_t deadline_ns);
uint64_t wasm_store_fuel_left(const struct wasm_store *s);
/* Value handed to host functions (WASI state). */
void wasm_store_set_host_ctx(struct wasm_store *s, void *ctx);
void *wasm_store_host_ctx(const struct wasm_store *s);
/* Exit code recorded by a host function that returned WASM_TRAP_EXIT. */
void wasm_store_set_exit(struct wasm_store *s, int code);
int wasm_store_exit_code(const struct wasm_store *s);

/* Host functions get the calling instance's memory (may be NULL) and the slots holding the
 * arguments; they write results to the same slots. Return WASM_TRAP_NONE or a trap. */
typedef enum wasm_trap (*wasm_host_fn)(struct wasm_store *s, struct wasm_memory *mem, void *ctx,
                                       uint64_t *slots);
struct wasm_func *wasm_host_func_new(struct wasm_store *s, const uint8_t *params, uint32_t np,
                                     const uint8_t *results, uint32_t nr, wasm_host_fn fn,
                                     void *ctx);
struct wasm_memory *wasm_memory_new(struct wasm_store *s, uint32_t min_pages, uint32_t max_pages,
                                    bool has_max);
struct wasm_table *wasm_table_new(struct wasm_store *s, uint8_t elem_type, uint32_t min,
                                  uint32_t max, bool has_max);
struct wasm_global *wasm_global_new(struct wasm_store *s, uint8_t type, bool mut, uint64_t val);

/* ---- instances ------------------------------------------------------------------------- */
/* Link imports[i] to the module's import i, allocate, initialise and run the start function.
 * Returns 0; -1 with GATE_E_WASM_LINK (err names the import) or a trap (*trap set, err says
 * "start: <trap>"). The store owns *out. */
int wasm_instantiate(struct wasm_store *s, const struct wasm_module *m,
                     const struct wasm_extern *imports, size_t nimports, struct wasm_instance **out,
                     enum wasm_trap *trap, struct gate_error *err);
/* 0 and *out if the instance exports name, else -1. */
int wasm_instance_export(const struct wasm_instance *inst, const char *name,
                         struct wasm_extern *out);
const struct wasm_functype *wasm_func_type(const struct wasm_func *f);
/* Slots the parameters and the results of t take (a v128 takes two). */
void wasm_functype_slots(const struct wasm_functype *t, uint32_t *nparams, uint32_t *nresults);
/* Call f with args in slots[0..nparams); results land in slots[0..nresults). A value takes
 * one 8-byte slot, a v128 two (low 64 bits first); slots must hold the larger of the
 * parameters' and the results' slot counts (wasm_functype_slots). */
enum wasm_trap wasm_call(struct wasm_store *s, struct wasm_func *f, uint64_t *slots);

/* ---- objects ------------------------------------------------------------------------- */
uint8_t *wasm_memory_data(const struct wasm_memory *m, uint64_t *size);
uint64_t wasm_global_get(const struct wasm_global *g, uint8_t *type, bool *mut);
/* Both halves of a v128 global (low 64 bits first). */
void wasm_global_get_v128(const struct wasm_global *g, uint64_t out[2]);
/* Whether a host object matches an import's declared type (for linking checks). */

#endif
