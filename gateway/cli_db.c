/* cli_db.c: `gatehouse db migrate [--check] (--config FILE | URI)`: the shared database's
 * schema, for operators. Gateways migrate by themselves when they start; this lets an
 * operator do it ahead of a rollout, or check (exit 1) that a database is behind.
 */
#include <string.h>

#include "gateway.h"

static const char USAGE[] =
    "usage: gatehouse db migrate [--check] (--config FILE | postgresql://URI)\n\n"
    "Apply the shared database's pending schema migrations (under an advisory lock, so\n"
    "gateways starting at the same time do not race). With --check, change nothing: exit 0\n"
    "if the schema is current, 1 if migrations are pending. The password comes from\n"
    "PGPASSWORD, ~/.pgpass or the config's database.password_env.\n";

static int load(const char *where, bool is_config, struct approval_config *cfg,
                struct gate_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!is_config) {
        struct ynode uri = {.kind = YNODE_SCALAR, .scalar = (char *)where};
        return approval_database_parse(&uri, cfg, err);
    }
    struct ynode *root = NULL;
    if (ynode_load_file(where, &root, err) < 0) return -1;
    int rc = approval_database_parse(ynode_get(root, "database"), cfg, err);
    ynode_free(root);
    if (rc == 0 && !cfg->database)
        rc = gate_err(err, GATE_E_CONFIG, "%s has no database: key", where);
    return rc < 0 ? gate_err_wrap(err, "%s", where) : 0;
}

int cmd_db(int argc, char **argv)
{
    bool check = false, is_config = false;
    const char *where = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (i == 1 && !strcmp(argv[i], "migrate")) continue;
        if (!strcmp(argv[i], "--check"))
            check = true;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            where = argv[++i], is_config = true;
        else if (!where && strncmp(argv[i], "--", 2) != 0)
            where = argv[i];
        else
            where = NULL, argc = 0; /* usage */
    }
    if (argc < 2 || strcmp(argv[1], "migrate") != 0 || !where) {
        fputs(USAGE, stderr);
        return 2;
    }
    struct approval_config cfg;
    struct gate_error err = {0};
    int version = 0, latest = 0;
    if (load(where, is_config, &cfg, &err) < 0 ||
        approval_db_migrate(&cfg, check, &version, &latest, &err) < 0) {
        fprintf(stderr, "gatehouse db migrate: %s\n", err.msg);
        approval_config_free(&cfg);
        return 2;
    }
    approval_config_free(&cfg);
    if (version < latest) {
        printf("BEHIND: schema version %d, this gateway's is %d (%d migration(s) pending)\n",
               version, latest, latest - version);
        return 1;
    }
    printf("OK: schema version %d\n", version);
    return version > latest ? 1 : 0;
}
