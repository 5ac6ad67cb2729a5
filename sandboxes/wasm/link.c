/* link.c: instantiation: check imports against the module's declared types, allocate the
 * instance's objects, evaluate constant expressions, apply active segments, run start. */
#include <stdlib.h>

#include "wasm_internal.h"

uint64_t wasm_eval_const(const struct wasm_instance *inst, const struct wconst *c)
{
    switch (c->op) {
    case WC_REF_NULL:
        return 0;
    case WC_REF_FUNC:
        return (uint64_t)(uintptr_t)inst->funcs[c->idx];
    case WC_GLOBAL_GET:
        return inst->globals[c->idx]->val;
    default:
        return c->val;
    }
}

enum wasm_trap wasm_table_init(struct wasm_instance *inst, uint32_t table, uint32_t elem,
                               uint32_t d, uint32_t src, uint32_t n)
{
    const struct welem *e = &inst->mod->elems[elem];
    struct wasm_table *t = inst->tables[table];
    uint64_t seglen = inst->elem_dropped[elem] ? 0 : e->n;
    if ((uint64_t)src + n > seglen || (uint64_t)d + n > t->size) return WASM_TRAP_TABLE_OOB;
    for (uint32_t k = 0; k < n; k++)
        t->elems[d + k] = wasm_eval_const(inst, &e->items[src + k]);
    return WASM_TRAP_NONE;
}

enum wasm_trap wasm_memory_init(struct wasm_instance *inst, uint32_t data, uint64_t d, uint64_t src,
                                uint64_t n)
{
    const struct wdata *seg = &inst->mod->datas[data];
    uint64_t seglen = inst->data_dropped[data] ? 0 : seg->len;
    uint64_t size = inst->mem ? inst->mem->size : 0;
    if (src + n > seglen || d + n > size) return WASM_TRAP_MEM_OOB;
    if (n) memcpy(inst->mem->data + d, seg->bytes + src, n);
    return WASM_TRAP_NONE;
}

static bool limits_match(uint64_t size, bool has_max, uint64_t max, const struct wlimits *want)
{
    if (size < want->min) return false;
    if (want->has_max && (!has_max || max > want->max)) return false;
    return true;
}

static int link_import(const struct wasm_module *m, uint32_t i, const struct wasm_extern *ext,
                       struct wasm_instance *inst, uint32_t *counts, struct gate_error *err)
{
    const struct wimport *im = &m->imports[i];
    if (ext->kind != im->kind || !ext->u.func)
        return gate_err(err, GATE_E_WASM_LINK,
                        "import %s.%s: incompatible import type (wrong kind)", im->module,
                        im->name);
    bool ok = true;
    switch (im->kind) {
    case WASM_EXT_FUNC:
        ok = wasm_functype_eq(ext->u.func->type, &m->types[im->type_idx]);
        inst->funcs[counts[0]++] = ext->u.func;
        break;
    case WASM_EXT_TABLE: {
        const struct wasm_table *t = ext->u.table;
        ok = t->type == im->elem_type && limits_match(t->size, t->has_max, t->max, &im->lim);
        inst->tables[counts[1]++] = ext->u.table;
        break;
    }
    case WASM_EXT_MEMORY: {
        const struct wasm_memory *mem = ext->u.memory;
        ok = limits_match(mem->pages, mem->has_max, mem->max_pages, &im->lim);
        inst->mem = ext->u.memory;
        break;
    }
    default: {
        const struct wasm_global *g = ext->u.global;
        ok = g->type == im->gtype && g->mut == im->gmut;
        inst->globals[counts[3]++] = ext->u.global;
        break;
    }
    }
    if (!ok)
        return gate_err(err, GATE_E_WASM_LINK, "import %s.%s: incompatible import type", im->module,
                        im->name);
    return 0;
}

static int alloc_instance(struct wasm_store *s, const struct wasm_module *m,
                          struct wasm_instance **out, struct gate_error *err)
{
    struct wasm_instance *inst = wstore_alloc(s, sizeof(*inst));
    if (!inst) return gate_err(err, GATE_E_NOMEM, "instantiate: out of memory");
    inst->mod = m;
    inst->funcs = wstore_alloc(s, (size_t)m->nfuncs * sizeof(void *));
    inst->tables = wstore_alloc(s, (size_t)m->ntables * sizeof(void *));
    inst->globals = wstore_alloc(s, (size_t)m->nglobals * sizeof(void *));
    inst->elem_dropped = wstore_alloc(s, m->nelems);
    inst->data_dropped = wstore_alloc(s, m->ndatas);
    if (!inst->funcs || !inst->tables || !inst->globals || !inst->elem_dropped ||
        !inst->data_dropped)
        return gate_err(err, GATE_E_NOMEM, "instantiate: out of memory");
    *out = inst;
    return 0;
}

static int define_objects(struct wasm_store *s, const struct wasm_module *m,
                          struct wasm_instance *inst, struct gate_error *err)
{
    for (uint32_t i = m->nfunc_imports; i < m->nfuncs; i++) {
        struct wasm_func *f = wstore_alloc(s, sizeof(*f));
        if (!f) return gate_err(err, GATE_E_NOMEM, "instantiate: out of memory");
        const struct wfunc_def *fd = &m->funcs[i - m->nfunc_imports];
        f->type = &m->types[m->type_canon[fd->type_idx]];
        f->inst = inst;
        f->code = &fd->code;
        inst->funcs[i] = f;
    }
    for (uint32_t i = m->ntable_imports; i < m->ntables; i++) {
        const struct wtable_def *td = &m->tables[i];
        inst->tables[i] =
            wasm_table_new(s, td->elem_type, td->lim.min, td->lim.max, td->lim.has_max);
        if (!inst->tables[i])
            return gate_err(err, GATE_E_WASM_LINK,
                            "instantiate: table %u of %u elements exceeds the cap", i, td->lim.min);
    }
    if (m->nmems > m->nmem_imports) {
        const struct wlimits *l = &m->mems[0];
        inst->mem = wasm_memory_new(s, l->min, l->max, l->has_max);
        if (!inst->mem)
            return gate_err(err, GATE_E_WASM_LINK,
                            "instantiate: memory of %u pages exceeds the cap of %u pages", l->min,
                            s->lim.max_mem_pages);
    }
    for (uint32_t i = m->nglobal_imports; i < m->nglobals; i++) {
        const struct wglobal_def *g = &m->globals[i];
        inst->globals[i] = wasm_global_new(s, g->type, g->mut, 0);
        if (!inst->globals[i]) return gate_err(err, GATE_E_NOMEM, "instantiate: out of memory");
        wasm_global_init(inst->globals[i], inst, &g->init);
    }
    return 0;
}

static enum wasm_trap apply_segments(struct wasm_instance *inst)
{
    const struct wasm_module *m = inst->mod;
    for (uint32_t i = 0; i < m->nelems; i++) {
        const struct welem *e = &m->elems[i];
        if (e->mode == WSEG_ACTIVE) {
            uint32_t off = (uint32_t)wasm_eval_const(inst, &e->offset);
            enum wasm_trap t = wasm_table_init(inst, e->table, i, off, 0, e->n);
            if (t) return t;
        }
        if (e->mode != WSEG_PASSIVE) inst->elem_dropped[i] = 1;
    }
    if (wasm_memory_image_apply(inst)) return WASM_TRAP_NONE;
    for (uint32_t i = 0; i < m->ndatas; i++) {
        const struct wdata *d = &m->datas[i];
        if (d->mode != WSEG_ACTIVE) continue;
        uint32_t off = (uint32_t)wasm_eval_const(inst, &d->offset);
        enum wasm_trap t = wasm_memory_init(inst, i, off, 0, d->len);
        if (t) return t;
        inst->data_dropped[i] = 1;
    }
    return WASM_TRAP_NONE;
}

int wasm_instantiate(struct wasm_store *s, const struct wasm_module *m,
                     const struct wasm_extern *imports, size_t nimports, struct wasm_instance **out,
                     enum wasm_trap *trap, struct gate_error *err)
{
    struct wasm_instance *inst = NULL;
    uint32_t counts[4] = {0};
    *trap = WASM_TRAP_NONE;
    if (nimports != m->nimports)
        return gate_err(err, GATE_E_WASM_LINK, "instantiate: %zu imports given, %u expected",
                        nimports, m->nimports);
    if (alloc_instance(s, m, &inst, err) < 0) return -1;
    for (uint32_t i = 0; i < m->nimports; i++)
        if (link_import(m, i, &imports[i], inst, counts, err) < 0) return -1;
    if (define_objects(s, m, inst, err) < 0) return -1;
    *out = inst; /* segments may partially apply before a trap, as the spec requires */
    *trap = apply_segments(inst);
    if (*trap) return gate_err(err, GATE_E_WASM_LINK, "instantiate: %s", wasm_trap_name(*trap));
    if (m->has_start) {
        uint64_t none[1];
        *trap = wasm_call(s, inst->funcs[m->start], none);
        if (*trap) return gate_err(err, GATE_E_WASM_LINK, "start: %s", wasm_trap_name(*trap));
    }
    return 0;
}

int wasm_instance_export(const struct wasm_instance *inst, const char *name,
                         struct wasm_extern *out)
{
    const struct wasm_module *m = inst->mod;
    for (uint32_t i = 0; i < m->nexports; i++) {
        const struct wexport *e = &m->exports[i];
        if (strcmp(e->name, name) != 0) continue;
        out->kind = e->kind;
        switch (e->kind) {
        case WASM_EXT_FUNC:
            out->u.func = inst->funcs[e->idx];
            break;
        case WASM_EXT_TABLE:
            out->u.table = inst->tables[e->idx];
            break;
        case WASM_EXT_MEMORY:
            out->u.memory = inst->mem;
            break;
        default:
            out->u.global = inst->globals[e->idx];
            break;
        }
        return 0;
    }
    return -1;
}
