/* lua_wasi.h: Lua's own configuration points, set for wasm32-wasi (included before every Lua
 * source file with -include; Lua's sources stay unmodified).
 *
 * WebAssembly without the exception-handling proposal has no setjmp/longjmp, and wasi-libc
 * does not provide them: a Lua error therefore prints its message the way the standalone
 * interpreter does ("lua: <message>") and ends the program with status 1. pcall and
 * coroutine.resume cannot catch errors in this build.
 */
#include <stdio.h>
#include <stdlib.h>

#define LUAI_THROW(L, c)                                                                           \
    (fprintf(stderr, "lua: %s\n",                                                                  \
             lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)"),        \
     fflush(NULL), exit(1))
#define LUAI_TRY(L, c, a)                                                                          \
    {                                                                                              \
        a                                                                                          \
    }
#define luai_jmpbuf int

/* No temporary file names in WASI: os.tmpname reports failure. */
#define LUA_TMPNAMBUFSIZE 32
#define lua_tmpnam(b, e)                                                                           \
    {                                                                                              \
        (b)[0] = 0;                                                                                \
        e = 1;                                                                                     \
    }
