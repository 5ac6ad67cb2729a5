/* 300x300 double matrix multiply: floating point and nested loops. */
#include "bench_prog.h"
#define N 300
static double a[N][N], b[N][N], c[N][N];
unsigned bench_run(void)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            a[i][j] = (double)(i * N + j) / (N * N);
            b[i][j] = (double)(j * N + i) / (N * N);
        }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++)
                s += a[i][k] * b[k][j];
            c[i][j] = s;
        }
    double t = 0;
    for (int i = 0; i < N; i++)
        t += c[i][i];
    return (unsigned)(t * 1000);
}
