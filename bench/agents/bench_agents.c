/* bench_agents: what authentication and grant checks add to a call.
 *
 * A call's door work with agents configured is: hash the bearer token and compare it with every
 * identity's hash (agents_authenticate), match the tool against the agent's globs
 * (agents_tool_granted) and find its extra schema (agents_grant_schema). This program loads a
 * config of 100 agents with 10 grant globs each (1,000 globs) and times that work per call, side
 * by side with the same steps with no agents configured (the anonymous path), in one run.
 * Target (issue 12): at most 20 us added per call at p50.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agents.h"
#include "policy.h"

#define AGENTS 100
#define GLOBS 10
#define CALLS 20000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double p50_us(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp);
    return (double)v[n / 2] / 1000.0;
}

static struct agents *load(const char *yaml, size_t len)
{
    struct ynode *root = NULL;
    struct gate_error err = {0};
    struct agents *a = NULL;
    bool literal = false;
    if (ynode_load_buf("bench.yaml", yaml, len, &root, &err) < 0 ||
        agents_load(root, "bench.yaml", &a, &literal, &err) < 0) {
        fprintf(stderr, "bench_agents: %s\n", err.msg);
        exit(1);
    }
    ynode_free(root);
    return a;
}

/* The door's work for one call: who is it, may it call tool, with which extra schema. */
static uint64_t one_call(struct agents *a, const char *authorization, const char *tool)
{
    struct principal p;
    struct gate_error err = {0};
    uint64_t t0 = now_ns();
    if (agents_authenticate(a, authorization, &p, &err) < 0 || !agents_tool_granted(&p, tool)) {
        fprintf(stderr, "bench_agents: refused: %s\n", err.msg);
        exit(1);
    }
    volatile const void *schema = agents_grant_schema(&p, tool);
    (void)schema;
    return now_ns() - t0;
}

int main(void)
{
    static char tokens[AGENTS][64], auth[AGENTS][80];
    struct gate_buf cfg = {0};
    gate_buf_printf(&cfg, "agents:\n");
    for (int i = 0; i < AGENTS; i++) {
        char sha[65];
        agents_new_token(tokens[i], sha);
        snprintf(auth[i], sizeof(auth[i]), "Bearer %s", tokens[i]);
        gate_buf_printf(&cfg, "  agent-%03d:\n    token_sha256: %s\n    tools: [", i, sha);
        for (int g = 0; g < GLOBS; g++)
            gate_buf_printf(&cfg, "%s\"team%d-tool%d-*\"", g ? ", " : "", i, g);
        gate_buf_printf(&cfg,
                        "]\n    arguments:\n      \"team%d-tool9-*\": {type: object, "
                        "properties: {n: {maximum: 5}}, additionalProperties: true}\n",
                        i);
    }
    struct agents *with = load(cfg.data, cfg.len), *without = load("{}\n", 3);
    static uint64_t t_with[CALLS], t_without[CALLS];
    char tool[64];
    /* Interleaved, so that both see the same machine. The tool matches the agent's last glob:
     * the worst case of the glob scan. */
    for (int i = 0; i < CALLS; i++) {
        int k = (int)((unsigned)i * 2654435761u % AGENTS);
        snprintf(tool, sizeof(tool), "team%d-tool9-x", k);
        t_with[i] = one_call(with, auth[k], tool);
        t_without[i] = one_call(without, NULL, tool);
    }
    double w = p50_us(t_with, CALLS), wo = p50_us(t_without, CALLS);
    printf("bench_agents: %d calls; %d agents with %d grant globs each (%d globs)\n", CALLS, AGENTS,
           GLOBS, AGENTS * GLOBS);
    printf("  door checks, agents configured  p50 %8.2f us\n", w);
    printf("  door checks, no agents          p50 %8.2f us\n", wo);
    printf("  added per call at p50: %.2f us (target <= 20 us: %s)\n", w - wo,
           w - wo <= 20.0 ? "met" : "NOT met");
    agents_free(with);
    agents_free(without);
    gate_buf_free(&cfg);
    return 0;
}
