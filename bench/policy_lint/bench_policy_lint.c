/* bench_policy_lint: `gatehouse policy lint` of 1,000 generated policies and `policy diff` of
 * two such trees, next to reference commands measured in the same run: reading the same files
 * (`cat`, the I/O floor) and a plain text diff of the two trees (`diff -r`).
 *
 *   build/bench/policy_lint/bench_policy_lint build/gateway/gatehouse [N_POLICIES] [RUNS] [keep]
 *
 * With `keep`, the generated trees are left in place (their directory is printed).
 *
 * Targets (issue 14): lint < 1 s, diff < 2 s on this machine. Printed, not asserted: the
 * machine is shared and wall-clock figures are noisy; compare the ratios.
 *
 * The policies vary the way real ones do: every tier, a few argument properties with bounds
 * and patterns, env, file system settings, approval for the irreversible ones, comments and
 * suppressions; some have findings. HEAD changes one policy in ten (isolation lowered, a limit
 * raised, an argument added), removes one in a hundred and adds a few.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchlib.h"

static const char *const tiers[] = {"process", "container", "gvisor", "microvm"};

static void write_policy(const char *dir, int i, bool head)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tool-%04d.yaml", dir, i);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    bool changed = head && i % 10 == 3;
    const char *tier = tiers[i % 4];
    if (changed && i % 4 != 0) tier = tiers[i % 4 - 1]; /* one step weaker */
    bool irreversible = i % 7 == 0;
    fprintf(f,
            "# yaml-language-server: $schema=../policy.schema.json\n"
            "# Tool %d: generated for the lint benchmark.\n",
            i);
    fprintf(f, "name: tool-%04d\ndescription: Generated tool number %d, %s tier.\n", i, i, tier);
    if (i % 4 == 0)
        fprintf(f, "# gatehouse: allow GH102 -- generated: a process-tier tool of medium blast\n");
    fprintf(f, "isolation: %s\ncommand: [/bin/true, --id, \"%d\"]\n", tier, i);
    fprintf(f, "blast_radius: %s\nreversible: %s\n", irreversible ? "high" : "medium",
            irreversible ? "false" : "true");
    if (irreversible) fprintf(f, "approval:\n  required: true\n  timeout: %dm\n", 5 + i % 50);
    fprintf(f,
            "limits:\n  wall_timeout: %ds\n  cpu_time: 2s\n  memory_mb: %d\n  pids: %d\n"
            "  output_bytes: 65536\n",
            1 + i % 30, changed ? 512 : 64 + i % 64, 4 + i % 16);
    if (i % 3 == 0) fprintf(f, "env:\n  LANG: C.UTF-8\n  TOOL_MODE: fast\n");
    if (i % 4 == 1) fprintf(f, "filesystem:\n  read_only: [/usr]\n  workspace: {size_mb: 8}\n");
    if (i % 4 == 2) fprintf(f, "pool: {size: 1}\n");
    fprintf(f,
            "arguments:\n  type: object\n  properties:\n"
            "    text:\n      type: string\n      maxLength: %d\n"
            "    account:\n      type: string\n      pattern: \"^[A-Za-z0-9_-]{1,64}$\"\n"
            "    amount: {type: integer, minimum: -1000, maximum: 1000}\n"
            "    mode: {type: string, enum: [fast, slow, careful]}\n"
            "    tags: {type: array, items: {type: string, maxLength: 32}, maxItems: 8}\n",
            256 + i);
    if (changed) fprintf(f, "    extra: {type: string, maxLength: 16}\n");
    if (i % 50 == 7) fprintf(f, "    note: {type: string}\n"); /* GH105 */
    fprintf(f, "  required: [text]\n  additionalProperties: false\n");
    fclose(f);
}

static void generate(const char *dir, int n, bool head)
{
    if (mkdir(dir, 0755) < 0) {
        perror(dir);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        if (!head || i % 100 != 99) write_policy(dir, i, head);
    for (int i = n; head && i < n + n / 200; i++)
        write_policy(dir, i, head);
}

/* Run argv once with output discarded: its exit status, wall time and CPU time (user + sys,
 * from wait4: on a shared machine the CPU time moves less than the wall time). */
static int run(char *const argv[], uint64_t *wall_ns, uint64_t *cpu_ns)
{
    uint64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    *wall_ns = bench_now_ns() - t0;
    *cpu_ns = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
              (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct timing {
    double wall_ms, cpu_ms; /* medians */
};

/* Median wall and CPU time of runs back-to-back runs of argv. */
static struct timing measure(char *const argv[], int runs, uint64_t *wall, uint64_t *cpu)
{
    for (int i = 0; i < runs; i++)
        run(argv, &wall[i], &cpu[i]);
    return (struct timing){bench_percentile(wall, (size_t)runs, 50) / 1e6,
                           bench_percentile(cpu, (size_t)runs, 50) / 1e6};
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GATEHOUSE [N_POLICIES] [RUNS]\n", argv[0]);
        return 2;
    }
    char *gatehouse = realpath(argv[1], NULL);
    int n = argc > 2 ? atoi(argv[2]) : 1000, runs = argc > 3 ? atoi(argv[3]) : 7;
    if (!gatehouse || n < 1 || runs < 1 || runs > 100) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    char root[] = "/tmp/bench-policy-lint-XXXXXX";
    if (!mkdtemp(root)) return 1;
    char base[600], head[600], cat_cmd[700];
    snprintf(base, sizeof(base), "%s/base", root);
    snprintf(head, sizeof(head), "%s/head", root);
    generate(base, n, false);
    generate(head, n, true);
    snprintf(cat_cmd, sizeof(cat_cmd), "cat %s/*.yaml", base);

    char *lint[] = {gatehouse, "policy", "lint", base, "--format", "json", NULL};
    char *diff[] = {gatehouse, "policy", "diff", base, head, "--format", "json", NULL};
    char *cat[] = {"/bin/sh", "-c", cat_cmd, NULL};
    char *textdiff[] = {"/usr/bin/diff", "-r", base, head, NULL};
    /* The runs must do the work: lint finds the planted warnings (2), diff the weakening (3). */
    uint64_t w, c;
    int lint_rc = run(lint, &w, &c), diff_rc = run(diff, &w, &c);
    if (lint_rc != 2 || diff_rc != 3) {
        fprintf(stderr, "unexpected exit status: lint %d (want 2), diff %d (want 3)\n", lint_rc,
                diff_rc);
        return 1;
    }
    uint64_t *wall = calloc((size_t)runs, sizeof(*wall)), *cpu = calloc((size_t)runs, sizeof(*cpu));
    struct timing t_lint = measure(lint, runs, wall, cpu);
    struct timing t_cat = measure(cat, runs, wall, cpu);
    struct timing t_diff = measure(diff, runs, wall, cpu);
    struct timing t_textdiff = measure(textdiff, runs, wall, cpu);

    printf("medians of %d back-to-back runs; wall ms (CPU ms, user + sys)\n", runs);
    printf("policy lint, %d policies:        %8.1f (%7.1f)   target < 1000 ms wall: %s\n", n,
           t_lint.wall_ms, t_lint.cpu_ms, t_lint.wall_ms < 1000 ? "met" : "NOT met");
    printf("  reference: cat of the same files: %8.1f (%7.1f)   lint/cat %.1fx wall, %.1fx CPU\n",
           t_cat.wall_ms, t_cat.cpu_ms, t_lint.wall_ms / t_cat.wall_ms,
           t_lint.cpu_ms / t_cat.cpu_ms);
    printf("policy diff, two trees of %d:     %8.1f (%7.1f)   target < 2000 ms wall: %s\n", n,
           t_diff.wall_ms, t_diff.cpu_ms, t_diff.wall_ms < 2000 ? "met" : "NOT met");
    printf(
        "  reference: diff -r of the trees:  %8.1f (%7.1f)   diff/diff -r %.1fx wall, %.1fx CPU\n",
        t_textdiff.wall_ms, t_textdiff.cpu_ms, t_diff.wall_ms / t_textdiff.wall_ms,
        t_diff.cpu_ms / t_textdiff.cpu_ms);
    printf("  per policy: lint %.0f us, diff %.0f us (both sides), wall\n",
           t_lint.wall_ms * 1e3 / n, t_diff.wall_ms * 1e3 / n);

    char rm[700];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", root);
    if (argc > 4 && !strcmp(argv[4], "keep"))
        printf("  trees kept in %s\n", root);
    else if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    free(wall);
    free(cpu);
    free(gatehouse);
    return 0;
}
