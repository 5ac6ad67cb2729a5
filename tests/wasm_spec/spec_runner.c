/* spec_runner.c: run the WebAssembly spec test suite against gatehouse's engine.
 *
 * usage: spec_runner <testsuite dir> <known-failures file> [--shared] [file.wast ...]
 *
 * Each .wast file is converted with wabt's wast2json into a temporary directory, then every
 * command is executed in a child process (so a crash in one file is reported, not fatal).
 * Text-format modules (.wat) are counted as skipped. The known-failures file lists
 * "<file.wast>: <reason>" lines. With --shared, every module is run from the image
 * wasm_module_share writes and wasm_module_map maps, as workers run them. The exit status is 1 if
 * any file not listed fails, 77 if the suite or wast2json is missing, else 0. The last line is "N
 * passed, N failed, N skipped".
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wasmrt.h"

extern char **environ;

struct counts {
    long pass, fail, skip;
};

/* ---- registry of instances (by registered name and by $name) --------------------------- */
struct named {
    char *name;
    struct wasm_instance *inst;
    bool spectest;
};

struct run {
    const char *dir;  /* temp dir with the JSON and modules */
    const char *wast; /* file name for messages */
    struct wasm_store *store;
    struct named reg[256]; /* registered (register "as") */
    size_t nreg;
    struct named mods[512]; /* $names of modules */
    size_t nmods;
    struct wasm_instance *cur;
    struct wasm_extern spectest[16];
    const char *spectest_names[16];
    size_t nspectest;
    struct counts c;
    bool verbose;
};

static enum wasm_trap host_print(struct wasm_store *s, struct wasm_memory *m, void *ctx,
                                 uint64_t *a)
{
    (void)s, (void)m, (void)ctx, (void)a;
    return WASM_TRAP_NONE;
}

static void add_spectest(struct run *r, const char *name, struct wasm_extern e)
{
    r->spectest_names[r->nspectest] = name;
    r->spectest[r->nspectest++] = e;
}

static void make_spectest(struct run *r)
{
    static const uint8_t i32[] = {WASM_I32}, i64[] = {WASM_I64}, f32[] = {WASM_F32},
                         f64[] = {WASM_F64}, i32f32[] = {WASM_I32, WASM_F32},
                         f64f64[] = {WASM_F64, WASM_F64};
    struct {
        const char *name;
        const uint8_t *p;
        uint32_t n;
    } fns[] = {{"print", NULL, 0},          {"print_i32", i32, 1}, {"print_i64", i64, 1},
               {"print_f32", f32, 1},       {"print_f64", f64, 1}, {"print_i32_f32", i32f32, 2},
               {"print_f64_f64", f64f64, 2}};
    struct wasm_extern e;
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        e.kind = WASM_EXT_FUNC;
        e.u.func = wasm_host_func_new(r->store, fns[i].p, fns[i].n, NULL, 0, host_print, NULL);
        add_spectest(r, fns[i].name, e);
    }
    float f = 666.6f;
    double d = 666.6;
    uint32_t fb;
    uint64_t db;
    memcpy(&fb, &f, 4);
    memcpy(&db, &d, 8);
    e.kind = WASM_EXT_GLOBAL;
    e.u.global = wasm_global_new(r->store, WASM_I32, false, 666);
    add_spectest(r, "global_i32", e);
    e.u.global = wasm_global_new(r->store, WASM_I64, false, 666);
    add_spectest(r, "global_i64", e);
    e.u.global = wasm_global_new(r->store, WASM_F32, false, fb);
    add_spectest(r, "global_f32", e);
    e.u.global = wasm_global_new(r->store, WASM_F64, false, db);
    add_spectest(r, "global_f64", e);
    e.kind = WASM_EXT_TABLE;
    e.u.table = wasm_table_new(r->store, WASM_FUNCREF, 10, 20, true);
    add_spectest(r, "table", e);
    e.kind = WASM_EXT_MEMORY;
    e.u.memory = wasm_memory_new(r->store, 1, 2, true);
    add_spectest(r, "memory", e);
}

static int resolve(struct run *r, const char *module, const char *name, struct wasm_extern *out)
{
    if (!strcmp(module, "spectest")) {
        for (size_t i = 0; i < r->nspectest; i++)
            if (!strcmp(r->spectest_names[i], name)) {
                *out = r->spectest[i];
                return 0;
            }
        return -1;
    }
    for (size_t i = r->nreg; i-- > 0;)
        if (!strcmp(r->reg[i].name, module)) return wasm_instance_export(r->reg[i].inst, name, out);
    return -1;
}

/* ---- modules ------------------------------------------------------------------------ */
/* --shared: every module goes through wasm_module_share and wasm_module_map first. */
static bool via_share;

static int load_module(struct run *r, const char *filename, struct wasm_module **m,
                       struct gate_error *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", r->dir, filename);
    char *data = NULL;
    size_t len = 0;
    if (gate_read_file(path, 64u << 20, &data, &len, err) < 0) return -1;
    int rc = wasm_module_load((const uint8_t *)data, len, m, err);
    free(data);
    if (rc == 0 && via_share) { /* run what a worker maps, not what was compiled */
        int fd = wasm_module_share(*m, err);
        wasm_module_free(*m);
        *m = NULL;
        rc = fd < 0 ? -1 : wasm_module_map(fd, m, err);
        if (fd >= 0) close(fd);
    }
    return rc;
}

/* Returns 0 instantiated, -1 link error, -2 trap. */
static int instantiate(struct run *r, struct wasm_module *m, struct wasm_instance **out,
                       struct gate_error *err)
{
    uint32_t n = wasm_module_nimports(m);
    struct wasm_extern *imports = calloc(n ? n : 1, sizeof(*imports));
    for (uint32_t i = 0; i < n; i++) {
        struct wasm_import_desc d;
        wasm_module_import(m, i, &d);
        if (resolve(r, d.module, d.name, &imports[i]) < 0) {
            gate_err(err, GATE_E_WASM_LINK, "unknown import %s.%s", d.module, d.name);
            free(imports);
            return -1;
        }
    }
    enum wasm_trap trap;
    int rc = wasm_instantiate(r->store, m, imports, n, out, &trap, err);
    free(imports);
    return rc < 0 ? (trap ? -2 : -1) : 0;
}

/* Modules must outlive the store's instances: keep them all until the file ends. */
static struct wasm_module *kept[4096];
static size_t nkept;

static void keep(struct wasm_module *m)
{
    if (nkept < sizeof(kept) / sizeof(kept[0]))
        kept[nkept++] = m;
    else
        wasm_module_free(m); /* cannot happen with the suite's sizes; leaks nothing */
}

/* ---- values --------------------------------------------------------------------------- */
/* A value takes one slot, a v128 two (low half first). Lanes of a v128 are given as decimal
 * strings of lane_type ("i8".."i64", "f32", "f64"). */
static unsigned lane_bits(const char *lane_type)
{
    return (unsigned)strtoul(lane_type + 1, NULL, 10);
}

static size_t parse_value(json_t *v, uint64_t *slots)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    json_t *jv = json_object_get(v, "value");
    if (type && !strcmp(type, "v128")) {
        unsigned bits = lane_bits(json_string_value(json_object_get(v, "lane_type")));
        uint8_t bytes[16] = {0};
        for (size_t i = 0; i < json_array_size(jv) && (i + 1) * bits <= 128; i++) {
            uint64_t x = strtoull(json_string_value(json_array_get(jv, i)), NULL, 10);
            memcpy(bytes + i * bits / 8, &x, bits / 8);
        }
        memcpy(slots, bytes, 16);
        return 2;
    }
    const char *val = json_string_value(jv);
    slots[0] = 0;
    if (!val || !strcmp(val, "null")) return 1;
    uint64_t x = strtoull(val, NULL, 10);
    if (type && (!strcmp(type, "externref") || !strcmp(type, "funcref"))) x++;
    slots[0] = x;
    return 1;
}

static bool float_matches(const char *val, uint64_t got, unsigned bits)
{
    uint64_t quiet = bits == 32 ? 0x7fc00000u : 0x7ff8000000000000ull;
    uint64_t abs = bits == 32 ? got & 0x7fffffffu : got & 0x7fffffffffffffffull;
    if (!strcmp(val, "nan:canonical")) return abs == quiet;
    if (!strcmp(val, "nan:arithmetic")) return (got & quiet) == quiet;
    return got == strtoull(val, NULL, 10);
}

/* Whether the value at slots matches want; *used is set to the slots it takes. */
static bool value_matches(json_t *want, const uint64_t *slots, size_t *used)
{
    const char *type = json_string_value(json_object_get(want, "type"));
    json_t *jv = json_object_get(want, "value");
    const char *val = json_string_value(jv);
    uint64_t got = slots[0];
    *used = 1;
    if (type && !strcmp(type, "v128")) {
        const char *lt = json_string_value(json_object_get(want, "lane_type"));
        unsigned bits = lt ? lane_bits(lt) : 0;
        uint8_t bytes[16];
        *used = 2;
        if (!bits || json_array_size(jv) * bits != 128) return false;
        memcpy(bytes, slots, 16);
        for (size_t i = 0; i < json_array_size(jv); i++) {
            uint64_t lane = 0;
            const char *lv = json_string_value(json_array_get(jv, i));
            memcpy(&lane, bytes + i * bits / 8, bits / 8);
            bool ok =
                lt[0] == 'f'
                    ? float_matches(lv, lane, bits)
                    : lane == (strtoull(lv, NULL, 10) & (bits == 64 ? ~0ull : (1ull << bits) - 1));
            if (!ok) return false;
        }
        return true;
    }
    if (!type || !val) return false;
    if (!strcmp(type, "i32")) return (uint32_t)got == (uint32_t)strtoull(val, NULL, 10);
    if (!strcmp(type, "f32")) return float_matches(val, (uint32_t)got, 32);
    if (!strcmp(type, "f64")) return float_matches(val, got, 64);
    if (!strcmp(type, "externref") || !strcmp(type, "funcref")) {
        if (!strcmp(val, "null")) return got == 0;
        if (!strcmp(type, "funcref")) return got != 0;
        return got == strtoull(val, NULL, 10) + 1;
    }
    return got == strtoull(val, NULL, 10);
}

static struct wasm_instance *target(struct run *r, json_t *action)
{
    const char *mod = json_string_value(json_object_get(action, "module"));
    if (!mod) return r->cur;
    for (size_t i = r->nmods; i-- > 0;)
        if (!strcmp(r->mods[i].name, mod)) return r->mods[i].inst;
    return NULL;
}

/* Run an action; results into out[]. Returns 0, a trap (>0), or -1 if it cannot run. */
static int do_action(struct run *r, json_t *action, uint64_t *out, size_t *nout)
{
    struct wasm_instance *inst = target(r, action);
    const char *field = json_string_value(json_object_get(action, "field"));
    const char *type = json_string_value(json_object_get(action, "type"));
    struct wasm_extern e;
    if (!inst || !field || !type || wasm_instance_export(inst, field, &e) < 0) return -1;
    if (!strcmp(type, "get")) {
        if (e.kind != WASM_EXT_GLOBAL) return -1;
        wasm_global_get_v128(e.u.global, out);
        *nout = 1;
        return 0;
    }
    if (e.kind != WASM_EXT_FUNC) return -1;
    json_t *args = json_object_get(action, "args");
    uint64_t slots[512] = {0};
    const struct wasm_functype *ft = wasm_func_type(e.u.func);
    uint32_t np = 0, nr = 0;
    wasm_functype_slots(ft, &np, &nr);
    if (json_array_size(args) != ft->nparams || nr > 256 || np > 256) return -1;
    for (size_t i = 0, k = 0; i < json_array_size(args); i++)
        k += parse_value(json_array_get(args, i), slots + k);
    wasm_store_set_fuel(r->store, 0, gate_monotonic_ns() + 60ull * 1000000000ull);
    enum wasm_trap t = wasm_call(r->store, e.u.func, slots);
    if (t) return (int)t;
    memcpy(out, slots, nr * sizeof(uint64_t));
    *nout = ft->nresults;
    return 0;
}

/* ---- commands -------------------------------------------------------------------------- */
static void result(struct run *r, bool ok, json_t *cmd, const char *why)
{
    if (ok) {
        r->c.pass++;
        return;
    }
    r->c.fail++;
    if (r->verbose || r->c.fail <= 20)
        fprintf(stderr, "  FAIL %s:%lld %s: %s\n", r->wast,
                (long long)json_integer_value(json_object_get(cmd, "line")),
                json_string_value(json_object_get(cmd, "type")), why);
}

static bool is_text(json_t *cmd)
{
    const char *mt = json_string_value(json_object_get(cmd, "module_type"));
    return mt && !strcmp(mt, "text");
}

static void cmd_module(struct run *r, json_t *cmd)
{
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    const char *name = json_string_value(json_object_get(cmd, "name"));
    r->cur = NULL;
    if (load_module(r, json_string_value(json_object_get(cmd, "filename")), &m, &err) < 0) {
        result(r, false, cmd, err.msg);
        return;
    }
    keep(m);
    struct wasm_instance *inst = NULL;
    if (instantiate(r, m, &inst, &err) < 0) {
        result(r, false, cmd, err.msg);
        return;
    }
    r->cur = inst;
    if (name && r->nmods < sizeof(r->mods) / sizeof(r->mods[0]))
        r->mods[r->nmods++] = (struct named){(char *)name, inst, false};
    result(r, true, cmd, "");
}

static void cmd_register(struct run *r, json_t *cmd)
{
    const char *as = json_string_value(json_object_get(cmd, "as"));
    const char *name = json_string_value(json_object_get(cmd, "name"));
    struct wasm_instance *inst = r->cur;
    if (name) {
        json_t *a = json_pack("{s:s}", "module", name);
        inst = target(r, a);
        json_decref(a);
    }
    if (!inst || !as || r->nreg >= sizeof(r->reg) / sizeof(r->reg[0])) {
        result(r, false, cmd, "register: no such module");
        return;
    }
    r->reg[r->nreg++] = (struct named){(char *)as, inst, false};
}

static void cmd_assert_return(struct run *r, json_t *cmd)
{
    uint64_t out[512];
    size_t n = 0;
    json_t *exp = json_object_get(cmd, "expected");
    int rc = do_action(r, json_object_get(cmd, "action"), out, &n);
    if (rc != 0) {
        result(r, false, cmd, rc < 0 ? "cannot run action" : wasm_trap_name((enum wasm_trap)rc));
        return;
    }
    if (n != json_array_size(exp)) {
        result(r, false, cmd, "result count differs");
        return;
    }
    for (size_t i = 0, k = 0, used = 1; i < n; i++, k += used)
        if (!value_matches(json_array_get(exp, i), out + k, &used)) {
            char why[128];
            snprintf(why, sizeof(why), "result %zu: got 0x%llx 0x%llx", i,
                     (unsigned long long)out[k], (unsigned long long)out[k + 1]);
            result(r, false, cmd, why);
            return;
        }
    result(r, true, cmd, "");
}

static void cmd_assert_trap(struct run *r, json_t *cmd, bool exhaustion)
{
    uint64_t out[512];
    size_t n = 0;
    int rc = do_action(r, json_object_get(cmd, "action"), out, &n);
    bool ok = rc > 0 && (!exhaustion || rc == WASM_TRAP_STACK_EXHAUSTED);
    result(r, ok, cmd, rc < 0 ? "cannot run action" : rc == 0 ? "no trap" : "wrong trap");
}

static void cmd_assert_module(struct run *r, json_t *cmd, const char *type)
{
    struct wasm_module *m = NULL;
    struct gate_error err = {0};
    if (is_text(cmd)) {
        r->c.skip++;
        return;
    }
    int rc = load_module(r, json_string_value(json_object_get(cmd, "filename")), &m, &err);
    if (!strcmp(type, "assert_invalid") || !strcmp(type, "assert_malformed")) {
        if (rc == 0) wasm_module_free(m);
        result(r, rc < 0, cmd, "module loaded but should not");
        return;
    }
    if (rc < 0) {
        result(r, false, cmd, err.msg);
        return;
    }
    keep(m);
    struct wasm_instance *inst = NULL;
    int ir = instantiate(r, m, &inst, &err);
    if (!strcmp(type, "assert_unlinkable"))
        result(r, ir == -1, cmd, ir == 0 ? "linked but should not" : "trapped instead");
    else
        result(r, ir == -2, cmd, ir == 0 ? "instantiated but should trap" : err.msg);
}

static void run_command(struct run *r, json_t *cmd)
{
    const char *type = json_string_value(json_object_get(cmd, "type"));
    if (!type) return;
    if (!strcmp(type, "module")) {
        if (is_text(cmd))
            r->c.skip++;
        else
            cmd_module(r, cmd);
    } else if (!strcmp(type, "register")) {
        cmd_register(r, cmd);
    } else if (!strcmp(type, "action")) {
        uint64_t out[512];
        size_t n;
        int rc = do_action(r, json_object_get(cmd, "action"), out, &n);
        result(r, rc == 0, cmd, "action failed");
    } else if (!strcmp(type, "assert_return")) {
        cmd_assert_return(r, cmd);
    } else if (!strcmp(type, "assert_trap")) {
        if (json_object_get(cmd, "action"))
            cmd_assert_trap(r, cmd, false);
        else
            cmd_assert_module(r, cmd, "assert_uninstantiable");
    } else if (!strcmp(type, "assert_exhaustion")) {
        cmd_assert_trap(r, cmd, true);
    } else if (!strncmp(type, "assert_", 7)) {
        cmd_assert_module(r, cmd, type);
    } else {
        r->c.skip++;
    }
}

/* ---- one file ------------------------------------------------------------------------ */
static int wast2json(const char *wast, const char *json_path)
{
    char *argv[] = {"wast2json", (char *)wast, "-o", (char *)json_path, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "wast2json", NULL, NULL, argv, environ) != 0) return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    return 0;
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void run_file_child(const char *suite, const char *name, int out_fd)
{
    char tmpl[] = "/tmp/gate-spec-XXXXXX";
    struct run r = {.wast = name, .verbose = getenv("SPEC_VERBOSE") != NULL};
    char wast[4096], json[4200];
    struct wasm_limits_cfg lim;
    if (!mkdtemp(tmpl)) _exit(2);
    r.dir = tmpl;
    snprintf(wast, sizeof(wast), "%s/%s", suite, name);
    snprintf(json, sizeof(json), "%s/t.json", tmpl);
    if (wast2json(wast, json) < 0) {
        fprintf(stderr, "  %s: wast2json failed\n", name);
        rm_rf(tmpl);
        _exit(3);
    }
    json_error_t jerr;
    json_t *root = json_load_file(json, 0, &jerr);
    wasm_limits_default(&lim);
    lim.max_call_depth = 20000;
    r.store = wasm_store_new(&lim);
    make_spectest(&r);
    json_t *cmds = json_object_get(root, "commands");
    for (size_t i = 0; i < json_array_size(cmds); i++)
        run_command(&r, json_array_get(cmds, i));
    gate_write_all(out_fd, &r.c, sizeof(r.c));
    wasm_store_free(r.store);
    for (size_t i = 0; i < nkept; i++)
        wasm_module_free(kept[i]);
    json_decref(root);
    rm_rf(tmpl);
    _exit(0);
}

/* Run one file in a child; a crash counts as one failure. */
static struct counts run_file(const char *suite, const char *name)
{
    struct counts c = {0, 1, 0};
    int p[2];
    if (pipe(p) < 0) return c;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        run_file_child(suite, name, p[1]);
    }
    close(p[1]);
    ssize_t n = pid > 0 ? read(p[0], &c, sizeof(c)) : -1;
    close(p[0]);
    int st = 0;
    if (pid > 0) waitpid(pid, &st, 0);
    if (n != (ssize_t)sizeof(c)) {
        fprintf(stderr, "  %s: runner died (status 0x%x)\n", name, st);
        c = (struct counts){0, 1, 0};
    }
    return c;
}

static bool known_failure(const char *list, const char *name)
{
    FILE *f = fopen(list, "r");
    char line[1024];
    bool found = false;
    size_t n = strlen(name);
    while (f && !found && fgets(line, sizeof(line), f))
        found = !strncmp(line, name, n) && line[n] == ':';
    if (f) fclose(f);
    return found;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_wast(const char *suite, char **names, size_t cap)
{
    DIR *d = opendir(suite);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d)) && n < cap) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".wast")) names[n++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <testsuite dir> <known-failures> [file.wast ...]\n", argv[0]);
        return 2;
    }
    struct stat st;
    if (stat(argv[1], &st) < 0 || !S_ISDIR(st.st_mode)) {
        printf("skipped: spec test suite not found at %s\n", argv[1]);
        return 77;
    }
    if (system("wast2json --version >/dev/null 2>&1") != 0) {
        printf("skipped: wast2json (Debian package wabt) is not installed\n");
        return 77;
    }
    int first = 3;
    if (argc > 3 && !strcmp(argv[3], "--shared")) via_share = true, first = 4;
    char *names[512];
    size_t n = 0;
    if (argc > first)
        for (int i = first; i < argc && n < 512; i++)
            names[n++] = strdup(argv[i]);
    else
        n = list_wast(argv[1], names, 512);
    struct counts total = {0};
    int unexpected = 0;
    for (size_t i = 0; i < n; i++) {
        struct counts c = run_file(argv[1], names[i]);
        bool known = known_failure(argv[2], names[i]);
        printf("%s: %ld passed, %ld failed, %ld skipped%s\n", names[i], c.pass, c.fail, c.skip,
               c.fail ? (known ? " (known failure)" : " (UNEXPECTED)") : "");
        if (c.fail && !known) unexpected++;
        total.pass += c.pass, total.fail += c.fail, total.skip += c.skip;
        free(names[i]);
    }
    if (unexpected)
        printf("%d file(s) failed that are not on the known-failures list\n", unexpected);
    printf("%ld passed, %ld failed, %ld skipped\n", total.pass, total.fail, total.skip);
    return unexpected ? 1 : 0;
}
