/* lint_output.c: lint findings as text, JSON, SARIF 2.1.0 or GitHub workflow commands, and
 * the SARIF pieces `policy diff` shares.
 *
 * SARIF: one run whose driver lists every rule (id, name, short and full description, help,
 * helpUri into the README, default level); each result names its rule, level, file and
 * region (line and column as libyaml counts them: code points, hence columnKind), carries a
 * partialFingerprint that depends on the rule, file, key and message but not on the line, so
 * code scanning follows a finding across edits, and suppressed findings keep their
 * justification (inSource for a policy comment, external for lint.yaml).
 */
#include <stdlib.h>
#include <string.h>

#include "lint.h"

#define SARIF_SCHEMA                                                                               \
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

json_t *review_sarif_rule(const char *id, const char *name, const char *summary,
                          const char *rationale, const char *fix, enum lint_level level)
{
    char uri[512];
    lint_help_uri(id, uri, sizeof(uri));
    return json_pack("{s:s, s:s, s:{s:s}, s:{s:s}, s:{s:s}, s:s, s:{s:s}, s:{s:[s]}}", "id", id,
                     "name", name, "shortDescription", "text", summary, "fullDescription", "text",
                     rationale, "help", "text", fix, "helpUri", uri, "defaultConfiguration",
                     "level", lint_level_name(level), "properties", "tags", "security");
}

json_t *review_sarif_result(const char *rule_id, size_t rule_index, enum lint_level level,
                            const char *message, const char *path, struct policy_loc loc,
                            const char *fingerprint)
{
    struct gate_buf uri = {0};
    review_sarif_uri(path, &uri);
    json_t *region = json_pack("{s:i, s:i}", "startLine", loc.line > 0 ? loc.line : 1,
                               "startColumn", loc.col > 0 ? loc.col : 1);
    json_t *r = json_pack("{s:s, s:I, s:s, s:{s:s}, s:[{s:{s:{s:s}, s:o}}], s:{s:s}}", "ruleId",
                          rule_id, "ruleIndex", (json_int_t)rule_index, "level",
                          lint_level_name(level), "message", "text", message, "locations",
                          "physicalLocation", "artifactLocation", "uri", uri.data, "region", region,
                          "partialFingerprints", "gatehouseFinding/v1", fingerprint);
    gate_buf_free(&uri);
    return r;
}

json_t *review_sarif_log(json_t *rules, json_t *results)
{
    char info[512];
    lint_help_uri("", info, sizeof(info));
    info[strcspn(info, "#")] = '\0';
    return json_pack("{s:s, s:s, s:[{s:{s:{s:s, s:s, s:o}}, s:s, s:o}]}", "$schema", SARIF_SCHEMA,
                     "version", "2.1.0", "runs", "tool", "driver", "name", "gatehouse",
                     "informationUri", info, "rules", rules, "columnKind", "unicodeCodePoints",
                     "results", results);
}

void review_print_json(json_t *j, FILE *out)
{
    if (!j) {
        fprintf(out, "{\"error\":\"out of memory\"}\n");
        return;
    }
    json_dumpf(j, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(j);
}

static void print_sarif(const struct lint_report *r, FILE *out)
{
    json_t *rules = json_array(), *results = json_array();
    for (size_t i = 0; rules && i < lint_nrules; i++) {
        const struct lint_rule *x = &lint_rules[i];
        json_array_append_new(
            rules, review_sarif_rule(x->id, x->name, x->summary, x->rationale, x->fix, x->level));
    }
    for (size_t i = 0; results && i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        json_t *res = review_sarif_result(f->rule->id, (size_t)(f->rule - lint_rules), f->level,
                                          f->message, f->file, f->loc, f->fingerprint);
        if (res && f->suppressed)
            json_object_set_new(res, "suppressions",
                                json_pack("[{s:s, s:s}]", "kind",
                                          f->in_source ? "inSource" : "external", "justification",
                                          f->suppressed));
        if (res) json_object_set_new(res, "properties", json_pack("{s:s}", "fix", f->rule->fix));
        json_array_append_new(results, res);
    }
    review_print_json(review_sarif_log(rules, results), out);
}

json_t *lint_report_json(const struct lint_report *r)
{
    json_t *findings = json_array();
    size_t counts[LINT_ERROR + 1] = {0}, suppressed = 0;
    for (size_t i = 0; findings && i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        if (f->suppressed)
            suppressed++;
        else
            counts[f->level]++;
        json_t *sup = f->suppressed ? json_pack("{s:s, s:s}", "reason", f->suppressed, "by",
                                                f->in_source ? "comment" : "config")
                                    : json_null();
        json_array_append_new(
            findings, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:o}", "rule",
                                f->rule->id, "name", f->rule->name, "level",
                                lint_level_name(f->level), "file", f->file, "line", f->loc.line,
                                "column", f->loc.col, "key", f->key, "message", f->message, "fix",
                                f->rule->fix, "fingerprint", f->fingerprint, "suppressed", sup));
    }
    return json_pack("{s:I, s:{s:I, s:I, s:I, s:I}, s:o}", "files", (json_int_t)r->files, "summary",
                     "errors", (json_int_t)counts[LINT_ERROR], "warnings",
                     (json_int_t)counts[LINT_WARNING], "notes", (json_int_t)counts[LINT_NOTE],
                     "suppressed", (json_int_t)suppressed, "findings", findings);
}

static void print_github(const struct lint_report *r, FILE *out)
{
    struct gate_buf b = {0};
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        if (f->suppressed) continue;
        b.len = 0;
        gate_buf_printf(&b, "::%s file=",
                        f->level == LINT_ERROR     ? "error"
                        : f->level == LINT_WARNING ? "warning"
                                                   : "notice");
        review_gh_escape(&b, f->file, true);
        gate_buf_printf(&b, ",line=%d,col=%d,title=", f->loc.line, f->loc.col);
        char title[128];
        snprintf(title, sizeof(title), "%s %s", f->rule->id, f->rule->name);
        review_gh_escape(&b, title, true);
        gate_buf_append(&b, "::", 2);
        review_gh_escape(&b, f->message, false);
        gate_buf_append(&b, " (fix: ", 7);
        review_gh_escape(&b, f->rule->fix, false);
        gate_buf_append(&b, ")", 1);
        fprintf(out, "%s\n", b.data);
    }
    gate_buf_free(&b);
}

static void print_text(const struct lint_report *r, FILE *out)
{
    size_t counts[LINT_ERROR + 1] = {0}, suppressed = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        if (f->suppressed) {
            suppressed++;
            continue;
        }
        counts[f->level]++;
        fprintf(out, "%s:%d:%d: %s %s: %s\n    fix: %s\n", f->file, f->loc.line, f->loc.col,
                lint_level_name(f->level), f->rule->id, f->message, f->rule->fix);
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct lint_finding *f = &r->items[i];
        if (f->suppressed)
            fprintf(out, "%s:%d:%d: suppressed %s (%s): %s\n    because: %s\n", f->file,
                    f->loc.line, f->loc.col, f->rule->id, f->in_source ? "comment" : "lint.yaml",
                    f->message, f->suppressed);
    }
    fprintf(out, "%zu file%s: %zu error%s, %zu warning%s, %zu note%s, %zu suppressed\n", r->files,
            r->files == 1 ? "" : "s", counts[LINT_ERROR], counts[LINT_ERROR] == 1 ? "" : "s",
            counts[LINT_WARNING], counts[LINT_WARNING] == 1 ? "" : "s", counts[LINT_NOTE],
            counts[LINT_NOTE] == 1 ? "" : "s", suppressed);
}

void lint_print(const struct lint_report *r, enum policy_report_format fmt, FILE *out)
{
    switch (fmt) {
    case POLICY_REPORT_JSON:
        review_print_json(lint_report_json(r), out);
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
