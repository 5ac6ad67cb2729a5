/* child.c: the child error channel and small helpers shared by the tiers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sbx_internal.h"

struct child_report {
    int errnum;
    char step[120];
};

void sbx_child_fail(int err_fd, const char *step, int errnum)
{
    /* Only async-signal-safe calls here: this runs in a forked child of a threaded process. */
    struct child_report r;
    memset(&r, 0, sizeof(r));
    r.errnum = errnum;
    size_t n = strlen(step);
    if (n >= sizeof(r.step)) n = sizeof(r.step) - 1;
    memcpy(r.step, step, n);
    ssize_t w;
    do {
        w = write(err_fd, &r, sizeof(r));
    } while (w < 0 && errno == EINTR);
    _exit(127);
}

int sbx_child_status(int err_fd, struct gate_error *err)
{
    struct child_report r;
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = read(err_fd, (char *)&r + got, sizeof(r) - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return gate_err_errno(err, GATE_E_SANDBOX, errno, "reading the sandbox setup status");
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    if (got == 0) return 0; /* the pipe closed on exec: setup succeeded */
    if (got != sizeof(r))
        return gate_err(err, GATE_E_SANDBOX, "sandbox setup failed (short report)");
    r.step[sizeof(r.step) - 1] = '\0';
    const char *name = strerrorname_np(r.errnum);
    return gate_err(err, GATE_E_SANDBOX, "%s: %s (%s)", r.step, name ? name : "?",
                    strerror(r.errnum));
}

void sbx_close_fds_from(int first)
{
    /* Raw syscalls only: callers run in forked or CLONE_VM children. */
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0U) == 0) return;
    struct rlimit rl;
    rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 65536;
    for (rlim_t fd = (rlim_t)first; fd < max && fd < 1048576; fd++)
        close((int)fd);
}

char **sbx_tool_env(const struct policy *p, const char *call_id)
{
    size_t n = 0;
    while (p->env && p->env[n])
        n++;
    char **env = calloc(n + 3, sizeof(char *));
    if (!env) return NULL;
    size_t i = 0;
    for (; i < n; i++)
        if (!(env[i] = strdup(p->env[i]))) goto fail;
    char *v = NULL;
    if (asprintf(&v, "GATEHOUSE_CALL_ID=%s", call_id) < 0) goto fail;
    env[i++] = v;
    if (asprintf(&v, "GATEHOUSE_TOOL=%s", p->name) < 0) goto fail;
    env[i++] = v;
    return env;
fail:
    sbx_free_strv(env);
    return NULL;
}

void sbx_free_strv(char **v)
{
    if (!v) return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

int sbx_find_libexec(const char *name, char *out, size_t len)
{
    static const char *const dirs[] = {"", "../libexec/", "../libexec/gatehouse/"};
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) return -1;
    slash[1] = '\0';
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int w = snprintf(out, len, "%s%s%s", self, dirs[i], name);
        if (w > 0 && (size_t)w < len && access(out, X_OK) == 0) return 0;
    }
    return -1;
}

/* Remove everything inside the directory open as dirfd (taken), by descriptor only: every
 * step is relative to a directory already open, a name is opened with O_NOFOLLOW (a symbolic
 * link is removed, never followed) and a directory on another device is left alone. So even if
 * another call's tool swaps a directory for a link while this runs (its uid may share a
 * group-writable directory with the dead one), nothing outside the swept tree can be touched. */
static void remove_inside_at(int dirfd, dev_t dev, int depth)
{
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
        if (!S_ISDIR(st.st_mode)) {
            unlinkat(dirfd, de->d_name, 0);
            continue;
        }
        int sub = st.st_dev == dev && depth < 64
                      ? openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                      : -1;
        if (sub >= 0) remove_inside_at(sub, dev, depth + 1);
        unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

void sbx_remove_inside(int dirfd, dev_t dev)
{
    remove_inside_at(dirfd, dev, 0);
}
