// clang-format off
/* policy.c: one policy file -> struct policy, with every problem reported as FILE:LINE:COL.
 *
 * Policy keys (unknown keys at any level are errors; booleans are exactly unquoted
 * true/false; integers are decimal; durations are "250ms", "5s", "2m", "1h"):
 *
 * | key                       | type / values                          | default / rule           |
 * |---------------------------|----------------------------------------|--------------------------|
 * | name                      | ^[a-z0-9][a-z0-9_-]{0,63}$             | required; unique in the  |
 * |                           |                                        | set                      |
 * | description               | string                                 | required                 |
 * | isolation                 | process, container, gvisor, microvm,   | required                 |
 * |                           | wasm                                   |                          |
 * | command                   | list of strings (argv, never           | required; refused for    |
 * |                           | expanded); [0] absolute or relative to | wasm                     |
 * |                           | the policy's directory, an existing    |                          |
 * |                           | executable regular file                |                          |
 * | module                    | path of a .wasm file, relative to the  | required for wasm,       |
 * |                           | policy's directory, at most            | refused otherwise        |
 * |                           | limits.module_mb                       |                          |
 * | blast_radius              | low, medium, high, critical            | medium                   |
 * | reversible                | bool                                   | true; false needs        |
 * |                           |                                        | approval.required: true  |
 * | approval.required         | bool                                   | false                    |
 * | approval.timeout          | duration 1s..168h                      | 1h                       |
 * | approval.webhook          | http:// or https:// URL                | none (gateway default)   |
 * | limits.wall_timeout       | duration 1ms..24h                      | 10s                      |
 * | limits.cpu_time           | duration 1ms..24h                      | 10s                      |
 * | limits.memory_mb          | integer 4..1048576                     | 256                      |
 * | limits.pids               | integer 1..65536                       | 64                       |
 * | limits.output_bytes       | integer 1..67108864                    | 1048576                  |
 * | limits.file_size_mb       | integer 0..1048576                     | 64                       |
 * | limits.disk_mb            | integer 1..1048576                     | 64                       |
 * | limits.cpu                | cores 0.01..64, at most 3 decimals     | 1 (cpu_millis 1000)      |
 * | limits.fuel               | integer (wasm instructions)            | 0 = derived from         |
 * |                           |                                        | cpu_time                 |
 * | limits.module_mb          | integer 1..256                         | 16                       |
 * | env                       | map NAME: string; NAME matches         | empty environment        |
 * |                           | ^[A-Za-z_][A-Za-z0-9_]*$; GATEHOUSE_*  |                          |
 * |                           | reserved                               |                          |
 * | filesystem.read_only      | list of absolute paths existing on the | tier default             |
 * |                           | host                                   |                          |
 * | filesystem.workspace      | {size_mb: 1..1048576} or true/false    | none; size_mb 64         |
 * | filesystem.exec_workspace | bool                                   | false                    |
 * | network                   | none, sandbox (sandbox: gvisor only),  | none                     |
 * |                           | {egress: ["HOST:PORT", "CIDR:PORT",    |                          |
 * |                           | "[V6]:PORT"], dns: bool} (network.c)   |                          |
 * | seccomp.allow, .deny      | lists of syscall names libseccomp      | empty                    |
 * |                           | knows                                  |                          |
 * | gvisor.platform           | ptrace, systrap, kvm (gvisor only)     | ptrace                   |
 * | pool.size                 | integer 0..16                          | 2                        |
 * | arguments                 | JSON Schema subset (schema.c), root    | {type: object,           |
 * |                           | type: object; additionalProperties     | properties: {},          |
 * |                           | defaults to FALSE (strict)             | additionalProperties:    |
 * |                           |                                        | false}                   |
 */
// clang-format on
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy_internal.h"

static const char *const isolation_names[] = {"process", "container", "gvisor", "microvm", "wasm"};
static const char *const blast_names[] = {"low", "medium", "high", "critical"};

const char *policy_isolation_name(enum isolation iso)
{
    return (unsigned)iso < ISOLATION__COUNT ? isolation_names[iso] : "unknown";
}

const char *policy_blast_name(enum blast_radius b)
{
    return (unsigned)b <= BLAST_CRITICAL ? blast_names[b] : "unknown";
}

/* Load-time state beyond the policy itself: which keys were present, and where. */
struct loader {
    struct pctx c;
    const struct ynode *root;
    bool have_isolation;
};

static int pick_enum(struct pctx *c, const struct ynode *n, const char *what,
                     const char *const *names, size_t count, int *out)
{
    if (n->kind != YNODE_SCALAR) {
        pctx_err(c, n->loc, "'%s' must be a scalar, got %s", what, ynode_kind_name(n));
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        if (strcmp(n->scalar, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    char list[256] = "";
    for (size_t i = 0; i < count; i++) {
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
        if (i + 1 < count) strncat(list, ", ", sizeof(list) - strlen(list) - 1);
    }
    pctx_err(c, n->loc, "'%s' must be one of %s; got '%s'", what, list, n->scalar);
    return -1;
}

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

static void key_name(struct loader *l, const struct ynode *v)
{
    struct pctx *c = &l->c;
    if (pctx_string(c, v, "name", &c->p->name) < 0) return;
    c->p->name_loc = v->loc;
    if (!matches_name(c->p->name))
        pctx_err(c, v->loc, "'name' must match ^[a-z0-9][a-z0-9_-]{0,63}$; got '%s'", c->p->name);
}

static void key_description(struct loader *l, const struct ynode *v)
{
    pctx_string(&l->c, v, "description", &l->c.p->description);
}

static void key_isolation(struct loader *l, const struct ynode *v)
{
    int iso = 0;
    l->c.p->isolation_loc = v->loc;
    if (pick_enum(&l->c, v, "isolation", isolation_names, ISOLATION__COUNT, &iso) == 0) {
        l->c.p->isolation = (enum isolation)iso;
        l->have_isolation = true;
    }
}

static void key_blast_radius(struct loader *l, const struct ynode *v)
{
    int b = 0;
    if (pick_enum(&l->c, v, "blast_radius", blast_names, 4, &b) == 0)
        l->c.p->blast_radius = (enum blast_radius)b;
}

static void key_reversible(struct loader *l, const struct ynode *v)
{
    pctx_bool(&l->c, v, "reversible", &l->c.p->reversible);
}

/* What the webhook sender can deliver to: http://HOST[:PORT][/PATH], HOST a name or IPv4
 * address, PORT 1..65535, no user info, no fragment (https is not supported yet). */
static bool is_http_url(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 || strlen(s) > 2048) return false;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#' || *q == '@') return false;
    const char *host = s + 7;
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

static void key_approval(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"required", "timeout", "webhook", NULL};
    struct pctx *c = &l->c;
    struct policy_approval *a = &c->p->approval;
    if (pctx_expect_map(c, v, "approval", keys) < 0 && v->kind != YNODE_MAP) return;
    const struct ynode *n;
    if ((n = ynode_get(v, "required"))) pctx_bool(c, n, "approval.required", &a->required);
    if ((n = ynode_get(v, "timeout")))
        pctx_duration(c, n, "approval.timeout", 1000, 7ull * 24 * 3600 * 1000, &a->timeout_ms);
    if ((n = ynode_get(v, "webhook")) && pctx_string(c, n, "approval.webhook", &a->webhook) == 0 &&
        !is_http_url(a->webhook))
        pctx_err(c, n->loc,
                 "'approval.webhook' must be an http://HOST[:PORT]/PATH URL "
                 "(https is not supported yet)");
}

/* "0.5" -> 500 millicores; at most three decimals, no exponent, no sign. */
static void limit_cpu(struct pctx *c, const struct ynode *n)
{
    if (n->kind != YNODE_SCALAR || n->quoted) {
        pctx_err(c, n->loc, "'limits.cpu' must be a number of cores like 0.5");
        return;
    }
    const char *s = n->scalar;
    uint64_t whole = 0, frac = 0;
    int ndigits = 0, nfrac = 0;
    for (; *s >= '0' && *s <= '9' && ndigits < 6; s++, ndigits++)
        whole = whole * 10 + (uint64_t)(*s - '0');
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9' && nfrac < 4; s++, nfrac++)
            frac = frac * 10 + (uint64_t)(*s - '0');
    if (ndigits == 0 || *s != '\0' || nfrac > 3 || (n->scalar[ndigits] == '.' && nfrac == 0)) {
        pctx_err(c, n->loc,
                 "'limits.cpu' must be a number of cores like 0.5 (at most 3 decimals); got '%s'",
                 n->scalar);
        return;
    }
    for (int i = nfrac; i < 3; i++)
        frac *= 10;
    uint64_t millis = whole * 1000 + frac;
    if (millis < 10 || millis > 64000) {
        pctx_err(c, n->loc, "'limits.cpu' must be between 0.01 and 64");
        return;
    }
    c->p->limits.cpu_millis = (uint32_t)millis;
}

static void key_limits(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"wall_timeout", "cpu_time",     "memory_mb", "pids",
                                       "output_bytes", "file_size_mb", "disk_mb",   "cpu",
                                       "fuel",         "module_mb",    NULL};
    struct pctx *c = &l->c;
    struct policy_limits *lim = &c->p->limits;
    if (pctx_expect_map(c, v, "limits", keys) < 0 && v->kind != YNODE_MAP) return;
    const uint64_t day_ms = 24ull * 3600 * 1000, max_mb = 1048576;
    const struct ynode *n;
    if ((n = ynode_get(v, "wall_timeout")))
        pctx_duration(c, n, "limits.wall_timeout", 1, day_ms, &lim->wall_timeout_ms);
    if ((n = ynode_get(v, "cpu_time")))
        pctx_duration(c, n, "limits.cpu_time", 1, day_ms, &lim->cpu_time_ms);
    if ((n = ynode_get(v, "memory_mb"))) {
        uint64_t mb = 0;
        if (pctx_uint(c, n, "limits.memory_mb", 0, max_mb, &mb) == 0) {
            if (mb < 4)
                pctx_err(c, n->loc, "'limits.memory_mb': memory cap under 4 MiB");
            else
                lim->memory_mb = mb;
        }
    }
    if ((n = ynode_get(v, "pids"))) pctx_uint(c, n, "limits.pids", 1, 65536, &lim->pids);
    if ((n = ynode_get(v, "output_bytes")))
        pctx_uint(c, n, "limits.output_bytes", 1, 64ull << 20, &lim->output_bytes);
    if ((n = ynode_get(v, "file_size_mb")))
        pctx_uint(c, n, "limits.file_size_mb", 0, max_mb, &lim->file_size_mb);
    if ((n = ynode_get(v, "disk_mb"))) pctx_uint(c, n, "limits.disk_mb", 1, max_mb, &lim->disk_mb);
    if ((n = ynode_get(v, "cpu"))) limit_cpu(c, n);
    if ((n = ynode_get(v, "fuel"))) pctx_uint(c, n, "limits.fuel", 0, UINT64_MAX, &lim->fuel);
    if ((n = ynode_get(v, "module_mb")))
        pctx_uint(c, n, "limits.module_mb", 1, 256, &lim->module_mb);
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

static void key_env(struct loader *l, const struct ynode *v)
{
    struct pctx *c = &l->c;
    if (v->kind != YNODE_MAP) {
        pctx_err(c, v->loc, "'env' must be a mapping, got %s", ynode_kind_name(v));
        return;
    }
    char **env = calloc(v->n + 1, sizeof(*env));
    if (!env) {
        pctx_err(c, v->loc, "out of memory");
        return;
    }
    size_t k = 0;
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
        if (asprintf(&env[k], "%s=%s", name, val) < 0) {
            env[k] = NULL;
            pctx_err(c, v->loc, "out of memory");
            break;
        }
        k++;
    }
    strv_free(c->p->env);
    c->p->env = env;
}

static void fs_read_only(struct pctx *c, const struct ynode *n)
{
    char **paths = NULL;
    if (pctx_string_list(c, n, "filesystem.read_only", &paths) < 0) return;
    for (size_t i = 0; paths[i]; i++) {
        struct stat st;
        if (paths[i][0] != '/')
            pctx_err(c, n->items[i]->loc, "read_only path '%s' must be absolute", paths[i]);
        else if (stat(paths[i], &st) < 0)
            pctx_err(c, n->items[i]->loc, "read_only path '%s' does not exist on the host",
                     paths[i]);
    }
    strv_free(c->p->filesystem.read_only);
    c->p->filesystem.read_only = paths;
}

static void key_filesystem(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"read_only", "workspace", "exec_workspace", NULL};
    static const char *const ws_keys[] = {"size_mb", NULL};
    struct pctx *c = &l->c;
    struct policy_filesystem *fs = &c->p->filesystem;
    if (pctx_expect_map(c, v, "filesystem", keys) < 0 && v->kind != YNODE_MAP) return;
    const struct ynode *n;
    if ((n = ynode_get(v, "read_only"))) fs_read_only(c, n);
    if ((n = ynode_get(v, "workspace"))) {
        if (n->kind == YNODE_SCALAR) {
            pctx_bool(c, n, "filesystem.workspace", &fs->workspace);
        } else if (pctx_expect_map(c, n, "filesystem.workspace", ws_keys) == 0) {
            fs->workspace = true;
            const struct ynode *sz = ynode_get(n, "size_mb");
            if (sz) pctx_uint(c, sz, "filesystem.workspace.size_mb", 1, 1048576, &fs->workspace_mb);
        }
    }
    if ((n = ynode_get(v, "exec_workspace")))
        pctx_bool(c, n, "filesystem.exec_workspace", &fs->exec_workspace);
}

static void key_network(struct loader *l, const struct ynode *v)
{
    static const char *const names[] = {"none", "sandbox"};
    int mode = 0;
    if (v->kind == YNODE_MAP)
        policy_network_read(&l->c, v);
    else if (pick_enum(&l->c, v, "network", names, 2, &mode) == 0)
        l->c.p->network = (enum network_mode)mode;
}

static void key_seccomp(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"allow", "deny", NULL};
    struct pctx *c = &l->c;
    if (pctx_expect_map(c, v, "seccomp", keys) < 0 && v->kind != YNODE_MAP) return;
    const struct ynode *n;
    if ((n = ynode_get(v, "allow")))
        policy_check_syscalls(c, n, "seccomp.allow", &c->p->seccomp_allow);
    if ((n = ynode_get(v, "deny")))
        policy_check_syscalls(c, n, "seccomp.deny", &c->p->seccomp_deny);
}

static void key_gvisor(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"platform", NULL};
    static const char *const platforms[] = {"ptrace", "systrap", "kvm"};
    struct pctx *c = &l->c;
    if (pctx_expect_map(c, v, "gvisor", keys) < 0 && v->kind != YNODE_MAP) return;
    const struct ynode *n = ynode_get(v, "platform");
    int idx = 0;
    if (n && pick_enum(c, n, "gvisor.platform", platforms, 3, &idx) == 0) {
        char *s = strdup(platforms[idx]);
        if (!s) {
            pctx_err(c, n->loc, "out of memory");
            return;
        }
        free(c->p->gvisor_platform);
        c->p->gvisor_platform = s;
    }
}

static void key_pool(struct loader *l, const struct ynode *v)
{
    static const char *const keys[] = {"size", NULL};
    struct pctx *c = &l->c;
    if (pctx_expect_map(c, v, "pool", keys) < 0 && v->kind != YNODE_MAP) return;
    const struct ynode *n = ynode_get(v, "size");
    uint64_t size = 0;
    if (n && pctx_uint(c, n, "pool.size", 0, 16, &size) == 0) c->p->pool_size = (uint32_t)size;
}

/* Resolve a path given in the policy: absolute as written, relative against the policy's
 * directory (then canonicalised). Returns an owned absolute path or NULL after reporting. */
static char *resolve_path(struct pctx *c, const struct ynode *n, const char *given,
                          const char *what, struct stat *st)
{
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

static void key_command(struct loader *l, const struct ynode *v)
{
    struct pctx *c = &l->c;
    char **argv = NULL;
    if (pctx_string_list(c, v, "command", &argv) < 0) return;
    strv_free(c->p->command);
    c->p->command = argv;
    if (!argv[0]) {
        pctx_err(c, v->loc, "'command' must not be empty");
        return;
    }
    struct stat st;
    /* Arguments are passed to execve as they are: no shell, no interpolation. */
    char *exe = resolve_path(c, v->items[0], argv[0], "command", &st);
    if (!exe) return;
    if (!(st.st_mode & 0111))
        pctx_err(c, v->items[0]->loc, "command '%s' is not executable", argv[0]);
    free(argv[0]);
    argv[0] = exe;
}

static void key_module(struct loader *l, const struct ynode *v)
{
    struct pctx *c = &l->c;
    autofree char *given = NULL;
    if (pctx_string(c, v, "module", &given) < 0) return;
    struct stat st;
    char *path = resolve_path(c, v, given, "module", &st);
    if (!path) return;
    if ((uint64_t)st.st_size > c->p->limits.module_mb * 1024 * 1024)
        pctx_err(c, v->loc, "module '%s' is larger than limits.module_mb (%llu MiB)", given,
                 (unsigned long long)c->p->limits.module_mb);
    free(c->p->module);
    c->p->module = path;
}

static void key_arguments(struct loader *l, const struct ynode *v)
{
    struct pctx *c = &l->c;
    json_t *j = policy_ynode_to_json(c, v);
    if (j) {
        json_decref(c->p->arguments);
        c->p->arguments = j;
    }
    void *schema = policy_schema_compile(c, v);
    if (schema) {
        policy_schema_free(c->p->schema);
        c->p->schema = schema;
    }
}

static const struct {
    const char *key;
    void (*read)(struct loader *l, const struct ynode *v);
} top_keys[] = {
    /* Order matters: isolation and limits are known before command, module and network. */
    {"name", key_name},
    {"description", key_description},
    {"isolation", key_isolation},
    {"blast_radius", key_blast_radius},
    {"reversible", key_reversible},
    {"approval", key_approval},
    {"limits", key_limits},
    {"env", key_env},
    {"filesystem", key_filesystem},
    {"network", key_network},
    {"seccomp", key_seccomp},
    {"gvisor", key_gvisor},
    {"pool", key_pool},
    {"command", key_command},
    {"module", key_module},
    {"arguments", key_arguments},
};
#define N_TOP_KEYS (sizeof(top_keys) / sizeof(top_keys[0]))

static int set_defaults(struct policy *p)
{
    p->blast_radius = BLAST_MEDIUM;
    p->reversible = true;
    p->approval.timeout_ms = 3600ull * 1000;
    p->limits = (struct policy_limits){
        .wall_timeout_ms = 10000,
        .cpu_time_ms = 10000,
        .memory_mb = 256,
        .pids = 64,
        .output_bytes = 1048576,
        .file_size_mb = 64,
        .disk_mb = 64,
        .cpu_millis = 1000,
        .fuel = 0,
        .module_mb = 16,
    };
    p->filesystem.workspace_mb = 64;
    p->network = NETWORK_NONE;
    p->pool_size = 2;
    p->env = calloc(1, sizeof(char *));
    p->seccomp_allow = calloc(1, sizeof(char *));
    p->seccomp_deny = calloc(1, sizeof(char *));
    p->gvisor_platform = strdup("ptrace");
    p->schema = policy_schema_compile(NULL, NULL);
    p->arguments =
        json_pack("{s:s, s:{}, s:b}", "type", "object", "properties", "additionalProperties", 0);
    if (!p->env || !p->seccomp_allow || !p->seccomp_deny || !p->gvisor_platform || !p->schema ||
        !p->arguments)
        return -1;
    return 0;
}

static void require_key(struct loader *l, const char *key)
{
    if (!ynode_get(l->root, key)) pctx_err(&l->c, l->root->loc, "missing required key '%s'", key);
}

/* Rules that tie several keys together, checked once every key has been read. */
static void cross_checks(struct loader *l)
{
    struct pctx *c = &l->c;
    struct policy *p = c->p;
    const struct ynode *n;
    require_key(l, "name");
    require_key(l, "description");
    require_key(l, "isolation");
    if (!l->have_isolation) return;
    bool wasm = p->isolation == ISOLATION_WASM;
    if (wasm && (n = ynode_get(l->root, "command")))
        pctx_err(c, ynode_key_loc(l->root, "command"),
                 "'command' is not used with isolation: wasm (give 'module')");
    if (!wasm && !ynode_get(l->root, "command"))
        pctx_err(c, l->root->loc, "missing required key 'command'");
    if (wasm && !ynode_get(l->root, "module"))
        pctx_err(c, p->isolation_loc, "isolation: wasm requires 'module'");
    if (!wasm && ynode_get(l->root, "module"))
        pctx_err(c, ynode_key_loc(l->root, "module"), "'module' is only used with isolation: wasm");
    if (p->isolation != ISOLATION_GVISOR && (n = ynode_get(l->root, "network")) &&
        p->network == NETWORK_SANDBOX)
        pctx_err(c, n->loc, "network: sandbox is only available with isolation: gvisor");
    /* WASI has no sockets; the other tiers do not give a tool a filtered network yet. */
    if (p->isolation != ISOLATION_PROCESS && (n = ynode_get(l->root, "network")) &&
        p->network == NETWORK_EGRESS)
        pctx_err(c, n->loc, "network.egress is not available with isolation: %s (%s)",
                 policy_isolation_name(p->isolation),
                 p->isolation == ISOLATION_WASM ? "WASI has no sockets"
                                                : "only the process tier filters egress so far");
    if (p->isolation != ISOLATION_GVISOR && ynode_get(l->root, "gvisor"))
        pctx_err(c, ynode_key_loc(l->root, "gvisor"),
                 "'gvisor' settings are only used with isolation: gvisor");
    if (!p->reversible && !p->approval.required && (n = ynode_get(l->root, "reversible")))
        pctx_err(c, n->loc,
                 "irreversible tools must require approval "
                 "(set approval.required: true)");
}

static void validate(struct loader *l)
{
    struct pctx *c = &l->c;
    const struct ynode *root = l->root;
    if (root->kind != YNODE_MAP) {
        pctx_err(c, root->loc, "a policy must be a mapping, got %s", ynode_kind_name(root));
        return;
    }
    const char *allowed[N_TOP_KEYS + 1];
    for (size_t i = 0; i < N_TOP_KEYS; i++)
        allowed[i] = top_keys[i].key;
    allowed[N_TOP_KEYS] = NULL;
    pctx_expect_map(c, root, "policy", allowed);
    for (size_t i = 0; i < N_TOP_KEYS; i++) {
        const struct ynode *v = ynode_get(root, top_keys[i].key);
        if (v) top_keys[i].read(l, v);
    }
    cross_checks(l);
}

static char *policy_dir(const char *path)
{
    autofree char *copy = strdup(path);
    if (!copy) return NULL;
    char *abs = realpath(dirname(copy), NULL);
    return abs ? abs : strdup("/nonexistent");
}

int policy_load_buf(const char *path, const char *buf, size_t len, struct policy **out,
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
    struct loader l = {.c = {.path = path, .p = p, .diags = diags}, .root = root};
    l.c.dir = policy_dir(path);
    if (!l.c.dir)
        pctx_err(&l.c, root->loc, "out of memory");
    else
        validate(&l);
    free(l.c.dir);
    ynode_free(root);
    if (l.c.errors > 0) {
        policy_free(p);
        return -1;
    }
    *out = p;
    return 0;
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
    free(p->gvisor_platform);
    free(p->module);
    json_decref(p->arguments);
    policy_schema_free(p->schema);
    free(p);
}
