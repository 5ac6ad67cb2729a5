/* jsonq: a JSON query tool compiled to WebAssembly (wasm32-wasi).
 *
 * Arguments on stdin: {"json": <any JSON value>, "path": "$.a.b[2].c"}. Prints the selected
 * value as JSON, or {"error": ...} on stderr with exit code 1 if the path does not exist.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../wasm-common/jscan.h"

#define MAX_INPUT (1 << 20)

static int fail(const char *msg)
{
    fprintf(stderr, "{\"error\": \"%s\"}\n", msg);
    return 1;
}

int main(void)
{
    static char in[MAX_INPUT + 1];
    static char path[4096];
    size_t len = fread(in, 1, MAX_INPUT, stdin);
    struct jspan args = {in, len}, json, pathv;
    if (!js_member(args, "json", 4, &json)) return fail("missing \\\"json\\\"");
    if (!js_member(args, "path", 4, &pathv) || js_string(pathv, path, sizeof(path)) < 0)
        return fail("missing \\\"path\\\"");
    const char *p = path;
    if (*p == '$') p++;
    struct jspan cur = json;
    while (*p) {
        if (*p == '.') {
            const char *k = ++p;
            while (*p && *p != '.' && *p != '[')
                p++;
            if (!js_member(cur, k, (size_t)(p - k), &cur)) return fail("no such member");
        } else if (*p == '[') {
            char *e;
            unsigned long i = strtoul(p + 1, &e, 10);
            if (*e != ']') return fail("bad index in path");
            p = e + 1;
            if (!js_index(cur, i, &cur)) return fail("no such element");
        } else {
            return fail("path must look like $.a.b[0]");
        }
    }
    fwrite(cur.p, 1, cur.n, stdout);
    putchar('\n');
    return 0;
}
