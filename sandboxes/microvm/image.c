/* image.c: a policy's guest image, built once when the policy loads.
 *
 * The guest boots from one uncompressed initramfs (newc cpio) that holds the agent
 * as /init, a minimal /etc, and the tool's files, read-only, under /.gate/ro at
 * their host paths (the agent binds them into place; see guest/init.c). Why an image
 * and not a 9p or virtiofs share of the host paths: QEMU refuses to migrate a guest
 * that has a 9p filesystem mounted, so a shared tree and the snapshot-restored pool
 * exclude each other; virtiofs needs a virtiofsd daemon per guest (a second host
 * process to jail, which serves the files as root); and either one keeps a live path
 * from the guest to a host filesystem through a file server. An image is a copy: the
 * guest reads RAM, the jailed QEMU reads one file, and a change on the host reaches
 * guests at the next policy load, the same moment every other policy change does.
 *
 * What goes in: the directory of command[0] (only command[0] itself when it lives
 * in a system bin directory), every filesystem.read_only path, and what those
 * programs need to start: for each executable, its #! interpreter, ELF interpreter
 * and DT_NEEDED libraries, found the way the dynamic loader finds them. Write and
 * setuid/setgid bits are dropped, owners become root. The image must fit in a
 * quarter of the guest's memory: it lives in guest RAM.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "microvm.h"

#define RO_PREFIX ".gate/ro"
#define MAX_ENTRIES 65536
#define MAX_DEPTH 32

struct cpio {
    struct gate_buf buf;
    uint64_t limit; /* bytes of file content allowed */
    uint64_t used;  /* bytes of file content so far */
    uint32_t ino;   /* next inode number */
    char **names;   /* entries written, for dedupe (each path once) */
    size_t n, cap;
    struct gate_error *err;
};

static bool have(const struct cpio *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0) return true;
    return false;
}

static int remember(struct cpio *c, const char *name)
{
    if (c->n >= MAX_ENTRIES)
        return gate_err(c->err, GATE_E_POLICY, "microvm: more than %d files for the guest",
                        MAX_ENTRIES);
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        char **v = realloc(c->names, cap * sizeof(char *));
        if (!v) return gate_err(c->err, GATE_E_NOMEM, "out of memory");
        c->names = v;
        c->cap = cap;
    }
    if (!(c->names[c->n] = strdup(name))) return gate_err(c->err, GATE_E_NOMEM, "out of memory");
    c->n++;
    return 0;
}

static int pad4(struct gate_buf *b)
{
    static const char zeros[4] = {0};
    return gate_buf_append(b, zeros, (4 - b->len % 4) % 4);
}

/* One newc entry: name is relative to the guest's root. mtime 0 and inode numbers in order keep
 * the image (and so its hash, which names the snapshot) a function of the content alone. */
static int entry(struct cpio *c, const char *name, mode_t mode, dev_t rdev, const void *data,
                 size_t len)
{
    char hdr[111];
    size_t namesize = strlen(name) + 1;
    snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
             c->ino++, (unsigned)mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u, (unsigned)len, 0u, 0u,
             (unsigned)(rdev >> 8), (unsigned)(rdev & 0xff), (unsigned)namesize, 0u);
    if (gate_buf_append(&c->buf, hdr, 110) < 0 || gate_buf_append(&c->buf, name, namesize) < 0 ||
        pad4(&c->buf) < 0 || (len && gate_buf_append(&c->buf, data, len) < 0) || pad4(&c->buf) < 0)
        return gate_err(c->err, GATE_E_NOMEM, "out of memory");
    return remember(c, name);
}

/* Every missing parent of name (relative), as a plain directory. */
static int parents(struct cpio *c, const char *name)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", name);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (!have(c, buf) && entry(c, buf, S_IFDIR | 0755, 0, NULL, 0) < 0) return -1;
        *p = '/';
    }
    return 0;
}

static int read_content(struct cpio *c, const char *path, const struct stat *st, char **out)
{
    *out = NULL;
    if ((uint64_t)st->st_size > c->limit - c->used)
        return gate_err(c->err, GATE_E_POLICY,
                        "microvm: the guest image would exceed %llu MB (a quarter of "
                        "limits.memory_mb: it lives in guest RAM) at %s",
                        (unsigned long long)(c->limit >> 20), path);
    char *data = NULL;
    size_t len = 0;
    struct gate_error e = {0};
    if (gate_read_file(path, (size_t)st->st_size + 1, &data, &len, &e) < 0)
        return gate_err(c->err, GATE_E_POLICY, "microvm: %s", e.msg);
    if (len != (size_t)st->st_size) {
        free(data);
        return gate_err(c->err, GATE_E_POLICY, "microvm: %s changed while it was read", path);
    }
    c->used += len;
    *out = data;
    return 0;
}

static int add_path(struct cpio *c, const char *host, bool follow, int depth);

/* ---- what executables need ----------------------------------------------------------------- */

static const char *const lib_dirs[] = {"/lib/x86_64-linux-gnu",
                                       "/usr/lib/x86_64-linux-gnu",
                                       "/lib64",
                                       "/usr/lib64",
                                       "/lib",
                                       "/usr/lib",
                                       NULL};

/* The file offset of virtual address va, through the PT_LOAD segments. */
static bool va_offset(const char *d, size_t len, const Elf64_Ehdr *eh, uint64_t va, uint64_t *off)
{
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const void *)(d + eh->e_phoff + (size_t)i * eh->e_phentsize);
        if (ph->p_type == PT_LOAD && va >= ph->p_vaddr && va - ph->p_vaddr < ph->p_filesz) {
            *off = va - ph->p_vaddr + ph->p_offset;
            return *off < len;
        }
    }
    return false;
}

/* A NUL-terminated string at off, or NULL. */
static const char *str_at(const char *d, size_t len, uint64_t off)
{
    if (off >= len || !memchr(d + off, '\0', len - off)) return NULL;
    return d + off;
}

static int add_library(struct cpio *c, const char *name, const char *runpath, const char *origin,
                       int depth)
{
    if (strchr(name, '/')) return add_path(c, name, true, depth + 1);
    char path[PATH_MAX];
    /* DT_RUNPATH first ($ORIGIN is the object's own directory), then the loader's defaults. */
    for (const char *rp = runpath; rp && *rp;) {
        size_t n = strcspn(rp, ":");
        bool origin_rel = n >= 7 && strncmp(rp, "$ORIGIN", 7) == 0;
        int len = origin_rel ? snprintf(path, sizeof(path), "%s%.*s/%s", origin, (int)(n - 7),
                                        rp + 7, name)
                             : snprintf(path, sizeof(path), "%.*s/%s", (int)n, rp, name);
        if (len > 0 && len < (int)sizeof(path) && path[0] == '/' && access(path, R_OK) == 0)
            return add_path(c, path, true, depth + 1);
        rp += n + (rp[n] == ':');
    }
    for (size_t i = 0; lib_dirs[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", lib_dirs[i], name);
        if (access(path, R_OK) == 0) return add_path(c, path, true, depth + 1);
    }
    return 0; /* not on this host: the tool fails in the guest as it would here */
}

/* The ELF interpreter and libraries of the object d (the file at path). */
static int elf_needs(struct cpio *c, const char *path, const char *d, size_t len, int depth)
{
    const Elf64_Ehdr *eh = (const void *)d;
    if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
        return 0; /* not an object we can read: copied as it is */
    const Elf64_Dyn *dyn = NULL;
    size_t ndyn = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const void *)(d + eh->e_phoff + (size_t)i * sizeof(Elf64_Phdr));
        if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset) continue;
        if (ph->p_type == PT_INTERP) {
            char interp[PATH_MAX];
            snprintf(interp, sizeof(interp), "%.*s", (int)ph->p_filesz, d + ph->p_offset);
            if (interp[0] == '/' && add_path(c, interp, true, depth + 1) < 0) return -1;
        } else if (ph->p_type == PT_DYNAMIC && ph->p_offset % 8 == 0) {
            dyn = (const void *)(d + ph->p_offset);
            ndyn = ph->p_filesz / sizeof(Elf64_Dyn);
        }
    }
    uint64_t strtab = 0, runpath = 0;
    bool have_strtab = false, have_runpath = false;
    for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
        if (dyn[i].d_tag == DT_STRTAB)
            have_strtab = va_offset(d, len, eh, dyn[i].d_un.d_ptr, &strtab);
        if (dyn[i].d_tag == DT_RUNPATH || dyn[i].d_tag == DT_RPATH)
            runpath = dyn[i].d_un.d_val, have_runpath = true;
    }
    if (!have_strtab) return 0;
    const char *rp = have_runpath ? str_at(d, len, strtab + runpath) : NULL;
    char origin[PATH_MAX];
    snprintf(origin, sizeof(origin), "%s", path);
    dirname(origin);
    for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
        if (dyn[i].d_tag != DT_NEEDED) continue;
        const char *name = str_at(d, len, strtab + dyn[i].d_un.d_val);
        if (name && add_library(c, name, rp, origin, depth) < 0) return -1;
    }
    return 0;
}

/* A script's #! interpreter, or an ELF object's loader and libraries. */
static int needs(struct cpio *c, const char *path, const char *d, size_t len, int depth)
{
    if (len > 2 && d[0] == '#' && d[1] == '!') {
        const char *p = d + 2 + strspn(d + 2, " \t");
        size_t n = strcspn(p, " \t\r\n");
        if (*p != '/' || n >= PATH_MAX || (size_t)(p - d) + n > len) return 0;
        char interp[PATH_MAX];
        snprintf(interp, sizeof(interp), "%.*s", (int)n, p);
        return add_path(c, interp, true, depth + 1);
    }
    return elf_needs(c, path, d, len, depth);
}

/* ---- the tool's files ------------------------------------------------------------------- */

static int add_dir(struct cpio *c, const char *host, const char *name, const struct stat *st,
                   int depth)
{
    if (entry(c, name, S_IFDIR | (st->st_mode & 0555), 0, NULL, 0) < 0) return -1;
    struct dirent **list = NULL;
    int n = scandir(host, &list, NULL, alphasort); /* sorted: the same tree, the same image */
    if (n < 0) return gate_err_errno(c->err, GATE_E_POLICY, errno, "microvm: list %s", host);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *e = list[i]->d_name;
        if (rc == 0 && strcmp(e, ".") && strcmp(e, "..")) {
            char child[PATH_MAX];
            if (snprintf(child, sizeof(child), "%s/%s", strcmp(host, "/") ? host : "", e) >=
                (int)sizeof(child))
                rc = gate_err(c->err, GATE_E_POLICY, "microvm: path too long under %s", host);
            else
                rc = add_path(c, child, false, depth + 1);
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

/* Add the host path (absolute) at RO_PREFIX/path. follow: a symlink is copied as what it points
 * to (paths named by the policy or by a loader); otherwise kept as a link (inside a tree). */
static int add_path(struct cpio *c, const char *host, bool follow, int depth)
{
    if (depth > MAX_DEPTH)
        return gate_err(c->err, GATE_E_POLICY, "microvm: %s is nested too deep", host);
    char name[PATH_MAX];
    if (host[0] != '/' || snprintf(name, sizeof(name), RO_PREFIX "%s", host) >= (int)sizeof(name))
        return gate_err(c->err, GATE_E_POLICY, "microvm: bad path %s", host);
    size_t n = strlen(name);
    while (n > strlen(RO_PREFIX) + 1 && name[n - 1] == '/')
        name[--n] = '\0';
    if (have(c, name)) return 0;
    if (parents(c, name) < 0) return -1;
    struct stat st;
    if ((follow ? stat(host, &st) : lstat(host, &st)) < 0)
        return gate_err_errno(c->err, GATE_E_POLICY, errno, "microvm: %s", host);
    if (S_ISDIR(st.st_mode)) return add_dir(c, host, name, &st, depth);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t len = readlink(host, target, sizeof(target) - 1);
        if (len < 0) return gate_err_errno(c->err, GATE_E_POLICY, errno, "microvm: %s", host);
        return entry(c, name, S_IFLNK | 0777, 0, target, (size_t)len);
    }
    if (!S_ISREG(st.st_mode)) return 0; /* devices, sockets and fifos stay on the host */
    autofree char *data = NULL;
    if (read_content(c, host, &st, &data) < 0) return -1;
    if (entry(c, name, S_IFREG | (st.st_mode & 0555), 0, data, (size_t)st.st_size) < 0) return -1;
    if (st.st_mode & 0111) return needs(c, host, data, (size_t)st.st_size, depth);
    return 0;
}

/* ---- the image ---------------------------------------------------------------------------- */

static int add_text(struct cpio *c, const char *name, const char *text)
{
    return entry(c, name, S_IFREG | 0444, 0, text, strlen(text));
}

/* The guest's userland skeleton; dns: the policy's network.dns (with egress), whose resolver is
 * QEMU's user-mode stack at 10.0.2.3, forwarding to the host's (vm.c). */
static int base(struct cpio *c, bool dns)
{
    static const struct {
        const char *name;
        mode_t mode;
    } dirs[] = {{"dev", 0755}, {"proc", 0555},  {"tmp", 01777},
                {"etc", 0755}, {".gate", 0700}, {RO_PREFIX, 0755}};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (entry(c, dirs[i].name, S_IFDIR | dirs[i].mode, 0, NULL, 0) < 0) return -1;
    /* The kernel opens /dev/console for init's stdio. */
    if (entry(c, "dev/console", S_IFCHR | 0600, (5 << 8) | 1, NULL, 0) < 0) return -1;
    struct stat st;
    if (stat(mvm.agent, &st) < 0)
        return gate_err_errno(c->err, GATE_E_SANDBOX, errno, "microvm: agent %s", mvm.agent);
    autofree char *agent = NULL;
    uint64_t limit = c->limit;
    c->limit = UINT64_MAX; /* the agent does not count against the tool's share */
    int rc = read_content(c, mvm.agent, &st, &agent);
    c->limit = limit, c->used = 0;
    if (rc < 0 || entry(c, "init", S_IFREG | 0500, 0, agent, (size_t)st.st_size) < 0) return -1;
    char passwd[256], group[128];
    snprintf(passwd, sizeof(passwd),
             "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:%u:%u:nobody:/tmp:/sbin/nologin\n",
             (unsigned)mvm.uid, (unsigned)mvm.gid);
    snprintf(group, sizeof(group), "root:x:0:\nnogroup:x:%u:\n", (unsigned)mvm.gid);
    if (add_text(c, "etc/passwd", passwd) < 0 || add_text(c, "etc/group", group) < 0 ||
        add_text(c, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n") < 0 ||
        add_text(c, "etc/resolv.conf", dns ? "nameserver 10.0.2.3\n" : "# no name server\n") < 0 ||
        add_text(c, "etc/nsswitch.conf",
                 dns ? "passwd: files\ngroup: files\nhosts: files dns\n"
                     : "passwd: files\ngroup: files\nhosts: files\n") < 0)
        return -1;
    return 0;
}

static bool system_bin(const char *dir)
{
    static const char *const dirs[] = {"/bin",           "/sbin",           "/usr/bin", "/usr/sbin",
                                       "/usr/local/bin", "/usr/local/sbin", NULL};
    for (size_t i = 0; dirs[i]; i++)
        if (strcmp(dir, dirs[i]) == 0) return true;
    return false;
}

int mvm_image_build(const struct policy *p, struct gate_buf *out, struct gate_error *err)
{
    struct cpio c = {.limit = (p->limits.memory_mb << 20) / 4, .ino = 1, .err = err};
    int rc = -1;
    if (base(&c, p->network == NETWORK_EGRESS && p->net.dns) < 0) goto out;
    char real[PATH_MAX], dir[PATH_MAX];
    if (!realpath(p->command[0], real)) {
        gate_err_errno(err, GATE_E_POLICY, errno, "command %s", p->command[0]);
        goto out;
    }
    snprintf(dir, sizeof(dir), "%s", real);
    dirname(dir);
    /* The tool's own directory, as in the container tier; a system bin directory would be
     * most of the host's programs, so from there only the command comes. */
    if (add_path(&c, system_bin(dir) ? real : dir, true, 0) < 0 ||
        add_path(&c, p->command[0], true, 0) < 0)
        goto out;
    for (size_t i = 0; p->filesystem.read_only && p->filesystem.read_only[i]; i++)
        if (add_path(&c, p->filesystem.read_only[i], true, 0) < 0) goto out;
    if (entry(&c, "TRAILER!!!", 0, 0, NULL, 0) < 0) goto out;
    *out = c.buf;
    c.buf = (struct gate_buf){0};
    rc = 0;
out:
    gate_buf_free(&c.buf);
    for (size_t i = 0; i < c.n; i++)
        free(c.names[i]);
    free(c.names);
    return rc;
}
