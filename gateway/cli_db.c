/* cli_db.c: the shared database, for operators.
 *   gatehouse db migrate [--check] (--config FILE | URI): its schema. Gateways migrate by
 *   themselves when they start; this lets an operator do it ahead of a rollout, or check (exit
 *   1) that a database is behind.
 *   gatehouse db prune-anchors [--keep-days N] (--config FILE | URI): the retention of
 *   audit_anchors. An operator's command, not the gateway's: the gateways' role may then be
 *   insert-only on that table, so a compromised gateway host cannot remove anchors.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static const char USAGE[] =
    "usage: gatehouse db migrate [--check] (--config FILE | postgresql://URI)\n"
    "       gatehouse db prune-anchors [--keep-days N] (--config FILE | postgresql://URI)\n\n"
    "migrate: apply the shared database's pending schema migrations (under an advisory lock,\n"
    "so gateways starting at the same time do not race). With --check, change nothing: exit 0\n"
    "if the schema is current, 1 if migrations are pending.\n"
    "prune-anchors: delete audit anchors older than N days (default 30), except each node's\n"
    "newest and the newest of each of its segments, which keep `audit verify --anchors` sound.\n"
    "The password comes from PGPASSWORD, ~/.pgpass or the config's database.password_env.\n";

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

static int prune(const struct approval_config *cfg, unsigned keep_days)
{
    struct audit_anchor_target t = {.database = cfg->database,
                                    .database_password = cfg->database_password};
    struct gate_error err = {0};
    uint64_t deleted = 0;
    if (audit_anchor_prune(&t, keep_days, &deleted, &err) < 0) {
        fprintf(stderr, "gatehouse db prune-anchors: %s\n", err.msg);
        return 2;
    }
    printf("OK: %llu anchor(s) older than %u day(s) deleted\n", (unsigned long long)deleted,
           keep_days);
    return 0;
}

static int migrate(const struct approval_config *cfg, bool check)
{
    struct gate_error err = {0};
    int version = 0, latest = 0;
    if (approval_db_migrate(cfg, check, &version, &latest, &err) < 0) {
        fprintf(stderr, "gatehouse db migrate: %s\n", err.msg);
        return 2;
    }
    if (version < latest) {
        printf("BEHIND: schema version %d, this gateway's is %d (%d migration(s) pending)\n",
               version, latest, latest - version);
        return 1;
    }
    printf("OK: schema version %d\n", version);
    return version > latest ? 1 : 0;
}

int cmd_db(int argc, char **argv)
{
    bool check = false, is_config = false, usage = argc < 2;
    const char *where = NULL, *sub = argc >= 2 ? argv[1] : "";
    bool is_prune = strcmp(sub, "prune-anchors") == 0;
    unsigned long keep_days = 30;
    static const char *const valued[] = {"--keep-days", "--config", NULL};
    if (cli_wants_help(argc, argv, valued)) {
        fputs(USAGE, stdout);
        return 0;
    }
    for (int i = 1; i < argc && !usage; i++) {
        char *end = NULL;
        if (i == 1) {
            usage = strcmp(sub, "migrate") != 0 && !is_prune;
        } else if (!is_prune && !strcmp(argv[i], "--check")) {
            check = true;
        } else if (is_prune && !strcmp(argv[i], "--keep-days") && i + 1 < argc) {
            keep_days = strtoul(argv[++i], &end, 10);
            usage = !*argv[i] || *end || keep_days > 100000;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc && !where) {
            where = argv[++i], is_config = true;
        } else if (!where && strncmp(argv[i], "--", 2) != 0) {
            where = argv[i];
        } else {
            usage = true;
        }
    }
    if (usage || !where) {
        fputs(USAGE, stderr);
        return 2;
    }
    struct approval_config cfg;
    struct gate_error err = {0};
    if (load(where, is_config, &cfg, &err) < 0) {
        fprintf(stderr, "gatehouse db %s: %s\n", sub, err.msg);
        approval_config_free(&cfg);
        return 2;
    }
    int rc = is_prune ? prune(&cfg, (unsigned)keep_days) : migrate(&cfg, check);
    approval_config_free(&cfg);
    return rc;
}
