/* lint_files.c: policy files as the review tools see them: loaded with their YAML tree and
 * comments, named the way reports name them; and what lint and diff both judge about a
 * policy (how strong its isolation is, whether its command runs code it is given).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "lint.h"

#define REVIEW_MAX_FILES 100000

char *review_display_path(const char *path)
{
    while (path[0] == '.' && path[1] == '/')
        path += 2 + strspn(path + 2, "/");
    char cwd[4096];
    if (path[0] == '/' && getcwd(cwd, sizeof(cwd))) {
        size_t n = strlen(cwd);
        if (n > 1 && strncmp(path, cwd, n) == 0 && path[n] == '/') return strdup(path + n + 1);
    }
    return strdup(path);
}

int review_file_load(struct review_file *f, const char *path, char *text, size_t len, bool offline)
{
    f->text = text;
    f->len = len;
    f->path = review_display_path(path);
    f->source = strdup(path);
    if (!f->path || !f->source) return -1;
    struct policy_load_opts opts = {.offline = offline, .tree = &f->root};
    return policy_load_ex(path, text, len, &opts, &f->p, &f->diags);
}

void review_file_free(struct review_file *f)
{
    free(f->path);
    free(f->source);
    free(f->text);
    ynode_free(f->root);
    policy_free(f->p);
    policy_diags_free(&f->diags);
    for (size_t i = 0; i < f->ncomments; i++)
        free(f->comments[i].text);
    free(f->comments);
    *f = (struct review_file){0};
}

/* ---- comments ----------------------------------------------------------------------------- */

struct span {
    struct policy_loc start, end; /* 0-based line and column; end exclusive */
};

static int loc_cmp(struct policy_loc a, struct policy_loc b)
{
    return a.line != b.line ? (a.line < b.line ? -1 : 1) : (a.col > b.col) - (a.col < b.col);
}

/* The spans of every token that can hold a '#' that is not a comment: scalars (plain, quoted
 * and block), tags, anchors and aliases. libyaml skips comments, so they sit between tokens. */
static int token_spans(const char *buf, size_t len, struct span **out, size_t *n)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return -1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    struct span *spans = NULL;
    size_t count = 0, cap = 0;
    for (;;) {
        yaml_token_t tok;
        if (!yaml_parser_scan(&parser, &tok)) break; /* a syntax error: spans so far */
        yaml_token_type_t type = tok.type;
        if (type == YAML_SCALAR_TOKEN || type == YAML_TAG_TOKEN || type == YAML_ANCHOR_TOKEN ||
            type == YAML_ALIAS_TOKEN) {
            if (count == cap) {
                cap = cap ? cap * 2 : 64;
                struct span *grown = realloc(spans, cap * sizeof(*spans));
                if (!grown) {
                    yaml_token_delete(&tok);
                    break;
                }
                spans = grown;
            }
            spans[count++] = (struct span){
                {(int)tok.start_mark.line, (int)tok.start_mark.column},
                {(int)tok.end_mark.line, (int)tok.end_mark.column},
            };
        }
        yaml_token_delete(&tok);
        if (type == YAML_STREAM_END_TOKEN) break;
    }
    yaml_parser_delete(&parser);
    *out = spans;
    *n = count;
    return 0;
}

int review_scan_comments(const char *buf, size_t len, struct review_comment **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct span *spans = NULL;
    size_t nspans = 0, next = 0, cap = 0;
    if (token_spans(buf, len, &spans, &nspans) < 0) return -1;
    struct policy_loc pos = {0, 0};
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == '\n') {
            pos.line++;
            pos.col = 0;
            continue;
        }
        bool starts = ch == '#' && (pos.col == 0 || buf[i - 1] == ' ' || buf[i - 1] == '\t');
        while (next < nspans && loc_cmp(spans[next].end, pos) <= 0)
            next++;
        bool inside = next < nspans && loc_cmp(spans[next].start, pos) <= 0;
        if (starts && !inside) {
            size_t end = i + 1;
            while (end < len && buf[end] != '\n' && buf[end] != '\r')
                end++;
            const char *t = buf + i + 1;
            size_t tlen = (size_t)(buf + end - t);
            while (tlen && isspace((unsigned char)*t))
                t++, tlen--;
            while (tlen && isspace((unsigned char)t[tlen - 1]))
                tlen--;
            if (*n == cap) {
                cap = cap ? cap * 2 : 8;
                struct review_comment *grown = realloc(*out, cap * sizeof(**out));
                if (!grown) break;
                *out = grown;
            }
            (*out)[*n] = (struct review_comment){{pos.line + 1, pos.col + 1}, strndup(t, tlen)};
            if ((*out)[*n].text) ++*n;
            pos.col += (int)(end - i);
            i = end - 1;
            continue;
        }
        /* libyaml counts columns in characters: skip UTF-8 continuation bytes. */
        if (((unsigned char)ch & 0xc0) != 0x80) pos.col++;
    }
    free(spans);
    return 0;
}

/* ---- which files ---------------------------------------------------------------------------- */

static bool is_policy_name(const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.') return false;
    return (len > 5 && !strcmp(name + len - 5, ".yaml")) ||
           (len > 4 && !strcmp(name + len - 4, ".yml"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void review_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int push(char ***v, size_t *n, char *s, struct gate_error *err)
{
    if (!s) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (*n >= REVIEW_MAX_FILES) {
        free(s);
        return gate_err(err, GATE_E_BAD_REQUEST, "more than %d policy files", REVIEW_MAX_FILES);
    }
    char **grown = realloc(*v, (*n + 1) * sizeof(**v));
    if (!grown) {
        free(s);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    *v = grown;
    grown[(*n)++] = s;
    return 0;
}

static int list_dir(const char *dir, char ***v, size_t *n, struct gate_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return gate_err_errno(err, GATE_E_IO, errno, "%s: cannot open directory", dir);
    size_t first = *n;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!is_policy_name(e->d_name)) continue;
        char *path = NULL;
        size_t dlen = strlen(dir);
        if (asprintf(&path, "%s%s%s", dir, dlen && dir[dlen - 1] == '/' ? "" : "/", e->d_name) < 0)
            path = NULL;
        rc = push(v, n, path, err);
    }
    closedir(d);
    if (rc == 0 && *n > first) qsort(*v + first, *n - first, sizeof(**v), cmp_str);
    return rc;
}

int review_list_paths(char *const *paths, size_t npaths, char ***out, size_t *n,
                      struct gate_error *err)
{
    char **v = NULL;
    size_t count = 0;
    for (size_t i = 0; i < npaths; i++) {
        struct stat st;
        int rc = 0;
        if (stat(paths[i], &st) < 0)
            rc = gate_err_errno(err, GATE_E_IO, errno, "%s", paths[i]);
        else if (S_ISDIR(st.st_mode))
            rc = list_dir(paths[i], &v, &count, err);
        else
            rc = push(&v, &count, strdup(paths[i]), err);
        if (rc < 0) {
            review_strv_free(v, count);
            return -1;
        }
    }
    *out = v;
    *n = count;
    return 0;
}

/* ---- what lint and diff both judge -------------------------------------------------------- */

/* wasm sits between container and gvisor: the tool cannot make a system call at all (a
 * container's tool reaches the host kernel through a broad allowlist), but the boundary is
 * gatehouse's own young interpreter and WASI layer, where gVisor puts an independent, mature
 * kernel in between and a microVM a hardware-virtualised one. */
static const int isolation_rank[ISOLATION__COUNT] = {
    [ISOLATION_PROCESS] = 0, [ISOLATION_CONTAINER] = 1, [ISOLATION_WASM] = 2,
    [ISOLATION_GVISOR] = 3,  [ISOLATION_MICROVM] = 4,
};
const char review_isolation_order[] = "process < container < wasm < gvisor < microvm";

int review_isolation_rank(enum isolation iso)
{
    return (unsigned)iso < ISOLATION__COUNT ? isolation_rank[iso] : 0;
}

enum interp_family { SHELL, PYTHON, JS, PERL, RUBY, PHP, LUA, OTHER_E };

static const struct {
    const char *name;
    enum interp_family family;
} interpreters[] = {
    {"sh", SHELL},   {"bash", SHELL},    {"dash", SHELL},      {"zsh", SHELL},
    {"ksh", SHELL},  {"mksh", SHELL},    {"ash", SHELL},       {"fish", SHELL},
    {"csh", SHELL},  {"tcsh", SHELL},    {"python", PYTHON},   {"pypy", PYTHON},
    {"node", JS},    {"nodejs", JS},     {"bun", JS},          {"deno", JS},
    {"perl", PERL},  {"ruby", RUBY},     {"php", PHP},         {"lua", LUA},
    {"luajit", LUA}, {"tclsh", SHELL},   {"Rscript", OTHER_E}, {"julia", OTHER_E},
    {"pwsh", SHELL}, {"guile", OTHER_E}, {"racket", OTHER_E},  {"irb", RUBY},
};

/* Programs that run their arguments as a command line: look past them. */
static const char *const wrappers[] = {"env",    "nice",   "nohup",   "stdbuf",
                                       "ionice", "setsid", "busybox", NULL};

/* "python3.11" -> "python", "lua5.4" -> "lua": the basename without a version suffix. */
static void base_name(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, len, "%s", slash ? slash + 1 : path);
    size_t n = strlen(out);
    while (n && (isdigit((unsigned char)out[n - 1]) || out[n - 1] == '.'))
        out[--n] = '\0';
}

/* Whether option arg of an interpreter of this family gives it inline code. */
static bool inline_code_flag(enum interp_family fam, const char *arg)
{
    switch (fam) {
    case SHELL: /* -c, also in a cluster: -ec, -xc; pwsh -Command */
        return (arg[1] != '-' && strchr(arg + 1, 'c')) || !strcasecmp(arg, "-command");
    case PYTHON:
        return !strcmp(arg, "-c");
    case JS:
        return !strcmp(arg, "-e") || !strcmp(arg, "--eval") || !strcmp(arg, "-p") ||
               !strcmp(arg, "--print");
    case PERL:
        return !strcmp(arg, "-e") || !strcmp(arg, "-E");
    case PHP:
        return !strcmp(arg, "-r");
    default:
        return !strcmp(arg, "-e") || !strcmp(arg, "--eval");
    }
}

/* Options whose value is the next argument (so that value is not taken for the script). */
static bool takes_value(enum interp_family fam, const char *arg)
{
    static const char *const shell[] = {"-o", "+o", NULL};
    static const char *const python[] = {"-W", "-X", "--check-hash-based-pycs", NULL};
    static const char *const js[] = {"-r", "--require", "--import", "--loader", NULL};
    const char *const *list = fam == SHELL ? shell : fam == PYTHON ? python : fam == JS ? js : NULL;
    for (size_t i = 0; list && list[i]; i++)
        if (!strcmp(arg, list[i])) return true;
    return false;
}

bool review_runs_received_code(char *const *argv, char *why, size_t whylen)
{
    size_t i = 0;
    char name[64];
    for (;;) {
        if (!argv || !argv[i]) return false;
        base_name(argv[i], name, sizeof(name));
        bool wrapper = false;
        for (size_t w = 0; wrappers[w] && !wrapper; w++)
            wrapper = !strcmp(name, wrappers[w]);
        if (!wrapper) break;
        for (i++; argv[i] &&
                  (argv[i][0] == '-' || strchr(argv[i], '=') || isdigit((unsigned char)argv[i][0]));
             i++)
            ;
    }
    int fam = -1;
    for (size_t k = 0; k < sizeof(interpreters) / sizeof(interpreters[0]) && fam < 0; k++)
        if (!strcmp(name, interpreters[k].name)) fam = (int)interpreters[k].family;
    if (fam < 0) return false;
    const char *prog = argv[i];
    if (fam == JS && argv[i + 1] && !strcmp(argv[i + 1], "eval")) {
        snprintf(why, whylen, "'%s eval' runs the code it is given", prog);
        return true;
    }
    for (i++; argv[i]; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !strcmp(a, "-")) break;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (inline_code_flag((enum interp_family)fam, a)) {
            snprintf(why, whylen, "'%s %s' runs inline code", prog, a);
            return true;
        }
        if (fam == PYTHON && !strcmp(a, "-m")) return false; /* runs an installed module */
        if (takes_value((enum interp_family)fam, a) && argv[i + 1]) i++;
    }
    if (!argv[i] || !strcmp(argv[i], "-") || !strcmp(argv[i], "/dev/stdin")) {
        snprintf(why, whylen,
                 "'%s' reads its program from stdin, which carries the call's arguments", prog);
        return true;
    }
    return false;
}

/* ---- report helpers ----------------------------------------------------------------------- */

void lint_help_uri(const char *rule_id, char *out, size_t len)
{
    const char *base = getenv("GATEHOUSE_HELP_URI");
    const char *server = getenv("GITHUB_SERVER_URL"), *repo = getenv("GITHUB_REPOSITORY");
    char anchor[32];
    snprintf(anchor, sizeof(anchor), "%s", rule_id);
    for (char *a = anchor; *a; a++)
        *a = (char)tolower((unsigned char)*a);
    if (base && *base)
        snprintf(out, len, "%s#%s", base, anchor);
    else if (server && repo && *server && *repo)
        snprintf(out, len, "%s/%s/blob/HEAD/README.md#%s", server, repo, anchor);
    else
        snprintf(out, len, "https://github.com/gatehouse/gatehouse/blob/main/README.md#%s", anchor);
}

void review_sarif_uri(const char *path, struct gate_buf *out)
{
    out->len = 0;
    if (path[0] == '/') gate_buf_append(out, "file://", 7);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (isalnum(*p) || strchr("/-._~", *p))
            gate_buf_append(out, p, 1);
        else
            gate_buf_printf(out, "%%%02X", *p);
    }
    if (!out->data) gate_buf_append(out, "", 0);
}

void review_gh_escape(struct gate_buf *out, const char *s, bool property)
{
    for (; *s; s++) {
        if (*s == '%')
            gate_buf_append(out, "%25", 3);
        else if (*s == '\r')
            gate_buf_append(out, "%0D", 3);
        else if (*s == '\n')
            gate_buf_append(out, "%0A", 3);
        else if (property && *s == ':')
            gate_buf_append(out, "%3A", 3);
        else if (property && *s == ',')
            gate_buf_append(out, "%2C", 3);
        else
            gate_buf_append(out, s, 1);
    }
    if (!out->data) gate_buf_append(out, "", 0);
}
