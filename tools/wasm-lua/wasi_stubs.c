/* wasi_stubs.c: libc functions Lua calls that wasi-libc does not have (WASI has no processes
 * and no temporary files): they fail the way C allows them to. */
#include <errno.h>
#include <stdio.h>

FILE *tmpfile(void)
{
    errno = ENOTSUP;
    return NULL;
}

int system(const char *cmd)
{
    if (!cmd) return 0; /* no command processor */
    errno = ENOSYS;
    return -1;
}
