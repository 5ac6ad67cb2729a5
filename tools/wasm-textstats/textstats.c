/* textstats: text statistics compiled to WebAssembly (wasm32-wasi).
 *
 * Arguments on stdin: {"text": "..."}. Prints {"bytes", "chars", "words", "lines",
 * "longest_word"} where chars counts UTF-8 code points and words are runs of non-space.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../wasm-common/jscan.h"

#define MAX_INPUT (1 << 20)

int main(void)
{
    static char in[MAX_INPUT + 1];
    static char text[MAX_INPUT + 1];
    size_t len = fread(in, 1, MAX_INPUT, stdin);
    struct jspan args = {in, len}, tv;
    long n;
    if (!js_member(args, "text", 4, &tv) || (n = js_string(tv, text, sizeof(text))) < 0) {
        fprintf(stderr, "{\"error\": \"missing \\\"text\\\"\"}\n");
        return 1;
    }
    unsigned long chars = 0, words = 0, lines = 0, longest = 0, cur = 0;
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xc0) != 0x80) chars++;
        if (c == '\n') lines++;
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            cur = 0;
        } else if ((c & 0xc0) != 0x80) {
            if (cur++ == 0) words++;
            if (cur > longest) longest = cur;
        }
    }
    if (n > 0 && text[n - 1] != '\n') lines++;
    printf(
        "{\"bytes\": %ld, \"chars\": %lu, \"words\": %lu, \"lines\": %lu, \"longest_word\": %lu}\n",
        n, chars, words, lines, longest);
    return 0;
}
