/*
 * tcp_var.h — TCP's connection state, shared by tcp_input.c (segment
 * arrival), tcp_output.c (sending, timers) and tcp_usrreq.c (the socket
 * operations). Names follow RFC 9293 §3.3.1 so the code reads beside it.
 *
 * The state diagram (RFC 9293 §3.3.2, Figure 5):
 *
 *                             +---------+ ---------\      active OPEN
 *                             |  CLOSED |            \    -----------
 *                             +---------+<---------\   \   create TCB
 *                               |     ^              \   \  snd SYN
 *                  passive OPEN |     |   CLOSE        \   \
 *                  ------------ |     | ----------       \   \
 *                   create TCB  |     | delete TCB         \   \
 *                               V     |                      \   \
 *           rcv RST (note 1)  +---------+            CLOSE    |    \
 *        -------------------->|  LISTEN |          ---------- |     |
 *       /                     +---------+          delete TCB |     |
 *      /           rcv SYN      |     |     SEND              |     |
 *     /           -----------   |     |    -------            |     V
 * +--------+      snd SYN,ACK  /       \   snd SYN          +--------+
 * |        |<-----------------           ------------------>|        |
 * |  SYN   |                    rcv SYN                     |  SYN   |
 * |  RCVD  |<-----------------------------------------------|  SENT  |
 * |        |                  snd SYN,ACK                   |        |
 * |        |------------------           -------------------|        |
 * +--------+   rcv ACK of SYN  \       /  rcv SYN,ACK       +--------+
 *    |         --------------   |     |   -----------
 *    |                x         |     |     snd ACK
 *    |                          V     V
 *    |  CLOSE                 +---------+
 *    | -------                |  ESTAB  |
 *    | snd FIN                +---------+
 *    |                 CLOSE    |     |    rcv FIN
 *    V                -------   |     |    -------
 * +---------+         snd FIN  /       \   snd ACK         +---------+
 * |  FIN    |<----------------          ------------------>|  CLOSE  |
 * | WAIT-1  |------------------                            |   WAIT  |
 * +---------+          rcv FIN  \                          +---------+
 *   | rcv ACK of FIN   -------   |                          CLOSE  |
 *   | --------------   snd ACK   |                         ------- |
 *   V        x                   V                         snd FIN V
 * +---------+               +---------+                    +---------+
 * |FINWAIT-2|               | CLOSING |                    | LAST-ACK|
 * +---------+               +---------+                    +---------+
 *   |                rcv ACK of FIN |                 rcv ACK of FIN |
 *   |  rcv FIN       -------------- |    Timeout=2MSL -------------- |
 *   |  -------              x       V    ------------        x       V
 *    \ snd ACK              +---------+delete TCB          +---------+
 *      -------------------->|TIME-WAIT|------------------->| CLOSED  |
 *                           +---------+                    +---------+
 *
 * Lock key: [T] tcp_lock — every field of every pcb, the pcb list and
 * each listener's queues. [c] constant after creation.
 */
#ifndef NETSTEP_TCP_VAR_H
#define NETSTEP_TCP_VAR_H

#include <stdint.h>

#include "net.h"
#include "proto/ip.h"
#include "proto/sock_var.h"
#include "proto/tcp.h"
#include "proto/tcp_cc.h"
#include "util/ring.h"

enum tcp_state {
    TCPS_CLOSED,
    TCPS_LISTEN,
    TCPS_SYN_SENT,
    TCPS_SYN_RECEIVED,
    TCPS_ESTABLISHED,
    TCPS_FIN_WAIT_1,
    TCPS_FIN_WAIT_2,
    TCPS_CLOSE_WAIT,
    TCPS_CLOSING,
    TCPS_LAST_ACK,
    TCPS_TIME_WAIT,
};

/* Sequence numbers live modulo 2^32: compare them only through these
 * (RFC 9293 §3.4; FreeBSD's tcp_seq.h). */
#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) > 0)
#define SEQ_GEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) >= 0)
#define SEQ_MAX(a, b) (SEQ_GT(a, b) ? (a) : (b))


/* One SACK block: [start, end) held by the peer beyond its cumulative
 * ACK (RFC 2018 §3). */
struct tcp_sack_blk {
    uint32_t start, end;
};
#define TCP_SACK_MAX 32      /* scoreboard entries (sender side) */
#define TCP_OOO_MAX 32       /* ranges held out of order (receiver side) */
#define TCP_SACK_OPT_MAX 4   /* blocks one segment can carry */
#define TCP_DUPTHRESH 3      /* RFC 6675 §2 DupThresh */

/* A segment as tcp_input sees it, after parsing and checksum. */
struct tcp_seg {
    uint32_t seq, ack;
    uint32_t len;        /* data bytes + SYN + FIN (SEG.LEN) */
    uint32_t wnd;        /* the window in bytes (scaled once agreed) */
    int has_wscale;      /* the SYN carried a window scale option */
    uint8_t wscale;      /* its shift count */
    uint8_t flg;
    uint16_t mss;        /* MSS option, or 0 */
    int sack_perm;       /* the SYN carried SACK-permitted (RFC 2018 §2) */
    int has_ts;          /* a timestamps option (RFC 7323 §3) */
    uint32_t tsval, tsecr;
    int nsack;           /* SACK blocks carried */
    struct tcp_sack_blk sack[TCP_SACK_OPT_MAX];
    const uint8_t *data; /* payload */
    uint32_t dlen;       /* payload bytes */
    uint32_t src, dst;   /* addresses, network order */
    uint16_t sport, dport;
};

struct tcp_pcb {
    struct tcp_pcb *next;          /* [T] every pcb */
    struct tcp_pcb **pprev;        /* [T] what points at this one (O(1) unlink) */
    int hash_slot;                 /* [T] its slot in the lookup cache, or -1 */
    struct tcp_pcb *batch_next;    /* [T] on the list of pcbs with work put off
                                      to the end of the input batch */
    int batch_queued;              /* [T] on that list */
    int batch_notify;              /* [T] wake the reader then */
    int batch_ack;                 /* [T] send the ACK then */
    enum tcp_state state;          /* [T] */
    struct sock_addr local;        /* [T] */
    struct sock_addr remote;       /* [T] */
    struct sock *sock;             /* [T] NULL once the app let go */
    int app_closed;                /* [T] sock_close was called */
    int reaping;                   /* [T] freed by the reap timer soon */
    int error;                     /* [T] pending -errno for the app */
    int soft_error;                /* [T] last ICMP soft error (-errno) */

    /* listeners (LISTEN) and their children */
    struct tcp_pcb *parent;        /* [T] listener of a child, until accepted */
    struct tcp_pcb *qnext;         /* [T] link in the parent's syn or accept queue */
    struct tcp_pcb *synq;          /* [T] children in SYN-RECEIVED, oldest first */
    struct tcp_pcb *acceptq;       /* [T] children established, not yet accepted */
    unsigned synq_len, acceptq_len; /* [T] */
    unsigned backlog;              /* [T] accept queue bound */

    /* send sequence space (RFC 9293 §3.3.1) */
    uint32_t iss;                  /* [T] */
    uint32_t snd_una;              /* [T] oldest unacknowledged */
    uint32_t snd_nxt;              /* [T] next to send */
    uint32_t snd_max;              /* [T] highest sent + 1 (after a go-back) */
    uint32_t snd_wnd;              /* [T] peer's window */
    uint32_t snd_wl1, snd_wl2;     /* [T] seq/ack of the last window update */
    uint32_t max_snd_wnd;          /* [T] largest window the peer offered */
    uint16_t snd_mss;              /* [T] largest segment we send */
    uint8_t tso;                   /* [T] the route's device takes super-segments and
                                      completes checksums (NET_DEVICE_FLAG_TSO) */
    int wscale_ok;                 /* [T] both SYNs carried window scale */
    uint8_t snd_wscale;            /* [T] the peer's shift (RFC 7323 §2.2) */
    uint8_t rcv_wscale;            /* [T] ours: our window >> this on the wire */
    int rcv_wscale_offered;        /* [T] our SYN offered window scaling */
    int sack_ok;                   /* [T] both SYNs carried SACK-permitted */
    int ts_ok;                     /* [T] both SYNs carried timestamps */
    uint32_t ts_offset;            /* [T] our TSval = ms clock + this (random) */
    uint32_t ts_recent;            /* [T] RFC 7323 TS.Recent */
    uint64_t ts_recent_ms;         /* [T] when it was set (PAWS ages it) */
    uint32_t last_ack_sent;        /* [T] RFC 7323 Last.ACK.sent */
    struct tcp_sack_blk sacked[TCP_SACK_MAX]; /* [T] the scoreboard: what the
                                      peer SACKed above snd_una, sorted */
    int nsacked;                   /* [T] */
    uint32_t high_rxt;             /* [T] RFC 6675 HighRxt: resent up to here */
    uint32_t lost_below;           /* [T] holes below this are lost (a tail
                                      loss probe above them was SACKed) */
    uint32_t una_rxt_seq;          /* [T] the hole at snd_una was resent ... */
    uint32_t una_rxt_max;          /* [T] ... when snd_max was this */
    int una_rxt;                   /* [T] una_rxt_* are set */
    int tlp_out;                   /* [T] a tail loss probe is unanswered */
    int tlp_rec_used;              /* [T] this recovery had its probe */
    uint32_t tlp_seq;              /* [T] where it started */
    uint32_t tlp_end;              /* [T] snd_max after it */
    struct ring sndbuf;            /* [T] bytes from snd_una on */
    int fin_queued;                /* [T] app is done sending: FIN follows data */
    int fin_sent;                  /* [T] a FIN went out at fin_seq (it stays
                                      there, even after a go-back) */
    uint32_t fin_seq;              /* [T] sequence number of our FIN */

    /* receive sequence space */
    uint32_t irs;                  /* [T] */
    uint32_t rcv_nxt;              /* [T] */
    uint32_t rcv_adv;              /* [T] right edge we advertised */
    struct ring rcvbuf;            /* [T] in-order bytes unread, then held ones */
    struct tcp_sack_blk ooo[TCP_OOO_MAX]; /* [T] ranges held beyond rcv_nxt
                                      (their bytes sit in rcvbuf), sorted */
    int nooo;                      /* [T] */
    uint32_t ooo_last;             /* [T] seq of the latest held segment: its
                                      range is our first SACK block */
    uint32_t sack_sent[TCP_SACK_OPT_MAX]; /* [T] starts of the blocks we sent
                                      last, first block first */
    int nsack_sent;                /* [T] */
    struct tcp_sack_blk dsack;     /* [T] a duplicate to report (RFC 2883), */
    int dsack_pending;             /* [T]   once, in the next ACK's first block */
    int rcv_fin;                   /* [T] peer's FIN received (in order) */
    int have_ooo_fin;              /* [T] a FIN arrived ahead of a hole */
    uint32_t ooo_fin_seq;          /* [T] */
    int shut_rd;                   /* [T] */

    /* congestion control (RFC 5681) and retransmission (RFC 6298) */
    uint32_t cwnd, ssthresh;       /* [T] bytes */
    const struct tcp_cc_ops *cc;   /* [T] the algorithm that sizes them */
    uint64_t cc_state[TCP_CC_STATE_SIZE / 8]; /* [T] the algorithm's own */
    uint32_t dupacks;              /* [T] */
    uint32_t recover;              /* [T] snd_max at the last fast retransmit */
    int in_recovery;               /* [T] NewReno fast recovery (RFC 6582) */
    uint32_t srtt_ms8;             /* [T] smoothed RTT * 8, ms */
    uint32_t rttvar_ms4;           /* [T] RTT variance * 4, ms */
    uint32_t rto_ms;               /* [T] current retransmission timeout */
    int rtt_timing;                /* [T] a segment is being timed */
    uint32_t rtt_seq;              /* [T] its sequence number */
    uint64_t rtt_start;            /* [T] when it was sent */
    unsigned retries;              /* [T] consecutive timeouts */
    unsigned backoff;              /* [T] persist backoff shift */
    unsigned persist_unanswered;   /* [T] probes since the peer last ACKed */
    int force_send;                /* [T] SWS override: send a short segment */
    unsigned acks_pending;         /* [T] full segments not yet acked */
    int ack_now;                   /* [T] send an ACK at the next output */
    uint64_t last_recv_ms;         /* [T] keepalive idle clock */
    unsigned keep_probes;          /* [T] */

    uint32_t rcvbuf_size;          /* [T] capacities, fixed when the */
    uint32_t sndbuf_size;          /* [T]   buffers are allocated */
    int had_sock;                  /* [T] was ever connected to a socket */

    struct net_timer rexmt;        /* retransmission (also SYN) */
    struct net_timer persist;      /* zero-window probes */
    struct net_timer tlp;          /* tail loss probe (RFC 8985 §7) */
    struct net_timer delack;
    struct net_timer keep;         /* keepalive, and orphan FIN-WAIT-2 */
    struct net_timer timewait;
    struct net_timer reap;         /* frees the pcb on the stack thread */
};

extern struct mutex tcp_lock;
/* Release tcp_lock, then send the segments this thread built under it. */
void tcp_unlock(void);
/* Send them now (before sleeping with the lock released by a wait). */
void tcp_tx_flush(void);
extern struct tcp_pcb *tcp_pcbs;   /* [T] */
extern unsigned tcp_pcb_count;     /* [T] */

const char *tcp_state_name(enum tcp_state s);

/* tcp_usrreq.c / tcp_subr: pcb life */
struct tcp_pcb *tcp_pcb_new_locked(void);
void tcp_set_state_locked(struct tcp_pcb *pcb, enum tcp_state state);
/* Connection is gone (CLOSED): cancel timers, wake the app, free later. */
void tcp_drop_locked(struct tcp_pcb *pcb, int err);
/* Wake the socket's waiters and pollers, if a socket is attached. */
void tcp_notify_locked(struct tcp_pcb *pcb);
struct tcp_pcb *tcp_lookup_locked(uint32_t laddr, uint16_t lport, uint32_t raddr, uint16_t rport);
/* Take pcb off the pcb list and out of the lookup cache (it is freed next). */
void tcp_pcb_unlink_locked(struct tcp_pcb *pcb);
uint32_t tcp_new_iss(const struct sock_addr *local, const struct sock_addr *remote);
int tcp_buffers_alloc_locked(struct tcp_pcb *pcb);
/* A child of listener lpcb reached ESTABLISHED: move it to the accept queue. */
void tcp_child_established_locked(struct tcp_pcb *pcb);

/* Put off to the end of the input batch (the stack thread): the reader's
 * wake-up and the every-second-segment ACK. */
void tcp_batch_defer_locked(struct tcp_pcb *pcb, int notify, int ack);
/* Drop pcb from that list (it is about to be freed). */
void tcp_batch_forget_locked(struct tcp_pcb *pcb);

/* tcp_output.c */
/* Send whatever the windows and Nagle allow, and a pending ACK. */
void tcp_output_locked(struct tcp_pcb *pcb);
/* Send one segment: flags, seq, data [off, off+len) of sndbuf. */
int tcp_send_segment_locked(struct tcp_pcb *pcb, uint8_t flags, uint32_t seq, size_t off, size_t len);
void tcp_send_ack_locked(struct tcp_pcb *pcb);
/* Send [seq, seq + len) again (seq at or above snd_una): its data, and our
 * FIN if it lies there. Returns the sequence space sent, or 0. */
uint32_t tcp_resend_range_locked(struct tcp_pcb *pcb, uint32_t seq, uint32_t len);
int tcp_send_challenge_ack_locked(struct tcp_pcb *pcb);
/* RST in reply to seg, with no pcb (RFC 9293 §3.10.7.1). */
void tcp_send_reset_for(const struct tcp_seg *seg);
/* Receive window to advertise now (never shrinks the right edge). */
uint32_t tcp_rcv_window_locked(struct tcp_pcb *pcb);
/* Look up whether segments to the peer may be offloaded (pcb->tso): set
 * when the connection is established. */
void tcp_offload_setup_locked(struct tcp_pcb *pcb);
/* Bytes past rcv_nxt the receive ring can hold (its slack included):
 * rcv_adv never goes further than this from rcv_nxt. */
uint32_t tcp_rcv_room_locked(struct tcp_pcb *pcb);
/* The shift that lets a buffer of size bytes be offered (RFC 7323 §2.3). */
uint8_t tcp_wscale_for(uint32_t size);
/* Largest payload of a data segment sent now: snd_mss less the options
 * every segment carries (timestamps, pending SACK blocks). */
uint32_t tcp_seg_size_locked(struct tcp_pcb *pcb);
/* RFC 6675 §4: IsLost(seq) and SetPipe() over the scoreboard. */
int tcp_sack_is_lost(struct tcp_pcb *pcb, uint32_t seq);
uint32_t tcp_sack_pipe(struct tcp_pcb *pcb);
/* Log cwnd and ssthresh after event (module "cc", debug): the series
 * tools/plot-cwnd turns into a picture. */
void tcp_cc_trace_locked(struct tcp_pcb *pcb, const char *event);
/* Our TSval now. */
uint32_t tcp_ts_now(struct tcp_pcb *pcb);
/* Bytes the receive ring has beyond its nominal size (rounding room). */
uint32_t tcp_rcv_slack(struct tcp_pcb *pcb);
int tcp_timers_init(struct tcp_pcb *pcb);
void tcp_timers_cancel_all(struct tcp_pcb *pcb);
void tcp_timers_destroy(struct tcp_pcb *pcb);
void tcp_rexmt_arm_locked(struct tcp_pcb *pcb);
/* The segment at snd_una was just resent (lost-resend detection). */
void tcp_note_una_resent_locked(struct tcp_pcb *pcb);
/* Data in flight, not in recovery: arm the tail loss probe. */
void tcp_tlp_arm_locked(struct tcp_pcb *pcb);
void tcp_rtt_sample_locked(struct tcp_pcb *pcb, uint32_t rtt_ms);
/* App read data: open the window and tell the peer if it grew enough. */
void tcp_window_update_locked(struct tcp_pcb *pcb);
void tcp_keepalive_reset_locked(struct tcp_pcb *pcb);
void tcp_enter_time_wait_locked(struct tcp_pcb *pcb);
/* Forget rate-limiter state (a stack restarted on a virtual clock). */
void tcp_output_reset(void);

/* tcp_input.c */
void tcp_input(const struct ip_rx *rx, struct pbuf *pb);
void tcp_icmp_error(uint32_t from, uint8_t type, uint8_t code, uint32_t info,
                    const struct ip_hdr *inner, const uint8_t *payload, size_t len);

#endif
