/* container_spawn: what `container` calls cost under sustained load, next to bubblewrap doing
 * the same isolation, measured the same way in the same run.
 *
 *   back to back   one keep-alive client sends calls with no pause between them; bwrap is
 *                  run back to back the same way. p50/p99 of both, and their ratio.
 *   8 clients      8 keep-alive clients at once (calls/s); bwrap run by 8 threads at once
 *                  (runs/s). Their ratio.
 *   one isolated   each call alternates with one bwrap run: the pool always has time to get
 *   call           its next sandbox ready, so this is the cost of a call that comes alone,
 *                  not what an agent calling tools back to back gets.
 *
 * The machine is shared, so the phases are split into rounds that alternate gateway and
 * bwrap blocks; within a block everything runs back to back. The first call of each gateway
 * block follows a pause (the bwrap block) and is left out of the back-to-back samples.
 * Before and after each phase the tier's own counters are read from /metrics: which path the
 * calls took (primed pool child, blank pool child, a child made for the job, direct) and
 * where the gateway's side of a call spent its time.
 *
 * Targets (issue 16): back-to-back p50 at most 0.5x bwrap back to back; with 8 clients at
 * least 300 calls/s or at least 2x the rate of 8 bwrap at a time.
 *
 * usage: bench_container_spawn [GATEHOUSE-BINARY] [N] [ROUNDS]   (root: the tier needs it)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchlib.h"

#define CLIENTS 8
#define PATH "/v1/tools/ct_true/calls"
#define BODY "{\"arguments\":{}}"

static int failures;

/* ---- the tier's counters, from /metrics ------------------------------------------------ */

/* Counters read before and after a phase; printed as the difference. */
static const char *const counters[] = {"gatehouse_container_calls_total",
                                       "gatehouse_container_pool_primed_total",
                                       "gatehouse_container_pool_blank_total",
                                       "gatehouse_container_pool_job_total",
                                       "gatehouse_container_direct_calls_total",
                                       "gatehouse_container_pool_stale_total",
                                       "gatehouse_container_phase_seconds_total{phase=\"acquire\"}",
                                       "gatehouse_container_phase_seconds_total{phase=\"handoff\"}",
                                       "gatehouse_container_phase_seconds_total{phase=\"setup\"}",
                                       "gatehouse_container_phase_seconds_total{phase=\"run\"}",
                                       "gatehouse_container_phase_seconds_total{phase=\"release\"}",
                                       "gatehouse_container_pool_refill_wait_seconds_total",
                                       NULL};
#define NCOUNTERS (sizeof(counters) / sizeof(counters[0]) - 1)

static int metrics_get(int port, char *out, size_t cap)
{
    int fd = bench_connect(port);
    if (fd < 0) return -1;
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
        close(fd);
        return -1;
    }
    size_t have = 0;
    ssize_t r;
    while (have < cap - 1 && (r = read(fd, out + have, cap - 1 - have)) > 0)
        have += (size_t)r;
    out[have] = '\0';
    close(fd);
    return 0;
}

static void read_counters(int port, double v[NCOUNTERS])
{
    static char buf[1 << 17];
    memset(v, 0, NCOUNTERS * sizeof(double));
    if (metrics_get(port, buf, sizeof(buf)) < 0) return;
    for (size_t i = 0; i < NCOUNTERS; i++) {
        size_t len = strlen(counters[i]);
        for (const char *p = buf; (p = strstr(p, counters[i])); p += len)
            if ((p == buf || p[-1] == '\n') && p[len] == ' ') {
                v[i] = strtod(p + len + 1, NULL);
                break;
            }
    }
}

static void print_counters(const char *phase, const double a[NCOUNTERS], const double b[NCOUNTERS])
{
    double d[NCOUNTERS];
    for (size_t i = 0; i < NCOUNTERS; i++)
        d[i] = b[i] - a[i];
    double calls = d[0] > 0 ? d[0] : 1;
    printf("  %-15s %5.0f calls: primed %.0f, blank %.0f, made for the job %.0f, direct %.0f, "
           "stale %.0f\n",
           phase, d[0], d[1], d[2], d[3], d[4], d[5]);
    printf("  %-15s gateway side per call, ms: acquire %.3f  handoff %.3f (waiting for the "
           "slot's child %.3f)  setup %.3f  run %.3f  release %.3f\n",
           "", d[6] * 1e3 / calls, d[7] * 1e3 / calls, d[11] * 1e3 / calls, d[8] * 1e3 / calls,
           d[9] * 1e3 / calls, d[10] * 1e3 / calls);
}

/* ---- phases ----------------------------------------------------------------------------- */

static int call_once(int fd)
{
    int st = bench_post(fd, PATH, BODY, NULL, 0);
    if (st != 200) failures++;
    return st;
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    int rounds = argc > 3 ? atoi(argv[3]) : 4;
    if (rounds < 1) rounds = 1;
    if (n < CLIENTS * rounds) n = CLIENTS * rounds;
    int per = n / rounds; /* calls (and bwrap runs) per block */
    n = per * rounds;
    int iso = n < 200 ? n : 200;
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
    uint64_t *iso_call = calloc((size_t)iso, sizeof(uint64_t));
    uint64_t *iso_bw = calloc((size_t)iso, sizeof(uint64_t));
    uint64_t *conc = calloc((size_t)n, sizeof(uint64_t));
    double c0[NCOUNTERS], c1[NCOUNTERS], c2[NCOUNTERS], c3[NCOUNTERS];

    int fd = bench_connect(gw.port);
    for (int i = 0; i < 50; i++) /* warm up */
        call_once(fd);

    /* Back to back, in rounds: a block of calls, then a block of bwrap runs. */
    read_counters(gw.port, c0);
    size_t nseq = 0, nbw = 0;
    uint64_t t_seq = 0, t_bw = 0;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = bench_now_ns();
        for (int i = 0; i < per; i++) {
            uint64_t t = bench_now_ns();
            call_once(fd);
            if (i > 0) seq[nseq++] = bench_now_ns() - t;
        }
        t_seq += bench_now_ns() - t0;
        t0 = bench_now_ns();
        bench_spawn_median(bench_bwrap_true, per, bw + nbw);
        nbw += (size_t)per;
        t_bw += bench_now_ns() - t0;
    }
    read_counters(gw.port, c1);

    /* 8 at a time, in rounds: 8 clients, then 8 bwrap threads. */
    uint64_t t_conc = 0, t_bw8 = 0;
    for (int r = 0; r < rounds; r++) {
        t_conc +=
            bench_concurrent(gw.port, PATH, BODY, CLIENTS, per, conc + (size_t)r * per, &failures);
        t_bw8 += bench_spawn_concurrent(bench_bwrap_true, CLIENTS, per);
    }
    read_counters(gw.port, c2);

    /* One isolated call: each call follows a bwrap run. */
    for (int i = 0; i < iso; i++) {
        bench_spawn_median(bench_bwrap_true, 1, &iso_bw[i]);
        uint64_t t = bench_now_ns();
        call_once(fd);
        iso_call[i] = bench_now_ns() - t;
    }
    read_counters(gw.port, c3);
    close(fd);
    bench_gw_stop(&gw);

    double b50 = bench_percentile(bw, nbw, 50) / 1e6, b99 = bench_percentile(bw, nbw, 99) / 1e6;
    double s50 = bench_percentile(seq, nseq, 50) / 1e6, s99 = bench_percentile(seq, nseq, 99) / 1e6;
    double c50 = bench_percentile(conc, (size_t)n, 50) / 1e6,
           c99 = bench_percentile(conc, (size_t)n, 99) / 1e6;
    double i50 = bench_percentile(iso_call, (size_t)iso, 50) / 1e6,
           i99 = bench_percentile(iso_call, (size_t)iso, 99) / 1e6;
    double ib50 = bench_percentile(iso_bw, (size_t)iso, 50) / 1e6;
    double cps = n / (t_conc / 1e9), bps = n / (t_bw8 / 1e9);
    printf("container_spawn: /bin/true in the container tier (durable audit log) and bwrap, "
           "%d of each per phase in %d rounds\n",
           n, rounds);
    printf("%-44s %9s %9s %10s\n", "", "p50 ms", "p99 ms", "per s");
    printf("%-44s %9.3f %9.3f %10.0f\n", "bwrap, back to back", b50, b99, nbw / (t_bw / 1e9));
    printf("%-44s %9.3f %9.3f %10.0f\n", "gateway call, back to back (1 client)", s50, s99,
           n / (t_seq / 1e9));
    printf("%-44s %9s %9s %10.0f\n", "bwrap, 8 at a time", "", "", bps);
    printf("%-44s %9.3f %9.3f %10.0f\n", "gateway calls, 8 concurrent clients", c50, c99, cps);
    printf("%-44s %9.3f %9.3f %10s\n", "one isolated call (each after a bwrap run)", i50, i99, "");
    printf("%-44s %9.3f %9s %10s\n", "bwrap in that phase", ib50, "", "");
    printf("back to back: p50 call / p50 bwrap = %.2fx (target <= 0.50x): %s\n", s50 / b50,
           s50 <= 0.5 * b50 ? "met" : "NOT met");
    printf("8 at a time: %.0f calls/s = %.2fx bwrap's %.0f/s (target >= 300/s or >= 2.00x): %s\n",
           cps, cps / bps, bps, cps >= 300 || cps >= 2 * bps ? "met" : "NOT met");
    printf("one isolated call: %.2fx bwrap\n", i50 / ib50);
    printf("tier counters (from /metrics):\n");
    print_counters("back to back", c0, c1);
    print_counters("8 clients", c1, c2);
    print_counters("isolated", c2, c3);
    printf("failed calls: %d\n", failures);
    return failures ? 1 : 0;
}
