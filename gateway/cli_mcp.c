/* cli_mcp.c: `gatehouse mcp`: the MCP server over stdio, for clients that launch MCP servers
 * as subprocesses. It forwards every message to a running gateway's POST /mcp (the same
 * server, the same authentication) and writes what comes back to stdout, one JSON-RPC message
 * per line.
 *
 *   gatehouse mcp [--url URL] [--token-env VAR]
 *
 * initialize is forwarded first and alone (it creates the session); every later message goes
 * on its own thread, so that a notifications/cancelled can overtake a tools/call that waits
 * for approval. At the end of stdin the session is ended (DELETE /mcp); calls still held stay
 * held, readable at GET /v1/calls/{id}. The token comes from an environment variable, never
 * argv (which every user of the host can read).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client.h"
#include "gateway.h"

#define MAX_LINE (GW_MAX_BODY + 1)

static struct {
    const char *url;
    char *auth; /* "Bearer ..." or NULL */
    char session[96];
    pthread_mutex_t out; /* one message per line on stdout */
} b = {.out = PTHREAD_MUTEX_INITIALIZER};

static void emit(const char *text, size_t len)
{
    pthread_mutex_lock(&b.out);
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&b.out);
}

/* A JSON-RPC error for request id (a transport failure, or an HTTP error without a JSON-RPC
 * body, e.g. 401), so that the client is not left waiting. */
static void emit_error(const json_t *id, const char *message)
{
    if (!id) {
        fprintf(stderr, "gatehouse mcp: %s\n", message);
        return;
    }
    json_t *m = json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                          -32000, "message", message);
    autofree char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (text) emit(text, strlen(text));
}

/* Emit each `data:` line of a Server-Sent Events body as it arrives. */
static void sse_lines(struct gate_buf *buf, size_t *done)
{
    for (;;) {
        char *start = buf->data + *done, *nl = memchr(start, '\n', buf->len - *done);
        if (!nl) return;
        size_t n = (size_t)(nl - start);
        if (n && start[n - 1] == '\r') n--;
        if (n > 5 && strncmp(start, "data:", 5) == 0) {
            size_t skip = start[5] == ' ' ? 6 : 5;
            emit(start + skip, n - skip);
        }
        *done = (size_t)(nl - buf->data) + 1;
    }
}

/* The value of header name in a response head (NUL-terminated), copied into out. */
static bool head_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) || p[2 + nl] != ':') continue;
        const char *v = p + 3 + nl;
        v += strspn(v, " \t");
        size_t n = strcspn(v, "\r");
        if (n >= cap) return false;
        memcpy(out, v, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

/* One HTTP/1.0 exchange (no chunked encoding: the body ends when the gateway closes). */
static void forward(const char *method, const char *body, const json_t *id, bool init)
{
    struct gate_error err = {0};
    autoclose int fd = gw_client_connect(b.url, &err);
    if (fd < 0) return emit_error(id, err.msg);
    const char *path = strchr(b.url + 7, '/');
    struct gate_buf req = {0};
    gate_buf_printf(&req,
                    "%s %s HTTP/1.0\r\nHost: gatehouse\r\nAccept: application/json, "
                    "text/event-stream\r\n",
                    method, path && path[1] ? path : "/mcp");
    if (b.auth) gate_buf_printf(&req, "Authorization: %s\r\n", b.auth);
    if (b.session[0]) gate_buf_printf(&req, "Mcp-Session-Id: %s\r\n", b.session);
    gate_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                    body ? strlen(body) : 0, body ? body : "");
    int wrc = req.data ? gate_write_all(fd, req.data, req.len) : -1;
    gate_buf_free(&req);
    if (wrc < 0) return emit_error(id, "could not send to the gateway");
    struct gate_buf in = {0};
    char chunk[16384];
    size_t body_at = 0, done = 0;
    bool sse = false;
    int status = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || gate_buf_append(&in, chunk, (size_t)r) < 0) break;
        if (!body_at) {
            char *end = memmem(in.data, in.len, "\r\n\r\n", 4);
            if (!end) continue;
            *end = '\0';
            body_at = done = (size_t)(end - in.data) + 4;
            char ctype[128] = "";
            sscanf(in.data, "HTTP/1.%*d %d", &status);
            sse = head_value(in.data, "Content-Type", ctype, sizeof(ctype)) &&
                  strncasecmp(ctype, "text/event-stream", 17) == 0;
            if (init) head_value(in.data, "Mcp-Session-Id", b.session, sizeof(b.session));
        }
        if (sse) sse_lines(&in, &done);
    }
    if (!body_at) {
        emit_error(id, "no HTTP response from the gateway");
    } else if (!sse && in.len > body_at) {
        json_t *j = json_loadb(in.data + body_at, in.len - body_at, 0, NULL);
        if (json_is_object(j) && json_object_get(j, "jsonrpc"))
            emit(in.data + body_at, in.len - body_at);
        else if (id) { /* a front-door error: {"error":{"code","message"}} */
            const char *msg =
                json_string_value(json_object_get(json_object_get(j, "error"), "message"));
            char text[512];
            snprintf(text, sizeof(text), "the gateway answered %d: %s", status,
                     msg ? msg : "(no message)");
            emit_error(id, text);
        }
        json_decref(j);
    }
    gate_buf_free(&in);
}

struct job {
    char *line;
    json_t *id;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    forward("POST", j->line, j->id, false);
    free(j->line);
    json_decref(j->id);
    free(j);
    return NULL;
}

static void handle(char *line)
{
    json_t *msg = json_loads(line, 0, NULL);
    const json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (!msg) {
        fprintf(stderr, "gatehouse mcp: a line on stdin is not JSON; ignored\n");
    } else if (method && strcmp(method, "initialize") == 0) {
        forward("POST", line, id, true); /* alone: it sets the session */
    } else {
        struct job *j = calloc(1, sizeof(*j));
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (j && (j->line = strdup(line))) {
            j->id = json_incref((json_t *)id);
            if (pthread_create(&t, &attr, job_main, j) == 0) j = NULL;
        }
        if (j) { /* no thread: forward it here */
            forward("POST", line, id, false);
            free(j->line);
            json_decref(j->id);
            free(j);
        }
        pthread_attr_destroy(&attr);
    }
    json_decref(msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: gatehouse mcp [--url URL] [--token-env VAR]\n\n"
               "Serve MCP over stdio (one JSON-RPC message per line), forwarding to a running "
               "gateway's /mcp.\n\n"
               "  --url URL          the gateway (default $GATEHOUSE_URL, else "
               "http://127.0.0.1:8080)\n"
               "  --token-env VAR    read the agent's bearer token from $VAR (default "
               "GATEHOUSE_TOKEN; none: anonymous)\n");
}

int cmd_mcp(int argc, char **argv)
{
    const char *token_env = "GATEHOUSE_TOKEN";
    b.url = getenv("GATEHOUSE_URL") ? getenv("GATEHOUSE_URL") : "http://127.0.0.1:8080";
    static const char *const valued[] = {"--url", "--token-env", NULL};
    if (cli_wants_help(argc, argv, valued)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc) {
            b.url = argv[++i];
        } else if (!strcmp(argv[i], "--token-env") && i + 1 < argc) {
            token_env = argv[++i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (strncmp(b.url, "http://", 7) != 0) {
        fprintf(stderr, "gatehouse mcp: %s: only http:// URLs are supported\n", b.url);
        return 2;
    }
    const char *token = getenv(token_env);
    if (token && *token && asprintf(&b.auth, "Bearer %s", token) < 0) return 2;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (n > MAX_LINE) {
            fprintf(stderr, "gatehouse mcp: a message over 1 MiB; ignored\n");
            continue;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) handle(line);
    }
    free(line);
    if (b.session[0]) forward("DELETE", NULL, NULL, false);
    free(b.auth);
    return 0;
}
