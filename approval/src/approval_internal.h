/* approval_internal.h: what the approval module's files share (private to approval/). */
#ifndef GATE_APPROVAL_INTERNAL_H
#define GATE_APPROVAL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "approval.h"
#include "approval_store.h"

#define DELIVERY_THREADS 2
#define WEBHOOK_MAX_ATTEMPTS 25
#define WEBHOOK_BACKOFF_BASE_MS 500
#define WEBHOOK_BACKOFF_MAX_MS 60000
#define WEBHOOK_CONNECT_TIMEOUT_MS 3000
#define WEBHOOK_IO_TIMEOUT_MS 5000
#define EXPIRY_TICK_MS 200

/* One webhook to deliver: the token lives only here (the store keeps its hash). */
struct delivery {
    char call_id[40];
    char token[72];  /* "gdt_" + 64 hex */
    char msg_id[40]; /* webhook-id: the same for every retry of this delivery */
    int attempt;     /* attempts made so far (including before a restart) */
    uint64_t due_ms; /* realtime ms of the next attempt */
    bool followup;   /* the outcome message after a decision or expiry (chat formats) */
};

struct approval {
    const struct approval_store_ops *ops;
    void *store;
    struct audit_log *audit;
    char *public_url;
    struct approval_hooks hooks;
    struct approval_config cfg; /* our own deep copy */
    unsigned char secret[256];  /* the decoded webhook signing key */
    int secret_len;             /* 0: none configured */

    pthread_mutex_t lock;
    pthread_cond_t wake; /* delivery queue, expiry timer, shutdown */
    pthread_cond_t runs_done;
    bool stopping;
    unsigned runs; /* approved calls running on worker threads */

    struct delivery *queue;
    size_t nq, capq;
    pthread_t senders[DELIVERY_THREADS];
    pthread_t timer;
    bool threads_started;
    struct ssl_ctx_st *tls; /* made at the first https:// delivery (delivery.c); guarded by lock */
};

/* ---- URLs, secrets, signatures, the HTTP client (webhook.c) ---------------------------- */
struct approval_url {
    char host[256];
    char port[8];
    char path[1024];
    bool tls; /* https:// */
};
/* Parse "http://host[:port][/path]" or "https://...". -1 if it is not such a URL. */
int approval_url_parse(const char *url, struct approval_url *u);
/* Decode a "whsec_<base64>" secret into key; returns its length, or -1. */
int approval_secret_decode(const char *whsec, unsigned char *key, size_t cap);
/* "v1,<base64(HMAC-SHA256(key, id.timestamp.body))>" into out (>= 64 bytes). */
int approval_sign_raw(const unsigned char *key, int key_len, const char *msg_id,
                      const char *timestamp, const char *body, size_t body_len, char *out,
                      size_t out_len);
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
/* A TLS client context that verifies peers against the system's CA store plus ca_file (may be
 * NULL). The caller owns *out (approval_tls_free). Returns -1 with why filled. */
int approval_tls_new(const char *ca_file, struct ssl_ctx_st **out, char *why, size_t why_len);
void approval_tls_free(struct ssl_ctx_st *ctx);
/* POST body to url with extra header lines ("Name: value\r\n..."); tls is needed for https://
 * URLs. *status is the HTTP status (0 if none was read). Returns -1 on a transport or TLS
 * error (why filled). */
int approval_http_post(const char *url, struct ssl_ctx_st *tls, const char *headers,
                       const char *body, int *status, char *why, size_t why_len);

/* ---- delivery (delivery.c) ------------------------------------------------------------- */
int approval_delivery_start(struct approval *a, struct gate_error *err);
/* Queue a new delivery of call_id's webhook with a fresh decision token, whose hash is
 * stored first. attempt = attempts already made. */
int approval_delivery_enqueue(struct approval *a, const char *call_id, int attempt,
                              struct gate_error *err);
/* With a->lock held: the first delivery of a new hold, whose token hash is already stored. */
int approval_delivery_push_locked(struct approval *a, const struct delivery *d);
void approval_delivery_stop(struct approval *a);
/* Shared store: take over webhooks and chat follow-ups whose delivering gateway died (its lease
 * ran out). */
int approval_delivery_adopt(struct approval *a, struct gate_error *err);

/* A store hook that appends one audit record (the transaction commits only if it is durable). */
struct audit_hook_ctx {
    struct audit_log *log;
    const char *event;
    const json_t *fields;
};
int approval_audit_hook(void *ctx, struct gate_error *err);
/* "gdt_" + 64 hex into token (72 bytes) and its SHA-256 hex into sha (65 bytes). */
int approval_new_token(char token[72], char sha[65]);

/* ---- transitions (approval.c) ------------------------------------------------------------ */
/* CAS from -> to with its audit record (event, fields) in one transaction, then tell the
 * on_change hook. Returns 1 changed, 0 not in `from`, -1 error. fields may be NULL. */
int approval_transition(struct approval *a, const char *call_id, const char *from, const char *to,
                        const struct store_update *upd, const char *event, json_t *fields,
                        struct gate_error *err);
/* Run an approved call on a worker thread (CAS approved -> started first). */
int approval_start_run(struct approval *a, const char *call_id, struct gate_error *err);
json_t *approval_row_json(const struct approval_row *r, bool with_arguments);
/* chat.c: the message asking for a decision, and the follow-up with the outcome, in a chat
 * format (not APPROVAL_FORMAT_STANDARD). */
json_t *approval_chat_message(enum approval_format f, const struct approval_row *r,
                              const char *approve_url);
json_t *approval_chat_followup(enum approval_format f, const struct approval_row *r);
/* Queue the follow-up message of a call that left pending (a shared store also keeps it due
 * until sent: approval_delivery_adopt). */
void approval_followup_enqueue(struct approval *a, const char *call_id);
/* Tell the on_change hook that call_id changed. */
void approval_notify(struct approval *a, const char *call_id);
bool approval_state_final(const char *state);

#endif
