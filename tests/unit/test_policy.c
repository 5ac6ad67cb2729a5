/* test_policy.c: the policy module: safe YAML, every policy key, the argument schema and
 * policy sets. Fixtures are written into a fresh temporary directory by each test so the
 * expected line:column of every error sits next to the YAML that causes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    DIR *d = opendir(t->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(t->dir);
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

/* ---- argument schema ---------------------------------------------------------------------- */

static const char schema_policy[] =
    HEAD "arguments:\n"
         "  type: object\n"
         "  properties:\n"
         "    text: {type: string, minLength: 2, maxLength: 4}\n"
         "    word: {type: string, pattern: \"^[a-zé]+$\"}\n"
         "    part: {type: string, pattern: \"ab\"}\n"
         "    n: {type: integer, minimum: 1, maximum: 10}\n"
         "    x: {type: number, minimum: -1.5, maximum: 2.5}\n"
         "    big: {type: number, maximum: 1e3}\n"
         "    mode: {enum: [fast, slow, 3]}\n"
         "    tags: {type: array, items: {type: string, maxLength: 3}, minItems: 1, maxItems: 2}\n"
         "    flag: {type: boolean}\n"
         "    opt: {type: [string, \"null\"]}\n"
         "    nested:\n"
         "      type: object\n"
         "      properties: {a: {type: integer}}\n"
         "      required: [a]\n"
         "      additionalProperties: true\n"
         "  required: [text]\n";

#define EURO10                                                                                     \
    "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82" \
    "\xac\xe2\x82\xac\xe2\x82\xac"

struct args_case {
    const char *json;
    const char *msg; /* NULL = valid */
};

static const struct args_case args_cases[] = {
    {"{\"text\":\"ab\"}", NULL},
    {"{\"text\":\"abcd\",\"n\":10,\"x\":-1.5,\"mode\":3,\"tags\":[\"a\",\"bcd\"],\"flag\":false,"
     "\"opt\":null,\"nested\":{\"a\":1,\"extra\":true}}",
     NULL},
    {"{}", "$: missing required property 'text'"},
    {"[]", "$: expected object, got array"},
    {"{\"text\":\"ab\",\"zz\":1}", "$: unknown property 'zz'"},
    {"{\"text\":\"abcde\"}", "$.text: longer than maxLength 4"},
    {"{\"text\":\"a\"}", "$.text: shorter than minLength 2"},
    /* Lengths count code points: 4 two-byte and 4 three-byte characters are fine, 5 are not. */
    {"{\"text\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", NULL},
    {"{\"text\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}", NULL},
    {"{\"text\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}",
     "$.text: longer than maxLength 4"},
    {"{\"text\":\"ab\",\"word\":\"caf\xc3\xa9\"}", NULL},
    {"{\"text\":\"ab\",\"word\":\"Cafe\"}", "$.word: does not match pattern '^[a-z\xc3\xa9]+$'"},
    {"{\"text\":\"ab\",\"part\":\"xxabxx\"}", NULL}, /* unanchored */
    {"{\"text\":\"ab\",\"part\":\"xxbaxx\"}", "$.part: does not match pattern 'ab'"},
    {"{\"text\":\"ab\",\"n\":\"5\"}", "$.n: expected integer, got string"},
    {"{\"text\":\"ab\",\"n\":5.0}", "$.n: expected integer, got number"},
    {"{\"text\":\"ab\",\"n\":0}", "$.n: less than minimum 1"},
    {"{\"text\":\"ab\",\"n\":11}", "$.n: greater than maximum 10"},
    {"{\"text\":\"ab\",\"x\":2}", NULL}, /* an integer is a number */
    {"{\"text\":\"ab\",\"x\":2.6}", "$.x: greater than maximum 2.5"},
    {"{\"text\":\"ab\",\"x\":-2}", "$.x: less than minimum -1.5"},
    {"{\"text\":\"ab\",\"mode\":\"slow\"}", NULL},
    {"{\"text\":\"ab\",\"big\":1000}", NULL},
    {"{\"text\":\"ab\",\"big\":1000.5}", "$.big: greater than maximum 1000"},
    {"{\"text\":\"ab\",\"mode\":\"3\"}", "$.mode: value is not one of the allowed values (enum)"},
    {"{\"text\":\"ab\",\"tags\":[]}", "$.tags: fewer than minItems 1 items"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",\"b\",\"c\"]}", "$.tags: more than maxItems 2 items"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",\"long\"]}", "$.tags[1]: longer than maxLength 3"},
    {"{\"text\":\"ab\",\"tags\":[\"a\",7]}", "$.tags[1]: expected string, got integer"},
    {"{\"text\":\"ab\",\"flag\":\"true\"}", "$.flag: expected boolean, got string"},
    {"{\"text\":\"ab\",\"opt\":1}", "$.opt: expected string or null, got integer"},
    {"{\"text\":\"ab\",\"nested\":{}}", "$.nested: missing required property 'a'"},
    {"{\"text\":\"ab\",\"nested\":{\"a\":true}}", "$.nested.a: expected integer, got boolean"},
    {"{\"text\":\"ab\",\"bad\\nname\":1}", "$: unknown property 'bad?name'"},
    /* Outsider-supplied names are cut at 64 bytes on a character boundary. */
    {"{\"text\":\"ab\",\"" EURO10 EURO10 EURO10 "\":1}",
     "$: unknown property '" EURO10 EURO10 "\xe2\x82\xac'"},
};

static void test_policy_check_args_table(void **state)
{
    struct tmp *t = *state;
    const char *path = write_file(t, "schema.yaml", schema_policy, 0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int rc = policy_load_file(path, &p, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < sizeof(args_cases) / sizeof(args_cases[0]); i++) {
        json_error_t jerr;
        json_t *args = json_loads(args_cases[i].json, 0, &jerr);
        assert_non_null(args);
        struct gate_error err = {0};
        rc = policy_check_args(p, args, &err);
        if ((rc == 0) != (args_cases[i].msg == NULL) ||
            (args_cases[i].msg && strcmp(err.msg, args_cases[i].msg) != 0))
            print_message("case %zu %s: got rc %d '%s'\n", i, args_cases[i].json, rc, err.msg);
        if (args_cases[i].msg) {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, GATE_E_INVALID_ARGUMENTS);
            assert_string_equal(err.msg, args_cases[i].msg);
        } else {
            assert_int_equal(rc, 0);
        }
        json_decref(args);
    }
    policy_free(p);
    policy_diags_free(&d);
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

static void test_policy_arguments_yaml_to_json_types(void **state)
{
    struct tmp *t = *state;
    const char *path = write_file(t, "types.yaml",
                                  HEAD "arguments:\n  type: object\n  properties:\n"
                                       "    v: {enum: [\"1\", 1, -2, 1.5, 2e3, true, null, ~, yes, "
                                       "!!str false, '']}\n",
                                  0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    int rc = policy_load_file(path, &p, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    json_t *e =
        json_object_get(json_object_get(json_object_get(p->arguments, "properties"), "v"), "enum");
    char *js = json_dumps(e, JSON_COMPACT);
    assert_string_equal(js, "[\"1\",1,-2,1.5,2000.0,true,null,null,\"yes\",\"false\",\"\"]");
    free(js);
    /* Enum membership follows JSON types: the string "1" and the integer 1 differ. */
    struct gate_error err = {0};
    json_t *args = json_pack("{s:s}", "v", "yes");
    assert_int_equal(policy_check_args(p, args, &err), 0);
    json_decref(args);
    args = json_pack("{s:b}", "v", 0);
    assert_int_equal(policy_check_args(p, args, &err), -1);
    json_decref(args);
    args = json_pack("{s:i}", "v", 1);
    assert_int_equal(policy_check_args(p, args, &err), 0);
    json_decref(args);
    policy_free(p);
    policy_diags_free(&d);
}

/* A backtracking pattern under `items` must not cost items x the per-match bound: the whole
 * call has one pattern budget, and running out of it refuses the call. */
static void test_policy_pattern_budget_is_per_call(void **state)
{
    struct tmp *t = *state;
    const char *path = write_file(t, "redos.yaml",
                                  HEAD "arguments:\n  type: object\n  properties:\n"
                                       "    v: {type: array, items: {type: string, pattern: "
                                       "\"^(a+)+b$\"}}\n",
                                  0644);
    struct policy *p = NULL;
    struct policy_diags d = {0};
    assert_int_equal(policy_load_file(path, &p, &d), 0);
    json_t *items = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(items, json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaac"));
    json_t *args = json_pack("{s:o}", "v", items);
    struct gate_error err = {0};
    assert_int_equal(policy_check_args(p, args, &err), -1);
    assert_int_equal(err.code, GATE_E_INVALID_ARGUMENTS);
    assert_non_null(strstr(err.msg, "$.v["));
    json_decref(args);
    policy_free(p);
    policy_diags_free(&d);
}

static void test_policy_str_tag_makes_a_string(void **state)
{
    struct tmp *t = *state;
    const char *yaml = HEAD "reversible: !!str true\n";
    expect_error(t, yaml, strlen(yaml), "5:13", "unquoted true or false", "!!str true");
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
        cmocka_unit_test_setup_teardown(test_policy_check_args_table, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_pattern_budget_is_per_call, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_aggregates_errors_of_all_files, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refuses_duplicate_names, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_find_and_refcount, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_refcount_is_atomic, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_set_empty_dir_is_empty_set, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_arguments_yaml_to_json_types, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_policy_str_tag_makes_a_string, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test(test_ynode_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
