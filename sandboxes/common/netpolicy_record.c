/* netpolicy_record.c: what a call did on the network and which programs it ran, as the JSON of
 * its record (the events come from the BPF programs' ring buffer: see netpolicy.c). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "netpolicy_internal.h"

json_t *net_event_json(const struct netpol_event *e)
{
    static const char *const ops[] = {"?", "connect", "sendmsg", "socket"};
    char addr[INET6_ADDRSTRLEN] = "";
    const char *proto = e->proto == IPPROTO_TCP ? "tcp" : e->proto == IPPROTO_UDP ? "udp" : NULL;
    json_t *j = json_pack("{s:s}", "op", ops[e->op < 4 ? e->op : 0]);
    if (e->op == NETPOL_OP_SOCKET) {
        json_object_set_new(j, "family", json_string(e->family == AF_INET6 ? "inet6" : "inet"));
        json_object_set_new(j, "type", json_integer(e->type));
        json_object_set_new(j, "protocol", json_integer(e->proto));
        return j;
    }
    inet_ntop(e->family == AF_INET6 ? AF_INET6 : AF_INET, e->addr, addr, sizeof(addr));
    json_object_set_new(j, "proto", proto ? json_string(proto) : json_integer(e->proto));
    json_object_set_new(j, "addr", json_string(addr));
    json_object_set_new(j, "port", json_integer(e->port));
    return j;
}

/* Agent-controlled bytes as a JSON string. Valid UTF-8 is kept as it is (jansson escapes quotes,
 * backslashes and control characters); otherwise every byte from 0x80 up is written as the
 * text \xNN and *exact is cleared, so the caller adds the exact bytes in base64. cut: the text
 * was cut at a byte count, which may have split its last character: that part is dropped. */
static json_t *text_json(const char *s, bool cut, bool *exact)
{
    size_t len = strlen(s), keep = len;
    /* A cut inside a character leaves a lead byte and 0-2 continuation bytes at the end. */
    for (size_t back = 1; cut && back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xc0) == 0xc0) {
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (need > back) keep = len - back;
            break;
        }
        if ((c & 0xc0) != 0x80) break;
    }
    json_t *j = json_stringn(s, keep);
    if (j) return j;
    *exact = false;
    struct gate_buf b = {0};
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80)
            gate_buf_append(&b, &s[i], 1);
        else
            gate_buf_printf(&b, "\\x%02x", c);
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    gate_buf_free(&b);
    return j;
}

static json_t *base64_json(const char *s)
{
    struct gate_buf b = {0};
    json_t *j = gate_base64(s, strlen(s), &b) == 0 ? json_stringn(b.data, b.len) : NULL;
    gate_buf_free(&b);
    return j;
}

json_t *net_exec_json(const struct netpol_exec *x)
{
    bool path_exact = true, argv_exact = true;
    json_t *j = json_pack("{s:o}", "path", text_json(x->path, false, &path_exact));
    json_t *argv = json_array(), *cut = json_array();
    for (unsigned i = 0; i < x->argc; i++) {
        bool truncated = x->truncated & (1u << i);
        json_array_append_new(argv, text_json(x->argv[i], truncated, &argv_exact));
        if (truncated) json_array_append_new(cut, json_integer(i));
    }
    json_object_set_new(j, "argv", argv);
    if (json_array_size(cut))
        json_object_set_new(j, "argv_truncated", cut);
    else
        json_decref(cut);
    if (x->more) json_object_set_new(j, "argv_more", json_true());
    if (!path_exact) json_object_set_new(j, "path_base64", base64_json(x->path));
    if (!argv_exact) {
        json_t *b64 = json_array();
        for (unsigned i = 0; i < x->argc; i++)
            json_array_append_new(b64, base64_json(x->argv[i]));
        json_object_set_new(j, "argv_base64", b64);
    }
    return j;
}
