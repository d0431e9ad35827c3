/*
 * icmp.h — ICMP for IPv4 (RFC 792, RFC 1122 §3.2.2): echo, errors, and a
 * small ping API for applications.
 *
 * icmp_input runs on the stack thread. icmp_error() sends an error about a
 * received datagram (rate-limited, never about an ICMP error, a broadcast or
 * a non-first fragment). The ping API lets an app thread send echo requests
 * and wait for the matching replies.
 *
 * Lock key: [P] ping_lock: the list of ping handles and their queues.
 */
#ifndef NETSTEP_ICMP_H
#define NETSTEP_ICMP_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "proto/ip.h"

#define ICMP_HDR_SIZE 8

#define ICMP_TYPE_ECHOREPLY 0
#define ICMP_TYPE_DEST_UNREACH 3
#define ICMP_TYPE_SOURCE_QUENCH 4
#define ICMP_TYPE_REDIRECT 5
#define ICMP_TYPE_ECHO 8
#define ICMP_TYPE_TIME_EXCEEDED 11
#define ICMP_TYPE_PARAM_PROBLEM 12
#define ICMP_TYPE_TIMESTAMP 13
#define ICMP_TYPE_TIMESTAMPREPLY 14

#define ICMP_CODE_NET_UNREACH 0
#define ICMP_CODE_HOST_UNREACH 1
#define ICMP_CODE_PROTO_UNREACH 2
#define ICMP_CODE_PORT_UNREACH 3
#define ICMP_CODE_FRAG_NEEDED 4

#define ICMP_CODE_TTL_EXCEEDED 0
#define ICMP_CODE_REASS_EXCEEDED 1

/* On the wire. */
struct icmp_hdr {
    uint8_t type;
    uint8_t code;
    uint16_t sum;
    uint32_t values; /* echo: id and seq; errors: unused or MTU/pointer */
} __attribute__((packed));

struct icmp_echo {
    uint8_t type;
    uint8_t code;
    uint16_t sum;
    uint16_t id;
    uint16_t seq;
} __attribute__((packed));

enum icmp_stat {
    ICMPSTAT_IN_MSGS,
    ICMPSTAT_IN_TOO_SHORT,
    ICMPSTAT_IN_BAD_CHECKSUM,
    ICMPSTAT_IN_ECHOS,
    ICMPSTAT_IN_ECHO_REPLIES,
    ICMPSTAT_IN_DEST_UNREACHS,
    ICMPSTAT_IN_TIME_EXCEEDS,
    ICMPSTAT_IN_ERRORS_BAD_INNER, /* quoted datagram too short or invalid */
    ICMPSTAT_IN_UNKNOWN_TYPE,
    ICMPSTAT_IN_BROADCAST_ECHO,   /* echo to a broadcast: ignored (RFC 1122) */
    ICMPSTAT_IN_REPLY_NO_PING,    /* echo reply nobody waits for */
    ICMPSTAT_OUT_MSGS,
    ICMPSTAT_OUT_ECHO_REPLIES,
    ICMPSTAT_OUT_ECHOS,
    ICMPSTAT_OUT_DEST_UNREACHS,
    ICMPSTAT_OUT_TIME_EXCEEDS,
    ICMPSTAT_OUT_RATELIMITED,
    ICMPSTAT_PING_QUEUE_FULL,
    ICMPSTAT_COUNT
};
extern struct stats_group icmp_stats;

int icmp_init(void);
void icmp_cleanup(void);

/* Send an ICMP error of type/code about the datagram whose header is hdr and
 * whose payload (len bytes at payload) follows it; info is the host-order
 * value of the second word (next-hop MTU, pointer, or 0). Quietly refuses
 * the cases RFC 1122 §3.2.2 forbids, and rate-limits. */
void icmp_error(uint8_t type, uint8_t code, uint32_t info, const struct ip_rx *rx,
                const uint8_t *payload, size_t len);
void icmp_dump(const uint8_t *data, size_t len);

/* ---- ping ----------------------------------------------------------------
 * A handle owns one echo identifier. Replies (and errors about its
 * requests) queue on it until icmp_ping_recv takes them. */
struct icmp_ping;

struct icmp_ping_reply {
    uint32_t from;   /* who answered (network order) */
    uint8_t type;    /* ICMP_TYPE_ECHOREPLY, or an error type */
    uint8_t code;
    uint8_t ttl;
    uint16_t seq;
    size_t len;      /* ICMP data bytes (echo payload) */
    uint64_t when_us; /* arrival time on platform_now_us() */
};

/* Returns 0 and the handle in *out, or -errno. */
int icmp_ping_open(struct icmp_ping **out);
/* Send an echo request with len bytes of data. Returns 0 or -errno. */
int icmp_ping_send(struct icmp_ping *p, uint32_t dst, uint16_t seq, const void *data, size_t len);
/* Wait up to timeout_ms (<0: forever) for the next reply; copies at most
 * size bytes of its data into data (may be NULL). Returns 0, -ETIMEDOUT,
 * -ESHUTDOWN (stack stopping) or -EBADF (closed meanwhile). */
int icmp_ping_recv(struct icmp_ping *p, struct icmp_ping_reply *reply, void *data, size_t size,
                   int timeout_ms);
uint16_t icmp_ping_id(struct icmp_ping *p);
void icmp_ping_close(struct icmp_ping *p);

#endif
