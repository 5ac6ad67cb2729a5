/* worker_exec.c: gatehouse-wasm-worker, the program a wasm worker execs into.
 *
 * Started by the gateway (worker.c) already running as the tool identity with no_new_privs,
 * fd 3 a socket to the gateway, an empty environment and nothing else open. It reads the
 * module and the tool's settings once, decodes and validates the module, installs the
 * seccomp filter and serves calls (wasm_worker_loop). Being a fresh image, it holds nothing
 * of the gateway's memory. Exit status 124: a bad or unloadable init message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wasm_tier.h"

#define INIT_FD 3

/* Split a block of NUL-terminated strings into a NULL-terminated vector (pointing into it). */
static char **split_env(char *blob, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += blob[i] == 0;
    char **v = calloc(n + 1, sizeof(char *));
    for (size_t i = 0, k = 0; v && i < len; k++) {
        v[k] = blob + i;
        i += strlen(blob + i) + 1;
    }
    return v;
}

int main(void)
{
    struct wasm_init init;
    struct gate_error err = {0};
    if (wasm_read_full(INIT_FD, &init, sizeof(init)) < 0 || init.magic != WASM_INIT_MAGIC ||
        init.module_len > (256u << 20) || init.name_len > 4096 || init.env_len > (1u << 20))
        _exit(124);
    uint8_t *bytes = malloc(init.module_len ? init.module_len : 1);
    char *name = calloc(1, init.name_len + 1);
    char *env = calloc(1, init.env_len + 1);
    if (!bytes || !name || !env || wasm_read_full(INIT_FD, bytes, init.module_len) < 0 ||
        wasm_read_full(INIT_FD, name, init.name_len) < 0 ||
        wasm_read_full(INIT_FD, env, init.env_len) < 0)
        _exit(124);
    if (init.env_len && env[init.env_len - 1] != 0) _exit(124);
    struct wasm_state st = {
        .name = name, .max_mem_pages = init.max_mem_pages, .output_cap = init.output_cap};
    st.env = split_env(env, init.env_len);
    if (!st.env || wasm_module_load(bytes, init.module_len, &st.mod, &err) < 0) _exit(124);
    free(bytes);
    wasm_worker_loop(&st, INIT_FD);
}
