/* benchlib.h: what the benchmarks share: start a gateway on a temporary state
 * directory, a keep-alive HTTP client, percentiles. */
#ifndef GATE_BENCHLIB_H
#define GATE_BENCHLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bench_gw {
    pid_t pid;
    int port;
    char state_dir[256];
};

uint64_t bench_now_ns(void);
/* Start `gatehouse serve` with one policy (policy_name.yaml holding policy_yaml) on a
 * temporary state directory; waits until the gateway accepts connections. */
int bench_gw_start(struct bench_gw *gw, const char *gatehouse, const char *policy_name,
                   const char *policy_yaml, const char *const *extra_args);
void bench_gw_stop(struct bench_gw *gw);
/* A connected keep-alive socket to 127.0.0.1:port. */
int bench_connect(int port);
/* POST body to path over fd; returns the HTTP status, or -1. The response body is discarded,
 * or copied into out (up to out_len) when out is not NULL. */
int bench_post(int fd, const char *path, const char *body, char *out, size_t out_len);
/* bench_post with extra header lines ("Name: value\r\n"..., may be NULL); the response head
 * is copied into head (up to head_len) when head is not NULL. */
int bench_post_headers(int fd, const char *path, const char *headers, const char *body, char *out,
                       size_t out_len, char *head, size_t head_len);
/* POST body to path `warmup` times, then n times back to back on one keep-alive connection;
 * samples[n] receives each timed call's latency in ns. Returns the timed calls' elapsed wall
 * time in ns; *failures counts answers other than 200. */
uint64_t bench_sequential(int port, const char *path, const char *body, int warmup, int n,
                          uint64_t *samples, int *failures);
/* POST body to path from `clients` threads, each with its own keep-alive connection, `total`
 * calls in all. samples[total] receives each call's latency in ns. Returns the elapsed wall
 * time in ns; *failures counts answers other than 200. */
uint64_t bench_concurrent(int port, const char *path, const char *body, int clients, int total,
                          uint64_t *samples, int *failures);
/* Sort samples and return the p-th percentile (0..100). */
double bench_percentile(uint64_t *samples, size_t n, double p);
/* The reference sandbox: bwrap with every namespace of its own and a read-only /usr, running
 * /bin/true. */
extern char *const bench_bwrap_true[];
/* Median wall time in ns of running argv n times (fork/exec/wait). */
uint64_t bench_spawn_median(char *const argv[], int n, uint64_t *samples);
/* Run argv `total` times from `threads` threads at once (fork/exec/wait each); returns the
 * elapsed wall time in ns: the most spawns per second this machine can do. */
uint64_t bench_spawn_concurrent(char *const argv[], int threads, int total);

#endif
