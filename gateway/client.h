/* client.h: a minimal HTTP/1.1 client for the CLI commands that talk to a running gateway. */
#ifndef GATE_CLIENT_H
#define GATE_CLIENT_H

#include "gate.h"

/* A connected socket to base_url ("http://HOST[:PORT][/...]"), with a 150 s read timeout;
 * owned by the caller. -1 with err set on failure. */
int gw_client_connect(const char *base_url, struct gate_error *err);

/* Send one request to base_url ("http://HOST:PORT") + path with Connection: close.
 * body may be NULL; authorization is the full header value or NULL. On success *status is
 * the HTTP status and resp holds the body (owned by the caller). */
int gw_client_request(const char *base_url, const char *method, const char *path,
                      const char *authorization, const char *body, int *status,
                      struct gate_buf *resp, struct gate_error *err);

#endif
