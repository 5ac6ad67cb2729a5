/* wasm_tier: calls per second of a no-op wasm tool through the gateway as clients are added,
 * next to the process tier's /bin/true measured in the same run.
 *
 * Two gateways run side by side, one with a wasm policy (a module whose _start returns at
 * once), one with a process policy running /bin/true; both have the durable audit log. Each
 * round measures, back to back and with no pause between calls, N calls of the wasm tool from
 * 1, 2, 4 and 8 keep-alive clients, then N calls of the process tool from 8 clients. Rounds
 * interleave the two tiers so that load from elsewhere on the machine hits both. Prints each
 * figure, the median over rounds, the ratios the pool must reach (8 clients at least as fast
 * as 2, and at least 3x the process tier), and the pool's hits and misses from /metrics.
 *
 * usage: bench_wasm_tier [GATEHOUSE-BINARY] [N] [ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchlib.h"

/* (module (memory (export "memory") 1) (func (export "_start"))) */
static const unsigned char noop_wasm[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00,
    0x00, 0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02,
    0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74,
    0x61, 0x72, 0x74, 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b};

#define MAX_ROUNDS 9
static const int clients[] = {1, 2, 4, 8};
#define NCLIENTS (int)(sizeof(clients) / sizeof(clients[0]))

static int failures;

static double rate(int port, const char *tool, int nclients, int n, double *p50)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tools/%s/calls", tool);
    uint64_t *samples = calloc((size_t)n, sizeof(uint64_t));
    uint64_t t =
        bench_concurrent(port, path, "{\"arguments\":{}}", nclients, n, samples, &failures);
    *p50 = bench_percentile(samples, (size_t)n, 50) / 1e6;
    free(samples);
    return n / (t / 1e9);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    double tmp[MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof(double));
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Print the gatehouse_wasm_pool_* lines of /metrics. */
static void print_pool_metrics(int port)
{
    int fd = bench_connect(port);
    char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf[65536];
    size_t have = 0;
    ssize_t k;
    if (fd < 0 || write(fd, req, sizeof(req) - 1) < 0) return;
    while (have < sizeof(buf) - 1 && (k = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
        have += (size_t)k;
    buf[have] = 0;
    close(fd);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, "gatehouse_wasm_pool_", 20) ||
            !strncmp(line, "gatehouse_wasm_workers_", 23))
            printf("  %s\n", line);
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 10) {
        fprintf(stderr, "usage: %s [GATEHOUSE] [N >= 10] [ROUNDS 1..%d]\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    char module[] = "/tmp/gh-bench-noop-XXXXXX";
    int mfd = mkstemp(module);
    if (mfd < 0 || write(mfd, noop_wasm, sizeof(noop_wasm)) != (ssize_t)sizeof(noop_wasm)) return 1;
    close(mfd);
    char wasm_yaml[512];
    snprintf(wasm_yaml, sizeof(wasm_yaml),
             "name: noop\ndescription: does nothing\nisolation: wasm\nmodule: %s\n", module);
    struct bench_gw wgw, pgw;
    if (bench_gw_start(&wgw, gatehouse, "noop", wasm_yaml, NULL) < 0 ||
        bench_gw_start(&pgw, gatehouse, "noop",
                       "name: noop\ndescription: does nothing\ncommand: [\"/bin/true\"]\n"
                       "isolation: process\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        unlink(module);
        return 1;
    }
    int fds[2] = {bench_connect(wgw.port), bench_connect(pgw.port)};
    for (int i = 0; i < 50; i++) { /* warm up both */
        bench_post(fds[0], "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0);
        bench_post(fds[1], "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0);
    }
    close(fds[0]);
    close(fds[1]);

    double wasm_rate[NCLIENTS][MAX_ROUNDS], wasm_p50[NCLIENTS][MAX_ROUNDS];
    double proc_rate[MAX_ROUNDS], proc_p50[MAX_ROUNDS];
    printf("wasm_tier: %d calls per figure, %d rounds, durable audit log\n", n, rounds);
    printf("%-6s %-34s %9s %11s\n", "round", "", "p50 ms", "calls/s");
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < NCLIENTS; c++) {
            wasm_rate[c][r] = rate(wgw.port, "noop", clients[c], n, &wasm_p50[c][r]);
            printf("%-6d wasm no-op, %d client%-19s %9.3f %11.0f\n", r + 1, clients[c],
                   clients[c] > 1 ? "s" : "", wasm_p50[c][r], wasm_rate[c][r]);
        }
        proc_rate[r] = rate(pgw.port, "noop", 8, n, &proc_p50[r]);
        printf("%-6d %-34s %9.3f %11.0f\n", r + 1, "process /bin/true, 8 clients", proc_p50[r],
               proc_rate[r]);
    }
    printf("median over rounds:\n");
    for (int c = 0; c < NCLIENTS; c++)
        printf("  wasm no-op, %d client%s: %.0f calls/s (p50 %.3f ms)\n", clients[c],
               clients[c] > 1 ? "s" : "", median(wasm_rate[c], rounds),
               median(wasm_p50[c], rounds));
    double w2 = median(wasm_rate[1], rounds), w8 = median(wasm_rate[3], rounds);
    double p8 = median(proc_rate, rounds);
    printf("  process /bin/true, 8 clients: %.0f calls/s (p50 %.3f ms)\n", p8,
           median(proc_p50, rounds));
    printf("wasm 8 clients / wasm 2 clients: %.2f (target >= 1.00: %s)\n", w8 / w2,
           w8 >= w2 ? "met" : "NOT met");
    printf("wasm 8 clients / process 8 clients: %.2f (target >= 3.00: %s)\n", w8 / p8,
           w8 >= 3 * p8 ? "met" : "NOT met");
    printf("wasm pool after the run:\n");
    print_pool_metrics(wgw.port);
    printf("failed calls: %d\n", failures);
    bench_gw_stop(&wgw);
    bench_gw_stop(&pgw);
    unlink(module);
    return failures ? 1 : 0;
}
