/* setjmp.h for the wasm32-wasi build of Lua (wasi-libc has none): WebAssembly without the
 * exception-handling proposal cannot unwind the stack, so a Lua error (luaD_throw) traps the
 * call instead of jumping back to a pcall. Every path without an error is unchanged: setjmp
 * returns 0 once, as it does the first time. */
#ifndef GATE_WASM_SETJMP_H
#define GATE_WASM_SETJMP_H
typedef int jmp_buf[1];
static inline int gate_setjmp(jmp_buf b)
{
    (void)b;
    return 0;
}
__attribute__((noreturn)) static inline void gate_longjmp(jmp_buf b, int v)
{
    (void)b, (void)v;
    __builtin_trap();
}
#define setjmp(b) gate_setjmp(b)
#define _setjmp(b) gate_setjmp(b)
#define longjmp(b, v) gate_longjmp(b, v)
#define _longjmp(b, v) gate_longjmp(b, v)
#endif
