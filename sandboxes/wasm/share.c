/* share.c: a compiled module as one sealed memfd image that worker processes map read-only.
 *
 * The image is the module's arrays written one after the other, each 8-byte aligned, with
 * every pointer replaced by its offset from the image's start; compiled code needs no change
 * (handler cells are offsets inside the interpreter). Mapping it copies the small arrays of
 * structures into the heap and points them back into the mapping; the code, the data
 * segments and the constant items stay in the shared read-only pages. When memory 0 is the
 * module's own and every active data segment has a constant offset inside its initial size,
 * the image also holds the initial memory contents, page-aligned: instantiation then maps
 * them copy-on-write instead of copying the segments (wasm_memory_image_apply).
 *
 * The image is trusted input (only the engine writes one, and the seals keep anyone from
 * changing it afterwards), but map still checks the header, the engine build and that every
 * offset and count lies inside the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wasm_internal.h"

#define IMG_MAGIC "GWASMIM1"
#define IMG_PAGE 4096u
#define SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)

struct img_hdr {
    char magic[8];
    uint64_t build; /* engine_build(): images only map into the build that wrote them */
    uint64_t size;
    uint64_t mem_off, mem_len; /* initial memory image, 0 if none */
    struct wasm_module m;      /* counts; pointer fields hold offsets */
};

/* Identifies this build of the engine: its handler offsets and structure layouts. */
static uint64_t engine_build(void)
{
    const int32_t *h = wasm_interp_handlers();
    uint64_t x = 1469598103934665603ull;
    uint64_t sizes[] = {sizeof(struct wasm_module),
                        sizeof(struct wfunc_def),
                        sizeof(struct wimport),
                        sizeof(struct welem),
                        sizeof(struct wdata),
                        sizeof(union wcell),
                        WOP__COUNT};
    for (size_t i = 0; i < WOP__COUNT; i++)
        x = (x ^ (uint32_t)h[i]) * 1099511628211ull;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        x = (x ^ sizes[i]) * 1099511628211ull;
    return x;
}

/* ---- writing ------------------------------------------------------------------------- */
struct img {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

/* Append n bytes (8-byte aligned, or page-aligned); returns their offset. */
static uint64_t put(struct img *w, const void *data, size_t n, size_t align)
{
    size_t off = (w->len + align - 1) & ~(align - 1);
    if (off + n > w->cap) {
        size_t cap = w->cap ? w->cap : 1 << 16;
        while (cap < off + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->oom = true;
            return 0;
        }
        w->p = p, w->cap = cap;
    }
    memset(w->p + w->len, 0, off - w->len);
    if (n) memcpy(w->p + off, data, n);
    w->len = off + n;
    return off;
}
#define PUT(w, ptr, n) put(w, ptr, (n) * sizeof(*(ptr)), 8)
#define AS_PTR(off) ((void *)(uintptr_t)(off))

/* The initial memory contents, when the segments allow it (see the file comment). */
static uint8_t *memory_image(const struct wasm_module *m, size_t *len)
{
    size_t end = 0, limit;
    *len = 0;
    if (m->nmems != 1 || m->nmem_imports) return NULL;
    limit = (size_t)m->mems[0].min * WASM_PAGE;
    for (uint32_t i = 0; i < m->ndatas; i++) {
        const struct wdata *d = &m->datas[i];
        if (d->mode != WSEG_ACTIVE) continue;
        if (d->offset.op != WC_I32 || (uint64_t)(uint32_t)d->offset.val + d->len > limit)
            return NULL;
        if ((uint32_t)d->offset.val + (size_t)d->len > end)
            end = (uint32_t)d->offset.val + (size_t)d->len;
    }
    end = (end + IMG_PAGE - 1) & ~(size_t)(IMG_PAGE - 1);
    if (!end) return NULL;
    uint8_t *img = calloc(1, end);
    if (!img) return NULL;
    for (uint32_t i = 0; i < m->ndatas; i++) {
        const struct wdata *d = &m->datas[i];
        if (d->mode == WSEG_ACTIVE && d->len)
            memcpy(img + (uint32_t)d->offset.val, d->bytes, d->len);
    }
    *len = end;
    return img;
}

static void write_arrays(struct img *w, const struct wasm_module *m, struct wasm_module *h)
{
    struct wasm_functype *types = calloc(m->ntypes ? m->ntypes : 1, sizeof(*types));
    struct wimport *imports = calloc(m->nimports ? m->nimports : 1, sizeof(*imports));
    struct wfunc_def *funcs = calloc(m->ndefined ? m->ndefined : 1, sizeof(*funcs));
    struct wexport *exports = calloc(m->nexports ? m->nexports : 1, sizeof(*exports));
    struct welem *elems = calloc(m->nelems ? m->nelems : 1, sizeof(*elems));
    struct wdata *datas = calloc(m->ndatas ? m->ndatas : 1, sizeof(*datas));
    if (!types || !imports || !funcs || !exports || !elems || !datas) {
        w->oom = true;
        goto out;
    }
    for (uint32_t i = 0; i < m->ntypes; i++) {
        types[i] = m->types[i];
        types[i].types =
            AS_PTR(PUT(w, m->types[i].types, m->types[i].nparams + m->types[i].nresults));
    }
    for (uint32_t i = 0; i < m->nimports; i++) {
        imports[i] = m->imports[i];
        imports[i].module =
            AS_PTR(put(w, m->imports[i].module, strlen(m->imports[i].module) + 1, 8));
        imports[i].name = AS_PTR(put(w, m->imports[i].name, strlen(m->imports[i].name) + 1, 8));
    }
    for (uint32_t i = 0; i < m->ndefined; i++) {
        funcs[i] = m->funcs[i];
        funcs[i].body = NULL, funcs[i].local_types = NULL, funcs[i].body_len = 0;
        funcs[i].code.cells = AS_PTR(PUT(w, m->funcs[i].code.cells, m->funcs[i].code.ncells));
    }
    for (uint32_t i = 0; i < m->nexports; i++) {
        exports[i] = m->exports[i];
        exports[i].name = AS_PTR(put(w, m->exports[i].name, strlen(m->exports[i].name) + 1, 8));
    }
    for (uint32_t i = 0; i < m->nelems; i++) {
        elems[i] = m->elems[i];
        elems[i].items = AS_PTR(PUT(w, m->elems[i].items, m->elems[i].n));
    }
    for (uint32_t i = 0; i < m->ndatas; i++) {
        datas[i] = m->datas[i];
        datas[i].bytes = AS_PTR(put(w, m->datas[i].bytes, m->datas[i].len, 8));
    }
    h->types = AS_PTR(PUT(w, types, m->ntypes));
    h->type_canon = AS_PTR(PUT(w, m->type_canon, m->ntypes));
    h->imports = AS_PTR(PUT(w, imports, m->nimports));
    h->func_types = AS_PTR(PUT(w, m->func_types, m->nfuncs));
    h->funcs = AS_PTR(PUT(w, funcs, m->ndefined));
    h->tables = AS_PTR(PUT(w, m->tables, m->ntables));
    h->mems = AS_PTR(PUT(w, m->mems, m->nmems));
    h->globals = AS_PTR(PUT(w, m->globals, m->nglobals));
    h->exports = AS_PTR(PUT(w, exports, m->nexports));
    h->elems = AS_PTR(PUT(w, elems, m->nelems));
    h->datas = AS_PTR(PUT(w, datas, m->ndatas));
out:
    free(types), free(imports), free(funcs), free(exports), free(elems), free(datas);
}

int wasm_module_share(const struct wasm_module *m, struct gate_error *err)
{
    struct img w = {0};
    struct img_hdr hdr;
    memset(&hdr, 0, sizeof(hdr));
    memcpy(hdr.magic, IMG_MAGIC, 8);
    hdr.build = engine_build();
    hdr.m = *m;
    hdr.m.bytes = NULL, hdr.m.len = 0, hdr.m.func_declared = NULL;
    hdr.m.image_fd = -1, hdr.m.image = NULL, hdr.m.image_size = 0;
    put(&w, &hdr, sizeof(hdr), 8);
    write_arrays(&w, m, &hdr.m);
    size_t mem_len = 0;
    uint8_t *mem = memory_image(m, &mem_len);
    if (mem) {
        hdr.mem_off = put(&w, mem, mem_len, IMG_PAGE);
        hdr.mem_len = mem_len;
        free(mem);
    }
    put(&w, NULL, 0, IMG_PAGE); /* whole pages: the memory image may be mapped from the end */
    hdr.size = w.len;
    if (w.oom) {
        free(w.p);
        return gate_err(err, GATE_E_NOMEM, "wasm share: out of memory");
    }
    memcpy(w.p, &hdr, sizeof(hdr));
    /* A memfd sealed against writes, resizing and further seal changes: every worker maps
     * the same bytes, and no process (the gateway included) can change code under them. */
    autoclose int fd = memfd_create("gatehouse-wasm-module", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int rc = fd < 0 ? -1 : gate_write_all(fd, w.p, w.len);
    free(w.p);
    if (fd < 0 || rc < 0 || fcntl(fd, F_ADD_SEALS, SEALS) < 0)
        return gate_err_errno(err, GATE_E_IO, errno, "wasm share: memfd");
    return steal_fd(&fd);
}

/* ---- mapping --------------------------------------------------------------------------- */
struct view {
    const uint8_t *base;
    uint64_t size;
    bool bad;
};

/* The heap copy of an array of n elements of `size` bytes at image offset off, or NULL. */
static void *copy_array(struct view *v, const void *off_ptr, uint64_t n, size_t size)
{
    uint64_t off = (uintptr_t)off_ptr;
    if (n > v->size / (size ? size : 1) || off > v->size - n * size) {
        v->bad = true;
        return NULL;
    }
    void *p = malloc(n ? n * size : 1);
    if (p && n) memcpy(p, v->base + off, n * size);
    if (!p) v->bad = true;
    return p;
}

/* Turn an image offset of n elements of `size` bytes into a pointer into the mapping. */
static void *in_image(struct view *v, const void *off_ptr, uint64_t n, size_t size)
{
    uint64_t off = (uintptr_t)off_ptr;
    if (n > v->size / (size ? size : 1) || off > v->size - n * size) {
        v->bad = true;
        return NULL;
    }
    return (void *)(v->base + off);
}

static char *in_image_str(struct view *v, const void *off_ptr)
{
    char *s = in_image(v, off_ptr, 1, 1);
    if (s && !memchr(s, 0, v->size - (uint64_t)(uintptr_t)off_ptr)) v->bad = true;
    return v->bad ? NULL : s;
}

static void map_arrays(struct view *v, struct wasm_module *m, const struct wasm_module *h)
{
    m->types = copy_array(v, h->types, m->ntypes, sizeof(*m->types));
    m->type_canon = in_image(v, h->type_canon, m->ntypes, sizeof(uint32_t));
    m->imports = copy_array(v, h->imports, m->nimports, sizeof(*m->imports));
    m->func_types = in_image(v, h->func_types, m->nfuncs, sizeof(uint32_t));
    m->funcs = copy_array(v, h->funcs, m->ndefined, sizeof(*m->funcs));
    m->tables = in_image(v, h->tables, m->ntables, sizeof(*m->tables));
    m->mems = in_image(v, h->mems, m->nmems, sizeof(*m->mems));
    m->globals = in_image(v, h->globals, m->nglobals, sizeof(*m->globals));
    m->exports = copy_array(v, h->exports, m->nexports, sizeof(*m->exports));
    m->elems = copy_array(v, h->elems, m->nelems, sizeof(*m->elems));
    m->datas = copy_array(v, h->datas, m->ndatas, sizeof(*m->datas));
    if (v->bad) return;
    for (uint32_t i = 0; i < m->ntypes; i++)
        m->types[i].types =
            in_image(v, m->types[i].types, (uint64_t)m->types[i].nparams + m->types[i].nresults, 1);
    for (uint32_t i = 0; i < m->nimports; i++) {
        m->imports[i].module = in_image_str(v, m->imports[i].module);
        m->imports[i].name = in_image_str(v, m->imports[i].name);
    }
    for (uint32_t i = 0; i < m->ndefined; i++)
        m->funcs[i].code.cells =
            in_image(v, m->funcs[i].code.cells, m->funcs[i].code.ncells, sizeof(union wcell));
    for (uint32_t i = 0; i < m->nexports; i++)
        m->exports[i].name = in_image_str(v, m->exports[i].name);
    for (uint32_t i = 0; i < m->nelems; i++)
        m->elems[i].items = in_image(v, m->elems[i].items, m->elems[i].n, sizeof(struct wconst));
    for (uint32_t i = 0; i < m->ndatas; i++)
        m->datas[i].bytes = in_image(v, m->datas[i].bytes, m->datas[i].len, 1);
}

int wasm_module_map(int fd, struct wasm_module **out, struct gate_error *err)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & SEALS) != SEALS || fstat(fd, &st) < 0 ||
        (uint64_t)st.st_size < sizeof(struct img_hdr))
        return gate_err(err, GATE_E_WASM_INVALID, "wasm map: not a sealed module image");
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return gate_err_errno(err, GATE_E_IO, errno, "wasm map: mmap");
    struct img_hdr hdr;
    memcpy(&hdr, p, sizeof(hdr));
    struct wasm_module *m = calloc(1, sizeof(*m));
    if (!m) {
        munmap(p, (size_t)st.st_size);
        return gate_err(err, GATE_E_NOMEM, "wasm map: out of memory");
    }
    m->image = p, m->image_size = (size_t)st.st_size, m->image_fd = -1;
    if (memcmp(hdr.magic, IMG_MAGIC, 8) != 0 || hdr.build != engine_build() ||
        hdr.size != (uint64_t)st.st_size || hdr.mem_off % IMG_PAGE || hdr.mem_len % IMG_PAGE ||
        hdr.mem_off > hdr.size || hdr.mem_len > hdr.size - hdr.mem_off) {
        wasm_module_free(m);
        return gate_err(err, GATE_E_WASM_INVALID,
                        "wasm map: not a module image of this engine build");
    }
    /* The counts and flags from the header; every array is set from its offset below. */
    *m = hdr.m;
    m->bytes = NULL, m->len = 0, m->func_declared = NULL;
    m->types = NULL, m->type_canon = NULL, m->imports = NULL, m->func_types = NULL;
    m->funcs = NULL, m->tables = NULL, m->mems = NULL, m->globals = NULL, m->exports = NULL;
    m->elems = NULL, m->datas = NULL;
    m->image = p, m->image_size = (size_t)st.st_size, m->image_fd = -1;
    struct view v = {p, hdr.size, false};
    map_arrays(&v, m, &hdr.m);
    if (!v.bad && hdr.mem_len) {
        m->image_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        m->image_mem_off = hdr.mem_off, m->image_mem_len = hdr.mem_len;
        if (m->image_fd < 0) v.bad = true;
    }
    if (v.bad) {
        wasm_module_free(m);
        return gate_err(err, GATE_E_WASM_INVALID, "wasm map: image offsets out of range");
    }
    *out = m;
    return 0;
}

int wasm_module_image_fd(const struct wasm_module *m)
{
    return m->image_mem_len ? m->image_fd : -1;
}

bool wasm_memory_image_apply(struct wasm_instance *inst)
{
    const struct wasm_module *m = inst->mod;
    /* An image exists only for a memory the module defines itself (memory_image). */
    if (m->image_fd < 0 || !m->image_mem_len || !inst->mem || m->image_mem_len > inst->mem->size)
        return false;
    /* Copy-on-write: the instance reads the shared initial pages until it writes them. */
    if (mmap(inst->mem->data, m->image_mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
             m->image_fd, (off_t)m->image_mem_off) == MAP_FAILED)
        return false;
    for (uint32_t i = 0; i < m->ndatas; i++)
        if (m->datas[i].mode == WSEG_ACTIVE) inst->data_dropped[i] = 1;
    return true;
}
