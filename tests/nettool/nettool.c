/* nettool.c: tries network destinations from inside a sandbox and reports each outcome.
 *
 * stdin is the call's arguments JSON; every string in it of one of these forms is an attempt,
 * made in order, and printed as "<attempt> ok" or "<attempt> <ERRNO NAME>":
 *   tcp:A.B.C.D:PORT   tcp6:[V6]:PORT     TCP connect
 *   udp:A.B.C.D:PORT   udp6:[V6]:PORT     one datagram with sendto on an unconnected socket
 *   udpc:A.B.C.D:PORT                     UDP connect (no datagram)
 *   raw                                   a raw IPv4 socket (ICMP), then a ping socket
 *   fork:<attempt>                        the attempt made by a grandchild of the tool
 *   wait:/PATH                            wait (up to 30 s) until PATH exists
 *   hold:tcp:A.B.C.D:PORT                 TCP connect, then read until the peer closes (up to
 *                                         60 s): the test decides when the tool goes on
 *   read:/PATH                            print the file's lines, each as "read: LINE"
 *   execargs                              run this program again with hostile argv words
 *                                         (EXEC_ARGV below), for the record's `execs`
 * Only loopback addresses are ever given by the tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Six words, so the record's first four are cut from more: a quote, a backslash and a newline;
 * bytes that are not UTF-8 and a control character; 81 bytes whose 64th starts a two-byte
 * character (the record keeps 64 bytes, minus that half character). */
#define E2 "\xc3\xa9"
#define E8 E2 E2 E2 E2 E2 E2 E2 E2
static char *const EXEC_ARGV[] = {"child",
                                  "say \"hi\"\\ and\nbye",
                                  "bin\xff\xfe\x01"
                                  "end",
                                  "x" E8 E8 E8 E8 E8,
                                  "fifth",
                                  "sixth",
                                  NULL};

static const char *errname(int e)
{
    switch (e) {
    case EPERM:
        return "EPERM";
    case EACCES:
        return "EACCES";
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case ENETUNREACH:
        return "ENETUNREACH";
    case EAFNOSUPPORT:
        return "EAFNOSUPPORT";
    case EINVAL:
        return "EINVAL";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case EPROTONOSUPPORT:
        return "EPROTONOSUPPORT";
    default:
        return "EOTHER";
    }
}

/* "A.B.C.D:PORT" or "[V6]:PORT" into a socket address. */
static int parse(const char *s, int v6, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host)) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    int port = atoi(colon + 1);
    memset(sa, 0, sizeof(*sa));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        size_t hl = strlen(host);
        if (hl < 2 || host[0] != '[' || host[hl - 1] != ']') return -1;
        host[hl - 1] = '\0';
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)sa;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof(*a);
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* Read from s until the peer closes it: 0, else an errno value. */
static int hold(int s)
{
    struct timeval tv = {60, 0};
    char buf[64];
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n == 0) return 0;
        if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
    }
}

/* 0 on success, else an errno value. */
static int attempt(const char *what)
{
    int held = !strncmp(what, "hold:tcp:", 9);
    if (held) what += 5;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    int v6 = !strncmp(what, "tcp6:", 5) || !strncmp(what, "udp6:", 5);
    const char *addr = strchr(what, ':');
    if (!strncmp(what, "wait:", 5)) {
        for (int i = 0; i < 3000; i++) {
            if (access(what + 5, F_OK) == 0) return 0;
            usleep(10000);
        }
        return ETIMEDOUT;
    }
    if (!strncmp(what, "read:", 5)) {
        FILE *f = fopen(what + 5, "re");
        if (!f) return errno;
        char line[512];
        while (fgets(line, sizeof(line), f))
            printf("read: %s", line);
        fclose(f);
        return 0;
    }
    if (!strcmp(what, "execargs")) {
        pid_t child = fork();
        if (child == 0) {
            execv("/proc/self/exe", EXEC_ARGV);
            _exit(127);
        }
        int status = 0;
        if (child < 0 || waitpid(child, &status, 0) < 0) return errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ECHILD;
    }
    if (!strcmp(what, "raw")) {
        int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        if (s >= 0) return close(s), 0;
        s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
        if (s >= 0) return close(s), 0;
        return errno;
    }
    if (!addr || parse(addr + 1, v6, &sa, &len) < 0) return EINVAL;
    int tcp = !strncmp(what, "tcp", 3);
    int s = socket(v6 ? AF_INET6 : AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (s < 0) return errno;
    int rc;
    if (tcp || !strncmp(what, "udpc:", 5))
        rc = connect(s, (struct sockaddr *)&sa, len);
    else
        rc = sendto(s, "x", 1, 0, (struct sockaddr *)&sa, len) == 1 ? 0 : -1;
    int e = rc < 0 ? errno : 0;
    if (!e && held) e = hold(s);
    close(s);
    return e;
}

static void run(const char *what)
{
    if (!strncmp(what, "fork:", 5)) {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            pid_t grandchild = fork();
            if (grandchild == 0) {
                int e = attempt(what + 5);
                printf("%s %s\n", what, e ? errname(e) : "ok");
                fflush(stdout);
                _exit(0);
            }
            waitpid(grandchild, NULL, 0);
            _exit(0);
        }
        waitpid(child, NULL, 0);
        return;
    }
    int e = attempt(what);
    printf("%s %s\n", what, e ? errname(e) : "ok");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) return 0; /* run by execargs: only its exec is of interest */
    static char in[65536];
    size_t n = fread(in, 1, sizeof(in) - 1, stdin);
    in[n] = '\0';
    /* Every JSON string that names an attempt (the tests write no escapes in them). */
    for (char *p = strchr(in, '"'); p; p = strchr(p, '"')) {
        char *end = strchr(p + 1, '"');
        if (!end) break;
        *end = '\0';
        const char *s = p + 1;
        if (!strncmp(s, "tcp", 3) || !strncmp(s, "udp", 3) || !strcmp(s, "raw") ||
            !strcmp(s, "execargs") || !strncmp(s, "read:", 5) || !strncmp(s, "fork:", 5) ||
            !strncmp(s, "wait:", 5) || !strncmp(s, "hold:", 5))
            run(s);
        p = end + 1;
    }
    return 0;
}
