/*
 * tcp_usrreq.c — TCP's socket operations (sock_var.h's sock_ops) and the
 * life of a pcb: creation, lookup, state changes, dropping and reaping.
 *
 * App threads enter here through sock.c and sleep on their socket's
 * condition variable with tcp_lock held (sock_wait); tcp_input and the
 * timers call tcp_notify_locked after every change a waiter may care
 * about. A pcb outlives its socket (FIN-WAIT, TIME-WAIT) and is freed only
 * by its reap timer, on the stack thread, once no socket refers to it.
 */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/tcp_var.h"
#include "util/byteorder.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/siphash.h"

static const char *const tcp_stat_names[TCPSTAT_COUNT] = {
    [TCPSTAT_IN_SEGS] = "in_segs",
    [TCPSTAT_IN_TOO_SHORT] = "in_too_short",
    [TCPSTAT_IN_BAD_OFFSET] = "in_bad_offset",
    [TCPSTAT_IN_BAD_CHECKSUM] = "in_bad_checksum",
    [TCPSTAT_IN_BAD_OPTIONS] = "in_bad_options",
    [TCPSTAT_IN_BROADCAST] = "in_broadcast",
    [TCPSTAT_IN_NO_PCB] = "in_no_pcb",
    [TCPSTAT_IN_LISTEN_ACKS] = "in_listen_acks",
    [TCPSTAT_IN_OUT_OF_WINDOW] = "in_out_of_window",
    [TCPSTAT_IN_OLD_ACK] = "in_old_ack",
    [TCPSTAT_IN_FUTURE_ACK] = "in_future_ack",
    [TCPSTAT_IN_OOO_SEGS] = "in_ooo_segs",
    [TCPSTAT_IN_OOO_DROPPED] = "in_ooo_dropped",
    [TCPSTAT_IN_DUP_SEGS] = "in_dup_segs",
    [TCPSTAT_IN_DUP_ACKS] = "in_dup_acks",
    [TCPSTAT_IN_RSTS] = "in_rsts",
    [TCPSTAT_OUT_SEGS] = "out_segs",
    [TCPSTAT_OUT_RSTS] = "out_rsts",
    [TCPSTAT_OUT_NO_MEMORY] = "out_no_memory",
    [TCPSTAT_OUT_SUPER_SEGS] = "out_super_segs",
    [TCPSTAT_IN_SUPER_SEGS] = "in_super_segs",
    [TCPSTAT_RETRANS_SEGS] = "retrans_segs",
    [TCPSTAT_FAST_RETRANSMITS] = "fast_retransmits",
    [TCPSTAT_RTO_TIMEOUTS] = "rto_timeouts",
    [TCPSTAT_PERSIST_PROBES] = "persist_probes",
    [TCPSTAT_KEEPALIVE_PROBES] = "keepalive_probes",
    [TCPSTAT_DELAYED_ACKS] = "delayed_acks",
    [TCPSTAT_CHALLENGE_ACKS] = "challenge_acks",
    [TCPSTAT_CHALLENGE_ACKS_LIMITED] = "challenge_acks_limited",
    [TCPSTAT_ACTIVE_OPENS] = "active_opens",
    [TCPSTAT_PASSIVE_OPENS] = "passive_opens",
    [TCPSTAT_ATTEMPT_FAILS] = "attempt_fails",
    [TCPSTAT_ESTAB_RESETS] = "estab_resets",
    [TCPSTAT_CONN_TIMEOUTS] = "conn_timeouts",
    [TCPSTAT_SYN_QUEUE_EVICTED] = "syn_queue_evicted",
    [TCPSTAT_ACCEPT_QUEUE_FULL] = "accept_queue_full",
    [TCPSTAT_TIME_WAIT_RECYCLED] = "time_wait_recycled",
    [TCPSTAT_IN_PAWS_DROPPED] = "in_paws_dropped",
    [TCPSTAT_IN_SACK_BLOCKS] = "in_sack_blocks",
    [TCPSTAT_IN_SACK_BAD] = "in_sack_bad",
    [TCPSTAT_SACK_FULL] = "sack_scoreboard_full",
    [TCPSTAT_SACK_RECOVERIES] = "sack_recoveries",
    [TCPSTAT_SACK_RETRANS_SEGS] = "sack_retrans_segs",
    [TCPSTAT_OUT_SACK_BLOCKS] = "out_sack_blocks",
    [TCPSTAT_OUT_DSACKS] = "out_dsacks",
    [TCPSTAT_RTT_TS_SAMPLES] = "rtt_ts_samples",
    [TCPSTAT_TLP_PROBES] = "tlp_probes",
    [TCPSTAT_TLP_RECOVERIES] = "tlp_recoveries",
    [TCPSTAT_LOST_RETRANS] = "lost_retrans",
    [TCPSTAT_LIMITED_TRANSMITS] = "limited_transmits",
    [TCPSTAT_EARLY_RETRANSMITS] = "early_retransmits",
};
struct stats_group tcp_stats = STATS_GROUP("tcp", tcp_stat_names);

struct mutex tcp_lock = MUTEX_INITIALIZER;
struct tcp_pcb *tcp_pcbs;     /* [T] */
unsigned tcp_pcb_count;       /* [T] */
static uint8_t isn_key[16];   /* [c] after tcp_init */
static uint16_t next_port;    /* [T] */

static const char *const state_names[] = {
    "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
    "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
};

const char *tcp_state_name(enum tcp_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

/* ---- pcbs ----------------------------------------------------------------------- */

struct tcp_pcb *tcp_pcb_new_locked(void)
{
    struct tcp_pcb *pcb;

    if (tcp_pcb_count >= net_config.tcp_max_pcbs || !(pcb = mem_calloc(1, sizeof(*pcb))))
        return NULL;
    if (tcp_timers_init(pcb) < 0) {
        tcp_timers_destroy(pcb);
        mem_free(pcb);
        return NULL;
    }
    pcb->rto_ms = net_config.tcp_rto_initial_ms;
    pcb->snd_mss = TCP_DEFAULT_MSS;
    pcb->ssthresh = 0xffffffffu; /* RFC 5681 §3.1: arbitrarily high */
    pcb->cc = tcp_cc_default();
    pcb->rcvbuf_size = net_config.sock_rcvbuf_default;
    pcb->sndbuf_size = net_config.sock_sndbuf_default;
    pcb->hash_slot = -1;
    pcb->next = tcp_pcbs;
    if (tcp_pcbs)
        tcp_pcbs->pprev = &pcb->next;
    pcb->pprev = &tcp_pcbs;
    tcp_pcbs = pcb;
    tcp_pcb_count++;
    return pcb;
}

void tcp_set_state_locked(struct tcp_pcb *pcb, enum tcp_state state)
{
    if (log_enabled(LOG_TCP, LOG_LEVEL_DEBUG)) {
        char l[IP_ADDR_STR_LEN], r[IP_ADDR_STR_LEN];
        log_debug(LOG_TCP, "%s:%u %s:%u %s -> %s", ip_addr_ntop(pcb->local.addr, l, sizeof(l)),
                  pcb->local.port, ip_addr_ntop(pcb->remote.addr, r, sizeof(r)), pcb->remote.port,
                  tcp_state_name(pcb->state), tcp_state_name(state));
    }
    pcb->state = state;
    if (state == TCPS_ESTABLISHED)
        tcp_offload_setup_locked(pcb);
}

void tcp_notify_locked(struct tcp_pcb *pcb)
{
    if (pcb->sock)
        sock_wakeup(pcb->sock);
    if (pcb->parent && pcb->parent->sock)
        sock_wakeup(pcb->parent->sock);
}

/* Free pb on the stack thread soon, unless a socket still refers to it
 * (then its last reference does it, through tcp_destroy). */
static void reap_maybe_locked(struct tcp_pcb *pcb)
{
    if (pcb->state == TCPS_CLOSED && !pcb->sock && !pcb->reaping) {
        pcb->reaping = 1;
        net_timer_arm(&pcb->reap, 0);
    }
}

static void abort_children_locked(struct tcp_pcb *lpcb);

void tcp_drop_locked(struct tcp_pcb *pcb, int err)
{
    struct tcp_pcb *parent = pcb->parent;

    assert(mutex_held(&tcp_lock));
    if (pcb->state == TCPS_LISTEN)
        abort_children_locked(pcb);
    if (parent) { /* a child never accepted: off its listener's queues */
        struct tcp_pcb **q[2] = { &parent->synq, &parent->acceptq };
        for (int i = 0; i < 2; i++) {
            for (struct tcp_pcb **pp = q[i]; *pp; pp = &(*pp)->qnext) {
                if (*pp == pcb) {
                    *pp = pcb->qnext;
                    if (i == 0)
                        parent->synq_len--;
                    else
                        parent->acceptq_len--;
                    break;
                }
            }
        }
        pcb->parent = NULL;
    }
    if (err && !pcb->error)
        pcb->error = err;
    tcp_timers_cancel_all(pcb);
    if (pcb->state != TCPS_CLOSED)
        tcp_set_state_locked(pcb, TCPS_CLOSED);
    tcp_notify_locked(pcb);
    reap_maybe_locked(pcb);
}

/* Exact 4-tuple first, then a listener on the port (specific address
 * before the wildcard). */
/* The lookup cache: connections by their 4-tuple, so a segment finds its
 * pcb in O(1) instead of walking every pcb. An entry is only a hint: it is
 * checked against the pcb's own tuple and state before use, filled by the
 * slow walk, and cleared when its pcb is freed. Listeners are found by the
 * walk (a SYN's cost grows with the number of pcbs; a data segment's does
 * not). */
#define TCP_HASH_SIZE 4096 /* a power of two */
static struct tcp_pcb *tcp_hash[TCP_HASH_SIZE]; /* [T] */
static uint32_t tcp_hash_seed;                  /* [T] set by tcp_init */

static unsigned tuple_hash(uint32_t laddr, uint16_t lport, uint32_t raddr, uint16_t rport)
{
    uint64_t h = ((uint64_t)raddr << 32 | (uint32_t)rport << 16 | lport) ^ ((uint64_t)laddr * 0x9e3779b97f4a7c15ull);

    h ^= tcp_hash_seed;
    h *= 0xff51afd7ed558ccdull; /* a 64-bit mixer (murmur3's finaliser constants) */
    h ^= h >> 33;
    return (unsigned)(h & (TCP_HASH_SIZE - 1));
}

static int tuple_is(const struct tcp_pcb *p, uint32_t laddr, uint16_t lport, uint32_t raddr, uint16_t rport)
{
    return p->local.port == lport && p->local.addr == laddr && p->remote.addr == raddr && p->remote.port == rport;
}

struct tcp_pcb *tcp_lookup_locked(uint32_t laddr, uint16_t lport, uint32_t raddr, uint16_t rport)
{
    struct tcp_pcb *listener = NULL;
    unsigned h = tuple_hash(laddr, lport, raddr, rport);
    struct tcp_pcb *c = tcp_hash[h];

    if (c && c->state != TCPS_CLOSED && c->state != TCPS_LISTEN && tuple_is(c, laddr, lport, raddr, rport))
        return c;
    for (struct tcp_pcb *p = tcp_pcbs; p; p = p->next) {
        if (p->state == TCPS_CLOSED || p->local.port != lport)
            continue;
        if (p->state == TCPS_LISTEN) {
            if (p->local.addr == laddr || (p->local.addr == IP_ADDR_ANY && !listener))
                listener = p;
            continue;
        }
        if (tuple_is(p, laddr, lport, raddr, rport)) {
            tcp_hash[h] = p;
            p->hash_slot = (int)h;
            return p;
        }
    }
    return listener;
}

/* ---- work put off to the end of an input batch ------------------------------- */

static struct tcp_pcb *batch_list; /* [T] */

void tcp_batch_defer_locked(struct tcp_pcb *pcb, int notify, int ack)
{
    pcb->batch_notify |= notify;
    pcb->batch_ack |= ack;
    if (!pcb->batch_queued) {
        pcb->batch_queued = 1;
        pcb->batch_next = batch_list;
        batch_list = pcb;
    }
}

void tcp_batch_forget_locked(struct tcp_pcb *pcb)
{
    for (struct tcp_pcb **pp = &batch_list; *pp; pp = &(*pp)->batch_next) {
        if (*pp == pcb) {
            *pp = pcb->batch_next;
            break;
        }
    }
    pcb->batch_queued = pcb->batch_notify = pcb->batch_ack = 0;
}

/* The stack thread finished a batch of input: send the ACKs and wake the
 * readers it put off (net_batch_end_register). */
static void tcp_batch_end(void)
{
    mutex_lock(&tcp_lock);
    while (batch_list) {
        struct tcp_pcb *pcb = batch_list;
        batch_list = pcb->batch_next;
        pcb->batch_queued = 0;
        if (pcb->state != TCPS_CLOSED && !pcb->reaping) {
            if (pcb->batch_ack && pcb->acks_pending)
                pcb->ack_now = 1;
            if (pcb->ack_now)
                tcp_output_locked(pcb);
            if (pcb->batch_notify)
                tcp_notify_locked(pcb);
        }
        pcb->batch_notify = pcb->batch_ack = 0;
    }
    tcp_unlock();
}

void tcp_pcb_unlink_locked(struct tcp_pcb *pcb)
{
    if (pcb->batch_queued)
        tcp_batch_forget_locked(pcb);
    if (pcb->hash_slot >= 0 && tcp_hash[pcb->hash_slot] == pcb)
        tcp_hash[pcb->hash_slot] = NULL;
    pcb->hash_slot = -1;
    if (pcb->pprev) {
        *pcb->pprev = pcb->next;
        if (pcb->next)
            pcb->next->pprev = pcb->pprev;
        pcb->pprev = NULL;
        tcp_pcb_count--;
    }
}

/* RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secret),
 * M a timer ticking every 4 microseconds, F a keyed hash. */
uint32_t tcp_new_iss(const struct sock_addr *local, const struct sock_addr *remote)
{
    uint8_t tuple[12];

    memcpy(tuple, &local->addr, 4);
    memcpy(tuple + 4, &remote->addr, 4);
    store16(tuple + 8, local->port);
    store16(tuple + 10, remote->port);
    return (uint32_t)(platform_now_us() / 4) + (uint32_t)siphash24(isn_key, tuple, sizeof(tuple));
}

int tcp_buffers_alloc_locked(struct tcp_pcb *pcb)
{
    if (!pcb->sndbuf.buf && ring_init(&pcb->sndbuf, pcb->sndbuf_size) < 0)
        return -ENOMEM;
    if (!pcb->rcvbuf.buf && ring_init(&pcb->rcvbuf, pcb->rcvbuf_size + tcp_rcv_slack(pcb)) < 0)
        return -ENOMEM;
    return 0;
}

void tcp_child_established_locked(struct tcp_pcb *pcb)
{
    struct tcp_pcb *lpcb = pcb->parent;

    pcb->cwnd = 10u * pcb->snd_mss < 14600 ? 10u * pcb->snd_mss : 14600; /* RFC 6928 */
    if (pcb->cwnd < 2u * pcb->snd_mss)
        pcb->cwnd = 2u * pcb->snd_mss;
    pcb->cc->init(pcb);
    if (tcp_buffers_alloc_locked(pcb) < 0) {
        tcp_send_segment_locked(pcb, TCP_FLG_RST | TCP_FLG_ACK, pcb->snd_nxt, 0, 0);
        tcp_drop_locked(pcb, -ENOMEM);
        return;
    }
    tcp_keepalive_reset_locked(pcb);
    if (!lpcb) { /* simultaneous open: a connect() is waiting */
        tcp_notify_locked(pcb);
        return;
    }
    for (struct tcp_pcb **pp = &lpcb->synq; *pp; pp = &(*pp)->qnext) {
        if (*pp == pcb) {
            *pp = pcb->qnext;
            lpcb->synq_len--;
            break;
        }
    }
    pcb->qnext = NULL;
    struct tcp_pcb **pp = &lpcb->acceptq;
    while (*pp)
        pp = &(*pp)->qnext;
    *pp = pcb;
    lpcb->acceptq_len++;
    tcp_notify_locked(pcb); /* wakes the listener's accept() */
}

/* A listener closes: its children go too, with a RST if they finished the
 * handshake (the peer thinks it is connected). */
static void abort_children_locked(struct tcp_pcb *lpcb)
{
    while (lpcb->synq)
        tcp_drop_locked(lpcb->synq, 0);
    while (lpcb->acceptq) {
        struct tcp_pcb *c = lpcb->acceptq;
        tcp_send_segment_locked(c, TCP_FLG_RST | TCP_FLG_ACK, c->snd_nxt, 0, 0);
        tcp_drop_locked(c, 0);
    }
}

/* ---- ports ----------------------------------------------------------------------------- */

static int port_in_use_locked(uint32_t addr, uint16_t port, int reuse, struct tcp_pcb *self)
{
    for (struct tcp_pcb *p = tcp_pcbs; p; p = p->next) {
        if (p == self || p->local.port != port || (p->state == TCPS_CLOSED && !p->sock))
            continue;
        if (p->local.addr != addr && p->local.addr != IP_ADDR_ANY && addr != IP_ADDR_ANY)
            continue;
        /* SO_REUSEADDR: share a port with anything but a listener, so a
         * server restarts while old connections sit in TIME-WAIT */
        if (reuse && p->state != TCPS_LISTEN)
            continue;
        return 1;
    }
    return 0;
}

static int bind_locked(struct tcp_pcb *pcb, uint32_t addr, uint16_t port, int reuse)
{
    if (port == 0) {
        unsigned lo = net_config.port_ephemeral_lo, span = net_config.port_ephemeral_hi - lo + 1;
        for (unsigned i = 0; i < span; i++) {
            uint16_t p = (uint16_t)(lo + (next_port + i) % span);
            if (!port_in_use_locked(addr, p, 0, pcb)) {
                port = p;
                next_port = (uint16_t)((next_port + i + 1) % span);
                break;
            }
        }
        if (port == 0)
            return -EADDRINUSE;
    } else if (port_in_use_locked(addr, port, reuse, pcb)) {
        return -EADDRINUSE;
    }
    pcb->local.addr = addr;
    pcb->local.port = port;
    return 0;
}

/* ---- socket operations ------------------------------------------------------------------ */

static struct tcp_pcb *pcb_of(struct sock *s)
{
    return s->pcb;
}

static int tcp_attach(struct sock *s)
{
    struct tcp_pcb *pcb;

    mutex_lock(&tcp_lock);
    pcb = tcp_pcb_new_locked();
    if (pcb) {
        pcb->sock = s;
        pcb->had_sock = 1;
        s->pcb = pcb;
    }
    tcp_unlock();
    return pcb ? 0 : -ENOBUFS;
}

/* sock_close: no more calls on this descriptor. Unread data makes it an
 * abort (RFC 1122 §4.2.2.13: the peer must learn its data was lost), as
 * does SO_LINGER {1, 0}; otherwise queued data goes out, then our FIN. */
static void tcp_detach(struct sock *s)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int abort_now;

    mutex_lock(&tcp_lock);
    pcb->app_closed = 1;
    abort_now = (pcb->rcvbuf.len > 0 || pcb->nooo > 0) ||
                (atomic_load(&s->linger_on) && atomic_load(&s->linger_s) == 0);
    switch (pcb->state) {
    case TCPS_LISTEN:
    case TCPS_SYN_SENT:
        tcp_drop_locked(pcb, 0);
        break;
    case TCPS_SYN_RECEIVED:
    case TCPS_ESTABLISHED:
    case TCPS_CLOSE_WAIT:
        if (abort_now) {
            tcp_send_segment_locked(pcb, TCP_FLG_RST | TCP_FLG_ACK, pcb->snd_nxt, 0, 0);
            tcp_drop_locked(pcb, 0);
            break;
        }
        pcb->fin_queued = 1;
        tcp_set_state_locked(pcb, pcb->state == TCPS_CLOSE_WAIT ? TCPS_LAST_ACK : TCPS_FIN_WAIT_1);
        tcp_output_locked(pcb);
        break;
    default:
        break; /* already closing */
    }
    sock_wakeup(s); /* other threads blocked on s see app_closed: EBADF */
    tcp_unlock();
}

/* The last reference to the socket is gone: the pcb is on its own now. */
static void tcp_destroy(struct sock *s)
{
    struct tcp_pcb *pcb = pcb_of(s);

    mutex_lock(&tcp_lock);
    pcb->sock = NULL;
    s->pcb = NULL;
    if (pcb->state == TCPS_FIN_WAIT_2)
        net_timer_arm(&pcb->keep, net_config.tcp_fin_wait2_ms);
    reap_maybe_locked(pcb);
    tcp_unlock();
}

static int tcp_bind(struct sock *s, const struct sock_addr *a)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err;

    if (a->addr != IP_ADDR_ANY && !ip_addr_is_local(a->addr))
        return -EADDRNOTAVAIL;
    mutex_lock(&tcp_lock);
    if (pcb->local.port || pcb->state != TCPS_CLOSED)
        err = -EINVAL;
    else
        err = bind_locked(pcb, a->addr, a->port, atomic_load(&s->reuseaddr));
    tcp_unlock();
    return err;
}

static int tcp_listen(struct sock *s, int backlog)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err = 0;

    mutex_lock(&tcp_lock);
    if (pcb->state != TCPS_CLOSED && pcb->state != TCPS_LISTEN)
        err = -EINVAL;
    else if (!pcb->local.port)
        err = bind_locked(pcb, IP_ADDR_ANY, 0, 0);
    if (!err) {
        if (backlog < 1)
            backlog = 1;
        pcb->backlog = (unsigned)backlog > net_config.tcp_backlog_max ? net_config.tcp_backlog_max : (unsigned)backlog;
        pcb->rcvbuf_size = (uint32_t)atomic_load(&s->rcvbuf);
        pcb->sndbuf_size = (uint32_t)atomic_load(&s->sndbuf);
        if (pcb->state != TCPS_LISTEN)
            tcp_set_state_locked(pcb, TCPS_LISTEN);
    }
    tcp_unlock();
    return err;
}

/* Wait while cond(pcb) holds; returns 0, or -errno. Shutdown is checked
 * first: its clean-up closes every socket, and a woken caller must still
 * report ESHUTDOWN rather than EBADF. */
static int wait_while_locked(struct sock *s, struct tcp_pcb *pcb, int (*cond)(struct tcp_pcb *), uint64_t deadline)
{
    for (;;) {
        int err;
        if (net_is_shutting_down())
            return -ESHUTDOWN;
        if (pcb->app_closed)
            return -EBADF;
        if (!cond(pcb))
            return 0;
        tcp_tx_flush(); /* what we queued goes before we sleep */
        if ((err = sock_wait(s, &tcp_lock, deadline)) < 0)
            return err;
    }
}

static int connecting(struct tcp_pcb *pcb)
{
    return pcb->state == TCPS_SYN_SENT || pcb->state == TCPS_SYN_RECEIVED;
}

/* Everything one connection leaves behind, so a socket can connect again
 * after a refused or reset attempt without sending stale bytes. */
static void conn_state_reset_locked(struct tcp_pcb *pcb)
{
    tcp_timers_cancel_all(pcb);
    ring_free(&pcb->sndbuf);
    ring_free(&pcb->rcvbuf);
    pcb->error = pcb->soft_error = 0;
    pcb->fin_queued = pcb->fin_sent = 0;
    pcb->rcv_fin = pcb->have_ooo_fin = pcb->shut_rd = 0;
    pcb->nooo = 0;
    pcb->nsacked = 0;
    pcb->una_rxt = pcb->tlp_out = 0;
    pcb->sack_ok = pcb->ts_ok = 0;
    pcb->ts_recent = pcb->ts_recent_ms = 0;
    pcb->snd_wnd = pcb->max_snd_wnd = 0;
    pcb->cwnd = 0;
    pcb->ssthresh = 0xffffffffu;
    pcb->dupacks = 0;
    pcb->in_recovery = 0;
    pcb->srtt_ms8 = pcb->rttvar_ms4 = 0;
    pcb->rto_ms = net_config.tcp_rto_initial_ms;
    pcb->rtt_timing = 0;
    pcb->retries = pcb->backoff = pcb->persist_unanswered = 0;
    pcb->acks_pending = 0;
    pcb->ack_now = pcb->force_send = 0;
    pcb->keep_probes = 0;
    pcb->irs = pcb->rcv_nxt = pcb->rcv_adv = 0;
}

static int connect_start_locked(struct sock *s, struct tcp_pcb *pcb, const struct sock_addr *a)
{
    uint32_t src = ip_source_for(a->addr);
    size_t mtu = ip_mtu_for(a->addr);
    int err;

    if (src == IP_ADDR_ANY)
        return -ENETUNREACH;
    conn_state_reset_locked(pcb);
    if (!pcb->local.port && (err = bind_locked(pcb, IP_ADDR_ANY, 0, 0)) < 0)
        return err;
    if (pcb->local.addr == IP_ADDR_ANY)
        pcb->local.addr = src;
    pcb->remote = *a;
    pcb->error = 0;
    pcb->rcvbuf_size = (uint32_t)atomic_load(&s->rcvbuf);
    pcb->sndbuf_size = (uint32_t)atomic_load(&s->sndbuf);
    if ((err = tcp_buffers_alloc_locked(pcb)) < 0)
        return err;
    pcb->snd_mss = (uint16_t)(mtu - TCP_HDR_SIZE_MIN);
    pcb->wscale_ok = 0;
    pcb->rcv_wscale = tcp_wscale_for(pcb->rcvbuf_size); /* offered in our SYN */
    pcb->rcv_wscale_offered = 1;
    pcb->sack_ok = net_config.tcp_sack != 0; /* offered in our SYN */
    pcb->ts_ok = net_config.tcp_timestamps != 0;
    pcb->iss = tcp_new_iss(&pcb->local, &pcb->remote);
    pcb->ts_offset = pcb->iss * 2654435761u;
    pcb->recover = pcb->high_rxt = pcb->lost_below = pcb->iss;
    pcb->snd_una = pcb->iss;
    pcb->snd_nxt = pcb->snd_max = pcb->iss + 1;
    pcb->rtt_start = net_now_ms();
    tcp_set_state_locked(pcb, TCPS_SYN_SENT);
    STAT_INC(&tcp_stats, TCPSTAT_ACTIVE_OPENS);
    tcp_send_segment_locked(pcb, TCP_FLG_SYN, pcb->iss, 0, 0);
    tcp_rexmt_arm_locked(pcb);
    return 0;
}

static int tcp_connect(struct sock *s, const struct sock_addr *a, uint64_t deadline)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err = 0;

    if (a->addr == IP_ADDR_ANY || a->port == 0)
        return -EINVAL;
    mutex_lock(&tcp_lock);
    switch (pcb->state) {
    case TCPS_CLOSED:
        if (pcb->error) { /* the result of an earlier non-blocking connect */
            err = pcb->error;
            pcb->error = 0;
        } else if ((err = connect_start_locked(s, pcb, a)) == 0 && deadline == SOCK_NOWAIT) {
            err = -EINPROGRESS;
        }
        break;
    case TCPS_LISTEN:
        err = -EINVAL;
        break;
    case TCPS_SYN_SENT:
    case TCPS_SYN_RECEIVED:
        err = deadline == SOCK_NOWAIT ? -EALREADY : 0;
        break;
    default:
        err = -EISCONN;
    }
    if (err == 0) {
        err = wait_while_locked(s, pcb, connecting, deadline);
        if (err == 0 && pcb->state == TCPS_CLOSED) {
            err = pcb->error ? pcb->error : -ECONNREFUSED;
            pcb->error = 0;
        } else if (err == -EAGAIN) {
            err = -ETIMEDOUT; /* SO_SNDTIMEO ran out while connecting */
        }
    }
    tcp_unlock();
    return err;
}

static int accept_empty(struct tcp_pcb *pcb)
{
    return pcb->state == TCPS_LISTEN && !pcb->acceptq;
}

static void inherit_options(struct sock *child, struct sock *parent)
{
    atomic_store(&child->rcvbuf, atomic_load(&parent->rcvbuf));
    atomic_store(&child->sndbuf, atomic_load(&parent->sndbuf));
    atomic_store(&child->nodelay, atomic_load(&parent->nodelay));
    atomic_store(&child->cc, atomic_load(&parent->cc));
    atomic_store(&child->keepalive, atomic_load(&parent->keepalive));
    atomic_store(&child->keep_idle_s, atomic_load(&parent->keep_idle_s));
    atomic_store(&child->keep_intvl_s, atomic_load(&parent->keep_intvl_s));
    atomic_store(&child->keep_cnt, atomic_load(&parent->keep_cnt));
    atomic_store(&child->rcvtimeo_ms, atomic_load(&parent->rcvtimeo_ms));
    atomic_store(&child->sndtimeo_ms, atomic_load(&parent->sndtimeo_ms));
}

static int tcp_accept(struct sock *s, struct sock **childp, uint64_t deadline)
{
    struct tcp_pcb *lpcb = pcb_of(s), *c;
    struct sock *ns = sock_alloc(SOCK_STREAM, IPPROTO_TCP, s->ops);
    int err, sd;

    if (!ns)
        return -ENOMEM;
    inherit_options(ns, s);
    mutex_lock(&tcp_lock);
    if (lpcb->state != TCPS_LISTEN)
        err = -EINVAL;
    else
        err = wait_while_locked(s, lpcb, accept_empty, deadline);
    if (err == 0 && lpcb->state != TCPS_LISTEN)
        err = -EINVAL;
    if (err < 0) {
        tcp_unlock();
        sock_free_unattached(ns);
        return err;
    }
    c = lpcb->acceptq;
    lpcb->acceptq = c->qnext;
    lpcb->acceptq_len--;
    c->qnext = NULL;
    c->parent = NULL;
    c->sock = ns;
    c->had_sock = 1;
    ns->pcb = c;
    tcp_keepalive_reset_locked(c);
    tcp_unlock();
    if ((sd = sock_install_held(ns)) < 0) { /* no descriptor: abort the connection */
        mutex_lock(&tcp_lock);
        tcp_send_segment_locked(c, TCP_FLG_RST | TCP_FLG_ACK, c->snd_nxt, 0, 0);
        tcp_drop_locked(c, 0);
        c->sock = NULL;
        reap_maybe_locked(c);
        tcp_unlock();
        sock_free_unattached(ns);
        return sd;
    }
    *childp = ns;
    return 0;
}

/* Why a send cannot proceed now, or 0 if it can (maybe after waiting). */
static int send_blocker(struct tcp_pcb *pcb)
{
    if (pcb->error) {
        int err = pcb->error;
        pcb->error = 0;
        return err;
    }
    if (pcb->fin_queued)
        return -EPIPE; /* shut down for writing, or closed */
    switch (pcb->state) {
    case TCPS_ESTABLISHED:
    case TCPS_CLOSE_WAIT:
    case TCPS_SYN_SENT:
    case TCPS_SYN_RECEIVED:
        return 0;
    case TCPS_CLOSED:
        return pcb->had_sock && pcb->snd_una != pcb->iss ? -EPIPE : -ENOTCONN;
    case TCPS_LISTEN:
        return -ENOTCONN;
    default:
        return -EPIPE;
    }
}

/* len bytes of the caller's iovecs, from off bytes in, onto the end of r
 * (which has the room). */
static void iov_to_ring(const struct sock_iov *v, size_t off, struct ring *r, size_t len)
{
    for (size_t i = 0; i < v->iovcnt && len > 0; i++) {
        size_t n = v->iov[i].iov_len, c;
        if (off >= n) {
            off -= n;
            continue;
        }
        c = n - off < len ? n - off : len;
        ring_write(r, (const uint8_t *)v->iov[i].iov_base + off, c);
        len -= c;
        off = 0;
    }
}

/* The first len bytes of r into the caller's iovecs (they have the room). */
static void ring_to_iov(const struct ring *r, const struct sock_iov *v, size_t len)
{
    size_t roff = 0;

    for (size_t i = 0; i < v->iovcnt && len > 0; i++) {
        size_t c = v->iov[i].iov_len < len ? v->iov[i].iov_len : len;
        ring_peek(r, roff, v->iov[i].iov_base, c);
        roff += c;
        len -= c;
    }
}

static ssize_t tcp_send(struct sock *s, const struct sock_iov *data, const struct sock_addr *to,
                        int flags, uint64_t deadline)
{
    struct tcp_pcb *pcb = pcb_of(s);
    size_t done = 0;
    int err = 0;

    (void)flags;
    if (to && pcb->state != TCPS_CLOSED && pcb->state != TCPS_LISTEN)
        return -EISCONN; /* POSIX: sendto with an address on a connected stream */
    mutex_lock(&tcp_lock);
    while (done < data->len || data->len == 0) {
        if (net_is_shutting_down()) {
            err = -ESHUTDOWN;
            break;
        }
        if (pcb->app_closed) {
            err = -EBADF;
            break;
        }
        if ((err = send_blocker(pcb)) < 0)
            break;
        if (!connecting(pcb) && ring_space(&pcb->sndbuf) > 0) {
            size_t n = ring_space(&pcb->sndbuf);
            if (n > data->len - done)
                n = data->len - done;
            iov_to_ring(data, done, &pcb->sndbuf, n); /* one copy, straight in */
            done += n;
            tcp_output_locked(pcb);
            if (data->len == 0 || done == data->len)
                break;
            continue;
        }
        tcp_tx_flush(); /* what we queued goes before we sleep */
        if ((err = sock_wait(s, &tcp_lock, deadline)) < 0)
            break;
    }
    tcp_unlock();
    /* Some bytes went in: report them (a partial write, as POSIX allows);
     * the error, if any, shows on the next call. */
    return done > 0 ? (ssize_t)done : err;
}

static ssize_t tcp_recv(struct sock *s, const struct sock_iov *room, struct sock_addr *from,
                        int flags, int *msg_flags, uint64_t deadline)
{
    struct tcp_pcb *pcb = pcb_of(s);
    ssize_t n = 0;
    int err;

    (void)msg_flags;
    mutex_lock(&tcp_lock);
    for (;;) {
        if (net_is_shutting_down()) {
            n = -ESHUTDOWN;
            break;
        }
        if (pcb->app_closed) {
            n = -EBADF;
            break;
        }
        if (pcb->rcvbuf.len == 0 && pcb->error && pcb->state == TCPS_CLOSED) {
            /* a reset ends every RECEIVE (RFC 9293 §3.10.7.4); bytes that
             * arrived before it are handed over first, as Linux does */
            n = pcb->error;
            pcb->error = 0;
            break;
        }
        if (pcb->rcvbuf.len > 0) {
            size_t want = room->len < pcb->rcvbuf.len ? room->len : pcb->rcvbuf.len;
            ring_to_iov(&pcb->rcvbuf, room, want); /* one copy, straight out */
            if (!(flags & MSG_PEEK)) {
                ring_discard(&pcb->rcvbuf, want);
                tcp_window_update_locked(pcb);
            }
            n = (ssize_t)want;
            break;
        }
        if (pcb->rcv_fin || pcb->shut_rd || room->len == 0)
            break; /* end of stream: 0 */
        if (pcb->state == TCPS_CLOSED || pcb->state == TCPS_LISTEN) {
            n = pcb->had_sock && pcb->state == TCPS_CLOSED && pcb->irs ? 0 : -ENOTCONN;
            break;
        }
        tcp_tx_flush(); /* what we queued goes before we sleep */
        if ((err = sock_wait(s, &tcp_lock, deadline)) < 0) {
            n = err;
            break;
        }
    }
    if (n >= 0) {
        from->addr = pcb->remote.addr;
        from->port = pcb->remote.port;
    }
    tcp_unlock();
    return n;
}

static int tcp_shutdown(struct sock *s, int how)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err = 0;

    mutex_lock(&tcp_lock);
    if (pcb->state == TCPS_CLOSED || pcb->state == TCPS_LISTEN || pcb->state == TCPS_SYN_SENT) {
        err = -ENOTCONN;
    } else {
        if (how == SHUT_RD || how == SHUT_RDWR)
            pcb->shut_rd = 1;
        if ((how == SHUT_WR || how == SHUT_RDWR) && !pcb->fin_queued) {
            pcb->fin_queued = 1;
            if (pcb->state == TCPS_ESTABLISHED || pcb->state == TCPS_SYN_RECEIVED)
                tcp_set_state_locked(pcb, TCPS_FIN_WAIT_1);
            else if (pcb->state == TCPS_CLOSE_WAIT)
                tcp_set_state_locked(pcb, TCPS_LAST_ACK);
            tcp_output_locked(pcb);
        }
        tcp_notify_locked(pcb);
    }
    tcp_unlock();
    return err;
}

static short tcp_poll(struct sock *s)
{
    struct tcp_pcb *pcb = pcb_of(s);
    short ev = 0;

    mutex_lock(&tcp_lock);
    if (pcb->state == TCPS_LISTEN) {
        if (pcb->acceptq)
            ev |= POLLIN;
    } else {
        if (pcb->rcvbuf.len > 0 || pcb->rcv_fin || pcb->shut_rd)
            ev |= POLLIN;
        if ((pcb->state == TCPS_ESTABLISHED || pcb->state == TCPS_CLOSE_WAIT) && !pcb->fin_queued &&
            ring_space(&pcb->sndbuf) > 0)
            ev |= POLLOUT;
        if (pcb->error)
            ev |= POLLERR | POLLOUT | POLLIN;
        if (pcb->state == TCPS_CLOSED && pcb->had_sock && pcb->iss)
            ev |= POLLHUP | POLLIN;
    }
    tcp_unlock();
    return ev;
}

static int tcp_name(struct sock *s, int peer, struct sock_addr *a)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err = 0;

    mutex_lock(&tcp_lock);
    if (peer && (pcb->state == TCPS_CLOSED || pcb->state == TCPS_LISTEN || pcb->state == TCPS_SYN_SENT))
        err = -ENOTCONN;
    else
        *a = peer ? pcb->remote : pcb->local;
    tcp_unlock();
    return err;
}

static int tcp_take_error(struct sock *s)
{
    struct tcp_pcb *pcb = pcb_of(s);
    int err;

    mutex_lock(&tcp_lock);
    err = pcb->error;
    pcb->error = 0;
    tcp_unlock();
    return err;
}

static void tcp_wake(struct sock *s)
{
    mutex_lock(&tcp_lock);
    sock_wakeup(s);
    tcp_unlock();
}

static void tcp_opt_changed(struct sock *s, int level, int name)
{
    struct tcp_pcb *pcb = pcb_of(s);

    mutex_lock(&tcp_lock);
    if ((level == SOL_SOCKET && name == SO_KEEPALIVE) ||
        (level == IPPROTO_TCP && (name == TCP_KEEPIDLE || name == TCP_KEEPINTVL)))
        tcp_keepalive_reset_locked(pcb);
    else if (level == IPPROTO_TCP && name == TCP_NODELAY)
        tcp_output_locked(pcb); /* what Nagle held back may go now */
    else if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
        pcb->cc = atomic_load(&s->cc);
        if (pcb->cwnd) /* already sending: the new algorithm starts afresh */
            pcb->cc->init(pcb);
    }
    tcp_unlock();
}

static const struct sock_ops tcp_ops = {
    .attach = tcp_attach,
    .detach = tcp_detach,
    .destroy = tcp_destroy,
    .bind = tcp_bind,
    .connect = tcp_connect,
    .listen = tcp_listen,
    .accept = tcp_accept,
    .send = tcp_send,
    .recv = tcp_recv,
    .shutdown = tcp_shutdown,
    .poll = tcp_poll,
    .name = tcp_name,
    .take_error = tcp_take_error,
    .wake = tcp_wake,
    .opt_changed = tcp_opt_changed,
};

/* ---- tools ---------------------------------------------------------------------------- */

void tcp_dump(const uint8_t *seg, size_t len, uint32_t src, uint32_t dst)
{
    char a[IP_ADDR_STR_LEN], b[IP_ADDR_STR_LEN], f[8];
    const struct tcp_hdr *h = (const struct tcp_hdr *)seg;
    int n = 0;

    if (len < TCP_HDR_SIZE_MIN)
        return;
    if (h->flg & TCP_FLG_SYN) f[n++] = 'S';
    if (h->flg & TCP_FLG_FIN) f[n++] = 'F';
    if (h->flg & TCP_FLG_RST) f[n++] = 'R';
    if (h->flg & TCP_FLG_PSH) f[n++] = 'P';
    if (h->flg & TCP_FLG_ACK) f[n++] = '.';
    f[n] = '\0';
    log_debug(LOG_TCP, "tcp %s.%u > %s.%u: Flags [%s], seq %u, ack %u, win %u, length %zu",
              ip_addr_ntop(src, a, sizeof(a)), load16(&h->src), ip_addr_ntop(dst, b, sizeof(b)),
              load16(&h->dst), f, load32(&h->seq), load32(&h->ack), load16(&h->wnd),
              len - (size_t)(h->off >> 4) * 4);
}

size_t tcp_pcb_format(char *buf, size_t size)
{
    size_t n = 0;

    if (size)
        buf[0] = '\0';
    mutex_lock(&tcp_lock);
    for (struct tcp_pcb *p = tcp_pcbs; p; p = p->next) {
        char l[IP_ADDR_STR_LEN], r[IP_ADDR_STR_LEN];
        int m;
        if (p->reaping)
            continue; /* gone: only waiting for the stack thread to free it */
        m = snprintf(n < size ? buf + n : NULL, n < size ? size - n : 0,
                         "tcp %-12s %s:%u %s:%u sendq=%zu recvq=%zu rto=%u srtt=%u cwnd=%u ssthresh=%u "
                         "snd_wnd=%u retrans=%u\n",
                         tcp_state_name(p->state), ip_addr_ntop(p->local.addr, l, sizeof(l)), p->local.port,
                         ip_addr_ntop(p->remote.addr, r, sizeof(r)), p->remote.port, p->sndbuf.len,
                         p->rcvbuf.len, p->rto_ms, p->srtt_ms8 >> 3, p->cwnd, p->ssthresh, p->snd_wnd,
                         p->retries);
        if (m > 0)
            n += (size_t)m;
    }
    tcp_unlock();
    return n;
}

/* ---- life cycle --------------------------------------------------------------------------- */

int tcp_init(void)
{
    uint16_t r;
    int err;

    stats_register(&tcp_stats);
    tcp_output_reset();
    platform_random(isn_key, sizeof(isn_key));
    platform_random(&r, sizeof(r));
    mutex_lock(&tcp_lock);
    next_port = r;
    platform_random(&tcp_hash_seed, sizeof(tcp_hash_seed));
    memset(tcp_hash, 0, sizeof(tcp_hash));
    tcp_unlock();
    if ((err = ip_protocol_register(IP_PROTOCOL_TCP, tcp_input, tcp_icmp_error)) < 0)
        return err;
    if ((err = net_batch_end_register(tcp_batch_end)) < 0)
        return err;
    return sock_register_ops(SOCK_STREAM, IPPROTO_TCP, &tcp_ops);
}

/* After the stack thread stopped and sockets were closed: free every pcb
 * directly (no reap timer will run any more). */
void tcp_cleanup(void)
{
    mutex_lock(&tcp_lock);
    memset(tcp_hash, 0, sizeof(tcp_hash));
    batch_list = NULL;
    while (tcp_pcbs) {
        struct tcp_pcb *p = tcp_pcbs;
        tcp_pcbs = p->next;
        p->pprev = NULL;
        p->hash_slot = -1;
        if (p->sock) { /* a thread still holds the socket: leave it be */
            p->next = NULL;
            continue;
        }
        tcp_timers_destroy(p);
        ring_free(&p->sndbuf);
        ring_free(&p->rcvbuf);
        mem_free(p);
    }
    tcp_pcb_count = 0;
    tcp_unlock();
}
