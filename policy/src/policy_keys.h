/* policy_keys.h: the key table, the one place a policy key is declared.
 *
 * Each row of policy_keys[] (policy.c) says where a key lives in struct policy, its type,
 * range or names, its default, how `policy diff` classifies a change of it, and one line of
 * documentation. The loader reads and validates every key from it, applies the defaults from
 * it, `policy explain` prints effective values and marks defaults from it, lint (GH104) finds
 * limits left at their defaults from it, and policy/policy.schema.json is generated from it.
 * Rules that tie keys together are rows of policy_cross_rules[], checked by the loader and
 * turned into if/then clauses of the JSON Schema. Adding a key is one row (plus a reader hook
 * if its type needs more than the generic reader); see the header comment of policy.c.
 */
#ifndef GATE_POLICY_KEYS_H
#define GATE_POLICY_KEYS_H

#include "policy_internal.h"

enum pkey_type {
    PKEY_SECTION,     /* a mapping of the keys declared below it ("limits" -> "limits.pids") */
    PKEY_STRING,      /* char * */
    PKEY_BOOL,        /* bool */
    PKEY_UINT,        /* uint64_t or uint32_t (by the field's size), decimal, min..max */
    PKEY_DURATION,    /* uint64_t milliseconds; "250ms", "5s", "2m", "1h", "7d", bare seconds */
    PKEY_ENUM,        /* one of names[]: an int-sized enum holding the index */
    PKEY_CPU,         /* uint32_t thousandths of a core, written as cores with <= 3 decimals */
    PKEY_STRING_LIST, /* char **, NULL-terminated */
    PKEY_STRING_MAP,  /* char ** of "KEY=VALUE" (env) */
    PKEY_SCHEMA,      /* json_t * argument schema (and the compiled form) */
};

enum pkey_flags {
    PKEY_REQUIRED = 1u << 0,  /* must be written (cross rules can require more) */
    PKEY_OR_BOOL = 1u << 1,   /* a section that may also be written true/false; field is bool */
    PKEY_AS_STRING = 1u << 2, /* a PKEY_ENUM kept as a strdup'ed name (char *) */
    PKEY_EXPLICIT = 1u << 3,  /* lint GH104: reviewers want it written, not defaulted */
    PKEY_HOST = 1u << 4,      /* checked against the host (files exist): not in offline loads */
};

/* How `policy diff` classifies a change of the key's effective value. For PKEY_BOOL, true is
 * the larger value; for PKEY_ENUM, a later name in names[]. */
enum pkey_change {
    PCHANGE_IGNORED,         /* not security relevant; not reported */
    PCHANGE_NEUTRAL,         /* reported as neutral */
    PCHANGE_MORE_WEAKENS,    /* a larger value weakens, a smaller one strengthens */
    PCHANGE_LESS_WEAKENS,    /* a smaller value weakens */
    PCHANGE_ADDED_WEAKENS,   /* list or map: an entry added weakens, one removed strengthens */
    PCHANGE_REMOVED_WEAKENS, /* list: an entry removed weakens (seccomp.deny) */
    PCHANGE_CUSTOM,          /* diff.c compares it (isolation, command, module, arguments) */
};

struct loader;

struct policy_key {
    const char *path; /* "limits.memory_mb" */
    enum pkey_type type;
    unsigned flags;
    size_t offset, size;      /* the field in struct policy (size 0: a section without one) */
    uint64_t min, max;        /* PKEY_UINT; PKEY_DURATION in ms; PKEY_CPU in thousandths */
    const char *const *names; /* PKEY_ENUM, NULL-terminated */
    const char *def;          /* the default as YAML text, applied before the file is read */
    const char *def_doc;      /* the default in words where it is no value ("tier default") */
    enum pkey_change change;
    const char *weaker; /* diff: what a weaker value means, completing "... so " */
    const char *doc;    /* one line: explain, and the JSON Schema's description */
    const char *schema; /* JSON Schema fragment (JSON text) replacing the one the type gives */
    /* Reads the key instead of the generic reader (validation beyond type and range). */
    void (*read)(struct loader *l, const struct policy_key *k, const struct ynode *v);
};

extern const struct policy_key policy_keys[];
extern const size_t policy_nkeys;
#define POLICY_MAX_KEYS 128

const struct policy_key *policy_key_find(const char *path);
/* The last dotted component ("pids" of "limits.pids"). */
const char *policy_key_leaf(const struct policy_key *k);
/* k's parent section, or NULL for a top-level key. */
const struct policy_key *policy_key_parent(const struct policy_key *k);
/* The YAML node of key path in a policy tree (NULL when not written). */
const struct ynode *policy_key_node(const struct ynode *root, const char *path);
/* Where key path was written (its key's location), or the nearest written section's. */
struct policy_loc policy_key_loc(const struct ynode *root, const char *path);

/* Typed access to a key's field in a policy. */
void *pkey_field(const struct policy_key *k, const struct policy *p);
/* The generic reader of k's type: validates v and stores it in k's field, or reports. */
void pkey_read(struct pctx *c, const struct policy_key *k, const struct ynode *v);
/* The effective value as YAML text ("5s", "0.5", "[/usr, /etc]", "true"); out is reset. */
void pkey_format(const struct policy_key *k, const struct policy *p, struct gate_buf *out);
/* The effective value as JSON (numbers as numbers, durations as "5s"). New reference. */
json_t *pkey_json(const struct policy_key *k, const struct policy *p);
/* UINT, DURATION, CPU, BOOL, ENUM (index): the value as a number for comparisons. */
uint64_t pkey_number(const struct policy_key *k, const struct policy *p);
/* Format milliseconds the way durations are written ("90s" -> "90s", 3600000 -> "1h"). */
void policy_format_ms(uint64_t ms, char *buf, size_t len);

/* ---- rules that tie keys together ------------------------------------------------------- */
enum pcross_if { PCROSS_IF_IS, PCROSS_IF_IS_NOT };
enum pcross_then {
    PCROSS_PRESENT, /* then_key must be written */
    PCROSS_ABSENT,  /* then_key must not be written */
    PCROSS_IS,      /* then_key's effective value must be then_value */
    PCROSS_IS_NOT,  /* then_key's effective value must not be then_value */
};
enum pcross_at { PCROSS_AT_ROOT, PCROSS_AT_IF_VALUE, PCROSS_AT_THEN_KEY, PCROSS_AT_THEN_VALUE };

struct policy_cross_rule {
    const char *if_key; /* evaluated only when if_key was read without error */
    enum pcross_if op;
    const char *if_value; /* effective value as pkey_format prints it */
    const char *then_key;
    enum pcross_then then;
    const char *then_value;
    enum pcross_at at; /* where the error is reported */
    const char *rule;  /* lint rule id the error belongs to (GH101), or NULL */
    const char *msg;
};
extern const struct policy_cross_rule policy_cross_rules[];
extern const size_t policy_ncross_rules;

/* ---- loading for review tools ----------------------------------------------------------- */
struct policy_load_opts {
    /* Do not look at the host: command, module and filesystem paths are kept as written and
     * not checked (diff of a git revision, lint in CI without the tools built). */
    bool offline;
    struct ynode **tree; /* if set, receives the parsed YAML (ynode_free), even on failure */
};
int policy_load_ex(const char *path, const char *buf, size_t len,
                   const struct policy_load_opts *opts, struct policy **out,
                   struct policy_diags *diags);

/* pctx_err for an error that is also a lint rule: the diag carries the rule id. */
void pctx_err_rule(struct pctx *c, const char *rule, struct policy_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
