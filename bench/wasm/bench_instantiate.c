/* bench_instantiate: what it costs a warm worker to get a fresh instance of a module, per
 * call, next to what it costs to have the module at all, measured in one run.
 *
 * usage: bench_instantiate MODULE.wasm [calls]
 *
 * Per call, as the worker does it: a new store (limits as the wasm tier sets them: 256 MiB
 * memory cap), WASI host functions linked, instantiation (tables, globals, the initial memory,
 * data segments), then the store freed. Measured for the module mapped from its shared image
 * (wasm_module_share + wasm_module_map: the memory's initial contents are mapped
 * copy-on-write) and, as the reference, for the same module loaded directly (segments copied
 * one by one). Also measured once per worker: loading the module from its bytes (decode,
 * validate, compile: what every worker spawn paid before modules were shared) and mapping the
 * shared image instead. Wall-clock microseconds, p50 and p99, calls back to back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wasi.h"
#include "wasmrt.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, int n)
{
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    printf("%-44s p50 %9.1f us   p99 %9.1f us   (n=%d)\n", what, t[n / 2], t[n * 99 / 100], n);
}

/* One call's instance: store, WASI, instantiate, free. Returns microseconds or -1. */
static double instantiate_once(const struct wasm_module *m)
{
    static char *argv[] = {"module", NULL}, *env[] = {NULL};
    struct wasm_limits_cfg lim;
    struct gate_error err = {0};
    struct wasi_ctx w;
    struct wasm_extern imports[256];
    struct wasm_instance *inst = NULL;
    enum wasm_trap trap;
    wasm_limits_default(&lim);
    lim.max_mem_pages = 4096; /* limits.memory_mb default, 256 MiB */
    lim.max_table_elems = 1u << 20;
    double t0 = now_us();
    wasi_ctx_init(&w, argv, env, "", 0, 1 << 20, -1);
    struct wasm_store *s = wasm_store_new(&lim);
    int rc = !s || wasm_module_nimports(m) > 256 || wasi_link(s, m, &w, imports, &err) < 0 ||
             wasm_instantiate(s, m, imports, wasm_module_nimports(m), &inst, &trap, &err) < 0;
    wasm_store_free(s);
    wasi_ctx_free(&w);
    double t = now_us() - t0;
    if (rc) fprintf(stderr, "instantiate: %s\n", err.msg);
    return rc ? -1 : t;
}

static int per_call(const char *what, const struct wasm_module *m, int n)
{
    double *t = calloc((size_t)n, sizeof(double));
    for (int i = 0; i < n && t; i++)
        if ((t[i] = instantiate_once(m)) < 0) return -1;
    if (t) report(what, t, n);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODULE.wasm [calls]\n", argv[0]);
        return 2;
    }
    int calls = argc > 2 ? atoi(argv[2]) : 2000, loads = 20;
    char *bytes = NULL;
    size_t len = 0;
    struct gate_error err = {0};
    struct wasm_module *loaded = NULL, *mapped = NULL;
    if (calls < 10 || gate_read_file(argv[1], 256u << 20, &bytes, &len, &err) < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    printf("%s: %zu bytes\n", argv[1], len);
    double t_load[20], t_map[20];
    int fd = -1;
    for (int i = 0; i < loads; i++) {
        double t0 = now_us();
        if (wasm_module_load((const uint8_t *)bytes, len, &loaded, &err) < 0) {
            fprintf(stderr, "load: %s\n", err.msg);
            return 1;
        }
        t_load[i] = now_us() - t0;
        if (i < loads - 1) wasm_module_free(loaded);
    }
    if ((fd = wasm_module_share(loaded, &err)) < 0) {
        fprintf(stderr, "share: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < loads; i++) {
        double t0 = now_us();
        if (wasm_module_map(fd, &mapped, &err) < 0) {
            fprintf(stderr, "map: %s\n", err.msg);
            return 1;
        }
        t_map[i] = now_us() - t0;
        if (i < loads - 1) wasm_module_free(mapped);
    }
    printf("once per worker:\n");
    report("  load from bytes (decode+validate+compile)", t_load, loads);
    report("  map the shared image", t_map, loads);
    printf("per call (store + WASI + instantiate + free):\n");
    if (per_call("  mapped module (memory copy-on-write)", mapped, calls) < 0 ||
        per_call("  loaded module (segments copied)", loaded, calls) < 0)
        return 1;
    wasm_module_free(mapped);
    wasm_module_free(loaded);
    close(fd);
    free(bytes);
    return 0;
}
