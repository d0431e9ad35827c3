/*
 * sock.h — netstep's socket-like API: BSD sockets with a sock_ prefix.
 *
 * Each call maps one-to-one onto its POSIX namesake (socket -> sock_open,
 * recvfrom -> sock_recvfrom, ...), takes the system's own struct sockaddr_in,
 * AF_INET, SOCK_DGRAM, MSG_* and POLL* values, returns -1 and sets errno on
 * failure, and may be called from any number of threads at once.
 *
 * Blocking calls sleep on the socket's condition variable and wake on data,
 * on their timeout (SO_RCVTIMEO/SO_SNDTIMEO: EAGAIN), when another thread
 * closes the socket (EBADF), and when net_shutdown() runs (ESHUTDOWN).
 * docs/06-sockets-and-blocking-calls.md explains how.
 *
 * Options (sock_setsockopt):
 *   SOL_SOCKET  SO_RCVTIMEO, SO_SNDTIMEO (struct timeval), SO_REUSEADDR,
 *               SO_BROADCAST, SO_RCVBUF, SO_SNDBUF (int bytes), SO_ERROR (get)
 *   SOL_NETSTEP NETSTEP_NONBLOCK (int): non-blocking, like O_NONBLOCK; also
 *               sock_open(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0)
 *   IPPROTO_IP  IP_TTL (int)
 * Flags: MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC (recv: return the whole length).
 */
#ifndef NETSTEP_SOCK_H
#define NETSTEP_SOCK_H

#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SOL_NETSTEP 0x4e53   /* "NS": options that have no POSIX name */
#define NETSTEP_NONBLOCK 1

int sock_open(int domain, int type, int protocol);
int sock_bind(int sd, const struct sockaddr *addr, socklen_t addrlen);
int sock_connect(int sd, const struct sockaddr *addr, socklen_t addrlen);
int sock_listen(int sd, int backlog);
int sock_accept(int sd, struct sockaddr *addr, socklen_t *addrlen);
ssize_t sock_send(int sd, const void *buf, size_t len, int flags);
ssize_t sock_recv(int sd, void *buf, size_t len, int flags);
ssize_t sock_sendto(int sd, const void *buf, size_t len, int flags, const struct sockaddr *to,
                    socklen_t tolen);
ssize_t sock_recvfrom(int sd, void *buf, size_t len, int flags, struct sockaddr *from,
                      socklen_t *fromlen);
ssize_t sock_sendmsg(int sd, const struct msghdr *msg, int flags);
/* msg->msg_flags gets MSG_TRUNC when a datagram did not fit. */
ssize_t sock_recvmsg(int sd, struct msghdr *msg, int flags);
int sock_shutdown(int sd, int how);
int sock_close(int sd);
int sock_getsockname(int sd, struct sockaddr *addr, socklen_t *addrlen);
int sock_getpeername(int sd, struct sockaddr *addr, socklen_t *addrlen);
int sock_setsockopt(int sd, int level, int optname, const void *optval, socklen_t optlen);
int sock_getsockopt(int sd, int level, int optname, void *optval, socklen_t *optlen);
/* Like poll(2) over netstep descriptors: fds[i].fd is a sock descriptor;
 * POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL. timeout_ms < 0 waits
 * forever. Returns the number of ready entries, 0 on timeout. */
int sock_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);

#endif
