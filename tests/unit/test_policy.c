/* test_policy.c: the policy module: safe YAML, every policy key (and no key outside the key
 * table), the argument schema and policy sets. Fixtures are written into a fresh temporary
 * directory by each test so the expected line:column of every error sits next to the YAML that
 * causes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "policy.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

struct tmp {
    char dir[64];
};

static int tmp_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    snprintf(t->dir, sizeof(t->dir), "/tmp/gate-policy-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    *state = t;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    nftw(t->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

/* Write dir/name with content and return the path (static buffer, one at a time). */
static const char *write_file(const struct tmp *t, const char *name, const char *content, int mode)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", t->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    chmod(path, (mode_t)mode);
    return path;
}

/* Some diag starts with prefix ("FILE:LINE:COL: ") and contains msg. */
static bool diags_have(const struct policy_diags *d, const char *prefix, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (strncmp(d->msgs[i], prefix, strlen(prefix)) == 0 && strstr(d->msgs[i], msg))
            return true;
    return false;
}

static void print_diags(const struct policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        print_message("diag: %s\n", d->msgs[i]);
}

/* The minimal valid head of a policy: 4 lines, so test YAML appended starts at line 5. */
#define HEAD "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"

/* ---- a valid policy, every key read back -------------------------------------------------- */

static const char full_policy[] = "name: full_tool-1\n"
                                  "description: \"Every key\"\n"
                                  "command: [./tool.sh, --flag, \"$HOME\"]\n"
                                  "isolation: gvisor\n"
                                  "blast_radius: high\n"
                                  "reversible: false\n"
                                  "approval:\n"
                                  "  required: true\n"
                                  "  timeout: 2m\n"
                                  "  webhook: https://approver.example:9000/hook\n"
                                  "limits:\n"
                                  "  wall_timeout: 250ms\n"
                                  "  cpu_time: 3s\n"
                                  "  memory_mb: 128\n"
                                  "  pids: 16\n"
                                  "  output_bytes: 4096\n"
                                  "  file_size_mb: 8\n"
                                  "  disk_mb: 32\n"
                                  "  cpu: 0.5\n"
                                  "  fuel: 1000000\n"
                                  "  module_mb: 8\n"
                                  "env:\n"
                                  "  LANG: C.UTF-8\n"
                                  "  DEBUG: \"1\"\n"
                                  "filesystem:\n"
                                  "  read_only: [/usr, /etc]\n"
                                  "  workspace: {size_mb: 16}\n"
                                  "  exec_workspace: true\n"
                                  "network: sandbox\n"
                                  "seccomp:\n"
                                  "  allow: [read, write]\n"
                                  "  deny: [ptrace]\n"
                                  "gvisor: {platform: systrap}\n"
                                  "pool: {size: 4}\n"
                                  "arguments:\n"
                                  "  type: object\n"
                                  "  description: ignored\n"
                                  "  properties:\n"
                                  "    text: {type: string, maxLength: 64, title: Text}\n"
                                  "    count: {type: integer, minimum: 1}\n"
                                  "    ratio: {type: number, maximum: 0.75}\n"
                                  "    ok: {type: boolean}\n"
                                  "    nothing: {type: 'null'}\n"
                                  "  required: [text]\n";

static void test_policy_full_valid_reads_every_key(void **state)
{
    struct tmp *t = *state;
    write_file(t, "tool.sh", "#!/bin/sh\nexit 0\n", 0755);
    const char *path = write_file(t, "full.yaml", full_policy, 0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int rc = policy_load_file(path, &p, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(p->name, "full_tool-1");
    assert_string_equal(p->description, "Every key");
    char want[600];
    char *dir = realpath(t->dir, NULL);
    snprintf(want, sizeof(want), "%s/tool.sh", dir);
    free(dir);
    assert_string_equal(p->command[0], want);
    assert_string_equal(p->command[1], "--flag");
    assert_string_equal(p->command[2], "$HOME"); /* never interpolated */
    assert_null(p->command[3]);
    assert_int_equal(p->isolation, ISOLATION_GVISOR);
    assert_int_equal(p->isolation_loc.line, 4);
    assert_int_equal(p->isolation_loc.col, 12);
    assert_int_equal(p->name_loc.line, 1);
    assert_int_equal(p->blast_radius, BLAST_HIGH);
    assert_false(p->reversible);
    assert_true(p->approval.required);
    assert_int_equal(p->approval.timeout_ms, 120000);
    assert_string_equal(p->approval.webhook, "https://approver.example:9000/hook");
    assert_int_equal(p->limits.wall_timeout_ms, 250);
    assert_int_equal(p->limits.cpu_time_ms, 3000);
    assert_int_equal(p->limits.memory_mb, 128);
    assert_int_equal(p->limits.pids, 16);
    assert_int_equal(p->limits.output_bytes, 4096);
    assert_int_equal(p->limits.file_size_mb, 8);
    assert_int_equal(p->limits.disk_mb, 32);
    assert_int_equal(p->limits.cpu_millis, 500);
    assert_int_equal(p->limits.fuel, 1000000);
    assert_int_equal(p->limits.module_mb, 8);
    assert_string_equal(p->env[0], "LANG=C.UTF-8");
    assert_string_equal(p->env[1], "DEBUG=1");
    assert_null(p->env[2]);
    assert_string_equal(p->filesystem.read_only[0], "/usr");
    assert_string_equal(p->filesystem.read_only[1], "/etc");
    assert_null(p->filesystem.read_only[2]);
    assert_true(p->filesystem.workspace);
    assert_int_equal(p->filesystem.workspace_mb, 16);
    assert_true(p->filesystem.exec_workspace);
    assert_int_equal(p->network, NETWORK_SANDBOX);
    assert_string_equal(p->seccomp_allow[0], "read");
    assert_string_equal(p->seccomp_allow[1], "write");
    assert_null(p->seccomp_allow[2]);
    assert_string_equal(p->seccomp_deny[0], "ptrace");
    /* Kept so that the sandbox's prepare step can name the entry it refuses. */
    assert_int_equal(p->seccomp_allow_locs[1].line, 31);
    assert_int_equal(p->seccomp_allow_locs[1].col, 17);
    assert_int_equal(p->seccomp_deny_locs[0].line, 32);
    assert_int_equal(p->seccomp_deny_locs[0].col, 10);
    assert_string_equal(p->gvisor_platform, "systrap");
    assert_int_equal(p->pool_size, 4);
    assert_null(p->module);
    assert_int_equal(strlen(p->sha256), 64);
    char hex[65];
    gate_sha256_hex(full_policy, strlen(full_policy), hex);
    assert_string_equal(p->sha256, hex);
    /* The published schema is the YAML converted to JSON with typed scalars. */
    json_t *props = json_object_get(p->arguments, "properties");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "text"), "maxLength")), 64);
    assert_true(json_is_real(json_object_get(json_object_get(props, "ratio"), "maximum")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(props, "nothing"), "type")), "null");
    assert_string_equal(policy_isolation_name(p->isolation), "gvisor");
    assert_string_equal(policy_blast_name(p->blast_radius), "high");
    policy_free(p);
    policy_diags_free(&d);
}

static int freed_state;
static void count_free(void *s)
{
    freed_state += *(int *)s;
}

static void test_policy_defaults_and_sbx_state_free(void **state)
{
    struct tmp *t = *state;
    const char *path = write_file(t, "min.yaml", HEAD, 0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_load_file(path, &p, &d), 0);
    assert_string_equal(p->command[0], "/bin/true");
    assert_int_equal(p->blast_radius, BLAST_MEDIUM);
    assert_true(p->reversible);
    assert_false(p->approval.required);
    assert_int_equal(p->approval.timeout_ms, 3600000);
    assert_null(p->approval.webhook);
    assert_int_equal(p->limits.wall_timeout_ms, 10000);
    assert_int_equal(p->limits.cpu_time_ms, 10000);
    assert_int_equal(p->limits.memory_mb, 256);
    assert_int_equal(p->limits.pids, 64);
    assert_int_equal(p->limits.output_bytes, 1048576);
    assert_int_equal(p->limits.file_size_mb, 64);
    assert_int_equal(p->limits.disk_mb, 64);
    assert_int_equal(p->limits.cpu_millis, 1000);
    assert_int_equal(p->limits.fuel, 0);
    assert_int_equal(p->limits.module_mb, 16);
    assert_non_null(p->env);
    assert_null(p->env[0]);
    assert_null(p->filesystem.read_only);
    assert_false(p->filesystem.workspace);
    assert_int_equal(p->filesystem.workspace_mb, 64);
    assert_false(p->filesystem.exec_workspace);
    assert_int_equal(p->network, NETWORK_NONE);
    assert_string_equal(p->gvisor_platform, "ptrace");
    assert_int_equal(p->pool_size, 2);
    char *js = json_dumps(p->arguments, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(js,
                        "{\"additionalProperties\":false,\"properties\":{},\"type\":\"object\"}");
    free(js);
    /* The default schema is strict: no arguments at all. */
    struct gate_error err = {0};
    json_t *empty = json_object();
    assert_int_equal(policy_check_args(p, empty, &err), 0);
    json_object_set_new(empty, "x", json_true());
    assert_int_equal(policy_check_args(p, empty, &err), -1);
    assert_string_equal(err.msg, "$: unknown property 'x'");
    json_decref(empty);
    static int one = 1;
    p->sbx_state = &one;
    p->sbx_state_free = count_free;
    freed_state = 0;
    policy_free(p);
    assert_int_equal(freed_state, 1);
    policy_diags_free(&d);
}

static void test_policy_wasm_module(void **state)
{
    struct tmp *t = *state;
    write_file(t, "m.wasm", "\0asm", 0644);
    const char *path = write_file(t, "w.yaml",
                                  "name: w\ndescription: d\nisolation: wasm\nmodule: m.wasm\n"
                                  "limits: {module_mb: 1, fuel: 5}\n",
                                  0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_load_file(path, &p, &d), 0);
    assert_non_null(p->module);
    assert_true(p->module[0] == '/');
    assert_non_null(strstr(p->module, "/m.wasm"));
    assert_null(p->command);
    policy_free(p);
    policy_diags_free(&d);
}

/* ---- every error, with its exact location ------------------------------------------------- */

struct err_case {
    const char *name;
    const char *yaml;
    const char *where; /* "LINE:COL: " expected right after the file name */
    const char *msg;   /* substring of the message */
};

static const struct err_case err_cases[] = {
    {"unknown key", HEAD "isolaton: process\n", "5:1", "unknown key 'isolaton'"},
    {"unknown nested key", HEAD "limits:\n  wal_timeout: 5s\n", "6:3", "unknown key 'wal_timeout'"},
    {"duplicate key", HEAD "name: u\n", "5:1", "duplicate key 'name' (first at line 1, column 1)"},
    {"yes as bool", HEAD "reversible: yes\n", "5:13", "use true or false"},
    {"On as bool", HEAD "approval: {required: On}\n", "5:22", "use true or false"},
    {"quoted bool", HEAD "reversible: \"true\"\n", "5:13", "unquoted true or false"},
    {"non-scalar where scalar expected", HEAD "limits:\n  pids: [1]\n", "6:9",
     "'limits.pids' must be an integer, got a list"},
    {"scalar where mapping expected", HEAD "limits: 5\n", "5:9", "'limits' must be a mapping"},
    {"description list", "name: t\ndescription: [a]\nisolation: process\ncommand: [/bin/true]\n",
     "2:14", "'description' must be a string, got a list"},
    {"bad duration", HEAD "limits:\n  wall_timeout: 5x\n", "6:17", "bad duration '5x'"},
    {"duration out of range", HEAD "limits:\n  wall_timeout: 25h\n", "6:17", "between 1ms and 24h"},
    {"approval timeout out of range", HEAD "approval:\n  timeout: 8d\n", "6:12",
     "between 1s and 168h"},
    {"memory_mb 2", HEAD "limits:\n  memory_mb: 2\n", "6:14", "memory cap under 4 MiB"},
    {"hex integer", HEAD "limits:\n  pids: 0x10\n", "6:9", "decimal integer"},
    {"pids out of range", HEAD "limits:\n  pids: 70000\n", "6:9", "between 1 and 65536"},
    {"cpu too many decimals", HEAD "limits: {cpu: 0.0005}\n", "5:15", "at most 3 decimals"},
    {"cpu too small", HEAD "limits: {cpu: 0.001}\n", "5:15", "between 0.01 and 64"},
    {"unknown syscall", HEAD "seccomp:\n  allow: [read, notasyscall]\n", "6:17",
     "unknown syscall 'notasyscall'"},
    {"read_only path missing", HEAD "filesystem:\n  read_only:\n    - /usr\n    - /no/such/path\n",
     "8:7", "'/no/such/path' does not exist"},
    {"read_only path relative", HEAD "filesystem: {read_only: [usr]}\n", "5:26",
     "must be absolute"},
    {"irreversible without approval", HEAD "reversible: false\n", "5:13",
     "irreversible tools must require approval"},
    {"bad pattern",
     HEAD "arguments:\n  type: object\n  properties:\n    s: {type: string, pattern: \"([a-z\"}\n",
     "8:32", "bad pattern"},
    {"unknown schema keyword",
     HEAD "arguments:\n  type: object\n  properties:\n    s: {type: string, minLenght: 3}\n",
     "8:23", "unknown schema keyword 'minLenght'"},
    {"schema root not object", HEAD "arguments: {type: string}\n", "5:19",
     "must have type: object"},
    {"required not in properties", HEAD "arguments: {type: object, required: [a]}\n", "5:38",
     "'a' is not listed in properties"},
    {"unknown schema type", HEAD "arguments: {type: object, properties: {a: {type: str}}}\n",
     "5:50", "'type' must be one of"},
    {"wasm without module", "name: t\ndescription: d\nisolation: wasm\n", "3:12",
     "isolation: wasm requires 'module'"},
    {"wasm with command",
     "name: t\ndescription: d\nisolation: wasm\nmodule: /bin/true\ncommand: [/bin/true]\n", "5:1",
     "'command' is not used with isolation: wasm"},
    {"module without wasm", HEAD "module: /bin/true\n", "5:1", "only used with isolation: wasm"},
    {"missing name", "description: d\nisolation: process\ncommand: [/bin/true]\n", "1:1",
     "missing required key 'name'"},
    {"missing command", "name: t\ndescription: d\nisolation: process\n", "1:1",
     "missing required key 'command'"},
    {"bad name", "name: Bad\ndescription: d\nisolation: process\ncommand: [/bin/true]\n", "1:7",
     "'name' must match"},
    {"bad isolation", "name: t\ndescription: d\nisolation: vm\ncommand: [/bin/true]\n", "3:12",
     "'isolation' must be one of process, container, gvisor, microvm, wasm; got 'vm'"},
    {"command missing", "name: t\ndescription: d\nisolation: process\ncommand: [/no/such/bin]\n",
     "4:11", "command '/no/such/bin' does not exist"},
    {"command not executable",
     "name: t\ndescription: d\nisolation: process\ncommand: [/etc/passwd]\n", "4:11",
     "is not executable"},
    {"network sandbox outside gvisor", HEAD "network: sandbox\n", "5:10",
     "only available with isolation: gvisor"},
    {"gvisor settings outside gvisor", HEAD "gvisor: {platform: kvm}\n", "5:1",
     "only used with isolation: gvisor"},
    {"reserved env", HEAD "env:\n  GATEHOUSE_TOKEN: x\n", "6:3", "reserved"},
    {"bad env name", HEAD "env:\n  1BAD: x\n", "6:3", "must match"},
    {"webhook not a URL", HEAD "approval: {webhook: ftp://x}\n", "5:21", "http://HOST"},
    {"webhook https user info", HEAD "approval: {webhook: \"https://u@x/h\"}\n", "5:21",
     "http://HOST"},
    {"webhook user info", HEAD "approval: {webhook: \"http://u:p@x/h\"}\n", "5:21", "http://HOST"},
    {"webhook bad port", HEAD "approval: {webhook: \"http://x:99999/h\"}\n", "5:21", "http://HOST"},
    {"pool too big", HEAD "pool: {size: 17}\n", "5:14", "between 0 and 16"},
    {"quoted integer", HEAD "limits: {pids: \"5\"}\n", "5:16", "decimal integer"},
    {"empty command", "name: t\ndescription: d\nisolation: process\ncommand: []\n", "4:10",
     "'command' must not be empty"},
    {"command not a list", "name: t\ndescription: d\nisolation: process\ncommand: /bin/true\n",
     "4:10", "'command' must be a list, got a scalar"},
    {"bad gvisor platform",
     "name: t\ndescription: d\nisolation: gvisor\ncommand: [/bin/true]\n"
     "gvisor: {platform: fast}\n",
     "5:20", "'gvisor.platform' must be one of ptrace, systrap, kvm"},
    {"env value not a string", HEAD "env:\n  A: [x]\n", "6:6",
     "'env.A' must be a string, got a list"},
    {"unknown syscall in deny", HEAD "seccomp: {deny: [execve, nope_call]}\n", "5:26",
     "unknown syscall 'nope_call'"},
    {"exec_workspace y", HEAD "filesystem: {exec_workspace: y}\n", "5:30", "use true or false"},
    {"additionalProperties yes", HEAD "arguments: {type: object, additionalProperties: yes}\n",
     "5:49", "use true or false"},
    {"empty enum", HEAD "arguments: {type: object, properties: {a: {enum: []}}}\n", "5:50",
     "'enum' must be a non-empty list"},
    {"quoted minimum", HEAD "arguments: {type: object, properties: {a: {minimum: \"3\"}}}\n",
     "5:53", "'minimum' must be a number"},
    {"schema not a mapping", HEAD "arguments: {type: object, properties: {a: string}}\n", "5:43",
     "a schema must be a mapping"},
    {"blast radius", HEAD "blast_radius: huge\n", "5:15",
     "'blast_radius' must be one of low, medium, high, critical"},
    {"workspace size", HEAD "filesystem: {workspace: {size_mb: 0}}\n", "5:35", "between 1 and"},
    {"workspace unknown key", HEAD "filesystem: {workspace: {size: 5}}\n", "5:26",
     "unknown key 'size'"},
    {"module too large",
     "name: t\ndescription: d\nisolation: wasm\nmodule: /bin/bash\n"
     "limits: {module_mb: 1}\n",
     "4:9", "larger than limits.module_mb"},
    {"module missing", "name: t\ndescription: d\nisolation: wasm\nmodule: nope.wasm\n", "4:9",
     "module 'nope.wasm' does not exist"},
    /* YAML-level hazards */
    {"non-scalar key", HEAD "? [a]\n: 1\n", "5:3", "mapping keys must be scalars"},
    {"explicit tag", HEAD "x: !foo bar\n", "5:4", "explicit tag '!foo' is not allowed"},
    {"binary tag", HEAD "x: !!binary aGVsbG8=\n", "5:4", "explicit tag 'tag:yaml.org,2002:binary'"},
    {"two documents", HEAD "---\nname: u\n", "5:1", "more than one YAML document"},
    {"undefined alias", HEAD "x: *nope\n", "5:4", "undefined anchor"},
    {"tag on the wrong node", HEAD "x: !!map a\n", "5:4", "does not match the node"},
    {"anchor on a key", HEAD "&k x: 1\n", "5:1", "anchors on mapping keys"},
    {"invalid UTF-8", HEAD "x: \"a\xff\"\n", "5:6", ""},
    {"alias nests too deep",
     HEAD "a: &a [[x]]\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", "6:34",
     "alias expands to nesting deeper than 32 levels"},
    {"syntax error", HEAD "x: [1, 2\n", "6:1", ""},
    {"root not a mapping", "- a\n- b\n", "1:1", "a policy must be a mapping"},
    {"empty document", "", "1:1", "empty YAML document"},
};

static void expect_error(const struct tmp *t, const char *yaml, size_t len, const char *where,
                         const char *msg, const char *label)
{
    char name[64];
    snprintf(name, sizeof(name), "case.yaml");
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", t->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fwrite(yaml, 1, len, f);
    fclose(f);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int rc = policy_load_file(path, &p, &d);
    char prefix[700];
    snprintf(prefix, sizeof(prefix), "%s:%s: ", path, where);
    if (rc != -1 || !diags_have(&d, prefix, msg)) {
        print_message("case '%s': want '%s...%s'\n", label, prefix, msg);
        print_diags(&d);
    }
    assert_int_equal(rc, -1);
    assert_null(p);
    assert_true(diags_have(&d, prefix, msg));
    policy_diags_free(&d);
}

static void test_policy_errors_have_locations(void **state)
{
    struct tmp *t = *state;
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++)
        expect_error(t, err_cases[i].yaml, strlen(err_cases[i].yaml), err_cases[i].where,
                     err_cases[i].msg, err_cases[i].name);
}

static void test_policy_reports_every_error_of_a_file(void **state)
{
    struct tmp *t = *state;
    const char *path = write_file(
        t, "many.yaml", HEAD "reversible: no\nlimits: {memory_mb: 2, pids: 0}\nbogus: 1\n", 0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_load_file(path, &p, &d), -1);
    assert_int_equal(d.n, 4);
    policy_diags_free(&d);
}

static void test_policy_rejects_alias_bombs(void **state)
{
    struct tmp *t = *state;
    /* More than 16 aliases: the 17th is refused where it stands. */
    char yaml[4096] = HEAD "a: &a x\nb: [";
    for (int i = 0; i < 17; i++)
        strcat(yaml, i ? ", *a" : "*a");
    strcat(yaml, "]\n");
    expect_error(t, yaml, strlen(yaml), "6:69", "more than 16 aliases", "17 aliases");

    /* Few aliases, many nodes: 200 scalars, copied 10 times, then 6 times more. The 4th alias
     * of c pushes the copies past 10,000 nodes (2010 + 4 * 2011). */
    char *big = malloc(16384);
    assert_non_null(big);
    strcpy(big, HEAD "a: &a [");
    for (int i = 0; i < 200; i++)
        strcat(big, i ? ",1" : "1");
    strcat(big, "]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b]\n");
    expect_error(t, big, strlen(big), "7:20", "aliases expand to more than 10000 nodes",
                 "billion laughs");
    free(big);

    /* An alias may not refer to the collection it is inside. */
    const char *rec = HEAD "a: &a [1, *a]\n";
    expect_error(t, rec, strlen(rec), "5:11", "undefined anchor", "recursive alias");
}

static void test_policy_rejects_large_documents(void **state)
{
    struct tmp *t = *state;
    size_t len = 1024 * 1024 + 1;
    char *yaml = malloc(len);
    assert_non_null(yaml);
    memset(yaml, '#', len);
    memcpy(yaml, HEAD, strlen(HEAD));
    yaml[len - 1] = '\n';
    expect_error(t, yaml, len, "1:1", "document larger than 1 MiB", "1 MiB + 1");
    free(yaml);
}

static void test_policy_rejects_deep_nesting(void **state)
{
    struct tmp *t = *state;
    /* The root mapping is level 1, so the 32nd '[' would be level 33. */
    char yaml[512] = HEAD "a: ";
    for (int i = 0; i < 40; i++)
        strcat(yaml, "[");
    for (int i = 0; i < 40; i++)
        strcat(yaml, "]");
    strcat(yaml, "\n");
    expect_error(t, yaml, strlen(yaml), "5:35", "nesting deeper than 32 levels", "depth 33");
}

static void test_policy_rejects_nul_in_scalar(void **state)
{
    struct tmp *t = *state;
    const char *yaml = HEAD "description: \"a\\0b\"\n";
    expect_error(t, yaml, strlen(yaml), "5:14", "NUL", "escaped NUL");
}

/* ---- policy sets -------------------------------------------------------------------------- */

static void test_policy_set_aggregates_errors_of_all_files(void **state)
{
    struct tmp *t = *state;
    write_file(t, "a.yaml", HEAD "isolaton: process\n", 0644);
    write_file(t, "b.yml", HEAD "limits: {wall_timeout: soon}\n", 0644);
    write_file(t, "c.yaml", "name: c\ndescription: d\nisolation: process\ncommand: [/bin/cat]\n",
               0644);
    write_file(t, "ignored.txt", "not: yaml: at: all\n", 0644);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), -1);
    assert_null(s);
    print_diags(&d);
    assert_int_equal(d.n, 2);
    char want[600];
    snprintf(want, sizeof(want), "%s/a.yaml:5:1: unknown key 'isolaton'", t->dir);
    assert_non_null(strstr(d.msgs[0], want));
    snprintf(want, sizeof(want), "%s/b.yml:5:24: 'limits.wall_timeout': bad duration 'soon'",
             t->dir);
    assert_non_null(strstr(d.msgs[1], want));
    policy_diags_free(&d);
}

static void test_policy_set_refuses_duplicate_names(void **state)
{
    struct tmp *t = *state;
    write_file(t, "one.yaml", HEAD, 0644);
    write_file(t, "two.yaml",
               "description: again\nname: t\nisolation: process\ncommand: [/bin/true]\n", 0644);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), -1);
    assert_null(s);
    print_diags(&d);
    assert_int_equal(d.n, 1);
    char want[600];
    snprintf(want, sizeof(want), "%s/two.yaml:2:7: duplicate tool name 't' (also in %s/one.yaml)",
             t->dir, t->dir);
    assert_string_equal(d.msgs[0], want);
    policy_diags_free(&d);
}

static void test_policy_set_find_and_refcount(void **state)
{
    struct tmp *t = *state;
    const char *names[] = {"delta", "alpha", "charlie", "bravo", "echo"};
    for (size_t i = 0; i < 5; i++) {
        char file[64], yaml[256];
        snprintf(file, sizeof(file), "%zu-%s.yml", i, names[i]);
        snprintf(yaml, sizeof(yaml),
                 "name: %s\ndescription: d\nisolation: process\ncommand: [/bin/true]\n", names[i]);
        write_file(t, file, yaml, 0644);
    }
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), 0);
    assert_int_equal(s->n, 5);
    assert_int_equal(s->refs, 1);
    for (size_t i = 0; i < 5; i++) {
        const struct policy *p = policy_set_find(s, names[i]);
        assert_non_null(p);
        assert_string_equal(p->name, names[i]);
    }
    assert_null(policy_set_find(s, "foxtrot"));
    assert_null(policy_set_find(s, "aaa"));
    assert_ptr_equal(policy_set_ref(s), s);
    assert_int_equal(s->refs, 2);
    policy_set_unref(s);
    assert_int_equal(s->refs, 1);
    policy_set_unref(s); /* frees; ASan checks */
    policy_diags_free(&d);
}

static void *ref_unref_loop(void *arg)
{
    struct policy_set *s = arg;
    for (int i = 0; i < 20000; i++) {
        policy_set_ref(s);
        assert_non_null(policy_set_find(s, "t"));
        policy_set_unref(s);
    }
    return NULL;
}

static void test_policy_set_refcount_is_atomic(void **state)
{
    struct tmp *t = *state;
    write_file(t, "t.yaml", HEAD, 0644);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_unref_loop, s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(__atomic_load_n(&s->refs, __ATOMIC_SEQ_CST), 1);
    policy_set_unref(s);
}

static void test_policy_set_empty_dir_is_empty_set(void **state)
{
    struct tmp *t = *state;
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), 0);
    assert_int_equal(s->n, 0);
    assert_null(policy_set_find(s, "x"));
    policy_set_unref(s);
    assert_int_equal(policy_set_load("/no/such/dir", &s, &d), -1);
    assert_int_equal(d.n, 1);
    policy_diags_free(&d);
}

/* ---- what a policy directory may contain ------------------------------------------------ */

/* A FIFO, device or directory named *.yaml would block the loader (a FIFO's open waits for a
 * writer) or never end (a device): each is an error, found without reading it. The alarm turns
 * a hang (the bug this guards against) into a failure instead of a stuck test run. */
static void test_policy_set_refuses_special_files_without_blocking(void **state)
{
    struct tmp *t = *state;
    write_file(t, "a.yaml", HEAD, 0644);
    char path[600];
    snprintf(path, sizeof(path), "%s/zz.yaml", t->dir);
    assert_int_equal(mkfifo(path, 0644), 0);
    snprintf(path, sizeof(path), "%s/d.yaml", t->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/dev.yaml", t->dir);
    bool have_dev = mknod(path, S_IFCHR | 0644, makedev(1, 5)) == 0; /* /dev/zero; needs root */
    alarm(60);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), -1);
    print_diags(&d);
    char want[700];
    snprintf(want, sizeof(want), "%s/zz.yaml:1:1: a FIFO, not a regular file: not read", t->dir);
    assert_true(diags_have(&d, want, ""));
    snprintf(want, sizeof(want), "%s/d.yaml:1:1: a directory, not a regular file", t->dir);
    assert_true(diags_have(&d, want, ""));
    snprintf(want, sizeof(want), "%s/dev.yaml:1:1: a character device, not a regular file", t->dir);
    assert_true(!have_dev || diags_have(&d, want, ""));
    assert_int_equal(d.n, have_dev ? 3 : 2);
    policy_diags_free(&d);
    /* One file by name, and the gateway's config reader, refuse a FIFO the same way. */
    snprintf(path, sizeof(path), "%s/zz.yaml", t->dir);
    struct policy *p = NULL;
    assert_int_equal(policy_load_file(path, &p, &d), -1);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "a FIFO, not a regular file"));
    policy_diags_free(&d);
    struct ynode *root = NULL;
    struct gate_error err = {0};
    assert_int_equal(ynode_load_file(path, &root, &err), -1);
    assert_non_null(strstr(err.msg, "a FIFO, not a regular file"));
    alarm(0);
}

/* A symlink leaving the directory is refused before anything is read, so nothing of the file
 * it points at (here a stand-in for /etc/shadow) can reach an error message or the audit log. */
static void test_policy_set_refuses_symlinks_leaving_the_directory(void **state)
{
    struct tmp *t = *state;
    char secret[600], link[600];
    snprintf(secret, sizeof(secret), "%s-secret.yaml", t->dir);
    FILE *f = fopen(secret, "w");
    assert_non_null(f);
    fputs("root-secret-hash-1234: x\n", f);
    fclose(f);
    snprintf(link, sizeof(link), "%s/abs.yaml", t->dir);
    assert_int_equal(symlink(secret, link), 0);
    snprintf(link, sizeof(link), "%s/rel.yml", t->dir);
    char rel[600];
    snprintf(rel, sizeof(rel), "../%s", strrchr(secret, '/') + 1);
    assert_int_equal(symlink(rel, link), 0);
    snprintf(link, sizeof(link), "%s/proc.yaml", t->dir);
    assert_int_equal(symlink("/proc/self/environ", link), 0);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_set_load(t->dir, &s, &d), -1);
    print_diags(&d);
    assert_int_equal(d.n, 3);
    for (size_t i = 0; i < d.n; i++) {
        assert_non_null(strstr(d.msgs[i], ":1:1: symbolic link leading outside its directory"));
        assert_null(strstr(d.msgs[i], "root-secret"));
    }
    policy_diags_free(&d);
    /* Named directly, the file is read under the same rule. */
    struct policy *p = NULL;
    snprintf(link, sizeof(link), "%s/abs.yaml", t->dir);
    assert_int_equal(policy_load_file(link, &p, &d), -1);
    assert_int_equal(d.n, 1);
    assert_null(strstr(d.msgs[0], "root-secret"));
    policy_diags_free(&d);
    unlink(secret);
}

/* A link that stays inside the directory is followed (the layout of a Kubernetes ConfigMap
 * volume: name.yaml -> ..data/name.yaml, ..data -> ..2024_01_01/); a dangling one is an error. */
static void test_policy_set_follows_symlinks_inside_the_directory(void **state)
{
    struct tmp *t = *state;
    char path[600], link[600];
    snprintf(path, sizeof(path), "%s/..v1", t->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    write_file(t, "..v1/t.yaml", HEAD, 0644);
    snprintf(link, sizeof(link), "%s/..data", t->dir);
    assert_int_equal(symlink("..v1", link), 0);
    snprintf(link, sizeof(link), "%s/t.yaml", t->dir);
    assert_int_equal(symlink("..data/t.yaml", link), 0);
    struct policy_set *s = NULL;
    struct policy_diags d = {0};
    int rc = policy_set_load(t->dir, &s, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_int_equal(s->n, 1);
    assert_non_null(policy_set_find(s, "t"));
    policy_set_unref(s);
    snprintf(link, sizeof(link), "%s/gone.yaml", t->dir);
    assert_int_equal(symlink("..data/nothing.yaml", link), 0);
    assert_int_equal(policy_set_load(t->dir, &s, &d), -1);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "gone.yaml:1:1: cannot read: No such file"));
    policy_diags_free(&d);
}

/* ---- ynode API (also used for the gateway's config file) --------------------------------- */

static void test_ynode_api(void **state)
{
    (void)state;
    const char *y = "a: 1\nb: [x, 'y']\nc: {d: e}\n";
    struct ynode *root = NULL;
    struct gate_error err = {0};
    assert_int_equal(ynode_load_buf("cfg.yaml", y, strlen(y), &root, &err), 0);
    assert_int_equal(root->kind, YNODE_MAP);
    const struct ynode *b = ynode_get(root, "b");
    assert_non_null(b);
    assert_int_equal(b->kind, YNODE_SEQ);
    assert_int_equal(b->n, 2);
    assert_false(b->items[0]->quoted);
    assert_true(b->items[1]->quoted);
    assert_int_equal(b->items[1]->loc.line, 2);
    assert_int_equal(b->items[1]->loc.col, 8);
    assert_int_equal(root->key_locs[2].line, 3);
    assert_string_equal(ynode_get(ynode_get(root, "c"), "d")->scalar, "e");
    assert_null(ynode_get(root, "zz"));
    assert_null(ynode_get(b, "x"));
    ynode_free(root);

    const char *dup = "a: 1\nb: 2\na: 3\n";
    assert_int_equal(ynode_load_buf("cfg.yaml", dup, strlen(dup), &root, &err), -1);
    assert_string_equal(err.msg, "cfg.yaml:3:1: duplicate key 'a' (first at line 1, column 1)");
    assert_int_equal(ynode_load_file("/no/such/file.yaml", &root, &err), -1);

    const char *two = "a: 1\n---\nb: 2\n";
    assert_int_equal(ynode_load_buf("cfg.yaml", two, strlen(two), &root, &err), -1);
    assert_string_equal(err.msg, "cfg.yaml:2:1: more than one YAML document");
}

static void test_policy_str_tag_makes_a_string(void **state)
{
    struct tmp *t = *state;
    const char *yaml = HEAD "reversible: !!str true\n";
    expect_error(t, yaml, strlen(yaml), "5:13", "unquoted true or false", "!!str true");
}

/* ---- the key table is the loader's whole vocabulary -------------------------------------- */

/* The properties of a mapping's schema (a section written true/false is an anyOf), or NULL. */
static const json_t *section_props(const json_t *s)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *alts = json_object_get(s, "anyOf");
    for (size_t i = 0; !props && i < json_array_size(alts); i++)
        props = json_object_get(json_array_get(alts, i), "properties");
    return props;
}

/* Every key written in map (at path) is a row of the table: one reported per miss. */
static int keys_in_table(const char *file, const struct ynode *map, const json_t *props,
                         const char *path)
{
    int missing = 0;
    for (size_t i = 0; i < map->n; i++) {
        const json_t *k = json_object_get(props, map->keys[i]);
        if (!k) {
            print_message(
                "%s: key '%s%s' is written in an example policy but not in the key table\n", file,
                path, map->keys[i]);
            missing++;
            continue;
        }
        const json_t *sub = section_props(k);
        if (sub && map->items[i]->kind == YNODE_MAP) {
            char deeper[256];
            snprintf(deeper, sizeof(deeper), "%s%s.", path, map->keys[i]);
            missing += keys_in_table(file, map->items[i], sub, deeper);
        }
    }
    return missing;
}

/* Every mapping the table declares refuses a key it does not list (the loader reads nothing
 * beside the table); section is "" for the policy's top level. */
static int section_refuses_unknown(const char *section, const json_t *props)
{
    char yaml[1024], open[256] = "", close[64] = "";
    const char *seg = section;
    while (*seg) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        snprintf(open + strlen(open), sizeof(open) - strlen(open), "%.*s: {", (int)len, seg);
        snprintf(close + strlen(close), sizeof(close) - strlen(close), "}");
        seg += len + (dot ? 1 : 0);
    }
    snprintf(yaml, sizeof(yaml),
             "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n%szz_unknown: "
             "1%s\n",
             open, close);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int bad = 0;
    if (policy_load_buf("k.yaml", yaml, strlen(yaml), &p, &d) == 0 || d.n == 0 ||
        !strstr(d.msgs[0], "unknown key 'zz_unknown'")) {
        print_message("section '%s' does not refuse an unknown key: %s\n", section,
                      d.n ? d.msgs[0] : "loaded");
        bad = 1;
    }
    policy_free(p);
    policy_diags_free(&d);
    const char *name;
    const json_t *k;
    json_object_foreach((json_t *)props, name, k)
    {
        const json_t *sub = section_props(k);
        if (!sub) continue;
        char deeper[256];
        snprintf(deeper, sizeof(deeper), "%s%s%s", section, *section ? "." : "", name);
        bad += section_refuses_unknown(deeper, sub);
    }
    return bad;
}

static void test_loader_keys_are_the_key_table(void **state)
{
    (void)state;
    const char *src = getenv("GATE_SOURCE_DIR");
    if (!src) {
        print_message("GATE_SOURCE_DIR not set (ctest sets it)\n");
        fail();
    }
    json_t *gen = policy_file_schema();
    assert_non_null(gen);
    const json_t *top = json_object_get(gen, "properties");
    assert_non_null(top);
    /* The example policies load (test_examples): every key they write must be a row. */
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/policies", src);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int missing = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0) continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct ynode *root = NULL;
        struct gate_error err = {0};
        assert_int_equal(ynode_load_file(path, &root, &err), 0);
        missing += keys_in_table(path, root, top, "");
        files++;
        ynode_free(root);
    }
    closedir(d);
    assert_true(files > 0);
    assert_int_equal(missing, 0);
    assert_int_equal(section_refuses_unknown("", top), 0);
    json_decref(gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_policy_full_valid_reads_every_key, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_defaults_and_sbx_state_free, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_wasm_module, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_errors_have_locations, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_reports_every_error_of_a_file, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_rejects_alias_bombs, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_rejects_large_documents, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_rejects_deep_nesting, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_rejects_nul_in_scalar, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_aggregates_errors_of_all_files, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refuses_duplicate_names, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_find_and_refcount, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refcount_is_atomic, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_empty_dir_is_empty_set, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_str_tag_makes_a_string, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refuses_special_files_without_blocking,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refuses_symlinks_leaving_the_directory,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_follows_symlinks_inside_the_directory,
                                        tmp_setup, tmp_teardown),
        cmocka_unit_test(test_ynode_api),
        cmocka_unit_test(test_loader_keys_are_the_key_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
