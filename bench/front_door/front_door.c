/* front_door: what 2,000 idle and slowloris connections from one address do to everyone
 * else's calls (issue 10.1: a normal call must still succeed within its usual latency x 3).
 *
 * In one run, against one gateway with a no-op `process` tool:
 *   1. N sequential calls from 127.0.0.1, on one keep-alive connection and on a new connection
 *      per call (what most agents' HTTP clients do): the usual latency;
 *   2. FLOOD connections opened from 127.0.0.2 (another address, as an attacker's would be),
 *      half of them idle, half sending a request head one byte at a time (slowloris, a byte
 *      every 200 ms from one thread), then the same N calls again while they stay open;
 *   3. the flood closed, the same calls once more (to see drift on a noisy machine).
 * Prints p50/p99 of each phase and the ratio flood / mean(before, after).
 *
 * usage: bench_front_door [GATEHOUSE-BINARY] [N] [FLOOD]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchlib.h"

#define CALL_PATH "/v1/tools/noop/calls"
#define CALL_BODY "{\"arguments\":{}}"

static int failures;

struct flood {
    int port, n, *fds;
    atomic_bool stop;
    pthread_t drip;
};

static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me = {.sin_family = AF_INET}, gw = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &me.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &gw.sin_addr);
    gw.sin_port = htons((uint16_t)port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0 ||
        connect(fd, (struct sockaddr *)&gw, sizeof(gw)) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* The slowloris half: one more byte of an endless head on each connection every 200 ms. */
static void *drip_main(void *arg)
{
    struct flood *f = arg;
    static const char head[] = "POST " CALL_PATH " HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaa";
    size_t pos = 0;
    while (!atomic_load(&f->stop)) {
        for (int i = 1; i < f->n; i += 2)
            if (f->fds[i] >= 0 && send(f->fds[i], head + pos, 1, MSG_NOSIGNAL) < 0) {
                close(f->fds[i]); /* the gateway closed it (its head deadline): open another */
                f->fds[i] = connect_from("127.0.0.2", f->port);
            }
        pos = (pos + 1) % (sizeof(head) - 1);
        usleep(200 * 1000);
    }
    return NULL;
}

static int flood_open(struct flood *f, int port, int n)
{
    f->port = port;
    f->n = n;
    f->fds = calloc((size_t)n, sizeof(int));
    atomic_store(&f->stop, false);
    int open = 0;
    for (int i = 0; i < n; i++)
        if ((f->fds[i] = connect_from("127.0.0.2", port)) >= 0) open++;
    pthread_create(&f->drip, NULL, drip_main, f);
    return open;
}

static void flood_close(struct flood *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->drip, NULL);
    for (int i = 0; i < f->n; i++)
        if (f->fds[i] >= 0) close(f->fds[i]);
    free(f->fds);
}

/* N calls on one keep-alive connection (keep != 0) or one new connection per call. */
static void phase(int port, int n, int keep, uint64_t *samples)
{
    int fd = keep ? bench_connect(port) : -1;
    for (int i = 0; i < n; i++) {
        if (!keep) fd = bench_connect(port);
        uint64_t t0 = bench_now_ns();
        if (fd < 0 || bench_post(fd, CALL_PATH, CALL_BODY, NULL, 0) != 200) failures++;
        samples[i] = bench_now_ns() - t0;
        if (!keep && fd >= 0) close(fd);
    }
    if (keep && fd >= 0) close(fd);
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 500;
    int nflood = argc > 3 ? atoi(argv[3]) : 2000;
    /* The flood's sockets and the gateway's (inherited limit) need more than 1024 fds. */
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    /* The per-address limit (default 256) would refuse most of the flood: raise it, so that
     * all 2,000 connections are really open and the gateway must carry them. */
    const char *const extra[] = {"--max-connections-per-ip", "4096", NULL};
    struct bench_gw gw;
    if (bench_gw_start(&gw, gatehouse, "noop",
                       "name: noop\ndescription: does nothing\ncommand: [\"/bin/true\"]\n"
                       "isolation: process\n",
                       extra) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    uint64_t *s[3][2];
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < 2; k++)
            s[p][k] = calloc((size_t)n, sizeof(uint64_t));
    phase(gw.port, 50, 1, s[0][0]); /* warm up */
    struct flood f;
    int opened = 0;
    for (int p = 0; p < 3; p++) {
        if (p == 1) opened = flood_open(&f, gw.port, nflood);
        phase(gw.port, n, 1, s[p][0]);
        phase(gw.port, n, 0, s[p][1]);
        if (p == 1) flood_close(&f);
    }
    printf("front_door: %d calls of /bin/true (process tier) per phase; flood: %d of %d "
           "connections opened from 127.0.0.2 (half idle, half slowloris)\n",
           n, opened, nflood);
    printf("%-44s %9s %9s\n", "", "p50 ms", "p99 ms");
    static const char *const names[3] = {"before", "during flood", "after"};
    static const char *const kinds[2] = {"keep-alive", "new connection per call"};
    double p50[3][2];
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 3; p++) {
            char label[64];
            snprintf(label, sizeof(label), "%s, %s", kinds[k], names[p]);
            p50[p][k] = bench_percentile(s[p][k], (size_t)n, 50) / 1e6;
            printf("%-44s %9.3f %9.3f\n", label, p50[p][k],
                   bench_percentile(s[p][k], (size_t)n, 99) / 1e6);
        }
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        double ratio = p50[1][k] / ((p50[0][k] + p50[2][k]) / 2);
        if (ratio > worst) worst = ratio;
        printf("ratio p50 during flood / outside it, %s: %.2fx\n", kinds[k], ratio);
    }
    printf("target: every call succeeds and p50 within 3x: %s (failed calls: %d)\n",
           !failures && worst <= 3.0 ? "met" : "NOT met", failures);
    bench_gw_stop(&gw);
    return failures ? 1 : 0;
}
