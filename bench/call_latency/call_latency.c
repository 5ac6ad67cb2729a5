/* call_latency: what a call through the gateway costs over spawning the tool directly.
 *
 * In one run: N sequential calls of a no-op `process` tool (/bin/true) through HTTP, the same
 * number of direct fork/exec/wait of /bin/true, N calls from 8 concurrent keep-alive clients,
 * and N direct fork/exec/wait from 8 threads at once (the most spawns per second this machine
 * can do, which bounds what any gateway could reach). Prints p50/p99, calls per second, the
 * overhead (p50 call - p50 spawn) and the ratios. The audit log is durable throughout (two
 * records per call, each on stable storage before the step it records, group-committed).
 *
 * usage: bench_call_latency [GATEHOUSE-BINARY] [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchlib.h"

#define CLIENTS 8

static int failures;

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    struct bench_gw gw;
    if (bench_gw_start(&gw, gatehouse, "noop",
                       "name: noop\ndescription: does nothing\ncommand: [\"/bin/true\"]\n"
                       "isolation: process\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    uint64_t *seq = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *direct = calloc((size_t)n, sizeof(uint64_t));

    int fd = bench_connect(gw.port);
    for (int i = 0; i < 50; i++) /* warm up */
        bench_post(fd, "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0);
    uint64_t t_seq = bench_now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (bench_post(fd, "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0) != 200)
            failures++;
        seq[i] = bench_now_ns() - t0;
    }
    t_seq = bench_now_ns() - t_seq;
    close(fd);

    char *true_argv[] = {"/bin/true", NULL};
    uint64_t t_direct = bench_now_ns();
    bench_spawn_median(true_argv, n, direct);
    t_direct = bench_now_ns() - t_direct;

    uint64_t *conc_samples = calloc((size_t)n, sizeof(uint64_t));
    uint64_t t_conc = bench_concurrent(gw.port, "/v1/tools/noop/calls", "{\"arguments\":{}}",
                                       CLIENTS, n, conc_samples, &failures);
    size_t nconc = (size_t)n;
    uint64_t t_direct_conc = bench_spawn_concurrent(true_argv, CLIENTS, n);

    double s50 = bench_percentile(seq, (size_t)n, 50) / 1e6,
           s99 = bench_percentile(seq, (size_t)n, 99) / 1e6;
    double d50 = bench_percentile(direct, (size_t)n, 50) / 1e6,
           d99 = bench_percentile(direct, (size_t)n, 99) / 1e6;
    double c50 = bench_percentile(conc_samples, nconc, 50) / 1e6,
           c99 = bench_percentile(conc_samples, nconc, 99) / 1e6;
    printf("call_latency: %d calls of /bin/true (process tier), durable audit log\n", n);
    printf("%-34s %9s %9s %11s\n", "", "p50 ms", "p99 ms", "calls/s");
    printf("%-34s %9.3f %9.3f %11.0f\n", "direct fork/exec/wait", d50, d99, n / (t_direct / 1e9));
    printf("%-34s %9.3f %9.3f %11.0f\n", "gateway, 1 client (sequential)", s50, s99,
           n / (t_seq / 1e9));
    printf("%-34s %9.3f %9.3f %11.0f\n", "gateway, 8 concurrent clients", c50, c99,
           nconc / (t_conc / 1e9));
    printf("%-34s %9s %9s %11.0f\n", "direct fork/exec/wait, 8 threads", "", "",
           n / (t_direct_conc / 1e9));
    printf("overhead p50 (gateway - direct): %.3f ms   ratio p50 gateway/direct: %.2fx\n",
           s50 - d50, s50 / d50);
    printf("8 clients: gateway calls/s / direct spawns/s with 8 threads: %.2f\n",
           (nconc / (t_conc / 1e9)) / (n / (t_direct_conc / 1e9)));
    printf("targets: overhead < 1 ms: %s; >= 2000 calls/s with 8 clients: %s; failed calls: %d\n",
           s50 - d50 < 1.0 ? "met" : "NOT met", nconc / (t_conc / 1e9) >= 2000 ? "met" : "NOT met",
           failures);
    bench_gw_stop(&gw);
    return failures ? 1 : 0;
}
