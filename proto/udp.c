/*
 * udp.c — the User Datagram Protocol (RFC 768; RFC 1122 §4.1).
 *
 * Called in the order  ip_deliver -> udp_input -> a pcb's receive queue ->
 * (app thread) udp_recv;  and  sock_sendto -> udp_send -> ip_output.
 * ICMP errors about datagrams we sent arrive in udp_icmp_error and become
 * the pending error of the connected socket they concern (RFC 1122
 * §4.1.3.3), returned by its next call.
 *
 * Every pcb lives in one list under udp_lock, which also guards each pcb's
 * receive queue. Readers sleep on their socket's condition variable with
 * udp_lock held (sock_wait) and udp_input wakes them (sock_wakeup).
 * udp_lock is never held across ip_output or icmp_error.
 */
#include "proto/udp.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "proto/icmp.h"
#include "proto/ip.h"
#include "proto/sock_var.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"

struct udp_pcb {
    struct udp_pcb *next;     /* [U] */
    struct sock *sock;        /* [c] */
    struct sock_addr local;   /* [U] */
    struct sock_addr remote;  /* [U] port 0: not connected */
    int bound;                /* [U] */
    int closed;               /* [U] detached: no more datagrams */
    int shut_rd, shut_wr;     /* [U] sock_shutdown */
    int error;                /* [U] pending -errno from ICMP, or 0 */
    struct pbuf *rxq;         /* [U] received datagrams, oldest first */
    struct pbuf *rxq_tail;    /* [U] */
    size_t rx_charge;         /* [U] memory they use, against SO_RCVBUF */
};

/* What a queued datagram keeps in its pbuf's cb[]: who sent it. */
struct udp_cb {
    uint32_t addr;
    uint16_t port;
};

static const char *const udp_stat_names[UDPSTAT_COUNT] = {
    [UDPSTAT_IN_DATAGRAMS] = "in_datagrams",
    [UDPSTAT_IN_TOO_SHORT] = "in_too_short",
    [UDPSTAT_IN_BAD_LENGTH] = "in_bad_length",
    [UDPSTAT_IN_BAD_CHECKSUM] = "in_bad_checksum",
    [UDPSTAT_IN_NO_CHECKSUM] = "in_no_checksum",
    [UDPSTAT_IN_BAD_PORT] = "in_bad_port",
    [UDPSTAT_NO_PORT] = "no_port",
    [UDPSTAT_RCVBUF_ERRORS] = "rcvbuf_errors",
    [UDPSTAT_IN_NO_MEMORY] = "in_no_memory",
    [UDPSTAT_IN_ICMP_ERRORS] = "in_icmp_errors",
    [UDPSTAT_OUT_DATAGRAMS] = "out_datagrams",
    [UDPSTAT_OUT_ERRORS] = "out_errors",
};
struct stats_group udp_stats = STATS_GROUP("udp", udp_stat_names);

static struct mutex udp_lock = MUTEX_INITIALIZER;
static struct udp_pcb *pcbs;  /* [U] */
static uint16_t next_port;    /* [U] where the ephemeral search starts */

static struct udp_pcb *pcb_of(struct sock *s)
{
    return s->pcb;
}

void udp_dump(const uint8_t *data, size_t len, uint32_t src, uint32_t dst)
{
    char a[IP_ADDR_STR_LEN], b[IP_ADDR_STR_LEN];

    if (len < UDP_HDR_SIZE)
        return;
    log_debug(LOG_UDP, "udp %s.%u > %s.%u: length %u, sum 0x%04x", ip_addr_ntop(src, a, sizeof(a)),
              load16(data), ip_addr_ntop(dst, b, sizeof(b)), load16(data + 2), load16(data + 4),
              load16(data + 6));
}

/* Memory a queued datagram costs: all of its buffer, not just the payload,
 * so a flood of empty datagrams is bounded too. */
static size_t rx_charge(const struct pbuf *pb)
{
    return sizeof(*pb) + pb->cap;
}

/* ---- ports ---------------------------------------------------------------- */

static int port_in_use_locked(uint16_t port, uint32_t addr, int reuse, struct udp_pcb *self)
{
    assert(mutex_held(&udp_lock));
    for (struct udp_pcb *p = pcbs; p; p = p->next) {
        if (p == self || !p->bound || p->local.port != port)
            continue;
        if (p->local.addr != addr && p->local.addr != IP_ADDR_ANY && addr != IP_ADDR_ANY)
            continue; /* different specific addresses never clash */
        if (reuse && atomic_load(&p->sock->reuseaddr))
            continue;
        return 1;
    }
    return 0;
}

/* Bind pcb to addr:port, choosing an ephemeral port when port is 0. */
static int bind_locked(struct udp_pcb *pcb, uint32_t addr, uint16_t port)
{
    assert(mutex_held(&udp_lock));
    int reuse = atomic_load(&pcb->sock->reuseaddr);

    if (port == 0) {
        unsigned lo = net_config.port_ephemeral_lo, hi = net_config.port_ephemeral_hi;
        unsigned span = hi - lo + 1;
        for (unsigned i = 0; i < span; i++) {
            uint16_t p = (uint16_t)(lo + (next_port + i) % span);
            if (!port_in_use_locked(p, addr, 0, pcb)) {
                port = p;
                next_port = (uint16_t)((next_port + i + 1) % span);
                break;
            }
        }
        if (port == 0)
            return -EADDRINUSE; /* every ephemeral port taken */
    } else if (port_in_use_locked(port, addr, reuse, pcb)) {
        return -EADDRINUSE;
    }
    pcb->local.addr = addr;
    pcb->local.port = port;
    pcb->bound = 1;
    return 0;
}

/* ---- input ------------------------------------------------------------------ */

/* Does pcb want a datagram to dst:dport from src:sport? Returns a score,
 * higher for a closer match, or -1. */
static int match_score(const struct udp_pcb *p, uint32_t src, uint16_t sport, uint32_t dst,
                       uint16_t dport)
{
    int score = 0;

    if (!p->bound || p->closed || p->local.port != dport)
        return -1;
    if (p->local.addr != IP_ADDR_ANY) {
        /* as in BSD and Linux, a broadcast reaches only sockets bound to the
         * wildcard or to that broadcast address itself */
        if (p->local.addr != dst)
            return -1;
        score += 2;
    }
    if (p->remote.port != 0) {
        if (p->remote.addr != src || p->remote.port != sport)
            return -1;
        score += 4;
    }
    return score;
}

/* Append pb to pcb's queue if SO_RCVBUF allows. Returns 0 or -ENOBUFS. */
static int enqueue_locked(struct udp_pcb *pcb, struct pbuf *pb)
{
    assert(mutex_held(&udp_lock));
    size_t charge = rx_charge(pb);

    /* as Linux does: admit while the queue is below SO_RCVBUF, so one
     * datagram always fits whatever a pooled buffer costs */
    if (pcb->shut_rd || pcb->rx_charge >= (size_t)atomic_load(&pcb->sock->rcvbuf))
        return -ENOBUFS;
    pb->next = NULL;
    if (pcb->rxq_tail)
        pcb->rxq_tail->next = pb;
    else
        pcb->rxq = pb;
    pcb->rxq_tail = pb;
    pcb->rx_charge += charge;
    sock_wakeup(pcb->sock);
    return 0;
}

/* Hand pb to the best-matching pcb (unicast) or to every match (broadcast).
 * Returns the number of sockets that wanted it; consumes pb then, and
 * leaves it to the caller when nobody did. */
static int deliver(struct pbuf *pb, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                   int bcast)
{
    struct udp_pcb *best = NULL;
    int best_score = -1, taken = 0;

    mutex_lock(&udp_lock);
    for (struct udp_pcb *p = pcbs; p; p = p->next) {
        int score = match_score(p, src, sport, dst, dport);
        if (score < 0)
            continue;
        if (bcast) { /* RFC 1122 §4.1.3.6: every socket on the port gets one */
            struct pbuf *copy = pbuf_clone(pb);
            if (!copy || enqueue_locked(p, copy) < 0) {
                STAT_INC(&udp_stats, copy ? UDPSTAT_RCVBUF_ERRORS : UDPSTAT_IN_NO_MEMORY);
                pbuf_free(copy);
            }
            taken++;
        } else if (score > best_score) {
            best = p;
            best_score = score;
        }
    }
    if (best) {
        taken = 1;
        if (enqueue_locked(best, pb) == 0)
            pb = NULL;
        else
            STAT_INC(&udp_stats, UDPSTAT_RCVBUF_ERRORS);
    }
    mutex_unlock(&udp_lock);
    if (taken)
        pbuf_free(pb); /* NULL if queued; the original after broadcast copies */
    return taken;
}

/* RFC 768 checks. Returns a reason (and the counter in *stat) or NULL. */
static const char *udp_validate(const struct ip_rx *rx, const struct pbuf *pb, int *stat)
{
    const struct udp_hdr *hdr = (const struct udp_hdr *)pb->data;

    if (pb->len < UDP_HDR_SIZE)
        return *stat = UDPSTAT_IN_TOO_SHORT, "shorter than a header";
    if (load16(&hdr->len) != pb->len)
        return *stat = UDPSTAT_IN_BAD_LENGTH, "length field differs from the datagram";
    if (hdr->sum == 0) {
        STAT_INC(&udp_stats, UDPSTAT_IN_NO_CHECKSUM); /* sender computed none */
    } else if (!(pb->flags & PBUF_FLAG_CSUM_PARTIAL) && cksum16(pb->data, pb->len, cksum_pseudo(rx->src, rx->dst, IP_PROTOCOL_UDP,
                                                      (uint16_t)pb->len)) != 0) {
        return *stat = UDPSTAT_IN_BAD_CHECKSUM, "bad checksum";
    }
    if (hdr->dst == 0)
        return *stat = UDPSTAT_IN_BAD_PORT, "destination port 0";
    return NULL;
}

static void udp_input(const struct ip_rx *rx, struct pbuf *pb)
{
    const struct udp_hdr *hdr = (const struct udp_hdr *)pb->data;
    struct udp_cb cb;
    uint16_t dport;
    const char *why;
    int stat = 0, bcast;

    STAT_INC(&udp_stats, UDPSTAT_IN_DATAGRAMS);
    if ((why = udp_validate(rx, pb, &stat)) != NULL) {
        STAT_INC(&udp_stats, stat);
        log_debug(LOG_UDP, "drop datagram (%zu bytes): %s", pb->len, why);
        pbuf_free(pb);
        return;
    }
    if (log_enabled(LOG_UDP, LOG_LEVEL_DEBUG))
        udp_dump(pb->data, pb->len, rx->src, rx->dst);
    cb.addr = rx->src;
    cb.port = load16(&hdr->src);
    dport = load16(&hdr->dst);
    memcpy(pb->cb, &cb, sizeof(cb));
    bcast = rx->link_broadcast || rx->dst == IP_ADDR_BROADCAST ||
            (rx->iface && rx->dst == rx->iface->broadcast);
    pbuf_pull(pb, UDP_HDR_SIZE);
    if (deliver(pb, cb.addr, cb.port, rx->dst, dport, bcast) > 0)
        return;
    STAT_INC(&udp_stats, UDPSTAT_NO_PORT);
    log_debug(LOG_UDP, "no socket on port %u", dport);
    /* RFC 1122 §4.1.3.1: SHOULD send port unreachable (icmp_error refuses
     * broadcasts and rate-limits). The header is still in the headroom. */
    pbuf_push(pb, UDP_HDR_SIZE);
    icmp_error(ICMP_TYPE_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, 0, rx, pb->data, pb->len);
    pbuf_free(pb);
}

/* ---- ICMP errors ---------------------------------------------------------------- */

static int errno_for_icmp(uint8_t type, uint8_t code)
{
    if (type == ICMP_TYPE_DEST_UNREACH) {
        switch (code) {
        case ICMP_CODE_NET_UNREACH: return -ENETUNREACH;
        case ICMP_CODE_HOST_UNREACH: return -EHOSTUNREACH;
        case ICMP_CODE_FRAG_NEEDED: return -EMSGSIZE;
        default: return -ECONNREFUSED; /* port and protocol unreachable */
        }
    }
    if (type == ICMP_TYPE_TIME_EXCEEDED)
        return -EHOSTUNREACH;
    return 0; /* source quench, parameter problem: nothing to report */
}

/* An error about a datagram we sent from sport to inner->dst:dport. Only a
 * connected socket hears of it (as BSD and Linux do): an unconnected one
 * cannot tell which of its destinations failed. */
static void udp_icmp_error(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                           const struct ip_hdr *inner, const uint8_t *payload, size_t len)
{
    int err = errno_for_icmp(type, code);
    uint16_t sport, dport;

    (void)from;
    (void)info;
    if (len < UDP_HDR_SIZE || err == 0)
        return;
    sport = load16(payload);
    dport = load16(payload + 2);
    mutex_lock(&udp_lock);
    for (struct udp_pcb *p = pcbs; p; p = p->next) {
        if (p->closed || p->local.port != sport || p->remote.port != dport ||
            p->remote.addr != inner->dst)
            continue;
        p->error = err;
        STAT_INC(&udp_stats, UDPSTAT_IN_ICMP_ERRORS);
        sock_wakeup(p->sock);
    }
    mutex_unlock(&udp_lock);
}

/* ---- socket operations ------------------------------------------------------------- */

static int udp_attach(struct sock *s)
{
    struct udp_pcb *pcb = mem_calloc(1, sizeof(*pcb));

    if (!pcb)
        return -ENOMEM;
    pcb->sock = s;
    s->pcb = pcb;
    mutex_lock(&udp_lock);
    pcb->next = pcbs;
    pcbs = pcb;
    mutex_unlock(&udp_lock);
    return 0;
}

static void udp_detach(struct sock *s)
{
    struct udp_pcb *pcb = pcb_of(s);
    struct pbuf *queue;

    mutex_lock(&udp_lock);
    for (struct udp_pcb **pp = &pcbs; *pp; pp = &(*pp)->next) {
        if (*pp == pcb) {
            *pp = pcb->next;
            break;
        }
    }
    pcb->closed = 1;
    queue = pcb->rxq;
    pcb->rxq = pcb->rxq_tail = NULL;
    pcb->rx_charge = 0;
    sock_wakeup(s); /* blocked readers see closed and return EBADF */
    mutex_unlock(&udp_lock);
    pbuf_free_chain(queue);
}

static void udp_destroy(struct sock *s)
{
    mem_free(s->pcb);
    s->pcb = NULL;
}

static int check_local_addr(uint32_t addr)
{
    return addr == IP_ADDR_ANY || ip_addr_is_local(addr) ? 0 : -EADDRNOTAVAIL;
}

static int udp_bind(struct sock *s, const struct sock_addr *a)
{
    struct udp_pcb *pcb = pcb_of(s);
    int err;

    if ((err = check_local_addr(a->addr)) < 0)
        return err;
    mutex_lock(&udp_lock);
    if (pcb->closed)
        err = -EBADF;
    else if (pcb->bound)
        err = -EINVAL; /* POSIX: already bound */
    else
        err = bind_locked(pcb, a->addr, a->port);
    mutex_unlock(&udp_lock);
    return err;
}

static int udp_connect(struct sock *s, const struct sock_addr *a, uint64_t deadline)
{
    struct udp_pcb *pcb = pcb_of(s);
    uint32_t src = ip_source_for(a->addr);
    int err = 0;

    (void)deadline; /* connecting a datagram socket never waits */
    if (a->addr == IP_ADDR_ANY || a->port == 0)
        return -EINVAL;
    if (src == IP_ADDR_ANY)
        return -ENETUNREACH;
    mutex_lock(&udp_lock);
    if (pcb->closed)
        err = -EBADF;
    else if (!pcb->bound)
        err = bind_locked(pcb, IP_ADDR_ANY, 0);
    if (!err) {
        if (pcb->local.addr == IP_ADDR_ANY)
            pcb->local.addr = src; /* fixed now, as getsockname shows */
        pcb->remote = *a;
        pcb->error = 0;
    }
    mutex_unlock(&udp_lock);
    return err;
}

static int is_broadcast(uint32_t dst)
{
    struct ip_iface *iface;
    uint32_t nexthop;

    if (dst == IP_ADDR_BROADCAST)
        return 1;
    return ip_route_lookup(dst, &iface, &nexthop) == 0 && dst == iface->broadcast;
}

/* Under udp_lock: where this datagram goes and from where. */
static int send_prepare_locked(struct udp_pcb *pcb, const struct sock_addr *to, struct sock_addr *dst,
                               struct sock_addr *src)
{
    int err;

    if (pcb->closed)
        return -EBADF;
    if (pcb->shut_wr)
        return -EPIPE;
    if (pcb->error && pcb->remote.port) { /* RFC 1122 §4.1.3.3 */
        err = pcb->error;
        pcb->error = 0;
        return err;
    }
    if (!to && !pcb->remote.port)
        return -EDESTADDRREQ;
    *dst = to ? *to : pcb->remote;
    if (dst->port == 0 || dst->addr == IP_ADDR_ANY)
        return -EINVAL;
    if (!pcb->bound && (err = bind_locked(pcb, IP_ADDR_ANY, 0)) < 0)
        return err;
    *src = pcb->local;
    return 0;
}

static ssize_t udp_send(struct sock *s, const struct sock_iov *data, const struct sock_addr *to,
                        int flags, uint64_t deadline)
{
    struct udp_pcb *pcb = pcb_of(s);
    struct sock_addr dst = { 0 }, src = { 0 };
    struct ip_tx_opts opts = { .ttl = (uint8_t)atomic_load(&s->ttl) };
    struct udp_hdr *hdr;
    struct pbuf *pb;
    int err;

    (void)flags;
    (void)deadline; /* UDP has no send buffer to wait for */
    if (data->len > UDP_PAYLOAD_MAX)
        return -EMSGSIZE;
    mutex_lock(&udp_lock);
    err = send_prepare_locked(pcb, to, &dst, &src);
    mutex_unlock(&udp_lock);
    if (err < 0)
        return err;
    if (is_broadcast(dst.addr) && !atomic_load(&s->broadcast))
        return -EACCES; /* SO_BROADCAST not set, as in BSD and Linux */
    if (src.addr == IP_ADDR_ANY && (src.addr = ip_source_for(dst.addr)) == IP_ADDR_ANY)
        return -ENETUNREACH;
    if (!(pb = pbuf_alloc(PBUF_HEADROOM, UDP_HDR_SIZE + data->len)))
        return -ENOBUFS;
    sock_iov_to_buf(data, 0, pb->data + UDP_HDR_SIZE, data->len);
    hdr = (struct udp_hdr *)pb->data;
    store16(&hdr->src, src.port);
    store16(&hdr->dst, dst.port);
    store16(&hdr->len, (uint16_t)pb->len);
    hdr->sum = 0;
    /* RFC 768: a computed checksum of zero is sent as all ones */
    uint16_t sum = cksum16(pb->data, pb->len, cksum_pseudo(src.addr, dst.addr, IP_PROTOCOL_UDP, (uint16_t)pb->len));
    store16(&hdr->sum, sum ? sum : 0xffff);
    if (log_enabled(LOG_UDP, LOG_LEVEL_DEBUG))
        udp_dump(pb->data, pb->len, src.addr, dst.addr);
    err = ip_output_opt(IP_PROTOCOL_UDP, pb, src.addr, dst.addr, &opts);
    STAT_INC(&udp_stats, err < 0 ? UDPSTAT_OUT_ERRORS : UDPSTAT_OUT_DATAGRAMS);
    return err < 0 ? err : (ssize_t)data->len;
}

/* Wait until a datagram, an error, or an end is there. Returns 0 with
 * pcb->rxq non-empty, 1 at end of input (shut down), or -errno. */
static int recv_wait_locked(struct udp_pcb *pcb, uint64_t deadline)
{
    int err;

    for (;;) {
        if (net_is_shutting_down())
            return -ESHUTDOWN; /* before closed: the clean-up closes sockets */
        if (pcb->closed)
            return -EBADF;
        if (pcb->rxq)
            return 0;
        if (pcb->error) {
            err = pcb->error;
            pcb->error = 0;
            return err;
        }
        if (pcb->shut_rd)
            return 1;
        if ((err = sock_wait(pcb->sock, &udp_lock, deadline)) < 0)
            return err;
    }
}

static ssize_t udp_recv(struct sock *s, const struct sock_iov *room, struct sock_addr *from,
                        int flags, int *msg_flags, uint64_t deadline)
{
    struct udp_pcb *pcb = pcb_of(s);
    struct pbuf *pb;
    struct udp_cb cb;
    size_t n, whole;
    int err;

    mutex_lock(&udp_lock);
    if ((err = recv_wait_locked(pcb, deadline)) != 0) {
        mutex_unlock(&udp_lock);
        return err > 0 ? 0 : err;
    }
    pb = pcb->rxq;
    whole = pb->len;
    if (flags & MSG_PEEK) { /* copy while it stays queued */
        n = sock_iov_from_buf(room, 0, pb->data, whole);
        memcpy(&cb, pb->cb, sizeof(cb));
        mutex_unlock(&udp_lock);
    } else {
        pcb->rxq = pb->next;
        if (!pcb->rxq)
            pcb->rxq_tail = NULL;
        pcb->rx_charge -= rx_charge(pb);
        mutex_unlock(&udp_lock);
        n = sock_iov_from_buf(room, 0, pb->data, whole);
        memcpy(&cb, pb->cb, sizeof(cb));
        pbuf_free(pb);
    }
    from->addr = cb.addr;
    from->port = cb.port;
    if (n < whole)
        *msg_flags |= MSG_TRUNC; /* the rest of the datagram is gone */
    return (flags & MSG_TRUNC) ? (ssize_t)whole : (ssize_t)n;
}

static int udp_shutdown(struct sock *s, int how)
{
    struct udp_pcb *pcb = pcb_of(s);
    int err = 0;

    mutex_lock(&udp_lock);
    if (!pcb->remote.port) {
        err = -ENOTCONN;
    } else {
        if (how == SHUT_RD || how == SHUT_RDWR)
            pcb->shut_rd = 1;
        if (how == SHUT_WR || how == SHUT_RDWR)
            pcb->shut_wr = 1;
        sock_wakeup(s);
    }
    mutex_unlock(&udp_lock);
    return err;
}

static short udp_poll(struct sock *s)
{
    struct udp_pcb *pcb = pcb_of(s);
    short ev = 0;

    mutex_lock(&udp_lock);
    if (pcb->rxq || pcb->shut_rd)
        ev |= POLLIN;
    if (!pcb->shut_wr)
        ev |= POLLOUT;
    if (pcb->error)
        ev |= POLLERR;
    if (pcb->closed || (pcb->shut_rd && pcb->shut_wr))
        ev |= POLLHUP;
    mutex_unlock(&udp_lock);
    return ev;
}

static int udp_name(struct sock *s, int peer, struct sock_addr *a)
{
    struct udp_pcb *pcb = pcb_of(s);
    int err = 0;

    mutex_lock(&udp_lock);
    if (peer && !pcb->remote.port)
        err = -ENOTCONN;
    else
        *a = peer ? pcb->remote : pcb->local;
    mutex_unlock(&udp_lock);
    return err;
}

static int udp_take_error(struct sock *s)
{
    struct udp_pcb *pcb = pcb_of(s);
    int err;

    mutex_lock(&udp_lock);
    err = pcb->error;
    pcb->error = 0;
    mutex_unlock(&udp_lock);
    return err;
}

static void udp_wake(struct sock *s)
{
    mutex_lock(&udp_lock);
    sock_wakeup(s);
    mutex_unlock(&udp_lock);
}

size_t udp_pcb_format(char *buf, size_t size)
{
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    mutex_lock(&udp_lock);
    for (struct udp_pcb *p = pcbs; p; p = p->next) {
        char l[IP_ADDR_STR_LEN], r[IP_ADDR_STR_LEN];
        size_t queued = 0;
        int m;
        for (struct pbuf *pb = p->rxq; pb; pb = pb->next)
            queued += pb->len;
        m = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0, "udp %-12s %s:%u %s:%u sendq=0 recvq=%zu\n",
                     "-", ip_addr_ntop(p->local.addr, l, sizeof(l)), p->local.port,
                     p->remote.port ? ip_addr_ntop(p->remote.addr, r, sizeof(r)) : "*",
                     p->remote.port, queued);
        if (m > 0)
            n += (size_t)m;
    }
    mutex_unlock(&udp_lock);
    return n;
}

static const struct sock_ops udp_ops = {
    .attach = udp_attach,
    .detach = udp_detach,
    .destroy = udp_destroy,
    .bind = udp_bind,
    .connect = udp_connect,
    .send = udp_send,
    .recv = udp_recv,
    .shutdown = udp_shutdown,
    .poll = udp_poll,
    .name = udp_name,
    .take_error = udp_take_error,
    .wake = udp_wake,
};

/* ---- life cycle ------------------------------------------------------------------ */

int udp_init(void)
{
    uint16_t r;
    int err;

    stats_register(&udp_stats);
    platform_random(&r, sizeof(r));
    mutex_lock(&udp_lock);
    next_port = r; /* RFC 6056: do not start the search at a guessable port */
    mutex_unlock(&udp_lock);
    if ((err = ip_protocol_register(IP_PROTOCOL_UDP, udp_input, udp_icmp_error)) < 0)
        return err;
    return sock_register_ops(SOCK_DGRAM, IPPROTO_UDP, &udp_ops);
}

void udp_cleanup(void)
{
    /* sock_cleanup has detached every pcb; nothing is left in the list
     * unless a thread still holds a socket, whose pcb it then owns. */
}
