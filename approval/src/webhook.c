/* webhook.c: Standard Webhooks signatures and a minimal HTTP/1.1 POST client.
 *
 * Signature (https://www.standardwebhooks.com): the secret is "whsec_" + base64 of the key
 * bytes; the signed content is "<webhook-id>.<webhook-timestamp>.<body>"; the header value
 * is "v1,<base64(HMAC-SHA256(key, content))>". The client speaks plain http:// only, with
 * a connect timeout and a read/write timeout, so an unreachable or stalled endpoint costs a
 * delivery thread a bounded time and never a caller.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "approval_internal.h"

int approval_url_parse(const char *url, struct approval_url *u)
{
    if (strncmp(url, "http://", 7) != 0) return -1;
    const char *hp = url + 7;
    size_t n = strcspn(hp, ":/?#");
    if (n == 0 || n >= sizeof(u->host)) return -1;
    /* A host name or IPv4 address: nothing that could end the Host header line. */
    static const char host_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789.-_";
    if (strspn(hp, host_chars) < n) return -1;
    memcpy(u->host, hp, n);
    u->host[n] = '\0';
    hp += n;
    snprintf(u->port, sizeof(u->port), "80");
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

/* Connect with a timeout: non-blocking connect, then poll for writability. */
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
    if (fd < 0) return -1;
    /* Back to blocking with timeouts for the exchange. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = WEBHOOK_IO_TIMEOUT_MS / 1000,
                         .tv_usec = (WEBHOOK_IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read until the status line is complete (we need nothing else from the answer). The whole
 * read has one deadline: a receiver that drips a byte at a time must not hold a delivery
 * thread (and with it the gateway's shutdown) for longer than one I/O timeout. */
static int read_status(int fd, int *status, char *why, size_t why_len)
{
    char buf[1024];
    size_t len = 0;
    uint64_t deadline = gate_monotonic_ns() + (uint64_t)WEBHOOK_IO_TIMEOUT_MS * 1000000ull;
    while (len < sizeof(buf) - 1) {
        uint64_t now = gate_monotonic_ns();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = now < deadline ? (int)((deadline - now) / 1000000ull) : 0;
        if (wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0) {
            snprintf(why, why_len, "no response before the timeout");
            return -1;
        }
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(why, why_len, "%s",
                     r == 0 ? "connection closed before a response"
                            : "no response before the timeout");
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

/* send() with MSG_NOSIGNAL: a receiver that hangs up must not SIGPIPE the gateway. */
static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int approval_http_post(const char *url, const char *headers, const char *body, int *status,
                       char *why, size_t why_len)
{
    struct approval_url u;
    *status = 0;
    if (approval_url_parse(url, &u) < 0) {
        snprintf(why, why_len, "%s",
                 strncmp(url, "https://", 8) == 0 ? "https:// webhooks are not supported yet"
                                                  : "not an http:// URL");
        return -1;
    }
    autoclose int fd = connect_timeout(&u, why, why_len);
    if (fd < 0) return -1;
    struct gate_buf req = {0};
    size_t body_len = strlen(body);
    gate_buf_printf(&req,
                    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: gatehouse\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n%s\r\n",
                    u.path, u.host, u.port, body_len, headers);
    int rc = req.data ? 0 : -1;
    if (rc == 0 && (send_all(fd, req.data, req.len) < 0 || send_all(fd, body, body_len) < 0)) {
        snprintf(why, why_len, "send: %s", strerror(errno));
        rc = -1;
    } else if (rc < 0) {
        snprintf(why, why_len, "out of memory");
    }
    gate_buf_free(&req);
    if (rc < 0) return -1;
    return read_status(fd, status, why, why_len);
}
