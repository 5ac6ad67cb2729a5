/* ledger: the example irreversible tool. Reads {"account", "amount", "memo"?} on stdin and
 * appends one JSON line to $LEDGER_DIR/ledger.jsonl: an entry, once written, stays (there is
 * no tool to take it back), which is why its policy requires a human approval.
 *
 * The line is written with one write(2) on an O_APPEND descriptor and fsynced, so entries
 * from concurrent runs never interleave. LEDGER_DELAY_MS (optional) keeps the tool running
 * that long after the write: it stands for slow follow-up work, and lets tests crash the
 * gateway while an approved call is still running.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int append_line(const char *dir, const char *line)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/ledger.jsonl", dir) >= (int)sizeof(path)) return -1;
    /* Every call runs under its own uid, all in the gateway's tool group: the ledger they
     * share is group-writable, and nothing else. */
    umask(007);
    if (mkdir(dir, 0770) < 0 && errno != EEXIST) return -1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0660);
    if (fd < 0) return -1;
    size_t len = strlen(line);
    ssize_t w = write(fd, line, len);
    int rc = (w == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
    close(fd);
    return rc;
}

int main(void)
{
    json_error_t jerr;
    json_t *args = json_loadf(stdin, 0, &jerr);
    const char *dir = getenv("LEDGER_DIR");
    if (!args || !dir || !*dir) {
        fprintf(stderr, "ledger: %s\n", !args ? jerr.text : "LEDGER_DIR is not set");
        return 2;
    }
    const char *call = getenv("GATEHOUSE_CALL_ID");
    json_t *entry =
        json_pack("{s:s,s:O,s:O,s:O*}", "call_id", call ? call : "", "account",
                  json_object_get(args, "account"), "amount", json_object_get(args, "amount"),
                  "memo", json_object_get(args, "memo"));
    char *text = entry ? json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        fprintf(stderr, "ledger: bad arguments\n");
        return 2;
    }
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line) return 2;
    memcpy(line, text, n);
    memcpy(line + n, "\n", 2);
    if (append_line(dir, line) < 0) {
        fprintf(stderr, "ledger: cannot append to %s/ledger.jsonl: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("%s", line);
    fflush(stdout);
    const char *delay = getenv("LEDGER_DELAY_MS");
    long ms = delay ? strtol(delay, NULL, 10) : 0;
    if (ms > 0) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    free(line);
    free(text);
    json_decref(entry);
    json_decref(args);
    return 0;
}
