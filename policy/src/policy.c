/* policy.c: one policy file -> struct policy, with every problem reported as FILE:LINE:COL.
 *
 * Every key is a row of policy_keys[] below (see policy_keys.h): the loader walks the table,
 * reads each key with the generic reader of its type (or the row's reader hook), applies the
 * rows' defaults first, then checks the rows of policy_cross_rules[]. Unknown keys at any level
 * are errors; booleans are exactly unquoted true/false; integers are decimal; durations are
 * "250ms", "5s", "2m", "1h". The same rows give `policy explain` its defaults, lint (GH104)
 * the limits reviewers want written, `policy diff` its classification and policy.schema.json
 * its shape, so they cannot drift from what loads.
 *
 * Adding a key: add a field to struct policy, add one row (a section row first if the key
 * lives in a new section; order matters only where a reader needs another key's value, e.g.
 * command and module come after isolation and limits), and a cross rule if it only applies to
 * one tier. Then regenerate policy/policy.schema.json (`gatehouse policy schema`); the unit
 * test fails until it matches.
 */
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy_keys.h"

static const char *const isolation_names[] = {"process", "container", "gvisor",
                                              "microvm", "wasm",      NULL};
static const char *const blast_names[] = {"low", "medium", "high", "critical", NULL};
static const char *const network_names[] = {"none", "sandbox", "egress", NULL};
static const char *const gvisor_platforms[] = {"ptrace", "systrap", "kvm", NULL};
static const char *const microvm_accels[] = {"auto", "kvm", "tcg", NULL};

const char *policy_isolation_name(enum isolation iso)
{
    return (unsigned)iso < ISOLATION__COUNT ? isolation_names[iso] : "unknown";
}

const char *policy_blast_name(enum blast_radius b)
{
    return (unsigned)b <= BLAST_CRITICAL ? blast_names[b] : "unknown";
}

/* Load-time state beyond the policy itself. */
struct loader {
    struct pctx c;
    const struct ynode *root;
    bool offline;
    bool failed[POLICY_MAX_KEYS]; /* the key's value had an error: cross rules skip it */
};

/* ---- reader hooks: validation beyond type and range --------------------------------------- */

static bool matches_name(const char *s)
{
    size_t len = strlen(s);
    if (len < 1 || len > 64) return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9'))) return false;
    for (size_t i = 1; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void read_name(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    if (pctx_string(c, v, k->path, &c->p->name) < 0) return;
    c->p->name_loc = v->loc;
    if (!matches_name(c->p->name))
        pctx_err(c, v->loc, "'name' must match ^[a-z0-9][a-z0-9_-]{0,63}$; got '%s'", c->p->name);
}

static void read_isolation(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    l->c.p->isolation_loc = v->loc;
    pkey_read(&l->c, k, v);
}

/* What the webhook sender can deliver to: http(s)://HOST[:PORT][/PATH], HOST a name or IPv4
 * address, PORT 1..65535, no user info, no fragment. */
static bool is_http_url(const char *s)
{
    size_t scheme = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
    if (!scheme || strlen(s) > 2048) return false;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#' || *q == '@') return false;
    const char *host = s + scheme;
    size_t hlen = strcspn(host, ":/?");
    if (hlen == 0) return false;
    for (size_t i = 0; i < hlen; i++)
        if (!((host[i] >= 'a' && host[i] <= 'z') || (host[i] >= 'A' && host[i] <= 'Z') ||
              (host[i] >= '0' && host[i] <= '9') || host[i] == '.' || host[i] == '-'))
            return false;
    if (host[hlen] == ':') {
        const char *port = host + hlen + 1;
        size_t plen = strspn(port, "0123456789");
        if (plen == 0 || plen > 5 || (port[plen] && port[plen] != '/' && port[plen] != '?') ||
            atoi(port) < 1 || atoi(port) > 65535)
            return false;
    }
    return true;
}

static void read_webhook(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    if (pctx_string(c, v, k->path, &c->p->approval.webhook) == 0 &&
        !is_http_url(c->p->approval.webhook))
        pctx_err(c, v->loc,
                 "'approval.webhook' must be an https:// or http://HOST[:PORT]/PATH URL");
}

static void read_memory_mb(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    uint64_t mb = 0;
    if (pctx_uint(&l->c, v, k->path, 0, k->max, &mb) < 0) return;
    if (mb < k->min)
        pctx_err(&l->c, v->loc, "'limits.memory_mb': memory cap under 4 MiB");
    else
        l->c.p->limits.memory_mb = mb;
}

/* wasm workers are processes reused call after call: their pool may cover many more calls
 * than the sandboxes kept booted for the other tiers (the row's max is wasm's). */
static void read_pool_size(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    uint64_t max = l->c.p->isolation == ISOLATION_WASM ? k->max : 16, size = 0;
    if (pctx_uint(&l->c, v, k->path, 0, max, &size) < 0) return;
    l->c.p->pool_size = (uint32_t)size;
    l->c.p->pool_size_set = true;
}

/* network: none | sandbox, or {egress: [...], dns: bool} (network.c). "egress" is a name only
 * so that comparisons and diffs can rank it (the widest); it is never written as a scalar. */
static void read_network(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    if (v->kind == YNODE_MAP) {
        policy_network_read(&l->c, v);
        return;
    }
    pkey_read(&l->c, k, v);
    if (l->c.p->network == NETWORK_EGRESS) {
        pctx_err(&l->c, v->loc,
                 "'network: egress' is written as a mapping: {egress: [HOST:PORT, ...]}");
        l->c.p->network = NETWORK_NONE;
    }
}

static bool is_env_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static void read_env(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    if (v->kind != YNODE_MAP) {
        pctx_err(c, v->loc, "'%s' must be a mapping, got %s", k->path, ynode_kind_name(v));
        return;
    }
    char **env = calloc(v->n + 1, sizeof(*env));
    if (!env) {
        pctx_err(c, v->loc, "out of memory");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < v->n; i++) {
        const char *name = v->keys[i];
        if (!is_env_name(name)) {
            pctx_err(c, v->key_locs[i], "env name '%s' must match ^[A-Za-z_][A-Za-z0-9_]*$", name);
            continue;
        }
        if (strncmp(name, "GATEHOUSE_", 10) == 0) {
            pctx_err(c, v->key_locs[i], "env name '%s' is reserved (GATEHOUSE_*)", name);
            continue;
        }
        autofree char *val = NULL;
        char what[128];
        snprintf(what, sizeof(what), "env.%s", name);
        if (pctx_string(c, v->items[i], what, &val) < 0) continue;
        if (asprintf(&env[n], "%s=%s", name, val) < 0) {
            env[n] = NULL;
            pctx_err(c, v->loc, "out of memory");
            break;
        }
        n++;
    }
    strv_free(c->p->env);
    c->p->env = env;
}

static void read_read_only(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    char **paths = NULL;
    if (pctx_string_list(c, v, k->path, &paths) < 0) return;
    for (size_t i = 0; paths[i]; i++) {
        struct stat st;
        if (paths[i][0] != '/')
            pctx_err(c, v->items[i]->loc, "read_only path '%s' must be absolute", paths[i]);
        else if (!l->offline && stat(paths[i], &st) < 0)
            pctx_err(c, v->items[i]->loc, "read_only path '%s' does not exist on the host",
                     paths[i]);
    }
    strv_free(c->p->filesystem.read_only);
    c->p->filesystem.read_only = paths;
}

/* The names, and where each is written, so that a tier's prepare step can name the entry it
 * cannot honour. */
static void read_syscalls(struct loader *l, const struct policy_key *k, const struct ynode *v,
                          struct policy_loc **locs)
{
    if (policy_check_syscalls(&l->c, v, k->path, pkey_field(k, l->c.p)) < 0) return;
    free(*locs);
    if (!(*locs = ynode_item_locs(v))) pctx_err(&l->c, v->loc, "out of memory");
}

static void read_seccomp_allow(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    read_syscalls(l, k, v, &l->c.p->seccomp_allow_locs);
}

static void read_seccomp_deny(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    read_syscalls(l, k, v, &l->c.p->seccomp_deny_locs);
}

/* Resolve a path given in the policy: absolute as written, relative against the policy's
 * directory (then canonicalised). Returns an owned absolute path or NULL after reporting.
 * Offline, the path is kept as written and not looked up. */
static char *resolve_path(struct loader *l, const struct ynode *n, const char *given,
                          const char *what, struct stat *st)
{
    struct pctx *c = &l->c;
    if (l->offline) {
        char *copy = strdup(given);
        if (!copy) pctx_err(c, n->loc, "out of memory");
        return copy;
    }
    char *path = NULL;
    if (given[0] == '/') {
        path = strdup(given);
    } else {
        autofree char *joined = NULL;
        if (asprintf(&joined, "%s/%s", c->dir, given) < 0) joined = NULL;
        if (joined) path = realpath(joined, NULL);
        if (!path) {
            pctx_err(c, n->loc, "%s '%s' does not exist (relative to %s)", what, given, c->dir);
            return NULL;
        }
    }
    if (!path) {
        pctx_err(c, n->loc, "out of memory");
        return NULL;
    }
    if (stat(path, st) < 0) {
        pctx_err(c, n->loc, "%s '%s' does not exist", what, given);
        free(path);
        return NULL;
    }
    if (!S_ISREG(st->st_mode)) {
        pctx_err(c, n->loc, "%s '%s' is not a regular file", what, given);
        free(path);
        return NULL;
    }
    return path;
}

static void read_command(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    char **argv = NULL;
    if (pctx_string_list(c, v, k->path, &argv) < 0) return;
    strv_free(c->p->command);
    c->p->command = argv;
    if (!argv[0]) {
        pctx_err(c, v->loc, "'command' must not be empty");
        return;
    }
    struct stat st;
    /* Arguments are passed to execve as they are: no shell, no interpolation. */
    char *exe = resolve_path(l, v->items[0], argv[0], "command", &st);
    if (!exe) return;
    if (!l->offline && !(st.st_mode & 0111))
        pctx_err(c, v->items[0]->loc, "command '%s' is not executable", argv[0]);
    free(argv[0]);
    argv[0] = exe;
}

static void read_module(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    struct pctx *c = &l->c;
    autofree char *given = NULL;
    if (pctx_string(c, v, k->path, &given) < 0) return;
    struct stat st;
    char *path = resolve_path(l, v, given, "module", &st);
    if (!path) return;
    if (!l->offline && (uint64_t)st.st_size > c->p->limits.module_mb * 1024 * 1024)
        pctx_err(c, v->loc, "module '%s' is larger than limits.module_mb (%llu MiB)", given,
                 (unsigned long long)c->p->limits.module_mb);
    free(c->p->module);
    c->p->module = path;
}

static void read_arguments(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    (void)k;
    struct policy *p = l->c.p;
    struct policy_schema *schema = policy_schema_compile_in(&l->c, v, POLICY_SCHEMA_OBJECT_ROOT);
    if (!schema) return;
    policy_schema_free(p->schema);
    p->schema = schema;
    json_decref(p->arguments);
    p->arguments = json_incref((json_t *)policy_schema_json(schema)); /* published as enforced */
}

/* ---- the key table ------------------------------------------------------------------------ */

#define FIELD(member)                                                                              \
    .offset = offsetof(struct policy, member), .size = sizeof(((struct policy *)0)->member)
#define DAY_MS (24ull * 3600 * 1000)
#define MAX_MB 1048576ull
#define STRINGISH "{\"type\":[\"string\",\"number\",\"boolean\"]}"

// clang-format off
const struct policy_key policy_keys[] = {
    /* Order matters: isolation and limits are known before command, module and network. */
    {.path = "name", .type = PKEY_STRING, .flags = PKEY_REQUIRED, FIELD(name),
     .change = PCHANGE_CUSTOM, .read = read_name,
     .doc = "the tool's name, unique in the policy directory",
     .schema = "{\"type\":\"string\",\"pattern\":\"^[a-z0-9][a-z0-9_-]{0,63}$\"}"},
    {.path = "description", .type = PKEY_STRING, .flags = PKEY_REQUIRED, FIELD(description),
     .change = PCHANGE_NEUTRAL, .weaker = "agents read a different description",
     .doc = "what the tool does, shown to agents"},
    {.path = "isolation", .type = PKEY_ENUM, .flags = PKEY_REQUIRED, FIELD(isolation),
     .names = isolation_names, .change = PCHANGE_CUSTOM, .read = read_isolation,
     .doc = "the sandbox every call runs in"},
    {.path = "blast_radius", .type = PKEY_ENUM, FIELD(blast_radius), .names = blast_names,
     .def = "medium", .change = PCHANGE_LESS_WEAKENS,
     .weaker = "the tool is declared less dangerous to approvers and rules",
     .doc = "how much damage a misused call can do"},
    {.path = "reversible", .type = PKEY_BOOL, FIELD(reversible), .def = "true",
     .change = PCHANGE_MORE_WEAKENS,
     .weaker = "the tool no longer needs approval by declaration",
     .doc = "whether a call's effect can be undone; false requires approval.required: true"},
    {.path = "approval", .type = PKEY_SECTION, .doc = "a human approves each call"},
    {.path = "approval.required", .type = PKEY_BOOL, FIELD(approval.required), .def = "false",
     .change = PCHANGE_LESS_WEAKENS, .weaker = "calls run without a human's approval",
     .doc = "hold every call until an approver approves it"},
    {.path = "approval.timeout", .type = PKEY_DURATION, FIELD(approval.timeout_ms),
     .min = 1000, .max = 7 * DAY_MS, .def = "1h", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "an approval can come longer after the call was made",
     .doc = "how long a held call waits for a decision"},
    {.path = "approval.webhook", .type = PKEY_STRING, FIELD(approval.webhook),
     .def_doc = "the gateway config's approval.webhook_url", .change = PCHANGE_CUSTOM,
     .read = read_webhook, .doc = "where held calls are announced (https:// or http://HOST[:PORT]/PATH)",
     .schema = "{\"type\":\"string\",\"pattern\":\"^https?://[A-Za-z0-9.-]+\"}"},
    {.path = "limits", .type = PKEY_SECTION, .doc = "resource caps of one call"},
    {.path = "limits.wall_timeout", .type = PKEY_DURATION, .flags = PKEY_EXPLICIT,
     FIELD(limits.wall_timeout_ms), .min = 1, .max = DAY_MS, .def = "10s",
     .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may run longer",
     .doc = "wall-clock time before everything the call started is killed"},
    {.path = "limits.cpu_time", .type = PKEY_DURATION, FIELD(limits.cpu_time_ms), .min = 1,
     .max = DAY_MS, .def = "10s", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "a call may use more CPU time", .doc = "CPU time (RLIMIT_CPU)"},
    {.path = "limits.memory_mb", .type = PKEY_UINT, .flags = PKEY_EXPLICIT,
     FIELD(limits.memory_mb), .min = 4, .max = MAX_MB, .def = "256",
     .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may use more memory",
     .read = read_memory_mb, .doc = "memory cap in MiB (address space or cgroup memory)"},
    {.path = "limits.pids", .type = PKEY_UINT, .flags = PKEY_EXPLICIT, FIELD(limits.pids),
     .min = 1, .max = 65536, .def = "64", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "a call may start more processes", .doc = "processes and threads of one call"},
    {.path = "limits.output_bytes", .type = PKEY_UINT, .flags = PKEY_EXPLICIT,
     FIELD(limits.output_bytes), .min = 1, .max = 64ull << 20, .def = "1048576",
     .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may return more output",
     .doc = "stdout + stderr cap in bytes"},
    {.path = "limits.file_size_mb", .type = PKEY_UINT, FIELD(limits.file_size_mb), .max = MAX_MB,
     .def = "64", .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may write larger files",
     .doc = "largest file a call may write (RLIMIT_FSIZE), MiB"},
    {.path = "limits.disk_mb", .type = PKEY_UINT, FIELD(limits.disk_mb), .min = 1, .max = MAX_MB,
     .def = "64", .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may fill more of /tmp",
     .doc = "size of /tmp in MiB (container, gvisor)"},
    {.path = "limits.cpu", .type = PKEY_CPU, FIELD(limits.cpu_millis), .min = 10, .max = 64000,
     .def = "1", .change = PCHANGE_MORE_WEAKENS, .weaker = "a call may use more CPU",
     .doc = "CPU share in cores, at most 3 decimals (container, gvisor)",
     .schema = "{\"type\":\"number\",\"minimum\":0.01,\"maximum\":64}"},
    {.path = "limits.fuel", .type = PKEY_UINT, FIELD(limits.fuel), .max = UINT64_MAX,
     .def = "0", .def_doc = "0: derived from cpu_time", .change = PCHANGE_CUSTOM,
     .doc = "WebAssembly instruction budget (0: derived from cpu_time)"},
    {.path = "limits.module_mb", .type = PKEY_UINT, FIELD(limits.module_mb), .min = 1,
     .max = 256, .def = "16", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "a larger WebAssembly module is accepted",
     .doc = "WebAssembly module size cap, MiB"},
    {.path = "env", .type = PKEY_STRING_MAP, FIELD(env), .def_doc = "empty",
     .change = PCHANGE_ADDED_WEAKENS, .weaker = "the tool gets more environment",
     .read = read_env,
     .doc = "the tool's whole environment (plus GATEHOUSE_CALL_ID and GATEHOUSE_TOOL)",
     .schema = "{\"type\":\"object\",\"propertyNames\":{\"pattern\":\"^[A-Za-z_][A-Za-z0-9_]*$\","
               "\"not\":{\"pattern\":\"^GATEHOUSE_\"}},\"additionalProperties\":" STRINGISH "}"},
    {.path = "filesystem", .type = PKEY_SECTION, .doc = "what the tool sees of the file system"},
    {.path = "filesystem.read_only", .type = PKEY_STRING_LIST, .flags = PKEY_HOST,
     FIELD(filesystem.read_only), .def_doc = "tier default (/usr, with /bin, /lib, /lib64, "
     "/sbin as links)", .change = PCHANGE_CUSTOM, .weaker = "the tool sees more of the host",
     .read = read_read_only, .doc = "existing absolute host paths bound read-only",
     .schema = "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^/\"}}"},
    {.path = "filesystem.workspace", .type = PKEY_SECTION, .flags = PKEY_OR_BOOL,
     FIELD(filesystem.workspace), .def = "false", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "the tool gets a writable workspace",
     .doc = "a writable, size-capped workspace: true, or {size_mb: N}"},
    {.path = "filesystem.workspace.size_mb", .type = PKEY_UINT,
     FIELD(filesystem.workspace_mb), .min = 1, .max = MAX_MB, .def = "64",
     .change = PCHANGE_MORE_WEAKENS, .weaker = "the tool may write more",
     .doc = "size of the workspace, MiB"},
    {.path = "filesystem.exec_workspace", .type = PKEY_BOOL, FIELD(filesystem.exec_workspace),
     .def = "false", .change = PCHANGE_MORE_WEAKENS,
     .weaker = "the tool can run programs it wrote", .doc = "allow exec from writable mounts"},
    {.path = "network", .type = PKEY_ENUM, FIELD(network), .names = network_names,
     .def = "none", .change = PCHANGE_CUSTOM, .weaker = "the tool can reach a network",
     .read = read_network,
     .doc = "none (only lo), sandbox (gVisor's own netstack; gvisor only), or {egress: "
            "[\"HOST:PORT\", \"CIDR:PORT\", \"[V6]:PORT\"], dns: bool} (process, container, "
            "gvisor, microvm)",
     .schema = "{\"oneOf\":[{\"enum\":[\"none\",\"sandbox\"]},{\"type\":\"object\","
               "\"properties\":{\"egress\":{\"type\":\"array\",\"items\":{\"type\":"
               "\"string\"}},\"dns\":{\"type\":\"boolean\"}},\"additionalProperties\":false}]}"},
    {.path = "seccomp", .type = PKEY_SECTION, .doc = "changes to the tier's syscall filter"},
    {.path = "seccomp.allow", .type = PKEY_STRING_LIST, FIELD(seccomp_allow), .def_doc = "empty",
     .change = PCHANGE_ADDED_WEAKENS, .weaker = "the tool can make more system calls",
     .read = read_seccomp_allow, .doc = "syscalls added to the tier's allowlist"},
    {.path = "seccomp.deny", .type = PKEY_STRING_LIST, FIELD(seccomp_deny), .def_doc = "empty",
     .change = PCHANGE_REMOVED_WEAKENS, .weaker = "the tool can make more system calls",
     .read = read_seccomp_deny, .doc = "syscalls refused in addition"},
    {.path = "gvisor", .type = PKEY_SECTION, .doc = "gVisor settings (gvisor only)"},
    {.path = "gvisor.platform", .type = PKEY_ENUM, .flags = PKEY_AS_STRING,
     FIELD(gvisor_platform), .names = gvisor_platforms, .def = "ptrace",
     .change = PCHANGE_NEUTRAL, .weaker = "gVisor intercepts system calls differently",
     .doc = "how gVisor intercepts system calls"},
    {.path = "microvm", .type = PKEY_SECTION, .doc = "microVM settings (microvm only)"},
    {.path = "microvm.accel", .type = PKEY_ENUM, FIELD(microvm_accel), .names = microvm_accels,
     .def = "auto", .change = PCHANGE_NEUTRAL, .weaker = "the guest runs under another accelerator",
     .doc = "KVM where /dev/kvm works, else QEMU's TCG (auto); or insist on kvm or tcg"},
    {.path = "pool", .type = PKEY_SECTION, .doc = "warm sandboxes"},
    {.path = "pool.size", .type = PKEY_UINT, FIELD(pool_size), .max = 1024, .def = "2",
     .read = read_pool_size, .change = PCHANGE_NEUTRAL,
     .weaker = "more or fewer sandboxes are kept ready",
     .doc = "sandboxes kept booted ahead of demand, 0..16 (gvisor, microvm); wasm workers, "
            "0..1024, default --max-concurrent"},
    {.path = "command", .type = PKEY_STRING_LIST, FIELD(command), .change = PCHANGE_CUSTOM,
     .read = read_command, .flags = PKEY_HOST,
     .doc = "argv, never expanded; [0] an executable, absolute or relative to the policy file",
     .schema = "{\"type\":\"array\",\"items\":" STRINGISH ",\"minItems\":1}"},
    {.path = "module", .type = PKEY_STRING, FIELD(module), .change = PCHANGE_CUSTOM,
     .read = read_module, .flags = PKEY_HOST,
     .doc = "the .wasm file (wasm only), relative to the policy file"},
    {.path = "arguments", .type = PKEY_SCHEMA, FIELD(arguments),
     .def_doc = "an object with no properties", .change = PCHANGE_CUSTOM, .read = read_arguments,
     .doc = "JSON Schema of the call's arguments (additionalProperties defaults to false)",
     .schema = "{\"$ref\":\"#/$defs/arguments\"}"},
};
// clang-format on
const size_t policy_nkeys = sizeof(policy_keys) / sizeof(policy_keys[0]);
_Static_assert(sizeof(policy_keys) / sizeof(policy_keys[0]) <= POLICY_MAX_KEYS,
               "raise POLICY_MAX_KEYS");

// clang-format off
const struct policy_cross_rule policy_cross_rules[] = {
    {"isolation", PCROSS_IF_IS, "wasm", "command", PCROSS_ABSENT, NULL, PCROSS_AT_THEN_KEY, NULL,
     "'command' is not used with isolation: wasm (give 'module')"},
    {"isolation", PCROSS_IF_IS_NOT, "wasm", "command", PCROSS_PRESENT, NULL, PCROSS_AT_ROOT, NULL,
     "missing required key 'command'"},
    {"isolation", PCROSS_IF_IS, "wasm", "module", PCROSS_PRESENT, NULL, PCROSS_AT_IF_VALUE, NULL,
     "isolation: wasm requires 'module'"},
    {"isolation", PCROSS_IF_IS_NOT, "wasm", "module", PCROSS_ABSENT, NULL, PCROSS_AT_THEN_KEY,
     NULL, "'module' is only used with isolation: wasm"},
    {"isolation", PCROSS_IF_IS_NOT, "gvisor", "network", PCROSS_IS_NOT, "sandbox",
     PCROSS_AT_THEN_VALUE, NULL, "network: sandbox is only available with isolation: gvisor"},
    {"isolation", PCROSS_IF_IS_NOT, "gvisor", "gvisor", PCROSS_ABSENT, NULL, PCROSS_AT_THEN_KEY,
     NULL, "'gvisor' settings are only used with isolation: gvisor"},
    {"isolation", PCROSS_IF_IS_NOT, "microvm", "microvm", PCROSS_ABSENT, NULL, PCROSS_AT_THEN_KEY,
     NULL, "'microvm' settings are only used with isolation: microvm"},
    {"reversible", PCROSS_IF_IS, "false", "approval.required", PCROSS_IS, "true",
     PCROSS_AT_IF_VALUE, "GH101",
     "irreversible tools must require approval (set approval.required: true)"},
};
// clang-format on
const size_t policy_ncross_rules = sizeof(policy_cross_rules) / sizeof(policy_cross_rules[0]);

/* ---- walking the table -------------------------------------------------------------------- */

const struct policy_key *policy_key_find(const char *path)
{
    for (size_t i = 0; i < policy_nkeys; i++)
        if (strcmp(policy_keys[i].path, path) == 0) return &policy_keys[i];
    return NULL;
}

const char *policy_key_leaf(const struct policy_key *k)
{
    const char *dot = strrchr(k->path, '.');
    return dot ? dot + 1 : k->path;
}

const struct policy_key *policy_key_parent(const struct policy_key *k)
{
    const char *dot = strrchr(k->path, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < policy_nkeys; i++) {
        const char *p = policy_keys[i].path;
        if (strlen(p) == (size_t)(dot - k->path) && strncmp(p, k->path, strlen(p)) == 0)
            return &policy_keys[i];
    }
    return NULL;
}

const struct ynode *policy_key_node(const struct ynode *root, const char *path)
{
    const struct ynode *n = root;
    char part[64];
    while (n && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof(part)) return NULL;
        memcpy(part, path, len);
        part[len] = '\0';
        n = ynode_get(n, part);
        path += len + (path[len] == '.');
    }
    return n;
}

struct policy_loc policy_key_loc(const struct ynode *root, const char *path)
{
    struct policy_loc loc = root ? root->loc : (struct policy_loc){1, 1};
    const struct ynode *n = root;
    char part[64];
    while (n && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof(part)) break;
        memcpy(part, path, len);
        part[len] = '\0';
        if (!ynode_get(n, part)) break;
        loc = ynode_key_loc(n, part);
        n = ynode_get(n, part);
        path += len + (path[len] == '.');
    }
    return loc;
}

static size_t key_index(const struct policy_key *k)
{
    return (size_t)(k - policy_keys);
}

static void read_key(struct loader *l, const struct policy_key *k, const struct ynode *v);

/* The keys of each mapping, in table order: [0] the top level, [1 + i] those of key i. Worked
 * out once: every policy load walks them. */
static struct {
    const struct policy_key *keys[POLICY_MAX_KEYS];
    size_t n;
} mappings[POLICY_MAX_KEYS + 1];
static pthread_once_t mappings_once = PTHREAD_ONCE_INIT;

static void index_mappings(void)
{
    for (size_t i = 0; i < policy_nkeys; i++) {
        const struct policy_key *parent = policy_key_parent(&policy_keys[i]);
        size_t m = parent ? 1 + key_index(parent) : 0;
        mappings[m].keys[mappings[m].n++] = &policy_keys[i];
    }
}

static size_t children(const struct policy_key *parent, const struct policy_key **out)
{
    pthread_once(&mappings_once, index_mappings);
    size_t m = parent ? 1 + key_index(parent) : 0;
    memcpy(out, mappings[m].keys, mappings[m].n * sizeof(*out));
    return mappings[m].n;
}

static void read_mapping(struct loader *l, const struct policy_key *parent, const struct ynode *v)
{
    const struct policy_key *keys[POLICY_MAX_KEYS];
    const char *allowed[POLICY_MAX_KEYS + 1];
    size_t n = children(parent, keys);
    for (size_t i = 0; i < n; i++)
        allowed[i] = policy_key_leaf(keys[i]);
    allowed[n] = NULL;
    if (pctx_expect_map(&l->c, v, parent ? parent->path : "policy", allowed) < 0 &&
        (v->kind != YNODE_MAP || (parent && (parent->flags & PKEY_OR_BOOL))))
        return;
    if (parent && (parent->flags & PKEY_OR_BOOL)) *(bool *)pkey_field(parent, l->c.p) = true;
    for (size_t i = 0; i < n; i++) {
        const struct ynode *child = ynode_get(v, allowed[i]);
        if (child) read_key(l, keys[i], child);
    }
}

static void read_key(struct loader *l, const struct policy_key *k, const struct ynode *v)
{
    int before = l->c.errors;
    if (k->read)
        k->read(l, k, v);
    else if (k->type == PKEY_SECTION && (v->kind != YNODE_SCALAR || !(k->flags & PKEY_OR_BOOL)))
        read_mapping(l, k, v);
    else
        pkey_read(&l->c, k, v);
    if (l->c.errors != before) l->failed[key_index(k)] = true;
}

/* Defaults come from the rows, read by the same readers as the file. */
static int set_defaults(struct policy *p)
{
    struct pctx c = {.path = "(defaults)", .p = p};
    for (size_t i = 0; i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (!k->def) continue;
        struct ynode n = {.kind = YNODE_SCALAR, .scalar = (char *)k->def, .loc = {1, 1}};
        pkey_read(&c, k, &n);
    }
    p->env = calloc(1, sizeof(char *));
    p->seccomp_allow = calloc(1, sizeof(char *));
    p->seccomp_deny = calloc(1, sizeof(char *));
    p->schema = policy_schema_compile_in(NULL, NULL, POLICY_SCHEMA_OBJECT_ROOT);
    p->arguments = p->schema ? json_incref((json_t *)policy_schema_json(p->schema)) : NULL;
    if (c.errors || !p->env || !p->seccomp_allow || !p->seccomp_deny || !p->gvisor_platform ||
        !p->schema || !p->arguments)
        return -1;
    return 0;
}

/* ---- rules that tie keys together --------------------------------------------------------- */

static bool key_is(const struct policy_key *k, const struct policy *p, const char *value)
{
    struct gate_buf b = {0};
    pkey_format(k, p, &b);
    bool eq = b.data && strcmp(b.data, value) == 0;
    gate_buf_free(&b);
    return eq;
}

static void check_cross_rule(struct loader *l, const struct policy_cross_rule *r)
{
    const struct policy_key *ik = policy_key_find(r->if_key), *tk = policy_key_find(r->then_key);
    const struct ynode *iv = policy_key_node(l->root, r->if_key);
    if (!ik || !tk || l->failed[key_index(ik)] || (!iv && !ik->def)) return;
    if (key_is(ik, l->c.p, r->if_value) != (r->op == PCROSS_IF_IS)) return;
    const struct ynode *tv = policy_key_node(l->root, r->then_key);
    bool ok = r->then == PCROSS_PRESENT  ? tv != NULL
              : r->then == PCROSS_ABSENT ? tv == NULL
              : r->then == PCROSS_IS     ? key_is(tk, l->c.p, r->then_value)
                                         : !key_is(tk, l->c.p, r->then_value);
    if (ok) return;
    struct policy_loc loc = l->root->loc;
    if (r->at == PCROSS_AT_IF_VALUE && iv) loc = iv->loc;
    if (r->at == PCROSS_AT_THEN_KEY) loc = policy_key_loc(l->root, r->then_key);
    if (r->at == PCROSS_AT_THEN_VALUE) loc = tv ? tv->loc : policy_key_loc(l->root, r->then_key);
    pctx_err_rule(&l->c, r->rule, loc, "%s", r->msg);
}

static void validate(struct loader *l)
{
    struct pctx *c = &l->c;
    const struct ynode *root = l->root;
    if (root->kind != YNODE_MAP) {
        pctx_err(c, root->loc, "a policy must be a mapping, got %s", ynode_kind_name(root));
        return;
    }
    read_mapping(l, NULL, root);
    for (size_t i = 0; i < policy_nkeys; i++)
        if ((policy_keys[i].flags & PKEY_REQUIRED) && !ynode_get(root, policy_keys[i].path))
            pctx_err(c, root->loc, "missing required key '%s'", policy_keys[i].path);
    for (size_t i = 0; i < policy_ncross_rules; i++)
        check_cross_rule(l, &policy_cross_rules[i]);
    /* WASI has no sockets. */
    const struct ynode *n = ynode_get(root, "network");
    struct policy *p = c->p;
    if (n && p->network == NETWORK_EGRESS && p->isolation == ISOLATION_WASM)
        pctx_err(c, n->loc, "network.egress is not available with isolation: %s (%s)",
                 policy_isolation_name(p->isolation), "WASI has no sockets");
}

/* ---- loading ------------------------------------------------------------------------------ */

static char *policy_dir(const char *path)
{
    autofree char *copy = strdup(path);
    if (!copy) return NULL;
    char *abs = realpath(dirname(copy), NULL);
    return abs ? abs : strdup("/nonexistent");
}

int policy_load_ex(const char *path, const char *buf, size_t len,
                   const struct policy_load_opts *opts, struct policy **out,
                   struct policy_diags *diags)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (!p || !(p->path = strdup(path)) || set_defaults(p) < 0) {
        policy_free(p);
        policy_diags_add(diags, "%s:1:1: out of memory", path);
        return -1;
    }
    gate_sha256_hex(buf, len, p->sha256);
    struct gate_error err = {0};
    struct ynode *root = NULL;
    if (ynode_load_buf(path, buf, len, &root, &err) < 0) {
        policy_diags_add(diags, "%s", err.msg);
        policy_free(p);
        return -1;
    }
    struct loader l = {.c = {.path = path, .p = p, .diags = diags},
                       .root = root,
                       .offline = opts && opts->offline};
    l.c.dir = policy_dir(path);
    if (!l.c.dir)
        pctx_err(&l.c, root->loc, "out of memory");
    else
        validate(&l);
    free(l.c.dir);
    if (opts && opts->tree)
        *opts->tree = root;
    else
        ynode_free(root);
    if (l.c.errors > 0) {
        policy_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int policy_load_buf(const char *path, const char *buf, size_t len, struct policy **out,
                    struct policy_diags *diags)
{
    return policy_load_ex(path, buf, len, NULL, out, diags);
}

int policy_load_file(const char *path, struct policy **out, struct policy_diags *diags)
{
    autofree char *buf = NULL;
    size_t len = 0;
    struct gate_error err = {0};
    if (policy_read_yaml_file(path, &buf, &len, &err) < 0) {
        policy_diags_add(diags, "%s", err.msg);
        return -1;
    }
    return policy_load_buf(path, buf, len, out, diags);
}

void policy_free(struct policy *p)
{
    if (!p) return;
    if (p->sbx_state && p->sbx_state_free) p->sbx_state_free(p->sbx_state);
    free(p->path);
    free(p->name);
    free(p->description);
    policy_network_free(&p->net);
    strv_free(p->command);
    strv_free(p->env);
    free(p->approval.webhook);
    strv_free(p->filesystem.read_only);
    strv_free(p->seccomp_allow);
    strv_free(p->seccomp_deny);
    free(p->seccomp_allow_locs);
    free(p->seccomp_deny_locs);
    free(p->gvisor_platform);
    free(p->module);
    json_decref(p->arguments);
    policy_schema_free(p->schema);
    free(p);
}
