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
 *   wasm3     $BENCH_WASM3, a wasm3 binary, if set (wasm3 is in neither Debian nor npm: build
 *             it yourself; its CLI must take `--func NAME FILE` and `FILE ARG...` and print an
 *             i32 result on stdout, see the README's wasm benchmark rows)
 * $BENCH_EXTRA_WASM (space-separated paths) adds WASI command modules (e.g. CoreMark), run with
 * no arguments by ours, base and wasm3; their outputs are compared with ours with the lines that
 * depend on wall-clock time left out (CoreMark's secs, ticks, Iterations/Sec, "CoreMark 1.0",
 * and its verdict lines, which depend on a 10 s minimum): its CRC lines are compared.
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
#define MAX_PROGS 24
enum engine { E_OURS, E_BASE, E_INTERP, E_NATIVE, E_WASM3, E__COUNT };
static const char *const engine_names[] = {"ours", "base", "interp", "native", "wasm3"};

struct prog {
    char name[64];
    char *argv[E__COUNT][6]; /* NULL argv[0]: the engine does not run this program */
    double cpu[E__COUNT][MAX_ROUNDS];
    int runs[E__COUNT];
    int failed[E__COUNT];
    char *expect;     /* native output; for an extra module, ours (timing lines left out) */
    bool extra;       /* a $BENCH_EXTRA_WASM module: timing lines are not compared */
    unsigned differs; /* bit per engine whose output differed */
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

static int add_c_progs(struct prog *p, const char *dir, const char *base, const char *wasm3)
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
        if (wasm3) set_argv(p[i].argv[E_WASM3], wasm3, "--func", "run", wasm);
    }
    return 4;
}

static int add_lua_progs(struct prog *p, const char *dir, const char *base, const char *wasm3,
                         const char *lua)
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
        if (wasm3) set_argv(p[i].argv[E_WASM3], wasm3, lua, "-e", script);
        free(script);
    }
    if (!native) fprintf(stderr, "lua5.4 (Debian package) is not installed: no native column\n");
    return 6;
}

/* $BENCH_EXTRA_WASM: WASI commands run without arguments by every engine that runs WASI. */
static int add_extra_progs(struct prog *p, int room, const char *dir, const char *base,
                           const char *wasm3)
{
    const char *list = getenv("BENCH_EXTRA_WASM");
    char run[4096];
    int n = 0;
    if (!list) return 0;
    snprintf(run, sizeof(run), "%s/wasm_run", dir);
    char *copy = strdup(list), *save = NULL;
    for (char *path = strtok_r(copy, " ", &save); path && n < room;
         path = strtok_r(NULL, " ", &save), n++) {
        const char *slash = strrchr(path, '/');
        snprintf(p[n].name, sizeof(p[n].name), "%.63s", slash ? slash + 1 : path);
        p[n].extra = true;
        set_argv(p[n].argv[E_OURS], run, path, NULL, NULL);
        if (base) set_argv(p[n].argv[E_BASE], base, path, NULL, NULL);
        if (wasm3) set_argv(p[n].argv[E_WASM3], wasm3, path, NULL, NULL);
    }
    free(copy);
    return n;
}

/* Leave out, in place, the lines of an extra module's output that depend on wall-clock time. */
static void drop_timing_lines(char *out)
{
    static const char *const keys[] = {"secs",         "ticks",           "Iterations/Sec",
                                       "CoreMark 1.0", "Errors detected", "Correct operation"};
    char *w = out;
    for (char *line = out; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        bool timing = false;
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (memmem(line, len, keys[k], strlen(keys[k]))) timing = true;
        if (!timing) {
            memmove(w, line, len);
            w += len;
        }
        line += len;
    }
    *w = 0;
}

static void run_round(struct prog *p, int n, int round)
{
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E__COUNT; e++) {
            if (!p[i].argv[e][0] || (e == E_INTERP && round > 0)) continue;
            char *out = NULL;
            double t = time_cmd(p[i].argv[e], &out);
            if (t < 0) {
                if (!p[i].failed[e]++)
                    fprintf(stderr, "%s on %s failed\n", p[i].name, engine_names[e]);
                continue;
            }
            p[i].cpu[e][p[i].runs[e]++] = t;
            if (p[i].extra) drop_timing_lines(out);
            if (e == (p[i].extra ? E_OURS : E_NATIVE) && !p[i].expect) p[i].expect = strdup(out);
            if (p[i].expect && e != E_INTERP && strcmp(out, p[i].expect) != 0)
                p[i].differs |= 1u << e;
            free(out);
        }
}

/* A figure, or "-" where the engine did not run the program (or failed on it). */
static void put(double v, const char *fmt, int width)
{
    if (v > 0)
        printf(fmt, width, v);
    else
        printf("%*s", width, "-");
}

static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : 0;
}

struct summary {
    double prod;
    double worst;
    int n;
};

static void add_ratio(struct summary *s, double r)
{
    if (r <= 0) return;
    s->prod *= r, s->n++;
    if (r > s->worst) s->worst = r;
}

static void print_summary(const char *what, const char *vs, const struct summary *s)
{
    if (s->n)
        printf("%s: ours/%s geometric mean %.2f, worst %.2f (%d programs)\n", what, vs,
               pow(s->prod, 1.0 / s->n), s->worst, s->n);
}

static void report(struct prog *p, int n)
{
    struct summary lua_base = {1, 0, 0}, c3 = {1, 0, 0}, lua3 = {1, 0, 0}, extra3 = {1, 0, 0};
    printf("%-14s %8s %8s %10s %8s %9s %9s %11s %8s %11s\n", "program", "ours s", "wasm3 s",
           "ours/wasm3", "base s", "ours/base", "interp s", "interp/ours", "native s",
           "ours/native");
    for (int i = 0; i < n; i++) {
        double m[E__COUNT];
        for (int e = 0; e < E__COUNT; e++)
            m[e] = median(p[i].cpu[e], p[i].runs[e]);
        double o3 = ratio(m[E_OURS], m[E_WASM3]), ob = ratio(m[E_OURS], m[E_BASE]);
        printf("%-14s", p[i].name);
        put(m[E_OURS], " %*.3f", 8), put(m[E_WASM3], " %*.3f", 8), put(o3, " %*.2f", 10);
        put(m[E_BASE], " %*.3f", 8), put(ob, " %*.2f", 9), put(m[E_INTERP], " %*.3f", 9);
        put(ratio(m[E_INTERP], m[E_OURS]), " %*.1f", 11), put(m[E_NATIVE], " %*.3f", 8);
        put(ratio(m[E_OURS], m[E_NATIVE]), " %*.2f", 11);
        for (int e = 0; e < E__COUNT; e++)
            if (p[i].differs & (1u << e)) printf("  OUTPUT DIFFERS (%s)", engine_names[e]);
        printf("\n");
        bool lua = !strncmp(p[i].name, "lua:", 4);
        if (lua) add_ratio(&lua_base, ob);
        add_ratio(p[i].extra ? &extra3 : lua ? &lua3 : &c3, o3);
    }
    print_summary("lua scripts", "base", &lua_base);
    print_summary("C programs", "wasm3", &c3);
    print_summary("lua scripts", "wasm3", &lua3);
    print_summary("extra modules", "wasm3", &extra3);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <bench/wasm build dir> [lua.wasm]\n", argv[0]);
        return 2;
    }
    const char *base = getenv("BENCH_BASELINE_RUN");
    const char *wasm3 = getenv("BENCH_WASM3");
    if (wasm3 && access(wasm3, X_OK) != 0) {
        fprintf(stderr, "BENCH_WASM3=%s is not an executable\n", wasm3);
        return 2;
    }
    int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 3;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 3;
    static struct prog progs[MAX_PROGS];
    int n = add_c_progs(progs, argv[1], base, wasm3);
    if (argc > 2) {
        int k = add_lua_progs(progs + n, argv[1], base, wasm3, argv[2]);
        if (k < 0) return 1;
        n += k;
    }
    n += add_extra_progs(progs + n, MAX_PROGS - n, argv[1], base, wasm3);
    printf("CPU seconds (user+sys), median of %d interleaved rounds (wasm-interp: first round)\n",
           rounds);
    if (!wasm3) printf("wasm3: not run (set BENCH_WASM3 to a wasm3 binary)\n");
    for (int r = 0; r < rounds; r++)
        run_round(progs, n, r);
    report(progs, n);
    return 0;
}
