/* diff_output.c: a policy diff as text, a Markdown pull-request comment, JSON, SARIF 2.1.0
 * (results on HEAD's lines) or GitHub workflow-command annotations. Weakening changes come
 * first everywhere: they are what a security reviewer has to look at. */
#include <stdlib.h>
#include <string.h>

#include "diff.h"

static const char *const status_names[] = {"changed", "added", "removed", "renamed", "broken"};

struct counts {
    size_t cls[3];
    size_t status[5];
};

static struct counts count(const struct diff_report *r)
{
    struct counts c = {0};
    for (size_t i = 0; i < r->n; i++) {
        c.status[r->tools[i].status]++;
        for (size_t k = 0; k < r->tools[i].n; k++)
            c.cls[r->tools[i].changes[k].cls]++;
    }
    return c;
}

/* ---- text --------------------------------------------------------------------------------- */

static void print_text(const struct diff_report *r, FILE *out)
{
    struct counts c = count(r);
    fprintf(out, "policy diff %s -> %s: %zu weaken%s, %zu strengthen%s, %zu neutral\n",
            r->base_label, r->head_label, c.cls[DIFF_WEAKENS], c.cls[DIFF_WEAKENS] == 1 ? "s" : "",
            c.cls[DIFF_STRENGTHENS], c.cls[DIFF_STRENGTHENS] == 1 ? "s" : "", c.cls[DIFF_NEUTRAL]);
    for (size_t i = 0; i < r->nnotes; i++)
        fprintf(out, "note: %s\n", r->notes[i]);
    static const char marks[] = "~+-rx";
    for (size_t i = 0; i < r->n; i++) {
        const struct diff_tool *t = &r->tools[i];
        fprintf(out, "%c %s (%s)%s%s%s%s\n", marks[t->status], t->name, t->path,
                t->status == DIFF_CHANGED ? "" : ": ",
                t->status == DIFF_CHANGED ? "" : status_names[t->status],
                t->old_name ? " from " : "", t->old_name ? t->old_name : "");
        if (t->error) fprintf(out, "    does not load: %s\n", t->error);
        for (int cls = DIFF_WEAKENS; cls <= DIFF_NEUTRAL; cls++)
            for (size_t k = 0; k < t->n; k++) {
                const struct diff_change *ch = &t->changes[k];
                if ((int)ch->cls != cls) continue;
                fprintf(out, "    %-11s %s: %s -> %s: %s [%s:%d:%d]\n", diff_class_name(ch->cls),
                        ch->key, *ch->before ? ch->before : "(none)",
                        *ch->after ? ch->after : "(none)", ch->reason, t->path, ch->loc.line,
                        ch->loc.col);
            }
    }
}

/* ---- Markdown ----------------------------------------------------------------------------- */

static void md_cell(FILE *out, const char *s, bool code)
{
    fputs(code ? " `" : " ", out);
    if (code && !*s) fputs("(none)", out);
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else if (code && *s == '`')
            fputc('\'', out);
        else
            fputc(*s, out);
    }
    fputs(code ? "` |" : " |", out);
}

static void md_rows(const struct diff_report *r, FILE *out, bool weakens)
{
    fputs("| | tool | key | before | after | why |\n|---|---|---|---|---|---|\n", out);
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->tools[i].n; k++) {
            const struct diff_change *ch = &r->tools[i].changes[k];
            if ((ch->cls == DIFF_WEAKENS) != weakens) continue;
            fprintf(out, "| %s |",
                    ch->cls == DIFF_WEAKENS       ? ":warning: weakens"
                    : ch->cls == DIFF_STRENGTHENS ? "strengthens"
                                                  : "neutral");
            md_cell(out, r->tools[i].name, true);
            md_cell(out, ch->key, true);
            md_cell(out, ch->before, true);
            md_cell(out, ch->after, true);
            md_cell(out, ch->reason, false);
            fputc('\n', out);
        }
}

static void print_markdown(const struct diff_report *r, FILE *out)
{
    struct counts c = count(r);
    fputs("### gatehouse policy diff\n\n", out);
    if (c.status[DIFF_BROKEN])
        fprintf(out, "**:x: %zu polic%s in this change do%s not load.**\n\n", c.status[DIFF_BROKEN],
                c.status[DIFF_BROKEN] == 1 ? "y" : "ies", c.status[DIFF_BROKEN] == 1 ? "es" : "");
    if (c.cls[DIFF_WEAKENS])
        fprintf(out,
                "**:warning: %zu change%s weaken%s security**: a security reviewer should approve "
                "this pull request.\n\n",
                c.cls[DIFF_WEAKENS], c.cls[DIFF_WEAKENS] == 1 ? "" : "s",
                c.cls[DIFF_WEAKENS] == 1 ? "s" : "");
    else
        fputs("No change weakens security.\n\n", out);
    fprintf(out,
            "Tools: %zu changed, %zu added, %zu removed, %zu renamed. Isolation order: %s.\n\n",
            c.status[DIFF_CHANGED], c.status[DIFF_ADDED], c.status[DIFF_REMOVED],
            c.status[DIFF_RENAMED], review_isolation_order);
    for (size_t i = 0; i < r->n; i++)
        if (r->tools[i].error)
            fprintf(out, "- `%s` does not load: %s\n", r->tools[i].path, r->tools[i].error);
    for (size_t i = 0; i < r->nnotes; i++)
        fprintf(out, "- note: %s\n", r->notes[i]);
    if (c.cls[DIFF_WEAKENS]) {
        md_rows(r, out, true);
        fputc('\n', out);
    }
    size_t rest = c.cls[DIFF_STRENGTHENS] + c.cls[DIFF_NEUTRAL];
    if (rest) {
        fprintf(out, "<details><summary>%zu other change%s (strengthens, neutral)</summary>\n\n",
                rest, rest == 1 ? "" : "s");
        md_rows(r, out, false);
        fputs("\n</details>\n", out);
    }
}

/* ---- JSON, SARIF, GitHub ------------------------------------------------------------------ */

static void print_json(const struct diff_report *r, FILE *out)
{
    struct counts c = count(r);
    json_t *tools = json_array(), *notes = json_array();
    for (size_t i = 0; i < r->nnotes; i++)
        json_array_append_new(notes, json_string(r->notes[i]));
    for (size_t i = 0; tools && i < r->n; i++) {
        const struct diff_tool *t = &r->tools[i];
        json_t *changes = json_array();
        for (size_t k = 0; changes && k < t->n; k++) {
            const struct diff_change *ch = &t->changes[k];
            json_array_append_new(changes,
                                  json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "class",
                                            diff_class_name(ch->cls), "key", ch->key, "before",
                                            ch->before, "after", ch->after, "reason", ch->reason,
                                            "line", ch->loc.line, "column", ch->loc.col));
        }
        json_t *tj = json_pack("{s:s, s:s, s:s, s:o}", "name", t->name, "path", t->path, "status",
                               status_names[t->status], "changes", changes);
        if (tj && t->old_name) json_object_set_new(tj, "old_name", json_string(t->old_name));
        if (tj && t->error) json_object_set_new(tj, "error", json_string(t->error));
        json_array_append_new(tools, tj);
    }
    json_t *j = json_pack(
        "{s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o, s:o}", "base", r->base_label,
        "head", r->head_label, "summary", "weakens", (json_int_t)c.cls[DIFF_WEAKENS], "strengthens",
        (json_int_t)c.cls[DIFF_STRENGTHENS], "neutral", (json_int_t)c.cls[DIFF_NEUTRAL], "added",
        (json_int_t)c.status[DIFF_ADDED], "removed", (json_int_t)c.status[DIFF_REMOVED], "renamed",
        (json_int_t)c.status[DIFF_RENAMED], "broken", (json_int_t)c.status[DIFF_BROKEN], "notes",
        notes, "tools", tools);
    review_print_json(j, out);
}

// clang-format off
static const struct {
    const char *id, *name, *summary, *rationale, *fix;
    enum lint_level level;
} diff_rules[] = {
    {"GH201", "change-weakens", "A policy change weakens security.",
     "Less isolation, approval removed, arguments widened or limits raised give a tool more "
     "room to do harm.", "Have a security reviewer approve the change.", LINT_WARNING},
    {"GH202", "change-neutral", "A security-relevant policy change that cannot be ordered.",
     "A different program, pattern or endpoint is neither weaker nor stronger by itself.",
     "Review what changed.", LINT_NOTE},
    {"GH203", "change-strengthens", "A policy change strengthens security.",
     "Recorded so the whole change is visible.", "Nothing to do.", LINT_NOTE},
    {"GH001", "policy-does-not-load", "The policy does not load.",
     "The gateway refuses the whole policy set when one file has an error.",
     "Fix the error at the location given.", LINT_ERROR},
};
// clang-format on

static void print_sarif(const struct diff_report *r, FILE *out)
{
    json_t *rules = json_array(), *results = json_array();
    for (size_t i = 0; i < sizeof(diff_rules) / sizeof(diff_rules[0]); i++)
        json_array_append_new(rules,
                              review_sarif_rule(diff_rules[i].id, diff_rules[i].name,
                                                diff_rules[i].summary, diff_rules[i].rationale,
                                                diff_rules[i].fix, diff_rules[i].level));
    struct gate_buf msg = {0}, fp = {0};
    char hex[65];
    for (size_t i = 0; i < r->n; i++) {
        const struct diff_tool *t = &r->tools[i];
        if (t->error) {
            gate_sha256_hex(t->path, strlen(t->path), hex);
            json_array_append_new(results,
                                  review_sarif_result("GH001", 3, LINT_ERROR, t->error, t->path,
                                                      (struct policy_loc){1, 1}, hex));
        }
        for (size_t k = 0; k < t->n; k++) {
            const struct diff_change *ch = &t->changes[k];
            size_t idx = ch->cls == DIFF_WEAKENS ? 0 : ch->cls == DIFF_NEUTRAL ? 1 : 2;
            msg.len = fp.len = 0;
            gate_buf_printf(&msg, "%s: %s %s: %s -> %s: %s", t->name, diff_class_name(ch->cls),
                            ch->key, *ch->before ? ch->before : "(none)",
                            *ch->after ? ch->after : "(none)", ch->reason);
            gate_buf_printf(&fp, "%s%c%s%c%s%c%s%c%s", diff_rules[idx].id, 0, t->name, 0, ch->key,
                            0, ch->before, 0, ch->after);
            gate_sha256_hex(fp.data, fp.len, hex);
            json_array_append_new(results, review_sarif_result(diff_rules[idx].id, idx,
                                                               diff_rules[idx].level, msg.data,
                                                               t->path, ch->loc, hex));
        }
    }
    gate_buf_free(&msg);
    gate_buf_free(&fp);
    review_print_json(review_sarif_log(rules, results), out);
}

static void print_github(const struct diff_report *r, FILE *out)
{
    struct gate_buf b = {0};
    for (size_t i = 0; i < r->n; i++) {
        const struct diff_tool *t = &r->tools[i];
        if (t->error) {
            b.len = 0;
            gate_buf_append(&b, "::error file=", 13);
            review_gh_escape(&b, t->path, true);
            gate_buf_append(&b, ",line=1,title=policy does not load::", 36);
            review_gh_escape(&b, t->error, false);
            fprintf(out, "%s\n", b.data);
        }
        for (size_t k = 0; k < t->n; k++) {
            const struct diff_change *ch = &t->changes[k];
            b.len = 0;
            gate_buf_printf(&b, "::%s file=", ch->cls == DIFF_WEAKENS ? "warning" : "notice");
            review_gh_escape(&b, t->path, true);
            gate_buf_printf(&b, ",line=%d,col=%d,title=", ch->loc.line, ch->loc.col);
            char title[256];
            snprintf(title, sizeof(title), "%s %s %s", t->name, diff_class_name(ch->cls), ch->key);
            review_gh_escape(&b, title, true);
            gate_buf_append(&b, "::", 2);
            char text[2048];
            snprintf(text, sizeof(text), "%s -> %s: %s", *ch->before ? ch->before : "(none)",
                     *ch->after ? ch->after : "(none)", ch->reason);
            review_gh_escape(&b, text, false);
            fprintf(out, "%s\n", b.data);
        }
    }
    gate_buf_free(&b);
}

void diff_print(const struct diff_report *r, enum policy_report_format fmt, FILE *out)
{
    switch (fmt) {
    case POLICY_REPORT_MARKDOWN:
        print_markdown(r, out);
        break;
    case POLICY_REPORT_JSON:
        print_json(r, out);
        break;
    case POLICY_REPORT_SARIF:
        print_sarif(r, out);
        break;
    case POLICY_REPORT_GITHUB:
        print_github(r, out);
        break;
    default:
        print_text(r, out);
        break;
    }
}
