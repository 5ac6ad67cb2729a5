/* wasi_fd.c: the WASI functions on open descriptors (fd_*). stdin, stdout and stderr are
 * buffers (see wasi.h); files and directories are host descriptors opened beneath a preopen. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wasi_internal.h"

/* A host file or directory descriptor: the checks most fd_* functions start with. */
#define HOSTFD(f, allow_dir)                                                                       \
    do {                                                                                           \
        if (!(f)) RET(WE_BADF);                                                                    \
        if ((f)->kind == WASI_FD_STDIN || (f)->kind == WASI_FD_STDOUT ||                           \
            (f)->kind == WASI_FD_STDERR)                                                           \
            RET(WE_SPIPE);                                                                         \
        if ((f)->kind == WASI_FD_DIR && !(allow_dir)) RET(WE_BADF);                                \
    } while (0)

/* Append to stdout/stderr within the shared cap. Returns false once the cap is hit. */
static bool out_append(struct wasi_ctx *w, struct gate_buf *b, const uint8_t *p, size_t n)
{
    uint64_t used = w->out.len + w->err.len;
    size_t room = used >= w->output_cap ? 0 : (size_t)(w->output_cap - used);
    size_t take = n < room ? n : room;
    if (take && gate_buf_append(b, p, take) < 0) return false;
    if (take < n) {
        w->truncated = true;
        return false;
    }
    return true;
}

/* One iovec array, bounds-checked: n entries of (pointer, length) at iovs. */
static uint8_t *iovecs(struct wasm_memory *m, uint32_t iovs, uint32_t n)
{
    return wasi_at(m, iovs, 8ull * n);
}

/* Read or write the iovecs of a host file, at the current position (off < 0) or at off. */
static uint32_t host_io(struct wasm_memory *m, int fd, const uint8_t *iov, uint32_t n, bool writing,
                        int64_t off, uint64_t *total)
{
    *total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = get32(iov + 8 * i), len = get32(iov + 8 * i + 4);
        uint8_t *data = wasi_at(m, p, len);
        if (!data) return WE_FAULT;
        ssize_t k;
        if (off >= 0)
            k = writing ? pwrite(fd, data, len, off + (off_t)*total)
                        : pread(fd, data, len, off + (off_t)*total);
        else
            k = writing ? write(fd, data, len) : read(fd, data, len);
        if (k < 0) return *total ? WE_SUCCESS : wasi_errno(errno);
        *total += (uint64_t)k;
        if ((uint32_t)k < len) break;
    }
    return WE_SUCCESS;
}

static enum wasm_trap do_write(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a, int64_t off)
{
    struct wasi_fd *f = wasi_fd_get(w, A32(0));
    uint32_t n = A32(2);
    uint8_t *iov = iovecs(m, A32(1), n), *pn = wasi_at(m, A32(off >= 0 ? 4 : 3), 4);
    uint64_t total = 0;
    if (!iov || !pn) RET(WE_FAULT);
    if (!f || f->kind == WASI_FD_STDIN || f->kind == WASI_FD_DIR) RET(WE_BADF);
    if (f->kind == WASI_FD_STDOUT || f->kind == WASI_FD_STDERR) {
        if (off >= 0) RET(WE_SPIPE);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t p = get32(iov + 8 * i), len = get32(iov + 8 * i + 4);
            uint8_t *data = wasi_at(m, p, len);
            if (!data) RET(WE_FAULT);
            if (!out_append(w, f->kind == WASI_FD_STDOUT ? &w->out : &w->err, data, len))
                return WASM_TRAP_HOST; /* output cap: stop the tool, as the other tiers do */
            total += len;
        }
    } else {
        if (f->readonly) RET(WE_BADF);
        uint32_t e = host_io(m, f->host, iov, n, true, off, &total);
        if (e) RET(e);
    }
    put32(pn, (uint32_t)total);
    RET(WE_SUCCESS);
}

static enum wasm_trap do_read(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a, int64_t off)
{
    struct wasi_fd *f = wasi_fd_get(w, A32(0));
    uint32_t n = A32(2);
    uint8_t *iov = iovecs(m, A32(1), n), *pn = wasi_at(m, A32(off >= 0 ? 4 : 3), 4);
    uint64_t total = 0;
    if (!iov || !pn) RET(WE_FAULT);
    if (!f || f->kind == WASI_FD_STDOUT || f->kind == WASI_FD_STDERR || f->kind == WASI_FD_DIR)
        RET(WE_BADF);
    if (f->kind == WASI_FD_STDIN) {
        if (off >= 0) RET(WE_SPIPE);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t p = get32(iov + 8 * i), len = get32(iov + 8 * i + 4);
            uint8_t *data = wasi_at(m, p, len);
            if (!data) RET(WE_FAULT);
            size_t left = w->stdin_len - w->stdin_pos, k = len < left ? len : left;
            memcpy(data, w->stdin_data + w->stdin_pos, k);
            w->stdin_pos += k;
            total += k;
            if (k < len) break;
        }
    } else {
        uint32_t e = host_io(m, f->host, iov, n, false, off, &total);
        if (e) RET(e);
    }
    put32(pn, (uint32_t)total);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_write)
{
    (void)s;
    return do_write(m, CTX(c), a, -1);
}
WASI_HOST(wasi_fd_pwrite)
{
    (void)s;
    if ((int64_t)a[3] < 0) RET(WE_INVAL);
    return do_write(m, CTX(c), a, (int64_t)a[3]);
}
WASI_HOST(wasi_fd_read)
{
    (void)s;
    return do_read(m, CTX(c), a, -1);
}
WASI_HOST(wasi_fd_pread)
{
    (void)s;
    if ((int64_t)a[3] < 0) RET(WE_INVAL);
    return do_read(m, CTX(c), a, (int64_t)a[3]);
}

WASI_HOST(wasi_fd_close)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    if (!f) RET(WE_BADF);
    if (f->owned && f->host >= 0) close(f->host);
    *f = (struct wasi_fd){.kind = WASI_FD_FREE, .host = -1};
    RET(WE_SUCCESS);
}

/* Move `from` onto `to`, closing what `to` was (wasi-libc's dup2 and freopen use it). */
WASI_HOST(wasi_fd_renumber)
{
    (void)s, (void)m;
    struct wasi_ctx *w = CTX(c);
    struct wasi_fd *from = wasi_fd_get(w, A32(0)), *to = wasi_fd_get(w, A32(1));
    if (!from || !to) RET(WE_BADF);
    if (from == to) RET(WE_SUCCESS);
    if (to->owned && to->host >= 0) close(to->host);
    *to = *from;
    *from = (struct wasi_fd){.kind = WASI_FD_FREE, .host = -1};
    RET(WE_SUCCESS);
}

static enum wasm_trap seek(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a,
                           const int whence_of[3])
{
    struct wasi_fd *f = wasi_fd_get(w, A32(0));
    uint8_t *pn = wasi_at(m, A32(3), 8);
    if (!pn) RET(WE_FAULT);
    HOSTFD(f, false);
    if (A32(2) > 2) RET(WE_INVAL);
    off_t r = lseek(f->host, (off_t)a[1], whence_of[A32(2)]);
    if (r < 0) RET(wasi_errno(errno));
    put64(pn, (uint64_t)r);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_seek)
{
    (void)s;
    static const int whence[3] = {SEEK_SET, SEEK_CUR, SEEK_END};
    return seek(m, CTX(c), a, whence);
}
/* wasi_unstable numbers whence CUR, END, SET. */
WASI_HOST(wasi_fd_seek_unstable)
{
    (void)s;
    static const int whence[3] = {SEEK_CUR, SEEK_END, SEEK_SET};
    return seek(m, CTX(c), a, whence);
}

WASI_HOST(wasi_fd_tell)
{
    (void)s;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint8_t *pn = wasi_at(m, A32(1), 8);
    if (!pn) RET(WE_FAULT);
    HOSTFD(f, false);
    off_t r = lseek(f->host, 0, SEEK_CUR);
    if (r < 0) RET(wasi_errno(errno));
    put64(pn, (uint64_t)r);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_fdstat_get)
{
    (void)s;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint8_t *p = wasi_at(m, A32(1), 24);
    if (!p) RET(WE_FAULT);
    if (!f) RET(WE_BADF);
    memset(p, 0, 24);
    /* stdio reports a character device with every right, so wasi-libc does not take it for a
     * terminal (which needs the seek rights absent) and buffers output fully. */
    p[0] = f->kind == WASI_FD_DIR    ? WFT_DIRECTORY
           : f->kind == WASI_FD_FILE ? WFT_REGULAR_FILE
                                     : WFT_CHARACTER_DEVICE;
    put16(p + 2, f->fdflags);
    put64(p + 8, f->rights);
    put64(p + 16, f->rights_inh);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_fdstat_set_flags)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint32_t fl = A32(1);
    if (!f) RET(WE_BADF);
    if (fl & ~(WFD_APPEND | WFD_DSYNC | WFD_NONBLOCK | WFD_RSYNC | WFD_SYNC)) RET(WE_INVAL);
    if (f->kind == WASI_FD_FILE || f->kind == WASI_FD_DIR) {
        /* Linux changes only O_APPEND and O_NONBLOCK after open; the sync flags are refused
         * rather than silently dropped. */
        if (fl & (WFD_DSYNC | WFD_RSYNC | WFD_SYNC)) RET(WE_NOTSUP);
        if (f->readonly && fl & WFD_APPEND) RET(WE_BADF);
        int cur = fcntl(f->host, F_GETFL);
        if (cur < 0) RET(wasi_errno(errno));
        cur &= ~(O_APPEND | O_NONBLOCK);
        cur |= (fl & WFD_APPEND ? O_APPEND : 0) | (fl & WFD_NONBLOCK ? O_NONBLOCK : 0);
        if (fcntl(f->host, F_SETFL, cur) < 0) RET(wasi_errno(errno));
    }
    f->fdflags = (uint16_t)fl;
    RET(WE_SUCCESS);
}

/* Rights can only be dropped, never gained back. */
WASI_HOST(wasi_fd_fdstat_set_rights)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    if (!f) RET(WE_BADF);
    if ((a[1] & ~f->rights) || (a[2] & ~f->rights_inh)) RET(WE_NOTCAPABLE);
    f->rights = a[1];
    f->rights_inh = a[2];
    RET(WE_SUCCESS);
}

static enum wasm_trap filestat_get(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a,
                                   enum wasi_flavour fl)
{
    struct wasi_fd *f = wasi_fd_get(w, A32(0));
    uint8_t *p = wasi_at(m, A32(1), wasi_filestat_size(fl));
    struct stat st;
    if (!p) RET(WE_FAULT);
    if (!f) RET(WE_BADF);
    if (f->host < 0) { /* stdio */
        memset(&st, 0, sizeof(st));
        st.st_mode = S_IFCHR;
    } else if (fstat(f->host, &st) < 0) {
        RET(wasi_errno(errno));
    }
    wasi_put_filestat(p, &st, fl);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_filestat_get)
{
    (void)s;
    return filestat_get(m, CTX(c), a, WASI_PREVIEW1);
}
WASI_HOST(wasi_fd_filestat_get_unstable)
{
    (void)s;
    return filestat_get(m, CTX(c), a, WASI_UNSTABLE);
}

WASI_HOST(wasi_fd_filestat_set_size)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    HOSTFD(f, false);
    if (f->readonly) RET(WE_BADF);
    if ((int64_t)a[1] < 0) RET(WE_INVAL);
    if (ftruncate(f->host, (off_t)a[1]) < 0) RET(wasi_errno(errno));
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_filestat_set_times)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    struct timespec ts[2];
    uint32_t e = wasi_times(a[1], a[2], A32(3), ts);
    if (e) RET(e);
    HOSTFD(f, true);
    if (f->readonly) RET(WE_ROFS);
    if (futimens(f->host, ts) < 0) RET(wasi_errno(errno));
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_advise)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    if (A32(3) > 5) RET(WE_INVAL);
    HOSTFD(f, false);
    /* WASI numbers the advice NORMAL, SEQUENTIAL, RANDOM, WILLNEED, DONTNEED, NOREUSE. */
    static const int advice[6] = {POSIX_FADV_NORMAL,   POSIX_FADV_SEQUENTIAL, POSIX_FADV_RANDOM,
                                  POSIX_FADV_WILLNEED, POSIX_FADV_DONTNEED,   POSIX_FADV_NOREUSE};
    int e = posix_fadvise(f->host, (off_t)a[1], (off_t)a[2], advice[A32(3)]);
    RET(e ? wasi_errno(e) : WE_SUCCESS);
}

WASI_HOST(wasi_fd_allocate)
{
    (void)s, (void)m;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    HOSTFD(f, false);
    if (f->readonly) RET(WE_BADF);
    if ((int64_t)a[1] < 0 || (int64_t)a[2] <= 0) RET(WE_INVAL);
    if (fallocate(f->host, 0, (off_t)a[1], (off_t)a[2]) < 0) RET(wasi_errno(errno));
    RET(WE_SUCCESS);
}

static enum wasm_trap sync_fd(struct wasi_ctx *w, uint64_t *a, bool data_only)
{
    struct wasi_fd *f = wasi_fd_get(w, A32(0));
    if (!f) RET(WE_BADF);
    if (f->host < 0) RET(WE_INVAL); /* stdio buffers have nothing to sync */
    if ((data_only ? fdatasync(f->host) : fsync(f->host)) < 0) RET(wasi_errno(errno));
    RET(WE_SUCCESS);
}
WASI_HOST(wasi_fd_datasync)
{
    (void)s, (void)m;
    return sync_fd(CTX(c), a, true);
}
WASI_HOST(wasi_fd_sync)
{
    (void)s, (void)m;
    return sync_fd(CTX(c), a, false);
}

/* ---- preopens ------------------------------------------------------------------------- */
WASI_HOST(wasi_fd_prestat_get)
{
    (void)s;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint8_t *p = wasi_at(m, A32(1), 8);
    if (!p) RET(WE_FAULT);
    if (!f || !f->preopen) RET(WE_BADF);
    memset(p, 0, 8); /* tag 0: a directory */
    put32(p + 4, (uint32_t)strlen(f->preopen));
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_fd_prestat_dir_name)
{
    (void)s;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint32_t len = A32(2);
    uint8_t *p = wasi_at(m, A32(1), len);
    if (!p) RET(WE_FAULT);
    if (!f || !f->preopen) RET(WE_BADF);
    size_t n = strlen(f->preopen);
    if (len < n) RET(WE_NAMETOOLONG);
    memcpy(p, f->preopen, n);
    RET(WE_SUCCESS);
}

/* ---- fd_readdir --------------------------------------------------------------------------- */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static uint8_t dt_filetype(unsigned char t)
{
    return t == DT_DIR   ? WFT_DIRECTORY
           : t == DT_REG ? WFT_REGULAR_FILE
           : t == DT_LNK ? WFT_SYMBOLIC_LINK
           : t == DT_CHR ? WFT_CHARACTER_DEVICE
                         : WFT_UNKNOWN;
}

/* Copy what fits of src into out at *used (a full buffer tells the caller to come back). */
static bool put_trunc(uint8_t *out, uint32_t len, uint64_t *used, const void *src, uint64_t n)
{
    uint64_t room = len - *used, k = room < n ? room : n;
    memcpy(out + *used, src, k);
    *used += k;
    return *used < len;
}

/* Entries are numbered from 0 in getdents order; an entry's cookie (d_next) is the next
 * entry's number, so a caller resumes where its buffer ran out. */
WASI_HOST(wasi_fd_readdir)
{
    (void)s;
    struct wasi_fd *f = wasi_fd_get(CTX(c), A32(0));
    uint32_t len = A32(2);
    uint64_t cookie = a[3], index = 0, used = 0;
    uint8_t *out = wasi_at(m, A32(1), len), *pused = wasi_at(m, A32(4), 4);
    if (!out || !pused) RET(WE_FAULT);
    if (!f) RET(WE_BADF);
    if (f->kind != WASI_FD_DIR) RET(WE_NOTDIR);
    if (lseek(f->host, 0, SEEK_SET) < 0) RET(wasi_errno(errno));
    char dbuf[4096] __attribute__((aligned(8)));
    bool room = len > 0;
    while (room) {
        long n = syscall(SYS_getdents64, f->host, dbuf, sizeof(dbuf));
        if (n < 0) RET(wasi_errno(errno));
        if (n == 0) break;
        for (long off = 0; off < n && room;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(dbuf + off);
            off += d->d_reclen;
            if (index++ < cookie) continue;
            uint8_t hdr[24] = {0};
            uint32_t namelen = (uint32_t)strlen(d->d_name);
            put64(hdr, index);
            put64(hdr + 8, d->d_ino);
            put32(hdr + 16, namelen);
            hdr[20] = dt_filetype(d->d_type);
            room = put_trunc(out, len, &used, hdr, 24) &&
                   put_trunc(out, len, &used, d->d_name, namelen);
        }
    }
    put32(pused, (uint32_t)used);
    RET(WE_SUCCESS);
}
