/* msg.c: messages with file descriptors on the pool's seqpacket sockets, used by both ends:
 * the gateway (pool.c) and gatehouse-ct-helper (helper.c). */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "container.h"

int ct_msg_recv(int sock, char *buf, size_t cap, int *fds, int max, int *nfds)
{
    char cbuf[CMSG_SPACE(CT_MSG_MAX_FDS * sizeof(int))];
    struct iovec iov = {buf, cap};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    *nfds = 0;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    size_t got = c && c->cmsg_type == SCM_RIGHTS ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;
    if ((int)got > max || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        for (size_t i = 0; i < got; i++)
            close(((int *)CMSG_DATA(c))[i]);
        return 0;
    }
    if (got) memcpy(fds, CMSG_DATA(c), got * sizeof(int));
    *nfds = (int)got;
    return (int)n;
}

int ct_msg_send(int sock, struct iovec *iov, int n, const int *fds, int nfds)
{
    char cbuf[CMSG_SPACE(CT_MSG_MAX_FDS * sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (nfds > CT_MSG_MAX_FDS) return -1;
    if (nfds) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}
