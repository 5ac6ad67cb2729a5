/* container_spawn: what a `container` call costs next to bubblewrap doing the same isolation.
 *
 * In one run: N sequential calls of a /bin/true tool in the container tier through the HTTP
 * API (p50/p99), N calls from 8 concurrent keep-alive clients (calls/s), and the median of
 * N runs of Debian's bwrap with the command line. Prints the ratios against the
 * targets: p50 at most half of bwrap's median, at least 300 calls/s with 8 clients.
 *
 * usage: bench_container_spawn [GATEHOUSE-BINARY] [N]    (root: the tier needs it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchlib.h"

#define CLIENTS 8
#define PATH "/v1/tools/ct_true/calls"
#define BODY "{\"arguments\":{}}"

static int failures;

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    if (n < CLIENTS) n = CLIENTS;
    if (geteuid() != 0) {
        fprintf(stderr, "container_spawn: the container tier needs root\n");
        return 1;
    }
    struct bench_gw gw;
    if (bench_gw_start(&gw, gatehouse, "ct_true",
                       "name: ct_true\ndescription: does nothing, in a container\n"
                       "command: [\"/bin/true\"]\nisolation: container\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    uint64_t *seq = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *bw = calloc((size_t)n, sizeof(uint64_t));

    int fd = bench_connect(gw.port);
    for (int i = 0; i < 50; i++) /* warm up */
        if (bench_post(fd, PATH, BODY, NULL, 0) != 200) failures++;
    /* Calls and bwrap runs alternate, so both see the same machine (2 shared cores here). */
    char *bwrap[] = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent",
                     "--ro-bind",      "/usr",          "/usr",
                     "--symlink",      "usr/lib",       "/lib",
                     "--symlink",      "usr/lib64",     "/lib64",
                     "--symlink",      "usr/bin",       "/bin",
                     "--proc",         "/proc",         "--dev",
                     "/dev",           "/bin/true",     NULL};
    uint64_t t_seq = 0;
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (bench_post(fd, PATH, BODY, NULL, 0) != 200) failures++;
        seq[i] = bench_now_ns() - t0;
        t_seq += seq[i];
        bench_spawn_median(bwrap, 1, &bw[i]);
    }
    close(fd);

    uint64_t *conc_samples = calloc((size_t)n, sizeof(uint64_t));
    uint64_t t_conc = bench_concurrent(gw.port, PATH, BODY, CLIENTS, n, conc_samples, &failures);
    size_t nconc = (size_t)n;
    bench_gw_stop(&gw);

    double b50 = bench_percentile(bw, (size_t)n, 50) / 1e6;

    double s50 = bench_percentile(seq, (size_t)n, 50) / 1e6;
    double s99 = bench_percentile(seq, (size_t)n, 99) / 1e6;
    double c50 = bench_percentile(conc_samples, nconc, 50) / 1e6;
    double c99 = bench_percentile(conc_samples, nconc, 99) / 1e6;
    double cps = nconc / (t_conc / 1e9);
    printf("container_spawn: %d calls of /bin/true in the container tier, durable audit log\n", n);
    printf("%-38s %9s %9s %11s\n", "", "p50 ms", "p99 ms", "calls/s");
    printf("%-38s %9.3f %9s %11s\n", "bwrap --unshare-all ... /bin/true", b50, "", "");
    printf("%-38s %9.3f %9.3f %11.0f\n", "gateway, 1 client (sequential)", s50, s99,
           n / (t_seq / 1e9));
    printf("%-38s %9.3f %9.3f %11.0f\n", "gateway, 8 concurrent clients", c50, c99, cps);
    printf("ratio p50 container call / bwrap median: %.2fx (target <= 0.50x): %s\n", s50 / b50,
           s50 <= 0.5 * b50 ? "met" : "NOT met");
    printf("calls/s with 8 clients: %.0f (target >= 300): %s; failed calls: %d\n", cps,
           cps >= 300 ? "met" : "NOT met", failures);
    return failures ? 1 : 0;
}
