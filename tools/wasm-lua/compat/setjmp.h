/* setjmp.h: wasi-libc has none; Lua's ldo.c includes it, lua_wasi.h replaces its use. */
