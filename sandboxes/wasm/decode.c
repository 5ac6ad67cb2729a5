/* decode.c: the WebAssembly 2.0 binary format, section by section, into struct wasm_module.
 *
 * Every count, size and LEB128 is bounds-checked against the bytes that remain and against
 * the caps in wasm_internal.h before anything is allocated. Module-level validation (index
 * spaces, limits, constant expressions, export names) happens here too; function bodies are
 * validated and compiled by compile.c once all sections are read.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "wasm_internal.h"

int wr_fail(struct wreader *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return gate_err(r->err, GATE_E_WASM_INVALID, "%s at offset 0x%zx", msg, wr_off(r));
}

int wr_u8(struct wreader *r, uint8_t *v)
{
    if (r->p >= r->end) return wr_fail(r, "decode: unexpected end");
    *v = *r->p++;
    return 0;
}

/* Unsigned or signed LEB128 of at most `bits` bits. The last byte's unused bits must be zero
 * (unsigned) or a sign extension (signed), otherwise "integer too large". */
static int leb(struct wreader *r, unsigned bits, bool is_signed, uint64_t *out)
{
    uint64_t result = 0;
    unsigned shift = 0;
    unsigned maxbytes = (bits + 6) / 7;
    for (unsigned i = 0;; i++) {
        if (i >= maxbytes) return wr_fail(r, "decode: integer representation too long");
        if (r->p >= r->end) return wr_fail(r, "decode: unexpected end of LEB128");
        uint8_t b = *r->p++;
        if (i == maxbytes - 1) {
            unsigned used = bits - shift; /* payload bits allowed in this last byte */
            if (used < 7) {
                uint8_t mask = is_signed ? (uint8_t)(0x7f & ~((1u << (used - 1)) - 1))
                                         : (uint8_t)(0x7f & ~((1u << used) - 1));
                uint8_t high = b & mask;
                if (is_signed ? (high != 0 && high != mask) : high != 0)
                    return wr_fail(r, "decode: integer too large");
            }
            if (b & 0x80) return wr_fail(r, "decode: integer representation too long");
        }
        result |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) {
            if (is_signed && shift < 64 && (b & 0x40)) result |= ~(uint64_t)0 << shift;
            break;
        }
    }
    *out = result;
    return 0;
}

int wr_u32(struct wreader *r, uint32_t *v)
{
    uint64_t x = 0;
    if (leb(r, 32, false, &x) < 0) return -1;
    *v = (uint32_t)x;
    return 0;
}

int wr_s32(struct wreader *r, int32_t *v)
{
    uint64_t x = 0;
    if (leb(r, 32, true, &x) < 0) return -1;
    *v = (int32_t)(uint32_t)x;
    return 0;
}

int wr_s33(struct wreader *r, int64_t *v)
{
    uint64_t x = 0;
    if (leb(r, 33, true, &x) < 0) return -1;
    *v = (int64_t)x;
    return 0;
}

int wr_s64(struct wreader *r, int64_t *v)
{
    uint64_t x = 0;
    if (leb(r, 64, true, &x) < 0) return -1;
    *v = (int64_t)x;
    return 0;
}

int wr_bytes(struct wreader *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return wr_fail(r, "decode: unexpected end (length out of bounds)");
    *out = r->p;
    r->p += n;
    return 0;
}

/* A count followed by at least `min_each` bytes per element: refuse counts the remaining
 * bytes cannot hold before allocating for them. */
static int read_count(struct wreader *r, uint32_t cap, size_t min_each, uint32_t *n)
{
    if (wr_u32(r, n) < 0) return -1;
    if (*n > cap) return wr_fail(r, "decode: count %u exceeds the limit %u", *n, cap);
    if (min_each && (size_t)(r->end - r->p) / min_each < *n)
        return wr_fail(r, "decode: unexpected end (count %u larger than the section)", *n);
    return 0;
}

static void *xcalloc(struct wreader *r, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) gate_err(r->err, GATE_E_NOMEM, "decode: out of memory");
    return p;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint32_t cp = 0;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static int read_name_nul(struct wreader *r, char **out, bool allow_nul)
{
    uint32_t n = 0;
    const uint8_t *b = NULL;
    if (wr_u32(r, &n) < 0 || wr_bytes(r, n, &b) < 0) return -1;
    if (!utf8_valid(b, n)) return wr_fail(r, "decode: malformed UTF-8 encoding");
    *out = malloc((size_t)n + 1);
    if (!*out) return gate_err(r->err, GATE_E_NOMEM, "decode: out of memory");
    memcpy(*out, b, n);
    (*out)[n] = 0;
    if (strlen(*out) != n && !allow_nul) { /* an embedded NUL would make names compare wrongly */
        free(*out);
        *out = NULL;
        return wr_fail(r, "decode: name contains a NUL byte");
    }
    return 0;
}

static int read_name(struct wreader *r, char **out)
{
    return read_name_nul(r, out, false);
}

static int read_valtype(struct wreader *r, uint8_t *t)
{
    if (wr_u8(r, t) < 0) return -1;
    switch (*t) {
    case WASM_I32:
    case WASM_I64:
    case WASM_F32:
    case WASM_F64:
    case WASM_FUNCREF:
    case WASM_EXTERNREF:
    case WASM_V128:
        return 0;
    default:
        return wr_fail(r, "decode: malformed value type 0x%02x", *t);
    }
}

static int read_reftype(struct wreader *r, uint8_t *t)
{
    if (wr_u8(r, t) < 0) return -1;
    if (*t != WASM_FUNCREF && *t != WASM_EXTERNREF)
        return wr_fail(r, "decode: malformed reference type 0x%02x", *t);
    return 0;
}

static int read_limits(struct wreader *r, struct wlimits *l, uint32_t bound, const char *what)
{
    uint8_t flag = 0;
    if (wr_u8(r, &flag) < 0) return -1;
    if (flag > 1) return wr_fail(r, "decode: malformed limits flags 0x%02x", flag);
    if (wr_u32(r, &l->min) < 0) return -1;
    l->has_max = flag == 1;
    l->max = 0;
    if (l->has_max && wr_u32(r, &l->max) < 0) return -1;
    if (l->min > bound || (l->has_max && l->max > bound))
        return wr_fail(r, "validate: %s size must be at most %u", what, bound);
    if (l->has_max && l->max < l->min)
        return wr_fail(r, "validate: size minimum must not be greater than maximum");
    return 0;
}

/* Global types of every global visible so far (imports first), for constant expressions. */
static int read_const(struct wreader *r, const struct wasm_module *m, uint32_t nglobals_visible,
                      uint8_t want, struct wconst *c)
{
    uint8_t op = 0;
    if (wr_u8(r, &op) < 0) return -1;
    memset(c, 0, sizeof(*c));
    switch (op) {
    case 0x41: {
        int32_t v = 0;
        if (wr_s32(r, &v) < 0) return -1;
        c->op = WC_I32, c->type = WASM_I32, c->val = (uint32_t)v;
        break;
    }
    case 0x42: {
        int64_t v = 0;
        if (wr_s64(r, &v) < 0) return -1;
        c->op = WC_I64, c->type = WASM_I64, c->val = (uint64_t)v;
        break;
    }
    case 0x43:
    case 0x44: {
        const uint8_t *b = NULL;
        size_t n = op == 0x43 ? 4 : 8;
        if (wr_bytes(r, n, &b) < 0) return -1;
        memcpy(&c->val, b, n);
        c->op = op == 0x43 ? WC_F32 : WC_F64;
        c->type = op == 0x43 ? WASM_F32 : WASM_F64;
        break;
    }
    case 0xd0:
        if (read_reftype(r, &c->type) < 0) return -1;
        c->op = WC_REF_NULL;
        break;
    case 0xfd: { /* v128.const */
        uint32_t sub = 0;
        const uint8_t *b = NULL;
        if (wr_u32(r, &sub) < 0) return -1;
        if (sub != 0x0c) return wr_fail(r, "validate: constant expression required");
        if (wr_bytes(r, 16, &b) < 0) return -1;
        memcpy(&c->val, b, 8);
        memcpy(&c->hi, b + 8, 8);
        c->op = WC_V128, c->type = WASM_V128;
        break;
    }
    case 0xd2:
        if (wr_u32(r, &c->idx) < 0) return -1;
        if (c->idx >= m->nfuncs) return wr_fail(r, "validate: unknown function %u", c->idx);
        m->func_declared[c->idx] = 1;
        c->op = WC_REF_FUNC, c->type = WASM_FUNCREF;
        break;
    case 0x23:
        if (wr_u32(r, &c->idx) < 0) return -1;
        if (c->idx >= nglobals_visible || c->idx >= m->nglobal_imports)
            return wr_fail(
                r,
                "validate: unknown global %u (constant expressions may only read imported globals)",
                c->idx);
        if (m->globals[c->idx].mut) return wr_fail(r, "validate: constant expression required");
        c->op = WC_GLOBAL_GET, c->type = m->globals[c->idx].type;
        break;
    default:
        if ((op >= 0x45 && op <= 0xc4) || op == 0x20 || op == 0x24 || op == 0x01 || op == 0x1a)
            return wr_fail(r, "validate: constant expression required");
        return wr_fail(r, "decode: illegal opcode 0x%02x in constant expression", op);
    }
    if (wr_u8(r, &op) < 0) return -1;
    if (op != 0x0b) {
        if (op == 0x41 || op == 0x42 || op == 0x43 || op == 0x44 || op == 0x23 || op == 0xd0 ||
            op == 0xd2 || op == 0xfd)
            return wr_fail(r, "validate: type mismatch in constant expression");
        return wr_fail(r, "validate: constant expression required (END opcode expected)");
    }
    if (want && c->type != want)
        return wr_fail(r, "validate: type mismatch in constant expression");
    return 0;
}

static int sec_types(struct wreader *r, struct wasm_module *m)
{
    if (read_count(r, WASM_MAX_TYPES, 3, &m->ntypes) < 0) return -1;
    m->types = xcalloc(r, m->ntypes, sizeof(*m->types));
    m->type_canon = xcalloc(r, m->ntypes, sizeof(uint32_t));
    if (!m->types || !m->type_canon) return -1;
    for (uint32_t i = 0; i < m->ntypes; i++) {
        struct wasm_functype *t = &m->types[i];
        uint8_t form = 0;
        uint32_t np = 0, nr = 0;
        if (wr_u8(r, &form) < 0) return -1;
        if (form != 0x60) return wr_fail(r, "decode: malformed function type 0x%02x", form);
        if (read_count(r, WASM_MAX_PARAMS, 1, &np) < 0) return -1;
        uint8_t params[WASM_MAX_PARAMS];
        for (uint32_t k = 0; k < np; k++)
            if (read_valtype(r, &params[k]) < 0) return -1;
        if (read_count(r, WASM_MAX_PARAMS, 1, &nr) < 0) return -1;
        t->types = xcalloc(r, (size_t)np + nr, 1);
        if (!t->types) return -1;
        memcpy(t->types, params, np);
        t->nparams = np, t->nresults = nr;
        for (uint32_t k = 0; k < nr; k++)
            if (read_valtype(r, &t->types[np + k]) < 0) return -1;
        m->type_canon[i] = i;
        for (uint32_t k = 0; k < i; k++)
            if (wasm_functype_eq(&m->types[k], t)) {
                m->type_canon[i] = k;
                break;
            }
    }
    return 0;
}

static int sec_imports(struct wreader *r, struct wasm_module *m)
{
    if (read_count(r, WASM_MAX_IMPORTS, 4, &m->nimports) < 0) return -1;
    m->imports = xcalloc(r, m->nimports, sizeof(*m->imports));
    if (!m->imports) return -1;
    for (uint32_t i = 0; i < m->nimports; i++) {
        struct wimport *im = &m->imports[i];
        if (read_name(r, &im->module) < 0 || read_name(r, &im->name) < 0 || wr_u8(r, &im->kind) < 0)
            return -1;
        switch (im->kind) {
        case WASM_EXT_FUNC:
            if (wr_u32(r, &im->type_idx) < 0) return -1;
            if (im->type_idx >= m->ntypes)
                return wr_fail(r, "validate: unknown type %u", im->type_idx);
            m->nfunc_imports++;
            break;
        case WASM_EXT_TABLE:
            if (read_reftype(r, &im->elem_type) < 0 ||
                read_limits(r, &im->lim, UINT32_MAX, "table") < 0)
                return -1;
            m->ntable_imports++;
            break;
        case WASM_EXT_MEMORY:
            if (read_limits(r, &im->lim, WASM_MAX_PAGES, "memory") < 0) return -1;
            m->nmem_imports++;
            break;
        case WASM_EXT_GLOBAL: {
            uint8_t mut = 0;
            if (read_valtype(r, &im->gtype) < 0 || wr_u8(r, &mut) < 0) return -1;
            if (mut > 1) return wr_fail(r, "decode: malformed mutability");
            im->gmut = mut;
            m->nglobal_imports++;
            break;
        }
        default:
            return wr_fail(r, "decode: malformed import kind %u", im->kind);
        }
    }
    return 0;
}

/* Size the index spaces once the import and function sections are known. */
static int index_spaces(struct wreader *r, struct wasm_module *m, uint32_t ndefined,
                        const uint32_t *def_types)
{
    if ((uint64_t)m->nfunc_imports + ndefined > WASM_MAX_FUNCS)
        return wr_fail(r, "decode: too many functions");
    m->nfuncs = m->nfunc_imports + ndefined;
    m->ndefined = ndefined;
    m->func_types = xcalloc(r, m->nfuncs, sizeof(uint32_t));
    m->func_declared = xcalloc(r, m->nfuncs, 1);
    m->funcs = xcalloc(r, ndefined, sizeof(*m->funcs));
    if (!m->func_types || !m->func_declared || !m->funcs) return -1;
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->nimports; i++)
        if (m->imports[i].kind == WASM_EXT_FUNC) m->func_types[k++] = m->imports[i].type_idx;
    for (uint32_t i = 0; i < ndefined; i++) {
        m->func_types[k++] = def_types[i];
        m->funcs[i].type_idx = def_types[i];
    }
    return 0;
}

static int sec_functions(struct wreader *r, struct wasm_module *m, uint32_t *ndefined)
{
    if (read_count(r, WASM_MAX_FUNCS, 1, ndefined) < 0) return -1;
    autofree uint32_t *types = xcalloc(r, *ndefined, sizeof(uint32_t));
    if (!types) return -1;
    for (uint32_t i = 0; i < *ndefined; i++) {
        if (wr_u32(r, &types[i]) < 0) return -1;
        if (types[i] >= m->ntypes) return wr_fail(r, "validate: unknown type %u", types[i]);
    }
    free(m->func_types);
    free(m->func_declared);
    free(m->funcs);
    m->func_types = NULL, m->func_declared = NULL, m->funcs = NULL;
    m->ndefined = 0;
    return index_spaces(r, m, *ndefined, types);
}

static int sec_tables(struct wreader *r, struct wasm_module *m)
{
    uint32_t n = 0;
    if (read_count(r, WASM_MAX_TABLES, 3, &n) < 0) return -1;
    struct wtable_def *all = xcalloc(r, (size_t)m->ntable_imports + n, sizeof(*all));
    if (!all) return -1;
    memcpy(all, m->tables, m->ntable_imports * sizeof(*all));
    free(m->tables);
    m->tables = all;
    m->ntables = m->ntable_imports + n;
    for (uint32_t i = 0; i < n; i++) {
        struct wtable_def *t = &m->tables[m->ntable_imports + i];
        if (read_reftype(r, &t->elem_type) < 0 || read_limits(r, &t->lim, UINT32_MAX, "table") < 0)
            return -1;
    }
    return 0;
}

static int sec_memories(struct wreader *r, struct wasm_module *m)
{
    uint32_t n = 0;
    if (read_count(r, WASM_MAX_TABLES, 2, &n) < 0) return -1;
    if (m->nmem_imports + n > 1) return wr_fail(r, "validate: multiple memories");
    struct wlimits *all = xcalloc(r, (size_t)m->nmem_imports + n, sizeof(*all));
    if (!all) return -1;
    memcpy(all, m->mems, m->nmem_imports * sizeof(*all));
    free(m->mems);
    m->mems = all;
    m->nmems = m->nmem_imports + n;
    for (uint32_t i = 0; i < n; i++)
        if (read_limits(r, &m->mems[m->nmem_imports + i], WASM_MAX_PAGES, "memory") < 0) return -1;
    return 0;
}

static int sec_globals(struct wreader *r, struct wasm_module *m)
{
    uint32_t n = 0;
    if (read_count(r, WASM_MAX_GLOBALS, 4, &n) < 0) return -1;
    struct wglobal_def *g = realloc(m->globals, ((size_t)m->nglobal_imports + n + 1) * sizeof(*g));
    if (!g) return gate_err(r->err, GATE_E_NOMEM, "decode: out of memory");
    m->globals = g;
    for (uint32_t i = 0; i < n; i++) {
        struct wglobal_def *d = &m->globals[m->nglobal_imports + i];
        uint8_t mut = 0;
        memset(d, 0, sizeof(*d));
        if (read_valtype(r, &d->type) < 0 || wr_u8(r, &mut) < 0) return -1;
        if (mut > 1) return wr_fail(r, "decode: malformed mutability");
        d->mut = mut;
        if (read_const(r, m, m->nglobal_imports, d->type, &d->init) < 0) return -1;
        m->nglobals = m->nglobal_imports + i + 1;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int sec_exports(struct wreader *r, struct wasm_module *m)
{
    if (read_count(r, WASM_MAX_EXPORTS, 3, &m->nexports) < 0) return -1;
    m->exports = xcalloc(r, m->nexports, sizeof(*m->exports));
    if (!m->exports) return -1;
    for (uint32_t i = 0; i < m->nexports; i++) {
        struct wexport *e = &m->exports[i];
        if (read_name(r, &e->name) < 0 || wr_u8(r, &e->kind) < 0 || wr_u32(r, &e->idx) < 0)
            return -1;
        uint32_t bound = e->kind == WASM_EXT_FUNC     ? m->nfuncs
                         : e->kind == WASM_EXT_TABLE  ? m->ntables
                         : e->kind == WASM_EXT_MEMORY ? m->nmems
                         : e->kind == WASM_EXT_GLOBAL ? m->nglobals
                                                      : 0;
        if (e->kind > WASM_EXT_GLOBAL)
            return wr_fail(r, "decode: malformed export kind %u", e->kind);
        if (e->idx >= bound) return wr_fail(r, "validate: unknown export index %u", e->idx);
        if (e->kind == WASM_EXT_FUNC) m->func_declared[e->idx] = 1;
    }
    autofree const char **names = xcalloc(r, m->nexports, sizeof(char *));
    if (!names) return -1;
    for (uint32_t i = 0; i < m->nexports; i++)
        names[i] = m->exports[i].name;
    qsort(names, m->nexports, sizeof(char *), cmp_names);
    for (uint32_t i = 1; i < m->nexports; i++)
        if (!strcmp(names[i - 1], names[i]))
            return wr_fail(r, "validate: duplicate export name \"%s\"", names[i]);
    return 0;
}

static int read_elem_items(struct wreader *r, struct wasm_module *m, struct welem *e, bool exprs)
{
    if (read_count(r, WASM_MAX_TABLE_ELEMS, 1, &e->n) < 0) return -1;
    e->items = xcalloc(r, e->n, sizeof(*e->items));
    if (!e->items) return -1;
    for (uint32_t k = 0; k < e->n; k++) {
        struct wconst *c = &e->items[k];
        if (exprs) {
            if (read_const(r, m, m->nglobals, e->type, c) < 0) return -1;
            continue;
        }
        if (wr_u32(r, &c->idx) < 0) return -1;
        if (c->idx >= m->nfuncs) return wr_fail(r, "validate: unknown function %u", c->idx);
        m->func_declared[c->idx] = 1;
        c->op = WC_REF_FUNC, c->type = WASM_FUNCREF;
    }
    return 0;
}

static int read_elem(struct wreader *r, struct wasm_module *m, struct welem *e)
{
    uint32_t flags = 0;
    if (wr_u32(r, &flags) < 0) return -1;
    if (flags > 7) return wr_fail(r, "decode: malformed elements segment kind %u", flags);
    e->mode = (flags & 1) ? ((flags & 2) ? WSEG_DECLARATIVE : WSEG_PASSIVE) : WSEG_ACTIVE;
    e->type = WASM_FUNCREF;
    if (e->mode == WSEG_ACTIVE) {
        if ((flags & 2) && wr_u32(r, &e->table) < 0) return -1;
        if (e->table >= m->ntables) return wr_fail(r, "validate: unknown table %u", e->table);
        if (read_const(r, m, m->nglobals, WASM_I32, &e->offset) < 0) return -1;
    }
    if (flags & 3) { /* explicit element kind / reference type */
        if (flags & 4) {
            if (read_reftype(r, &e->type) < 0) return -1;
        } else {
            uint8_t kind = 0;
            if (wr_u8(r, &kind) < 0) return -1;
            if (kind != 0) return wr_fail(r, "decode: malformed element kind %u", kind);
        }
    }
    if (read_elem_items(r, m, e, flags & 4) < 0) return -1;
    if (e->mode == WSEG_ACTIVE && m->tables[e->table].elem_type != e->type)
        return wr_fail(r, "validate: type mismatch (element segment type)");
    return 0;
}

static int sec_elems(struct wreader *r, struct wasm_module *m)
{
    if (read_count(r, WASM_MAX_SEGMENTS, 2, &m->nelems) < 0) return -1;
    m->elems = xcalloc(r, m->nelems, sizeof(*m->elems));
    if (!m->elems) return -1;
    for (uint32_t i = 0; i < m->nelems; i++)
        if (read_elem(r, m, &m->elems[i]) < 0) return -1;
    return 0;
}

static int sec_datas(struct wreader *r, struct wasm_module *m)
{
    if (read_count(r, WASM_MAX_SEGMENTS, 2, &m->ndatas) < 0) return -1;
    if (m->has_datacount && m->datacount != m->ndatas)
        return wr_fail(r, "decode: data count and data section have inconsistent lengths");
    m->datas = xcalloc(r, m->ndatas, sizeof(*m->datas));
    if (!m->datas) return -1;
    for (uint32_t i = 0; i < m->ndatas; i++) {
        struct wdata *d = &m->datas[i];
        uint32_t flags = 0;
        if (wr_u32(r, &flags) < 0) return -1;
        if (flags > 2) return wr_fail(r, "decode: malformed data segment kind %u", flags);
        d->mode = flags == 1 ? WSEG_PASSIVE : WSEG_ACTIVE;
        if (flags == 2 && wr_u32(r, &d->mem) < 0) return -1;
        if (d->mode == WSEG_ACTIVE) {
            if (d->mem >= m->nmems) return wr_fail(r, "validate: unknown memory %u", d->mem);
            if (read_const(r, m, m->nglobals, WASM_I32, &d->offset) < 0) return -1;
        }
        if (wr_u32(r, &d->len) < 0 || wr_bytes(r, d->len, &d->bytes) < 0) return -1;
    }
    return 0;
}

static int sec_code(struct wreader *r, struct wasm_module *m)
{
    uint32_t n, ndef = m->ndefined;
    if (read_count(r, WASM_MAX_FUNCS, 1, &n) < 0) return -1;
    if (n != ndef) return wr_fail(r, "decode: function and code section have inconsistent lengths");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t size = 0;
        if (wr_u32(r, &size) < 0 || wr_bytes(r, size, &m->funcs[i].body) < 0) return -1;
        m->funcs[i].body_len = size;
        m->funcs[i].body_off = (uint32_t)(m->funcs[i].body - r->base);
    }
    return 0;
}

/* Imported tables, memories and globals occupy the first indices of their spaces. */
static int import_spaces(struct wreader *r, struct wasm_module *m)
{
    m->ntables = m->ntable_imports;
    m->nmems = m->nmem_imports;
    m->nglobals = m->nglobal_imports;
    if (m->nmems > 1) return wr_fail(r, "validate: multiple memories");
    free(m->func_types);
    free(m->func_declared);
    free(m->funcs);
    m->func_types = NULL, m->func_declared = NULL, m->funcs = NULL, m->ndefined = 0;
    free(m->tables);
    free(m->mems);
    free(m->globals);
    m->tables = xcalloc(r, m->ntables, sizeof(*m->tables));
    m->mems = xcalloc(r, m->nmems, sizeof(*m->mems));
    m->globals = xcalloc(r, (size_t)m->nglobals + 1, sizeof(*m->globals));
    if (!m->tables || !m->mems || !m->globals) return -1;
    uint32_t t = 0, g = 0, me = 0;
    for (uint32_t i = 0; i < m->nimports; i++) {
        const struct wimport *im = &m->imports[i];
        if (im->kind == WASM_EXT_TABLE)
            m->tables[t].elem_type = im->elem_type, m->tables[t++].lim = im->lim;
        else if (im->kind == WASM_EXT_MEMORY)
            m->mems[me++] = im->lim;
        else if (im->kind == WASM_EXT_GLOBAL)
            m->globals[g].type = im->gtype, m->globals[g++].mut = im->gmut;
    }
    return index_spaces(r, m, 0, NULL);
}

static int read_section(struct wreader *r, struct wasm_module *m, uint8_t id, uint32_t *ndef)
{
    switch (id) {
    case 1:
        return sec_types(r, m);
    case 2:
        return sec_imports(r, m) < 0 ? -1 : import_spaces(r, m);
    case 3:
        return sec_functions(r, m, ndef);
    case 4:
        return sec_tables(r, m);
    case 5:
        return sec_memories(r, m);
    case 6:
        return sec_globals(r, m);
    case 7:
        return sec_exports(r, m);
    case 8:
        if (wr_u32(r, &m->start) < 0) return -1;
        if (m->start >= m->nfuncs)
            return wr_fail(r, "validate: unknown function %u (start)", m->start);
        m->has_start = true;
        return 0;
    case 9:
        return sec_elems(r, m);
    case 10:
        return sec_code(r, m);
    case 11:
        return sec_datas(r, m);
    case 12:
        m->has_datacount = true;
        return wr_u32(r, &m->datacount);
    default:
        return wr_fail(r, "decode: malformed section id %u", id);
    }
}

/* Section order: custom sections anywhere, the others once each in this order. */
static int section_rank(uint8_t id)
{
    static const int rank[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 10};
    return id < sizeof(rank) / sizeof(rank[0]) ? rank[id] : -1;
}

static int decode_sections(struct wreader *r, struct wasm_module *m)
{
    int last = 0;
    uint32_t ndef = 0;
    bool saw_code = false;
    while (r->p < r->end) {
        uint8_t id = 0;
        uint32_t size = 0;
        const uint8_t *body = NULL;
        if (wr_u8(r, &id) < 0 || wr_u32(r, &size) < 0) return -1;
        if (section_rank(id) < 0) return wr_fail(r, "decode: malformed section id %u", id);
        if (wr_bytes(r, size, &body) < 0)
            return wr_fail(r, "decode: section size mismatch (length out of bounds)");
        struct wreader sr = {r->base, body, body + size, r->err};
        if (id == 0) {
            char *name = NULL;
            int rc = read_name_nul(&sr, &name, true);
            free(name);
            if (rc < 0) return -1;
            continue;
        }
        if (section_rank(id) <= last)
            return wr_fail(
                r, "decode: unexpected content after last section (section %u out of order)", id);
        last = section_rank(id);
        if (read_section(&sr, m, id, &ndef) < 0) return -1;
        if (sr.p != sr.end) return wr_fail(&sr, "decode: section size mismatch");
        saw_code |= id == 10;
    }
    if (!saw_code && m->ndefined != 0)
        return wr_fail(r, "decode: function and code section have inconsistent lengths");
    if (m->has_datacount && !m->datas && m->datacount != 0)
        return wr_fail(r, "decode: data count and data section have inconsistent lengths");
    return 0;
}

int wasm_decode(const uint8_t *bytes, size_t len, struct wasm_module *m, struct gate_error *err)
{
    struct wreader r = {bytes, bytes, bytes + len, err};
    const uint8_t *hdr = NULL;
    if (len < 4 || memcmp(bytes, "\0asm", 4) != 0)
        return wr_fail(&r, "decode: magic header not detected");
    if (wr_bytes(&r, 8, &hdr) < 0 || memcmp(hdr + 4, "\1\0\0\0", 4) != 0)
        return wr_fail(&r, "decode: unknown binary version");
    if (import_spaces(&r, m) < 0) return -1;
    if (decode_sections(&r, m) < 0) return -1;
    if (m->has_start) {
        const struct wasm_functype *t = &m->types[m->func_types[m->start]];
        if (t->nparams || t->nresults)
            return gate_err(err, GATE_E_WASM_INVALID, "validate: start function must be [] -> []");
    }
    return 0;
}

bool wasm_functype_eq(const struct wasm_functype *a, const struct wasm_functype *b)
{
    return a == b || (a->nparams == b->nparams && a->nresults == b->nresults &&
                      !memcmp(a->types, b->types, a->nparams + a->nresults));
}
