/* plan.c: everything a container call needs, computed once when the policy loads.
 *
 * The mount plan (read-only binds, directories, mount points, /bin-style links), the
 * generated /etc files and the tmpfs options are built here so the child, which runs on
 * a copy of the gateway's memory and may not allocate, only walks prepared lists.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/netpolicy.h"
#include "container.h"

#define MAX_BINDS 64

struct strv {
    char **v;
    size_t n, cap;
};

static int strv_push(struct strv *s, const char *str)
{
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof(char *));
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -1;
    s->v[++s->n] = NULL;
    return 0;
}

/* An empty list is still a NULL-terminated vector. */
static int strv_finish(struct strv *s)
{
    if (!s->v && !(s->v = calloc(1, sizeof(char *)))) return -1;
    return 0;
}

static bool strv_has(const struct strv *s, const char *str)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], str) == 0) return true;
    return false;
}

/* Is rel (relative, "usr/local") equal to or below base ("usr")? */
static bool below(const char *rel, const char *base)
{
    size_t n = strlen(base);
    return strncmp(rel, base, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
}

static bool under_bind(const struct ct_state *st, const char *rel)
{
    for (size_t i = 0; i < st->nbinds; i++)
        if (below(rel, st->binds[i].dst)) return true;
    return false;
}

/* Every missing parent of rel (itself included when dir) as a directory to create. */
static int add_parents(struct ct_state *st, struct strv *dirs, const char *rel, bool include_self)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", rel);
    for (char *p = buf; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (!under_bind(st, buf) && !strv_has(dirs, buf) && strv_push(dirs, buf) < 0) return -1;
        *p = '/';
    }
    if (include_self && !strv_has(dirs, buf) && strv_push(dirs, buf) < 0) return -1;
    return 0;
}

static int add_bind(struct ct_state *st, const char *src, struct gate_error *err)
{
    if (st->nbinds >= MAX_BINDS)
        return gate_err(err, GATE_E_POLICY, "filesystem.read_only: more than %d paths", MAX_BINDS);
    if (strcmp(src, "/") == 0)
        return gate_err(err, GATE_E_POLICY,
                        "filesystem.read_only: '/' would expose the whole host");
    struct stat sb;
    if (stat(src, &sb) < 0)
        return gate_err_errno(err, GATE_E_POLICY, errno, "filesystem.read_only: %s", src);
    const char *rel = src;
    while (*rel == '/')
        rel++;
    for (size_t i = 0; i < st->nbinds; i++)
        if (strcmp(st->binds[i].dst, rel) == 0) return 0; /* listed twice */
    struct ct_bind *b = &st->binds[st->nbinds];
    b->src = strdup(src);
    b->dst = strdup(rel);
    b->is_dir = S_ISDIR(sb.st_mode);
    if (!b->src || !b->dst) {
        free(b->src);
        free(b->dst);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    st->nbinds++;
    return 0;
}

static int cmp_bind(const void *a, const void *b)
{
    return strcmp(((const struct ct_bind *)a)->dst, ((const struct ct_bind *)b)->dst);
}

/* bin, sbin, lib, ... as links into usr when the host is merged-/usr and only /usr is bound. */
static int usr_links(struct ct_state *st, struct strv *links)
{
    static const char *const names[] = {"bin", "sbin", "lib", "lib64", "lib32", "libx32", NULL};
    bool have_usr = false;
    for (size_t i = 0; i < st->nbinds; i++)
        if (strcmp(st->binds[i].dst, "usr") == 0) have_usr = true;
    if (!have_usr) return 0;
    for (size_t i = 0; names[i]; i++) {
        char host[32], target[PATH_MAX];
        snprintf(host, sizeof(host), "/%s", names[i]);
        ssize_t n = readlink(host, target, sizeof(target) - 1);
        if (n <= 0 || under_bind(st, names[i])) continue;
        target[n] = '\0';
        if (strncmp(target, "usr/", 4) != 0 && strncmp(target, "/usr/", 5) != 0) continue;
        if (strv_push(links, names[i]) < 0 || strv_push(links, target) < 0) return -1;
    }
    return 0;
}

static int identity_files(struct ct_state *st, uid_t uid, gid_t gid, const char *home)
{
    const char *name = uid == 65534 ? "nobody" : "tool";
    const char *gname = gid == 65534 ? "nogroup" : "tool";
    if (asprintf(&st->passwd,
                 "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                 "%s:x:%u:%u:%s:%s:/usr/sbin/nologin\n",
                 name, (unsigned)uid, (unsigned)gid, name, home) < 0) {
        st->passwd = NULL;
        return -1;
    }
    if (asprintf(&st->group, "root:x:0:\n%s:x:%u:\n", gname, (unsigned)gid) < 0) {
        st->group = NULL;
        return -1;
    }
    return 0;
}

static int plan_binds(const struct policy *p, struct ct_state *st, struct gate_error *err)
{
    static char *const default_ro[] = {"/usr", NULL};
    char *const *ro = p->filesystem.read_only ? p->filesystem.read_only : default_ro;
    size_t n = 0;
    while (ro[n])
        n++;
    if (!(st->binds = calloc(n + 2, sizeof(*st->binds))))
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (add_bind(st, ro[i], err) < 0) return -1;
    qsort(st->binds, st->nbinds, sizeof(*st->binds), cmp_bind);
    /* The tool's own directory, read-only, unless a listed path already holds it. */
    char real[PATH_MAX];
    if (!realpath(p->command[0], real))
        return gate_err_errno(err, GATE_E_POLICY, errno, "command %s", p->command[0]);
    /* The loader's cache: without it every dynamic tool probes dozens of library paths. */
    if (access("/etc/ld.so.cache", R_OK) == 0 && !under_bind(st, "etc") &&
        add_bind(st, "/etc/ld.so.cache", err) < 0)
        return -1;
    char *dir = dirname(real);
    if (!under_bind(st, dir + 1) && strcmp(dir, "/") != 0 && add_bind(st, dir, err) < 0) return -1;
    qsort(st->binds, st->nbinds, sizeof(*st->binds), cmp_bind);
    return 0;
}

int ct_plan(const struct policy *p, struct ct_state *st, struct gate_error *err)
{
    struct strv dirs = {0}, files = {0}, links = {0};
    int rc = -1;
    if (plan_binds(p, st, err) < 0) goto out;
    /* Fixed directories first: etc, proc, dev, tmp, workspace, then the bind targets. */
    static const char *const fixed[] = {"etc", "proc", "dev", "tmp", NULL};
    for (size_t i = 0; fixed[i]; i++)
        if (strv_push(&dirs, fixed[i]) < 0) goto nomem;
    if (p->filesystem.workspace && strv_push(&dirs, "workspace") < 0) goto nomem;
    for (size_t i = 0; i < st->nbinds; i++) {
        const struct ct_bind *b = &st->binds[i];
        bool nested = false;
        for (size_t j = 0; j < i; j++)
            if (below(b->dst, st->binds[j].dst))
                nested = true; /* the mount point exists inside the earlier bind */
        if (nested) continue;
        if (add_parents(st, &dirs, b->dst, b->is_dir) < 0 ||
            (!b->is_dir && strv_push(&files, b->dst) < 0))
            goto nomem;
    }
    if (usr_links(st, &links) < 0 || strv_finish(&dirs) < 0 || strv_finish(&files) < 0 ||
        strv_finish(&links) < 0)
        goto nomem;
    st->dirs = dirs.v, dirs.v = NULL;
    st->files = files.v, files.v = NULL;
    st->links = links.v, links.v = NULL;
    const struct policy_limits *l = &p->limits;
    st->workspace = p->filesystem.workspace;
    st->cwd = st->workspace ? "/workspace" : "/tmp";
    st->scratch_flags = MS_NOSUID | MS_NODEV | (p->filesystem.exec_workspace ? 0 : MS_NOEXEC);
    /* Inode caps scale with size, so "create a million empty files" stops at ENOSPC. */
    snprintf(st->tmp_opts, sizeof(st->tmp_opts), "size=%llum,nr_inodes=%llu,mode=1777",
             (unsigned long long)l->disk_mb, (unsigned long long)l->disk_mb * 256 + 64);
    snprintf(st->ws_opts, sizeof(st->ws_opts), "size=%llum,nr_inodes=%llu,mode=0755",
             (unsigned long long)p->filesystem.workspace_mb,
             (unsigned long long)p->filesystem.workspace_mb * 256 + 64);
    st->cpu_time_s = (l->cpu_time_ms + 999) / 1000;
    st->file_size_bytes = l->file_size_mb << 20;
    rc = 0;
    goto out;
nomem:
    gate_err(err, GATE_E_NOMEM, "out of memory");
out:
    sbx_free_strv(dirs.v);
    sbx_free_strv(files.v);
    sbx_free_strv(links.v);
    return rc;
}

void ct_state_free(void *state)
{
    struct ct_state *st = state;
    if (!st) return;
    free(st->seccomp.filter);
    for (size_t i = 0; i < st->nbinds; i++) {
        free(st->binds[i].src);
        free(st->binds[i].dst);
    }
    free(st->binds);
    sbx_free_strv(st->dirs);
    sbx_free_strv(st->files);
    sbx_free_strv(st->links);
    free(st->passwd);
    free(st->group);
    free(st->resolv);
    sbx_net_free(st->net);
    gate_buf_free(&st->image);
    free(st);
}

int ct_plan_identity(struct ct_state *st, uid_t uid, gid_t gid)
{
    return identity_files(st, uid, gid, st->cwd);
}
