/* test_lint.c: policy review: every lint rule fires on a minimal bad policy and stays quiet on
 * its fixed twin, at the exact line:column; suppression with and without a reason; lint.yaml;
 * exit codes; diff on a table of before/after pairs covering every change class; explain's
 * defaults; and the checked-in policy.schema.json against the key table it is generated from.
 * Each test writes its fixtures into a fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
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
    snprintf(t->dir, sizeof(t->dir), "/tmp/gate-lint-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmp *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

static void write_at(const char *path, const char *content, int mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

/* Write dir/name; returns the path in a static buffer. */
static const char *put(const char *dir, const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    write_at(path, content, 0644);
    return path;
}

/* Run lint on paths with the JSON format; returns the parsed report, *status the exit status. */
static json_t *lint_json(char *const *paths, size_t n, const char *config, const char *fail_on,
                         int *status)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    struct policy_lint_opts o = {
        .format = POLICY_REPORT_JSON, .config = config, .fail_on = fail_on};
    struct gate_error err = {0};
    *status = policy_lint(paths, n, &o, out, &err);
    fclose(out);
    if (*status < 0) {
        print_message("lint: %s\n", err.msg);
        free(text);
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) print_message("not JSON: %s\n%s\n", jerr.text, text);
    free(text);
    assert_non_null(j);
    return j;
}

static json_t *lint_one(const char *path, int *status)
{
    char *paths[] = {(char *)path};
    return lint_json(paths, 1, NULL, NULL, status);
}

/* The first unsuppressed finding of rule, or NULL. */
static json_t *finding(json_t *report, const char *rule, bool suppressed)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(report, "findings"), i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "rule")), rule) != 0) continue;
        if (json_is_null(json_object_get(f, "suppressed")) != !suppressed) continue;
        return f;
    }
    return NULL;
}

static void dump_findings(json_t *report)
{
    char *s = json_dumps(json_object_get(report, "findings"), JSON_INDENT(1));
    print_message("%s\n", s);
    free(s);
}

/* ---- each rule: fires on the bad policy, quiet on its fixed twin -------------------------- */

/* Everything a clean policy needs except isolation and command: 4 lines. */
#define BASE                                                                                       \
    "name: t\ndescription: d\nblast_radius: low\n"                                                 \
    "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1024}\n"
#define PROC "isolation: process\ncommand: [/bin/true]\n"

struct rule_case {
    const char *rule;
    const char *level;
    const char *bad;
    int line, col; /* of the bad policy's finding */
    const char *good;
};

static const struct rule_case rule_cases[] = {
    {"GH101", "error", BASE PROC "reversible: false\n", 7, 13,
     BASE PROC "reversible: false\napproval: {required: true}\n"},
    {"GH102", "warning",
     "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\n"
     "blast_radius: high\n",
     6, 15,
     "name: t\ndescription: d\nisolation: gvisor\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\nblast_radius: high\n"},
    {"GH102", "error",
     "name: t\ndescription: d\nisolation: container\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\n"
     "blast_radius: critical\n",
     6, 15,
     "name: t\ndescription: d\nisolation: microvm\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\n"
     "blast_radius: critical\n"},
    {"GH102", "note",
     "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\n",
     3, 12,
     "name: t\ndescription: d\nisolation: container\ncommand: [/bin/true]\n"
     "limits: {wall_timeout: 1s, memory_mb: 64, pids: 4, output_bytes: 1}\n"},
    {"GH103", "error", BASE "isolation: process\ncommand: [/bin/sh, -c, 'exec cat']\n", 6, 10,
     BASE "isolation: gvisor\ncommand: [/bin/sh, -c, 'exec cat']\n"},
    {"GH103", "error", BASE "isolation: process\ncommand: [/bin/bash, -o, pipefail, -c, x]\n", 6,
     10, BASE "isolation: process\ncommand: [/bin/bash, -o, pipefail, /opt/tool.sh]\n"},
    {"GH103", "error", BASE "isolation: container\ncommand: [/usr/bin/env, LANG=C, /bin/sh]\n", 6,
     10, BASE "isolation: container\ncommand: [/usr/bin/env, LANG=C, /bin/sh, /opt/tool.sh]\n"},
    {"GH104", "warning",
     "name: t\ndescription: d\nblast_radius: low\nisolation: container\ncommand: [/bin/true]\n"
     "limits:\n  wall_timeout: 1s\n  output_bytes: 10\n",
     6, 1,
     "name: t\ndescription: d\nblast_radius: low\nisolation: container\ncommand: [/bin/true]\n"
     "limits:\n  wall_timeout: 1s\n  output_bytes: 10\n  memory_mb: 8\n  pids: 2\n"},
    {"GH105", "warning",
     BASE PROC "arguments:\n  type: object\n  properties:\n    s: {type: string}\n", 10, 5,
     BASE PROC "arguments:\n  type: object\n  properties:\n    s: {type: string, maxLength: 9}\n"},
    {"GH105", "warning",
     BASE PROC "arguments:\n  type: object\n  properties:\n    l:\n      type: array\n"
               "      items: {type: [string, integer]}\n",
     12, 7,
     BASE PROC "arguments:\n  type: object\n  properties:\n    l:\n      type: array\n"
               "      items: {type: [string, integer], enum: [a, 1]}\n"},
    /* A date-time's fraction of a second has no length limit; a uuid has one length. */
    {"GH105", "warning",
     BASE PROC
     "arguments:\n  type: object\n  properties:\n    s: {type: string, format: date-time}\n",
     10, 5,
     BASE PROC "arguments:\n  type: object\n  properties:\n    s: {type: string, format: uuid}\n"},
    {"GH106", "warning",
     BASE PROC "arguments:\n  type: object\n  properties:\n"
               "    s: {type: string, pattern: \"[a-z]+\"}\n",
     10, 32,
     BASE PROC "arguments:\n  type: object\n  properties:\n"
               "    s: {type: string, pattern: \"^[a-z]+$\"}\n"},
    {"GH106", "warning",
     BASE PROC "arguments:\n  type: object\n  properties:\n"
               "    s: {type: string, pattern: \"^a|b$\"}\n",
     10, 32,
     BASE PROC "arguments:\n  type: object\n  properties:\n"
               "    s: {type: string, pattern: \"^(a|b)$\"}\n"},
    {"GH107", "warning", BASE "isolation: gvisor\ncommand: [/bin/true]\nnetwork: sandbox\n", 7, 10,
     BASE "isolation: gvisor\ncommand: [/bin/true]\nnetwork: none\n"},
    {"GH110", "error", BASE PROC "env:\n  LANG: C\n  API_TOKEN: abc123\n", 9, 3,
     BASE PROC "env:\n  LANG: C\n  API_URL: http://x\n"},
    {"GH111", "warning",
     BASE "isolation: container\ncommand: [/bin/true]\n"
          "filesystem:\n  read_only: [/usr, /etc]\n",
     8, 21, BASE "isolation: container\ncommand: [/bin/true]\nfilesystem:\n  read_only: [/usr]\n"},
    {"GH111", "warning",
     BASE "isolation: container\ncommand: [/bin/true]\n"
          "filesystem:\n  read_only: [/]\n",
     8, 15, BASE "isolation: container\ncommand: [/bin/true]\nfilesystem:\n  read_only: [/usr]\n"},
    {"GH112", "warning",
     BASE "isolation: container\ncommand: [/bin/true]\n"
          "filesystem: {workspace: true, exec_workspace: true}\n",
     7, 47,
     BASE "isolation: container\ncommand: [/bin/true]\n"
          "filesystem: {workspace: true, exec_workspace: false}\n"},
    {"GH113", "warning", BASE PROC "approval:\n  required: true\n  timeout: 48h\n", 9, 12,
     BASE PROC "approval:\n  required: true\n  timeout: 12h\n"},
};

static void test_lint_each_rule_fires_and_its_twin_is_quiet(void **state)
{
    struct tmp *t = *state;
    for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
        const struct rule_case *rc = &rule_cases[i];
        int status = 0;
        json_t *bad = lint_one(put(t->dir, "bad.yaml", rc->bad), &status);
        json_t *f = finding(bad, rc->rule, false);
        if (!f) {
            print_message("case %zu: %s did not fire\n", i, rc->rule);
            dump_findings(bad);
        }
        assert_non_null(f);
        assert_int_equal(json_integer_value(json_object_get(f, "line")), rc->line);
        assert_int_equal(json_integer_value(json_object_get(f, "column")), rc->col);
        assert_string_equal(json_string_value(json_object_get(f, "level")), rc->level);
        assert_int_equal(status, !strcmp(rc->level, "error")  ? 1
                                 : !strcmp(rc->level, "note") ? 0
                                                              : 2);
        json_decref(bad);
        json_t *good = lint_one(put(t->dir, "good.yaml", rc->good), &status);
        if (json_array_size(json_object_get(good, "findings"))) {
            print_message("case %zu: the fixed twin of %s is not clean\n", i, rc->rule);
            dump_findings(good);
        }
        assert_int_equal(json_array_size(json_object_get(good, "findings")), 0);
        assert_int_equal(status, 0);
        json_decref(good);
    }
}

/* GH108 and GH109 need files with chosen paths, owners and modes. */
static void test_lint_program_path_and_owner(void **state)
{
    struct tmp *t = *state;
    char tool[256], dir777[128], tool777[256], policy[4096];
    snprintf(tool, sizeof(tool), "%s/tool.sh", t->dir);
    write_at(tool, "#!/bin/sh\nexit 0\n", 0755);
    int status = 0;
    /* Relative: GH108 at the command item. */
    json_t *r =
        lint_one(put(t->dir, "p.yaml", BASE "isolation: process\ncommand: [tool.sh]\n"), &status);
    json_t *f = finding(r, "GH108", false);
    assert_non_null(f);
    assert_int_equal(json_integer_value(json_object_get(f, "line")), 6);
    assert_int_equal(json_integer_value(json_object_get(f, "column")), 11);
    assert_null(finding(r, "GH109", false));
    json_decref(r);
    /* Absolute, root's, in root's directories (the sticky /tmp above is fine): clean. */
    snprintf(policy, sizeof(policy), BASE "isolation: process\ncommand: [%s]\n", tool);
    r = lint_one(put(t->dir, "p.yaml", policy), &status);
    if (json_array_size(json_object_get(r, "findings"))) dump_findings(r);
    assert_int_equal(json_array_size(json_object_get(r, "findings")), 0);
    json_decref(r);
    if (geteuid() != 0) {
        print_message("not root: the owner cases of GH109 are not checked\n");
        return;
    }
    /* Owned by nobody: GH109. */
    assert_int_equal(chown(tool, 65534, 65534), 0);
    r = lint_one(put(t->dir, "p.yaml", policy), &status);
    f = finding(r, "GH109", false);
    assert_non_null(f);
    assert_non_null(strstr(json_string_value(json_object_get(f, "message")), "non-root user"));
    assert_int_equal(status, 1);
    json_decref(r);
    assert_int_equal(chown(tool, 0, 0), 0);
    /* Root's file in a world-writable (not sticky) directory: GH109 names the directory. */
    snprintf(dir777, sizeof(dir777), "%s/open", t->dir);
    assert_int_equal(mkdir(dir777, 0777), 0);
    assert_int_equal(chmod(dir777, 0777), 0);
    snprintf(tool777, sizeof(tool777), "%s/tool.sh", dir777);
    write_at(tool777, "#!/bin/sh\nexit 0\n", 0755);
    snprintf(policy, sizeof(policy), BASE "isolation: process\ncommand: [%s]\n", tool777);
    r = lint_one(put(t->dir, "p.yaml", policy), &status);
    f = finding(r, "GH109", false);
    assert_non_null(f);
    assert_non_null(
        strstr(json_string_value(json_object_get(f, "message")), "writable by everyone"));
    json_decref(r);
    /* A symbolic link in that directory to the root-owned tool: the link can be re-pointed. */
    char link[300];
    snprintf(link, sizeof(link), "%s/link.sh", dir777);
    assert_int_equal(symlink(tool, link), 0);
    snprintf(policy, sizeof(policy), BASE "isolation: process\ncommand: [%s]\n", link);
    r = lint_one(put(t->dir, "p.yaml", policy), &status);
    f = finding(r, "GH109", false);
    assert_non_null(f);
    assert_non_null(strstr(json_string_value(json_object_get(f, "message")), "/open is writable"));
    json_decref(r);
}

/* ---- suppression -------------------------------------------------------------------------- */

#define NO_LIMITS                                                                                  \
    "name: t\ndescription: d\nblast_radius: low\nisolation: container\ncommand: [/bin/true]\n"

static void test_lint_suppression_needs_a_reason(void **state)
{
    struct tmp *t = *state;
    int status = 0;
    /* With a reason: suppressed, the reason kept, exit 0. */
    json_t *r =
        lint_one(put(t->dir, "s.yaml",
                     "# gatehouse: allow GH104 -- a fixed-size tool, defaults fit\n" NO_LIMITS),
                 &status);
    json_t *f = finding(r, "GH104", true);
    assert_non_null(f);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(f, "suppressed"), "reason")),
        "a fixed-size tool, defaults fit");
    assert_null(finding(r, "GH104", false));
    assert_int_equal(status, 0);
    json_decref(r);
    /* The reason may go on in the comment lines right below. */
    r = lint_one(
        put(t->dir, "s.yaml",
            "# gatehouse: allow GH104 -- a fixed-size tool,\n#   defaults fit\n" NO_LIMITS),
        &status);
    f = finding(r, "GH104", true);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(f, "suppressed"), "reason")),
        "a fixed-size tool, defaults fit");
    json_decref(r);
    /* Without a reason: nothing suppressed, and the comment is an error of its own. */
    const char *bad[] = {"# gatehouse: allow GH104\n", "# gatehouse: allow GH104 --   \n",
                         "# gatehouse: allow GH999 -- no such rule\n",
                         "# gatehouse: allow GH001 -- load errors cannot be waived\n",
                         "# gatehouse: permit GH104 -- typo\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "%s%s", bad[i], NO_LIMITS);
        r = lint_one(put(t->dir, "s.yaml", text), &status);
        assert_non_null(finding(r, "GH104", false));
        f = finding(r, "GH002", false);
        assert_non_null(f);
        assert_int_equal(json_integer_value(json_object_get(f, "line")), 1);
        assert_int_equal(status, 1);
        json_decref(r);
    }
    /* A suppression that matches nothing is reported; '#' inside scalars is not a comment. */
    r = lint_one(put(t->dir, "s.yaml",
                     BASE PROC "# gatehouse: allow GH110 -- nothing to allow\n"
                               "env: {A: \"x # gatehouse: allow GH104 -- in a string\"}\n"),
                 &status);
    f = finding(r, "GH003", false);
    assert_non_null(f);
    assert_int_equal(json_integer_value(json_object_get(f, "line")), 7);
    assert_int_equal(status, 0);
    json_decref(r);
    r = lint_one(put(t->dir, "s.yaml",
                     "description: |\n  text\n  # gatehouse: allow GH104 -- inside a block scalar\n"
                     "name: t\nblast_radius: low\nisolation: container\ncommand: [/bin/true]\n"),
                 &status);
    assert_non_null(finding(r, "GH104", false));
    assert_null(finding(r, "GH003", false));
    json_decref(r);
    /* A trailing comment on the line of the key, several ids at once. */
    r = lint_one(put(t->dir, "s.yaml",
                     NO_LIMITS "env: {API_KEY: k}  # gatehouse: allow GH110, GH104 -- test key\n"),
                 &status);
    assert_non_null(finding(r, "GH110", true));
    assert_non_null(finding(r, "GH104", true));
    assert_int_equal(status, 0);
    json_decref(r);
}

static void test_lint_config_disables_and_relevels(void **state)
{
    struct tmp *t = *state;
    char *paths[] = {strdup(put(t->dir, "p.yaml", NO_LIMITS "env: {DB_PASSWORD: hunter2}\n"))};
    int status = 0;
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "%s/lint.cfg", t->dir);
    write_at(cfg,
             "fail_on: warning\nrules:\n  GH104: {level: off, reason: limits come from the host}\n"
             "  GH110: {level: note, reason: a throwaway test database}\n",
             0644);
    json_t *r = lint_json(paths, 1, cfg, NULL, &status);
    json_t *f = finding(r, "GH104", true);
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(json_object_get(f, "suppressed"), "by")),
                        "config");
    f = finding(r, "GH110", false);
    assert_string_equal(json_string_value(json_object_get(f, "level")), "note");
    assert_int_equal(status, 0);
    json_decref(r);
    /* --fail-on note: the note now fails (2). */
    r = lint_json(paths, 1, cfg, "note", &status);
    assert_int_equal(status, 2);
    json_decref(r);
    /* A rule entry without a reason, an unknown rule, lowering a load error: refused. */
    const char *bad[] = {"rules:\n  GH104: {level: off}\n",
                         "rules:\n  GH777: {level: off, reason: x}\n",
                         "rules:\n  GH001: {level: note, reason: x}\n", "fail_on: sometimes\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_at(cfg, bad[i], 0644);
        assert_null(lint_json(paths, 1, cfg, NULL, &status));
        assert_int_equal(status, -1);
    }
    free(paths[0]);
}

static void test_lint_exit_codes(void **state)
{
    struct tmp *t = *state;
    int status = 0;
    json_t *r = lint_one(put(t->dir, "c.yaml", BASE "isolation: container\ncommand: [/bin/true]\n"),
                         &status);
    assert_int_equal(status, 0);
    json_decref(r);
    char *paths[] = {strdup(put(t->dir, "w.yaml", NO_LIMITS))};
    r = lint_json(paths, 1, NULL, NULL, &status); /* a warning, fail-on warning (default) */
    assert_int_equal(status, 2);
    json_decref(r);
    r = lint_json(paths, 1, NULL, "error", &status);
    assert_int_equal(status, 0);
    json_decref(r);
    r = lint_json(paths, 1, NULL, "none", &status);
    assert_int_equal(status, 0);
    json_decref(r);
    free(paths[0]);
    /* A policy that does not load: GH001 at the error, exit 1 whatever --fail-on says. */
    char *broken[] = {strdup(put(t->dir, "x.yaml", BASE PROC "limits: {pids: 0}\n"))};
    r = lint_json(broken, 1, NULL, "none", &status);
    assert_int_equal(status, 1);
    json_t *f = finding(r, "GH001", false);
    assert_non_null(f);
    json_decref(r);
    free(broken[0]);
    /* Duplicate names across a directory are a load error too. */
    put(t->dir, "c2.yaml", BASE "isolation: container\ncommand: [/bin/true]\n");
    unlink(put(t->dir, "x.yaml", ""));
    unlink(put(t->dir, "w.yaml", ""));
    char *dir[] = {t->dir};
    r = lint_json(dir, 1, NULL, NULL, &status);
    f = finding(r, "GH001", false);
    assert_non_null(f);
    assert_non_null(
        strstr(json_string_value(json_object_get(f, "message")), "duplicate tool name"));
    assert_int_equal(status, 1);
    json_decref(r);
}

/* ---- diff: every change class ------------------------------------------------------------- */

#define D_HEAD "name: t\ndescription: d\n"
#define D_LIMITS "limits: {wall_timeout: 5s, memory_mb: 64, pids: 8, output_bytes: 4096}\n"
#define D_ARGS                                                                                     \
    "arguments:\n  type: object\n  properties:\n"                                                  \
    "    text: {type: string, maxLength: 64, pattern: \"^[a-z]+$\"}\n"                             \
    "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n"
#define D_BASE D_HEAD "isolation: container\ncommand: [/bin/true]\nblast_radius: high\n" D_LIMITS

struct diff_case {
    const char *name;
    const char *before, *after;
    const char *key;   /* the change expected */
    const char *klass; /* weakens, strengthens, neutral */
    size_t only;       /* the number of changes: nothing else is reported */
};

static const struct diff_case diff_cases[] = {
    {"isolation lowered", D_BASE,
     D_HEAD "isolation: process\ncommand: [/bin/true]\n"
            "blast_radius: high\n" D_LIMITS,
     "isolation", "weakens", 1},
    {"isolation raised", D_BASE,
     D_HEAD "isolation: gvisor\ncommand: [/bin/true]\n"
            "blast_radius: high\n" D_LIMITS,
     "isolation", "strengthens", 1},
    {"container to wasm", D_BASE,
     D_HEAD "isolation: wasm\nmodule: m.wasm\nblast_radius: high\n" D_LIMITS, "isolation",
     "strengthens", 2},
    {"gvisor to wasm",
     D_HEAD "isolation: gvisor\ncommand: [/bin/true]\nblast_radius: high\n" D_LIMITS,
     D_HEAD "isolation: wasm\nmodule: m.wasm\nblast_radius: high\n" D_LIMITS, "isolation",
     "weakens", 2},
    {"approval added", D_BASE, D_BASE "approval: {required: true}\n", "approval.required",
     "strengthens", 1},
    {"approval removed", D_BASE "approval: {required: true}\n", D_BASE, "approval.required",
     "weakens", 1},
    {"approval window longer", D_BASE "approval: {required: true, timeout: 1h}\n",
     D_BASE "approval: {required: true, timeout: 2h}\n", "approval.timeout", "weakens", 1},
    {"approval window shorter", D_BASE "approval: {required: true, timeout: 1h}\n",
     D_BASE "approval: {required: true, timeout: 10m}\n", "approval.timeout", "strengthens", 1},
    {"approval webhook changed", D_BASE "approval: {required: true}\n",
     D_BASE "approval: {required: true, webhook: \"http://elsewhere:9/h\"}\n", "approval.webhook",
     "weakens", 1},
    {"reversible flipped to true", D_BASE "reversible: false\napproval: {required: true}\n",
     D_BASE "reversible: true\napproval: {required: true}\n", "reversible", "weakens", 1},
    {"reversible flipped to false", D_BASE "approval: {required: true}\n",
     D_BASE "reversible: false\napproval: {required: true}\n", "reversible", "strengthens", 1},
    {"blast radius lowered", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/true]\nblast_radius: low\n" D_LIMITS,
     "blast_radius", "weakens", 1},
    {"limit raised", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/true]\nblast_radius: high\n"
            "limits: {wall_timeout: 5s, memory_mb: 512, pids: 8, output_bytes: 4096}\n",
     "limits.memory_mb", "weakens", 1},
    {"limit lowered", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/true]\nblast_radius: high\n"
            "limits: {wall_timeout: 1s, memory_mb: 64, pids: 8, output_bytes: 4096}\n",
     "limits.wall_timeout", "strengthens", 1},
    {"limit removed: the larger default", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/true]\nblast_radius: high\n"
            "limits: {wall_timeout: 5s, memory_mb: 64, output_bytes: 4096}\n",
     "limits.pids", "weakens", 1},
    {"empty sections change nothing", D_BASE "\n",
     D_BASE "filesystem: {}\n"
            "seccomp: {}\n"
            "pool: {}\n"
            "env: {}\n",
     NULL, NULL, 0},
    {"a comment changes nothing", D_BASE D_ARGS, D_BASE D_ARGS "  # same\n", NULL, NULL, 0},
    {"argument added", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n"
            "    extra: {type: integer}\n  required: [text]\n",
     "arguments.properties.extra", "weakens", 1},
    {"maxLength removed", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.maxLength", "weakens", 1},
    {"maxLength loosened", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 128, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.maxLength", "weakens", 1},
    {"maxLength tightened", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 8, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.maxLength", "strengthens", 1},
    {"pattern removed", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.pattern", "weakens", 1},
    {"pattern lost its anchors", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"[a-z]+\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.pattern", "weakens", 1},
    {"pattern changed", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"^[a-z0-9]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.pattern", "neutral", 1},
    {"enum value added", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow, reckless]}\n  required: [text]\n",
     "arguments.properties.mode.enum", "weakens", 1},
    {"enum removed", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string}\n  required: [text]\n",
     "arguments.properties.mode.enum", "weakens", 1},
    {"additionalProperties opened", D_BASE D_ARGS, D_BASE D_ARGS "  additionalProperties: true\n",
     "arguments.additionalProperties", "weakens", 1},
    {"required dropped", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: string, maxLength: 64, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n",
     "arguments.required", "weakens", 1},
    {"type widened", D_BASE D_ARGS,
     D_BASE "arguments:\n  type: object\n  properties:\n"
            "    text: {type: [string, \"null\"], maxLength: 64, pattern: \"^[a-z]+$\"}\n"
            "    mode: {type: string, enum: [fast, slow]}\n  required: [text]\n",
     "arguments.properties.text.type", "weakens", 1},
    {"command changed", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/false]\nblast_radius: high\n" D_LIMITS, "command",
     "neutral", 1},
    {"command now runs code", D_BASE,
     D_HEAD "isolation: container\ncommand: [/bin/sh, -c, x]\nblast_radius: high\n" D_LIMITS,
     "command", "weakens", 1},
    {"env added", D_BASE, D_BASE "env: {MODE: fast}\n", "env", "weakens", 1},
    {"env value changed", D_BASE "env: {MODE: fast}\n", D_BASE "env: {MODE: slow}\n", "env",
     "neutral", 1},
    {"env removed", D_BASE "env: {MODE: fast}\n", D_BASE, "env", "strengthens", 1},
    {"read-only path added", D_BASE, D_BASE "filesystem: {read_only: [/usr, /srv]}\n",
     "filesystem.read_only", "weakens", 1},
    {"workspace added", D_BASE, D_BASE "filesystem: {workspace: {size_mb: 8}}\n",
     "filesystem.workspace", "weakens", 2},
    {"exec workspace", D_BASE, D_BASE "filesystem: {exec_workspace: true}\n",
     "filesystem.exec_workspace", "weakens", 1},
    {"network widened",
     D_HEAD "isolation: gvisor\ncommand: [/bin/true]\nblast_radius: high\n" D_LIMITS,
     D_HEAD "isolation: gvisor\ncommand: [/bin/true]\nblast_radius: high\n" D_LIMITS
            "network: sandbox\n",
     "network", "weakens", 1},
    {"syscall allowed", D_BASE, D_BASE "seccomp: {allow: [ptrace]}\n", "seccomp.allow", "weakens",
     1},
    {"syscall no longer denied", D_BASE "seccomp: {deny: [bpf]}\n", D_BASE, "seccomp.deny",
     "weakens", 1},
    {"description changed", D_BASE,
     "name: t\ndescription: other\nisolation: container\n"
     "command: [/bin/true]\nblast_radius: high\n" D_LIMITS,
     "description", "neutral", 1},
    {"pool size changed", D_BASE, D_BASE "pool: {size: 4}\n", "pool.size", "neutral", 1},
};

static json_t *diff_json(const char *base, const char *head, int *status)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct policy_diff_opts o = {.format = POLICY_REPORT_JSON};
    struct gate_error err = {0};
    *status = policy_diff(base, head, &o, out, &err);
    fclose(out);
    if (*status < 0) print_message("diff: %s\n", err.msg);
    json_t *j = *status < 0 ? NULL : json_loads(text, 0, NULL);
    free(text);
    return j;
}

static bool has_change(json_t *report, const char *key, const char *klass)
{
    size_t i, k;
    json_t *t, *c;
    json_array_foreach(json_object_get(report, "tools"), i, t)
        json_array_foreach(json_object_get(t, "changes"), k, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "key")), key) &&
            !strcmp(json_string_value(json_object_get(c, "class")), klass))
            return true;
    }
    return false;
}

static size_t change_count(json_t *report)
{
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(report, "tools"), i, t) n +=
        json_array_size(json_object_get(t, "changes"));
    return n;
}

static void test_diff_classifies_every_change(void **state)
{
    struct tmp *t = *state;
    char base[256], head[256];
    snprintf(base, sizeof(base), "%s/base", t->dir);
    snprintf(head, sizeof(head), "%s/head", t->dir);
    assert_int_equal(mkdir(base, 0755), 0);
    assert_int_equal(mkdir(head, 0755), 0);
    for (size_t i = 0; i < sizeof(diff_cases) / sizeof(diff_cases[0]); i++) {
        const struct diff_case *dc = &diff_cases[i];
        put(base, "t.yaml", dc->before);
        put(head, "t.yaml", dc->after);
        int status = 0;
        json_t *r = diff_json(base, head, &status);
        assert_non_null(r);
        bool ok = (!dc->key || has_change(r, dc->key, dc->klass)) && change_count(r) == dc->only;
        if (!ok) {
            char *s = json_dumps(r, JSON_INDENT(1));
            print_message("case '%s': want %s %s\n%s\n", dc->name, dc->klass ? dc->klass : "",
                          dc->key ? dc->key : "no change", s);
            free(s);
        }
        assert_true(ok);
        /* Exit 3 exactly when something weakens. */
        size_t k, j;
        json_t *tool, *c;
        bool weakens = false;
        json_array_foreach(json_object_get(r, "tools"), k, tool)
            json_array_foreach(json_object_get(tool, "changes"), j, c) weakens |=
            !strcmp(json_string_value(json_object_get(c, "class")), "weakens");
        assert_int_equal(status, weakens ? 3 : 0);
        json_decref(r);
    }
}

static void test_diff_tools_added_removed_renamed_broken(void **state)
{
    struct tmp *t = *state;
    char base[256], head[256];
    snprintf(base, sizeof(base), "%s/base", t->dir);
    snprintf(head, sizeof(head), "%s/head", t->dir);
    assert_int_equal(mkdir(base, 0755), 0);
    assert_int_equal(mkdir(head, 0755), 0);
    put(base, "a.yaml", "name: alpha\ndescription: d\nisolation: process\ncommand: [/bin/true]\n");
    put(base, "b.yaml", "name: beta\ndescription: d\nisolation: process\ncommand: [/bin/true]\n");
    put(head, "b.yaml", "name: bravo\ndescription: d\nisolation: process\ncommand: [/bin/true]\n");
    put(head, "c.yaml", "name: gamma\ndescription: d\nisolation: process\ncommand: [/bin/true]\n");
    int status = 0;
    json_t *r = diff_json(base, head, &status);
    assert_non_null(r);
    json_t *s = json_object_get(r, "summary");
    assert_int_equal(json_integer_value(json_object_get(s, "added")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "removed")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "renamed")), 1);
    assert_true(has_change(r, "tool", "weakens"));     /* gamma: a new tool */
    assert_true(has_change(r, "tool", "strengthens")); /* alpha: gone */
    assert_true(has_change(r, "name", "neutral"));     /* beta -> bravo */
    assert_int_equal(status, 3);
    json_decref(r);
    /* A HEAD policy that does not load: reported, exit 1. */
    put(head, "c.yaml",
        "name: gamma\ndescription: d\nisolation: process\ncommand: [/bin/true]\nbogus: 1\n");
    r = diff_json(base, head, &status);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "summary"), "broken")),
                     1);
    assert_int_equal(status, 1);
    json_decref(r);
}

/* ---- explain: defaults marked ------------------------------------------------------------- */

static void test_explain_marks_defaults(void **state)
{
    struct tmp *t = *state;
    const char *path = put(t->dir, "e.yaml",
                           "name: e\ndescription: d\nisolation: process\n"
                           "command: [/bin/true]\nlimits: {pids: 3}\n");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct policy_explain_opts o = {.format = POLICY_REPORT_JSON};
    struct gate_error err = {0};
    assert_int_equal(policy_explain(path, &o, out, &err), 0);
    fclose(out);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    json_t *pol = json_object_get(j, "policy");
    json_t *pids = json_object_get(pol, "limits.pids"),
           *mem = json_object_get(pol, "limits.memory_mb");
    assert_int_equal(json_integer_value(json_object_get(pids, "value")), 3);
    assert_true(json_is_false(json_object_get(pids, "default")));
    assert_int_equal(json_integer_value(json_object_get(pids, "line")), 5);
    assert_int_equal(json_integer_value(json_object_get(mem, "value")), 256);
    assert_true(json_is_true(json_object_get(mem, "default")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(pol, "limits.wall_timeout"), "value")),
        "10s");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(pol, "blast_radius"), "value")),
        "medium");
    assert_non_null(json_object_get(json_object_get(j, "input_schema"), "properties"));
    assert_non_null(finding(json_object_get(j, "lint"), "GH104", false));
    json_decref(j);
}

/* ---- the JSON Schema of policy files ------------------------------------------------------ */

static void test_schema_file_matches_key_table(void **state)
{
    (void)state;
    const char *src = getenv("GATE_SOURCE_DIR");
    if (!src) {
        print_message("GATE_SOURCE_DIR not set (ctest sets it)\n");
        fail();
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/policy/policy.schema.json", src);
    json_error_t jerr;
    json_t *file = json_load_file(path, 0, &jerr);
    assert_non_null(file);
    json_t *gen = policy_file_schema();
    assert_non_null(gen);
    if (!json_equal(file, gen))
        print_message("%s differs from the key table: run `build/gateway/gatehouse policy schema > "
                      "policy/policy.schema.json`\n",
                      path);
    assert_true(json_equal(file, gen));
    /* Every key of the table is in the schema. */
    assert_non_null(json_object_get(json_object_get(gen, "properties"), "limits"));
    assert_non_null(json_object_get(
        json_object_get(json_object_get(json_object_get(gen, "properties"), "limits"),
                        "properties"),
        "memory_mb"));
    json_decref(file);
    json_decref(gen);
}

/* The argument keywords the schema names are exactly the ones the loader accepts: every JSON
 * Schema 2020-12 keyword is tried on the loader with a valid value. */
static void test_schema_argument_keywords_agree_with_loader(void **state)
{
    (void)state;
    static const char *const samples[][2] = {
        {"$schema", "\"https://json-schema.org/draft/2020-12/schema\""},
        {"$id", "x"},
        {"$ref", "\"#/$defs/a\""},
        {"$defs", "{a: {type: string}}"},
        {"$anchor", "a"},
        {"$dynamicRef", "\"#a\""},
        {"$dynamicAnchor", "a"},
        {"$vocabulary", "{}"},
        {"$comment", "c"},
        {"allOf", "[{type: string}]"},
        {"anyOf", "[{type: string}]"},
        {"oneOf", "[{type: string}]"},
        {"not", "{type: integer}"},
        {"if", "{type: string}"},
        {"then", "{type: string}"},
        {"else", "{type: string}"},
        {"dependentSchemas", "{}"},
        {"prefixItems", "[{type: string}]"},
        {"items", "{type: string}"},
        {"contains", "{type: string}"},
        {"properties", "{}"},
        {"patternProperties", "{}"},
        {"additionalProperties", "false"},
        {"propertyNames", "{type: string}"},
        {"unevaluatedItems", "false"},
        {"unevaluatedProperties", "false"},
        {"type", "string"},
        {"enum", "[a]"},
        {"const", "a"},
        {"multipleOf", "2"},
        {"maximum", "5"},
        {"exclusiveMaximum", "5"},
        {"minimum", "1"},
        {"exclusiveMinimum", "1"},
        {"maxLength", "5"},
        {"minLength", "1"},
        {"pattern", "\"^a$\""},
        {"maxItems", "5"},
        {"minItems", "1"},
        {"uniqueItems", "true"},
        {"maxContains", "2"},
        {"minContains", "1"},
        {"maxProperties", "3"},
        {"minProperties", "1"},
        {"required", "[]"},
        {"dependentRequired", "{}"},
        {"title", "t"},
        {"description", "d"},
        {"default", "a"},
        {"deprecated", "false"},
        {"readOnly", "false"},
        {"writeOnly", "false"},
        {"examples", "[a]"},
        {"format", "uuid"},
        {"contentEncoding", "base64"},
        {"contentMediaType", "text/plain"},
        {"contentSchema", "{type: string}"},
    };
    json_t *gen = policy_file_schema();
    json_t *kws =
        json_object_get(
            json_object_get(json_object_get(json_object_get(gen, "$defs"), "argument_schema"),
                            "properties"),
            "type")
            ? json_object_get(json_object_get(json_object_get(gen, "$defs"), "argument_schema"),
                              "properties")
            : NULL;
    assert_non_null(kws);
    int disagreements = 0;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        char yaml[1024];
        snprintf(yaml, sizeof(yaml),
                 "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"
                 "arguments:\n  type: object\n  $defs: {a: {type: string}}\n"
                 "  properties:\n    p: {%s: %s}\n",
                 samples[i][0], samples[i][1]);
        /* $defs is only there for $ref: a loader without $defs refuses the policy for it. */
        if (strcmp(samples[i][0], "$ref") != 0 && strcmp(samples[i][0], "$defs") != 0)
            snprintf(yaml, sizeof(yaml),
                     "name: t\ndescription: d\nisolation: process\ncommand: [/bin/true]\n"
                     "arguments:\n  type: object\n  properties:\n    p: {%s: %s}\n",
                     samples[i][0], samples[i][1]);
        struct policy *p = NULL;
        struct policy_diags d = {0};
        bool loads = policy_load_buf("kw.yaml", yaml, strlen(yaml), &p, &d) == 0;
        bool in_schema = json_object_get(kws, samples[i][0]) != NULL;
        if (loads != in_schema) {
            print_message("keyword '%s': the loader %s it, policy.schema.json %s it%s%s\n",
                          samples[i][0], loads ? "accepts" : "refuses",
                          in_schema ? "lists" : "does not list", d.n ? ": " : "",
                          d.n ? d.msgs[0] : "");
            disagreements++;
        }
        policy_free(p);
        policy_diags_free(&d);
    }
    json_decref(gen);
    assert_int_equal(disagreements, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lint_each_rule_fires_and_its_twin_is_quiet, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_lint_program_path_and_owner, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_lint_suppression_needs_a_reason, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_lint_config_disables_and_relevels, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_lint_exit_codes, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_diff_classifies_every_change, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_diff_tools_added_removed_renamed_broken, tmp_setup,
                                        tmp_teardown),
        cmocka_unit_test_setup_teardown(test_explain_marks_defaults, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_schema_file_matches_key_table),
        cmocka_unit_test(test_schema_argument_keywords_agree_with_loader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
