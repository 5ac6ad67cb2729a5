/* diff.c: `gatehouse policy diff BASE HEAD`: which tools were added, removed or renamed, and
 * every security-relevant change of the others, classified weakens / strengthens / neutral.
 *
 * Both sides are loaded offline (paths as written, nothing looked up on this host), so a git
 * revision diffs the same as a directory. Keys are compared on their effective values (a
 * key removed falls back to its default, which is compared) in the way their row of the key
 * table says (policy_keys.h: change, weaker); isolation, the program, the webhook and the
 * argument schema have their own comparisons here and in diff_schema.c.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"

const char *diff_class_name(enum diff_class c)
{
    return c == DIFF_WEAKENS ? "weakens" : c == DIFF_STRENGTHENS ? "strengthens" : "neutral";
}

void diff_add(struct diff_tool *t, enum diff_class cls, const char *key, const char *before,
              const char *after, struct policy_loc loc, const char *fmt, ...)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct diff_change *grown = realloc(t->changes, cap * sizeof(*grown));
        if (!grown) return;
        t->changes = grown;
        t->cap = cap;
    }
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    struct diff_change *c = &t->changes[t->n];
    *c = (struct diff_change){.cls = cls, .loc = loc};
    c->key = strdup(key);
    c->before = strdup(before ? before : "");
    c->after = strdup(after ? after : "");
    c->reason = strdup(reason);
    if (c->key && c->before && c->after && c->reason) {
        t->n++;
        return;
    }
    free(c->key);
    free(c->before);
    free(c->after);
    free(c->reason);
}

/* ---- one key ------------------------------------------------------------------------------ */

struct pair {
    const struct review_file *base, *head;
    const char *base_hash, *head_hash;
    struct diff_tool *tool;
};

static struct policy_loc head_loc(const struct pair *pr, const char *path)
{
    return policy_key_loc(pr->head->root, path);
}

/* Entries of a list or map key ("NAME=VALUE" for maps), NULL-terminated; NULL when the key
 * holds none. filesystem.read_only's NULL is the tier default, /usr. */
static char *const *entries(const struct policy_key *k, const struct policy *p)
{
    static char *const tier_default[] = {"/usr", NULL};
    char *const *v = *(char **const *)pkey_field(k, p);
    if (!v && !strcmp(k->path, "filesystem.read_only")) return tier_default;
    return v;
}

static const char *find_entry(char *const *v, const char *entry, bool by_name)
{
    size_t nlen = by_name ? strcspn(entry, "=") : strlen(entry);
    for (size_t i = 0; v && v[i]; i++)
        if (!strncmp(v[i], entry, nlen) && (by_name ? v[i][nlen] == '=' : !v[i][nlen])) return v[i];
    return NULL;
}

static void compare_entries(const struct pair *pr, const struct policy_key *k)
{
    char *const *a = entries(k, pr->base->p), *const *b = entries(k, pr->head->p);
    bool map = k->type == PKEY_STRING_MAP;
    bool added_weakens = k->change != PCHANGE_REMOVED_WEAKENS;
    struct policy_loc loc = head_loc(pr, k->path);
    /* A map's entries are shown by name: values (env) may be secrets, and the report ends up
     * in pull-request comments and code-scanning alerts. */
    char name[256];
    for (size_t i = 0; b && b[i]; i++) {
        const char *old = find_entry(a, b[i], map);
        snprintf(name, sizeof(name), "%.*s", (int)(map ? strcspn(b[i], "=") : strlen(b[i])), b[i]);
        if (!old)
            diff_add(pr->tool, added_weakens ? DIFF_WEAKENS : DIFF_STRENGTHENS, k->path, "", name,
                     loc, "%s added: %s", name,
                     added_weakens ? k->weaker : "the tool can make fewer system calls");
        else if (map && strcmp(old, b[i]))
            diff_add(pr->tool, DIFF_NEUTRAL, k->path, name, name, loc, "%s: value changed", name);
    }
    for (size_t i = 0; a && a[i]; i++) {
        snprintf(name, sizeof(name), "%.*s", (int)(map ? strcspn(a[i], "=") : strlen(a[i])), a[i]);
        if (!find_entry(b, a[i], map))
            diff_add(pr->tool, added_weakens ? DIFF_STRENGTHENS : DIFF_WEAKENS, k->path, name, "",
                     loc, "%s removed%s%s", name, added_weakens ? "" : ": ",
                     added_weakens ? "" : k->weaker);
    }
}

static void compare_scalar(const struct pair *pr, const struct policy_key *k)
{
    const struct policy *a = pr->base->p, *b = pr->head->p;
    uint64_t x = pkey_number(k, a), y = pkey_number(k, b);
    if (k->type != PKEY_STRING && x == y) return; /* the common case, without printing */
    struct gate_buf before = {0}, after = {0};
    pkey_format(k, a, &before);
    pkey_format(k, b, &after);
    if (!strcmp(before.data, after.data)) goto out;
    enum diff_class cls = DIFF_NEUTRAL;
    if (k->change == PCHANGE_MORE_WEAKENS) cls = y > x ? DIFF_WEAKENS : DIFF_STRENGTHENS;
    if (k->change == PCHANGE_LESS_WEAKENS) cls = y < x ? DIFF_WEAKENS : DIFF_STRENGTHENS;
    const char *reason = cls == DIFF_WEAKENS   ? k->weaker
                         : cls == DIFF_NEUTRAL ? (k->weaker ? k->weaker : "changed")
                                               : "stricter than before";
    diff_add(pr->tool, cls, k->path, before.data, after.data, head_loc(pr, k->path), "%s%s", reason,
             policy_key_node(pr->head->root, k->path) ? "" : " (now the default)");
out:
    gate_buf_free(&before);
    gate_buf_free(&after);
}

static void compare_isolation(const struct pair *pr, const struct policy_key *k)
{
    (void)k;
    enum isolation a = pr->base->p->isolation, b = pr->head->p->isolation;
    if (a == b) return;
    bool weaker = review_isolation_rank(b) < review_isolation_rank(a);
    diff_add(pr->tool, weaker ? DIFF_WEAKENS : DIFF_STRENGTHENS, "isolation",
             policy_isolation_name(a), policy_isolation_name(b), head_loc(pr, "isolation"),
             "%s isolation (%s)", weaker ? "weaker" : "stronger", review_isolation_order);
}

static void compare_webhook(const struct pair *pr, const struct policy_key *k)
{
    (void)k;
    const char *a = pr->base->p->approval.webhook, *b = pr->head->p->approval.webhook;
    if ((!a && !b) || (a && b && !strcmp(a, b))) return;
    struct policy_loc loc = head_loc(pr, "approval.webhook");
    if (!b)
        diff_add(pr->tool, DIFF_NEUTRAL, "approval.webhook", a, "", loc,
                 "held calls are announced to the gateway's default approver endpoint");
    else
        diff_add(pr->tool, DIFF_WEAKENS, "approval.webhook", a ? a : "", b, loc,
                 "held calls are announced to another endpoint, and its receiver gets the "
                 "decision tokens that approve them");
}

static void compare_fuel(const struct pair *pr, const struct policy_key *k)
{
    uint64_t a = pr->base->p->limits.fuel, b = pr->head->p->limits.fuel;
    if (a == b) return;
    if (a && b) {
        struct policy_key as_limit = *k;
        as_limit.change = PCHANGE_MORE_WEAKENS;
        as_limit.weaker = "a WebAssembly call may execute more instructions";
        compare_scalar(pr, &as_limit);
        return;
    }
    char x[32], y[32];
    snprintf(x, sizeof(x), "%llu", (unsigned long long)a);
    snprintf(y, sizeof(y), "%llu", (unsigned long long)b);
    diff_add(pr->tool, DIFF_NEUTRAL, k->path, x, y, head_loc(pr, k->path), "%s",
             b ? "the budget is now fixed instead of derived from cpu_time"
               : "the budget is now derived from cpu_time");
}

static void join_argv(char *const *argv, struct gate_buf *out)
{
    out->len = 0;
    gate_buf_append(out, "", 0);
    for (size_t i = 0; argv && argv[i]; i++)
        gate_buf_printf(out, "%s%s", i ? " " : "", argv[i]);
}

/* command and module: the program, and its file's content. */
static void compare_program(const struct pair *pr, const struct policy_key *k)
{
    (void)k;
    const struct policy *a = pr->base->p, *b = pr->head->p;
    const char *key = b->isolation == ISOLATION_WASM ? "module" : "command";
    struct policy_loc loc = head_loc(pr, key);
    struct gate_buf x = {0}, y = {0};
    if (a->module || b->module) {
        gate_buf_printf(&x, "%s", a->module ? a->module : "");
        gate_buf_printf(&y, "%s", b->module ? b->module : "");
    } else {
        join_argv(a->command, &x);
        join_argv(b->command, &y);
    }
    char why_a[256], why_b[256];
    bool code_a = review_runs_received_code(a->command, why_a, sizeof(why_a));
    bool code_b = review_runs_received_code(b->command, why_b, sizeof(why_b));
    if (strcmp(x.data ? x.data : "", y.data ? y.data : "")) {
        if (code_b && !code_a)
            diff_add(pr->tool, DIFF_WEAKENS, key, x.data, y.data, loc,
                     "the tool now runs code it is given: %s", why_b);
        else
            diff_add(pr->tool, DIFF_NEUTRAL, key, x.data, y.data, loc,
                     "the tool runs a different program: review it");
    } else if (pr->base_hash && pr->head_hash && strcmp(pr->base_hash, pr->head_hash)) {
        diff_add(pr->tool, DIFF_NEUTRAL, key, pr->base_hash, pr->head_hash, loc,
                 "the program file's content changed: review it");
    }
    gate_buf_free(&x);
    gate_buf_free(&y);
}

static void compare_arguments(const struct pair *pr, const struct policy_key *k)
{
    diff_arguments(pr->tool, pr->base->p->arguments, pr->head->p->arguments,
                   policy_key_node(pr->head->root, k->path));
}

/* network.egress as written (its YAML items), when the policy has an egress list. */
static const struct ynode *egress_items(const struct review_file *f)
{
    if (f->p->network != NETWORK_EGRESS) return NULL;
    const struct ynode *n = policy_key_node(f->root, "network.egress");
    return n && n->kind == YNODE_SEQ ? n : NULL;
}

static bool lists_entry(const struct ynode *seq, const char *text)
{
    for (size_t i = 0; seq && i < seq->n; i++)
        if (seq->items[i]->kind == YNODE_SCALAR && !strcmp(seq->items[i]->scalar, text))
            return true;
    return false;
}

/* network: the mode, then one row per destination added (a widening: exactly what a security
 * reviewer must see) or removed, then dns. Entries are compared as written: the same
 * destination spelled differently shows as removed and added. */
static void compare_network(const struct pair *pr, const struct policy_key *k)
{
    struct policy_key mode = *k;
    mode.change = PCHANGE_MORE_WEAKENS;
    compare_scalar(pr, &mode);
    const struct ynode *a = egress_items(pr->base), *b = egress_items(pr->head);
    for (size_t i = 0; b && i < b->n; i++) {
        const struct ynode *e = b->items[i];
        if (e->kind == YNODE_SCALAR && !lists_entry(a, e->scalar))
            diff_add(pr->tool, DIFF_WEAKENS, "network.egress", "", e->scalar, e->loc,
                     "destination added: the tool can reach %s", e->scalar);
    }
    for (size_t i = 0; a && i < a->n; i++) {
        const struct ynode *e = a->items[i];
        if (e->kind == YNODE_SCALAR && !lists_entry(b, e->scalar))
            diff_add(pr->tool, DIFF_STRENGTHENS, "network.egress", e->scalar, "",
                     head_loc(pr, b ? "network.egress" : "network"),
                     "destination removed: the tool can no longer reach %s", e->scalar);
    }
    bool dns_a = a && pr->base->p->net.dns, dns_b = b && pr->head->p->net.dns;
    if (dns_a != dns_b)
        diff_add(pr->tool, dns_b ? DIFF_WEAKENS : DIFF_STRENGTHENS, "network.dns",
                 dns_a ? "true" : "false", dns_b ? "true" : "false",
                 head_loc(pr, dns_b ? "network.dns" : "network"), "%s",
                 dns_b ? "the tool can reach the host's name servers (port 53, UDP and TCP)"
                       : "the tool can no longer reach the host's name servers");
}

/* The comparison of each PCHANGE_CUSTOM key (NULL: compared elsewhere). */
static const struct {
    const char *key;
    void (*compare)(const struct pair *pr, const struct policy_key *k);
} custom[] = {
    {"name", NULL}, /* a rename: diff_sides */
    {"isolation", compare_isolation},
    {"command", compare_program},
    {"module", NULL}, /* with command */
    {"approval.webhook", compare_webhook},
    {"limits.fuel", compare_fuel},
    {"filesystem.read_only", compare_entries},
    {"network", compare_network},
    {"arguments", compare_arguments},
};

static void compare_tool(const struct pair *pr)
{
    for (size_t i = 0; i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (k->change == PCHANGE_IGNORED) continue;
        if (k->type == PKEY_SECTION && !(k->flags & PKEY_OR_BOOL)) continue;
        if (k->change == PCHANGE_CUSTOM) {
            size_t c = 0;
            while (c < sizeof(custom) / sizeof(custom[0]) && strcmp(custom[c].key, k->path))
                c++;
            /* A custom key without a comparison here is still reported, as neutral. */
            struct policy_key neutral = *k;
            neutral.change = PCHANGE_NEUTRAL;
            if (c == sizeof(custom) / sizeof(custom[0]))
                compare_scalar(pr, &neutral);
            else if (custom[c].compare)
                custom[c].compare(pr, k);
        } else if (k->type == PKEY_STRING_LIST || k->type == PKEY_STRING_MAP) {
            compare_entries(pr, k);
        } else {
            compare_scalar(pr, k);
        }
    }
}

/* ---- tools -------------------------------------------------------------------------------- */

static struct diff_tool *new_tool(struct diff_report *r, const char *name, const char *path,
                                  enum diff_status status)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct diff_tool *grown = realloc(r->tools, cap * sizeof(*grown));
        if (!grown) return NULL;
        r->tools = grown;
        r->cap = cap;
    }
    struct diff_tool *t = &r->tools[r->n];
    *t = (struct diff_tool){.status = status, .name = strdup(name), .path = strdup(path)};
    if (!t->name || !t->path) {
        free(t->name);
        free(t->path);
        return NULL;
    }
    r->n++;
    return t;
}

static int find_by_name(const struct diff_side *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->files[i].p && !strcmp(s->files[i].p->name, name)) return (int)i;
    return -1;
}

/* The file name within its tree, so a/x.yaml and b/x.yaml are the same file. */
static const char *tail(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n && root[n - 1] == '/')
        n--;
    return !strncmp(path, root, n) && path[n] == '/' ? path + n + 1 : path;
}

static void note(struct diff_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct diff_report *r, const char *fmt, ...)
{
    char **grown = realloc(r->notes, (r->nnotes + 1) * sizeof(*grown));
    if (!grown) return;
    r->notes = grown;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&r->notes[r->nnotes], fmt, ap) >= 0) r->nnotes++;
    va_end(ap);
}

static void first_error(const struct review_file *f, char *out, size_t len)
{
    snprintf(out, len, "%s", f->diags.n ? f->diags.msgs[0] : "does not load");
}

static void diff_sides(struct diff_report *r, const struct diff_side *base,
                       const struct diff_side *head, const char *base_root, const char *head_root)
{
    bool *matched = calloc(base->n ? base->n : 1, sizeof(*matched));
    if (!matched) return;
    char msg[1024];
    for (size_t i = 0; i < base->n; i++)
        if (!base->files[i].p) {
            first_error(&base->files[i], msg, sizeof(msg));
            note(r, "BASE %s does not load (compared as absent): %s", base->files[i].path, msg);
        }
    for (size_t h = 0; h < head->n; h++) {
        const struct review_file *hf = &head->files[h];
        if (!hf->p) {
            struct diff_tool *t = new_tool(r, hf->path, hf->path, DIFF_BROKEN);
            first_error(hf, msg, sizeof(msg));
            if (t) t->error = strdup(msg);
            continue;
        }
        int b = find_by_name(base, hf->p->name);
        bool renamed = false;
        if (b < 0 || matched[b]) {
            /* Same file, another name: a rename, unless that name lives on in HEAD. */
            for (size_t i = 0; i < base->n && b < 0; i++)
                if (base->files[i].p && !matched[i] &&
                    !strcmp(tail(base->files[i].path, base_root), tail(hf->path, head_root)) &&
                    find_by_name(head, base->files[i].p->name) < 0)
                    b = (int)i;
            renamed = b >= 0;
        }
        if (b < 0) {
            struct diff_tool *t = new_tool(r, hf->p->name, hf->path, DIFF_ADDED);
            if (t)
                diff_add(t, DIFF_WEAKENS, "tool", "", hf->p->name, (struct policy_loc){1, 1},
                         "a new tool agents can call (isolation %s, blast_radius %s)",
                         policy_isolation_name(hf->p->isolation),
                         policy_blast_name(hf->p->blast_radius));
            continue;
        }
        matched[b] = true;
        struct diff_tool *t =
            new_tool(r, hf->p->name, hf->path, renamed ? DIFF_RENAMED : DIFF_CHANGED);
        if (!t) continue;
        if (renamed) {
            t->old_name = strdup(base->files[b].p->name);
            diff_add(t, DIFF_NEUTRAL, "name", base->files[b].p->name, hf->p->name,
                     policy_key_loc(hf->root, "name"),
                     "renamed: agents and grants that name the old tool lose it");
        }
        struct pair pr = {&base->files[b], hf, base->prog_hash[b], head->prog_hash[h], t};
        compare_tool(&pr);
        if (t->n == 0) { /* unchanged: not part of the report */
            free(t->name);
            free(t->path);
            free(t->changes);
            r->n--;
        }
    }
    for (size_t i = 0; i < base->n; i++) {
        const struct review_file *bf = &base->files[i];
        if (matched[i] || !bf->p) continue;
        struct diff_tool *t = new_tool(r, bf->p->name, bf->path, DIFF_REMOVED);
        if (t)
            diff_add(t, DIFF_STRENGTHENS, "tool", bf->p->name, "", (struct policy_loc){1, 1},
                     "the tool is gone: agents can no longer call it");
    }
    free(matched);
}

void diff_report_free(struct diff_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct diff_tool *t = &r->tools[i];
        for (size_t k = 0; k < t->n; k++) {
            free(t->changes[k].key);
            free(t->changes[k].before);
            free(t->changes[k].after);
            free(t->changes[k].reason);
        }
        free(t->changes);
        free(t->name);
        free(t->old_name);
        free(t->path);
        free(t->error);
    }
    free(r->tools);
    review_strv_free(r->notes, r->nnotes);
    free(r->base_label);
    free(r->head_label);
    *r = (struct diff_report){0};
}

static int status_of(const struct diff_report *r)
{
    int status = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->tools[i].status == DIFF_BROKEN) return 1;
        for (size_t k = 0; k < r->tools[i].n; k++)
            if (r->tools[i].changes[k].cls == DIFF_WEAKENS) status = 3;
    }
    return status;
}

int policy_diff(const char *base, const char *head, const struct policy_diff_opts *o, FILE *out,
                struct gate_error *err)
{
    struct diff_side a = {0}, b = {0};
    const char *dir = o->dir ? o->dir : "policies";
    int rc = o->git ? diff_side_load_git(o->repo, base, dir, &a, err)
                    : diff_side_load_dir(base, &a, err);
    if (rc == 0)
        rc = o->git ? diff_side_load_git(o->repo, head, dir, &b, err)
                    : diff_side_load_dir(head, &b, err);
    if (rc < 0) {
        diff_side_free(&a);
        diff_side_free(&b);
        return -1;
    }
    struct diff_report r = {.base_label = strdup(base), .head_label = strdup(head)};
    diff_sides(&r, &a, &b, o->git ? dir : base, o->git ? dir : head);
    diff_print(&r, o->format, out);
    int status = status_of(&r);
    diff_report_free(&r);
    diff_side_free(&a);
    diff_side_free(&b);
    return status;
}
