/* cli_agents.c: `gatehouse agents add NAME`: make an agent's token.
 *
 * The token is printed once and stored nowhere: the config needs only its SHA-256, so neither
 * the file nor a backup of it can be used to call tools.
 */
#include <string.h>

#include "gateway.h"

int cmd_agents(int argc, char **argv)
{
    if (cli_wants_help(argc, argv, NULL)) {
        printf("usage: gatehouse agents add NAME\n\n"
               "Print a fresh bearer token for agent NAME (once; it is stored nowhere) and the\n"
               "lines to add under agents: in the gateway config.\n");
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "add") != 0) {
        fprintf(stderr, "usage: gatehouse agents add NAME\n");
        return 2;
    }
    char token[64], sha[65];
    if (agents_new_token(token, sha) < 0) {
        fprintf(stderr, "gatehouse agents: getrandom failed\n");
        return 1;
    }
    printf("token: %s\n"
           "# Give the token to the agent (Authorization: Bearer ...); it is not stored anywhere.\n"
           "# Add this under agents: in the gateway config, with the tools it may call:\n"
           "  %s:\n"
           "    token_sha256: %s\n"
           "    tools: []\n",
           token, argv[2], sha);
    explicit_bzero(token, sizeof(token));
    return 0;
}
