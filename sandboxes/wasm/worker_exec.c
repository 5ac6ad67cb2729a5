/* worker_exec.c: gatehouse-wasm-worker, the program a wasm worker execs into.
 *
 * Started by the gateway (pool.c) already running as the tool identity with no_new_privs, an
 * empty environment and only the descriptors wasm_tier.h lists. It reads the tool's settings,
 * maps the compiled module, opens the policy's read-only directories with its own (the
 * tool's) permissions, installs the seccomp filter, then closes the status pipe to say it is
 * ready and serves calls. A step that fails is reported on the status pipe with its errno
 * (sbx_child_fail), so the gateway's log names it. Being a fresh image, the worker holds
 * nothing of the gateway's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbx_internal.h"
#include "wasm_tier.h"

/* Split a block of NUL-terminated strings into a NULL-terminated vector (pointing into it). */
static char **split_strings(char *blob, size_t len)
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

/* Read one block of init->len bytes that, when not empty, must end in NUL. */
static char *read_block(uint64_t len, uint64_t cap)
{
    if (len > cap) {
        errno = E2BIG;
        return NULL;
    }
    char *b = calloc(1, len + 1);
    if (!b) return NULL;
    if (wasm_read_full(WASM_FD_SOCK, b, len) < 0) {
        free(b);
        errno = EPROTO;
        return NULL;
    }
    return b;
}

/* The compiled module is the sealed memfd image the gateway wrote once for the policy
 * (wasm_module_share): mapped, not decoded and compiled again, and its pages are shared by
 * every worker of the policy. Done before the seccomp filter, which allows neither
 * fcntl(F_GET_SEALS) nor a shared file mapping. */
static struct wasm_module *map_module(void)
{
    struct gate_error err = {0};
    struct wasm_module *mod = NULL;
    if (wasm_module_map(WASM_FD_MODULE, &mod, &err) < 0) {
        char step[120];
        snprintf(step, sizeof(step), "map the module: %.100s", err.msg);
        sbx_child_fail(WASM_FD_STATUS, step, err.errnum ? err.errnum : EINVAL);
    }
    close(WASM_FD_MODULE); /* the module keeps its own descriptor for the memory image */
    return mod;
}

int main(void)
{
    struct wasm_init init;
    if (wasm_read_full(WASM_FD_SOCK, &init, sizeof(init)) < 0 || init.magic != WASM_INIT_MAGIC)
        sbx_child_fail(WASM_FD_STATUS, "read the init message", EPROTO);
    char *name = read_block(init.name_len, 4096);
    char *env = name ? read_block(init.env_len, 1u << 20) : NULL;
    char *ro = env ? read_block(init.ro_len, 1u << 20) : NULL;
    if (!ro) sbx_child_fail(WASM_FD_STATUS, "read the init message", errno);
    struct wasm_worker_cfg cfg = {.name = name,
                                  .max_mem_pages = init.max_mem_pages,
                                  .output_cap = init.output_cap,
                                  .env = split_strings(env, init.env_len),
                                  .ro_dirs = split_strings(ro, init.ro_len)};
    size_t nro = 0;
    while (cfg.ro_dirs && cfg.ro_dirs[nro])
        nro++;
    cfg.ro_fds = calloc(nro + 1, sizeof(int));
    if (!cfg.env || !cfg.ro_dirs || !cfg.ro_fds)
        sbx_child_fail(WASM_FD_STATUS, "allocate the settings", ENOMEM);
    cfg.mod = map_module();
    for (size_t i = 0; i < nro; i++) {
        /* Opened as the tool, so it reads only what the tool's own identity may read. */
        cfg.ro_fds[i] = open(cfg.ro_dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cfg.ro_fds[i] < 0) {
            char step[120];
            snprintf(step, sizeof(step), "open read-only directory %.80s", cfg.ro_dirs[i]);
            sbx_child_fail(WASM_FD_STATUS, step, errno);
        }
    }
    if (wasm_worker_filter(wasm_module_image_fd(cfg.mod)) < 0)
        sbx_child_fail(WASM_FD_STATUS, "seccomp filter", errno);
    close(WASM_FD_STATUS); /* ready: the gateway reads EOF */
    wasm_worker_loop(&cfg, WASM_FD_SOCK);
}
