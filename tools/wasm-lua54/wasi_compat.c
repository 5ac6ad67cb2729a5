/* What Lua's ISO C build calls and wasi-libc lacks: there is no shell and no temporary
 * directory in the wasm tier, so these fail the way C allows them to. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

FILE *tmpfile(void)
{
    errno = ENOTSUP;
    return NULL;
}

char *tmpnam(char *s)
{
    (void)s;
    errno = ENOTSUP;
    return NULL;
}

int system(const char *cmd)
{
    if (!cmd) return 0; /* no command processor */
    errno = ENOSYS;
    return -1;
}
