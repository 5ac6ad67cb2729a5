/* lint_rules.c: the risk rules. A policy that loads is valid; these find where it is weak.
 *
 * Each rule has a stable id (GH1xx; GH0xx are about lint itself), a default level, a one-line
 * rationale and a fix, and a check that reads the loaded policy (effective values, defaults
 * included) and its YAML tree (where each key was written). Ids are never reused: a retired
 * rule keeps its number.
 *
 * Network egress (GH107): today the only network a tool can get is gVisor's netstack with no
 * egress list (`network: sandbox`), which GH107 reports as egress to everywhere. When the
 * network-policy issue (17) adds an egress list, check_network walks its entries: a /0 prefix
 * (0.0.0.0/0, ::/0) is an error, and a private, loopback or link-local range (10/8,
 * 172.16/12, 192.168/16, 100.64/10, 127/8, 169.254/16, fc00::/7, fe80::/10, ::1) is a warning
 * unless a comment on its line or the line above justifies it (review_file.comments has every
 * comment with its line).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lint.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static struct policy_loc key_loc(struct lint_ctx *c, const char *path)
{
    return policy_key_loc(c->f->root, path);
}

/* Where a key's value was written, else where its nearest written section is. */
static struct policy_loc value_loc(struct lint_ctx *c, const char *path)
{
    const struct ynode *n = policy_key_node(c->f->root, path);
    return n ? n->loc : key_loc(c, path);
}

static bool written(struct lint_ctx *c, const char *path)
{
    return policy_key_node(c->f->root, path) != NULL;
}

/* ---- GH102: blast radius against isolation ------------------------------------------------ */

static void check_blast_radius(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    int rank = review_isolation_rank(p->isolation);
    int gvisor = review_isolation_rank(ISOLATION_GVISOR);
    struct policy_loc loc =
        written(c, "blast_radius") ? value_loc(c, "blast_radius") : value_loc(c, "isolation");
    const char *iso = policy_isolation_name(p->isolation);
    if (p->blast_radius >= BLAST_HIGH && rank < gvisor)
        lint_emit(c, "GH102", p->blast_radius == BLAST_CRITICAL ? LINT_ERROR : LINT_WARNING, loc,
                  "blast_radius",
                  "blast_radius %s in the %s tier: a tool this dangerous needs gvisor or microvm "
                  "isolation (%s)",
                  policy_blast_name(p->blast_radius), iso, review_isolation_order);
    else if (p->blast_radius == BLAST_MEDIUM && p->isolation == ISOLATION_PROCESS)
        lint_emit(c, "GH102", LINT_NOTE, loc, "blast_radius",
                  "blast_radius medium%s in the process tier: the tool shares the host's file "
                  "system and kernel with little in between",
                  written(c, "blast_radius") ? "" : " (the default)");
}

/* ---- GH103: code it is given, below gvisor ------------------------------------------------ */

static void check_runs_code(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    char why[256];
    if (!p->command ||
        review_isolation_rank(p->isolation) >= review_isolation_rank(ISOLATION_GVISOR))
        return;
    if (!review_runs_received_code(p->command, why, sizeof(why))) return;
    lint_emit(c, "GH103", LINT_OFF, value_loc(c, "command"), "command",
              "%s, in the %s tier: code from an agent runs against the host kernel", why,
              policy_isolation_name(p->isolation));
}

/* ---- GH104: limits left at their defaults ------------------------------------------------- */

static void check_limits(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    struct gate_buf names = {0}, defaults = {0}, value = {0};
    for (size_t i = 0; i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (!(k->flags & PKEY_EXPLICIT) || written(c, k->path)) continue;
        /* A WebAssembly module cannot start processes: pids does not apply. */
        if (p->isolation == ISOLATION_WASM && !strcmp(k->path, "limits.pids")) continue;
        pkey_format(k, p, &value);
        gate_buf_printf(&names, "%s%s", names.len ? ", " : "", k->path);
        gate_buf_printf(&defaults, "%s%s %s", defaults.len ? ", " : "", policy_key_leaf(k),
                        value.data);
    }
    if (names.len)
        lint_emit(c, "GH104", LINT_OFF, key_loc(c, "limits"), "limits",
                  "%s not set: the defaults are in effect (%s)", names.data, defaults.data);
    gate_buf_free(&names);
    gate_buf_free(&defaults);
    gate_buf_free(&value);
}

/* ---- GH105, GH106: argument strings ------------------------------------------------------- */

static bool has_type(const struct ynode *schema, const char *type)
{
    const struct ynode *t = ynode_get(schema, "type");
    if (!t) return false;
    if (t->kind == YNODE_SCALAR) return !strcmp(t->scalar, type);
    for (size_t i = 0; t->kind == YNODE_SEQ && i < t->n; i++)
        if (t->items[i]->kind == YNODE_SCALAR && !strcmp(t->items[i]->scalar, type)) return true;
    return false;
}

/* Keywords that bound a string (formats whose values have a bounded length count too). */
static bool bounds_string(const struct ynode *s)
{
    /* Not date-time: the fraction of a second may have any number of digits. */
    static const char *const bounded_formats[] = {"date", "uuid", "ipv4", "ipv6", NULL};
    if (ynode_get(s, "maxLength") || ynode_get(s, "enum") || ynode_get(s, "pattern") ||
        ynode_get(s, "const"))
        return true;
    const struct ynode *fmt = ynode_get(s, "format");
    for (size_t i = 0; fmt && fmt->kind == YNODE_SCALAR && bounded_formats[i]; i++)
        if (!strcmp(fmt->scalar, bounded_formats[i])) return true;
    const struct ynode *all = ynode_get(s, "allOf");
    for (size_t i = 0; all && all->kind == YNODE_SEQ && i < all->n; i++)
        if (all->items[i]->kind == YNODE_MAP && bounds_string(all->items[i])) return true;
    return false;
}

/* A schema accepts strings when its type says so, or when it has no type and nothing else
 * (enum, const, a combinator or a $ref) decides what it accepts. */
static bool accepts_strings(const struct ynode *s)
{
    if (ynode_get(s, "type")) return has_type(s, "string");
    static const char *const deciders[] = {"enum",  "const", "anyOf", "oneOf",
                                           "allOf", "$ref",  "not",   NULL};
    for (size_t i = 0; deciders[i]; i++)
        if (ynode_get(s, deciders[i])) return false;
    return true;
}

/* A pattern is anchored when it starts with ^, ends with an unescaped $, and has no
 * alternation outside parentheses (^a|b$ is (^a)|(b$): each branch is half open). */
static bool anchored(const char *re)
{
    size_t len = strlen(re);
    if (len < 2 || re[0] != '^' || re[len - 1] != '$') return false;
    size_t backslashes = 0;
    for (size_t i = len - 1; i > 0 && re[i - 1] == '\\'; i--)
        backslashes++;
    if (backslashes % 2) return false;
    int depth = 0;
    bool in_class = false;
    for (size_t i = 0; i < len; i++) {
        if (re[i] == '\\') {
            i++;
            continue;
        }
        if (in_class) {
            in_class = re[i] != ']';
            continue;
        }
        if (re[i] == '[') in_class = true;
        if (re[i] == '(') depth++;
        if (re[i] == ')') depth--;
        if (re[i] == '|' && depth == 0) return false;
    }
    return true;
}

static void walk_schema(struct lint_ctx *c, const struct ynode *s, const struct ynode *parent,
                        const char *key, struct gate_buf *path, int depth);

static void walk_children(struct lint_ctx *c, const struct ynode *s, struct gate_buf *path,
                          int depth)
{
    static const char *const lists[] = {"anyOf", "oneOf", "allOf", "prefixItems", NULL};
    static const char *const maps[] = {"properties", "$defs", NULL};
    /* `not` is left out: what it describes is refused, not accepted. */
    static const char *const single[] = {"items", "additionalProperties", NULL};
    size_t base = path->len;
    for (size_t k = 0; maps[k]; k++) {
        const struct ynode *m = ynode_get(s, maps[k]);
        for (size_t i = 0; m && m->kind == YNODE_MAP && i < m->n; i++) {
            gate_buf_printf(path, ".%s.%s", maps[k], m->keys[i]);
            walk_schema(c, m->items[i], m, m->keys[i], path, depth + 1);
            path->len = base;
            path->data[base] = '\0';
        }
    }
    for (size_t k = 0; lists[k]; k++) {
        const struct ynode *l = ynode_get(s, lists[k]);
        for (size_t i = 0; l && l->kind == YNODE_SEQ && i < l->n; i++) {
            gate_buf_printf(path, ".%s[%zu]", lists[k], i);
            walk_schema(c, l->items[i], NULL, NULL, path, depth + 1);
            path->len = base;
            path->data[base] = '\0';
        }
    }
    for (size_t k = 0; single[k]; k++) {
        const struct ynode *one = ynode_get(s, single[k]);
        if (!one || one->kind != YNODE_MAP) continue;
        gate_buf_printf(path, ".%s", single[k]);
        walk_schema(c, one, s, single[k], path, depth + 1);
        path->len = base;
        path->data[base] = '\0';
    }
}

static void walk_schema(struct lint_ctx *c, const struct ynode *s, const struct ynode *parent,
                        const char *key, struct gate_buf *path, int depth)
{
    if (!s || s->kind != YNODE_MAP || depth > 32) return;
    struct policy_loc where = parent && key ? ynode_key_loc(parent, key) : s->loc;
    if (accepts_strings(s) && !bounds_string(s))
        lint_emit(c, "GH105", LINT_OFF, where, path->data,
                  "%s accepts strings of any length and content: give it maxLength, enum or "
                  "pattern",
                  path->data);
    const struct ynode *pat = ynode_get(s, "pattern");
    if (pat && pat->kind == YNODE_SCALAR && !anchored(pat->scalar))
        lint_emit(c, "GH106", LINT_OFF, pat->loc, path->data,
                  "%s: pattern '%s' is not anchored: it accepts any string that contains a "
                  "match",
                  path->data, pat->scalar);
    walk_children(c, s, path, depth);
}

static void check_arguments(struct lint_ctx *c)
{
    const struct ynode *args = policy_key_node(c->f->root, "arguments");
    if (!args) return;
    struct gate_buf path = {0};
    gate_buf_printf(&path, "arguments");
    /* The root is an object; its own `pattern` and children are what can accept strings. */
    const struct ynode *pat = ynode_get(args, "pattern");
    if (pat && pat->kind == YNODE_SCALAR && !anchored(pat->scalar))
        lint_emit(c, "GH106", LINT_OFF, pat->loc, "arguments",
                  "arguments: pattern '%s' is not anchored", pat->scalar);
    walk_children(c, args, &path, 0);
    gate_buf_free(&path);
}

/* ---- GH107: network ----------------------------------------------------------------------- */

/* Loopback, private and link-local ranges (RFC 1918, RFC 6598, RFC 4193, 127/8, ::1,
 * 169.254/16, fe80::/10): reaching one is reaching an internal service. */
static bool internal_range(const struct policy_egress *e)
{
    const uint8_t *a = e->addr;
    if (e->family == AF_INET)
        return a[0] == 10 || a[0] == 127 || (a[0] == 172 && (a[1] & 0xF0) == 16) ||
               (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
               (a[0] == 100 && (a[1] & 0xC0) == 64);
    static const uint8_t loop6[16] = {[15] = 1};
    return (a[0] & 0xFE) == 0xFC || (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) ||
           memcmp(a, loop6, 16) == 0;
}

static void check_network(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    if (p->network == NETWORK_SANDBOX)
        lint_emit(c, "GH107", LINT_OFF, value_loc(c, "network"), "network",
                  "network: sandbox gives the tool a network with no egress list: every "
                  "destination, 0.0.0.0/0 and ::/0, private ranges included, is reachable");
    if (p->network != NETWORK_EGRESS) return;
    for (size_t i = 0; i < p->net.n_egress; i++) {
        const struct policy_egress *e = &p->net.egress[i];
        if (e->prefix == 0)
            lint_emit(c, "GH107", LINT_ERROR, e->loc, "network.egress",
                      "network.egress entry %zu reaches every %s address (prefix /0) on port %u", i,
                      e->family == AF_INET ? "IPv4" : "IPv6", e->port);
        else if (internal_range(e))
            lint_emit(c, "GH107", LINT_OFF, e->loc, "network.egress",
                      "network.egress entry %zu reaches a loopback, private or link-local range "
                      "(port %u): say why in a '# gatehouse: allow GH107 -- reason' comment",
                      i, e->port);
    }
}

/* ---- GH108, GH109: the tool's program file ------------------------------------------------ */

/* The first entry on the way from path up to / (the file, then each directory) that a
 * non-root user can write or replace, described in who. A sticky directory (/tmp) counts only
 * when the entry in it is not root's, since then only that entry's owner can replace it. */
static bool writable_on_the_way(const char *path, char *who, size_t wholen)
{
    char cur[4096];
    snprintf(cur, sizeof(cur), "%s", path);
    uid_t child_uid = 0;
    for (bool first = true;; first = false) {
        struct stat st;
        if (stat(cur[0] ? cur : "/", &st) < 0) return false;
        const char *shown = cur[0] ? cur : "/";
        const char *why = NULL;
        if (st.st_uid != 0)
            why = "is owned by a non-root user";
        else if ((st.st_mode & S_IWGRP) && st.st_gid != 0)
            why = "is writable by its non-root group";
        else if ((st.st_mode & S_IWOTH) && !(!first && (st.st_mode & S_ISVTX) && child_uid == 0))
            why = "is writable by everyone";
        if (why) {
            snprintf(who, wholen, "%s %s", shown, why);
            return true;
        }
        if (!cur[0] || !strcmp(cur, "/")) return false;
        child_uid = st.st_uid;
        *strrchr(cur, '/') = '\0';
    }
}

/* Both the path as resolved and the path as written: a symbolic link on the way can be
 * re-pointed by whoever can write the directory holding it. */
static bool writable_by_others(const char *given, const char *resolved, char *who, size_t wholen)
{
    autofree char *real = realpath(resolved, NULL);
    if (real && writable_on_the_way(real, who, wholen)) return true;
    return given[0] == '/' && writable_on_the_way(given, who, wholen);
}

static void check_program_file(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    const char *key = p->isolation == ISOLATION_WASM ? "module" : "command";
    const struct ynode *n = policy_key_node(c->f->root, key);
    if (n && n->kind == YNODE_SEQ) n = n->n ? n->items[0] : NULL;
    if (!n || n->kind != YNODE_SCALAR) return;
    if (n->scalar[0] != '/')
        lint_emit(c, "GH108", LINT_OFF, n->loc, key,
                  "%s '%s' is a relative path: what runs depends on where the policy directory "
                  "is installed and who can write there",
                  key, n->scalar);
    const char *file =
        p->isolation == ISOLATION_WASM ? p->module : (p->command ? p->command[0] : NULL);
    char who[4200];
    if (!c->offline && file && writable_by_others(n->scalar, file, who, sizeof(who)))
        lint_emit(c, "GH109", LINT_OFF, n->loc, key, "%s '%s' can be swapped after review: %s", key,
                  n->scalar, who);
}

/* ---- GH110: secrets in env ---------------------------------------------------------------- */

static void check_env_secrets(struct lint_ctx *c)
{
    static const char *const words[] = {"TOKEN", "SECRET", "KEY", "PASSWORD", NULL};
    const struct ynode *env = policy_key_node(c->f->root, "env");
    for (size_t i = 0; env && env->kind == YNODE_MAP && i < env->n; i++) {
        const struct ynode *v = env->items[i];
        if (v->kind != YNODE_SCALAR || !*v->scalar) continue;
        for (size_t w = 0; words[w]; w++)
            if (strcasestr(env->keys[i], words[w])) {
                char key[160];
                snprintf(key, sizeof(key), "env.%s", env->keys[i]);
                lint_emit(c, "GH110", LINT_OFF, env->key_locs[i], key,
                          "env %s has a literal value: a secret in a policy file is in every "
                          "checkout, review and log of it",
                          env->keys[i]);
                break;
            }
    }
}

/* ---- GH111, GH112: file system ------------------------------------------------------------ */

/* a is b, or a directory above it. */
static bool path_covers(const char *a, const char *b)
{
    size_t n = strlen(a);
    while (n > 1 && a[n - 1] == '/')
        n--;
    if (n == 1 && a[0] == '/') return true;
    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

static void check_filesystem(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    const struct ynode *ro = policy_key_node(c->f->root, "filesystem.read_only");
    for (size_t i = 0; p->filesystem.read_only && p->filesystem.read_only[i]; i++) {
        const char *path = p->filesystem.read_only[i];
        for (size_t s = 0; c->cfg->sensitive_paths && c->cfg->sensitive_paths[s]; s++) {
            const char *sens = c->cfg->sensitive_paths[s];
            if (!path_covers(path, sens) && !path_covers(sens, path)) continue;
            struct policy_loc loc = ro && ro->kind == YNODE_SEQ && i < ro->n
                                        ? ro->items[i]->loc
                                        : key_loc(c, "filesystem");
            if (path_covers(path, sens))
                lint_emit(c, "GH111", LINT_OFF, loc, "filesystem.read_only",
                          "read_only '%s' exposes %s to the tool", path, sens);
            else
                lint_emit(c, "GH111", LINT_OFF, loc, "filesystem.read_only",
                          "read_only '%s' is inside %s", path, sens);
            break;
        }
    }
    if (p->filesystem.exec_workspace)
        lint_emit(c, "GH112", LINT_OFF, value_loc(c, "filesystem.exec_workspace"),
                  "filesystem.exec_workspace",
                  "exec_workspace: true lets the tool write a program to /tmp%s and run it",
                  p->filesystem.workspace ? " or its workspace" : "");
}

/* ---- GH113: approval window ---------------------------------------------------------------- */

static void check_approval_window(struct lint_ctx *c)
{
    const struct policy *p = c->f->p;
    if (!p->approval.required || p->approval.timeout_ms <= c->cfg->approval_max_ms) return;
    char have[32], max[32];
    policy_format_ms(p->approval.timeout_ms, have, sizeof(have));
    policy_format_ms(c->cfg->approval_max_ms, max, sizeof(max));
    lint_emit(c, "GH113", LINT_OFF,
              written(c, "approval.timeout") ? value_loc(c, "approval.timeout")
                                             : key_loc(c, "approval"),
              "approval.timeout",
              "approval.timeout %s is longer than %s: an approver decides long after the agent "
              "asked, on context that may have changed",
              have, max);
}

// clang-format off
const struct lint_rule lint_rules[] = {
    {"GH001", "policy-does-not-load", LINT_ERROR, false,
     "The policy does not load.",
     "The gateway refuses the whole policy set when one file has an error.",
     "Fix the error at the location given.", NULL},
    {"GH002", "bad-suppression", LINT_ERROR, false,
     "A suppression comment is malformed or has no reason.",
     "An exception nobody can explain is an exception nobody can review.",
     "Write '# gatehouse: allow GHnnn -- the reason'.", NULL},
    {"GH003", "unused-suppression", LINT_NOTE, false,
     "A suppression comment matches no finding.",
     "Stale exceptions hide the next real finding of that rule.",
     "Remove the comment.", NULL},
    {"GH101", "irreversible-without-approval", LINT_ERROR, false,
     "An irreversible tool does not require approval.",
     "A call that cannot be undone should not run on an agent's word alone.",
     "Set approval.required: true (the loader refuses the policy until then).", NULL},
    {"GH102", "isolation-below-blast-radius", LINT_WARNING, true,
     "The isolation tier is weaker than the blast radius calls for.",
     "A high or critical blast radius needs gvisor or microvm; medium should not run as a bare "
     "process.",
     "Raise isolation, or lower blast_radius if it was overstated.", check_blast_radius},
    {"GH103", "runs-received-code", LINT_ERROR, true,
     "The tool runs code it is given, below gvisor isolation.",
     "Interpreters fed by an agent (sh -c, python3 -c, node -e, a program on stdin) turn every "
     "call into arbitrary code against the host kernel.",
     "Use isolation: gvisor or microvm, or run a fixed script file.", check_runs_code},
    {"GH104", "limits-defaulted", LINT_WARNING, true,
     "Resource limits are left at their defaults.",
     "Defaults are invisible in review; a tool's real needs should be written down.",
     "Set limits.wall_timeout, memory_mb, pids and output_bytes explicitly.", check_limits},
    {"GH105", "unbounded-string-argument", LINT_WARNING, true,
     "A string argument has neither maxLength, enum nor pattern.",
     "Unbounded strings carry whatever an agent (or a prompt injection) puts in them.",
     "Add maxLength, an enum or an anchored pattern.", check_arguments},
    {"GH106", "unanchored-pattern", LINT_WARNING, true,
     "An argument pattern is not anchored with ^...$.",
     "JSON Schema patterns match anywhere: an unanchored pattern accepts any string containing "
     "a match.",
     "Write the pattern as ^(...)$.", NULL},
    {"GH107", "wide-network-egress", LINT_WARNING, true,
     "The tool can reach any network destination.",
     "Egress to everywhere (0.0.0.0/0, ::/0) or to private ranges lets a tool exfiltrate or "
     "reach internal services.",
     "Use network: none, or list the destinations the tool needs.", check_network},
    {"GH108", "relative-command-path", LINT_WARNING, true,
     "The tool's program is named by a relative path.",
     "What runs depends on where the policy directory is installed and who can write there.",
     "Give an absolute path to a root-owned file.", check_program_file},
    {"GH109", "program-writable", LINT_ERROR, true,
     "The tool's program, or a directory above it, is writable by a non-root user.",
     "The reviewed program can be swapped for another after review.",
     "Install it root-owned, in root-owned directories not writable by group or others.", NULL},
    {"GH110", "secret-in-env", LINT_ERROR, true,
     "An environment variable that looks like a secret has a literal value.",
     "A secret in a policy file is in every checkout, review and log of it.",
     "Deliver the secret another way and leave it out of the policy.", check_env_secrets},
    {"GH111", "sensitive-path-exposed", LINT_WARNING, true,
     "filesystem.read_only exposes a sensitive host path.",
     "/etc, /root, /home, /var/run and the gateway's state hold credentials and sockets.",
     "Bind only the files the tool needs.", check_filesystem},
    {"GH112", "executable-workspace", LINT_WARNING, true,
     "The tool can run programs it wrote.",
     "Write-then-exec is how a downloaded or generated payload gets run.",
     "Leave filesystem.exec_workspace false.", NULL},
    {"GH113", "long-approval-window", LINT_WARNING, true,
     "The approval window is longer than the configured maximum.",
     "An approval long after the request is given on stale context.",
     "Shorten approval.timeout (the maximum is approval_max_window in lint.yaml, default 24h).",
     check_approval_window},
};
// clang-format on
const size_t lint_nrules = sizeof(lint_rules) / sizeof(lint_rules[0]);
