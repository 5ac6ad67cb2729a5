/* cli_policy.c: `gatehouse policy ...`: a table of subcommands, each a thin front end to the
 * policy module (check also prepares every policy for its tier, as `serve` does).
 *
 * Exit codes: check 0 / 1 (errors); lint 0 clean, 1 errors, 2 warnings at or above
 * --fail-on; diff 0, 3 when a change weakens security, 1 when a policy does not load;
 * explain 0 / 1; 64 for a command line that cannot be understood.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define EXIT_USAGE 64

static int usage(const char *cmd, FILE *f);

static int policy_check(int argc, char **argv)
{
    if (argc != 2) return usage("check", stderr);
    /* The same load and per-tier preparation as `serve`, so what passes here loads there. */
    char tmp[] = "/tmp/gatehouse-check-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    struct sbx_config sc = {.state_dir = tmp,
                            .tool_uid = 65534,
                            .tool_gid = 65534,
                            .call_uid_base = 1900000000,
                            .call_uid_count = 1};
    sbx_init(&sc);
    struct policy_diags diags = {0};
    struct policy_set *set = NULL;
    if (policy_set_load(argv[1], &set, &diags) == 0) {
        for (size_t i = 0; i < set->n; i++) {
            struct policy *p = set->items[i];
            const char *why = sbx_unavailable_reason(p->isolation);
            /* A tier this host cannot run is checked where it can; one this build lacks is
             * an error everywhere. */
            if (*why && !strstr(why, "not built")) {
                printf("%s: note: isolation '%s' not checked on this host: %s\n", p->path,
                       policy_isolation_name(p->isolation), why);
                continue;
            }
            struct gate_error err = {0};
            if (sbx_prepare(p, &err) < 0) policy_diags_add(&diags, "%s", err.msg);
        }
    }
    for (size_t i = 0; i < diags.n; i++)
        fprintf(stderr, "%s\n", diags.msgs[i]);
    int bad = diags.n > 0;
    if (!bad)
        printf("%zu policies OK in %s\n", set ? set->n : 0, argv[1]);
    else
        fprintf(stderr, "%zu error(s)\n", diags.n);
    policy_diags_free(&diags);
    policy_set_unref(set);
    sbx_shutdown();
    char rm[128];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", tmp);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return bad ? 1 : 0;
}

/* --name VALUE options of one subcommand; the rest are operands. */
struct option {
    const char *name;
    const char **value; /* NULL: a flag, set in *flag */
    bool *flag;
};

static int parse(int argc, char **argv, const struct option *opts, char **operands,
                 size_t *noperands, size_t max)
{
    *noperands = 0;
    for (int i = 1; i < argc; i++) {
        const struct option *o = NULL;
        for (size_t k = 0; opts[k].name && !o; k++)
            if (!strcmp(argv[i], opts[k].name)) o = &opts[k];
        if (o && o->value && i + 1 < argc)
            *o->value = argv[++i];
        else if (o && o->flag)
            *o->flag = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return -1;
        else if (*noperands < max)
            operands[(*noperands)++] = argv[i];
        else
            return -1;
    }
    return 0;
}

static int format_of(const char *name, int fallback)
{
    return name ? policy_report_format_parse(name) : fallback;
}

static int report(int rc, const struct gate_error *err, const char *cmd)
{
    if (rc >= 0) return rc;
    fprintf(stderr, "gatehouse policy %s: %s\n", cmd, err->msg);
    return 1;
}

static int policy_lint_cmd(int argc, char **argv)
{
    const char *format = NULL;
    struct policy_lint_opts o = {0};
    const struct option opts[] = {{"--format", &format, NULL},
                                  {"--config", &o.config, NULL},
                                  {"--fail-on", &o.fail_on, NULL},
                                  {"--offline", NULL, &o.offline},
                                  {NULL, NULL, NULL}};
    char *paths[256];
    size_t n = 0;
    int fmt = -1;
    if (parse(argc, argv, opts, paths, &n, 256) < 0 || n == 0 ||
        (fmt = format_of(format, POLICY_REPORT_TEXT)) < 0 || fmt == POLICY_REPORT_MARKDOWN)
        return usage("lint", stderr);
    o.format = (enum policy_report_format)fmt;
    struct gate_error err = {0};
    return report(policy_lint(paths, n, &o, stdout, &err), &err, "lint");
}

static int policy_diff_cmd(int argc, char **argv)
{
    const char *format = NULL;
    struct policy_diff_opts o = {0};
    const struct option opts[] = {{"--format", &format, NULL},
                                  {"--git", NULL, &o.git},
                                  {"--repo", &o.repo, NULL},
                                  {"--dir", &o.dir, NULL},
                                  {NULL, NULL, NULL}};
    char *sides[2];
    size_t n = 0;
    int fmt = -1;
    if (parse(argc, argv, opts, sides, &n, 2) < 0 || n != 2 ||
        (fmt = format_of(format, POLICY_REPORT_TEXT)) < 0)
        return usage("diff", stderr);
    o.format = (enum policy_report_format)fmt;
    struct gate_error err = {0};
    return report(policy_diff(sides[0], sides[1], &o, stdout, &err), &err, "diff");
}

static int policy_explain_cmd(int argc, char **argv)
{
    const char *format = NULL;
    struct policy_explain_opts o = {0};
    const struct option opts[] = {{"--format", &format, NULL},
                                  {"--policies", &o.policies, NULL},
                                  {"--config", &o.config, NULL},
                                  {NULL, NULL, NULL}};
    char *target[1];
    size_t n = 0;
    int fmt = -1;
    if (parse(argc, argv, opts, target, &n, 1) < 0 || n != 1 ||
        (fmt = format_of(format, POLICY_REPORT_TEXT)) < 0 ||
        (fmt != POLICY_REPORT_TEXT && fmt != POLICY_REPORT_JSON))
        return usage("explain", stderr);
    o.format = (enum policy_report_format)fmt;
    struct gate_error err = {0};
    return report(policy_explain(target[0], &o, stdout, &err), &err, "explain");
}

static int policy_schema_cmd(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) return usage("schema", stderr);
    json_t *s = policy_file_schema();
    if (!s) {
        fprintf(stderr, "gatehouse policy schema: out of memory\n");
        return 1;
    }
    json_dumpf(s, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(s);
    return 0;
}

static const struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;   /* one line for `gatehouse policy --help` */
    const char *synopsis;  /* its arguments, for its own usage */
    const char *valued[4]; /* its options that take a value (cli_wants_help) */
} subcommands[] = {
    {"check", policy_check, "load and prepare every policy as serve does", "DIR", {NULL}},
    {"lint",
     policy_lint_cmd,
     "load errors and risk rules (GH101...)",
     "DIR|FILE... [--format text|json|sarif|github] [--config lint.yaml] "
     "[--fail-on error|warning|note|none] [--offline]",
     {"--format", "--config", "--fail-on", NULL}},
    {"diff",
     policy_diff_cmd,
     "what a change weakens or strengthens",
     "BASE HEAD [--git [--repo DIR] [--dir policies]] "
     "[--format text|markdown|json|sarif|github]",
     {"--format", "--repo", "--dir", NULL}},
    {"explain",
     policy_explain_cmd,
     "effective policy, defaults marked, schema, findings",
     "TOOL|FILE [--policies DIR] [--config lint.yaml] [--format text|json]",
     {"--format", "--policies", "--config", NULL}},
    {"schema", policy_schema_cmd, "the JSON Schema of policy files", "", {NULL}},
};
#define NSUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

/* A subcommand's usage: on stdout with exit 0 for --help, on stderr with 64 for a command
 * line it cannot understand. */
static int usage(const char *cmd, FILE *f)
{
    for (size_t i = 0; i < NSUBCOMMANDS; i++)
        if (!strcmp(subcommands[i].name, cmd))
            fprintf(f, "usage: gatehouse policy %s %s\n\n%s.\n", cmd, subcommands[i].synopsis,
                    subcommands[i].summary);
    return f == stdout ? 0 : EXIT_USAGE;
}

int cmd_policy(int argc, char **argv)
{
    for (size_t i = 0; argc >= 2 && i < NSUBCOMMANDS; i++) {
        if (strcmp(argv[1], subcommands[i].name) != 0) continue;
        if (cli_wants_help(argc - 1, argv + 1, subcommands[i].valued))
            return usage(subcommands[i].name, stdout);
        return subcommands[i].run(argc - 1, argv + 1);
    }
    bool help = cli_wants_help(argc, argv, NULL);
    FILE *out = help ? stdout : stderr;
    fprintf(out, "usage: gatehouse policy COMMAND\n\n");
    for (size_t i = 0; i < NSUBCOMMANDS; i++)
        fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n`gatehouse policy COMMAND --help` prints a command's arguments.\n");
    return help ? 0 : EXIT_USAGE;
}
