/* explain.c: `gatehouse policy explain TOOL|FILE`: what a reviewer needs to see that the YAML
 * does not show. The effective policy prints every key of the key table with its value, and
 * marks the ones the file did not write as defaults (defaults are invisible in YAML); then
 * the JSON Schema agents are given for the arguments (GET /v1/tools input_schema); then the
 * lint findings. The policy is loaded as the gateway loads it, host checks included.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lint.h"

static bool applies(const struct policy_key *k, const struct policy *p)
{
    /* Keys that another key rules out (cross rules) are left out rather than shown empty. */
    if (!strcmp(k->path, "module")) return p->isolation == ISOLATION_WASM;
    if (!strcmp(k->path, "command")) return p->isolation != ISOLATION_WASM;
    if (!strncmp(k->path, "gvisor", 6)) return p->isolation == ISOLATION_GVISOR;
    return true;
}

static int depth_of(const struct policy_key *k)
{
    int d = 0;
    for (const char *s = k->path; *s; s++)
        d += *s == '.';
    return d;
}

static bool inside_false_section(const struct policy_key *k, const struct policy *p)
{
    for (const struct policy_key *up = policy_key_parent(k); up; up = policy_key_parent(up))
        if ((up->flags & PKEY_OR_BOOL) && !pkey_number(up, p)) return true;
    return false;
}

/* One egress entry as the sandbox's filter holds it: "10.20.0.0/16:5432", "[2001:db8::1]:443". */
static void format_egress(const struct policy_egress *e, char *out, size_t len)
{
    char a[INET6_ADDRSTRLEN] = "";
    inet_ntop(e->family, e->addr, a, sizeof(a));
    bool host = e->prefix == (e->family == AF_INET ? 32 : 128);
    char pfx[8] = "";
    if (!host) snprintf(pfx, sizeof(pfx), "/%u", e->prefix);
    snprintf(out, len, e->family == AF_INET6 ? "[%s%s]:%u" : "%s%s:%u", a, pfx, e->port);
}

/* network.egress: each entry as written, and what it resolved to (what the filter allows). */
static void print_egress(const struct review_file *f, int indent, FILE *out)
{
    const struct policy *p = f->p;
    const struct ynode *seq = policy_key_node(f->root, "network.egress");
    fprintf(out, "%*segress:\n", indent + 2, "");
    for (size_t i = 0; seq && seq->kind == YNODE_SEQ && i < seq->n; i++) {
        const struct ynode *e = seq->items[i];
        if (e->kind != YNODE_SCALAR) continue;
        fprintf(out, "%*s- \"%s\"  # line %d:", indent + 4, "", e->scalar, e->loc.line);
        for (size_t j = 0; j < p->net.n_egress; j++) {
            char text[80];
            if (p->net.egress[j].loc.line != e->loc.line || p->net.egress[j].loc.col != e->loc.col)
                continue;
            format_egress(&p->net.egress[j], text, sizeof(text));
            fprintf(out, " %s", text);
        }
        fputc('\n', out);
    }
    fprintf(out, "%*sdns: %s%s\n", indent + 2, "", p->net.dns ? "true" : "false",
            p->net.dns ? "  # port 53 of the gateway host's /etc/resolv.conf name servers" : "");
}

static json_t *egress_json(const struct policy *p)
{
    json_t *list = json_array();
    for (size_t i = 0; i < p->net.n_egress; i++) {
        char text[80];
        format_egress(&p->net.egress[i], text, sizeof(text));
        json_array_append_new(
            list, json_pack("{s:s,s:i}", "destination", text, "line", p->net.egress[i].loc.line));
    }
    return json_pack("{s:o,s:b}", "egress", list, "dns", p->net.dns);
}

static void print_text(const struct review_file *f, FILE *out)
{
    const struct policy *p = f->p;
    fprintf(out, "# gatehouse policy explain: %s (%s)\n", p->name, f->path);
    fprintf(out, "# Effective policy: every key, defaults filled in and marked.\n");
    struct gate_buf v = {0};
    for (size_t i = 0; i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (!applies(k, p) || inside_false_section(k, p)) continue;
        int indent = 2 * depth_of(k);
        bool given = policy_key_node(f->root, k->path) != NULL;
        if (k->type == PKEY_SECTION && !((k->flags & PKEY_OR_BOOL) && !pkey_number(k, p))) {
            fprintf(out, "%*s%s:\n", indent, "", policy_key_leaf(k));
            continue;
        }
        if (k->type == PKEY_SCHEMA) {
            fprintf(out, "%*s# %s: the JSON Schema below%s\n", indent, "", policy_key_leaf(k),
                    given ? "" : " (default: an object with no properties)");
            continue;
        }
        pkey_format(k, p, &v);
        bool empty = !v.data || !*v.data;
        if (!strcmp(k->path, "network") && p->network == NETWORK_EGRESS) {
            fprintf(out, "%*snetwork:\n", indent, "");
            print_egress(f, indent, out);
            continue;
        }
        fprintf(out, "%*s%s: %s", indent, "", policy_key_leaf(k), empty ? "~" : v.data);
        if (!given)
            fprintf(out, "  # default%s%s", k->def_doc ? ": " : "", k->def_doc ? k->def_doc : "");
        fputc('\n', out);
    }
    gate_buf_free(&v);
    fprintf(out, "\n# JSON Schema published to agents (GET /v1/tools, input_schema):\n");
    json_dumpf(p->arguments, out, JSON_INDENT(2) | JSON_SORT_KEYS);
    fprintf(out, "\n\n# Lint findings:\n");
}

static json_t *effective_json(const struct review_file *f)
{
    json_t *keys = json_object();
    for (size_t i = 0; keys && i < policy_nkeys; i++) {
        const struct policy_key *k = &policy_keys[i];
        if (k->type == PKEY_SECTION && !(k->flags & PKEY_OR_BOOL)) continue;
        if (!applies(k, f->p)) continue;
        const struct ynode *n = policy_key_node(f->root, k->path);
        json_t *value = !strcmp(k->path, "network") && f->p->network == NETWORK_EGRESS
                            ? egress_json(f->p)
                            : pkey_json(k, f->p);
        json_t *entry = json_pack("{s:o, s:b}", "value", value, "default", !n);
        if (entry && n) json_object_set_new(entry, "line", json_integer(n->loc.line));
        if (entry && !n && k->def_doc)
            json_object_set_new(entry, "default_is", json_string(k->def_doc));
        json_object_set_new(keys, k->path, entry);
    }
    return keys;
}

static int find_tool(const char *dir, const char *name, char **path, struct gate_error *err)
{
    char **files = NULL;
    size_t n = 0;
    char *const one[] = {(char *)dir};
    if (review_list_paths(one, 1, &files, &n, err) < 0) return -1;
    for (size_t i = 0; i < n && !*path; i++) {
        char *text = NULL;
        size_t len = 0;
        struct gate_error rerr = {0};
        if (policy_read_yaml_file(files[i], &text, &len, &rerr) < 0) continue;
        struct review_file f = {0};
        review_file_load(&f, files[i], text, len, true);
        if (f.p && !strcmp(f.p->name, name)) *path = strdup(files[i]);
        review_file_free(&f);
    }
    review_strv_free(files, n);
    return *path ? 0 : gate_err(err, GATE_E_TOOL_NOT_FOUND, "no tool '%s' in %s", name, dir);
}

int policy_explain(const char *target, const struct policy_explain_opts *o, FILE *out,
                   struct gate_error *err)
{
    struct stat st;
    autofree char *path = NULL;
    if (stat(target, &st) == 0 && S_ISREG(st.st_mode))
        path = strdup(target);
    else if (find_tool(o->policies ? o->policies : "policies", target, &path, err) < 0)
        return -1;
    if (!path) return gate_err(err, GATE_E_NOMEM, "out of memory");
    struct lint_config cfg;
    if (lint_config_load(o->config, &cfg, err) < 0) {
        lint_config_free(&cfg);
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    if (policy_read_yaml_file(path, &text, &len, err) < 0) {
        lint_config_free(&cfg);
        return -1;
    }
    struct review_file f = {0};
    review_file_load(&f, path, text, len, false);
    struct lint_report rep = {.files = 1};
    struct lint_ctx c = {.cfg = &cfg, .f = &f, .rep = &rep};
    lint_file(&c);
    if (o->format == POLICY_REPORT_JSON) {
        json_t *j =
            json_pack("{s:s?, s:s, s:o, s:O?, s:o}", "tool", f.p ? f.p->name : NULL, "file", f.path,
                      "policy", f.p ? effective_json(&f) : json_null(), "input_schema",
                      f.p ? f.p->arguments : NULL, "lint", lint_report_json(&rep));
        review_print_json(j, out);
    } else {
        if (f.p) print_text(&f, out);
        lint_print(&rep, POLICY_REPORT_TEXT, out);
    }
    int status = f.p ? 0 : 1;
    lint_report_free(&rep);
    review_file_free(&f);
    lint_config_free(&cfg);
    return status;
}
