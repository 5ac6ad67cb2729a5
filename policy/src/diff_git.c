/* diff_git.c: the two sides of a diff: a directory, or a git revision read through `git`
 * without a checkout (ls-tree for the policy directory, one cat-file --batch for every
 * policy, one cat-file --batch-check for the program files the policies name).
 *
 * git runs as a child of the command (posix_spawnp, no shell; revisions are resolved with
 * --end-of-options so a revision cannot be taken for an option), with the caller's
 * environment, since GIT_DIR and friends are the user's to set.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diff.h"

#define PROGRAM_HASH_MAX (64u << 20)
#define GIT_OUTPUT_MAX (1024u << 20)

extern char **environ;

void diff_side_free(struct diff_side *s)
{
    for (size_t i = 0; i < s->n; i++) {
        review_file_free(&s->files[i]);
        free(s->prog_hash[i]);
    }
    free(s->files);
    free(s->prog_hash);
    *s = (struct diff_side){0};
}

int diff_side_add(struct diff_side *s, const char *path, char *text, size_t len)
{
    struct review_file *files = realloc(s->files, (s->n + 1) * sizeof(*files));
    if (files) s->files = files;
    char **hashes = files ? realloc(s->prog_hash, (s->n + 1) * sizeof(*hashes)) : NULL;
    if (!hashes) {
        free(text);
        return -1;
    }
    s->prog_hash = hashes;
    s->files[s->n] = (struct review_file){0};
    s->prog_hash[s->n] = NULL;
    review_file_load(&s->files[s->n], path, text, len, true);
    s->n++;
    return 0;
}

/* The program file a policy names, when it is relative (part of the policy tree). */
static const char *relative_program(const struct review_file *f)
{
    if (!f->p) return NULL;
    const char *prog = f->p->module ? f->p->module : f->p->command ? f->p->command[0] : NULL;
    return prog && prog[0] != '/' ? prog : NULL;
}

/* ---- a directory -------------------------------------------------------------------------- */

int diff_side_load_dir(const char *dir, struct diff_side *s, struct gate_error *err)
{
    char **files = NULL;
    size_t n = 0;
    char *const one[] = {(char *)dir};
    if (review_list_paths(one, 1, &files, &n, err) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        char *text = NULL;
        size_t len = 0;
        struct gate_error rerr = {0};
        if (policy_read_yaml_file(files[i], &text, &len, &rerr) < 0) {
            text = strdup("");
            len = 0;
        }
        if (!text || diff_side_add(s, files[i], text, len) < 0) {
            review_strv_free(files, n);
            return gate_err(err, GATE_E_NOMEM, "out of memory");
        }
        const char *prog = relative_program(&s->files[s->n - 1]);
        autofree char *copy = strdup(files[i]);
        autofree char *path = NULL;
        autofree char *data = NULL;
        size_t dlen = 0;
        if (prog && copy && asprintf(&path, "%s/%s", dirname(copy), prog) >= 0 &&
            gate_read_file(path, PROGRAM_HASH_MAX, &data, &dlen, &rerr) == 0) {
            char hex[65];
            gate_sha256_hex(data, dlen, hex);
            if (asprintf(&s->prog_hash[s->n - 1], "sha256:%s", hex) < 0)
                s->prog_hash[s->n - 1] = NULL;
        }
    }
    review_strv_free(files, n);
    return 0;
}

/* ---- a git revision ----------------------------------------------------------------------- */

static int fd_with(const void *data, size_t len)
{
    int fd = memfd_create("gatehouse-git", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (gate_write_all(fd, data, len) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Run `git -C repo args...` with input on stdin; its stdout goes to out. */
static int run_git(const char *repo, const char *const *args, const char *input, size_t inlen,
                   struct gate_buf *out, struct gate_error *err)
{
    const char *argv[16] = {"git", "-C", repo ? repo : "."};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    autoclose int in = fd_with(input ? input : "", input ? inlen : 0);
    autoclose int errfd = memfd_create("gatehouse-git-err", MFD_CLOEXEC);
    int pipefd[2] = {-1, -1};
    if (in < 0 || errfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
        return gate_err_errno(err, GATE_E_IO, errno, "git: cannot set up its input and output");
    autoclose int rd = pipefd[0];
    autoclose int wr = pipefd[1];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, wr, 1);
    posix_spawn_file_actions_adddup2(&fa, errfd, 2);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, "git", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return gate_err_errno(err, GATE_E_IO, rc, "cannot run git");
    close(steal_fd(&wr));
    out->len = 0;
    gate_buf_append(out, "", 0);
    char buf[65536];
    for (;;) {
        ssize_t r = read(rd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (out->len + (size_t)r > GIT_OUTPUT_MAX || gate_buf_append(out, buf, (size_t)r) < 0) {
            kill(pid, SIGKILL);
            break;
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    char msg[512] = "";
    ssize_t got = pread(errfd, msg, sizeof(msg) - 1, 0);
    msg[got > 0 ? got : 0] = '\0';
    msg[strcspn(msg, "\n")] = '\0';
    return gate_err(err, GATE_E_IO, "git %s failed: %s", args[0], *msg ? msg : "no message");
}

/* repo-relative "a/b/../c" -> "a/c"; NULL if it leaves the repository. */
static char *normalize(const char *path)
{
    char *out = calloc(1, strlen(path) + 1);
    if (!out) return NULL;
    size_t len = 0;
    for (const char *p = path; *p;) {
        size_t seg = strcspn(p, "/");
        if ((seg == 1 && p[0] == '.') || seg == 0) {
        } else if (seg == 2 && p[0] == '.' && p[1] == '.') {
            if (len == 0) {
                free(out);
                return NULL;
            }
            while (len && out[len - 1] != '/')
                len--;
            if (len) len--;
        } else {
            if (len) out[len++] = '/';
            memcpy(out + len, p, seg);
            len += seg;
        }
        p += seg + (p[seg] == '/');
    }
    out[len] = '\0';
    return out;
}

/* Program files named by the side's policies, looked up in the tree: their blob ids. */
static int git_program_hashes(const char *repo, const char *tree, struct diff_side *s,
                              struct gate_error *err)
{
    struct gate_buf req = {0}, out = {0};
    size_t *which = calloc(s->n ? s->n : 1, sizeof(*which)), nreq = 0;
    if (!which) return gate_err(err, GATE_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        const char *prog = relative_program(&s->files[i]);
        autofree char *copy = strdup(s->files[i].source);
        autofree char *joined = NULL;
        if (!prog || !copy || asprintf(&joined, "%s/%s", dirname(copy), prog) < 0) continue;
        autofree char *norm = normalize(joined);
        if (!norm || strchr(norm, '\n')) continue;
        gate_buf_printf(&req, "%s:%s\n", tree, norm);
        which[nreq++] = i;
    }
    int rc = 0;
    if (nreq) {
        const char *args[] = {"cat-file", "--batch-check", NULL};
        rc = run_git(repo, args, req.data, req.len, &out, err);
        char *line = out.data;
        for (size_t k = 0; rc == 0 && k < nreq && line && *line; k++) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            char oid[65] = "", type[16] = "";
            if (sscanf(line, "%64s %15s", oid, type) == 2 && !strcmp(type, "blob") &&
                asprintf(&s->prog_hash[which[k]], "git:%s", oid) < 0)
                s->prog_hash[which[k]] = NULL;
            line = nl ? nl + 1 : NULL;
        }
    }
    free(which);
    gate_buf_free(&req);
    gate_buf_free(&out);
    return rc;
}

static bool is_policy_name(const char *name)
{
    size_t len = strlen(name);
    return (len > 5 && !strcmp(name + len - 5, ".yaml")) ||
           (len > 4 && !strcmp(name + len - 4, ".yml"));
}

/* Read the blobs of the policy files listed by ls-tree into the side. */
static int git_read_blobs(const char *repo, const char *listing, size_t listing_len,
                          struct diff_side *s, struct gate_error *err)
{
    struct gate_buf req = {0}, out = {0};
    char **paths = NULL;
    size_t n = 0;
    for (const char *e = listing; e < listing + listing_len; e += strlen(e) + 1) {
        char mode[16], type[16], oid[65];
        const char *tab = strchr(e, '\t');
        const char *base = tab ? strrchr(tab + 1, '/') : NULL;
        base = base ? base + 1 : tab ? tab + 1 : NULL;
        if (!tab || sscanf(e, "%15s %15s %64s", mode, type, oid) != 3 || strcmp(type, "blob") ||
            base[0] == '.' || !is_policy_name(base))
            continue;
        char **grown = realloc(paths, (n + 1) * sizeof(*grown));
        if (!grown || !(grown[n] = strdup(tab + 1))) {
            free(grown ? grown : paths);
            return gate_err(err, GATE_E_NOMEM, "out of memory");
        }
        paths = grown;
        n++;
        gate_buf_printf(&req, "%s\n", oid);
    }
    const char *args[] = {"cat-file", "--batch", NULL};
    int rc = n ? run_git(repo, args, req.data, req.len, &out, err) : 0;
    const char *p = out.data, *end = out.data + out.len;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        unsigned long long size = 0;
        const char *nl = p ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (!nl || sscanf(p, "%*s %*s %llu", &size) != 1 || size > (size_t)(end - nl - 1)) {
            rc = gate_err(err, GATE_E_IO, "git cat-file: unexpected output for %s", paths[i]);
            break;
        }
        char *text = size <= POLICY_YAML_MAX_BYTES ? strndup(nl + 1, size) : strdup("");
        if (!text || diff_side_add(s, paths[i], text, size <= POLICY_YAML_MAX_BYTES ? size : 0) < 0)
            rc = gate_err(err, GATE_E_NOMEM, "out of memory");
        p = nl + 1 + size + 1;
    }
    review_strv_free(paths, n);
    gate_buf_free(&req);
    gate_buf_free(&out);
    return rc;
}

int diff_side_load_git(const char *repo, const char *rev, const char *dir, struct diff_side *s,
                       struct gate_error *err)
{
    struct gate_buf out = {0};
    autofree char *spec = NULL;
    if (asprintf(&spec, "%s^{tree}", rev) < 0) return gate_err(err, GATE_E_NOMEM, "out of memory");
    const char *resolve[] = {"rev-parse", "--verify", "--quiet", "--end-of-options", spec, NULL};
    if (run_git(repo, resolve, NULL, 0, &out, err) < 0) {
        gate_buf_free(&out);
        return gate_err(err, GATE_E_IO, "git: '%s' is not a revision of %s", rev,
                        repo ? repo : "this repository");
    }
    char tree[65] = "";
    sscanf(out.data, "%64s", tree);
    autofree char *dirslash = NULL;
    size_t dlen = strlen(dir);
    if (asprintf(&dirslash, "%.*s/", (int)(dlen && dir[dlen - 1] == '/' ? dlen - 1 : dlen), dir) <
        0) {
        gate_buf_free(&out);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    const char *list[] = {"ls-tree", "-z", "--full-tree", tree, "--", dirslash, NULL};
    int rc = run_git(repo, list, NULL, 0, &out, err);
    if (rc == 0) rc = git_read_blobs(repo, out.data, out.len, s, err);
    if (rc == 0) rc = git_program_hashes(repo, tree, s, err);
    gate_buf_free(&out);
    return rc;
}
