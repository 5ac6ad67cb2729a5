/* diff.h: what the files of `policy diff` share (diff.c, diff_git.c, diff_schema.c,
 * diff_output.c). */
#ifndef GATE_POLICY_DIFF_H
#define GATE_POLICY_DIFF_H

#include "lint.h"

enum diff_class { DIFF_WEAKENS, DIFF_STRENGTHENS, DIFF_NEUTRAL };
const char *diff_class_name(enum diff_class c);

struct diff_change {
    enum diff_class cls;
    char *key;    /* "limits.memory_mb", "arguments.properties.text.maxLength", "tool" */
    char *before; /* as YAML text; "" when absent */
    char *after;
    char *reason;
    struct policy_loc loc; /* in the HEAD file (line 1 when the tool is gone) */
};

enum diff_status { DIFF_CHANGED, DIFF_ADDED, DIFF_REMOVED, DIFF_RENAMED, DIFF_BROKEN };

struct diff_tool {
    char *name;     /* HEAD's name (BASE's for a removed tool) */
    char *old_name; /* BASE's name when renamed */
    char *path;     /* HEAD's file (BASE's for a removed tool) */
    enum diff_status status;
    char *error; /* DIFF_BROKEN: why HEAD's policy does not load */
    struct diff_change *changes;
    size_t n, cap;
};

struct diff_report {
    char *base_label, *head_label;
    struct diff_tool *tools;
    size_t n, cap;
    char **notes; /* base policies that did not load, ... */
    size_t nnotes;
};

/* A policy tree: every policy file of one side, loaded offline, with a hash of each tool's
 * program file where the tree holds it (sha256 of the file, or git's blob id). */
struct diff_side {
    struct review_file *files;
    char **prog_hash; /* parallel to files; NULL where unknown */
    size_t n;
};
void diff_side_free(struct diff_side *s);
int diff_side_load_dir(const char *dir, struct diff_side *s, struct gate_error *err);
int diff_side_load_git(const char *repo, const char *rev, const char *dir, struct diff_side *s,
                       struct gate_error *err);
/* Add the side's file (text taken over) and its program's hash (taken over, may be NULL). */
int diff_side_add(struct diff_side *s, const char *path, char *text, size_t len);

void diff_add(struct diff_tool *t, enum diff_class cls, const char *key, const char *before,
              const char *after, struct policy_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Every change between two argument schemas (JSON), located in HEAD's tree. */
void diff_arguments(struct diff_tool *t, const json_t *base, const json_t *head,
                    const struct ynode *head_args);

void diff_print(const struct diff_report *r, enum policy_report_format fmt, FILE *out);
void diff_report_free(struct diff_report *r);

#endif
