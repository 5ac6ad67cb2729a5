/* agents.c: identities from the gateway config, authentication, grants.
 *
 *   agents:
 *     billing-bot:
 *       token_sha256: 9f86d0...      # or token_env: VAR, or token: literal (warned)
 *       tools: [ledger, "echo*"]     # globs (fnmatch); default: none
 *       arguments:                   # per tool glob: an extra schema the call must satisfy
 *         ledger: {type: object, properties: {amount: {maximum: 100}}, additionalProperties: true}
 *       max_concurrent: 2            # quotas; defaults from `defaults:`, else unlimited
 *       rate: 60                     # calls per minute (token bucket, burst = rate)
 *       max_pending: 10              # held calls awaiting approval
 *   defaults: {max_concurrent: 8, rate: 600, max_pending: 100}
 *   metrics: {public: false}
 *   approval:
 *     approvers:
 *       alice: {token_env: ALICE_TOKEN, tools: [ledger]}   # or a literal token (warned)
 */
#include <fnmatch.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agents_internal.h"

#define MIN_TOKEN_LEN 16
#define MAX_NAME 64

static int cfg_err(struct gate_error *err, const char *file, struct policy_loc loc, const char *fmt,
                   const char *a, const char *b)
{
    char msg[600];
    snprintf(msg, sizeof(msg), fmt, a, b);
    return gate_err(err, GATE_E_CONFIG, "%s:%d:%d: %s", file, loc.line, loc.col, msg);
}

static struct policy_loc key_loc(const struct ynode *map, size_t i)
{
    return map->key_locs ? map->key_locs[i] : map->items[i]->loc;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (i > 0 && (c == '_' || c == '.' || c == '-'));
        if (!ok) return false;
    }
    return strcmp(s, "anonymous") != 0;
}

static bool hex_digest(const char *s, unsigned char out[32])
{
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                         : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                                : 16;
            if (d == 16) return false;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static const char *scalar_of(const struct ynode *n)
{
    return n && n->kind == YNODE_SCALAR && n->scalar ? n->scalar : NULL;
}

/* One identity's token: exactly one of token_sha256, token_env, token. */
static int read_token(const struct ynode *map, const char *who, const char *file,
                      unsigned char sha[32], bool *literal, struct gate_error *err)
{
    const struct ynode *h = ynode_get(map, "token_sha256"), *e = ynode_get(map, "token_env"),
                       *t = ynode_get(map, "token");
    if ((h != NULL) + (e != NULL) + (t != NULL) != 1)
        return cfg_err(err, file, map->loc,
                       "%s needs exactly one of token_sha256, token_env, token%s", who, "");
    const char *v = scalar_of(h ? h : e ? e : t);
    const struct ynode *at = h ? h : e ? e : t;
    if (!v) return cfg_err(err, file, at->loc, "the token of %s must be a string%s", who, "");
    if (h) {
        if (!hex_digest(v, sha))
            return cfg_err(err, file, at->loc, "token_sha256 of %s must be 64 hex digits%s", who,
                           "");
        return 0;
    }
    const char *token = v;
    if (e) {
        token = getenv(v);
        if (!token || !*token)
            return cfg_err(err, file, at->loc,
                           "token_env of %s: environment variable '%s' is not set", who, v);
    } else {
        *literal = true;
        gate_log("warn", "config.literal_token",
                 "%s:%d:%d: %s has a literal token in the config; prefer token_sha256 or token_env",
                 file, at->loc.line, at->loc.col, who);
    }
    if (strlen(token) < MIN_TOKEN_LEN)
        return cfg_err(err, file, at->loc, "the token of %s is shorter than 16 characters%s", who,
                       "");
    SHA256((const unsigned char *)token, strlen(token), sha);
    return 0;
}

static int read_count(const struct ynode *n, const char *what, const char *file, unsigned *out,
                      struct gate_error *err)
{
    const char *v = scalar_of(n);
    char *end = NULL;
    unsigned long x = v ? strtoul(v, &end, 10) : 0;
    if (!v || n->quoted || !*v || *end || v[0] == '-' || x == 0 || x > 1000000)
        return cfg_err(err, file, n->loc, "'%s' must be a whole number from 1 to 1000000%s", what,
                       "");
    *out = (unsigned)x;
    return 0;
}

static int read_globs(const struct ynode *n, const char *what, const char *file, char ***out,
                      struct gate_error *err)
{
    if (n->kind != YNODE_SEQ)
        return cfg_err(err, file, n->loc, "'%s' must be a list of tool names or globs%s", what, "");
    char **v = calloc(n->n + 1, sizeof(*v));
    if (!v) return gate_err(err, GATE_E_NOMEM, NULL);
    *out = v;
    for (size_t i = 0; i < n->n; i++) {
        const char *g = scalar_of(n->items[i]);
        if (!g || !*g)
            return cfg_err(err, file, n->items[i]->loc, "'%s' entries must be strings%s", what, "");
        if (!(v[i] = strdup(g))) return gate_err(err, GATE_E_NOMEM, NULL);
    }
    return 0;
}

static int read_quotas(const struct ynode *map, const char *file, struct quotas *q,
                       struct gate_error *err)
{
    const struct ynode *n;
    if ((n = ynode_get(map, "max_concurrent")) &&
        read_count(n, "max_concurrent", file, &q->max_concurrent, err) < 0)
        return -1;
    if ((n = ynode_get(map, "rate")) && read_count(n, "rate", file, &q->rate_per_min, err) < 0)
        return -1;
    if ((n = ynode_get(map, "max_pending")) &&
        read_count(n, "max_pending", file, &q->max_pending, err) < 0)
        return -1;
    return 0;
}

static int check_keys(const struct ynode *map, const char *what, const char *file,
                      const char *const *known, struct gate_error *err)
{
    if (map->kind != YNODE_MAP)
        return cfg_err(err, file, map->loc, "%s must be a mapping%s", what, "");
    for (size_t i = 0; i < map->n; i++) {
        bool ok = false;
        for (size_t k = 0; known[k] && !ok; k++)
            ok = strcmp(map->keys[i], known[k]) == 0;
        if (!ok)
            return cfg_err(err, file, key_loc(map, i), "unknown key '%s' in %s", map->keys[i],
                           what);
    }
    return 0;
}

static int read_grants(const struct ynode *n, struct agent *ag, const char *file,
                       struct gate_error *err)
{
    if (n->kind != YNODE_MAP)
        return cfg_err(err, file, n->loc,
                       "'arguments' of agent '%s' must map tool globs to schemas%s", ag->name, "");
    ag->grants = calloc(n->n ? n->n : 1, sizeof(*ag->grants));
    if (!ag->grants) return gate_err(err, GATE_E_NOMEM, NULL);
    for (size_t i = 0; i < n->n; i++) {
        struct grant *g = &ag->grants[ag->ngrants++];
        struct policy_diags diags = {0};
        g->glob = strdup(n->keys[i]);
        g->schema = policy_schema_load(n->items[i], file, &diags);
        if (!g->schema) {
            gate_err(err, GATE_E_CONFIG, "%s", diags.n ? diags.msgs[0] : "invalid schema");
            policy_diags_free(&diags);
            return -1;
        }
        policy_diags_free(&diags);
        if (!g->glob) return gate_err(err, GATE_E_NOMEM, NULL);
    }
    return 0;
}

static int read_agent(const char *name, const struct ynode *map, const char *file, struct agent *ag,
                      bool *literal, struct gate_error *err)
{
    static const char *const known[] = {"token_sha256", "token_env",   "token",
                                        "tools",        "arguments",   "max_concurrent",
                                        "rate",         "max_pending", NULL};
    char who[128];
    snprintf(who, sizeof(who), "agent '%s'", name);
    ag->name = strdup(name);
    if (!ag->name) return gate_err(err, GATE_E_NOMEM, NULL);
    pthread_mutex_init(&ag->lock, NULL);
    if (check_keys(map, who, file, known, err) < 0 ||
        read_token(map, who, file, ag->token_sha, literal, err) < 0 ||
        read_quotas(map, file, &ag->quotas, err) < 0)
        return -1;
    const struct ynode *t = ynode_get(map, "tools"), *a = ynode_get(map, "arguments");
    if (t && read_globs(t, "tools", file, &ag->tools, err) < 0) return -1;
    if (a && read_grants(a, ag, file, err) < 0) return -1;
    return 0;
}

static int read_approver(const char *name, const struct ynode *v, const char *file,
                         struct approver *ap, bool *literal, struct gate_error *err)
{
    static const char *const known[] = {"token_sha256", "token_env", "token", "tools", NULL};
    char who[128];
    snprintf(who, sizeof(who), "approver '%s'", name);
    ap->name = strdup(name);
    if (!ap->name) return gate_err(err, GATE_E_NOMEM, NULL);
    if (v->kind == YNODE_SCALAR) { /* name: token, the short form: a literal token */
        struct ynode map = {.kind = YNODE_MAP, .loc = v->loc, .n = 1};
        char *keys[] = {"token"};
        const struct ynode *items[] = {v};
        map.keys = keys;
        map.items = (struct ynode **)items;
        return read_token(&map, who, file, ap->token_sha, literal, err);
    }
    if (check_keys(v, who, file, known, err) < 0 ||
        read_token(v, who, file, ap->token_sha, literal, err) < 0)
        return -1;
    const struct ynode *t = ynode_get(v, "tools");
    return t ? read_globs(t, "tools", file, &ap->tools, err) : 0;
}

static int read_agents(const struct ynode *n, const char *file, struct agents *a, bool *literal,
                       struct gate_error *err)
{
    if (n->kind != YNODE_MAP)
        return cfg_err(err, file, n->loc, "'agents' must map agent names to settings%s", "", "");
    a->agents = calloc(n->n ? n->n : 1, sizeof(*a->agents));
    if (!a->agents) return gate_err(err, GATE_E_NOMEM, NULL);
    for (size_t i = 0; i < n->n; i++) {
        if (!valid_name(n->keys[i]))
            return cfg_err(err, file, key_loc(n, i),
                           "agent name '%s' must be 1-64 of [A-Za-z0-9_.-], start with a letter or "
                           "digit, and not be 'anonymous'%s",
                           n->keys[i], "");
        struct agent *ag = &a->agents[a->nagents++];
        if (read_agent(n->keys[i], n->items[i], file, ag, literal, err) < 0) return -1;
    }
    return 0;
}

static int read_approvers(const struct ynode *n, const char *file, struct agents *a, bool *literal,
                          struct gate_error *err)
{
    if (n->kind != YNODE_MAP)
        return cfg_err(err, file, n->loc, "'approval.approvers' must map names to tokens%s", "",
                       "");
    a->approvers = calloc(n->n ? n->n : 1, sizeof(*a->approvers));
    if (!a->approvers) return gate_err(err, GATE_E_NOMEM, NULL);
    for (size_t i = 0; i < n->n; i++) {
        if (!valid_name(n->keys[i]))
            return cfg_err(err, file, key_loc(n, i),
                           "approver name '%s' must be 1-64 of [A-Za-z0-9_.-]%s", n->keys[i], "");
        struct approver *ap = &a->approvers[a->napprovers++];
        if (read_approver(n->keys[i], n->items[i], file, ap, literal, err) < 0) return -1;
    }
    return 0;
}

/* A token must name one identity: two with the same token could not be told apart. */
static int check_unique_tokens(const struct agents *a, const char *file, struct gate_error *err)
{
    size_t n = a->nagents + a->napprovers;
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++) {
            const unsigned char *x =
                i < a->nagents ? a->agents[i].token_sha : a->approvers[i - a->nagents].token_sha;
            const unsigned char *y =
                k < a->nagents ? a->agents[k].token_sha : a->approvers[k - a->nagents].token_sha;
            if (memcmp(x, y, 32) == 0)
                return gate_err(err, GATE_E_CONFIG, "%s: two identities share one token", file);
        }
    return 0;
}

int agents_load(const struct ynode *root, const char *file, struct agents **out,
                bool *literal_secret, struct gate_error *err)
{
    struct agents *a = calloc(1, sizeof(*a));
    if (!a) return gate_err(err, GATE_E_NOMEM, NULL);
    *literal_secret = false;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->anonymous.lock, NULL);
    a->anonymous.name = "anonymous";
    const struct ynode *n;
    int rc = 0;
    if (root && (n = ynode_get(root, "defaults"))) {
        static const char *const known[] = {"max_concurrent", "rate", "max_pending", NULL};
        rc = check_keys(n, "defaults", file, known, err);
        if (rc == 0) rc = read_quotas(n, file, &a->defaults, err);
    }
    if (rc == 0 && root && (n = ynode_get(root, "metrics"))) {
        static const char *const known[] = {"public", NULL};
        const char *v = scalar_of(ynode_get(n, "public"));
        rc = check_keys(n, "metrics", file, known, err);
        if (rc == 0 && v && strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
            rc = cfg_err(err, file, ynode_get(n, "public")->loc,
                         "'metrics.public' must be true or false%s", "", "");
        a->metrics_public = v && strcmp(v, "true") == 0;
    }
    if (rc == 0 && root && (n = ynode_get(root, "agents")))
        rc = read_agents(n, file, a, literal_secret, err);
    if (rc == 0 && root && (n = ynode_get(ynode_get(root, "approval"), "approvers")))
        rc = read_approvers(n, file, a, literal_secret, err);
    if (rc == 0) rc = check_unique_tokens(a, file, err);
    if (rc < 0) {
        agents_free(a);
        return -1;
    }
    for (size_t i = 0; i < a->nagents; i++)
        quotas_fill(&a->agents[i].quotas, &a->defaults);
    a->anonymous.quotas = a->defaults;
    *out = a;
    return 0;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void agents_free(struct agents *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->nagents; i++) {
        struct agent *ag = &a->agents[i];
        free(ag->name);
        free_strv(ag->tools);
        for (size_t k = 0; k < ag->ngrants; k++) {
            free(ag->grants[k].glob);
            policy_schema_destroy(ag->grants[k].schema);
        }
        free(ag->grants);
        pthread_mutex_destroy(&ag->lock);
    }
    for (size_t i = 0; i < a->napprovers; i++) {
        free(a->approvers[i].name);
        free_strv(a->approvers[i].tools);
    }
    if (a->agents) explicit_bzero(a->agents, a->nagents * sizeof(*a->agents)); /* none: NULL */
    free(a->agents);
    free(a->approvers);
    pthread_mutex_destroy(&a->anonymous.lock);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

bool agents_configured(const struct agents *a)
{
    return a && a->nagents > 0;
}

size_t agents_count(const struct agents *a)
{
    return a ? a->nagents : 0;
}

bool agents_metrics_public(const struct agents *a)
{
    return a && a->metrics_public;
}

/* ---- authentication ---------------------------------------------------------------------- */
static const char *bearer(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

static void count_failure(struct agents *a, int reason)
{
    pthread_mutex_lock(&a->lock);
    a->auth_failures[reason]++;
    pthread_mutex_unlock(&a->lock);
}

int agents_authenticate(struct agents *a, const char *authorization, struct principal *p,
                        struct gate_error *err)
{
    const char *token = bearer(authorization);
    *p = (struct principal){
        .kind = PRINCIPAL_ANONYMOUS, .name = "anonymous", .agent = &a->anonymous};
    if (!token) {
        if (!agents_configured(a)) return 0;
        count_failure(a, AUTH_MISSING);
        return gate_err(err, GATE_E_UNAUTHORIZED, "an Authorization: Bearer token is required");
    }
    /* Compare the token's hash with every identity's, without stopping at a match: how long
     * this takes says nothing about which identity (if any) matched. Hashing first makes the
     * comparison independent of the token's length. */
    unsigned char sha[32];
    SHA256((const unsigned char *)token, strlen(token), sha);
    const struct agent *ag = NULL;
    const struct approver *ap = NULL;
    for (size_t i = 0; i < a->nagents; i++)
        if (CRYPTO_memcmp(sha, a->agents[i].token_sha, 32) == 0 && !ag) ag = &a->agents[i];
    for (size_t i = 0; i < a->napprovers; i++)
        if (CRYPTO_memcmp(sha, a->approvers[i].token_sha, 32) == 0 && !ap) ap = &a->approvers[i];
    explicit_bzero(sha, sizeof(sha));
    if (ag) {
        *p = (struct principal){.kind = PRINCIPAL_AGENT, .name = ag->name, .agent = ag};
        return 0;
    }
    if (ap) {
        *p = (struct principal){.kind = PRINCIPAL_APPROVER, .name = ap->name, .approver = ap};
        return 0;
    }
    if (!agents_configured(a)) return 0; /* e.g. a decision token: the decide route checks it */
    count_failure(a, AUTH_INVALID);
    return gate_err(err, GATE_E_UNAUTHORIZED, "the bearer token is not valid");
}

/* ---- grants ------------------------------------------------------------------------------- */
static bool glob_match(char *const *globs, const char *name)
{
    for (size_t i = 0; globs && globs[i]; i++)
        if (fnmatch(globs[i], name, 0) == 0) return true;
    return false;
}

bool agents_tool_granted(const struct principal *p, const char *tool)
{
    if (p->kind == PRINCIPAL_ANONYMOUS) return true;
    if (p->kind != PRINCIPAL_AGENT) return false;
    return glob_match(p->agent->tools, tool);
}

const struct policy_schema *agents_grant_schema(const struct principal *p, const char *tool)
{
    if (p->kind != PRINCIPAL_AGENT) return NULL;
    for (size_t i = 0; i < p->agent->ngrants; i++)
        if (fnmatch(p->agent->grants[i].glob, tool, 0) == 0) return p->agent->grants[i].schema;
    return NULL;
}

bool agents_approver_may(const struct approver *ap, const char *tool)
{
    return ap && (!ap->tools || glob_match(ap->tools, tool));
}

/* ---- tokens and metrics ---------------------------------------------------------------------- */
int agents_new_token(char token[64], char sha256_hex[65])
{
    unsigned char raw[32];
    if (gate_random_bytes(raw, sizeof(raw)) < 0) return -1;
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    memcpy(token, "gh_", 3);
    o = 3;
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 |
                     (i + 1 < sizeof(raw) ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < sizeof(raw) ? raw[i + 2] : 0);
        size_t chars = i + 2 < sizeof(raw) ? 4 : (i + 1 < sizeof(raw) ? 3 : 2);
        for (size_t k = 0; k < chars; k++)
            token[o++] = b64url[(v >> (18 - 6 * k)) & 63];
    }
    token[o] = '\0';
    explicit_bzero(raw, sizeof(raw));
    gate_sha256_hex(token, o, sha256_hex);
    return 0;
}

void agents_metrics(struct agents *a, struct gate_buf *out)
{
    static const char *const reasons[AUTH__COUNT] = {"missing", "invalid"};
    pthread_mutex_lock(&a->lock);
    gate_buf_printf(out, "# HELP gatehouse_auth_failures_total Requests refused for missing or "
                         "invalid credentials.\n"
                         "# TYPE gatehouse_auth_failures_total counter\n");
    for (int i = 0; i < AUTH__COUNT; i++)
        gate_buf_printf(out, "gatehouse_auth_failures_total{reason=\"%s\"} %llu\n", reasons[i],
                        (unsigned long long)a->auth_failures[i]);
    pthread_mutex_unlock(&a->lock);
}
