/* fuzz_framing: the front door's framing checks (http_framing.c) on arbitrary bytes: a head is
 * refused, incomplete, or complete within the bytes given; a chunked body after it is parsed
 * incrementally in pieces of every size and must reach the same verdict as in one piece. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static bool framing_code(enum gate_code c)
{
    return c == GATE_E_BAD_FRAMING || c == GATE_E_URI_TOO_LONG || c == GATE_E_HEADERS_TOO_LARGE ||
           c == GATE_E_HTTP_VERSION || c == GATE_E_BODY_TOO_LARGE;
}

static int chunks_in_pieces(const char *buf, size_t len, size_t piece, size_t *consumed)
{
    struct http_chunks c = {0};
    struct gate_error err = {0};
    *consumed = 0;
    while (*consumed < len) {
        size_t n = len - *consumed < piece ? len - *consumed : piece, used = 0;
        int r = http_chunks_feed(&c, buf + *consumed, n, &used, &err);
        if (used > n) abort();
        *consumed += used;
        if (r < 0 && !framing_code(err.code) && err.code != GATE_E_HEADERS_TOO_LARGE) abort();
        if (r != 0) return r;
        if (used < n) abort(); /* 0 means every byte given belongs to the body */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_head_info info;
    struct gate_error err = {0};
    int r = http_head_check(buf, size, &info, &err);
    if (r < 0 && !framing_code(err.code)) abort();
    if (r == 0 && size >= HTTP_MAX_HEAD) abort(); /* an incomplete head is bounded */
    if (r != 1) return 0;
    if (info.head_len > size || info.head_len > HTTP_MAX_HEAD) abort();
    if (info.body == HTTP_BODY_LENGTH && info.content_length > HTTP_MAX_BODY) abort();
    if (info.body != HTTP_BODY_CHUNKED) return 0;
    size_t whole_used, piece_used;
    int whole = chunks_in_pieces(buf + info.head_len, size - info.head_len, SIZE_MAX, &whole_used);
    int piece = chunks_in_pieces(buf + info.head_len, size - info.head_len, 3, &piece_used);
    if (whole != piece || (whole == 1 && whole_used != piece_used)) abort();
    return 0;
}
