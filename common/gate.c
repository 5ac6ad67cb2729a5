/* gate.c: the error table, cleanup helpers and small utilities of gate.h. */
#include "gate.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const struct {
    const char *code;
    int status;
    const char *msg;
} error_table[] = {
#define GATE_X_ROW(name, code, status, msg) {code, status, msg},
    GATE_ERROR_MAP(GATE_X_ROW)
#undef GATE_X_ROW
};

const char *gate_code_str(enum gate_code code)
{
    return (unsigned)code < GATE_E__COUNT ? error_table[code].code : "internal_error";
}

int gate_code_http(enum gate_code code)
{
    return (unsigned)code < GATE_E__COUNT ? error_table[code].status : 500;
}

const char *gate_code_message(enum gate_code code)
{
    return (unsigned)code < GATE_E__COUNT ? error_table[code].msg : "internal error";
}

static int verr(struct gate_error *err, enum gate_code code, int errnum, const char *fmt,
                va_list ap)
{
    if (!err) return -1;
    err->code = code;
    err->errnum = errnum;
    int n = fmt ? vsnprintf(err->msg, sizeof(err->msg), fmt, ap)
                : snprintf(err->msg, sizeof(err->msg), "%s", gate_code_message(code));
    if (errnum && n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(errnum));
    return -1;
}

int gate_err(struct gate_error *err, enum gate_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(err, code, 0, fmt, ap);
    va_end(ap);
    return -1;
}

int gate_err_errno(struct gate_error *err, enum gate_code code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(err, code, errnum, fmt, ap);
    va_end(ap);
    return -1;
}

int gate_err_wrap(struct gate_error *err, const char *fmt, ...)
{
    if (!err) return -1;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    char old[sizeof(err->msg)];
    memcpy(old, err->msg, sizeof(old));
    old[sizeof(old) - 1] = '\0';
    /* Assemble by hand: the message may be cut at the buffer's end, by design. */
    size_t np = strlen(prefix), no = strlen(old), cap = sizeof(err->msg) - 1, at = 0;
    memcpy(err->msg, prefix, np < cap ? np : cap);
    at = np < cap ? np : cap;
    for (const char *sep = ": "; *sep && at < cap; sep++)
        err->msg[at++] = *sep;
    size_t take = no < cap - at ? no : cap - at;
    memcpy(err->msg + at, old, take);
    err->msg[at + take] = '\0';
    return -1;
}

void gate_freep(void *p)
{
    free(*(void **)p);
}

void gate_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

void gate_fclosep(FILE **f)
{
    if (*f) fclose(*f);
}

void gate_killpidp(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

int gate_buf_append(struct gate_buf *b, const void *data, size_t len)
{
    if (len > SIZE_MAX / 2 - b->len - 1) return -1;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p;
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int gate_buf_printf(struct gate_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof(small)) return gate_buf_append(b, small, (size_t)n);
    autofree char *big = malloc((size_t)n + 1);
    if (!big) return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return gate_buf_append(b, big, (size_t)n);
}

void gate_buf_free(struct gate_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int gate_base64(const void *data, size_t len, struct gate_buf *out)
{
    if (len > SIZE_MAX / 2) return -1;
    size_t n = (len + 2) / 3 * 4;
    size_t at = out->len;
    /* Reserve the room (gate_buf_append keeps the terminating NUL), then encode in place. */
    if (gate_buf_append(out, "", 0) < 0) return -1;
    while (out->cap < at + n + 1) {
        size_t cap = out->cap * 2;
        char *grown = realloc(out->data, cap);
        if (!grown) return -1;
        out->data = grown;
        out->cap = cap;
    }
    /* EVP_EncodeBlock takes an int length: encode in 3 MiB pieces (a multiple of 3). */
    const unsigned char *p = data;
    for (size_t off = 0; off < len;) {
        size_t piece = len - off < (3u << 20) ? len - off : (3u << 20);
        at += (size_t)EVP_EncodeBlock((unsigned char *)out->data + at, p + off, (int)piece);
        off += piece;
    }
    out->len = at;
    out->data[at] = '\0';
    return 0;
}

void gate_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

int gate_parse_duration_ms(const char *s, uint64_t *ms)
{
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    if (*s < '0' || *s > '9') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    uint64_t mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return -1;
    if (v > UINT64_MAX / mult) return -1;
    *ms = v * mult;
    return 0;
}

uint64_t gate_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t gate_realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void gate_rfc3339(uint64_t realtime_ms, char buf[32])
{
    time_t secs = (time_t)(realtime_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(realtime_ms % 1000));
}

int gate_random_hex(char *out, size_t nbytes_random)
{
    unsigned char raw[64];
    if (nbytes_random > sizeof(raw)) return -1;
    size_t got = 0;
    while (got < nbytes_random) {
        ssize_t r = getrandom(raw + got, nbytes_random - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)r;
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes_random; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * nbytes_random] = '\0';
    return 0;
}

void gate_new_call_id(char out[40])
{
    out[0] = 'c';
    out[1] = '_';
    if (gate_random_hex(out + 2, 16) < 0) {
        /* getrandom cannot fail after boot on Linux >= 3.17 with a blocking pool;
         * fall back to time so an id is still unique within this process. */
        snprintf(out + 2, 38, "%032llx", (unsigned long long)gate_monotonic_ns());
    }
}

int gate_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int gate_read_file(const char *path, size_t max, char **out, size_t *len, struct gate_error *err)
{
    autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) return gate_err_errno(err, GATE_E_IO, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode)) return gate_err(err, GATE_E_IO, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > max)
        return gate_err(err, GATE_E_IO, "%s: larger than %zu bytes", path, max);
    struct gate_buf b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0) {
            if (errno == EINTR) continue;
            gate_buf_free(&b);
            return gate_err_errno(err, GATE_E_IO, errno, "read %s", path);
        }
        if (r == 0) break;
        if (b.len + (size_t)r > max) {
            gate_buf_free(&b);
            return gate_err(err, GATE_E_IO, "%s: larger than %zu bytes", path, max);
        }
        if (gate_buf_append(&b, chunk, (size_t)r) < 0) {
            gate_buf_free(&b);
            return gate_err(err, GATE_E_NOMEM, "read %s: out of memory", path);
        }
    }
    if (!b.data && gate_buf_append(&b, "", 0) < 0)
        return gate_err(err, GATE_E_NOMEM, "read %s: out of memory", path);
    *out = b.data;
    if (len) *len = b.len;
    return 0;
}

bool gate_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Compare digests, so that neither the contents nor the length of a secret leaks through
     * timing: both sides always cost one SHA-256 and a 32-byte comparison. */
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    SHA256(a, alen, da);
    SHA256(b, blen, db);
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

static void json_escape(struct gate_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            gate_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            gate_buf_printf(b, "\\u%04x", c);
        else
            gate_buf_append(b, s, 1);
    }
}

void gate_log(const char *level, const char *event, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char ts[32];
    gate_rfc3339(gate_realtime_ms(), ts);
    struct gate_buf b = {0};
    gate_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"", ts, level);
    json_escape(&b, event);
    gate_buf_append(&b, "\",\"msg\":\"", 9);
    json_escape(&b, msg);
    gate_buf_append(&b, "\"}\n", 3);
    if (b.data) gate_write_all(STDERR_FILENO, b.data, b.len);
    gate_buf_free(&b);
}
