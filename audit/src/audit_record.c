/* audit_record.c: checking one audit record line against the byte layout.
 *
 * The check is deliberately byte-level first (fixed-length prev/hash suffix, "{"seq":"
 * prefix) and JSON second, so a line is accepted only if the writer could have produced
 * it: the hashed prefix is exactly the line minus its last 75 bytes.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit_internal.h"

static bool is_hex64(const char *p)
{
    for (int i = 0; i < 64; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

static enum record_status malformed(char *why, size_t why_len, const char *what)
{
    if (why) snprintf(why, why_len, "malformed record: %s", what);
    return RECORD_MALFORMED;
}

/* The first four members must be seq, ts, mono_ns, event in that order, with the right types;
 * jansson keeps insertion (= document) order. */
static const char *check_members(json_t *obj, uint64_t *seq, char event[64], char node[65])
{
    static const char *const order[] = {"seq", "ts", "mono_ns", "event"};
    void *it = json_object_iter(obj);
    for (size_t i = 0; i < 4; i++, it = json_object_iter_next(obj, it)) {
        if (!it || strcmp(json_object_iter_key(it), order[i]) != 0)
            return "members seq, ts, mono_ns, event are not first and in order";
    }
    json_t *s = json_object_get(obj, "seq");
    if (!json_is_integer(s) || json_integer_value(s) < 1) return "seq is not a positive integer";
    if (!json_is_string(json_object_get(obj, "ts"))) return "ts is not a string";
    json_t *m = json_object_get(obj, "mono_ns");
    if (!json_is_integer(m) || json_integer_value(m) < 0)
        return "mono_ns is not a non-negative integer";
    json_t *e = json_object_get(obj, "event");
    if (!json_is_string(e)) return "event is not a string";
    *seq = (uint64_t)json_integer_value(s);
    snprintf(event, 64, "%s", json_string_value(e));
    json_t *n = json_object_get(obj, "node");
    snprintf(node, 65, "%s", json_is_string(n) ? json_string_value(n) : "");
    return NULL;
}

enum record_status check_record(const char *line, size_t len, struct record_info *info, char *why,
                                size_t why_len)
{
    static const char hash_key[] = ",\"hash\":\"";
    static const char prev_key[] = ",\"prev\":\"";
    static const char seq_key[] = "{\"seq\":";

    if (len > AUDIT_MAX_LINE) return malformed(why, why_len, "line too long");
    if (len < sizeof(seq_key) - 1 + AUDIT_PREV_SUFFIX_LEN + AUDIT_HASH_SUFFIX_LEN)
        return malformed(why, why_len, "line too short");
    if (memchr(line, '\0', len)) return malformed(why, why_len, "NUL byte in line");
    if (memcmp(line, seq_key, sizeof(seq_key) - 1) != 0)
        return malformed(why, why_len, "does not start with {\"seq\":");

    size_t hashed_len = len - AUDIT_HASH_SUFFIX_LEN;
    const char *h = line + hashed_len;
    if (memcmp(h, hash_key, sizeof(hash_key) - 1) != 0 || !is_hex64(h + 9) || h[73] != '"' ||
        h[74] != '}')
        return malformed(why, why_len, "does not end with ,\"hash\":\"<64 hex>\"}");
    const char *p = h - AUDIT_PREV_SUFFIX_LEN;
    if (memcmp(p, prev_key, sizeof(prev_key) - 1) != 0 || !is_hex64(p + 9) || p[73] != '"')
        return malformed(why, why_len, "prev is not the member before hash");

    /* Duplicate keys are refused so nobody can shadow seq, prev or hash with a second copy. */
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return malformed(why, why_len, "not a JSON object");
    }
    uint64_t seq = 0;
    char event[64], node[65];
    const char *bad = check_members(obj, &seq, event, node);
    json_decref(obj);
    if (bad) return malformed(why, why_len, bad);

    info->seq = seq;
    memcpy(info->event, event, sizeof(info->event));
    memcpy(info->node, node, sizeof(info->node));
    memcpy(info->prev, p + 9, 64);
    info->prev[64] = '\0';
    memcpy(info->hash, h + 9, 64);
    info->hash[64] = '\0';

    char computed[65];
    gate_sha256_hex(line, hashed_len, computed);
    if (memcmp(computed, info->hash, 64) != 0) {
        if (why) snprintf(why, why_len, "hash does not match the record's contents");
        return RECORD_HASH_MISMATCH;
    }
    if (why && why_len) why[0] = '\0';
    return RECORD_OK;
}
