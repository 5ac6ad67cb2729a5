/* bench_wasm: CPU time of WebAssembly programs on gatehouse's engine next to reference
 * commands, all measured in one run, as whole processes (user + sys from wait4), in
 * interleaved rounds: each round runs every program on every engine, one after the other, so
 * load from other work on the machine falls on all of them alike. Each figure is the median
 * over the rounds. Every run's output is compared with the native run's.
 *
 * usage: bench_wasm <build dir of bench/wasm> [lua.wasm]
 *
 * Programs: fib, sieve, matmul, sha256 (C, compiled to wasm32 and natively with the same
 * source), and, given lua.wasm (tools/wasm-lua54: policies/tools/lua54.wasm in the build),
 * the Lua scripts in bench/wasm/lua/ run by that stock Lua 5.4 (lua -e SCRIPT). Engines:
 *   ours      wasm_run (this build's engine)
 *   base      $BENCH_BASELINE_RUN, another build of wasm_run (e.g. of the main branch), if set
 *   interp    wabt's wasm-interp, the in-run reference interpreter (C programs only: Debian's
 *             build has no WASI), first round only (it is 10-40x slower); BENCH_SKIP_WASM_INTERP=1
 *             leaves it out
 *   native    the C program built with gcc -O2; Debian's lua5.4 for the scripts
 * BENCH_ROUNDS (default 3) sets the rounds.
 */
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gate.h"

extern char **environ;

#define MAX_ROUNDS 15
enum engine { E_OURS, E_BASE, E_INTERP, E_NATIVE, E__COUNT };
static const char *const engine_names[] = {"ours", "base", "interp", "native"};

struct prog {
    char name[64];
    char *argv[E__COUNT][6]; /* NULL argv[0]: the engine does not run this program */
    double cpu[E__COUNT][MAX_ROUNDS];
    int runs[E__COUNT];
    char *expect; /* native output */
    bool differs;
};

/* Run argv; CPU seconds (user + sys) or -1 on failure; its stdout in *out (caller frees). */
static double time_cmd(char *const argv[], char **out)
{
    int p[2];
    pid_t pid;
    struct rusage ru;
    struct gate_buf buf = {0};
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -1;
    }
    char chunk[4096];
    ssize_t n;
    while ((n = read(p[0], chunk, sizeof(chunk))) > 0)
        gate_buf_append(&buf, chunk, (size_t)n);
    close(p[0]);
    int st;
    if (wait4(pid, &st, 0, &ru) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        gate_buf_free(&buf);
        return -1;
    }
    *out = buf.data ? buf.data : strdup("");
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    if (n <= 0) return -1;
    memcpy(s, v, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void set_argv(char **argv, const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *v[] = {a0, a1, a2, a3};
    for (int i = 0; i < 4; i++)
        argv[i] = v[i] ? strdup(v[i]) : NULL;
    argv[4] = NULL;
}

static int add_c_progs(struct prog *p, const char *dir, const char *base)
{
    static const char *const names[] = {"fib", "sieve", "matmul", "sha256"};
    char wasm[4096], nat[4096], run[4096];
    snprintf(run, sizeof(run), "%s/wasm_run", dir);
    for (int i = 0; i < 4; i++) {
        snprintf(p[i].name, sizeof(p[i].name), "%s", names[i]);
        snprintf(wasm, sizeof(wasm), "%s/%s.wasm", dir, names[i]);
        snprintf(nat, sizeof(nat), "%s/%s.native", dir, names[i]);
        set_argv(p[i].argv[E_OURS], run, wasm, "--invoke", "run");
        if (base) set_argv(p[i].argv[E_BASE], base, wasm, "--invoke", "run");
        if (!getenv("BENCH_SKIP_WASM_INTERP"))
            set_argv(p[i].argv[E_INTERP], "wasm-interp", wasm, "--run-all-exports", NULL);
        set_argv(p[i].argv[E_NATIVE], nat, NULL, NULL, NULL);
    }
    return 4;
}

static int add_lua_progs(struct prog *p, const char *dir, const char *base, const char *lua)
{
    static const char *const names[] = {"fib", "loops", "tables", "strings", "objects", "trees"};
    char path[4096], run[4096];
    struct gate_error err = {0};
    snprintf(run, sizeof(run), "%s/wasm_run", dir);
    bool native = access("/usr/bin/lua5.4", X_OK) == 0;
    for (int i = 0; i < 6; i++) {
        char *src = NULL, *script = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/lua/%s.lua", BENCH_SOURCE_DIR, names[i]);
        if (gate_read_file(path, 1 << 20, &src, &len, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
        /* lua -e refuses a statement that starts with '-' (a leading comment) */
        if (asprintf(&script, "\n%s", src) < 0) return -1;
        free(src);
        snprintf(p[i].name, sizeof(p[i].name), "lua:%s", names[i]);
        set_argv(p[i].argv[E_OURS], run, lua, "-e", script);
        if (base) set_argv(p[i].argv[E_BASE], base, lua, "-e", script);
        if (native) set_argv(p[i].argv[E_NATIVE], "/usr/bin/lua5.4", "-e", script, NULL);
        free(script);
    }
    if (!native) fprintf(stderr, "lua5.4 (Debian package) is not installed: no native column\n");
    return 6;
}

static void run_round(struct prog *p, int n, int round)
{
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E__COUNT; e++) {
            if (!p[i].argv[e][0] || (e == E_INTERP && round > 0)) continue;
            char *out = NULL;
            double t = time_cmd(p[i].argv[e], &out);
            if (t < 0) {
                fprintf(stderr, "%s on %s failed\n", p[i].name, engine_names[e]);
                continue;
            }
            p[i].cpu[e][p[i].runs[e]++] = t;
            if (e == E_NATIVE && !p[i].expect) p[i].expect = strdup(out);
            if (p[i].expect && e != E_INTERP && strcmp(out, p[i].expect) != 0) p[i].differs = true;
            free(out);
        }
}

static void report(struct prog *p, int n)
{
    double lua_prod = 1, lua_worst = 0;
    int lua_n = 0;
    printf("%-14s %9s %9s %9s %9s %11s %10s %12s\n", "program", "ours s", "base s", "interp s",
           "native s", "ours/native", "ours/base", "interp/ours");
    for (int i = 0; i < n; i++) {
        double m[E__COUNT];
        for (int e = 0; e < E__COUNT; e++)
            m[e] = median(p[i].cpu[e], p[i].runs[e]);
        double on = m[E_OURS] > 0 && m[E_NATIVE] > 0 ? m[E_OURS] / m[E_NATIVE] : 0;
        double ob = m[E_OURS] > 0 && m[E_BASE] > 0 ? m[E_OURS] / m[E_BASE] : 0;
        double io = m[E_OURS] > 0 && m[E_INTERP] > 0 ? m[E_INTERP] / m[E_OURS] : 0;
        printf("%-14s %9.3f %9.3f %9.3f %9.3f %11.2f %10.2f %12.1f%s\n", p[i].name, m[E_OURS],
               m[E_BASE], m[E_INTERP], m[E_NATIVE], on, ob, io,
               p[i].differs ? "  OUTPUT DIFFERS" : "");
        if (!strncmp(p[i].name, "lua:", 4) && ob > 0) {
            lua_prod *= ob, lua_n++;
            if (ob > lua_worst) lua_worst = ob;
        }
    }
    if (lua_n)
        printf("lua scripts: ours/base geometric mean %.2f, worst %.2f\n",
               pow(lua_prod, 1.0 / lua_n), lua_worst);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <bench/wasm build dir> [lua.wasm]\n", argv[0]);
        return 2;
    }
    const char *base = getenv("BENCH_BASELINE_RUN");
    int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 3;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 3;
    static struct prog progs[16];
    int n = add_c_progs(progs, argv[1], base);
    if (argc > 2) {
        int k = add_lua_progs(progs + n, argv[1], base, argv[2]);
        if (k < 0) return 1;
        n += k;
    }
    printf("CPU seconds (user+sys), median of %d interleaved rounds (wasm-interp: first round)\n",
           rounds);
    for (int r = 0; r < rounds; r++)
        run_round(progs, n, r);
    report(progs, n);
    return 0;
}
