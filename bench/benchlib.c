/* benchlib.c: see benchlib.h. */
#include "benchlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    bind(s, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(s, (struct sockaddr *)&sa, &len);
    close(s);
    return ntohs(sa.sin_port);
}

int bench_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int read_response(int fd, char *out, size_t out_len, char *head, size_t head_len)
{
    char buf[65536];
    size_t have = 0;
    char *hdr_end = NULL;
    while (!hdr_end) {
        ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (r <= 0) return -1;
        have += (size_t)r;
        buf[have] = '\0';
        hdr_end = strstr(buf, "\r\n\r\n");
        if (!hdr_end && have >= sizeof(buf) - 1) return -1;
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    if (head && head_len) snprintf(head, head_len, "%.*s", (int)(hdr_end + 4 - buf), buf);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body_len = cl ? strtoul(cl + 17, NULL, 10) : 0;
    size_t body_have = have - (size_t)(hdr_end + 4 - buf);
    if (out && out_len) {
        size_t n = body_have < out_len - 1 ? body_have : out_len - 1;
        memcpy(out, hdr_end + 4, n);
        out[n] = '\0';
    }
    while (body_have < body_len) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0) return -1;
        body_have += (size_t)r;
    }
    return status;
}

int bench_post_headers(int fd, const char *path, const char *headers, const char *body, char *out,
                       size_t out_len, char *head, size_t head_len)
{
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\n\r\n%s",
                     path, headers ? headers : "", strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) return -1;
    return read_response(fd, out, out_len, head, head_len);
}

int bench_post(int fd, const char *path, const char *body, char *out, size_t out_len)
{
    return bench_post_headers(fd, path, NULL, body, out, out_len, NULL, 0);
}

struct client_job {
    int port;
    const char *path, *body;
    uint64_t *samples;
    int count;
    int *failures;
};

static void *client_main(void *arg)
{
    struct client_job *j = arg;
    int fd = bench_connect(j->port);
    for (int i = 0; i < j->count; i++) {
        uint64_t t0 = bench_now_ns();
        int st = fd >= 0 ? bench_post(fd, j->path, j->body, NULL, 0) : -1;
        j->samples[i] = bench_now_ns() - t0;
        if (st != 200) __atomic_add_fetch(j->failures, 1, __ATOMIC_RELAXED);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

uint64_t bench_sequential(int port, const char *path, const char *body, int warmup, int n,
                          uint64_t *samples, int *failures)
{
    int fd = bench_connect(port);
    for (int i = 0; i < warmup; i++)
        bench_post(fd, path, body, NULL, 0);
    uint64_t start = bench_now_ns();
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (bench_post(fd, path, body, NULL, 0) != 200) (*failures)++;
        samples[i] = bench_now_ns() - t0;
    }
    uint64_t elapsed = bench_now_ns() - start;
    close(fd);
    return elapsed;
}

uint64_t bench_concurrent(int port, const char *path, const char *body, int clients, int total,
                          uint64_t *samples, int *failures)
{
    pthread_t th[64];
    struct client_job jobs[64];
    if (clients > 64) clients = 64;
    int per = total / clients;
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < clients; i++) {
        jobs[i] = (struct client_job){port,
                                      path,
                                      body,
                                      samples + (size_t)i * (size_t)per,
                                      i == clients - 1 ? total - per * i : per,
                                      failures};
        pthread_create(&th[i], NULL, client_main, &jobs[i]);
    }
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    return bench_now_ns() - t0;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

int bench_gw_start(struct bench_gw *gw, const char *gatehouse, const char *policy_name,
                   const char *policy_yaml, const char *const *extra_args)
{
    /* GATE_BENCH_STATE puts the state (audit log) elsewhere, e.g. on tmpfs to see what the
     * durable writes cost. */
    const char *base = getenv("GATE_BENCH_STATE") ? getenv("GATE_BENCH_STATE") : "/tmp";
    snprintf(gw->state_dir, sizeof(gw->state_dir), "%.200s/gh-bench-XXXXXX", base);
    if (!mkdtemp(gw->state_dir)) return -1;
    /* The one policy lives in the state directory, so bench_gw_stop removes it too. */
    char policies[300], path[400];
    snprintf(policies, sizeof(policies), "%s/policies", gw->state_dir);
    snprintf(path, sizeof(path), "%s/%.60s.yaml", policies, policy_name);
    if (mkdir(policies, 0700) < 0 || write_file(path, policy_yaml) < 0) return -1;
    gw->port = free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", gw->port);
    const char *argv[32] = {gatehouse,    "serve",  "--listen",    listen,
                            "--policies", policies, "--state-dir", gw->state_dir};
    int argc = 8;
    for (int i = 0; extra_args && extra_args[i] && argc < 30; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;
    gw->pid = fork();
    if (gw->pid == 0) {
        char log[300];
        snprintf(log, sizeof(log), "%s/gateway.log", gw->state_dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        execv(gatehouse, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 600; i++) {
        int fd = bench_connect(gw->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

void bench_gw_stop(struct bench_gw *gw)
{
    if (gw->pid > 0) {
        kill(gw->pid, SIGTERM);
        waitpid(gw->pid, NULL, 0);
        gw->pid = 0;
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", gw->state_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", gw->state_dir);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(uint64_t *samples, size_t n, double p)
{
    if (n == 0) return 0;
    qsort(samples, n, sizeof(*samples), cmp_u64);
    size_t idx = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)samples[idx];
}

static void spawn_wait(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
}

uint64_t bench_spawn_median(char *const argv[], int n, uint64_t *samples)
{
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        spawn_wait(argv);
        samples[i] = bench_now_ns() - t0;
    }
    return (uint64_t)bench_percentile(samples, (size_t)n, 50);
}

struct spawn_job {
    char *const *argv;
    int count;
};

static void *spawn_main(void *arg)
{
    struct spawn_job *j = arg;
    for (int i = 0; i < j->count; i++)
        spawn_wait(j->argv);
    return NULL;
}

uint64_t bench_spawn_concurrent(char *const argv[], int threads, int total)
{
    pthread_t th[64];
    struct spawn_job jobs[64];
    if (threads > 64) threads = 64;
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct spawn_job){argv, total / threads + (i < total % threads)};
        pthread_create(&th[i], NULL, spawn_main, &jobs[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return bench_now_ns() - t0;
}

char *const bench_bwrap_true[] = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent",
                                  "--ro-bind",      "/usr",          "/usr",
                                  "--symlink",      "usr/lib",       "/lib",
                                  "--symlink",      "usr/lib64",     "/lib64",
                                  "--symlink",      "usr/bin",       "/bin",
                                  "--proc",         "/proc",         "--dev",
                                  "/dev",           "/bin/true",     NULL};
