/* fuzz_audit_verify.c: audit_verify and audit_open's tail recovery on arbitrary segment bytes.
 *
 * The input is split at form feeds ('\f') into up to 4 segment files audit-000001.jsonl...
 * Beyond "no crash, no leak", it checks that verify and recovery agree: if audit_verify finds
 * the chain intact (with or without warnings), audit_open must recover the directory, one more
 * append must get the next seq, and the directory must then verify with exactly one more
 * record, no torn tail and no new warning; a torn tail verify reported must be exactly what
 * recovery cut off and kept in its .torn- side file.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"

#define MAX_SEGMENTS 4

static char dir[128];

static void clean_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static void remove_dir(void)
{
    clean_dir();
    rmdir(dir);
}

static void write_segments(const uint8_t *data, size_t size)
{
    size_t start = 0;
    for (unsigned seg = 1; seg <= MAX_SEGMENTS && start <= size; seg++) {
        const uint8_t *ff = memchr(data + start, '\f', size - start);
        size_t end = ff && seg < MAX_SEGMENTS ? (size_t)(ff - data) : size;
        char path[256];
        snprintf(path, sizeof(path), "%s/audit-%06u.jsonl", dir, seg);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) abort();
        if (end > start && write(fd, data + start, end - start) != (ssize_t)(end - start)) abort();
        close(fd);
        start = end + 1;
    }
}

/* Bytes in the .torn- side files recovery wrote. */
static uint64_t torn_side_file_size(void)
{
    DIR *d = opendir(dir);
    if (!d) abort();
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (strstr(de->d_name, ".jsonl.torn-") && stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        /* /dev/shm keeps the fsyncs of the recovery path cheap. */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof(dir), "%s/fuzz_audit.XXXXXX", base);
        if (!mkdtemp(dir)) abort();
        atexit(remove_dir);
    }
    clean_dir();
    write_segments(data, size);

    struct audit_verify_report rep;
    struct gate_error err = {0};
    int rc = audit_verify(dir, &rep, &err);
    if (rc != AUDIT_VERIFY_INTACT && rc != AUDIT_VERIFY_WARNINGS) return 0;

    struct audit_log *log = NULL;
    if (audit_open(dir, &log, &err) < 0) {
        fprintf(stderr, "verified (rc %d) but audit_open failed: %s\n", rc, err.msg);
        abort();
    }
    uint64_t seq = 0;
    if (audit_append(log, "fuzz", NULL, &seq, &err) < 0 || seq != rep.records + 1) {
        fprintf(stderr, "append after recovery: seq %llu, want %llu: %s\n", (unsigned long long)seq,
                (unsigned long long)rep.records + 1, err.msg);
        abort();
    }
    audit_close(log);
    struct audit_verify_report after;
    rc = audit_verify(dir, &after, &err);
    size_t torn_warnings = rep.torn_bytes ? 1 : 0;
    if ((rc != AUDIT_VERIFY_INTACT && rc != AUDIT_VERIFY_WARNINGS) ||
        after.records != rep.records + 1 || after.torn_bytes != 0 ||
        after.n_warnings > rep.n_warnings - torn_warnings) {
        fprintf(stderr, "after recovery and one append: rc %d, %llu records, torn %llu: %s\n", rc,
                (unsigned long long)after.records, (unsigned long long)after.torn_bytes,
                after.reason);
        abort();
    }
    if (torn_side_file_size() != rep.torn_bytes) {
        fprintf(stderr, "verify reported a torn tail of %llu bytes, recovery kept %llu\n",
                (unsigned long long)rep.torn_bytes, (unsigned long long)torn_side_file_size());
        abort();
    }
    return 0;
}
