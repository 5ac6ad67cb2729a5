/* Recursive Fibonacci: calls and returns. */
#include "bench_prog.h"
static unsigned fib(unsigned n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
static volatile unsigned arg = 35;
unsigned bench_run(void)
{
    return fib(arg);
}
