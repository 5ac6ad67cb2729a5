/* bench_netpolicy: what the network policy adds to a `process`-tier call.
 *
 * Every process-tier call runs under its policy's network filter: the gateway puts the call's
 * uid under the policy (one BPF map update) before the tool starts, and afterwards resets it
 * to deny-all and drains the call's events from the ring buffer. The gateway times exactly that
 * work per call and publishes it as the histogram gatehouse_network_policy_call_seconds; the
 * exec record's program (path and argv words) runs in the kernel at each exec, and its time is
 * read from the kernel's BPF statistics. This program makes N sequential calls of a no-op tool
 * with an egress list, run without and with long argv words (two gateways, interleaved
 * blocks), and N calls from 8 concurrent clients, then prints that histogram's p50 (bucket
 * bound) and mean, the exec program's time per call, and the whole call's p50 next to a direct
 * fork/exec/wait of /bin/true, all measured in the same run. (The filter's cost inside
 * connect() is paid only by tools that connect; a no-op tool pays none of it.)
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
#include <bpf/bpf.h>
#include <dirent.h>
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

/* ---- the process tier: the exec record's argv words ---------------------------------------- */

/* The tracepoint program that records a call's execs (with argv words) runs in the kernel at
 * every exec, outside the gateway's own timing: its cost is read from the kernel's BPF run-time
 * statistics (bpf_enable_stats), for the program the gateway `pid` holds. */
struct exec_stats {
    uint64_t run_ns, runs;
};

static int exec_prog_stats(pid_t pid, struct exec_stats *out)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = -1;
    while (d && found < 0 && (de = readdir(d))) {
        char path[384], line[256];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "re");
        unsigned id = 0;
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "prog_id: %u", &id) == 1) break;
        if (f) fclose(f);
        int fd = id ? bpf_prog_get_fd_by_id(id) : -1;
        struct bpf_prog_info info = {0};
        uint32_t len = sizeof(info);
        if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
            strcmp(info.name, "netpol_exec") == 0) {
            out->run_ns = info.run_time_ns;
            out->runs = info.run_cnt;
            found = 0;
        }
        if (fd >= 0) close(fd);
    }
    if (d) closedir(d);
    return found;
}

#define PROC_ROUNDS 5
#define W100                                                                                       \
    "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww" \
    "wwwwwwww"
#define EGRESS "network: {egress: [\"127.0.0.2:9\", \"10.0.0.0/8:443\", \"[::1]:9\"]}\n"
#define TRUE_POLICY "description: does nothing\nisolation: process\n" EGRESS

/* Two gateways, the same no-op tool and egress list: `plain` runs /bin/true alone (one short
 * argv word), `words` with six words, three of 200 bytes (each cut to 64: the record's most
 * expensive case, the program searching past each cut for the next word). In interleaved
 * blocks: the whole call's p50, the gateway's own per-call network work (its histogram), and
 * the exec program's kernel time per call. */
static int bench_process(const char *gatehouse, int n)
{
    int failures = 0;
    struct bench_gw plain, words;
    if (bench_gw_start(&plain, gatehouse, "noop",
                       "name: noop\ncommand: [\"/bin/true\"]\n" TRUE_POLICY, NULL) < 0 ||
        bench_gw_start(&words, gatehouse, "noop",
                       "name: noop\ncommand: [\"/bin/true\", \"" W100 W100 "\", \"" W100 W100
                       "\", \"" W100 W100 "\", \"four\", \"five\"]\n" TRUE_POLICY,
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME); /* counted while the fd is open */
    int per = n / PROC_ROUNDS;
    size_t total = (size_t)per * PROC_ROUNDS;
    uint64_t *a = calloc(total, sizeof(uint64_t)), *b = calloc(total, sizeof(uint64_t));
    uint64_t *conc = calloc(total, sizeof(uint64_t)), *direct = calloc(total, sizeof(uint64_t));
    uint64_t kns[2] = {0}, kruns[2] = {0};
    int have_k = stats_fd >= 0 ? 0 : -1;
    for (int r = 0; r < PROC_ROUNDS; r++) {
        struct bench_gw *gws[2] = {&plain, &words};
        uint64_t *out[2] = {a, b};
        for (int g = 0; g < 2; g++) {
            struct exec_stats s0 = {0}, s1 = {0};
            if (exec_prog_stats(gws[g]->pid, &s0) < 0) have_k = -1;
            bench_sequential(gws[g]->port, "/v1/tools/noop/calls", BODY, 1, per,
                             out[g] + (size_t)r * per, &failures);
            if (exec_prog_stats(gws[g]->pid, &s1) < 0) have_k = -1;
            kns[g] += s1.run_ns - s0.run_ns;
            kruns[g] += s1.runs - s0.runs;
        }
    }
    struct hist h_plain, h_words, h_all;
    int have_h = read_hist(plain.port, &h_plain) | read_hist(words.port, &h_words);
    bench_concurrent(words.port, "/v1/tools/noop/calls", BODY, CLIENTS, (int)total, conc,
                     &failures);
    have_h |= read_hist(words.port, &h_all);
    char *true_argv[] = {"/bin/true", NULL};
    bench_spawn_median(true_argv, (int)total, direct);
    if (stats_fd >= 0) close(stats_fd);
    bench_gw_stop(&plain);
    bench_gw_stop(&words);
    if (have_h < 0) {
        fprintf(stderr, "no gatehouse_network_policy_call_seconds in /metrics\n");
        return 1;
    }
    double pa = bench_percentile(a, total, 50) / 1e3, pb = bench_percentile(b, total, 50) / 1e3;
    double pc = bench_percentile(conc, total, 50) / 1e3;
    double spawn_p50 = bench_percentile(direct, total, 50) / 1e3;
    double mean_plain = h_plain.sum / (double)h_plain.count * 1e6;
    double mean_words = h_words.sum / (double)h_words.count * 1e6;
    double all_mean = h_all.sum / (double)h_all.count * 1e6;
    printf("process tier: %zu calls each of two gateways back to back in %d interleaved blocks, "
           "+ %zu from %d clients, failures %d\n",
           total, PROC_ROUNDS, total, CLIENTS, failures);
    printf("gateway's network work per call (histogram): plain p50 <= %.0f us mean %.1f us; "
           "argv words p50 <= %.0f us mean %.1f us; 8 clients (words) mean %.1f us\n",
           hist_p50(&h_plain) * 1e6, mean_plain, hist_p50(&h_words) * 1e6, mean_words, all_mean);
    if (have_k == 0)
        printf("exec program in the kernel per call (all its runs in the block / calls; runs "
               "include other execs on the host): plain %.2f us (%.2f runs/call), argv words "
               "%.2f us (%.2f runs/call)\n",
               kns[0] / 1e3 / (double)total, kruns[0] / (double)total, kns[1] / 1e3 / (double)total,
               kruns[1] / (double)total);
    else
        printf("exec program in the kernel: BPF run-time statistics unavailable (%s)\n",
               stats_fd < 0 ? "bpf_enable_stats failed" : "program not found in the gateway");
    printf("whole call p50: plain %.0f us, argv words %.0f us (difference %+.0f us); words with "
           "%d clients %.0f us; direct spawn of /bin/true p50 %.0f us\n",
           pa, pb, pb - pa, CLIENTS, pc, spawn_p50);
    printf("network policy per call with argv words (gateway mean + kernel exec program) = "
           "%.1f us (target: at most 100 us); ratio to the plain call's p50 %.4f\n",
           mean_words + (have_k == 0 ? kns[1] / 1e3 / (double)total : 0),
           (mean_words + (have_k == 0 ? kns[1] / 1e3 / (double)total : 0)) / pa);
    fflush(stdout);
    free(a), free(b), free(conc), free(direct);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    int n_ct = argc > 3 ? atoi(argv[3]) : 500;
    int failures = bench_process(gatehouse, n);
    if (n_ct > 0 && bench_container(gatehouse, n_ct) != 0) failures++;
    return failures ? 1 : 0;
}
