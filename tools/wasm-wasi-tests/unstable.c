/* wasm-wasi-unstable: a module built against the older `wasi_unstable` ABI (no libc: every
 * import is declared here with that module name). It checks the three places where that ABI
 * differs from preview 1: fd_seek's whence numbering (CUR 0, END 1, SET 2), the 56-byte
 * filestat (a 32-bit link count, so size sits at offset 24), and the clock subscription (an
 * extra 8-byte identifier before the clock id). Expects the workspace preopened at fd 3.
 * Prints "ok ..." / "not ok ..." lines and exits with the number of failures.
 */
#include <stddef.h>
#include <stdint.h>

#define IMPORT(name) __attribute__((import_module("wasi_unstable"), import_name(#name)))
IMPORT(fd_write) uint16_t u_fd_write(uint32_t fd, const void *iovs, uint32_t n, uint32_t *nw);
IMPORT(fd_seek) uint16_t u_fd_seek(uint32_t fd, int64_t off, uint8_t whence, uint64_t *pos);
IMPORT(fd_filestat_get) uint16_t u_fd_filestat_get(uint32_t fd, void *buf);
IMPORT(path_open)
uint16_t u_path_open(uint32_t dir, uint32_t lookup, const char *path, uint32_t len, uint16_t oflags,
                     uint64_t rights, uint64_t inh, uint16_t fdflags, uint32_t *fd);
IMPORT(path_filestat_get)
uint16_t u_path_filestat_get(uint32_t dir, uint32_t lookup, const char *path, uint32_t len,
                             void *buf);
IMPORT(poll_oneoff) uint16_t u_poll_oneoff(const void *in, void *out, uint32_t n, uint32_t *nev);
IMPORT(clock_time_get) uint16_t u_clock_time_get(uint32_t id, uint64_t prec, uint64_t *t);
IMPORT(proc_exit) __attribute__((noreturn)) void u_proc_exit(uint32_t code);

static uint32_t failures;

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void say(const char *a, const char *b)
{
    struct {
        const char *p;
        uint32_t n;
    } iov[3] = {{a, (uint32_t)slen(a)}, {b, (uint32_t)slen(b)}, {"\n", 1}};
    uint32_t nw;
    u_fd_write(1, iov, 3, &nw);
}

static void check(int ok, const char *what)
{
    failures += !ok;
    say(ok ? "ok " : "not ok ", what);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void _start(void)
{
    uint32_t fd, nw;
    uint64_t pos;
    static uint8_t st[64], sub[56], ev[32];
    const uint64_t rights = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 21);
    check(u_path_open(3, 0, "u.txt", 5, 1 | 8, rights, rights, 0, &fd) == 0, "path_open creates");
    struct {
        const char *p;
        uint32_t n;
    } iov = {"0123456789", 10};
    check(u_fd_write(fd, &iov, 1, &nw) == 0 && nw == 10, "fd_write writes 10 bytes");
    check(u_fd_seek(fd, 3, 2, &pos) == 0 && pos == 3, "fd_seek whence 2 is SET");
    check(u_fd_seek(fd, 2, 0, &pos) == 0 && pos == 5, "fd_seek whence 0 is CUR");
    check(u_fd_seek(fd, -1, 1, &pos) == 0 && pos == 9, "fd_seek whence 1 is END");
    for (int i = 0; i < 64; i++)
        st[i] = 0xee;
    check(u_fd_filestat_get(fd, st) == 0, "fd_filestat_get succeeds");
    check(st[16] == 4 && get64(st + 24) == 10, "fd_filestat_get: type 4, size 10 at offset 24");
    check(st[20] == 1 && st[21] == 0 && st[56] == 0xee, "fd_filestat_get: nlink u32, 56 bytes");
    check(u_path_filestat_get(3, 0, "u.txt", 5, st) == 0 && get64(st + 24) == 10,
          "path_filestat_get: size at offset 24");
    /* subscription: userdata, tag 0 (clock) at 8, then identifier, clock id, timeout. */
    for (int i = 0; i < 56; i++)
        sub[i] = 0;
    sub[0] = 9;
    sub[24] = 1; /* clock id at 16 + 8: monotonic */
    uint64_t t1, t2, timeout = 10000000;
    for (int i = 0; i < 8; i++)
        sub[32 + i] = (uint8_t)(timeout >> (8 * i)); /* timeout at 16 + 16 */
    u_clock_time_get(1, 1, &t1);
    check(u_poll_oneoff(sub, ev, 1, &nw) == 0 && nw == 1 && ev[0] == 9 && ev[10] == 0,
          "poll_oneoff: one clock event");
    u_clock_time_get(1, 1, &t2);
    check(t2 - t1 >= timeout, "poll_oneoff: slept the timeout at offset 32");
    say(failures ? "wasi_unstable: FAILED" : "wasi_unstable: all passed", "");
    u_proc_exit(failures);
}
