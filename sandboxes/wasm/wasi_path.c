/* wasi_path.c: the WASI functions that name files by a path relative to a directory
 * descriptor (path_*).
 *
 * Nothing here lets the kernel resolve a tool's path without RESOLVE_BENEATH: a path is either
 * opened whole with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so "..", absolute paths
 * and symlinks (also those in the middle of the path, and symlinks the tool made) can never
 * lead outside the directory, or split into its parent, opened that way, and one last
 * component that the *at() call acts on without following it. Under a read-only preopen,
 * nothing may be created, changed or removed (ROFS).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wasi_internal.h"

#define LOOKUP_SYMLINK_FOLLOW 1u
#define PATH_MAX_WASI 4096

static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
    /* Safe: the kernel resolves the path strictly beneath dirfd; "..", absolute paths, absolute
     * symlinks, symlinks that climb out and magic links are refused (EXDEV/ELOOP). */
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC,
                           .mode = mode,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* The directory a path_* call starts from and its path, copied out of linear memory and
 * NUL-terminated. mutate: the call changes something, refused under a read-only preopen. */
static uint32_t get_path(struct wasm_memory *m, struct wasi_ctx *w, uint32_t fd, uint32_t p,
                         uint32_t len, bool mutate, struct wasi_fd **dir, char *out)
{
    const uint8_t *src = wasi_at(m, p, len);
    if (!src) return WE_FAULT;
    *dir = wasi_fd_get(w, fd);
    if (!*dir) return WE_BADF;
    if ((*dir)->kind != WASI_FD_DIR) return WE_NOTDIR;
    if (len >= PATH_MAX_WASI) return WE_NAMETOOLONG;
    if (memchr(src, 0, len)) return WE_INVAL;
    if (len == 0) return WE_NOENT;
    if (src[0] == '/') return WE_NOTCAPABLE;
    if (mutate && (*dir)->readonly) return WE_ROFS;
    memcpy(out, src, len);
    out[len] = 0;
    return WE_SUCCESS;
}

/* Split path into its parent, opened beneath dirfd (O_PATH), and its last component, which
 * keeps any trailing slashes so the kernel applies the usual "must be a directory" rules.
 * A last component of ".." is only allowed when the whole path stays beneath dirfd. Returns
 * the parent fd (the caller closes it) or -1 with *e set. */
static int open_parent(int dirfd, char *path, const char **last, uint32_t *e)
{
    size_t end = strlen(path), b;
    while (end > 0 && path[end - 1] == '/')
        end--;
    for (b = end; b > 0 && path[b - 1] != '/'; b--)
        ;
    if (end - b == 2 && path[b] == '.' && path[b + 1] == '.') {
        int fd = open_beneath(dirfd, path, O_PATH, 0);
        if (fd < 0) {
            *e = wasi_errno(errno);
            return -1;
        }
        close(fd);
    }
    *last = path + b;
    int pfd;
    if (b == 0) {
        pfd = open_beneath(dirfd, ".", O_PATH | O_DIRECTORY, 0);
    } else {
        char parent[PATH_MAX_WASI];
        memcpy(parent, path, b);
        parent[b] = 0;
        pfd = open_beneath(dirfd, parent, O_PATH | O_DIRECTORY, 0);
    }
    if (pfd < 0) *e = wasi_errno(errno);
    return pfd;
}

WASI_HOST(wasi_path_open)
{
    (void)s;
    struct wasi_ctx *w = CTX(c);
    struct wasi_fd *dir;
    uint32_t oflags = A32(4), fdflags = A32(7);
    uint64_t rights = a[5], inh = a[6];
    char path[PATH_MAX_WASI];
    uint8_t *pfd = wasi_at(m, A32(8), 4);
    if (!pfd) RET(WE_FAULT);
    uint32_t e = get_path(m, w, A32(0), A32(2), A32(3), false, &dir, path);
    if (e) RET(e);
    if (oflags & ~15u || fdflags & ~31u) RET(WE_INVAL);
    bool want_read = rights & (WR_FD_READ | WR_FD_READDIR);
    bool want_write = rights & (WR_FD_WRITE | WR_FD_ALLOCATE | WR_FD_FILESTAT_SET_SIZE);
    if (dir->readonly && (want_write || oflags & (1 | 4 | 8) || fdflags & WFD_APPEND)) RET(WE_ROFS);
    int slot = wasi_fd_alloc(w);
    if (slot < 0) RET(WE_MFILE);
    int flags = want_write ? (want_read ? O_RDWR : O_WRONLY) : O_RDONLY;
    if (!(A32(1) & LOOKUP_SYMLINK_FOLLOW)) flags |= O_NOFOLLOW;
    if (oflags & 1) flags |= O_CREAT;
    if (oflags & 2) flags |= O_DIRECTORY;
    if (oflags & 4) flags |= O_EXCL;
    if (oflags & 8) flags |= O_TRUNC;
    if (fdflags & WFD_APPEND) flags |= O_APPEND;
    if (fdflags & WFD_DSYNC) flags |= O_DSYNC;
    if (fdflags & WFD_NONBLOCK) flags |= O_NONBLOCK;
    if (fdflags & WFD_RSYNC) flags |= O_RSYNC;
    if (fdflags & WFD_SYNC) flags |= O_SYNC;
    int fd = open_beneath(dir->host, path, flags, flags & O_CREAT ? 0644 : 0);
    /* A directory opened for writing (wasi-libc asks for every right) opens for reading. */
    if (fd < 0 && errno == EISDIR && !(flags & (O_CREAT | O_TRUNC)))
        fd = open_beneath(dir->host, path, (flags & ~O_ACCMODE) | O_RDONLY, 0);
    if (fd < 0) RET(wasi_errno(errno));
    struct stat st;
    bool is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    uint64_t allowed = dir->readonly ? WR_ALL & ~WR_MUTATE : WR_ALL;
    w->fds[slot] = (struct wasi_fd){.kind = is_dir ? WASI_FD_DIR : WASI_FD_FILE,
                                    .host = fd,
                                    .owned = true,
                                    .readonly = dir->readonly,
                                    .fdflags = (uint16_t)fdflags,
                                    .rights = rights & allowed,
                                    .rights_inh = inh & allowed};
    put32(pfd, (uint32_t)slot);
    RET(WE_SUCCESS);
}

/* Open the object a path names, without following a final symlink unless asked (O_PATH). */
static int open_object(struct wasi_fd *dir, const char *path, uint32_t lookup, uint32_t *e)
{
    int flags = O_PATH | (lookup & LOOKUP_SYMLINK_FOLLOW ? 0 : O_NOFOLLOW);
    int fd = open_beneath(dir->host, path, flags, 0);
    if (fd < 0) *e = wasi_errno(errno);
    return fd;
}

static enum wasm_trap filestat_get(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a,
                                   enum wasi_flavour fl)
{
    struct wasi_fd *dir;
    char path[PATH_MAX_WASI];
    uint8_t *p = wasi_at(m, A32(4), wasi_filestat_size(fl));
    struct stat st;
    if (!p) RET(WE_FAULT);
    uint32_t e = get_path(m, w, A32(0), A32(2), A32(3), false, &dir, path);
    if (e) RET(e);
    autoclose int fd = open_object(dir, path, A32(1), &e);
    if (fd < 0) RET(e);
    if (fstat(fd, &st) < 0) RET(wasi_errno(errno));
    wasi_put_filestat(p, &st, fl);
    RET(WE_SUCCESS);
}

WASI_HOST(wasi_path_filestat_get)
{
    (void)s;
    return filestat_get(m, CTX(c), a, WASI_PREVIEW1);
}
WASI_HOST(wasi_path_filestat_get_unstable)
{
    (void)s;
    return filestat_get(m, CTX(c), a, WASI_UNSTABLE);
}

WASI_HOST(wasi_path_filestat_set_times)
{
    (void)s;
    struct wasi_fd *dir;
    char path[PATH_MAX_WASI];
    struct timespec ts[2];
    uint32_t e = wasi_times(a[4], a[5], A32(6), ts);
    if (e) RET(e);
    e = get_path(m, CTX(c), A32(0), A32(2), A32(3), true, &dir, path);
    if (e) RET(e);
    autoclose int fd = open_object(dir, path, A32(1), &e);
    if (fd < 0) RET(e);
    /* The object itself, through the O_PATH descriptor: nothing is resolved a second time. */
    int nofollow = A32(1) & LOOKUP_SYMLINK_FOLLOW ? 0 : AT_SYMLINK_NOFOLLOW;
    if (utimensat(fd, "", ts, AT_EMPTY_PATH | nofollow) < 0) RET(wasi_errno(errno));
    RET(WE_SUCCESS);
}

/* The parent-and-last-component calls: create_directory, remove_directory, unlink_file,
 * readlink. */
enum parent_op { OP_MKDIR, OP_RMDIR, OP_UNLINK };

static enum wasm_trap parent_op(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a,
                                enum parent_op op)
{
    struct wasi_fd *dir;
    char path[PATH_MAX_WASI];
    const char *last;
    uint32_t e = get_path(m, w, A32(0), A32(1), A32(2), true, &dir, path);
    if (e) RET(e);
    autoclose int pfd = open_parent(dir->host, path, &last, &e);
    if (pfd < 0) RET(e);
    int rc = op == OP_MKDIR   ? mkdirat(pfd, last, 0755)
             : op == OP_RMDIR ? unlinkat(pfd, last, AT_REMOVEDIR)
                              : unlinkat(pfd, last, 0);
    RET(rc < 0 ? wasi_errno(errno) : WE_SUCCESS);
}

WASI_HOST(wasi_path_create_directory)
{
    (void)s;
    return parent_op(m, CTX(c), a, OP_MKDIR);
}
WASI_HOST(wasi_path_remove_directory)
{
    (void)s;
    return parent_op(m, CTX(c), a, OP_RMDIR);
}
WASI_HOST(wasi_path_unlink_file)
{
    (void)s;
    return parent_op(m, CTX(c), a, OP_UNLINK);
}

WASI_HOST(wasi_path_readlink)
{
    (void)s;
    struct wasi_fd *dir;
    char path[PATH_MAX_WASI], target[PATH_MAX_WASI];
    const char *last;
    uint32_t len = A32(4);
    uint8_t *buf = wasi_at(m, A32(3), len), *pused = wasi_at(m, A32(5), 4);
    if (!buf || !pused) RET(WE_FAULT);
    uint32_t e = get_path(m, CTX(c), A32(0), A32(1), A32(2), false, &dir, path);
    if (e) RET(e);
    autoclose int pfd = open_parent(dir->host, path, &last, &e);
    if (pfd < 0) RET(e);
    ssize_t n = readlinkat(pfd, last, target, sizeof(target));
    if (n < 0) RET(wasi_errno(errno));
    uint32_t k = (uint64_t)n < len ? (uint32_t)n : len; /* a short buffer truncates */
    memcpy(buf, target, k);
    put32(pused, k);
    RET(WE_SUCCESS);
}

/* Two paths, each beneath its own directory descriptor (rename, link). */
struct two_paths {
    char old[PATH_MAX_WASI], new[PATH_MAX_WASI];
    const char *old_last, *new_last;
    int old_dir;          /* the old path's directory (borrowed) */
    int old_pfd, new_pfd; /* the parents, owned */
};

static void two_close(struct two_paths *t)
{
    if (t->old_pfd >= 0) close(t->old_pfd);
    if (t->new_pfd >= 0) close(t->new_pfd);
}

static uint32_t two_open(struct wasm_memory *m, struct wasi_ctx *w, uint32_t ofd, uint32_t op,
                         uint32_t olen, uint32_t nfd, uint32_t np, uint32_t nlen,
                         struct two_paths *t)
{
    struct wasi_fd *odir, *ndir;
    t->old_pfd = t->new_pfd = -1;
    uint32_t e = get_path(m, w, ofd, op, olen, true, &odir, t->old);
    if (!e) e = get_path(m, w, nfd, np, nlen, true, &ndir, t->new);
    if (e) return e;
    t->old_dir = odir->host;
    t->old_pfd = open_parent(odir->host, t->old, &t->old_last, &e);
    if (t->old_pfd >= 0) t->new_pfd = open_parent(ndir->host, t->new, &t->new_last, &e);
    return t->new_pfd < 0 ? e : WE_SUCCESS;
}

WASI_HOST(wasi_path_rename)
{
    (void)s;
    struct two_paths t;
    uint32_t e = two_open(m, CTX(c), A32(0), A32(1), A32(2), A32(3), A32(4), A32(5), &t);
    if (!e && renameat(t.old_pfd, t.old_last, t.new_pfd, t.new_last) < 0) e = wasi_errno(errno);
    two_close(&t);
    RET(e);
}

WASI_HOST(wasi_path_link)
{
    (void)s;
    struct two_paths t;
    uint32_t e = two_open(m, CTX(c), A32(0), A32(2), A32(3), A32(4), A32(5), A32(6), &t);
    if (!e && A32(1) & LOOKUP_SYMLINK_FOLLOW) {
        /* Link what a symlink points to: resolve it beneath the directory first, then link that
         * object through its descriptor's /proc magic link (linkat's AT_EMPTY_PATH needs
         * CAP_DAC_READ_SEARCH), so an escaping symlink is refused, never followed. */
        autoclose int fd = open_beneath(t.old_dir, t.old, O_PATH, 0);
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (fd < 0 || linkat(AT_FDCWD, proc, t.new_pfd, t.new_last, AT_SYMLINK_FOLLOW) < 0)
            e = wasi_errno(errno);
    } else if (!e && linkat(t.old_pfd, t.old_last, t.new_pfd, t.new_last, 0) < 0) {
        e = wasi_errno(errno);
    }
    two_close(&t);
    RET(e);
}

/* Whether a symlink at linkpath (relative to its preopen) with this target stays beneath the
 * preopen, judged on the text alone. Following a link is checked again by the kernel
 * (RESOLVE_BENEATH); this refuses, up front, links that could only point outside. */
static bool target_beneath(const char *target, const char *linkpath)
{
    if (target[0] == '/') return false;
    long depth = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *p = pass ? target : linkpath;
        const char *stop = pass ? p + strlen(p) : strrchr(p, '/');
        while (stop && p < stop) {
            const char *q = p;
            while (q < stop && *q != '/')
                q++;
            size_t n = (size_t)(q - p);
            if (n == 2 && p[0] == '.' && p[1] == '.') {
                if (--depth < 0) return false;
            } else if (n && !(n == 1 && p[0] == '.')) {
                depth++;
            }
            p = q < stop ? q + 1 : q;
        }
    }
    return true;
}

WASI_HOST(wasi_path_symlink)
{
    (void)s;
    struct wasi_ctx *w = CTX(c);
    struct wasi_fd *dir;
    char target[PATH_MAX_WASI], path[PATH_MAX_WASI];
    const char *last;
    const uint8_t *src = wasi_at(m, A32(0), A32(1));
    if (!src) RET(WE_FAULT);
    if (A32(1) >= PATH_MAX_WASI) RET(WE_NAMETOOLONG);
    if (memchr(src, 0, A32(1))) RET(WE_INVAL);
    memcpy(target, src, A32(1));
    target[A32(1)] = 0;
    uint32_t e = get_path(m, w, A32(2), A32(3), A32(4), true, &dir, path);
    if (e) RET(e);
    if (!target_beneath(target, path)) RET(WE_NOTCAPABLE);
    autoclose int pfd = open_parent(dir->host, path, &last, &e);
    if (pfd < 0) RET(e);
    RET(symlinkat(target, pfd, last) < 0 ? wasi_errno(errno) : WE_SUCCESS);
}
