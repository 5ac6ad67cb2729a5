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
 * usage: bench_netpolicy [GATEHOUSE-BINARY] [N]
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

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
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
    return failures ? 1 : 0;
}
