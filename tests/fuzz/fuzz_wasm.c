/* fuzz_wasm.c: libFuzzer target for the WebAssembly decoder, validator and compiler, and,
 * for modules that load and import nothing, instantiation and a bounded run of every exported
 * function with zero arguments (small fuel, memory and stack caps); inputs of odd length run
 * from the module's shared image (wasm_module_share + wasm_module_map). Any input must give a
 * clean error, a result or a trap, never a crash or a leak. Seeds: tests/fuzz/corpus/wasm/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "wasmrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_exports(struct wasm_module *m, const uint8_t *data, size_t size)
{
    struct wasm_limits_cfg lim;
    struct gate_error err = {0};
    wasm_limits_default(&lim);
    lim.fuel = 20000;
    lim.max_mem_pages = 16;
    lim.max_table_elems = 1000;
    lim.max_call_depth = 200;
    lim.max_stack_slots = 1u << 14;
    struct wasm_store *s = wasm_store_new(&lim);
    struct wasm_instance *inst = NULL;
    enum wasm_trap trap;
    if (s && wasm_instantiate(s, m, NULL, 0, &inst, &trap, &err) == 0) {
        /* Export names are not listed by the API: try the names seeds use. */
        static const char *const names[] = {"run", "_start", "main", "f", "a", "b", "c"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            struct wasm_extern e;
            if (wasm_instance_export(inst, names[i], &e) < 0 || e.kind != WASM_EXT_FUNC) continue;
            uint32_t np = 0, nr = 0; /* slots: a v128 takes two */
            uint64_t slots[64] = {0};
            wasm_functype_slots(wasm_func_type(e.u.func), &np, &nr);
            if (np > 64 || nr > 64) continue;
            for (uint32_t k = 0; k < np && k < size; k++)
                slots[k] = data[k];
            wasm_store_set_fuel(s, 20000, 0);
            wasm_call(s, e.u.func, slots);
        }
    }
    wasm_store_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    if (wasm_module_load(data, size, &m, &err) < 0) return 0;
    if (size % 2) { /* every other input runs from the shared image, as workers do */
        struct wasm_module *mapped = NULL;
        int fd = wasm_module_share(m, &err);
        if (fd >= 0 && wasm_module_map(fd, &mapped, &err) == 0) {
            wasm_module_free(m);
            m = mapped;
        }
        if (fd >= 0) close(fd);
    }
    if (wasm_module_nimports(m) == 0) run_exports(m, data, size);
    wasm_module_free(m);
    return 0;
}
