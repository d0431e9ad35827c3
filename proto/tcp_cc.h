/*
 * tcp_cc.h — congestion control behind a small interface, so the algorithm
 * is chosen per connection (the TCP_CONGESTION socket option, or
 * net_config.tcp_cc for new sockets).
 *
 * The rest of TCP decides *when* congestion happened (three duplicate ACKs
 * or SACK loss detection, a retransmission timeout) and keeps the recovery
 * machinery (NewReno partial ACKs, the SACK pipe); an algorithm decides
 * *how much* cwnd and ssthresh change. Every hook runs with tcp_lock held.
 *
 *   init        the connection is established; cwnd holds the initial
 *               window (RFC 6928), ssthresh is "infinite"
 *   ack         acked new bytes outside recovery: grow cwnd (slow start
 *               below ssthresh, the algorithm's own growth above it)
 *   congestion  loss was detected: TCP_CC_FAST (fast retransmit, entering
 *               recovery: set ssthresh, and cwnd = ssthresh) or TCP_CC_RTO
 *               (timeout: set ssthresh, cwnd = one segment)
 *   recovered   the ACK that ends fast recovery arrived: set cwnd for what
 *               follows (normally ssthresh)
 *
 * Algorithms: "newreno" (RFC 5681 §3.1, RFC 6582) and "cubic" (RFC 9438).
 */
#ifndef NETSTEP_TCP_CC_H
#define NETSTEP_TCP_CC_H

#include <stddef.h>
#include <stdint.h>

struct tcp_pcb;

enum tcp_cc_event {
    TCP_CC_FAST, /* three duplicate ACKs / SACK loss: fast retransmit */
    TCP_CC_RTO,  /* retransmission timeout */
};

#define TCP_CC_NAME_MAX 16 /* names are shorter than this, with the NUL */
#define TCP_CC_STATE_SIZE 64 /* bytes of per-connection state an algorithm may use */

struct tcp_cc_ops {
    const char *name;
    void (*init)(struct tcp_pcb *pcb);
    /* acked: bytes newly acknowledged; now_ms: net_now_ms() */
    void (*ack)(struct tcp_pcb *pcb, uint32_t acked, uint64_t now_ms);
    void (*congestion)(struct tcp_pcb *pcb, enum tcp_cc_event ev, uint64_t now_ms);
    void (*recovered)(struct tcp_pcb *pcb, uint64_t now_ms);
};

/* The algorithm called name, or NULL. */
const struct tcp_cc_ops *tcp_cc_find(const char *name);
/* net_config.tcp_cc if it names one, else NewReno. */
const struct tcp_cc_ops *tcp_cc_default(void);
/* "newreno cubic": the names, space separated, into buf. */
void tcp_cc_list(char *buf, size_t size);

extern const struct tcp_cc_ops tcp_cc_newreno;
extern const struct tcp_cc_ops tcp_cc_cubic;

#endif
