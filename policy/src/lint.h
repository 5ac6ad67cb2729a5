/* lint.h: what lint, diff and explain share inside the policy module.
 *
 * A review tool loads policy files with their YAML tree and text (struct review_file), runs
 * the lint rules over them (lint_rules.c) or compares two sets of them (diff*.c), and prints
 * findings in one of the report formats (lint_output.c, diff_output.c).
 */
#ifndef GATE_POLICY_LINT_H
#define GATE_POLICY_LINT_H

#include <stdio.h>

#include "policy_keys.h"

/* ---- policy files as review tools see them ---------------------------------------------- */
struct review_comment {
    struct policy_loc loc; /* of the '#' */
    char *text;            /* after the '#', trimmed */
};

struct review_file {
    char *path;   /* as it is printed and put in SARIF (relative when under the cwd) */
    char *source; /* as it was opened and named to the loader */
    char *text;   /* the file's bytes */
    size_t len;
    struct ynode *root; /* NULL when the YAML did not parse */
    struct policy *p;   /* NULL when the policy did not load */
    struct policy_diags diags;
    struct review_comment *comments; /* every YAML comment, in file order, once scanned */
    size_t ncomments;
};

/* path as printed: relative to the current directory when beneath it, without "./". */
char *review_display_path(const char *path);
/* Load path (bytes already read into text, taken over) with its tree and diags. Comments are
 * scanned by whoever needs them (review_scan_comments): a second pass over the YAML. */
int review_file_load(struct review_file *f, const char *path, char *text, size_t len, bool offline);
void review_file_free(struct review_file *f);
/* Every YAML comment of buf, found between libyaml's tokens (so '#' inside scalars, block
 * scalars included, is never taken for one). */
int review_scan_comments(const char *buf, size_t len, struct review_comment **out, size_t *n);

/* The policy files a command line names: FILE as given, DIR's *.yaml / *.yml in name order. */
int review_list_paths(char *const *paths, size_t npaths, char ***out, size_t *n,
                      struct gate_error *err);
void review_strv_free(char **v, size_t n);

/* Isolation strength, weakest first: process < container < wasm < gvisor < microvm. */
int review_isolation_rank(enum isolation iso);
extern const char review_isolation_order[];
/* argv runs code it is given (an interpreter with inline code, or reading its program from
 * stdin, which carries the call's arguments). why receives the reason. */
bool review_runs_received_code(char *const *argv, char *why, size_t whylen);

/* ---- lint --------------------------------------------------------------------------------- */
enum lint_level { LINT_OFF, LINT_NOTE, LINT_WARNING, LINT_ERROR };
const char *lint_level_name(enum lint_level l);
int lint_level_parse(const char *s); /* -1 if unknown; "none" and "off" are LINT_OFF */

struct lint_ctx;
struct lint_rule {
    const char *id;   /* stable: GH101 */
    const char *name; /* stable: irreversible-without-approval */
    enum lint_level level;
    bool suppressible;
    const char *summary;   /* one line: SARIF shortDescription */
    const char *rationale; /* why it matters */
    const char *fix;       /* how to fix it */
    void (*check)(struct lint_ctx *c);
};
extern const struct lint_rule lint_rules[];
extern const size_t lint_nrules;
const struct lint_rule *lint_rule_find(const char *id);

struct lint_finding {
    const struct lint_rule *rule;
    enum lint_level level;
    char *file;
    struct policy_loc loc;
    char *key; /* the policy key it concerns ("limits", "arguments.properties.text") */
    char *message;
    char *suppressed; /* the justification when suppressed, else NULL */
    bool in_source;   /* suppressed by a comment in the policy (else by lint.yaml) */
    char fingerprint[65];
};

struct lint_report {
    struct lint_finding *items;
    size_t n, cap;
    size_t files;
};
void lint_report_free(struct lint_report *r);

struct lint_rule_config {
    enum lint_level level;
    bool set;
    char *reason;
};

struct lint_config {
    enum lint_level fail_on;
    uint64_t approval_max_ms;
    char **sensitive_paths;         /* NULL-terminated, the built-in list plus the config's */
    struct lint_rule_config *rules; /* parallel to lint_rules[] */
};
/* Built-in settings, then the file's (path NULL: none). -1 with every error in err. */
int lint_config_load(const char *path, struct lint_config *cfg, struct gate_error *err);
void lint_config_free(struct lint_config *cfg);

struct lint_ctx {
    const struct lint_config *cfg;
    struct review_file *f;
    struct lint_report *rep;
    bool offline;
};
/* Add a finding of rule id for the current file. key names the policy key for the
 * fingerprint; level LINT_OFF means the rule's default level. */
void lint_emit(struct lint_ctx *c, const char *id, enum lint_level level, struct policy_loc loc,
               const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void lint_add(struct lint_report *rep, const struct lint_rule *rule, enum lint_level level,
              const char *file, struct policy_loc loc, const char *key, const char *msg);
/* Run every rule over one loaded file, then apply its `# gatehouse: allow` comments. */
void lint_file(struct lint_ctx *c);

/* Report output, and the exit status the findings give (0, 1 or 2). */
void lint_print(const struct lint_report *r, enum policy_report_format fmt, FILE *out);
json_t *lint_report_json(const struct lint_report *r); /* the JSON format's document */
/* Print j indented (key order kept) and release it; NULL prints an out-of-memory error. */
void review_print_json(json_t *j, FILE *out);
int lint_exit_status(const struct lint_report *r, enum lint_level fail_on);
/* Where a rule is documented: a README anchor under GATEHOUSE_HELP_URI (or the repository
 * GitHub Actions names in GITHUB_SERVER_URL / GITHUB_REPOSITORY). */
void lint_help_uri(const char *rule_id, char *out, size_t len);
/* SARIF 2.1.0: a reportingDescriptor, a result, and the log around a run's results. */
json_t *review_sarif_rule(const char *id, const char *name, const char *summary,
                          const char *rationale, const char *fix, enum lint_level level);
json_t *review_sarif_result(const char *rule_id, size_t rule_index, enum lint_level level,
                            const char *message, const char *path, struct policy_loc loc,
                            const char *fingerprint);
json_t *review_sarif_log(json_t *rules, json_t *results); /* steals both */
/* A file path as a SARIF artifact URI: relative paths as they are, absolute ones file://. */
void review_sarif_uri(const char *path, struct gate_buf *out);
/* GitHub workflow-command escaping of a message (%, CR, LF) or a property (also : and ,). */
void review_gh_escape(struct gate_buf *out, const char *s, bool property);

#endif
