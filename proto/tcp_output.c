/*
 * tcp_output.c — sending segments and running TCP's timers.
 *
 * Called with tcp_lock held, from tcp_input (ACKs, replies), from the
 * socket operations (new data, close) and from the timers below, which run
 * on the stack thread and take tcp_lock themselves:
 *
 *   rexmt     RFC 6298 retransmission timer (SYN, SYN-ACK, data, FIN)
 *   persist   zero-window probes (RFC 9293 §3.8.6.1)
 *   delack    delayed ACK (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2)
 *   keep      keepalive (RFC 1122 §4.2.3.6), orphan FIN-WAIT-2 limit
 *   timewait  2 MSL in TIME-WAIT (RFC 9293 §3.6)
 *   reap      frees a dead pcb on the stack thread
 *
 * tcp_output_locked decides what to send: as much new data as the peer's
 * window and the congestion window allow, in MSS-sized segments, holding
 * back a small segment while data is unacknowledged (Nagle, RFC 896) and
 * never sending a sliver of window (sender SWS avoidance, RFC 9293
 * §3.8.6.2.1), then the FIN once the data is out.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "proto/tcp_var.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"
#include "util/mem.h"

/* How long a short segment held back by sender SWS avoidance may wait
 * before it goes anyway (RFC 9293 §3.8.6.2.1: 0.1 to 1 s). */
#define TCP_SWS_OVERRIDE_MS 200

static struct mutex challenge_lock = MUTEX_INITIALIZER;
static uint64_t challenge_window_ms;  /* [challenge_lock] */
static unsigned challenge_count;      /* [challenge_lock] */

/* ---- segments ---------------------------------------------------------------- */

uint8_t tcp_wscale_for(uint32_t size)
{
    uint8_t shift = 0;

    while (shift < 14 && (size >> shift) > 65535)
        shift++;
    return shift;
}

uint32_t tcp_rcv_slack(struct tcp_pcb *pcb)
{
    return 1u << tcp_wscale_for(pcb->rcvbuf_size);
}

uint32_t tcp_rcv_window_locked(struct tcp_pcb *pcb)
{
    /* The ring holds tcp_rcv_slack() bytes more than we count as free: a
     * scaled window rounded up to its unit never offers room the ring does
     * not have (see tcp_buffers_alloc_locked). */
    uint32_t slack = tcp_rcv_slack(pcb);
    uint32_t space = pcb->rcvbuf.buf ? (uint32_t)ring_space(&pcb->rcvbuf) : pcb->rcvbuf_size + slack;
    uint32_t cap = pcb->rcvbuf_size;
    uint32_t free = space > slack ? space - slack : 0;

    uint32_t most = 65535u << (pcb->wscale_ok ? pcb->rcv_wscale : 0);

    if (free > most) /* the largest window the header can say */
        free = most;
    if (cap > most)
        cap = most;
    uint32_t cur = SEQ_GT(pcb->rcv_adv, pcb->rcv_nxt) ? pcb->rcv_adv - pcb->rcv_nxt : 0;
    uint32_t sws = cap / 2 < pcb->snd_mss ? cap / 2 : pcb->snd_mss;
    uint32_t wnd = free;

    /* RFC 9293 §3.8.6.2.2: do not move the right edge by less than
     * min(buffer/2, MSS); and never pull it back (§3.8.6: SHOULD NOT shrink). */
    if (free < cur || free - cur < sws)
        wnd = cur;
    return wnd;
}

static size_t write_options(uint8_t *opt, struct tcp_pcb *pcb, uint8_t flags)
{
    struct ip_iface *iface;
    uint32_t nexthop;
    uint16_t mss = 536;
    size_t n = 0;

    if (!(flags & TCP_FLG_SYN))
        return 0;
    /* RFC 9293 §3.7.1: announce the largest segment we can receive */
    if (ip_route_lookup(pcb->remote.addr, &iface, &nexthop) == 0)
        mss = (uint16_t)(iface->iface.dev->mtu - IP_HDR_SIZE_MIN - TCP_HDR_SIZE_MIN);
    opt[n++] = TCP_OPT_MSS;
    opt[n++] = 4;
    store16(opt + n, mss);
    n += 2;
    /* RFC 7323 §2.2: offer window scaling in a SYN; in a SYN,ACK only if
     * the peer's SYN offered it */
    if (!(flags & TCP_FLG_ACK) || pcb->wscale_ok) {
        opt[n++] = TCP_OPT_NOP;
        opt[n++] = TCP_OPT_WSCALE;
        opt[n++] = 3;
        opt[n++] = pcb->rcv_wscale;
    }
    return n;
}

int tcp_send_segment_locked(struct tcp_pcb *pcb, uint8_t flags, uint32_t seq, size_t off, size_t len)
{
    uint8_t opt[TCP_HDR_SIZE_MAX - TCP_HDR_SIZE_MIN];
    size_t optlen = write_options(opt, pcb, flags), hlen = TCP_HDR_SIZE_MIN + optlen;
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, hlen + len);
    struct tcp_hdr *hdr;
    uint32_t wnd;

    assert(mutex_held(&tcp_lock));
    if (!pb) {
        STAT_INC(&tcp_stats, TCPSTAT_OUT_NO_MEMORY);
        return -ENOMEM;
    }
    hdr = (struct tcp_hdr *)pb->data;
    if (len)
        ring_peek(&pcb->sndbuf, off, pb->data + hlen, len);
    memcpy(pb->data + TCP_HDR_SIZE_MIN, opt, optlen);
    store16(&hdr->src, pcb->local.port);
    store16(&hdr->dst, pcb->remote.port);
    store32(&hdr->seq, seq);
    store32(&hdr->ack, (flags & TCP_FLG_ACK) ? pcb->rcv_nxt : 0);
    hdr->off = (uint8_t)((hlen / 4) << 4);
    hdr->flg = flags;
    wnd = tcp_rcv_window_locked(pcb);
    if (flags & TCP_FLG_SYN) {
        wnd = wnd > 65535 ? 65535 : wnd; /* a SYN's window is never scaled */
        store16(&hdr->wnd, (uint16_t)wnd);
    } else {
        /* Round up to the scale's unit: rounding down could pull back the
         * right edge we offered (RFC 9293 §3.8.6 SHOULD NOT shrink). */
        uint8_t s = pcb->wscale_ok ? pcb->rcv_wscale : 0;
        uint32_t field = (wnd + (1u << s) - 1) >> s;
        if (field > 65535)
            field = 65535;
        store16(&hdr->wnd, (uint16_t)field);
        wnd = field << s;
    }
    hdr->sum = 0;
    hdr->urg = 0;
    store16(&hdr->sum, cksum16(pb->data, pb->len,
                               cksum_pseudo(pcb->local.addr, pcb->remote.addr, IP_PROTOCOL_TCP, (uint16_t)pb->len)));
    if (flags & TCP_FLG_ACK) { /* this segment carries our ACK */
        if (SEQ_GT(pcb->rcv_nxt + wnd, pcb->rcv_adv))
            pcb->rcv_adv = pcb->rcv_nxt + wnd;
        pcb->acks_pending = 0;
        pcb->ack_now = 0;
        net_timer_cancel(&pcb->delack);
    }
    STAT_INC(&tcp_stats, TCPSTAT_OUT_SEGS);
    if (flags & TCP_FLG_RST)
        STAT_INC(&tcp_stats, TCPSTAT_OUT_RSTS);
    if (log_enabled(LOG_TCP, LOG_LEVEL_DEBUG))
        tcp_dump(pb->data, pb->len, pcb->local.addr, pcb->remote.addr);
    return ip_output(IP_PROTOCOL_TCP, pb, pcb->local.addr, pcb->remote.addr);
}

void tcp_send_ack_locked(struct tcp_pcb *pcb)
{
    /* After a go-back, snd_nxt points into what we already sent; an ACK
     * with that sequence number falls below the peer's RCV.NXT and is
     * dropped with its acknowledgement. A pure ACK says snd_max (BSD does
     * the same). */
    tcp_send_segment_locked(pcb, TCP_FLG_ACK, pcb->snd_max, 0, 0);
}

/* RFC 5961 §7: at most net_config.tcp_challenge_ack_per_s a second. */
int tcp_send_challenge_ack_locked(struct tcp_pcb *pcb)
{
    uint64_t now = net_now_ms();
    int ok;

    mutex_lock(&challenge_lock);
    if (now - challenge_window_ms >= 1000) {
        challenge_window_ms = now;
        challenge_count = 0;
    }
    ok = challenge_count++ < net_config.tcp_challenge_ack_per_s;
    mutex_unlock(&challenge_lock);
    if (!ok) {
        STAT_INC(&tcp_stats, TCPSTAT_CHALLENGE_ACKS_LIMITED);
        return 0;
    }
    STAT_INC(&tcp_stats, TCPSTAT_CHALLENGE_ACKS);
    tcp_send_ack_locked(pcb);
    return 1;
}

void tcp_send_reset_for(const struct tcp_seg *seg)
{
    struct pbuf *pb;
    struct tcp_hdr *hdr;

    if (seg->flg & TCP_FLG_RST)
        return; /* never answer a reset */
    pb = pbuf_alloc(PBUF_HEADROOM, TCP_HDR_SIZE_MIN);
    if (!pb)
        return;
    hdr = (struct tcp_hdr *)pb->data;
    memset(hdr, 0, sizeof(*hdr));
    store16(&hdr->src, seg->dport);
    store16(&hdr->dst, seg->sport);
    /* RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST> if the segment had an ACK,
     * else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> */
    if (seg->flg & TCP_FLG_ACK) {
        store32(&hdr->seq, seg->ack);
        hdr->flg = TCP_FLG_RST;
    } else {
        store32(&hdr->ack, seg->seq + seg->len);
        hdr->flg = TCP_FLG_RST | TCP_FLG_ACK;
    }
    hdr->off = (TCP_HDR_SIZE_MIN / 4) << 4;
    store16(&hdr->sum, cksum16(pb->data, pb->len, cksum_pseudo(seg->dst, seg->src, IP_PROTOCOL_TCP, TCP_HDR_SIZE_MIN)));
    STAT_INC(&tcp_stats, TCPSTAT_OUT_SEGS);
    STAT_INC(&tcp_stats, TCPSTAT_OUT_RSTS);
    if (log_enabled(LOG_TCP, LOG_LEVEL_DEBUG))
        tcp_dump(pb->data, pb->len, seg->dst, seg->src);
    ip_output(IP_PROTOCOL_TCP, pb, seg->dst, seg->src);
}

/* ---- what to send ----------------------------------------------------------------- */

static int can_send_data(enum tcp_state s)
{
    return s == TCPS_ESTABLISHED || s == TCPS_CLOSE_WAIT || s == TCPS_FIN_WAIT_1 || s == TCPS_CLOSING ||
           s == TCPS_LAST_ACK;
}

/* How many bytes of the next segment may go now, and whether the FIN goes
 * with it. Returns 0 with *fin 0 when nothing should be sent yet. */
static size_t next_segment_len(struct tcp_pcb *pcb, int *fin)
{
    size_t off = (size_t)(pcb->snd_nxt - pcb->snd_una), unsent, len;
    uint32_t in_flight = pcb->snd_nxt - pcb->snd_una;
    uint32_t wnd = pcb->snd_wnd < pcb->cwnd ? pcb->snd_wnd : pcb->cwnd;
    uint32_t usable = SEQ_GT(pcb->snd_una + wnd, pcb->snd_nxt) ? pcb->snd_una + wnd - pcb->snd_nxt : 0;

    *fin = 0;
    if (pcb->fin_sent && SEQ_GT(pcb->snd_nxt, pcb->fin_seq))
        return 0; /* everything, FIN included, is out */
    unsent = off < pcb->sndbuf.len ? pcb->sndbuf.len - off : 0;
    len = unsent < usable ? unsent : usable;
    if (len > pcb->snd_mss)
        len = pcb->snd_mss;
    *fin = pcb->fin_queued && off + len == pcb->sndbuf.len;
    if (len == 0 || len == pcb->snd_mss || *fin || pcb->force_send)
        return len;
    /* A short segment: Nagle (RFC 896) and sender SWS avoidance. Send it
     * only if it is all we have and nothing is in flight (or TCP_NODELAY),
     * or if it fills half the largest window the peer ever offered. */
    if (len == unsent && (in_flight == 0 || (pcb->sock && atomic_load(&pcb->sock->nodelay))))
        return len;
    if (pcb->max_snd_wnd && len >= pcb->max_snd_wnd / 2)
        return len;
    return 0;
}

void tcp_output_locked(struct tcp_pcb *pcb)
{
    int sent = 0;

    if (can_send_data(pcb->state) && pcb->sndbuf.buf) {
        for (;;) {
            int fin;
            size_t off = (size_t)(pcb->snd_nxt - pcb->snd_una);
            size_t len = next_segment_len(pcb, &fin);
            uint8_t flags = TCP_FLG_ACK;

            if (len == 0 && !fin)
                break;
            if (len && off + len == pcb->sndbuf.len)
                flags |= TCP_FLG_PSH;
            if (fin)
                flags |= TCP_FLG_FIN;
            if (SEQ_LT(pcb->snd_nxt, pcb->snd_max))
                STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
            else if (!pcb->rtt_timing && len) { /* time one new segment (Karn) */
                pcb->rtt_timing = 1;
                pcb->rtt_seq = pcb->snd_nxt;
                pcb->rtt_start = net_now_ms();
            }
            if (tcp_send_segment_locked(pcb, flags, pcb->snd_nxt, off, len) < 0)
                break;
            pcb->snd_nxt += (uint32_t)len + (fin ? 1 : 0);
            if (fin) {
                pcb->fin_sent = 1;
                pcb->fin_seq = pcb->snd_nxt - 1;
            }
            if (SEQ_GT(pcb->snd_nxt, pcb->snd_max))
                pcb->snd_max = pcb->snd_nxt;
            if (!net_timer_armed(&pcb->rexmt))
                tcp_rexmt_arm_locked(pcb);
            sent = 1;
        }
        /* Data waiting and nothing in flight: if the window is shut, probe
         * it; if SWS avoidance held a short segment back, send it anyway
         * after a while (RFC 9293 §3.8.6.2.1, the override timeout). */
        if (pcb->snd_nxt == pcb->snd_una && pcb->sndbuf.len > 0 && !net_timer_armed(&pcb->persist)) {
            uint64_t t = (uint64_t)pcb->rto_ms << pcb->backoff;
            if (pcb->snd_wnd != 0)
                t = TCP_SWS_OVERRIDE_MS;
            net_timer_arm(&pcb->persist, t > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : t);
        }
    }
    if (!sent && pcb->ack_now && pcb->state != TCPS_CLOSED && pcb->state != TCPS_LISTEN &&
        pcb->state != TCPS_SYN_SENT)
        tcp_send_ack_locked(pcb);
}

void tcp_window_update_locked(struct tcp_pcb *pcb)
{
    uint32_t cur = SEQ_GT(pcb->rcv_adv, pcb->rcv_nxt) ? pcb->rcv_adv - pcb->rcv_nxt : 0;

    /* tcp_rcv_window_locked applies the SWS rule: it only returns more than
     * cur when the window can open by a worthwhile amount. */
    if (pcb->state == TCPS_ESTABLISHED || pcb->state == TCPS_FIN_WAIT_1 || pcb->state == TCPS_FIN_WAIT_2) {
        if (tcp_rcv_window_locked(pcb) > cur)
            tcp_send_ack_locked(pcb);
    }
}

/* ---- round-trip time (RFC 6298) ------------------------------------------------------- */

static void rto_update(struct tcp_pcb *pcb)
{
    uint32_t rto = (pcb->srtt_ms8 >> 3) + (pcb->rttvar_ms4 > 0 ? pcb->rttvar_ms4 : 1);

    if (rto < net_config.tcp_rto_min_ms)
        rto = net_config.tcp_rto_min_ms;
    if (rto > net_config.tcp_rto_max_ms)
        rto = net_config.tcp_rto_max_ms;
    pcb->rto_ms = rto;
}

void tcp_rtt_sample_locked(struct tcp_pcb *pcb, uint32_t rtt)
{
    if (pcb->srtt_ms8 == 0) { /* RFC 6298 §2.2: the first measurement */
        pcb->srtt_ms8 = rtt << 3;
        pcb->rttvar_ms4 = rtt << 1; /* RTTVAR = R/2, kept times 4 */
    } else { /* §2.3: alpha = 1/8, beta = 1/4 */
        int32_t delta = (int32_t)rtt - (int32_t)(pcb->srtt_ms8 >> 3);
        pcb->srtt_ms8 = (uint32_t)((int32_t)pcb->srtt_ms8 + delta);
        if (delta < 0)
            delta = -delta;
        pcb->rttvar_ms4 = (uint32_t)((int32_t)pcb->rttvar_ms4 + (delta - (int32_t)(pcb->rttvar_ms4 >> 2)));
    }
    rto_update(pcb);
}

void tcp_rexmt_arm_locked(struct tcp_pcb *pcb)
{
    net_timer_arm(&pcb->rexmt, pcb->rto_ms);
}

/* ---- timers ------------------------------------------------------------------------ */

/* Each timer callback: take the lock, make sure the pcb still wants it. */
static int timer_enter(struct tcp_pcb *pcb)
{
    mutex_lock(&tcp_lock);
    if (pcb->reaping || pcb->state == TCPS_CLOSED) {
        mutex_unlock(&tcp_lock);
        return 0;
    }
    return 1;
}

static void rexmt_syn_locked(struct tcp_pcb *pcb)
{
    if (++pcb->retries > net_config.tcp_syn_retries) {
        STAT_INC(&tcp_stats, TCPSTAT_CONN_TIMEOUTS);
        tcp_drop_locked(pcb, pcb->soft_error ? pcb->soft_error : -ETIMEDOUT);
        return;
    }
    STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
    tcp_send_segment_locked(pcb, pcb->state == TCPS_SYN_SENT ? TCP_FLG_SYN : TCP_FLG_SYN | TCP_FLG_ACK,
                            pcb->iss, 0, 0);
    pcb->rto_ms = pcb->rto_ms * 2 > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : pcb->rto_ms * 2;
    tcp_rexmt_arm_locked(pcb);
}

static void rexmt_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;
    uint32_t flight;

    if (!timer_enter(pcb))
        return;
    STAT_INC(&tcp_stats, TCPSTAT_RTO_TIMEOUTS);
    if (pcb->state == TCPS_SYN_SENT || pcb->state == TCPS_SYN_RECEIVED) {
        rexmt_syn_locked(pcb);
    } else if (pcb->snd_una != pcb->snd_max) {
        if (++pcb->retries > net_config.tcp_retries) {
            STAT_INC(&tcp_stats, TCPSTAT_CONN_TIMEOUTS);
            tcp_drop_locked(pcb, pcb->soft_error ? pcb->soft_error : -ETIMEDOUT);
            mutex_unlock(&tcp_lock);
            return;
        }
        /* RFC 5681 §3.1, eq. 4: halve, and restart from one segment */
        flight = pcb->snd_max - pcb->snd_una;
        pcb->ssthresh = flight / 2 > 2u * pcb->snd_mss ? flight / 2 : 2u * pcb->snd_mss;
        pcb->cwnd = pcb->snd_mss;
        pcb->dupacks = 0;
        pcb->in_recovery = 0; /* RFC 6582 §3.2 step 4: a timeout ends recovery */
        /* RFC 6298 §5.5: back off; Karn: no sample from a retransmission */
        pcb->rto_ms = pcb->rto_ms * 2 > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : pcb->rto_ms * 2;
        pcb->rtt_timing = 0;
        /* go back and resend from the first hole; a FIN already sent keeps
         * its sequence number and goes again when the data before it has */
        pcb->snd_nxt = pcb->snd_una;
        log_debug(LOG_TCP, "rto: resend from %u, rto now %u ms, try %u", pcb->snd_una, pcb->rto_ms, pcb->retries);
        tcp_output_locked(pcb);
    }
    mutex_unlock(&tcp_lock);
}

static void persist_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;
    size_t off;

    if (!timer_enter(pcb))
        return;
    off = (size_t)(pcb->snd_nxt - pcb->snd_una);
    if (pcb->snd_wnd != 0 && off < pcb->sndbuf.len) { /* the SWS override */
        pcb->force_send = 1;
        tcp_output_locked(pcb);
        pcb->force_send = 0;
    } else if (pcb->snd_wnd == 0 && off < pcb->sndbuf.len) {
        if (++pcb->persist_unanswered > net_config.tcp_retries) {
            /* the peer stopped answering even our probes: it is gone */
            STAT_INC(&tcp_stats, TCPSTAT_CONN_TIMEOUTS);
            tcp_drop_locked(pcb, -ETIMEDOUT);
            mutex_unlock(&tcp_lock);
            return;
        }
        /* RFC 9293 §3.8.6.1: one byte beyond the window; if the peer took
         * it, its ACK says so, and the window with it. */
        STAT_INC(&tcp_stats, TCPSTAT_PERSIST_PROBES);
        tcp_send_segment_locked(pcb, TCP_FLG_ACK, pcb->snd_nxt, off, 1);
        if (SEQ_GT(pcb->snd_nxt + 1, pcb->snd_max))
            pcb->snd_max = pcb->snd_nxt + 1;
        if (pcb->backoff < 16)
            pcb->backoff++;
        uint64_t t = (uint64_t)pcb->rto_ms << pcb->backoff;
        net_timer_arm(&pcb->persist, t > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : t);
    }
    mutex_unlock(&tcp_lock);
}

static void delack_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;

    if (!timer_enter(pcb))
        return;
    if (pcb->acks_pending) {
        STAT_INC(&tcp_stats, TCPSTAT_DELAYED_ACKS);
        tcp_send_ack_locked(pcb);
    }
    mutex_unlock(&tcp_lock);
}

static int keepalive_on(struct tcp_pcb *pcb)
{
    return pcb->sock && atomic_load(&pcb->sock->keepalive);
}

static unsigned keep_value(struct tcp_pcb *pcb, _Atomic int *v, unsigned dflt)
{
    int x = pcb->sock ? atomic_load(v) : 0;

    return x > 0 ? (unsigned)x : dflt;
}

void tcp_keepalive_reset_locked(struct tcp_pcb *pcb)
{
    pcb->last_recv_ms = net_now_ms();
    pcb->keep_probes = 0;
    if (pcb->state == TCPS_FIN_WAIT_2 && !pcb->sock)
        return; /* the keep timer counts the orphan's FIN-WAIT-2 time */
    if (keepalive_on(pcb) && (pcb->state == TCPS_ESTABLISHED || pcb->state == TCPS_CLOSE_WAIT))
        net_timer_arm(&pcb->keep, (uint64_t)keep_value(pcb, &pcb->sock->keep_idle_s, net_config.tcp_keep_idle_s) * 1000);
    else
        net_timer_cancel(&pcb->keep);
}

static void keep_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;
    unsigned intvl, cnt;

    if (!timer_enter(pcb))
        return;
    if (pcb->state == TCPS_FIN_WAIT_2) { /* an orphan waited long enough */
        tcp_drop_locked(pcb, -ETIMEDOUT);
    } else if (keepalive_on(pcb)) {
        intvl = keep_value(pcb, &pcb->sock->keep_intvl_s, net_config.tcp_keep_intvl_s);
        cnt = keep_value(pcb, &pcb->sock->keep_cnt, net_config.tcp_keep_cnt);
        if (pcb->keep_probes >= cnt) {
            STAT_INC(&tcp_stats, TCPSTAT_CONN_TIMEOUTS);
            tcp_drop_locked(pcb, -ETIMEDOUT);
        } else {
            /* RFC 1122 §4.2.3.6: SEG.SEQ = SND.NXT-1, no data: the peer
             * must answer with an ACK */
            STAT_INC(&tcp_stats, TCPSTAT_KEEPALIVE_PROBES);
            pcb->keep_probes++;
            tcp_send_segment_locked(pcb, TCP_FLG_ACK, pcb->snd_una - 1, 0, 0);
            net_timer_arm(&pcb->keep, (uint64_t)intvl * 1000);
        }
    }
    mutex_unlock(&tcp_lock);
}

static void timewait_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;

    if (!timer_enter(pcb))
        return;
    tcp_drop_locked(pcb, 0);
    mutex_unlock(&tcp_lock);
}

void tcp_output_reset(void)
{
    mutex_lock(&challenge_lock);
    challenge_window_ms = 0;
    challenge_count = 0;
    mutex_unlock(&challenge_lock);
}

void tcp_enter_time_wait_locked(struct tcp_pcb *pcb)
{
    tcp_set_state_locked(pcb, TCPS_TIME_WAIT);
    net_timer_cancel(&pcb->rexmt);
    net_timer_cancel(&pcb->persist);
    net_timer_cancel(&pcb->keep);
    net_timer_arm(&pcb->timewait, 2ull * net_config.tcp_msl_ms);
}

static void reap_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;

    mutex_lock(&tcp_lock);
    for (struct tcp_pcb **pp = &tcp_pcbs; *pp; pp = &(*pp)->next) {
        if (*pp == pcb) {
            *pp = pcb->next;
            break;
        }
    }
    tcp_pcb_count--;
    mutex_unlock(&tcp_lock);
    /* Timer callbacks run one at a time on this thread: none of this pcb's
     * is running now, and none can be armed again (it is unlinked). */
    tcp_timers_destroy(pcb);
    ring_free(&pcb->sndbuf);
    ring_free(&pcb->rcvbuf);
    mem_free(pcb);
}

int tcp_timers_init(struct tcp_pcb *pcb)
{
    int err = 0;

    err |= net_timer_init(&pcb->rexmt, "tcp-rexmt", rexmt_fire, pcb);
    err |= net_timer_init(&pcb->persist, "tcp-persist", persist_fire, pcb);
    err |= net_timer_init(&pcb->delack, "tcp-delack", delack_fire, pcb);
    err |= net_timer_init(&pcb->keep, "tcp-keep", keep_fire, pcb);
    err |= net_timer_init(&pcb->timewait, "tcp-timewait", timewait_fire, pcb);
    err |= net_timer_init(&pcb->reap, "tcp-reap", reap_fire, pcb);
    return err ? -ENOMEM : 0;
}

void tcp_timers_cancel_all(struct tcp_pcb *pcb)
{
    net_timer_cancel(&pcb->rexmt);
    net_timer_cancel(&pcb->persist);
    net_timer_cancel(&pcb->delack);
    net_timer_cancel(&pcb->keep);
    net_timer_cancel(&pcb->timewait);
}

void tcp_timers_destroy(struct tcp_pcb *pcb)
{
    net_timer_destroy(&pcb->rexmt);
    net_timer_destroy(&pcb->persist);
    net_timer_destroy(&pcb->delack);
    net_timer_destroy(&pcb->keep);
    net_timer_destroy(&pcb->timewait);
    net_timer_destroy(&pcb->reap);
}
