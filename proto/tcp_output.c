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

/* ---- segments leave after tcp_lock is released ------------------------------------ *
 * A segment is built under tcp_lock (it reads the connection), but written
 * to the device after the lock is let go: the tap write, and the kernel's
 * processing of the frame inside it, would otherwise keep every other
 * thread out of TCP meanwhile. Each thread queues its own segments here and
 * tcp_unlock() sends them. Order across threads is kept by tcp_tx_lock,
 * taken before tcp_lock is released (hand over hand): segments leave in
 * the order their connection's state changed, as when they were written
 * under tcp_lock. Lock order: tcp_lock -> tcp_tx_lock -> IP, ARP, hooks,
 * the device. */

struct tx_cb {
    uint32_t src, dst;
};
_Static_assert(sizeof(struct tx_cb) <= sizeof(((struct pbuf *)0)->cb), "tx_cb fits in cb");

static _Thread_local struct pbuf *txq_head, *txq_tail; /* this thread's own */

static void tx_queue(struct pbuf *pb, uint32_t src, uint32_t dst)
{
    struct tx_cb cb = { src, dst };

    memcpy(pb->cb, &cb, sizeof(cb));
    pb->next = NULL;
    if (txq_tail)
        txq_tail->next = pb;
    else
        txq_head = pb;
    txq_tail = pb;
}

/* Orders the sending of segments across threads: taken while tcp_lock is
 * still held, so segments leave in the order they were built. */
static struct mutex tcp_tx_lock = MUTEX_INITIALIZER;

static void tx_flush_ordered(void)
{
    while (txq_head) {
        struct pbuf *pb = txq_head;
        struct tx_cb cb;
        txq_head = pb->next;
        if (!txq_head)
            txq_tail = NULL;
        pb->next = NULL;
        memcpy(&cb, pb->cb, sizeof(cb));
        ip_output(IP_PROTOCOL_TCP, pb, cb.src, cb.dst);
    }
}

void tcp_tx_flush(void)
{
    assert(mutex_held(&tcp_lock));
    if (!txq_head)
        return;
    mutex_lock(&tcp_tx_lock);
    tx_flush_ordered();
    mutex_unlock(&tcp_tx_lock);
}

void tcp_unlock(void)
{
    if (!txq_head) {
        mutex_unlock(&tcp_lock);
        return;
    }
    /* hand over hand: whoever built segments first sends them first, but
     * nobody waits for tcp_lock while the device write runs */
    mutex_lock(&tcp_tx_lock);
    mutex_unlock(&tcp_lock);
    tx_flush_ordered();
    mutex_unlock(&tcp_tx_lock);
}

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

/* The largest super-segment: its IPv4 datagram must stay within 64 KiB
 * with the largest TCP header. */
#define TCP_TSO_MAX (65535u - IP_HDR_SIZE_MIN - TCP_HDR_SIZE_MAX)

void tcp_offload_setup_locked(struct tcp_pcb *pcb)
{
    struct ip_iface *iface;
    uint32_t nexthop;

    /* A segment for one of our own addresses loops back into our own
     * input, which checks every checksum: no offload there. */
    pcb->tso = ip_route_lookup(pcb->remote.addr, &iface, &nexthop) == 0 &&
               (atomic_load(&iface->iface.dev->flags) & NET_DEVICE_FLAG_TSO) &&
               !ip_addr_is_local(pcb->remote.addr);
}

uint32_t tcp_rcv_room_locked(struct tcp_pcb *pcb)
{
    return pcb->rcvbuf.buf ? (uint32_t)ring_space(&pcb->rcvbuf) : pcb->rcvbuf_size + tcp_rcv_slack(pcb);
}

uint32_t tcp_rcv_window_locked(struct tcp_pcb *pcb)
{
    /* The ring holds tcp_rcv_slack() bytes more than we count as free: a
     * scaled window rounded up to its unit never offers room the ring does
     * not have (see tcp_buffers_alloc_locked). */
    uint32_t slack = tcp_rcv_slack(pcb);
    uint32_t space = tcp_rcv_room_locked(pcb);
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

uint32_t tcp_ts_now(struct tcp_pcb *pcb)
{
    /* RFC 7323 §5.4: a clock ticking every 1 ms to 1 s; ours is the
     * stack's millisecond clock plus a random per-connection offset, so
     * TSval says nothing about the host's uptime (RFC 7323 §7.1). */
    return (uint32_t)net_now_ms() + pcb->ts_offset;
}

/* SACK blocks to report now (RFC 2018 §4): a duplicate we were sent goes
 * first, once (D-SACK, RFC 2883 §4); then the range holding the segment
 * that arrived last (a MUST), then the ranges we reported most recently
 * (so a range named in one lost ACK is named again), then the others, as
 * many as fit beside the timestamps option. Returns how many went into
 * blk (the D-SACK block included, if pending). */
static int sack_blocks(struct tcp_pcb *pcb, struct tcp_sack_blk *blk)
{
    int n = 0, max = pcb->ts_ok ? 3 : 4;
    int used[TCP_OOO_MAX] = { 0 };

    if (!pcb->sack_ok || (pcb->nooo == 0 && !pcb->dsack_pending))
        return 0;
    if (pcb->dsack_pending)
        blk[n++] = pcb->dsack;
    for (int h = -1; h < TCP_SACK_OPT_MAX && n < max; h++) {
        uint32_t seq = h < 0 ? pcb->ooo_last : pcb->sack_sent[h];
        if (h >= 0 && h >= pcb->nsack_sent)
            break;
        for (int i = 0; i < pcb->nooo; i++) {
            if (!used[i] && SEQ_LEQ(pcb->ooo[i].start, seq) && SEQ_LT(seq, pcb->ooo[i].end)) {
                used[i] = 1;
                blk[n++] = pcb->ooo[i];
                break;
            }
        }
    }
    for (int i = 0; i < pcb->nooo && n < max; i++) {
        if (!used[i]) {
            used[i] = 1;
            blk[n++] = pcb->ooo[i];
        }
    }
    return n;
}

/* The blocks just sent become the most recently reported (RFC 2018 §4). */
static void sack_blocks_sent(struct tcp_pcb *pcb, const struct tcp_sack_blk *blk, int n)
{
    for (int i = 0; i < n; i++)
        pcb->sack_sent[i] = blk[i].start;
    pcb->nsack_sent = n;
}

uint32_t tcp_seg_size_locked(struct tcp_pcb *pcb)
{
    struct tcp_sack_blk blk[TCP_SACK_OPT_MAX];
    uint32_t opt = pcb->ts_ok ? 12 : 0;
    int n = sack_blocks(pcb, blk);

    if (n)
        opt += 4 + 8u * (uint32_t)n;
    return pcb->snd_mss > opt + 64 ? pcb->snd_mss - opt : 64;
}

/* The options of a segment with len bytes of data. A SYN offers what we
 * support (RFC 9293 §3.7.1 MSS, RFC 7323 window scale and timestamps,
 * RFC 2018 SACK-permitted); a SYN,ACK answers only what the peer's SYN
 * offered. Later segments carry timestamps once agreed, and SACK blocks
 * while we hold data out of order, as many as leave len bytes room. */
static size_t write_options(uint8_t *opt, struct tcp_pcb *pcb, uint8_t flags, size_t len)
{
    struct ip_iface *iface;
    uint32_t nexthop;
    uint16_t mss = 536;
    size_t n = 0;

    if (!(flags & TCP_FLG_SYN)) {
        struct tcp_sack_blk blk[TCP_SACK_OPT_MAX];
        int nb = (flags & TCP_FLG_RST) ? 0 : sack_blocks(pcb, blk);
        if (pcb->ts_ok) {
            opt[n++] = TCP_OPT_NOP;
            opt[n++] = TCP_OPT_NOP;
            opt[n++] = TCP_OPT_TIMESTAMP;
            opt[n++] = 10;
            store32(opt + n, tcp_ts_now(pcb));
            store32(opt + n + 4, pcb->ts_recent);
            n += 8;
        }
        /* never let the blocks push a full segment past the MSS */
        while (nb > 0 && len > 0 && n + 4 + 8u * (size_t)nb + len > pcb->snd_mss)
            nb--;
        if (nb > 0) {
            opt[n++] = TCP_OPT_NOP;
            opt[n++] = TCP_OPT_NOP;
            opt[n++] = TCP_OPT_SACK;
            opt[n++] = (uint8_t)(2 + 8 * nb);
            for (int b = 0; b < nb; b++) {
                store32(opt + n, blk[b].start);
                store32(opt + n + 4, blk[b].end);
                n += 8;
            }
            stat_add(&tcp_stats, TCPSTAT_OUT_SACK_BLOCKS, (uint64_t)nb);
            if (pcb->dsack_pending) { /* blk[0]: reported, and done with */
                pcb->dsack_pending = 0;
                STAT_INC(&tcp_stats, TCPSTAT_OUT_DSACKS);
                sack_blocks_sent(pcb, blk + 1, nb - 1);
            } else {
                sack_blocks_sent(pcb, blk, nb);
            }
        }
        return n;
    }
    /* RFC 9293 §3.7.1: announce the largest segment we can receive */
    if (ip_route_lookup(pcb->remote.addr, &iface, &nexthop) == 0)
        mss = (uint16_t)(iface->iface.dev->mtu - IP_HDR_SIZE_MIN - TCP_HDR_SIZE_MIN);
    opt[n++] = TCP_OPT_MSS;
    opt[n++] = 4;
    store16(opt + n, mss);
    n += 2;
    /* In SYN-SENT and SYN-RECEIVED, sack_ok and ts_ok say what this SYN
     * offers; a SYN,ACK offers them only if the peer's SYN did. */
    if (pcb->sack_ok && pcb->ts_ok) {
        opt[n++] = TCP_OPT_SACK_PERM;
        opt[n++] = 2;
    } else {
        opt[n++] = TCP_OPT_NOP;
        opt[n++] = TCP_OPT_NOP;
        if (pcb->sack_ok) {
            opt[n++] = TCP_OPT_SACK_PERM;
            opt[n++] = 2;
        }
    }
    if (pcb->ts_ok) {
        opt[n++] = TCP_OPT_TIMESTAMP;
        opt[n++] = 10;
        store32(opt + n, tcp_ts_now(pcb));
        store32(opt + n + 4, (flags & TCP_FLG_ACK) ? pcb->ts_recent : 0);
        n += 8;
    } else if (!pcb->sack_ok) {
        n -= 2; /* the two NOPs padded nothing */
    }
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
    size_t optlen = write_options(opt, pcb, flags, len), hlen = TCP_HDR_SIZE_MIN + optlen;
    struct pbuf *pb = pbuf_alloc(PBUF_HEADROOM, hlen + len);
    struct tcp_hdr *hdr;
    uint32_t wnd, segs = 1;

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
         * right edge we offered (RFC 9293 §3.8.6 SHOULD NOT shrink). But
         * never past the ring's real room: when wnd is the edge we offered
         * before (tcp_rcv_window_locked keeps it), it is no longer a whole
         * number of units from rcv_nxt, and rounding it up again and again
         * would creep the edge past the bytes the ring can take, so that we
         * would refuse data we invited. Then round down, a shrink of less
         * than one unit, which RFC 7323 Appendix F accepts as the price of
         * scaling; our own rcv_adv stays where it was, so whatever the peer
         * already sent up to it is still taken. */
        uint8_t s = pcb->wscale_ok ? pcb->rcv_wscale : 0;
        uint32_t room = tcp_rcv_room_locked(pcb);
        uint32_t field = (wnd + (1u << s) - 1) >> s;
        if (field << s > room)
            field = room >> s;
        if (field > 65535)
            field = 65535;
        store16(&hdr->wnd, (uint16_t)field);
        wnd = field << s;
    }
    hdr->sum = 0;
    hdr->urg = 0;
    if (pcb->tso) {
        /* Offload: the kernel completes the checksum (the field holds the
         * pseudo-header sum, folded, not inverted) and, for a segment
         * longer than one MSS, cuts it into segments of gso_size bytes,
         * each with a copy of this header (PSH and FIN on the last). */
        uint32_t seg = pcb->snd_mss > optlen + 64 ? pcb->snd_mss - (uint32_t)optlen : 64;
        pb->flags |= PBUF_FLAG_CSUM_PARTIAL;
        store16(&hdr->sum, (uint16_t)~cksum_finish(cksum_pseudo(pcb->local.addr, pcb->remote.addr,
                                                                 IP_PROTOCOL_TCP, (uint16_t)pb->len)));
        if (len > seg) {
            pb->gso_size = (uint16_t)seg;
            segs = (uint32_t)((len + seg - 1) / seg);
            STAT_INC(&tcp_stats, TCPSTAT_OUT_SUPER_SEGS);
        }
    } else {
        store16(&hdr->sum, cksum16(pb->data, pb->len,
                                   cksum_pseudo(pcb->local.addr, pcb->remote.addr, IP_PROTOCOL_TCP, (uint16_t)pb->len)));
    }
    if (flags & TCP_FLG_ACK) { /* this segment carries our ACK */
        pcb->last_ack_sent = pcb->rcv_nxt;
        if (SEQ_GT(pcb->rcv_nxt + wnd, pcb->rcv_adv))
            pcb->rcv_adv = pcb->rcv_nxt + wnd;
        pcb->acks_pending = 0;
        pcb->ack_now = 0;
        net_timer_cancel(&pcb->delack);
    }
    stat_add(&tcp_stats, TCPSTAT_OUT_SEGS, segs);
    if (flags & TCP_FLG_RST)
        STAT_INC(&tcp_stats, TCPSTAT_OUT_RSTS);
    if (log_enabled(LOG_TCP, LOG_LEVEL_DEBUG))
        tcp_dump(pb->data, pb->len, pcb->local.addr, pcb->remote.addr);
    tx_queue(pb, pcb->local.addr, pcb->remote.addr);
    return 0;
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
    tx_queue(pb, seg->dst, seg->src);
}

void tcp_cc_trace_locked(struct tcp_pcb *pcb, const char *event)
{
    char l[IP_ADDR_STR_LEN], r[IP_ADDR_STR_LEN];

    if (!log_enabled(LOG_CC, LOG_LEVEL_DEBUG))
        return;
    log_debug(LOG_CC, "%s:%u %s:%u %s %s cwnd %u ssthresh %u flight %u pipe %u srtt %u rto %u",
              ip_addr_ntop(pcb->local.addr, l, sizeof(l)), pcb->local.port,
              ip_addr_ntop(pcb->remote.addr, r, sizeof(r)), pcb->remote.port, pcb->cc->name, event, pcb->cwnd,
              pcb->ssthresh, pcb->snd_max - pcb->snd_una,
              pcb->in_recovery && pcb->sack_ok ? tcp_sack_pipe(pcb) : pcb->snd_max - pcb->snd_una,
              pcb->srtt_ms8 >> 3, pcb->rto_ms);
}

/* ---- the SACK scoreboard (RFC 6675) -------------------------------------------------- */

/* Bytes and blocks the peer SACKed above seq. */
static uint32_t sacked_above(struct tcp_pcb *pcb, uint32_t seq, int *blocks)
{
    uint32_t bytes = 0;

    *blocks = 0;
    for (int i = 0; i < pcb->nsacked; i++) {
        const struct tcp_sack_blk *b = &pcb->sacked[i];
        if (SEQ_GT(b->end, seq)) {
            bytes += b->end - (SEQ_GT(b->start, seq) ? b->start : seq);
            ++*blocks;
        }
    }
    return bytes;
}

/* RFC 6675 §4 IsLost(seq): DupThresh separate SACKed ranges above it, or
 * more than (DupThresh - 1) segments' worth of SACKed bytes. */
int tcp_sack_is_lost(struct tcp_pcb *pcb, uint32_t seq)
{
    int blocks;
    uint32_t bytes = sacked_above(pcb, seq, &blocks);

    if (SEQ_LT(seq, pcb->lost_below))
        return 1; /* sent before a tail loss probe the peer SACKed */
    return blocks >= TCP_DUPTHRESH || bytes > (uint32_t)(TCP_DUPTHRESH - 1) * pcb->snd_mss;
}

/* RFC 6675 §4 SetPipe(): the bytes we believe are still in the network.
 * A hole below the highest SACK counts unless it is deemed lost, and once
 * more if we resent it; what lies above the highest SACK counts. */
uint32_t tcp_sack_pipe(struct tcp_pcb *pcb)
{
    uint32_t pipe = 0, prev = pcb->snd_una;

    for (int i = 0; i < pcb->nsacked; i++) {
        const struct tcp_sack_blk *b = &pcb->sacked[i];
        if (SEQ_LT(prev, b->start)) {
            if (!tcp_sack_is_lost(pcb, prev))
                pipe += b->start - prev;
            if (SEQ_GT(pcb->high_rxt, prev))
                pipe += (SEQ_LT(pcb->high_rxt, b->start) ? pcb->high_rxt : b->start) - prev;
        }
        prev = b->end;
    }
    if (SEQ_LT(prev, pcb->snd_max))
        pipe += pcb->snd_max - prev;
    return pipe;
}

/* RFC 6675 §4 NextSeg() rule 1: the first byte at or above HighRxt that is
 * in a hole and deemed lost; *len is what is left of that hole. */
static int sack_next_hole(struct tcp_pcb *pcb, uint32_t *seq, uint32_t *len)
{
    uint32_t prev = pcb->snd_una;

    for (int i = 0; i < pcb->nsacked; i++) {
        const struct tcp_sack_blk *b = &pcb->sacked[i];
        uint32_t hs = SEQ_MAX(prev, pcb->high_rxt);
        if (SEQ_LT(hs, b->start)) {
            if (!tcp_sack_is_lost(pcb, hs))
                return 0; /* nor is anything above it */
            *seq = hs;
            *len = b->start - hs;
            return 1;
        }
        prev = b->end;
    }
    return 0;
}

/* Bytes from seq to the next SACKed range (UINT32_MAX: none above). A
 * resend after a timeout skips what the peer already holds. */
static uint32_t to_next_sacked(struct tcp_pcb *pcb, uint32_t *seq)
{
    for (int i = 0; i < pcb->nsacked; i++) {
        const struct tcp_sack_blk *b = &pcb->sacked[i];
        if (SEQ_LEQ(b->start, *seq) && SEQ_LT(*seq, b->end))
            *seq = b->end; /* inside a SACKed range: jump over it */
        else if (SEQ_GT(b->start, *seq))
            return b->start - *seq;
    }
    return UINT32_MAX;
}

void tcp_note_una_resent_locked(struct tcp_pcb *pcb)
{
    pcb->una_rxt = 1;
    pcb->una_rxt_seq = pcb->snd_una;
    pcb->una_rxt_max = pcb->snd_max;
}

uint32_t tcp_resend_range_locked(struct tcp_pcb *pcb, uint32_t seq, uint32_t len)
{
    size_t off = (size_t)(seq - pcb->snd_una);
    size_t data = off < pcb->sndbuf.len ? pcb->sndbuf.len - off : 0;
    uint8_t flags = TCP_FLG_ACK;

    if (data > len)
        data = len;
    if (pcb->fin_sent && seq + data == pcb->fin_seq && data < len)
        flags |= TCP_FLG_FIN;
    if (data == 0 && !(flags & TCP_FLG_FIN))
        return 0;
    if (tcp_send_segment_locked(pcb, flags, seq, off, data) < 0)
        return 0;
    STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
    if (seq == pcb->snd_una)
        tcp_note_una_resent_locked(pcb);
    return (uint32_t)data + ((flags & TCP_FLG_FIN) ? 1 : 0);
}

/* ---- what to send ----------------------------------------------------------------- */

static int can_send_data(enum tcp_state s)
{
    return s == TCPS_ESTABLISHED || s == TCPS_CLOSE_WAIT || s == TCPS_FIN_WAIT_1 || s == TCPS_CLOSING ||
           s == TCPS_LAST_ACK;
}

/* How many bytes of the next segment may go now, and whether the FIN goes
 * with it. Returns 0 with *fin 0 when nothing should be sent yet. In SACK
 * recovery (no_cwnd) the pipe, not the flight, answers to cwnd. */
static size_t next_segment_len(struct tcp_pcb *pcb, int *fin, int no_cwnd)
{
    size_t off = (size_t)(pcb->snd_nxt - pcb->snd_una), unsent, len;
    uint32_t in_flight = pcb->snd_nxt - pcb->snd_una, mss = tcp_seg_size_locked(pcb), max = mss;
    /* RFC 3042 limited transmit: the first two duplicate ACKs each let one
     * new segment go beyond cwnd, so a small window still gets the three
     * duplicate ACKs fast retransmit needs */
    uint32_t cwnd = pcb->cwnd + (pcb->in_recovery ? 0 : (pcb->dupacks < 2 ? pcb->dupacks : 2) * pcb->snd_mss);
    uint32_t wnd = pcb->snd_wnd < cwnd || no_cwnd ? pcb->snd_wnd : cwnd;
    uint32_t usable = SEQ_GT(pcb->snd_una + wnd, pcb->snd_nxt) ? pcb->snd_una + wnd - pcb->snd_nxt : 0;

    *fin = 0;
    if (pcb->fin_sent && SEQ_GT(pcb->snd_nxt, pcb->fin_seq))
        return 0; /* everything, FIN included, is out */
    unsent = off < pcb->sndbuf.len ? pcb->sndbuf.len - off : 0;
    /* Offload: new data may go as one super-segment of whole MSS-sized
     * pieces; resends and loss recovery stay one segment at a time. */
    if (pcb->tso && !pcb->in_recovery && !SEQ_LT(pcb->snd_nxt, pcb->snd_max))
        max = TCP_TSO_MAX / mss * mss;
    len = unsent < usable ? unsent : usable;
    if (len > max)
        len = max;
    if (SEQ_LT(pcb->snd_nxt, pcb->snd_max)) {
        /* resending after a timeout: stop short of what the peer SACKed,
         * and never hold a resend back for Nagle */
        uint32_t seq = pcb->snd_nxt, gap = to_next_sacked(pcb, &seq);
        if (len > gap)
            len = gap;
        *fin = pcb->fin_queued && off + len == pcb->sndbuf.len;
        /* but no runt cut by cwnd alone: the rest goes with the next ACK */
        if (len < mss && len < unsent && len < gap && !pcb->force_send)
            return 0;
        return len;
    }
    *fin = pcb->fin_queued && off + len == pcb->sndbuf.len;
    if (len == 0 || len % mss == 0 || *fin || pcb->force_send)
        return len;
    if (len > mss) {
        /* whole segments and a short one: the short one goes along only
         * when Nagle would let it go alone; else it waits (as with TSO in
         * Linux, tcp_mss_split_point) */
        if (len == unsent && (in_flight == 0 || (pcb->sock && atomic_load(&pcb->sock->nodelay))))
            return len;
        return len - len % mss;
    }
    /* A short segment: Nagle (RFC 896) and sender SWS avoidance. Send it
     * only if it is all we have and nothing is in flight (or TCP_NODELAY),
     * or if it fills half the largest window the peer ever offered. */
    if (len == unsent && (in_flight == 0 || (pcb->sock && atomic_load(&pcb->sock->nodelay))))
        return len;
    if (pcb->max_snd_wnd && len >= pcb->max_snd_wnd / 2)
        return len;
    return 0;
}

/* Send the next segment from snd_nxt: len bytes, and the FIN if fin. */
static int send_next_locked(struct tcp_pcb *pcb, size_t len, int fin)
{
    size_t off = (size_t)(pcb->snd_nxt - pcb->snd_una);
    uint8_t flags = TCP_FLG_ACK;

    if (len && off + len == pcb->sndbuf.len)
        flags |= TCP_FLG_PSH;
    if (fin)
        flags |= TCP_FLG_FIN;
    if (SEQ_LT(pcb->snd_nxt, pcb->snd_max)) {
        STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
        if (pcb->snd_nxt == pcb->snd_una)
            tcp_note_una_resent_locked(pcb);
    } else if (pcb->dupacks && !pcb->in_recovery && pcb->snd_nxt - pcb->snd_una >= pcb->cwnd)
        STAT_INC(&tcp_stats, TCPSTAT_LIMITED_TRANSMITS);
    if (!SEQ_LT(pcb->snd_nxt, pcb->snd_max) && !pcb->rtt_timing && len && !pcb->ts_ok) { /* time one new segment (Karn) */
        pcb->rtt_timing = 1;
        pcb->rtt_seq = pcb->snd_nxt;
        pcb->rtt_start = net_now_ms();
    }
    if (tcp_send_segment_locked(pcb, flags, pcb->snd_nxt, off, len) < 0)
        return -1;
    pcb->snd_nxt += (uint32_t)len + (fin ? 1 : 0);
    if (fin) {
        pcb->fin_sent = 1;
        pcb->fin_seq = pcb->snd_nxt - 1;
    }
    if (SEQ_GT(pcb->snd_nxt, pcb->snd_max))
        pcb->snd_max = pcb->snd_nxt;
    if (!net_timer_armed(&pcb->rexmt))
        tcp_rexmt_arm_locked(pcb);
    tcp_tlp_arm_locked(pcb);
    return 0;
}

/* SACK loss recovery (RFC 6675 §5, steps 4.4 and C): while cwnd leaves a
 * segment's room above the pipe, resend the next lost hole, else send new
 * data. Returns 1 if anything went out. */
static int sack_output_locked(struct tcp_pcb *pcb)
{
    int sent = 0;

    for (;;) {
        uint32_t mss = tcp_seg_size_locked(pcb), seq, len, n;
        size_t dlen;
        int fin;

        if (tcp_sack_pipe(pcb) + mss > pcb->cwnd)
            break;
        if (sack_next_hole(pcb, &seq, &len)) {
            if (!(n = tcp_resend_range_locked(pcb, seq, len < mss ? len : mss)))
                break;
            if (SEQ_GT(seq + n, pcb->high_rxt))
                pcb->high_rxt = seq + n;
            STAT_INC(&tcp_stats, TCPSTAT_SACK_RETRANS_SEGS);
            sent = 1;
            continue;
        }
        dlen = next_segment_len(pcb, &fin, 1);
        if ((dlen == 0 && !fin) || send_next_locked(pcb, dlen, fin) < 0)
            break;
        sent = 1;
    }
    if (sent)
        tcp_tlp_arm_locked(pcb);
    return sent;
}

void tcp_output_locked(struct tcp_pcb *pcb)
{
    int sent = 0;

    if (can_send_data(pcb->state) && pcb->sndbuf.buf) {
        if (pcb->in_recovery && pcb->sack_ok) {
            sent = sack_output_locked(pcb);
        } else {
            for (;;) {
                int fin;
                size_t len;

                if (SEQ_LT(pcb->snd_nxt, pcb->snd_max)) { /* skip what the peer SACKed */
                    uint32_t seq = pcb->snd_nxt;
                    to_next_sacked(pcb, &seq);
                    pcb->snd_nxt = SEQ_LT(seq, pcb->snd_max) ? seq : pcb->snd_max;
                }
                len = next_segment_len(pcb, &fin, 0);
                if (len == 0 && !fin)
                    break;
                if (send_next_locked(pcb, len, fin) < 0)
                    break;
                sent = 1;
            }
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
    if (rtt == 0)
        rtt = 1; /* the clock ticks in ms; srtt 0 means "no sample yet" */
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
        tcp_unlock();
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

    if (!timer_enter(pcb))
        return;
    STAT_INC(&tcp_stats, TCPSTAT_RTO_TIMEOUTS);
    if (pcb->state == TCPS_SYN_SENT || pcb->state == TCPS_SYN_RECEIVED) {
        rexmt_syn_locked(pcb);
    } else if (pcb->snd_una != pcb->snd_max) {
        if (++pcb->retries > net_config.tcp_retries) {
            STAT_INC(&tcp_stats, TCPSTAT_CONN_TIMEOUTS);
            tcp_drop_locked(pcb, pcb->soft_error ? pcb->soft_error : -ETIMEDOUT);
            tcp_unlock();
            return;
        }
        /* RFC 5681 §3.1, eq. 4: halve, and restart from one segment; the
         * algorithm decides by how much (tcp_cc.h). A second timeout in a
         * row does not halve again what the first already cut. */
        if (pcb->retries == 1) {
            uint32_t prev = pcb->ssthresh;
            int was_recovering = pcb->in_recovery;
            if (was_recovering && pcb->cwnd > pcb->ssthresh)
                pcb->cwnd = pcb->ssthresh; /* undo NewReno's inflation first */
            pcb->cc->congestion(pcb, TCP_CC_RTO, net_now_ms());
            /* a flight full of SACKed data is not in the network: a timeout
             * in recovery never raises the threshold recovery set */
            if (was_recovering && pcb->ssthresh > prev)
                pcb->ssthresh = prev;
        } else {
            pcb->cwnd = pcb->snd_mss;
        }
        tcp_cc_trace_locked(pcb, "rto");
        pcb->dupacks = 0;
        /* RFC 6582 §3.2 step 4, RFC 6675 §5.1: a timeout ends recovery, and
         * none starts again until what was sent before it is acknowledged */
        pcb->in_recovery = 0;
        pcb->recover = pcb->snd_max;
        /* RFC 2018 §8: the peer may have dropped what it SACKed; forget the
         * scoreboard (ACKs from now on fill it again) */
        pcb->nsacked = 0;
        pcb->high_rxt = pcb->lost_below = pcb->snd_una;
        pcb->una_rxt = pcb->tlp_out = 0;
        net_timer_cancel(&pcb->tlp);
        /* RFC 6298 §5.5: back off; Karn: no sample from a retransmission */
        pcb->rto_ms = pcb->rto_ms * 2 > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : pcb->rto_ms * 2;
        pcb->rtt_timing = 0;
        /* go back and resend from the first hole; a FIN already sent keeps
         * its sequence number and goes again when the data before it has */
        pcb->snd_nxt = pcb->snd_una;
        log_debug(LOG_TCP, "rto: resend from %u, rto now %u ms, try %u", pcb->snd_una, pcb->rto_ms, pcb->retries);
        tcp_output_locked(pcb);
    }
    tcp_unlock();
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
            tcp_unlock();
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
    tcp_unlock();
}

/* ---- tail loss probe (RFC 8985 §7) ---------------------------------------------------------
 * When the last segments of a flight are lost, no ACK comes back to say so
 * and only the retransmission timeout (200 ms or more) would notice. Two
 * smoothed RTTs after the last send, a probe goes instead: a new segment,
 * or the last one again. The peer's ACK of it carries SACK blocks that
 * show the holes, and recovery starts at once (see ack_duplicate). */

void tcp_tlp_arm_locked(struct tcp_pcb *pcb)
{
    uint32_t srtt = pcb->srtt_ms8 >> 3, flight = pcb->snd_max - pcb->snd_una, pto;

    if (!pcb->sack_ok || pcb->tlp_out || pcb->retries || pcb->srtt_ms8 == 0 || flight == 0 ||
        SEQ_LT(pcb->snd_nxt, pcb->snd_max) || (pcb->in_recovery && pcb->tlp_rec_used))
        return;
    pto = 2 * srtt;
    if (flight <= pcb->snd_mss) /* one segment: its ACK may be delayed */
        pto += net_config.tcp_delack_ms;
    if (pto < 10)
        pto = 10;
    if (pto >= pcb->rto_ms)
        return; /* the retransmission timer comes first anyway */
    net_timer_arm(&pcb->tlp, pto);
}

static void tlp_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;
    uint32_t flight, mss;
    size_t off, len;

    if (!timer_enter(pcb))
        return;
    flight = pcb->snd_max - pcb->snd_una;
    mss = tcp_seg_size_locked(pcb);
    if (pcb->tlp_out || flight == 0 || !can_send_data(pcb->state) || !pcb->sndbuf.buf ||
        (pcb->in_recovery && pcb->tlp_rec_used)) {
        tcp_unlock();
        return;
    }
    if (pcb->in_recovery) {
        /* Recovery went quiet: the resend of the first hole, or every ACK
         * after it, was lost. Rather than wait out the RTO, resend it once
         * per recovery (in the spirit of RFC 6675's rescue retransmission,
         * on a timer as RFC 8985's probe is). */
        uint32_t hole = pcb->nsacked ? pcb->sacked[0].start - pcb->snd_una : flight;
        pcb->tlp_rec_used = 1;
        if (tcp_resend_range_locked(pcb, pcb->snd_una, hole < mss ? hole : mss) > 0) {
            STAT_INC(&tcp_stats, TCPSTAT_TLP_PROBES);
            log_debug(LOG_TCP, "tlp: recovery probe at %u", pcb->snd_una);
            tcp_rexmt_arm_locked(pcb);
        }
        tcp_unlock();
        return;
    }
    off = (size_t)(pcb->snd_nxt - pcb->snd_una);
    len = off < pcb->sndbuf.len ? pcb->sndbuf.len - off : 0;
    if (len > mss)
        len = mss;
    pcb->tlp_seq = pcb->snd_nxt;
    if (len && SEQ_LEQ(pcb->snd_nxt + (uint32_t)len, pcb->snd_una + pcb->snd_wnd) &&
        !(pcb->fin_sent && SEQ_GT(pcb->snd_nxt, pcb->fin_seq))) {
        int fin = pcb->fin_queued && off + len == pcb->sndbuf.len;
        pcb->tlp_out = 1; /* before sending: no re-arming from send_next */
        if (send_next_locked(pcb, len, fin) < 0)
            pcb->tlp_out = 0;
    } else {
        /* nothing new may go: the last segment again */
        uint32_t n = flight < mss ? flight : mss;
        pcb->tlp_seq = pcb->snd_max - n;
        pcb->tlp_out = tcp_resend_range_locked(pcb, pcb->tlp_seq, n) > 0;
    }
    if (pcb->tlp_out) {
        STAT_INC(&tcp_stats, TCPSTAT_TLP_PROBES);
        pcb->tlp_end = pcb->snd_max;
        log_debug(LOG_TCP, "tlp: probe at %u, flight %u", pcb->tlp_seq, flight);
        tcp_rexmt_arm_locked(pcb);
    }
    tcp_unlock();
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
    tcp_unlock();
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
    tcp_unlock();
}

static void timewait_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;

    if (!timer_enter(pcb))
        return;
    tcp_drop_locked(pcb, 0);
    tcp_unlock();
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
    net_timer_cancel(&pcb->tlp);
    net_timer_cancel(&pcb->keep);
    net_timer_arm(&pcb->timewait, 2ull * net_config.tcp_msl_ms);
}

static void reap_fire(void *arg)
{
    struct tcp_pcb *pcb = arg;

    mutex_lock(&tcp_lock);
    tcp_pcb_unlink_locked(pcb);
    tcp_unlock();
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
    err |= net_timer_init(&pcb->tlp, "tcp-tlp", tlp_fire, pcb);
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
    net_timer_cancel(&pcb->tlp);
    net_timer_cancel(&pcb->delack);
    net_timer_cancel(&pcb->keep);
    net_timer_cancel(&pcb->timewait);
}

void tcp_timers_destroy(struct tcp_pcb *pcb)
{
    net_timer_destroy(&pcb->rexmt);
    net_timer_destroy(&pcb->persist);
    net_timer_destroy(&pcb->tlp);
    net_timer_destroy(&pcb->delack);
    net_timer_destroy(&pcb->keep);
    net_timer_destroy(&pcb->timewait);
    net_timer_destroy(&pcb->reap);
}
