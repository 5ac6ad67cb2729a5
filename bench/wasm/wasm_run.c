/* wasm_run: run one WebAssembly module on gatehouse's engine, as a command, so benchmarks can
 * time it exactly like the reference commands (CPU time of the whole process, loading and
 * compiling included).
 *
 * usage: wasm_run MODULE.wasm --invoke NAME     call an exported () -> i32 function, print it
 *        wasm_run MODULE.wasm [ARG ...]         a WASI command: _start with argv MODULE ARG...
 *
 * A WASI command gets no environment, no preopened directory and an empty stdin; its stdout
 * and stderr are passed through, and its exit status is wasm_run's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wasi.h"
#include "wasmrt.h"

static int load(const char *path, struct wasm_module **m)
{
    char *bytes = NULL;
    size_t len = 0;
    struct gate_error err = {0};
    if (gate_read_file(path, 256u << 20, &bytes, &len, &err) < 0 ||
        wasm_module_load((const uint8_t *)bytes, len, m, &err) < 0) {
        fprintf(stderr, "wasm_run: %s: %s\n", path, err.msg);
        free(bytes);
        return -1;
    }
    free(bytes);
    return 0;
}

static int invoke(struct wasm_store *s, struct wasm_module *m, const char *name)
{
    struct gate_error err = {0};
    struct wasm_instance *inst = NULL;
    struct wasm_extern fn;
    enum wasm_trap trap = WASM_TRAP_NONE;
    if (wasm_instantiate(s, m, NULL, 0, &inst, &trap, &err) < 0 ||
        wasm_instance_export(inst, name, &fn) < 0 || fn.kind != WASM_EXT_FUNC) {
        fprintf(stderr, "wasm_run: %s: %s\n", name, err.msg[0] ? err.msg : "no such function");
        return 1;
    }
    uint64_t slots[4] = {0};
    trap = wasm_call(s, fn.u.func, slots);
    if (trap) {
        fprintf(stderr, "wasm_run: trap: %s\n", wasm_trap_name(trap));
        return 1;
    }
    printf("%u\n", (uint32_t)slots[0]);
    return 0;
}

static int command(struct wasm_store *s, struct wasm_module *m, char **argv)
{
    static char *const env[] = {NULL};
    struct gate_error err = {0};
    struct wasi_ctx w;
    struct wasm_instance *inst = NULL;
    struct wasm_extern start;
    enum wasm_trap trap = WASM_TRAP_NONE;
    uint32_t n = wasm_module_nimports(m);
    struct wasm_extern *imports = calloc(n ? n : 1, sizeof(*imports));
    int rc = 1;
    wasi_ctx_init(&w, argv, env, "", 0, UINT64_MAX, -1);
    wasm_store_set_host_ctx(s, &w);
    if (!imports || wasi_link(s, m, &w, imports, &err) < 0 ||
        wasm_instantiate(s, m, imports, n, &inst, &trap, &err) < 0 ||
        wasm_instance_export(inst, "_start", &start) < 0) {
        fprintf(stderr, "wasm_run: %s\n", err.msg[0] ? err.msg : "no _start");
        goto out;
    }
    uint64_t slots[1] = {0};
    trap = wasm_call(s, start.u.func, slots);
    rc = trap == WASM_TRAP_NONE ? 0 : trap == WASM_TRAP_EXIT ? w.exit_code : 1;
    if (trap && trap != WASM_TRAP_EXIT)
        fprintf(stderr, "wasm_run: trap: %s\n", wasm_trap_name(trap));
out:
    gate_write_all(1, w.out.data, w.out.len);
    gate_write_all(2, w.err.data, w.err.len);
    wasi_ctx_free(&w);
    free(imports);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODULE.wasm [--invoke NAME | ARG ...]\n", argv[0]);
        return 2;
    }
    struct wasm_module *m = NULL;
    if (load(argv[1], &m) < 0) return 1;
    struct wasm_limits_cfg lim;
    wasm_limits_default(&lim);
    struct wasm_store *s = wasm_store_new(&lim);
    if (!s) return 1;
    int rc =
        argc == 4 && !strcmp(argv[2], "--invoke") ? invoke(s, m, argv[3]) : command(s, m, argv + 1);
    fflush(stdout);
    wasm_store_free(s);
    wasm_module_free(m);
    return rc;
}
