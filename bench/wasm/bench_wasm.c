/* bench_wasm: time each benchmark program on gatehouse's interpreter, on wabt's wasm-interp
 * and natively (gcc -O2, same source), in one run, and print times and ratios.
 *
 * usage: bench_wasm <dir> [program ...]   (dir holds <p>.wasm and <p>.native)
 * Set BENCH_SKIP_WASM_INTERP=1 to leave out wasm-interp (it takes minutes).
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "wasmrt.h"

extern char **environ;

/* CPU seconds, not wall time: the machine these run on is shared, and CPU time is what the
 * reference figures compare. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) to run argv to completion, or -1. */
static double time_cmd(char *const argv[])
{
    pid_t pid;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1, 0);
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds for instantiate + run() on our interpreter (result in *result), or -1. */
static double time_ours(const char *path, uint64_t *result)
{
    char *bytes = NULL;
    size_t len = 0;
    struct gate_error err = {0};
    struct wasm_module *m = NULL;
    if (gate_read_file(path, 64u << 20, &bytes, &len, &err) < 0 ||
        wasm_module_load((const uint8_t *)bytes, len, &m, &err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        free(bytes);
        return -1;
    }
    free(bytes);
    struct wasm_limits_cfg lim;
    wasm_limits_default(&lim);
    struct wasm_store *s = wasm_store_new(&lim);
    struct wasm_instance *inst = NULL;
    struct wasm_extern run;
    enum wasm_trap trap = WASM_TRAP_NONE;
    double t = -1;
    double t0 = cpu_s();
    if (s && wasm_instantiate(s, m, NULL, 0, &inst, &trap, &err) == 0 &&
        wasm_instance_export(inst, "run", &run) == 0) {
        uint64_t slots[1] = {0};
        trap = wasm_call(s, run.u.func, slots);
        *result = (uint32_t)slots[0];
        if (!trap)
            t = cpu_s() - t0;
        else
            fprintf(stderr, "%s: trap: %s\n", path, wasm_trap_name(trap));
    }
    wasm_store_free(s);
    wasm_module_free(m);
    return t;
}

int main(int argc, char **argv)
{
    static const char *const all[] = {"fib", "sieve", "matmul", "sha256"};
    if (argc < 2) {
        fprintf(stderr, "usage: %s <dir> [program ...]\n", argv[0]);
        return 2;
    }
    const char *const *progs = argc > 2 ? (const char *const *)argv + 2 : all;
    int n = argc > 2 ? argc - 2 : 4;
    bool skip_interp = getenv("BENCH_SKIP_WASM_INTERP") != NULL;
    printf("CPU seconds (user+sys) per program\n");
    printf("%-8s %10s %10s %12s %14s %12s\n", "program", "native s", "ours s", "wasm-interp s",
           "interp/ours", "ours/native");
    for (int i = 0; i < n; i++) {
        char wasm[4096], native[4096];
        snprintf(wasm, sizeof(wasm), "%s/%s.wasm", argv[1], progs[i]);
        snprintf(native, sizeof(native), "%s/%s.native", argv[1], progs[i]);
        uint64_t result = 0;
        double ours = time_ours(wasm, &result);
        char *nat_argv[] = {native, NULL};
        double nat = time_cmd(nat_argv);
        char *wi_argv[] = {"wasm-interp", wasm, "--run-all-exports", NULL};
        double wi = skip_interp ? -1 : time_cmd(wi_argv);
        printf("%-8s %10.3f %10.3f %12.3f %14.1f %12.1f\n", progs[i], nat, ours, wi,
               wi > 0 && ours > 0 ? wi / ours : 0.0, nat > 0 && ours > 0 ? ours / nat : 0.0);
        fflush(stdout);
    }
    return 0;
}
