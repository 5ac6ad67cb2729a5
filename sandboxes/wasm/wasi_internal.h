/* wasi_internal.h: what the WASI host functions share (wasi.c, wasi_fd.c, wasi_path.c).
 *
 * Every host function has the engine's host signature: the calling instance's memory, the
 * wasi_ctx, and the argument slots, into which it writes its errno result. Pointers and
 * lengths a module passes are checked against its memory with wasi_at() before use. The ABI
 * of wasi_unstable differs from preview 1 in three places only (fd_seek's whence order, the
 * filestat layout, the clock subscription layout); those functions come in two variants.
 */
#ifndef GATE_WASI_INTERNAL_H
#define GATE_WASI_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "wasi.h"

/* WASI errno values (the same in wasi_unstable and preview 1). */
enum {
    WE_SUCCESS = 0,
    WE_2BIG = 1,
    WE_ACCES = 2,
    WE_AGAIN = 6,
    WE_BADF = 8,
    WE_BUSY = 10,
    WE_EXIST = 20,
    WE_FAULT = 21,
    WE_FBIG = 22,
    WE_INVAL = 28,
    WE_IO = 29,
    WE_ISDIR = 31,
    WE_LOOP = 32,
    WE_MFILE = 33,
    WE_MLINK = 34,
    WE_NAMETOOLONG = 37,
    WE_NOENT = 44,
    WE_NOMEM = 48,
    WE_NOSPC = 51,
    WE_NOSYS = 52,
    WE_NOTDIR = 54,
    WE_NOTEMPTY = 55,
    WE_NOTSOCK = 57,
    WE_NOTSUP = 58,
    WE_NXIO = 60,
    WE_PERM = 63,
    WE_ROFS = 69,
    WE_SPIPE = 70,
    WE_XDEV = 75,
    WE_NOTCAPABLE = 76,
};

/* filetype */
enum {
    WFT_UNKNOWN = 0,
    WFT_CHARACTER_DEVICE = 2,
    WFT_DIRECTORY = 3,
    WFT_REGULAR_FILE = 4,
    WFT_SYMBOLIC_LINK = 7,
};

/* rights */
#define WR_FD_DATASYNC (1ull << 0)
#define WR_FD_READ (1ull << 1)
#define WR_FD_SEEK (1ull << 2)
#define WR_FD_FDSTAT_SET_FLAGS (1ull << 3)
#define WR_FD_SYNC (1ull << 4)
#define WR_FD_TELL (1ull << 5)
#define WR_FD_WRITE (1ull << 6)
#define WR_FD_ADVISE (1ull << 7)
#define WR_FD_ALLOCATE (1ull << 8)
#define WR_FD_READDIR (1ull << 14)
#define WR_FD_FILESTAT_SET_SIZE (1ull << 22)
#define WR_ALL ((1ull << 30) - 1)
/* Rights that change what a descriptor refers to: never on a read-only preopen's files. */
#define WR_MUTATE                                                                                  \
    (WR_FD_DATASYNC | WR_FD_WRITE | WR_FD_ALLOCATE | WR_FD_FILESTAT_SET_SIZE | (1ull << 9) |       \
     (1ull << 10) | (1ull << 12) | (1ull << 17) | (1ull << 19) | (1ull << 20) | (1ull << 23) |     \
     (1ull << 24) | (1ull << 25) | (1ull << 26))

/* fdflags */
#define WFD_APPEND 1u
#define WFD_DSYNC 2u
#define WFD_NONBLOCK 4u
#define WFD_RSYNC 8u
#define WFD_SYNC 16u

/* fstflags */
#define WFST_ATIM 1u
#define WFST_ATIM_NOW 2u
#define WFST_MTIM 4u
#define WFST_MTIM_NOW 8u

enum wasi_flavour { WASI_PREVIEW1, WASI_UNSTABLE };

#define WASI_HOST(name)                                                                            \
    enum wasm_trap name(struct wasm_store *s, struct wasm_memory *m, void *c, uint64_t *a)
#define CTX(ctx) ((struct wasi_ctx *)(ctx))
#define A32(i) ((uint32_t)a[i])
#define RET(e)                                                                                     \
    do {                                                                                           \
        a[0] = (uint32_t)(e);                                                                      \
        return WASM_TRAP_NONE;                                                                     \
    } while (0)

/* A pointer into linear memory for [p, p+len), or NULL if any byte lies outside. p and len
 * are 32-bit values widened to 64 bits, so the sum cannot wrap. */
static inline uint8_t *wasi_at(struct wasm_memory *m, uint64_t p, uint64_t len)
{
    uint64_t size;
    if (!m) return NULL;
    uint8_t *d = wasm_memory_data(m, &size);
    return p + len <= size ? d + p : NULL;
}
static inline void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static inline void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

uint32_t wasi_errno(int e);
/* The open descriptor fd, or NULL. */
struct wasi_fd *wasi_fd_get(struct wasi_ctx *w, uint32_t fd);
/* The lowest free descriptor number from 3 up, or -1 when the table is full. */
int wasi_fd_alloc(struct wasi_ctx *w);
uint8_t wasi_filetype(mode_t mode);
/* Write a filestat record in the flavour's layout (64 bytes preview 1, 56 unstable). */
void wasi_put_filestat(uint8_t *p, const struct stat *st, enum wasi_flavour fl);
size_t wasi_filestat_size(enum wasi_flavour fl);
/* Turn timestamps and fstflags into the two timespecs utimensat wants. WE_INVAL on a
 * contradiction (a time and "now" for the same field). */
uint32_t wasi_times(uint64_t atim, uint64_t mtim, uint32_t fst, struct timespec ts[2]);

/* wasi_fd.c */
WASI_HOST(wasi_fd_advise);
WASI_HOST(wasi_fd_allocate);
WASI_HOST(wasi_fd_close);
WASI_HOST(wasi_fd_datasync);
WASI_HOST(wasi_fd_fdstat_get);
WASI_HOST(wasi_fd_fdstat_set_flags);
WASI_HOST(wasi_fd_fdstat_set_rights);
WASI_HOST(wasi_fd_filestat_get);
WASI_HOST(wasi_fd_filestat_get_unstable);
WASI_HOST(wasi_fd_filestat_set_size);
WASI_HOST(wasi_fd_filestat_set_times);
WASI_HOST(wasi_fd_pread);
WASI_HOST(wasi_fd_prestat_get);
WASI_HOST(wasi_fd_prestat_dir_name);
WASI_HOST(wasi_fd_pwrite);
WASI_HOST(wasi_fd_read);
WASI_HOST(wasi_fd_readdir);
WASI_HOST(wasi_fd_renumber);
WASI_HOST(wasi_fd_seek);
WASI_HOST(wasi_fd_seek_unstable);
WASI_HOST(wasi_fd_sync);
WASI_HOST(wasi_fd_tell);
WASI_HOST(wasi_fd_write);

/* wasi_path.c */
WASI_HOST(wasi_path_create_directory);
WASI_HOST(wasi_path_filestat_get);
WASI_HOST(wasi_path_filestat_get_unstable);
WASI_HOST(wasi_path_filestat_set_times);
WASI_HOST(wasi_path_link);
WASI_HOST(wasi_path_open);
WASI_HOST(wasi_path_readlink);
WASI_HOST(wasi_path_remove_directory);
WASI_HOST(wasi_path_rename);
WASI_HOST(wasi_path_symlink);
WASI_HOST(wasi_path_unlink_file);

#endif
