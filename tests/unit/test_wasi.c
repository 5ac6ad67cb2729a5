/* test_wasi: WASI conformance, run on the engine directly (no gateway, no worker).
 *
 * tools/wasm-wasi-tests/conformance.c checks every wasi_snapshot_preview1 function and its
 * error cases against the specification's text; here it runs with a fresh workspace preopened
 * at fd 3 (holding a planted symlink to /etc) and a read-only directory at fd 4. Every check
 * must pass and every one of the 46 functions must have been checked. unstable.c does the same
 * for a module importing only wasi_unstable. The modules are built with clang
 * --target=wasm32-wasi into the build tree's policies/tools; without that toolchain the tests
 * are skipped, saying so.
 */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gate.h"
#include "wasi.h"
#include "wasmrt.h"

static const char *const preview1_functions[] = {"args_get",
                                                 "args_sizes_get",
                                                 "environ_get",
                                                 "environ_sizes_get",
                                                 "clock_res_get",
                                                 "clock_time_get",
                                                 "fd_advise",
                                                 "fd_allocate",
                                                 "fd_close",
                                                 "fd_datasync",
                                                 "fd_fdstat_get",
                                                 "fd_fdstat_set_flags",
                                                 "fd_fdstat_set_rights",
                                                 "fd_filestat_get",
                                                 "fd_filestat_set_size",
                                                 "fd_filestat_set_times",
                                                 "fd_pread",
                                                 "fd_prestat_get",
                                                 "fd_prestat_dir_name",
                                                 "fd_pwrite",
                                                 "fd_read",
                                                 "fd_readdir",
                                                 "fd_renumber",
                                                 "fd_seek",
                                                 "fd_sync",
                                                 "fd_tell",
                                                 "fd_write",
                                                 "path_create_directory",
                                                 "path_filestat_get",
                                                 "path_filestat_set_times",
                                                 "path_link",
                                                 "path_open",
                                                 "path_readlink",
                                                 "path_remove_directory",
                                                 "path_rename",
                                                 "path_symlink",
                                                 "path_unlink_file",
                                                 "poll_oneoff",
                                                 "proc_exit",
                                                 "proc_raise",
                                                 "sched_yield",
                                                 "random_get",
                                                 "sock_accept",
                                                 "sock_recv",
                                                 "sock_send",
                                                 "sock_shutdown"};

struct run {
    char ws[64], ro[64];
    enum wasm_trap trap;
    struct wasi_ctx w;
};

/* The build tree's policies/tools/NAME, found from this program's own path. */
static uint8_t *read_tool(const char *name, size_t *len)
{
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return NULL;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(path, sizeof(path), "%s/../policies/tools/%s", self, name);
    char *bytes = NULL;
    struct gate_error err = {0};
    if (gate_read_file(path, 64u << 20, &bytes, len, &err) < 0) return NULL;
    return (uint8_t *)bytes;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Run the module's _start with the given stdin; fills r (output in r->w, trap in r->trap). */
static void run_tool(struct run *r, const char *name, const char *input)
{
    size_t len = 0;
    autofree uint8_t *bytes = read_tool(name, &len);
    if (!bytes) {
        print_message("%s was not built (no clang --target=wasm32-wasi toolchain): skipped\n",
                      name);
        skip();
    }
    snprintf(r->ws, sizeof(r->ws), "/tmp/test-wasi-ws-XXXXXX");
    snprintf(r->ro, sizeof(r->ro), "/tmp/test-wasi-ro-XXXXXX");
    assert_non_null(mkdtemp(r->ws));
    assert_non_null(mkdtemp(r->ro));
    write_file(r->ro, "ro.txt", "read-only\n");
    char link[128];
    snprintf(link, sizeof(link), "%s/escape", r->ws);
    assert_int_equal(symlink("/etc", link), 0);
    int ws = open(r->ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ro = open(r->ro, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(ws >= 0 && ro >= 0);

    static char *argv[] = {"conformance", NULL}, *env[] = {"GATEHOUSE_TOOL=conformance", NULL};
    struct gate_error err = {0};
    struct wasm_module *m = NULL;
    assert_int_equal(wasm_module_load(bytes, len, &m, &err), 0);
    assert_int_equal(wasi_check_imports(m, &err), 0);
    wasi_ctx_init(&r->w, argv, env, input, strlen(input), 1 << 20, ws);
    assert_int_equal(wasi_ctx_add_preopen(&r->w, ro, r->ro, true), 0);
    struct wasm_limits_cfg lim;
    wasm_limits_default(&lim);
    r->w.deadline_ns = gate_monotonic_ns() + 30ull * 1000000000ull;
    struct wasm_store *s = wasm_store_new(&lim);
    struct wasm_extern imports[64], start;
    struct wasm_instance *inst = NULL;
    assert_true(wasm_module_nimports(m) <= 64);
    wasm_store_set_host_ctx(s, &r->w);
    assert_int_equal(wasi_link(s, m, &r->w, imports, &err), 0);
    assert_int_equal(
        wasm_instantiate(s, m, imports, wasm_module_nimports(m), &inst, &r->trap, &err), 0);
    assert_int_equal(wasm_instance_export(inst, "_start", &start), 0);
    uint64_t slots[1] = {0};
    r->trap = wasm_call(s, start.u.func, slots);
    wasm_store_free(s);
    wasm_module_free(m);
    close(ws);
    close(ro);
}

static void run_free(struct run *r)
{
    char cmd[200];
    wasi_ctx_free(&r->w);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", r->ws, r->ro);
    assert_int_equal(system(cmd), 0);
}

static void test_wasi_conformance_every_check_passes(void **state)
{
    (void)state;
    struct run r;
    run_tool(&r, "wasm-wasi-conformance.wasm", "{}");
    const char *out = r.w.out.data ? r.w.out.data : "";
    for (const char *p = strstr(out, "not ok"); p; p = strstr(p + 1, "not ok"))
        print_message("%.*s\n", (int)strcspn(p, "\n"), p);
    assert_int_equal(r.trap, WASM_TRAP_EXIT);
    assert_null(strstr(out, "not ok"));
    assert_non_null(strstr(out, " 0 failed"));
    const char *tally = strstr(out, " passed, ");
    while (tally > out && tally[-1] != '\n')
        tally--;
    print_message("conformance: %s", tally);
    assert_int_equal(r.w.exit_code, 0);
    assert_non_null(strstr(r.w.err.data, "conformance: stderr works"));
    run_free(&r);
}

static void test_wasi_conformance_covers_all_46_functions(void **state)
{
    (void)state;
    struct run r;
    run_tool(&r, "wasm-wasi-conformance.wasm", "{}");
    const char *out = r.w.out.data ? r.w.out.data : "";
    size_t n = sizeof(preview1_functions) / sizeof(preview1_functions[0]);
    assert_int_equal(n, 46);
    for (size_t i = 0; i < n; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "ok %s: ", preview1_functions[i]);
        /* proc_exit is the program's own end, seen as its exit code */
        if (!strcmp(preview1_functions[i], "proc_exit")) continue;
        if (!strstr(out, needle)) fail_msg("no check of %s", preview1_functions[i]);
    }
    assert_int_equal(r.trap, WASM_TRAP_EXIT);
    run_free(&r);
}

static void test_wasi_proc_raise_traps(void **state)
{
    (void)state;
    struct run r;
    run_tool(&r, "wasm-wasi-conformance.wasm", "raise");
    assert_int_equal(r.trap, WASM_TRAP_HOST);
    assert_int_equal(r.w.raised, 6);
    assert_null(strstr(r.w.out.data, "proc_raise returned"));
    run_free(&r);
}

static void test_wasi_sleep_waits_on_poll_oneoff(void **state)
{
    (void)state;
    struct run r;
    run_tool(&r, "wasm-wasi-conformance.wasm", "sleep");
    assert_int_equal(r.trap, WASM_TRAP_NONE);
    assert_non_null(strstr(r.w.out.data, "slept 20 ms"));
    run_free(&r);
}

static void test_wasi_unstable_module_runs_with_its_own_abi(void **state)
{
    (void)state;
    struct run r;
    run_tool(&r, "wasm-wasi-unstable.wasm", "");
    const char *out = r.w.out.data ? r.w.out.data : "";
    if (strstr(out, "not ok")) print_message("%s", out);
    assert_int_equal(r.trap, WASM_TRAP_EXIT);
    assert_int_equal(r.w.exit_code, 0);
    assert_non_null(strstr(out, "wasi_unstable: all passed"));
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wasi_conformance_every_check_passes),
        cmocka_unit_test(test_wasi_conformance_covers_all_46_functions),
        cmocka_unit_test(test_wasi_proc_raise_traps),
        cmocka_unit_test(test_wasi_sleep_waits_on_poll_oneoff),
        cmocka_unit_test(test_wasi_unstable_module_runs_with_its_own_abi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
