/* config.c: the gateway's config file (--config) and the rules that follow from it.
 *
 *   approval:  webhook and signing secret (approval.h); approval.approvers: identities
 *   agents:    who may call which tools, with which quotas (agents.h)
 *   defaults:  quotas for agents that set none
 *   metrics:   {public: false}
 *   database:  postgresql://... : held calls shared by several gateways (approval.h)
 *   node:      this gateway's id in its audit records and anchors (default: kept in --state-dir)
 *   audit:     {anchor_file: PATH}: append the audit chain head there (audit.h)
 *
 * A file that holds a secret in clear (a literal token or webhook secret) must not be readable
 * by group or others, as OpenSSH refuses private keys: a tool in the cheapest tier runs as
 * another uid and must not read it. With no agent configured every caller is "anonymous", so the
 * gateway refuses to listen anywhere but loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway.h"

static const char *const top_keys[] = {"approval", "agents", "defaults", "metrics",
                                       "database", "node",   "audit",    NULL};

static int check_top_keys(const struct ynode *root, const char *file, struct gate_error *err)
{
    if (root->kind != YNODE_MAP)
        return gate_err(err, GATE_E_CONFIG, "%s: the config must be a mapping", file);
    for (size_t i = 0; i < root->n; i++) {
        bool ok = false;
        for (size_t k = 0; top_keys[k] && !ok; k++)
            ok = strcmp(root->keys[i], top_keys[k]) == 0;
        struct policy_loc at = root->key_locs ? root->key_locs[i] : root->items[i]->loc;
        if (!ok)
            return gate_err(err, GATE_E_CONFIG,
                            "%s:%d:%d: unknown key '%s' (known: approval, agents, defaults, "
                            "metrics, database, node, audit)",
                            file, at.line, at.col, root->keys[i]);
    }
    return 0;
}

static int check_mode(const char *file, bool holds_secret, struct gate_error *err)
{
    struct stat st;
    if (stat(file, &st) < 0) return gate_err_errno(err, GATE_E_CONFIG, errno, "stat %s", file);
    if (!holds_secret || (st.st_mode & 077) == 0) return 0;
    return gate_err(err, GATE_E_CONFIG,
                    "%s holds a secret in clear (a literal token or webhook secret) and is "
                    "readable by group or others (mode %04o): run chmod 600 %s, or use "
                    "token_sha256 / token_env / webhook_secret_env instead",
                    file, (unsigned)(st.st_mode & 07777), file);
}

/* node: ID and audit: {anchor_file: PATH}. */
static int audit_keys(struct gw *gw, const struct ynode *root, const char *file,
                      struct gate_error *err)
{
    const struct ynode *node = ynode_get(root, "node"), *audit = ynode_get(root, "audit");
    if (node && (node->kind != YNODE_SCALAR || !node->scalar || !audit_node_valid(node->scalar)))
        return gate_err(err, GATE_E_CONFIG, "%s:%d:%d: 'node' must be 1 to 64 of A-Z a-z 0-9 . _ -",
                        file, node->loc.line, node->loc.col);
    if (node && !(gw->node = strdup(node->scalar))) return gate_err(err, GATE_E_NOMEM, NULL);
    if (!audit) return 0;
    for (size_t i = 0; audit->kind == YNODE_MAP && i < audit->n; i++) {
        const struct ynode *v = audit->items[i];
        if (strcmp(audit->keys[i], "anchor_file") != 0)
            return gate_err(err, GATE_E_CONFIG,
                            "%s:%d:%d: unknown key 'audit.%s' (known: anchor_file)", file,
                            v->loc.line, v->loc.col, audit->keys[i]);
        if (v->kind != YNODE_SCALAR || !v->scalar || v->scalar[0] != '/')
            return gate_err(err, GATE_E_CONFIG,
                            "%s:%d:%d: 'audit.anchor_file' must be an absolute path", file,
                            v->loc.line, v->loc.col);
        if (!(gw->anchor_file = strdup(v->scalar))) return gate_err(err, GATE_E_NOMEM, NULL);
    }
    if (audit->kind != YNODE_MAP)
        return gate_err(err, GATE_E_CONFIG, "%s:%d:%d: 'audit' must be a mapping {anchor_file}",
                        file, audit->loc.line, audit->loc.col);
    return 0;
}

bool gw_listen_loopback(const char *listen)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : 0;
    if (!colon || n >= sizeof(host)) return false;
    memcpy(host, listen, n);
    host[n] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        host[n - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return false;
}

int gw_config_load(struct gw *gw, struct approval_config *approval, struct gate_error *err)
{
    const char *file = gw->opt.config ? gw->opt.config : "(no config)";
    struct ynode *root = NULL;
    memset(approval, 0, sizeof(*approval));
    if (gw->opt.config &&
        (ynode_load_file(gw->opt.config, &root, err) < 0 || check_top_keys(root, file, err) < 0)) {
        ynode_free(root);
        return -1;
    }
    bool literal = false;
    int rc = agents_load(root, file, &gw->agents, &literal, err);
    if (rc == 0 && approval_config_parse(ynode_get(root, "approval"), approval, err) < 0)
        rc = gate_err_wrap(err, "%s", file);
    if (rc == 0 && approval_database_parse(ynode_get(root, "database"), approval, err) < 0)
        rc = gate_err_wrap(err, "%s", file);
    if (rc == 0) rc = audit_keys(gw, root, file, err);
    if (ynode_get(ynode_get(root, "approval"), "webhook_secret")) literal = true;
    /* A database URI with a password in it (user:PASS@ or password=) is a literal secret too:
     * with it a tool could reach PostgreSQL (a Unix socket is not filtered) and approve. */
    const char *db = approval->database, *auth = db ? strstr(db, "://") : NULL;
    if (auth) {
        auth += 3;
        size_t len = strcspn(auth, "/?#"); /* the authority: [user[:password]@]host[:port] */
        const char *at = memchr(auth, '@', len);
        if ((at && memchr(auth, ':', (size_t)(at - auth))) || strstr(db, "password="))
            literal = true;
    }
    ynode_free(root);
    if (rc == 0 && gw->opt.config) rc = check_mode(gw->opt.config, literal, err);
    if (rc == 0 && !agents_configured(gw->agents)) {
        if (!gw_listen_loopback(gw->opt.listen))
            rc = gate_err(err, GATE_E_CONFIG,
                          "--listen %s is not a loopback address and no agent is configured: "
                          "every caller would be 'anonymous'. Add agents: to the config "
                          "(gatehouse agents add NAME prints a token and its token_sha256)",
                          gw->opt.listen);
        else
            gate_log("warn", "gateway.anonymous",
                     "no agents configured: every caller is the agent 'anonymous' with every "
                     "tool; serving loopback only");
    }
    if (rc < 0) approval_config_free(approval);
    return rc;
}

int gw_state_dir(const char *dir, struct gate_error *err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return gate_err_errno(err, GATE_E_CONFIG, errno, "mkdir %s", dir);
    struct stat st;
    if (stat(dir, &st) < 0) return gate_err_errno(err, GATE_E_CONFIG, errno, "stat %s", dir);
    if (!S_ISDIR(st.st_mode)) return gate_err(err, GATE_E_CONFIG, "%s is not a directory", dir);
    /* The audit log, the approval queue (arguments of held calls) and the tiers' files live
     * here: nothing of it is for any other uid, tools included. */
    if ((st.st_mode & 077) != 0) {
        if (chmod(dir, 0700) < 0)
            return gate_err_errno(err, GATE_E_CONFIG, errno, "chmod 700 %s", dir);
        gate_log("warn", "gateway.state_dir", "%s had mode %04o; tightened to 0700", dir,
                 (unsigned)(st.st_mode & 07777));
    }
    return 0;
}
