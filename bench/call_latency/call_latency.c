/* call_latency: what a call through the gateway costs over spawning the tool directly.
 *
 * In one run: N sequential calls of a no-op `process` tool (/bin/true) through HTTP, the same
 * number of direct fork/exec/wait of /bin/true, N calls from 8 concurrent keep-alive clients,
 * and N direct fork/exec/wait from 8 threads at once (the most spawns per second this machine
 * can do, which bounds what any gateway could reach). Prints p50/p99, calls per second, the
 * overhead (p50 call - p50 spawn) and the ratios. The audit log is durable throughout (two
 * records per call, each on stable storage before the step it records, group-committed).
 *
 * Then whether the process tier's private TMPDIR costs more on a host with a crowded /tmp: each
 * call makes and removes its own directory and, when it ends, removes what its uid made at the
 * top of /tmp and /dev/shm (found by inotify; a scan of /tmp cost 4.7 us per entry per call
 * before). Sequential calls with /tmp as it is and with CROWD extra (root-owned, so kept)
 * entries in it, in interleaved rounds: the difference per entry is what /tmp's size costs.
 *
 * usage: bench_call_latency [GATEHOUSE-BINARY] [N]
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchlib.h"

#define CLIENTS 8
#define CALL "/v1/tools/noop/calls"
#define CROWD 10000
#define ROUNDS 4

static int failures;

static size_t entries(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    for (struct dirent *de; (de = readdir(d));)
        n++;
    closedir(d);
    return n - 2;
}

/* Fill (or empty) /tmp with CROWD files of the bench's own. */
static void crowd(bool fill)
{
    char path[64];
    for (int i = 0; i < CROWD; i++) {
        snprintf(path, sizeof(path), "/tmp/gh-bench-crowd-%d-%d", (int)getpid(), i);
        if (!fill) {
            unlink(path);
            continue;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) close(fd);
    }
}

/* The TMPDIR's cost: p50 of sequential calls, /tmp as it is against /tmp with CROWD more
 * entries, interleaved in ROUNDS so that the machine's drift hits both alike. */
static void tmpdir_cost(int port, int n)
{
    int per = n / ROUNDS / 2 > 50 ? n / ROUNDS / 2 : 50;
    uint64_t *plain = calloc((size_t)(per * ROUNDS), sizeof(uint64_t));
    uint64_t *crowded = calloc((size_t)(per * ROUNDS), sizeof(uint64_t));
    size_t here = entries("/tmp") + entries("/dev/shm");
    for (int r = 0; r < ROUNDS; r++) {
        bench_sequential(port, CALL, "{\"arguments\":{}}", 0, per, plain + r * per, &failures);
        crowd(true);
        bench_sequential(port, CALL, "{\"arguments\":{}}", 0, per, crowded + r * per, &failures);
        crowd(false);
    }
    double p = bench_percentile(plain, (size_t)(per * ROUNDS), 50) / 1e6;
    double c = bench_percentile(crowded, (size_t)(per * ROUNDS), 50) / 1e6;
    double per_entry_us = (c - p) * 1e3 / CROWD;
    printf("private TMPDIR: p50 with /tmp and /dev/shm as they are (%zu entries): %.3f ms; with "
           "%d more entries: %.3f ms (%.2fx)\n",
           here, p, CROWD, c, c / p);
    printf("private TMPDIR: each entry in /tmp adds %.3f us to a call (%.3f ms at this host's %zu "
           "entries)\n",
           per_entry_us, per_entry_us * (double)here / 1e3, here);
    free(plain);
    free(crowded);
}

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

    uint64_t t_seq = bench_sequential(gw.port, CALL, "{\"arguments\":{}}", 50, n, seq, &failures);

    char *true_argv[] = {"/bin/true", NULL};
    uint64_t t_direct = bench_now_ns();
    bench_spawn_median(true_argv, n, direct);
    t_direct = bench_now_ns() - t_direct;

    uint64_t *conc_samples = calloc((size_t)n, sizeof(uint64_t));
    uint64_t t_conc =
        bench_concurrent(gw.port, CALL, "{\"arguments\":{}}", CLIENTS, n, conc_samples, &failures);
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
    tmpdir_cost(gw.port, n);
    bench_gw_stop(&gw);
    return failures ? 1 : 0;
}
