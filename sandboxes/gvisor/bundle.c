/* bundle.c: the files a gVisor sandbox is made of.
 *
 * Every sandbox shares one read-only root (STATE/gvisor/rootfs: the merged-/usr
 * links, empty mount points and our launcher) and one generated /etc. Each
 * policy compiles, once at load, an OCI config.json template: read-only binds of
 * filesystem.read_only (default /usr) and of the tool's own directory, size-capped
 * tmpfs /tmp and workspace, our launcher as the process (it drops to the non-root
 * tool identity without capabilities, under no_new_privs and seccomp, at boot),
 * rlimits and cgroup limits. The /etc contents are the same as the container
 * tier's (duplicated on purpose: the two tiers are built independently); policies with
 * network.dns bind STATE/gvisor/etc-dns instead, which names the host's resolvers.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gvisor_internal.h"

#define LAUNCHER_DIR ".gatehouse"
#define LAUNCHER_PATH "/" LAUNCHER_DIR "/launcher"

static int write_file(const char *dir, const char *name, const char *text, mode_t mode,
                      struct gate_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    GV_PATH(path, "%s/%s", dir, name);
    GV_PATH(tmp, "%s/.%s.tmp", dir, name);
    autoclose int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: create %s", tmp);
    if (gate_write_all(fd, text, strlen(text)) < 0 || fchmod(fd, mode) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: write %s", tmp);
    if (rename(tmp, path) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: rename %s", path);
    return 0;
}

static int copy_file(const char *src, const char *dst, mode_t mode, struct gate_error *err)
{
    autofree char *data = NULL;
    size_t len = 0;
    if (gate_read_file(src, 64u << 20, &data, &len, err) < 0)
        return gate_err_wrap(err, "gvisor: read the launcher");
    char tmp[PATH_MAX];
    GV_PATH(tmp, "%s.tmp", dst);
    autoclose int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0 || gate_write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: write %s", tmp);
    if (rename(tmp, dst) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: rename %s", dst);
    return 0;
}

static int make_dir(const char *path, struct gate_error *err)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: mkdir %s", path);
    return 0;
}

/* A generated /etc in dir. resolv: the text of its resolv.conf; with it, host names are looked
 * up in DNS too (a policy with network.dns), else in the hosts file only. */
static int write_etc(const char *dir, const char *resolv, bool dns, struct gate_error *err)
{
    char passwd[512], group[256];
    /* The tool's identity must resolve (id, getpwuid) inside the sandbox; root is listed
     * because files owned by uid 0 are everywhere in the read-only /usr. */
    snprintf(passwd, sizeof(passwd),
             "root:x:0:0:root:/root:/usr/sbin/nologin\n"
             "%s:x:%u:%u:%s:/nonexistent:/usr/sbin/nologin\n",
             gv.uid == 65534 ? "nobody" : "tool", (unsigned)gv.uid, (unsigned)gv.gid,
             gv.uid == 65534 ? "nobody" : "tool");
    GV_PATH(group, "root:x:0:\n%s:x:%u:\n", gv.gid == 65534 ? "nogroup" : "tool", (unsigned)gv.gid);
    static const char hosts[] =
        "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    char nsswitch[256];
    GV_PATH(nsswitch,
            "passwd: files\ngroup: files\nshadow: files\nhosts: files%s\n"
            "networks: files\nprotocols: files\nservices: files\n",
            dns ? " dns" : "");
    if (make_dir(dir, err) < 0 || write_file(dir, "passwd", passwd, 0644, err) < 0 ||
        write_file(dir, "group", group, 0644, err) < 0 ||
        write_file(dir, "hosts", hosts, 0644, err) < 0 ||
        write_file(dir, "resolv.conf", resolv, 0644, err) < 0 ||
        write_file(dir, "nsswitch.conf", nsswitch, 0644, err) < 0)
        return -1;
    return 0;
}

/* network.dns: the /etc of the policy's sandboxes names the host's resolvers (the ones the
 * filter opens port 53 to). Written when the policy loads, so a reload picks up a changed
 * /etc/resolv.conf; every such policy gets the same text, so they share one directory (each
 * file replaced by rename: a running sandbox sees the old file or the new one). */
static int dns_etc(const struct policy *p, char *dir, size_t len, struct gate_error *err)
{
    if (snprintf(dir, len, "%s/etc-dns", gv.dir) >= (int)len)
        return gate_err(err, GATE_E_SANDBOX, "gvisor: state directory path too long");
    autofree char *resolv = sbx_net_resolv_conf(p, err);
    if (!resolv) return -1;
    return write_etc(dir, resolv, true, err);
}

int gv_write_shared_files(struct gate_error *err)
{
    if (make_dir(gv.rootfs, err) < 0) return -1;
    /* Debian is merged-/usr: these links resolve once /usr is bound in. */
    static const char *const links[][2] = {
        {"bin", "usr/bin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}, {"sbin", "usr/sbin"}};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        char path[PATH_MAX];
        GV_PATH(path, "%s/%s", gv.rootfs, links[i][0]);
        if (symlink(links[i][1], path) < 0 && errno != EEXIST)
            return gate_err_errno(err, GATE_E_SANDBOX, errno, "gvisor: symlink %s", path);
    }
    /* Mount points, so that the read-only root needs no synthetic directories for them. */
    static const char *const dirs[] = {"usr", "etc",       "tmp",       "proc",
                                       "dev", "workspace", LAUNCHER_DIR};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char path[PATH_MAX];
        GV_PATH(path, "%s/%s", gv.rootfs, dirs[i]);
        if (make_dir(path, err) < 0) return -1;
    }
    /* The launcher is copied into the root (owned by root, mode 0555, root mounted read-only):
     * the tool runs as another uid and can neither change nor replace it. */
    char dst[PATH_MAX];
    GV_PATH(dst, "%s%s", gv.rootfs, LAUNCHER_PATH);
    if (copy_file(gv.helper, dst, 0555, err) < 0) return -1;
    return write_etc(gv.etc, "# no name servers: the sandbox has no network by default\n", false,
                     err);
}

/* ---- the per-policy OCI config ------------------------------------------------------- */

static json_t *strv_json(char *const *v)
{
    json_t *a = json_array();
    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *rlimit(const char *type, uint64_t value)
{
    return json_pack("{s:s,s:I,s:I}", "type", type, "hard", (json_int_t)value, "soft",
                     (json_int_t)value);
}

/* A seccomp program as one argv word for the launcher: "--seccomp=" and hex bytes. */
static json_t *seccomp_arg(const struct sock_fprog *prog)
{
    size_t n = (size_t)prog->len * sizeof(struct sock_filter);
    char *word = malloc(10 + 2 * n + 1);
    if (!word) return NULL;
    memcpy(word, "--seccomp=", 10);
    const unsigned char *b = (const unsigned char *)prog->filter;
    for (size_t i = 0; i < n; i++)
        snprintf(word + 10 + 2 * i, 3, "%02x", b[i]);
    word[10 + 2 * n] = '\0';
    json_t *s = json_string(word);
    free(word);
    return s;
}

static json_t *launcher_args(const struct policy *p, const struct gv_policy *gp)
{
    char user[64], cpu[64];
    GV_PATH(user, "--user=%u:%u", (unsigned)gv.uid, (unsigned)gv.gid);
    GV_PATH(cpu, "--cpu-ms=%llu", (unsigned long long)p->limits.cpu_time_ms);
    json_t *args = json_pack("[s,s,s,s,o,o,s]", LAUNCHER_PATH, "launch", user, cpu,
                             seccomp_arg(&gp->seccomp), seccomp_arg(&gp->seccomp_dev), "--");
    for (size_t i = 0; args && p->command[i]; i++)
        json_array_append_new(args, json_string(p->command[i]));
    return args;
}

static json_t *process_json(const struct policy *p, const struct gv_policy *gp)
{
    const struct policy_limits *l = &p->limits;
    json_t *rl = json_array();
    /* gVisor counts RLIMIT_NPROC per uid as tasks are created; the launcher was created as
     * root, so the tool's uid holds exactly the tool's processes: limits.pids of them. */
    json_array_append_new(rl, rlimit("RLIMIT_NPROC", l->pids));
    json_array_append_new(rl, rlimit("RLIMIT_CPU", (l->cpu_time_ms + 999) / 1000));
    json_array_append_new(rl, rlimit("RLIMIT_FSIZE", l->file_size_mb << 20));
    json_array_append_new(rl, rlimit("RLIMIT_CORE", 0));
    json_array_append_new(rl, rlimit("RLIMIT_NOFILE", 1024));
    /* The launcher starts as root of the sandbox (gVisor's, never the host's: the sentry runs
     * as nobody on the host) with only the capabilities it needs to prune /dev and to drop
     * to the tool's identity, which it does at boot, before it reads any input. From then on
     * it and the tool have no capabilities, an empty bounding set, no_new_privs and seccomp. */
    json_t *caps = json_pack("{s:[s,s,s],s:[s,s,s],s:[],s:[s,s,s],s:[]}", "bounding", "CAP_SETUID",
                             "CAP_SETGID", "CAP_SETPCAP", "effective", "CAP_SETUID", "CAP_SETGID",
                             "CAP_SETPCAP", "inheritable", "permitted", "CAP_SETUID", "CAP_SETGID",
                             "CAP_SETPCAP", "ambient");
    /* The policy env is what the launcher's header will carry (plus the two GATEHOUSE_
     * variables); the launcher gives the tool exactly the header's list. */
    return json_pack("{s:b,s:{s:i,s:i},s:o,s:o,s:s,s:o,s:o,s:b}", "terminal", 0, "user", "uid", 0,
                     "gid", 0, "args", launcher_args(p, gp), "env", strv_json(p->env), "cwd",
                     p->filesystem.workspace ? "/workspace" : "/", "capabilities", caps, "rlimits",
                     rl, "noNewPrivileges", 1);
}

static json_t *bind_ro(const char *src, const char *dst)
{
    return json_pack("{s:s,s:s,s:s,s:[s,s,s,s]}", "destination", dst, "type", "bind", "source", src,
                     "options", "rbind", "ro", "nosuid", "nodev");
}

static json_t *tmpfs(const char *dst, uint64_t size_mb, bool exec)
{
    char size[64];
    GV_PATH(size, "size=%llum", (unsigned long long)size_mb);
    return json_pack("{s:s,s:s,s:s,s:[s,s,s,s,s]}", "destination", dst, "type", "tmpfs", "source",
                     "tmpfs", "options", "nosuid", "nodev", exec ? "exec" : "noexec", "mode=1777",
                     size);
}

/* Is path equal to, or below, one of the read-only binds? */
static bool covered(char *const *ro, const char *path)
{
    for (size_t i = 0; ro[i]; i++) {
        size_t n = strlen(ro[i]);
        if (strncmp(ro[i], path, n) == 0 && (path[n] == '/' || path[n] == '\0' || n == 1))
            return true;
    }
    return false;
}

static int mounts_json(const struct policy *p, json_t **out, struct gate_error *err)
{
    static char *const default_ro[] = {"/usr", NULL};
    char *const *ro = p->filesystem.read_only ? p->filesystem.read_only : default_ro;
    json_t *m = json_array();
    json_array_append_new(
        m, json_pack("{s:s,s:s,s:s}", "destination", "/proc", "type", "proc", "source", "proc"));
    json_array_append_new(
        m, json_pack("{s:s,s:s,s:s}", "destination", "/dev", "type", "tmpfs", "source", "tmpfs"));
    for (size_t i = 0; ro[i]; i++)
        json_array_append_new(m, bind_ro(ro[i], ro[i]));
    autofree char *copy = strdup(p->command[0]);
    if (!copy) {
        json_decref(m);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    /* Resolved, so /bin/true binds nothing more than the /usr/bin that /usr already covers. */
    char tool_dir[PATH_MAX];
    if (!realpath(dirname(copy), tool_dir)) {
        json_decref(m);
        return gate_err_errno(err, GATE_E_POLICY, errno, "gvisor: the tool's directory");
    }
    if (strcmp(tool_dir, "/") == 0) {
        json_decref(m);
        return gate_err(err, GATE_E_POLICY,
                        "gvisor: the tool's directory would be /: put %s in a "
                        "directory of its own",
                        p->command[0]);
    }
    if (!covered(ro, tool_dir)) json_array_append_new(m, bind_ro(tool_dir, tool_dir));
    json_array_append_new(m, tmpfs("/tmp", p->limits.disk_mb, p->filesystem.exec_workspace));
    if (p->filesystem.workspace)
        json_array_append_new(
            m, tmpfs("/workspace", p->filesystem.workspace_mb, p->filesystem.exec_workspace));
    char etc_dns[PATH_MAX];
    if (p->network == NETWORK_EGRESS && p->net.dns &&
        dns_etc(p, etc_dns, sizeof(etc_dns), err) < 0) {
        json_decref(m);
        return -1;
    }
    json_array_append_new(
        m, bind_ro(p->network == NETWORK_EGRESS && p->net.dns ? etc_dns : gv.etc, "/etc"));
    *out = m;
    return 0;
}

static json_t *linux_json(const struct policy *p)
{
    const struct policy_limits *l = &p->limits;
    json_int_t mem = (json_int_t)((l->memory_mb + GV_SENTRY_OVERHEAD_MB) << 20);
    /* Host pids cap: gVisor's own tasks are goroutines, but the ptrace platform backs
     * application threads with host stubs. The tool's real cap is RLIMIT_NPROC inside
     * gVisor; this one only stops a runaway sentry. */
    json_int_t pids = (json_int_t)(512 + 4 * l->pids);
    json_t *lx = json_pack("{s:[{s:s},{s:s},{s:s},{s:s}],s:{s:{s:I,s:I},s:{s:I,s:I},s:{s:I}}}",
                           "namespaces", "type", "pid", "type", "ipc", "type", "uts", "type",
                           "mount", "resources", "memory", "limit", mem, "swap", mem, "cpu",
                           "quota", (json_int_t)l->cpu_millis * 100, "period", (json_int_t)100000,
                           "pids", "limit", pids);
    /* network.egress: runsc --network=host must stay in the host's namespace (a new one would
     * hold only a down lo); the BPF programs on the sandbox's cgroup are the filter. */
    if (lx && p->network != NETWORK_EGRESS)
        json_array_append_new(json_object_get(lx, "namespaces"),
                              json_pack("{s:s}", "type", "network"));
    return lx;
}

int gv_config_template(const struct policy *p, const struct gv_policy *gp, char **out,
                       struct gate_error *err)
{
    json_t *mounts = NULL;
    if (mounts_json(p, &mounts, err) < 0) return -1;
    json_t *cfg = json_pack("{s:s,s:o,s:{s:s,s:b},s:s,s:o,s:o}", "ociVersion", "1.0.2", "process",
                            process_json(p, gp), "root", "path", gv.rootfs, "readonly", 1,
                            "hostname", "sandbox", "mounts", mounts, "linux", linux_json(p));
    if (!cfg) return gate_err(err, GATE_E_NOMEM, "gvisor: cannot build the OCI config");
    *out = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    return *out ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

int gv_call_input(const struct policy *p, const struct sbx_call *call, struct gate_buf *out)
{
    char **env = sbx_tool_env(p, call->call_id);
    if (!env) return -1;
    struct gate_buf hdr = {0};
    int rc = 0;
    for (size_t i = 0; env[i] && rc == 0; i++)
        rc = gate_buf_append(&hdr, env[i], strlen(env[i]) + 1);
    sbx_free_strv(env);
    if (rc == 0 && hdr.len > 99999999) rc = -1;
    if (rc == 0) rc = gate_buf_printf(out, "%08zu", hdr.len);
    if (rc == 0 && hdr.len) rc = gate_buf_append(out, hdr.data, hdr.len);
    if (rc == 0 && call->input_len) rc = gate_buf_append(out, call->input, call->input_len);
    gate_buf_free(&hdr);
    return rc;
}
