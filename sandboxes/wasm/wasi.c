/* wasi.c: the WASI function table (preview 1 and wasi_unstable), the context, and the
 * functions that touch no files: arguments, environment, clocks, random bytes, poll_oneoff,
 * process control and the refused sockets. Descriptors are in wasi_fd.c, paths in wasi_path.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "wasi_internal.h"

uint32_t wasi_errno(int e)
{
    static const struct {
        int host;
        uint16_t wasi;
    } map[] = {
        {E2BIG, WE_2BIG},
        {EACCES, WE_ACCES},
        {EAGAIN, WE_AGAIN},
        {EBADF, WE_BADF},
        {EBUSY, WE_BUSY},
        {EEXIST, WE_EXIST},
        {EFBIG, WE_FBIG},
        {EINVAL, WE_INVAL},
        {EISDIR, WE_ISDIR},
        {ELOOP, WE_LOOP},
        {EMFILE, WE_MFILE},
        {EMLINK, WE_MLINK},
        {ENOENT, WE_NOENT},
        {ENAMETOOLONG, WE_NAMETOOLONG},
        {ENOMEM, WE_NOMEM},
        {ENOSPC, WE_NOSPC},
        {ENOSYS, WE_NOSYS},
        {ENOTDIR, WE_NOTDIR},
        {ENOTEMPTY, WE_NOTEMPTY},
        {EOPNOTSUPP, WE_NOTSUP},
        {ENXIO, WE_NXIO},
        {EPERM, WE_PERM},
        {EROFS, WE_ROFS},
        {ESPIPE, WE_SPIPE},
        {EDQUOT, WE_NOSPC},
        /* RESOLVE_BENEATH refused a path that leaves the preopen. */
        {EXDEV, WE_NOTCAPABLE},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].host == e) return map[i].wasi;
    return WE_IO;
}

struct wasi_fd *wasi_fd_get(struct wasi_ctx *w, uint32_t fd)
{
    return fd < WASI_MAX_FDS && w->fds[fd].kind != WASI_FD_FREE ? &w->fds[fd] : NULL;
}

int wasi_fd_alloc(struct wasi_ctx *w)
{
    for (int i = 3; i < WASI_MAX_FDS; i++)
        if (w->fds[i].kind == WASI_FD_FREE) return i;
    return -1;
}

uint8_t wasi_filetype(mode_t mode)
{
    return S_ISDIR(mode)   ? WFT_DIRECTORY
           : S_ISREG(mode) ? WFT_REGULAR_FILE
           : S_ISLNK(mode) ? WFT_SYMBOLIC_LINK
           : S_ISCHR(mode) ? WFT_CHARACTER_DEVICE
                           : WFT_UNKNOWN;
}

static uint64_t ns_of(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

size_t wasi_filestat_size(enum wasi_flavour fl)
{
    return fl == WASI_UNSTABLE ? 56 : 64;
}

void wasi_put_filestat(uint8_t *p, const struct stat *st, enum wasi_flavour fl)
{
    memset(p, 0, wasi_filestat_size(fl));
    put64(p, st->st_dev);
    put64(p + 8, st->st_ino);
    p[16] = wasi_filetype(st->st_mode);
    /* wasi_unstable's link count is 32 bits, so everything after it sits 8 bytes earlier. */
    size_t o = fl == WASI_UNSTABLE ? 24 : 32;
    if (fl == WASI_UNSTABLE)
        put32(p + 20, (uint32_t)st->st_nlink);
    else
        put64(p + 24, st->st_nlink);
    put64(p + o, (uint64_t)st->st_size);
    put64(p + o + 8, ns_of(&st->st_atim));
    put64(p + o + 16, ns_of(&st->st_mtim));
    put64(p + o + 24, ns_of(&st->st_ctim));
}

uint32_t wasi_times(uint64_t atim, uint64_t mtim, uint32_t fst, struct timespec ts[2])
{
    if ((fst & WFST_ATIM && fst & WFST_ATIM_NOW) || (fst & WFST_MTIM && fst & WFST_MTIM_NOW) ||
        fst > 15)
        return WE_INVAL;
    const uint64_t t[2] = {atim, mtim};
    for (int i = 0; i < 2; i++) {
        uint32_t set = i ? WFST_MTIM : WFST_ATIM, now = i ? WFST_MTIM_NOW : WFST_ATIM_NOW;
        ts[i].tv_sec = (time_t)(t[i] / 1000000000ull);
        ts[i].tv_nsec = fst & set   ? (long)(t[i] % 1000000000ull)
                        : fst & now ? UTIME_NOW
                                    : UTIME_OMIT;
    }
    return WE_SUCCESS;
}

/* ---- args and environment ------------------------------------------------------------- */
static enum wasm_trap strings_sizes(char *const *v, struct wasm_memory *m, uint64_t *a)
{
    uint32_t n = 0, bytes = 0;
    for (; v && v[n]; n++)
        bytes += (uint32_t)strlen(v[n]) + 1;
    uint8_t *pn = wasi_at(m, A32(0), 4), *pb = wasi_at(m, A32(1), 4);
    if (!pn || !pb) RET(WE_FAULT);
    put32(pn, n);
    put32(pb, bytes);
    RET(WE_SUCCESS);
}

static enum wasm_trap strings_get(char *const *v, struct wasm_memory *m, uint64_t *a)
{
    uint32_t ptrs = A32(0), buf = A32(1);
    for (uint32_t i = 0; v && v[i]; i++) {
        size_t len = strlen(v[i]) + 1;
        uint8_t *pp = wasi_at(m, ptrs + 4ull * i, 4), *pb = wasi_at(m, buf, len);
        if (!pp || !pb) RET(WE_FAULT);
        put32(pp, buf);
        memcpy(pb, v[i], len);
        buf += (uint32_t)len;
    }
    RET(WE_SUCCESS);
}

static WASI_HOST(args_sizes_get)
{
    (void)s;
    return strings_sizes(CTX(c)->argv, m, a);
}
static WASI_HOST(args_get)
{
    (void)s;
    return strings_get(CTX(c)->argv, m, a);
}
static WASI_HOST(environ_sizes_get)
{
    (void)s;
    return strings_sizes(CTX(c)->env, m, a);
}
static WASI_HOST(environ_get)
{
    (void)s;
    return strings_get(CTX(c)->env, m, a);
}

/* ---- clocks and random bytes ---------------------------------------------------------- */
static bool host_clock(uint32_t id, clockid_t *out)
{
    static const clockid_t ids[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID,
                                    CLOCK_THREAD_CPUTIME_ID};
    if (id >= 4) return false;
    *out = ids[id];
    return true;
}

static WASI_HOST(clock_time_get)
{
    (void)s, (void)c;
    uint8_t *p = wasi_at(m, A32(2), 8);
    struct timespec ts;
    clockid_t id;
    if (!p) RET(WE_FAULT);
    if (!host_clock(A32(0), &id)) RET(WE_INVAL);
    if (clock_gettime(id, &ts) < 0) RET(wasi_errno(errno));
    put64(p, ns_of(&ts));
    RET(WE_SUCCESS);
}

static WASI_HOST(clock_res_get)
{
    (void)s, (void)c;
    uint8_t *p = wasi_at(m, A32(1), 8);
    struct timespec ts;
    clockid_t id;
    if (!p) RET(WE_FAULT);
    if (!host_clock(A32(0), &id)) RET(WE_INVAL);
    if (clock_getres(id, &ts) < 0) RET(wasi_errno(errno));
    put64(p, ns_of(&ts));
    RET(WE_SUCCESS);
}

static WASI_HOST(random_get)
{
    (void)s, (void)c;
    uint32_t len = A32(1);
    uint8_t *p = wasi_at(m, A32(0), len);
    if (!p) RET(WE_FAULT);
    for (uint32_t done = 0; done < len;) {
        ssize_t k = getrandom(p + done, len - done, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            RET(WE_IO);
        }
        done += (uint32_t)k;
    }
    RET(WE_SUCCESS);
}

/* ---- poll_oneoff ------------------------------------------------------------------------ */
/* Subscriptions are 48 bytes in preview 1 (userdata, tag, then the clock or fd record at 16);
 * wasi_unstable's clock record starts with an extra 8-byte identifier, making them 56. Events
 * are 32 bytes in both: userdata, errno (u16 at 8), type (u8 at 10), nbytes (u64 at 16), flags
 * (u16 at 24, 1 = hangup). Clock subscriptions sleep; stdin, stdout, stderr and files are
 * always ready (their data is in memory or on a local file system), so any fd subscription
 * answers at once. */
enum { EV_CLOCK = 0, EV_FD_READ = 1, EV_FD_WRITE = 2 };

struct sub {
    uint64_t userdata;
    uint8_t tag;
    uint32_t clock_or_fd;
    uint64_t timeout;
    uint16_t flags;
};

static void read_sub(const uint8_t *p, enum wasi_flavour fl, struct sub *sb)
{
    sb->userdata = get64(p);
    sb->tag = p[8];
    const uint8_t *u = p + 16;
    if (sb->tag == EV_CLOCK && fl == WASI_UNSTABLE) u += 8; /* skip the identifier */
    sb->clock_or_fd = get32(u);
    sb->timeout = sb->tag == EV_CLOCK ? get64(u + 8) : 0;
    sb->flags = sb->tag == EV_CLOCK ? (uint16_t)(u[24] | u[25] << 8) : 0;
}

static void put_event(uint8_t *e, const struct sub *sb, uint32_t err, uint64_t nbytes, bool hup)
{
    memset(e, 0, 32);
    put64(e, sb->userdata);
    put16(e + 8, (uint16_t)err);
    e[10] = sb->tag;
    put64(e + 16, nbytes);
    put16(e + 24, hup ? 1 : 0);
}

/* What an fd subscription reports: errno, bytes available and hangup. */
static uint32_t fd_readiness(struct wasi_ctx *w, const struct sub *sb, uint64_t *nbytes, bool *hup)
{
    struct wasi_fd *f = wasi_fd_get(w, sb->clock_or_fd);
    *nbytes = 0, *hup = false;
    if (!f || f->kind == WASI_FD_DIR) return WE_BADF;
    bool reading = sb->tag == EV_FD_READ;
    if (f->kind == WASI_FD_STDIN) {
        if (!reading) return WE_BADF;
        *nbytes = w->stdin_len - w->stdin_pos;
        *hup = *nbytes == 0;
    } else if (f->kind == WASI_FD_STDOUT || f->kind == WASI_FD_STDERR) {
        if (reading) return WE_BADF;
        uint64_t used = w->out.len + w->err.len;
        *nbytes = used < w->output_cap ? w->output_cap - used : 0;
    } else if (reading) {
        struct stat st;
        off_t pos = lseek(f->host, 0, SEEK_CUR);
        if (fstat(f->host, &st) == 0 && pos >= 0 && st.st_size > pos)
            *nbytes = (uint64_t)(st.st_size - pos);
    }
    return WE_SUCCESS;
}

/* The absolute CLOCK_MONOTONIC time at which a clock subscription fires, from the clocks read
 * once when poll_oneoff started (now[0] monotonic, now[1] realtime), or a WE_* errno. */
static uint32_t clock_deadline(const struct sub *sb, const uint64_t now[2], uint64_t *at)
{
    uint64_t t = sb->timeout;
    if (sb->clock_or_fd > 1) return WE_INVAL; /* CPU-time clocks cannot be slept on */
    if (!(sb->flags & 1))                     /* relative */
        *at = now[0] + t < now[0] ? UINT64_MAX : now[0] + t;
    else if (sb->clock_or_fd == 1)
        *at = t;
    else
        *at = t <= now[1] ? now[0] : now[0] + (t - now[1]);
    return WE_SUCCESS;
}

static enum wasm_trap poll_oneoff_fl(struct wasm_memory *m, struct wasi_ctx *w, uint64_t *a,
                                     enum wasi_flavour fl)
{
    size_t sub_size = fl == WASI_UNSTABLE ? 56 : 48;
    uint32_t n = A32(2);
    uint8_t *in = wasi_at(m, A32(0), (uint64_t)n * sub_size);
    uint8_t *out = wasi_at(m, A32(1), (uint64_t)n * 32), *pn = wasi_at(m, A32(3), 4);
    if (!in || !out || !pn) RET(WE_FAULT);
    if (n == 0) RET(WE_INVAL);
    uint32_t nev = 0;
    uint64_t first = UINT64_MAX, now[2];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now[0] = ns_of(&ts);
    clock_gettime(CLOCK_REALTIME, &ts);
    now[1] = ns_of(&ts);
    for (uint32_t i = 0; i < n; i++) { /* fd events, and errors, are answered at once */
        struct sub sb;
        read_sub(in + (size_t)i * sub_size, fl, &sb);
        uint64_t nbytes = 0, at = 0;
        bool hup = false;
        uint32_t e;
        if (sb.tag == EV_CLOCK) {
            e = clock_deadline(&sb, now, &at);
            if (!e) {
                first = at < first ? at : first;
                continue;
            }
        } else if (sb.tag == EV_FD_READ || sb.tag == EV_FD_WRITE) {
            e = fd_readiness(w, &sb, &nbytes, &hup);
        } else {
            RET(WE_INVAL);
        }
        put_event(out + 32 * nev++, &sb, e, nbytes, hup);
    }
    if (nev == 0) {
        /* Only clocks: sleep until the first fires, but never past the call's deadline. */
        bool cut = w->deadline_ns && first > w->deadline_ns;
        uint64_t until = cut ? w->deadline_ns : first;
        ts = (struct timespec){(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if (cut) return WASM_TRAP_DEADLINE;
        for (uint32_t i = 0; i < n; i++) {
            struct sub sb;
            uint64_t at;
            read_sub(in + (size_t)i * sub_size, fl, &sb);
            if (clock_deadline(&sb, now, &at) == 0 && at <= until)
                put_event(out + 32 * nev++, &sb, WE_SUCCESS, 0, false);
        }
    }
    put32(pn, nev);
    RET(WE_SUCCESS);
}

static WASI_HOST(poll_oneoff)
{
    (void)s;
    return poll_oneoff_fl(m, CTX(c), a, WASI_PREVIEW1);
}
static WASI_HOST(poll_oneoff_unstable)
{
    (void)s;
    return poll_oneoff_fl(m, CTX(c), a, WASI_UNSTABLE);
}

/* ---- process ------------------------------------------------------------------------- */
static WASI_HOST(proc_exit)
{
    (void)m;
    CTX(c)->exit_code = (int)A32(0);
    wasm_store_set_exit(s, (int)A32(0));
    return WASM_TRAP_EXIT;
}

/* A tool that raises a signal stops, as a process would; the call reports it as a trap. */
static WASI_HOST(proc_raise)
{
    (void)s, (void)m;
    if (A32(0) == 0 || A32(0) > 30) RET(WE_INVAL);
    CTX(c)->raised = (int)A32(0);
    return WASM_TRAP_HOST;
}

static WASI_HOST(sched_yield)
{
    (void)s, (void)m, (void)c;
    RET(WE_SUCCESS);
}

/* ---- sockets: none exist, so each of these fails ---------------------------------------- */
static WASI_HOST(sock_refused)
{
    (void)s, (void)m;
    RET(wasi_fd_get(CTX(c), A32(0)) ? WE_NOTSOCK : WE_BADF);
}

/* ---- the table ------------------------------------------------------------------------ */
enum { IN_BOTH = 3, IN_PREVIEW1 = 1, IN_UNSTABLE = 2 };
struct wasi_fn {
    const char *name;
    const char *params; /* i = i32, I = i64 */
    bool result;        /* returns an errno (i32) */
    uint8_t in;         /* which of the two modules offers it */
    wasm_host_fn fn;
};

static const struct wasi_fn wasi_fns[] = {
    {"args_get", "ii", true, IN_BOTH, args_get},
    {"args_sizes_get", "ii", true, IN_BOTH, args_sizes_get},
    {"environ_get", "ii", true, IN_BOTH, environ_get},
    {"environ_sizes_get", "ii", true, IN_BOTH, environ_sizes_get},
    {"clock_res_get", "ii", true, IN_BOTH, clock_res_get},
    {"clock_time_get", "iIi", true, IN_BOTH, clock_time_get},
    {"fd_advise", "iIIi", true, IN_BOTH, wasi_fd_advise},
    {"fd_allocate", "iII", true, IN_BOTH, wasi_fd_allocate},
    {"fd_close", "i", true, IN_BOTH, wasi_fd_close},
    {"fd_datasync", "i", true, IN_BOTH, wasi_fd_datasync},
    {"fd_fdstat_get", "ii", true, IN_BOTH, wasi_fd_fdstat_get},
    {"fd_fdstat_set_flags", "ii", true, IN_BOTH, wasi_fd_fdstat_set_flags},
    {"fd_fdstat_set_rights", "iII", true, IN_BOTH, wasi_fd_fdstat_set_rights},
    {"fd_filestat_get", "ii", true, IN_PREVIEW1, wasi_fd_filestat_get},
    {"fd_filestat_get", "ii", true, IN_UNSTABLE, wasi_fd_filestat_get_unstable},
    {"fd_filestat_set_size", "iI", true, IN_BOTH, wasi_fd_filestat_set_size},
    {"fd_filestat_set_times", "iIIi", true, IN_BOTH, wasi_fd_filestat_set_times},
    {"fd_pread", "iiiIi", true, IN_BOTH, wasi_fd_pread},
    {"fd_prestat_get", "ii", true, IN_BOTH, wasi_fd_prestat_get},
    {"fd_prestat_dir_name", "iii", true, IN_BOTH, wasi_fd_prestat_dir_name},
    {"fd_pwrite", "iiiIi", true, IN_BOTH, wasi_fd_pwrite},
    {"fd_read", "iiii", true, IN_BOTH, wasi_fd_read},
    {"fd_readdir", "iiiIi", true, IN_BOTH, wasi_fd_readdir},
    {"fd_renumber", "ii", true, IN_BOTH, wasi_fd_renumber},
    {"fd_seek", "iIii", true, IN_PREVIEW1, wasi_fd_seek},
    {"fd_seek", "iIii", true, IN_UNSTABLE, wasi_fd_seek_unstable},
    {"fd_sync", "i", true, IN_BOTH, wasi_fd_sync},
    {"fd_tell", "ii", true, IN_BOTH, wasi_fd_tell},
    {"fd_write", "iiii", true, IN_BOTH, wasi_fd_write},
    {"path_create_directory", "iii", true, IN_BOTH, wasi_path_create_directory},
    {"path_filestat_get", "iiiii", true, IN_PREVIEW1, wasi_path_filestat_get},
    {"path_filestat_get", "iiiii", true, IN_UNSTABLE, wasi_path_filestat_get_unstable},
    {"path_filestat_set_times", "iiiiIIi", true, IN_BOTH, wasi_path_filestat_set_times},
    {"path_link", "iiiiiii", true, IN_BOTH, wasi_path_link},
    {"path_open", "iiiiiIIii", true, IN_BOTH, wasi_path_open},
    {"path_readlink", "iiiiii", true, IN_BOTH, wasi_path_readlink},
    {"path_remove_directory", "iii", true, IN_BOTH, wasi_path_remove_directory},
    {"path_rename", "iiiiii", true, IN_BOTH, wasi_path_rename},
    {"path_symlink", "iiiii", true, IN_BOTH, wasi_path_symlink},
    {"path_unlink_file", "iii", true, IN_BOTH, wasi_path_unlink_file},
    {"poll_oneoff", "iiii", true, IN_PREVIEW1, poll_oneoff},
    {"poll_oneoff", "iiii", true, IN_UNSTABLE, poll_oneoff_unstable},
    {"proc_exit", "i", false, IN_BOTH, proc_exit},
    {"proc_raise", "i", true, IN_BOTH, proc_raise},
    {"sched_yield", "", true, IN_BOTH, sched_yield},
    {"random_get", "ii", true, IN_BOTH, random_get},
    {"sock_accept", "iii", true, IN_PREVIEW1, sock_refused},
    {"sock_recv", "iiiiii", true, IN_BOTH, sock_refused},
    {"sock_send", "iiiii", true, IN_BOTH, sock_refused},
    {"sock_shutdown", "ii", true, IN_BOTH, sock_refused},
};

static void sig_of(const struct wasi_fn *f, uint8_t *params, uint32_t *np)
{
    *np = (uint32_t)strlen(f->params);
    for (uint32_t i = 0; i < *np; i++)
        params[i] = f->params[i] == 'I' ? WASM_I64 : WASM_I32;
}

static const struct wasi_fn *lookup(const struct wasm_import_desc *d)
{
    uint8_t in = strcmp(d->module, "wasi_snapshot_preview1") == 0 ? IN_PREVIEW1
                 : strcmp(d->module, "wasi_unstable") == 0        ? IN_UNSTABLE
                                                                  : 0;
    if (!in || d->kind != WASM_EXT_FUNC) return NULL;
    for (size_t i = 0; i < sizeof(wasi_fns) / sizeof(wasi_fns[0]); i++) {
        if (!(wasi_fns[i].in & in) || strcmp(wasi_fns[i].name, d->name) != 0) continue;
        uint8_t params[16];
        uint32_t np;
        sig_of(&wasi_fns[i], params, &np);
        const struct wasm_functype *t = d->functype;
        bool ok = t->nparams == np && !memcmp(t->types, params, np) &&
                  t->nresults == (wasi_fns[i].result ? 1u : 0u) &&
                  (!t->nresults || t->types[np] == WASM_I32);
        return ok ? &wasi_fns[i] : NULL;
    }
    return NULL;
}

int wasi_check_imports(const struct wasm_module *m, struct gate_error *err)
{
    for (uint32_t i = 0; i < wasm_module_nimports(m); i++) {
        struct wasm_import_desc d;
        wasm_module_import(m, i, &d);
        if (!lookup(&d))
            return gate_err(err, GATE_E_WASM_LINK,
                            "import %s.%s is not provided (only WASI functions, from "
                            "wasi_snapshot_preview1 or wasi_unstable, with their own types)",
                            d.module, d.name);
    }
    return 0;
}

int wasi_link(struct wasm_store *s, const struct wasm_module *m, struct wasi_ctx *w,
              struct wasm_extern *imports, struct gate_error *err)
{
    static const uint8_t i32[] = {WASM_I32};
    for (uint32_t i = 0; i < wasm_module_nimports(m); i++) {
        struct wasm_import_desc d;
        wasm_module_import(m, i, &d);
        const struct wasi_fn *f = lookup(&d);
        if (!f) return wasi_check_imports(m, err);
        uint8_t params[16];
        uint32_t np;
        sig_of(f, params, &np);
        imports[i].kind = WASM_EXT_FUNC;
        imports[i].u.func = wasm_host_func_new(s, params, np, i32, f->result ? 1 : 0, f->fn, w);
        if (!imports[i].u.func) return gate_err(err, GATE_E_NOMEM, "wasi: out of memory");
    }
    return 0;
}

/* ---- the context ------------------------------------------------------------------------ */
static void set_fd(struct wasi_fd *f, uint8_t kind, int host, uint64_t rights)
{
    *f = (struct wasi_fd){.kind = kind, .host = host, .rights = rights, .rights_inh = 0};
}

void wasi_ctx_init(struct wasi_ctx *w, char *const *argv, char *const *env, const void *in,
                   size_t in_len, uint64_t output_cap, int dirfd)
{
    memset(w, 0, sizeof(*w));
    w->argv = argv;
    w->env = env;
    w->stdin_data = in;
    w->stdin_len = in_len;
    w->output_cap = output_cap;
    for (int i = 0; i < WASI_MAX_FDS; i++)
        w->fds[i].host = -1;
    /* stdio never touches the worker's own descriptors 0-2: they are buffers. */
    set_fd(&w->fds[0], WASI_FD_STDIN, -1, WR_ALL & ~WR_MUTATE);
    set_fd(&w->fds[1], WASI_FD_STDOUT, -1, WR_ALL);
    set_fd(&w->fds[2], WASI_FD_STDERR, -1, WR_ALL);
    if (dirfd >= 0) wasi_ctx_add_preopen(w, dirfd, "/workspace", false);
}

int wasi_ctx_add_preopen(struct wasi_ctx *w, int dirfd, const char *name, bool readonly)
{
    int fd = wasi_fd_alloc(w);
    if (fd < 0) return -1;
    uint64_t rights = readonly ? WR_ALL & ~WR_MUTATE : WR_ALL;
    set_fd(&w->fds[fd], WASI_FD_DIR, dirfd, rights);
    w->fds[fd].rights_inh = rights;
    w->fds[fd].readonly = readonly;
    w->fds[fd].preopen = name;
    return 0;
}

void wasi_ctx_free(struct wasi_ctx *w)
{
    for (int i = 0; i < WASI_MAX_FDS; i++) {
        if (w->fds[i].owned && w->fds[i].host >= 0) close(w->fds[i].host);
        w->fds[i].kind = WASI_FD_FREE;
        w->fds[i].host = -1;
    }
    gate_buf_free(&w->out);
    gate_buf_free(&w->err);
}
