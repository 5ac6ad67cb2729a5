/* Sieve of Eratosthenes to 10^7, five times: memory loads and stores in tight loops. */
#include "bench_prog.h"
#define N 10000000
static unsigned char composite[N + 1];
unsigned bench_run(void)
{
    unsigned count = 0;
    for (int rep = 0; rep < 5; rep++) {
        for (unsigned i = 0; i <= N; i++)
            composite[i] = 0;
        count = 0;
        for (unsigned i = 2; i <= N; i++) {
            if (composite[i]) continue;
            count++;
            for (unsigned long long j = (unsigned long long)i * i; j <= N; j += i)
                composite[j] = 1;
        }
    }
    return count;
}
