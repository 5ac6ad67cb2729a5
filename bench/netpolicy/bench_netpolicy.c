/* bench_netpolicy: what the network policy adds to a `process`-tier call.
 *
 * Every process-tier call runs under its policy's network filter: the gateway puts the call's
 * uid under the policy (one BPF map update) before the tool starts, and afterwards resets it
 * to deny-all and drains the call's events from the ring buffer. The gateway times exactly that
 * work per call and publishes it as the histogram gatehouse_network_policy_call_seconds. This
 * program makes N sequential calls and N calls from 8 concurrent clients of a no-op tool with
 * an egress list, then prints that histogram's p50 (bucket bound) and mean next to the p50 of
 * the whole call and of a direct fork/exec/wait of /bin/true, all measured in the same run.
 * (The filter's cost inside connect() is paid only by tools that connect; a no-op tool pays
 * none of it.)
 *
 * Then the container tier: /bin/true under `network: none` (its own network namespace, every
 * attempt recorded) and under an egress list (the host's namespace, the pool slot's cgroup
 * under the policy), each from a gateway of its own, next to bwrap --unshare-all running
 * /bin/true, all back to back and in interleaved blocks (calls none, calls egress, bwrap) so
 * that load on this shared machine falls on all three alike; and with 8 clients / 8 bwrap at
 * a time. The target (issue 17): the container tier keeps its ratio to bwrap with egress.
 *
 * usage: bench_netpolicy [GATEHOUSE-BINARY] [N] [N-CONTAINER]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchlib.h"

#define CLIENTS 8

struct hist {
    double bound[16];
    unsigned long long cum[16];
    int n;
    double sum;
    unsigned long long count;
};

static int read_hist(int port, struct hist *h)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", port);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    memset(h, 0, sizeof(*h));
    const char *b = "gatehouse_network_policy_call_seconds_bucket{le=\"";
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, b, strlen(b)) && h->n < 16) {
            char *le = line + strlen(b);
            h->bound[h->n] = !strncmp(le, "+Inf", 4) ? 1e9 : strtod(le, NULL);
            h->cum[h->n++] = strtoull(strchr(le, ' ') + 1, NULL, 10);
        } else if (sscanf(line, "gatehouse_network_policy_call_seconds_sum %lf", &h->sum) == 1) {
        } else if (sscanf(line, "gatehouse_network_policy_call_seconds_count %llu", &h->count) ==
                   1) {
        }
    }
    pclose(f);
    return h->count ? 0 : -1;
}

static double hist_p50(const struct hist *h)
{
    for (int i = 0; i < h->n; i++)
        if (h->cum[i] * 2 >= h->count) return h->bound[i];
    return 1e9;
}

/* ---- the container tier, with and without egress, and bwrap ------------------------------ */

#define CT_ROUNDS 5
#define BODY "{\"arguments\":{}}"
#define CT_TRUE "description: does nothing\ncommand: [\"/bin/true\"]\nisolation: container\n"

static int bench_container(const char *gatehouse, int n)
{
    int failures = 0;
    struct bench_gw none, egress;
    if (bench_gw_start(&none, gatehouse, "ct", "name: ct\n" CT_TRUE, NULL) < 0 ||
        bench_gw_start(&egress, gatehouse, "ct",
                       "name: ct\n" CT_TRUE
                       "network: {egress: [\"127.0.0.2:9\", \"10.0.0.0/8:443\", \"[::1]:9\"]}\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s with container policies\n", gatehouse);
        return 1;
    }
    int per = n / CT_ROUNDS;
    size_t total = (size_t)per * CT_ROUNDS;
    uint64_t *a = calloc(total, sizeof(uint64_t)), *b = calloc(total, sizeof(uint64_t));
    uint64_t *c = calloc(total, sizeof(uint64_t)), *scratch = calloc(total, sizeof(uint64_t));
    uint64_t t_none8 = 0, t_egress8 = 0, t_bw8 = 0;
    for (int r = 0; r < CT_ROUNDS; r++) {
        /* the first call of a block, after a pause, is a warm-up */
        bench_sequential(none.port, "/v1/tools/ct/calls", BODY, 1, per, a + (size_t)r * per,
                         &failures);
        bench_sequential(egress.port, "/v1/tools/ct/calls", BODY, 1, per, b + (size_t)r * per,
                         &failures);
        bench_spawn_median(bench_bwrap_true, per, c + (size_t)r * per);
    }
    for (int r = 0; r < CT_ROUNDS; r++) {
        t_none8 += bench_concurrent(none.port, "/v1/tools/ct/calls", BODY, CLIENTS, per, scratch,
                                    &failures);
        t_egress8 += bench_concurrent(egress.port, "/v1/tools/ct/calls", BODY, CLIENTS, per,
                                      scratch, &failures);
        t_bw8 += bench_spawn_concurrent(bench_bwrap_true, CLIENTS, per);
    }
    bench_gw_stop(&none);
    bench_gw_stop(&egress);
    double a50 = bench_percentile(a, total, 50) / 1e6, a99 = bench_percentile(a, total, 99) / 1e6;
    double b50 = bench_percentile(b, total, 50) / 1e6, b99 = bench_percentile(b, total, 99) / 1e6;
    double c50 = bench_percentile(c, total, 50) / 1e6, c99 = bench_percentile(c, total, 99) / 1e6;
    double ra = total / (t_none8 / 1e9), rb = total / (t_egress8 / 1e9), rc = total / (t_bw8 / 1e9);
    printf("container tier: %zu calls each back to back + %zu from %d clients, failures %d\n",
           total, total, CLIENTS, failures);
    printf("%-40s %9s %9s %10s\n", "", "p50 ms", "p99 ms", "8 at once/s");
    printf("%-40s %9.3f %9.3f %10.1f\n", "container, network: none", a50, a99, ra);
    printf("%-40s %9.3f %9.3f %10.1f\n", "container, network.egress (3 entries)", b50, b99, rb);
    printf("%-40s %9.3f %9.3f %10.1f\n", "bwrap --unshare-all /bin/true", c50, c99, rc);
    printf("ratio to bwrap, p50 back to back: none %.2fx, egress %.2fx; 8 at once (rate): none "
           "%.2fx, egress %.2fx\n",
           a50 / c50, b50 / c50, ra / rc, rb / rc);
    free(a), free(b), free(c), free(scratch);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    int n_ct = argc > 3 ? atoi(argv[3]) : 500;
    int failures = 0;
    struct bench_gw gw;
    if (bench_gw_start(&gw, gatehouse, "noop",
                       "name: noop\ndescription: does nothing\ncommand: [\"/bin/true\"]\n"
                       "isolation: process\n"
                       "network: {egress: [\"127.0.0.2:9\", \"10.0.0.0/8:443\", \"[::1]:9\"]}\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    uint64_t *seq = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *conc = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *direct = calloc((size_t)n, sizeof(uint64_t));
    int fd = bench_connect(gw.port);
    for (int i = 0; i < 50; i++)
        bench_post(fd, "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (bench_post(fd, "/v1/tools/noop/calls", "{\"arguments\":{}}", NULL, 0) != 200)
            failures++;
        seq[i] = bench_now_ns() - t0;
    }
    close(fd);
    struct hist h_seq, h_all;
    int have_seq = read_hist(gw.port, &h_seq);
    bench_concurrent(gw.port, "/v1/tools/noop/calls", "{\"arguments\":{}}", CLIENTS, n, conc,
                     &failures);
    int have_all = read_hist(gw.port, &h_all);
    char *true_argv[] = {"/bin/true", NULL};
    bench_spawn_median(true_argv, n, direct);
    bench_gw_stop(&gw);
    if (have_seq < 0 || have_all < 0) {
        fprintf(stderr, "no gatehouse_network_policy_call_seconds in /metrics\n");
        return 1;
    }
    double call_p50 = bench_percentile(seq, (size_t)n, 50) / 1e3;
    double conc_p50 = bench_percentile(conc, (size_t)n, 50) / 1e3;
    double spawn_p50 = bench_percentile(direct, (size_t)n, 50) / 1e3;
    double seq_mean = h_seq.sum / (double)h_seq.count * 1e6;
    double all_mean = h_all.sum / (double)h_all.count * 1e6;
    printf("calls: %d sequential + %d from %d clients, failures %d\n", n, n, CLIENTS, failures);
    printf("network policy per call, sequential:  p50 <= %.0f us, mean %.1f us  (target: 100 us "
           "at p50)\n",
           hist_p50(&h_seq) * 1e6, seq_mean);
    printf("network policy per call, all calls:   p50 <= %.0f us, mean %.1f us\n",
           hist_p50(&h_all) * 1e6, all_mean);
    printf("whole call p50: sequential %.0f us, 8 clients %.0f us; direct spawn of /bin/true p50 "
           "%.0f us\n",
           call_p50, conc_p50, spawn_p50);
    printf("ratio: network policy mean / sequential call p50 = %.3f; / direct spawn p50 = %.3f\n",
           seq_mean / call_p50, seq_mean / spawn_p50);
    fflush(stdout);
    if (n_ct > 0 && bench_container(gatehouse, n_ct) != 0) failures++;
    return failures ? 1 : 0;
}
