/* policy_internal.h: what the policy module's files share and nobody else sees. */
#ifndef GATE_POLICY_INTERNAL_H
#define GATE_POLICY_INTERNAL_H

#include "policy.h"

#define POLICY_YAML_MAX_BYTES (1024u * 1024u)

/* Read a policy file of at most 1 MiB; errors are "FILE:1:1: ..." so they read like the rest.
 * Only a regular file is read: a FIFO, socket, device or directory is refused without blocking,
 * and a symbolic link is followed only while it stays inside the file's own directory. */
int policy_read_yaml_file(const char *path, char **buf, size_t *len, struct gate_error *err);
/* The same for name inside the directory dirfd; display names the file in errors. */
int policy_read_yaml_at(int dirfd, const char *name, const char *display, char **buf, size_t *len,
                        struct gate_error *err);

/* Validation context for one policy file: every problem becomes a diag, and `errors`
 * counts them so the loader can fail the file after reporting all of them. */
struct pctx {
    const char *path;
    char *dir; /* absolute directory of the policy file; owned */
    struct policy *p;
    struct policy_diags *diags;
    int errors;
};

void pctx_err(struct pctx *c, struct policy_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Check that n is a mapping whose keys are all in `allowed` (NULL-terminated); reports the
 * mismatch and returns -1 otherwise. `what` names the mapping in messages. */
int pctx_expect_map(struct pctx *c, const struct ynode *n, const char *what,
                    const char *const *allowed);
const char *ynode_kind_name(const struct ynode *n);
/* The locations of a list's items, n->n of them (malloc'd; NULL if n is not a list). */
struct policy_loc *ynode_item_locs(const struct ynode *n);
/* The location of key's key in map (falls back to the map's own location). */
struct policy_loc ynode_key_loc(const struct ynode *map, const char *key);

/* Scalar readers: each reports its own error with location and returns -1. */
int pctx_string(struct pctx *c, const struct ynode *n, const char *what, char **out);
int pctx_bool(struct pctx *c, const struct ynode *n, const char *what, bool *out);
int pctx_uint(struct pctx *c, const struct ynode *n, const char *what, uint64_t min, uint64_t max,
              uint64_t *out);
int pctx_duration(struct pctx *c, const struct ynode *n, const char *what, uint64_t min_ms,
                  uint64_t max_ms, uint64_t *out);
int pctx_string_list(struct pctx *c, const struct ynode *n, const char *what, char ***out);
void strv_free(char **v);
/* A list of syscall names, each known to libseccomp for the native architecture. */
int policy_check_syscalls(struct pctx *c, const struct ynode *n, const char *what, char ***out);

/* ---- network (network.c) ------------------------------------------------------------- */
/* Read `network:` (none | sandbox | {egress: [...], dns: bool}) into c->p. */
void policy_network_read(struct pctx *c, const struct ynode *v);
void policy_network_free(struct policy_network *n);

/* ---- argument schema (schema.c) -------------------------------------------------------- */
/* Convert a YAML value to JSON: plain integers and decimals become numbers, plain
 * true/false booleans, plain null/~/empty null, everything else a string. */
json_t *policy_ynode_to_json(struct pctx *c, const struct ynode *n);
/* policy_schema_compile, reporting into c (n NULL: the empty strict object schema). */
struct policy_schema *policy_schema_compile_in(struct pctx *c, const struct ynode *n,
                                               unsigned flags);

#endif
