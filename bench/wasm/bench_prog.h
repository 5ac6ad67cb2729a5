/* bench_prog.h: shared by the benchmark programs. Each program defines
 * `unsigned bench_run(void)`; compiled to wasm32 it is exported as run(), compiled natively a
 * main() prints its result, so both runs can be checked against each other. */
#ifndef BENCH_PROG_H
#define BENCH_PROG_H
unsigned bench_run(void);
#ifdef BENCH_NATIVE
#include <stdio.h>
int main(void)
{
    printf("%u\n", bench_run());
    return 0;
}
#else
__attribute__((export_name("run"))) unsigned run(void)
{
    return bench_run();
}
#endif
#endif
