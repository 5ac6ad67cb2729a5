/* fuzz_wasm.c: libFuzzer target for the WebAssembly decoder, validator and compiler, and,
 * for modules that load and import nothing, instantiation and a bounded run of every exported
 * function with zero arguments (small fuel, memory and stack caps). Any input must give a
 * clean error, a result or a trap, never a crash or a leak. Seeds: tests/fuzz/corpus/wasm/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
            const struct wasm_functype *t = wasm_func_type(e.u.func);
            uint64_t slots[64] = {0};
            if (t->nparams > 64 || t->nresults > 64) continue;
            for (uint32_t k = 0; k < t->nparams && k < size; k++)
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
    if (wasm_module_nimports(m) == 0) run_exports(m, data, size);
    wasm_module_free(m);
    return 0;
}
