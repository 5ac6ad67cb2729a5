/* bench_mcp: what an MCP tools/call costs over the same call through the JSON API.
 *
 * In one run, against one gateway: N calls of a no-op `process` tool (/bin/true) as MCP
 * tools/call (POST /mcp, one session) and N as POST /v1/tools/noop/calls, interleaved one by
 * one (MCP, JSON, MCP, JSON...) so that both see the same machine load, each on its own
 * keep-alive connection, back to back. Prints p50/p99 of each and the difference of the
 * medians; the target is at most 0.1 ms at p50.
 *
 * usage: bench_mcp [GATEHOUSE-BINARY] [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "benchlib.h"

#define TARGET_MS 0.1

static const char *const CALL_JSON = "{\"arguments\":{}}";
static const char *const CALL_MCP =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"noop\","
    "\"arguments\":{}}}";

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* initialize, and the Mcp-Session-Id header line for later requests. */
static int mcp_session(int fd, char *hdr, size_t len)
{
    char head[4096];
    int st = bench_post_headers(fd, "/mcp", "Accept: application/json, text/event-stream\r\n",
                                "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\","
                                "\"params\":{\"protocolVersion\":\"2025-06-18\"}}",
                                NULL, 0, head, sizeof(head));
    const char *h = strcasestr(head, "\r\nMcp-Session-Id: ");
    if (st != 200 || !h) return -1;
    h += 18;
    snprintf(hdr, len, "Accept: application/json, text/event-stream\r\nMcp-Session-Id: %.*s\r\n",
             (int)strcspn(h, "\r"), h);
    return 0;
}

int main(int argc, char **argv)
{
    const char *gatehouse = argc > 1 ? argv[1] : "build/gateway/gatehouse";
    int n = argc > 2 ? atoi(argv[2]) : 2000, failures = 0;
    struct bench_gw gw;
    if (bench_gw_start(&gw, gatehouse, "noop",
                       "name: noop\ndescription: does nothing\ncommand: [\"/bin/true\"]\n"
                       "isolation: process\n",
                       NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", gatehouse);
        return 1;
    }
    uint64_t *mcp = calloc((size_t)n, sizeof(uint64_t)), *api = calloc((size_t)n, sizeof(uint64_t));
    int fd_mcp = bench_connect(gw.port), fd_api = bench_connect(gw.port);
    char session[256], out[4096];
    if (fd_mcp < 0 || fd_api < 0 || mcp_session(fd_mcp, session, sizeof(session)) < 0) {
        fprintf(stderr, "cannot open an MCP session\n");
        bench_gw_stop(&gw);
        return 1;
    }
    for (int i = 0; i < 50; i++) { /* warm up */
        bench_post_headers(fd_mcp, "/mcp", session, CALL_MCP, NULL, 0, NULL, 0);
        bench_post(fd_api, "/v1/tools/noop/calls", CALL_JSON, NULL, 0);
    }
    for (int i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        int st = bench_post_headers(fd_mcp, "/mcp", session, CALL_MCP, out, sizeof(out), NULL, 0);
        mcp[i] = bench_now_ns() - t0;
        if (st != 200 || !strstr(out, "\"isError\":false")) failures++;
        t0 = bench_now_ns();
        if (bench_post(fd_api, "/v1/tools/noop/calls", CALL_JSON, NULL, 0) != 200) failures++;
        api[i] = bench_now_ns() - t0;
    }
    close(fd_mcp);
    close(fd_api);
    double m50 = bench_percentile(mcp, (size_t)n, 50) / 1e6,
           m99 = bench_percentile(mcp, (size_t)n, 99) / 1e6;
    double a50 = bench_percentile(api, (size_t)n, 50) / 1e6,
           a99 = bench_percentile(api, (size_t)n, 99) / 1e6;
    printf("bench_mcp: %d calls of /bin/true (process tier) each way, interleaved, keep-alive\n",
           n);
    printf("%-36s %9s %9s\n", "", "p50 ms", "p99 ms");
    printf("%-36s %9.3f %9.3f\n", "POST /v1/tools/noop/calls", a50, a99);
    printf("%-36s %9.3f %9.3f\n", "MCP tools/call (POST /mcp)", m50, m99);
    /* The median of the pairwise differences too: each MCP call against the JSON call right
     * after it, which cancels most of the load both saw. */
    int64_t *diff = calloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++)
        diff[i] = (int64_t)(mcp[i] - api[i]);
    qsort(diff, (size_t)n, sizeof(int64_t), cmp_i64);
    double pair50 = (double)diff[n / 2] / 1e6;
    free(diff);
    printf("MCP overhead p50: %.3f ms (ratio %.3fx); median of pairwise differences: %.3f ms\n",
           m50 - a50, m50 / a50, pair50);
    printf("target <= %.1f ms at p50: %s; failed calls: %d\n", TARGET_MS,
           m50 - a50 <= TARGET_MS ? "met" : "NOT met", failures);
    bench_gw_stop(&gw);
    free(mcp);
    free(api);
    return failures ? 1 : 0;
}
