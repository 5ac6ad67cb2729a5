/* gate.h: what every gatehouse module shares.
 *
 * - The engine's one error type (struct gate_error) and the one table of error
 *   codes: enum value, stable string code, HTTP status and default message are
 *   generated from GATE_ERROR_MAP so the API, the CLI and the audit log agree.
 * - Cleanup attributes (autofree, autoclose, ...) and ownership hand-off.
 * - Small utilities: growable buffer, SHA-256 hex, durations, clocks, logging.
 *
 * This library owns no global state except the log level.
 */
#ifndef GATE_H
#define GATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* X(enum suffix, stable code, HTTP status, default message) */
#define GATE_ERROR_MAP(X)                                                                          \
    X(OK, "ok", 200, "ok")                                                                         \
    X(MALFORMED_JSON, "malformed_json", 400, "request body is not valid JSON")                     \
    X(DUPLICATE_KEY, "duplicate_key", 400, "request body has a duplicate object key")              \
    X(JSON_TOO_DEEP, "json_too_deep", 400, "request body nests deeper than 64 levels")             \
    X(BAD_REQUEST, "bad_request", 400, "bad request")                                              \
    X(BAD_FRAMING, "bad_framing", 400, "ambiguous or malformed HTTP request framing")              \
    X(UNAUTHORIZED, "unauthorized", 401, "missing or invalid credentials")                         \
    X(DECISION_MISMATCH, "decision_mismatch", 403, "decision does not match the held call")        \
    X(FORBIDDEN, "forbidden", 403, "these credentials may not do this")                            \
    X(AGENT_MISMATCH, "agent_mismatch", 403, "'agent' is not the authenticated agent")             \
    X(TOOL_NOT_GRANTED, "tool_not_granted", 403, "the agent may not call this tool")               \
    X(TOOL_NOT_FOUND, "tool_not_found", 404, "no such tool")                                       \
    X(CALL_NOT_FOUND, "call_not_found", 404, "no such call")                                       \
    X(NOT_FOUND, "not_found", 404, "no such resource")                                             \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", 405, "method not allowed on this resource")        \
    X(REQUEST_TIMEOUT, "request_timeout", 408, "the request was not received in time")             \
    X(ALREADY_DECIDED, "already_decided", 409, "the call has already been decided")                \
    X(APPROVAL_EXPIRED, "approval_expired", 410, "the approval window has expired")                \
    X(BODY_TOO_LARGE, "body_too_large", 413, "request body exceeds 1 MiB")                         \
    X(URI_TOO_LONG, "uri_too_long", 414, "the request target exceeds 8 KiB")                       \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415,                                       \
      "content-type must be application/json")                                                     \
    X(INVALID_ARGUMENTS, "invalid_arguments", 422, "arguments do not match the tool's schema")     \
    X(TOO_MANY_CALLS, "too_many_calls", 429, "too many calls in flight; retry later")              \
    X(TOO_MANY_CONNECTIONS, "too_many_connections", 429, "too many connections from this address") \
    X(HEADERS_TOO_LARGE, "headers_too_large", 431,                                                 \
      "the request head exceeds 16 KiB or 100 fields")                                             \
    X(INTERNAL, "internal_error", 500, "internal error")                                           \
    X(NOMEM, "out_of_memory", 500, "out of memory")                                                \
    X(IO, "io_error", 500, "input/output error")                                                   \
    X(SANDBOX, "sandbox_setup_failed", 500, "the sandbox could not be set up")                     \
    X(POLICY, "policy_invalid", 500, "policy is invalid")                                          \
    X(CONFIG, "config_invalid", 500, "configuration is invalid")                                   \
    X(WASM_INVALID, "wasm_invalid", 500, "WebAssembly module is invalid")                          \
    X(WASM_LINK, "wasm_link", 500, "WebAssembly module cannot be linked")                          \
    X(AUDIT_UNAVAILABLE, "audit_unavailable", 503, "the audit log cannot be written")              \
    X(SHUTTING_DOWN, "shutting_down", 503, "the gateway is shutting down")                         \
    X(HTTP_VERSION, "http_version_not_supported", 505, "only HTTP/1.0 and HTTP/1.1 are served")    \
    X(UNAVAILABLE, "unavailable", 503, "service unavailable")                                      \
    X(ORIGIN_NOT_ALLOWED, "origin_not_allowed", 403, "requests from this Origin are not served")   \
    X(SESSION_NOT_FOUND, "session_not_found", 404, "no such MCP session (initialize again)")       \
    X(DATABASE_UNAVAILABLE, "database_unavailable", 503, "the shared database cannot be reached")

enum gate_code {
#define GATE_X_ENUM(name, code, status, msg) GATE_E_##name,
    GATE_ERROR_MAP(GATE_X_ENUM)
#undef GATE_X_ENUM
        GATE_E__COUNT
};

struct gate_error {
    enum gate_code code;
    int errnum; /* the errno behind it (gate_err_errno), or 0: branch on this, never on msg */
    char msg[1024];
};

/* Fill err (may be NULL) and return -1, so callers can `return gate_err(...)`. A NULL fmt uses
 * the table's default message for code. */
int gate_err(struct gate_error *err, enum gate_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like gate_err, appending ": strerror(errnum)". */
int gate_err_errno(struct gate_error *err, enum gate_code code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefix context to an existing message: "load x.yaml: <old message>". Returns -1. */
int gate_err_wrap(struct gate_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *gate_code_str(enum gate_code code);
int gate_code_http(enum gate_code code);
const char *gate_code_message(enum gate_code code);

/* ---- cleanup ---------------------------------------------------------------- */
void gate_freep(void *p);
void gate_closep(int *fd);
void gate_fclosep(FILE **f);
void gate_killpidp(pid_t *pid); /* SIGKILL and reap a child still owned */
#define autofree __attribute__((cleanup(gate_freep)))
#define autoclose __attribute__((cleanup(gate_closep)))
#define autofclose __attribute__((cleanup(gate_fclosep)))
#define autokill_pid __attribute__((cleanup(gate_killpidp)))

static inline void *gate_steal_ptr(void *pp)
{
    void **p = (void **)pp;
    void *v = *p;
    *p = NULL;
    return v;
}
static inline int gate_steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}
#define steal_pointer(pp) gate_steal_ptr(pp)
#define steal_fd(pfd) gate_steal_fd(pfd)

/* ---- growable buffer -------------------------------------------------------- */
struct gate_buf {
    char *data; /* always NUL-terminated when non-NULL; owned */
    size_t len;
    size_t cap;
};
int gate_buf_append(struct gate_buf *b, const void *data, size_t len);
int gate_buf_printf(struct gate_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gate_buf_free(struct gate_buf *b);

/* ---- utilities -------------------------------------------------------------- */
/* Append standard base64 (with padding) of data to out. */
int gate_base64(const void *data, size_t len, struct gate_buf *out);
/* hex must hold 65 bytes. */
void gate_sha256_hex(const void *data, size_t len, char hex[65]);
/* "250ms", "5s", "2m", "1h", "7d", or a bare number of seconds. Returns -1 on bad input. */
int gate_parse_duration_ms(const char *s, uint64_t *ms);
uint64_t gate_monotonic_ns(void);
uint64_t gate_realtime_ms(void);
/* RFC 3339 UTC with milliseconds: 2026-11-23T12:00:00.123Z; buf holds 32 bytes. */
void gate_rfc3339(uint64_t realtime_ms, char buf[32]);
/* n random bytes from getrandom. */
int gate_random_bytes(void *out, size_t n);
/* Random identifier: 32 lowercase hex characters (128 bits from getrandom). */
int gate_random_hex(char *out, size_t nbytes_random);
/* A call id: "c_" + 32 hex; out holds 40 bytes. */
void gate_new_call_id(char out[40]);
/* Write all of buf, retrying on EINTR and short writes. */
int gate_write_all(int fd, const void *buf, size_t len);
/* Read a whole file up to max bytes; *out is NUL-terminated and owned by the caller. */
int gate_read_file(const char *path, size_t max, char **out, size_t *len, struct gate_error *err);
/* Constant-time comparison of two byte strings (neither contents nor lengths leak). */
bool gate_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

/* ---- logging: one JSON object per line on stderr ------------------------------ */
void gate_log(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
