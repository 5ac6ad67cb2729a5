/* image.c: a policy's container plan as one flat, position-independent byte image.
 *
 * Built once at policy load. A call sends the image (plus the call id) to a pool helper
 * process, which decodes it without allocating into a struct ct_spec whose pointers point
 * into its own copy; the cold path decodes it the same way in the gateway. One encoding,
 * so the pooled and the direct child see exactly the same plan.
 *
 * Layout: u32 magic, then fields in a fixed order; a string is u32 length + bytes + NUL, a
 * list is u32 count + strings, the seccomp program is u32 count + 8-byte instructions
 * (aligned to 8 in the image).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"

#define IMAGE_MAGIC 0x67684331u /* "ghC1" */

static int put(struct gate_buf *b, const void *p, size_t n)
{
    return gate_buf_append(b, p, n);
}

static int put_u32(struct gate_buf *b, uint32_t v)
{
    return put(b, &v, sizeof(v));
}

static int put_u64(struct gate_buf *b, uint64_t v)
{
    return put(b, &v, sizeof(v));
}

static int put_str(struct gate_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (n > 65535 || put_u32(b, (uint32_t)n) < 0) return -1;
    return put(b, s, n + 1);
}

static int put_strv(struct gate_buf *b, char *const *v)
{
    uint32_t n = 0;
    while (v && v[n])
        n++;
    if (put_u32(b, n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (put_str(b, v[i]) < 0) return -1;
    return 0;
}

int ct_image_build(const struct policy *p, const struct ct_state *st, struct gate_buf *img)
{
    memset(img, 0, sizeof(*img));
    char *tool_env = NULL;
    size_t nenv = 0;
    while (p->env && p->env[nenv])
        nenv++;
    char **env = calloc(nenv + 2, sizeof(char *));
    if (!env || asprintf(&tool_env, "GATEHOUSE_TOOL=%s", p->name) < 0) {
        free(env);
        return -1;
    }
    memcpy(env, p->env ? p->env : env, nenv * sizeof(char *));
    env[nenv] = tool_env;
    int rc = -1;
    if (put_u32(img, IMAGE_MAGIC) < 0 || put_u32(img, (uint32_t)st->nbinds) < 0) goto out;
    for (size_t i = 0; i < st->nbinds; i++)
        if (put_str(img, st->binds[i].src) < 0 || put_str(img, st->binds[i].dst) < 0) goto out;
    if (put_strv(img, st->dirs) < 0 || put_strv(img, st->files) < 0 ||
        put_strv(img, st->links) < 0 || put_strv(img, p->command) < 0 || put_strv(img, env) < 0 ||
        put_str(img, st->passwd) < 0 || put_str(img, st->group) < 0 ||
        put_str(img, st->tmp_opts) < 0 || put_str(img, st->ws_opts) < 0 ||
        put_str(img, st->cwd) < 0 || put_u64(img, st->scratch_flags) < 0 ||
        put_u64(img, st->workspace) < 0 || put_u64(img, st->cpu_time_s) < 0 ||
        put_u64(img, st->file_size_bytes) < 0 || put_u64(img, st->primable) < 0 ||
        put_u64(img, (st->host_net ? 1u : 0u) | (st->dns ? 2u : 0u)) < 0 ||
        put_str(img, st->resolv ? st->resolv : "# no network in this sandbox\n") < 0 ||
        put_u32(img, st->seccomp.len) < 0)
        goto out;
    while (img->len % 8)
        if (put(img, "", 1) < 0) goto out;
    if (put(img, st->seccomp.filter, (size_t)st->seccomp.len * sizeof(struct sock_filter)) < 0)
        goto out;
    rc = img->len <= CT_IMAGE_MAX ? 0 : -1;
out:
    free(tool_env);
    free(env);
    if (rc < 0) gate_buf_free(img);
    return rc;
}

/* ---- decoding: no allocation, bounds-checked ------------------------------------------- */

struct reader {
    const char *p;
    size_t left;
    bool bad;
};

/* Copy n bytes out, or zeros and mark the reader bad when fewer are left. */
static void get_raw(struct reader *r, void *out, size_t n)
{
    if (r->left < n) {
        r->bad = true;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
}

static uint32_t get_u32(struct reader *r)
{
    uint32_t v;
    get_raw(r, &v, sizeof(v));
    return v;
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t v;
    get_raw(r, &v, sizeof(v));
    return v;
}

static char *get_str(struct reader *r)
{
    uint32_t n = get_u32(r);
    if (r->bad || r->left < (size_t)n + 1 || r->p[n] != '\0') {
        r->bad = true;
        return NULL;
    }
    char *s = (char *)r->p;
    r->p += n + 1;
    r->left -= n + 1;
    return s;
}

/* A list into spec->strs, NULL-terminated; extra reserves room for entries added later. */
static char **get_strv(struct reader *r, struct ct_spec *spec, size_t *used, size_t extra)
{
    uint32_t n = get_u32(r);
    if (r->bad || n > CT_MAX_STRS || *used + n + 1 + extra > CT_MAX_STRS) {
        r->bad = true;
        return NULL;
    }
    char **v = &spec->strs[*used];
    for (uint32_t i = 0; i < n; i++)
        v[i] = get_str(r);
    v[n] = NULL;
    *used += n + 1 + extra;
    return r->bad ? NULL : v;
}

int ct_image_decode(const char *img, size_t len, const char *call_id, struct ct_spec *spec)
{
    struct reader r = {img, len, false};
    size_t used = 0;
    if (get_u32(&r) != IMAGE_MAGIC) return -1;
    spec->nbinds = get_u32(&r);
    if (spec->nbinds > CT_MAX_BINDS) return -1;
    for (size_t i = 0; i < spec->nbinds; i++) {
        spec->bind_src[i] = get_str(&r);
        spec->bind_dst[i] = get_str(&r);
    }
    spec->dirs = get_strv(&r, spec, &used, 0);
    spec->files = get_strv(&r, spec, &used, 0);
    spec->links = get_strv(&r, spec, &used, 0);
    spec->argv = get_strv(&r, spec, &used, 0);
    spec->env = get_strv(&r, spec, &used, 1);
    spec->passwd = get_str(&r);
    spec->group = get_str(&r);
    spec->tmp_opts = get_str(&r);
    spec->ws_opts = get_str(&r);
    spec->cwd = get_str(&r);
    spec->scratch_flags = get_u64(&r);
    spec->workspace = get_u64(&r) != 0;
    spec->cpu_time_s = get_u64(&r);
    spec->file_size_bytes = get_u64(&r);
    spec->primable = get_u64(&r) != 0;
    uint64_t net = get_u64(&r);
    spec->host_net = (net & 1) != 0;
    spec->dns = (net & 2) != 0;
    spec->resolv = get_str(&r);
    uint32_t ninsn = get_u32(&r);
    size_t off = (size_t)(r.p - img);
    size_t pad = (8 - off % 8) % 8;
    if (r.bad || !spec->resolv || !spec->argv || !spec->argv[0] || !spec->env || ninsn == 0 ||
        ninsn > 4096 || r.left < pad + (size_t)ninsn * sizeof(struct sock_filter))
        return -1;
    spec->seccomp.len = (unsigned short)ninsn;
    spec->seccomp.filter = (struct sock_filter *)(uintptr_t)(r.p + pad);
    /* The call's own variable goes into the slot get_strv reserved after the list. */
    size_t n = 0;
    while (spec->env[n])
        n++;
    size_t id_len = strlen(call_id);
    if (id_len > sizeof(spec->call_env) - 20) return -1;
    memcpy(spec->call_env, "GATEHOUSE_CALL_ID=", 18);
    memcpy(spec->call_env + 18, call_id, id_len + 1);
    spec->env[n] = spec->call_env;
    spec->env[n + 1] = NULL;
    return 0;
}

unsigned long ct_ns_flags(const struct ct_spec *spec)
{
    unsigned long all =
        CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
    /* network.egress: the host's namespace, where the BPF programs on the sandbox's cgroup
     * decide every connect and datagram (a veth would need NAT, routes and its own cleanup,
     * and be filtered by the same programs anyway). */
    return spec->host_net ? all & ~(unsigned long)CLONE_NEWNET : all;
}
