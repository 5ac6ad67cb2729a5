/* policy_set.c: the immutable, reference-counted set of every policy in a directory.
 *
 * A set is all or nothing: every *.yaml / *.yml file is loaded (in name order, so
 * diagnostics are stable), every error of every file is collected, tool names must be
 * unique, and any error means no set. The gateway swaps sets on SIGHUP; calls in flight
 * keep their reference to the old one until they finish.
 *
 * The directory is opened once and every file is read relative to it: only regular files
 * are read (a FIFO named zz.yaml is an error, never a hang), and a symbolic link is followed
 * only while it stays inside the directory (a link to /etc/shadow is refused unread).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy_internal.h"

#define POLICY_MAX_FILES 4096

static bool is_policy_file(const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.') return false;
    return (len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
           (len > 4 && strcmp(name + len - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_policy(const void *a, const void *b)
{
    const struct policy *x = *(struct policy *const *)a, *y = *(struct policy *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->path, y->path);
}

/* The sorted names of the policy files in the directory dirfd (dir names it in errors). */
static int list_files(int dirfd, const char *dir, char ***out, size_t *count,
                      struct policy_diags *diags)
{
    int fd = dup(dirfd);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        policy_diags_add(diags, "%s: cannot list policy directory: %s", dir, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_policy_file(e->d_name)) continue;
        if (n >= POLICY_MAX_FILES) {
            policy_diags_add(diags, "%s: more than %d policy files", dir, POLICY_MAX_FILES);
            rc = -1;
            break;
        }
        char **grown = realloc(names, (n + 1) * sizeof(*names));
        if (grown) names = grown;
        if (!grown || !(names[n] = strdup(e->d_name))) {
            policy_diags_add(diags, "%s: out of memory", dir);
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return -1;
    }
    if (n) qsort(names, n, sizeof(*names), cmp_str);
    *out = names;
    *count = n;
    return 0;
}

/* Read and load dir/name through dirfd. */
static int load_one(int dirfd, const char *dir, const char *name, struct policy **out,
                    struct policy_diags *diags)
{
    autofree char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        policy_diags_add(diags, "%s: out of memory", dir);
        return -1;
    }
    autofree char *buf = NULL;
    size_t len = 0;
    struct gate_error err = {0};
    if (policy_read_yaml_at(dirfd, name, path, &buf, &len, &err) < 0) {
        policy_diags_add(diags, "%s", err.msg);
        return -1;
    }
    return policy_load_buf(path, buf, len, out, diags);
}

static void set_free(struct policy_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        policy_free(s->items[i]);
    free(s->items);
    free(s);
}

static int check_unique(struct policy_set *s, struct policy_diags *diags)
{
    int rc = 0;
    for (size_t i = 1; i < s->n; i++) {
        const struct policy *a = s->items[i - 1], *b = s->items[i];
        if (strcmp(a->name, b->name) == 0) {
            policy_diags_add(diags, "%s:%d:%d: duplicate tool name '%s' (also in %s)", b->path,
                             b->name_loc.line, b->name_loc.col, b->name, a->path);
            rc = -1;
        }
    }
    return rc;
}

int policy_set_load(const char *dir, struct policy_set **out, struct policy_diags *diags)
{
    autoclose int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        policy_diags_add(diags, "%s: cannot open policy directory: %s", dir, strerror(errno));
        return -1;
    }
    char **files = NULL;
    size_t nfiles = 0;
    if (list_files(dirfd, dir, &files, &nfiles, diags) < 0) return -1;
    struct policy_set *s = calloc(1, sizeof(*s));
    if (s && !(s->items = calloc(nfiles ? nfiles : 1, sizeof(*s->items)))) {
        free(s);
        s = NULL;
    }
    int rc = 0;
    if (!s) {
        policy_diags_add(diags, "%s: out of memory", dir);
        rc = -1;
    }
    for (size_t i = 0; i < nfiles; i++) {
        struct policy *p = NULL;
        if (s && load_one(dirfd, dir, files[i], &p, diags) == 0)
            s->items[s->n++] = p;
        else
            rc = -1;
        free(files[i]);
    }
    free(files);
    if (s && s->n > 1) {
        qsort(s->items, s->n, sizeof(*s->items), cmp_policy);
        if (check_unique(s, diags) < 0) rc = -1;
    }
    if (rc < 0) {
        set_free(s);
        return -1;
    }
    s->refs = 1;
    *out = s;
    return 0;
}

struct policy_set *policy_set_ref(struct policy_set *s)
{
    if (s) __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void policy_set_unref(struct policy_set *s)
{
    /* Release/acquire so every use of the set by other threads happens before the free. */
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) set_free(s);
}

const struct policy *policy_set_find(const struct policy_set *s, const char *name)
{
    if (!s || !name) return NULL;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->items[mid]->name);
        if (c == 0) return s->items[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
