/* worker_filter.c: the seccomp filter of gatehouse-wasm-worker (worker_exec.c installs it
 * once the module is mapped and the read-only directories are open). Kill by default: the
 * worker needs its socket, memory, clocks, random bytes and the WASI file calls, nothing else.
 * Built into the worker and, so that tests can load it in a child of their own, into the
 * sandbox library.
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>

#include "wasm_tier.h"

/* The calls allowed only with given arguments. Each rule is one way in; a call that matches
 * none kills the worker. */
static int add_arg_rules(scmp_filter_ctx ctx, int image_fd)
{
    /* No executable memory from mmap or mprotect: an interpreter bug that lets a tool write
     * into the worker cannot turn its bytes into machine code. */
    const struct scmp_arg_cmp no_exec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
    /* Anonymous memory (malloc, the memory reservation of each instance): nothing but the
     * worker's own fresh pages. */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 2, no_exec,
                              SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
    /* The module's initial memory image, copy-on-write over a new instance's memory
     * (wasm_memory_image_apply): only that sealed memfd, only private (a write copies the page
     * into this process and never reaches the file, which the seals forbid changing anyway),
     * only at an address the worker already reserved (MAP_FIXED). Any other file, and the
     * shared read-only mapping of the image itself, were mapped before the filter. */
    if (rc == 0 && image_fd >= 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 3,
                              SCMP_A2(SCMP_CMP_EQ, PROT_READ | PROT_WRITE),
                              SCMP_A3(SCMP_CMP_EQ, MAP_PRIVATE | MAP_FIXED),
                              SCMP_A4(SCMP_CMP_EQ, (scmp_datum_t)image_fd));
    /* memory.grow makes reserved pages readable and writable, never executable. */
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1, no_exec);
    /* WASI's fd_fdstat_get/fd_fdstat_set_flags read and set a file's status flags (append,
     * non-blocking) on the worker's own descriptors; no other fcntl command (no F_DUPFD onto
     * chosen numbers, no locks, no seals, no F_SETOWN signals). */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                              SCMP_A1(SCMP_CMP_EQ, F_GETFL));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                              SCMP_A1(SCMP_CMP_EQ, F_SETFL));
    return rc;
}

int wasm_worker_filter(int image_fd)
{
    static const int allowed[] = {
        /* the socket to the gateway, time, exit */
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(recvmsg), SCMP_SYS(exit),
        SCMP_SYS(exit_group), SCMP_SYS(rt_sigreturn), SCMP_SYS(futex), SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep), SCMP_SYS(getrandom),
        /* Memory management on the worker's own address space. munmap removes mappings (an
         * instance's memory, malloc's large blocks): at worst the worker faults and dies.
         * mremap (realloc of large blocks) moves or resizes a mapping and keeps its protection
         * and its file, so it can make nothing writable or executable that was not. madvise
         * (malloc's trimming; MADV_DONTNEED on the copy-on-write memory drops this process's
         * private copies back to the sealed image) touches only this process's pages. brk is
         * the heap's end. */
        SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk),
        /* harmless, and AddressSanitizer queries it before every noreturn call */
        SCMP_SYS(sigaltstack),
        /* WASI files, only ever beneath the preopened directories (wasi_path.c) */
        SCMP_SYS(close), SCMP_SYS(openat2), SCMP_SYS(getdents64), SCMP_SYS(fstat),
        SCMP_SYS(newfstatat), SCMP_SYS(lseek), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
        SCMP_SYS(ftruncate), SCMP_SYS(fallocate), SCMP_SYS(fadvise64), SCMP_SYS(fsync),
        SCMP_SYS(fdatasync), SCMP_SYS(utimensat), SCMP_SYS(mkdirat), SCMP_SYS(unlinkat),
        SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(linkat), SCMP_SYS(symlinkat),
        SCMP_SYS(readlinkat)};
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) return -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    if (rc == 0) rc = add_arg_rules(ctx, image_fd);
    /* seccomp_load sets no_new_privs first, which also lets an unprivileged process load it. */
    if (rc == 0) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) errno = -rc;
    return rc < 0 ? -1 : 0;
}
