/* policy.h: tool policies.
 *
 * A policy is one YAML file in the policies directory describing one tool: how
 * to run it, in which isolation tier, with which limits, which arguments it
 * accepts and whether a human must approve it. This module parses YAML safely
 * (size, alias, duplicate-key and YAML 1.1 boolean hazards refused), validates
 * every key with file:line:column locations, compiles the argument schema, and
 * owns the immutable, reference-counted policy set the gateway swaps on SIGHUP.
 * It knows nothing about sandboxes: tier-specific compilation happens in the
 * sandbox module's prepare step, which stores its state in policy->sbx_state.
 */
#ifndef GATE_POLICY_H
#define GATE_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gate.h"

enum isolation {
    ISOLATION_PROCESS,
    ISOLATION_CONTAINER,
    ISOLATION_GVISOR,
    ISOLATION_MICROVM,
    ISOLATION_WASM,
    ISOLATION__COUNT
};

enum blast_radius { BLAST_LOW, BLAST_MEDIUM, BLAST_HIGH, BLAST_CRITICAL };

/* microvm.accel: KVM where /dev/kvm works, else QEMU's TCG (auto); or insist on one. */
enum microvm_accel { MICROVM_ACCEL_AUTO, MICROVM_ACCEL_KVM, MICROVM_ACCEL_TCG };

enum network_mode {
    NETWORK_NONE,    /* empty network namespace: only lo (default) */
    NETWORK_SANDBOX, /* gVisor's own netstack (gvisor tier only) */
    NETWORK_EGRESS,  /* `network: {egress: [...], dns: bool}`: only the listed destinations */
};

const char *policy_isolation_name(enum isolation iso);
const char *policy_blast_name(enum blast_radius b);

/* A position in a YAML file, 1-based. */
struct policy_loc {
    int line;
    int col;
};

struct policy_limits {
    uint64_t wall_timeout_ms; /* default 10 s */
    uint64_t cpu_time_ms;     /* RLIMIT_CPU, default 10 s */
    uint64_t memory_mb;       /* address space / cgroup memory, default 256 */
    uint64_t pids;            /* RLIMIT_NPROC / pids.max, default 64 */
    uint64_t output_bytes;    /* stdout+stderr cap, default 1 MiB */
    uint64_t file_size_mb;    /* RLIMIT_FSIZE, default 64 */
    uint64_t disk_mb;         /* tmpfs size of /tmp (container, gvisor), default 64 */
    uint32_t cpu_millis;      /* CPU share in thousandths of a core ("cpu: 0.5"), default 1000 */
    uint64_t fuel;            /* wasm instruction budget; 0 = derive from cpu_time */
    uint64_t module_mb;       /* wasm module size cap, default 16 */
};

struct policy_filesystem {
    char **read_only; /* NULL-terminated list of absolute host paths bound read-only; NULL = tier
                         default */
    bool workspace;   /* a writable workspace is mounted (filesystem.workspace present) */
    uint64_t workspace_mb; /* its tmpfs size, default 64 */
    bool exec_workspace;   /* allow exec from writable mounts, default false */
};

/* One allowed destination of `network.egress`: a prefix and a port. A host name becomes one
 * entry per address it resolved to when the policy loaded. */
struct policy_egress {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order; 4 bytes used for AF_INET */
    uint8_t prefix;   /* prefix length in bits */
    uint16_t port;    /* host byte order, 1..65535 */
    struct policy_loc loc;
    uint16_t name; /* 1 + its index in names when it came from DNS for that name; else 0 */
};

/* A host name of `network.egress` answered by DNS (not /etc/hosts): its addresses are asked
 * for again when the answer's TTL runs out (sandboxes/common/netpolicy.c). */
struct policy_egress_name {
    char *host; /* owned */
    uint16_t port;
    uint32_t ttl_s; /* of the answer at load, clamped to POLICY_TTL_MIN_S..POLICY_TTL_MAX_S */
};
#define POLICY_TTL_MIN_S 5
#define POLICY_TTL_MAX_S 3600

struct policy_network {
    struct policy_egress *egress; /* owned */
    size_t n_egress;
    struct policy_egress_name *names; /* owned */
    size_t n_names;
    bool dns; /* port 53 (UDP and TCP) to the name servers of /etc/resolv.conf */
};
/* Ask DNS (libresolv, reading /etc/resolv.conf now) for host's A and AAAA records: *out gets
 * one entry per address (owned; port set, name 0), *ttl_s the answer's smallest TTL, clamped.
 * Returns the number of addresses (at least 1), or -1 with why filled. Blocks for the
 * resolver's timeouts at most. */
int policy_egress_resolve(const char *host, uint16_t port, struct policy_egress **out,
                          uint32_t *ttl_s, char *why, size_t why_len);

/* The gateway's own API endpoint, which no policy may list (its `network.egress` entries are
 * refused at load when they cover it). family 0 = none known. Set once before policies load. */
struct policy_endpoint {
    int family;
    uint8_t addr[16];
    uint16_t port;
};
void policy_network_reserve(const struct policy_endpoint *gateway);
/* Whether e covers a connection to the gateway endpoint g (a wildcard listen address is
 * reachable through every address, including 0.0.0.0 and ::). */
bool policy_egress_covers(const struct policy_egress *e, const struct policy_endpoint *g);

struct policy_approval {
    bool required;
    uint64_t timeout_ms; /* default 1 h */
    char *webhook;       /* per-policy approver endpoint; NULL = gateway default */
};

struct policy_schema;

struct policy {
    char *path;                 /* file the policy came from */
    struct policy_loc name_loc; /* where `name:` was given (duplicate-name diagnostics) */
    char sha256[65];            /* SHA-256 of the file's bytes */
    char *name;
    char *description;
    char **command; /* NULL-terminated argv; command[0] is an absolute path */
    char **env;     /* NULL-terminated "KEY=VALUE" list, the tool's whole environment */
    enum isolation isolation;
    struct policy_loc isolation_loc;
    enum blast_radius blast_radius;
    bool reversible;
    struct policy_approval approval;
    struct policy_limits limits;
    struct policy_filesystem filesystem;
    enum network_mode network;
    char **seccomp_allow;  /* NULL-terminated syscall names added to the tier's allowlist */
    char **seccomp_deny;   /* NULL-terminated syscall names removed / refused */
    char *gvisor_platform; /* "ptrace" (default), "systrap", "kvm" */
    enum microvm_accel microvm_accel;
    uint32_t pool_size; /* warm sandboxes kept ready (gvisor, microvm), default 2; wasm workers */
    bool pool_size_set; /* pool.size was given (wasm's default depends on the gateway) */
    char *module;       /* wasm: absolute path of the .wasm file */
    json_t *arguments;  /* the argument schema as JSON, published by GET /v1/tools */
    struct policy_schema *schema; /* the compiled argument schema, whose JSON is `arguments` */

    /* Where seccomp_allow[i] and seccomp_deny[i] are written, so that errors found later (by
     * a tier's prepare step) can name the entry. */
    struct policy_loc *seccomp_allow_locs;
    struct policy_loc *seccomp_deny_locs;

    /* NETWORK_EGRESS: the destinations the tool may reach (network.c). */
    struct policy_network net;

    /* Set by the sandbox module's prepare step; freed with the policy. */
    void *sbx_state;
    void (*sbx_state_free)(void *state);
    /* Set by a prepare step that fails because of one entry of the policy (a seccomp name the
     * tier cannot honour): sbx_prepare reports the error there. {0, 0}: at `isolation:`. */
    struct policy_loc sbx_error_loc;
};

/* Every problem found while loading, as "file:line:col: message" strings. */
struct policy_diags {
    char **msgs;
    size_t n;
    const char **rules; /* parallel to msgs: the lint rule id a message is (GH101), or NULL */
};
void policy_diags_add(struct policy_diags *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void policy_diags_free(struct policy_diags *d);

/* An immutable, reference-counted set of policies. */
struct policy_set {
    struct policy **items; /* sorted by name */
    size_t n;
    int refs; /* atomic */
};

/* Load one policy file. On failure every error found is appended to diags and -1 is returned.
 * The caller owns *out (policy_free). */
int policy_load_file(const char *path, struct policy **out, struct policy_diags *diags);
/* Like policy_load_file on bytes already read; path names the file in diagnostics, and
 * relative paths in the policy (command[0], module) resolve against its directory. */
int policy_load_buf(const char *path, const char *buf, size_t len, struct policy **out,
                    struct policy_diags *diags);
void policy_free(struct policy *p);

/* Load every *.yaml / *.yml file in dir. Any error in any file fails the whole set (-1) with
 * every error in diags; names must be unique. The caller owns one reference to *out. */
int policy_set_load(const char *dir, struct policy_set **out, struct policy_diags *diags);
struct policy_set *policy_set_ref(struct policy_set *s);
void policy_set_unref(struct policy_set *s);
const struct policy *policy_set_find(const struct policy_set *s, const char *name);

/* Validate call arguments against the policy's compiled schema. On failure returns -1 with
 * GATE_E_INVALID_ARGUMENTS and a message naming the JSON path ("$.text: longer than 64"). */
int policy_check_args(const struct policy *p, const json_t *args, struct gate_error *err);

/* ---- argument schemas ------------------------------------------------------------------------
 * JSON Schema 2020-12 (the keywords are listed in policy/src/schema.c and the README), written
 * in YAML, compiled once and checked many times. A policy's `arguments` is one; any other
 * schema in the same language (an agent's argument grants) is compiled and checked the same
 * way. Checking is bounded for any input: a step budget, a pattern-matching budget and a
 * nesting cap per call turn hostile arguments into a refusal, never unbounded work. */
#define POLICY_SCHEMA_OBJECT_ROOT 1u /* the root must say type: object */
struct ynode;
/* Compile the schema n, read from the YAML file `file` (named in errors). Every problem is
 * added to diags as "file:line:col: message" and NULL is returned. Caller owns the result. */
struct policy_schema *policy_schema_compile(const char *file, const struct ynode *n, unsigned flags,
                                            struct policy_diags *diags);
/* The schema as published: JSON Schema 2020-12 meaning exactly what is enforced (every default
 * the validator applies is written out). Borrowed; lives as long as s. */
const json_t *policy_schema_json(const struct policy_schema *s);
/* Check a JSON value. -1 with GATE_E_INVALID_ARGUMENTS and the first problem, naming its JSON
 * path ("$.items[2].name: longer than maxLength 64"). Safe to call from many threads. */
int policy_schema_check(const struct policy_schema *s, const json_t *value, struct gate_error *err);
void policy_schema_free(struct policy_schema *s);

/* The JSON Schema (2020-12) of policy files, generated from the key table: the content of
 * policy/policy.schema.json. New reference, NULL if out of memory. */
json_t *policy_file_schema(void);

/* ---- review for security teams: lint, diff, explain (lint*.c, diff*.c, explain*.c) -------- */
enum policy_report_format {
    POLICY_REPORT_TEXT,
    POLICY_REPORT_JSON,
    POLICY_REPORT_SARIF,    /* SARIF 2.1.0 */
    POLICY_REPORT_GITHUB,   /* GitHub Actions workflow commands (annotations) */
    POLICY_REPORT_MARKDOWN, /* diff only: a pull-request comment */
};
/* "text", "json", "sarif", "github", "markdown"; -1 for anything else. */
int policy_report_format_parse(const char *name);

struct policy_lint_opts {
    enum policy_report_format format;
    const char *config;  /* lint.yaml: rules disabled or re-levelled, limits; NULL: none */
    const char *fail_on; /* error | warning | note | none; NULL: the config's, else warning */
    bool offline;        /* do not look at the host (tools not built, another machine) */
};
/* Lint policy files and directories; the report goes to out. Returns the exit status: 0
 * clean, 1 an error (a policy that does not load, an error-level finding), 2 a warning at or
 * above fail_on; -1 with err on bad options or an unreadable path. */
int policy_lint(char *const *paths, size_t npaths, const struct policy_lint_opts *o, FILE *out,
                struct gate_error *err);

struct policy_diff_opts {
    enum policy_report_format format;
    bool git;         /* base and head are git revisions, read without a checkout */
    const char *repo; /* with git: the repository (NULL: the current directory) */
    const char *dir;  /* with git: the policy directory in it (NULL: "policies") */
};
/* Compare two policy directories (or revisions): tools added, removed, renamed, and every
 * security-relevant change classified weakens / strengthens / neutral with its reason.
 * Returns 0 when nothing weakens, 3 when something does, 1 when a policy does not load;
 * -1 with err when a directory or revision cannot be read. */
int policy_diff(const char *base, const char *head, const struct policy_diff_opts *o, FILE *out,
                struct gate_error *err);

struct policy_explain_opts {
    enum policy_report_format format; /* text or json */
    const char *policies;             /* where TOOL is looked up (NULL: "policies") */
    const char *config;               /* lint.yaml for the findings, or NULL */
};
/* The effective policy of TOOL or FILE with every default filled in and marked, the JSON
 * Schema agents are given, and the lint findings. Returns 0, or 1 when the policy does not
 * load; -1 with err when it cannot be found. */
int policy_explain(const char *target, const struct policy_explain_opts *o, FILE *out,
                   struct gate_error *err);

/* ---- safe YAML, shared with the gateway's config file ------------------------------------- */
enum ynode_kind { YNODE_SCALAR, YNODE_MAP, YNODE_SEQ };
struct ynode {
    enum ynode_kind kind;
    struct policy_loc loc;
    char *scalar;                /* YNODE_SCALAR */
    bool quoted;                 /* scalar was quoted (so "yes" is a string, never a bool) */
    char **keys;                 /* YNODE_MAP: keys[i] maps to items[i] */
    struct policy_loc *key_locs; /* YNODE_MAP: where keys[i] was written */
    struct ynode **items;        /* YNODE_MAP values, YNODE_SEQ elements */
    size_t n;
};
/* Parse a YAML file (a regular file, one document, at most 1 MiB, bounded aliases, no
 * duplicate keys). */
int ynode_load_file(const char *path, struct ynode **out, struct gate_error *err);
int ynode_load_buf(const char *name, const char *buf, size_t len, struct ynode **out,
                   struct gate_error *err);
/* The value of key in map, or NULL (also when map is NULL or not a mapping). Borrowed. */
const struct ynode *ynode_get(const struct ynode *map, const char *key);
void ynode_free(struct ynode *n);

#endif
