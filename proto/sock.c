/*
 * sock.c — the socket-like API (sock.h) over the transports (sock_var.h).
 *
 * Where it sits: called by application threads; below it udp.c (and tcp.c)
 * do the protocol work. This is the only file that sets errno: everything
 * beneath returns 0 or a negative errno value (style.md, habit 9).
 *
 * Every call follows the same path:
 *   sock_get(sd)      descriptor -> struct sock, taking a reference
 *   check arguments   EINVAL, EAFNOSUPPORT, EFAULT, ... before any work
 *   s->ops->X(...)    the transport; it may sleep on s->cv
 *   sock_put(s)       drop the reference; the last one frees the socket
 *
 * Lock order: sock_lock is never held while calling a transport; a
 * transport's lock is never held while taking sock_lock, except that
 * sock_wakeup takes poll_lock (last in the order, held for a moment).
 */
#include "proto/sock.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>

#include "proto/sock_var.h"
#include "proto/tcp_cc.h"
#include "util/log.h"
#include "util/mem.h"

#define SOCK_TYPE_MASK 0xf /* SOCK_NONBLOCK and SOCK_CLOEXEC ride above */

struct sock_proto {
    int type, protocol;
    const struct sock_ops *ops;
};

static struct mutex sock_lock = MUTEX_INITIALIZER;
static struct cond sock_idle;           /* sock_cleanup waits for refs to drain */
static struct sock **table;             /* [S] net_config.sock_max entries */
static int table_size;                  /* [S] */
static int live;                        /* [S] sockets not yet freed */
static struct sock_proto protos[8];     /* [S] */
static int nprotos;                     /* [S] */

/* sock_poll: a generation count bumped by every sock_wakeup while someone
 * polls, so a poller can sleep until "anything changed". */
static struct mutex poll_lock = MUTEX_INITIALIZER;
static struct cond poll_cond;
static uint64_t poll_gen;               /* [poll_lock] */
static _Atomic int poll_waiters;

/* ---- helpers for transports ------------------------------------------------ */

int sock_wait(struct sock *s, struct mutex *lock, uint64_t deadline)
{
    if (net_is_shutting_down())
        return -ESHUTDOWN;
    if (deadline == SOCK_NOWAIT)
        return -EAGAIN;
    if (deadline == SOCK_FOREVER) {
        cond_wait(&s->cv, lock);
        return 0;
    }
    if (platform_now_ms() >= deadline)
        return -EAGAIN;
    cond_wait_until(&s->cv, lock, deadline);
    return 0; /* the caller re-checks; a passed deadline shows next time */
}

void sock_wakeup(struct sock *s)
{
    cond_broadcast(&s->cv);
    /* Seen as 0 only if every poller registers after our state change, and
     * such a poller checks readiness after registering: nothing is lost. */
    if (atomic_load(&poll_waiters) > 0) {
        mutex_lock(&poll_lock);
        poll_gen++;
        cond_broadcast(&poll_cond);
        mutex_unlock(&poll_lock);
    }
}

/* Copy len bytes between the iovec array (from off bytes in) and buf, in
 * the direction to_iov says. Returns the bytes copied. */
static size_t iov_copy(const struct sock_iov *v, size_t off, uint8_t *buf, size_t len, int to_iov)
{
    size_t done = 0;

    for (size_t i = 0; i < v->iovcnt && done < len; i++) {
        size_t n = v->iov[i].iov_len;
        uint8_t *base = v->iov[i].iov_base;
        if (off >= n) {
            off -= n;
            continue;
        }
        n -= off;
        if (n > len - done)
            n = len - done;
        if (to_iov)
            memcpy(base + off, buf + done, n);
        else
            memcpy(buf + done, base + off, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t sock_iov_to_buf(const struct sock_iov *v, size_t off, void *buf, size_t len)
{
    return iov_copy(v, off, buf, len, 0);
}

size_t sock_iov_from_buf(const struct sock_iov *v, size_t off, const void *buf, size_t len)
{
    return iov_copy(v, off, (uint8_t *)buf, len, 1);
}

/* ---- descriptors ----------------------------------------------------------------- */

int sock_register_ops(int type, int protocol, const struct sock_ops *ops)
{
    int err = 0;

    mutex_lock(&sock_lock);
    if (nprotos == (int)(sizeof(protos) / sizeof(protos[0])))
        err = -ENOSPC;
    else
        protos[nprotos++] = (struct sock_proto){ type, protocol, ops };
    mutex_unlock(&sock_lock);
    return err;
}

static const struct sock_ops *ops_lookup(int type, int *protocol)
{
    const struct sock_ops *ops = NULL;

    mutex_lock(&sock_lock);
    for (int i = 0; i < nprotos; i++) {
        if (protos[i].type == type && (*protocol == 0 || protos[i].protocol == *protocol)) {
            ops = protos[i].ops;
            *protocol = protos[i].protocol;
            break;
        }
    }
    mutex_unlock(&sock_lock);
    return ops;
}

struct sock *sock_alloc(int type, int protocol, const struct sock_ops *ops)
{
    struct sock *s = mem_calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->sd = -1;
    s->type = type;
    s->protocol = protocol;
    s->ops = ops;
    cond_init(&s->cv);
    atomic_store(&s->rcvbuf, (int)net_config.sock_rcvbuf_default);
    atomic_store(&s->sndbuf, (int)net_config.sock_sndbuf_default);
    atomic_store(&s->rcvtimeo_ms, -1);
    atomic_store(&s->sndtimeo_ms, -1);
    return s;
}

void sock_free_unattached(struct sock *s)
{
    cond_destroy(&s->cv);
    mem_free(s);
}

static int install(struct sock *s, int refs)
{
    int sd = -EMFILE;

    mutex_lock(&sock_lock);
    for (int i = 0; i < table_size; i++) {
        if (!table[i]) {
            table[i] = s;
            s->sd = sd = i;
            s->refs = refs; /* the descriptor's own, and maybe the caller's */
            live++;
            break;
        }
    }
    mutex_unlock(&sock_lock);
    return sd;
}

/* Give s the lowest free descriptor (as POSIX does). */
int sock_install(struct sock *s)
{
    return install(s, 1);
}

int sock_install_held(struct sock *s)
{
    return install(s, 2);
}

static struct sock *sock_get(int sd)
{
    struct sock *s = NULL;

    /* Once the stack stops, every call fails with ESHUTDOWN, including on
     * descriptors its clean-up has already closed. */
    if (net_is_shutting_down()) {
        errno = ESHUTDOWN;
        return NULL;
    }

    mutex_lock(&sock_lock);
    if (sd >= 0 && sd < table_size && table[sd]) {
        s = table[sd];
        s->refs++;
    }
    mutex_unlock(&sock_lock);
    if (!s)
        errno = EBADF;
    return s;
}

static void sock_put(struct sock *s)
{
    int last;

    mutex_lock(&sock_lock);
    last = --s->refs == 0;
    mutex_unlock(&sock_lock);
    if (!last)
        return;
    s->ops->destroy(s);
    cond_destroy(&s->cv);
    mem_free(s);
    mutex_lock(&sock_lock);
    live--;
    cond_broadcast(&sock_idle);
    mutex_unlock(&sock_lock);
}

/* errno from a transport's negative return; -1 for the caller to return. */
static int fail(int err)
{
    errno = -err;
    return -1;
}

/* The deadline of a blocking call from the socket's timeout and flags. */
static uint64_t deadline_for(struct sock *s, int flags, int sending)
{
    int64_t t = atomic_load(sending ? &s->sndtimeo_ms : &s->rcvtimeo_ms);

    if ((flags & MSG_DONTWAIT) || atomic_load(&s->nonblock))
        return SOCK_NOWAIT;
    if (t <= 0)
        return SOCK_FOREVER;
    return platform_now_ms() + (uint64_t)t;
}

static int addr_from_user(const struct sockaddr *sa, socklen_t len, struct sock_addr *a)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

    if (!sa)
        return -EFAULT;
    if (len < (socklen_t)sizeof(*in))
        return -EINVAL;
    if (in->sin_family != AF_INET)
        return -EAFNOSUPPORT;
    a->addr = in->sin_addr.s_addr;
    a->port = ntohs(in->sin_port);
    return 0;
}

static void addr_to_user(const struct sock_addr *a, struct sockaddr *sa, socklen_t *len)
{
    struct sockaddr_in in = { .sin_family = AF_INET };

    if (!sa || !len)
        return;
    in.sin_addr.s_addr = a->addr;
    in.sin_port = htons(a->port);
    memcpy(sa, &in, *len < sizeof(in) ? *len : sizeof(in));
    *len = sizeof(in);
}

/* ---- the API ------------------------------------------------------------------------ */

int sock_open(int domain, int type, int protocol)
{
    const struct sock_ops *ops;
    struct sock *s;
    int sd, err;

    if (net_is_shutting_down())
        return fail(-ESHUTDOWN);
    if (domain != AF_INET)
        return fail(-EAFNOSUPPORT);
    if (!(ops = ops_lookup(type & SOCK_TYPE_MASK, &protocol)))
        return fail(-EPROTONOSUPPORT);
    if (!(s = sock_alloc(type & SOCK_TYPE_MASK, protocol, ops)))
        return fail(-ENOMEM);
    atomic_store(&s->nonblock, (type & SOCK_NONBLOCK) != 0);
    if ((err = ops->attach(s)) < 0) {
        sock_free_unattached(s);
        return fail(err);
    }
    if ((sd = sock_install(s)) < 0) {
        ops->detach(s);
        ops->destroy(s);
        sock_free_unattached(s);
        return fail(sd);
    }
    log_debug(LOG_SOCK, "open sd %d type %d protocol %d", sd, s->type, protocol);
    return sd;
}

int sock_close(int sd)
{
    struct sock *s;

    mutex_lock(&sock_lock);
    if (sd < 0 || sd >= table_size || !(s = table[sd])) {
        mutex_unlock(&sock_lock);
        return fail(-EBADF);
    }
    table[sd] = NULL; /* new calls on sd now fail with EBADF */
    s->sd = -1;
    mutex_unlock(&sock_lock);
    log_debug(LOG_SOCK, "close sd %d", sd);
    s->ops->detach(s); /* wakes every thread blocked on s */
    sock_put(s);       /* the descriptor's reference */
    return 0;
}

int sock_bind(int sd, const struct sockaddr *addr, socklen_t addrlen)
{
    struct sock *s = sock_get(sd);
    struct sock_addr a;
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if ((err = addr_from_user(addr, addrlen, &a)) == 0)
        err = s->ops->bind(s, &a);
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

int sock_connect(int sd, const struct sockaddr *addr, socklen_t addrlen)
{
    struct sock *s = sock_get(sd);
    struct sock_addr a;
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if ((err = addr_from_user(addr, addrlen, &a)) == 0)
        err = s->ops->connect(s, &a, deadline_for(s, 0, 1));
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

int sock_listen(int sd, int backlog)
{
    struct sock *s = sock_get(sd);
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    err = s->ops->listen ? s->ops->listen(s, backlog) : -EOPNOTSUPP;
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

int sock_accept(int sd, struct sockaddr *addr, socklen_t *addrlen)
{
    struct sock *s = sock_get(sd), *child = NULL;
    struct sock_addr a;
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    err = s->ops->accept ? s->ops->accept(s, &child, deadline_for(s, 0, 0)) : -EOPNOTSUPP;
    sock_put(s);
    if (err < 0)
        return fail(err);
    /* accept handed us a reference (sock_install_held): child stays valid
     * even if another thread closes its new descriptor right away */
    if (addr && addrlen && child->ops->name(child, 1, &a) == 0)
        addr_to_user(&a, addr, addrlen);
    err = child->sd >= 0 ? child->sd : -EBADF;
    sd = err;
    sock_put(child);
    return sd < 0 ? fail(sd) : sd;
}

ssize_t sock_sendmsg(int sd, const struct msghdr *msg, int flags)
{
    struct sock *s = sock_get(sd);
    struct sock_iov data = { 0 };
    struct sock_addr to;
    ssize_t n;
    int err = 0;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (!msg || (msg->msg_iovlen && !msg->msg_iov))
        err = -EFAULT;
    for (size_t i = 0; !err && i < msg->msg_iovlen; i++) {
        if (!msg->msg_iov[i].iov_base && msg->msg_iov[i].iov_len)
            err = -EFAULT;
        data.len += msg->msg_iov[i].iov_len;
    }
    if (!err && msg->msg_name)
        err = addr_from_user(msg->msg_name, msg->msg_namelen, &to);
    if (err) {
        sock_put(s);
        return fail(err);
    }
    data.iov = msg->msg_iov;
    data.iovcnt = msg->msg_iovlen;
    n = s->ops->send(s, &data, msg->msg_name ? &to : NULL, flags, deadline_for(s, flags, 1));
    sock_put(s);
    return n < 0 ? fail((int)n) : n;
}

ssize_t sock_recvmsg(int sd, struct msghdr *msg, int flags)
{
    struct sock *s = sock_get(sd);
    struct sock_iov room = { 0 };
    struct sock_addr from = { 0 };
    int msg_flags = 0;
    ssize_t n;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (!msg || (msg->msg_iovlen && !msg->msg_iov)) {
        sock_put(s);
        return fail(-EFAULT);
    }
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        room.len += msg->msg_iov[i].iov_len;
    room.iov = msg->msg_iov;
    room.iovcnt = msg->msg_iovlen;
    n = s->ops->recv(s, &room, &from, flags, &msg_flags, deadline_for(s, flags, 0));
    sock_put(s);
    if (n < 0)
        return fail((int)n);
    msg->msg_flags = msg_flags;
    if (msg->msg_name) {
        socklen_t len = msg->msg_namelen;
        addr_to_user(&from, msg->msg_name, &len);
        msg->msg_namelen = len;
    }
    return n;
}

ssize_t sock_sendto(int sd, const void *buf, size_t len, int flags, const struct sockaddr *to,
                    socklen_t tolen)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg = { .msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1 };

    if (!buf && len)
        return fail(-EFAULT);
    return sock_sendmsg(sd, &msg, flags);
}

ssize_t sock_send(int sd, const void *buf, size_t len, int flags)
{
    return sock_sendto(sd, buf, len, flags, NULL, 0);
}

ssize_t sock_recvfrom(int sd, void *buf, size_t len, int flags, struct sockaddr *from,
                      socklen_t *fromlen)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    if (!buf && len)
        return fail(-EFAULT);
    if (from && fromlen) {
        msg.msg_name = from;
        msg.msg_namelen = *fromlen;
    }
    n = sock_recvmsg(sd, &msg, flags);
    if (n >= 0 && from && fromlen)
        *fromlen = msg.msg_namelen;
    return n;
}

ssize_t sock_recv(int sd, void *buf, size_t len, int flags)
{
    return sock_recvfrom(sd, buf, len, flags, NULL, NULL);
}

int sock_shutdown(int sd, int how)
{
    struct sock *s = sock_get(sd);
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        err = -EINVAL;
    else
        err = s->ops->shutdown(s, how);
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

static int sock_name(int sd, int peer, struct sockaddr *addr, socklen_t *addrlen)
{
    struct sock *s = sock_get(sd);
    struct sock_addr a;
    int err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (!addr || !addrlen)
        err = -EFAULT;
    else if ((err = s->ops->name(s, peer, &a)) == 0)
        addr_to_user(&a, addr, addrlen);
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

int sock_getsockname(int sd, struct sockaddr *addr, socklen_t *addrlen)
{
    return sock_name(sd, 0, addr, addrlen);
}

int sock_getpeername(int sd, struct sockaddr *addr, socklen_t *addrlen)
{
    return sock_name(sd, 1, addr, addrlen);
}

/* ---- options ----------------------------------------------------------------------- */

static int opt_int(const void *val, socklen_t len, int *out)
{
    if (!val)
        return -EFAULT;
    if (len < (socklen_t)sizeof(int))
        return -EINVAL;
    memcpy(out, val, sizeof(int));
    return 0;
}

static int opt_timeout(const void *val, socklen_t len, _Atomic int64_t *out)
{
    struct timeval tv;

    if (!val)
        return -EFAULT;
    if (len < (socklen_t)sizeof(tv))
        return -EINVAL;
    memcpy(&tv, val, sizeof(tv));
    if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
        return -EDOM;
    /* like Linux: a timeout under a tick rounds up rather than to "none" */
    atomic_store(out, (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
    return 0;
}

/* SO_RCVBUF/SO_SNDBUF: clamped to [net_config.sock_buf_min, sock_buf_max]. */
static int clamp_buf(int v)
{
    if (v < (int)net_config.sock_buf_min)
        return (int)net_config.sock_buf_min;
    if (v > (int)net_config.sock_buf_max)
        return (int)net_config.sock_buf_max;
    return v;
}

static int setopt_linger(struct sock *s, const void *val, socklen_t len)
{
    struct linger l;

    if (!val)
        return -EFAULT;
    if (len < (socklen_t)sizeof(l))
        return -EINVAL;
    memcpy(&l, val, sizeof(l));
    atomic_store(&s->linger_on, l.l_onoff != 0);
    atomic_store(&s->linger_s, l.l_linger < 0 ? 0 : l.l_linger);
    return 0;
}

/* IPPROTO_TCP options; stored on the socket, read by tcp*.c. */
static int setopt_tcp(struct sock *s, int name, const void *val, socklen_t len)
{
    int v = 0, err;

    if (s->type != SOCK_STREAM)
        return -ENOPROTOOPT;
    if (name == TCP_CONGESTION) { /* a name, as on Linux: "newreno", "cubic" */
        char buf[TCP_CC_NAME_MAX] = { 0 };
        const struct tcp_cc_ops *cc;
        if (!val || len == 0)
            return -EINVAL;
        memcpy(buf, val, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
        if (!(cc = tcp_cc_find(buf)))
            return -ENOENT;
        atomic_store(&s->cc, cc);
        return 0;
    }
    if ((err = opt_int(val, len, &v)) < 0)
        return err;
    switch (name) {
    case TCP_NODELAY: atomic_store(&s->nodelay, v != 0); return 0;
    case TCP_KEEPIDLE:
        if (v < 1 || v > 32767)
            return -EINVAL;
        atomic_store(&s->keep_idle_s, v);
        return 0;
    case TCP_KEEPINTVL:
        if (v < 1 || v > 32767)
            return -EINVAL;
        atomic_store(&s->keep_intvl_s, v);
        return 0;
    case TCP_KEEPCNT:
        if (v < 1 || v > 127)
            return -EINVAL;
        atomic_store(&s->keep_cnt, v);
        return 0;
    }
    return -ENOPROTOOPT;
}

static int setopt_socket(struct sock *s, int name, const void *val, socklen_t len)
{
    int v = 0, err;

    if (name == SO_LINGER)
        return setopt_linger(s, val, len);
    if (name == SO_RCVTIMEO)
        return opt_timeout(val, len, &s->rcvtimeo_ms);
    if (name == SO_SNDTIMEO)
        return opt_timeout(val, len, &s->sndtimeo_ms);
    if ((err = opt_int(val, len, &v)) < 0)
        return err;
    switch (name) {
    case SO_REUSEADDR: atomic_store(&s->reuseaddr, v != 0); return 0;
    case SO_BROADCAST: atomic_store(&s->broadcast, v != 0); return 0;
    case SO_KEEPALIVE: atomic_store(&s->keepalive, v != 0); return 0;
    case SO_RCVBUF: atomic_store(&s->rcvbuf, clamp_buf(v)); return 0;
    case SO_SNDBUF: atomic_store(&s->sndbuf, clamp_buf(v)); return 0;
    }
    return -ENOPROTOOPT;
}

int sock_setsockopt(int sd, int level, int optname, const void *optval, socklen_t optlen)
{
    struct sock *s = sock_get(sd);
    int err = -ENOPROTOOPT, v;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (level == SOL_SOCKET) {
        err = setopt_socket(s, optname, optval, optlen);
    } else if (level == SOL_NETSTEP && optname == NETSTEP_NONBLOCK) {
        /* Like O_NONBLOCK, it applies to calls made from now on: a call
         * already blocked keeps the deadline it started with. */
        if ((err = opt_int(optval, optlen, &v)) == 0)
            atomic_store(&s->nonblock, v != 0);
    } else if (level == IPPROTO_IP && optname == IP_TTL) {
        if ((err = opt_int(optval, optlen, &v)) == 0)
            err = (v < 0 || v > 255) ? -EINVAL : (atomic_store(&s->ttl, v), 0);
    } else if (level == IPPROTO_TCP) {
        err = setopt_tcp(s, optname, optval, optlen);
    }
    if (err == 0 && s->ops->opt_changed)
        s->ops->opt_changed(s, level, optname);
    sock_put(s);
    return err < 0 ? fail(err) : 0;
}

static int getopt_value(struct sock *s, int level, int name, int *v, int64_t *ms)
{
    *ms = -2;
    if (level == SOL_NETSTEP && name == NETSTEP_NONBLOCK)
        return *v = atomic_load(&s->nonblock), 0;
    if (level == IPPROTO_IP && name == IP_TTL)
        return *v = atomic_load(&s->ttl) ? atomic_load(&s->ttl) : (int)net_config.ip_default_ttl, 0;
    if (level == IPPROTO_TCP && s->type == SOCK_STREAM) {
        switch (name) {
        case TCP_NODELAY: *v = atomic_load(&s->nodelay); return 0;
        case TCP_KEEPIDLE: *v = atomic_load(&s->keep_idle_s) ? atomic_load(&s->keep_idle_s) : (int)net_config.tcp_keep_idle_s; return 0;
        case TCP_KEEPINTVL: *v = atomic_load(&s->keep_intvl_s) ? atomic_load(&s->keep_intvl_s) : (int)net_config.tcp_keep_intvl_s; return 0;
        case TCP_KEEPCNT: *v = atomic_load(&s->keep_cnt) ? atomic_load(&s->keep_cnt) : (int)net_config.tcp_keep_cnt; return 0;
        }
        return -ENOPROTOOPT;
    }
    if (level != SOL_SOCKET)
        return -ENOPROTOOPT;
    switch (name) {
    case SO_REUSEADDR: *v = atomic_load(&s->reuseaddr); return 0;
    case SO_BROADCAST: *v = atomic_load(&s->broadcast); return 0;
    case SO_KEEPALIVE: *v = atomic_load(&s->keepalive); return 0;
    case SO_RCVBUF: *v = atomic_load(&s->rcvbuf); return 0;
    case SO_SNDBUF: *v = atomic_load(&s->sndbuf); return 0;
    case SO_TYPE: *v = s->type; return 0;
    case SO_PROTOCOL: *v = s->protocol; return 0;
    case SO_DOMAIN: *v = AF_INET; return 0;
    case SO_ERROR: *v = -s->ops->take_error(s); return 0;
    case SO_RCVTIMEO: *ms = atomic_load(&s->rcvtimeo_ms); return 0;
    case SO_SNDTIMEO: *ms = atomic_load(&s->sndtimeo_ms); return 0;
    }
    return -ENOPROTOOPT;
}

int sock_getsockopt(int sd, int level, int optname, void *optval, socklen_t *optlen)
{
    struct sock *s = sock_get(sd);
    int64_t ms;
    int v = 0, err;

    if (!s)
        return fail(errno == ESHUTDOWN ? -ESHUTDOWN : -EBADF);
    if (!optval || !optlen) {
        sock_put(s);
        return fail(-EFAULT);
    }
    if (level == IPPROTO_TCP && optname == TCP_CONGESTION && s->type == SOCK_STREAM) {
        const struct tcp_cc_ops *cc = atomic_load(&s->cc);
        const char *name = (cc ? cc : tcp_cc_default())->name;
        size_t n = strlen(name) + 1;
        sock_put(s);
        if (*optlen < (socklen_t)n)
            n = *optlen;
        memcpy(optval, name, n);
        *optlen = (socklen_t)n;
        return 0;
    }
    err = getopt_value(s, level, optname, &v, &ms);
    sock_put(s);
    if (err < 0)
        return fail(err);
    if (ms != -2) {
        struct timeval tv = { 0 };
        if (ms > 0) {
            tv.tv_sec = ms / 1000;
            tv.tv_usec = (ms % 1000) * 1000;
        }
        if (*optlen < (socklen_t)sizeof(tv))
            return fail(-EINVAL);
        memcpy(optval, &tv, sizeof(tv));
        *optlen = sizeof(tv);
        return 0;
    }
    if (*optlen < (socklen_t)sizeof(int))
        return fail(-EINVAL);
    memcpy(optval, &v, sizeof(int));
    *optlen = sizeof(int);
    return 0;
}

/* ---- poll ---------------------------------------------------------------------------- */

/* Fill revents for every entry; returns how many are ready. */
static int poll_scan(struct pollfd *fds, nfds_t nfds)
{
    int ready = 0;

    for (nfds_t i = 0; i < nfds; i++) {
        struct sock *s;
        short ev;

        fds[i].revents = 0;
        if (fds[i].fd < 0)
            continue;
        if (!(s = sock_get(fds[i].fd))) {
            fds[i].revents = POLLNVAL;
            ready++;
            continue;
        }
        ev = s->ops->poll(s);
        sock_put(s);
        /* errors and hang-ups are reported whether asked for or not */
        fds[i].revents = (short)(ev & (fds[i].events | POLLERR | POLLHUP));
        if (fds[i].revents)
            ready++;
    }
    return ready;
}

int sock_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
    uint64_t deadline = timeout_ms > 0 ? platform_now_ms() + (uint64_t)timeout_ms : 0;
    int ready;

    if (!fds && nfds)
        return fail(-EFAULT);
    atomic_fetch_add(&poll_waiters, 1);
    for (;;) {
        uint64_t gen;
        if (net_is_shutting_down()) { /* before the scan: clean-up may have closed them */
            atomic_fetch_sub(&poll_waiters, 1);
            return fail(-ESHUTDOWN);
        }
        mutex_lock(&poll_lock);
        gen = poll_gen;
        mutex_unlock(&poll_lock);
        if ((ready = poll_scan(fds, nfds)) > 0 || timeout_ms == 0)
            break;
        if (net_is_shutting_down()) {
            atomic_fetch_sub(&poll_waiters, 1);
            return fail(-ESHUTDOWN);
        }
        mutex_lock(&poll_lock);
        /* Anything that changed since we read gen bumped it: no lost wake. */
        while (poll_gen == gen && !net_is_shutting_down()) {
            if (timeout_ms < 0) {
                cond_wait(&poll_cond, &poll_lock);
            } else if (cond_wait_until(&poll_cond, &poll_lock, deadline) == -ETIMEDOUT) {
                break;
            }
        }
        mutex_unlock(&poll_lock);
        if (timeout_ms > 0 && platform_now_ms() >= deadline) {
            ready = poll_scan(fds, nfds);
            break;
        }
    }
    atomic_fetch_sub(&poll_waiters, 1);
    return ready;
}

/* ---- life cycle ------------------------------------------------------------------------ */

static void sock_on_shutdown(void *arg)
{
    (void)arg;
    /* Wake every blocked call; each sees net_is_shutting_down(). Each
     * socket is held (a reference) while we wake it, taken and dropped in
     * the same step, so a close meanwhile cannot free it under us. */
    for (int i = 0; i < table_size; i++) {
        struct sock *s;
        mutex_lock(&sock_lock);
        s = table[i];
        if (s)
            s->refs++;
        mutex_unlock(&sock_lock);
        if (s) {
            s->ops->wake(s);
            sock_put(s);
        }
    }
    mutex_lock(&poll_lock);
    poll_gen++;
    cond_broadcast(&poll_cond);
    mutex_unlock(&poll_lock);
}

int sock_init(void)
{
    mutex_lock(&sock_lock);
    if (!table) {
        table_size = (int)net_config.sock_max;
        table = mem_calloc((size_t)table_size, sizeof(*table));
        cond_init(&sock_idle);
        cond_init(&poll_cond);
    }
    nprotos = 0;
    mutex_unlock(&sock_lock);
    if (!table)
        return -ENOMEM;
    return net_shutdown_notify(sock_on_shutdown, NULL);
}

/* After the stack stopped: close what the app left open, wait (bounded)
 * for calls still returning, free the table. */
void sock_cleanup(void)
{
    uint64_t deadline = platform_now_ms() + 5000;

    for (int sd = 0; sd < table_size; sd++) {
        mutex_lock(&sock_lock);
        int open = table[sd] != NULL;
        mutex_unlock(&sock_lock);
        if (open)
            sock_close(sd);
    }
    mutex_lock(&sock_lock);
    while (live > 0 && cond_wait_until(&sock_idle, &sock_lock, deadline) == 0)
        ;
    if (live > 0) {
        /* a thread is still inside a call: leak rather than free under it */
        log_error(LOG_SOCK, "%d sockets still in use at shutdown; not freed", live);
        mutex_unlock(&sock_lock);
        return;
    }
    mem_free(table);
    table = NULL;
    table_size = 0;
    cond_destroy(&sock_idle);
    cond_destroy(&poll_cond);
    mutex_unlock(&sock_lock);
}
