/* store_pg_config.c: the gateway config's top-level `database:` key.
 *
 *   database: postgresql://gatehouse@db.internal/gatehouse   # a libpq URI
 *   database: {url: postgresql://..., password_env: GATEHOUSE_DB_PASSWORD}
 *
 * The password is never required in the file: libpq reads PGPASSWORD or ~/.pgpass itself,
 * or password_env names a variable to read it from.
 */
#include <stdlib.h>
#include <string.h>

#include "approval_internal.h"

static int bad(const struct ynode *n, const char *what, struct gate_error *err)
{
    return gate_err(err, GATE_E_CONFIG, "%d:%d: %s", n->loc.line, n->loc.col, what);
}

static int set_url(const struct ynode *n, struct approval_config *cfg, struct gate_error *err)
{
    if (n->kind != YNODE_SCALAR || !n->scalar ||
        (strncmp(n->scalar, "postgresql://", 13) != 0 &&
         strncmp(n->scalar, "postgres://", 11) != 0))
        return bad(n, "'database' must be a postgresql://... URI", err);
    cfg->database = strdup(n->scalar);
    return cfg->database ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

static int set_password_env(const struct ynode *n, struct approval_config *cfg,
                            struct gate_error *err)
{
    if (n->kind != YNODE_SCALAR || !n->scalar || !*n->scalar)
        return bad(n, "'database.password_env' must be a variable name", err);
    const char *v = getenv(n->scalar);
    if (!v || !*v)
        return gate_err(err, GATE_E_CONFIG,
                        "%d:%d: 'database.password_env': environment variable '%s' is not set",
                        n->loc.line, n->loc.col, n->scalar);
    cfg->database_password = strdup(v);
    return cfg->database_password ? 0 : gate_err(err, GATE_E_NOMEM, "out of memory");
}

int approval_database_parse(const struct ynode *node, struct approval_config *cfg,
                            struct gate_error *err)
{
    if (!node) return 0;
    if (node->kind == YNODE_SCALAR) return set_url(node, cfg, err);
    if (node->kind != YNODE_MAP)
        return bad(node, "'database' must be a URI or a mapping {url, password_env}", err);
    for (size_t i = 0; i < node->n; i++) {
        const struct ynode *v = node->items[i];
        int rc;
        if (strcmp(node->keys[i], "url") == 0)
            rc = set_url(v, cfg, err);
        else if (strcmp(node->keys[i], "password_env") == 0)
            rc = set_password_env(v, cfg, err);
        else
            rc = gate_err(err, GATE_E_CONFIG,
                          "%d:%d: unknown key 'database.%s' (known: url, password_env)",
                          v->loc.line, v->loc.col, node->keys[i]);
        if (rc < 0) return -1;
    }
    if (!cfg->database) return bad(node, "'database' needs a 'url'", err);
    return 0;
}
