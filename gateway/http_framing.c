/* http_framing.c: strict HTTP/1.1 request framing, checked before libmicrohttpd sees a byte.
 *
 * A request whose framing two parsers could read differently is how requests are smuggled
 * past a proxy: two Content-Length headers, Content-Length with Transfer-Encoding, obsolete
 * line folding, bare CR or LF, NUL in a value. libmicrohttpd 0.9.75 accepts several of those
 * and answers the rest with its own HTML pages. So the front door's guard (http_guard.c) runs
 * every request head and chunked body through these checks and refuses anything ambiguous
 * itself, with a JSON error from the one error table; what it forwards, libmicrohttpd reads
 * exactly as we did. The rules follow RFC 9110/9112, without their tolerances.
 */
#include <string.h>
#include <strings.h>

#include "gateway.h"

static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value byte: visible ASCII, SP, HTAB or obs-text; never NUL, CR, LF or another CTL. */
static bool value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool hexdigit(unsigned char c, unsigned *v)
{
    if (c >= '0' && c <= '9')
        *v = c - '0';
    else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10;
    else
        return false;
    return true;
}

/* what NULL: the table's default message for code. */
static int refuse(struct gate_error *err, enum gate_code code, const char *what)
{
    return what ? gate_err(err, code, "%s", what) : gate_err(err, code, NULL);
}

/* The request line: METHOD SP target SP HTTP/1.x. */
static int request_line(const char *s, size_t len, struct http_head_info *info,
                        struct gate_error *err)
{
    size_t i = 0;
    while (i < len && tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= len || s[i] != ' ' || i > 16)
        return refuse(err, GATE_E_BAD_FRAMING, "malformed request line");
    size_t t0 = ++i;
    while (i < len && s[i] != ' ') {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return refuse(err, GATE_E_BAD_FRAMING, "malformed request line");
        i++;
    }
    if (i - t0 > HTTP_MAX_TARGET) return refuse(err, GATE_E_URI_TOO_LONG, NULL);
    if (i == t0 || i >= len) /* HTTP/0.9 "GET /path" has no version */
        return refuse(err, GATE_E_BAD_FRAMING, "malformed request line (HTTP/0.9 is not served)");
    const char *v = s + i + 1;
    size_t vlen = len - i - 1;
    if (vlen == 8 && memcmp(v, "HTTP/1.", 7) == 0 && (v[7] == '1' || v[7] == '0')) {
        info->http10 = v[7] == '0';
        return 0;
    }
    if (vlen == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
        v[7] >= '0' && v[7] <= '9')
        return refuse(err, GATE_E_HTTP_VERSION, NULL);
    return refuse(err, GATE_E_BAD_FRAMING, "malformed request line");
}

static int content_length(const char *v, size_t n, uint64_t *out, struct gate_error *err)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return refuse(err, n ? GATE_E_BODY_TOO_LARGE : GATE_E_BAD_FRAMING,
                      n ? NULL : "empty Content-Length");
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return refuse(err, GATE_E_BAD_FRAMING, "Content-Length must be one decimal number");
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

struct head_fields {
    int n_length, n_encoding, n_host;
};

/* One header line "name: value" (no CRLF). */
static int field(const char *s, size_t len, struct head_fields *f, struct http_head_info *info,
                 struct gate_error *err)
{
    if (len && (s[0] == ' ' || s[0] == '\t'))
        return refuse(err, GATE_E_BAD_FRAMING, "obsolete line folding is not accepted");
    size_t i = 0;
    while (i < len && tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= len || s[i] != ':')
        return refuse(err, GATE_E_BAD_FRAMING, "malformed header field name");
    size_t name_len = i++;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    for (size_t k = i; k < len; k++)
        if (!value_char((unsigned char)s[k]))
            return refuse(err, GATE_E_BAD_FRAMING,
                          "a header value holds a control character (NUL, CR, ...)");
    const char *v = s + i;
    size_t vlen = end - i;
    if (name_len == 14 && strncasecmp(s, "Content-Length", 14) == 0) {
        if (++f->n_length > 1)
            return refuse(err, GATE_E_BAD_FRAMING, "more than one Content-Length header");
        if (content_length(v, vlen, &info->content_length, err) < 0) return -1;
    } else if (name_len == 17 && strncasecmp(s, "Transfer-Encoding", 17) == 0) {
        if (++f->n_encoding > 1)
            return refuse(err, GATE_E_BAD_FRAMING, "more than one Transfer-Encoding header");
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
            return refuse(err, GATE_E_BAD_FRAMING, "only Transfer-Encoding: chunked is accepted");
    } else if (name_len == 4 && strncasecmp(s, "Host", 4) == 0) {
        f->n_host++;
    }
    return 0;
}

int http_head_check(const char *buf, size_t len, struct http_head_info *info,
                    struct gate_error *err)
{
    memset(info, 0, sizeof(*info));
    size_t limit = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;
    struct head_fields f = {0};
    size_t line = 0, nlines = 0;
    for (size_t i = 0; i < limit; i++) {
        if (buf[i] == '\r') {
            if (i + 1 >= len) return 0; /* the LF is not here yet */
            if (buf[i + 1] != '\n') return refuse(err, GATE_E_BAD_FRAMING, "bare CR in the head");
        } else if (buf[i] != '\n') {
            continue;
        }
        if (buf[i] == '\n') return refuse(err, GATE_E_BAD_FRAMING, "bare LF in the head");
        size_t n = i - line; /* the line without CRLF */
        if (nlines == 0) {
            if (request_line(buf, n, info, err) < 0) return -1;
        } else if (n == 0) { /* the empty line ends the head */
            if (f.n_length && f.n_encoding)
                return refuse(err, GATE_E_BAD_FRAMING,
                              "Content-Length together with Transfer-Encoding");
            if (f.n_encoding && info->http10)
                return refuse(err, GATE_E_BAD_FRAMING, "Transfer-Encoding in HTTP/1.0");
            if (!info->http10 && f.n_host != 1)
                return refuse(err, GATE_E_BAD_FRAMING, "HTTP/1.1 needs exactly one Host header");
            if (f.n_length && info->content_length > HTTP_MAX_BODY)
                return refuse(err, GATE_E_BODY_TOO_LARGE, NULL);
            info->body = f.n_encoding ? HTTP_BODY_CHUNKED
                                      : (f.n_length && info->content_length ? HTTP_BODY_LENGTH
                                                                            : HTTP_BODY_NONE);
            info->head_len = i + 2;
            return 1;
        } else if (nlines > HTTP_MAX_FIELDS) {
            return refuse(err, GATE_E_HEADERS_TOO_LARGE, NULL);
        } else if (field(buf + line, n, &f, info, err) < 0) {
            return -1;
        }
        nlines++;
        line = i + 2;
        i++;
    }
    if (len >= HTTP_MAX_HEAD) {
        /* A request line that never ends is a long target; anything else a large head. */
        return refuse(err, nlines == 0 ? GATE_E_URI_TOO_LONG : GATE_E_HEADERS_TOO_LARGE, NULL);
    }
    return 0;
}

/* ---- chunked bodies ------------------------------------------------------------------ */
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_DONE };

#define CHUNK_LINE_MAX 256 /* size digits plus extensions */
#define TRAILER_MAX 4096

int http_chunks_feed(struct http_chunks *c, const char *buf, size_t len, size_t *used,
                     struct gate_error *err)
{
    size_t i = 0;
    while (i < len && c->state != CH_DONE) {
        unsigned char ch = (unsigned char)buf[i];
        unsigned v;
        switch (c->state) {
        case CH_SIZE:
            if (hexdigit(ch, &v)) {
                if (++c->digits > 8) return refuse(err, GATE_E_BODY_TOO_LARGE, NULL);
                c->remaining = c->remaining * 16 + v;
            } else if (c->digits && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->state = CH_EXT;
            } else if (c->digits && ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                return refuse(err, GATE_E_BAD_FRAMING, "malformed chunk size");
            }
            break;
        case CH_EXT: /* chunk extensions are ignored, but must be plain text */
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!value_char(ch) || ++c->line > CHUNK_LINE_MAX)
                return refuse(err, GATE_E_BAD_FRAMING, "malformed chunk extension");
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return refuse(err, GATE_E_BAD_FRAMING, "bare CR after a chunk size");
            c->total += c->remaining;
            if (c->total > HTTP_MAX_BODY) return refuse(err, GATE_E_BODY_TOO_LARGE, NULL);
            c->state = c->remaining ? CH_DATA : CH_TRAILER;
            c->line = 0;
            break;
        case CH_DATA: {
            size_t take = len - i < c->remaining ? len - i : (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) c->state = CH_DATA_CR;
            continue;
        }
        case CH_DATA_CR:
            if (ch != '\r')
                return refuse(err, GATE_E_BAD_FRAMING, "chunk data longer than its size");
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return refuse(err, GATE_E_BAD_FRAMING, "bare CR after chunk data");
            c->state = CH_SIZE;
            c->digits = 0;
            break;
        case CH_TRAILER:
            /* Trailer fields end with an empty line; they are passed on, and must be as plain
             * as header fields: no bare CR or LF, no control characters. */
            if (++c->trailer > TRAILER_MAX) return refuse(err, GATE_E_HEADERS_TOO_LARGE, NULL);
            if (ch == '\n') {
                if (!c->cr) return refuse(err, GATE_E_BAD_FRAMING, "bare LF in the trailer");
                if (c->line == 0) c->state = CH_DONE;
                c->line = 0;
                c->cr = false;
            } else if (c->cr) {
                return refuse(err, GATE_E_BAD_FRAMING, "bare CR in the trailer");
            } else if (ch == '\r') {
                c->cr = true;
            } else if (!value_char(ch)) {
                return refuse(err, GATE_E_BAD_FRAMING, "a control character in the trailer");
            } else {
                c->line++;
            }
            break;
        }
        i++;
    }
    *used = i;
    return c->state == CH_DONE ? 1 : 0;
}
