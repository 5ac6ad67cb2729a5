/* http_guard.c: the front door. One thread accepts every TCP connection, checks each request's
 * framing (http_framing.c) and passes what is unambiguous to libmicrohttpd over a socketpair.
 *
 * Why a guard in front of libmicrohttpd: libmicrohttpd 0.9.75 accepts some ambiguous framing
 * (two Content-Length headers, Content-Length with Transfer-Encoding, obsolete folding, NUL or
 * bare CR in values) and answers malformed input with fixed HTML pages that no option replaces;
 * thread-per-connection mode gave every idle connection a thread. Here an idle or slow
 * connection costs a few hundred bytes and three descriptors, never a thread: the guard
 * enforces a per-address and a total connection limit, a deadline for each request's head
 * and body, and answers every refusal itself with the JSON error body and a code from the one
 * error table. What it forwards, libmicrohttpd reads exactly as the guard did.
 *
 * One request per connection is with libmicrohttpd at a time: after forwarding a complete
 * request the guard stops reading that client until libmicrohttpd reports the request done
 * (http_guard_request_done). So when a later request on a keep-alive connection is refused,
 * the earlier response has been written in full, and the refusal follows it in order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gateway.h"

#define READ_CHUNK (64 * 1024)
#define TO_CLIENT_MAX (256 * 1024) /* buffered response bytes before we stop reading them */
#define LINGER_MS 2000             /* after a refusal: drain the client's rest this long */
#define LINGER_BYTES (16u << 20)

enum gstate {
    G_HEAD,    /* reading a request head */
    G_LENGTH,  /* forwarding a Content-Length body */
    G_CHUNKED, /* forwarding a chunked body */
    G_REFUSED, /* a refusal is queued: send it once libmicrohttpd's output is flushed */
    G_LINGER,  /* refusal sent: discard what the client still sends, then close */
};

struct gconn {
    bool used;
    uint32_t gen;
    int cfd, ufd; /* the client's TCP socket; our end of the pair with libmicrohttpd */
    int mhd_fd;   /* libmicrohttpd's end (owned by it), for the token map */
    struct sockaddr_storage addr;
    enum gstate state;
    bool outstanding; /* a request is with libmicrohttpd and not done yet */
    bool client_eof, mhd_eof;
    struct gate_buf in; /* read from the client, not yet forwarded */
    struct gate_buf to_mhd, to_client;
    size_t to_mhd_off, to_client_off;
    uint64_t body_left;
    struct http_chunks chunks;
    uint64_t deadline_ns; /* head, body or linger deadline; 0: none */
    size_t lingered;
    struct gate_buf refusal;
    uint32_t cev, uev; /* epoll interest of cfd and ufd (0: not registered) */
};

static struct {
    struct http_guard_config cfg;
    int epfd, lfd, evfd;
    pthread_t thread;
    bool running;
    atomic_bool stop, stop_accepting;
    struct gconn *conns;
    unsigned nconns, live;
    uint64_t accept_resume_ns; /* listener paused (EMFILE) until then; 0: watched */
    uint64_t *tokens;          /* by libmicrohttpd's fd */
    int ntokens;
    pthread_mutex_t lock; /* the done queue */
    uint64_t *done;
    size_t ndone, capdone;
} g = {.epfd = -1, .lfd = -1, .evfd = -1};

#define EV_LISTEN UINT64_MAX
#define EV_WAKE (UINT64_MAX - 1)

static uint64_t token_of(unsigned slot)
{
    return (uint64_t)g.conns[slot].gen << 32 | slot;
}

static uint64_t ev_key(unsigned slot, bool mhd_side)
{
    return (uint64_t)slot << 1 | mhd_side;
}

static void set_interest(unsigned slot, bool mhd_side, uint32_t want)
{
    struct gconn *c = &g.conns[slot];
    uint32_t *cur = mhd_side ? &c->uev : &c->cev;
    int fd = mhd_side ? c->ufd : c->cfd;
    if (fd < 0 || *cur == want) return;
    struct epoll_event ev = {.events = want, .data.u64 = ev_key(slot, mhd_side)};
    int op = *cur == 0 ? EPOLL_CTL_ADD : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (epoll_ctl(g.epfd, op, fd, &ev) == 0) *cur = want;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* A complete HTTP/1.1 response carrying the JSON error body of the one error table. */
static void error_response(struct gate_buf *out, const struct gate_error *err, unsigned retry)
{
    int status = gate_code_http(err->code);
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", gate_code_str(err->code), "message",
                             err->msg[0] ? err->msg : gate_code_message(err->code));
    autofree char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    const char *t = text ? text : "{\"error\":{\"code\":\"internal_error\",\"message\":\"\"}}";
    gate_buf_printf(out,
                    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n",
                    status, reason_phrase(status), strlen(t));
    if (retry) gate_buf_printf(out, "Retry-After: %u\r\n", retry);
    gate_buf_printf(out, "\r\n%s", t);
}

static void close_conn(unsigned slot)
{
    struct gconn *c = &g.conns[slot];
    set_interest(slot, false, 0);
    set_interest(slot, true, 0);
    if (c->cfd >= 0) close(c->cfd);
    /* Closing our end of the pair tells libmicrohttpd the client is gone; it closes its end. */
    if (c->ufd >= 0) close(c->ufd);
    if (c->mhd_fd >= 0 && c->mhd_fd < g.ntokens)
        __atomic_store_n(&g.tokens[c->mhd_fd], 0, __ATOMIC_RELEASE);
    gate_buf_free(&c->in);
    gate_buf_free(&c->to_mhd);
    gate_buf_free(&c->to_client);
    gate_buf_free(&c->refusal);
    uint32_t gen = c->gen + 1;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->cfd = c->ufd = c->mhd_fd = -1;
    g.live--;
}

/* Queue a refusal: sent once everything libmicrohttpd wrote before it has gone out. */
static void refuse(unsigned slot, const struct gate_error *err)
{
    struct gconn *c = &g.conns[slot];
    error_response(&c->refusal, err, err->code == GATE_E_TOO_MANY_CONNECTIONS ? 1 : 0);
    c->state = G_REFUSED;
    c->deadline_ns = 0;
    if (g.cfg.metrics) gw_metrics_rejected(g.cfg.metrics, gate_code_str(err->code));
}

static void consume_in(struct gconn *c, size_t n)
{
    memmove(c->in.data, c->in.data + n, c->in.len - n);
    c->in.len -= n;
}

static void forward(struct gconn *c, size_t n)
{
    gate_buf_append(&c->to_mhd, c->in.data, n);
    consume_in(c, n);
}

static void request_forwarded(struct gconn *c)
{
    c->outstanding = true;
    c->state = G_HEAD;
    c->deadline_ns = 0;
}

/* Parse and forward what the client sent, one request at a time. */
static void advance(unsigned slot)
{
    struct gconn *c = &g.conns[slot];
    struct gate_error err = {0};
    while (!c->outstanding && c->in.len > 0 && c->state <= G_CHUNKED) {
        if (c->state == G_HEAD) {
            struct http_head_info info;
            if (c->deadline_ns == 0)
                c->deadline_ns = gate_monotonic_ns() + g.cfg.head_timeout_ms * 1000000ull;
            int r = http_head_check(c->in.data, c->in.len, &info, &err);
            if (r < 0) return refuse(slot, &err);
            if (r == 0) return;
            forward(c, info.head_len);
            c->deadline_ns = gate_monotonic_ns() + g.cfg.body_timeout_ms * 1000000ull;
            memset(&c->chunks, 0, sizeof(c->chunks));
            c->body_left = info.content_length;
            if (info.body == HTTP_BODY_NONE)
                request_forwarded(c);
            else
                c->state = info.body == HTTP_BODY_LENGTH ? G_LENGTH : G_CHUNKED;
        } else if (c->state == G_LENGTH) {
            size_t n = c->in.len < c->body_left ? c->in.len : (size_t)c->body_left;
            forward(c, n);
            c->body_left -= n;
            if (c->body_left == 0) request_forwarded(c);
        } else {
            size_t used = 0;
            int r = http_chunks_feed(&c->chunks, c->in.data, c->in.len, &used, &err);
            if (r < 0) return refuse(slot, &err);
            forward(c, used);
            if (r == 1) request_forwarded(c);
        }
    }
}

/* ---- I/O ------------------------------------------------------------------------------- */
static void flush(int fd, struct gate_buf *b, size_t *off, bool *failed)
{
    while (*off < b->len) {
        ssize_t n = send(fd, b->data + *off, b->len - *off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) *failed = true;
            if (errno != EINTR) break;
            continue;
        }
        *off += (size_t)n;
    }
    if (*off == b->len) {
        b->len = 0;
        *off = 0;
    }
}

/* Read what libmicrohttpd wrote (its responses) into to_client. */
static void read_mhd(struct gconn *c)
{
    while (c->to_client.len < TO_CLIENT_MAX) {
        char buf[READ_CHUNK];
        ssize_t n = read(c->ufd, buf, sizeof(buf));
        if (n > 0) {
            gate_buf_append(&c->to_client, buf, (size_t)n);
            continue;
        }
        if (n == 0) c->mhd_eof = true;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) c->mhd_eof = true;
        break;
    }
}

static void read_client(struct gconn *c)
{
    char buf[READ_CHUNK];
    ssize_t n = read(c->cfd, buf, sizeof(buf));
    if (n > 0 && c->state == G_LINGER) {
        c->lingered += (size_t)n;
        if (c->lingered > LINGER_BYTES) c->client_eof = true;
    } else if (n > 0) {
        gate_buf_append(&c->in, buf, (size_t)n);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        c->client_eof = true;
    }
}

/* Decide what to watch and whether the connection is finished. */
static void settle(unsigned slot)
{
    struct gconn *c = &g.conns[slot];
    bool failed = false;
    if (c->to_mhd.len && c->ufd >= 0) flush(c->ufd, &c->to_mhd, &c->to_mhd_off, &failed);
    if (c->to_client.len) flush(c->cfd, &c->to_client, &c->to_client_off, &failed);
    if (c->state == G_REFUSED && !c->outstanding && c->ufd >= 0) {
        /* Everything libmicrohttpd answered before is in the pair: take it, then let go. */
        read_mhd(c);
        set_interest(slot, true, 0);
        close(c->ufd);
        c->ufd = -1;
    }
    if (c->state == G_REFUSED && c->ufd < 0 && c->to_client.len == 0) {
        gate_buf_append(&c->to_client, c->refusal.data, c->refusal.len);
        gate_buf_free(&c->refusal);
        flush(c->cfd, &c->to_client, &c->to_client_off, &failed);
        c->state = G_LINGER;
    }
    if (c->state == G_LINGER && c->to_client.len == 0 && c->deadline_ns == 0) {
        /* Half-close and drain: closing with unread input would reset the connection and
         * could destroy the refusal before the client reads it. */
        shutdown(c->cfd, SHUT_WR);
        c->deadline_ns = gate_monotonic_ns() + LINGER_MS * 1000000ull;
    }
    if (c->client_eof && !c->outstanding && c->ufd >= 0) {
        /* The last response may still sit in the pair: a request is done only once all of
         * it was written there. */
        read_mhd(c);
        if (c->to_client.len) flush(c->cfd, &c->to_client, &c->to_client_off, &failed);
    }
    bool pending_out = c->to_client.len > 0;
    bool done = failed || (c->state == G_LINGER && c->client_eof) ||
                (c->mhd_eof && !pending_out && (c->state != G_REFUSED || c->outstanding)) ||
                (c->client_eof && !c->outstanding && !pending_out && c->state != G_REFUSED);
    if (done) return close_conn(slot);
    /* Read the client while a request is being received (or drained after a refusal); only
     * watch for its hang-up while libmicrohttpd works on one. */
    uint32_t cev = 0;
    if (!c->client_eof)
        cev = (c->state == G_LINGER ||
               (!c->outstanding && c->state <= G_CHUNKED && c->in.len < HTTP_MAX_HEAD + READ_CHUNK))
                  ? EPOLLIN
                  : EPOLLRDHUP;
    if (pending_out) cev |= EPOLLOUT;
    set_interest(slot, false, cev);
    uint32_t uev = 0;
    if (c->ufd >= 0 && !c->mhd_eof && c->to_client.len < TO_CLIENT_MAX) uev = EPOLLIN;
    if (c->ufd >= 0 && c->to_mhd.len) uev |= EPOLLOUT;
    set_interest(slot, true, uev);
}

/* ---- accepting ------------------------------------------------------------------------- */
static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Connections from this address now. A scan of at most max_connections entries per accept is
 * a few microseconds, and no table can go stale. */
static unsigned from_same(const struct sockaddr_storage *addr)
{
    unsigned n = 0;
    for (unsigned i = 0; i < g.nconns; i++)
        if (g.conns[i].used && same_addr(&g.conns[i].addr, addr)) n++;
    return n;
}

static void turn_away(int fd, enum gate_code code, const char *why)
{
    struct gate_error err = {0};
    gate_err(&err, code, "%s", why);
    if (g.cfg.metrics) gw_metrics_rejected(g.cfg.metrics, gate_code_str(code));
    struct gate_buf out = {0};
    error_response(&out, &err, 1);
    ssize_t w = send(fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w; /* best effort: the connection is refused either way */
    gate_buf_free(&out);
    close(fd);
}

static void accept_one(int fd, const struct sockaddr_storage *addr, socklen_t alen)
{
    if (g.live >= g.cfg.max_connections)
        return turn_away(fd, GATE_E_UNAVAILABLE, "the gateway has too many connections");
    if (from_same(addr) >= g.cfg.max_per_ip)
        return turn_away(fd, GATE_E_TOO_MANY_CONNECTIONS, "too many connections from this address");
    unsigned slot = 0;
    while (slot < g.nconns && g.conns[slot].used)
        slot++;
    int pair[2];
    if (slot == g.nconns ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
        return turn_away(fd, GATE_E_UNAVAILABLE, "the gateway cannot take a connection now");
    if (pair[1] >= g.ntokens) {
        close(pair[0]);
        close(pair[1]);
        return turn_away(fd, GATE_E_UNAVAILABLE, "the gateway has too many open files");
    }
    struct gconn *c = &g.conns[slot];
    c->used = true;
    c->cfd = fd;
    c->ufd = pair[0];
    c->mhd_fd = pair[1];
    c->addr = *addr;
    c->state = G_HEAD;
    g.live++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    __atomic_store_n(&g.tokens[pair[1]], token_of(slot), __ATOMIC_RELEASE);
    if (gw_http_add_connection(pair[1], (const struct sockaddr *)addr, alen) < 0) {
        c->mhd_fd = -1; /* libmicrohttpd closed it */
        c->cfd = -1;
        close_conn(slot);
        return turn_away(fd, GATE_E_UNAVAILABLE, "the gateway cannot take a connection now");
    }
    settle(slot);
}

static void accept_all(void)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof(addr);
        int fd = accept4(g.lfd, (struct sockaddr *)&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Stop watching the listener for a moment instead of spinning on it. */
                gate_log("warn", "http.accept", "out of file descriptors: %s", strerror(errno));
                struct epoll_event ev = {0};
                epoll_ctl(g.epfd, EPOLL_CTL_DEL, g.lfd, &ev);
                g.accept_resume_ns = gate_monotonic_ns() + 100000000ull;
            }
            return;
        }
        accept_one(fd, &addr, alen);
    }
}

/* ---- completion, deadlines, the loop ---------------------------------------------------- */
uint64_t http_guard_token(int fd)
{
    return fd >= 0 && fd < g.ntokens ? __atomic_load_n(&g.tokens[fd], __ATOMIC_ACQUIRE) : 0;
}

void http_guard_request_done(uint64_t token)
{
    if (!token) return;
    pthread_mutex_lock(&g.lock);
    if (g.ndone == g.capdone) {
        size_t cap = g.capdone ? 2 * g.capdone : 64;
        uint64_t *grown = realloc(g.done, cap * sizeof(*grown));
        if (grown) {
            g.done = grown;
            g.capdone = cap;
        }
    }
    if (g.ndone < g.capdone) g.done[g.ndone++] = token;
    pthread_mutex_unlock(&g.lock);
    uint64_t one = 1;
    ssize_t w = write(g.evfd, &one, sizeof(one));
    (void)w; /* an eventfd write only fails when the counter is full: the loop is awake */
}

static void take_done(void)
{
    uint64_t v;
    ssize_t r = read(g.evfd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&g.lock);
    size_t n = g.ndone;
    uint64_t *list = g.done;
    g.done = NULL;
    g.ndone = g.capdone = 0;
    pthread_mutex_unlock(&g.lock);
    for (size_t i = 0; i < n; i++) {
        unsigned slot = (unsigned)(list[i] & 0xffffffffu);
        /* A stale token (the connection was closed and its slot reused) is ignored. */
        if (slot >= g.nconns || !g.conns[slot].used || token_of(slot) != list[i]) continue;
        g.conns[slot].outstanding = false;
        advance(slot);
        settle(slot);
    }
    free(list);
}

static void expire(uint64_t now)
{
    for (unsigned i = 0; i < g.nconns; i++) {
        struct gconn *c = &g.conns[i];
        if (!c->used || !c->deadline_ns || now < c->deadline_ns) continue;
        if (c->state == G_LINGER) {
            close_conn(i);
            continue;
        }
        struct gate_error err = {0};
        gate_err(&err, GATE_E_REQUEST_TIMEOUT, "the request %s did not arrive within %u ms",
                 c->state == G_HEAD ? "head" : "body",
                 c->state == G_HEAD ? g.cfg.head_timeout_ms : g.cfg.body_timeout_ms);
        refuse(i, &err);
        settle(i);
    }
}

static int next_timeout_ms(uint64_t now)
{
    uint64_t next = g.accept_resume_ns;
    for (unsigned i = 0; i < g.nconns; i++)
        if (g.conns[i].used && g.conns[i].deadline_ns && (!next || g.conns[i].deadline_ns < next))
            next = g.conns[i].deadline_ns;
    if (!next) return -1;
    return next <= now ? 0 : (int)((next - now) / 1000000ull) + 1;
}

static void on_event(const struct epoll_event *ev)
{
    unsigned slot = (unsigned)(ev->data.u64 >> 1);
    bool mhd_side = ev->data.u64 & 1;
    if (slot >= g.nconns || !g.conns[slot].used) return;
    struct gconn *c = &g.conns[slot];
    if (mhd_side) {
        if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_mhd(c);
    } else {
        if (ev->events & EPOLLIN) read_client(c);
        if ((ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !(ev->events & EPOLLIN))
            c->client_eof = true;
        advance(slot);
    }
    settle(slot);
}

static void *guard_main(void *arg)
{
    (void)arg;
    struct epoll_event evs[256];
    while (!atomic_load(&g.stop)) {
        uint64_t now = gate_monotonic_ns();
        if (g.accept_resume_ns && now >= g.accept_resume_ns && g.lfd >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_LISTEN};
            epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.lfd, &ev);
            g.accept_resume_ns = 0;
        }
        int n = epoll_wait(g.epfd, evs, 256, next_timeout_ms(now));
        if (atomic_load(&g.stop_accepting) && g.lfd >= 0) {
            close(g.lfd); /* also leaves the epoll set */
            g.lfd = -1;
            g.accept_resume_ns = 0;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == EV_WAKE)
                take_done();
            else if (evs[i].data.u64 == EV_LISTEN)
                g.lfd >= 0 ? accept_all() : (void)0;
            else
                on_event(&evs[i]);
        }
        expire(gate_monotonic_ns());
    }
    for (unsigned i = 0; i < g.nconns; i++)
        if (g.conns[i].used) close_conn(i);
    return NULL;
}

/* ---- start and stop --------------------------------------------------------------------- */
int gw_parse_listen(const char *listen, struct sockaddr_storage *sa, socklen_t *len,
                    struct gate_error *err)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return gate_err(err, GATE_E_CONFIG, "--listen %s: expected HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    memset(sa, 0, sizeof(*sa));
    if (*end || port == 0 || port > 65535)
        return gate_err(err, GATE_E_CONFIG, "--listen %s: the port must be 1 to 65535", listen);
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        host[hl - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*s6);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1) return 0;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof(*s4);
        if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) return 0;
    }
    return gate_err(err, GATE_E_CONFIG,
                    "--listen %s: expected IPV4-ADDRESS:PORT or [IPV6-ADDRESS]:PORT", listen);
}

static int open_listener(const char *addr, struct gate_error *err)
{
    struct sockaddr_storage sa;
    socklen_t len = 0;
    if (gw_parse_listen(addr, &sa, &len, err) < 0) return -1;
    g.lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g.lfd < 0) return gate_err_errno(err, GATE_E_CONFIG, errno, "socket");
    int one = 1;
    /* SO_REUSEADDR only: a second gateway on the same port must fail, not share it. */
    setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(g.lfd, (struct sockaddr *)&sa, len) < 0) {
        int e = errno;
        close(g.lfd);
        g.lfd = -1;
        return gate_err_errno(err, GATE_E_CONFIG, e,
                              "cannot listen on %s (%s; choose another address or port with "
                              "--listen ADDR:PORT)",
                              addr,
                              e == EADDRINUSE      ? "another process already listens there"
                              : e == EADDRNOTAVAIL ? "no interface of this host has that address"
                              : e == EACCES        ? "ports below 1024 need privileges"
                                                   : "bind failed");
    }
    if (listen(g.lfd, 1024) < 0) {
        int e = errno;
        close(g.lfd);
        g.lfd = -1;
        return gate_err_errno(err, GATE_E_CONFIG, e, "cannot listen on %s", addr);
    }
    return 0;
}

int http_guard_start(const struct http_guard_config *cfg, struct gate_error *err)
{
    g.cfg = *cfg;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    g.ntokens = rl.rlim_cur > (1u << 20) ? (1 << 20) : (int)rl.rlim_cur;
    g.nconns = cfg->max_connections;
    g.conns = calloc(g.nconns, sizeof(*g.conns));
    g.tokens = calloc((size_t)g.ntokens, sizeof(*g.tokens));
    if (!g.conns || !g.tokens) return gate_err(err, GATE_E_NOMEM, NULL);
    for (unsigned i = 0; i < g.nconns; i++)
        g.conns[i].cfd = g.conns[i].ufd = g.conns[i].mhd_fd = -1;
    pthread_mutex_init(&g.lock, NULL);
    if (open_listener(cfg->listen, err) < 0) return -1;
    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    g.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = EV_LISTEN};
    struct epoll_event wev = {.events = EPOLLIN, .data.u64 = EV_WAKE};
    if (g.epfd < 0 || g.evfd < 0 || epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.lfd, &lev) < 0 ||
        epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.evfd, &wev) < 0)
        return gate_err_errno(err, GATE_E_INTERNAL, errno, "epoll");
    int rc = pthread_create(&g.thread, NULL, guard_main, NULL);
    if (rc != 0) return gate_err_errno(err, GATE_E_INTERNAL, rc, "start the front door thread");
    g.running = true;
    return 0;
}

static void wake(void)
{
    uint64_t one = 1;
    ssize_t w = g.evfd >= 0 ? write(g.evfd, &one, sizeof(one)) : 0;
    (void)w;
}

void http_guard_stop_accepting(void)
{
    atomic_store(&g.stop_accepting, true);
    wake();
}

void http_guard_stop(void)
{
    atomic_store(&g.stop, true);
    wake();
    if (g.running) pthread_join(g.thread, NULL);
    g.running = false;
    if (g.lfd >= 0) close(g.lfd);
    if (g.epfd >= 0) close(g.epfd);
    if (g.evfd >= 0) close(g.evfd);
    g.lfd = g.epfd = g.evfd = -1;
    free(g.conns);
    free(g.tokens);
    free(g.done);
    g.conns = NULL;
    g.tokens = NULL;
    g.done = NULL;
    g.nconns = 0;
}
