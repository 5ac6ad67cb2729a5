/* instance.c: modules, stores, runtime objects and instantiation.
 *
 * A store owns every object created in it through one list of allocations (memories own an
 * extra mapping), so instances that import each other's exports never dangle. Linear memory
 * is reserved once for its maximum (capped by the store's page limit) and committed with
 * mprotect as it grows, so its base address never moves.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wasm_internal.h"

static const char *const trap_names[] = {
#define WASM_X_NAME(n, s) s,
    WASM_TRAP_MAP(WASM_X_NAME)
#undef WASM_X_NAME
};

const char *wasm_trap_name(enum wasm_trap t)
{
    return (unsigned)t < WASM_TRAP__COUNT ? trap_names[t] : "unknown trap";
}

/* ---- modules ----------------------------------------------------------------------- */
int wasm_module_load(const uint8_t *bytes, size_t len, struct wasm_module **out,
                     struct gate_error *err)
{
    struct wasm_module *m = calloc(1, sizeof(*m));
    if (!m) return gate_err(err, GATE_E_NOMEM, "wasm: out of memory");
    m->bytes = malloc(len ? len : 1);
    if (!m->bytes) {
        free(m);
        return gate_err(err, GATE_E_NOMEM, "wasm: out of memory");
    }
    memcpy(m->bytes, bytes, len);
    m->len = len;
    m->image_fd = -1;
    if (wasm_decode(m->bytes, len, m, err) < 0) goto fail;
    for (uint32_t i = 0; i < m->ndefined; i++)
        if (wasm_compile_func(m, i, err) < 0) goto fail;
    *out = m;
    return 0;
fail:
    if (err && err->code == GATE_E_OK) err->code = GATE_E_WASM_INVALID;
    wasm_module_free(m);
    return -1;
}

/* A mapped module owns only its heap copies of the arrays of structures (share.c). */
static void mapped_module_free(struct wasm_module *m)
{
    free(m->types);
    free(m->imports);
    free(m->funcs);
    free(m->exports);
    free(m->elems);
    free(m->datas);
    if (m->image_fd >= 0) close(m->image_fd);
    munmap(m->image, m->image_size);
    free(m);
}

void wasm_module_free(struct wasm_module *m)
{
    if (!m) return;
    if (m->image) {
        mapped_module_free(m);
        return;
    }
    for (uint32_t i = 0; m->types && i < m->ntypes; i++)
        free(m->types[i].types);
    for (uint32_t i = 0; m->imports && i < m->nimports; i++) {
        free(m->imports[i].module);
        free(m->imports[i].name);
    }
    for (uint32_t i = 0; m->funcs && i < m->ndefined; i++) {
        free(m->funcs[i].code.cells);
        free(m->funcs[i].local_types);
    }
    for (uint32_t i = 0; m->exports && i < m->nexports; i++)
        free(m->exports[i].name);
    for (uint32_t i = 0; m->elems && i < m->nelems; i++)
        free(m->elems[i].items);
    free(m->types);
    free(m->type_canon);
    free(m->imports);
    free(m->func_types);
    free(m->funcs);
    free(m->tables);
    free(m->mems);
    free(m->globals);
    free(m->exports);
    free(m->elems);
    free(m->datas);
    free(m->func_declared);
    free(m->bytes);
    free(m);
}

uint32_t wasm_module_nimports(const struct wasm_module *m)
{
    return m->nimports;
}

void wasm_module_import(const struct wasm_module *m, uint32_t i, struct wasm_import_desc *d)
{
    const struct wimport *im = &m->imports[i];
    d->module = im->module;
    d->name = im->name;
    d->kind = im->kind;
    d->functype = im->kind == WASM_EXT_FUNC ? &m->types[im->type_idx] : NULL;
}

/* ---- stores -------------------------------------------------------------------------- */
void wasm_limits_default(struct wasm_limits_cfg *l)
{
    memset(l, 0, sizeof(*l));
    l->max_mem_pages = WASM_MAX_PAGES;
    l->max_table_elems = WASM_MAX_TABLE_ELEMS;
    l->max_call_depth = 10000;
    l->max_stack_slots = 1u << 20;
}

/* Memories are tracked separately because their data is a mapping. */
static void memory_unmap(struct wasm_memory *m)
{
    if (m->data && m->reserved) munmap(m->data, m->reserved);
    m->data = NULL;
}

struct wasm_store *wasm_store_new(const struct wasm_limits_cfg *lim)
{
    struct wasm_store *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->lim = *lim;
    if (s->lim.max_call_depth < 2) s->lim.max_call_depth = 2;
    if (s->lim.max_stack_slots < 16) s->lim.max_stack_slots = 16;
    s->fuel = lim->fuel ? lim->fuel : UINT64_MAX;
    /* Not zeroed (megabytes, per call): validation guarantees that code reads only slots
     * written before in the same frame (locals are zeroed on entry, operands are pushed). */
    s->stack = malloc(s->lim.max_stack_slots * sizeof(uint64_t));
    s->frames = malloc(s->lim.max_call_depth * sizeof(struct wframe));
    if (!s->stack || !s->frames) {
        wasm_store_free(s);
        return NULL;
    }
    return s;
}

void wasm_store_free(struct wasm_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nmems; i++)
        memory_unmap(s->mems[i]);
    for (size_t i = 0; i < s->ntables; i++)
        free(s->tables[i]->elems);
    for (size_t i = 0; i < s->nobjs; i++)
        free(s->objs[i]);
    free(s->objs);
    free(s->mems);
    free(s->tables);
    free(s->stack);
    free(s->frames);
    free(s);
}

void wasm_store_set_fuel(struct wasm_store *s, uint64_t fuel, uint64_t deadline_ns)
{
    s->fuel = fuel ? fuel : UINT64_MAX;
    s->lim.deadline_ns = deadline_ns;
}
uint64_t wasm_store_fuel_left(const struct wasm_store *s)
{
    return s->fuel;
}
void wasm_store_set_host_ctx(struct wasm_store *s, void *ctx)
{
    s->host_ctx = ctx;
}
void *wasm_store_host_ctx(const struct wasm_store *s)
{
    return s->host_ctx;
}
void wasm_store_set_exit(struct wasm_store *s, int code)
{
    s->exit_code = code;
}
int wasm_store_exit_code(const struct wasm_store *s)
{
    return s->exit_code;
}

void *wstore_alloc(struct wasm_store *s, size_t size)
{
    if (s->nobjs == s->capobjs) {
        size_t ncap = s->capobjs ? s->capobjs * 2 : 64;
        void **o = realloc(s->objs, ncap * sizeof(void *));
        if (!o) return NULL;
        s->objs = o;
        s->capobjs = ncap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p) s->objs[s->nobjs++] = p;
    return p;
}

/* ---- objects ------------------------------------------------------------------------- */
struct wasm_func *wasm_host_func_new(struct wasm_store *s, const uint8_t *params, uint32_t np,
                                     const uint8_t *results, uint32_t nr, wasm_host_fn fn,
                                     void *ctx)
{
    struct wasm_func *f = wstore_alloc(s, sizeof(*f));
    struct wasm_functype *t = wstore_alloc(s, sizeof(*t));
    uint8_t *types = wstore_alloc(s, (size_t)np + nr);
    if (!f || !t || !types) return NULL;
    if (np) memcpy(types, params, np);
    if (nr) memcpy(types + np, results, nr);
    *t = (struct wasm_functype){np, nr, types};
    f->type = t;
    f->host = fn;
    f->host_ctx = ctx;
    return f;
}

static int track(void ***list, size_t *n, size_t *cap, void *obj)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void **l = realloc(*list, ncap * sizeof(void *));
        if (!l) return -1;
        *list = l;
        *cap = ncap;
    }
    (*list)[(*n)++] = obj;
    return 0;
}

struct wasm_memory *wasm_memory_new(struct wasm_store *s, uint32_t min_pages, uint32_t max_pages,
                                    bool has_max)
{
    uint32_t cap = has_max && max_pages < s->lim.max_mem_pages ? max_pages : s->lim.max_mem_pages;
    if (min_pages > cap) return NULL;
    struct wasm_memory *m = wstore_alloc(s, sizeof(*m));
    if (!m || track((void ***)&s->mems, &s->nmems, &s->capmems, m) < 0) return NULL;
    m->has_max = has_max;
    m->max_pages = cap;
    m->reserved = (uint64_t)cap * WASM_PAGE;
    if (m->reserved) {
        /* Reserve the whole capped range without access; committed pages are made readable
         * and writable as the memory grows, so the base pointer stays valid. */
        void *p =
            mmap(NULL, m->reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            m->reserved = 0;
            return NULL;
        }
        m->data = p;
    }
    if (wasm_memory_grow(s, m, min_pages) < 0) return NULL;
    return m;
}

int64_t wasm_memory_grow(struct wasm_store *s, struct wasm_memory *m, uint32_t delta)
{
    (void)s;
    uint32_t old = m->pages;
    if (delta == 0) return old;
    if ((uint64_t)old + delta > m->max_pages) return -1;
    uint64_t nsize = ((uint64_t)old + delta) * WASM_PAGE;
    if (mprotect(m->data + m->size, nsize - m->size, PROT_READ | PROT_WRITE) != 0) return -1;
    m->size = nsize;
    m->pages = old + delta;
    return old;
}

struct wasm_table *wasm_table_new(struct wasm_store *s, uint8_t elem_type, uint32_t min,
                                  uint32_t max, bool has_max)
{
    if (min > s->lim.max_table_elems) return NULL;
    struct wasm_table *t = wstore_alloc(s, sizeof(*t));
    if (!t) return NULL;
    t->type = elem_type;
    t->has_max = has_max;
    t->max = has_max && max < s->lim.max_table_elems ? max : s->lim.max_table_elems;
    if (track((void ***)&s->tables, &s->ntables, &s->captables, t) < 0) return NULL;
    t->elems = calloc(min ? min : 1, sizeof(uint64_t));
    if (!t->elems) return NULL;
    t->size = min;
    return t;
}

int64_t wasm_table_grow(struct wasm_store *s, struct wasm_table *t, uint32_t delta, uint64_t init)
{
    uint32_t old = t->size;
    if ((uint64_t)old + delta > t->max) return -1;
    if (delta == 0) return old;
    (void)s;
    uint64_t *e = realloc(t->elems, ((size_t)old + delta) * sizeof(uint64_t));
    if (!e) return -1;
    for (uint32_t i = old; i < old + delta; i++)
        e[i] = init;
    t->elems = e;
    t->size = old + delta;
    return old;
}

struct wasm_global *wasm_global_new(struct wasm_store *s, uint8_t type, bool mut, uint64_t val)
{
    struct wasm_global *g = wstore_alloc(s, sizeof(*g));
    if (g) *g = (struct wasm_global){.val = val, .type = type, .mut = mut};
    return g;
}

void wasm_global_init(struct wasm_global *g, const struct wasm_instance *inst,
                      const struct wconst *c)
{
    if (c->op == WC_V128) {
        g->v128[0] = c->val;
        g->v128[1] = c->hi;
    } else if (c->op == WC_GLOBAL_GET) {
        memcpy(g->v128, inst->globals[c->idx]->v128, sizeof(g->v128));
    } else {
        g->val = wasm_eval_const(inst, c);
    }
}

void wasm_global_get_v128(const struct wasm_global *g, uint64_t out[2])
{
    out[0] = g->v128[0];
    out[1] = g->v128[1];
}

uint8_t *wasm_memory_data(const struct wasm_memory *m, uint64_t *size)
{
    *size = m->size;
    return m->data;
}

uint64_t wasm_global_get(const struct wasm_global *g, uint8_t *type, bool *mut)
{
    if (type) *type = g->type;
    if (mut) *mut = g->mut;
    return g->val;
}

const struct wasm_functype *wasm_func_type(const struct wasm_func *f)
{
    return f->type;
}

void wasm_functype_slots(const struct wasm_functype *t, uint32_t *nparams, uint32_t *nresults)
{
    uint32_t n[2] = {0, 0};
    for (uint32_t i = 0; i < t->nparams + t->nresults; i++)
        n[i >= t->nparams] += t->types[i] == WASM_V128 ? 2 : 1;
    *nparams = n[0];
    *nresults = n[1];
}

enum wasm_trap wasm_call(struct wasm_store *s, struct wasm_func *f, uint64_t *slots)
{
    return wasm_interp_run(s, f, slots);
}
