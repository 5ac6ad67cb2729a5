/* webhook.c: Standard Webhooks signatures and a minimal HTTP/1.1 POST client, over TLS for
 * https:// URLs.
 *
 * Signature (https://www.standardwebhooks.com): the secret is "whsec_" + base64 of the key
 * bytes; the signed content is "<webhook-id>.<webhook-timestamp>.<body>"; the header value
 * is "v1,<base64(HMAC-SHA256(key, content))>". The client has a connect timeout and one
 * deadline for the whole exchange after it (TLS handshake, request, status line), so an
 * unreachable, stalled or dripping endpoint costs a delivery thread a bounded time and never
 * a caller. TLS is OpenSSL's: TLS 1.2 or newer, the peer's chain verified against the system
 * store (OpenSSL's default paths) plus an optional CA file, the URL's host checked against the
 * certificate (a DNS name, or an IPv4 address against its IP SANs) and sent as SNI.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "approval_internal.h"

int approval_url_parse(const char *url, struct approval_url *u)
{
    memset(u, 0, sizeof(*u));
    if (strncmp(url, "https://", 8) == 0)
        u->tls = true;
    else if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *hp = url + (u->tls ? 8 : 7);
    size_t n = strcspn(hp, ":/?#");
    if (n == 0 || n >= sizeof(u->host)) return -1;
    /* A host name or IPv4 address: nothing that could end the Host header line. */
    static const char host_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789.-_";
    if (strspn(hp, host_chars) < n) return -1;
    memcpy(u->host, hp, n);
    u->host[n] = '\0';
    hp += n;
    snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
    if (*hp == ':') {
        size_t m = strcspn(hp + 1, "/?#");
        if (m == 0 || m >= sizeof(u->port) || strspn(hp + 1, "0123456789") != m) return -1;
        memcpy(u->port, hp + 1, m);
        u->port[m] = '\0';
        long port = strtol(u->port, NULL, 10);
        if (port < 1 || port > 65535) return -1;
        hp += 1 + m;
    }
    if (*hp == '#') return -1;
    const char *path = *hp ? hp : "/";
    if (*path == '?' && snprintf(u->path, sizeof(u->path), "/%s", path) >= (int)sizeof(u->path))
        return -1;
    if (*path != '?' && snprintf(u->path, sizeof(u->path), "%s", path) >= (int)sizeof(u->path))
        return -1;
    /* Refuse bytes that could split the request line or inject a header, and fragments
     * (never sent over the wire, so a URL with one does not say what it seems to). */
    for (const char *c = u->path; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#') return -1;
    return 0;
}

int approval_secret_decode(const char *whsec, unsigned char *key, size_t cap)
{
    if (!whsec || strncmp(whsec, "whsec_", 6) != 0) return -1;
    const char *b64 = whsec + 6;
    size_t len = strlen(b64);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap) return -1;
    if (strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != len)
        return -1;
    int n = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)len);
    if (n < 0) return -1;
    /* EVP_DecodeBlock counts padding as zero bytes; take them off again. */
    if (b64[len - 1] == '=') n--;
    if (len >= 2 && b64[len - 2] == '=') n--;
    return n > 0 ? n : -1;
}

int approval_sign_raw(const unsigned char *key, int key_len, const char *msg_id,
                      const char *timestamp, const char *body, size_t body_len, char *out,
                      size_t out_len)
{
    if (out_len < 64 || key_len <= 0) return -1;
    size_t id_len = strlen(msg_id), ts_len = strlen(timestamp);
    size_t total = id_len + 1 + ts_len + 1 + body_len;
    char *content = malloc(total ? total : 1);
    if (!content) return -1;
    memcpy(content, msg_id, id_len);
    content[id_len] = '.';
    memcpy(content + id_len + 1, timestamp, ts_len);
    content[id_len + 1 + ts_len] = '.';
    memcpy(content + id_len + ts_len + 2, body, body_len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    unsigned char *ok =
        HMAC(EVP_sha256(), key, key_len, (const unsigned char *)content, total, mac, &mac_len);
    free(content);
    if (!ok) return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len); /* 44 chars + NUL */
    return 0;
}

int approval_webhook_sign(const char *secret, const char *msg_id, const char *timestamp,
                          const char *body, size_t body_len, char *out, size_t out_len,
                          struct gate_error *err)
{
    unsigned char key[256];
    int key_len = approval_secret_decode(secret, key, sizeof(key));
    if (key_len < 0)
        return gate_err(err, GATE_E_CONFIG, "webhook secret must be \"whsec_\" + base64");
    int rc = approval_sign_raw(key, key_len, msg_id, timestamp, body, body_len, out, out_len);
    explicit_bzero(key, sizeof(key));
    return rc < 0 ? gate_err(err, GATE_E_INTERNAL, "HMAC-SHA256 failed") : 0;
}

/* ---- TLS client context ------------------------------------------------------------------ */

int approval_tls_new(const char *ca_file, struct ssl_ctx_st **out, char *why, size_t why_len)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, why_len, "TLS: cannot make a client context");
        return -1;
    }
    /* Verify the peer; never fall back to an unauthenticated connection. The system store is
     * what OpenSSL's default paths name (Debian: /etc/ssl/certs, or $SSL_CERT_FILE /
     * $SSL_CERT_DIR); ca_file adds to it, e.g. an internal CA for the approvers' service. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(why, why_len, "TLS: cannot use the system's CA store");
        SSL_CTX_free(ctx);
        return -1;
    }
    if (ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        char e[160];
        ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
        snprintf(why, why_len, "TLS: cannot load CA file %s: %s", ca_file, e);
        SSL_CTX_free(ctx);
        return -1;
    }
    *out = ctx;
    return 0;
}

void approval_tls_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- one exchange ---------------------------------------------------------------------- */

struct conn {
    int fd;
    SSL *ssl;             /* NULL for http:// */
    uint64_t deadline_ns; /* for everything after the connect */
};

/* Connect with a timeout: non-blocking connect, then poll for writability. The socket stays
 * non-blocking: every later wait is a poll against the exchange's deadline. */
static int connect_timeout(const struct approval_url *u, char *why, size_t why_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &ai);
    if (rc != 0) {
        snprintf(why, why_len, "resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) continue;
        int c = connect(fd, p->ai_addr, p->ai_addrlen);
        if (c < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&pfd, 1, WEBHOOK_CONNECT_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                c = 0;
            else
                errno = soerr ? soerr : ETIMEDOUT;
        }
        if (c < 0) {
            snprintf(why, why_len, "connect %s:%s: %s", u->host, u->port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* Wait until the socket is ready for events; -1 with errno ETIMEDOUT at the deadline. */
static int wait_ready(const struct conn *c, short events)
{
    for (;;) {
        uint64_t now = gate_monotonic_ns();
        if (now >= c->deadline_ns) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int r = poll(&pfd, 1, (int)((c->deadline_ns - now + 999999) / 1000000));
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* After an SSL call returned rc <= 0: 1 to call it again once the socket is ready, or -1. */
static int tls_again(const struct conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return wait_ready(c, POLLIN) == 0 ? 1 : -1;
    if (e == SSL_ERROR_WANT_WRITE) return wait_ready(c, POLLOUT) == 0 ? 1 : -1;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) errno = ECONNRESET;
    if (e == SSL_ERROR_SSL) errno = EPROTO;
    return -1;
}

/* Why a TLS step failed: the verification result if the peer was not trusted, else
 * OpenSSL's error, else errno. */
static void tls_why(const struct conn *c, const char *step, char *why, size_t why_len)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    char detail[200];
    if (v != X509_V_OK)
        snprintf(detail, sizeof(detail), "certificate not accepted: %s",
                 X509_verify_cert_error_string(v));
    else if (errno == ETIMEDOUT)
        snprintf(detail, sizeof(detail), "no answer before the timeout");
    else if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    else
        snprintf(detail, sizeof(detail), "%s", strerror(errno));
    snprintf(why, why_len, "%s: %s", step, detail);
}

/* The TLS handshake, with the URL's host as SNI and as the name the certificate must carry. */
static int tls_start(struct conn *c, struct ssl_ctx_st *ctx, const struct approval_url *u,
                     char *why, size_t why_len)
{
    ERR_clear_error();
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(why, why_len, "TLS: out of memory");
        return -1;
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    struct in_addr ip;
    /* SNI carries names only (RFC 6066); an address is checked against the IP SANs. */
    bool literal = inet_pton(AF_INET, u->host, &ip) == 1;
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (literal ? X509_VERIFY_PARAM_set1_ip_asc(param, u->host) != 1
                : SSL_set_tlsext_host_name(c->ssl, u->host) != 1 ||
                      SSL_set1_host(c->ssl, u->host) != 1) {
        snprintf(why, why_len, "TLS: cannot check the peer against %s", u->host);
        return -1;
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int rc = SSL_connect(c->ssl);
        if (rc == 1) return 0;
        if (tls_again(c, rc) < 0) {
            char step[300];
            snprintf(step, sizeof(step), "TLS handshake with %s:%s", u->host, u->port);
            tls_why(c, step, why, why_len);
            return -1;
        }
    }
}

/* Send all of p. send() with MSG_NOSIGNAL, so a receiver that hangs up does not SIGPIPE the
 * gateway; OpenSSL writes with write(), which is why delivery threads block SIGPIPE. */
static int conn_send(struct conn *c, const char *p, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        if (c->ssl) {
            ERR_clear_error();
            errno = 0;
            int rc = SSL_write_ex(c->ssl, p, len, &n);
            if (rc <= 0) {
                if (tls_again(c, rc) < 0) return -1;
                continue;
            }
        } else {
            ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno == EAGAIN) {
                if (wait_ready(c, POLLOUT) < 0) return -1;
                continue;
            }
            if (w <= 0) return -1;
            n = (size_t)w;
        }
        p += n;
        len -= n;
    }
    return 0;
}

/* Read what is there (at most cap bytes): the count, 0 at the end of the stream, -1 on an
 * error or at the deadline. */
static ssize_t conn_recv(struct conn *c, char *buf, size_t cap)
{
    for (;;) {
        if (c->ssl) {
            size_t n = 0;
            ERR_clear_error();
            errno = 0;
            int rc = SSL_read_ex(c->ssl, buf, cap, &n);
            if (rc == 1) return (ssize_t)n;
            if (SSL_get_error(c->ssl, rc) == SSL_ERROR_ZERO_RETURN) return 0;
            if (tls_again(c, rc) < 0) return -1;
            continue;
        }
        ssize_t r = recv(c->fd, buf, cap, 0);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN || wait_ready(c, POLLIN) < 0) return -1;
    }
}

/* Read until the status line is complete (we need nothing else from the answer). */
static int read_status(struct conn *c, int *status, char *why, size_t why_len)
{
    char buf[1024];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t r = conn_recv(c, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0) {
            snprintf(why, why_len, "%s",
                     r == 0               ? "connection closed before a response"
                     : errno == ETIMEDOUT ? "no response before the timeout"
                                          : "connection failed before a response");
            return -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "\r\n")) break;
    }
    if (sscanf(buf, "HTTP/1.%*1[01] %3d", status) != 1 || *status < 100 || *status > 599) {
        *status = 0;
        snprintf(why, why_len, "not an HTTP response");
        return -1;
    }
    return 0;
}

static int exchange(struct conn *c, const struct approval_url *u, struct ssl_ctx_st *tls,
                    const char *headers, const char *body, int *status, char *why, size_t why_len)
{
    if (u->tls && !tls) {
        snprintf(why, why_len, "https:// without a TLS context");
        return -1;
    }
    if (u->tls && tls_start(c, tls, u, why, why_len) < 0) return -1;
    struct gate_buf req = {0};
    size_t body_len = strlen(body);
    gate_buf_printf(&req,
                    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: gatehouse\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n%s\r\n",
                    u->path, u->host, u->port, body_len, headers);
    int rc = req.data ? 0 : -1;
    if (rc < 0)
        snprintf(why, why_len, "out of memory");
    else if (conn_send(c, req.data, req.len) < 0 || conn_send(c, body, body_len) < 0)
        rc = -1, snprintf(why, why_len, "send: %s",
                          errno == ETIMEDOUT ? "no progress before the timeout" : strerror(errno));
    gate_buf_free(&req);
    if (rc < 0) return -1;
    return read_status(c, status, why, why_len);
}

int approval_http_post(const char *url, struct ssl_ctx_st *tls, const char *headers,
                       const char *body, int *status, char *why, size_t why_len)
{
    struct approval_url u;
    *status = 0;
    if (approval_url_parse(url, &u) < 0) {
        snprintf(why, why_len, "not an http:// or https:// URL");
        return -1;
    }
    struct conn c = {.fd = connect_timeout(&u, why, why_len), .ssl = NULL};
    if (c.fd < 0) return -1;
    c.deadline_ns = gate_monotonic_ns() + (uint64_t)WEBHOOK_IO_TIMEOUT_MS * 1000000ull;
    int rc = exchange(&c, &u, tls, headers, body, status, why, why_len);
    SSL_free(c.ssl); /* no close_notify: Connection: close, and all we need is read */
    close(c.fd);
    return rc;
}
