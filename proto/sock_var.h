/*
 * sock_var.h — what the socket layer (sock.c) and the transports behind it
 * (udp.c, later tcp.c) share. Applications use sock.h only.
 *
 * sock.c owns descriptors, reference counts, options, argument checks,
 * errno and poll; a transport owns its protocol control blocks (pcbs) and
 * the waiting: it sleeps on s->cv holding its own module lock (udp_lock,
 * tcp_lock), and calls sock_wakeup() after every change a waiter or a
 * poller may care about.
 *
 * Lifetime: a descriptor holds one reference; every call in progress holds
 * another. sock_close() removes the descriptor and calls ops->detach (no
 * more deliveries; waiters wake and see the pcb closed); ops->destroy frees
 * the pcb when the last reference goes, so no waiter ever touches freed
 * memory.
 *
 * Lock key: [S] sock_lock (the descriptor table and refs); [p] the
 * transport's module lock; [a] atomic, any thread.
 */
#ifndef NETSTEP_SOCK_VAR_H
#define NETSTEP_SOCK_VAR_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "net.h"

#define SOCK_NOWAIT 0ull          /* deadline: do not wait at all */
#define SOCK_FOREVER UINT64_MAX   /* deadline: wait without a timeout */

/* An IPv4 endpoint: addr in network order, port in host order. */
struct sock_addr {
    uint32_t addr;
    uint16_t port;
};

struct sock;

/* Data to send or room to receive into: the caller's iovec array. */
struct sock_iov {
    const struct iovec *iov;
    size_t iovcnt;
    size_t len;   /* total bytes over all iov */
};

struct tcp_cc_ops;

struct sock_ops {
    int (*attach)(struct sock *s);   /* create the pcb */
    void (*detach)(struct sock *s);  /* close: unlink the pcb, wake waiters */
    void (*destroy)(struct sock *s); /* free the pcb: nobody uses s now */
    int (*bind)(struct sock *s, const struct sock_addr *a);
    int (*connect)(struct sock *s, const struct sock_addr *a, uint64_t deadline);
    int (*listen)(struct sock *s, int backlog);
    int (*accept)(struct sock *s, struct sock **child, uint64_t deadline);
    /* Returns bytes sent or -errno. to may be NULL (connected). */
    ssize_t (*send)(struct sock *s, const struct sock_iov *data, const struct sock_addr *to,
                    int flags, uint64_t deadline);
    /* Returns bytes copied (or the whole length with MSG_TRUNC) or -errno;
     * sets *msg_flags (MSG_TRUNC) and *from. */
    ssize_t (*recv)(struct sock *s, const struct sock_iov *room, struct sock_addr *from,
                    int flags, int *msg_flags, uint64_t deadline);
    int (*shutdown)(struct sock *s, int how);
    short (*poll)(struct sock *s);   /* POLLIN | POLLOUT | POLLERR | POLLHUP */
    int (*name)(struct sock *s, int peer, struct sock_addr *a);
    int (*take_error)(struct sock *s); /* SO_ERROR: pending error, cleared */
    void (*wake)(struct sock *s);      /* broadcast s->cv under the module lock */
    /* optional: an option changed (keepalive armed, Nagle lifted, ...) */
    void (*opt_changed)(struct sock *s, int level, int name);
};

struct sock {
    int sd;                      /* [S] descriptor, -1 once closed */
    int refs;                    /* [S] */
    int type;                    /* [c] SOCK_DGRAM, SOCK_STREAM */
    int protocol;                /* [c] IPPROTO_UDP, IPPROTO_TCP */
    const struct sock_ops *ops;  /* [c] */
    void *pcb;                   /* [c] set by attach; fields under [p] */
    struct cond cv;              /* waiters sleep here holding [p] */
    _Atomic int nonblock;        /* [a] */
    _Atomic int reuseaddr;       /* [a] */
    _Atomic int broadcast;       /* [a] */
    _Atomic int rcvbuf;          /* [a] bytes */
    _Atomic int sndbuf;          /* [a] bytes */
    _Atomic int ttl;             /* [a] 0: default */
    _Atomic int64_t rcvtimeo_ms; /* [a] -1: none */
    _Atomic int64_t sndtimeo_ms; /* [a] -1: none */
    /* TCP's options, read by tcp*.c through pcb->sock */
    _Atomic int nodelay;         /* [a] TCP_NODELAY */
    _Atomic int keepalive;       /* [a] SO_KEEPALIVE */
    _Atomic int keep_idle_s;     /* [a] TCP_KEEPIDLE, 0: default */
    _Atomic int keep_intvl_s;    /* [a] TCP_KEEPINTVL */
    _Atomic int keep_cnt;        /* [a] TCP_KEEPCNT */
    _Atomic int linger_on;       /* [a] SO_LINGER l_onoff */
    _Atomic int linger_s;        /* [a] SO_LINGER l_linger */
    const struct tcp_cc_ops *_Atomic cc; /* [a] TCP_CONGESTION; NULL: default */
};

/* Register the transport serving (type, protocol); protocol 0 picks it as
 * the default for the type. */
int sock_register_ops(int type, int protocol, const struct sock_ops *ops);

/* Sleep on s->cv with lock (the transport's module lock, held) until woken
 * or deadline. Returns 0 after a wake-up (the caller re-checks its
 * condition), -EAGAIN when the deadline has passed or is SOCK_NOWAIT, and
 * -ESHUTDOWN when the stack is stopping. */
int sock_wait(struct sock *s, struct mutex *lock, uint64_t deadline);
/* Wake every thread waiting on s, and any sock_poll() watching. */
void sock_wakeup(struct sock *s);

/* A new socket for an accepted connection, sharing the listener's options;
 * sock_install gives it a descriptor. */
struct sock *sock_alloc(int type, int protocol, const struct sock_ops *ops);
int sock_install(struct sock *s);
/* As sock_install, plus a reference for the caller (released with the
 * socket layer's own put, in sock_accept): the new descriptor can be closed
 * by another thread the moment it exists. */
int sock_install_held(struct sock *s);
void sock_free_unattached(struct sock *s);

/* Copy between an iovec array and a flat buffer, starting off bytes in. */
size_t sock_iov_to_buf(const struct sock_iov *v, size_t off, void *buf, size_t len);
size_t sock_iov_from_buf(const struct sock_iov *v, size_t off, const void *buf, size_t len);

int sock_init(void);
void sock_cleanup(void);

#endif
