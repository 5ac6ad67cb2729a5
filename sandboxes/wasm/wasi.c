/* wasi.c: WASI preview 1 host functions (see wasi.h for the subset and its rules). */
#include "wasi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
    WE_SUCCESS = 0,
    WE_ACCES = 2,
    WE_BADF = 8,
    WE_EXIST = 20,
    WE_FAULT = 21,
    WE_INVAL = 28,
    WE_IO = 29,
    WE_ISDIR = 31,
    WE_LOOP = 32,
    WE_NAMETOOLONG = 37,
    WE_NOENT = 44,
    WE_NOMEM = 48,
    WE_NOSPC = 51,
    WE_NOSYS = 52,
    WE_NOTDIR = 54,
    WE_NOTEMPTY = 55,
    WE_PERM = 63,
    WE_SPIPE = 70,
    WE_XDEV = 75,
    WE_NOTCAPABLE = 76,
};

static uint32_t wasi_errno(int e)
{
    switch (e) {
    case EACCES:
        return WE_ACCES;
    case EBADF:
        return WE_BADF;
    case EEXIST:
        return WE_EXIST;
    case EINVAL:
        return WE_INVAL;
    case EISDIR:
        return WE_ISDIR;
    case ELOOP:
        return WE_LOOP;
    case ENAMETOOLONG:
        return WE_NAMETOOLONG;
    case ENOENT:
        return WE_NOENT;
    case ENOMEM:
        return WE_NOMEM;
    case ENOSPC:
        return WE_NOSPC;
    case ENOTDIR:
        return WE_NOTDIR;
    case ENOTEMPTY:
        return WE_NOTEMPTY;
    case EPERM:
        return WE_PERM;
    case ESPIPE:
        return WE_SPIPE;
    case EXDEV:
        return WE_NOTCAPABLE; /* RESOLVE_BENEATH refused an escape */
    default:
        return WE_IO;
    }
}

/* A pointer into linear memory for [p, p+len), or NULL if any byte lies outside. p and len are
 * 32-bit values widened to 64 bits, so the sum cannot wrap. */
static uint8_t *at(struct wasm_memory *m, uint64_t p, uint64_t len)
{
    uint64_t size;
    if (!m) return NULL;
    uint8_t *d = wasm_memory_data(m, &size);
    return p + len <= size ? d + p : NULL;
}

#define CTX(ctx) ((struct wasi_ctx *)(ctx))
#define A32(i) ((uint32_t)a[i])
#define RET(e)                                                                                     \
    do {                                                                                           \
        a[0] = (uint32_t)(e);                                                                      \
        return WASM_TRAP_NONE;                                                                     \
    } while (0)

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* ---- args and environment ------------------------------------------------------------- */
static enum wasm_trap strings_sizes(char *const *v, struct wasm_memory *m, uint64_t *a)
{
    uint32_t n = 0, bytes = 0;
    for (; v && v[n]; n++)
        bytes += (uint32_t)strlen(v[n]) + 1;
    uint8_t *pn = at(m, A32(0), 4), *pb = at(m, A32(1), 4);
    if (!pn || !pb) RET(WE_FAULT);
    put32(pn, n);
    put32(pb, bytes);
    RET(WE_SUCCESS);
}

static enum wasm_trap strings_get(char *const *v, struct wasm_memory *m, uint64_t *a)
{
    uint32_t ptrs = A32(0), buf = A32(1);
    for (uint32_t i = 0; v && v[i]; i++) {
        size_t len = strlen(v[i]) + 1;
        uint8_t *pp = at(m, ptrs + 4ull * i, 4), *pb = at(m, buf, len);
        if (!pp || !pb) RET(WE_FAULT);
        put32(pp, buf);
        memcpy(pb, v[i], len);
        buf += (uint32_t)len;
    }
    RET(WE_SUCCESS);
}

static enum wasm_trap args_sizes_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                     uint64_t *a)
{
    (void)s;
    return strings_sizes(CTX(c)->argv, m, a);
}
static enum wasm_trap args_get(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    return strings_get(CTX(c)->argv, m, a);
}
static enum wasm_trap environ_sizes_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                        uint64_t *a)
{
    (void)s;
    return strings_sizes(CTX(c)->env, m, a);
}
static enum wasm_trap environ_get(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    return strings_get(CTX(c)->env, m, a);
}

/* ---- fds ------------------------------------------------------------------------------- */
static struct wasi_fd *fd_of(struct wasi_ctx *w, uint32_t fd)
{
    return fd < WASI_MAX_FDS && w->fds[fd].host >= 0 ? &w->fds[fd] : NULL;
}

/* Append to stdout/stderr within the shared cap. Returns false once the cap is hit. */
static bool out_append(struct wasi_ctx *w, uint32_t fd, const uint8_t *p, size_t n)
{
    uint64_t used = w->out.len + w->err.len;
    size_t room = used >= w->output_cap ? 0 : (size_t)(w->output_cap - used);
    size_t take = n < room ? n : room;
    struct gate_buf *b = fd == 1 ? &w->out : &w->err;
    if (take && gate_buf_append(b, p, take) < 0) return false;
    if (take < n) {
        w->truncated = true;
        return false;
    }
    return true;
}

static enum wasm_trap fd_write(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    struct wasi_ctx *w = CTX(c);
    uint32_t fd = A32(0), iovs = A32(1), n = A32(2);
    uint64_t total = 0;
    uint8_t *pn = at(m, A32(3), 4), *iov = at(m, iovs, 8ull * n);
    if (!pn || !iov) RET(WE_FAULT);
    struct wasi_fd *f = fd_of(w, fd);
    if (!f || f->is_dir || fd == 0) RET(WE_BADF);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p, len;
        memcpy(&p, iov + 8 * i, 4);
        memcpy(&len, iov + 8 * i + 4, 4);
        uint8_t *data = at(m, p, len);
        if (!data) RET(WE_FAULT);
        if (fd == 1 || fd == 2) {
            if (!out_append(w, fd, data, len))
                return WASM_TRAP_HOST; /* output cap: stop the tool, as the other tiers do */
        } else {
            ssize_t k = write(f->host, data, len);
            if (k < 0) RET(wasi_errno(errno));
            total += (uint64_t)k;
            if ((uint32_t)k < len) break;
            continue;
        }
        total += len;
    }
    put32(pn, (uint32_t)total);
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_read(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    struct wasi_ctx *w = CTX(c);
    uint32_t fd = A32(0), n = A32(2);
    uint64_t total = 0;
    uint8_t *pn = at(m, A32(3), 4), *iov = at(m, A32(1), 8ull * n);
    if (!pn || !iov) RET(WE_FAULT);
    struct wasi_fd *f = fd_of(w, fd);
    if (!f || f->is_dir || fd == 1 || fd == 2) RET(WE_BADF);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p, len;
        memcpy(&p, iov + 8 * i, 4);
        memcpy(&len, iov + 8 * i + 4, 4);
        uint8_t *data = at(m, p, len);
        if (!data) RET(WE_FAULT);
        size_t k;
        if (fd == 0) {
            size_t left = w->stdin_len - w->stdin_pos;
            k = len < left ? len : left;
            memcpy(data, w->stdin_data + w->stdin_pos, k);
            w->stdin_pos += k;
        } else {
            ssize_t r = read(f->host, data, len);
            if (r < 0) RET(wasi_errno(errno));
            k = (size_t)r;
        }
        total += k;
        if (k < len) break;
    }
    put32(pn, (uint32_t)total);
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_close(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s, (void)m;
    struct wasi_ctx *w = CTX(c);
    uint32_t fd = A32(0);
    struct wasi_fd *f = fd_of(w, fd);
    if (!f || fd <= 3) RET(f ? WE_NOTCAPABLE : WE_BADF); /* stdio and the preopen stay open */
    close(f->host);
    f->host = -1;
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_seek(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    struct wasi_fd *f = fd_of(CTX(c), A32(0));
    uint8_t *pn = at(m, A32(3), 8);
    if (!pn) RET(WE_FAULT);
    if (!f || f->is_dir) RET(WE_BADF);
    if (A32(0) <= 2) RET(WE_SPIPE);
    int whence = A32(2) == 0 ? SEEK_SET : A32(2) == 1 ? SEEK_CUR : A32(2) == 2 ? SEEK_END : -1;
    if (whence < 0) RET(WE_INVAL);
    off_t r = lseek(f->host, (off_t)a[1], whence);
    if (r < 0) RET(wasi_errno(errno));
    put64(pn, (uint64_t)r);
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_fdstat_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                    uint64_t *a)
{
    (void)s;
    struct wasi_fd *f = fd_of(CTX(c), A32(0));
    uint8_t *p = at(m, A32(1), 24);
    if (!p) RET(WE_FAULT);
    if (!f) RET(WE_BADF);
    memset(p, 0, 24);
    /* filetype: 2 character device for stdio (tty-less but unbuffered-friendly), 3 directory,
     * 4 regular file */
    p[0] = A32(0) <= 2 ? 2 : f->is_dir ? 3 : 4;
    put64(p + 8, ~0ull);
    put64(p + 16, ~0ull);
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_prestat_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                     uint64_t *a)
{
    (void)s;
    uint8_t *p = at(m, A32(1), 8);
    if (!p) RET(WE_FAULT);
    if (A32(0) != 3 || !fd_of(CTX(c), 3)) RET(WE_BADF);
    memset(p, 0, 8);
    put32(p + 4, (uint32_t)strlen("/workspace"));
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_prestat_dir_name(struct wasm_store *s, struct wasm_memory *m, void *c,
                                          uint64_t *a)
{
    (void)s;
    uint32_t len = A32(2);
    uint8_t *p = at(m, A32(1), len);
    if (!p) RET(WE_FAULT);
    if (A32(0) != 3 || !fd_of(CTX(c), 3)) RET(WE_BADF);
    if (len < strlen("/workspace")) RET(WE_NAMETOOLONG);
    memcpy(p, "/workspace", strlen("/workspace"));
    RET(WE_SUCCESS);
}

static uint8_t filetype_of(mode_t mode)
{
    return S_ISDIR(mode) ? 3 : S_ISREG(mode) ? 4 : S_ISLNK(mode) ? 7 : S_ISCHR(mode) ? 2 : 0;
}

static void fill_filestat(uint8_t *p, const struct stat *st)
{
    memset(p, 0, 64);
    put64(p, st->st_dev);
    put64(p + 8, st->st_ino);
    p[16] = filetype_of(st->st_mode);
    put64(p + 24, st->st_nlink);
    put64(p + 32, (uint64_t)st->st_size);
    put64(p + 40, (uint64_t)st->st_atim.tv_sec * 1000000000ull + (uint64_t)st->st_atim.tv_nsec);
    put64(p + 48, (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec);
    put64(p + 56, (uint64_t)st->st_ctim.tv_sec * 1000000000ull + (uint64_t)st->st_ctim.tv_nsec);
}

static enum wasm_trap fd_filestat_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                      uint64_t *a)
{
    (void)s;
    struct wasi_fd *f = fd_of(CTX(c), A32(0));
    uint8_t *p = at(m, A32(1), 64);
    struct stat st;
    if (!p) RET(WE_FAULT);
    if (!f) RET(WE_BADF);
    memset(p, 0, 64);
    if (A32(0) <= 2) {
        p[16] = 2;
        RET(WE_SUCCESS);
    }
    if (fstat(f->host, &st) < 0) RET(wasi_errno(errno));
    fill_filestat(p, &st);
    RET(WE_SUCCESS);
}

/* ---- paths beneath the preopen ------------------------------------------------------- */
static int free_fd(struct wasi_ctx *w)
{
    for (int i = 4; i < WASI_MAX_FDS; i++)
        if (w->fds[i].host < 0) return i;
    return -1;
}

/* Copy a module path into a NUL-terminated host string; refuse embedded NULs. */
static uint32_t copy_path(struct wasm_memory *m, uint32_t p, uint32_t len, char *out, size_t cap)
{
    const uint8_t *src = at(m, p, len);
    if (!src) return WE_FAULT;
    if (len >= cap) return WE_NAMETOOLONG;
    if (memchr(src, 0, len)) return WE_INVAL;
    memcpy(out, src, len);
    out[len] = 0;
    return WE_SUCCESS;
}

static int open_beneath(int dirfd, const char *path, uint64_t flags, uint64_t mode)
{
    /* Safe: the kernel resolves the path strictly beneath the preopened directory; "..",
     * absolute paths, symlinks and magic links are refused (EXDEV/ELOOP), so nothing outside
     * the workspace can be named. */
    struct open_how how = {.flags = flags,
                           .mode = mode,
                           .resolve =
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static enum wasm_trap path_open(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    struct wasi_ctx *w = CTX(c);
    struct wasi_fd *dir = fd_of(w, A32(0));
    uint32_t oflags = A32(4), fdflags = A32(7);
    uint64_t rights = a[5];
    char path[4096];
    uint8_t *pfd = at(m, A32(8), 4);
    if (!pfd) RET(WE_FAULT);
    uint32_t e = copy_path(m, A32(2), A32(3), path, sizeof(path));
    if (e) RET(e);
    if (!dir || !dir->is_dir) RET(WE_BADF);
    int slot = free_fd(w);
    if (slot < 0) RET(WE_NOMEM);
    bool want_write = (rights & ((1ull << 6) | (1ull << 22))) != 0; /* fd_write, fd_allocate... */
    int flags = O_CLOEXEC | O_NOFOLLOW | (want_write ? O_RDWR : O_RDONLY);
    if (oflags & 1) flags |= O_CREAT;
    if (oflags & 2) flags = (flags & ~O_RDWR) | O_DIRECTORY;
    if (oflags & 4) flags |= O_EXCL;
    if (oflags & 8) flags |= O_TRUNC;
    if (fdflags & 1) flags |= O_APPEND;
    int fd = open_beneath(dir->host, path, (uint64_t)flags, (flags & O_CREAT) ? 0600 : 0);
    if (fd < 0 && errno == EISDIR && want_write) /* directories open read-only */
        fd = open_beneath(dir->host, path,
                          (uint64_t)((flags & ~(O_RDWR | O_CREAT | O_TRUNC)) | O_RDONLY), 0);
    if (fd < 0) RET(wasi_errno(errno));
    struct stat st;
    w->fds[slot].host = fd;
    w->fds[slot].is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    put32(pfd, (uint32_t)slot);
    RET(WE_SUCCESS);
}

static enum wasm_trap path_filestat_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                        uint64_t *a)
{
    (void)s;
    struct wasi_fd *dir = fd_of(CTX(c), A32(0));
    char path[4096];
    uint8_t *p = at(m, A32(4), 64);
    struct stat st;
    if (!p) RET(WE_FAULT);
    uint32_t e = copy_path(m, A32(2), A32(3), path, sizeof(path));
    if (e) RET(e);
    if (!dir || !dir->is_dir) RET(WE_BADF);
    int fd = open_beneath(dir->host, path, O_PATH | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0) RET(wasi_errno(errno));
    int rc = fstat(fd, &st);
    int saved = errno;
    close(fd);
    if (rc < 0) RET(wasi_errno(saved));
    fill_filestat(p, &st);
    RET(WE_SUCCESS);
}

static enum wasm_trap fd_fdstat_set_flags(struct wasm_store *s, struct wasm_memory *m, void *c,
                                          uint64_t *a)
{
    (void)s, (void)m;
    if (!fd_of(CTX(c), A32(0))) RET(WE_BADF);
    RET(A32(1) == 0 ? WE_SUCCESS : WE_NOSYS); /* no flag changes after open */
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static uint8_t dt_filetype(unsigned char t)
{
    return t == DT_DIR ? 3 : t == DT_REG ? 4 : t == DT_LNK ? 7 : t == DT_CHR ? 2 : 0;
}

/* Entries are numbered from 0 in getdents order; the cookie is the next entry's number. */
static enum wasm_trap fd_readdir(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s;
    struct wasi_fd *f = fd_of(CTX(c), A32(0));
    uint32_t buf = A32(1), len = A32(2);
    uint64_t cookie = a[3], index = 0, used = 0;
    uint8_t *out = at(m, buf, len), *pused = at(m, A32(4), 4);
    if (!out || !pused) RET(WE_FAULT);
    if (!f || !f->is_dir) RET(WE_BADF);
    if (lseek(f->host, 0, SEEK_SET) < 0) RET(wasi_errno(errno));
    char dbuf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, f->host, dbuf, sizeof(dbuf));
        if (n < 0) RET(wasi_errno(errno));
        if (n == 0) break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(dbuf + off);
            off += d->d_reclen;
            if (index++ < cookie) continue;
            uint8_t hdr[24];
            uint32_t namelen = (uint32_t)strlen(d->d_name);
            put64(hdr, index);
            put64(hdr + 8, d->d_ino);
            put32(hdr + 16, namelen);
            memset(hdr + 20, 0, 4);
            hdr[20] = dt_filetype(d->d_type);
            /* Copy what fits; a full buffer tells the caller to come back with a cookie. */
            uint64_t room = len - used;
            uint64_t k = room < 24 ? room : 24;
            memcpy(out + used, hdr, k);
            used += k;
            room = len - used;
            k = room < namelen ? room : namelen;
            memcpy(out + used, d->d_name, k);
            used += k;
            if (used >= len) goto done;
        }
    }
done:
    put32(pused, (uint32_t)used);
    RET(WE_SUCCESS);
}

/* ---- clocks, random, process ---------------------------------------------------------- */
static enum wasm_trap clock_time_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                     uint64_t *a)
{
    (void)s, (void)c;
    uint8_t *p = at(m, A32(2), 8);
    struct timespec ts;
    if (!p) RET(WE_FAULT);
    clockid_t id = A32(0) == 0 ? CLOCK_REALTIME : A32(0) == 1 ? CLOCK_MONOTONIC : (clockid_t)-1;
    if (id == (clockid_t)-1) RET(WE_INVAL);
    clock_gettime(id, &ts);
    put64(p, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    RET(WE_SUCCESS);
}

static enum wasm_trap clock_res_get(struct wasm_store *s, struct wasm_memory *m, void *c,
                                    uint64_t *a)
{
    (void)s, (void)c;
    uint8_t *p = at(m, A32(1), 8);
    if (!p) RET(WE_FAULT);
    if (A32(0) > 1) RET(WE_INVAL);
    put64(p, 1000);
    RET(WE_SUCCESS);
}

static enum wasm_trap random_get(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)s, (void)c;
    uint32_t len = A32(1);
    uint8_t *p = at(m, A32(0), len);
    if (!p) RET(WE_FAULT);
    for (uint32_t done = 0; done < len;) {
        ssize_t k = getrandom(p + done, len - done, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            RET(WE_IO);
        }
        done += (uint32_t)k;
    }
    RET(WE_SUCCESS);
}

static enum wasm_trap proc_exit(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
{
    (void)m;
    CTX(c)->exit_code = (int)A32(0);
    wasm_store_set_exit(s, (int)A32(0));
    return WASM_TRAP_EXIT;
}

static enum wasm_trap sched_yield_fn(struct wasm_store *s, struct wasm_memory *m, void *c,
                                     uint64_t *a)
{
    (void)s, (void)m, (void)c;
    RET(WE_SUCCESS);
}

/* ---- the table ------------------------------------------------------------------------ */
struct wasi_fn {
    const char *name;
    const char *params; /* i = i32, I = i64 */
    bool result;        /* returns an errno (i32) */
    wasm_host_fn fn;
};

static const struct wasi_fn wasi_fns[] = {
    {"args_get", "ii", true, args_get},
    {"args_sizes_get", "ii", true, args_sizes_get},
    {"environ_get", "ii", true, environ_get},
    {"environ_sizes_get", "ii", true, environ_sizes_get},
    {"fd_read", "iiii", true, fd_read},
    {"fd_write", "iiii", true, fd_write},
    {"fd_close", "i", true, fd_close},
    {"fd_seek", "iIii", true, fd_seek},
    {"fd_fdstat_get", "ii", true, fd_fdstat_get},
    {"fd_prestat_get", "ii", true, fd_prestat_get},
    {"fd_prestat_dir_name", "iii", true, fd_prestat_dir_name},
    {"fd_filestat_get", "ii", true, fd_filestat_get},
    {"fd_readdir", "iiiIi", true, fd_readdir},
    {"path_open", "iiiiiIIii", true, path_open},
    {"path_filestat_get", "iiiii", true, path_filestat_get},
    {"fd_fdstat_set_flags", "ii", true, fd_fdstat_set_flags},
    {"clock_time_get", "iIi", true, clock_time_get},
    {"clock_res_get", "ii", true, clock_res_get},
    {"random_get", "ii", true, random_get},
    {"proc_exit", "i", false, proc_exit},
    {"sched_yield", "", true, sched_yield_fn},
};

static void sig_of(const struct wasi_fn *f, uint8_t *params, uint32_t *np)
{
    *np = (uint32_t)strlen(f->params);
    for (uint32_t i = 0; i < *np; i++)
        params[i] = f->params[i] == 'I' ? WASM_I64 : WASM_I32;
}

static const struct wasi_fn *lookup(const struct wasm_import_desc *d)
{
    if (strcmp(d->module, "wasi_snapshot_preview1") != 0 || d->kind != WASM_EXT_FUNC) return NULL;
    for (size_t i = 0; i < sizeof(wasi_fns) / sizeof(wasi_fns[0]); i++) {
        if (strcmp(wasi_fns[i].name, d->name) != 0) continue;
        uint8_t params[16];
        uint32_t np;
        sig_of(&wasi_fns[i], params, &np);
        const struct wasm_functype *t = d->functype;
        bool ok = t->nparams == np && !memcmp(t->types, params, np) &&
                  t->nresults == (wasi_fns[i].result ? 1u : 0u) &&
                  (!t->nresults || t->types[np] == WASM_I32);
        return ok ? &wasi_fns[i] : NULL;
    }
    return NULL;
}

int wasi_check_imports(const struct wasm_module *m, struct gate_error *err)
{
    for (uint32_t i = 0; i < wasm_module_nimports(m); i++) {
        struct wasm_import_desc d;
        wasm_module_import(m, i, &d);
        if (!lookup(&d))
            return gate_err(err, GATE_E_WASM_LINK,
                            "import %s.%s is not provided (only the WASI preview 1 subset is)",
                            d.module, d.name);
    }
    return 0;
}

int wasi_link(struct wasm_store *s, const struct wasm_module *m, struct wasi_ctx *w,
              struct wasm_extern *imports, struct gate_error *err)
{
    static const uint8_t i32[] = {WASM_I32};
    for (uint32_t i = 0; i < wasm_module_nimports(m); i++) {
        struct wasm_import_desc d;
        wasm_module_import(m, i, &d);
        const struct wasi_fn *f = lookup(&d);
        if (!f) return wasi_check_imports(m, err);
        uint8_t params[16];
        uint32_t np;
        sig_of(f, params, &np);
        imports[i].kind = WASM_EXT_FUNC;
        imports[i].u.func = wasm_host_func_new(s, params, np, i32, f->result ? 1 : 0, f->fn, w);
        if (!imports[i].u.func) return gate_err(err, GATE_E_NOMEM, "wasi: out of memory");
    }
    return 0;
}

void wasi_ctx_init(struct wasi_ctx *w, char *const *argv, char *const *env, const void *in,
                   size_t in_len, uint64_t output_cap, int dirfd)
{
    memset(w, 0, sizeof(*w));
    w->argv = argv;
    w->env = env;
    w->stdin_data = in;
    w->stdin_len = in_len;
    w->output_cap = output_cap;
    for (int i = 0; i < WASI_MAX_FDS; i++)
        w->fds[i].host = -1;
    for (int i = 0; i < 3; i++)
        w->fds[i].host = i; /* markers only: stdio never touches host fds 0-2 */
    if (dirfd >= 0) {
        w->fds[3].host = dirfd;
        w->fds[3].is_dir = true;
    }
}

void wasi_ctx_free(struct wasi_ctx *w)
{
    for (int i = 4; i < WASI_MAX_FDS; i++)
        if (w->fds[i].host >= 0) {
            close(w->fds[i].host);
            w->fds[i].host = -1;
        }
    gate_buf_free(&w->out);
    gate_buf_free(&w->err);
}
