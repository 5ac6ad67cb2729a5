/* echo: the example tool. Reads {"text": "..."} on stdin and prints the text. */
#include <jansson.h>
#include <stdio.h>

int main(void)
{
    json_error_t err;
    json_t *args = json_loadf(stdin, 0, &err);
    if (!args) {
        fprintf(stderr, "echo: arguments are not JSON: %s\n", err.text);
        return 2;
    }
    const char *text = json_string_value(json_object_get(args, "text"));
    printf("%s\n", text ? text : "");
    json_decref(args);
    return 0;
}
