/* config.c: the `approval:` section of the gateway's config file.
 *
 *   approval:
 *     webhook_url: https://approvals.example.org/hook   # default endpoint, https:// or http://
 *     webhook_secret: whsec_<base64>            # or webhook_secret_env: VAR_NAME
 *     webhook_ca_file: /etc/gatehouse/approvers-ca.pem   # trusted besides the system's CAs
 *     webhook_format: slack                     # or discord, or standard (the default)
 *     public_url: https://gate.example.org      # base of approval page links
 *     approvers: ...                            # identities: see agents/src/agents.c
 *
 * Every problem is reported with the line:column where it was written.
 */
#include <stdlib.h>
#include <string.h>

#include "approval_internal.h"

static int at(struct gate_error *err, const struct ynode *n, const char *fmt, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, what);
    return gate_err(err, GATE_E_CONFIG, "%d:%d: %s", n->loc.line, n->loc.col, msg);
}

static int scalar(const struct ynode *n, const char *key, const char **out, struct gate_error *err)
{
    if (n->kind != YNODE_SCALAR || !n->scalar || !*n->scalar)
        return at(err, n, "'approval.%s' must be a non-empty string", key);
    *out = n->scalar;
    return 0;
}

static int set_url(const struct ynode *n, struct approval_config *cfg, struct gate_error *err)
{
    const char *v = NULL;
    if (scalar(n, "webhook_url", &v, err) < 0) return -1;
    struct approval_url u;
    if (approval_url_parse(v, &u) < 0)
        return at(err, n,
                  "'approval.webhook_url' must be an https:// or http://host[:port]/path URL%s",
                  "");
    free(cfg->webhook_url);
    cfg->webhook_url = strdup(v);
    return cfg->webhook_url ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

static int set_secret(const struct ynode *n, const char *value, const char *origin,
                      struct approval_config *cfg, struct gate_error *err)
{
    unsigned char key[256];
    if (approval_secret_decode(value, key, sizeof(key)) <= 0)
        return at(err, n, "%s must be \"whsec_\" followed by base64 (1 to 256 bytes)", origin);
    free(cfg->webhook_secret);
    cfg->webhook_secret = strdup(value);
    return cfg->webhook_secret ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

static int set_secret_env(const struct ynode *n, struct approval_config *cfg,
                          struct gate_error *err)
{
    const char *name = NULL;
    if (scalar(n, "webhook_secret_env", &name, err) < 0) return -1;
    const char *v = getenv(name);
    if (!v || !*v) {
        gate_err(err, GATE_E_CONFIG,
                 "%d:%d: 'approval.webhook_secret_env': environment variable "
                 "'%s' is not set",
                 n->loc.line, n->loc.col, name);
        return -1;
    }
    char origin[300];
    snprintf(origin, sizeof(origin), "the value of $%s", name);
    return set_secret(n, v, origin, cfg, err);
}

/* Loaded once here so that a missing or unreadable file stops the gateway at start, not at the
 * first https:// delivery. */
static int set_ca_file(const struct ynode *n, struct approval_config *cfg, struct gate_error *err)
{
    const char *path = NULL;
    if (scalar(n, "webhook_ca_file", &path, err) < 0) return -1;
    struct ssl_ctx_st *tls = NULL;
    char why[400];
    if (approval_tls_new(path, &tls, why, sizeof(why)) < 0)
        return at(err, n, "'approval.webhook_ca_file': %s", why);
    approval_tls_free(tls);
    free(cfg->webhook_ca_file);
    cfg->webhook_ca_file = strdup(path);
    return cfg->webhook_ca_file ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

/* The base URL approvers reach the gateway at, without a trailing slash. */
static int set_public_url(const struct ynode *n, struct approval_config *cfg,
                          struct gate_error *err)
{
    const char *v = NULL;
    if (scalar(n, "public_url", &v, err) < 0) return -1;
    struct approval_url u;
    if (approval_url_parse(v, &u) < 0 || strpbrk(v, "?# \"'<>\\"))
        return at(err, n, "'approval.public_url' must be an https:// or http://host[:port] URL%s",
                  "");
    free(cfg->public_url);
    cfg->public_url = strndup(v, strlen(v) - (v[strlen(v) - 1] == '/'));
    return cfg->public_url ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

static int parse_keys(const struct ynode *node, struct approval_config *cfg, struct gate_error *err)
{
    const struct ynode *secret = ynode_get(node, "webhook_secret");
    for (size_t i = 0; i < node->n; i++) {
        const char *k = node->keys[i];
        const struct ynode *v = node->items[i];
        int rc = 0;
        if (strcmp(k, "webhook_url") == 0) {
            rc = set_url(v, cfg, err);
        } else if (strcmp(k, "webhook_secret") == 0) {
            const char *s = NULL;
            rc = scalar(v, k, &s, err);
            if (rc == 0) rc = set_secret(v, s, "'approval.webhook_secret'", cfg, err);
        } else if (strcmp(k, "webhook_secret_env") == 0) {
            if (secret)
                return at(err, v,
                          "give either 'approval.webhook_secret' or "
                          "'approval.webhook_secret_env', not both%s",
                          "");
            rc = set_secret_env(v, cfg, err);
        } else if (strcmp(k, "webhook_format") == 0) {
            const char *f = NULL;
            rc = scalar(v, k, &f, err);
            if (rc == 0 && strcmp(f, "slack") == 0)
                cfg->webhook_format = APPROVAL_FORMAT_SLACK;
            else if (rc == 0 && strcmp(f, "discord") == 0)
                cfg->webhook_format = APPROVAL_FORMAT_DISCORD;
            else if (rc == 0 && strcmp(f, "standard") != 0)
                rc = at(err, v, "'approval.webhook_format' must be standard, slack or discord%s",
                        "");
        } else if (strcmp(k, "public_url") == 0) {
            rc = set_public_url(v, cfg, err);
        } else if (strcmp(k, "webhook_ca_file") == 0) {
            rc = set_ca_file(v, cfg, err);
        } else if (strcmp(k, "approvers") == 0) {
            rc = 0; /* identities: read by the identity module (agents.h) */
        } else {
            const struct policy_loc *loc = node->key_locs ? &node->key_locs[i] : &v->loc;
            return gate_err(
                err, GATE_E_CONFIG,
                "%d:%d: unknown key 'approval.%s' (known: "
                "webhook_url, webhook_secret, webhook_secret_env, webhook_ca_file, webhook_format, "
                "public_url, approvers)",
                loc->line, loc->col, k);
        }
        if (rc < 0) return -1;
    }
    if (cfg->webhook_url && !cfg->webhook_secret)
        return at(err, node,
                  "'approval.webhook_url' needs a signing secret "
                  "('approval.webhook_secret' or 'approval.webhook_secret_env')%s",
                  "");
    return 0;
}

int approval_config_parse(const struct ynode *node, struct approval_config *cfg,
                          struct gate_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!node) return 0;
    if (node->kind != YNODE_MAP) return at(err, node, "'%s' must be a mapping", "approval");
    if (parse_keys(node, cfg, err) < 0) {
        approval_config_free(cfg);
        return -1;
    }
    return 0;
}

void approval_config_free(struct approval_config *cfg)
{
    if (!cfg) return;
    free(cfg->webhook_url);
    free(cfg->webhook_secret);
    free(cfg->webhook_ca_file);
    free(cfg->public_url);
    free(cfg->database);
    if (cfg->database_password)
        explicit_bzero(cfg->database_password, strlen(cfg->database_password));
    free(cfg->database_password);
    memset(cfg, 0, sizeof(*cfg));
}
