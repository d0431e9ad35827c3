/*
 * tcp.h — the Transmission Control Protocol (RFC 9293) behind
 * sock_open(AF_INET, SOCK_STREAM, 0): wire format, statistics, set-up.
 * The connection state and the internals are in tcp_var.h.
 */
#ifndef NETSTEP_TCP_H
#define NETSTEP_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

#define TCP_HDR_SIZE_MIN 20
#define TCP_HDR_SIZE_MAX 60

#define TCP_FLG_FIN 0x01
#define TCP_FLG_SYN 0x02
#define TCP_FLG_RST 0x04
#define TCP_FLG_PSH 0x08
#define TCP_FLG_ACK 0x10
#define TCP_FLG_URG 0x20
#define TCP_FLG_ECE 0x40
#define TCP_FLG_CWR 0x80

#define TCP_OPT_EOL 0
#define TCP_OPT_NOP 1
#define TCP_OPT_MSS 2
#define TCP_OPT_WSCALE 3
#define TCP_OPT_SACK_PERM 4
#define TCP_OPT_SACK 5
#define TCP_OPT_TIMESTAMP 8

#define TCP_DEFAULT_MSS 536 /* RFC 9293 §3.7.1: when the peer sends none */

/* On the wire. */
struct tcp_hdr {
    uint16_t src;
    uint16_t dst;
    uint32_t seq;
    uint32_t ack;
    uint8_t off;   /* data offset in words, high 4 bits */
    uint8_t flg;
    uint16_t wnd;
    uint16_t sum;
    uint16_t urg;
} __attribute__((packed));

enum tcp_stat {
    TCPSTAT_IN_SEGS,
    TCPSTAT_IN_TOO_SHORT,
    TCPSTAT_IN_BAD_OFFSET,
    TCPSTAT_IN_BAD_CHECKSUM,
    TCPSTAT_IN_BAD_OPTIONS,
    TCPSTAT_IN_BROADCAST,      /* to a broadcast address: dropped */
    TCPSTAT_IN_NO_PCB,         /* answered with RST */
    TCPSTAT_IN_LISTEN_ACKS,    /* an ACK at a listener (a stray, or a late copy from a
                                  connection already gone): answered with RST */
    TCPSTAT_IN_OUT_OF_WINDOW,  /* unacceptable sequence number */
    TCPSTAT_IN_OLD_ACK,
    TCPSTAT_IN_FUTURE_ACK,     /* acknowledges what we never sent */
    TCPSTAT_IN_OOO_SEGS,       /* held out of order */
    TCPSTAT_IN_OOO_DROPPED,    /* out-of-order bookkeeping full */
    TCPSTAT_IN_DUP_SEGS,       /* wholly duplicate data */
    TCPSTAT_IN_DUP_ACKS,
    TCPSTAT_IN_RSTS,
    TCPSTAT_OUT_SEGS,
    TCPSTAT_OUT_RSTS,
    TCPSTAT_OUT_NO_MEMORY,
    TCPSTAT_OUT_SUPER_SEGS,    /* super-segments the device cut up (offload); out_segs counts their pieces */
    TCPSTAT_IN_SUPER_SEGS,     /* super-segments the kernel handed us (offload), one in_segs each */
    TCPSTAT_RETRANS_SEGS,
    TCPSTAT_FAST_RETRANSMITS,
    TCPSTAT_RTO_TIMEOUTS,
    TCPSTAT_PERSIST_PROBES,
    TCPSTAT_KEEPALIVE_PROBES,
    TCPSTAT_DELAYED_ACKS,
    TCPSTAT_CHALLENGE_ACKS,
    TCPSTAT_CHALLENGE_ACKS_LIMITED,
    TCPSTAT_ACTIVE_OPENS,
    TCPSTAT_PASSIVE_OPENS,
    TCPSTAT_ATTEMPT_FAILS,
    TCPSTAT_ESTAB_RESETS,
    TCPSTAT_CONN_TIMEOUTS,
    TCPSTAT_SYN_QUEUE_EVICTED, /* oldest half-open dropped for a new SYN */
    TCPSTAT_ACCEPT_QUEUE_FULL,
    TCPSTAT_TIME_WAIT_RECYCLED,
    TCPSTAT_IN_PAWS_DROPPED,   /* RFC 7323 §5: an old timestamp */
    TCPSTAT_IN_SACK_BLOCKS,    /* SACK blocks taken into the scoreboard */
    TCPSTAT_IN_SACK_BAD,       /* SACK blocks outside what we have in flight */
    TCPSTAT_SACK_FULL,         /* a block the scoreboard had no room for */
    TCPSTAT_SACK_RECOVERIES,   /* loss recoveries driven by SACK (RFC 6675) */
    TCPSTAT_SACK_RETRANS_SEGS, /* holes resent during them */
    TCPSTAT_OUT_SACK_BLOCKS,   /* SACK blocks we sent */
    TCPSTAT_OUT_DSACKS,        /* D-SACK blocks we sent (RFC 2883): duplicates reported */
    TCPSTAT_RTT_TS_SAMPLES,    /* RTT samples taken from timestamps */
    TCPSTAT_TLP_PROBES,        /* tail loss probes sent (RFC 8985 §7) */
    TCPSTAT_TLP_RECOVERIES,    /* recoveries a probe's SACK started */
    TCPSTAT_LOST_RETRANS,      /* resends found lost, resent again */
    TCPSTAT_LIMITED_TRANSMITS, /* new segments sent on dup ACKs (RFC 3042) */
    TCPSTAT_EARLY_RETRANSMITS, /* recoveries on fewer dup ACKs (RFC 5827) */
    TCPSTAT_COUNT
};
extern struct stats_group tcp_stats;

int tcp_init(void);
void tcp_cleanup(void);
/* One line per connection, in the spirit of `ss -tin`:
 * "tcp STATE local:port peer:port sendq=N recvq=N rto=MS srtt=MS cwnd=B
 *  ssthresh=B snd_wnd=B retrans=N". */
size_t tcp_pcb_format(char *buf, size_t size);
void tcp_dump(const uint8_t *seg, size_t len, uint32_t src, uint32_t dst);

#endif
