/* client.c: the CLI's HTTP client (plain http:// to a gateway, usually on loopback). */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int gw_client_connect(const char *base_url, struct gate_error *err)
{
    const char *hp = base_url;
    if (strncmp(hp, "http://", 7) != 0)
        return gate_err(err, GATE_E_CONFIG, "%s: only http:// URLs are supported", base_url);
    hp += 7;
    char host[256], port[16] = "80";
    size_t n = strcspn(hp, ":/");
    if (n == 0 || n >= sizeof(host)) return gate_err(err, GATE_E_CONFIG, "%s: bad host", base_url);
    memcpy(host, hp, n);
    host[n] = '\0';
    if (hp[n] == ':') {
        size_t m = strcspn(hp + n + 1, "/");
        if (m == 0 || m >= sizeof(port))
            return gate_err(err, GATE_E_CONFIG, "%s: bad port", base_url);
        memcpy(port, hp + n + 1, m);
        port[m] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) return gate_err(err, GATE_E_IO, "%s: %s", base_url, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return gate_err_errno(err, GATE_E_IO, errno, "connect %s", base_url);
    struct timeval tv = {.tv_sec = 150};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

int gw_client_request(const char *base_url, const char *method, const char *path,
                      const char *authorization, const char *body, int *status,
                      struct gate_buf *resp, struct gate_error *err)
{
    autoclose int fd = gw_client_connect(base_url, err);
    if (fd < 0) return -1;
    struct gate_buf req = {0};
    gate_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n", method,
                    path);
    if (authorization) gate_buf_printf(&req, "Authorization: %s\r\n", authorization);
    if (body)
        gate_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                        strlen(body), body);
    else
        gate_buf_printf(&req, "\r\n");
    int wrc = req.data ? gate_write_all(fd, req.data, req.len) : -1;
    gate_buf_free(&req);
    if (wrc < 0) return gate_err_errno(err, GATE_E_IO, errno, "send to %s", base_url);
    struct gate_buf raw = {0};
    char chunk[16384];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (raw.len > 64u << 20 || gate_buf_append(&raw, chunk, (size_t)r) < 0) break;
    }
    const char *hdr_end = raw.data ? strstr(raw.data, "\r\n\r\n") : NULL;
    if (!hdr_end || sscanf(raw.data, "HTTP/1.%*d %d", status) != 1) {
        gate_buf_free(&raw);
        return gate_err(err, GATE_E_IO, "%s: no valid HTTP response", base_url);
    }
    const char *payload = hdr_end + 4;
    size_t plen = raw.len - (size_t)(payload - raw.data);
    /* A gateway answer to Connection: close is length-delimited or ends at close; both
     * leave exactly the body here unless it is chunked, which libmicrohttpd does not use
     * for buffer responses. */
    gate_buf_append(resp, payload, plen);
    gate_buf_free(&raw);
    return 0;
}
