/* lint.c: `gatehouse policy lint`: every load error plus the risk rules of lint_rules.c, with
 * suppression per repository (lint.yaml) and per policy (a YAML comment with a reason).
 *
 * A policy is loaded exactly as the gateway loads it, keeping its YAML tree (the location of
 * every key) and its comments. Load errors become GH001 findings (GH101 for the one load error
 * that is also a rule); when the policy loads, every rule looks at it. Then the file's
 * `# gatehouse: allow GH104 -- reason` comments suppress the findings they name: the reason is
 * required, a comment without one suppresses nothing and is itself an error (GH002), and a
 * comment that suppresses nothing is reported (GH003) so stale exceptions do not pile up.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lint.h"

static const char *const level_names[] = {"none", "note", "warning", "error"};

const char *lint_level_name(enum lint_level l)
{
    return (unsigned)l <= LINT_ERROR ? level_names[l] : "none";
}

int lint_level_parse(const char *s)
{
    if (!strcmp(s, "off")) return LINT_OFF;
    for (int i = 0; i <= LINT_ERROR; i++)
        if (!strcmp(s, level_names[i])) return i;
    return -1;
}

int policy_report_format_parse(const char *name)
{
    static const char *const names[] = {"text", "json", "sarif", "github", "markdown"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i])) return (int)i;
    return -1;
}

const struct lint_rule *lint_rule_find(const char *id)
{
    for (size_t i = 0; i < lint_nrules; i++)
        if (!strcmp(lint_rules[i].id, id)) return &lint_rules[i];
    return NULL;
}

/* ---- findings ----------------------------------------------------------------------------- */

void lint_add(struct lint_report *rep, const struct lint_rule *rule, enum lint_level level,
              const char *file, struct policy_loc loc, const char *key, const char *msg)
{
    if (rep->n == rep->cap) {
        size_t cap = rep->cap ? rep->cap * 2 : 16;
        struct lint_finding *items = realloc(rep->items, cap * sizeof(*items));
        if (!items) return;
        rep->items = items;
        rep->cap = cap;
    }
    struct lint_finding *f = &rep->items[rep->n];
    *f = (struct lint_finding){.rule = rule, .level = level ? level : rule->level, .loc = loc};
    f->file = strdup(file);
    f->key = strdup(key ? key : "");
    f->message = strdup(msg);
    if (!f->file || !f->key || !f->message) {
        free(f->file);
        free(f->key);
        free(f->message);
        return;
    }
    /* Stable across runs and across edits that only move lines: no line or column. */
    struct gate_buf b = {0};
    gate_buf_printf(&b, "%s%c%s%c%s%c%s", rule->id, 0, file, 0, f->key, 0, msg);
    gate_sha256_hex(b.data ? b.data : "", b.len, f->fingerprint);
    gate_buf_free(&b);
    rep->n++;
}

void lint_emit(struct lint_ctx *c, const char *id, enum lint_level level, struct policy_loc loc,
               const char *key, const char *fmt, ...)
{
    const struct lint_rule *rule = lint_rule_find(id);
    if (!rule) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t before = c->rep->n;
    lint_add(c->rep, rule, level, c->f->path, loc, key, msg);
    if (c->rep->n == before || !c->cfg) return;
    const struct lint_rule_config *rc = &c->cfg->rules[rule - lint_rules];
    struct lint_finding *f = &c->rep->items[before];
    if (rc->set && rc->level == LINT_OFF)
        f->suppressed = strdup(rc->reason ? rc->reason : "disabled in the lint configuration");
    else if (rc->set)
        f->level = rc->level;
}

void lint_report_free(struct lint_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].file);
        free(r->items[i].key);
        free(r->items[i].message);
        free(r->items[i].suppressed);
    }
    free(r->items);
    *r = (struct lint_report){0};
}

int lint_exit_status(const struct lint_report *r, enum lint_level fail_on)
{
    int status = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        if (f->suppressed) continue;
        if (f->level == LINT_ERROR) return 1;
        if (fail_on != LINT_OFF && f->level >= fail_on) status = 2;
    }
    return status;
}

/* ---- `# gatehouse: allow ID[, ID...] -- reason` -------------------------------------------- */

struct allow {
    const struct review_comment *comment;
    char ids[8][16];
    size_t nids;
    const char *reason;
    bool used[8];
};

/* Parse one comment. 0: not a directive; 1: a valid allow; -1: a bad one (GH002 emitted). */
static int parse_allow(struct lint_ctx *c, const struct review_comment *cm, struct allow *a)
{
    const char *s = cm->text;
    if (strncmp(s, "gatehouse:", 10) != 0) return 0;
    s += 10 + strspn(s + 10, " \t");
    if (strncmp(s, "allow", 5) != 0 || (s[5] != ' ' && s[5] != '\t')) {
        lint_emit(c, "GH002", LINT_OFF, cm->loc, "", "unknown gatehouse directive '%s'", cm->text);
        return -1;
    }
    *a = (struct allow){.comment = cm};
    s += 5;
    for (;;) {
        s += strspn(s, " \t,");
        if (!*s || !strncmp(s, "--", 2)) break;
        size_t len = strcspn(s, " \t,");
        if (a->nids == sizeof(a->ids) / sizeof(a->ids[0]) || len >= sizeof(a->ids[0])) {
            lint_emit(c, "GH002", LINT_OFF, cm->loc, "", "too many or too long rule ids");
            return -1;
        }
        memcpy(a->ids[a->nids], s, len);
        a->ids[a->nids][len] = '\0';
        const struct lint_rule *r = lint_rule_find(a->ids[a->nids]);
        if (!r || !r->suppressible) {
            lint_emit(c, "GH002", LINT_OFF, cm->loc, "",
                      r ? "%s cannot be suppressed" : "unknown rule '%s'", a->ids[a->nids]);
            return -1;
        }
        a->nids++;
        s += len;
    }
    const char *reason = !strncmp(s, "--", 2) ? s + 2 + strspn(s + 2, " \t") : "";
    if (a->nids == 0 || !*reason) {
        lint_emit(c, "GH002", LINT_OFF, cm->loc, "",
                  a->nids ? "suppression without a reason: write '# gatehouse: allow %s -- why'"
                          : "'allow' names no rule%s",
                  a->nids ? a->ids[0] : "");
        return -1;
    }
    a->reason = reason;
    return 1;
}

/* The reason may go on in the comment lines right below, at the same column. */
static char *full_reason(const struct review_file *f, size_t k, const char *first)
{
    struct gate_buf b = {0};
    gate_buf_printf(&b, "%s", first);
    for (size_t i = k + 1; i < f->ncomments; i++) {
        const struct review_comment *prev = &f->comments[i - 1], *cm = &f->comments[i];
        if (cm->loc.line != prev->loc.line + 1 || cm->loc.col != prev->loc.col || !*cm->text ||
            !strncmp(cm->text, "gatehouse:", 10))
            break;
        gate_buf_printf(&b, " %s", cm->text);
    }
    return b.data;
}

static void apply_allows(struct lint_ctx *c, size_t first)
{
    /* Only a comment holding "gatehouse:" can be a directive: skip the second pass without. */
    if (!memmem(c->f->text, c->f->len, "gatehouse:", 10)) return;
    if (!c->f->comments)
        review_scan_comments(c->f->text, c->f->len, &c->f->comments, &c->f->ncomments);
    for (size_t k = 0; k < c->f->ncomments; k++) {
        struct allow a;
        if (parse_allow(c, &c->f->comments[k], &a) != 1) continue;
        autofree char *reason = full_reason(c->f, k, a.reason);
        for (size_t i = first; i < c->rep->n; i++) {
            struct lint_finding *f = &c->rep->items[i];
            for (size_t j = 0; j < a.nids; j++) {
                if (strcmp(f->rule->id, a.ids[j]) != 0) continue;
                a.used[j] = true;
                if (f->suppressed) continue;
                f->suppressed = strdup(reason ? reason : a.reason);
                f->in_source = true;
            }
        }
        for (size_t j = 0; j < a.nids; j++)
            if (!a.used[j])
                lint_emit(c, "GH003", LINT_OFF, a.comment->loc, "",
                          "'allow %s' suppresses nothing in this policy: remove it", a.ids[j]);
    }
}

/* A load diag "PATH:LINE:COL: message" as a finding at LINE:COL. */
static void diag_finding(struct lint_ctx *c, const char *load_path, const char *msg,
                         const char *rule)
{
    struct policy_loc loc = {1, 1};
    size_t plen = strlen(load_path);
    const char *text = msg;
    if (strncmp(msg, load_path, plen) == 0 && msg[plen] == ':') {
        char *end = NULL;
        long line = strtol(msg + plen + 1, &end, 10);
        if (end && *end == ':') {
            long col = strtol(end + 1, &end, 10);
            if (end && *end == ':' && line > 0 && col > 0) {
                loc = (struct policy_loc){(int)line, (int)col};
                text = end + 1 + strspn(end + 1, " ");
            }
        }
    }
    lint_emit(c, rule ? rule : "GH001", LINT_OFF, loc, "", "%s", text);
}

void lint_file(struct lint_ctx *c)
{
    size_t first = c->rep->n;
    for (size_t i = 0; i < c->f->diags.n; i++)
        diag_finding(c, c->f->source, c->f->diags.msgs[i],
                     c->f->diags.rules ? c->f->diags.rules[i] : NULL);
    if (c->f->p)
        for (size_t i = 0; i < lint_nrules; i++)
            if (lint_rules[i].check) lint_rules[i].check(c);
    apply_allows(c, first);
}

/* ---- lint.yaml ---------------------------------------------------------------------------- */

static const char *const default_sensitive[] = {
    "/etc", "/root", "/home", "/var/run", "/run", "/proc", "/sys", "/boot", "/var/lib/gatehouse",
};

static int add_path(char ***v, size_t *n, const char *s)
{
    char **grown = realloc(*v, (*n + 2) * sizeof(**v));
    if (!grown) return -1;
    *v = grown;
    if (!(grown[*n] = strdup(s))) return -1;
    grown[++*n] = NULL;
    return 0;
}

static void config_rules(struct pctx *c, const struct ynode *v, struct lint_config *cfg)
{
    static const char *const keys[] = {"level", "reason", NULL};
    if (v->kind != YNODE_MAP) {
        pctx_err(c, v->loc, "'rules' must be a mapping of rule ids");
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct lint_rule *r = lint_rule_find(v->keys[i]);
        if (!r) {
            pctx_err(c, v->key_locs[i], "unknown rule '%s'", v->keys[i]);
            continue;
        }
        if (pctx_expect_map(c, v->items[i], v->keys[i], keys) < 0) continue;
        struct lint_rule_config *rc = &cfg->rules[r - lint_rules];
        const struct ynode *lv = ynode_get(v->items[i], "level");
        const struct ynode *why = ynode_get(v->items[i], "reason");
        int level = lv && lv->kind == YNODE_SCALAR ? lint_level_parse(lv->scalar) : -1;
        if (!lv || level < 0) {
            pctx_err(c, lv ? lv->loc : v->key_locs[i],
                     "'%s.level' must be off, note, warning or error", v->keys[i]);
            continue;
        }
        if (!r->suppressible && level < (int)r->level) {
            pctx_err(c, lv->loc, "%s cannot be disabled or lowered", r->id);
            continue;
        }
        if (!why || pctx_string(c, why, "reason", &rc->reason) < 0 || !*rc->reason) {
            pctx_err(c, why ? why->loc : v->key_locs[i], "'%s' needs a reason", v->keys[i]);
            continue;
        }
        rc->level = (enum lint_level)level;
        rc->set = true;
    }
}

static int config_defaults(struct lint_config *cfg)
{
    *cfg = (struct lint_config){.fail_on = LINT_WARNING, .approval_max_ms = 24ull * 3600 * 1000};
    cfg->rules = calloc(lint_nrules, sizeof(*cfg->rules));
    size_t n = 0;
    for (size_t i = 0; cfg->rules && i < sizeof(default_sensitive) / sizeof(default_sensitive[0]);
         i++)
        if (add_path(&cfg->sensitive_paths, &n, default_sensitive[i]) < 0) return -1;
    return cfg->rules ? 0 : -1;
}

int lint_config_load(const char *path, struct lint_config *cfg, struct gate_error *err)
{
    if (config_defaults(cfg) < 0) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (!path) return 0;
    struct ynode *root = NULL;
    if (ynode_load_file(path, &root, err) < 0) return -1;
    static const char *const keys[] = {
        "fail_on", "approval_max_window", "sensitive_paths", "state_dirs", "rules", NULL};
    struct policy_diags diags = {0};
    struct pctx c = {.path = path, .diags = &diags};
    const struct ynode *v;
    if (pctx_expect_map(&c, root, "lint configuration", keys) == 0 || root->kind == YNODE_MAP) {
        if ((v = ynode_get(root, "fail_on"))) {
            int l = v->kind == YNODE_SCALAR ? lint_level_parse(v->scalar) : -1;
            if (l < 0)
                pctx_err(&c, v->loc, "'fail_on' must be error, warning, note or none");
            else
                cfg->fail_on = (enum lint_level)l;
        }
        if ((v = ynode_get(root, "approval_max_window")))
            pctx_duration(&c, v, "approval_max_window", 1000, 365ull * 24 * 3600 * 1000,
                          &cfg->approval_max_ms);
        size_t n = 0;
        while (cfg->sensitive_paths && cfg->sensitive_paths[n])
            n++;
        for (const char *const *k = (const char *const[]){"sensitive_paths", "state_dirs", NULL};
             *k; k++) {
            char **list = NULL;
            if ((v = ynode_get(root, *k)) && pctx_string_list(&c, v, *k, &list) == 0)
                for (size_t i = 0; list[i]; i++)
                    add_path(&cfg->sensitive_paths, &n, list[i]);
            strv_free(list);
        }
        if ((v = ynode_get(root, "rules"))) config_rules(&c, v, cfg);
    }
    ynode_free(root);
    int rc = 0;
    if (diags.n) {
        struct gate_buf b = {0};
        for (size_t i = 0; i < diags.n; i++)
            gate_buf_printf(&b, "%s%s", i ? "\n" : "", diags.msgs[i]);
        rc = gate_err(err, GATE_E_CONFIG, "%s", b.data ? b.data : "");
        gate_buf_free(&b);
    }
    policy_diags_free(&diags);
    return rc;
}

void lint_config_free(struct lint_config *cfg)
{
    for (size_t i = 0; cfg->rules && i < lint_nrules; i++)
        free(cfg->rules[i].reason);
    free(cfg->rules);
    strv_free(cfg->sensitive_paths);
    *cfg = (struct lint_config){0};
}

/* ---- the command -------------------------------------------------------------------------- */

struct seen_name {
    char *name, *file;
    struct policy_loc loc;
};

static int cmp_seen(const void *a, const void *b)
{
    const struct seen_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->file, y->file);
}

/* Tool names must be unique across what is linted, as in a policy set. */
static void check_unique(struct lint_report *rep, struct seen_name *seen, size_t n)
{
    if (n > 1) qsort(seen, n, sizeof(*seen), cmp_seen);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(seen[i].name, seen[i - 1].name)) {
            char msg[512];
            snprintf(msg, sizeof(msg), "duplicate tool name '%s' (also in %s)", seen[i].name,
                     seen[i - 1].file);
            lint_add(rep, lint_rule_find("GH001"), LINT_OFF, seen[i].file, seen[i].loc, "name",
                     msg);
        }
    for (size_t i = 0; i < n; i++) {
        free(seen[i].name);
        free(seen[i].file);
    }
}

static void lint_one(struct lint_ctx *c, const char *path, struct seen_name *seen, size_t *nseen)
{
    char *text = NULL;
    size_t len = 0;
    struct gate_error rerr = {0};
    struct review_file f = {0};
    c->f = &f;
    if (policy_read_yaml_file(path, &text, &len, &rerr) < 0) {
        f.path = review_display_path(path);
        if (f.path) diag_finding(c, path, rerr.msg, NULL);
        review_file_free(&f);
        return;
    }
    review_file_load(&f, path, text, len, c->offline);
    lint_file(c);
    if (f.p && f.p->name) {
        seen[*nseen] = (struct seen_name){strdup(f.p->name), strdup(f.path), f.p->name_loc};
        if (seen[*nseen].name && seen[*nseen].file) ++*nseen;
    }
    review_file_free(&f);
}

int policy_lint(char *const *paths, size_t npaths, const struct policy_lint_opts *o, FILE *out,
                struct gate_error *err)
{
    struct lint_config cfg;
    if (lint_config_load(o->config, &cfg, err) < 0) {
        lint_config_free(&cfg);
        return -1;
    }
    enum lint_level fail_on = cfg.fail_on;
    if (o->fail_on) {
        int l = lint_level_parse(o->fail_on);
        if (l < 0) {
            lint_config_free(&cfg);
            return gate_err(err, GATE_E_BAD_REQUEST,
                            "--fail-on must be error, warning, note or none");
        }
        fail_on = (enum lint_level)l;
    }
    char **files = NULL;
    size_t nfiles = 0;
    if (review_list_paths(paths, npaths, &files, &nfiles, err) < 0) {
        lint_config_free(&cfg);
        return -1;
    }
    struct lint_report rep = {0};
    struct seen_name *seen = calloc(nfiles ? nfiles : 1, sizeof(*seen));
    size_t nseen = 0;
    struct lint_ctx c = {.cfg = &cfg, .rep = &rep, .offline = o->offline};
    for (size_t i = 0; seen && i < nfiles; i++)
        lint_one(&c, files[i], seen, &nseen);
    if (seen) check_unique(&rep, seen, nseen);
    free(seen);
    rep.files = nfiles;
    lint_print(&rep, o->format, out);
    int status = lint_exit_status(&rep, fail_on);
    lint_report_free(&rep);
    review_strv_free(files, nfiles);
    lint_config_free(&cfg);
    return status;
}
