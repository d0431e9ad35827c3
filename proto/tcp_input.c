/*
 * tcp_input.c — segment arrival (RFC 9293 §3.10.7), on the stack thread.
 *
 * Called in the order  ip_deliver -> tcp_input -> (by the state of the
 * connection the segment belongs to)
 *     listen_input      LISTEN           §3.10.7.2
 *     syn_sent_input    SYN-SENT         §3.10.7.3
 *     sync_input        every other state, in the RFC's own steps:
 *       step 1  check_sequence    is the segment in our window? trim it
 *       step 2  check_rst         RFC 5961 §3.2: exact, in window, outside
 *       step 4  check_syn         RFC 5961 §4.2: challenge ACK
 *       step 5  check_ack         what the peer acknowledged, its window
 *       step 7  receive_text      data in order, or held out of order
 *       step 8  receive_fin
 * and then tcp_output_locked sends what the segment made possible. The
 * whole run holds tcp_lock; the segment's bytes stay in its pbuf.
 */
#include <errno.h>
#include <string.h>

#include "proto/icmp.h"
#include "proto/tcp_var.h"
#include "util/byteorder.h"
#include "util/cksum.h"
#include "util/log.h"

/* ---- parsing ------------------------------------------------------------------- */

/* The options we use: MSS and window scale (SYN only), SACK-permitted
 * (SYN), SACK blocks and timestamps (any segment). Unknown kinds are
 * skipped by their length. Returns 0, or -1 if malformed. */
static int parse_options(const uint8_t *opt, size_t len, struct tcp_seg *seg)
{
    size_t i = 0;

    seg->mss = 0;
    seg->has_wscale = 0;
    seg->sack_perm = 0;
    seg->has_ts = 0;
    seg->nsack = 0;
    while (i < len) {
        uint8_t kind = opt[i], olen;
        if (kind == TCP_OPT_EOL)
            break;
        if (kind == TCP_OPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= len || (olen = opt[i + 1]) < 2 || i + olen > len)
            return -1; /* an option must fit and have a sane length */
        if (kind == TCP_OPT_MSS) {
            if (olen != 4)
                return -1;
            seg->mss = load16(opt + i + 2);
        } else if (kind == TCP_OPT_WSCALE) {
            if (olen != 3)
                return -1;
            seg->has_wscale = 1;
            /* RFC 7323 §2.3: a shift above 14 is taken as 14 */
            seg->wscale = opt[i + 2] > 14 ? 14 : opt[i + 2];
        } else if (kind == TCP_OPT_SACK_PERM) {
            if (olen != 2)
                return -1;
            seg->sack_perm = 1;
        } else if (kind == TCP_OPT_SACK) {
            /* RFC 2018 §3: 2 + 8n bytes; at most 4 blocks fit in 40 */
            if ((olen - 2) % 8 != 0 || olen < 10 || (olen - 2) / 8 > TCP_SACK_OPT_MAX)
                return -1;
            seg->nsack = (olen - 2) / 8;
            for (int b = 0; b < seg->nsack; b++) {
                seg->sack[b].start = load32(opt + i + 2 + 8 * b);
                seg->sack[b].end = load32(opt + i + 6 + 8 * b);
            }
        } else if (kind == TCP_OPT_TIMESTAMP) {
            if (olen != 10) /* RFC 7323 §3.2 */
                return -1;
            seg->has_ts = 1;
            seg->tsval = load32(opt + i + 2);
            seg->tsecr = load32(opt + i + 6);
        }
        i += olen;
    }
    return 0;
}

/* Header checks (RFC 9293 §3.10.7: checksum first). Fills seg. Returns
 * NULL, or a reason with its counter in *stat. */
static const char *tcp_parse(const struct ip_rx *rx, const struct pbuf *pb, struct tcp_seg *seg, int *stat)
{
    const struct tcp_hdr *hdr = (const struct tcp_hdr *)pb->data;
    size_t hlen;

    if (pb->len < TCP_HDR_SIZE_MIN)
        return *stat = TCPSTAT_IN_TOO_SHORT, "shorter than a header";
    hlen = (size_t)(hdr->off >> 4) * 4;
    if (hlen < TCP_HDR_SIZE_MIN || hlen > pb->len)
        return *stat = TCPSTAT_IN_BAD_OFFSET, "bad data offset";
    /* PBUF_FLAG_CSUM_PARTIAL: the tap's kernel says it never computed the
     * checksum, as the bytes never left this machine (offload) */
    if (!(pb->flags & PBUF_FLAG_CSUM_PARTIAL) &&
        cksum16(pb->data, pb->len, cksum_pseudo(rx->src, rx->dst, IP_PROTOCOL_TCP, (uint16_t)pb->len)) != 0)
        return *stat = TCPSTAT_IN_BAD_CHECKSUM, "bad checksum";
    if (pb->gso_size)
        STAT_INC(&tcp_stats, TCPSTAT_IN_SUPER_SEGS);
    if (rx->link_broadcast || rx->dst == IP_ADDR_BROADCAST || (rx->iface && rx->dst == rx->iface->broadcast))
        return *stat = TCPSTAT_IN_BROADCAST, "sent to a broadcast address";
    if (parse_options(pb->data + TCP_HDR_SIZE_MIN, hlen - TCP_HDR_SIZE_MIN, seg) < 0)
        return *stat = TCPSTAT_IN_BAD_OPTIONS, "malformed options";
    seg->seq = load32(&hdr->seq);
    seg->ack = load32(&hdr->ack);
    seg->flg = hdr->flg;
    seg->wnd = load16(&hdr->wnd);
    seg->data = pb->data + hlen;
    seg->dlen = (uint32_t)(pb->len - hlen);
    seg->len = seg->dlen + ((seg->flg & TCP_FLG_SYN) ? 1 : 0) + ((seg->flg & TCP_FLG_FIN) ? 1 : 0);
    seg->src = rx->src;
    seg->dst = rx->dst;
    seg->sport = load16(&hdr->src);
    seg->dport = load16(&hdr->dst);
    return NULL;
}

/* ---- LISTEN (§3.10.7.2) ---------------------------------------------------------- */

static void synq_remove_locked(struct tcp_pcb *lpcb, struct tcp_pcb *child)
{
    for (struct tcp_pcb **pp = &lpcb->synq; *pp; pp = &(*pp)->qnext) {
        if (*pp == child) {
            *pp = child->qnext;
            lpcb->synq_len--;
            break;
        }
    }
    child->qnext = NULL;
}

static void synq_append_locked(struct tcp_pcb *lpcb, struct tcp_pcb *child)
{
    struct tcp_pcb **pp = &lpcb->synq;

    while (*pp)
        pp = &(*pp)->qnext;
    *pp = child;
    child->qnext = NULL;
    lpcb->synq_len++;
}

/* RFC 9293 §3.7.1: send no segment larger than the peer's MSS option, or
 * 536 if it sent none; pcb->snd_mss already holds what our MTU allows. A
 * tiny MSS is raised to 64 so a hostile peer cannot make us send a flood
 * of near-empty segments. */
static void mss_from_peer(struct tcp_pcb *pcb, uint16_t mss)
{
    if (!mss)
        mss = TCP_DEFAULT_MSS;
    if (mss < 64)
        mss = 64;
    if (mss < pcb->snd_mss)
        pcb->snd_mss = mss;
}

/* A SYN for a listener: a new child in SYN-RECEIVED, answered with SYN,ACK.
 * A full SYN queue gives up its oldest half-open entry, so a flood of SYNs
 * that never complete cannot keep real clients out. */
static void listen_syn_locked(struct tcp_pcb *lpcb, const struct tcp_seg *seg)
{
    struct tcp_pcb *child;

    if (lpcb->acceptq_len >= lpcb->backlog) {
        STAT_INC(&tcp_stats, TCPSTAT_ACCEPT_QUEUE_FULL);
        log_debug(LOG_TCP, "accept queue full (%u): SYN dropped", lpcb->backlog);
        return; /* the client will retransmit its SYN */
    }
    if (lpcb->synq_len >= net_config.tcp_syn_backlog && lpcb->synq) {
        struct tcp_pcb *old = lpcb->synq;
        STAT_INC(&tcp_stats, TCPSTAT_SYN_QUEUE_EVICTED);
        synq_remove_locked(lpcb, old);
        old->parent = NULL;
        tcp_drop_locked(old, 0);
    }
    if (!(child = tcp_pcb_new_locked()))
        return;
    child->local = (struct sock_addr){ seg->dst, seg->dport };
    child->remote = (struct sock_addr){ seg->src, seg->sport };
    child->parent = lpcb;
    child->rcvbuf_size = lpcb->rcvbuf_size;
    child->sndbuf_size = lpcb->sndbuf_size;
    child->irs = seg->seq;
    child->rcv_nxt = seg->seq + 1;
    child->rcv_adv = child->rcv_nxt; /* nothing advertised yet */
    child->iss = tcp_new_iss(&child->local, &child->remote);
    child->snd_una = child->iss;
    child->snd_nxt = child->snd_max = child->iss + 1;
    child->snd_wnd = seg->wnd;
    child->max_snd_wnd = seg->wnd;
    child->snd_wl1 = seg->seq;
    child->snd_wl2 = child->iss;
    child->snd_mss = (uint16_t)(ip_mtu_for(seg->src) - TCP_HDR_SIZE_MIN);
    mss_from_peer(child, seg->mss);
    if (seg->has_wscale) { /* RFC 7323 §2.2: answer a window scale with ours */
        child->wscale_ok = 1;
        child->snd_wscale = seg->wscale;
        child->rcv_wscale = tcp_wscale_for(child->rcvbuf_size);
    }
    /* RFC 2018 §2, RFC 7323 §3.2: agreed when the SYN offers them and we
     * are configured to; our SYN,ACK then carries them too */
    child->sack_ok = seg->sack_perm && net_config.tcp_sack;
    child->ts_ok = seg->has_ts && net_config.tcp_timestamps;
    child->ts_offset = child->iss * 2654435761u;
    if (child->ts_ok) {
        child->ts_recent = seg->tsval;
        child->ts_recent_ms = net_now_ms();
    }
    child->recover = child->iss;
    child->high_rxt = child->lost_below = child->iss;
    child->cc = lpcb->cc;
    synq_append_locked(lpcb, child);
    tcp_set_state_locked(child, TCPS_SYN_RECEIVED);
    STAT_INC(&tcp_stats, TCPSTAT_PASSIVE_OPENS);
    tcp_send_segment_locked(child, TCP_FLG_SYN | TCP_FLG_ACK, child->iss, 0, 0);
    tcp_rexmt_arm_locked(child);
}

static void listen_input(struct tcp_pcb *lpcb, const struct tcp_seg *seg)
{
    if (seg->flg & TCP_FLG_RST)
        return; /* first: an incoming RST is ignored */
    if (seg->flg & TCP_FLG_ACK) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_LISTEN_ACKS);
        log_debug(LOG_TCP, "ACK at listener port %u: reset", seg->dport);
        tcp_send_reset_for(seg); /* second: <SEQ=SEG.ACK><CTL=RST> */
        return;
    }
    if (seg->flg & TCP_FLG_SYN)
        listen_syn_locked(lpcb, seg); /* third */
    /* fourth: anything else is dropped */
}

/* ---- SYN-SENT (§3.10.7.3) ------------------------------------------------------------- */

static void syn_sent_input(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    int ack_ok = 0;

    if (seg->flg & TCP_FLG_ACK) { /* first: check the ACK */
        if (SEQ_LEQ(seg->ack, pcb->iss) || SEQ_GT(seg->ack, pcb->snd_max)) {
            tcp_send_reset_for(seg);
            return;
        }
        ack_ok = 1;
    }
    if (seg->flg & TCP_FLG_RST) { /* second: a RST for our SYN: refused */
        if (ack_ok) {
            STAT_INC(&tcp_stats, TCPSTAT_IN_RSTS);
            STAT_INC(&tcp_stats, TCPSTAT_ATTEMPT_FAILS);
            tcp_drop_locked(pcb, -ECONNREFUSED);
        }
        return;
    }
    if (!(seg->flg & TCP_FLG_SYN))
        return; /* fifth: neither SYN nor RST: drop */
    pcb->irs = seg->seq; /* fourth: the SYN */
    pcb->rcv_nxt = seg->seq + 1;
    pcb->rcv_adv = pcb->rcv_nxt;
    mss_from_peer(pcb, seg->mss);
    if (seg->has_wscale && pcb->rcv_wscale_offered) { /* both offered it */
        pcb->wscale_ok = 1;
        pcb->snd_wscale = seg->wscale;
    } else {
        pcb->rcv_wscale = 0; /* scaling is off both ways */
    }
    pcb->sack_ok = pcb->sack_ok && seg->sack_perm; /* we offered; did the peer? */
    pcb->ts_ok = pcb->ts_ok && seg->has_ts;
    if (pcb->ts_ok) {
        pcb->ts_recent = seg->tsval;
        pcb->ts_recent_ms = net_now_ms();
    }
    pcb->snd_wnd = pcb->max_snd_wnd = seg->wnd; /* never scaled in a SYN */
    pcb->snd_wl1 = seg->seq;
    pcb->snd_wl2 = seg->ack;
    pcb->cwnd = 10u * pcb->snd_mss < 14600 ? 10u * pcb->snd_mss : 14600; /* RFC 6928 */
    if (pcb->cwnd < 2u * pcb->snd_mss)
        pcb->cwnd = 2u * pcb->snd_mss;
    pcb->cc->init(pcb);
    if (ack_ok) {
        pcb->snd_una = seg->ack;
        net_timer_cancel(&pcb->rexmt);
        if (pcb->retries == 0) /* Karn: only a SYN sent once gives a sample */
            tcp_rtt_sample_locked(pcb, (uint32_t)(net_now_ms() - pcb->rtt_start));
        else if (pcb->rto_ms < 3000)
            pcb->rto_ms = 3000; /* RFC 6298 §5.7: the SYN was lost: start at 3 s */
        pcb->retries = 0;
        tcp_set_state_locked(pcb, TCPS_ESTABLISHED);
        tcp_keepalive_reset_locked(pcb);
        pcb->ack_now = 1;
        tcp_notify_locked(pcb);
        return;
    }
    /* simultaneous open: both sent SYNs (§3.5, Figure 8) */
    tcp_set_state_locked(pcb, TCPS_SYN_RECEIVED);
    tcp_send_segment_locked(pcb, TCP_FLG_SYN | TCP_FLG_ACK, pcb->iss, 0, 0);
}

/* ---- synchronized states: step 1, sequence numbers ----------------------------------- */

/* The window we accept data into: the larger of what we advertised (the
 * peer may fill it) and the room we count as free. Both fit in the ring:
 * it has tcp_rcv_slack() bytes for a window rounded up to its scale. */
static uint32_t rcv_wnd(struct tcp_pcb *pcb)
{
    uint32_t adv = SEQ_GT(pcb->rcv_adv, pcb->rcv_nxt) ? pcb->rcv_adv - pcb->rcv_nxt : 0;
    uint32_t slack = tcp_rcv_slack(pcb), space, free;

    if (!pcb->rcvbuf.buf)
        return tcp_rcv_window_locked(pcb);
    space = (uint32_t)ring_space(&pcb->rcvbuf);
    free = space > slack ? space - slack : 0;
    if (adv < free)
        adv = free;
    return adv < space ? adv : space;
}

/* RFC 2883 §4: data we already had came again: report [start, end) as
 * the first SACK block of the next ACK (a D-SACK), so the sender can tell
 * a needless resend from a loss. */
static void dsack_note(struct tcp_pcb *pcb, uint32_t start, uint32_t end)
{
    if (!pcb->sack_ok || !SEQ_LT(start, end))
        return;
    pcb->dsack = (struct tcp_sack_blk){ start, end };
    pcb->dsack_pending = 1;
    pcb->ack_now = 1;
}

/* Data of seg wholly below rcv_nxt (it was dropped as a duplicate). */
static void dsack_old(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint32_t start = seg->seq + ((seg->flg & TCP_FLG_SYN) ? 1 : 0);

    if (seg->dlen && SEQ_LEQ(start + seg->dlen, pcb->rcv_nxt))
        dsack_note(pcb, start, start + seg->dlen);
}

/* RFC 9293 §3.10.7.4, first: the four acceptability cases; then trim the
 * segment to the window. Returns 0 if acceptable (seg trimmed). */
static int check_sequence(struct tcp_pcb *pcb, struct tcp_seg *seg)
{
    uint32_t wnd = rcv_wnd(pcb), nxt = pcb->rcv_nxt, end = seg->seq + seg->len;
    int ok;

    if (seg->len == 0)
        /* a pure ACK at the right edge is the peer that filled our window:
         * take it (as Linux and BSD do), or its ACK is lost */
        ok = wnd == 0 ? seg->seq == nxt : SEQ_GEQ(seg->seq, nxt) && SEQ_LEQ(seg->seq, nxt + wnd);
    else if (wnd == 0)
        /* "special allowance should be made to accept valid ACKs, URGs and
         * RSTs": keep the segment at RCV.NXT for them, its data is cut below */
        ok = seg->seq == nxt;
    else
        ok = (SEQ_GEQ(seg->seq, nxt) && SEQ_LT(seg->seq, nxt + wnd)) ||
             (SEQ_GEQ(end - 1, nxt) && SEQ_LT(end - 1, nxt + wnd));
    if (!ok)
        return -1;
    if (SEQ_LT(seg->seq, nxt)) { /* cut what we already have */
        uint32_t cut = nxt - seg->seq;
        if (seg->flg & TCP_FLG_SYN) {
            seg->flg &= (uint8_t)~TCP_FLG_SYN;
            cut--;
            seg->seq++;
            seg->len--;
        }
        if (cut > seg->dlen)
            cut = seg->dlen;
        dsack_note(pcb, seg->seq, seg->seq + cut);
        seg->data += cut;
        seg->dlen -= cut;
        seg->seq += cut;
        seg->len -= cut;
        STAT_INC(&tcp_stats, TCPSTAT_IN_DUP_SEGS);
    }
    if (SEQ_GT(seg->seq + seg->dlen, nxt + wnd)) { /* cut what does not fit */
        uint32_t keep = nxt + wnd - seg->seq;
        pcb->ack_now = 1; /* tell the peer what we took */
        seg->len -= seg->dlen - keep + ((seg->flg & TCP_FLG_FIN) ? 1 : 0);
        seg->dlen = keep;
        seg->flg &= (uint8_t)~TCP_FLG_FIN;
    }
    return 0;
}

/* ---- steps 2 and 4: RST and SYN (RFC 5961) ------------------------------------------ */

/* Returns 1 if the segment was consumed. */
static int check_rst(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    if (!(seg->flg & TCP_FLG_RST))
        return 0;
    if (seg->seq != pcb->rcv_nxt) {
        /* RFC 5961 §3.2: outside the window we advertised: drop silently;
         * inside but not exact: maybe forged. Ask. */
        if (SEQ_GEQ(seg->seq, pcb->rcv_nxt) && SEQ_LT(seg->seq, pcb->rcv_adv))
            tcp_send_challenge_ack_locked(pcb);
        return 1;
    }
    STAT_INC(&tcp_stats, TCPSTAT_IN_RSTS);
    switch (pcb->state) {
    case TCPS_SYN_RECEIVED:
        if (pcb->parent) { /* passive: back to LISTEN, i.e. forget the child */
            tcp_drop_locked(pcb, 0);
            return 1;
        }
        tcp_drop_locked(pcb, -ECONNREFUSED);
        return 1;
    case TCPS_ESTABLISHED:
    case TCPS_FIN_WAIT_1:
    case TCPS_FIN_WAIT_2:
    case TCPS_CLOSE_WAIT:
        STAT_INC(&tcp_stats, TCPSTAT_ESTAB_RESETS);
        tcp_drop_locked(pcb, -ECONNRESET);
        return 1;
    default: /* CLOSING, LAST-ACK, TIME-WAIT */
        tcp_drop_locked(pcb, 0);
        return 1;
    }
}

static int check_syn(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    if (!(seg->flg & TCP_FLG_SYN))
        return 0;
    /* RFC 5961 §4.2: a SYN in a synchronized state gets a challenge ACK;
     * a genuine restart of the peer will answer it with a RST. */
    tcp_send_challenge_ack_locked(pcb);
    return 1;
}

/* ---- step 5: ACK ------------------------------------------------------------------------ */

/* ---- the SACK scoreboard (RFC 2018, RFC 6675 Update()) ---------------------------- */

/* Fold [start, end) into the sorted, disjoint ranges r[0..*n), merging
 * every range it touches. Returns -1 if it needs a new slot and *n == max. */
static int range_insert(struct tcp_sack_blk *r, int *n, int max, uint32_t start, uint32_t end)
{
    int i = 0, j;

    while (i < *n && SEQ_LT(r[i].end, start))
        i++;
    j = i;
    while (j < *n && SEQ_LEQ(r[j].start, end)) {
        if (SEQ_LT(r[j].start, start))
            start = r[j].start;
        if (SEQ_GT(r[j].end, end))
            end = r[j].end;
        j++;
    }
    if (j == i && *n == max)
        return -1;
    memmove(&r[i + 1], &r[j], (size_t)(*n - j) * sizeof(r[0]));
    *n -= j - i - 1;
    r[i] = (struct tcp_sack_blk){ start, end };
    return 0;
}

/* Fold a SACK block into the scoreboard. Returns the bytes that were not
 * SACKed before, or 0 (also when there is no room). */
static uint32_t sack_insert(struct tcp_pcb *pcb, uint32_t start, uint32_t end)
{
    uint32_t before = 0, after = 0;

    for (int k = 0; k < pcb->nsacked; k++)
        before += pcb->sacked[k].end - pcb->sacked[k].start;
    if (range_insert(pcb->sacked, &pcb->nsacked, TCP_SACK_MAX, start, end) < 0) {
        STAT_INC(&tcp_stats, TCPSTAT_SACK_FULL);
        return 0;
    }
    for (int k = 0; k < pcb->nsacked; k++)
        after += pcb->sacked[k].end - pcb->sacked[k].start;
    return after - before;
}

/* snd_una moved: forget what it passed. */
static void sack_trim(struct tcp_pcb *pcb)
{
    int k = 0;

    while (k < pcb->nsacked && SEQ_LEQ(pcb->sacked[k].end, pcb->snd_una))
        k++;
    memmove(&pcb->sacked[0], &pcb->sacked[k], (size_t)(pcb->nsacked - k) * sizeof(pcb->sacked[0]));
    pcb->nsacked -= k;
    if (pcb->nsacked && SEQ_LT(pcb->sacked[0].start, pcb->snd_una))
        pcb->sacked[0].start = pcb->snd_una;
    if (SEQ_LT(pcb->high_rxt, pcb->snd_una))
        pcb->high_rxt = pcb->snd_una;
}

/* Take a segment's SACK blocks. Returns the bytes newly SACKed. A block
 * must lie within what is in flight beyond the ACK; anything else (a
 * D-SACK below it, RFC 2883, or garbage) is counted and ignored. */
static uint32_t sack_update(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint32_t newly = 0;

    for (int b = 0; b < seg->nsack; b++) {
        uint32_t start = seg->sack[b].start, end = seg->sack[b].end;
        if (!SEQ_LT(start, end) || SEQ_LEQ(start, seg->ack) || SEQ_LT(start, pcb->snd_una) ||
            SEQ_GT(end, pcb->snd_max)) {
            STAT_INC(&tcp_stats, TCPSTAT_IN_SACK_BAD);
            log_debug(LOG_TCP, "sack block %u-%u ignored (una %u, max %u)", start, end, pcb->snd_una,
                      pcb->snd_max);
            continue;
        }
        STAT_INC(&tcp_stats, TCPSTAT_IN_SACK_BLOCKS);
        newly += sack_insert(pcb, start, end);
    }
    return newly;
}

/* Bytes at snd_una that were sent (a resend never carries new data past
 * snd_max, which the peer's window may not have room for), at most max. */
static size_t sent_bytes_from_una(struct tcp_pcb *pcb, size_t max)
{
    size_t n = pcb->snd_max - pcb->snd_una;

    if (pcb->fin_sent && SEQ_GT(pcb->snd_max, pcb->fin_seq))
        n--; /* the FIN's sequence number is not a byte */
    if (n > pcb->sndbuf.len)
        n = pcb->sndbuf.len;
    return n < max ? n : max;
}

/* ACKs made room in the send buffer: wake a writer (or a poller for
 * POLLOUT) at the end of the input batch, and only once half the buffer
 * is free or everything is acknowledged (a lingering close waits for
 * that), not for every segment's worth, as Linux does: a blocked writer
 * then moves a large chunk per wake-up. */
static void writer_wakeup(struct tcp_pcb *pcb)
{
    if (!pcb->sndbuf.buf || ring_space(&pcb->sndbuf) >= pcb->sndbuf_size / 2 || pcb->snd_una == pcb->snd_max)
        tcp_batch_defer_locked(pcb, 1, 0);
}

static void ack_new_data(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint32_t acked = seg->ack - pcb->snd_una;
    size_t data = acked;
    uint64_t now = net_now_ms();

    if (pcb->fin_sent && SEQ_GT(seg->ack, pcb->fin_seq))
        data--; /* the FIN takes a sequence number, not a byte */
    if (data > pcb->sndbuf.len)
        data = pcb->sndbuf.len;
    ring_discard(&pcb->sndbuf, data);
    pcb->snd_una = seg->ack;
    if (SEQ_LT(pcb->snd_nxt, pcb->snd_una))
        pcb->snd_nxt = pcb->snd_una;
    sack_trim(pcb);
    if (pcb->tlp_out && SEQ_GEQ(pcb->snd_una, pcb->tlp_end))
        pcb->tlp_out = 0; /* the probe's episode is over */
    if (pcb->ts_ok && seg->has_ts && seg->tsecr != 0) {
        /* RFC 7323 §4.1: the echoed TSval times this ACK, retransmission
         * or not (no Karn ambiguity); only ACKs of new data are used */
        uint32_t rtt = tcp_ts_now(pcb) - seg->tsecr;
        if ((int32_t)rtt >= 0 && rtt < 60000) {
            tcp_rtt_sample_locked(pcb, rtt);
            STAT_INC(&tcp_stats, TCPSTAT_RTT_TS_SAMPLES);
        }
    } else if (pcb->rtt_timing && SEQ_GT(seg->ack, pcb->rtt_seq)) {
        tcp_rtt_sample_locked(pcb, (uint32_t)(now - pcb->rtt_start));
        pcb->rtt_timing = 0;
    }
    if (pcb->retries) { /* the backed-off RTO ends with new data acked */
        pcb->retries = 0;
        if (pcb->srtt_ms8) {
            uint32_t rto = (pcb->srtt_ms8 >> 3) + (pcb->rttvar_ms4 ? pcb->rttvar_ms4 : 1);
            pcb->rto_ms = rto < net_config.tcp_rto_min_ms ? net_config.tcp_rto_min_ms
                        : rto > net_config.tcp_rto_max_ms ? net_config.tcp_rto_max_ms : rto;
        }
    }
    pcb->backoff = 0;
    if (pcb->in_recovery && SEQ_LT(seg->ack, pcb->recover)) {
        if (pcb->sack_ok) {
            /* RFC 6675 §5 (C): a partial ACK changes nothing but the
             * scoreboard; tcp_output_locked sends what the pipe allows */
        } else {
            /* RFC 6582 §3.2 step 5: partial ACK: the next hole is resent
             * at once, cwnd deflates by what was acked, recovery goes on */
            size_t len = sent_bytes_from_una(pcb, tcp_seg_size_locked(pcb));
            pcb->cwnd = pcb->cwnd > acked ? pcb->cwnd - acked + pcb->snd_mss : pcb->snd_mss;
            STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
            if (len)
                tcp_send_segment_locked(pcb, TCP_FLG_ACK, pcb->snd_una, 0, len);
        }
        tcp_rexmt_arm_locked(pcb);
        writer_wakeup(pcb);
        return;
    } else if (pcb->in_recovery) {
        pcb->in_recovery = 0; /* full ACK: leave fast recovery */
        pcb->cc->recovered(pcb, now);
        tcp_cc_trace_locked(pcb, "recovered");
    } else {
        pcb->cc->ack(pcb, acked, now); /* RFC 5681 §3.1 or the algorithm's own */
        tcp_cc_trace_locked(pcb, "ack");
    }
    pcb->dupacks = 0;
    if (pcb->snd_una == pcb->snd_max) {
        net_timer_cancel(&pcb->rexmt);
        net_timer_cancel(&pcb->tlp);
    } else {
        tcp_rexmt_arm_locked(pcb); /* RFC 6298 §5.3: restart */
        tcp_tlp_arm_locked(pcb);
    }
    writer_wakeup(pcb);            /* room in the send buffer */
}

/* Fast retransmit (RFC 5681 §3.2), entering recovery: NewReno (RFC 6582)
 * without SACK, RFC 6675 with it. */
static void enter_recovery(struct tcp_pcb *pcb)
{
    uint32_t mss = tcp_seg_size_locked(pcb);

    pcb->recover = pcb->snd_max; /* RecoveryPoint = HighData */
    pcb->in_recovery = 1;
    pcb->tlp_out = pcb->tlp_rec_used = 0;
    net_timer_cancel(&pcb->tlp);
    pcb->rtt_timing = 0;
    pcb->snd_nxt = pcb->snd_max;
    pcb->cc->congestion(pcb, TCP_CC_FAST, net_now_ms()); /* ssthresh, cwnd = ssthresh */
    STAT_INC(&tcp_stats, TCPSTAT_FAST_RETRANSMITS);
    tcp_cc_trace_locked(pcb, pcb->sack_ok ? "sack-recovery" : "fast-retransmit");
    if (pcb->sack_ok) {
        /* RFC 6675 §5 step 4.3: resend the first segment, then (4.4) let
         * tcp_output_locked fill cwnd - pipe */
        uint32_t hole = pcb->nsacked ? pcb->sacked[0].start - pcb->snd_una : pcb->snd_max - pcb->snd_una;
        uint32_t n;
        STAT_INC(&tcp_stats, TCPSTAT_SACK_RECOVERIES);
        pcb->high_rxt = pcb->snd_una;
        if (hole > mss)
            hole = mss;
        if ((n = tcp_resend_range_locked(pcb, pcb->snd_una, hole)) != 0) {
            STAT_INC(&tcp_stats, TCPSTAT_SACK_RETRANS_SEGS);
            pcb->high_rxt = pcb->snd_una + n;
        }
        return;
    }
    {
        size_t len = sent_bytes_from_una(pcb, mss);
        uint8_t flags = TCP_FLG_ACK;
        pcb->cwnd = pcb->ssthresh + 3u * pcb->snd_mss; /* RFC 6582 §3.2 step 2: inflate */
        if (len == 0 && pcb->fin_sent)
            flags |= TCP_FLG_FIN;
        STAT_INC(&tcp_stats, TCPSTAT_RETRANS_SEGS);
        tcp_send_segment_locked(pcb, flags, pcb->snd_una, 0, len);
    }
}

/* A duplicate ACK: the classic kind (RFC 5681 §2), or one bringing new SACK
 * information (RFC 6675 §2). The third, or SACKs that show the first
 * segment lost, start recovery, unless one ran or a timeout struck since
 * the data now outstanding was sent (RFC 6582 §3.2 step 2). */
static void ack_duplicate(struct tcp_pcb *pcb)
{
    STAT_INC(&tcp_stats, TCPSTAT_IN_DUP_ACKS);
    pcb->dupacks++;
    if (!pcb->in_recovery) {
        uint32_t flight = pcb->snd_max - pcb->snd_una, oseg = (flight + pcb->snd_mss - 1) / pcb->snd_mss;
        size_t off = (size_t)(pcb->snd_nxt - pcb->snd_una);
        int can_send_new = off < pcb->sndbuf.len && SEQ_LT(pcb->snd_nxt, pcb->snd_una + pcb->snd_wnd);
        unsigned thresh = TCP_DUPTHRESH;
        /* RFC 5827 early retransmit: with fewer than four segments out and
         * nothing new to send, fewer duplicate ACKs will ever come */
        if (oseg < 4 && !can_send_new)
            thresh = oseg > 1 ? oseg - 1 : 1;
        if (SEQ_GEQ(pcb->snd_una, pcb->recover) &&
            (pcb->dupacks >= thresh || (pcb->sack_ok && tcp_sack_is_lost(pcb, pcb->snd_una)))) {
            if (pcb->dupacks < TCP_DUPTHRESH && !(pcb->sack_ok && tcp_sack_is_lost(pcb, pcb->snd_una)))
                STAT_INC(&tcp_stats, TCPSTAT_EARLY_RETRANSMITS);
            if (SEQ_LT(pcb->snd_una, pcb->lost_below))
                STAT_INC(&tcp_stats, TCPSTAT_TLP_RECOVERIES);
            enter_recovery(pcb);
        }
    } else if (!pcb->sack_ok) {
        pcb->cwnd += pcb->snd_mss; /* each further dup ACK: a segment left */
    }
}

static void update_window(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    /* RFC 9293 §3.10.7.4, fifth: take the window only from a newer segment */
    if (SEQ_LT(pcb->snd_wl1, seg->seq) || (pcb->snd_wl1 == seg->seq && SEQ_LEQ(pcb->snd_wl2, seg->ack))) {
        int opened = pcb->snd_wnd == 0 && seg->wnd > 0;
        pcb->snd_wnd = seg->wnd;
        pcb->snd_wl1 = seg->seq;
        pcb->snd_wl2 = seg->ack;
        if (seg->wnd > pcb->max_snd_wnd)
            pcb->max_snd_wnd = seg->wnd;
        if (opened) {
            net_timer_cancel(&pcb->persist);
            pcb->backoff = 0;
            tcp_notify_locked(pcb);
        }
    }
}

/* Our FIN was acknowledged: move on per state. Returns 1 if pcb is gone. */
static int ack_of_fin(struct tcp_pcb *pcb)
{
    switch (pcb->state) {
    case TCPS_FIN_WAIT_1:
        tcp_set_state_locked(pcb, TCPS_FIN_WAIT_2);
        if (!pcb->sock) /* an orphan may not wait forever for the peer's FIN */
            net_timer_arm(&pcb->keep, net_config.tcp_fin_wait2_ms);
        return 0;
    case TCPS_CLOSING:
        tcp_enter_time_wait_locked(pcb);
        return 0;
    case TCPS_LAST_ACK:
        tcp_drop_locked(pcb, 0);
        return 1;
    default:
        return 0;
    }
}

/* Returns 1 if the segment was consumed (or the pcb is gone). */
static int check_ack(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint32_t newly_sacked;

    if (!(seg->flg & TCP_FLG_ACK))
        return 1; /* no ACK: drop */
    if (pcb->state == TCPS_SYN_RECEIVED) {
        if (SEQ_LEQ(seg->ack, pcb->snd_una) || SEQ_GT(seg->ack, pcb->snd_max)) {
            tcp_send_reset_for(seg);
            return 1;
        }
        if (pcb->parent && pcb->parent->acceptq_len >= pcb->parent->backlog) {
            /* no room to accept it: stay half-open (our SYN,ACK will be
             * retransmitted and the peer's ACK with it), as Linux does */
            STAT_INC(&tcp_stats, TCPSTAT_ACCEPT_QUEUE_FULL);
            return 1;
        }
        pcb->snd_una = seg->ack;
        net_timer_cancel(&pcb->rexmt);
        if (pcb->retries > 0 && pcb->rto_ms < 3000)
            pcb->rto_ms = 3000; /* RFC 6298 §5.7 */
        pcb->retries = 0;
        pcb->snd_wnd = seg->wnd;
        pcb->snd_wl1 = seg->seq;
        pcb->snd_wl2 = seg->ack;
        if (seg->wnd > pcb->max_snd_wnd)
            pcb->max_snd_wnd = seg->wnd;
        tcp_set_state_locked(pcb, TCPS_ESTABLISHED);
        tcp_child_established_locked(pcb);
        return pcb->state != TCPS_ESTABLISHED; /* could not be queued: gone */
    }
    /* RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT] */
    if (SEQ_GT(seg->ack, pcb->snd_max)) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_FUTURE_ACK);
        pcb->ack_now = 1;
        return 1;
    }
    if (SEQ_LT(seg->ack, pcb->snd_una - pcb->max_snd_wnd)) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_OLD_ACK);
        pcb->ack_now = 1;
        return 1;
    }
    pcb->persist_unanswered = 0; /* the peer is alive */
    newly_sacked = pcb->sack_ok && seg->nsack ? sack_update(pcb, seg) : 0;
    if (newly_sacked && pcb->nsacked) {
        uint32_t top = pcb->sacked[pcb->nsacked - 1].end;
        /* RFC 8985 §7.4: the probe got through above a hole: what was sent
         * before it, two RTTs earlier, is lost */
        if (pcb->tlp_out && SEQ_GT(top, pcb->tlp_seq) && SEQ_GT(pcb->tlp_seq, pcb->snd_una)) {
            pcb->lost_below = pcb->tlp_seq;
            pcb->tlp_out = 0;
        }
        /* our resend of the first hole is lost if data sent after it has
         * arrived (RFC 8985's rule, for the one hole we track): again */
        if (pcb->una_rxt && pcb->una_rxt_seq == pcb->snd_una && SEQ_GT(top, pcb->una_rxt_max + pcb->snd_mss) &&
            seg->ack == pcb->snd_una && (pcb->in_recovery || SEQ_LT(pcb->snd_una, pcb->recover))) {
            STAT_INC(&tcp_stats, TCPSTAT_LOST_RETRANS);
            pcb->una_rxt = 0;
            if (pcb->in_recovery)
                pcb->high_rxt = pcb->snd_una;
            else /* resending after a timeout: go back once more (SACKed data is skipped) */
                pcb->snd_nxt = pcb->snd_una;
        }
    }
    if (SEQ_GT(seg->ack, pcb->snd_una)) {
        ack_new_data(pcb, seg);
        /* RFC 6675 §5 (2): new SACK information makes an ACK a duplicate
         * "regardless of its status as a cumulative acknowledgment" */
        if (newly_sacked && !pcb->in_recovery && pcb->snd_una != pcb->snd_max)
            ack_duplicate(pcb);
    } else if (seg->ack == pcb->snd_una && pcb->snd_una != pcb->snd_max &&
             (newly_sacked > 0 || (seg->dlen == 0 && !(seg->flg & TCP_FLG_FIN) && seg->wnd == pcb->snd_wnd &&
                                   seg->wnd != 0)))
        ack_duplicate(pcb);
    if (SEQ_LEQ(pcb->snd_una, seg->ack))
        update_window(pcb, seg);
    if (pcb->fin_sent && SEQ_GT(pcb->snd_una, pcb->fin_seq))
        return ack_of_fin(pcb);
    if (pcb->state == TCPS_TIME_WAIT && (seg->flg & TCP_FLG_FIN)) {
        pcb->ack_now = 1; /* the peer lost our ACK of its FIN: again, and restart */
        net_timer_arm(&pcb->timewait, 2ull * net_config.tcp_msl_ms);
        return 1;
    }
    return 0;
}

/* ---- steps 7 and 8: text and FIN ---------------------------------------------------------- */

static void ooo_insert(struct tcp_pcb *pcb, uint32_t start, uint32_t end)
{
    range_insert(pcb->ooo, &pcb->nooo, TCP_OOO_MAX, start, end); /* ooo_full checked for room */
}

/* Would inserting [start, end) need a new slot we do not have? */
static int ooo_full(struct tcp_pcb *pcb, uint32_t start, uint32_t end)
{
    if (pcb->nooo < TCP_OOO_MAX)
        return 0;
    for (int i = 0; i < pcb->nooo; i++)
        if (SEQ_LEQ(pcb->ooo[i].start, end) && SEQ_GEQ(pcb->ooo[i].end, start))
            return 0;
    return 1;
}

/* rcv_nxt moved: fold held ranges that now continue the stream. */
static int ooo_advance(struct tcp_pcb *pcb)
{
    int filled = 0;

    while (pcb->nooo > 0 && SEQ_LEQ(pcb->ooo[0].start, pcb->rcv_nxt)) {
        if (SEQ_GT(pcb->ooo[0].end, pcb->rcv_nxt)) {
            ring_commit(&pcb->rcvbuf, pcb->ooo[0].end - pcb->rcv_nxt);
            pcb->rcv_nxt = pcb->ooo[0].end;
        }
        memmove(&pcb->ooo[0], &pcb->ooo[1], (size_t)(pcb->nooo - 1) * sizeof(pcb->ooo[0]));
        pcb->nooo--;
        filled = 1;
    }
    return filled;
}

static void receive_text(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint32_t off;

    if (seg->dlen == 0 || !pcb->rcvbuf.buf)
        return;
    if (pcb->shut_rd) { /* nobody will read: acknowledge and forget */
        if (seg->seq == pcb->rcv_nxt)
            pcb->rcv_nxt += seg->dlen; /* never past a hole */
        pcb->ack_now = 1;
        return;
    }
    if (pcb->app_closed) {
        /* RFC 1122 §4.2.2.13: data for a closed socket cannot be read; the
         * peer must learn it was lost */
        tcp_send_segment_locked(pcb, TCP_FLG_RST | TCP_FLG_ACK, pcb->snd_nxt, 0, 0);
        tcp_drop_locked(pcb, 0);
        return;
    }
    /* Bytes are placed where they belong in the ring, in order or not;
     * check_sequence made sure they fit, and nothing below rcv_nxt (what
     * the app may already be reading) is ever written. */
    off = seg->seq - pcb->rcv_nxt;
    if (off > 0 && ooo_full(pcb, seg->seq, seg->seq + seg->dlen)) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_OOO_DROPPED);
        pcb->ack_now = 1;
        return;
    }
    if (off > 0)
        for (int i = 0; i < pcb->nooo; i++)
            if (SEQ_LEQ(pcb->ooo[i].start, seg->seq) && SEQ_LEQ(seg->seq + seg->dlen, pcb->ooo[i].end))
                dsack_note(pcb, seg->seq, seg->seq + seg->dlen); /* held already */
    ring_write_at(&pcb->rcvbuf, pcb->rcvbuf.len + off, seg->data, seg->dlen);
    if (off > 0) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_OOO_SEGS);
        ooo_insert(pcb, seg->seq, seg->seq + seg->dlen);
        pcb->ooo_last = seg->seq; /* its range leads our SACK blocks */
        pcb->ack_now = 1; /* RFC 5681 §4.2: out of order: ACK at once */
        return;
    }
    ring_commit(&pcb->rcvbuf, seg->dlen);
    pcb->rcv_nxt += seg->dlen;
    if (ooo_advance(pcb)) {
        pcb->ack_now = 1; /* a hole was filled: ACK at once */
    } else if ((pcb->acks_pending += seg->dlen > pcb->snd_mss ? 2 : 1) >= 2) {
        /* every second segment (RFC 9293 §3.8.6.3), but once per input
         * batch: the segments of one batch arrived together, and one ACK
         * for all of them (as Linux sends for a GRO batch) saves a frame
         * and a kernel round per segment; it goes out within the batch.
         * A super-frame from an offloading tap holds several full-sized
         * segments: it counts as two, so it is never left to the timer */
        tcp_batch_defer_locked(pcb, 0, 1);
    } else {
        net_timer_arm(&pcb->delack, net_config.tcp_delack_ms);
    }
    tcp_batch_defer_locked(pcb, 1, 0); /* one wake-up of the reader per batch */
}

static void receive_fin(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    if (seg->flg & TCP_FLG_FIN) {
        uint32_t fin_seq = seg->seq + seg->dlen;
        if (fin_seq != pcb->rcv_nxt) { /* ahead of a hole: remember it */
            pcb->have_ooo_fin = 1;
            pcb->ooo_fin_seq = fin_seq;
            pcb->ack_now = 1; /* RFC 5681 §4.2: a duplicate ACK at once */
            return;
        }
    } else if (!(pcb->have_ooo_fin && pcb->ooo_fin_seq == pcb->rcv_nxt)) {
        return;
    }
    if (pcb->rcv_fin)
        return;
    pcb->have_ooo_fin = 0;
    pcb->rcv_fin = 1;
    pcb->rcv_nxt++;
    pcb->ack_now = 1;
    switch (pcb->state) {
    case TCPS_SYN_RECEIVED:
    case TCPS_ESTABLISHED:
        tcp_set_state_locked(pcb, TCPS_CLOSE_WAIT);
        break;
    case TCPS_FIN_WAIT_1: /* our FIN not yet acked (else we'd be in FIN-WAIT-2) */
        tcp_set_state_locked(pcb, TCPS_CLOSING);
        break;
    case TCPS_FIN_WAIT_2:
        tcp_enter_time_wait_locked(pcb);
        break;
    default:
        break;
    }
    tcp_notify_locked(pcb); /* readers see end of stream */
}

/* ---- synchronized states ---------------------------------------------------------- */

/* RFC 7323 §5.3 R1, PAWS: a timestamp older than TS.Recent marks an old
 * duplicate (sequence numbers may have wrapped): drop it. */
static int paws_reject(struct tcp_pcb *pcb, const struct tcp_seg *seg)
{
    uint64_t now;

    if (!pcb->ts_ok || !seg->has_ts || (seg->flg & TCP_FLG_RST) || (int32_t)(seg->tsval - pcb->ts_recent) >= 0)
        return 0;
    now = net_now_ms();
    if (now - pcb->ts_recent_ms > 24ull * 24 * 3600 * 1000) {
        /* RFC 7323 §5.5: after 24 idle days TS.Recent is no longer valid */
        pcb->ts_recent = seg->tsval;
        pcb->ts_recent_ms = now;
        return 0;
    }
    return 1;
}

static void sync_input(struct tcp_pcb *pcb, struct tcp_seg *seg)
{
    uint32_t seq0 = seg->seq;

    if (pcb->wscale_ok && !(seg->flg & TCP_FLG_SYN))
        seg->wnd <<= pcb->snd_wscale; /* RFC 7323 §2.3 */
    if (pcb->state == TCPS_SYN_RECEIVED && (seg->flg & TCP_FLG_SYN) && !(seg->flg & TCP_FLG_ACK) &&
        seg->seq == pcb->irs) { /* the peer did not get our SYN,ACK: again */
        tcp_send_segment_locked(pcb, TCP_FLG_SYN | TCP_FLG_ACK, pcb->iss, 0, 0);
        return;
    }
    if (paws_reject(pcb, seg)) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_PAWS_DROPPED);
        log_debug(LOG_TCP, "paws: TSval %u older than TS.Recent %u: drop", seg->tsval, pcb->ts_recent);
        dsack_old(pcb, seg);
        tcp_send_ack_locked(pcb); /* R1: acknowledge, and drop */
        return;
    }
    if (check_sequence(pcb, seg) < 0) { /* step 1 */
        STAT_INC(&tcp_stats, TCPSTAT_IN_OUT_OF_WINDOW);
        dsack_old(pcb, seg);
        if (!(seg->flg & TCP_FLG_RST)) {
            if (pcb->state == TCPS_TIME_WAIT && (seg->flg & TCP_FLG_FIN))
                net_timer_arm(&pcb->timewait, 2ull * net_config.tcp_msl_ms);
            tcp_send_ack_locked(pcb);
        }
        return;
    }
    /* RFC 7323 §4.3 (2): remember the TSval of a segment that starts at or
     * before the left edge we last acknowledged */
    if (pcb->ts_ok && seg->has_ts && (int32_t)(seg->tsval - pcb->ts_recent) >= 0 &&
        SEQ_LEQ(seq0, pcb->last_ack_sent)) {
        pcb->ts_recent = seg->tsval;
        pcb->ts_recent_ms = net_now_ms();
    }
    if (check_rst(pcb, seg) || check_syn(pcb, seg)) /* steps 2 and 4 */
        return;
    if (check_ack(pcb, seg)) /* step 5 */
        goto out;
    pcb->last_recv_ms = net_now_ms();
    tcp_keepalive_reset_locked(pcb); /* the peer is alive (in any state) */
    if (pcb->state == TCPS_ESTABLISHED || pcb->state == TCPS_FIN_WAIT_1 || pcb->state == TCPS_FIN_WAIT_2) {
        receive_text(pcb, seg); /* step 7 */
        if (pcb->state == TCPS_CLOSED)
            return; /* data for a closed socket: reset */
    }
    receive_fin(pcb, seg); /* step 8 */
out:
    if (pcb->state != TCPS_CLOSED)
        tcp_output_locked(pcb);
}

/* ---- entry ---------------------------------------------------------------------------- */

void tcp_input(const struct ip_rx *rx, struct pbuf *pb)
{
    struct tcp_seg seg;
    struct tcp_pcb *pcb;
    const char *why;
    int stat = 0;

    STAT_INC(&tcp_stats, TCPSTAT_IN_SEGS);
    if ((why = tcp_parse(rx, pb, &seg, &stat)) != NULL) {
        STAT_INC(&tcp_stats, stat);
        log_debug(LOG_TCP, "drop segment (%zu bytes): %s", pb->len, why);
        pbuf_free(pb);
        return;
    }
    if (log_enabled(LOG_TCP, LOG_LEVEL_DEBUG))
        tcp_dump(pb->data, pb->len, rx->src, rx->dst);
    mutex_lock(&tcp_lock);
    pcb = tcp_lookup_locked(seg.dst, seg.dport, seg.src, seg.sport);
    if (pcb && pcb->state == TCPS_TIME_WAIT && (seg.flg & TCP_FLG_SYN) && !(seg.flg & TCP_FLG_ACK) &&
        SEQ_GT(seg.seq, pcb->rcv_nxt)) {
        /* RFC 9293 §3.10.7.4 note / RFC 6191: a new incarnation may reuse
         * the 4-tuple when its SYN is beyond the old connection's sequence */
        STAT_INC(&tcp_stats, TCPSTAT_TIME_WAIT_RECYCLED);
        tcp_drop_locked(pcb, 0);
        pcb = tcp_lookup_locked(seg.dst, seg.dport, seg.src, seg.sport);
    }
    if (!pcb) {
        STAT_INC(&tcp_stats, TCPSTAT_IN_NO_PCB);
        log_debug(LOG_TCP, "no connection for port %u: reset", seg.dport);
        tcp_send_reset_for(&seg); /* §3.10.7.1: CLOSED */
    } else if (pcb->state == TCPS_LISTEN) {
        listen_input(pcb, &seg);
    } else if (pcb->state == TCPS_SYN_SENT) {
        syn_sent_input(pcb, &seg);
        if (pcb->state == TCPS_ESTABLISHED)
            tcp_output_locked(pcb);
    } else {
        sync_input(pcb, &seg);
    }
    tcp_unlock();
    pbuf_free(pb);
}

/* ---- ICMP errors (RFC 1122 §4.2.3.9, RFC 5927) ---------------------------------------- */

void tcp_icmp_error(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                    const struct ip_hdr *inner, const uint8_t *payload, size_t len)
{
    struct tcp_pcb *pcb;
    uint32_t seq;
    int err;

    (void)from;
    (void)info;
    if (len < 8 || type != ICMP_TYPE_DEST_UNREACH)
        return; /* time exceeded, quench: nothing to do */
    if (code == ICMP_CODE_FRAG_NEEDED)
        return; /* no path MTU discovery yet: we never set DF */
    err = code == ICMP_CODE_NET_UNREACH ? -ENETUNREACH
          : code == ICMP_CODE_HOST_UNREACH ? -EHOSTUNREACH : -ECONNREFUSED;
    seq = load32(payload + 4);
    mutex_lock(&tcp_lock);
    pcb = tcp_lookup_locked(inner->src, load16(payload), inner->dst, load16(payload + 2));
    /* RFC 5927 §4.1: believe it only if it quotes a sequence number we
     * have in flight; a forged error is cheap to send. */
    if (pcb && pcb->state != TCPS_LISTEN && SEQ_GEQ(seq, pcb->snd_una) && SEQ_LT(seq, pcb->snd_max)) {
        if (pcb->state == TCPS_SYN_SENT) {
            STAT_INC(&tcp_stats, TCPSTAT_ATTEMPT_FAILS);
            tcp_drop_locked(pcb, err); /* a connect() fails at once */
        } else {
            pcb->soft_error = err; /* reported only if we time out (§4.2.3.9) */
        }
    }
    tcp_unlock();
}
